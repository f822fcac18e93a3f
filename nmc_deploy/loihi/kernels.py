"""Pure fixed-point kernels with Lava 0.10.0's bit-accurate semantics (numpy, int64).

Each function mirrors one Lava ProcessModel step, including its quirks, and is tested
against the real ProcessModel by counting mismatches (tests/simulate/test_kernels.py).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .constants import MAX_UV

__all__ = ["lava_effective_weights", "synaptic_input", "lif_fixed_step", "attention_counts",
           "MAX_UV", "top_k_mask", "token_scores_fixed", "token_scores_float"]



def lava_effective_weights(weights: np.ndarray, num_weight_bits: int = 8) -> np.ndarray:
    """What Lava's Sparse/Dense fixed models do to weights on their first step.

    sign mode from min/max; clip to [-256, 255] (mixed) or [0, 255] (one sign, sign
    flipped for inhibitory); floor to a multiple of ``2**(8 - num_weight_bits + mixed)``.
    """
    w = np.asarray(weights, np.int64).copy()
    if w.size == 0:
        return w
    if w.min() >= 0:
        mode = "exc"
    elif w.max() <= 0:
        mode = "inh"
    else:
        mode = "mixed"
    if mode == "inh":
        w = -w
    w = np.clip(w, -256 if mode == "mixed" else 0, 255)
    k = 8 - num_weight_bits + (1 if mode == "mixed" else 0)
    w = (w >> k) << k
    if mode == "inh":
        w = -w
    return w


def synaptic_input(weights: sp.csr_matrix, s: np.ndarray, weight_exp: int) -> np.ndarray:
    """One Sparse step on a batch: ``(W @ s) << weight_exp`` (arithmetic ``>>`` if negative).

    ``s``: (n_in, batch) integers (0/1 spikes or graded payloads). Returns (n_out, batch).
    """
    a = np.asarray(weights @ s, dtype=np.int64)
    return a << weight_exp if weight_exp > 0 else a >> (-weight_exp)


def lif_fixed_step(u, v, a_in, *, du, dv, vth, bias_eff, reset_subtract: int = 0):
    """One step of PyLifModelBitAcc on int64 arrays; returns ``(u, v, spikes, wrapped)``.

    ``wrapped`` flags neurons whose current left the 24-bit range (u wraps, as in Lava).
    ``du``/``dv`` are scalars or per-neuron arrays. ``vth=None``: a non-spiking leaky
    integrator (no spike, no reset; our ``LIFWindowed`` with ``spiking=False``).
    ``reset_subtract > 0``: a spike subtracts it from v instead of zeroing v
    (``LIFWindowed`` with a subtractive reset).
    """
    x = u * (4096 - (du + 1))
    decayed = np.sign(x) * (np.abs(x) >> 12)
    decayed = decayed + (np.asarray(a_in, np.int64) << 6)
    wrapped = np.where(decayed > MAX_UV, decayed - 2 * MAX_UV, decayed)
    wrapped = np.where(wrapped <= -MAX_UV, decayed + 2 * MAX_UV, wrapped)  # Lava's exact form
    u = wrapped
    y = v * (4096 - dv)
    v = np.sign(y) * (np.abs(y) >> 12) + u + bias_eff
    v = np.clip(v, -MAX_UV + 1, MAX_UV - 1)
    if vth is None:
        return u, v, np.zeros(v.shape, bool), wrapped != decayed
    s = v > (vth << 6)
    v = np.where(s, v - reset_subtract if reset_subtract else 0, v)
    return u, v, s, wrapped != decayed


def attention_counts(q, k, v, num_heads: int, dim: int, n_tokens: int):
    """``C_h = (Q_h K_h^T) V_h`` on flat (rows, dim*n_tokens) spikes in (dim, N) layout.

    Returns ``(C, coincidences)``: C with the same layout (int64) and the number of
    accumulate operations (``sum(Q K^T)`` plus ``sum([A != 0] V)``) per row.
    """
    rows = q.shape[0]
    d = dim // num_heads

    def heads(x):  # (rows, D*N) -> (rows, h, N, d)
        return x.reshape(rows, num_heads, d, n_tokens).transpose(0, 1, 3, 2).astype(np.float64)

    Q, K, V = heads(q), heads(k), heads(v)
    A = Q @ K.transpose(0, 1, 3, 2)
    C = A @ V
    ops = A.sum(axis=(1, 2, 3)) + ((A != 0).astype(np.float64) @ V).sum(axis=(1, 2, 3))
    C = np.rint(C).astype(np.int64).transpose(0, 1, 3, 2).reshape(rows, dim * n_tokens)
    return C, np.rint(ops).astype(np.int64)


# --------------------------------------------------------------------------- token selection

def top_k_mask(scores: np.ndarray, k: int, prev: np.ndarray | None = None) -> np.ndarray:
    """(B, N) bool: the ``k`` highest ``scores`` per row among ``prev`` (ties: lower index).

    Works on int64 and float scores; tokens outside ``prev`` are never chosen.
    """
    scores = np.asarray(scores)
    b, n = scores.shape
    if prev is None:
        prev = np.ones((b, n), bool)
    # lexicographic: eligible first, then higher score, then lower index (stable sort)
    if scores.dtype.kind == "f":
        key = np.where(prev, -scores, np.inf)
    else:
        key = np.where(prev, -scores.astype(np.int64), np.iinfo(np.int64).max)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    mask = np.zeros((b, n), bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask & prev


def token_scores_fixed(counts: np.ndarray, *, w1, b1, h_shift: int, lut, lut_min: int,
                       w_score, b_score: int) -> np.ndarray:
    """Integer token scores (the equations of ``TokenSelectOp``).

    ``counts``: (B, N, dim) int64 feature counts over the T steps. Returns (B, N) int64.
    """
    c = np.asarray(counts, np.int64)
    h = c @ np.asarray(w1, np.int64).T + np.asarray(b1, np.int64)
    hq = h >> h_shift if h_shift >= 0 else h << (-h_shift)
    lut = np.asarray(lut, np.int64)
    j = hq - lut_min
    g = np.where(j < 0, 0, np.where(j >= lut.size, hq, lut[np.clip(j, 0, lut.size - 1)]))
    return g @ np.asarray(w_score, np.int64) + int(b_score)


def token_scores_float(features: np.ndarray, w1, b1, w2, b2) -> np.ndarray:
    """Float token scores ``z0 - z1`` of ``z = w2 gelu(w1 f + b1) + b2`` (exact-erf GELU).

    ``features``: (B, N, dim) time-averaged inputs. Returns (B, N) float64.
    """
    from scipy.special import erf

    h = np.asarray(features, np.float64) @ np.asarray(w1, np.float64).T + np.asarray(b1)
    g = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
    z = g @ np.asarray(w2, np.float64).T + np.asarray(b2)
    return z[..., 0] - z[..., 1]
