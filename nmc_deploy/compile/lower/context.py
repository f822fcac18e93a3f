"""The lowering's registry of per-node-type functions and the context they build on.

A lowering function ``fn(ctx, name, node) -> LinearExpr | None`` is registered for one or
more IR node types with :func:`lowers` (nengo's ``Builder.register`` pattern) and found
through the node type's MRO (:func:`lowering_of`). It reads its input expression from the
:class:`LoweringContext` and adds populations, synapse groups, ops and the readout to it;
its return value is the node's output expression (None: the node has no output).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp

from ...errors import LoweringError
from ...ir import Graph, Node
from ...ir.conventions import Timing
from ...program import (CONST, INPUT, LI, RELAY, AttentionOp, FloatGroup, FloatPopulation,
                        FloatProgram, FloatTokenSelect, Readout)
from ...program.shared_weights import (ConvShared, TokenShared, add_weights, as_csr, compose,
                                       is_shared, replace_values, scale_rows, stored_values)
from .expr import LinearExpr, add_term, column, identity_expr, sum_exprs

__all__ = ["LoweringFunction", "lowers", "lowering_of", "lowered_node_types",
           "LoweringContext", "has_residual_stream"]

LoweringFunction = Callable[["LoweringContext", str, Node], "LinearExpr | None"]
_LOWERINGS: dict[type, LoweringFunction] = {}


def lowers(*node_types: type) -> Callable[[LoweringFunction], LoweringFunction]:
    """Register the decorated function as the lowering of ``node_types``."""
    def register(fn: LoweringFunction) -> LoweringFunction:
        for t in node_types:
            _LOWERINGS[t] = fn
        return fn
    return register


def lowering_of(node_type: type) -> LoweringFunction | None:
    """The lowering registered for ``node_type`` or its nearest base class (None: none)."""
    for cls in node_type.__mro__:
        if cls in _LOWERINGS:
            return _LOWERINGS[cls]
    return None


def lowered_node_types() -> tuple[type, ...]:
    """Every node type with a registered lowering."""
    return tuple(_LOWERINGS)


def _same_weights(a, b) -> bool:
    """True when ``a`` and ``b`` are the same matrix (the same object, or equal content)."""
    if a is b:
        return True
    if type(a) is not type(b) or a.shape != b.shape:
        return False
    if isinstance(a, TokenShared):
        return a.n_tokens == b.n_tokens and _same_weights(a.kernel, b.kernel)
    if isinstance(a, ConvShared):
        return (a.in_shape == b.in_shape and a.stride == b.stride and a.padding == b.padding
                and a.dilation == b.dilation and a.groups == b.groups and
                np.array_equal(a.kernel, b.kernel))
    return (a != b).nnz == 0


def has_residual_stream(fp: FloatProgram) -> bool:
    """True when ``fp`` reads a residual stream: it has residual relays, or a spiking
    population receives two or more groups from other spiking populations with the same
    matrix (what ``residual="relay"`` turns into one relay)."""
    if fp.metadata.get("residual_relays"):
        return True
    spiking = {p.name for p in fp.populations if p.kind not in (RELAY, LI)}
    incoming: dict[str, list] = {}
    for g in fp.groups:  # relays (low-rank) read the stream populations themselves
        if g.source in spiking and g.target in spiking and g.source != g.target:
            incoming.setdefault(g.target, []).append(g.weight)
    for ws in incoming.values():
        for i, a in enumerate(ws):
            if any(_same_weights(a, b) for b in ws[i + 1:]):
                return True
    return False


def _identity_like(m):
    """The identity on the columns of ``m``: token-shared (one ``C x C`` identity for every
    token) when ``m`` is token-shared, else scipy CSR."""
    if isinstance(m, TokenShared):
        return TokenShared(sp.identity(m.kernel.shape[1], format="csr"), m.n_tokens)
    return sp.identity(m.shape[1], format="csr")


def _without_zeros(m):
    """``m`` as CSR or shared weights without stored exact zeros (pruned synapses)."""
    if is_shared(m):
        return replace_values(m, stored_values(m))
    m = sp.csr_matrix(m, copy=True)  # compose may share one matrix among several terms
    m.eliminate_zeros()
    return m


class LoweringContext:
    """What the lowering of one graph has built so far (populations, groups, ops, readout)
    and the lookups every lowering function shares. Owned by one :func:`lower_graph` call.

    ``timing`` is the typed discretisation; ``back_of``/``back_into`` name the recurrent
    placeholders (:func:`~.structure.recurrence_placeholders`); ``gate_of`` maps gated neuron
    nodes to their token selectors; ``relay_nodes`` are the low-rank down factors deployed
    as relays; ``residual`` ("fan-in" or "relay") is how a residual stream reaches the
    populations that read it (:meth:`stream_terms`).
    """

    def __init__(self, graph: Graph, timing: Timing, *, input_levels: int, time_steps: int,
                 relay_nodes: set, back_of: dict, back_into: dict, gate_of: dict,
                 residual: str = "fan-in"):
        self.graph = graph
        self.timing = timing
        self.input_levels = input_levels
        self.time_steps = time_steps
        self.relay_nodes = relay_nodes
        self.back_of = back_of
        self.back_into = back_into
        self.gate_of = gate_of
        self.exprs: dict[str, LinearExpr] = {}
        self.pops: list[FloatPopulation] = []
        self.groups: list[FloatGroup] = []
        self.ops: list[AttentionOp] = []
        self.selects: list[FloatTokenSelect] = []
        self.readout: Readout | None = None
        self.input_shape: tuple | None = None
        self.spiking: set[str] = set()  # populations emitting binary spikes
        self.li_pops: set[str] = set()  # non-spiking LI/CubaLI populations
        self.relays: set[str] = set()
        self.residual = residual
        self.in_cycle: set[str] = set()  # neuron nodes on a recurrent cycle (walk sets it)
        self.stream_relays: dict[frozenset, str] = {}  # stream terms -> residual relay
        self._sum_node: dict[frozenset, str] = {}  # stream terms -> the node that summed them
        self._group_at: dict[tuple[str, str, int], int] = {}
        self._pending: list[tuple[str, str, int, sp.csr_matrix]] = []  # (pop, placeholder, lag, M)

    # ----------------------------------------------------------------- lookups
    def is_op(self, src: str) -> bool:
        return any(o.name == src for o in self.ops)

    def is_selector(self, src: str) -> bool:
        return any(t.name == src for t in self.selects)

    def source_expr(self, src: str, target: str) -> LinearExpr:
        """The expression node ``target`` reads from ``src`` (a placeholder if recurrent)."""
        ph = self.back_into.get((src, target))
        if ph is None:
            return self.exprs[src]
        n = int(np.prod(self.graph.nodes[src].output_shape))
        return identity_expr(ph, n, src)

    def summed_input(self, name: str, node: Node) -> LinearExpr:
        """The fan-in of every edge into ``name``, checked against the node's input shape."""
        inp = sum_exprs([self.source_expr(s, name) for s, _ in self.graph.predecessors(name)],
                        name)
        expected = int(np.prod(node.input_shape))
        if inp.size != expected:
            raise LoweringError(f"{name}: input size ({inp.size}) differs from the node's "
                                f"input shape {tuple(node.input_shape)}; check the edges into it")
        if len(self.graph.predecessors(name)) > 1:  # a sum: names a residual relay of its terms
            self._sum_node.setdefault(frozenset(k for k in inp.terms if self._streams(k)), name)
        return inp

    # ----------------------------------------------------------------- building
    def add_group(self, src: str, target: str, m, lag: int, layer: str) -> None:
        """One group ``src -> target`` per lag; a second term for the same key adds."""
        if src in self.li_pops:
            raise LoweringError(f"{target}: reads the voltage of non-spiking '{src}' (LI/CubaLI);"
                                " LI/CubaLI voltages can only be read by the graph Output")
        if lag and (self.is_op(src) or self.is_selector(src)):
            raise LoweringError(f"{target}: reads a delayed or recurrent output of '{src}'; "
                                "attention and token selector outputs cannot be delayed")
        m = _without_zeros(m)
        key = (src, target, lag)
        if key in self._group_at:
            i = self._group_at[key]
            old = self.groups[i]
            w = _without_zeros(add_weights(old.weight, m))
            self.groups[i] = FloatGroup(name=old.name, source=src, target=target, weight=w,
                                        layer=old.layer, kind=old.kind, lag=lag)
            return
        kind = ("encoding" if src == INPUT else "attention" if self.is_op(src) else
                "tokens" if self.is_selector(src) else "synapses")
        self._group_at[key] = len(self.groups)
        self.groups.append(FloatGroup(name=f"{src}->{target}" + (f"@{lag}" if lag else ""),
                                      source=src, target=target, weight=m, layer=layer,
                                      kind=kind, lag=lag))

    def _streams(self, key) -> bool:
        """True for a term a residual relay may sum: a spiking population, not recurrent."""
        src = key[0]
        return src in self.spiking and src not in self.back_of

    def stream_terms(self, terms: dict, layer: str) -> dict:
        """``terms`` with every residual stream read through one relay (``residual`` "relay";
        a new dict, ``terms`` untouched): two or more spiking populations read with the same
        matrix ``M`` (the stream ``x + f(x)`` before a linear layer) become one term
        ``(relay, 0): M``. The relay emits the integer sum of their spikes as a graded
        payload; a longer stream reuses the relay of its largest earlier part
        (``relay_k = relay_(k-1) + new populations``), so each stream population feeds one
        relay. Terms keep their lags on the relay's own groups."""
        if self.residual != "relay":
            return terms
        classes: list[list] = []
        for key in terms:
            if not self._streams(key):
                continue
            for cl in classes:
                if _same_weights(terms[cl[0]], terms[key]):
                    cl.append(key)
                    break
            else:
                classes.append([key])
        out = dict(terms)
        for cl in classes:
            if len(cl) < 2:
                continue
            m = terms[cl[0]]
            relay = self._stream_relay(frozenset(cl), _identity_like(m), layer)
            for key in cl:
                del out[key]
            out[(relay, 0)] = m
        return out

    def _stream_relay(self, stream: frozenset, eye, layer: str) -> str:
        """The residual relay emitting the sum of ``stream``'s (source, lag) terms (made on
        first use from the largest earlier relay whose terms it contains)."""
        if stream in self.stream_relays:
            return self.stream_relays[stream]
        base = max((s for s in self.stream_relays if s < stream), key=len, default=frozenset())
        node = self._sum_node.get(stream, layer)
        name, i = f"{node}.relay", 1
        taken = {p.name for p in self.pops} | set(self.graph.nodes)
        while name in taken:
            i += 1
            name = f"{node}.relay{i}"
        n = eye.shape[0]
        self.pops.append(FloatPopulation(name=name, shape=(n,), kind=RELAY, alpha=0.0,
                                         v_threshold=0.0, threshold_ge=False,
                                         bias=np.zeros(n)))
        order = {p.name: i for i, p in enumerate(self.pops)}
        inputs = ([(self.stream_relays[base], 0)] if base else []) + \
            sorted(stream - base, key=lambda k: (order[k[0]], k[1]))
        for src, lag in inputs:
            self.add_group(src, name, eye, lag, node)
        self.stream_relays[stream] = name
        return name

    def add_population(self, name: str, kind: str, shape, inp: LinearExpr, alpha, gain, v_th,
                       ge: bool, leak, alpha_syn=0.0, reset: str = "zero",
                       max_spikes: int | None = 1, v_min=None) -> LinearExpr:
        """A population of ``kind`` fed by ``gain * inp`` (a residual stream through its relay
        with ``residual`` "relay", :meth:`stream_terms`); returns its spike expression."""
        size = int(np.prod(shape))
        if inp.size != size:
            raise LoweringError(f"{name}: input size ({inp.size}) differs from the node size "
                                f"({size})")
        current = bool(np.any(np.asarray(alpha_syn) != 0))
        terms = self.stream_terms(inp.terms, inp.layer)
        if current:  # a constant input current: through CONST, not a voltage bias
            if np.any(inp.bias):
                add_term(terms, (CONST, 0), column(inp.bias))
            bias = np.broadcast_to(np.asarray(leak, np.float64), (size,)).copy()
        else:
            bias = gain * inp.bias + leak
        self.pops.append(FloatPopulation(name=name, shape=tuple(shape), kind=kind, alpha=alpha,
                                         v_threshold=v_th, threshold_ge=ge, bias=bias,
                                         gate=self.gate_of.get(name, ""), alpha_syn=alpha_syn,
                                         reset=reset, max_spikes=max_spikes, v_min=v_min))
        row_gain = np.broadcast_to(np.asarray(gain, np.float64), (size,))
        for (src, lag), m in terms.items():
            m = scale_rows(m, row_gain)
            if src in self.back_of:
                self._pending.append((name, src, lag, m))
                continue
            self.add_group(src, name, m, lag, inp.layer)
        (self.li_pops if kind == LI else self.spiking).add(name)
        return identity_expr(name, size, name)

    def add_relay(self, name: str, inp: LinearExpr) -> LinearExpr:
        """A relay population emitting ``inp`` without its bias, which stays in the
        expression (the consumer adds ``U @ bias``)."""
        for src, lag in inp.terms:
            if lag or src in self.back_of:
                raise LoweringError(f"{name}: a low-rank relay cannot read delayed or "
                                    "recurrent signals")
            if src != INPUT and src not in self.spiking and not self.is_selector(src):
                raise LoweringError(f"{name}: a low-rank relay may only read the input, "
                                    "neuron populations and token selectors")
        self.pops.append(FloatPopulation(name=name, shape=(inp.size,), kind=RELAY, alpha=0.0,
                                         v_threshold=0.0, threshold_ge=False,
                                         bias=np.zeros(inp.size)))
        for (src, _), m in inp.terms.items():
            self.add_group(src, name, m, 0, inp.layer)
        self.relays.add(name)
        return LinearExpr({(name, 0): sp.identity(inp.size, format="csr")}, inp.bias, name)

    def readout_weights(self, inp: LinearExpr, where: str, voltages: bool) -> dict:
        """The host readout's weights per source of ``inp`` (spikes, selectors, LI voltages)."""
        weights = {}
        for (src, lag), m in inp.terms.items():
            if lag or src in self.back_of or src == CONST:
                raise LoweringError(f"{where}: the readout cannot read delayed or recurrent "
                                    "signals; put the Delay before a neuron")
            ok = src in self.spiking or self.is_selector(src) or (voltages and src in self.li_pops)
            if not ok:
                raise LoweringError(f"{where}: the readout may only read spiking populations"
                                    + (", LI/CubaLI voltages" if voltages else "") +
                                    " and token selectors")
            weights[src] = as_csr(m)
        return weights

    # ----------------------------------------------------------------- finishing
    def _resolve(self, ph: str, nesting: int = 0) -> dict:
        """Terms of a placeholder: its back edge's source expression, one step later.

        Spikes before step 0 are zero, so a linear node in the cycle emits its constant from
        step 0 on (snnTorch's RLeaky adds ``recurrent(0) = bias`` in its first step): the
        constant terms take no extra step (a Delay's own lag stays)."""
        if nesting > len(self.back_of):
            raise LoweringError(f"recurrent edge {ph[1:-1]}: nested recurrence without a "
                                "neuron in between cannot be deployed")
        e = self.exprs[self.back_of[ph]]
        out: dict = {}
        for (src, lag), m in e.terms.items():
            if src in self.back_of:
                for (q, l2), m2 in self._resolve(src, nesting + 1).items():
                    add_term(out, (q, lag + l2 + (q != CONST)), compose(m, m2))
            else:
                add_term(out, (src, lag + (src != CONST)), m)
        if np.any(e.bias):
            add_term(out, (CONST, 0), column(e.bias))
        return out

    def close_recurrence(self) -> None:
        """Add the groups of the recurrent edges (lag + 1), now that every node is lowered."""
        order = {p.name: i for i, p in enumerate(self.pops)}
        for pop, ph, lag, m in self._pending:
            for (src, l2), w in self._resolve(ph).items():
                if src != pop and src in order and order[src] > order[pop]:
                    raise LoweringError(f"recurrent edge {ph[1:-1]}: brings '{src}' into "
                                        f"'{pop}', which comes first in the schedule; only "
                                        "self-recurrence of one population can be deployed")
                self.add_group(src, pop, compose(m, w), lag + l2,
                               self.exprs[self.back_of[ph]].layer)

    def program(self, metadata: dict) -> FloatProgram:
        """The lowered :class:`FloatProgram` (after :meth:`close_recurrence`)."""
        return FloatProgram(populations=tuple(self.pops), groups=tuple(self.groups),
                            attention=tuple(self.ops), readout=self.readout,
                            input_shape=tuple(self.input_shape),
                            input_levels=self.input_levels, time_steps=self.time_steps,
                            metadata=metadata, token_selects=tuple(self.selects))
