"""Per-layer counts of a graph without lowering it: populations, synapse groups and their
nonzeros, from node shapes and weights only (pure; the pre-flight's input).

:func:`count_layers` walks the graph in the lowering's order and keeps, for every node,
which sources reach it through which chain of linear nodes (``sum_(src, lag) chain_src``,
the lowering's linear expressions with node names in place of matrices). Neuron nodes
become populations and each ``(source, lag)`` term one synapse group, as in
:mod:`~nmc_deploy.compile.lower`; nothing is composed or copied: a group whose chain is
one node (every group of an exported Spikformer) is counted from that node's own weights
(:class:`WeightCounts`, computed once per node however many residual sources share it).
Chains of several weighted nodes are multiplied only when small
(:data:`COMPOSE_BUDGET`); larger ones are left uncounted (``counts`` None: they add
nothing to a lower bound). Constant-current groups (CONST) are not counted either. Only
weights that surely survive quantization are counted (:data:`GRID_STEPS`), so every count is
at most the compiled program's.

The counts follow the partitioner's cost model (:mod:`~.partition`, ``_chunk_cost``):
``row_entries``/``row_axons`` are the synapse entries and input axons one neuron needs on a
core of its own, with or without shared storage; ``entries``/``lists``/``axons`` are lower
bounds of the same over all cores of the program.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import LoweringError
from ..ir import IF, LIF
from ..ir import LI as IrLI
from ..ir import (Affine, AvgPool2d, Conv1d, Conv2d, CubaLI, CubaLIF, Delay, Flatten, Graph,
                  Input, Integrator, Scale, SpikingSelfAttention, SumPool2d, Threshold,
                  TokenSelect, topo_order)
from ..ir.conventions import Timing
from ..ir.graph import back_edges, split_port
from ..program import INPUT, LI, RELAY, AttentionOp
from ..program.shared_weights import ConvShared, TokenShared, add_weights, compose
from .lower import delay_steps, graph_timing, low_rank_down_nodes
from .lower.linear import conv_weights
from .lower.structure import NEURON_NODES

__all__ = ["WeightCounts", "GroupCounts", "LayerCounts", "count_layers", "count_weights",
           "with_residual_relays",
           "COMPOSE_BUDGET", "GRID_STEPS"]

COMPOSE_BUDGET = 4_000_000  # expanded nonzeros a chain of weighted nodes may have to be multiplied
# The quantizer (weights.quantize_weights) puts a group's largest real weight in the top half
# of Lava's 8-bit grid (above 127 steps; mixed sign: even steps), so a weight above 1/127 of
# the group's largest never rounds to zero; smaller ones may, and are not counted.
GRID_STEPS = 127

_LINEAR = (Conv2d, Conv1d, Affine, SumPool2d, AvgPool2d)


@dataclass(frozen=True, eq=False)
class WeightCounts:
    """Counts of one synapse matrix (target neurons x source neurons).

    ``row_*`` arrays have one entry per target neuron; "shared" fields are the costs under
    shared storage (equal to the unshared ones for matrices that are not shared).
    """

    synapses: int  # expanded nonzeros (one per token/position copy)
    stored: int  # weights stored once per core with sharing (== synapses if not shared)
    shared: bool  # a token-parallel layer or convolution
    row_synapses: np.ndarray  # expanded nonzeros per target neuron
    row_entries_shared: np.ndarray  # synapse entries of one neuron alone on a core, shared
    row_axons_shared: np.ndarray  # input axons of one neuron alone on a core, shared
    sources_used: int  # source neurons with at least one synapse
    lists_shared: int  # synapse lists of shared storage (per input channel / channel and tap)
    axons_shared: int  # input axons of shared storage over all cores (tokens / positions)
    max_fanout: int  # most synapses of one source neuron

    def row_entries(self, sharing: bool) -> np.ndarray:
        return self.row_entries_shared if sharing and self.shared else self.row_synapses

    def row_axons(self, sharing: bool) -> np.ndarray:
        return self.row_axons_shared if sharing and self.shared else self.row_synapses

    def entries(self, sharing: bool) -> int:
        """Synapse entries over all cores (a lower bound)."""
        return self.stored if sharing and self.shared else self.synapses

    def lists(self, sharing: bool) -> int:
        """Synapse lists (one header each) over all cores (a lower bound)."""
        return self.lists_shared if sharing and self.shared else self.sources_used

    def axons(self, sharing: bool) -> int:
        """Input axons over all cores (a lower bound)."""
        return self.axons_shared if sharing and self.shared else self.sources_used


def _survivors(abs_w: np.ndarray, lo, hi) -> np.ndarray:
    """Which of ``abs_w`` surely survive rounding onto the weight grid (:data:`GRID_STEPS`);
    ``lo``/``hi``: the smallest/largest row scale of each entry (1 when uniform)."""
    top = float((abs_w * hi).max(initial=0.0))
    return (abs_w * lo) > top / GRID_STEPS


def _row_bounds(scale, rows: int, per: int):
    """Per output row of a kernel: the smallest and largest scale of its ``per`` neurons."""
    if scale is None:
        return 1.0, 1.0
    s = np.asarray(scale, np.float64).reshape(rows, per)
    return s.min(axis=1), s.max(axis=1)


def _plain_counts(nnz_rows: np.ndarray, nnz_cols: np.ndarray) -> WeightCounts:
    rows = nnz_rows.astype(np.int64, copy=False)
    used = int(np.count_nonzero(nnz_cols))
    return WeightCounts(synapses=int(rows.sum()), stored=int(rows.sum()), shared=False,
                        row_synapses=rows, row_entries_shared=rows, row_axons_shared=rows,
                        sources_used=used, lists_shared=used, axons_shared=used,
                        max_fanout=int(nnz_cols.max(initial=0)))


def _token_counts(kernel, n: int, scale=None) -> WeightCounts:
    """A token-parallel layer ``kernel (x) I_n``; ``kernel`` dense or scipy (C_out, C_in)."""
    lo, hi = _row_bounds(scale, kernel.shape[0], n)
    if isinstance(kernel, np.ndarray):
        abs_k = np.abs(kernel)
        nz = _survivors(abs_k, np.reshape(lo, (-1, 1)), np.reshape(hi, (-1, 1)))
        per_row, per_col = nz.sum(axis=1), nz.sum(axis=0)
    else:
        k = sp.csr_matrix(kernel)
        r = np.repeat(np.arange(k.shape[0]), np.diff(k.indptr))
        keep = _survivors(np.abs(k.data), np.broadcast_to(lo, (k.shape[0],))[r],
                          np.broadcast_to(hi, (k.shape[0],))[r])
        per_row = np.bincount(r[keep], minlength=k.shape[0])
        per_col = np.bincount(k.indices[keep], minlength=k.shape[1])
    rows = np.repeat(per_row.astype(np.int64), n)
    used, stored = int(np.count_nonzero(per_col)), int(per_row.sum())
    return WeightCounts(synapses=stored * n, stored=stored, shared=True,
                        row_synapses=rows, row_entries_shared=rows,
                        row_axons_shared=(rows > 0).astype(np.int64),
                        sources_used=used * n, lists_shared=used,
                        axons_shared=n if stored else 0, max_fanout=int(per_col.max(initial=0)))


def _valid_taps(w: ConvShared, axis: int) -> np.ndarray:
    """(taps, outputs) 0/1: tap ``a`` of output ``p`` lands inside the input along ``axis``."""
    out = np.zeros((w.kernel.shape[2 + axis], w.out_hw[axis]))
    for a, (o, _) in enumerate(w._valid(axis)):
        out[a, o] = 1.0
    return out


def _input_taps(w: ConvShared, axis: int) -> np.ndarray:
    """(taps, inputs) bool: input ``i`` is read through tap ``a`` by some output."""
    out = np.zeros((w.kernel.shape[2 + axis], w.in_shape[1 + axis]), bool)
    for a, (_, i) in enumerate(w._valid(axis)):
        out[a, i] = True
    return out


def _conv_sources(w: ConvShared, nz: np.ndarray) -> tuple[int, int]:
    """Source neurons with a synapse, and the fan-out of one source (the input channel
    with the most targets at the input's centre: a lower bound of the largest fan-out)."""
    co, cig, kh, kw = nz.shape
    cpo = co // w.groups
    taps_in = np.zeros((w.in_shape[0], kh, kw), np.int64)  # targets per input channel, tap
    for g in range(w.groups):
        taps_in[g * cig:(g + 1) * cig] = nz[g * cpo:(g + 1) * cpo].sum(axis=0)
    iy, ix = _input_taps(w, 0), _input_taps(w, 1)
    used = 0
    patterns, counts = np.unique((taps_in > 0).reshape(len(taps_in), -1), axis=0,
                                 return_counts=True)
    for pattern, n in zip(patterns, counts):  # channels reading through the same taps
        on = pattern.reshape(kh, kw)
        mask = (iy.T.astype(np.int64) @ on.astype(np.int64) @ ix.astype(np.int64)) > 0
        used += int(n) * int(mask.sum())
    cy, cx = w.in_shape[1] // 2, w.in_shape[2] // 2
    centre = taps_in * (iy[:, cy][:, None] & ix[:, cx][None, :])[None]
    return used, int(centre.sum(axis=(1, 2)).max(initial=0))


def _conv_counts(w: ConvShared, scale=None) -> WeightCounts:
    co = w.kernel.shape[0]
    hw = w.out_hw[0] * w.out_hw[1]
    lo, hi = _row_bounds(scale, co, hw)
    shape = (-1, 1, 1, 1)
    nz = _survivors(np.abs(w.kernel), np.reshape(lo, shape), np.reshape(hi, shape))
    vy, vx = _valid_taps(w, 0), _valid_taps(w, 1)
    per_tap = nz.sum(axis=1).astype(np.float64)  # (co, kh, kw)
    rows = np.matmul(vy.T[None], per_tap @ vx).astype(np.int64).ravel()  # (co, ho, wo)
    per_channel = nz.reshape(co, -1).sum(axis=1).astype(np.int64)
    # one output reads every valid tap position (the partitioner counts taps, not weights)
    positions = np.outer(vy.sum(axis=0), vx.sum(axis=0)).astype(np.int64).ravel()
    axons_one = ((per_channel > 0)[:, None] * positions[None, :]).ravel()
    lists = int(nz.reshape(w.groups, co // w.groups, -1).any(axis=1).sum())
    iy, ix = _input_taps(w, 0), _input_taps(w, 1)
    stored = int(per_channel.sum())
    used, fanout = _conv_sources(w, nz)
    return WeightCounts(synapses=int(rows.sum()), stored=stored, shared=True,
                        row_synapses=rows, row_entries_shared=np.repeat(per_channel, hw),
                        row_axons_shared=axons_one, sources_used=used, lists_shared=lists,
                        axons_shared=int(iy.any(axis=0).sum() * ix.any(axis=0).sum())
                        if stored else 0, max_fanout=fanout)


def count_weights(m, scale=None) -> WeightCounts:
    """:class:`WeightCounts` of the weights of a synapse matrix that surely survive
    quantization: a scipy matrix, a dense array or shared weights
    (:mod:`~nmc_deploy.program.shared_weights`); ``scale``: the real weight per unit of
    ``m`` of each target neuron, when not uniform (per-neuron thresholds)."""
    if isinstance(m, TokenShared):
        return _token_counts(m.kernel, m.n_tokens, scale)
    if isinstance(m, ConvShared):
        return _conv_counts(m, scale)
    s = np.ones(m.shape[0]) if scale is None else np.asarray(scale, np.float64)
    if isinstance(m, np.ndarray):
        nz = _survivors(np.abs(m), s[:, None], s[:, None])
        return _plain_counts(nz.sum(axis=1), nz.sum(axis=0))
    m = sp.csr_matrix(m)
    r = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    keep = _survivors(np.abs(m.data), s[r], s[r])
    return _plain_counts(np.bincount(r[keep], minlength=m.shape[0]),
                         np.bincount(m.indices[keep], minlength=m.shape[1]))


def _identity_counts(n: int) -> WeightCounts:
    return _plain_counts(np.ones(n, np.int64), np.ones(n, np.int64))


@dataclass(frozen=True)
class GroupCounts:
    """One synapse group ``source -> target`` with lag ``lag`` (the lowering's group)."""

    source: str
    target: str
    lag: int
    kind: str  # "encoding", "synapses", "attention", "tokens"
    counts: WeightCounts | None  # None: a chain too large to multiply cheaply


@dataclass(frozen=True)
class LayerCounts:
    """What :func:`count_layers` found: populations (program order), groups, ops."""

    populations: dict[str, tuple[int, str]]  # name -> (neurons, kind)
    groups: tuple[GroupCounts, ...]
    attention: tuple[AttentionOp, ...]
    selectors: dict[str, tuple[str, ...]]  # token selector -> the sources it reads
    time_steps: int
    sizes: dict[str, int] = field(default_factory=dict)  # every group source's neurons
    residual_relays: tuple[str, ...] = ()  # relay populations of the residual streams

    @property
    def neurons(self) -> int:
        return sum(n for n, _ in self.populations.values())


class _Walk:
    """The state of one :func:`count_layers` call (expressions, populations, groups)."""

    def __init__(self, graph: Graph, timing: Timing | None, relay_nodes: set):
        self.graph = graph
        self.timing = timing
        self.dt = timing.dt if timing is not None else None
        self.scales: dict[str, np.ndarray] = {}  # populations with per-neuron weight scales
        self.relay_nodes = relay_nodes
        self.back = {(a, split_port(b, graph.nodes)[0]) for a, b in back_edges(graph)}
        self.exprs: dict[str, dict] = {}  # node -> {(source, lag): chain}
        self.pops: dict[str, tuple[int, str]] = {}
        self.groups: dict[tuple[str, str, int], tuple] = {}
        self.ops: list[AttentionOp] = []
        self.selectors: dict[str, tuple[str, ...]] = {}
        self.sizes: dict[str, int] = {}
        self.counts_cache: dict = {}
        self.matrix_cache: dict = {}

    # ------------------------------------------------------------------ expressions
    def summed(self, name: str) -> dict:
        out: dict = {}
        for src, _ in self.graph.predecessors(name):
            if (src, name) in self.back:
                terms = {(f"<back:{src}>", 0): ()}
            else:
                terms = self.exprs.get(src, {})
            for key, chain in terms.items():
                out[key] = _merge(out[key], chain) if key in out else chain
        return out

    def source(self, name: str, size: int) -> dict:
        self.sizes[name] = size
        return {(name, 0): ()}

    def add_population(self, name: str, size: int, kind: str, inp: dict) -> None:
        self.pops[name] = (size, kind)
        scale = _row_scale(self.graph.nodes[name], self.timing, size)
        if scale is not None:
            self.scales[name] = scale
        for (src, lag), chain in inp.items():
            key = (src, name, lag)
            self.groups[key] = _merge(self.groups[key], chain) if key in self.groups else chain
        self.exprs[name] = self.source(name, size)

    # ------------------------------------------------------------------ nodes
    def visit(self, name: str) -> None:
        node = self.graph.nodes[name]
        if isinstance(node, Input):
            self.exprs[name] = self.source(INPUT, int(np.prod(node.shape)))
            return
        inp = self.summed(name)
        if isinstance(node, NEURON_NODES):
            kind = (LI if isinstance(node, (IrLI, CubaLI)) else
                    "threshold" if isinstance(node, Threshold) else "lif")
            self.add_population(name, int(np.prod(node.output_shape)), kind, inp)
        elif isinstance(node, _LINEAR):
            out = {key: (name,) + chain for key, chain in inp.items()}
            if name in self.relay_nodes:
                self.add_population(name, int(np.prod(node.output_shape)), RELAY, out)
            else:
                self.exprs[name] = out
        elif isinstance(node, Scale):
            zeros = not np.all(np.asarray(node.scale) != 0)
            self.exprs[name] = {k: (name,) + c for k, c in inp.items()} if zeros else inp
        elif isinstance(node, Delay):
            lag = delay_steps(node.delay, self.dt, name) if self.dt else 0
            self.exprs[name] = {(s, l + lag): c for (s, l), c in inp.items()}
        elif isinstance(node, (Flatten, Integrator)):
            self.exprs[name] = inp
        elif isinstance(node, SpikingSelfAttention):
            self.add_attention(name, node)
        elif isinstance(node, TokenSelect):
            self.selectors[name] = tuple(sorted({s for s, _ in inp}))
            self.exprs[name] = self.source(name, node.dim * node.n_tokens)

    def add_attention(self, name: str, node: SpikingSelfAttention) -> None:
        ports: dict[str, str] = {}
        for src, port in self.graph.predecessors(name):
            for s, _ in self.exprs.get(src, {}):
                ports.setdefault(port, s)
        if all(p in ports for p in "qkv"):
            self.ops.append(AttentionOp(name=name, q=ports["q"], k=ports["k"], v=ports["v"],
                                        num_heads=node.num_heads, dim=node.dim,
                                        n_tokens=node.n_tokens))
        self.exprs[name] = self.source(name, node.dim * node.n_tokens)

    def close_recurrence(self) -> None:
        """Replace the placeholder of every recurrent edge by its source's terms, lag + 1."""
        for (src, target, lag), chain in list(self.groups.items()):
            if not src.startswith("<back:"):
                continue
            del self.groups[(src, target, lag)]
            for (s, l2), c in self.exprs.get(src[6:-1], {}).items():
                if s.startswith("<back:"):
                    continue  # nested recurrence without a neuron: the lowering refuses it
                key = (s, target, lag + l2 + 1)
                new = chain + c
                self.groups[key] = _merge(self.groups[key], new) if key in self.groups else new

    # ------------------------------------------------------------------ counts
    def node_matrix(self, name: str):
        """The weights of one linear node as the lowering builds them (cached)."""
        if name not in self.matrix_cache:
            node = self.graph.nodes[name]
            if isinstance(node, Conv2d):
                m = conv_weights(node.weight, node.input_hw, node.stride, node.padding,
                                 node.dilation, node.groups)
            elif isinstance(node, Conv1d):
                m = conv_weights(np.asarray(node.weight)[:, :, None, :], (1, node.input_length),
                                 (1, node.stride), (0, node.padding), (1, node.dilation),
                                 node.groups)
            elif isinstance(node, (SumPool2d, AvgPool2d)):
                c = node.input_chw[0]
                m = ConvShared(np.ones((c, 1, *node.kernel_size)), tuple(node.input_chw),
                               tuple(node.stride), tuple(node.padding), (1, 1), c)
            elif isinstance(node, Affine):
                m = np.asarray(node.weight)
            else:  # Scale with zeros
                m = sp.diags(np.asarray(node.scale, np.float64).ravel(), format="csr")
            self.matrix_cache[name] = m
        return self.matrix_cache[name]

    def node_counts(self, name: str, scale=None) -> WeightCounts:
        """Counts of one linear node's weights; token-parallel layers straight from the
        dense kernel (no sparse matrix is built)."""
        node = self.graph.nodes[name]
        if isinstance(node, (Conv1d, Conv2d)):
            w = np.asarray(node.weight)
            if isinstance(node, Conv1d):
                token = (w.shape[2] == 1 and node.stride == 1 and node.padding == 0
                         and node.groups == 1)
                n = node.input_length
            else:
                token = (w.shape[2:] == (1, 1) and tuple(node.stride) == (1, 1) and
                         tuple(node.padding) == (0, 0) and node.groups == 1)
                n = int(np.prod(node.input_hw))
            if token:
                return _token_counts(w.reshape(w.shape[0], w.shape[1]), n, scale)
        return count_weights(self.node_matrix(name), scale)

    def element_matrix(self, element, n_src: int):
        """A node's weights, or the sum ``("+", a, b)`` of two chains (None: too large)."""
        if isinstance(element, str):
            return self.node_matrix(element)
        _, a, b = element
        ma, mb = self.chain_matrix(a, n_src), self.chain_matrix(b, n_src)
        if ma is None or mb is None:
            return None
        return add_weights(_sparse(ma), _sparse(mb))

    def chain_matrix(self, chain: tuple, n_src: int):
        """The product of a chain (outermost first), or None when it is too large."""
        parts = [self.element_matrix(c, n_src) for c in chain]
        if any(p is None for p in parts):
            return None
        if not parts:
            return sp.identity(n_src, format="csr")
        if sum(_expanded_nnz(p) for p in parts) > COMPOSE_BUDGET and \
                not all(isinstance(p, TokenShared) for p in parts):
            return None
        m = parts[-1]
        for p in reversed(parts[:-1]):
            m = compose(sp.csr_matrix(p) if isinstance(p, np.ndarray) else p, m)
        return m

    def counts(self, chain: tuple, n_src: int, target: str) -> WeightCounts | None:
        scale = self.scales.get(target)
        key = (chain, n_src if not chain else 0, target if scale is not None else "")
        if key not in self.counts_cache:
            if not chain and scale is None:
                c = _identity_counts(n_src)
            elif len(chain) == 1 and isinstance(chain[0], str):
                c = self.node_counts(chain[0], scale)
            else:
                m = self.chain_matrix(chain, n_src)
                c = None if m is None else count_weights(m, scale)
            self.counts_cache[key] = c
        return self.counts_cache[key]

    def result(self, time_steps: int) -> LayerCounts:
        ops = {op.name for op in self.ops}
        groups = []
        for (src, target, lag), chain in self.groups.items():
            if src.startswith("<back:") or src not in self.sizes:
                continue  # CONST terms are not tracked
            kind = ("encoding" if src == INPUT else "attention" if src in ops else
                    "tokens" if src in self.selectors else "synapses")
            counts = None if kind == "attention" else self.counts(chain, self.sizes[src],
                                                                  target)
            groups.append(GroupCounts(src, target, lag, kind, counts))
        return LayerCounts(populations=dict(self.pops), groups=tuple(groups),
                           attention=tuple(self.ops), selectors=dict(self.selectors),
                           time_steps=time_steps, sizes=dict(self.sizes))


def _merge(a: tuple, b: tuple) -> tuple:
    """Two chains reaching one node from the same (source, lag): their sum."""
    return a if a == b else (("+", a, b),)


def _sparse(m):
    return sp.csr_matrix(m) if isinstance(m, np.ndarray) else m


def _expanded_nnz(m) -> int:
    if isinstance(m, np.ndarray):
        return int(m.size)
    return int(m.nnz)


def _row_scale(node, timing: Timing | None, size: int) -> np.ndarray | None:
    """The real weight per unit of a group's matrix for each neuron of a population, up to
    one common factor: the lowering's gain over the threshold (the quantizer's scale is
    ``(64 vth + ge) / threshold``); None when uniform (every population but per-neuron
    thresholds or leaks, sLIF) or unknown (no dt)."""
    if timing is None or not isinstance(node, (LIF, IF, CubaLIF)):
        return None
    dt = timing.dt

    def k(tau):
        tau = np.asarray(tau, np.float64)
        return dt / tau if timing.integrator == "forward-euler" else 1.0 - np.exp(-dt / tau)

    if isinstance(node, LIF):
        gain = np.asarray(node.r) * k(node.tau)
    elif isinstance(node, IF):
        gain = np.asarray(node.r, np.float64)
    else:
        gain = np.asarray(node.w_in) * k(node.tau_syn) * np.asarray(node.r) * k(node.tau_mem)
    s = np.abs(np.broadcast_to(gain / np.asarray(node.v_threshold, np.float64),
                               node.output_shape)).ravel()
    if s.size != size or not np.all(np.isfinite(s)) or np.all(s == s[0]):
        return None
    return s


def with_residual_relays(lc: LayerCounts) -> LayerCounts:
    """The counts of the residual streams' relay form (``lower_graph(..., residual="relay")``,
    deployment decision 3 b) from those of the fan-in form (``lc`` not modified).

    Where a population reads two or more spiking populations through one matrix (groups
    sharing one :class:`WeightCounts`: one weighted node), one relay population per distinct
    set of those (source, lag) terms sums them and the reader gets one group from it; a
    relay whose set contains an earlier relay's reads that relay and the rest (identity
    groups), as the lowering builds them. Relays come before their first reader."""
    spiking = {p for p, (_, kind) in lc.populations.items() if kind not in (RELAY, LI)}
    incoming: dict[str, list] = {p: [] for p in lc.populations}
    rest = []
    for g in lc.groups:
        (incoming[g.target] if g.target in incoming else rest).append(g)
    pops: dict[str, tuple[int, str]] = {}
    groups: list[GroupCounts] = []
    sizes = dict(lc.sizes)
    relays: dict[frozenset, str] = {}

    def relay_of(stream: frozenset) -> str:
        if stream not in relays:
            base = max((s for s in relays if s < stream), key=len, default=frozenset())
            name = f"residual relay {len(relays)}"
            n = sizes[next(iter(stream))[0]]
            eye = _identity_counts(n)
            inputs = ([(relays[base], 0)] if base else []) + sorted(stream - base)
            groups.extend(GroupCounts(src, name, lag, "synapses", eye) for src, lag in inputs)
            pops[name], sizes[name], relays[stream] = (n, RELAY), n, name
        return relays[stream]

    for p, (size, kind) in lc.populations.items():
        classes: list[list[GroupCounts]] = []
        for g in incoming[p] if kind != RELAY else ():  # low-rank relays read the stream
            # populations themselves (the lowering's add_relay)
            if g.source in spiking and g.counts is not None and g.kind != "attention":
                same = next((cl for cl in classes if cl[0].counts is g.counts), None)
                if same is None:
                    classes.append([g])
                else:
                    same.append(g)
        merged = [cl for cl in classes if len(cl) > 1]
        gone = {id(g) for cl in merged for g in cl}
        readers = [GroupCounts(relay_of(frozenset((g.source, g.lag) for g in cl)), p, 0,
                               cl[0].kind, cl[0].counts) for cl in merged]
        pops[p] = (size, kind)
        groups += [g for g in incoming[p] if id(g) not in gone] + readers
    return dataclasses.replace(lc, populations=pops, groups=tuple(groups + rest), sizes=sizes,
                               residual_relays=tuple(relays.values()))


def count_layers(graph: Graph, *, timing: Timing | None = None,
                 low_rank: str = "fused") -> LayerCounts:
    """Populations, synapse groups and their counts of ``graph`` (not modified), without
    lowering it (module docstring). ``timing``: dt (Delay nodes) and integrator (per-neuron
    scales); default the graph metadata's, when it has a dt. ``low_rank``: "relay" makes
    every low-rank down factor a relay population, as ``lower_graph(..., low_rank="relay")``
    does."""
    if timing is None and graph.metadata.get("dt"):
        timing = graph_timing(graph)
    relay = set(low_rank_down_nodes(graph)) if low_rank == "relay" else set()
    walk = _Walk(graph, timing, relay)
    for name in topo_order(graph):
        walk.visit(name)
    walk.close_recurrence()
    steps = int(graph.metadata.get("time_steps", 1))
    if not walk.pops:
        raise LoweringError("graph: no spiking neurons to place on cores")
    return walk.result(steps)

