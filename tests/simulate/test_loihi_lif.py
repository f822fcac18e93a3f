"""The one LIF Process (LoihiLIF): without options it is Lava's own LIFReset spike for spike,
and every option combination (per-neuron decays, window, token gate, subtractive reset,
non-spiking, multi spikes, the clamp v_min) equals the fixed-point kernel with the same
rules (mismatches counted)."""
import numpy as np
import pytest
import scipy.sparse as sp

from nmc_deploy.loihi.neurons import effective_bias, lif_fixed_step
from nmc_deploy.loihi.synapses import lava_effective_weights, synaptic_input


def _run_lava(make_lifs, data, weights, weight_exp, steps, gate=None):
    """RingBuffer -> Sparse -> each LIF of ``make_lifs()`` (a dict); an optional second
    RingBuffer drives their ``gate_in``. Returns {name: (s_out, u, v)} per step."""
    from nmc_deploy.simulate.lava import lava311

    lava311.import_lava_runtime()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.monitor.process import Monitor
    from lava.proc.sparse.process import Sparse

    src = RingBuffer(data=data.astype(np.int32))
    syn = Sparse(weights=sp.csr_matrix(weights), weight_exp=weight_exp, num_weight_bits=8)
    src.s_out.connect(syn.s_in)
    lifs = make_lifs()
    gate_src = RingBuffer(data=gate.astype(np.int32)) if gate is not None else None
    mons = {}
    for name, lif in lifs.items():
        syn.a_out.connect(lif.a_in)
        if gate_src is not None:
            gate_src.s_out.connect(lif.gate_in)
        for key, target in (("s", lif.s_out), ("u", lif.u), ("v", lif.v)):
            mons[name, key] = Monitor()
            mons[name, key].probe(target, steps)
    try:
        src.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = {}
        for key, mon in mons.items():
            (proc_data,) = mon.get_data().values()
            (arr,) = proc_data.values()
            out[key] = np.asarray(arr).astype(np.int64)
    finally:
        src.stop()
    return {name: (out[name, "s"], out[name, "u"], out[name, "v"]) for name in lifs}


def _expected(data, weights, weight_exp, steps, *, du, dv, vth, bias_mant, bias_exp,
              reset_interval, reset_offset, window=0, first_step=0, gate=None,
              gate_delay=0, reset_subtract=0, spiking=True, max_spikes=1, spike_unit=0,
              v_min=None):
    """The LoihiLIF rules on the fixed-point kernel: periodic reset, rest outside windows,
    gate of ``gate_delay`` steps ago, LI output = gated voltage."""
    w = sp.csr_matrix(lava_effective_weights(weights))
    n = weights.shape[0]
    u = v = np.zeros(n, np.int64)
    bias_eff = effective_bias(bias_mant, bias_exp)
    a_next = np.zeros(n, np.int64)
    S, U, V = [], [], []
    for t in range(steps):  # Lava step t + 1; Sparse delivers the previous step's sum
        step, a_in = t + 1, a_next
        a_next = synaptic_input(w, data[:, t % data.shape[1]][:, None], weight_exp)[:, 0]
        rel = step - first_step
        resting = window > 0 and (rel < 0 or rel % reset_interval >= window)
        if resting or step % reset_interval == reset_offset:
            u = v = np.zeros(n, np.int64)
        s = np.zeros(n, bool)
        if not resting:
            u, v, s, _ = lif_fixed_step(u, v, a_in, du=du, dv=dv, vth=vth if spiking else None,
                                        bias_eff=bias_eff, reset_subtract=reset_subtract,
                                        max_spikes=max_spikes, spike_unit=spike_unit,
                                        v_min=v_min if spiking else None)
        if gate is not None:
            k = t - gate_delay
            on = (gate[:, k % gate.shape[1]] != 0) if k >= 0 else np.zeros(gate.shape[0], bool)
            on = on[np.arange(n) % gate.shape[0]]
            s, u, v = s * on, u * on, v * on
        S.append(s if spiking else v)
        U.append(u)
        V.append(v)
    return np.array(S, np.int64), np.array(U), np.array(V)


