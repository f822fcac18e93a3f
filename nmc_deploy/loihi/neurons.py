"""Neuron steps: Lava's bit-accurate fixed-point LIF step and its float64 twin (numpy).

``lif_fixed_step`` mirrors ``AbstractPyLifModelFixed`` (Lava 0.10.0) including its quirks
and is tested against the real ProcessModel by counting mismatches
(tests/loihi/test_kernels.py); ``lif_fixed_step_f64`` is the same integer step computed on
float64 arrays that hold integers (fewer, cheaper passes; identical results while the
synaptic input is bounded by ``F64_INPUT_LIMIT``, tests/loihi/test_neurons.py). ``lif_float_step`` is the same neuron in float64, the
dynamics of the lowered graph before quantization. Both are pure: they return new arrays.
"""
from __future__ import annotations

import numpy as np

from .constants import LAVA_LIF, MAX_UV, MAX_V, U_WRAP

__all__ = ["effective_bias", "lif_fixed_step", "lif_fixed_step_f64", "F64_INPUT_LIMIT",
           "lif_float_step", "multi_spike_fixed"]

# |a_in| below this keeps every intermediate of lif_fixed_step_f64 an integer < 2**53 (exact):
# a_in << 6 < 2**35, so u, and u or v times a decay factor (< 2**12), stay below 2**48.
F64_INPUT_LIMIT = 2.0 ** 29


def effective_bias(bias_mant, bias_exp: int) -> np.ndarray:
    """Lava's ``scale_bias``: ``bias_mant << bias_exp`` (``>>`` for a negative exponent), int64."""
    mant = np.asarray(bias_mant, np.int64)
    return mant << bias_exp if bias_exp >= 0 else mant >> (-bias_exp)


def _decayed(x: np.ndarray, decay) -> np.ndarray:
    """``x`` kept by ``(decay_unity - decay) / decay_unity``, truncated toward zero (Lava)."""
    y = x * (LAVA_LIF.decay_unity - decay)
    return np.sign(y) * (np.abs(y) >> LAVA_LIF.decay_shift)


def multi_spike_fixed(v, s, *, vth, spike_unit: int, max_spikes: int,
                      reset_subtract: int = 0):
    """Counts and reset of a multi-spike population (integer-valued ``v``, int64 or
    float64): where ``v > vth << 6`` (``s``), ``k = min(1 + floor((v - (vth << 6) - 1) /
    spike_unit), max_spikes)`` (``spike_unit = 64 vth + [>=]``, the threshold on the
    integer grid, so ``k = floor(v / unit)`` for ``>=`` and ``ceil(v / unit) - 1`` for
    ``>``), else 0; then ``v - k reset_subtract`` or 0 where ``k > 0``. Returns ``(k, v)``."""
    thr = vth << LAVA_LIF.vth_shift
    excess = np.where(s, v - (thr + 1), 0)
    k = np.where(s, np.minimum(np.floor_divide(excess, spike_unit) + 1, max_spikes), 0)
    v = v - k * reset_subtract if reset_subtract else np.where(s, 0, v)
    return k.astype(v.dtype), v


