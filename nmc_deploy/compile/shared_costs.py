"""Per-core costs of shared weights (token-parallel layers, convolutions) under a placement
order, with the prefix sums and position maps they need computed once per matrix (pure;
used by :mod:`~.partition` and :mod:`~.traffic`)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..program.placement import BlockOrder
from ..program.shared_weights import ConvShared, TokenShared, is_shared
from ..targets import synapse_index_bits, synapse_memory_bits
from .order import OrderLayout, merge_ranges

__all__ = ["SharedCosts", "CONV_POSITION_MAP_MAX"]


class SharedCosts:
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

    def csc_in_order(self, w, order: BlockOrder) -> sp.csc_matrix:
        """The sparsity pattern of ``w`` column-compressed with its rows renumbered to
        positions of the target's placement ``order`` and sorted (cached; values 1): the
        cores of a column's rows then never decrease, as in the flat order."""
        key = ("csc order", id(w), id(order))
        if key not in self._prefix or self._prefix[key][0] is not w or \
                self._prefix[key][1] is not order:
            m = self.csc(w)
            position = np.empty(order.size, np.int64)
            position[order.neurons()] = np.arange(order.size)
            m = sp.csc_matrix((np.ones(m.nnz, np.int8), position[m.indices], m.indptr),
                              shape=m.shape)  # the pattern only (sorting moves the data)
            m.has_sorted_indices = False
            m.sort_indices()
            self._prefix[key] = (w, order, m)
        return self._prefix[key][2]

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

    def feeds_prefix(self, w: ConvShared) -> np.ndarray:
        """(C_out + 1, C_in) cumulative count over output channels of "input channel feeds
        output channel" (any tap)."""
        key = ("feeds", id(w))
        if key not in self._prefix or self._prefix[key][0] is not w:
            co, cig = w.kernel.shape[:2]
            cpo = co // w.groups
            feeds = np.zeros((co, w.in_shape[0]), bool)
            any_tap = np.any(w.kernel != 0, axis=(2, 3))
            for g in range(w.groups):
                feeds[g * cpo:(g + 1) * cpo, g * cig:(g + 1) * cig] = \
                    any_tap[g * cpo:(g + 1) * cpo]
            self._prefix[key] = (w, np.vstack([np.zeros((1, feeds.shape[1]), np.int64),
                                               np.cumsum(feeds, axis=0)]))
        return self._prefix[key][1]

    def perm(self, order: BlockOrder) -> np.ndarray:
        """Flat neuron index of every position of ``order``."""
        key = ("perm", id(order))
        if key not in self._prefix or self._prefix[key][0] is not order:
            self._prefix[key] = (order, order.neurons())
        return self._prefix[key][1]

    def layout(self, order: BlockOrder | None, w) -> OrderLayout:
        """The placement-order layout of ``w``'s target (flat order when ``order`` is None)."""
        key = ("layout", id(order), w.kernel.shape[0], _positions(w))
        hit = self._prefix.get(key)
        if hit is None or hit[0] is not order:
            hit = (order, OrderLayout(order, w.kernel.shape[0], _positions(w)))
            self._prefix[key] = hit
        return hit[1]

    def cost(self, w, start, stop, target, order=None) -> tuple[int, int, int]:
        """Synapses, memory bits and input axons of order positions ``[start, stop)`` of the
        target (its :class:`~nmc_deploy.program.placement.BlockOrder`, flat if None)."""
        rects = self.layout(order, w).rects(start, stop)
        chans = tuple(merge_ranges((c0, c1) for c0, c1, _, _ in rects))
        # the lists depend on the output channels only, their memory also on the index
        # width of the chunk's span: chunk searches ask for the same pair many times
        key = ("memory", id(w), chans, synapse_index_bits(stop - start, target))
        hit = self._memo.get(key)
        if hit is None or hit[0] is not w:
            counts = self.channel_counts(w, chans)
            counts = counts[counts > 0]
            hit = (w, int(counts.sum()), synapse_memory_bits(counts, target, sparse=True,
                                                             span=stop - start)
                   if counts.size else 0)
            self._memo[key] = hit
        if not hit[1]:
            return 0, 0, 0
        spans = merge_ranges((n0, n1) for _, _, n0, n1 in rects)
        if isinstance(w, TokenShared):
            axons = sum(n1 - n0 for n0, n1 in spans)
        else:
            used = self.used_inputs(w, *spans[0])
            for n0, n1 in spans[1:]:
                used = used | self.used_inputs(w, n0, n1)
            axons = int(used.sum())
        return hit[1], hit[2], axons

    def channel_counts(self, w, chans) -> np.ndarray:
        """Synapse entries per list (input channel, or input channel and tap) of output
        channels ``chans`` (disjoint ranges); lists of different conv groups apart."""
        if isinstance(w, ConvShared) and w.groups > 1:
            return np.concatenate([self._grouped_counts(w, o0, o1) for o0, o1 in chans])
        prefix = self.prefix(w)
        counts = prefix[chans[0][1]] - prefix[chans[0][0]]
        for o0, o1 in chans[1:]:
            counts = counts + (prefix[o1] - prefix[o0])
        return counts

    def positions(self, w: ConvShared, start: int, stop: int) -> int:
        """Input positions (population axons) whose kernel reaches output rows ``[start,
        stop)``, from a cached per-output-position cumulative map
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
            used = self._separable_used(w, [(0, per)] if full else
                                        [(a, b)] if a < b else [(a, per), (0, b)])
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

    def _separable_used(self, w: ConvShared, spans) -> np.ndarray:
        """(H * W,) bool: the input positions that output positions ``spans`` (ranges of
        the flat (Ho, Wo) plane) read. A range is at most three rectangles of output rows x
        columns, and a rectangle reads (rows its rows read) x (columns its columns read):
        every tap pairs with every other, so the product is exact."""
        key = ("separable", id(w))
        if key not in self._prefix or self._prefix[key][0] is not w:
            maps = []
            for axis in (0, 1):
                reads = np.zeros((w.out_hw[axis], w.in_shape[1 + axis]), np.int32)
                for o, i in w._valid(axis):
                    reads[o, i] = 1
                maps.append(np.vstack([np.zeros((1, reads.shape[1]), np.int32),
                                       np.cumsum(reads, 0, dtype=np.int32)]))
            self._prefix[key] = (w, tuple(maps))
        cum_y, cum_x = self._prefix[key][1]
        wo = w.out_hw[1]
        used = np.zeros(w.in_shape[1:], bool)

        def rect(y0, y1, x0, x1):
            if y1 > y0 and x1 > x0:
                used[np.ix_(cum_y[y1] - cum_y[y0] > 0, cum_x[x1] - cum_x[x0] > 0)] = True

        for lo, hi in spans:
            (y0, x0), (y1, x1) = divmod(lo, wo), divmod(hi - 1, wo)
            if y0 == y1:
                rect(y0, y0 + 1, x0, x1 + 1)
                continue
            rect(y0, y0 + 1, x0, wo)
            rect(y0 + 1, y1, 0, wo)
            rect(y1, y1 + 1, 0, x1 + 1)
        return used.ravel()

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


def _positions(w) -> int:
    """Positions per output channel of a shared matrix (tokens, or output pixels)."""
    return w.n_tokens if isinstance(w, TokenShared) else w.out_hw[0] * w.out_hw[1]
