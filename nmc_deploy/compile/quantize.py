"""Quantize a scheduled float program to Lava's Loihi fixed point (pure; discretization only).

The pipeline schedule (depths, delays) comes from :func:`~.schedule.schedule_program`, the
target's limits are checked afterwards by :func:`~.validate.validate_program`, and the
number formats of the target (``weight_bits``, ``graded_spike_bits``) come from its
:class:`~nmc_deploy.targets.HardwareTarget`.

Per population a scale ``lam`` (v units per float unit of membrane) is chosen so the
threshold lands on Lava's grid: Lava fires on ``v > vth << 6``; a float rule ``v >= theta``
becomes ``lam = (64 vth + 1) / theta`` (so ``v > 64 vth`` <=> ``v >= lam theta`` on integers)
and ``v > theta`` becomes ``lam = 64 vth / theta``. Then, per synapse group, the real weight
``R = lam * w / 64`` (one unit of ``a_in`` adds 64 to ``u``) is written as ``W * 2**weight_exp``
with ``W`` on Lava's effective 8-bit grid (mixed sign: even values in [-256, 254]; one
sign: [0, 255] or [-255, 0]), so Lava's own clip/truncate leaves it unchanged
(:mod:`.weights`). Decay: ``dv = round(4096 (1 - alpha))``; ``du = 4095`` so u carries
exactly this step's input. Bias: ``bias_mant << bias_exp`` with a 13-bit mantissa. A
population with a synaptic current (CubaLIF, CubaLI: ``alpha_syn > 0``) gets
``du = 4096 (1 - alpha_syn) - 1`` (Lava decays u by ``(4096 - du - 1) / 4096``), exact when
``4096 (1 - alpha_syn)`` is an integer, else rounded with a warning like dv; u then carries
the current in the same units as v. A subtractive reset stores ``reset_subtract = lam theta``
(``64 vth + [>=]``, an integer for every neuron, also with per-neuron scales).

Non-spiking "li" populations (LI, CubaLI readouts) have no threshold to fix ``lam``: it is
the largest power of two that keeps the worst-case voltage (all inputs at their maximum, in
steady state; for T steps without leak) within half the 24-bit range and the weights within
``weight_exp <= 7``. Inputs beyond ``input_levels`` (sequence currents) are not covered.

Threshold populations whose inputs are small integers (OR of max-pooling) get ``lam = 64``:
their weights stay exactly 1 and ``v > 64 floor(theta)`` is the exact rule.

Relay populations (low-rank factors in relay form) get a payload scale and shift
(:mod:`.relay`). A residual relay (``lower_graph(..., residual="relay")``; named in the
metadata "residual_relays") is integer: identity weights 1 at ``weight_exp`` 0, ``mu`` 1,
shift 0, so its payload is the exact sum of its sources' spikes (and earlier relay's
payload) and its readers get the very weights the fan-in form gives each stream population
(:func:`~.relay.quantize_residual_relay`). A reader at ``weight_exp >= 0``, or at
``weight_exp = -k`` with every weight a multiple of ``2**k`` (mixed-sign weights are even,
so -1 is exact), computes exactly the fan-in sum; any other reader floors the stream's sum
once instead of each population's part (a warning; "residual_floor_once" in the
quantization report). ``x_max`` per source neuron is ``input_levels``, an attention op's
largest count, 1 for spikes, a relay's largest payload, or a token selector's largest
(ungated) residual sum. Token selectors are quantized when first needed (:mod:`.token_select`);
one helper, ``src_bits``, gives the message bits of every group source: input, attention op,
token selector (unsigned) and relay (signed).

An output format with a narrower grid than Lava's (lava-dl netx) passes its rules as a
:class:`GridPolicy` (``grid``); this module knows none of them.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
import warnings

import numpy as np
import scipy.sparse as sp

from ..errors import LoweringError, QuantizationWarning
from ..loihi.constants import LAVA_LIF, SYNAPTIC_ACCUMULATOR_BITS
from ..program import (LI, RELAY, FloatPopulation, FloatProgram, Population, Program,
                       SourceKind, SynapseGroup, TokenSelectOp)
from ..targets import HardwareTarget, load_target
from .multispike import bound_counts, refuse_binary_target, source_count, spike_fields
from .relay import RelayScale, quantize_relay, quantize_residual_relay, relay_shift
from .scale import StateBound, worst_case
from .schedule import Schedule, schedule_program
from .token_select import TOKEN_SELECT, quantize_token_predictor, quantize_token_select
from ..program.shared_weights import scale_rows, stored_values
from .weights import (QuantizedWeights, accumulation_bound, message_bits, quantize_bias,
                      quantize_weights)

__all__ = ["quantize_program", "GridPolicy", "LAVA_GRID", "DEFAULT_VTH_MANT",
           "DEFAULT_TARGET", "default_target", "quantize_weights", "QuantizedWeights",
           "quantize_token_predictor", "TOKEN_SELECT"]

DEFAULT_VTH_MANT = 1023  # threshold mantissa: 2**10-1 leaves 128x headroom below 2**23
# The automatic scale starts at DEFAULT_VTH_MANT (the precision ceiling: above it the 1-unit
# truncations of decay and of negative weight exponents are below 1/65,000 of the threshold,
# while the 8-bit weights keep their relative step) and lowers a population's mantissa
# until its worst case (:mod:`.scale`) fits; at most this many tries.
_SCALE_TRIES = 12
VTH_FLOOR = 64  # the automatic mantissa goes below it only for current, accumulator, v above
DEFAULT_TARGET = "loihi2"  # the target whose number formats apply when a caller gives none


@functools.lru_cache(maxsize=None)
def default_target() -> HardwareTarget:
    """The :data:`DEFAULT_TARGET` (Loihi 2: 8-bit weights, delays up to 62 steps, 24-bit
    graded payloads)."""
    return load_target(DEFAULT_TARGET)


@dataclasses.dataclass(frozen=True)
class GridPolicy:
    """Grid rules of an output format on top of Lava's own; this default adds none.

    A format that expresses fewer programs than Lava (lava-dl netx:
    :data:`nmc_deploy.compile.netx.NETX_GRID`) subclasses it: ``min_bias_exp`` is the
    smallest bias exponent the format keeps, and :meth:`threshold_mant` may lower a spiking
    population's threshold mantissa so that its weights land on the format's grid.
    """

    name: str = "lava"
    min_bias_exp: int = 0

    def threshold_mant(self, vth_mant: int, theta: np.ndarray, ge: int, w_max: float) -> int:
        """The threshold mantissa of a spiking population (float threshold ``theta`` per
        neuron, ``ge`` 1 for ">=", ``w_max`` its largest |incoming float weight|)."""
        return vth_mant


LAVA_GRID = GridPolicy()


def _current_decay(p: FloatPopulation, diagnostics: dict) -> int | np.ndarray:
    """Lava's ``du`` for a current kept by ``alpha_syn`` per step (4095: no current)."""
    alpha_syn = np.asarray(p.alpha_syn, np.float64)
    if not np.any(alpha_syn):
        return LAVA_LIF.max_du
    du_exact = LAVA_LIF.decay_unity * (1.0 - alpha_syn) - 1.0
    du = np.clip(np.round(du_exact), 0, LAVA_LIF.max_du).astype(np.int64)
    err = float(np.max(np.abs(du - du_exact)))
    if err >= 5e-4:  # smaller: float32 noise of alpha (4096 * 2**-24), printed as 0.000
        diagnostics["decay_error"][f"{p.name}.current"] = err
        warnings.warn(f"{p.name}: current decay rounded to the /4096 grid (max error "
                      f"{err:.3f}/4096)", QuantizationWarning, stacklevel=5)
    return int(du) if du.ndim == 0 else (int(du[0]) if np.all(du == du[0]) else du)


