"""Quantize token selectors to the integer :class:`~nmc_deploy.program.TokenSelectOp`.

A token selector is an embedded-core program between stages (ours): integer feature
counts from integer synapses, a 16-bit predictor, a GELU table and an integer score
(:class:`~nmc_deploy.program.TokenSelectOp` for the equations).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ..errors import LoweringError
from ..program import FloatTokenSelect, SynapseGroup, TokenSelectOp
from .schedule import Schedule
from .weights import message_bits

__all__ = ["TokenSelectConstants", "TOKEN_SELECT", "quantize_token_predictor",
           "quantize_token_select"]


@dataclass(frozen=True)
class TokenSelectConstants:
    """Number formats of the integer token selector (an embedded-core program; ours)."""

    weight_max: int = 32767  # predictor weights are signed 16-bit (embedded-core integers)
    gelu_frac_bits: int = 8  # GELU table resolution 1/256 (4096 entries over the range)
    gelu_range: float = 8.0  # the table covers [-8, 8); below: 0, above: identity
    exp_min: int = -8
    exp_max: int = 30


TOKEN_SELECT = TokenSelectConstants()


def _pow2_scale(max_abs: float) -> int:
    """Largest exponent s with ``max_abs * 2**s <= weight_max`` (clamped)."""
    if max_abs <= 0:
        return 0
    s = int(math.floor(math.log2(TOKEN_SELECT.weight_max / max_abs)))
    return int(min(max(s, TOKEN_SELECT.exp_min), TOKEN_SELECT.exp_max))


def quantize_token_predictor(sel: FloatTokenSelect, time_steps: int) -> dict:
    """Integer parameters of ``TokenSelectOp`` for a float selector (a pure function).

    ``w1 = round(W1 / T * 2**s1)`` (16-bit), ``b1 = round(b1 * 2**s1)``, so ``h = w1 @ c + b1``
    is the hidden pre-activation times ``2**s1`` for feature counts ``c``; ``h_shift = s1 -
    gelu_frac_bits``; the GELU table holds ``round(gelu(i / 2**g) * 2**g)``; the score row
    ``W2[0] - W2[1]`` is 16-bit with exponent s3 and the bias ``round((b2[0] - b2[1]) *
    2**(s3 + g))``.
    """
    g = TOKEN_SELECT.gelu_frac_bits
    w1 = np.asarray(sel.w1, np.float64) / time_steps
    s1 = _pow2_scale(float(np.abs(w1).max(initial=0.0)))
    w1q = np.round(w1 * 2.0 ** s1).astype(np.int64)
    b1q = np.round(np.asarray(sel.b1, np.float64) * 2.0 ** s1).astype(np.int64)
    lut_min = -int(TOKEN_SELECT.gelu_range * 2 ** g)
    idx = np.arange(lut_min, -lut_min, dtype=np.float64) / 2 ** g
    erf = np.vectorize(math.erf)
    lut = np.round(0.5 * idx * (1.0 + erf(idx / math.sqrt(2.0))) * 2 ** g).astype(np.int64)
    wd = np.asarray(sel.w2, np.float64)[0] - np.asarray(sel.w2, np.float64)[1]
    bd = float(sel.b2[0] - sel.b2[1])
    s3 = _pow2_scale(float(np.abs(wd).max(initial=0.0)))
    return {"w1": w1q, "b1": b1q, "h_shift": s1 - g, "lut": lut, "lut_min": lut_min,
            "w_score": np.round(wd * 2.0 ** s3).astype(np.int64),
            "b_score": int(round(bd * 2.0 ** (s3 + g)))}


def quantize_token_select(t: FloatTokenSelect, schedule: Schedule, *, time_steps: int,
                          weight_bits: int, src_bits: Callable[[str], int],
                          relay_names: set, selector_names: set) -> TokenSelectOp:
    """The integer selector of ``t``: its input groups must be non-negative integer weights
    (a sum of spike trains) arriving aligned at the scheduled ``depth_in``."""
    name = t.name
    d_in = schedule.depths_in[name]
    inputs, max_value = [], 0
    for g in t.inputs:
        w = g.weight
        if g.source in relay_names:
            raise LoweringError(f"{g.name}: a token selector cannot read a low-rank relay")
        if not (np.all(w.data == np.round(w.data)) and np.all(w.data >= 0)
                and w.data.max(initial=0) <= 2 ** weight_bits - 1):
            raise LoweringError(f"{g.name}: token selector inputs need non-negative integer "
                                f"weights below {2 ** weight_bits} (a sum of spike trains)")
        bits = src_bits(g.source)
        w_int = sp.csr_matrix(w, dtype=np.int64).astype(np.int32)
        row_max = np.asarray(abs(w_int).sum(axis=1)).ravel().max(initial=0)
        max_value += int(row_max) * (2 ** bits - 1 if bits else 1)
        inputs.append(SynapseGroup(name=g.name, source=g.source, target=name,
                                   weights=w_int, weight_exp=0, num_message_bits=bits,
                                   delay=d_in - 1 - schedule.depth_of(g.source), layer=name,
                                   kind="token_input"))
    if t.previous and t.previous not in selector_names:
        raise LoweringError(f"{name}: previous selector '{t.previous}' is unknown")
    return TokenSelectOp(name=name, inputs=tuple(inputs), dim=t.dim, n_tokens=t.n_tokens,
                         n_keep=t.n_keep, previous=t.previous, depth_in=d_in,
                         depth=d_in + time_steps - 1, num_message_bits=message_bits(max_value),
                         **quantize_token_predictor(t, time_steps))
