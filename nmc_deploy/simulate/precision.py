"""Fixed point or float64: everything the reference simulation loop does differently per precision.

The loop (:mod:`~nmc_deploy.simulate.reference`) is one; a precision object supplies the
input conversion, the synaptic input of a group, a relay's payload, the token selector's
scores, the LI voltage scale and a population's neuron state with its step kernel
(:func:`~nmc_deploy.loihi.neurons.lif_fixed_step`, computed in float64 by
:func:`~nmc_deploy.loihi.neurons.lif_fixed_step_f64` when the drive is bounded, or the float
twin :func:`~nmc_deploy.loihi.neurons.lif_float_step`), and the synaptic drive of a
population (:mod:`~nmc_deploy.simulate.drive`). ``FIXED`` runs a compiled ``Program`` with
Lava's arithmetic, ``FLOAT`` a ``FloatProgram`` (the lowered graph, unquantized).
"""
from __future__ import annotations

import numpy as np

from ..loihi.attention import token_scores_fixed, token_scores_float
from ..loihi.constants import DU_NO_CURRENT, MAX_V
from ..loihi.neurons import effective_bias, lif_fixed_step, lif_fixed_step_f64, lif_float_step
from ..loihi.synapses import synaptic_input
from ..program import LI
from .drive import fixed_drive, float_drive, plan_program
from .inputs import as_input_sequence

__all__ = ["FixedPrecision", "FloatPrecision", "FixedNeurons", "FloatNeurons", "FIXED", "FLOAT"]


# A population without recurrence runs in blocks of at most this many neurons x samples,
# all T steps of a block at once, so that its state stays in the CPU cache.
BLOCK_ELEMENTS = 65536


def _part(p, cols: slice):
    """Per-neuron parameter ``p`` (scalar or (size,) array) for the neurons ``cols``."""
    return p[cols] if isinstance(p, np.ndarray) and p.ndim else p


