"""Pure fixed-point kernels with Lava 0.10.0's bit-accurate semantics (numpy, int64).

Each function mirrors one Lava ProcessModel step, including its quirks, and is tested
against the real ProcessModel by counting mismatches (tests/simulate/test_kernels.py).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["lava_effective_weights", "synaptic_input", "lif_fixed_step", "attention_counts",
           "MAX_UV"]

MAX_UV = 2 ** 23  # u, v are 24-bit signed in PyLifModelBitAcc


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


def lif_fixed_step(u, v, a_in, *, du: int, dv: int, vth: int, bias_eff):
    """One step of PyLifModelBitAcc on int64 arrays; returns ``(u, v, spikes, wrapped)``.

    ``wrapped`` flags neurons whose current left the 24-bit range (u wraps, as in Lava).
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
    s = v > (vth << 6)
    v = np.where(s, 0, v)
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
