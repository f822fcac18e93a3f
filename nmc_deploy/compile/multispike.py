"""Multi-spike populations and the clamp ``v_min`` in fixed point (issue 11, item 1).

A float population with ``max_spikes != 1`` (sinabs' MultiSpike, rockpool's LIFTorch)
emits a count ``k`` per step; on Loihi 2 that count is a graded payload, read by the
targets as ``W @ k`` like a relay's. On the integer grid of a population quantized at
scale ``lam`` and threshold mantissa ``vth`` the threshold is ``spike_unit = lam theta =
64 vth + [>=]`` (the same integer for every neuron, also with per-neuron thresholds), so::

    k = min(1 + floor((v - 64 vth - 1) / spike_unit), max_spikes)    where v > 64 vth

is ``floor(v / spike_unit)`` for ``>=`` and ``ceil(v / spike_unit) - 1`` for ``>``: the
float rule on the grid. The fixed ``max_spikes`` is the float one capped by what ``v`` can
reach: at most the population's worst-case voltage (:func:`~.scale.worst_case`, before
the spike check) and the 24-bit saturation; that largest count sets the payload width
(``payload_bits``, unsigned) and the ``num_message_bits`` of every group it feeds, and is
the ``x_max`` of the worst case of its targets (of its own recurrent groups:
:data:`OWN_COUNT_VTH`). A target whose spikes are binary
(``graded_spike_bits`` below 2, Loihi 1) refuses a multi-spike population by name.

``v_min`` (sinabs' ``min_v_mem``) is ``round(lam v_min)`` per neuron (``-theta`` is
``-spike_unit`` exactly), one integer when all neurons agree.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from ..errors import LoweringError, QuantizationWarning
from ..loihi.constants import LAVA_LIF, MAX_V
from .weights import message_bits

__all__ = ["spike_fields", "count_cap", "source_count", "bound_counts",
           "refuse_binary_target"]


def spike_fields(p, lam, vth: int) -> dict:
    """The multi-spike and clamp fields of the quantized population of float ``p`` at
    scale ``lam`` (scalar or per neuron) and threshold mantissa ``vth``."""
    unit = (1 << LAVA_LIF.vth_shift) * int(vth) + (1 if p.threshold_ge else 0)
    fields: dict = {}
    if getattr(p, "multi_spike", False):
        top = 1 + (MAX_V - (unit - (1 if p.threshold_ge else 0)) - 1) // max(unit, 1)
        cap = top if p.max_spikes is None else min(int(p.max_spikes), top)
        fields.update(max_spikes=max(2, int(cap)), spike_unit=int(unit))
    if getattr(p, "v_min", None) is not None:
        v_min = np.rint(np.broadcast_to(np.asarray(lam, np.float64) *
                                        np.asarray(p.v_min, np.float64), (p.size,)))
        v_min = np.maximum(v_min, -MAX_V).astype(np.int64)
        fields["v_min"] = int(v_min[0]) if np.all(v_min == v_min[0]) else v_min
    return fields


def count_cap(q) -> int:
    """The largest count the quantized multi-spike population ``q`` can emit (its
    ``max_spikes``); 1 for binary spikes."""
    return int(q.max_spikes) if q.max_spikes > 1 else 1


# A population's own counts (its recurrent groups) are bounded before its scale is known by
# what the 24-bit voltage allows at this threshold mantissa (the quantizer's ceiling), 128
# counts, not by the cap at the mantissa being tried: that cap grows as the mantissa falls,
# and the scale search would chase it down to 1.
OWN_COUNT_VTH = 1023


def _own_count(q) -> int:
    """The count a multi-spike population's own recurrent input is assumed to stay within
    while its scale is chosen: its cap at :data:`OWN_COUNT_VTH`."""
    ge = q.spike_unit - (q.vth << LAVA_LIF.vth_shift)
    unit = (OWN_COUNT_VTH << LAVA_LIF.vth_shift) + ge
    return min(count_cap(q), 1 + (MAX_V - (unit - ge) - 1) // unit)


def source_count(quantizer, src: str) -> int | None:
    """The largest payload of multi-spike population ``src`` (None: not one). Before its
    bound is known (its own recurrent groups), :func:`_own_count`."""
    if src in quantizer.counts:
        return quantizer.counts[src]
    q = quantizer.pops_q[-1] if quantizer.pops_q else None
    if q is not None and q.name == src and q.max_spikes > 1:
        return _own_count(q)
    return None


def bound_counts(quantizer, first_group: int, bound) -> None:
    """After population ``quantizer.pops_q[-1]`` got its scale (and its scale record): its
    largest count from the worst-case voltage ``bound.v_high`` (and its cap), its payload
    width, and the message bits of its own recurrent groups (from ``first_group``).

    With recurrent groups of its own the worst case assumed its own counts at most
    :func:`_own_count`; when the count it then allows is larger, that assumption is not
    self-consistent: the record's ``headroom`` becomes None (no proof that the state cannot
    overflow) and a :class:`~nmc_deploy.errors.QuantizationWarning` says so."""
    q = quantizer.pops_q[-1]
    if q.max_spikes <= 1:
        return
    assumed = _own_count(q)
    thr = q.vth << LAVA_LIF.vth_shift
    v_top = min(int(bound.v_high), MAX_V)
    k = 1 + (v_top - thr - 1) // q.spike_unit if v_top > thr else 1
    k = max(2, min(int(k), count_cap(q)))
    quantizer.counts[q.name] = k
    quantizer.pops_q[-1] = dataclasses.replace(q, max_spikes=k, payload_bits=message_bits(k))
    groups = quantizer.groups_q
    own = False
    for i in range(first_group, len(groups)):
        if groups[i].source == q.name:
            own = True
            groups[i] = dataclasses.replace(groups[i], num_message_bits=message_bits(k))
    record = quantizer.scales.get(q.name)
    if own and k > assumed and record is not None:
        record["headroom"] = None
        warnings.warn(f"{q.name}: its own spike counts can reach {k} per step, above the "
                      f"{assumed} its worst case assumed for its recurrent input: the scale "
                      "is not proven free of overflow (simulate counts wraps); lower the "
                      "recurrent weights or give --spikes single", QuantizationWarning,
                      stacklevel=4)


def refuse_binary_target(fp, target) -> None:
    """A one-line error when ``fp`` has a multi-spike population and ``target`` has no
    graded spikes (``graded_spike_bits`` below 2)."""
    if target.graded_spike_bits >= 2:
        return
    p = next((p for p in fp.populations if getattr(p, "multi_spike", False)), None)
    if p is not None:
        most = "unlimited" if p.max_spikes is None else f"up to {p.max_spikes}"
        raise LoweringError(
            f"{p.name}: spikes per step ({most}, multi spike) exceed the binary spikes "
            f"(graded_spike_bits {target.graded_spike_bits}) of target {target.name}; "
            "compile with --spikes single or for a target with graded spikes (loihi2)")
