"""The float LIF step (lif_float_step) against closed forms and hand traces, and against its
fixed-point twin where the fixed point is exact."""
import numpy as np
import pytest

from nmc_deploy.loihi.constants import DU_NO_CURRENT, LAVA_LIF
from nmc_deploy.loihi.neurons import (effective_bias, lif_fixed_step, lif_fixed_step_f64,
                                     lif_float_step)


def _run_float(x, **kw):
    """Run lif_float_step over x (T, n); returns (v, spikes) per step."""
    i_syn = v = np.zeros(x.shape[1])
    V, S = [], []
    for x_t in x:
        i_syn, v, s = lif_float_step(i_syn, v, x_t, **kw)
        V.append(v)
        S.append(s)
    return np.array(V), np.array(S)


def test_leaky_integrator_with_current_equals_closed_form(rng):
    # constant input x and bias b, no threshold: i[k] = x (1 - a_s^k) / (1 - a_s),
    # v[t] = sum_{k=1..t} alpha^(t-k) (i[k] + b)
    n, T = 7, 12
    alpha, alpha_syn = rng.uniform(0.2, 0.95, n), rng.uniform(0.1, 0.9, n)
    x, b = rng.normal(0, 1, n), rng.normal(0, 0.3, n)
    v, s = _run_float(np.tile(x, (T, 1)), alpha=alpha, alpha_syn=alpha_syn, bias=b,
                      v_threshold=None)
    i = np.array([x * (1 - alpha_syn ** k) / (1 - alpha_syn) for k in range(1, T + 1)])
    expected = np.array([sum(alpha ** (t - k) * (i[k - 1] + b) for k in range(1, t + 1))
                         for t in range(1, T + 1)])
    np.testing.assert_allclose(v, expected, rtol=1e-12, atol=1e-12)
    assert not s.any()


@pytest.mark.parametrize("ge,subtract,expected", [
    # alpha = 0.5, x = 1, threshold 1.5: v = 1, 1.5, (1.75 -> spike), ...
    (False, False, [(1.0, False), (1.5, False), (0.0, True), (1.0, False)]),
    (True, False, [(1.0, False), (0.0, True), (1.0, False), (0.0, True)]),
    (False, True, [(1.0, False), (1.5, False), (0.25, True), (1.125, False)]),
])
def test_lif_float_golden_trace(ge, subtract, expected):
    v, s = _run_float(np.ones((4, 1)), alpha=0.5, alpha_syn=None, bias=0.0, v_threshold=1.5,
                      threshold_ge=ge, reset_subtract=subtract)
    assert [(float(a), bool(b)) for a, b in zip(v[:, 0], s[:, 0])] == expected


def test_no_current_leaves_the_current_state_alone():
    i_syn = np.array([3.0])
    i2, v, _ = lif_float_step(i_syn, np.zeros(1), np.array([2.0]), alpha=1.0, alpha_syn=None,
                              bias=0.0, v_threshold=None)
    assert i2 is i_syn and v.tolist() == [2.0]


@pytest.mark.parametrize("subtract", [False, True])
def test_float_twin_equals_fixed_step_where_fixed_point_is_exact(rng, subtract):
    # alpha in {1, 0} (dv = 0: no leak, dv = 4096: v forgets), no current (du = 4095),
    # integer input a: the float step on x = a << 6, threshold 64 vth, bias << bias_exp
    # computes exactly the fixed-point step.
    n, T = 30, 40
    dv = np.where(rng.random(n) < 0.5, 0, LAVA_LIF.decay_unity)
    alpha = 1.0 - dv / LAVA_LIF.decay_unity
    vth = int(rng.integers(5, 40))
    bias_mant, bias_exp = rng.integers(-20, 60, n), 2
    a = rng.integers(-3, 8, (T, n))
    shift = 2 ** LAVA_LIF.act_shift
    theta = vth * 2 ** LAVA_LIF.vth_shift
    bias = effective_bias(bias_mant, bias_exp)
    u = v = np.zeros(n, np.int64)
    V, S = [], []
    for a_t in a:
        u, v, s, wrapped = lif_fixed_step(u, v, a_t, du=DU_NO_CURRENT, dv=dv, vth=vth,
                                          bias_eff=bias, reset_subtract=theta if subtract else 0)
        assert not wrapped.any()
        V.append(v)
        S.append(s)
    vf, sf = _run_float((a * shift).astype(np.float64), alpha=alpha, alpha_syn=None,
                        bias=bias.astype(np.float64), v_threshold=float(theta),
                        reset_subtract=subtract)
    assert np.array(S).sum() > 20
    assert np.count_nonzero(np.array(S) != sf) == 0
    assert np.array_equal(np.array(V).astype(np.float64), vf)


