"""The independent NIR executor against hand-computed equations on tiny graphs."""
import dataclasses
import math

import numpy as np
import pytest

import nir

from nmc_deploy.errors import GraphError
from oracles.nir_executor import (Discretisation, count_mismatches, discretisation_of,
                                         execute_nir, flatten_nir)


def chain(*nodes, n_in, metadata=None, **named):
    """Input(n_in) -> nodes... -> Output, named n0, n1, ... (or by keyword)."""
    items = list(named.items()) or [(f"n{i}", n) for i, n in enumerate(nodes)]
    all_nodes = {"input": nir.Input(np.atleast_1d(np.array(n_in))), **dict(items),
                 "output": nir.Output(np.array([1]))}
    order = list(all_nodes)
    return nir.NIRGraph(nodes=all_nodes, edges=list(zip(order[:-1], order[1:])),
                        metadata=metadata or {}, type_check=False)


def ones(n=1):
    return np.ones(n)


def drive(values):
    """(B=1, T, 1) input sequence."""
    return np.asarray(values, np.float64).reshape(1, -1, 1)


def trace(out, name):
    return out[name][0, :, 0].numpy()


def test_lif_forward_euler_by_hand():
    # tau = 2 dt: v = 0.5 v + 0.5 (v_leak + r x); r = 1, v_leak = 0.2, th = 0.8, reset 0.1
    lif = nir.LIF(tau=np.full(1, 2e-3), r=ones(), v_leak=np.full(1, 0.2),
                  v_threshold=np.full(1, 0.8), v_reset=np.full(1, 0.1))
    out = execute_nir(chain(lif=lif, n_in=1), drive([1, 1, 1, 0, 0]), dt=1e-3)
    v, expect_z = 0.0, []
    for x in [1, 1, 1, 0, 0]:
        v = 0.5 * v + 0.5 * (0.2 + x)
        expect_z.append(v > 0.8)
        v = 0.1 if v > 0.8 else v
    # hand values: 0.6, 0.9 -> spike -> 0.1, 0.65, 0.425, 0.3125
    assert expect_z == [False, True, False, False, False]
    assert count_mismatches(trace(out, "lif"), np.array(expect_z)) == 0


def test_li_exact_matches_closed_form():
    # exact integration of tau dv/dt = -v + r x with constant x: v[t] = r x (1 - a^(t+1))
    tau, dt, r, x = 0.02, 1e-3, 3.0, 0.7
    li = nir.LI(tau=np.full(1, tau), r=np.full(1, r), v_leak=np.zeros(1))
    out = execute_nir(chain(li=li, n_in=1), drive([x] * 6), dt=dt, integrator="exact")
    a = math.exp(-dt / tau)
    expect = [r * x * (1 - a ** (t + 1)) for t in range(6)]
    np.testing.assert_allclose(trace(out, "li"), expect, rtol=1e-13)
    euler = execute_nir(chain(li=li, n_in=1), drive([x] * 6), dt=dt)
    np.testing.assert_allclose(trace(euler, "li"),
                               [r * x * (1 - (1 - dt / tau) ** (t + 1)) for t in range(6)],
                               rtol=1e-13)


@pytest.mark.parametrize("cmp, expect", [(">=", [0, 1, 0, 1]), (">", [0, 0, 1, 0])])
def test_if_threshold_comparison_at_equality(cmp, expect):
    # v += r dt x with r dt = 1: 0.5, 1.0 (spike only with >=), ...
    if_node = nir.IF(r=ones(), v_threshold=ones(), v_reset=np.zeros(1))
    out = execute_nir(chain(z=if_node, n_in=1), drive([0.5] * 4), dt=1.0,
                      threshold_comparison=cmp)
    assert count_mismatches(trace(out, "z"), np.array(expect)) == 0


