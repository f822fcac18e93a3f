"""NIR graphs in the conventions of other tools, with seeded weights that make every layer fire.

Each builder returns a ``nir.NIRGraph`` as the tool writes it: **no dt, integrator or reset
in the graph** (the tools write none), so a reader must resolve the timing from a preset of
the tool's convention. :func:`make_example` pairs a graph with the :class:`Discretisation`
under which the tool means it (for :mod:`oracles.nir_executor`) and the name of
our conventions preset (``nmc_deploy.ir.conventions``).

| builder | tool | built with | dt | integrator | spike | reset |
|---|---|---|---|---|---|---|
| :func:`sinabs_cnn` | sinabs 3.1 | by hand (sinabs needs nir<=1.0.4 and samna; it does not install here) | 1 (steps) | exact | ``>=`` | subtract (default) or zero |
| :func:`snntorch_recurrent` | snnTorch 1.0.0 | ``snntorch.export_nir`` | 1e-4 | Euler | ``>`` | zero |
| :func:`norse_lif` | norse 1.1.0 | ``norse.torch.to_nir`` + the fixes of norse main | 1e-3 | Euler | ``>`` | zero |
| :func:`rockpool_cubalif` | rockpool 3.1.0 | ``rockpool.nn.modules.to_nir`` | 1e-3 | exact | ``>=`` | subtract |

Conversions applied to every tool's output (values untouched): torch tensors become numpy
arrays (their dtype kept, float32 for torch parameters), and batch/time dimensions in the
Input and Output types are dropped. Anything else is said in the builder's docstring.
"""
from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np
import torch

import nir

from nmc_deploy.errors import GraphError
from oracles.nir_executor import Discretisation

__all__ = ["Example", "EXAMPLE_NAMES", "make_example", "example_inputs", "sinabs_cnn",
           "snntorch_recurrent", "snntorch_model", "norse_lif", "norse_model",
           "rockpool_cubalif"]

SNNTORCH_DT = 1e-4  # hard-coded in snntorch.export_nir
NORSE_DT = 1e-3  # norse.torch.to_nir default
ROCKPOOL_DT = 1e-3  # the modules' dt (hidden in r by rockpool's exporter)


# --------------------------------------------------------------------------------------------
# helpers


def _numpy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x


def _as_numpy_graph(graph: "nir.NIRGraph", *, input_lead: int = 0, output_lead: int = 0
                    ) -> "nir.NIRGraph":
    """A copy of ``graph`` with torch tensors as numpy arrays, recursively, and the first
    ``input_lead`` / ``output_lead`` dims (batch, time) removed from the top-level Input /
    Output types."""
    graph = copy.deepcopy(graph)

    def fix(g, top: bool):
        nodes = {}
        for name, node in g.nodes.items():
            if isinstance(node, nir.NIRGraph):
                nodes[name] = fix(node, False)
                continue
            for f in dataclasses.fields(node):
                value = getattr(node, f.name, None)
                if isinstance(value, torch.Tensor):
                    setattr(node, f.name, _numpy(value))
            if top and input_lead and isinstance(node, nir.Input):
                node = nir.Input(input_type=np.asarray(node.input_type["input"])[input_lead:],
                                 metadata=node.metadata)
            if top and output_lead and isinstance(node, nir.Output):
                node = nir.Output(
                    output_type=np.asarray(node.output_type["output"])[output_lead:],
                    metadata=node.metadata)
            nodes[name] = node
        return nir.NIRGraph(nodes=nodes, edges=list(g.edges), metadata=dict(g.metadata),
                            type_check=False)

    return fix(graph, True)


