"""Compiler passes: pure, exact kernels, fixed-point grid, placement invariants."""
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.matrices import conv1d_matrix, conv2d_matrix, sumpool2d_matrix
from nmc_deploy.compile.partition import partition_program
from nmc_deploy.compile.quantize import quantize_program, quantize_weights
from nmc_deploy.compile.validate import validate_program
from nmc_deploy.errors import CapacityError
from nmc_deploy.loihi.kernels import lava_effective_weights
from nmc_deploy.targets import load_target


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 1), (2, 1, 1), (1, 0, 2), (2, 2, 3)])
def test_conv2d_matrix_equals_torch(rng, stride, padding, groups):
    w = rng.normal(size=(6, 6 // groups, 3, 3)) * (rng.random((6, 6 // groups, 3, 3)) < 0.7)
    x = rng.normal(size=(6, 7, 5))
    m = conv2d_matrix(w, (7, 5), (stride, stride), (padding, padding), (1, 1), groups)
    y = torch.nn.functional.conv2d(torch.tensor(x)[None], torch.tensor(w), stride=stride,
                                   padding=padding, groups=groups)[0].numpy()
    assert np.allclose(m @ x.ravel(), y.ravel())
    assert m.nnz <= np.count_nonzero(w) * 35  # pruned weights are absent synapses


def test_conv1d_and_sumpool_matrices(rng):
    w = rng.normal(size=(4, 3, 1))
    x = rng.normal(size=(3, 9))
    assert np.allclose(conv1d_matrix(w, 9) @ x.ravel(), (w[:, :, 0] @ x).ravel())
    s = (rng.random((2, 4, 4)) < 0.5).astype(float)
    pooled = torch.nn.functional.max_pool2d(torch.tensor(s)[None], 3, 2, 1)[0].numpy()
    assert np.array_equal((sumpool2d_matrix((2, 4, 4), (3, 3), (2, 2), (1, 1)) @ s.ravel()) > 0.5,
                          pooled.ravel() > 0.5)  # OR of spikes == max-pool of spikes


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from(["mixed", "exc", "inh"]),
       st.floats(1e-3, 1e4))
def test_quantized_weights_sit_on_lavas_grid(seed, sign, scale):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(7, 9)) * scale * (rng.random((7, 9)) < 0.6)
    if sign == "exc":
        dense = np.abs(dense)
    elif sign == "inh":
        dense = -np.abs(dense)
    q = quantize_weights(sp.csr_matrix(dense))
    w = q.weights.toarray()
    assert np.array_equal(lava_effective_weights(w), w)  # Lava's clip/truncate is a no-op
    step = 2 ** q.weight_exp * (2 if (dense.min() < 0 < dense.max()) else 1)
    err = np.abs(w * 2.0 ** q.weight_exp - dense)
    if q.clipped == 0 and -8 < q.weight_exp < 7:
        assert err.max() <= step / 2 + 1e-9 * scale
    assert np.all(w[dense == 0] == 0)  # no synapse is created where there was none


def test_passes_do_not_mutate_their_input(tiny_graph):
    before = pickle.dumps((dict(tiny_graph.nodes), tiny_graph.edges))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp = lower_graph(tiny_graph)
        fp_before = pickle.dumps(fp)
        prog = quantize_program(fp)
        partition_program(prog, load_target("loihi2"))
    assert pickle.dumps((dict(tiny_graph.nodes), tiny_graph.edges)) == before
    assert pickle.dumps(fp) == fp_before


def test_schedule_aligns_every_input_of_a_population(tiny_program):
    for g in tiny_program.groups:
        assert g.delay >= 0
        assert tiny_program.depth_of(g.source) + 1 + g.delay == \
            tiny_program.population(g.target).depth


