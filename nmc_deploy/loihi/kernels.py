"""Every Loihi kernel under one import: ``synapses``, ``neurons`` and ``attention`` re-exported.

The kernels live by concern in :mod:`~nmc_deploy.loihi.synapses` (weight grid, Sparse
step), :mod:`~nmc_deploy.loihi.neurons` (fixed-point LIF step and its float twin) and
:mod:`~nmc_deploy.loihi.attention` (spike attention, token selector); this module re-exports
them for callers that want them all (and for the import path they had before the split).
"""
from __future__ import annotations

from .attention import attention_counts, token_scores_fixed, token_scores_float, top_k_mask
from .constants import MAX_UV
from .neurons import effective_bias, lif_fixed_step, lif_float_step
from .synapses import lava_effective_weights, synaptic_input, weight_sign_mode

__all__ = ["lava_effective_weights", "synaptic_input", "weight_sign_mode", "effective_bias",
           "lif_fixed_step", "lif_float_step", "attention_counts", "MAX_UV", "top_k_mask",
           "token_scores_fixed", "token_scores_float"]