def _normal(rng, shape, scale, mean=0.0) -> np.ndarray:
    return (mean + scale * rng.standard_normal(shape)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# sinabs


def sinabs_cnn(seed: int = 0, *, in_chw=(2, 8, 8), channels=(4, 4), n_out: int = 3,
               infer_types: bool = True) -> "nir.NIRGraph":
    """A sinabs-style spiking CNN (the NIR paper's N-MNIST network, shrunk), **by hand**.

    sinabs 3.1.3 does not install here (it requires ``nir<=1.0.4`` and ``samna``), so this
    follows ``sinabs.nir._extract_sinabs_module`` and ``nirtorch.extract_nir_graph`` exactly:
    nodes named by their index in an ``nn.Sequential`` ("0", "1", ...); ``Conv2d`` with
    ``input_shape=None`` and a zero bias (bias=False), float32 weights; ``IF(r=1,
    v_threshold)`` with no ``v_reset`` (NIR's default 0); ``SumPool2d`` with kernel = stride
    and padding (0, 0); ``Flatten(input_type=None, start_dim=0)``; ``Affine`` with a zero bias;
    graph built with ``type_check=False``, so shapes are left for the reader to infer.

    sinabs counts time in steps (dt = 1) and its ``IAF`` fires on ``v >= threshold`` and
    subtracts the threshold (default) or, configured with ``reset_fn=MembraneReset()`` and
    ``spike_fn=SingleSpike``, resets to 0: which one is not in the graph (NIR cannot say).

    nir 1.0.8 cannot write ``input_shape=None`` / ``input_type=None`` ("One of data, shape or
    dtype must be specified"), so a sinabs user must call ``graph.infer_types()`` before
    ``nir.write``; ``infer_types=True`` (default) does that (it fills Conv2d.input_shape and
    Flatten.input_type; SumPool2d shapes are never stored, readers infer them), and
    ``infer_types=False`` returns the graph exactly as sinabs' ``to_nir`` leaves it.
    """
    rng = np.random.default_rng(seed)
    c_in, h, w = in_chw
    c1, c2 = channels
    flat = c2 * (h // 4) * (w // 4)

    def if_node(shape):
        return nir.IF(r=np.ones(shape, np.float32), v_threshold=np.ones(shape, np.float32))

    nodes = {
        "input": nir.Input(input_type=np.array(in_chw)),
        "0": nir.Conv2d(input_shape=None, weight=_normal(rng, (c1, c_in, 3, 3), 0.5, 0.1),
                        stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1,
                        bias=np.zeros(c1, np.float32)),
        "1": if_node((c1, h, w)),
        "2": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                           padding=np.array([0, 0])),
        "3": nir.Conv2d(input_shape=None, weight=_normal(rng, (c2, c1, 3, 3), 0.25, 0.0),
                        stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1,
                        bias=np.zeros(c2, np.float32)),
        "4": if_node((c2, h // 2, w // 2)),
        "5": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                           padding=np.array([0, 0])),
        "6": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
        "7": nir.Affine(weight=_normal(rng, (n_out, flat), 0.3, 0.0),
                        bias=np.zeros(n_out, np.float32)),
        "8": if_node((n_out,)),
        "output": nir.Output(output_type=np.array([n_out])),
    }
    order = ["input", "0", "1", "2", "3", "4", "5", "6", "7", "8", "output"]
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])), type_check=False)
    if infer_types:
        graph.infer_types()
    return graph


# --------------------------------------------------------------------------------------------
# snnTorch


