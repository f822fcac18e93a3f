"""The independent executor against two other executors of NIR: nirtorch 2.6's
``nir_to_torch`` (with correct node maps; nir.md §2.3 lists the default maps' bugs) and
norse 1.1.0 (its own LIF dynamics, and its ``from_nir`` where that mapping is right)."""
import warnings

import numpy as np
import pytest
import torch

import nir
import nirtorch

from oracles.nir_examples import make_example, example_inputs, norse_model
from oracles.nir_executor import count_mismatches, execute_nir

DT = 1e-3


class NeuronModule(torch.nn.Module):
    """A nirtorch-stateful neuron in the form of nir.md §2.4: ``v = alpha v + gain x + leak``
    (Euler, float64 constants), CubaLIF ``i = alpha_syn i + gain_syn x`` first."""

    def __init__(self, node, dt=DT):
        super().__init__()
        kind = type(node).__name__
        f = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
        tau = np.asarray(node.tau_mem if kind == "CubaLIF" else
                         getattr(node, "tau", np.inf), np.float64)
        r = np.asarray(node.r, np.float64)
        self.kind = kind
        self.register_buffer("alpha", f(1 - dt / tau) if kind != "IF" else f(np.ones_like(r)))
        self.register_buffer("gain", f(r * dt / tau) if kind != "IF" else f(r * dt))
        self.register_buffer("leak", f(np.asarray(getattr(node, "v_leak", 0.0)) * dt / tau)
                             if kind != "IF" else f(np.zeros_like(r)))
        self.register_buffer("v_th", f(node.v_threshold))
        v_reset = node.v_reset if node.v_reset is not None else np.zeros_like(r)
        self.register_buffer("v_reset", f(v_reset))
        if kind == "CubaLIF":
            ts = np.asarray(node.tau_syn, np.float64)
            self.register_buffer("alpha_syn", f(1 - dt / ts))
            self.register_buffer("gain_syn", f(np.asarray(node.w_in, np.float64) * dt / ts))

    def forward(self, x, state=None):
        v, i = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
        if self.kind == "CubaLIF":
            i = self.alpha_syn * i + self.gain_syn * x
            x = i
        v = self.alpha * v + self.gain * x + self.leak
        z = v > self.v_th
        v = torch.where(z, self.v_reset.expand_as(v), v)
        return z.to(x.dtype), (v, i)


def map_affine(node):  # the default map drops the bias
    m = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0])
    m.weight.data = torch.as_tensor(np.asarray(node.weight, np.float64))
    m.bias.data = torch.as_tensor(np.asarray(node.bias, np.float64))
    return m


def map_conv2d(node):  # the default map swaps in/out channels
    w = np.asarray(node.weight, np.float64)
    m = torch.nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], w.shape[2:],
                        stride=tuple(node.stride), padding=tuple(node.padding),
                        dilation=tuple(node.dilation), groups=int(node.groups))
    m.weight.data = torch.as_tensor(w)
    m.bias.data = torch.as_tensor(np.asarray(node.bias, np.float64))
    return m


class SumPool(torch.nn.Module):  # the default map (LPPool2d) ignores padding
    def __init__(self, node):
        super().__init__()
        self.k, self.s = tuple(node.kernel_size), tuple(node.stride)
        self.p = tuple(int(p) for p in node.padding)

    def forward(self, x):
        x = torch.nn.functional.pad(x, (self.p[1], self.p[1], self.p[0], self.p[0]))
        return torch.nn.functional.avg_pool2d(x, self.k, self.s, divisor_override=1)


def map_flatten(node):  # the default map forgets that NIR dims exclude the batch
    s, e = int(node.start_dim), int(node.end_dim)
    return torch.nn.Flatten(s + 1 if s >= 0 else s, e + 1 if e >= 0 else e)


NODE_MAP = {nir.Affine: map_affine, nir.Conv2d: map_conv2d, nir.SumPool2d: SumPool,
            nir.Flatten: map_flatten, nir.LIF: NeuronModule, nir.IF: NeuronModule,
            nir.CubaLIF: NeuronModule}


def feedforward_graph(seed=0):
    """Conv2d(pad 1, bias) -> IF -> SumPool2d(k3 s2 p1) -> Conv2d -> LIF -> Flatten ->
    Affine(bias) -> CubaLIF: every feature whose default nirtorch map is wrong."""
    rng = np.random.default_rng(seed)
    nodes = {
        "input": nir.Input(np.array([2, 6, 6])),
        "conv1": nir.Conv2d(input_shape=(6, 6), weight=0.4 * rng.standard_normal((3, 2, 3, 3)),
                            stride=1, padding=1, dilation=1, groups=1,
                            bias=0.1 * rng.standard_normal(3)),
        "if1": nir.IF(r=np.full((3, 6, 6), 1 / DT), v_threshold=np.ones((3, 6, 6)),
                      v_reset=np.zeros((3, 6, 6))),
        "pool": nir.SumPool2d(kernel_size=np.array([3, 3]), stride=np.array([2, 2]),
                              padding=np.array([1, 1])),
        "conv2": nir.Conv2d(input_shape=(3, 3), weight=0.15 * rng.standard_normal((4, 3, 3, 3)),
                            stride=1, padding=1, dilation=1, groups=1,
                            bias=0.1 * rng.standard_normal(4)),
        "lif": nir.LIF(tau=np.full((4, 3, 3), 2 * DT), r=np.ones((4, 3, 3)),
                       v_leak=np.full((4, 3, 3), 0.1), v_threshold=np.ones((4, 3, 3)),
                       v_reset=np.zeros((4, 3, 3))),
        "flat": nir.Flatten(input_type={"input": np.array([4, 3, 3])}, start_dim=0),
        "fc": nir.Affine(weight=0.3 * rng.standard_normal((5, 36)),
                         bias=0.5 * rng.standard_normal(5)),
        "cuba": nir.CubaLIF(tau_syn=np.full(5, 2 * DT), tau_mem=np.full(5, 4 * DT),
                            r=np.full(5, 4.0), v_leak=np.zeros(5), v_threshold=np.full(5, 2.0),
                            v_reset=np.zeros(5), w_in=np.full(5, 2.0)),
        "output": nir.Output(np.array([5])),
    }
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])))


