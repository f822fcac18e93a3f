"""Per-population scale choice: no fixed-point overflow at the worst case (issue 11 item 2)."""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.quantize import DEFAULT_VTH_MANT, VTH_FLOOR, quantize_program
from nmc_deploy.compile.scale import scale_line
from nmc_deploy.errors import QuantizationWarning
from nmc_deploy.simulate.fidelity import fidelity_summary
from nmc_deploy.simulate.overflow import overflow_lines
from nmc_deploy.simulate.reference import simulate_float, simulate_reference

DT = 1e-4


def _lif_graph(weight, *, tau_steps: float = 2.0, bias=None, time_steps: int = 6):
    """Input (binary) -> Affine(weight) -> LIF (threshold 1, gain 1) -> Output."""
    from nmc_deploy.ir import LIF, Affine, Graph, Input, Output

    w = np.asarray(weight, float)
    n_out, n_in = w.shape
    tau = np.full(n_out, tau_steps * DT)
    nodes = {"input": Input(shape=(n_in,)),
             "fc": Affine(weight=w, bias=np.zeros(n_out) if bias is None else bias),
             "lif": LIF(tau=tau, r=np.full(n_out, tau_steps), v_leak=np.zeros(n_out),
                        v_threshold=np.ones(n_out), v_reset=np.zeros(n_out)),
             "output": Output(shape=(n_out,))}
    edges = (("input", "fc"), ("fc", "lif"), ("lif", "output"))
    return Graph(nodes, edges, {"dt": DT, "time_steps": time_steps, "input_levels": 1})


def _wide_graph():
    """64 inputs of weight 4 (4x the threshold) into 3 neurons: all inputs spiking drive
    u to 64 * 256 * lam, twice the 24-bit range at the default vth_mant 1023."""
    w = np.full((3, 64), 4.0)
    w[1, ::2] = -4.0  # one mixed-sign neuron
    w[2] = -4.0
    w[2, 0] = 0.5
    return _lif_graph(w)


def _worst_inputs(n_in: int, rng) -> np.ndarray:
    """All ones, all zeros and random binary images (B, n_in)."""
    x = rng.integers(0, 2, size=(30, n_in))
    return np.vstack([np.ones((1, n_in), int), np.zeros((1, n_in), int), x])