def _voltage_decay(p: FloatPopulation, diagnostics: dict) -> int | np.ndarray:
    """Lava's ``dv`` for a voltage kept by ``alpha`` per step."""
    dv_exact = LAVA_LIF.decay_unity * (1.0 - np.asarray(p.alpha, np.float64))
    dv = np.clip(np.round(dv_exact), 0, LAVA_LIF.max_dv).astype(np.int64)
    err = float(np.max(np.abs(dv - dv_exact)))
    if err >= 5e-4:  # smaller: float32 noise of alpha (4096 * 2**-24), printed as 0.000
        diagnostics["decay_error"][p.name] = err
        warnings.warn(f"{p.name}: voltage decay rounded to the /4096 grid (max error "
                      f"{err:.3f}/4096)", QuantizationWarning, stacklevel=5)
    return int(dv) if dv.ndim == 0 else (int(dv[0]) if np.all(dv == dv[0]) else dv)


def _geometric(alpha, steps: int) -> np.ndarray:
    """Worst-case gain of ``y = alpha y + x`` for ``|x| <= 1``: ``1 / (1 - |alpha|)`` when
    ``|alpha| < 1`` (any number of steps), else ``steps`` (elementwise)."""
    a = np.abs(np.asarray(alpha, np.float64))
    with np.errstate(divide="ignore"):
        return np.where(a < 1.0, 1.0 / np.maximum(1.0 - a, 1e-300), float(steps))


