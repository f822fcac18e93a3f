"""Worst-case range of a quantized population's fixed-point state (pure functions).

:func:`worst_case` bounds, per neuron, what Lava's ``PyLifModelBitAcc`` can reach over the
``T`` steps of one sample window (every population starts at rest in each window) for any
input within its sources' limits (``x_max`` per source neuron: 1 for spikes, the input
levels, an attention op's largest count, a relay's largest |payload|)::

    a_in   = sum_g (W_g @ x) << e_g           (>> -e_g floors for e_g < 0)
    u[t]   = trunc(u[t-1] (4096 - du - 1) / 4096) + (a_in << 6)      wraps beyond 2**23
    v[t]   = trunc(v[t-1] (4096 - dv) / 4096) + u[t] + bias          saturates at 2**23 - 1
    spike where v > vth << 6, then v = 0 (or v - reset_subtract)

The positive side of ``a_in`` is the sum of the positive weights times ``x_max`` (for
signed sources, relays, of |W| times ``x_max``), the negative side likewise. ``u`` is at
most ``64 a_in`` times the current's geometric gain (``T`` steps without decay). The
voltage's upper bound is taken before the spike check (that is where Lava saturates): one
step above the threshold, or, with a subtractive reset, the recursion over ``T`` steps;
its lower bound has no reset: ``T`` steps of the most negative input and bias (a neuron
without leak, ``dv = 0``, integrates them all). Truncation toward zero only shrinks
magnitudes, so these are upper bounds. ``acc`` is Lava's int32 synaptic accumulator
(``W @ x`` before the shift).

What the scale choice prevents (:attr:`StateBound.overflows`): a wrapping current (it flips
the sign of the drive: catastrophic), an overflowing accumulator, and a voltage saturating
above where that changes anything (subtractive reset, non-spiking LI; with a zero reset a
saturated voltage still spikes and resets to 0). The negative side is a *stated bound*, not
prevented: every negative input at its maximum for all ``T`` steps is far beyond what
networks see (on a netx-style CUBA layer it would cost a factor 40 of scale, i.e. precision,
for saturations that random inputs never reach at that scale), and a voltage saturated at
``-(2**23 - 1)`` is still ``2**17 / vth_mant`` thresholds below rest (128 at 1023); its
worst case is recorded (``low_headroom``) and the simulators count every saturation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..loihi.constants import LAVA_LIF, MAX_UV, MAX_V, SYNAPTIC_ACCUMULATOR_BITS
from ..loihi.neurons import effective_bias
from ..program.shared_weights import replace_values, stored_values

__all__ = ["StateBound", "worst_case", "ACCUMULATOR_MAX", "scale_line"]

ACCUMULATOR_MAX = 2 ** (SYNAPTIC_ACCUMULATOR_BITS - 1) - 1  # Lava's int32 a_buff


@dataclass(frozen=True)
class StateBound:
    """Largest magnitudes a population's state can reach (each the max over its neurons)."""

    u: int  # |u| (wraps when u > 2**23 or u <= -2**23: only |u| < 2**23 is safe both ways)
    v_high: int  # v before the spike check (saturates at 2**23 - 1)
    v_low: int  # |v| on the negative side (saturates at -(2**23 - 1))
    acc: int  # |W @ x| before the shift (Lava's int32 accumulator)
    # False for a spiking population with a zero reset: a voltage saturated above the
    # threshold still spikes and resets to 0, exactly as unsaturated (nothing to prevent)
    v_high_matters: bool = True

    def _ratios(self) -> dict[str, float]:
        """limit / bound of what the scale choice prevents (>= 1: cannot overflow)."""
        v = self.v_high if self.v_high_matters else 0
        return {"current": (MAX_UV - 1) / max(self.u, 1), "voltage": (MAX_V - 1) / max(v, 1),
                "accumulator": ACCUMULATOR_MAX / max(self.acc, 1)}

    @property
    def wraps(self) -> bool:
        """True if the current can leave Lava's 24-bit range (it would wrap; the bound is a
        magnitude, so -2**23, which wraps, counts too)."""
        return self.u >= MAX_UV

    @property
    def saturates(self) -> bool:
        """True if the voltage can reach Lava's saturation bound where it matters (above:
        see ``v_high_matters``; below: :attr:`saturates_low`)."""
        return (self.v_high_matters and self.v_high >= MAX_V) or self.saturates_low

    @property
    def saturates_low(self) -> bool:
        """True if the voltage can reach -(2**23 - 1) (T steps of the most negative input)."""
        return self.low_headroom() < 1.0

    @property
    def overflows(self) -> bool:
        """True if the current can wrap, the accumulator overflow or the voltage saturate
        above (where it matters). The negative side is a stated bound, not prevented: see
        :func:`worst_case`."""
        return min(self._ratios().values()) < 1.0

    def headroom(self) -> float:
        """The smallest ratio limit / bound of current, voltage above, accumulator."""
        return float(min(self._ratios().values()))

    def low_headroom(self) -> float:
        """limit / bound of the negative voltage (< 1: it can saturate in the worst case)."""
        return float((MAX_V - 1) / max(self.v_low, 1))

    def binding(self) -> str:
        """Which limit is nearest: "current", "voltage" or "accumulator"."""
        ratios = self._ratios()
        return min(ratios, key=ratios.get)

    def to_json(self) -> dict:
        return {"u": self.u, "v_high": self.v_high, "v_low": self.v_low, "acc": self.acc}


