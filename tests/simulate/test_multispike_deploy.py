"""Multi-spike populations (floor(v/theta) spikes per step, a graded count payload) and the
clamp ``min_v_mem`` on random programs: the float simulator equals a direct numpy model of
the rule, and the fixed-point reference equals Lava count for count (feed-forward IF CNN,
recurrent CubaLIF whose own counts come back through its recurrent group, both resets).
The tools' own runs are in tests/interop/test_tool_runs_sinabs.py and *_norse_rockpool.py.
"""
import dataclasses

import numpy as np
import pytest

from test_nir_neurons_deploy import (compile_graph, if_cnn, ref_vs_lava, rsynaptic_net,
                                     spike_input)


def multi(graph, *, min_v_mem=None, max_spikes=None, gain=2.0):
    """The graph with spike_fn "multi" (and a clamp) declared in its metadata, its
    weights times ``gain`` (several thresholds per step)."""
    nodes = {}
    for name, node in graph.nodes.items():
        if getattr(node, "weight", None) is not None:
            node = dataclasses.replace(node, weight=np.asarray(node.weight) * gain)
        nodes[name] = node
    md = {**graph.metadata, "spike_fn": "multi"}
    if max_spikes is not None:
        md["max_spikes"] = max_spikes
    if min_v_mem is not None:
        md["min_v_mem"] = min_v_mem
    return dataclasses.replace(graph, nodes=nodes, metadata=md)


def numpy_if_layer(drive, theta, *, subtract, max_spikes=None, v_min=None, ge=False):
    """The multi-spike rule on a (T, B, n) drive, written from Timing's docstring."""
    v = np.zeros(drive.shape[1:])
    out = []
    for x in drive:
        v = v + x
        k = np.floor(v / theta) if ge else np.ceil(v / theta) - 1
        k = np.where(v >= theta if ge else v > theta, k, 0)
        if max_spikes is not None:
            k = np.minimum(k, max_spikes)
        v = v - k * theta if subtract else np.where(k > 0, 0.0, v)
        if v_min is not None:
            v = np.maximum(v, v_min)
        out.append(k)
    return np.array(out)


@pytest.mark.parametrize("reset,clamp,cap", [("subtract", None, None), ("zero", -0.5, None),
                                             ("subtract", "-theta", 3)])
def test_float_multi_spike_equals_numpy_rule(rng, reset, clamp, cap):
    """The first IF layer of the CNN: the float simulator's counts equal the rule applied
    to the same drive (the conv's output), with a limit and a clamp."""
    from nmc_deploy.simulate.reference import simulate_float

    g = multi(if_cnn(rng, "avg", reset), min_v_mem=clamp, max_spikes=cap)
    fp, _ = compile_graph(g)
    x = spike_input(rng, g, batch=4, T=8)
    result = simulate_float(fp, x)
    pop = fp.population("if1")
    w = next(grp for grp in fp.groups if grp.target == "if1" and grp.source == "input")
    drive = np.einsum("ij,btj->tbi", w.weight.toarray(), x.reshape(4, 8, -1)) + pop.bias
    v_min = None if clamp is None else (-1.0 if clamp == "-theta" else clamp)
    want = numpy_if_layer(drive, 1.0, subtract=reset == "subtract", max_spikes=cap,
                          v_min=v_min)
    assert want.max() > 1
    assert int(np.count_nonzero(result.spikes["if1"] != want)) == 0


@pytest.mark.lava
@pytest.mark.parametrize("case", ["cnn-subtract-clamp", "cnn-zero", "recurrent-cubalif"])
def test_multi_spike_reference_equals_lava(rng, case):
    if case.startswith("cnn"):
        reset = case.split("-")[1]
        g = multi(if_cnn(rng, "avg", reset), min_v_mem="-theta" if "clamp" in case else None)
    else:
        g = multi(rsynaptic_net(rng, "li"), min_v_mem=-0.3, gain=1.5)
    fp, prog = compile_graph(g)
    assert any(p.multi_spike for p in prog.populations)
    x = spike_input(rng, g, batch=3, T=8)
    ref, lav, mism = ref_vs_lava(prog, x)
    assert max(int(s.max()) for s in ref.spikes.values()) > 1
    assert sum(mism.values()) == 0, mism
    for name, s in ref.spikes.items():
        assert np.count_nonzero(s != lav.spikes[name]) == 0, name


