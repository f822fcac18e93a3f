"""The compile recipe: every pass is pure (its input is unchanged afterwards)."""
import pickle
import warnings

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.mesh import layout_cores
from nmc_deploy.compile.partition import partition_program
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.targets import load_target


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


def test_compile_graph_runs_the_passes_in_order(tiny_graph):
    from nmc_deploy.compile import compile_graph
    from nmc_deploy.compile.attention_split import split_attention
    from nmc_deploy.compile.schedule import schedule_program
    from nmc_deploy.compile.validate import validate_program

    tgt = load_target("loihi2")
    before = pickle.dumps(tiny_graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compile_graph(tiny_graph, "loihi2")
        fp = lower_graph(tiny_graph)
        schedule = schedule_program(fp)
        checked = validate_program(quantize_program(fp, schedule, target=tgt), tgt)
        checked_before = pickle.dumps(checked)
        program = split_attention(checked, tgt)
    assert pickle.dumps(checked) == checked_before  # split_attention is pure too
    assert all(op.units for op in program.attention)
    assert pickle.dumps(tiny_graph) == before
    assert pickle.dumps(result.float_program) == pickle.dumps(fp)
    assert result.schedule == schedule
    assert pickle.dumps(result.program) == pickle.dumps(program)
    assert result.placement == layout_cores(partition_program(program, tgt), program, tgt)
    assert result.low_rank is None  # no low-rank factor pairs in this graph
    summary = result.summary()
    assert "low_rank" not in summary
    assert summary["synapses"] == sum(g.num_synapses for g in program.groups)
    assert summary["pipeline_depth"] == program.pipeline_depth


def test_low_rank_forms_table_lists_both_forms():
    from nmc_deploy.compile.recipe import format_low_rank_forms
    from nmc_deploy.program import FormCosts, LowRankForms

    costs = FormCosts(synapses=10, synapse_memory_bits=800, cores=2, neurons=30,
                      relay_neurons=0, pipeline_depth=4)
    info = LowRankForms(written="relay", pairs=3, target="loihi1",
                        forms={"fused": costs, "relay": "no graded spikes"}).to_json()
    assert info["forms"]["relay"] == {"error": "no graded spikes"}
    text = format_low_rank_forms(info)
    assert text.splitlines()[0] == ("low-rank factors: 3 pairs; both deployment forms on "
                                    "target loihi1 ('relay' written)")
    assert "relay  not deployable: no graded spikes  <- written" in text
    assert "fused         10        100 B      2       30      4" in text


def test_residual_forms_table_lists_both_forms():
    from nmc_deploy.compile.recipe import format_residual_forms
    from nmc_deploy.program import ResidualCosts, ResidualForms

    costs = ResidualCosts(synapses=10, synapse_memory_bits=800, cores=2, neurons=30,
                          relay_neurons=0, pipeline_depth=4, groups=7, max_out_degree=5)
    info = ResidualForms(written="fan-in", relays=3, target="loihi1",
                         forms={"fan-in": costs, "relay": "no graded spikes"}).to_json()
    assert info["forms"]["relay"] == {"error": "no graded spikes"}
    text = format_residual_forms(info)
    assert text.splitlines()[0] == ("residual stream: fan-in 2 cores, relay not deployable "
                                    "(3 relays; 'fan-in' written, target loihi1)")
    assert "relay   not deployable: no graded spikes" in text
    assert "fan-in           10        100 B      2        30       7        5      4  <- " \
        "written" in text


def test_compile_graph_reports_both_residual_forms(tiny_graph):
    from nmc_deploy.compile import compile_graph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fan = compile_graph(tiny_graph, "loihi2")
        rel = compile_graph(tiny_graph, "loihi2", residual="relay")
    assert fan.residual.written == "fan-in" and rel.residual.written == "relay"
    assert fan.residual.forms == rel.residual.forms  # each form compiled the same way
    assert rel.program.metadata["residual_relays"] == ["blocks.0.attn.output.relay",
                                                       "patch_embed.output.relay"]
    assert fan.summary()["residual"]["relays"] == 2


def test_refusal_for_cores_names_the_residual_form_that_fits():
    """Three blocks with unshared weights: fan-in needs 26 cores, relay 11; a 20-core chip
    (above the design rules' fan-in lower bound of 17) refuses fan-in when placing it and
    says that --residual relay fits."""
    import dataclasses

    import pytest

    from conftest import make_tiny_spikformer
    from nmc_deploy.compile import compile_graph
    from nmc_deploy.errors import CapacityError
    from nmc_deploy.export.spikformer import export_spikformer

    graph = export_spikformer(make_tiny_spikformer(depth=3),
                              {"dataset": "digits", "input_levels": 16})
    small = dataclasses.replace(load_target("loihi2"), cores_per_chip=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CapacityError, match=r"; --residual relay fits in 11 cores$"):
            compile_graph(graph, small, weight_sharing=False)
        relay = compile_graph(graph, small, weight_sharing=False, residual="relay")
    assert relay.placement.cores_used == 11
    assert relay.residual.forms["fan-in"].startswith("program: cores (26) exceeds")
