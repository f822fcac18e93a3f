"""Integer kernels of the programmable/embedded cores: spike attention and the token selector.

``attention_counts`` is the SpikeAttention stage, ``token_scores_fixed`` and ``top_k_mask``
the SparseSpikformer token selector (``TokenSelectOp``); ``token_scores_float`` is the
selector's float64 twin. Numpy only; the reference simulator and the Lava processes call
the same functions.
"""
from __future__ import annotations

import numpy as np

from .products import FLOAT32_EXACT

__all__ = ["attention_counts", "top_k_mask", "token_scores_fixed", "token_scores_float"]


def attention_counts(q, k, v, num_heads: int, dim: int, n_tokens: int):
    """``C_h = (Q_h K_h^T) V_h`` on flat (rows, dim*n_tokens) spikes in (dim, N) layout.

    Returns ``(C, coincidences)``: C with the same layout (int64) and the number of
    accumulate operations (``sum(Q K^T)`` plus ``sum([A != 0] V)``) per row.

    The products are exact: with 0/1 spikes every entry of ``A = Q K^T`` is at most d and
    every entry of ``C`` at most ``N d``, integers computed in float32 while ``N d < 2**24``
    (:data:`~nmc_deploy.loihi.products.FLOAT32_EXACT`), else float64. The second count is
    ``sum_n #{i: A[i, n] != 0} * sum_j V[n, j]``, the same integer without a product.
    """
    rows = q.shape[0]
    d = dim // num_heads
    dtype = np.float32 if n_tokens * d < FLOAT32_EXACT else np.float64

    def heads(x):  # (rows, D*N) -> (rows, h, d, N), the flat layout itself
        return x.reshape(rows, num_heads, d, n_tokens).astype(dtype)

    Q, K, V = heads(q), heads(k), heads(v)
    A = Q.transpose(0, 1, 3, 2) @ K  # A[n, m] = sum_j Q[j, n] K[j, m]
    C = V @ A.transpose(0, 1, 3, 2)  # C[j, n] = sum_m V[j, m] A[n, m]: (d, N) per head
    ops = A.sum(axis=(1, 2, 3), dtype=np.float64)
    ops += ((A != 0).sum(axis=2) * V.sum(axis=2, dtype=np.float64)).sum(axis=(1, 2))
    # exact integers in C and ops (see above): the conversion loses nothing
    return C.astype(np.int64).reshape(rows, dim * n_tokens), ops.astype(np.int64)


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
