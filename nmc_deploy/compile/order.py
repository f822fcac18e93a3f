"""Placement order of (channels x positions) populations and what a core's run of it reaches
(pure numpy; used by :mod:`~.partition` and :mod:`~.traffic`).

A population fed only by shared weights (token-parallel layers, convolutions;
:mod:`~nmc_deploy.program.shared_weights`) is cut into chunks in a blocked order
(:class:`~nmc_deploy.program.placement.BlockOrder`): channel blocks, position-major inside a
block, each block's synapse lists about :data:`BLOCK_MEMORY_FRACTION` of a core's synapse
memory (:func:`choose_order`). A core then holds a few positions of many channels, so a source
neuron ``(i, n)`` read at position ``n`` reaches about one core per channel block of its
reader instead of every core of it; in the flat (channel-major) order a thinly cut reader
(few neurons per core, because its own out-axons bind) makes every source reach all its cores,
which then cuts the sources thin too (the cascade seen on Spikformer-4-384: 60,332 cores).

Every contiguous run ``[b0, b1)`` of the order is a union of at most five rectangles
``(c_lo, c_hi, n_lo, n_hi)`` of channels x positions (:meth:`OrderLayout.rects`); the reach
of a source is counted per rectangle from prefix sums over output channels, never from the
expanded matrix.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..program.placement import BlockOrder
from ..targets import HardwareTarget, synapse_memory_bits

__all__ = ["BLOCK_MEMORY_FRACTION", "OrderLayout", "choose_order", "merge_ranges",
           "segments", "token_reach", "conv_reach"]

# A channel block's synapse lists fill at most this share of a core's synapse memory (a
# modelling choice, measured on Spikformer-4-384 on hala_point, cores dense / 90 % sparse:
# 0.5 -> 28,132 / 4,349; 0.75 -> 28,123 / 3,851; 1.0 -> 18,995 / 2,637; 2.0 (blocks wider
# than a core, rows cut across cores) -> 101,534 dense)
BLOCK_MEMORY_FRACTION = 1.0


class OrderLayout:
    """Channel block boundaries and positions of one population's placement order (the flat
    order when ``order`` is None: one block per channel)."""

    def __init__(self, order: BlockOrder | None, channels: int, positions: int):
        self.bounds = np.asarray(order.bounds if order is not None else
                                 np.arange(channels + 1), np.int64)
        self.positions = int(positions)
        self.starts = self.bounds * self.positions
        self.blocked = order is not None

    def rects(self, b0: int, b1: int) -> list[tuple[int, int, int, int]]:
        """Rectangles ``(c_lo, c_hi, n_lo, n_hi)`` whose union is order positions
        ``[b0, b1)`` (disjoint in neurons; those of one block disjoint in positions)."""
        P, bounds = self.positions, self.bounds
        if not self.blocked:  # one block per channel: closed form
            k0, k1 = b0 // P, (b1 - 1) // P
        else:
            k0 = int(np.searchsorted(self.starts, b0, side="right")) - 1
            k1 = int(np.searchsorted(self.starts, b1 - 1, side="right")) - 1
        a0, s0 = int(bounds[k0]), int(self.starts[k0])
        if k0 == k1:
            return _block_rects(a0, int(bounds[k0 + 1]) - a0, b0 - s0, b1 - s0)
        w0 = int(bounds[k0 + 1]) - a0
        out = _block_rects(a0, w0, b0 - s0, w0 * P)
        if k1 > k0 + 1:
            out.append((int(bounds[k0 + 1]), int(bounds[k1]), 0, P))
        a1 = int(bounds[k1])
        out += _block_rects(a1, int(bounds[k1 + 1]) - a1, 0, b1 - int(self.starts[k1]))
        return out


def _block_rects(a: int, w: int, r0: int, r1: int) -> list[tuple[int, int, int, int]]:
    """Rectangles of rows ``[r0, r1)`` of a block of channels ``[a, a + w)``, where row
    ``r`` is position ``r // w`` of channel ``a + r % w``."""
    n0, n1 = r0 // w, (r1 - 1) // w
    if n0 == n1:
        return [(a + r0 % w, a + (r1 - 1) % w + 1, n0, n0 + 1)]
    out = []
    if r0 % w:
        out.append((a + r0 % w, a + w, n0, n0 + 1))
        n0 += 1
    end = n1 + 1 if r1 % w == 0 else n1
    if end > n0:
        out.append((a, a + w, n0, end))
    if r1 % w:
        out.append((a, a + r1 - n1 * w, n1, n1 + 1))
    return out


