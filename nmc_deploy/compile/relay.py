"""Scales of low-rank relay populations: the payload scale ``mu`` and the payload shift.

A relay's payload scale ``mu`` (payload units per float unit) is a power of two chosen so
that (1) every down group ``R_g = mu V_g`` gets ``weight_exp >= 0`` (the largest weight of
the group with the smallest weights lands in the upper half of the 8-bit grid, so no group
floors its sum), (2) no group needs ``weight_exp > 7``, and (3) the worst-case payload
``sum_g (|W_g| @ x_max) << e_g`` fits the target's signed graded-spike payload
(``payload_bits``). Its consumer group gets ``R = (lam/64) gain U 2**shift / mu`` per payload
unit, where ``payload_shift`` is the smallest shift >= 0 that lets ``R`` use the full 8-bit
grid at ``weight_exp >= -8`` and keeps the worst-case accumulation ``|W| @ p_max`` within
Lava's int32 synaptic accumulator.

A residual relay (one per residual stream, ``lower_graph(..., residual="relay")``) needs no
scale: its groups are identities (weight 1, ``weight_exp`` 0, exact on Lava's grid), so
its payload is the integer sum of its sources (spikes, or the previous relay's payload),
``mu = 1`` and shift 0; the payload width follows from the number of terms
(:func:`quantize_residual_relay`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ..errors import LoweringError
from ..loihi.constants import LAVA_LIF, SYNAPTIC_ACCUMULATOR_BITS
from ..program.shared_weights import is_shared, scale_rows, stored_values
from .weights import QuantizedWeights, accumulation_bound, grid_top, quantize_weights

__all__ = ["RelayScale", "quantize_relay", "quantize_residual_relay", "relay_shift"]


@dataclass(frozen=True)
class RelayScale:
    """The payload scale of one relay population."""

    mu: float  # payload units (before the shift) per float unit of the relay value
    payload_max: int  # worst-case |a_in| of the relay (before the shift)
    shift: int | None = None  # fixed by the first consumer group


def quantize_relay(p, gs, weight_bits: int, payload_bits: int,
                   source_max: Callable[[str], np.ndarray]
                   ) -> tuple[float, int, list[QuantizedWeights]]:
    """``(mu, payload_max, quantized down groups)`` of relay ``p`` fed by groups ``gs``;
    ``source_max(src)`` is the largest |payload| per neuron of a source (module docstring)."""
    limit = 2 ** (payload_bits - 1) - 1
    max_abs = [float(np.abs(stored_values(g.weight)).max()) for g in gs if g.weight.nnz]
    if not max_abs:
        raise LoweringError(f"{p.name}: low-rank relay has no nonzero incoming weights")
    top = min(grid_top(stored_values(g.weight), weight_bits) for g in gs if g.weight.nnz)
    # (1) the smallest group's largest weight in (top/2, top]: every weight_exp >= 0
    exp_mu = math.floor(math.log2(top / min(max_abs)))
    # (2) the largest group's weight_exp <= weight_exp_max
    exp_mu = min(exp_mu, math.floor(math.log2(top * 2.0 ** LAVA_LIF.weight_exp_max /
                                              max(max_abs))))
    while True:  # (3) the worst-case payload fits the graded-spike payload
        mu = 2.0 ** exp_mu
        qws = [quantize_weights(scale_rows(g.weight, mu), weight_bits) for g in gs]
        bound = sum(accumulation_bound(q, source_max(g.source)) for q, g in zip(qws, gs))
        payload_max = int(np.max(bound, initial=0))
        if payload_max <= limit:
            return mu, payload_max, qws
        exp_mu -= max(1, math.ceil(math.log2(payload_max / limit)))


def quantize_residual_relay(p, gs, payload_bits: int,
                            source_max: Callable[[str], np.ndarray]
                            ) -> tuple[int, list[QuantizedWeights]]:
    """``(payload_max, identity groups)`` of residual relay ``p`` fed by groups ``gs``: the
    payload is the exact integer sum of the sources (weights 1 at ``weight_exp`` 0);
    raises :class:`LoweringError` when its worst case exceeds the signed ``payload_bits``."""
    qws = [quantize_weights(g.weight, 8) for g in gs]
    for g, q in zip(gs, qws):
        if q.weight_exp != 0 or np.any(stored_values(q.weights) != 1):
            raise LoweringError(f"{g.name}: a residual relay's group must be an identity "
                                "(weight 1); the lowering built another matrix")
    bound = sum(accumulation_bound(q, source_max(g.source)) for q, g in zip(qws, gs))
    payload_max = int(np.max(bound, initial=0))
    limit = 2 ** (payload_bits - 1) - 1
    if payload_max > limit:
        raise LoweringError(f"{p.name}: residual payload ({payload_max}) exceeds the signed "
                            f"graded payload ({limit}, {payload_bits} bits); compile with "
                            "--residual fan-in")
    return payload_max, qws


def relay_shift(real: sp.csr_matrix, relay: RelayScale, weight_bits: int) -> int:
    """Smallest right shift of the payload that lets ``real`` (weights per unshifted payload
    unit) use the full grid at ``weight_exp >= weight_exp_min``, with the worst-case
    accumulation ``|W| @ p_max`` (and its left shift) inside Lava's int32 accumulator."""
    if not is_shared(real):
        real = sp.csr_matrix(real)
    if real.nnz == 0:
        return 0
    top = grid_top(stored_values(real), weight_bits)
    finest = top * 2.0 ** (LAVA_LIF.weight_exp_min - 1)  # max|R| above this: exp >= min
    need = finest / float(np.abs(stored_values(real)).max())
    shift = max(0, math.floor(math.log2(need)) + 1) if need >= 1 else 0
    acc_limit = 2 ** (SYNAPTIC_ACCUMULATOR_BITS - 1) - 1
    while True:
        qw = quantize_weights(scale_rows(real, 2.0 ** shift), weight_bits)
        p_max = np.full(real.shape[1], relay.payload_max >> shift, np.int64)
        acc = int(np.asarray(abs(qw.weights) @ p_max).max(initial=0))
        if acc << max(qw.weight_exp, 0) <= acc_limit or relay.payload_max >> shift == 0:
            return shift
        shift += 1
