"""Checks after quantization: attention outputs, gated neurons, synaptic delays."""
import numpy as np
import pytest

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.compile.validate import validate_program


def test_attention_output_needing_a_delay_is_rejected(tiny_graph):
    # review B1: attention units have no delay line
    from nmc_deploy.errors import LoweringError
    from nmc_deploy.ir import LIF, Conv1d, Graph

    ssa = tiny_graph.nodes["blocks.0.attn.ssa"]
    D, N = ssa.dim, ssa.n_tokens
    nodes = dict(tiny_graph.nodes)
    nodes["extra_linear"] = Conv1d(weight=np.full((D, D, 1), 0.01), bias=np.zeros(D),
                                   input_length=N)
    lif = tiny_graph.nodes["blocks.0.attn.q_lif"]
    nodes["extra_lif"] = LIF(tau=lif.tau, r=lif.r, v_leak=lif.v_leak,
                             v_threshold=lif.v_threshold, v_reset=lif.v_reset)
    edges = tiny_graph.edges + (("blocks.0.attn.q_lif", "extra_linear"),
                                ("extra_linear", "extra_lif"),
                                ("extra_lif", "blocks.0.attn.attn_lif"))
    g = Graph(nodes, edges, tiny_graph.metadata)
    with pytest.raises(LoweringError, match="attention units have no delay line"):
        validate_program(quantize_program(lower_graph(g)))


def test_delays_beyond_the_target_are_refused_and_the_program_is_returned(tiny_program):
    import dataclasses
    import pickle

    from nmc_deploy.errors import CapacityError
    from nmc_deploy.targets import load_target

    tgt = load_target("loihi2")
    before = pickle.dumps(tiny_program)
    assert validate_program(tiny_program, tgt) is tiny_program
    assert pickle.dumps(tiny_program) == before
    longest = max(g.delay for g in tiny_program.groups)
    assert longest > 0
    short = dataclasses.replace(tgt, max_synaptic_delay=longest - 1)
    with pytest.raises(CapacityError, match=rf"synaptic delay \({longest}\) exceeds "
                                            rf"max_synaptic_delay \({longest - 1}\)"):
        validate_program(tiny_program, short)