def run_nirtorch(graph, x, node_map):
    module = nirtorch.nir_to_torch(graph, node_map, dtype=torch.float64)
    state, outs = None, []
    for t in range(x.shape[1]):
        y, state = module(torch.as_tensor(x[:, t]), state)
        outs.append(y)
    return torch.stack(outs, dim=1)


def test_executor_matches_nirtorch_with_correct_maps():
    graph = feedforward_graph()
    x = (np.random.default_rng(1).random((4, 15, 2, 6, 6)) < 0.5).astype(np.float64)
    ours = execute_nir(graph, x, dt=DT)
    theirs = run_nirtorch(graph, x, NODE_MAP)
    for name in ("if1", "lif", "cuba"):  # every layer fires
        assert ours[name].sum() > 0, name
    assert ours["output"].sum() > 20
    assert count_mismatches(ours["output"], theirs) == 0


def test_nirtorch_default_maps_are_wrong():
    """Why the maps above are needed (nir.md §2.3): nirtorch 2.6's default Affine map never
    loads the bias (spikes differ), and its SumPool2d (padding ignored) and Flatten (batch
    dim merged) maps make the graph fail to run."""
    graph = feedforward_graph()
    x = (np.random.default_rng(1).random((4, 15, 2, 6, 6)) < 0.5).astype(np.float64)
    ours = execute_nir(graph, x, dt=DT)
    torch.manual_seed(0)
    default_affine = {k: v for k, v in NODE_MAP.items() if k is not nir.Affine}
    module = nirtorch.nir_to_torch(graph, default_affine, dtype=torch.float64)
    assert not np.allclose(module.fc.bias.detach().numpy(), graph.nodes["fc"].bias)
    assert count_mismatches(ours["output"], run_nirtorch(graph, x, default_affine)) > 0
    for kind in (nir.SumPool2d, nir.Flatten):
        with pytest.raises(RuntimeError):
            run_nirtorch(graph, x, {k: v for k, v in NODE_MAP.items() if k is not kind})


def test_executor_matches_nirtorch_on_recurrent_subgraph():
    """snnTorch's nested recurrent CubaLIF graph: nirtorch delays the recurrent edge by one
    step (``state["lif_prev_output"]``), as the executor does. nirtorch also drops the
    recurrent Affine's bias at t = 0, where the executor (and snnTorch) add it, so the
    comparison runs with a zero recurrent bias."""
    import copy

    ex = make_example("snntorch")
    graph = copy.deepcopy(ex.graph)
    w_rec = graph.nodes["rsyn"].nodes["w_rec"]
    w_rec.bias = np.zeros_like(w_rec.bias)
    x = example_inputs(ex, batch=3, steps=20, seed=2)
    ours = execute_nir(graph, x, dt=ex.discretisation.dt)
    node_map = {**NODE_MAP, nir.CubaLIF: lambda n: NeuronModule(n, dt=ex.discretisation.dt)}
    theirs = run_nirtorch(graph, x, node_map)
    assert ours["rsyn/lif"].sum() > 0 and ours["output"].sum() > 0
    assert count_mismatches(ours["output"], theirs) == 0


def run_norse_model(net, x):
    state, outs = None, []
    for t in range(x.shape[1]):
        y, state = net(torch.as_tensor(x[:, t], dtype=torch.float32), state)
        outs.append(y)
    return torch.stack(outs, dim=1)


def test_executor_matches_norse_own_lif_dynamics():
    """norse 1.1.0's LIFBoxCell network (float32, Euler, dt 1e-3) against the executor on
    the graph norse exports for it (with norse main's tau fix): 0 spike mismatches."""
    ex = make_example("norse")
    x = example_inputs(ex, batch=4, steps=30, seed=3)
    ours = execute_nir(ex.graph, x, dt=ex.discretisation.dt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = run_norse_model(norse_model(), x)
    assert ours["output"].sum() > 0 and ours["1"].sum() > 0
    assert count_mismatches(ours["output"], theirs) == 0


def test_executor_matches_norse_from_nir():
    """norse 1.1.0's importer maps LIF -> LIFBoxCell(tau_mem_inv = 1/tau) and Affine ->
    Linear, which is right for r = 1 and v_leak = 0 (it ignores r and v_reset): 0 mismatches."""
    import norse.torch as norse

    ex = make_example("norse")
    x = example_inputs(ex, batch=4, steps=30, seed=4)
    ours = execute_nir(ex.graph, x, dt=ex.discretisation.dt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = norse.from_nir(ex.graph, dt=ex.discretisation.dt)
        state, outs = None, []
        for t in range(x.shape[1]):
            y, state = module(torch.as_tensor(x[:, t], dtype=torch.float32), state)
            outs.append(y)
    theirs = torch.stack(outs, dim=1)
    assert ours["output"].sum() > 0
    assert count_mismatches(ours["output"], theirs) == 0