def test_if_subtract_reset_by_hand():
    # x = 0.75, th = 1: v 0.75, 1.5 -> 0.5, 1.25 -> 0.25, 1.0 (no spike with >), 1.75 -> 0.75
    if_node = nir.IF(r=ones(), v_threshold=ones(), v_reset=np.zeros(1))
    out = execute_nir(chain(z=if_node, n_in=1), drive([0.75] * 5), dt=1.0, reset="subtract")
    assert count_mismatches(trace(out, "z"), np.array([0, 1, 1, 0, 1])) == 0
    zero = execute_nir(chain(z=if_node, n_in=1), drive([0.75] * 5), dt=1.0)
    assert count_mismatches(trace(zero, "z"), np.array([0, 1, 0, 1, 0])) == 0


def test_integrator_i_sums_r_dt_x():
    node = nir.I(r=np.full(1, 250.0))
    x = [1, 0, 2, 1]
    out = execute_nir(chain(i=node, n_in=1), drive(x), dt=2e-3)
    np.testing.assert_allclose(trace(out, "i"), 0.5 * np.cumsum(x), rtol=1e-14)


@pytest.mark.parametrize("integrator", ["forward-euler", "exact"])
def test_cubalif_by_hand(integrator):
    dt, ts, tm, r, w_in, th = 1e-3, 4e-3, 8e-3, 2.0, 3.0, 1.0
    node = nir.CubaLIF(tau_syn=np.full(1, ts), tau_mem=np.full(1, tm), r=np.full(1, r),
                       v_leak=np.full(1, 0.05), v_threshold=np.full(1, th),
                       v_reset=np.zeros(1), w_in=np.full(1, w_in))
    x = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0]
    out = execute_nir(chain(c=node, n_in=1), drive(x), dt=dt, integrator=integrator)
    k = (lambda tau: dt / tau) if integrator == "forward-euler" else \
        (lambda tau: 1 - math.exp(-dt / tau))
    i = v = 0.0
    z = []
    for xt in x:
        i = (1 - k(ts)) * i + k(ts) * w_in * xt
        v = (1 - k(tm)) * v + k(tm) * (0.05 + r * i)
        z.append(v > th)
        v = 0.0 if v > th else v
    assert 0 < sum(z) < len(z)
    assert count_mismatches(trace(out, "c"), np.array(z)) == 0
    li = nir.CubaLI(tau_syn=node.tau_syn, tau_mem=node.tau_mem, r=node.r, v_leak=node.v_leak,
                    w_in=node.w_in)
    out = execute_nir(chain(c=li, n_in=1), drive(x), dt=dt, integrator=integrator)
    i = v = 0.0
    vs = []
    for xt in x:
        i = (1 - k(ts)) * i + k(ts) * w_in * xt
        v = (1 - k(tm)) * v + k(tm) * (0.05 + r * i)
        vs.append(v)
    np.testing.assert_allclose(trace(out, "c"), vs, rtol=1e-13)


def test_threshold_is_strict_and_stateless():
    th = nir.Threshold(threshold=np.full(1, 0.5))
    out = execute_nir(chain(th=th, n_in=1), drive([0.5, 0.6, 0.4, 0.5, 1.0]), dt=1.0,
                      threshold_comparison=">=")  # not applied to Threshold (NIR: strict)
    assert count_mismatches(trace(out, "th"), np.array([0, 1, 0, 0, 1])) == 0


def test_delay_shifts_each_element():
    delay = nir.Delay(delay=np.array([0.0, 1e-3, 3e-3]))
    x = np.random.default_rng(0).random((2, 6, 3))
    out = execute_nir(chain(d=delay, n_in=3), x, dt=1e-3)["d"].numpy()
    expect = np.zeros_like(x)
    for e, k in enumerate([0, 1, 3]):
        expect[:, k:, e] = x[:, :6 - k, e]
    np.testing.assert_array_equal(out, expect)
    with pytest.raises(GraphError, match="whole number"):
        execute_nir(chain(d=delay, n_in=3), x, dt=2e-3)


