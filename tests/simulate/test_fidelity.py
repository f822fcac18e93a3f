"""simulate/fidelity.py: per-population float-vs-fixed and reference-vs-Lava counts, by hand."""
import numpy as np
import pytest

from nmc_deploy.simulate.fidelity import fidelity_summary, format_fidelity
from nmc_deploy.simulate.result import SimulationResult


def _run(spikes: dict, logits, payloads=None, voltages=None, scales=None, steps=None):
    return SimulationResult(spikes=spikes, counts={}, logits=np.asarray(logits, float),
                            payloads=payloads or {}, voltages=voltages or {},
                            voltage_scales=scales or {}, output_steps=steps)


def test_counts_by_hand():
    # 2 steps x 2 samples x 3 neurons; float differs from fixed in 2 entries of a, 1 of b;
    # Lava differs from the reference in 1 entry of b
    a = np.zeros((2, 2, 3), bool)
    a[0, 0, 0] = a[1, 1, 2] = True
    b = np.ones((2, 2, 1), bool)
    fa, fb = a.copy(), b.copy()
    fa[0, 0, 0], fa[0, 1, 1] = False, True
    fb[1, 0, 0] = False
    lb = b.copy()
    lb[0, 1, 0] = False
    v = np.array([[[64]], [[128]]])  # LI voltages in fixed units, scale 64 per float unit
    fixed = _run({"a": a, "b": b}, [[1, 0], [0, 1]], voltages={"o": v}, scales={"o": 64.0},
                 steps=np.zeros((2, 2, 2)))
    flt = _run({"a": fa, "b": fb}, [[1, 0], [1, 0]], voltages={"o": np.array([[[1.0]], [[1.5]]])},
               steps=np.full((2, 2, 2), 0.25))
    lav = _run({"a": a, "b": lb}, [[1, 0], [0, 1]], voltages={"o": v})
    s = fidelity_summary(flt, fixed, lav, labels=np.array([0, 1]))
    rows = {r["population"]: r for r in s["populations"]}
    assert rows["a"]["float_vs_fixed"] == 2 and rows["b"]["float_vs_fixed"] == 1
    assert rows["a"]["reference_vs_lava"] == 0 and rows["b"]["reference_vs_lava"] == 1
    assert rows["a"]["spikes"] == 2 and rows["b"]["spikes"] == 4 and rows["a"]["entries"] == 12
    assert rows["o"]["max_voltage_error"] == pytest.approx(0.5)  # 128/64 - 1.5
    assert s["float_vs_fixed"] == 3 and s["reference_vs_lava"] == 1
    assert s["predictions_agree"] == {"float_vs_fixed": 1, "fixed_vs_lava": 2}
    assert s["max_output_error"] == pytest.approx(0.25)
    assert s["accuracy"] == {"fixed": 1.0, "float": 0.5, "lava": 1.0}
    text = format_fidelity(s)
    assert "predictions agree: float vs fixed 1 of 2, fixed vs Lava 2 of 2" in text
    assert "accuracy: fixed 100.00 %, float 50.00 %, lava 100.00 %" in text


def test_without_float_and_lava():
    a = np.ones((1, 1, 2), bool)
    s = fidelity_summary(None, _run({"a": a}, [[0, 1]]))
    assert s["float_vs_fixed"] is None and s["reference_vs_lava"] is None
    assert s["predictions_agree"] == {} and "accuracy" not in s
    assert "float: not compared" in format_fidelity(s)


class _Prog:
    metadata = {"quantization": {"populations": {
        "a": {"vth_mant": 96, "choice": "auto", "headroom": 1.5, "zeroed_weights": 3},
        "b": {"vth_mant": 1023, "choice": "override", "headroom": 0.4, "zeroed_weights": 0}}}}