def _li_scale(p: FloatPopulation, gs, time_steps: int, weight_bits: int, source_max) -> float:
    """Scale (v units per float unit) of a non-spiking "li" population: the largest power of
    two that keeps the worst-case |v| (every input at its maximum; steady state, or
    ``time_steps`` steps without leak) below half the 24-bit range and every group's weights
    at ``weight_exp <= 7``."""
    drive = np.zeros(p.size)
    w_max = 0.0
    for g in gs:
        w = abs(g.weight)
        if g.source == p.name or not w.nnz:
            continue
        drive += np.asarray(w @ source_max(g.source).astype(np.float64)).ravel()
        w_max = max(w_max, float(stored_values(w).max()))
    steps = max(int(time_steps), 1)
    current = drive * _geometric(p.alpha_syn, steps) if np.any(p.alpha_syn) else drive
    v_max = float(np.max((current + np.abs(p.bias)) * _geometric(p.alpha, steps), initial=0.0))
    limit = (2 ** (LAVA_LIF.uv_bits - 1) - 1) / 2.0
    lam = limit / v_max if v_max > 0 else 2.0 ** 16
    if w_max > 0:  # R = lam w / 64 must fit 255 * 2**7
        lam = min(lam, (2 ** weight_bits - 1) * 2.0 ** LAVA_LIF.weight_exp_max *
                  2 ** LAVA_LIF.act_shift / w_max)
    return float(2.0 ** math.floor(math.log2(lam)))


def _nonnegative_integers(data: np.ndarray, weight_bits: int) -> bool:
    """True for non-negative integer weights on Lava's excitatory grid."""
    return bool(np.all(data == np.round(data)) and np.all(data >= 0) and
                data.max(initial=0) <= 2 ** weight_bits - 1)


def _floor3(x: float) -> float:
    """``x`` rounded down to 3 decimals (a recorded headroom >= 1 means it fits)."""
    return math.floor(x * 1000) / 1000


def _binding(bound: StateBound) -> str:
    """What lowered an automatic mantissa: "current", "voltage", "accumulator" or
    "negative voltage" (the stated bound of :func:`_next_mantissa`)."""
    if bound.low_headroom() < bound.headroom():
        return "negative voltage"
    return bound.binding()


def _next_mantissa(vth: int, bound: StateBound) -> int | None:
    """The next threshold mantissa to try after ``vth`` gave ``bound`` (None: keep ``vth``).

    Current, accumulator and voltage above must fit (:attr:`~.scale.StateBound.overflows`);
    the voltage below must fit too while that leaves at least :data:`VTH_FLOOR` (an input
    resolution of 1/64 of the threshold per step): below it, the negative worst case is a
    stated bound (recorded as ``low_headroom``), not bought with more precision."""
    if vth <= 1:
        return None
    hard = bound.headroom() if bound.overflows else np.inf
    low = bound.low_headroom() if bound.saturates_low and vth > VTH_FLOOR else np.inf
    if min(hard, low) >= 1:
        return None
    target = vth * hard * 0.98  # the hard limits: as low as they need
    if low <= 1:  # the negative side: not below the floor
        target = min(target, max(vth * low * 0.98, VTH_FLOOR))
    return max(1, min(vth - 1, math.floor(target)))


# sources the exact integer OR rule refuses (with the relays quantized before it)
_GRADED_SOURCES = (SourceKind.INPUT, SourceKind.CONST, SourceKind.ATTENTION)