def _quiet(fp, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prog = quantize_program(fp, **kw)
    return prog, [str(w.message) for w in caught if w.category is QuantizationWarning]


def test_default_scale_would_wrap_the_automatic_one_does_not(rng):
    fp = lower_graph(_wide_graph())
    x = _worst_inputs(64, rng)
    auto, auto_warnings = _quiet(fp)
    rec = auto.metadata["quantization"]["populations"]["lif"]
    assert rec["choice"] == "auto" and rec["vth_mant"] < DEFAULT_VTH_MANT
    assert rec["limited_by"] in ("current", "negative voltage") and rec["headroom"] >= 1
    assert not [w for w in auto_warnings if "worst-case" in w]
    ref = simulate_reference(auto, x)
    assert ref.stats["u_wraps"] == 0 and ref.stats["v_saturations"] == 0
    assert overflow_lines(auto, ref.stats) == []
    assert "lowered for 1 of 1: lif" in scale_line(auto.metadata["quantization"])

    over, over_warnings = _quiet(fp, vth_mant=DEFAULT_VTH_MANT)
    assert any(w.startswith("lif: worst-case current (") and "lower --vth-mant" in w
               for w in over_warnings), over_warnings
    bad = simulate_reference(over, x)
    assert bad.stats["u_wraps"] > 0
    lines = overflow_lines(over, bad.stats)
    assert len(lines) == 1
    assert lines[0].startswith(f"warning: lif: current wraps ({bad.stats['u_wraps']})")
    assert "lower --vth-mant (now 1023) or drop the override" in lines[0]
    # the wrapped current turns all-inputs-on into silence: far from float, unlike auto
    flt = simulate_float(fp, x)
    rows_auto, rows_over = ({r["population"]: r for r in fidelity_summary(
        flt, run, program=prog)["populations"]} for run, prog in ((ref, auto), (bad, over)))
    assert rows_over["lif"]["u_wraps"] == bad.stats["u_wraps"]
    assert rows_auto["lif"]["float_vs_fixed"] < rows_over["lif"]["float_vs_fixed"]


def test_the_choice_is_recorded_per_population_with_its_bound(rng):
    fp = lower_graph(_lif_graph(rng.normal(0, 0.3, size=(5, 8))))
    prog, _ = _quiet(fp)
    q = prog.metadata["quantization"]
    assert q["vth_mant"] == "auto"
    rec = q["populations"]["lif"]
    assert rec["vth_mant"] == DEFAULT_VTH_MANT and rec["limited_by"] is None
    assert set(rec["worst_case"]) == {"u", "v_high", "v_low", "acc"}
    assert set(rec["weight_exp"]) == {g.name for g in prog.groups if g.target == "lif"}
    assert q["zeroed_per_layer"] and rec["zeroed_weights"] == sum(q["zeroed_per_layer"].values())
    pinned, _ = _quiet(fp, vth_mant=DEFAULT_VTH_MANT)  # no overflow: the same program
    assert [g.weights.toarray().tolist() for g in pinned.groups] == \
        [g.weights.toarray().tolist() for g in prog.groups]
    assert pinned.metadata["quantization"]["populations"]["lif"]["choice"] == "override"


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(n_in=st.integers(1, 48), n_out=st.integers(1, 6), log_scale=st.floats(-2.0, 2.0),
       positive=st.floats(0.0, 1.0), tau_steps=st.sampled_from([1.0, 2.0, 4.0, 64.0]),
       time_steps=st.integers(1, 8), bias=st.floats(-2.0, 2.0), seed=st.integers(0, 2 ** 16))
def test_chosen_scale_never_wraps_on_binary_inputs(n_in, n_out, log_scale, positive, tau_steps,
                                                   time_steps, bias, seed):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0, 10.0 ** log_scale, size=(n_out, n_in))
    w *= np.where(rng.random((n_out, n_in)) < positive, 1.0, -1.0)
    g = _lif_graph(w, tau_steps=tau_steps, bias=np.full(n_out, bias), time_steps=time_steps)
    fp = lower_graph(g)
    prog, _ = _quiet(fp)
    rec = prog.metadata["quantization"]["populations"]["lif"]
    assert rec["headroom"] >= 1 or rec["vth_mant"] == 1
    x = _worst_inputs(n_in, rng)
    negative = (w < 0).astype(int)  # the inputs that pull each neuron down
    ref = simulate_reference(prog, np.vstack([x, negative]))
    if rec["headroom"] >= 1:  # current and accumulator always fit
        assert ref.stats["u_wraps"] == 0
    if rec["low_headroom"] >= 1:  # the negative side fits too unless below the floor
        assert ref.stats["v_saturations"] == 0
    else:
        assert rec["vth_mant"] <= VTH_FLOOR


@pytest.mark.lava
def test_automatic_scale_is_bit_exact_with_lava(rng):
    from nmc_deploy.simulate.lava.backend import simulate_lava

    fp = lower_graph(_wide_graph())
    prog, _ = _quiet(fp)
    x = _worst_inputs(64, rng)[:4]
    ref, lav = simulate_reference(prog, x), simulate_lava(prog, x)
    assert np.array_equal(ref.spikes["lif"], lav.spikes["lif"])


def test_worst_case_beyond_any_mantissa_is_said():
    """64 inputs of weight 2e5 overflow the 24-bit current even at the smallest mantissa:
    compile warns with the population's name, the log line does not claim 'no worst-case
    overflow', and simulate's overflow hint does not ask for a lower --vth-mant."""
    fp = lower_graph(_lif_graph(np.full((2, 64), 2e5)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = quantize_program(fp)
    said = [str(w.message) for w in caught if issubclass(w.category, QuantizationWarning)]
    assert any("lif" in m and "overflows even at threshold mantissa" in m for m in said), said
    q = program.metadata["quantization"]
    assert "no worst-case overflow" not in scale_line(q) and "overflows in 1" in scale_line(q)
    run = simulate_reference(program, np.ones((3, 64), int))
    lines = overflow_lines(program, run.stats)
    assert lines and all("lower --vth-mant" not in line for line in lines)