def lif_fixed_step(u, v, a_in, *, du, dv, vth, bias_eff, reset_subtract: int = 0,
                   max_spikes: int = 1, spike_unit: int = 0, v_min=None,
                   limit_mask: bool = False):
    """One step of PyLifModelBitAcc on int64 arrays; returns ``(u, v, spikes, wrapped)``
    (with ``limit_mask``, also the mask of voltages at the saturation bound before the
    reset, as :func:`lif_fixed_step_f64` gives it).

    Per neuron, with ``D = decay_unity = 4096`` and ``>> 12`` truncating toward zero::

        u[t] = wrap24(u[t-1] (D - du - 1) >> 12 + (a_in << 6))
        v[t] = clip(v[t-1] (D - dv) >> 12 + u[t] + bias_eff, -(2**23 - 1), 2**23 - 1)
        s[t] = v[t] > vth << 6;   v[t] = 0 where s[t]   (or v[t] - reset_subtract)

    ``wrapped`` flags neurons whose current left the 24-bit range (u wraps, as in Lava).
    ``du``/``dv`` are scalars or per-neuron arrays. ``vth=None``: a non-spiking leaky
    integrator (no spike, no reset; the Lava LIF process with ``spiking=False``).
    ``reset_subtract > 0``: a spike subtracts it from v instead of zeroing v.
    ``max_spikes > 1``: spikes are counts (:func:`multi_spike_fixed`). ``v_min`` (None, or
    an integer per neuron): then ``v = max(v, v_min)`` (sinabs' ``min_v_mem``).
    """
    decayed = _decayed(u, du + LAVA_LIF.ds_offset)
    decayed = decayed + (np.asarray(a_in, np.int64) << LAVA_LIF.act_shift)
    wrapped = np.where(decayed > MAX_UV, decayed - U_WRAP, decayed)
    wrapped = np.where(wrapped <= -MAX_UV, decayed + U_WRAP, wrapped)  # Lava's exact form
    u = wrapped
    v = _decayed(v, dv + LAVA_LIF.dm_offset) + u + bias_eff
    v = np.clip(v, -MAX_V, MAX_V)
    extra = (np.abs(v) == MAX_V,) if limit_mask else ()
    if vth is None:
        return (u, v, np.zeros(v.shape, bool), wrapped != decayed, *extra)
    s = v > (vth << LAVA_LIF.vth_shift)
    if max_spikes != 1:
        s, v = multi_spike_fixed(v, s, vth=vth, spike_unit=spike_unit, max_spikes=max_spikes,
                                 reset_subtract=reset_subtract)
    else:
        v = np.where(s, v - reset_subtract if reset_subtract else 0, v)
    if v_min is not None:
        v = np.maximum(v, v_min)
    return (u, v, s, wrapped != decayed, *extra)


def _truncated_decay(x: np.ndarray, decay) -> np.ndarray:
    """:func:`_decayed` in float64: ``trunc(x (D - decay) / D)``; exact for |x| < 2**40
    (the product has at most 52 significant bits, and /4096 is a power of two)."""
    keep = (LAVA_LIF.decay_unity - np.asarray(decay, np.float64)) / LAVA_LIF.decay_unity
    y = x * keep
    return np.trunc(y, out=y)


def lif_fixed_step_f64(u, v, a_in, *, du, dv, vth, bias_eff, reset_subtract: int = 0,
                       checks: bool = True, max_spikes: int = 1, spike_unit: int = 0,
                       v_min=None):
    """:func:`lif_fixed_step` on float64 arrays holding integers; returns ``(u, v, spikes,
    wrapped, at_limit)``: ``wrapped`` None when no neuron's current left the 24-bit range,
    ``at_limit`` None when no voltage reached the saturation bound ``MAX_V`` in magnitude,
    else the mask of the voltages at the bound before the reset (a neuron that saturated
    and spiked is counted too).

    The same equations, value for value, while ``|a_in| < F64_INPUT_LIMIT``: every
    intermediate is then an integer below 2**53, exactly represented, and ``>> 12`` toward
    zero is ``trunc`` of an exact division by 4096. ``u``, ``v``, ``a_in`` and ``bias_eff``
    are float64 (or integer) arrays; the inputs are not modified. With ``du = 4095``
    everywhere the old current decays to 0 (``4096 - (du + 1) = 0``) and is not read.
    ``checks=False``: the caller guarantees (from a bound of its inputs) that no current
    leaves the 24-bit range and no voltage reaches ``MAX_V``; the range checks are skipped.
    """
    x = np.multiply(a_in, float(1 << LAVA_LIF.act_shift), dtype=np.float64)
    decay_u = np.asarray(du) + LAVA_LIF.ds_offset
    if np.any(decay_u != LAVA_LIF.decay_unity):
        x += _truncated_decay(np.asarray(u, np.float64), decay_u)
    wrapped = None
    if checks and x.size and (x.max() > MAX_UV or x.min() <= -MAX_UV):
        w = np.where(x > MAX_UV, x - U_WRAP, x)
        w = np.where(w <= -MAX_UV, x + U_WRAP, w)  # Lava's exact form (see lif_fixed_step)
        wrapped = w != x
        x = w
    u = x
    v = _truncated_decay(np.asarray(v, np.float64), np.asarray(dv) + LAVA_LIF.dm_offset)
    v += u
    v += bias_eff
    at_limit = None
    if checks and v.size and (v.max() >= MAX_V or v.min() <= -MAX_V):
        np.clip(v, -MAX_V, MAX_V, out=v)
        at_limit = np.abs(v) == MAX_V
    if vth is None:
        return u, v, np.zeros(v.shape, bool), wrapped, at_limit
    s = v > (vth << LAVA_LIF.vth_shift)
    if max_spikes != 1:  # exact: integers below 2**53, floor of an exact-enough quotient
        s, v = multi_spike_fixed(v, s, vth=vth, spike_unit=spike_unit, max_spikes=max_spikes,
                                 reset_subtract=reset_subtract)
    elif reset_subtract:
        np.subtract(v, float(reset_subtract), out=v, where=s)
    else:
        np.copyto(v, 0.0, where=s)
    if v_min is not None:
        np.maximum(v, v_min, out=v)
    return u, v, s, wrapped, at_limit


