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

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..loihi.attention import token_scores_fixed, token_scores_float
from ..loihi.constants import DU_NO_CURRENT, LAVA_LIF, MAX_UV, MAX_V
from ..loihi.neurons import effective_bias, lif_fixed_step, lif_fixed_step_f64, lif_float_step
from ..loihi.synapses import synaptic_input
from ..program import LI
from .drive import fixed_drive, float_drive, plan_program
from .inputs import as_input_sequence

__all__ = ["FixedPrecision", "FloatPrecision", "FixedNeurons", "FloatNeurons", "FIXED", "FLOAT"]


# A population without recurrence runs in blocks of at most this many neurons x samples,
# all T steps of a block at once, so that its state stays in the CPU cache.
BLOCK_ELEMENTS = 65536


# Neurons without synaptic current, token gate or range checks step in place through
# preallocated buffers (FixedNeurons.run); False: every step through FixedNeurons._advance.
FAST_STEPS = True

# Threads that step the blocks of a population (numpy's loops run without the GIL).
NEURON_THREADS = min(4, os.cpu_count() or 1)
_POOL: list = []


def _pool() -> ThreadPoolExecutor:
    """The simulator's neuron thread pool (made on first use, kept for the process)."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(NEURON_THREADS, thread_name_prefix="nmc-neurons"))
    return _POOL[0]


def _part(p, shape: tuple[int, int], cols: slice):
    """Per-neuron parameter ``p`` (scalar or (size,) array) for the channels ``cols`` of the
    population seen as ``shape`` = (C, P)."""
    return p.reshape(shape)[cols] if isinstance(p, np.ndarray) and p.ndim else p


class FixedNeurons:
    """One population's state (u, v) in fixed point, stepped by ``lif_fixed_step``, or by its
    float64 form ``lif_fixed_step_f64`` for a float drive (integers below
    ``F64_INPUT_LIMIT``; the same values).

    ``gate`` (B, size) bool or None: neurons of dropped tokens (False) neither spike nor
    keep u, v. Counts what the stats report: ``active`` neuron updates (nonzero input or
    state, gated neurons excluded), ``u_wraps``, ``v_saturations``.
    """

    def __init__(self, pop, gate: np.ndarray | None, batch: int, dtype=np.int64,
                 bound: float = np.inf):
        n = pop.size
        as_float = np.dtype(dtype).kind == "f"
        self.bound = bound  # of |a_in|
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
        # multi spikes (counts, a graded payload) and the clamp v >= v_min
        self.spike_rule = {} if pop.max_spikes <= 1 and pop.v_min is None else {
            "max_spikes": pop.max_spikes, "spike_unit": pop.spike_unit, "v_min": pop.v_min}
        self.out_dtype = np.int32 if pop.max_spikes > 1 else bool
        self.active = 0
        self.u_wraps = 0
        self.v_saturations = 0

    def _in_range(self, T: int, observed: float = np.inf) -> bool:
        """True if, over T steps from rest, no current can wrap and no voltage can reach
        MAX_V: ``|u| <= T 64 bound`` and ``|v| <= T (T 64 bound + max |bias|) +
        reset_subtract`` (induction over the equations of ``lif_fixed_step``), with
        ``bound`` the smaller of the drive's bound and the ``observed`` largest ``|a_in|``."""
        if self.kernel is not lif_fixed_step_f64:
            return False
        u_max = T * float(1 << LAVA_LIF.act_shift) * min(self.bound, observed)
        v_max = T * (u_max + float(np.max(np.abs(self.bias_eff), initial=0))) \
            + self.reset_subtract
        return u_max < MAX_UV and v_max < MAX_V

    def _advance(self, u, v, a, gate, shape=None, cols: slice = slice(None),
                 checks: bool = True):
        """One step of the neurons ``cols`` (channels of the (C, P) ``shape``; None: all
        neurons, flat) with state ``u, v``; returns the new ``(u, v, s)`` and the counts
        ``(active, u_wraps, v_saturations)`` of the step. ``checks=False``: the kernel may
        skip its range checks (see :meth:`_in_range`)."""
        busy = np.logical_or(a, v)
        if self.has_current:
            busy |= u != 0
        if gate is not None:
            busy &= gate
        active = int(np.count_nonzero(busy))
        part = (lambda p: p) if shape is None else (lambda p: _part(p, shape, cols))  # noqa: E731
        extra = ({} if checks else {"checks": False}) if self.kernel is lif_fixed_step_f64 \
            else {"limit_mask": True}
        if self.spike_rule:
            extra.update(self.spike_rule, v_min=None if self.spike_rule["v_min"] is None
                         else part(self.spike_rule["v_min"]))
        u, v, s, wrapped, *limit = self.kernel(u, v, a, du=part(self.du), dv=part(self.dv),
                                               vth=self.vth, bias_eff=part(self.bias_eff),
                                               reset_subtract=self.reset_subtract, **extra)
        if gate is not None:  # neurons of dropped tokens stay at rest
            s, u, v = (s & gate if s.dtype == bool else s * gate), u * gate, v * gate
            wrapped = None if wrapped is None else wrapped & gate
        wraps = 0 if wrapped is None else int(np.count_nonzero(wrapped))
        at_limit = limit[0]  # |v| at the bound before the reset (None: nowhere)
        if at_limit is not None and gate is not None:
            at_limit = at_limit & gate
        sats = 0 if at_limit is None else int(np.count_nonzero(at_limit))
        return u, v, s, (active, wraps, sats)

    def _count(self, counts) -> None:
        self.active += counts[0]
        self.u_wraps += counts[1]
        self.v_saturations += counts[2]

    def step(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integrate the (B, size) synaptic input ``a``; returns ``(spikes, v)``."""
        self.u, self.v, s, counts = self._advance(self.u, self.v, a, self.gate)
        self._count(counts)
        return s, self.v

    def run(self, drive: np.ndarray, volts: np.ndarray | None = None) -> np.ndarray:
        """All steps of the (T, B, C, P) ``drive`` (no recurrence; C P = size, any strides),
        block by block of about ``BLOCK_ELEMENTS`` (samples x channels x P), the blocks
        shared among :data:`NEURON_THREADS` threads (numpy releases the GIL in its loops;
        blocks write disjoint parts, counts are summed); returns the (T, B, size) spikes and
        writes v into the (T, B, size) ``volts``."""
        T, B, C, P = drive.shape
        out = np.zeros((T, B, C * P), self.out_dtype)
        out4 = out.reshape(T, B, C, P)
        volts4 = None if volts is None else volts.reshape(T, B, C, P)
        u4, v4 = self.u.reshape(B, C, P), self.v.reshape(B, C, P)
        gate4 = None if self.gate is None else self.gate.reshape(B, C, P)
        observed = np.inf
        if self.kernel is lif_fixed_step_f64 and drive.size and not self._in_range(T):
            # the drive's actual range: usually far inside its bound
            observed = float(max(abs(drive.max()), abs(drive.min())))
        checks = not self._in_range(T, observed)
        plain = (FAST_STEPS and not checks and self.gate is None and not self.has_current
                 and self.vth is not None and not self.spike_rule)

        def plain_block(rows: slice, cols: slice) -> np.ndarray:
            # lif_fixed_step_f64 for neurons without current, gate or range checks, in
            # place on contiguous buffers of the block (same operations, same values; no
            # mixed-dtype or masked ufuncs, which numpy runs through slow buffered loops)
            part = (lambda p: _part(p, (C, P), cols))  # noqa: E731
            v = v4[rows, cols].copy()
            shape = v.shape
            x, busy, nonzero, s = (np.empty(shape), np.empty(shape, bool),
                                   np.empty(shape, bool), np.empty(shape, bool))
            keep = (LAVA_LIF.decay_unity - (np.asarray(part(self.dv)) + LAVA_LIF.dm_offset)) \
                / LAVA_LIF.decay_unity
            if np.ndim(keep):
                keep = np.ascontiguousarray(np.broadcast_to(keep, shape))
            bias = np.asarray(part(self.bias_eff), np.float64)
            if np.ndim(bias):
                bias = np.ascontiguousarray(np.broadcast_to(bias, shape))
            vth = float(self.vth << LAVA_LIF.vth_shift)
            active = 0
            for t in range(T):
                np.copyto(x, drive[t, rows, cols])  # a_in as float64
                np.not_equal(x, 0.0, out=busy)
                np.not_equal(v, 0.0, out=nonzero)
                busy |= nonzero
                active += int(np.count_nonzero(busy))
                x *= float(1 << LAVA_LIF.act_shift)  # u = a_in << 6
                v *= keep
                np.trunc(v, out=v)
                v += x
                v += bias
                np.greater(v, vth, out=s)
                if self.reset_subtract:
                    np.putmask(v, s, v - float(self.reset_subtract))
                else:
                    np.putmask(v, s, 0.0)
                out4[t, rows, cols] = s
                if volts4 is not None:
                    volts4[t, rows, cols] = v
            if T:
                u4[rows, cols], v4[rows, cols] = x, v
            return np.array([active, 0, 0], np.int64)

        def block(rows: slice, cols: slice) -> np.ndarray:
            if plain:
                return plain_block(rows, cols)
            u, v = u4[rows, cols], v4[rows, cols]
            gate = None if gate4 is None else gate4[rows, cols]
            total = np.zeros(3, np.int64)
            for t in range(T):
                u, v, s, counts = self._advance(u, v, drive[t, rows, cols], gate, (C, P), cols,
                                                checks)
                total += counts
                out4[t, rows, cols] = s
                if volts4 is not None:
                    volts4[t, rows, cols] = v
            u4[rows, cols], v4[rows, cols] = u, v
            return total

        n_cols = max(1, min(C, BLOCK_ELEMENTS // P))
        n_rows = max(1, BLOCK_ELEMENTS // (n_cols * P))
        blocks = [(slice(b0, b0 + n_rows), slice(c0, c0 + n_cols))
                  for b0 in range(0, B, n_rows) for c0 in range(0, C, n_cols)]
        if len(blocks) > 1 and NEURON_THREADS > 1:
            counts = list(_pool().map(lambda rc: block(*rc), blocks))
        else:
            counts = [block(*rc) for rc in blocks]
        self._count([int(c) for c in np.sum(counts, axis=0)])
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
        self.spike_rule = {"max_spikes": getattr(pop, "max_spikes", 1),
                           "v_min": getattr(pop, "v_min", None)}
        # float counts have no 24-bit cap (a runaway loop can pass 2**31)
        self.out_dtype = np.int64 if self.spike_rule["max_spikes"] != 1 else bool
        self.i_syn = np.zeros((batch, n))
        self.v = np.zeros((batch, n))

    def step(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integrate the (B, size) input ``x``; returns ``(spikes, v)``."""
        p = self.pop
        self.i_syn, v, s = lif_float_step(self.i_syn, self.v, x, alpha=p.alpha,
                                          alpha_syn=self.alpha_syn, bias=p.bias,
                                          v_threshold=self.v_threshold,
                                          threshold_ge=p.threshold_ge,
                                          reset_subtract=p.reset == "subtract",
                                          **self.spike_rule)
        if self.gate is not None and self.v_threshold is not None:
            s = s & self.gate if s.dtype == bool else s * self.gate
            v = v * self.gate
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
    def drive(pop, plan, src, activity) -> tuple[np.ndarray, float]:
        """(T, B, C, P) integer drive from other sources and its bound
        (:func:`~.drive.fixed_drive`)."""
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
    def neurons(pop, gate, batch: int, dtype=np.int64, bound: float = np.inf) -> FixedNeurons:
        """The state of ``pop``, in float64 for a float (bounded) drive; ``bound`` of |a_in|."""
        return FixedNeurons(pop, gate, batch, dtype, bound)


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
    def drive(pop, plan, src, activity) -> tuple[np.ndarray, float]:
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
    def neurons(pop, gate, batch: int, dtype=np.float64, bound: float = np.inf) -> FloatNeurons:
        return FloatNeurons(pop, gate, batch, dtype)


FIXED = FixedPrecision()
FLOAT = FloatPrecision()