def _random_lif_case(rng, n: int, big: bool):
    """States, inputs and parameters spanning Lava's ranges; ``big``: inputs that wrap u
    and saturate v."""
    lim = 2 ** 23
    u = rng.integers(-lim + 1, lim, n)
    v = rng.integers(-lim + 1, lim, n)
    a_max = 2 ** 20 if big else 2 ** 10
    a = rng.integers(-a_max, a_max, n)
    du = int(rng.choice([4095, 0, 100, 4000])) if rng.random() < 0.5 else \
        rng.choice([4095, 0, 17, 2048, 4094], n)
    dv = int(rng.integers(0, 4096)) if rng.random() < 0.5 else rng.integers(0, 4096, n)
    vth = None if rng.random() < 0.2 else int(rng.integers(0, 2 ** 17))
    bias = effective_bias(rng.integers(-4096, 4096, n), int(rng.integers(-3, 8)))
    sub = int(rng.integers(1, 2 ** 20)) if rng.random() < 0.3 else 0
    return u, v, a, dict(du=du, dv=dv, vth=vth, bias_eff=bias, reset_subtract=sub)


@pytest.mark.parametrize("seed", range(40))
def test_float64_fixed_step_equals_integer_step(seed):
    # the float64 twin of the integer step gives the same integers, wraps and saturations
    rng = np.random.default_rng(seed)
    u, v, a, kw = _random_lif_case(rng, 500, big=seed % 2 == 1)
    u1, v1, s1, w1 = lif_fixed_step(u, v, a, **kw)
    u0, v0, a0 = u.copy(), v.copy(), a.copy()
    u2, v2, s2, w2, at_limit = lif_fixed_step_f64(u.astype(float), v.astype(float),
                                                  a.astype(float), **kw)
    assert np.array_equal(u, u0) and np.array_equal(v, v0) and np.array_equal(a, a0)
    assert u2.dtype == v2.dtype == np.float64
    assert np.array_equal(u1, u2) and np.array_equal(v1, v2) and np.array_equal(s1, s2)
    assert np.array_equal(w1, np.zeros(u.shape, bool) if w2 is None else w2)
    *_, mask1 = lif_fixed_step(u, v, a, limit_mask=True, **kw)
    assert np.array_equal(mask1, np.zeros(u.shape, bool) if at_limit is None else at_limit)
    # the mask is taken before the reset: saturated neurons that spiked count too
    assert not np.any(np.abs(v1) == 2 ** 23 - 1) or mask1.any()
    if seed % 2:  # the big inputs do reach the wrap and the saturation
        assert w1.any() and np.any(np.abs(v1) == 2 ** 23 - 1)
        if kw["reset_subtract"]:  # saturated, spiked and subtracted: still counted
            assert np.any(mask1 & s1 & (np.abs(v1) < 2 ** 23 - 1))


def test_float64_fixed_step_runs_equal_integer_runs(rng):
    # 30 steps of one population from rest: state carried in float64 stays exact
    n, T = 300, 30
    _, _, _, kw = _random_lif_case(rng, n, big=False)
    kw["vth"] = 200
    a = rng.integers(-40, 400, (T, n))
    ui = vi = np.zeros(n, np.int64)
    uf = vf = np.zeros(n)
    spikes = 0
    for a_t in a:
        ui, vi, si, _ = lif_fixed_step(ui, vi, a_t, **kw)
        uf, vf, sf, _, _ = lif_fixed_step_f64(uf, vf, a_t.astype(float), **kw)
        assert np.array_equal(si, sf) and np.array_equal(vi, vf) and np.array_equal(ui, uf)
        spikes += int(si.sum())
    assert spikes > 100