class _ProgramQuantizer:
    """The state of one :func:`quantize_program` call: populations and groups quantized so
    far, relay scales, token selectors (quantized when first needed) and diagnostics."""

    def __init__(self, fp: FloatProgram, schedule: Schedule, *, weight_bits: int,
                 payload_bits: int, vth_mant: int | None, grid: GridPolicy):
        self.fp = fp
        self.schedule = schedule
        self.weight_bits = weight_bits
        self.payload_bits = payload_bits
        self.vth_mant = vth_mant
        self.grid = grid
        self.kinds = fp.source_kinds()
        self.ops = {op.name: op for op in fp.attention}
        self.sel_float = {t.name: t for t in fp.token_selects}
        self.relay_names = {n for n, k in self.kinds.items() if k is SourceKind.RELAY}
        self.residual_relays = set(fp.metadata.get("residual_relays", ()))
        self.relays: dict[str, RelayScale] = {}
        self.sel_q: dict[str, TokenSelectOp] = {}
        self.pops_q: list[Population] = []
        self.groups_q: list[SynapseGroup] = []
        self.diagnostics = {"zeroed_weights": 0, "clipped_weights": 0, "clipped_biases": 0,
                            "decay_error": {}, "residual_floor_once": 0,
                            "zeroed_per_layer": {}}
        self.scales: dict[str, dict] = {}  # per population: the scale chosen, its worst case
        self.counts: dict[str, int] = {}  # multi-spike populations: largest count (.multispike)

    # ----------------------------------------------------------------- sources
    def src_bits(self, src: str) -> int:
        """Message bits of a group source (0: binary spikes)."""
        kind = self.kinds[src]
        if kind is SourceKind.CONST:
            return 0
        if kind is SourceKind.INPUT:
            return message_bits(self.fp.input_levels)
        if kind is SourceKind.ATTENTION:
            op = self.ops[src]
            return message_bits(op.max_count)
        if kind is SourceKind.SELECTOR:
            return self.selector(src).num_message_bits
        if src in self.relays:  # signed payload after the shift (fixed by its first consumer)
            r = self.relays[src]
            if r.shift is None:
                raise LoweringError(f"{src}: low-rank relay read before its payload shift "
                                    "is fixed")
            return message_bits(r.payload_max >> r.shift) + 1
        return 0 if source_count(self, src) is None else message_bits(source_count(self, src))

    def selector(self, name: str) -> TokenSelectOp:
        """Quantize a token selector (once, when first needed)."""
        if name not in self.sel_q:
            self.sel_q[name] = quantize_token_select(
                self.sel_float[name], self.schedule, time_steps=self.fp.time_steps,
                weight_bits=self.weight_bits, src_bits=self.src_bits,
                relay_names=self.relay_names, selector_names=set(self.sel_float))
        return self.sel_q[name]

    def source_max(self, src: str) -> np.ndarray:
        """Largest |payload| per neuron of a group source (before a relay consumer reads it)."""
        fp = self.fp
        kind = self.kinds[src]
        if kind is SourceKind.INPUT:
            return np.full(int(np.prod(fp.input_shape)), fp.input_levels, np.int64)
        if kind is SourceKind.ATTENTION:
            op = self.ops[src]
            return np.full(op.dim * op.n_tokens, op.max_count, np.int64)
        if kind is SourceKind.CONST:
            return np.ones(1, np.int64)
        if src in self.relays:  # a relay's payload after its shift
            r = self.relays[src]
            return np.full(fp.population(src).size, r.payload_max >> (r.shift or 0), np.int64)
        if kind is SourceKind.SELECTOR:  # gated stream: at most the ungated sum of its inputs
            sel = self.selector(src)
            bound = np.zeros(sel.dim * sel.n_tokens, np.int64)
            for g in sel.inputs:
                bound += np.asarray(abs(g.weights) @ self.source_max(g.source)
                                    ).astype(np.int64).ravel()
            return bound
        return np.full(fp.population(src).size, source_count(self, src) or 1, np.int64)

    # ----------------------------------------------------------------- populations
    def add_relay(self, p: FloatPopulation, gs: list) -> None:
        """A relay population and its down groups (:mod:`.relay`)."""
        mu, payload_max, qws = quantize_relay(p, gs, self.weight_bits, self.payload_bits,
                                              self.source_max)
        self.relays[p.name] = RelayScale(mu, payload_max)
        self.pops_q.append(Population(
            name=p.name, shape=p.shape, kind=p.kind, du=0, dv=0, vth=0,
            bias_mant=np.zeros(p.size, np.int64), bias_exp=0,
            depth=self.schedule.depths[p.name], scale=mu, layer=p.name, payload_shift=0,
            payload_bits=message_bits(payload_max) + 1))
        for g, qw in zip(gs, qws):
            self.append_group(g, qw)

    def add_residual_relay(self, p: FloatPopulation, gs: list) -> None:
        """A residual relay and its identity groups: integer payloads (:mod:`.relay`)."""
        payload_max, qws = quantize_residual_relay(p, gs, self.payload_bits, self.source_max)
        self.relays[p.name] = RelayScale(1.0, payload_max, shift=0)
        self.pops_q.append(Population(
            name=p.name, shape=p.shape, kind=p.kind, du=0, dv=0, vth=0,
            bias_mant=np.zeros(p.size, np.int64), bias_exp=0,
            depth=self.schedule.depths[p.name], scale=1.0, layer=p.name, payload_shift=0,
            payload_bits=message_bits(payload_max) + 1))
        for g, qw in zip(gs, qws):
            self.append_group(g, qw)

    def _is_integer_or(self, p: FloatPopulation, gs: list) -> bool:
        """Exact integer rule: non-negative integer weights (Lava's excitatory grid) and a
        threshold below 64, so a sub-threshold v = 64*count decays to 0 with dv = 4095."""
        return (p.kind == "threshold" and not isinstance(p.v_threshold, np.ndarray) and
                np.all(p.bias == 0) and math.floor(p.v_threshold) < 2 ** LAVA_LIF.act_shift
                and all(self.kinds[g.source] not in _GRADED_SOURCES and
                        g.source not in self.relays and
                        _nonnegative_integers(stored_values(g.weight), self.weight_bits)
                        for g in gs))

    def _threshold_scale(self, p: FloatPopulation, gs: list, vth: int) -> tuple:
        """``(lam, vth)`` of a spiking population with a positive float threshold and
        threshold mantissa at most ``vth``."""
        if np.any(np.asarray(p.v_threshold) <= 0):
            raise LoweringError(f"{p.name}: v_threshold ({np.min(p.v_threshold)}) must be "
                                "positive")
        ge = 1 if p.threshold_ge else 0
        theta = np.asarray(p.v_threshold, np.float64)
        # per-neuron thresholds fold into a per-neuron scale (exact: the reset is to zero
        # or subtracts lam theta = 64 vth + ge, the same integer for every neuron)
        w_max = max((float(np.max(np.abs(stored_values(g.weight)))) for g in gs
                     if g.weight.nnz), default=0.0)
        vth = self.grid.threshold_mant(vth, theta, ge, w_max)
        lam = ((2 ** LAVA_LIF.vth_shift) * vth + ge) / theta
        att = [g for g in gs if g.source in self.ops]
        if att:  # bound u = 64 * a_in below 2**23 for the largest possible count N*d
            op = self.ops[att[0].source]
            max_count = op.max_count
            w_max = float(np.max(np.abs(stored_values(att[0].weight))))
            lam_max = (2 ** (LAVA_LIF.uv_bits - 1) - 1) / (w_max * max_count)
            while vth > 1 and np.max(lam) > lam_max:
                vth //= 2
                lam = ((2 ** LAVA_LIF.vth_shift) * vth + ge) / theta
        return lam, vth

    def add_population(self, p: FloatPopulation, gs: list) -> None:
        """A LIF, threshold or LI population and its incoming groups, at the largest
        threshold mantissa up to :data:`DEFAULT_VTH_MANT` whose worst case (:mod:`.scale`)
        cannot overflow (or at the ``--vth-mant`` override, with a warning when it can)."""
        integer_or = self._is_integer_or(p, gs)
        fixed = p.kind == LI or integer_or
        vth = DEFAULT_VTH_MANT if self.vth_mant is None else self.vth_mant
        for _ in range(_SCALE_TRIES):
            # a trial may also fix a relay's shift: its record and program entry roll back
            mark = (list(self.pops_q), len(self.groups_q), copy.deepcopy(self.diagnostics),
                    dict(self.relays))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._add_population_at(p, gs, vth, integer_or)
            bound = self.state_bound(mark[1])
            vth = _next_mantissa(self.pops_q[-1].vth, bound)
            if fixed or self.vth_mant is not None or vth is None:
                break
            del self.groups_q[mark[1]:]
            self.pops_q, _, self.diagnostics, self.relays = mark
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=4)
        self._record_scale(p.name, bound, integer_or, mark[1],
                           self.diagnostics["zeroed_weights"] - mark[2]["zeroed_weights"])
        bound_counts(self, mark[1], bound)  # may withdraw the record's headroom

    def state_bound(self, first_group: int) -> StateBound:
        """Worst case of the last population added, with its groups from ``first_group``."""
        return worst_case(self.pops_q[-1], self.groups_q[first_group:], self.source_max,
                          lambda s: s in self.relays, self.fp.time_steps)

    def _record_scale(self, name: str, bound: StateBound, integer_or: bool,
                      first_group: int, zeroed: int) -> None:
        """The scale chosen for population ``name`` and its worst case, in the metadata;
        a warning when an override's worst case wraps or saturates."""
        q = self.pops_q[-1]
        if q.kind == LI:
            how = "li"
        elif integer_or:
            how = "integer"
        else:
            how = "override" if self.vth_mant is not None else "auto"
        self.scales[name] = {"vth_mant": int(q.vth), "scale": q.scale, "choice": how,
                             "weight_exp": {g.name: int(g.weight_exp)
                                            for g in self.groups_q[first_group:]},
                             "worst_case": bound.to_json(),
                             "headroom": _floor3(bound.headroom()),
                             "low_headroom": _floor3(bound.low_headroom()),
                             "limited_by": (_binding(bound) if how == "auto" and
                                            q.vth < DEFAULT_VTH_MANT else None),
                             "zeroed_weights": int(zeroed)}
        if how == "override" and bound.overflows:
            what = bound.binding()
            value = {"current": bound.u, "voltage": bound.v_high, "accumulator": bound.acc}[what]
            fits = max(1, math.floor(q.vth * bound.headroom()))
            limit = {"current": "the 24-bit current", "voltage": "the 24-bit voltage",
                     "accumulator": "the int32 accumulator"}[what]
            warnings.warn(f"{name}: worst-case {what} ({value}) exceeds {limit} at --vth-mant "
                          f"{q.vth}: it can {'wrap' if what == 'current' else 'overflow'}; "
                          f"lower --vth-mant (about {fits} fits) or drop the override",
                          QuantizationWarning, stacklevel=4)
        elif how == "auto" and bound.overflows:  # even the smallest mantissa tried can
            what = bound.binding()
            warnings.warn(f"{name}: worst-case {what} overflows even at threshold mantissa "
                          f"{q.vth} (headroom {bound.headroom():.3g}x): the fixed point can "
                          "wrap on such inputs; scale the layer's weights down or prune it",
                          QuantizationWarning, stacklevel=4)

    def _add_population_at(self, p: FloatPopulation, gs: list, vth_mant: int,
                           integer_or: bool) -> None:
        """Population ``p`` and its groups at threshold mantissa ``vth_mant``."""
        if p.kind == LI:  # no threshold: the scale keeps the worst-case voltage in range
            lam = _li_scale(p, gs, self.fp.time_steps, self.weight_bits, self.source_max)
            vth = 0
        elif integer_or:
            lam = float(2 ** LAVA_LIF.act_shift)
            vth = int(math.floor(p.v_threshold)) if not p.threshold_ge else \
                int(math.ceil(p.v_threshold)) - 1
            if vth < 0:
                raise LoweringError(f"{p.name}: threshold ({p.v_threshold}) below 0 with "
                                    "integer inputs would fire without input")
        else:
            lam, vth = self._threshold_scale(p, gs, vth_mant)
        if p.kind == "threshold":
            dv = LAVA_LIF.decay_unity if not integer_or else LAVA_LIF.max_dv
        else:
            dv = _voltage_decay(p, self.diagnostics)
        du = _current_decay(p, self.diagnostics)
        reset_subtract = 0
        if p.reset == "subtract" and p.kind != LI:
            reset_subtract = (2 ** LAVA_LIF.vth_shift) * vth + (1 if p.threshold_ge else 0)
        bias_mant, bias_exp, bclip = quantize_bias(lam * p.bias, self.grid.min_bias_exp)
        self.diagnostics["clipped_biases"] += bclip
        self.pops_q.append(Population(
            name=p.name, shape=p.shape, kind=p.kind, du=du, dv=dv, vth=vth,
            bias_mant=bias_mant, bias_exp=bias_exp, depth=self.schedule.depths[p.name],
            scale=float(np.max(lam)), layer=p.name, gate=p.gate,
            reset_subtract=int(reset_subtract), **spike_fields(p, lam, vth)))
        row_scale = np.broadcast_to(lam / 2 ** LAVA_LIF.act_shift, (p.size,))
        for g in gs:
            self.add_group(g, scale_rows(g.weight, row_scale))

    def _per_payload_unit(self, g, real) -> sp.spmatrix:
        """``real`` per payload unit of relay ``g.source`` (``x = p 2**shift / mu``); the
        first consumer fixes the relay's shift."""
        r = self.relays[g.source]
        real = scale_rows(real, 1.0 / r.mu)
        if r.shift is None:
            r = self.relays[g.source] = dataclasses.replace(
                r, shift=relay_shift(real, r, self.weight_bits))
            i = next(i for i, q in enumerate(self.pops_q) if q.name == g.source)
            self.pops_q[i] = dataclasses.replace(
                self.pops_q[i], payload_shift=r.shift, scale=r.mu / 2 ** r.shift,
                payload_bits=message_bits(r.payload_max >> r.shift) + 1)
        return scale_rows(real, 2.0 ** r.shift)

    def add_group(self, g, real) -> None:
        """Group ``g`` with real weights ``real`` (v units / 64 per source unit) on the grid."""
        if g.source in self.relays:
            real = self._per_payload_unit(g, real)
        qw = quantize_weights(real, self.weight_bits)
        if g.source in self.residual_relays:  # the whole stream in one int32 accumulation
            acc = int(accumulation_bound(qw, self.source_max(g.source)).max(initial=0))
            if acc > 2 ** (SYNAPTIC_ACCUMULATOR_BITS - 1) - 1:
                raise LoweringError(f"{g.name}: synaptic accumulation ({acc}) exceeds the "
                                    f"int32 accumulator ({2 ** 31 - 1}); compile with "
                                    "--residual fan-in")
            if qw.weight_exp < 0 and np.any(stored_values(qw.weights) %
                                            (1 << -qw.weight_exp)):
                # (W @ sum) >> k differs from sum of (W @ s) >> k unless 2**k divides W
                self.diagnostics["residual_floor_once"] += 1
                warnings.warn(f"{g.name}: reads residual relay '{g.source}' at weight_exp "
                              f"{qw.weight_exp}: the stream's sum is floored once, not once "
                              "per stream population as with --residual fan-in; the two "
                              "forms may differ by this rounding", QuantizationWarning,
                              stacklevel=5)
        if g.weight.nnz and qw.zeroed > 0.05 * g.weight.nnz:
            warnings.warn(f"{g.name}: {qw.zeroed} of {g.weight.nnz} weights rounded to 0 "
                          f"(shared weight_exp {qw.weight_exp}; per-neuron scales spread "
                          "too widely?)", QuantizationWarning, stacklevel=5)
        self.append_group(g, qw)

    def append_group(self, g, qw: QuantizedWeights) -> None:
        """The quantized group of ``g`` (scheduled delay; rounding losses counted)."""
        self.diagnostics["zeroed_weights"] += qw.zeroed
        per_layer = self.diagnostics["zeroed_per_layer"]
        per_layer[g.layer] = per_layer.get(g.layer, 0) + int(qw.zeroed)
        self.diagnostics["clipped_weights"] += qw.clipped
        self.groups_q.append(SynapseGroup(
            name=g.name, source=g.source, target=g.target, weights=qw.weights,
            weight_exp=qw.weight_exp, num_message_bits=self.src_bits(g.source),
            delay=self.schedule.delay(g), layer=g.layer, kind=g.kind, lag=g.lag))

    # ----------------------------------------------------------------- program
    def program(self) -> Program:
        """Every population in order, then the diagnostics, then the whole :class:`Program`."""
        fp, diagnostics = self.fp, self.diagnostics
        incoming: dict[str, list] = {p.name: [] for p in fp.populations}
        for g in fp.groups:
            incoming[g.target].append(g)
        for p in fp.populations:  # populations come in topological order
            if p.name in self.residual_relays:  # integer sum of a residual stream
                self.add_residual_relay(p, incoming[p.name])
            elif p.kind == RELAY:  # graded relay of a low-rank factor
                self.add_relay(p, incoming[p.name])
            else:
                self.add_population(p, incoming[p.name])
        if diagnostics["clipped_biases"]:
            warnings.warn(f"{diagnostics['clipped_biases']} biases clipped to the 13-bit "
                          "mantissa range; lower --vth-mant", QuantizationWarning, stacklevel=3)
        if diagnostics["clipped_weights"]:
            warnings.warn(f"{diagnostics['clipped_weights']} weights clipped to the 8-bit "
                          "range", QuantizationWarning, stacklevel=3)
        md = dict(fp.metadata)
        unused = [name for name, r in self.relays.items() if r.shift is None]
        if unused:
            raise LoweringError(f"{unused[0]}: low-rank relay feeds no population")
        md["quantization"] = {"weight_bits": self.weight_bits,
                              "vth_mant": "auto" if self.vth_mant is None else self.vth_mant,
                              "zeroed_weights": diagnostics["zeroed_weights"],
                              "clipped_weights": diagnostics["clipped_weights"],
                              "clipped_biases": diagnostics["clipped_biases"],
                              "float_synapses": int(sum(g.weight.nnz for g in fp.groups)),
                              "decay_rounding": diagnostics["decay_error"],
                              "zeroed_per_layer": diagnostics["zeroed_per_layer"],
                              "populations": self.scales}
        if self.residual_relays:  # readers not bit-identical to fan-in (weight_exp < 0)
            md["quantization"]["residual_floor_once"] = diagnostics["residual_floor_once"]
        for t in fp.token_selects:
            self.selector(t.name)
        return Program(populations=tuple(self.pops_q), groups=tuple(self.groups_q),
                       attention=fp.attention, readout=fp.readout, input_shape=fp.input_shape,
                       input_levels=fp.input_levels, time_steps=fp.time_steps, metadata=md,
                       token_selects=tuple(self.sel_q[t.name] for t in fp.token_selects))