def test_multi_spike_program_round_trips_and_counts_messages(rng, tmp_path):
    """save/load keeps max_spikes, spike_unit, payload_bits and a per-neuron v_min; the
    reference's stats count one message per nonzero count (a graded payload), not k."""
    from nmc_deploy.program.io import load_program, save_program
    from nmc_deploy.simulate.reference import simulate_reference

    g = multi(if_cnn(rng, "avg", "subtract"), min_v_mem=-0.5)
    g.nodes["if2"] = dataclasses.replace(g.nodes["if2"], v_threshold=np.linspace(1.0, 1.4, 5))
    _, prog = compile_graph(g)
    assert isinstance(prog.population("if2").v_min, np.ndarray)  # per-neuron scales
    save_program(prog, tmp_path)
    back = load_program(tmp_path)
    for p, q in zip(prog.populations, back.populations):
        assert (p.max_spikes, p.spike_unit, p.payload_bits) == \
            (q.max_spikes, q.spike_unit, q.payload_bits)
        assert np.array_equal(np.asarray(p.v_min if p.v_min is not None else 0),
                              np.asarray(q.v_min if q.v_min is not None else 0))
    x = spike_input(rng, g, batch=2, T=8)
    ref = simulate_reference(back, x)
    stats = {p["name"]: p for p in ref.stats["populations"]}
    s = ref.spikes["if1"]
    assert s.max() > 1
    assert stats["if1"]["spikes"] == int(np.count_nonzero(s)) < int(s.sum())


def test_recurrent_counts_beyond_the_assumed_bound_are_not_called_safe():
    """A strongly excitatory recurrent multi-spike population: its own counts exceed what
    its worst case assumed, so compile warns, records no headroom and the scale line says
    'not proven'; simulate then counts the wraps and names the recurrent cause."""
    import warnings

    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.compile.quantize import quantize_program
    from nmc_deploy.compile.scale import scale_line
    from nmc_deploy.errors import QuantizationWarning
    from nmc_deploy.simulate.overflow import overflow_lines
    from nmc_deploy.simulate.reference import simulate_reference

    rng = np.random.default_rng(1234)
    g = multi(rsynaptic_net(rng, "li", T=20), gain=1.5)
    x = spike_input(rng, g, batch=3, T=20, p=0.6)
    fp = lower_graph(g)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prog = quantize_program(fp)
    name = next(p.name for p in prog.populations if p.multi_spike)
    assert any(issubclass(w.category, QuantizationWarning) and "not proven" in str(w.message)
               and str(w.message).startswith(f"{name}: its own spike counts") for w in caught)
    q = prog.metadata["quantization"]
    assert q["populations"][name]["headroom"] is None
    assert "not proven for 1 (recurrent spike counts)" in scale_line(q)
    ref = simulate_reference(prog, x)
    lines = overflow_lines(prog, ref.stats)
    assert ref.stats["u_wraps"] > 0 and any("recurrent spike counts" in line for line in lines)


@pytest.mark.parametrize("spelling", ["SingleSpike", "single", b"single"])
def test_spike_rule_spellings_lower_alike(rng, spelling):
    """A spike rule written as sinabs names it is read alike in graph and node metadata."""
    from nmc_deploy.compile.lower import lower_graph

    g = if_cnn(rng)
    as_graph = dataclasses.replace(g, metadata={**g.metadata, "spike_fn": spelling})
    nodes = dict(g.nodes)
    nodes["if1"] = dataclasses.replace(nodes["if1"], metadata={"spike_fn": spelling})
    for graph in (as_graph, dataclasses.replace(g, nodes=nodes)):
        assert not any(p.multi_spike for p in lower_graph(graph).populations)
    multi_g = dataclasses.replace(g, metadata={**g.metadata, "spike_fn": "MultiSpike"})
    assert all(p.multi_spike for p in lower_graph(multi_g).populations if p.kind != "li")