def _snntorch_net(seed: int, n_in: int, n_hidden: int, n_out: int):
    import snntorch as snn

    rng = np.random.default_rng(seed)

    class RecurrentCuba(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(n_in, n_hidden)
            self.rsyn = snn.RSynaptic(alpha=0.5, beta=0.75, linear_features=n_hidden,
                                      all_to_all=True, init_hidden=True,
                                      reset_mechanism="zero")
            self.fc2 = torch.nn.Linear(n_hidden, n_out)
            # per-neuron tensors: with scalars the exporter writes 0-d arrays (no shape)
            self.syn2 = snn.Synaptic(alpha=torch.full((n_out,), 0.5),
                                     beta=torch.full((n_out,), 0.75),
                                     threshold=torch.ones(n_out), init_hidden=True,
                                     output=True, reset_mechanism="zero")

        def forward(self, x):
            return self.syn2(self.fc2(self.rsyn(self.fc1(x))))

    net = RecurrentCuba()
    with torch.no_grad():
        for lin, (scale, mean) in ((net.fc1, (0.8, 0.3)), (net.rsyn.recurrent, (0.3, 0.0)),
                                   (net.fc2, (0.5, 0.05))):
            lin.weight.copy_(torch.from_numpy(_normal(rng, tuple(lin.weight.shape), scale, mean)))
            lin.bias.copy_(torch.from_numpy(_normal(rng, tuple(lin.bias.shape), 0.05)))
    return net


def snntorch_recurrent(seed: int = 0, *, nested: bool = True, n_in: int = 4,
                       n_hidden: int = 8, n_out: int = 3) -> "nir.NIRGraph":
    """An snnTorch recurrent CubaLIF network exported by snnTorch 1.0.0 itself.

    ``Linear -> RSynaptic(all_to_all, reset "zero") -> Linear -> Synaptic``, alpha 0.5,
    beta 0.75, threshold 1. snnTorch writes ``tau = dt/(1-beta)``, ``r = tau/dt``,
    ``tau_syn = dt/(1-alpha)``, ``w_in = tau_syn/dt``, ``v_leak = 0``, ``v_reset = 0`` with
    ``dt = 1e-4`` hard-coded (Euler then gives ``I = alpha I + W x``, ``v = beta v + I``).

    ``nested=True``: each layer converted by snnTorch's own module converter
    (``snntorch.export_nir._extract_snntorch_module``), which turns ``RSynaptic`` into a
    ``NIRGraph{input, lif: CubaLIF, w_rec: Affine, output}`` with edges ``lif -> w_rec ->
    lif`` (the nested form of the NIR paper's Braille network); the layers are joined by
    hand as ``nirtorch.extract_nir_graph`` would. ``nested=False``: the graph of
    ``snntorch.export_to_nir(net, sample, ignore_dims=[0])``, where nirtorch 2.6 inlines the
    subgraph as nodes "rsyn.lif" and "rsyn.w_rec". (``ignore_dims=[0]`` because without it
    the Input type keeps the batch dim and snnTorch's own ``infer_types`` fails.)
    """
    from snntorch.export_nir import _extract_snntorch_module, export_to_nir

    net = _snntorch_net(seed, n_in, n_hidden, n_out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if not nested:
            graph = export_to_nir(net, torch.zeros(1, n_in), ignore_dims=[0])
            return _as_numpy_graph(graph)
        nodes = {"input": nir.Input(input_type=np.array([n_in]))}
        for name in ("fc1", "rsyn", "fc2", "syn2"):
            nodes[name] = _extract_snntorch_module(getattr(net, name))
        nodes["output"] = nir.Output(output_type=np.array([n_out]))
    order = ["input", "fc1", "rsyn", "fc2", "syn2", "output"]
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])),
                         type_check=False)
    return _as_numpy_graph(graph)


def snntorch_model(seed: int = 0, *, n_in: int = 4, n_hidden: int = 8, n_out: int = 3):
    """The snnTorch module that :func:`snntorch_recurrent` exports (same seed, same weights)."""
    return _snntorch_net(seed, n_in, n_hidden, n_out)


# --------------------------------------------------------------------------------------------
# norse