def lif_float_step(i_syn, v, x, *, alpha, alpha_syn, bias, v_threshold,
                   threshold_ge: bool = False, reset_subtract: bool = False,
                   max_spikes: int | None = 1, v_min=None):
    """One float64 step of the LIF / CubaLIF / LI dynamics; returns ``(i_syn, v, spikes)``.

    The float twin of :func:`lif_fixed_step` (the quantizer maps ``alpha`` to ``dv = 4096
    (1 - alpha)`` and ``alpha_syn`` to ``du = 4096 (1 - alpha_syn) - 1``)::

        i[t] = alpha_syn i[t-1] + x[t]        (a synaptic current; alpha_syn=None: i[t] = x[t])
        v[t] = alpha v[t-1] + i[t] + bias
        s[t] = v[t] > v_threshold             (>= with threshold_ge)
        v[t] = 0 where s[t]                   (reset_subtract: v[t] - v_threshold)

    Multi spikes (``max_spikes`` != 1; None: no limit): ``s[t] = min(floor(v/v_threshold),
    max_spikes)`` (``ceil(v/v_threshold) - 1`` without threshold_ge) where the threshold is
    reached, a count; the subtractive reset subtracts ``s[t] v_threshold``. ``v_min``: then
    ``v[t] = max(v[t], v_min)``.

    ``alpha_syn=None``: no current state, ``i_syn`` is returned unchanged. ``v_threshold=None``:
    a non-spiking leaky integrator (LI, CubaLI: no spike, no reset). Scalars or per-neuron
    arrays throughout.
    """
    if alpha_syn is not None:
        i_syn = alpha_syn * i_syn + x
        x = i_syn
    v = alpha * v + x + bias
    if v_threshold is None:
        return i_syn, v, np.zeros(np.shape(v), bool)
    s = v >= v_threshold if threshold_ge else v > v_threshold
    if max_spikes != 1:
        ratio = v / v_threshold
        k = np.floor(ratio) if threshold_ge else np.ceil(ratio) - 1.0
        if max_spikes is not None:
            k = np.minimum(k, float(max_spikes))
        s = np.where(s, k, 0.0)
        v = v - s * v_threshold if reset_subtract else np.where(s > 0, 0.0, v)
    elif reset_subtract:
        v = np.where(s, v - v_threshold, v)
    else:
        v = np.where(s, 0.0, v)
    if v_min is not None:
        v = np.maximum(v, v_min)
    return i_syn, v, s