class FixedNeurons:
    """One population's state (u, v) in fixed point, stepped by ``lif_fixed_step``, or by its
    float64 form ``lif_fixed_step_f64`` for a float drive (integers below
    ``F64_INPUT_LIMIT``; the same values).

    ``gate`` (B, size) bool or None: neurons of dropped tokens (False) neither spike nor
    keep u, v. Counts what the stats report: ``active`` neuron updates (nonzero input or
    state, gated neurons excluded), ``u_wraps``, ``v_saturations``.
    """

    def __init__(self, pop, gate: np.ndarray | None, batch: int, dtype=np.int64):
        n = pop.size
        as_float = np.dtype(dtype).kind == "f"
        self.kernel = lif_fixed_step_f64 if as_float else lif_fixed_step
        self.u = np.zeros((batch, n), np.float64 if as_float else np.int64)
        self.v = np.zeros((batch, n), np.float64 if as_float else np.int64)
        self.gate = gate
        self.bias_eff = effective_bias(pop.bias_mant, pop.bias_exp)
        self.du = np.asarray(pop.du, np.int64) if isinstance(pop.du, np.ndarray) else pop.du
        self.dv = pop.dv
        self.has_current = bool(np.any(np.asarray(pop.du) != DU_NO_CURRENT))
        self.vth = pop.vth if pop.kind != LI else None
        self.reset_subtract = pop.reset_subtract
        self.active = 0
        self.u_wraps = 0
        self.v_saturations = 0

    def _advance(self, u, v, a, gate, cols: slice):
        """One step of the neurons ``cols`` with state ``u, v`` (counted); new ``(u, v, s)``."""
        busy = np.logical_or(a, v)
        if self.has_current:
            busy |= u != 0
        if gate is not None:
            busy &= gate
        self.active += int(np.count_nonzero(busy))
        u, v, s, wrapped = self.kernel(u, v, a, du=_part(self.du, cols), dv=_part(self.dv, cols),
                                       vth=self.vth, bias_eff=_part(self.bias_eff, cols),
                                       reset_subtract=self.reset_subtract)
        if gate is not None:  # neurons of dropped tokens stay at rest
            s, u, v = s & gate, u * gate, v * gate
            wrapped = None if wrapped is None else wrapped & gate
        if wrapped is not None:
            self.u_wraps += int(np.count_nonzero(wrapped))
        if v.size and (v.max() >= MAX_V or v.min() <= -MAX_V):
            self.v_saturations += int(np.count_nonzero(np.abs(v) == MAX_V))
        return u, v, s

    def step(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integrate the (B, size) synaptic input ``a``; returns ``(spikes, v)``."""
        self.u, self.v, s = self._advance(self.u, self.v, a, self.gate, slice(None))
        return s, self.v

    def run(self, drive: np.ndarray, volts: np.ndarray | None = None) -> np.ndarray:
        """All steps of the (T, B, size) ``drive`` (no recurrence), block by block of
        ``BLOCK_ELEMENTS``; returns the (T, B, size) spikes and writes v into ``volts``."""
        T, B, n = drive.shape
        out = np.zeros(drive.shape, bool)
        n_cols = max(1, min(n, BLOCK_ELEMENTS))
        n_rows = max(1, BLOCK_ELEMENTS // n_cols)
        for b0 in range(0, B, n_rows):
            for n0 in range(0, n, n_cols):
                rows, cols = slice(b0, b0 + n_rows), slice(n0, n0 + n_cols)
                u, v = self.u[rows, cols], self.v[rows, cols]
                gate = None if self.gate is None else self.gate[rows, cols]
                for t in range(T):
                    u, v, s = self._advance(u, v, drive[t, rows, cols], gate, cols)
                    out[t, rows, cols] = s
                    if volts is not None:
                        volts[t, rows, cols] = v
                self.u[rows, cols], self.v[rows, cols] = u, v
        return out


class FloatNeurons:
    """One population's state (synaptic current, v) in float64, stepped by ``lif_float_step``.

    ``gate`` silences the spiking neurons of dropped tokens (spikes and v); an LI
    population's voltage is read out ungated, as the lowered graph computes it.
    """

    def __init__(self, pop, gate: np.ndarray | None, batch: int, dtype=np.float64):
        n = pop.size
        self.pop = pop
        self.gate = gate
        self.alpha_syn = pop.alpha_syn if np.any(np.asarray(pop.alpha_syn) != 0) else None
        self.v_threshold = None if pop.kind == LI else pop.v_threshold
        self.i_syn = np.zeros((batch, n))
        self.v = np.zeros((batch, n))

    def step(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integrate the (B, size) input ``x``; returns ``(spikes, v)``."""
        p = self.pop
        self.i_syn, v, s = lif_float_step(self.i_syn, self.v, x, alpha=p.alpha,
                                          alpha_syn=self.alpha_syn, bias=p.bias,
                                          v_threshold=self.v_threshold,
                                          threshold_ge=p.threshold_ge,
                                          reset_subtract=p.reset == "subtract")
        if self.gate is not None and self.v_threshold is not None:
            s, v = s & self.gate, v * self.gate
        self.v = v
        return s, v


class FixedPrecision:
    """Lava's fixed-point arithmetic on a compiled ``Program`` (stats counted)."""

    backend = "reference"  # stats["backend"]
    dtype = np.int64
    counts_activity = True

    @staticmethod
    def input_sequence(program, inputs) -> np.ndarray:
        return as_input_sequence(program, inputs)

    @staticmethod
    def group_weights(g):
        return g.weights

    @staticmethod
    def plan(program) -> dict:
        """Per population, how its drive is computed (:func:`~.drive.plan_program`)."""
        return plan_program(program, fixed=True)

    @staticmethod
    def drive(pop, plan, src, activity) -> np.ndarray:
        """(T, B, size) integer drive from other sources (:func:`~.drive.fixed_drive`)."""
        return fixed_drive(pop, plan, src, activity)

    @staticmethod
    def synaptic_input(g, s: np.ndarray) -> np.ndarray:
        """``(W @ s) << weight_exp`` of group ``g`` (one Sparse step; s: (n_src, cols))."""
        return synaptic_input(g.weights, s, g.weight_exp)

    @staticmethod
    def relay_payload(pop, a_in: np.ndarray) -> np.ndarray:
        return a_in >> pop.payload_shift

    @staticmethod
    def token_scores(sel, counts: np.ndarray, time_steps: int) -> np.ndarray:
        """Integer scores from (B, N, dim) feature counts (``TokenSelectOp``'s predictor)."""
        return token_scores_fixed(counts, w1=sel.w1, b1=sel.b1, h_shift=sel.h_shift,
                                  lut=sel.lut, lut_min=sel.lut_min, w_score=sel.w_score,
                                  b_score=sel.b_score)

    @staticmethod
    def voltage_scale(pop) -> float:
        return float(pop.scale)

    @staticmethod
    def neurons(pop, gate, batch: int, dtype=np.int64) -> FixedNeurons:
        """The state of ``pop``, in float64 for a float64 (bounded) drive."""
        return FixedNeurons(pop, gate, batch, dtype)


class FloatPrecision:
    """Float64 dynamics of a ``FloatProgram`` (no quantization; no stats)."""

    backend = "float"
    dtype = np.float64
    counts_activity = False

    @staticmethod
    def input_sequence(program, inputs) -> np.ndarray:
        return as_input_sequence(program, inputs, integer=False)

    @staticmethod
    def group_weights(g):
        return g.weight

    @staticmethod
    def plan(program) -> dict:
        return plan_program(program, fixed=False)

    @staticmethod
    def drive(pop, plan, src, activity) -> np.ndarray:
        """(T, B, size) float64 drive from other sources (:func:`~.drive.float_drive`)."""
        return float_drive(pop, plan, src, activity)

    @staticmethod
    def synaptic_input(g, s: np.ndarray) -> np.ndarray:
        """``W @ s`` of group ``g`` (the real matrix; s: (n_src, cols))."""
        return np.asarray(g.weight @ s)

    @staticmethod
    def relay_payload(pop, a_in: np.ndarray) -> np.ndarray:
        return a_in  # the real factor output, passed on as a graded value

    @staticmethod
    def token_scores(sel, counts: np.ndarray, time_steps: int) -> np.ndarray:
        """Float scores from (B, N, dim) feature counts (averaged over the T steps)."""
        return token_scores_float(counts / time_steps, sel.w1, sel.b1, sel.w2, sel.b2)

    @staticmethod
    def voltage_scale(pop) -> float:
        return 1.0

    @staticmethod
    def neurons(pop, gate, batch: int, dtype=np.float64) -> FloatNeurons:
        return FloatNeurons(pop, gate, batch, dtype)


FIXED = FixedPrecision()
FLOAT = FloatPrecision()
