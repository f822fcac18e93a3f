"""Lowering a residual stream through graded relays (``lower_graph(..., residual="relay")``).

A hand-built graph with two stream levels (``s1 = a + b``, ``s2 = s1 + c``), optionally a
Delay on one stream edge (a lagged term), checks: one relay per stream reused by the next
(``relay2 = relay1 + c``), lags kept on the relay's groups, exact equality with the fan-in
form on the reference simulator, the pure passes, and the one-line refusals.
"""
import dataclasses
import pickle
import warnings

import numpy as np
import pytest

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.lower.context import has_residual_stream
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.compile.schedule import schedule_program
from nmc_deploy.errors import LoweringError, QuantizationWarning
from nmc_deploy.ir import LIF, Affine, Delay, Graph, Input, Output, Scale
from nmc_deploy.program import RELAY
from nmc_deploy.simulate.reference import simulate_reference
from nmc_deploy.targets import load_target

DT = 1e-4


def residual_graph(rng, n=16, delay_steps=0, reader_scale=1.0):
    """input -> a; a -> b; s1 = a + b (a through ``delay_steps``); s1 -> c;
    s2 = s1 + c; s2 -> d -> output. Readers of a stream: c (of s1) and d (of s2).
    Weights give weight_exp 0 (largest |R| near 245); ``reader_scale`` < 1 makes the
    stream readers' weights small (weight_exp < 0)."""
    nodes = {"input": Input(shape=(n,))}
    edges = []

    def layer(name, src, scale=1.0, mean=0.5):
        w = rng.normal(mean, 0.5, (n, n))
        nodes[f"{name}_fc"] = Affine(weight=scale * w * 0.48 / np.abs(w).max(),
                                     bias=np.zeros(n))
        nodes[name] = LIF(tau=np.full(n, 2 * DT), r=np.full(n, 4.0 if src == "input" else 1.0),
                          v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
        edges.extend([(src, f"{name}_fc"), (f"{name}_fc", name)])

    layer("a", "input")
    layer("b", "a")
    a_out = "a"
    if delay_steps:
        nodes["a_delay"] = Delay(delay=np.full(n, delay_steps * DT))
        edges.append(("a", "a_delay"))
        a_out = "a_delay"
    nodes["s1"] = Scale(scale=np.ones(n))
    edges += [(a_out, "s1"), ("b", "s1")]
    layer("c", "s1", reader_scale, mean=0.8)
    nodes["s2"] = Scale(scale=np.ones(n))
    edges += [("s1", "s2"), ("c", "s2")]
    layer("d", "s2", reader_scale, mean=0.3)
    nodes["output"] = Output(shape=(n,))
    edges.append(("d", "output"))
    return Graph(nodes, tuple(edges), {"dt": DT, "time_steps": 8, "input_levels": 4})


def _quantize(fp, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_program(fp, **kw)


@pytest.mark.parametrize("delay_steps", [0, 2])
def test_relay_chain_and_lags(rng, delay_steps):
    fp = lower_graph(residual_graph(rng, delay_steps=delay_steps), residual="relay")
    assert fp.metadata["residual"] == "relay"
    assert fp.metadata["residual_relays"] == ["s1.relay", "s2.relay"]
    into = {r: sorted((g.source, g.lag) for g in fp.groups if g.target == r)
            for r in ("s1.relay", "s2.relay")}
    assert into["s1.relay"] == [("a", delay_steps), ("b", 0)]
    assert into["s2.relay"] == [("c", 0), ("s1.relay", 0)]  # relay2 = relay1 + c
    assert {g.source for g in fp.groups if g.target in ("c", "d")} == {"s1.relay", "s2.relay"}
    sched = schedule_program(fp)
    assert sched.depths["s1.relay"] == sched.depths["b"] + 1
    assert sched.depths["c"] == sched.depths["s1.relay"] + 1
    assert sched.sample_gap == delay_steps
    assert [p.kind for p in fp.populations if p.name.endswith(".relay")] == [RELAY, RELAY]


@pytest.mark.parametrize("delay_steps", [0, 2])
def test_relay_equals_fan_in_on_the_reference(rng, delay_steps):
    graph = residual_graph(rng, delay_steps=delay_steps)
    fan, rel = (_quantize(lower_graph(graph, residual=m)) for m in ("fan-in", "relay"))
    readers = [g for g in rel.groups if g.source.endswith(".relay") and g.target in ("c", "d")]
    assert len(readers) == 2 and all(g.weight_exp >= 0 for g in readers)
    assert rel.metadata["quantization"]["residual_floor_once"] == 0
    x = np.random.default_rng(7).integers(0, 5, (12, 16))
    a, b = simulate_reference(fan, x), simulate_reference(rel, x)
    assert sum(int(a.spikes[k].sum()) for k in "cd") > 100
    assert all(np.array_equal(a.spikes[k], b.spikes[k]) for k in a.spikes)
    assert np.array_equal(a.logits, b.logits)
    # one reader per stream: one group more (2 + 3 stream groups vs 2 + 1 + 2 + 1), but the
    # stream is read through 16 identity synapses per term instead of 256 per term
    assert (len(fan.groups), len(rel.groups)) == (7, 8)
    assert sum(g.num_synapses for g in rel.groups) < sum(g.num_synapses for g in fan.groups)


def test_mixed_sign_readers_at_weight_exp_minus_one_stay_exact(rng):
    """Mixed-sign weights are even, so ``>> 1`` divides exactly: still the fan-in sums."""
    graph = residual_graph(rng, reader_scale=0.5)
    fan, rel = (_quantize(lower_graph(graph, residual=m)) for m in ("fan-in", "relay"))
    readers = [g for g in rel.groups if g.source.endswith(".relay") and g.target in ("c", "d")]
    assert [g.weight_exp for g in readers] == [-1, -1]
    assert all(g.weights.data.min() < 0 < g.weights.data.max() for g in readers)
    assert rel.metadata["quantization"]["residual_floor_once"] == 0
    x = np.random.default_rng(7).integers(0, 5, (12, 16))
    a, b = simulate_reference(fan, x), simulate_reference(rel, x)
    assert sum(int(a.spikes[k].sum()) for k in "cd") > 100
    assert all(np.array_equal(a.spikes[k], b.spikes[k]) for k in a.spikes)


def test_small_reader_weights_are_reported(rng):
    """A reader at weight_exp < 0 floors the stream's sum once: warned and counted."""
    fp = lower_graph(residual_graph(rng, reader_scale=0.05), residual="relay")
    with pytest.warns(QuantizationWarning, match="floored once"):
        prog = quantize_program(fp)
    assert prog.metadata["quantization"]["residual_floor_once"] == 2


def test_fan_in_is_the_default_and_has_a_stream(rng):
    graph = residual_graph(rng)
    fp = lower_graph(graph)
    assert fp.metadata["residual"] == "fan-in" and "residual_relays" not in fp.metadata
    assert not any(p.kind == RELAY for p in fp.populations)
    assert has_residual_stream(fp) and has_residual_stream(lower_graph(graph, residual="relay"))
    from factories import chain_graph
    assert not has_residual_stream(lower_graph(chain_graph(rng)))


def test_relay_passes_do_not_mutate_their_input(rng):
    from nmc_deploy.compile.partition import partition_program

    graph = residual_graph(rng, delay_steps=1)
    before = pickle.dumps((dict(graph.nodes), graph.edges))
    fp = lower_graph(graph, residual="relay")
    fp_before = pickle.dumps(fp)
    prog = _quantize(fp)
    prog_before = pickle.dumps(prog)
    partition_program(prog, load_target("loihi2"))
    assert pickle.dumps((dict(graph.nodes), graph.edges)) == before
    assert pickle.dumps(fp) == fp_before and pickle.dumps(prog) == prog_before


def test_relay_refusals_are_one_line(rng):
    graph = residual_graph(rng)
    with pytest.raises(LoweringError, match="residual 'split' is not one of fan-in, relay"):
        lower_graph(graph, residual="split")
    binary = dataclasses.replace(load_target("loihi2"), graded_spike_bits=0)
    with pytest.raises(LoweringError, match=r"--residual fan-in") as exc:
        _quantize(lower_graph(graph, residual="relay"), target=binary)
    assert "\n" not in str(exc.value)
    narrow = dataclasses.replace(load_target("loihi2"), graded_spike_bits=2)  # 0..1 signed
    with pytest.raises(LoweringError, match=r"s1\.relay: residual payload \(2\) exceeds"):
        _quantize(lower_graph(graph, residual="relay"), target=narrow)


@pytest.mark.lava
def test_lagged_relay_reference_equals_lava(rng):
    """Relay groups carrying a lag (a Delay on the stream) and the sample gap, on Lava."""
    from nmc_deploy.simulate.lava.backend import simulate_lava

    prog = _quantize(lower_graph(residual_graph(rng, delay_steps=2), residual="relay"))
    assert prog.sample_gap == 2  # idle steps between samples: the largest lag
    x = np.random.default_rng(7).integers(0, 5, (3, 16))
    ref, lav = simulate_reference(prog, x), simulate_lava(prog, x)
    assert set(ref.payloads) == set(lav.payloads) == {"s1.relay", "s2.relay"}
    assert sum(int(np.count_nonzero(p)) for p in ref.payloads.values()) > 50
    out_ref, out_lav = ref.outputs(), lav.outputs()
    mism = {k: int(np.count_nonzero(out_ref[k] != out_lav[k])) for k in out_ref}
    assert sum(mism.values()) == 0, mism


def test_netx_refuses_a_residual_relay_naming_the_fix(rng, tmp_path):
    from nmc_deploy.compile.netx import write_netx
    from nmc_deploy.errors import NmcDeployError

    prog = _quantize(lower_graph(residual_graph(rng), residual="relay"))
    with pytest.raises(NmcDeployError, match=r"s1\.relay' is a residual relay .*--residual "
                                              r"fan-in"):
        write_netx(prog, tmp_path / "m.net.h5")
