"""Lower the graph IR to neuron populations and synapse groups (float; a pure pass).

Every node's output is carried as a linear expression over spike sources,
``sum_src M_src @ s_src + c``: linear nodes (Conv, Affine, Scale, SumPool2d, Flatten)
compose into the matrices, fan-in adds expressions, and each neuron node (LIF,
Threshold) turns its input expression into one population fed by one synapse group per
source. So a residual stream ``x + f(x)`` is never a population of its own: each consumer
receives synapses from every population of the stream, with the same weights (deployment
decision 3, "fan-in"), and BatchNorm is already folded by the exporter.

Low-rank factor pairs (DSP: a linear node with metadata role "low-rank factor" feeding
another one, exported as ``{name}.down`` -> ``{name}``) deploy in one of two forms
(``low_rank``):

* ``"fused"`` (default): the chain composes like any other, so the consumer gets the
  re-multiplied matrix ``gain U V`` (dense; no synapse saving).
* ``"relay"``: the down node's output becomes a population of kind "relay" fed by
  ``V @ M_src`` from every source ``src`` of its input expression (a residual stream gives one
  group per stream population); the up node then composes onto the relay, so the consumer
  gets ``gain U`` from the relay: ``r (n_in + n_out)`` synapses per token instead of
  ``n_in n_out``. A relay reads the input, neuron populations and token selectors (whose
  gated stream is a graded source like the input); it is never gated itself: it has no bias,
  so the neurons of a dropped token get zero payloads from zero inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import LoweringError
from ..ir import (Affine, Conv1d, Conv2d, Flatten, Graph, Input, Integrator, LIF, Output, Scale,
                  SpikingSelfAttention, SumPool2d, Threshold, TokenSelect, topo_order)
from ..ir.graph import split_port
from .matrices import conv1d_matrix, conv2d_matrix, sumpool2d_matrix
from .program import (INPUT, LOW_RANK_MODES, RELAY, AttentionOp, FloatGroup, FloatPopulation,
                      FloatProgram, FloatTokenSelect, Readout)

__all__ = ["lower_graph", "low_rank_down_nodes", "LOW_RANK_ROLE"]


@dataclass(frozen=True)
class _Expr:
    """sum over sources of ``terms[src] @ s_src`` plus ``bias``; ``layer`` names the last
    graph node with weights (for reports)."""

    terms: dict
    bias: np.ndarray
    layer: str

    @property
    def size(self) -> int:
        return int(self.bias.shape[0])

    def apply(self, m: sp.spmatrix, offset, layer: str) -> "_Expr":
        m = sp.csr_matrix(m)
        terms = {k: sp.csr_matrix(m @ v) for k, v in self.terms.items()}
        return _Expr(terms, m @ self.bias + offset, layer)


def _sum(exprs: list[_Expr], where: str) -> _Expr:
    sizes = {e.size for e in exprs}
    if len(sizes) != 1:
        raise LoweringError(f"{where}: inputs of different sizes ({sorted(sizes)}) fan in")
    terms: dict = {}
    for e in exprs:
        for k, v in e.terms.items():
            terms[k] = terms[k] + v if k in terms else v
    layer = exprs[-1].layer if len({e.layer for e in exprs}) == 1 else where
    return _Expr(terms, sum(e.bias for e in exprs), layer)


def _uniform(arr, what: str, where: str) -> float:
    arr = np.asarray(arr, np.float64)
    if arr.size and not np.all(arr == arr.flat[0]):
        raise LoweringError(f"{where}: per-neuron {what} differs across neurons; this compiler "
                            "needs one value per population here")
    return float(arr.flat[0])


def _per_neuron(arr) -> float | np.ndarray:
    """A scalar when every neuron has the same value, else the flat float64 array."""
    arr = np.asarray(arr, np.float64).ravel()
    return float(arr[0]) if np.all(arr == arr[0]) else arr


def _is_identity_of(e: _Expr, where: str) -> str:
    """The one population ``e`` passes through unchanged (attention inputs must be spikes)."""
    if len(e.terms) == 1 and not np.any(e.bias):
        (src, m), = e.terms.items()
        if m.shape[0] == m.shape[1] and (m != sp.identity(m.shape[0], format="csr")).nnz == 0:
            return src
    raise LoweringError(f"{where}: attention inputs must come straight from one spiking "
                        "population each, without weights in between")


LOW_RANK_ROLE = "low-rank factor"  # node metadata "role" the exporter gives both factors


def low_rank_down_nodes(graph: Graph) -> list[str]:
    """Names of the first factor of each low-rank pair: a linear node with role
    "low-rank factor" whose every successor is a linear node with that role too."""
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        succ[src].append(split_port(dst, graph.nodes)[0])

    def factor(name):
        node = graph.nodes[name]
        return (isinstance(node, (Conv1d, Affine)) and
                dict(node.metadata).get("role") == LOW_RANK_ROLE)

    return [n for n in graph.nodes
            if factor(n) and succ[n] and all(factor(m) for m in succ[n])]


def lower_graph(graph: Graph, *, input_levels: int | None = None,
                low_rank: str = "fused") -> FloatProgram:
    """Lower ``graph`` to a :class:`FloatProgram`; ``graph`` is not modified.

    ``input_levels`` (default: graph metadata "input_levels") is the integer intensity that
    stands for 1.0 at the input: the program is driven with integers ``0..input_levels``.
    ``low_rank`` ("fused" or "relay") chooses how low-rank factor pairs deploy (module
    docstring); the choice is recorded in the program metadata ("low_rank").
    """
    if low_rank not in LOW_RANK_MODES:
        raise LoweringError(f"graph: low_rank '{low_rank}' is not one of "
                            f"{', '.join(LOW_RANK_MODES)}")
    relay_nodes = set(low_rank_down_nodes(graph)) if low_rank == "relay" else set()
    md = dict(graph.metadata)
    levels = int(input_levels if input_levels is not None else md.get("input_levels", 1))
    dt = md.get("dt")
    if dt is None:
        raise LoweringError("graph: no 'dt' in the graph metadata; give the time step "
                            "(NIR does not carry one)")
    dt = float(dt)
    time_steps = int(md.get("time_steps", 1))
    graph_ge = str(md.get("threshold_comparison", ">")) == ">="

    exprs: dict[str, _Expr] = {}
    pops: list[FloatPopulation] = []
    groups: list[FloatGroup] = []
    ops: list[AttentionOp] = []
    selects: list[FloatTokenSelect] = []
    readout = None
    input_shape = None
    gate_of: dict[str, str] = {}  # gated LIF node -> its token selector
    for sel_name, sel in graph.nodes.items():
        if isinstance(sel, TokenSelect):
            for g in sel.gates:
                if g not in graph.nodes:
                    raise LoweringError(f"{sel_name}: gated node '{g}' is not in the graph")
                shape = tuple(graph.nodes[g].output_shape)
                if len(shape) != 2 or shape[1] != sel.n_tokens:
                    raise LoweringError(f"{sel_name}: gated node '{g}' has shape {shape}; "
                                        f"gated nodes need the (C, {sel.n_tokens}) token layout")
                gate_of[g] = sel_name

    def make_population(name, kind, shape, inp: _Expr, alpha, gain, v_th, ge, leak):
        size = int(np.prod(shape))
        if inp.size != size:
            raise LoweringError(f"{name}: input size ({inp.size}) differs from the node size "
                                f"({size})")
        pops.append(FloatPopulation(name=name, shape=tuple(shape), kind=kind, alpha=alpha,
                                    v_threshold=v_th, threshold_ge=ge,
                                    bias=gain * inp.bias + leak, gate=gate_of.get(name, "")))
        row_gain = sp.diags(np.broadcast_to(np.asarray(gain, np.float64), (size,)))
        for src, m in inp.terms.items():
            m = sp.csr_matrix(row_gain @ m)
            m.eliminate_zeros()
            kind_g = ("encoding" if src == INPUT else
                      "attention" if any(o.name == src for o in ops) else
                      "tokens" if any(t.name == src for t in selects) else "synapses")
            groups.append(FloatGroup(name=f"{src}->{name}", source=src, target=name, weight=m,
                                     layer=inp.layer, kind=kind_g))
        return _Expr({name: sp.identity(size, format="csr")}, np.zeros(size), name)

    def make_relay(name, inp: _Expr) -> _Expr:
        """A relay population emitting ``inp`` without its bias, which stays in the
        expression (the consumer adds ``U @ bias``)."""
        for src in inp.terms:
            if src != INPUT and src not in spiking and not any(t.name == src for t in selects):
                raise LoweringError(f"{name}: a low-rank relay may only read the input, "
                                    "neuron populations and token selectors")
        pops.append(FloatPopulation(name=name, shape=(inp.size,), kind=RELAY, alpha=0.0,
                                    v_threshold=0.0, threshold_ge=False,
                                    bias=np.zeros(inp.size)))
        for src, m in inp.terms.items():
            m = sp.csr_matrix(m)
            m.eliminate_zeros()
            kind_g = ("encoding" if src == INPUT else
                      "tokens" if any(t.name == src for t in selects) else "synapses")
            groups.append(FloatGroup(name=f"{src}->{name}", source=src, target=name, weight=m,
                                     layer=inp.layer, kind=kind_g))
        relays.add(name)
        return _Expr({name: sp.identity(inp.size, format="csr")}, inp.bias, name)

    relays: set[str] = set()
    spiking: set[str] = set()
    for name in topo_order(graph):
        node = graph.nodes[name]
        preds = graph.predecessors(name)
        if isinstance(node, Input):
            input_shape = node.shape
            n = int(np.prod(node.shape))
            exprs[name] = _Expr({INPUT: sp.identity(n, format="csr") / levels}, np.zeros(n), name)
            continue
        if not preds:
            raise LoweringError(f"{name}: node has no inputs")
        if isinstance(node, SpikingSelfAttention):
            ports = {}
            for src, port in preds:
                ports.setdefault(port, []).append(exprs[src])
            missing = {"q", "k", "v"} - set(ports)
            if missing:
                raise LoweringError(f"{name}: attention port(s) {', '.join(sorted(missing))} "
                                    "have no incoming edge")
            srcs = {p: _is_identity_of(_sum(ports[p], name), f"{name}.{p}") for p in "qkv"}
            if relays & set(srcs.values()):
                raise LoweringError(f"{name}: attention inputs must be spiking populations, "
                                    "not low-rank relays")
            ops.append(AttentionOp(name=name, q=srcs["q"], k=srcs["k"], v=srcs["v"],
                                   num_heads=node.num_heads, dim=node.dim,
                                   n_tokens=node.n_tokens))
            n = node.dim * node.n_tokens
            exprs[name] = _Expr({name: sp.identity(n, format="csr") * node.scale}, np.zeros(n),
                                name)
            continue
        inp = _sum([exprs[s] for s, _ in preds], name)
        expected = int(np.prod(node.input_shape))
        if inp.size != expected:
            raise LoweringError(f"{name}: input size ({inp.size}) differs from the node's "
                                f"input shape {tuple(node.input_shape)}; check the edges into it")
        if isinstance(node, Conv2d):
            m = conv2d_matrix(node.weight, node.input_hw, node.stride, node.padding,
                              node.dilation, node.groups)
            hw = node.output_shape[1] * node.output_shape[2]
            exprs[name] = inp.apply(m, np.repeat(np.asarray(node.bias, np.float64), hw), name)
        elif isinstance(node, Conv1d):
            m = conv1d_matrix(node.weight, node.input_length, node.stride, node.padding,
                              node.dilation, node.groups)
            exprs[name] = inp.apply(m, np.repeat(np.asarray(node.bias, np.float64),
                                                 node.output_shape[1]), name)
            if name in relay_nodes:
                exprs[name] = make_relay(name, exprs[name])
        elif isinstance(node, Affine):
            exprs[name] = inp.apply(sp.csr_matrix(np.asarray(node.weight, np.float64)),
                                    np.asarray(node.bias, np.float64), name)
            if name in relay_nodes:
                exprs[name] = make_relay(name, exprs[name])
        elif isinstance(node, Scale):
            s = np.asarray(node.scale, np.float64).ravel()
            exprs[name] = inp if np.all(s == 1) else inp.apply(sp.diags(s), 0.0, name)
        elif isinstance(node, SumPool2d):
            m = sumpool2d_matrix(node.input_chw, node.kernel_size, node.stride, node.padding)
            exprs[name] = inp.apply(m, 0.0, name)
        elif isinstance(node, Flatten):
            exprs[name] = inp
        elif isinstance(node, TokenSelect):
            if np.any(inp.bias):
                raise LoweringError(f"{name}: the token selector's input has a constant term; "
                                    "it must be a sum of spike sources")
            inputs = []
            for src, m in inp.terms.items():
                if src == INPUT or src in relays or any(o.name == src for o in ops):
                    raise LoweringError(f"{name}: the token selector may only read spiking "
                                        "populations and earlier selectors")
                inputs.append(FloatGroup(name=f"{src}->{name}", source=src, target=name,
                                         weight=sp.csr_matrix(m), layer=name, kind="token_input"))
            if node.previous and not any(t.name == node.previous for t in selects):
                raise LoweringError(f"{name}: previous selector '{node.previous}' does not "
                                    "come before it")
            selects.append(FloatTokenSelect(
                name=name, inputs=tuple(inputs), w1=np.asarray(node.w1), b1=np.asarray(node.b1),
                w2=np.asarray(node.w2), b2=np.asarray(node.b2), dim=node.dim,
                n_tokens=node.n_tokens, n_keep=node.n_keep, previous=node.previous))
            if node.time_steps != time_steps:
                raise LoweringError(f"{name}: time_steps ({node.time_steps}) differs from the "
                                    f"graph's ({time_steps})")
            n = node.dim * node.n_tokens
            exprs[name] = _Expr({name: sp.identity(n, format="csr")}, np.zeros(n), name)
        elif isinstance(node, LIF):
            tau = _per_neuron(node.tau)  # per-neuron values: sLIF (issue 3)
            r = _per_neuron(node.r)
            v_th = _per_neuron(node.v_threshold)
            if np.any(np.asarray(node.v_reset) != 0):
                raise LoweringError(f"{name}: v_reset must be 0 (Loihi resets to zero)")
            alpha = 1.0 - dt / tau
            gain = r * dt / tau
            leak = np.asarray(node.v_leak, np.float64).ravel() * dt / tau
            ge = str(node.metadata.get("threshold_comparison", ">=" if graph_ge else ">")) == ">="
            exprs[name] = make_population(name, "lif", node.output_shape, inp, alpha, gain, v_th,
                                          ge, leak)
            spiking.add(name)
        elif isinstance(node, Threshold):
            v_th = _uniform(node.threshold, "threshold", name)
            exprs[name] = make_population(name, "threshold", node.output_shape, inp, 0.0, 1.0,
                                          v_th, False, 0.0)
            spiking.add(name)
        elif isinstance(node, Integrator):
            r = _uniform(node.r, "r", name)
            weights = {}
            for src, m in inp.terms.items():
                if src == INPUT or src in relays or any(o.name == src for o in ops):
                    raise LoweringError(f"{name}: the readout may only read spiking populations "
                                        "and token selectors")
                weights[src] = sp.csr_matrix(m)
            readout = Readout(weights=weights, bias=inp.bias, scale=r * dt, num_outputs=inp.size)
            exprs[name] = inp
        elif isinstance(node, Output):
            if readout is None:  # spikes read out directly: counts per output neuron
                weights = {src: sp.csr_matrix(m) for src, m in inp.terms.items()}
                readout = Readout(weights=weights, bias=inp.bias, scale=1.0, num_outputs=inp.size)
        else:
            raise LoweringError(f"{name}: cannot lower node of type '{type(node).__name__}'")
    if not pops:
        raise LoweringError("graph: no spiking neurons to place on cores")
    missing = set(gate_of) - spiking
    if missing:
        raise LoweringError(f"gated node(s) {', '.join(sorted(missing))} are not spiking "
                            "populations; a token selector can only gate LIF/Threshold nodes")
    md["low_rank"] = low_rank
    return FloatProgram(populations=tuple(pops), groups=tuple(groups), attention=tuple(ops),
                        readout=readout, input_shape=tuple(input_shape), input_levels=levels,
                        time_steps=time_steps, metadata=md, token_selects=tuple(selects))