def test_membrane_error_and_quantization_columns():
    a = np.zeros((2, 1, 2), bool)
    b = np.ones((2, 1, 1), bool)
    # neuron 0 spikes differently at step 1 (float spikes): its error there (5) is the
    # divergence a spike causes, not quantization, and is left out
    mem_fixed = {"a": np.array([[[0.5, 0.25]], [[5.0, 1.0]]], np.float32)}
    mem_float = {"a": np.array([[[0.5, 0.0]], [[0.125, 1.0]]], np.float32)}
    fixed = _run({"a": a, "b": b}, [[1, 0]])
    fixed.membranes = mem_fixed
    fixed.stats = {"populations": [{"name": "a", "u_wraps": 0, "v_saturations": 0},
                                   {"name": "b", "u_wraps": 7, "v_saturations": 2}]}
    fa = a.copy()
    fa[1, 0, 0] = True
    flt = _run({"a": fa, "b": b}, [[1, 0]])
    flt.membranes = mem_float
    s = fidelity_summary(flt, fixed, program=_Prog())
    rows = {r["population"]: r for r in s["populations"]}
    assert rows["a"]["max_voltage_error"] == pytest.approx(0.25)
    assert "max_voltage_error" not in rows["b"]  # membranes not kept for b
    assert rows["a"]["vth_mant"] == 96 and rows["a"]["zeroed_weights"] == 3
    assert rows["b"]["choice"] == "override" and rows["b"]["u_wraps"] == 7
    text = format_fidelity(s)
    line_b = next(line for line in text.splitlines() if line.startswith("b "))
    assert "1023*" in line_b and "7/2" in line_b
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert "7/2" in total and " 3 " in total


def test_reference_and_float_keep_membranes_on_request(tiny_graph, tiny_program, rng):
    from nmc_deploy.compile.lower import lower_graph
    from nmc_deploy.simulate.reference import simulate_float, simulate_reference

    x = rng.integers(0, 16, size=(3, *tiny_program.input_shape))
    ref = simulate_reference(tiny_program, x, membranes=True)
    flt = simulate_float(lower_graph(tiny_graph), x, membranes=True)
    assert not simulate_reference(tiny_program, x).membranes  # off by default
    spiking = [p.name for p in tiny_program.populations if p.spiking]
    assert sorted(ref.membranes) == sorted(spiking) == sorted(flt.membranes)
    for name in spiking:
        assert ref.membranes[name].shape == ref.spikes[name].shape
    # the first population reads only the input: its first step differs by quantization only
    first = spiking[0]
    err0 = np.abs(ref.membranes[first][0] - flt.membranes[first][0])
    assert err0.max() < 0.05 and np.abs(flt.membranes[first][0]).max() > 0.2
    s = fidelity_summary(flt, ref, program=tiny_program)
    row = next(r for r in s["populations"] if r["population"] == first)
    assert row["max_voltage_error"] >= float(err0.max())
    assert row["vth_mant"] is not None and row["u_wraps"] == 0


def test_membrane_error_with_per_neuron_thresholds(rng):
    """Per-neuron thresholds give per-neuron scales (lam_i = 64 vth / theta_i): the fixed
    membranes are converted per neuron before they are compared with float."""
    import dataclasses

    from test_nir_neurons_deploy import compile_graph, if_cnn, spike_input

    from nmc_deploy.simulate.fidelity import per_neuron_membranes
    from nmc_deploy.simulate.reference import simulate_float, simulate_reference

    g = if_cnn(rng, "avg", "subtract")
    g.nodes["if2"] = dataclasses.replace(g.nodes["if2"], v_threshold=np.linspace(1.0, 4.0, 5))
    fp, prog = compile_graph(g)
    x = spike_input(rng, g, batch=4, T=8)
    flt = simulate_float(fp, x, membranes=True)
    ref = simulate_reference(prog, x, membranes=True)
    raw = {r["population"]: r for r in fidelity_summary(flt, ref, program=prog)["populations"]}
    ref.membranes = per_neuron_membranes(ref.membranes, prog, fp)
    fixed = {r["population"]: r for r in fidelity_summary(flt, ref, program=prog)["populations"]}
    assert raw["if2"]["max_voltage_error"] > 10   # divided by the largest scale only
    # per neuron: quantization error and upstream differences only
    assert fixed["if2"]["max_voltage_error"] < min(3.0, 0.25 * raw["if2"]["max_voltage_error"])
    assert fixed["if1"]["max_voltage_error"] == raw["if1"]["max_voltage_error"]
