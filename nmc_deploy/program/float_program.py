"""The float program (from :func:`~nmc_deploy.compile.lower.lower_graph`): populations and
synapse groups with float weights, token selectors with float parameters; no hardware detail.

Population kinds: "lif" and "threshold" emit binary spikes ("lif" covers NIR's LIF, IF and
CubaLIF: a current state when ``alpha_syn > 0``); "li" (NIR's LI and CubaLI) never spikes,
its voltage is a graph output read per step; "relay" (a low-rank factor deployed as two
synaptic stages, ``lower_graph(..., low_rank="relay")``) emits its synaptic input as a
graded payload each step. Equations in :class:`FloatPopulation`.

A group with ``lag = L > 0`` delivers its source's output of sample step ``t - L`` (0 for
``t < L``): NIR ``Delay`` nodes and the one-step delay of recurrent edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .shared import ProgramBase

__all__ = ["FloatPopulation", "FloatGroup", "FloatTokenSelect", "FloatProgram"]


@dataclass(frozen=True)
class FloatPopulation:
    """Neurons of one graph node. Per step::

        i = alpha_syn i + x                 (alpha_syn = 0: i = x, no current state)
        v = alpha v + i + bias
        spike on v >= v_threshold (threshold_ge) or v > v_threshold, then
        v = 0 (reset "zero") or v = v - v_threshold (reset "subtract")

    With ``max_spikes != 1`` (multi spikes: sinabs' MultiSpike, rockpool's LIFTorch) the
    output is a count ``k = min(floor(v / v_threshold), max_spikes)`` where the threshold
    is reached (``ceil(v / v_threshold) - 1`` for ``>``; ``max_spikes`` None: no limit),
    read by the targets as a graded payload (``weight @ k``); the subtractive reset
    subtracts ``k v_threshold``. ``v_min`` (None: none) then clamps ``v = max(v, v_min)``
    (sinabs' ``min_v_mem``), with either spike rule.

    ``x`` is the sum of the incoming groups' ``weight @ source`` (the gains ``r dt/tau``,
    and for a current ``w_in dt/tau_syn``, are already folded into the weights), ``bias``
    is per neuron. The current is in voltage units (the current of NIR's CubaLIF times the
    voltage gain ``r dt/tau_mem``), so it obeys the same recursion.

    Kind "li": the same without spike and reset; its voltage ``v`` is the output
    (``v_threshold`` unused, 0).

    Kind "relay": no state and no threshold; per step it outputs ``y = x`` (a real value, the
    low-rank factor ``V @ s`` of its sources), which its targets read as a graded payload.
    ``alpha``, ``v_threshold``, ``threshold_ge`` are unused (0, 0, False) and ``bias`` is 0
    (a factor's bias stays in the expression of its consumer).
    """

    name: str
    shape: tuple[int, ...]
    kind: str  # "lif" | "threshold" | "li" | "relay"
    alpha: float | np.ndarray  # voltage kept per step (1 - dt/tau), scalar or per neuron
    v_threshold: float | np.ndarray  # scalar or per neuron (sLIF)
    threshold_ge: bool
    bias: np.ndarray  # (size,) float64, per step
    gate: str = ""  # token selector whose dropped tokens silence these (C, N) neurons
    alpha_syn: float | np.ndarray = 0.0  # current kept per step (1 - dt/tau_syn); 0: none
    reset: str = "zero"  # "zero" | "subtract"
    max_spikes: int | None = 1  # spikes per step at most (1: binary; None: no limit)
    v_min: float | np.ndarray | None = None  # clamp of v from below after the reset

    @property
    def multi_spike(self) -> bool:
        """True for a population emitting spike counts (graded payloads)."""
        return self.max_spikes != 1

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class FloatGroup:
    """Synapses ``source -> target``: ``x_target[t] += weight @ s_source[t - lag]`` each step
    (0 for ``t < lag``)."""

    name: str
    source: str  # population name, INPUT, CONST, or an attention op name
    target: str
    weight: sp.csr_matrix  # (target.size, source.size) float64
    layer: str  # graph node whose weights these are (for reports)
    kind: str  # "encoding" (graded input) | "synapses" | "attention"
    lag: int = 0  # sample steps between source and target (Delay nodes, recurrent edges)


@dataclass(frozen=True)
class FloatTokenSelect:
    """A token selector between stages (graph node ``TokenSelect``; float parameters).

    Per sample: ``x_t = sum_g weight_g @ s_g`` over ``inputs`` (the residual stream, shape
    (dim, n_tokens) C-order), features ``f[n] = (1/T) sum_t x_t[:, n]``, scores
    ``z0 - z1`` of ``z = w2 gelu(w1 f + b1) + b2``, keep mask ``m`` = the ``n_keep`` best
    tokens among those ``previous`` kept (ties to the lower index); output
    ``y_t[c, n] = m[n] x_t[c, n]``, a graded source. Populations with ``gate`` = this name
    keep their dropped-token neurons (index ``i``, token ``i % n_tokens``) at rest.
    """

    name: str
    inputs: tuple[FloatGroup, ...]  # target = this selector; kind "token_input"
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    dim: int
    n_tokens: int
    n_keep: int
    previous: str = ""


@dataclass(frozen=True)
class FloatProgram(ProgramBase):
    """The lowered graph: float populations, groups, attention ops, token selectors, readout."""

    def population(self, name: str) -> FloatPopulation:
        return next(p for p in self.populations if p.name == name)