def _chain(seed, n_in=24, n_out=18, steps=40):
    rng = np.random.default_rng(seed)
    weights = rng.integers(-200, 250, size=(n_out, n_in)) * (rng.random((n_out, n_in)) < 0.4)
    data = (rng.random((n_in, steps)) < 0.4).astype(np.int64)
    params = dict(vth=int(rng.integers(20, 200)), bias_mant=rng.integers(-50, 200, n_out),
                  bias_exp=2, reset_interval=7, reset_offset=3)
    return rng, weights, data, params


def _mismatches(got, want):
    return [int(np.count_nonzero(g != w)) for g, w in zip(got, want)]


@pytest.mark.lava
def test_loihi_lif_without_options_equals_lavas_lifreset():
    from nmc_deploy.simulate.lava.lif import LoihiLIF
    from lava.proc.lif.process import LIFReset

    rng, weights, data, p = _chain(0)
    du, dv, steps = int(rng.integers(0, 4096)), int(rng.integers(0, 4096)), data.shape[1]
    kw = dict(shape=(weights.shape[0],), du=du, dv=dv, **p)

    def make():
        return {"lava": LIFReset(**kw), "ours": LoihiLIF(**kw)}

    got = _run_lava(make, data, weights, -1, steps)
    want = _expected(data, weights, -1, steps, du=du, dv=dv, **p)
    assert got["lava"][0].sum() > 10, "no spikes: the test would not test thresholds"
    assert _mismatches(got["ours"], got["lava"]) == [0, 0, 0]
    assert _mismatches(got["ours"], want) == [0, 0, 0]


@pytest.mark.lava
@pytest.mark.parametrize("options", [
    dict(window=4, first_step=3),
    dict(gate_delay=2),
    dict(window=5, first_step=3, gate_delay=1, reset_subtract=1500),
    dict(window=4, first_step=3, gate_delay=0, spiking=False),
    # multi spikes (graded counts; spike_unit = 64 vth + 1 is set from vth below), with a
    # subtractive or a zero reset, a clamp, a gate
    dict(window=5, first_step=3, max_spikes=9, reset_subtract="unit"),
    dict(max_spikes=4, gate_delay=1, v_min=-3000),
    dict(window=5, first_step=3, v_min="per-neuron", reset_subtract=1500),
])
def test_loihi_lif_options_equal_the_kernel(options):
    from nmc_deploy.simulate.lava.lif import LoihiLIF

    rng, weights, data, p = _chain(1)
    n, steps = weights.shape[0], data.shape[1]
    du, dv = rng.integers(0, 4096, n), rng.integers(0, 4096, n)  # per-neuron decays
    options = dict(options)
    p["bias_mant"] = p["bias_mant"] * (4 if options.get("max_spikes", 1) > 1 else 1)
    unit = (p["vth"] << 6) + 1
    if options.get("max_spikes", 1) > 1:
        options["spike_unit"] = unit
    if options.get("reset_subtract") == "unit":
        options["reset_subtract"] = unit
    if isinstance(options.get("v_min"), str):
        options["v_min"] = -rng.integers(0, 4000, n)
    gate = None
    if "gate_delay" in options:
        gate = (rng.random((3, steps)) < 0.6).astype(np.int64)
        options["gate_tokens"] = 3

    def make():
        return {"ours": LoihiLIF(shape=(n,), du=du, dv=dv, **p, **options)}

    got = _run_lava(make, data, weights, 0, steps, gate=gate)["ours"]
    exp_options = {k: v for k, v in options.items() if k != "gate_tokens"}
    want = _expected(data, weights, 0, steps, du=du, dv=dv, gate=gate, **p, **exp_options)
    assert np.count_nonzero(want[0]) > 10, "no output: the test would not test the options"
    if options.get("max_spikes", 1) > 1:
        assert want[0].max() > 1, "no count above 1: the test would not test multi spikes"
    if options.get("v_min") is not None:
        assert np.any(want[2] == np.broadcast_to(options["v_min"], want[2].shape)), \
            "the clamp never acts"
    assert _mismatches(got, want) == [0, 0, 0]
