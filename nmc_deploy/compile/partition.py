"""Place populations and their incoming synapses onto cores under a target's limits (pure).

Strategy (greedy, sequential, reproducible, like nengo-loihi's block splitting):

1. each population is cut into contiguous neuron chunks, each as large as possible such that
   its neurons, its incoming synapse memory (sparse format, :func:`synapse_memory_bits`) and
   its input axons (one per source neuron with synapses into the chunk, per group) fit one
   core;
2. chunks are packed in program order onto cores, a new core opening when any per-core
   limit (neurons, neuron groups, synapse memory, input axons) would be exceeded;
3. output axons (one per source neuron and destination core reached) are counted
   after placement and checked;
4. the cores are assigned to chips and mesh positions (:func:`~.chips.assign_chips`).

Attention ops need programmable (graded-spike) neurons: on a target with graded spikes each
gets a core of its own; otherwise they are assumed to run on the chip's embedded x86 cores.

Relay populations (low-rank factors in relay form, graded payloads) are placed exactly like
LIF populations: one compartment per neuron, its own neuron group (a distinct neuron
program) on each core it occupies, its incoming synapses stored like any other. Assumed for
graded payloads (Loihi 2; Intel publishes no per-message costs): a graded spike is one
message per (source neuron, destination core), so it costs one output axon there and one
input axon per destination core like a binary spike; the payload travels in the message and
multiplies the stored weight at the destination, so a synapse entry needs no extra bits
(same ``weight_bits + index_bits`` as for binary spikes). A relay needs a target with graded
spikes (``graded_spike_bits`` at least its ``payload_bits``).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import CapacityError
from ..targets import HardwareTarget, synapse_index_bits, synapse_memory_bits
from ..program import AttentionUnit, Program
from ..program.placement import Chunk, Placement
from ..program.shared_weights import ConvShared, TokenShared, is_shared
from .chips import assign_chips, capacity_message

__all__ = ["Placement", "Chunk", "partition_program", "format_utilization"]


def _csr_rows_cost(w, start, stop, target, span) -> tuple[int, int, int]:
    """Synapses, memory bits and input axons of rows ``[start, stop)`` of CSR ``w``.

    Reads the rows straight from the CSR's ``indptr``/``indices`` (no submatrix is built:
    re-slicing was most of the partition time on large models)."""
    lo, hi = int(w.indptr[start]), int(w.indptr[stop])
    if hi == lo:
        return 0, 0, 0
    counts = np.bincount(w.indices[lo:hi], minlength=w.shape[1])
    counts = counts[counts > 0]
    return hi - lo, synapse_memory_bits(counts, target, sparse=True, span=span), int(counts.size)


class _SharedCosts:
    """Per-core costs of shared weights (:mod:`~nmc_deploy.program.shared_weights`), with
    the prefix sums they need computed once per matrix.

    Shared storage (population axons, as nengo-loihi deploys convolutions): a core stores
    one synapse list per input channel (token-parallel) or per input channel and kernel tap
    (convolution), holding the targets among the output channels it hosts; every source
    token / input position reuses it through a population axon, so the core needs one input
    axon per source token (position) that reaches it. Unshared storage charges the expanded
    rows like any CSR matrix.
    """

    def __init__(self):
        self._prefix: dict[int, tuple] = {}
        self._memo: dict[tuple, tuple] = {}  # (memory, w, o0, o1, index bits) -> costs

    def csc(self, w) -> sp.csc_matrix:
        """``w`` expanded, column-compressed (cached for shared weights)."""
        if not is_shared(w):
            return sp.csc_matrix(w)
        key = ("csc", id(w))
        if key not in self._prefix or self._prefix[key][0] is not w:
            self._prefix[key] = (w, sp.csc_matrix(w.tocsr()))
        return self._prefix[key][1]

    def prefix(self, w) -> np.ndarray:
        """(C_out + 1, n_lists) cumulative count of nonzero weights over output channels."""
        key = id(w)
        if key not in self._prefix or self._prefix[key][0] is not w:
            if isinstance(w, TokenShared):
                nz = (w.kernel != 0).toarray().astype(np.int32)
            else:
                nz = (w.kernel != 0).reshape(w.kernel.shape[0], -1).astype(np.int32)
            self._prefix[key] = (w, np.vstack([np.zeros((1, nz.shape[1]), np.int64),
                                               np.cumsum(nz, axis=0, dtype=np.int64)]))
        return self._prefix[key][1]

    def cost(self, w, start, stop, target) -> tuple[int, int, int]:
        if isinstance(w, TokenShared):
            per = w.n_tokens
        else:
            per = w.out_hw[0] * w.out_hw[1]
        o0, o1 = start // per, (stop - 1) // per + 1
        # the lists depend on the output channels [o0, o1) only, their memory also on the
        # index width of the chunk's span: chunk searches ask for the same pair many times
        key = ("memory", id(w), o0, o1, synapse_index_bits(stop - start, target))
        hit = self._memo.get(key)
        if hit is None or hit[0] is not w:
            counts = self.prefix(w)[o1] - self.prefix(w)[o0]
            if isinstance(w, ConvShared) and w.groups > 1:  # lists of different groups differ
                counts = self._grouped_counts(w, o0, o1)
            counts = counts[counts > 0]
            hit = (w, int(counts.sum()), synapse_memory_bits(counts, target, sparse=True,
                                                             span=stop - start)
                   if counts.size else 0)
            self._memo[key] = hit
        if not hit[1]:
            return 0, 0, 0
        axons = min(per, stop - start) if isinstance(w, TokenShared) else \
            self.positions(w, start, stop)
        return hit[1], hit[2], axons

    def positions(self, w: ConvShared, start: int, stop: int) -> int:
        """:func:`_conv_input_positions` from a cached per-output-position cumulative map
        of the input positions each output reads (small convolutions) or directly."""
        return int(self.used_inputs(w, start, stop).sum())

    def used_inputs(self, w: ConvShared, start: int, stop: int) -> np.ndarray:
        """(H * W,) bool: the input positions any output row in ``[start, stop)`` reads."""
        per = w.out_hw[0] * w.out_hw[1]
        full = stop - start >= per
        a, b = start % per, (stop - 1) % per + 1
        if per * w.in_shape[1] * w.in_shape[2] > CONV_POSITION_MAP_MAX:
            key = ("all positions", id(w))
            if full and key in self._prefix and self._prefix[key][0] is w:
                return self._prefix[key][1]
            used = _conv_used(w, _output_positions(w, start, stop)).ravel()
            if full:
                self._prefix[key] = (w, used)
            return used
        key = ("positions", id(w))
        if key not in self._prefix or self._prefix[key][0] is not w:
            reads = _conv_read_map(w)
            cum = np.vstack([np.zeros((1, reads.shape[1]), np.int32),
                             np.cumsum(reads, 0, dtype=np.int32)])
            self._prefix[key] = (w, cum)
        cum = self._prefix[key][1]
        if full:
            return cum[per] > 0
        return cum[b] - cum[a] > 0 if a < b else (cum[per] - cum[a] > 0) | (cum[b] > 0)

    @staticmethod
    def _grouped_counts(w, o0, o1) -> np.ndarray:
        cpo = w.kernel.shape[0] // w.groups
        nz = w.kernel[o0:o1] != 0
        parts = []
        for g in range(o0 // cpo, (o1 - 1) // cpo + 1):
            a, b = max(o0, g * cpo) - o0, min(o1, (g + 1) * cpo) - o0
            parts.append(nz[a:b].reshape(b - a, -1).sum(axis=0))
        return np.concatenate(parts)


# convolutions whose (output positions x input positions) map is at most this many entries
# get a cached map for input-axon counts
CONV_POSITION_MAP_MAX = 16_000_000


def _conv_read_map(w) -> np.ndarray:
    """(output positions, input positions) bool: which inputs each output position reads."""
    ho, wo = w.out_hw
    W = w.in_shape[2]
    reads = np.zeros((ho * wo, w.in_shape[1] * W), bool)
    vy, vx = w._valid(0), w._valid(1)
    for a in range(w.kernel.shape[2]):
        for b in range(w.kernel.shape[3]):
            (oy, iy), (ox, ix) = vy[a], vx[b]
            if len(oy) and len(ox):
                reads[(oy[:, None] * wo + ox[None, :]).ravel(),
                      (iy[:, None] * W + ix[None, :]).ravel()] = True
    return reads


def _conv_used(w, out: np.ndarray) -> np.ndarray:
    """(H, W) bool: the input positions that any of the ``out`` (flat) positions reads."""
    ho, wo = w.out_hw
    out = out.reshape(ho, wo)
    H, W = w.in_shape[1:]
    used = np.zeros((H, W), bool)
    vy, vx = w._valid(0), w._valid(1)
    for a in range(w.kernel.shape[2]):
        for b in range(w.kernel.shape[3]):
            (oy, iy), (ox, ix) = vy[a], vx[b]
            if len(oy) and len(ox):
                used[iy[:, None], ix[None, :]] |= out[oy[:, None], ox[None, :]]
    return used


def _output_positions(w, start, stop) -> np.ndarray:
    """(Ho * Wo,) bool: the output positions of rows ``[start, stop)`` of the (C, Ho, Wo)
    layout (a range within one channel, or wrapping into the next)."""
    per = w.out_hw[0] * w.out_hw[1]
    out = np.zeros(per, bool)
    if stop - start >= per:
        out[:] = True
    else:
        a, b = start % per, (stop - 1) % per + 1
        if a < b:
            out[a:b] = True
        else:
            out[a:] = True
            out[:b] = True
    return out


def _conv_input_positions(w, start, stop) -> int:
    """Input positions (population axons) whose kernel reaches output rows [start, stop)."""
    return int(_conv_used(w, _output_positions(w, start, stop)).sum())


def _chunk_cost(groups, start, stop, target, sharing=None, costs=None) -> tuple[int, int, int]:
    """Synapses, synapse memory bits and input axons of neurons ``[start, stop)``.

    ``sharing``: store shared weights once per core (default: the target's
    ``weight_sharing``); otherwise their expanded rows are charged."""
    sharing = target.weight_sharing if sharing is None else sharing
    costs = costs if costs is not None else _SharedCosts()
    syn = mem = axons = 0
    for g in groups:
        w = g.weights
        if is_shared(w):
            if sharing:
                s_, m_, a_ = costs.cost(w, start, stop, target)
            else:
                s_, m_, a_ = _csr_rows_cost(w.rows_csr(start, stop), 0, stop - start, target,
                                            stop - start)
        else:
            s_, m_, a_ = _csr_rows_cost(w, start, stop, target, stop - start)
        syn, mem, axons = syn + s_, mem + m_, axons + a_
    return syn, mem, axons


def _chunk_population(p, groups, target, outdeg, sharing, costs) -> list[Chunk]:
    max_neurons = target.max_neurons_per_core
    max_mem = target.synapse_memory_bits_per_core
    max_in = target.max_in_axons_per_core
    max_out = target.max_out_axons_per_core
    cum_out = np.concatenate([[0], np.cumsum(outdeg)])
    chunks = []
    start = 0
    while start < p.size:
        hi = min(p.size, start + max_neurons)

        def fits(stop):
            if cum_out[stop] - cum_out[start] > max_out:
                return False
            _, mem, axons = _chunk_cost(groups, start, stop, target, sharing, costs)
            return mem <= max_mem and axons <= max_in

        if not fits(start + 1):
            syn, mem, axons = _chunk_cost(groups, start, start + 1, target, sharing, costs)
            if mem > max_mem:
                what, got, limit, name = ("synapse memory bits", mem, max_mem,
                                          "synapse_memory_bits_per_core")
            elif axons > max_in:
                what, got, limit, name = ("input axons", axons, max_in, "max_in_axons_per_core")
            else:
                what, got, limit, name = ("output axons", int(outdeg[start]), max_out,
                                          "max_out_axons_per_core")
            raise CapacityError(
                f"{p.name}[{start}]: {what} of one neuron ({got}) exceeds {name} ({limit}) "
                f"of target {target.name}; prune the model or choose a larger target")
        lo = start + 1  # fits(lo); find the largest stop <= hi that fits
        if fits(hi):
            lo = hi
        else:
            top = hi
            while top - lo > 1:
                mid = (lo + top) // 2
                if fits(mid):
                    lo = mid
                else:
                    top = mid
        syn, mem, axons = _chunk_cost(groups, start, lo, target, sharing, costs)
        chunks.append(Chunk(p.name, start, lo, syn, mem, axons))
        start = lo
    return chunks


def _pack(chunks, target, outdeg) -> list[list[Chunk]]:
    cores: list[list[Chunk]] = []
    used = None
    for c in chunks:
        out = int(outdeg[c.population][c.start:c.stop].sum())
        if used is not None and (used[0] + c.neurons <= target.max_neurons_per_core and
                                 used[1] + c.synapse_memory_bits <=
                                 target.synapse_memory_bits_per_core and
                                 used[2] + c.in_axons <= target.max_in_axons_per_core and
                                 used[3] + out <= target.max_out_axons_per_core and
                                 len(cores[-1]) < target.max_neuron_groups_per_core):
            cores[-1].append(c)
            used = (used[0] + c.neurons, used[1] + c.synapse_memory_bits,
                    used[2] + c.in_axons, used[3] + out)
        else:
            cores.append([c])
            used = (c.neurons, c.synapse_memory_bits, c.in_axons, out)
    return cores


def _segments(core_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boundaries (flat starts + end) and core of each run of equal cores of a population
    (contiguous chunks are packed in order, so every core holds one run)."""
    starts = np.concatenate([[0], np.flatnonzero(np.diff(core_of)) + 1])
    return np.concatenate([starts, [core_of.size]]), core_of[starts]


