"""Standard NIR neurons (IF, LIF exact, CubaLIF, LI, CubaLI), AvgPool2d, Delay and
self-recurrence: the float simulator equals a direct numpy implementation of the node
equations (written here from the node docstrings), and the fixed-point reference equals Lava
spike for spike and voltage for voltage, on input sequences (B, T, *input_shape)."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nmc_deploy.compile.lower import lower_graph
from nmc_deploy.compile.quantize import quantize_program
from nmc_deploy.errors import LoweringError
from nmc_deploy.ir import (IF, LI, LIF, Affine, AvgPool2d, Conv2d, CubaLI, CubaLIF, Delay,
                           Flatten, Graph, Input, Output, SumPool2d, Threshold)

# ------------------------------------------------------------------------------ factories


def if_cnn(rng, pool: str = "avg", reset: str = "zero", T: int = 8):
    """sinabs style: Conv2d -> IF -> SumPool2d -> AvgPool2d | Threshold -> Flatten -> Affine
    -> IF, dt = 1 (time in steps), r = 1."""
    c_in, c, hw, n_out = 2, 4, 6, 5
    ones = lambda *s: np.ones(s)  # noqa: E731
    nodes = {
        "input": Input(shape=(c_in, hw, hw)),
        "conv": Conv2d(weight=rng.normal(0.15, 0.5, (c, c_in, 3, 3)),
                       bias=rng.normal(0.05, 0.05, c), input_hw=(hw, hw), padding=(1, 1)),
        "if1": IF(r=ones(c, hw, hw), v_threshold=ones(c, hw, hw), v_reset=0 * ones(c, hw, hw)),
        "sum": SumPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0),
                         input_chw=(c, hw, hw)),
    }
    if pool == "avg":
        nodes["pool"] = AvgPool2d(kernel_size=(2, 2), stride=(1, 1), padding=(0, 0),
                                  input_chw=(c, 3, 3))
        flat = c * 2 * 2
    else:
        nodes["pool"] = Threshold(threshold=np.full((c, 3, 3), 0.5))
        flat = c * 3 * 3
    shape = nodes["pool"].output_shape
    nodes.update({
        "flat": Flatten(input_type=shape, start_dim=0),
        "fc": Affine(weight=rng.normal(0.3, 0.6, (n_out, flat)), bias=rng.normal(0, 0.05, n_out)),
        "if2": IF(r=np.full(n_out, 1.5), v_threshold=np.full(n_out, 1.2),
                  v_reset=np.zeros(n_out)),
        "output": Output(shape=(n_out,)),
    })
    edges = [("input", "conv"), ("conv", "if1"), ("if1", "sum"), ("sum", "pool"),
             ("pool", "flat"), ("flat", "fc"), ("fc", "if2"), ("if2", "output")]
    return Graph(nodes, tuple(edges), {"dt": 1.0, "integrator": "forward-euler",
                                       "reset": reset, "time_steps": T, "input_levels": 1})


def rsynaptic_net(rng, readout: str = "li", T: int = 10, rec_delay: int = 0,
                  per_neuron: bool = False):
    """snnTorch RSynaptic style: fc -> CubaLIF with a self-recurrent Affine (bias included)
    -> fc -> LI (or CubaLI) readout. tau_syn = 4 dt, tau_mem = 8 dt (exact on the /4096
    grid); w_in and r as snnTorch exports them (w_in = tau_syn/dt, r = tau_mem/dt).
    ``rec_delay``: a Delay of that many steps inside the recurrent loop (lif -> d -> rec).
    ``per_neuron``: tau_syn of 2, 4 or 8 dt per neuron (per-neuron du, still exact)."""
    dt, n_in, n, n_out = 1e-4, 8, 12, 4
    full = lambda v, m=n: np.full(m, float(v))  # noqa: E731
    nodes = {
        "input": Input(shape=(n_in,)),
        "fc": Affine(weight=rng.normal(0.3, 0.5, (n, n_in)), bias=rng.normal(0.02, 0.02, n)),
        "lif": CubaLIF(tau_syn=(rng.choice([2, 4, 8], n) * dt if per_neuron else full(4 * dt)),
                       tau_mem=full(8 * dt), r=full(8), v_leak=full(0.0),
                       v_threshold=rng.uniform(0.8, 1.2, n), v_reset=full(0.0), w_in=full(4)),
        "rec": Affine(weight=rng.normal(0.0, 0.25, (n, n)), bias=rng.normal(0.01, 0.01, n)),
        "head": Affine(weight=rng.normal(0.0, 0.5, (n_out, n)), bias=rng.normal(0, 0.1, n_out)),
        "output": Output(shape=(n_out,)),
    }
    if readout == "li":
        nodes["out"] = LI(tau=full(5 * dt, n_out), r=full(1.0, n_out), v_leak=full(0.1, n_out))
    else:
        nodes["out"] = CubaLI(tau_syn=full(2 * dt, n_out), tau_mem=full(4 * dt, n_out),
                              r=full(1.0, n_out), v_leak=full(0.0, n_out), w_in=full(1.0, n_out))
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "head"),
             ("head", "out"), ("out", "output")]
    if rec_delay:
        nodes["d"] = Delay(delay=full(rec_delay * dt))
        edges[2:3] = [("lif", "d"), ("d", "rec")]
    return Graph(nodes, tuple(edges), {"dt": dt, "integrator": "forward-euler", "reset": "zero",
                                       "time_steps": T, "input_levels": 1})


def exact_lif_net(rng, T: int = 8, ge: bool = False):
    """norse/rockpool style LIF with the exact integrator, integer current input, v_leak."""
    dt, n_in, n1, n2 = 1e-3, 10, 16, 6
    nodes = {
        "input": Input(shape=(n_in,)),
        "fc1": Affine(weight=rng.normal(0.1, 0.3, (n1, n_in)), bias=np.zeros(n1)),
        "lif1": LIF(tau=rng.uniform(3e-3, 6e-3, n1), r=rng.uniform(0.8, 1.5, n1),
                    v_leak=np.full(n1, 0.2), v_threshold=np.full(n1, 0.6), v_reset=np.zeros(n1)),
        "fc2": Affine(weight=rng.normal(0.4, 0.6, (n2, n1)), bias=np.full(n2, 0.05)),
        "lif2": LIF(tau=np.full(n2, 4e-3), r=np.full(n2, 2.0), v_leak=np.zeros(n2),
                    v_threshold=np.full(n2, 0.7), v_reset=np.zeros(n2)),
        "output": Output(shape=(n2,)),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
             ("lif2", "output")]
    md = {"dt": dt, "integrator": "exact", "reset": "zero", "time_steps": T, "input_levels": 1}
    if ge:
        md["threshold_comparison"] = ">="
    return Graph(nodes, tuple(edges), md)


def delay_net(rng, T: int = 9, steps: int = 2):
    """LIF -> Affine (bias) -> Delay -> LIF, plus the input delayed into the same LIF, and a
    CubaLI readout: delayed spikes, delayed input and a delayed constant."""
    dt, n_in, n1, n2, n_out = 1e-3, 6, 10, 8, 3
    full = lambda v, m: np.full(m, float(v))  # noqa: E731
    nodes = {
        "input": Input(shape=(n_in,)),
        "fc1": Affine(weight=rng.normal(0.4, 0.5, (n1, n_in)), bias=np.zeros(n1)),
        "lif1": LIF(tau=full(2 * dt, n1), r=full(1, n1), v_leak=full(0, n1),
                    v_threshold=full(0.5, n1), v_reset=full(0, n1)),
        "fc2": Affine(weight=rng.normal(0.3, 0.5, (n2, n1)), bias=rng.normal(0.1, 0.05, n2)),
        "delay": Delay(delay=full(steps * dt, n2)),
        "skip": Affine(weight=rng.normal(0.2, 0.3, (n2, n_in)), bias=np.zeros(n2)),
        "dskip": Delay(delay=full(1 * dt, n2)),
        "lif2": LIF(tau=full(4 * dt, n2), r=full(1, n2), v_leak=full(0, n2),
                    v_threshold=full(0.6, n2), v_reset=full(0, n2)),
        "head": Affine(weight=rng.normal(0, 0.5, (n_out, n2)), bias=np.zeros(n_out)),
        "out": CubaLI(tau_syn=full(2 * dt, n_out), tau_mem=full(4 * dt, n_out),
                      r=full(1, n_out), v_leak=full(0, n_out), w_in=full(1, n_out)),
        "output": Output(shape=(n_out,)),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "delay"),
             ("delay", "lif2"), ("input", "skip"), ("skip", "dskip"), ("dskip", "lif2"),
             ("lif2", "head"), ("head", "out"), ("out", "output")]
    return Graph(nodes, tuple(edges), {"dt": dt, "integrator": "forward-euler",
                                       "reset": "zero", "time_steps": T, "input_levels": 1})


def spike_input(rng, graph, batch: int, T: int, p: float = 0.3) -> np.ndarray:
    shape = graph.nodes[graph.input_name].shape
    return (rng.random((batch, T, *shape)) < p).astype(np.int64)


# --------------------------------------------------------------- numpy node equations


def run_numpy(graph: Graph, x: np.ndarray, recurrent=()) -> dict:
    """Every node's output per step, (B, T, *shape), from the node equations (float64).

    ``recurrent``: edges that carry the source's output of step t-1; at t = 0 (spikes before
    it are 0) an Affine source gives its bias, other sources 0.
    """
    md = graph.metadata
    dt, exact = float(md["dt"]), md.get("integrator") == "exact"
    ge = md.get("threshold_comparison", ">") == ">="
    subtract = md.get("reset", "zero") == "subtract"
    B, T = x.shape[:2]
    preds = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        preds[b].append((a, (a, b) in recurrent))
    order, done = [], set()
    while len(order) < len(graph.nodes):
        for n in graph.nodes:
            if n not in done and all(r or a in done for a, r in preds[n]):
                order.append(n)
                done.add(n)
    state = {n: {} for n in graph.nodes}
    outs = {n: [] for n in graph.nodes}
    prev = {n: (graph.nodes[n].bias if isinstance(graph.nodes[n], Affine) else 0.0)
            for n in graph.nodes}

    def spike(node, v):
        s = v >= node.v_threshold if ge else v > node.v_threshold
        v = np.where(s, v - node.v_threshold, v) if subtract else np.where(s, node.v_reset, v)
        return s.astype(np.float64), v

    for t in range(T):
        cur = {}
        for n in order:
            node = graph.nodes[n]
            st = state[n]
            if isinstance(node, Input):
                cur[n] = x[:, t].astype(np.float64)
                continue
            inp = sum(prev[a] if r else cur[a] for a, r in preds[n])
            if isinstance(node, Output):
                y = inp
            elif isinstance(node, Affine):
                y = inp.reshape(B, -1) @ node.weight.T + node.bias
            elif isinstance(node, Conv2d):
                y = F.conv2d(torch.tensor(inp), torch.tensor(node.weight),
                             torch.tensor(node.bias), stride=node.stride,
                             padding=node.padding).numpy()
            elif isinstance(node, SumPool2d):
                k = node.kernel_size
                y = F.avg_pool2d(torch.tensor(inp), k, node.stride, node.padding).numpy() * (
                    k[0] * k[1])
            elif isinstance(node, AvgPool2d):
                y = F.avg_pool2d(torch.tensor(inp), node.kernel_size, node.stride,
                                 node.padding, count_include_pad=True).numpy()
            elif isinstance(node, Flatten):
                y = inp.reshape(B, -1)
            elif isinstance(node, Delay):
                d = int(round(float(node.delay.flat[0]) / dt))
                buf = st.setdefault("buf", [np.zeros_like(inp)] * d)
                buf.append(inp)
                y = buf.pop(0)
            elif isinstance(node, Threshold):
                y = (inp > node.threshold).astype(np.float64)
            elif isinstance(node, IF):
                v = st.get("v", 0.0) + node.r * dt * inp
                y, st["v"] = spike(node, v)
            elif isinstance(node, (LIF, LI)):
                if exact:
                    a = np.exp(-dt / node.tau)
                    v = a * st.get("v", 0.0) + (1 - a) * (node.r * inp + node.v_leak)
                else:
                    v = ((1 - dt / node.tau) * st.get("v", 0.0) + node.r * dt / node.tau * inp
                         + dt / node.tau * node.v_leak)
                if isinstance(node, LI):
                    y = st["v"] = v
                else:
                    y, st["v"] = spike(node, v)
            elif isinstance(node, (CubaLIF, CubaLI)):
                i = ((1 - dt / node.tau_syn) * st.get("i", 0.0) +
                     node.w_in * dt / node.tau_syn * inp)
                v = ((1 - dt / node.tau_mem) * st.get("v", 0.0) + node.r * dt / node.tau_mem * i
                     + dt / node.tau_mem * node.v_leak)
                st["i"] = i
                if isinstance(node, CubaLI):
                    y = st["v"] = v
                else:
                    y, st["v"] = spike(node, v)
            else:
                raise TypeError(type(node).__name__)
            cur[n] = y
            outs[n].append(y)
        prev = cur
    return {n: np.stack(v, axis=1) for n, v in outs.items() if v}


# ------------------------------------------------------------------------------- helpers


def compile_graph(graph):
    fp = lower_graph(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fp, quantize_program(fp)


def sample_time(a: np.ndarray) -> np.ndarray:
    """(T, B, n) -> (B, T, n)."""
    return np.asarray(a).transpose(1, 0, 2)


def float_vs_numpy(graph, x, recurrent=()):
    fp, _ = compile_graph(graph)
    fl = simulate_float_seq(fp, x)
    ref = run_numpy(graph, x, recurrent)
    B, T = x.shape[:2]
    mismatches = {}
    for name, s in fl.spikes.items():
        mismatches[name] = int(np.count_nonzero(sample_time(s) != ref[name].reshape(B, T, -1)))
    for name, v in fl.voltages.items():
        assert np.allclose(sample_time(v), ref[name].reshape(B, T, -1), atol=1e-9), name
    assert np.allclose(fl.output_steps, ref[graph.output_name].reshape(B, T, -1), atol=1e-9)
    return fl, ref, mismatches


def simulate_float_seq(fp, x):
    from nmc_deploy.simulate.reference import simulate_float

    return simulate_float(fp, x)


def ref_vs_lava(program, x):
    from nmc_deploy.simulate.lava.backend import simulate_lava
    from nmc_deploy.simulate.reference import simulate_reference

    ref = simulate_reference(program, x)
    lav = simulate_lava(program, x)
    out_r, out_l = ref.outputs(), lav.outputs()
    assert set(out_r) == set(out_l)
    mism = {k: int(np.count_nonzero(out_r[k] != out_l[k])) for k in out_r}
    assert np.array_equal(ref.output_steps, lav.output_steps)
    assert np.array_equal(ref.logits, lav.logits)
    return ref, lav, mism


def activity(result) -> dict:
    return {k: int(s.sum()) for k, s in result.spikes.items()}


# ---------------------------------------------------------------------- (a) IF CNN


@pytest.mark.parametrize("pool,reset", [("avg", "zero"), ("threshold", "zero"),
                                        ("avg", "subtract")])
def test_if_cnn_float_equals_numpy(rng, pool, reset):
    g = if_cnn(rng, pool, reset)
    x = spike_input(rng, g, batch=6, T=8)
    fl, _, mism = float_vs_numpy(g, x)
    assert sum(mism.values()) == 0, mism
    assert all(v > 5 for v in activity(fl).values()), activity(fl)


@pytest.mark.lava
@pytest.mark.parametrize("pool,reset", [("avg", "zero"), ("threshold", "subtract")])
def test_if_cnn_reference_equals_lava(rng, pool, reset):
    g = if_cnn(rng, pool, reset)
    _, prog = compile_graph(g)
    x = spike_input(rng, g, batch=3, T=6)  # T from the sequence, not the graph's 8
    ref, _, mism = ref_vs_lava(prog, x)
    assert sum(mism.values()) == 0, mism
    assert all(v > 5 for v in activity(ref).values()), activity(ref)
    assert ref.spikes["if1"].shape[0] == 6


# ------------------------------------------------ (b) recurrent CubaLIF, LI/CubaLI readout


@pytest.mark.parametrize("readout,rec_delay,per_neuron", [
    ("li", 0, False), ("cubali", 0, False), ("li", 2, False), ("cubali", 0, True)])
def test_recurrent_cubalif_float_equals_numpy(rng, readout, rec_delay, per_neuron):
    g = rsynaptic_net(rng, readout, rec_delay=rec_delay, per_neuron=per_neuron)
    x = spike_input(rng, g, batch=8, T=10)
    fl, _, mism = float_vs_numpy(g, x, recurrent={("rec", "lif")})
    assert mism == {"lif": 0}
    assert 0.05 < fl.spikes["lif"].mean() < 0.8


def test_recurrent_cubalif_compiles_to_a_current_and_a_self_group(rng):
    g = rsynaptic_net(rng)
    fp, prog = compile_graph(g)
    lif = prog.population("lif")
    assert (lif.du, lif.dv) == (1023, 512)  # (4096 - du - 1) / 4096 = 3/4, dv/4096 = 1/8
    own = [grp for grp in prog.groups if grp.source == grp.target == "lif"]
    assert len(own) == 1 and own[0].lag == 1 and own[0].delay == 0
    const = {(grp.target, grp.lag) for grp in prog.groups if grp.source == "const"}
    assert const == {("lif", 0)}  # fc bias and rec bias into the current from t = 0
    assert prog.population("out").kind == "li"


@pytest.mark.lava
@pytest.mark.parametrize("readout,rec_delay,per_neuron", [
    ("li", 0, False), ("cubali", 0, False), ("li", 2, False), ("cubali", 0, True)])
def test_recurrent_cubalif_reference_equals_lava(rng, readout, rec_delay, per_neuron):
    g = rsynaptic_net(rng, readout, rec_delay=rec_delay, per_neuron=per_neuron)
    _, prog = compile_graph(g)
    assert isinstance(prog.population("lif").du, np.ndarray) == per_neuron
    x = spike_input(rng, g, batch=4, T=10)
    ref, lav, mism = ref_vs_lava(prog, x)
    assert sum(mism.values()) == 0, mism
    assert ref.spikes["lif"].sum() > 20 and np.any(ref.voltages["out"] != 0)
    # idle steps between samples: the recurrent lag (1 + delay)
    assert lav.stats["sample_gap"] == 1 + rec_delay


def test_recurrent_spike_does_not_cross_samples(rng):
    """Per-sample independence: each sample alone gives the same result as the batch."""
    from nmc_deploy.simulate.reference import simulate_reference

    g = rsynaptic_net(rng)
    _, prog = compile_graph(g)
    x = spike_input(rng, g, batch=3, T=10)
    both = simulate_reference(prog, x)
    for b in range(3):
        one = simulate_reference(prog, x[b:b + 1])
        assert np.array_equal(one.spikes["lif"][:, 0], both.spikes["lif"][:, b])
        assert np.array_equal(one.voltages["out"][:, 0], both.voltages["out"][:, b])


# ------------------------------------------------------------ (c) exact-integrator LIF


@pytest.mark.parametrize("ge", [False, True])
def test_exact_lif_float_equals_numpy(rng, ge):
    g = exact_lif_net(rng, ge=ge)
    x = rng.integers(-1, 4, size=(8, 8, 10))  # integer currents
    fl, _, mism = float_vs_numpy(g, x)
    assert sum(mism.values()) == 0, mism
    assert all(v > 5 for v in activity(fl).values()), activity(fl)


def test_exact_integrator_decay(rng):
    g = exact_lif_net(rng)
    fp, prog = compile_graph(g)
    pop = fp.population("lif2")
    assert np.isclose(pop.alpha, np.exp(-0.25))
    assert prog.population("lif2").dv == round(4096 * (1 - np.exp(-0.25)))


@pytest.mark.lava
def test_exact_lif_reference_equals_lava(rng):
    g = exact_lif_net(rng)
    _, prog = compile_graph(g)
    x = rng.integers(-1, 4, size=(4, 8, 10))
    ref, _, mism = ref_vs_lava(prog, x)
    assert sum(mism.values()) == 0, mism
    assert all(v > 5 for v in activity(ref).values()), activity(ref)


# ----------------------------------------------------------------------------- (d) Delay


def test_delay_float_equals_numpy(rng):
    g = delay_net(rng)
    x = spike_input(rng, g, batch=8, T=9, p=0.5)
    fl, _, mism = float_vs_numpy(g, x)
    assert sum(mism.values()) == 0, mism
    assert all(v > 5 for v in activity(fl).values()), activity(fl)


def test_delay_becomes_group_lag_and_synaptic_delay(rng):
    _, prog = compile_graph(delay_net(rng, steps=2))
    lags = {(grp.source, grp.lag): grp.delay for grp in prog.groups if grp.target == "lif2"}
    d = prog.population("lif2").depth
    assert lags == {("lif1", 2): d - 1 - 1 + 2, ("const", 2): d - 1 + 2,
                    ("input", 1): d - 1 + 1}
    assert prog.sample_gap == 2


@pytest.mark.lava
def test_delay_reference_equals_lava(rng):
    g = delay_net(rng)
    _, prog = compile_graph(g)
    x = spike_input(rng, g, batch=4, T=9, p=0.5)
    ref, _, mism = ref_vs_lava(prog, x)
    assert sum(mism.values()) == 0, mism
    assert all(v > 5 for v in activity(ref).values()), activity(ref)


# ------------------------------------------------------------------------------- errors


def test_cycle_through_two_populations_is_refused(rng):
    g = rsynaptic_net(rng)
    nodes = dict(g.nodes)
    nodes["lif2"] = CubaLIF(**{k: getattr(g.nodes["lif"], k) for k in (
        "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")})
    nodes["fc2"] = Affine(weight=np.eye(12), bias=np.zeros(12))
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "fc2"), ("fc2", "lif2"), ("lif2", "rec"),
             ("rec", "lif"), ("lif", "head"), ("head", "out"), ("out", "output")]
    g2 = Graph(nodes, tuple(edges), g.metadata)
    with pytest.raises(LoweringError, match=r"recurrent cycle lif -> fc2 -> lif2 -> rec -> lif: "
                                            r"passes through 2 neuron populations"):
        lower_graph(g2)


def test_non_uniform_delay_is_refused(rng):
    g = delay_net(rng)
    nodes = dict(g.nodes)
    nodes["delay"] = Delay(delay=np.array([1e-3] * 4 + [2e-3] * 4))
    with pytest.raises(LoweringError, match="delay: delays differ across elements"):
        lower_graph(Graph(nodes, g.edges, g.metadata))


def test_unknown_reset_and_nonzero_v_reset_are_refused(rng):
    g = if_cnn(rng)
    with pytest.raises(LoweringError, match="reset 'toggle' is not one of zero, subtract"):
        lower_graph(Graph(g.nodes, g.edges, {**g.metadata, "reset": "toggle"}))
    nodes = dict(g.nodes)
    nodes["if2"] = IF(r=np.ones(5), v_threshold=np.ones(5), v_reset=np.full(5, -0.5))
    with pytest.raises(LoweringError, match="if2: v_reset must be 0"):
        lower_graph(Graph(nodes, g.edges, g.metadata))


def test_li_voltage_feeding_a_population_is_refused(rng):
    g = rsynaptic_net(rng)
    nodes = dict(g.nodes)
    nodes["lif3"] = LIF(tau=np.ones(4), r=np.ones(4), v_leak=np.zeros(4),
                        v_threshold=np.ones(4), v_reset=np.zeros(4))
    with pytest.raises(LoweringError, match="lif3: reads the voltage of non-spiking 'out'"):
        lower_graph(Graph(nodes, g.edges + (("out", "lif3"),), g.metadata))
