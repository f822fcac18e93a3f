"""The synapse memory model of a core: how many bits a set of input axons' synapses take.

Split from :mod:`nmc_deploy.targets` (which re-exports both functions); the numbers come
from a :class:`~nmc_deploy.targets.HardwareTarget` (named in annotations only: targets
imports this module, not the other way round). Imports only numpy.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import CapacityError, LoweringError

__all__ = ["synapse_index_bits", "synapse_memory_bits"]


def synapse_index_bits(span: int, target: HardwareTarget) -> int:
    """Width of the per-synapse index of a sparse synapse entry.

    ``clip(ceil(log2(span)), index_bits_min, index_bits_max)``: the index addresses one of
    ``span`` destination neurons; widths below the minimum are rounded up to it, as in
    nengo-loihi's ``INDEX_BITS_MAP = [0, 6, 7, ..., 12]``.

    Raises
    ------
    CapacityError
        ``span`` needs more than ``synapse_index_bits_max`` bits.
    """
    span = int(span)
    if span < 1:
        return target.synapse_index_bits_min
    needed = max(0, math.ceil(math.log2(span)))
    if needed > target.synapse_index_bits_max:
        raise CapacityError(
            f"synapse block: destination span ({span}) exceeds the addressable neurons of a "
            f"{target.synapse_index_bits_max}-bit index ({2 ** target.synapse_index_bits_max}); "
            f"split the destination population")
    return max(needed, target.synapse_index_bits_min)


def synapse_memory_bits(fan_in_counts, target: HardwareTarget, *, sparse: bool,
                        span: int | None = None) -> int:
    """Synapse memory one core needs for a set of input axons, in bits.

    The packing model of nengo-loihi's ``SynapseConfig.bits_per_axon``. Each input axon
    ``a`` stores ``s_a`` synapse entries, split into groups of at most
    ``G = target.synapse_group_max``; every group costs a header plus its entries and is rounded
    up to whole memory words::

        b        = weight_bits + (index_bits if sparse else 0)      # bits per entry
        words(n) = ceil((header_bits + n * b) / word_bits)          # one group of n entries
        bits     = word_bits * sum_a [ (s_a // G) * words(G) + words(s_a % G) ]   (words(0) = 0)

    with ``s_a = n_a`` (the nonzero synapses) for sparse storage and ``s_a = span`` (the full
    row, zeros included, no index) for dense storage. An axon with ``n_a = 0`` is not routed to
    the core and costs nothing in either format. No delay or learning-tag bits are stored
    (delay bits of DelaySparse groups are not counted yet).

    Parameters
    ----------
    fan_in_counts
        Integer array-like, one entry per input axon of the core: the number of nonzero
        synapses from that axon to neurons on this core.
    target
        Supplies ``weight_bits``, ``synapse_word_bits``, ``synapse_group_max``,
        ``synapse_group_header_bits`` and the index-width range.
    sparse
        True: store only nonzero synapses, each with an index (:func:`synapse_index_bits`).
        False: store every synapse of the axon's full span, without an index.
    span
        Number of destination neurons on this core an axon can address (the width of a dense
        row). Default: the largest entry of ``fan_in_counts``.

    Returns
    -------
    int
        Bits, a multiple of ``target.synapse_word_bits``.
    """
    counts = np.asarray(fan_in_counts)
    if counts.size == 0:
        return 0
    if not np.issubdtype(counts.dtype, np.integer):
        if not np.all(np.equal(np.mod(counts, 1), 0)):
            raise LoweringError("fan_in_counts: expected integer synapse counts")
        counts = counts.astype(np.int64)
    counts = counts.astype(np.int64, copy=False).ravel()
    if counts.min() < 0:
        raise LoweringError(f"fan_in_counts: counts must be >= 0, got {int(counts.min())}")
    max_count = int(counts.max())
    span = max_count if span is None else int(span)
    if span < max_count:
        raise LoweringError(f"span ({span}) is smaller than the largest fan-in count "
                            f"({max_count})")

    if sparse:
        stored = counts
        entry_bits = target.weight_bits + synapse_index_bits(span, target)
    else:
        stored = np.where(counts > 0, span, 0).astype(np.int64)
        entry_bits = target.weight_bits
    group = target.synapse_group_max
    header = target.synapse_group_header_bits
    word = target.synapse_word_bits

    full_groups, rest = np.divmod(stored, group)
    words_full_group = -(-(header + group * entry_bits) // word)
    words_rest = np.where(rest > 0, -(-(header + rest * entry_bits) // word), 0)
    words = full_groups * words_full_group + words_rest
    return int(words.sum()) * word