def test_linear_nodes_by_hand(rng):
    w = rng.standard_normal((3, 4))
    b = rng.standard_normal(3)
    s = rng.standard_normal(3)
    x = rng.standard_normal((2, 5, 4))
    g = chain(a=nir.Affine(weight=w, bias=b), sc=nir.Scale(scale=s),
              lin=nir.Linear(weight=np.eye(3)[::-1].copy()), n_in=4)
    out = execute_nir(g, x, dt=1.0)
    np.testing.assert_allclose(out["a"].numpy(), x @ w.T + b, rtol=1e-13)
    np.testing.assert_allclose(out["output"].numpy(), ((x @ w.T + b) * s)[..., ::-1],
                               rtol=1e-13)


def test_conv_pool_flatten_by_hand(rng):
    x = rng.integers(0, 3, (2, 3, 1, 4, 4)).astype(float)  # B, T, C, H, W
    w = rng.integers(-2, 3, (2, 1, 3, 3)).astype(float)
    g = chain(conv=nir.Conv2d(input_shape=(4, 4), weight=w, stride=1, padding=1, dilation=1,
                              groups=1, bias=np.array([0.5, -1.0])),
              pool=nir.SumPool2d(kernel_size=np.array([3, 3]), stride=np.array([2, 2]),
                                 padding=np.array([1, 1])),
              avg=nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                padding=np.array([0, 0])),
              flat=nir.Flatten(input_type={"input": np.array([2, 1, 1])}, start_dim=0),
              n_in=(1, 4, 4))
    out = execute_nir(g, x, dt=1.0)
    xp = np.pad(x, [(0, 0)] * 3 + [(1, 1), (1, 1)])
    conv = np.zeros((2, 3, 2, 4, 4))
    for co in range(2):
        for i in range(4):
            for j in range(4):
                conv[:, :, co, i, j] = (xp[:, :, 0, i:i + 3, j:j + 3] * w[co, 0]).sum((-1, -2))
        conv[:, :, co] += [0.5, -1.0][co]
    np.testing.assert_allclose(out["conv"].numpy(), conv, rtol=1e-13)
    cp = np.pad(conv, [(0, 0)] * 3 + [(1, 1), (1, 1)])
    pool = np.stack([np.stack([cp[..., 2 * i:2 * i + 3, 2 * j:2 * j + 3].sum((-1, -2))
                               for j in range(2)], -1) for i in range(2)], -2)
    np.testing.assert_allclose(out["pool"].numpy(), pool, rtol=1e-13)
    np.testing.assert_allclose(out["avg"].numpy(), pool.mean((-1, -2), keepdims=True),
                               rtol=1e-13)
    assert tuple(out["flat"].shape) == (2, 3, 2)


def test_conv1d_by_hand(rng):
    x = rng.standard_normal((2, 3, 2, 5))
    w = rng.standard_normal((3, 2, 1))
    g = chain(c=nir.Conv1d(input_shape=5, weight=w, stride=1, padding=0, dilation=1, groups=1,
                           bias=np.zeros(3)), n_in=(2, 5))
    out = execute_nir(g, x, dt=1.0)
    np.testing.assert_allclose(out["c"].numpy(), np.einsum("oi,btin->bton", w[..., 0], x),
                               rtol=1e-13)


def recurrent_graph(w_in, w_rec, beta, nested):
    lif = nir.LIF(tau=np.full(2, 1e-3 / (1 - beta)), r=np.full(2, 1 / (1 - beta)),
                  v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2))
    rec = nir.Linear(weight=w_rec)
    fc = nir.Linear(weight=w_in)
    if nested:
        sub = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "lif": lif, "rec": rec,
                                  "output": nir.Output(np.array([2]))},
                           edges=[("input", "lif"), ("lif", "rec"), ("rec", "lif"),
                                  ("lif", "output")], type_check=False)
        nodes = {"input": nir.Input(np.array([2])), "fc": fc, "sub": sub,
                 "output": nir.Output(np.array([2]))}
        edges = [("input", "fc"), ("fc", "sub"), ("sub", "output")]
    else:
        nodes = {"input": nir.Input(np.array([2])), "fc": fc, "lif": lif, "rec": rec,
                 "output": nir.Output(np.array([2]))}
        edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"),
                 ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