def merge_ranges(ranges) -> list[tuple[int, int]]:
    """The union of half-open ranges as sorted disjoint ranges."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def segments(core_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boundaries (starts + end) and core of each run of equal cores of an order (chunks are
    contiguous in their population's order and packed in order, so every core holds a run)."""
    starts = np.concatenate([[0], np.flatnonzero(np.diff(core_of)) + 1])
    return np.concatenate([starts, [core_of.size]]), core_of[starts]


def _list_memory_bits(counts_of, lo: int, hi: int, positions: int, target) -> int:
    counts = counts_of(lo, hi)
    counts = counts[counts > 0]
    span = min((hi - lo) * positions, target.max_neurons_per_core)
    return synapse_memory_bits(counts, target, sparse=True, span=span) if counts.size else 0


def choose_order(channels: int, positions: int, counts_of: list, target: HardwareTarget,
                 fraction: float = BLOCK_MEMORY_FRACTION) -> BlockOrder | None:
    """Blocked order of a (channels, positions) population, or None (keep the flat order).

    ``counts_of``: per incoming group a function ``(c_lo, c_hi) -> synapse entries per list``
    of output channels ``[c_lo, c_hi)``. Blocks grow greedily while the groups' lists fit
    ``fraction`` of a core's synapse memory (index width of a full core's span); a block is
    at least one channel.
    """
    if positions < 2 or channels < 2:
        return None
    budget = fraction * target.synapse_memory_bits_per_core

    def fits(lo, hi):
        return sum(_list_memory_bits(f, lo, hi, positions, target) for f in counts_of) <= budget

    bounds = [0]
    while bounds[-1] < channels:
        lo = bounds[-1]
        good, step = lo + 1, 1
        while good + step <= channels and fits(lo, good + step):  # gallop, then bisect
            good, step = good + step, step * 2
        bad = min(channels + 1, good + step)
        while bad - good > 1:
            mid = (good + bad) // 2
            if mid <= channels and fits(lo, mid):
                good = mid
            else:
                bad = mid
        bounds.append(good)
    if len(bounds) == channels + 1:
        return None  # one channel per block: the flat order
    return BlockOrder(positions, tuple(bounds))


def _reach_table(layout: OrderLayout, bounds: np.ndarray, cores: np.ndarray):
    """Per run, rectangles and the elementary position intervals they cover.

    Returns (rect channel ranges (R, 2), elementary intervals (E, 2), run of each interval
    (E,), membership (E, R) sparse 0/1)."""
    rect_rows, elem, elem_run, m_rows, m_cols = [], [], [], [], []
    for k in range(len(cores)):
        rects = layout.rects(int(bounds[k]), int(bounds[k + 1]))
        first = len(rect_rows)
        rect_rows += [(c0, c1) for c0, c1, _, _ in rects]
        cuts = sorted({x for _, _, n0, n1 in rects for x in (n0, n1)})
        for x, y in zip(cuts, cuts[1:]):
            e = len(elem)
            hit = [first + j for j, (_, _, n0, n1) in enumerate(rects) if n0 <= x and y <= n1]
            if not hit:
                continue
            elem.append((x, y))
            elem_run.append(k)
            m_rows += [e] * len(hit)
            m_cols += hit
    ranges = np.asarray(rect_rows, np.int64).reshape(-1, 2)
    member = sp.csr_matrix((np.ones(len(m_rows), np.int32), (m_rows, m_cols)),
                           shape=(len(elem), len(rect_rows)))
    return ranges, np.asarray(elem, np.int64).reshape(-1, 2), np.asarray(elem_run, np.int64), \
        member


