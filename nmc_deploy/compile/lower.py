"""Lower the graph IR to neuron populations and synapse groups (float; a pure pass).

Every node's output is carried as a linear expression over spike sources,
``sum_(src, lag) M_src @ s_src[t - lag] + c``: linear nodes (Conv, Affine, Scale, SumPool2d,
AvgPool2d, Flatten) compose into the matrices, fan-in adds expressions, a ``Delay`` of L steps
adds L to every lag (its constant becomes a lagged :data:`~.program.CONST` term: 0 for the
first L steps), and each neuron node turns its input expression into one population fed by
one synapse group per (source, lag). So a residual stream ``x + f(x)`` is never a population
of its own: each consumer receives synapses from every population of the stream, with the
same weights (deployment decision 3, "fan-in"), and BatchNorm is already folded by the
exporter.

Neurons (graph metadata "dt", "integrator", "reset", "threshold_comparison"; node metadata
"reset" and "threshold_comparison" override the graph's). With ``k(tau) = dt/tau``
("forward-euler", default) or ``1 - exp(-dt/tau)`` ("exact")::

    LIF      alpha = 1 - k,  gain = r k,  leak = v_leak k                    kind "lif"
    IF       alpha = 1,      gain = r dt                                      kind "lif"
    CubaLIF  alpha_syn = 1 - k_syn, alpha = 1 - k_mem,
             gain = w_in k_syn r k_mem (current in voltage units), leak = v_leak k_mem
    LI, CubaLI   as LIF, CubaLIF without spikes                               kind "li"
    Threshold    alpha = 0, gain = 1 (stateless, strict ``>``)                kind "threshold"

A population with a current gets its input's constant term through a :data:`CONST` group
(a constant input current is not a constant voltage bias). ``v_reset`` must be 0 (reset
"zero") or the reset "subtract" (``v -= v_threshold``). LI/CubaLI voltages may only be read
by the graph Output (the host readout reports them per step).

Recurrence (NIR, nirtorch): an edge that closes a cycle (:func:`~nmc_deploy.ir.graph.back_edges`)
carries a one-step delay. Its value enters the expression as a placeholder, replaced after
all nodes are lowered by the source's expression with every lag + 1 (its constant a CONST
term of lag 1). A cycle may contain exactly one neuron population plus linear nodes and
Delays (snnTorch's RLeaky/RSynaptic: ``lif -> w_rec -> lif``): the population's own spikes
come back through a group with lag 1, which Lava's Sparse delivers exactly one step later.
A cycle through two or more populations cannot keep the t-1 semantics in the pipelined
schedule (each population is one step deeper than its source) and is refused.

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
from ..ir import (IF, LI, LIF, Affine, AvgPool2d, Conv1d, Conv2d, CubaLI, CubaLIF, Delay, Flatten,
                  Graph, Input, Integrator, Output, Scale, SpikingSelfAttention, SumPool2d,
                  Threshold, TokenSelect, topo_order)
from ..ir.conventions import INTEGRATORS, RESETS
from ..ir.graph import back_edges, split_port
from .matrices import conv1d_matrix, conv2d_matrix, sumpool2d_matrix
from ..program import (CONST, INPUT, LI as LI_KIND, LOW_RANK_MODES, RELAY, AttentionOp,
                      FloatGroup, FloatPopulation, FloatProgram, FloatTokenSelect, Readout)

__all__ = ["lower_graph", "low_rank_down_nodes", "LOW_RANK_ROLE", "delay_steps"]

_NEURONS = (LIF, IF, CubaLIF, LI, CubaLI, Threshold)
_CYCLE_OK = (Affine, Conv1d, Conv2d, Scale, SumPool2d, AvgPool2d, Flatten, Delay)


@dataclass(frozen=True)
class _Expr:
    """sum over ``(source, lag)`` of ``terms[(source, lag)] @ s_source[t - lag]`` plus ``bias``;
    ``layer`` names the last graph node with weights (for reports)."""

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

    def delayed(self, lag: int) -> "_Expr":
        """This expression ``lag`` steps later (0 before): lags + lag, constant -> CONST."""
        terms: dict = {}
        for (src, l), m in self.terms.items():
            _add(terms, (src, l + lag), m)
        if np.any(self.bias):
            _add(terms, (CONST, lag), _column(self.bias))
        return _Expr(terms, np.zeros(self.size), self.layer)


def _add(terms: dict, key, m) -> None:
    terms[key] = terms[key] + m if key in terms else m


def _column(values) -> sp.csr_matrix:
    return sp.csr_matrix(np.asarray(values, np.float64).reshape(-1, 1))


def _sum(exprs: list[_Expr], where: str) -> _Expr:
    sizes = {e.size for e in exprs}
    if len(sizes) != 1:
        raise LoweringError(f"{where}: inputs of different sizes ({sorted(sizes)}) fan in")
    terms: dict = {}
    for e in exprs:
        for k, v in e.terms.items():
            _add(terms, k, v)
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
        ((src, lag), m), = e.terms.items()
        if (lag == 0 and m.shape[0] == m.shape[1] and
                (m != sp.identity(m.shape[0], format="csr")).nnz == 0):
            return src
    raise LoweringError(f"{where}: attention inputs must come straight from one spiking "
                        "population each, without weights or delays in between")


def delay_steps(delay_s, dt: float, where: str) -> int:
    """Steps of a NIR ``Delay``: ``round(delay / dt)``, one value for every element."""
    steps = np.asarray(delay_s, np.float64).ravel() / dt
    rounded = np.round(steps)
    if steps.size and not np.all(rounded == rounded[0]):
        raise LoweringError(f"{where}: delays differ across elements ({int(rounded.min())} to "
                            f"{int(rounded.max())} steps of dt={dt:g} s); only uniform delays "
                            "deploy (one synaptic delay per group)")
    if np.any(np.abs(steps - rounded) > 1e-6 * np.maximum(1.0, np.abs(steps))):
        raise LoweringError(f"{where}: delay ({float(np.ravel(delay_s)[0]):g} s) is not a "
                            f"whole number of steps of dt={dt:g} s")
    return int(rounded[0]) if steps.size else 0


def _flat(values, size: int) -> np.ndarray:
    """``values`` (scalar or any shape of ``size`` elements) as a flat float64 array."""
    return np.broadcast_to(np.asarray(values, np.float64).ravel(), (size,))


def _decay(tau, dt: float, integrator: str):
    """``k(tau)``: ``dt/tau`` (forward Euler) or ``1 - exp(-dt/tau)`` (exact)."""
    tau = _per_neuron(tau)
    return dt / tau if integrator == "forward-euler" else 1.0 - np.exp(-dt / np.asarray(tau))


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


def _check_cycles(graph: Graph, back: list, relay_nodes: set) -> None:
    """Each recurrent cycle holds exactly one neuron population plus linear nodes/Delays."""
    back_set = set(back)
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    pred: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for edge in graph.edges:
        if edge in back_set:
            continue
        node = split_port(edge[1], graph.nodes)[0]
        succ[edge[0]].append(node)
        pred[node].append(edge[0])

    def reach(start, nbrs):
        seen, todo = {start}, [start]
        while todo:
            for m in nbrs[todo.pop()]:
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    for src, dst_end in back:
        dst = split_port(dst_end, graph.nodes)[0]
        body = reach(dst, succ) & reach(src, pred)
        path, prev, todo = [], {dst: None}, [dst]  # shortest path dst -> src in the body
        while todo and src not in prev:
            n = todo.pop(0)
            for m in succ[n]:
                if m in body and m not in prev:
                    prev[m] = n
                    todo.append(m)
        n = src
        while n is not None:
            path.append(n)
            n = prev.get(n)
        cycle = " -> ".join(path[::-1] + [dst])
        neurons = [n for n in graph.nodes if n in body and isinstance(graph.nodes[n], _NEURONS)]
        others = [n for n in graph.nodes if n in body and n not in neurons and
                  (not isinstance(graph.nodes[n], _CYCLE_OK) or n in relay_nodes)]
        if others:
            n = others[0]
            what = "low-rank relay" if n in relay_nodes else f"{type(graph.nodes[n]).__name__} node"
            raise LoweringError(f"recurrent cycle {cycle}: contains {what} '{n}'; a cycle may "
                                "only hold one neuron population plus linear nodes and Delays")
        if len(neurons) != 1:
            if not neurons:
                raise LoweringError(f"recurrent cycle {cycle}: has no neuron (a loop of linear "
                                    "nodes); it cannot be deployed")
            raise LoweringError(f"recurrent cycle {cycle}: passes through {len(neurons)} neuron "
                                f"populations ({', '.join(neurons)}); only a population's "
                                "self-recurrence through linear nodes keeps NIR's one-step "
                                "delay in the pipelined schedule")


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
    md["input_name"] = graph.input_name  # NIRData inputs are keyed to it
    levels = int(input_levels if input_levels is not None else md.get("input_levels", 1))
    dt = md.get("dt")
    if dt is None:
        raise LoweringError("graph: no 'dt' in the graph metadata; give the time step "
                            "(NIR does not carry one)")
    dt = float(dt)
    time_steps = int(md.get("time_steps", 1))
    graph_ge = str(md.get("threshold_comparison", ">")) == ">="
    integrator = str(md.get("integrator", "forward-euler"))
    if integrator not in INTEGRATORS:
        raise LoweringError(f"graph: integrator '{integrator}' is not one of "
                            f"{', '.join(INTEGRATORS)}")
    graph_reset = str(md.get("reset", "zero"))
    back = back_edges(graph)
    _check_cycles(graph, back, relay_nodes)
    back_of: dict[str, str] = {}  # placeholder source name -> the back edge's source node
    back_into: dict[tuple[str, str], str] = {}  # (source, target node) -> placeholder
    for src, dst_end in back:
        dst = split_port(dst_end, graph.nodes)[0]
        ph = f"<{src} -> {dst_end}>"
        back_of[ph] = src
        back_into[(src, dst)] = ph

    exprs: dict[str, _Expr] = {}
    pops: list[FloatPopulation] = []
    groups: list[FloatGroup] = []
    group_at: dict[tuple[str, str, int], int] = {}
    pending: list[tuple[str, str, int, sp.csr_matrix]] = []  # (pop, placeholder, lag, M)
    ops: list[AttentionOp] = []
    selects: list[FloatTokenSelect] = []
    li_pops: set[str] = set()
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

    def is_op(src):
        return any(o.name == src for o in ops)

    def is_selector(src):
        return any(t.name == src for t in selects)

    def add_group(src, target, m, lag, layer):
        """One group ``src -> target`` per lag; a second term for the same key adds."""
        if src in li_pops:
            raise LoweringError(f"{target}: reads the voltage of non-spiking '{src}' (LI/CubaLI);"
                                " LI/CubaLI voltages can only be read by the graph Output")
        if lag and (is_op(src) or is_selector(src)):
            raise LoweringError(f"{target}: reads a delayed or recurrent output of '{src}'; "
                                "attention and token selector outputs cannot be delayed")
        m = sp.csr_matrix(m)
        m.eliminate_zeros()
        key = (src, target, lag)
        if key in group_at:
            i = group_at[key]
            w = sp.csr_matrix(groups[i].weight + m)
            w.eliminate_zeros()
            groups[i] = FloatGroup(name=groups[i].name, source=src, target=target, weight=w,
                                   layer=groups[i].layer, kind=groups[i].kind, lag=lag)
            return
        kind_g = ("encoding" if src == INPUT else "attention" if is_op(src) else
                  "tokens" if is_selector(src) else "synapses")
        group_at[key] = len(groups)
        groups.append(FloatGroup(name=f"{src}->{target}" + (f"@{lag}" if lag else ""),
                                 source=src, target=target, weight=m, layer=layer, kind=kind_g,
                                 lag=lag))

    def make_population(name, kind, shape, inp: _Expr, alpha, gain, v_th, ge, leak,
                        alpha_syn=0.0, reset="zero"):
        size = int(np.prod(shape))
        if inp.size != size:
            raise LoweringError(f"{name}: input size ({inp.size}) differs from the node size "
                                f"({size})")
        current = bool(np.any(np.asarray(alpha_syn) != 0))
        terms = dict(inp.terms)
        if current:  # a constant input current: through CONST, not a voltage bias
            if np.any(inp.bias):
                _add(terms, (CONST, 0), _column(inp.bias))
            bias = np.broadcast_to(np.asarray(leak, np.float64), (size,)).copy()
        else:
            bias = gain * inp.bias + leak
        pops.append(FloatPopulation(name=name, shape=tuple(shape), kind=kind, alpha=alpha,
                                    v_threshold=v_th, threshold_ge=ge, bias=bias,
                                    gate=gate_of.get(name, ""), alpha_syn=alpha_syn,
                                    reset=reset))
        row_gain = sp.diags(np.broadcast_to(np.asarray(gain, np.float64), (size,)))
        for (src, lag), m in terms.items():
            m = sp.csr_matrix(row_gain @ m)
            if src in back_of:
                pending.append((name, src, lag, m))
                continue
            add_group(src, name, m, lag, inp.layer)
        return _Expr({(name, 0): sp.identity(size, format="csr")}, np.zeros(size), name)

    def make_relay(name, inp: _Expr) -> _Expr:
        """A relay population emitting ``inp`` without its bias, which stays in the
        expression (the consumer adds ``U @ bias``)."""
        for src, lag in inp.terms:
            if lag or src in back_of:
                raise LoweringError(f"{name}: a low-rank relay cannot read delayed or "
                                    "recurrent signals")
            if src != INPUT and src not in spiking and not is_selector(src):
                raise LoweringError(f"{name}: a low-rank relay may only read the input, "
                                    "neuron populations and token selectors")
        pops.append(FloatPopulation(name=name, shape=(inp.size,), kind=RELAY, alpha=0.0,
                                    v_threshold=0.0, threshold_ge=False,
                                    bias=np.zeros(inp.size)))
        for (src, _), m in inp.terms.items():
            add_group(src, name, m, 0, inp.layer)
        relays.add(name)
        return _Expr({(name, 0): sp.identity(inp.size, format="csr")}, inp.bias, name)

    def readout_weights(inp: _Expr, where: str, voltages: bool) -> dict:
        weights = {}
        for (src, lag), m in inp.terms.items():
            if lag or src in back_of or src == CONST:
                raise LoweringError(f"{where}: the readout cannot read delayed or recurrent "
                                    "signals; put the Delay before a neuron")
            ok = src in spiking or is_selector(src) or (voltages and src in li_pops)
            if not ok:
                raise LoweringError(f"{where}: the readout may only read spiking populations"
                                    + (", LI/CubaLI voltages" if voltages else "") +
                                    " and token selectors")
            weights[src] = sp.csr_matrix(m)
        return weights

    def spiking_params(name, node):
        ge = str(node.metadata.get("threshold_comparison", ">=" if graph_ge else ">")) == ">="
        reset = str(node.metadata.get("reset", graph_reset))
        if reset not in RESETS:
            raise LoweringError(f"{name}: reset '{reset}' is not one of {', '.join(RESETS)}")
        if reset == "zero" and np.any(np.asarray(node.v_reset) != 0):
            raise LoweringError(f"{name}: v_reset must be 0 (Loihi resets to zero; or use "
                                "the reset \"subtract\")")
        return _per_neuron(node.v_threshold), ge, reset

    relays: set[str] = set()
    spiking: set[str] = set()
    for name in topo_order(graph):
        node = graph.nodes[name]
        preds = graph.predecessors(name)

        def pred_expr(src):
            ph = back_into.get((src, name))
            if ph is None:
                return exprs[src]
            n = int(np.prod(graph.nodes[src].output_shape))
            return _Expr({(ph, 0): sp.identity(n, format="csr")}, np.zeros(n), src)

        if isinstance(node, Input):
            input_shape = node.shape
            n = int(np.prod(node.shape))
            exprs[name] = _Expr({(INPUT, 0): sp.identity(n, format="csr") / levels},
                                np.zeros(n), name)
            continue
        if not preds:
            raise LoweringError(f"{name}: node has no inputs")
        if isinstance(node, SpikingSelfAttention):
            ports = {}
            for src, port in preds:
                ports.setdefault(port, []).append(pred_expr(src))
            missing = {"q", "k", "v"} - set(ports)
            if missing:
                raise LoweringError(f"{name}: attention port(s) {', '.join(sorted(missing))} "
                                    "have no incoming edge")
            srcs = {p: _is_identity_of(_sum(ports[p], name), f"{name}.{p}") for p in "qkv"}
            if relays & set(srcs.values()):
                raise LoweringError(f"{name}: attention inputs must be spiking populations, "
                                    "not low-rank relays")
            bad = [s for s in srcs.values() if s not in spiking]
            if bad:
                raise LoweringError(f"{name}: attention input '{bad[0]}' is not a spiking "
                                    "population")
            ops.append(AttentionOp(name=name, q=srcs["q"], k=srcs["k"], v=srcs["v"],
                                   num_heads=node.num_heads, dim=node.dim,
                                   n_tokens=node.n_tokens))
            n = node.dim * node.n_tokens
            exprs[name] = _Expr({(name, 0): sp.identity(n, format="csr") * node.scale},
                                np.zeros(n), name)
            continue
        inp = _sum([pred_expr(s) for s, _ in preds], name)
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
        elif isinstance(node, AvgPool2d):
            m = sumpool2d_matrix(node.input_chw, node.kernel_size, node.stride, node.padding)
            kh, kw = node.kernel_size
            exprs[name] = inp.apply(m / float(kh * kw), 0.0, name)
        elif isinstance(node, Flatten):
            exprs[name] = inp
        elif isinstance(node, Delay):
            lag = delay_steps(node.delay, dt, name)
            exprs[name] = inp.delayed(lag) if lag else inp
        elif isinstance(node, TokenSelect):
            if np.any(inp.bias):
                raise LoweringError(f"{name}: the token selector's input has a constant term; "
                                    "it must be a sum of spike sources")
            inputs = []
            for (src, lag), m in inp.terms.items():
                if (src in (INPUT, CONST) or src in relays or is_op(src) or lag or
                        src in back_of or src in li_pops):
                    raise LoweringError(f"{name}: the token selector may only read spiking "
                                        "populations and earlier selectors, without delays")
                inputs.append(FloatGroup(name=f"{src}->{name}", source=src, target=name,
                                         weight=sp.csr_matrix(m), layer=name, kind="token_input"))
            if node.previous and not is_selector(node.previous):
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
            exprs[name] = _Expr({(name, 0): sp.identity(n, format="csr")}, np.zeros(n), name)
        elif isinstance(node, LIF):
            tau = _per_neuron(node.tau)  # per-neuron values: sLIF (issue 3)
            r = _per_neuron(node.r)
            v_th, ge, reset = spiking_params(name, node)
            if integrator == "forward-euler":  # the historical form, bit for bit
                alpha, gain = 1.0 - dt / tau, r * dt / tau
                leak = np.asarray(node.v_leak, np.float64).ravel() * dt / tau
            else:
                k = _decay(node.tau, dt, integrator)
                alpha, gain = 1.0 - k, r * k
                leak = np.asarray(node.v_leak, np.float64).ravel() * k
            exprs[name] = make_population(name, "lif", node.output_shape, inp, alpha, gain, v_th,
                                          ge, leak, reset=reset)
            spiking.add(name)
        elif isinstance(node, IF):
            v_th, ge, reset = spiking_params(name, node)
            exprs[name] = make_population(name, "lif", node.output_shape, inp, 1.0,
                                          _per_neuron(node.r) * dt, v_th, ge, 0.0, reset=reset)
            spiking.add(name)
        elif isinstance(node, (CubaLIF, CubaLI)):
            size = int(np.prod(node.output_shape))
            k_syn = _flat(_decay(node.tau_syn, dt, integrator), size)
            k_mem = _flat(_decay(node.tau_mem, dt, integrator), size)
            gain = _per_neuron(_flat(node.w_in, size) * k_syn * _flat(node.r, size) * k_mem)
            leak = _flat(node.v_leak, size) * k_mem
            alpha_syn = _per_neuron(1.0 - k_syn)
            alpha = _per_neuron(1.0 - k_mem)
            if np.any(np.asarray(alpha_syn) == 0):
                raise LoweringError(f"{name}: tau_syn equals dt (the current would not be kept "
                                    "at all); use an LIF/LI node instead")
            if isinstance(node, CubaLIF):
                v_th, ge, reset = spiking_params(name, node)
                exprs[name] = make_population(name, "lif", node.output_shape, inp, alpha, gain,
                                              v_th, ge, leak, alpha_syn=alpha_syn, reset=reset)
                spiking.add(name)
            else:
                exprs[name] = make_population(name, LI_KIND, node.output_shape, inp, alpha,
                                              gain, 0.0, False, leak, alpha_syn=alpha_syn)
                li_pops.add(name)
        elif isinstance(node, LI):
            k = _decay(node.tau, dt, integrator)
            exprs[name] = make_population(name, LI_KIND, node.output_shape, inp, 1.0 - k,
                                          _per_neuron(node.r) * k, 0.0, False,
                                          np.asarray(node.v_leak, np.float64).ravel() * k)
            li_pops.add(name)
        elif isinstance(node, Threshold):
            v_th = _uniform(node.threshold, "threshold", name)
            exprs[name] = make_population(name, "threshold", node.output_shape, inp, 0.0, 1.0,
                                          v_th, False, 0.0)
            spiking.add(name)
        elif isinstance(node, Integrator):
            r = _uniform(node.r, "r", name)
            readout = Readout(weights=readout_weights(inp, name, voltages=False), bias=inp.bias,
                              scale=r * dt, num_outputs=inp.size, cumulative=True)
            exprs[name] = inp
        elif isinstance(node, Output):
            if readout is None:  # sources read out directly: spikes (counts) or LI voltages
                readout = Readout(weights=readout_weights(inp, name, voltages=True),
                                  bias=inp.bias, scale=1.0, num_outputs=inp.size)
        else:
            raise LoweringError(f"{name}: cannot lower node of type '{type(node).__name__}'")
    if not pops:
        raise LoweringError("graph: no spiking neurons to place on cores")
    missing = set(gate_of) - spiking
    if missing:
        raise LoweringError(f"gated node(s) {', '.join(sorted(missing))} are not spiking "
                            "populations; a token selector can only gate LIF/Threshold nodes")

    def resolve(ph: str, nesting: int = 0) -> dict:
        """Terms of a placeholder: its back edge's source expression, one step later."""
        if nesting > len(back_of):
            raise LoweringError(f"recurrent edge {ph[1:-1]}: nested recurrence without a "
                                "neuron in between cannot be deployed")
        e = exprs[back_of[ph]]
        out: dict = {}
        for (src, lag), m in e.terms.items():
            if src in back_of:
                for (q, l2), m2 in resolve(src, nesting + 1).items():
                    _add(out, (q, lag + l2 + 1), sp.csr_matrix(m @ m2))
            else:
                _add(out, (src, lag + 1), m)
        if np.any(e.bias):
            _add(out, (CONST, 1), _column(e.bias))
        return out

    order = {p.name: i for i, p in enumerate(pops)}
    for pop, ph, lag, m in pending:
        for (src, l2), w in resolve(ph).items():
            if src != pop and src in order and order[src] > order[pop]:
                raise LoweringError(f"recurrent edge {ph[1:-1]}: brings '{src}' into '{pop}', "
                                    "which comes first in the schedule; only self-recurrence "
                                    "of one population can be deployed")
            add_group(src, pop, sp.csr_matrix(m @ w), lag + l2, exprs[back_of[ph]].layer)
    md["low_rank"] = low_rank
    return FloatProgram(populations=tuple(pops), groups=tuple(groups), attention=tuple(ops),
                        readout=readout, input_shape=tuple(input_shape), input_levels=levels,
                        time_steps=time_steps, metadata=md, token_selects=tuple(selects))