@pytest.mark.parametrize("nested", [False, True])
def test_recurrence_has_one_step_delay(nested):
    # v_t = beta v + W_in x_t + W_rec z_{t-1}; z = v > 1; reset to 0
    w_in = np.array([[0.6, 0.1], [0.2, 0.4]])
    w_rec = np.array([[0.0, 0.9], [-0.5, 0.3]])
    beta = 0.5
    x = (np.random.default_rng(3).random((2, 20, 2)) < 0.6).astype(float)
    out = execute_nir(recurrent_graph(w_in, w_rec, beta, nested), x, dt=1e-3)
    v = np.zeros((2, 2))
    z = np.zeros((2, 2))
    zs = []
    for t in range(20):
        v = beta * v + x[:, t] @ w_in.T + z @ w_rec.T
        z = (v > 1).astype(float)
        v = np.where(z > 0, 0.0, v)
        zs.append(z)
    zs = np.stack(zs, 1)
    assert 0 < zs.sum() < zs.size
    name = "sub/lif" if nested else "lif"
    assert count_mismatches(out[name], zs) == 0
    assert count_mismatches(out["output"], zs) == 0
    if nested:
        assert count_mismatches(out["sub"], zs) == 0


def test_fan_in_sums(rng):
    a, b = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    lif = nir.LIF(tau=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3),
                  v_threshold=np.full(3, 0.3), v_reset=np.zeros(3))
    nodes = {"input": nir.Input(np.array([2])), "a": nir.Linear(weight=a),
             "b": nir.Linear(weight=b), "lif": lif, "output": nir.Output(np.array([3]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("input", "b"), ("a", "lif"),
                                         ("b", "lif"), ("lif", "output")], type_check=False)
    one = chain(ab=nir.Linear(weight=a + b), lif=lif, n_in=2)
    x = (rng.random((3, 10, 2)) < 0.5).astype(float)
    out_g, out_one = execute_nir(g, x, dt=1e-3), execute_nir(one, x, dt=1e-3)
    assert out_g["lif"].sum() > 0
    assert count_mismatches(out_g["lif"], out_one["lif"]) == 0


def test_discretisation_from_metadata_and_errors():
    g = chain(i=nir.I(r=np.ones(1)), n_in=1,
              metadata={"dt": 0.5, "integrator": "exact", "threshold_comparison": ">="})
    d = discretisation_of(g)
    assert d == Discretisation(0.5, "exact", ">=", "zero")
    assert discretisation_of(g, dt=0.25).dt == 0.25
    with pytest.raises(GraphError, match="dt"):
        execute_nir(chain(i=nir.I(r=np.ones(1)), n_in=1), drive([1]))
    with pytest.raises(GraphError, match="integrator"):
        Discretisation(1.0, "runge-kutta")


def test_flatten_nir_names_and_input_not_mutated():
    g = recurrent_graph(np.eye(2), np.eye(2), 0.5, nested=True)
    flat = flatten_nir(g)
    assert set(flat.nodes) == {"input", "fc", "sub/input", "sub/lif", "sub/rec", "sub/output",
                               "output"}
    assert ("fc", "sub/input") in flat.edges and ("sub/output", "output") in flat.edges
    assert flat.aliases == {"sub": "sub/output"}
    assert set(g.nodes) == {"input", "fc", "sub", "output"}


def test_unsupported_node_is_one_line_error():
    @dataclasses.dataclass(eq=False)
    class Odd(nir.NIRNode):
        x: np.ndarray

        def __post_init__(self):
            self.input_type = {"input": np.array([1])}
            self.output_type = {"output": np.array([1])}

    g = chain(odd=nir.Scale(scale=np.ones(1)), n_in=1)
    g.nodes["odd"] = Odd(x=np.ones(1))
    with pytest.raises(GraphError, match="odd: the executor does not run NIR node type 'Odd'"):
        execute_nir(g, drive([1]), dt=1.0)


def test_input_shape_must_match_the_input_node():
    from nmc_deploy.errors import SimulationError

    g = chain(s=nir.Scale(scale=np.ones(3)), n_in=3)
    with pytest.raises(SimulationError, match="Input node's shape"):
        execute_nir(g, np.zeros((1, 4, 2)), dt=1.0)