def token_reach(prefix: np.ndarray, layout: OrderLayout, core_of_order: np.ndarray,
                n_cores: int, pairs_on: np.ndarray | None = None):
    """Per source neuron ``(i, n)`` (flat ``i N + n``) of a token-parallel group, the cores
    among the runs of its target (``core_of_order``: core per order position) that it
    reaches, and the (source, core) pairs (``source * n_cores + core``) on the cores flagged
    in ``pairs_on`` (those are left out of the counts).

    ``prefix``: (C_out + 1, C_in) cumulative count of nonzero kernel entries over output
    channels. Source ``(i, n)`` reaches a run when some output channel o of it at position
    ``n`` has ``kernel[o, i] != 0``.
    """
    P = layout.positions
    c_in = prefix.shape[1]
    bounds, cores = segments(core_of_order)
    ranges, elem, elem_run, member = _reach_table(layout, bounds, cores)
    if not len(elem):
        return np.zeros(c_in * P, np.int64), np.zeros(0, np.int64)
    feeds = (prefix[ranges[:, 1]] - prefix[ranges[:, 0]] > 0).astype(np.int32)  # (R, C_in)
    reach = (member @ feeds) > 0  # (E, C_in)
    flagged = np.zeros(len(elem), bool) if pairs_on is None else \
        np.asarray(pairs_on)[cores[elem_run]]
    counted = np.flatnonzero(~flagged)
    step = sp.csr_matrix((np.r_[np.ones(counted.size), -np.ones(counted.size)],
                          (np.r_[elem[counted, 0], elem[counted, 1]], np.r_[counted, counted])),
                         shape=(P + 1, len(elem)))
    deg = np.cumsum(np.asarray(step @ reach.astype(np.float64)), axis=0)[:P]  # (P, C_in)
    pairs = []
    for e in np.flatnonzero(flagged):
        src = np.flatnonzero(reach[e])[:, None] * P + np.arange(elem[e, 0], elem[e, 1])[None, :]
        pairs.append(src.ravel() * n_cores + int(cores[elem_run[e]]))
    return np.rint(deg.T).astype(np.int64).ravel(), \
        (np.concatenate(pairs) if pairs else np.zeros(0, np.int64))


def conv_reach(feeds_prefix: np.ndarray, layout: OrderLayout, core_of_order: np.ndarray,
               used_inputs) -> np.ndarray | None:
    """Upper bound of the cores each source ``(i, y, x)`` of a convolution reaches: a run
    counts when one of its output channels is fed by input channel ``i`` and one of its
    output positions reads ``(y, x)`` (any tap).

    ``feeds_prefix``: (C_out + 1, C_in) cumulative count over output channels of "input
    channel feeds output channel"; ``used_inputs(n_lo, n_hi)``: (H W,) bool, the input
    positions output positions ``[n_lo, n_hi)`` read.
    """
    bounds, cores = segments(core_of_order)
    fed_rows, used_rows = [], []
    for k in range(len(cores)):
        rects = layout.rects(int(bounds[k]), int(bounds[k + 1]))
        fed = np.zeros(feeds_prefix.shape[1], bool)
        for lo, hi in merge_ranges((c0, c1) for c0, c1, _, _ in rects):
            fed |= feeds_prefix[hi] - feeds_prefix[lo] > 0
        if not fed.any():
            continue
        used = None
        for lo, hi in merge_ranges((n0, n1) for _, _, n0, n1 in rects):
            u = used_inputs(lo, hi)
            used = u.copy() if used is None else used | u
        fed_rows.append(fed)
        used_rows.append(used)
    if not fed_rows:
        return None
    deg = np.asarray(fed_rows, np.float64).T @ np.asarray(used_rows, np.float64)  # (C_in, HW)
    return np.rint(deg).astype(np.int64).ravel()
