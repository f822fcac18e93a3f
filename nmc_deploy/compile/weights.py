"""Lava's fixed-point grids for synapse weights, biases and message widths (pure functions).

A real weight matrix ``R`` is written ``W * 2**weight_exp`` with ``W`` on Lava's effective
8-bit grid (mixed sign: even values in [-256, 254]; one sign: [0, 255] or [-255, 0]), so
Lava's own clip/truncate leaves it unchanged; a bias is ``bias_mant << bias_exp`` with a
13-bit mantissa.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import LoweringError
from ..loihi.constants import LAVA_LIF
from ..loihi.synapses import lava_effective_weights
from ..program.shared_weights import (is_shared, replace_values, stored_values,
                                      usage_counts)

__all__ = ["QuantizedWeights", "quantize_weights", "quantize_bias", "message_bits",
           "grid_top", "accumulation_bound"]


@dataclass(frozen=True)
class QuantizedWeights:
    """A weight matrix on Lava's grid and what its rounding lost."""

    weights: sp.csr_matrix  # int32 on Lava's effective grid (or shared weights)
    weight_exp: int
    clipped: int  # synapses that saturated (expanded count)
    zeroed: int  # nonzero float synapses that rounded to 0 (absent now; expanded count)


def quantize_weights(real: sp.spmatrix, weight_bits: int = 8) -> QuantizedWeights:
    """Write ``real`` as ``W * 2**weight_exp`` with W on Lava's ``weight_bits`` grid.

    Mixed-sign matrices use even integers in [-2**wb, 2**wb - 2] (Lava drops the LSB of mixed
    weights); single-sign ones use [0, 2**wb - 1] or its negative. The exponent is the
    smallest in Loihi's range that avoids clipping. Shared weights
    (:mod:`~nmc_deploy.program.shared_weights`) are quantized on their stored values (the
    same numbers as their expanded copies) and stay shared; clipped and zeroed counts are
    of expanded synapses.
    """
    if not is_shared(real):
        real = sp.csr_matrix(real, dtype=np.float64)
    data = np.asarray(stored_values(real), np.float64)
    usage = usage_counts(real)
    if data.size == 0 or np.all(data == 0):
        return QuantizedWeights(replace_values(real, np.zeros(data.size, np.int32)), 0, 0, 0)
    if weight_bits > 8:
        raise LoweringError(f"weight_bits ({weight_bits}) exceeds 8, the widest weight Lava's "
                            "Sparse/Dense fixed-point models represent")
    mixed = data.min() < 0 < data.max()
    top = 2 ** weight_bits - (2 if mixed else 1)  # 254 or 255
    step = 2 if mixed else 1
    max_abs = float(np.abs(data).max())
    if np.all(data == np.round(data)) and max_abs <= top and (not mixed or np.all(data % 2 == 0)):
        exp = 0  # integer weights already on the grid stay exact (e.g. max-pool OR weights 1)
    else:
        exp = math.ceil(math.log2(max_abs / top)) if max_abs > 0 else 0
    exp = int(min(max(exp, LAVA_LIF.weight_exp_min), LAVA_LIF.weight_exp_max))
    scaled = data / (2.0 ** exp)
    q = np.round(scaled / step) * step
    lo = -(2 ** weight_bits) if mixed else (-top if data.max() <= 0 else 0)
    hi = top if data.max() > 0 else 0
    clipped = int(usage[(q < lo) | (q > hi)].sum())
    q = np.clip(q, lo, hi)
    # Lava decides the sign mode from the stored matrix and clips/truncates accordingly; if
    # rounding changed the sign pattern (e.g. all positives became 0 after a clamped
    # exponent), project onto what Lava will actually use, so reference and Lava agree.
    q = lava_effective_weights(q, weight_bits)
    zeroed = int(usage[(q == 0) & (data != 0)].sum())
    return QuantizedWeights(replace_values(real, q.astype(np.int32)), exp, clipped, zeroed)


def quantize_bias(bias_v: np.ndarray, min_exp: int = 0) -> tuple[np.ndarray, int, int]:
    """``(bias_mant, bias_exp, clipped)``: the smallest exponent ``>= min_exp`` whose 13-bit
    mantissa holds ``bias_v`` (v units), and how many mantissas saturated anyway."""
    max_abs = float(np.abs(bias_v).max()) if bias_v.size else 0.0
    exp = min_exp
    while exp < LAVA_LIF.bias_exp_max and max_abs / (2 ** exp) > LAVA_LIF.bias_mant_max:
        exp += 1
    mant = np.round(bias_v / (2 ** exp))
    clipped = int(np.sum((mant < LAVA_LIF.bias_mant_min) | (mant > LAVA_LIF.bias_mant_max)))
    mant = np.clip(mant, LAVA_LIF.bias_mant_min, LAVA_LIF.bias_mant_max).astype(np.int64)
    return mant, exp, clipped


def message_bits(max_value: int) -> int:
    """Unsigned payload bits that hold ``0..max_value`` (at least 1)."""
    return max(1, int(math.ceil(math.log2(max_value + 1))))


def grid_top(data: np.ndarray, weight_bits: int) -> int:
    """Largest magnitude on Lava's grid for these weights (254 mixed, 255 one sign)."""
    mixed = data.size and data.min() < 0 < data.max()
    return 2 ** weight_bits - (2 if mixed else 1)


def accumulation_bound(qw: QuantizedWeights, x_max: np.ndarray) -> np.ndarray:
    """Per target neuron, the largest ``|(W @ x) << weight_exp|`` for ``|x| <= x_max``."""
    acc = np.asarray(abs(qw.weights) @ x_max.astype(np.int64)).astype(np.int64).ravel()
    return acc << qw.weight_exp if qw.weight_exp > 0 else -((-acc) >> -qw.weight_exp)