def _shifted(acc: np.ndarray, weight_exp: int) -> np.ndarray:
    """``acc << weight_exp`` (arithmetic, flooring for negative exponents, as Lava)."""
    return acc << weight_exp if weight_exp >= 0 else acc >> -weight_exp


def _drive(groups, x_max, signed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per neuron ``(a_high, a_low, acc)``: the largest and smallest ``a_in`` and the
    largest |accumulator| of ``groups`` for sources within ``x_max(source)``."""
    a_hi = a_lo = acc_max = 0
    for g in groups:
        data = np.asarray(stored_values(g.weights), np.int64)
        if not data.size:
            continue
        x = np.asarray(x_max(g.source), np.int64)
        mag = np.asarray(abs(replace_values(g.weights, np.abs(data))) @ x, np.int64).ravel()
        if signed(g.source):
            hi, lo = mag, -mag
        else:
            hi = np.asarray(replace_values(g.weights, np.maximum(data, 0)) @ x,
                            np.int64).ravel()
            lo = np.asarray(replace_values(g.weights, np.minimum(data, 0)) @ x,
                            np.int64).ravel()
        a_hi = a_hi + _shifted(hi, g.weight_exp)
        a_lo = a_lo + _shifted(lo, g.weight_exp)
        acc_max = np.maximum(acc_max, mag)
    return np.asarray(a_hi), np.asarray(a_lo), np.asarray(acc_max)


def _gain(keep, steps: int) -> np.ndarray:
    """Worst-case gain of ``y = keep y + x`` over ``steps`` steps (``sum keep**k``)."""
    keep = np.asarray(keep, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(keep < 1.0, (1.0 - keep ** steps) / np.maximum(1.0 - keep, 1e-300),
                        float(steps))


def worst_case(pop, groups, x_max, signed, time_steps: int) -> StateBound:
    """The :class:`StateBound` of quantized population ``pop`` (a LIF/threshold/LI
    ``Population``) with its incoming quantized ``groups``, over ``time_steps`` steps;
    ``x_max(source)`` gives the largest |value| per source neuron, ``signed(source)`` True
    for sources with negative values. See the module docstring."""
    T = max(int(time_steps), 1)
    a_hi, a_lo, acc = _drive(groups, x_max, signed)
    shift = float(1 << LAVA_LIF.act_shift)
    keep_u = (LAVA_LIF.decay_unity - (np.asarray(pop.du, np.float64) + LAVA_LIF.ds_offset)) \
        / LAVA_LIF.decay_unity
    gain_u = _gain(np.maximum(keep_u, 0.0), T)
    u_hi = shift * a_hi * gain_u
    u_lo = shift * a_lo * gain_u
    bias = effective_bias(pop.bias_mant, pop.bias_exp).astype(np.float64)
    keep_v = (LAVA_LIF.decay_unity - (np.asarray(pop.dv, np.float64) + LAVA_LIF.dm_offset)) \
        / LAVA_LIF.decay_unity
    step_hi = u_hi + np.maximum(bias, 0.0)
    step_lo = u_lo + np.minimum(bias, 0.0)
    v_lo = step_lo * _gain(keep_v, T)
    if pop.kind == "li" or pop.vth is None:
        v_hi = step_hi * _gain(keep_v, T)
    else:
        thr = float(pop.vth << LAVA_LIF.vth_shift)
        if pop.reset_subtract:
            post = np.zeros_like(step_hi)
            v_hi = np.zeros_like(step_hi)
            for _ in range(T):
                pre = keep_v * post + step_hi
                v_hi = np.maximum(v_hi, pre)
                post = np.maximum(np.minimum(pre, thr), pre - pop.reset_subtract)
        else:
            v_hi = np.minimum(keep_v * thr, step_hi * _gain(keep_v, T)) + step_hi
    u_max = np.maximum(np.abs(u_hi), np.abs(u_lo))

    def top(a) -> int:
        return int(np.ceil(np.max(a, initial=0.0)))

    matters = pop.kind == "li" or pop.vth is None or bool(pop.reset_subtract)
    return StateBound(u=top(u_max), v_high=top(v_hi), v_low=top(-v_lo), acc=top(acc),
                      v_high_matters=matters)


def scale_line(quantization: dict) -> str:
    """The compile log's one line on the scales of ``metadata["quantization"]``: how many
    populations kept the ceiling, which were lowered (mantissa and the limit that bound),
    and with an override those whose worst case overflows."""
    pops = quantization.get("populations", {})
    vth = quantization.get("vth_mant")
    spiking = {n: q for n, q in pops.items() if q["choice"] in ("auto", "override")}
    risky = [n for n, q in spiking.items() if q["headroom"] is not None and q["headroom"] < 1]
    unproven = [n for n, q in spiking.items() if q["headroom"] is None]  # multispike.py
    if vth != "auto":
        tail = (f"; worst case overflows in {len(risky)}: {', '.join(risky[:3])}"
                f"{' ...' if len(risky) > 3 else ''}" if risky else "; no worst-case overflow")
        return f"quantization: --vth-mant {vth} for {len(spiking)} populations{tail}"
    low = {n: q for n, q in spiking.items() if q.get("limited_by")}
    top = max((q["vth_mant"] for n, q in spiking.items() if n not in low), default=None)
    parts = [f"{n} {q['vth_mant']} ({q['limited_by']} bound)"
             for n, q in list(low.items())[:3]]
    kept = [f"{top} for {len(spiking) - len(low)} of {len(spiking)}"] if top else []
    if low:
        kept.append(f"lowered for {len(low)} of {len(spiking)}: {', '.join(parts)}"
                    f"{' ...' if len(low) > 3 else ''}")
    least = min((q["headroom"] for q in spiking.values() if q["headroom"] is not None),
                default=None)
    safe = ("no worst-case overflow" if not risky else
            f"worst case overflows in {len(risky)}: {', '.join(risky[:3])}"
            f"{' ...' if len(risky) > 3 else ''}")
    if unproven:
        safe += (f"; not proven for {len(unproven)} (recurrent spike counts): "
                 f"{', '.join(unproven[:3])}{' ...' if len(unproven) > 3 else ''}")
    return (f"quantization: threshold mantissa per population ({safe}): "
            + ("; ".join(kept) or "no spiking population")
            + (f"; least headroom {least:.2f}x" if least is not None else ""))