@pytest.mark.parametrize("target", ["loihi1", "loihi2"])
def test_placement_puts_every_neuron_once_within_limits(tiny_program, target):
    tgt = load_target(target)
    placement = partition_program(tiny_program, tgt)
    summary = placement.summary(tiny_program)
    for p in tiny_program.populations:
        covered = np.zeros(p.size, int)
        for core in placement.cores:
            for c in core:
                if c.population == p.name:
                    covered[c.start:c.stop] += 1
        assert np.all(covered == 1), p.name
    for c in summary["cores"]:
        assert c["neurons"] <= tgt.max_neurons_per_core
        assert c["synapse_memory_bits"] <= tgt.synapse_memory_bits_per_core
        assert c["in_axons"] <= tgt.max_in_axons_per_core
        assert c["out_axons"] <= tgt.max_out_axons_per_core
        assert len(c["populations"]) <= tgt.max_neuron_groups_per_core
    assert sum(c["synapses"] for c in summary["cores"]) == sum(
        g.num_synapses for g in tiny_program.groups if g.kind != "attention")


def test_model_that_does_not_fit_names_the_limit(tiny_program, tmp_path):
    from pathlib import Path

    src = Path(load_target("loihi2").path).read_text()
    small = src.replace("[chip]", "[chip]", 1)
    import re

    small = re.sub(r"(cores\s*=\s*\{\s*value\s*=\s*)128", r"\g<1>2", small)
    path = tmp_path / "tiny.toml"
    path.write_text(small)
    with pytest.raises(CapacityError, match=r"cores \(\d+\) exceed the cores of target"):
        partition_program(tiny_program, load_target(path))


def test_clamped_exponent_keeps_weights_on_lavas_grid():
    # review B2: R = [-40000, 100] clamps the exponent at 7; the positive weight rounds to 0
    # and Lava would see an inhibitory matrix (-256 -> -255). Stored weights must be final.
    q = quantize_weights(sp.csr_matrix(np.array([[-40000.0, 100.0]])))
    w = q.weights.toarray()
    assert q.weight_exp == 7
    assert np.array_equal(lava_effective_weights(w), w)


def test_weight_bits_above_8_are_rejected():
    from nmc_deploy.errors import LoweringError

    with pytest.raises(LoweringError, match="weight_bits \\(9\\) exceeds 8"):
        quantize_weights(sp.csr_matrix(np.ones((2, 2))), weight_bits=9)


def _threshold_graph(weights, threshold):
    from nmc_deploy.ir import Affine, Graph, Input, Output, Threshold

    w = np.asarray(weights, float)
    nodes = {"input": Input(shape=(w.shape[1],)),
             "a": Affine(weight=np.eye(w.shape[1]) * 2.0, bias=np.zeros(w.shape[1])),
             "spk": Threshold(threshold=np.full(w.shape[1], 0.5)),
             "w": Affine(weight=w, bias=np.zeros(w.shape[0])),
             "or": Threshold(threshold=np.full(w.shape[0], threshold)),
             "output": Output(shape=(w.shape[0],))}
    edges = (("input", "a"), ("a", "spk"), ("spk", "w"), ("w", "or"), ("or", "output"))
    return Graph(nodes, edges, {"dt": 1e-4, "time_steps": 3, "input_levels": 1})


@pytest.mark.parametrize("weights,threshold", [([[-1, 200, 3]], 0.5), ([[1, 2, 3]], 2.5),
                                                ([[1, -255, 3]], 0.5)])
def test_integer_threshold_populations_match_float_exactly(weights, threshold):
    # review B3: mixed-sign integer weights are not on Lava's excitatory grid
    from nmc_deploy.simulate.reference import simulate_float, simulate_reference

    g = _threshold_graph(weights, threshold)
    fp = lower_graph(g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = quantize_program(fp)
    for grp in prog.groups:
        w = grp.weights.toarray()
        assert np.array_equal(lava_effective_weights(w), w)
    x = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    fl, fx = simulate_float(fp, x), simulate_reference(prog, x)
    assert np.array_equal(fl.spikes["or"], fx.spikes["or"])


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
