"""Our fixed-point kernels equal Lava's own bit-accurate ProcessModels (mismatches counted)."""
import numpy as np
import pytest
import scipy.sparse as sp

from nmc_deploy.loihi.neurons import lif_fixed_step
from nmc_deploy.loihi.synapses import lava_effective_weights, synaptic_input


def _run_lava_chain(data, weights, weight_exp, num_message_bits, lif_kw, steps, mixed_delay=0):
    """RingBuffer -> Sparse -> LIF in Lava; returns (spikes, u, v) per step from Monitors."""
    from nmc_deploy.simulate.lava import lava311

    lava311.import_lava_runtime()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor
    from lava.proc.sparse.process import Sparse

    src = RingBuffer(data=data.astype(np.int32))
    syn = Sparse(weights=sp.csr_matrix(weights), weight_exp=weight_exp, num_weight_bits=8,
                 num_message_bits=num_message_bits)
    lif = LIF(shape=(weights.shape[0],), **lif_kw)
    src.s_out.connect(syn.s_in)
    syn.a_out.connect(lif.a_in)
    mons = {}
    for var in ("u", "v"):
        mons[var] = Monitor()
        mons[var].probe(getattr(lif, var), steps)
    mons["s"] = Monitor()
    mons["s"].probe(lif.s_out, steps)
    try:
        lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = {}
        for key, mon in mons.items():
            data_ = mon.get_data()
            (proc_data,) = data_.values()
            (arr,) = proc_data.values()
            out[key] = np.asarray(arr).astype(np.int64)
    finally:
        lif.stop()
    return out["s"], out["u"], out["v"]


def _reference_chain(data, weights, weight_exp, lif_kw, steps):
    w = lava_effective_weights(weights)
    n = weights.shape[0]
    u = np.zeros(n, np.int64)
    v = np.zeros(n, np.int64)
    bias_eff = np.asarray(lif_kw.get("bias_mant", 0), np.int64) << np.asarray(
        lif_kw.get("bias_exp", 0), np.int64)
    a_prev = np.zeros(n, np.int64)
    S, U, V = [], [], []
    for t in range(steps):  # Sparse delivers the previous step's accumulation
        a_in = a_prev
        col = data[:, t % data.shape[1]][:, None]
        a_prev = synaptic_input(sp.csr_matrix(w), col, weight_exp)[:, 0]
        u, v, s, _ = lif_fixed_step(u, v, a_in, du=lif_kw["du"], dv=lif_kw["dv"],
                                    vth=lif_kw["vth"], bias_eff=bias_eff)
        S.append(s)
        U.append(u)
        V.append(v)
    return np.array(S), np.array(U), np.array(V)


@pytest.mark.lava
@pytest.mark.parametrize("case", range(4))
def test_sparse_and_lif_kernels_equal_lava_bit_accurate_models(case):
    rng = np.random.default_rng(case)
    n_in, n_out, steps = 40, 30, 60
    graded = case % 2 == 1
    weights = rng.integers(-300, 300, size=(n_out, n_in)) * (rng.random((n_out, n_in)) < 0.3)
    if case == 2:
        weights = np.abs(weights)  # excitatory sign mode
    data = rng.integers(0, 17, (n_in, steps)) if graded else (rng.random((n_in, steps)) < 0.3)
    weight_exp = [0, -2, 3, -5][case]
    lif_kw = dict(du=int(rng.integers(0, 4096)), dv=int(rng.integers(0, 4096)),
                  vth=int(rng.integers(50, 2000)),
                  bias_mant=rng.integers(-500, 500, n_out), bias_exp=int(rng.integers(0, 4)))
    s_l, u_l, v_l = _run_lava_chain(data.astype(np.int64), weights, weight_exp,
                                    5 if graded else 0, lif_kw, steps)
    s_r, u_r, v_r = _reference_chain(data.astype(np.int64), weights, weight_exp, lif_kw, steps)
    assert s_r.sum() > 0, "test input produced no spikes: it would not test thresholds"
    assert np.count_nonzero(s_l != s_r) == 0
    assert np.count_nonzero(u_l != u_r) == 0
    assert np.count_nonzero(v_l != v_r) == 0


def test_effective_weights_follow_lava_sign_modes():
    assert lava_effective_weights(np.array([[2, -1], [5, 4]])).tolist() == [[2, -2], [4, 4]]
    assert lava_effective_weights(np.array([[3, 300], [0, 1]])).tolist() == [[3, 255], [0, 1]]
    assert lava_effective_weights(np.array([[-3, -300]])).tolist() == [[-3, -255]]


def test_lif_kernel_golden_trace():
    # Hand-derived: du=4095 (u = a_in << 6), dv=2048 (v halves), vth=3 (fire on v > 192).
    # a_in=2 each step: u=128; v: 128, 64+128=192 (no spike, not > 192), 96+128=224 -> spike.
    u = v = np.zeros(1, np.int64)
    got = []
    for _ in range(4):
        u, v, s, _ = lif_fixed_step(u, v, np.array([2]), du=4095, dv=2048, vth=3, bias_eff=0)
        got.append((int(v[0]), bool(s[0])))
    assert got == [(128, False), (192, False), (0, True), (128, False)]