def quantize_program(fp: FloatProgram, schedule: Schedule | None = None, *,
                     target: HardwareTarget | None = None, vth_mant: int | None = None,
                     grid: GridPolicy = LAVA_GRID) -> Program:
    """Quantize ``fp`` (not modified) onto Lava's fixed-point grid. See the module docstring.

    Parameters
    ----------
    fp : FloatProgram
        The lowered program (:func:`~.lower.lower_graph`).
    schedule : Schedule, optional
        Its pipeline schedule; default :func:`~.schedule.schedule_program` of ``fp``.
    target : HardwareTarget, optional
        Number formats: ``weight_bits`` and the graded-spike payload ``graded_spike_bits``
        (relay populations need at least 2). Default :func:`default_target` (Loihi 2).
    vth_mant : int, optional
        Threshold mantissa of every spiking population (``1..max_vth``), an override with
        a warning per population whose worst case can wrap or saturate. Default (None):
        per population, the largest mantissa up to :data:`DEFAULT_VTH_MANT` whose worst
        case (:func:`~.scale.worst_case`: current, voltage, accumulator over the program's
        ``time_steps``) cannot overflow; the choice and its bound are in
        ``metadata["quantization"]["populations"]``.
    grid : GridPolicy
        Extra grid rules of an output format (default none; lava-dl netx:
        :data:`~nmc_deploy.compile.netx.NETX_GRID`, whose programs stay self-consistent,
        reference == Lava, with different rounding).

    The limits of the target (synaptic delays, attention outputs) are checked by
    :func:`~.validate.validate_program`, not here.
    """
    target = default_target() if target is None else target
    if vth_mant is not None and not 0 < vth_mant <= LAVA_LIF.max_vth:
        raise LoweringError(f"vth_mant ({vth_mant}) outside 1..{LAVA_LIF.max_vth}")
    payload_bits = target.graded_spike_bits
    if fp.metadata.get("residual_relays") and payload_bits < 2:
        raise LoweringError(f"program: residual relays need graded spikes, but payload_bits "
                            f"({payload_bits}) is below 2; compile with residual='fan-in' "
                            "(--residual fan-in) for this target")
    if any(p.kind == RELAY for p in fp.populations) and payload_bits < 2:
        raise LoweringError(f"program: low-rank relays need graded spikes, but payload_bits "
                            f"({payload_bits}) is below 2; compile with low_rank='fused' "
                            "(--low-rank fused) for this target")
    refuse_binary_target(fp, target)
    schedule = schedule_program(fp) if schedule is None else schedule
    return _ProgramQuantizer(fp, schedule, weight_bits=target.weight_bits,
                             payload_bits=payload_bits, vth_mant=vth_mant,
                             grid=grid).program()
