"""Loihi's synapse arithmetic: Lava's weight grid (sign modes) and one Sparse step (numpy).

Both mirror Lava 0.10.0's fixed-point Sparse/Dense models and are tested against them by
counting mismatches (tests/loihi/test_kernels.py).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .constants import LAVA_SYNAPSE, SIGN_EXCITATORY, SIGN_INHIBITORY, SIGN_MIXED

__all__ = ["weight_sign_mode", "lava_effective_weights", "synaptic_input"]


def weight_sign_mode(weights: np.ndarray) -> str:
    """Lava's sign mode of ``weights`` (``determine_sign_mode``).

    Returns ``SIGN_EXCITATORY`` if no weight is negative, ``SIGN_INHIBITORY`` if none is
    positive (and some is negative), ``SIGN_MIXED`` otherwise.
    """
    w = np.asarray(weights)
    if w.min() >= 0:
        return SIGN_EXCITATORY
    if w.max() <= 0:
        return SIGN_INHIBITORY
    return SIGN_MIXED


def lava_effective_weights(weights: np.ndarray,
                           num_weight_bits: int = LAVA_SYNAPSE.max_weight_bits) -> np.ndarray:
    """What Lava's Sparse/Dense fixed models do to weights on their first step.

    Sign mode from min/max (:func:`weight_sign_mode`); clip to [-256, 255] (mixed) or
    [0, 255] (one sign, sign flipped for inhibitory); floor to a multiple of
    ``2**(8 - num_weight_bits + mixed)``. Returns a new int64 array (input not modified).
    """
    w = np.asarray(weights, np.int64).copy()
    if w.size == 0:
        return w
    mode = weight_sign_mode(w)
    mixed = mode == SIGN_MIXED
    if mode == SIGN_INHIBITORY:
        w = -w
    w = np.clip(w, LAVA_SYNAPSE.weight_min_mixed if mixed else 0, LAVA_SYNAPSE.weight_max)
    k = LAVA_SYNAPSE.max_weight_bits - num_weight_bits + int(mixed)
    w = (w >> k) << k
    if mode == SIGN_INHIBITORY:
        w = -w
    return w


def synaptic_input(weights: sp.csr_matrix, s: np.ndarray, weight_exp: int) -> np.ndarray:
    """One Sparse step on a batch: ``(W @ s) << weight_exp`` (arithmetic ``>>`` if negative).

    ``s``: (n_in, batch) integers (0/1 spikes or graded payloads). Returns (n_out, batch)
    int64.
    """
    a = np.asarray(weights @ s, dtype=np.int64)
    return a << weight_exp if weight_exp > 0 else a >> (-weight_exp)