def _token_shared_pairs(w, core_of_target, n_cores, costs) -> np.ndarray:
    """(source neuron, destination core) pairs of a :class:`TokenShared` group, from the
    per-channel prefix counts (no expanded matrix): source ``(i, n)`` reaches the core of a
    run ``[b0, b1)`` when some output channel o with ``b0 <= o N + n < b1`` has
    ``kernel[o, i] != 0``."""
    bounds, cores = _segments(core_of_target)
    pairs = [_run_pairs(w, costs.prefix(w), int(bounds[k]), int(bounds[k + 1]), int(cores[k]),
                        n_cores) for k in range(len(cores))]
    return np.concatenate(pairs) if pairs else np.zeros(0, np.int64)


def _run_pairs(w, prefix, b0: int, b1: int, core: int, n_cores: int) -> np.ndarray:
    """The (source, core) pairs of one run ``[b0, b1)`` of a TokenShared target."""
    N = w.n_tokens
    n = np.arange(N)
    src = np.arange(w.kernel.shape[1])[None, :] * N + n[:, None]  # (N, C_in) flat source
    lo = -((n - b0) // N)  # ceil((b0 - n) / N)
    hi = -((n - b1) // N)
    hit = (prefix[np.clip(hi, 0, prefix.shape[0] - 1)] -
           prefix[np.clip(lo, 0, prefix.shape[0] - 1)]) > 0
    return src[hit] * n_cores + core


def _token_shared_degrees(w, core_of_target, n_cores, costs, pairs_on):
    """Per source neuron of a :class:`TokenShared` group, the runs of cores (not flagged
    in ``pairs_on``) it reaches, counted without listing pairs; and the distinct
    (source, core) pairs on the flagged cores (:func:`_token_shared_pairs`' coding).

    A run ``[b0, b1)`` of the (C_out, N) layout holds a tail of tokens of its first output
    channel, whole channels, and a head of tokens of its last channel; source ``(i, n)``
    reaches it if input channel i feeds a whole channel, or feeds the first (last) channel
    and n is among that channel's tokens in the run.
    """
    N = w.n_tokens
    prefix = costs.prefix(w)
    bounds, cores = _segments(core_of_target)
    c_in = prefix.shape[1]
    every = np.zeros(c_in, np.int64)  # runs reached at every token
    diff = np.zeros((c_in, N + 1), np.int64)  # runs reached at a range of tokens

    def add(rows, a, b):
        diff[:, a] += rows
        diff[:, b] -= rows

    flagged = []
    for k in range(len(cores)):
        b0, b1 = int(bounds[k]), int(bounds[k + 1])
        if pairs_on[cores[k]]:
            flagged.append(_run_pairs(w, prefix, b0, b1, int(cores[k]), n_cores))
            continue
        first, last = b0 // N, (b1 - 1) // N
        h0, t1 = b0 % N, (b1 - 1) % N + 1
        feeds = lambda c0, c1: (prefix[c1] - prefix[c0]) > 0  # noqa: E731
        if first == last:
            add(feeds(first, first + 1), h0, t1)
            continue
        full = feeds(first + 1, last) if last > first + 1 else np.zeros(c_in, bool)
        head, tail = feeds(first, first + 1) & ~full, feeds(last, last + 1) & ~full
        every += full
        both = head & tail
        if t1 > h0:  # the head and tail token ranges cover every token
            every += both
        else:
            add(both, h0, N)
            add(both, 0, t1)
        add(head & ~tail, h0, N)
        add(tail & ~head, 0, t1)
    deg = np.cumsum(diff[:, :N], axis=1) + every[:, None]
    pairs = np.concatenate(flagged) if flagged else np.zeros(0, np.int64)
    return deg.ravel(), pairs


def _conv_outdegree(w, core_of_target, costs=None) -> np.ndarray:
    """Upper bound of the cores each source neuron of a :class:`ConvShared` group reaches
    (used for convolutions above :data:`EXACT_CONV_FANOUT_SYNAPSES`): a run of a core
    counts for source ``(i, y, x)`` when its output channels include one that input channel
    ``i`` feeds and its output positions include one that reads ``(y, x)`` (any tap)."""
    costs = costs if costs is not None else _SharedCosts()
    co, cig = w.kernel.shape[:2]
    ci = w.in_shape[0]
    cpo = co // w.groups
    feeds = np.zeros((co, ci), bool)
    any_tap = np.any(w.kernel != 0, axis=(2, 3))
    for g in range(w.groups):
        feeds[g * cpo:(g + 1) * cpo, g * cig:(g + 1) * cig] = any_tap[g * cpo:(g + 1) * cpo]
    prefix = np.vstack([np.zeros((1, ci), np.int64), np.cumsum(feeds, axis=0)])
    bounds, _ = _segments(core_of_target)
    per = w.out_hw[0] * w.out_hw[1]
    deg = np.zeros((ci, w.in_shape[1] * w.in_shape[2]), np.int64)
    for k in range(len(bounds) - 1):
        b0, b1 = int(bounds[k]), int(bounds[k + 1])
        c0, c1 = b0 // per, (b1 - 1) // per + 1
        fed = (prefix[c1] - prefix[c0]) > 0
        if fed.any():
            deg[fed] += costs.used_inputs(w, b0, b1)
    return deg.ravel()


# convolutions up to this many expanded synapses get exact output axons (expanded once)
EXACT_CONV_FANOUT_SYNAPSES = 20_000_000


def _csc_pairs(w: sp.csc_matrix, core_of_target: np.ndarray, n_cores: int) -> np.ndarray:
    """The distinct (source neuron, destination core) pairs of a matrix, as
    ``source * n_cores + core``. Chunks are contiguous and packed in order, so the cores of
    one column's sorted row indices never decrease: a pair is new where the core changes."""
    if not w.has_sorted_indices:
        w = w.sorted_indices()
    col = np.repeat(np.arange(w.shape[1], dtype=np.int64), np.diff(w.indptr))
    dest = core_of_target[w.indices]
    new = np.ones(dest.size, bool)
    new[1:] = (dest[1:] != dest[:-1]) | (col[1:] != col[:-1])
    return col[new] * n_cores + dest[new]


def _out_degrees(program, cores, costs=None) -> dict[str, np.ndarray]:
    """Per source neuron: the number of distinct cores its synapses reach (an upper bound
    for convolution sources)."""
    costs = costs if costs is not None else _SharedCosts()
    core_of = {p.name: np.full(p.size, -1, np.int64) for p in program.populations}
    for i, cs in enumerate(cores):
        for c in cs:
            core_of[c.population][c.start:c.stop] = i
    n_cores = len(cores) + 1
    outdeg = {p.name: np.zeros(p.size, np.int64) for p in program.populations}
    by_source: dict[str, list] = {}
    for g in program.groups:
        if g.kind != "attention" and g.source in core_of:
            by_source.setdefault(g.source, []).append(g)
    for src, groups in by_source.items():  # one axon per (neuron, destination core)
        # cores holding neurons of two or more of the source's targets: only pairs landing
        # there can repeat across groups (each group's pairs are distinct)
        hits = np.zeros(n_cores, np.int64)
        for target in {g.target for g in groups}:
            hits[np.unique(core_of[target])] += 1
        shared = hits > 1
        overlap = []
        for g in groups:
            w = g.weights
            if isinstance(w, ConvShared) and w.nnz > EXACT_CONV_FANOUT_SYNAPSES:
                outdeg[src] += _conv_outdegree(w, core_of[g.target], costs)
                continue
            if isinstance(w, TokenShared):  # counts directly; pairs only on shared cores
                deg, pairs = _token_shared_degrees(w, core_of[g.target], n_cores, costs,
                                                   shared)
                outdeg[src] += deg
                overlap.append(pairs)
                continue
            pairs = _csc_pairs(costs.csc(w), core_of[g.target], n_cores)
            on_shared = shared[pairs % n_cores]
            outdeg[src] += np.bincount(pairs[~on_shared] // n_cores, minlength=outdeg[src].size)
            overlap.append(pairs[on_shared])
            del pairs, on_shared
        if overlap:
            both = np.unique(np.concatenate(overlap))
            outdeg[src] += np.bincount(both // n_cores, minlength=outdeg[src].size)
    for op in program.attention:  # q, k, v neurons also feed the attention units reading them
        for u in attention_units(op):
            feeds = {}
            for name, lo, hi in ((op.q, u.q_start, u.q_stop), (op.k, u.k_start, u.k_stop),
                                 (op.v, u.k_start, u.k_stop)):
                m = feeds.setdefault(name, np.zeros(op.dim * op.n_tokens, bool))
                m[u.reads(lo, hi, op.n_tokens)] = True
            for name, m in feeds.items():  # one axon per neuron and unit core
                outdeg[name] += m
    return outdeg


def attention_units(op) -> tuple[AttentionUnit, ...]:
    """The units of an op (one unit, the whole op, if it has not been split)."""
    return op.units or (AttentionUnit(op.name, 0, op.num_heads, 0, op.n_tokens, 0,
                                      op.n_tokens, op.head_dim),)


MAX_PARTITION_ROUNDS = 8


def partition_program(program: Program, target: HardwareTarget, *,
                      weight_sharing: bool | None = None) -> Placement:
    """Place ``program`` on cores of ``target``; raises :class:`CapacityError` if it cannot.

    Output axons depend on where the targets land, so placement repeats with each neuron's
    out-degree (in cores) from the previous round as a constraint, until nothing changes.
    ``weight_sharing``: store shared (token-parallel, convolution) weights once per core
    (default: the target's ``weight_sharing``) or charge every expanded copy.
    """
    sharing = target.weight_sharing if weight_sharing is None else bool(weight_sharing)
    costs = _SharedCosts()
    for p in program.populations:
        if p.graded and p.payload_bits > target.graded_spike_bits:
            raise CapacityError(f"{p.name}: graded payload bits ({p.payload_bits}) exceeds "
                                f"graded_spike_bits ({target.graded_spike_bits}) of target "
                                f"{target.name}; compile the low-rank factors fused "
                                "(--low-rank fused) for this target")
    incoming: dict[str, list] = {p.name: [] for p in program.populations}
    for g in program.groups:
        if g.kind != "attention":  # realised inside the attention unit
            incoming[g.target].append(g)
    outdeg = {p.name: np.zeros(p.size, np.int64) for p in program.populations}
    chunked: dict[str, tuple[np.ndarray, list[Chunk]]] = {}  # chunks of the last outdeg
    for _ in range(MAX_PARTITION_ROUNDS):
        chunks = []
        for p in program.populations:
            last = chunked.get(p.name)
            if last is None or not np.array_equal(last[0], outdeg[p.name]):
                last = (outdeg[p.name], _chunk_population(p, incoming[p.name], target,
                                                          outdeg[p.name], sharing, costs))
                chunked[p.name] = last
            chunks.extend(last[1])
        cores = _pack(chunks, target, outdeg)
        new = _out_degrees(program, cores, costs)
        out_axons = [int(sum(new[c.population][c.start:c.stop].sum() for c in cs))
                     for cs in cores]
        if max(out_axons) <= target.max_out_axons_per_core:
            break
        outdeg = {k: np.maximum(outdeg[k], v) for k, v in new.items()}
    else:
        i = int(np.argmax(out_axons))
        raise CapacityError(f"core {i}: output axons ({out_axons[i]}) exceed "
                            f"max_out_axons_per_core ({target.max_out_axons_per_core}) of target "
                            f"{target.name}; the populations on it project to too many cores")
    graded = target.graded_spike_bits > 0
    units = [u for op in program.attention for u in attention_units(op)] if graded else []
    for u in units:
        if u.in_axons > target.max_in_axons_per_core or \
                u.out_axons > target.max_out_axons_per_core:
            raise CapacityError(f"{u.name}: attention unit axons (in {u.in_axons}, "
                                f"out {u.out_axons}) exceed max_in_axons_per_core "
                                f"({target.max_in_axons_per_core}) or max_out_axons_per_core "
                                f"({target.max_out_axons_per_core}); split the attention for "
                                "this target (compile splits it; see --attention-split)")
    att_cores = tuple(units)
    att_host = () if graded else tuple(op.name for op in program.attention)
    total = len(cores) + len(att_cores)
    if total > target.max_cores:  # names the chips needed and a larger system
        raise CapacityError(capacity_message(total, target))
    limits = {"max_neurons_per_core": target.max_neurons_per_core,
              "synapse_memory_bits_per_core": target.synapse_memory_bits_per_core,
              "max_in_axons_per_core": target.max_in_axons_per_core,
              "max_out_axons_per_core": target.max_out_axons_per_core,
              "max_neuron_groups_per_core": target.max_neuron_groups_per_core}
    return assign_chips(Placement(target.name, tuple(tuple(c) for c in cores), att_cores,
                                  att_host, tuple(out_axons), limits), program, target)


def format_utilization(summary: dict) -> str:
    """A per-core utilization table (percent of each per-core limit)."""
    lim = summary["limits"]
    head = f"{'core':>4}  {'populations':<44} {'neurons':>13} {'synapses':>9} " \
           f"{'syn. memory':>12} {'in-axons':>13} {'out-axons':>13}"
    lines = [head, "-" * len(head)]

    def pct(x, m):
        return f"{x:>6} {100.0 * x / m:5.1f}%"

    for c in summary["cores"]:
        if c["kind"] == "attention":
            name = c["attention"]
            name = name if len(name) <= 44 else "..." + name[-41:]
            lines.append(f"{c['core']:>4}  {name:<44} {'-':>13} {'-':>9} {'-':>12} "
                         f"{pct(c['in_axons'], lim['max_in_axons_per_core'])} "
                         f"{pct(c['out_axons'], lim['max_out_axons_per_core'])}")
            continue
        names = ", ".join(p["name"] + ("" if p["fraction"] == 1 else f"[{p['start']}:{p['stop']}]")
                          for p in c["populations"])
        if len(names) > 44:
            names = names[:41] + "..."
        mem_pct = 100.0 * c["synapse_memory_bits"] / lim["synapse_memory_bits_per_core"]
        lines.append(f"{c['core']:>4}  {names:<44} {pct(c['neurons'], lim['max_neurons_per_core'])} "
                     f"{c['synapses']:>9} {c['synapse_memory_bits'] // 8:>7}B {mem_pct:3.0f}% "
                     f"{pct(c['in_axons'], lim['max_in_axons_per_core'])} "
                     f"{pct(c['out_axons'], lim['max_out_axons_per_core'])}")
    lines.append(f"cores used: {summary['cores_used']} (target {summary['target']})")
    if summary.get("attention_on_host"):
        lines.append("attention ops on embedded x86 cores (no graded spikes on this target): "
                     + ", ".join(summary["attention_on_host"]))
    for t in summary.get("token_selectors", []):
        lines.append(f"token selector {t['name']} on an embedded core: keeps {t['kept']} of "
                     f"{t['tokens']} tokens, {t['predictor_words']} program words, buffer "
                     f"{t['buffer_values']} values, adds {t['depth'] - t['depth_in']} steps")
    return "\n".join(lines)