def _norse_net(seed: int, n_in: int, n_hidden: int, n_out: int):
    import norse.torch as norse

    rng = np.random.default_rng(seed)

    def params(n, tau_mem_inv):
        return norse.LIFBoxParameters(tau_mem_inv=torch.full((n,), tau_mem_inv),
                                      v_leak=torch.zeros(n), v_th=torch.ones(n),
                                      v_reset=torch.zeros(n))

    fc1, fc2 = torch.nn.Linear(n_in, n_hidden), torch.nn.Linear(n_hidden, n_out)
    with torch.no_grad():
        for lin, scale, mean in ((fc1, 4.0, 3.0), (fc2, 3.0, 1.5)):
            lin.weight.copy_(torch.from_numpy(_normal(rng, tuple(lin.weight.shape), scale, mean)))
            lin.bias.copy_(torch.from_numpy(_normal(rng, tuple(lin.bias.shape), 0.5)))
    return norse.SequentialState(fc1, norse.LIFBoxCell(params(n_hidden, 200.0)), fc2,
                                 norse.LIFBoxCell(params(n_out, 100.0)))


def norse_lif(seed: int = 0, *, n_in: int = 4, n_hidden: int = 6, n_out: int = 3
              ) -> "nir.NIRGraph":
    """A norse LIF network (``Linear -> LIFBoxCell -> Linear -> LIFBoxCell``, dt 1e-3).

    Exported with norse 1.1.0's ``norse.torch.to_nir``, then given the fixes norse ``main``
    made (nir.md §3), because 1.1.0's file is wrong or unreadable: ``tau`` is rewritten as
    ``1/tau_mem_inv`` in seconds (1.1.0 writes ``dt/tau_mem_inv``, issue #411), torch
    tensors become numpy arrays, and the batch dim leaves the Input/Output types. Norse
    integrates ``v += dt tau_mem_inv (v_leak - v + i)`` (Euler), fires on ``v > v_th`` and
    resets to ``v_reset``: NIR's LIF with ``r = 1``.
    """
    import norse.torch as norse

    net = _norse_net(seed, n_in, n_hidden, n_out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = norse.to_nir(net, torch.zeros(1, n_in), dt=NORSE_DT)
    graph = _as_numpy_graph(graph, input_lead=1, output_lead=1)
    cells = {str(i): m for i, m in enumerate(net) if isinstance(m, norse.LIFBoxCell)}
    for name, cell in cells.items():
        node = graph.nodes[name]
        inv = cell.p.tau_mem_inv.detach().numpy().astype(np.float64)
        graph.nodes[name] = nir.LIF(tau=1.0 / inv, r=np.asarray(node.r),
                                    v_leak=np.asarray(node.v_leak),
                                    v_threshold=np.asarray(node.v_threshold),
                                    v_reset=np.asarray(node.v_reset), metadata=node.metadata)
    return graph


def norse_model(seed: int = 0, *, n_in: int = 4, n_hidden: int = 6, n_out: int = 3):
    """The norse module that :func:`norse_lif` exports (same seed, same weights)."""
    return _norse_net(seed, n_in, n_hidden, n_out)


# --------------------------------------------------------------------------------------------
# rockpool


def rockpool_cubalif(seed: int = 0, *, n_in: int = 4, n_hidden: int = 6, n_out: int = 3
                     ) -> "nir.NIRGraph":
    """A rockpool network (``LinearTorch -> LIFTorch -> LinearTorch -> ExpSynTorch``, dt
    1e-3) exported by rockpool 3.1.0's ``to_nir``: CubaLIF then an LI readout.

    Rockpool integrates exactly (``exp(-dt/tau)`` decays) and its exporter hides dt in r:
    ``r = tau exp(-dt/tau) / dt`` (CubaLIF: ``tau_mem``; LI: ``tau``), ``w_in = 1``,
    ``v_leak = 0`` (a bias is dropped), ``v_reset = 0``; weights are transposed into NIR's
    (out, in). :func:`make_example` runs it as rockpool's convention says (exact decays,
    ``v >= threshold``, subtract reset). NIR's equations are still not rockpool's own model,
    which adds the input to the current before decaying it, adds the current to v with gain
    1 and may emit several spikes per step: the graph is what rockpool writes, and every
    reader sees NIR's equations.
    """
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import ExpSynTorch, LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir

    rng = np.random.default_rng(seed)
    tau_mem = np.linspace(0.015, 0.03, n_hidden).astype(np.float32)
    w1 = _normal(rng, (n_in, n_hidden), 0.8, 0.5)  # rockpool weights are (in, out)
    w2 = _normal(rng, (n_hidden, n_out), 1.0, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = Sequential(
            LinearTorch((n_in, n_hidden), weight=torch.from_numpy(w1), has_bias=False),
            LIFTorch(n_hidden, tau_mem=torch.from_numpy(tau_mem), tau_syn=0.01,
                     threshold=1.0, dt=ROCKPOOL_DT),
            LinearTorch((n_hidden, n_out), weight=torch.from_numpy(w2), has_bias=False),
            # per-neuron tau: a scalar is written as 0-d arrays, which nir.write cannot gzip
            ExpSynTorch(n_out, tau=torch.full((n_out,), 0.02), dt=ROCKPOOL_DT),
        )
        graph = to_nir(net)
    # rockpool records the Input type as (batch, n) and the Output type as (batch, time, n)
    return _as_numpy_graph(graph, input_lead=1, output_lead=2)


# --------------------------------------------------------------------------------------------
# examples with their conventions


@dataclass(frozen=True)
class Example:
    """A tool's NIR graph plus how the tool means it."""

    name: str  # example name (EXAMPLE_NAMES)
    graph: "nir.NIRGraph"
    convention: str  # preset name in nmc_deploy.ir.conventions
    discretisation: Discretisation  # for oracles.nir_executor
    input_shape: tuple
    voltage_outputs: tuple = ()  # non-spiking nodes whose voltage is the output (LI readouts)


EXAMPLE_NAMES = ("sinabs", "sinabs_subtract", "snntorch", "snntorch_flat", "norse", "rockpool")


def make_example(name: str, seed: int = 0) -> Example:
    """The example graph ``name`` (one of :data:`EXAMPLE_NAMES`) with its conventions.

    "sinabs" is sinabs configured to reset to zero (``MembraneReset``); "sinabs_subtract" is
    its default, subtract reset, which NIR cannot express (the timing's ``reset`` carries
    it). "snntorch" is the nested form of the snnTorch export, "snntorch_flat" the form of
    ``export_to_nir``.
    """
    if name in ("sinabs", "sinabs_subtract"):
        reset = "subtract" if name == "sinabs_subtract" else "zero"
        return Example(name, sinabs_cnn(seed), "sinabs",
                       Discretisation(1.0, "exact", ">=", reset), (2, 8, 8))
    if name in ("snntorch", "snntorch_flat"):
        return Example(name, snntorch_recurrent(seed, nested=name == "snntorch"), "snntorch",
                       Discretisation(SNNTORCH_DT, "forward-euler", ">", "zero"), (4,))
    if name == "norse":
        return Example(name, norse_lif(seed), "norse",
                       Discretisation(NORSE_DT, "forward-euler", ">", "zero"), (4,))
    if name == "rockpool":
        graph = rockpool_cubalif(seed)
        readout = next(n for n, v in graph.nodes.items() if isinstance(v, nir.LI))
        return Example(name, graph, "rockpool",
                       Discretisation(ROCKPOOL_DT, "exact", ">=", "subtract"), (4,), (readout,))
    raise GraphError(f"example '{name}': unknown; use one of {', '.join(EXAMPLE_NAMES)}")


def example_inputs(example: Example, batch: int = 3, steps: int = 12, seed: int = 0,
                   rate: float = 0.5) -> np.ndarray:
    """Binary input spikes ``(batch, steps, *input_shape)`` (integers, as the fixed-point
    simulators need), Bernoulli(``rate``) with a seeded rng."""
    rng = np.random.default_rng(seed)
    return (rng.random((batch, steps, *example.input_shape)) < rate).astype(np.float64)
