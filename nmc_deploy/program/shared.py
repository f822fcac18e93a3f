"""Parts both program levels share: source and population-kind names, the attention op, the readout.

Group sources: a population, :data:`INPUT` (the graded input), :data:`CONST` (a source that
emits 1 at every step of a sample: constants that must reach a synaptic current or start
late), an attention op or a token selector. Population kinds besides "lif" and "threshold":
:data:`RELAY` and :data:`LI` (see :class:`~nmc_deploy.program.program.Population`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["INPUT", "CONST", "RELAY", "LI", "LOW_RANK_MODES", "AttentionOp", "Readout"]

INPUT = "input"  # source name of the graded input (pixel intensities)
CONST = "const"  # source name of the constant 1 (every step of a sample; 0 between samples)
RELAY = "relay"  # population kind of a graded-payload relay (low-rank factor stage)
LI = "li"  # population kind of a non-spiking leaky integrator whose voltage is an output
LOW_RANK_MODES = ("fused", "relay")  # how low-rank factor pairs are deployed


@dataclass(frozen=True)
class AttentionOp:
    """Per step and head h: ``C_h = (Q_h K_h^T) V_h`` on binary (dim, n_tokens) spike tensors.

    The op is a synapse-like stage: its integer output drives exactly one group of kind
    "attention" whose weight is a multiple of the identity.
    """

    name: str
    q: str
    k: str
    v: str
    num_heads: int
    dim: int
    n_tokens: int


@dataclass(frozen=True)
class Readout:
    """Host-side readout of the graph Output. Per step ``t``::

        y[t] = scale * (sum_src W_src @ a_src[t] + bias)
        output[t] = y[t]  or, with ``cumulative``,  sum_{t' <= t} y[t']

    ``a_src`` is a spiking population's 0/1 spikes, a token selector's stream or an "li"
    population's voltage in float units (fixed point: ``v / scale`` of the population).
    ``logits = sum_t y[t] = scale * (sum_src W_src @ counts_src + steps * bias)`` with
    ``counts`` the sums over a sample's T steps; ``scale = r dt`` of an Integrator
    (``cumulative``: NIR ``I`` integrates), 1 when the Output reads its sources directly.
    """

    weights: dict[str, sp.csr_matrix]
    bias: np.ndarray
    scale: float
    num_outputs: int
    cumulative: bool = False

