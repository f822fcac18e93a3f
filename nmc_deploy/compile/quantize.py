"""Quantize a float program to Lava's Loihi fixed point and schedule its pipeline (pure).

Per population a scale ``lam`` (v units per float unit of membrane) is chosen so the
threshold lands on Lava's grid: Lava fires on ``v > vth << 6``; a float rule ``v >= theta``
becomes ``lam = (64 vth + 1) / theta`` (so ``v > 64 vth`` <=> ``v >= lam theta`` on integers)
and ``v > theta`` becomes ``lam = 64 vth / theta``. Then, per synapse group, the real weight
``R = lam * w / 64`` (one unit of ``a_in`` adds 64 to ``u``) is written as ``W * 2**weight_exp``
with ``W`` on Lava's effective 8-bit grid (mixed sign: even values in [-256, 254]; one
sign: [0, 255] or [-255, 0]), so Lava's own clip/truncate leaves it unchanged. Decay:
``dv = round(4096 (1 - alpha))``; ``du = 4095`` so u carries exactly this step's input.
Bias: ``bias_mant << bias_exp`` with a 13-bit mantissa. A population with a synaptic
current (CubaLIF, CubaLI: ``alpha_syn > 0``) gets ``du = 4096 (1 - alpha_syn) - 1`` (Lava
decays u by ``(4096 - du - 1) / 4096``), exact when ``4096 (1 - alpha_syn)`` is an integer,
else rounded with a warning like dv; u then carries the current in the same units as v.
A subtractive reset stores ``reset_subtract = lam theta`` (``64 vth + [>=]``, an integer for
every neuron, also with per-neuron scales).

Non-spiking "li" populations (LI, CubaLI readouts) have no threshold to fix ``lam``: it is
the largest power of two that keeps the worst-case voltage (all inputs at their maximum, in
steady state; for T steps without leak) within half the 24-bit range and the weights within
``weight_exp <= 7``. Inputs beyond ``input_levels`` (sequence currents) are not covered.

Threshold populations whose inputs are small integers (OR of max-pooling) get ``lam = 64``:
their weights stay exactly 1 and ``v > 64 floor(theta)`` is the exact rule.

Relay populations (low-rank factors in relay form; :class:`~.program.Population`): a relay's
payload scale ``mu`` (payload units per float unit) is a power of two chosen so that (1) every
down group ``R_g = mu V_g`` gets ``weight_exp >= 0`` (the largest weight of the group with the
smallest weights lands in the upper half of the 8-bit grid, so no group floors its sum),
(2) no group needs ``weight_exp > 7``, and (3) the worst-case payload
``sum_g (|W_g| @ x_max) << e_g`` fits the target's signed graded-spike payload
(``payload_bits``, Loihi 2: 24); ``x_max`` per source neuron is ``input_levels``, an
attention op's largest count, 1 for spikes, or a token selector's largest (ungated) residual
sum. Its consumer group gets ``R = (lam/64) gain U 2**shift / mu`` per payload unit, where
``payload_shift`` is the smallest shift >= 0 that lets ``R`` use the full 8-bit grid at
``weight_exp >= -8`` and keeps the worst-case accumulation ``|W| @ p_max`` within Lava's
int32 synaptic accumulator.

Token selectors (:class:`~.program.TokenSelectOp`) are quantized and scheduled when first
needed (``quantize_token_predictor``); one helper, ``src_bits``, gives the message bits of
every group source: input, attention op, token selector (unsigned) and relay (signed).

Scheduling: ``depth(pop) = 1 + max depth of its sources`` (input and CONST: 0; attention op:
the depth of q; a population's own recurrent group does not count); a group from a shallower
source gets ``delay = depth(target) - 1 - depth(source) + lag`` so all inputs of a population
belong to the same sample step, lagged ones ``lag`` steps earlier (deployment decision 1);
a self-recurrent group (lag 1) has delay 0: Lava's Sparse delivers a spike one step later.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import CapacityError, LoweringError, QuantizationWarning
from ..loihi.constants import LAVA_LIF, SYNAPTIC_ACCUMULATOR_BITS
from ..loihi.kernels import lava_effective_weights
from ..program import (CONST, INPUT, LI, RELAY, FloatPopulation, FloatProgram, FloatTokenSelect,
                      Population, Program, SynapseGroup, TokenSelectOp)

__all__ = ["quantize_program", "quantize_weights", "QuantizedWeights", "LAVA_LIF",
           "DEFAULT_VTH_MANT", "DEFAULT_PAYLOAD_BITS", "SYNAPTIC_ACCUMULATOR_BITS",
           "quantize_token_predictor", "TOKEN_SELECT"]


DEFAULT_VTH_MANT = 1023  # threshold mantissa: 2**10-1 leaves 128x headroom below 2**23
# Signed graded-spike payload width of Loihi 2 (hw_targets/loihi2.toml,
# fixed_point.graded_spike_bits; Lava's Loihi 2 graded path uses num_message_bits = 24).
DEFAULT_PAYLOAD_BITS = 24


@dataclass(frozen=True)
class _TokenSelectConstants:
    """Number formats of the integer token selector (an embedded-core program; ours)."""

    weight_max: int = 32767  # predictor weights are signed 16-bit (embedded-core integers)
    gelu_frac_bits: int = 8  # GELU table resolution 1/256 (4096 entries over the range)
    gelu_range: float = 8.0  # the table covers [-8, 8); below: 0, above: identity
    exp_min: int = -8
    exp_max: int = 30


TOKEN_SELECT = _TokenSelectConstants()


def _pow2_scale(max_abs: float) -> int:
    """Largest exponent s with ``max_abs * 2**s <= weight_max`` (clamped)."""
    if max_abs <= 0:
        return 0
    s = int(math.floor(math.log2(TOKEN_SELECT.weight_max / max_abs)))
    return int(min(max(s, TOKEN_SELECT.exp_min), TOKEN_SELECT.exp_max))


def quantize_token_predictor(sel: FloatTokenSelect, time_steps: int) -> dict:
    """Integer parameters of ``TokenSelectOp`` for a float selector (a pure function).

    ``w1 = round(W1 / T * 2**s1)`` (16-bit), ``b1 = round(b1 * 2**s1)``, so ``h = w1 @ c + b1``
    is the hidden pre-activation times ``2**s1`` for feature counts ``c``; ``h_shift = s1 -
    gelu_frac_bits``; the GELU table holds ``round(gelu(i / 2**g) * 2**g)``; the score row
    ``W2[0] - W2[1]`` is 16-bit with exponent s3 and the bias ``round((b2[0] - b2[1]) *
    2**(s3 + g))``.
    """
    g = TOKEN_SELECT.gelu_frac_bits
    w1 = np.asarray(sel.w1, np.float64) / time_steps
    s1 = _pow2_scale(float(np.abs(w1).max(initial=0.0)))
    w1q = np.round(w1 * 2.0 ** s1).astype(np.int64)
    b1q = np.round(np.asarray(sel.b1, np.float64) * 2.0 ** s1).astype(np.int64)
    lut_min = -int(TOKEN_SELECT.gelu_range * 2 ** g)
    idx = np.arange(lut_min, -lut_min, dtype=np.float64) / 2 ** g
    erf = np.vectorize(math.erf)
    lut = np.round(0.5 * idx * (1.0 + erf(idx / math.sqrt(2.0))) * 2 ** g).astype(np.int64)
    wd = np.asarray(sel.w2, np.float64)[0] - np.asarray(sel.w2, np.float64)[1]
    bd = float(sel.b2[0] - sel.b2[1])
    s3 = _pow2_scale(float(np.abs(wd).max(initial=0.0)))
    return {"w1": w1q, "b1": b1q, "h_shift": s1 - g, "lut": lut, "lut_min": lut_min,
            "w_score": np.round(wd * 2.0 ** s3).astype(np.int64),
            "b_score": int(round(bd * 2.0 ** (s3 + g)))}


@dataclass(frozen=True)
class QuantizedWeights:
    weights: sp.csr_matrix  # int32 on Lava's effective grid
    weight_exp: int
    clipped: int  # entries that saturated
    zeroed: int  # nonzero float weights that rounded to 0 (absent synapses now)


def quantize_weights(real: sp.spmatrix, weight_bits: int = 8) -> QuantizedWeights:
    """Write ``real`` as ``W * 2**weight_exp`` with W on Lava's ``weight_bits`` grid.

    Mixed-sign matrices use even integers in [-2**wb, 2**wb - 2] (Lava drops the LSB of mixed
    weights); single-sign ones use [0, 2**wb - 1] or its negative. The exponent is the
    smallest in Loihi's range that avoids clipping.
    """
    real = sp.csr_matrix(real, dtype=np.float64)
    data = real.data
    if data.size == 0 or np.all(data == 0):
        return QuantizedWeights(sp.csr_matrix(real.shape, dtype=np.int32), 0, 0, 0)
    if weight_bits > 8:
        raise LoweringError(f"weight_bits ({weight_bits}) exceeds 8, the widest weight Lava's "
                            "Sparse/Dense fixed-point models represent")
    mixed = data.min() < 0 < data.max()
    top = 2 ** weight_bits - (2 if mixed else 1)  # 254 or 255
    step = 2 if mixed else 1
    max_abs = float(np.abs(data).max())
    if np.all(data == np.round(data)) and max_abs <= top and (not mixed or np.all(data % 2 == 0)):
        exp = 0  # integer weights already on the grid stay exact (e.g. max-pool OR weights 1)
    else:
        exp = math.ceil(math.log2(max_abs / top)) if max_abs > 0 else 0
    exp = int(min(max(exp, LAVA_LIF.weight_exp_min), LAVA_LIF.weight_exp_max))
    scaled = data / (2.0 ** exp)
    q = np.round(scaled / step) * step
    lo = -(2 ** weight_bits) if mixed else (-top if data.max() <= 0 else 0)
    hi = top if data.max() > 0 else 0
    clipped = int(np.sum((q < lo) | (q > hi)))
    q = np.clip(q, lo, hi)
    # Lava decides the sign mode from the stored matrix and clips/truncates accordingly; if
    # rounding changed the sign pattern (e.g. all positives became 0 after a clamped
    # exponent), project onto what Lava will actually use, so reference and Lava agree.
    q = lava_effective_weights(q, weight_bits)
    zeroed = int(np.sum((q == 0) & (data != 0)))
    w = sp.csr_matrix((q.astype(np.int32), real.indices.copy(), real.indptr.copy()),
                      shape=real.shape)
    w.eliminate_zeros()
    return QuantizedWeights(w, exp, clipped, zeroed)


NETX_BIAS_EXP = 6  # lava-dl netx writes every bias with exponent 6 (multiples of 64 v units)
NETX_WEIGHT_MAX = 254  # weight_exp 0 needs the largest |weight| in (127, 254] (mixed sign)


def _bias_manexp(bias_v: np.ndarray, min_exp: int = 0) -> tuple[np.ndarray, int, int]:
    max_abs = float(np.abs(bias_v).max()) if bias_v.size else 0.0
    exp = min_exp
    while exp < LAVA_LIF.bias_exp_max and max_abs / (2 ** exp) > LAVA_LIF.bias_mant_max:
        exp += 1
    mant = np.round(bias_v / (2 ** exp))
    clipped = int(np.sum((mant < LAVA_LIF.bias_mant_min) | (mant > LAVA_LIF.bias_mant_max)))
    mant = np.clip(mant, LAVA_LIF.bias_mant_min, LAVA_LIF.bias_mant_max).astype(np.int64)
    return mant, exp, clipped


def _message_bits(max_value: int) -> int:
    return max(1, int(math.ceil(math.log2(max_value + 1))))


def _grid_top(data: np.ndarray, weight_bits: int) -> int:
    """Largest magnitude on Lava's grid for these weights (254 mixed, 255 one sign)."""
    mixed = data.size and data.min() < 0 < data.max()
    return 2 ** weight_bits - (2 if mixed else 1)


def _accumulation_bound(qw: QuantizedWeights, x_max: np.ndarray) -> np.ndarray:
    """Per target neuron, the largest ``|(W @ x) << weight_exp|`` for ``|x| <= x_max``."""
    acc = np.asarray(abs(qw.weights).astype(np.int64) @ x_max.astype(np.int64)).ravel()
    return acc << qw.weight_exp if qw.weight_exp > 0 else -((-acc) >> -qw.weight_exp)


@dataclass(frozen=True)
class _RelayScale:
    mu: float  # payload units (before the shift) per float unit of the relay value
    payload_max: int  # worst-case |a_in| of the relay (before the shift)
    shift: int | None = None  # fixed by the first consumer group


def _quantize_relay(p, gs, weight_bits: int, payload_bits: int, source_max):
    """Choose the relay scale ``mu`` and quantize its down groups (module docstring)."""
    limit = 2 ** (payload_bits - 1) - 1
    max_abs = [float(np.abs(g.weight.data).max()) for g in gs if g.weight.nnz]
    if not max_abs:
        raise LoweringError(f"{p.name}: low-rank relay has no nonzero incoming weights")
    top = min(_grid_top(g.weight.data, weight_bits) for g in gs if g.weight.nnz)
    # (1) the smallest group's largest weight in (top/2, top]: every weight_exp >= 0
    exp_mu = math.floor(math.log2(top / min(max_abs)))
    # (2) the largest group's weight_exp <= weight_exp_max
    exp_mu = min(exp_mu, math.floor(math.log2(top * 2.0 ** LAVA_LIF.weight_exp_max /
                                              max(max_abs))))
    while True:  # (3) the worst-case payload fits the graded-spike payload
        mu = 2.0 ** exp_mu
        qws = [quantize_weights(g.weight * mu, weight_bits) for g in gs]
        bound = sum(_accumulation_bound(q, source_max(g.source)) for q, g in zip(qws, gs))
        payload_max = int(np.max(bound, initial=0))
        if payload_max <= limit:
            return mu, payload_max, qws
        exp_mu -= max(1, math.ceil(math.log2(payload_max / limit)))


def _relay_shift(real: sp.csr_matrix, relay: _RelayScale, weight_bits: int) -> int:
    """Smallest right shift of the payload that lets ``real`` (weights per unshifted payload
    unit) use the full grid at ``weight_exp >= weight_exp_min``, with the worst-case
    accumulation ``|W| @ p_max`` (and its left shift) inside Lava's int32 accumulator."""
    real = sp.csr_matrix(real)
    if real.nnz == 0:
        return 0
    top = _grid_top(real.data, weight_bits)
    finest = top * 2.0 ** (LAVA_LIF.weight_exp_min - 1)  # max|R| above this: exp >= min
    need = finest / float(np.abs(real.data).max())
    shift = max(0, math.floor(math.log2(need)) + 1) if need >= 1 else 0
    acc_limit = 2 ** (SYNAPTIC_ACCUMULATOR_BITS - 1) - 1
    while True:
        qw = quantize_weights(real * 2.0 ** shift, weight_bits)
        p_max = np.full(real.shape[1], relay.payload_max >> shift, np.int64)
        acc = np.asarray(abs(qw.weights).astype(np.int64) @ p_max).max(initial=0)
        if acc << max(qw.weight_exp, 0) <= acc_limit or relay.payload_max >> shift == 0:
            return shift
        shift += 1


def _current_decay(p: FloatPopulation, diagnostics: dict) -> int | np.ndarray:
    """Lava's ``du`` for a current kept by ``alpha_syn`` per step (4095: no current)."""
    alpha_syn = np.asarray(p.alpha_syn, np.float64)
    if not np.any(alpha_syn):
        return LAVA_LIF.max_du
    du_exact = LAVA_LIF.decay_unity * (1.0 - alpha_syn) - 1.0
    du = np.clip(np.round(du_exact), 0, LAVA_LIF.max_du).astype(np.int64)
    err = float(np.max(np.abs(du - du_exact)))
    if err:
        diagnostics["decay_error"][f"{p.name}.current"] = err
        warnings.warn(f"{p.name}: current decay rounded to the /4096 grid (max error "
                      f"{err:.3f}/4096)", QuantizationWarning, stacklevel=3)
    return int(du) if du.ndim == 0 else (int(du[0]) if np.all(du == du[0]) else du)


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
        w = abs(sp.csr_matrix(g.weight))
        if g.source == p.name or not w.nnz:
            continue
        drive += np.asarray(w @ source_max(g.source).astype(np.float64)).ravel()
        w_max = max(w_max, float(w.data.max()))
    steps = max(int(time_steps), 1)
    current = drive * _geometric(p.alpha_syn, steps) if np.any(p.alpha_syn) else drive
    v_max = float(np.max((current + np.abs(p.bias)) * _geometric(p.alpha, steps), initial=0.0))
    limit = (2 ** (LAVA_LIF.uv_bits - 1) - 1) / 2.0
    lam = limit / v_max if v_max > 0 else 2.0 ** 16
    if w_max > 0:  # R = lam w / 64 must fit 255 * 2**7
        lam = min(lam, (2 ** weight_bits - 1) * 2.0 ** LAVA_LIF.weight_exp_max *
                  2 ** LAVA_LIF.act_shift / w_max)
    return float(2.0 ** math.floor(math.log2(lam)))


def quantize_program(fp: FloatProgram, *, weight_bits: int = 8, max_delay: int = 62,
                     vth_mant: int = DEFAULT_VTH_MANT,
                     payload_bits: int = DEFAULT_PAYLOAD_BITS, netx_grid: bool = False) -> Program:
    """Quantize and schedule ``fp`` (not modified). See the module docstring.

    ``netx_grid``: choose each spiking population's threshold mantissa so that its incoming
    weights need ``weight_exp = 0`` (largest ``|W|`` in (127, 254]) and round biases to
    multiples of 64 v units, the grid lava-dl's netx format can express (it derives its own
    weight exponent and fixes the bias exponent at 6). The program stays self-consistent
    (reference == Lava); only its rounding differs from the default grid.

    ``payload_bits`` is the target's graded-spike payload width (``graded_spike_bits``);
    relay populations need it to be positive.
    """
    if not 0 < vth_mant <= LAVA_LIF.max_vth:
        raise LoweringError(f"vth_mant ({vth_mant}) outside 1..{LAVA_LIF.max_vth}")
    has_relay = any(p.kind == RELAY for p in fp.populations)
    if has_relay and payload_bits < 2:
        raise LoweringError(f"program: low-rank relays need graded spikes, but payload_bits "
                            f"({payload_bits}) is below 2; compile with low_rank='fused' "
                            "(--low-rank fused) for this target")
    relays: dict[str, _RelayScale] = {}
    op_names = {op.name: op for op in fp.attention}
    incoming: dict[str, list] = {p.name: [] for p in fp.populations}
    for g in fp.groups:
        incoming[g.target].append(g)

    depth: dict[str, int] = {}
    relay_names = {p.name for p in fp.populations if p.kind == RELAY}
    sel_float = {t.name: t for t in fp.token_selects}
    sel_q: dict[str, TokenSelectOp] = {}

    def src_bits(src: str) -> int:
        """Message bits of a group source (0: binary spikes)."""
        if src == CONST:
            return 0
        if src == INPUT:
            return _message_bits(fp.input_levels)
        if src in op_names:
            op = op_names[src]
            return _message_bits(op.n_tokens * (op.dim // op.num_heads))
        if src in sel_float:
            return selector(src).num_message_bits
        if src in relays:  # signed payload after the shift (fixed by its first consumer)
            r = relays[src]
            if r.shift is None:
                raise LoweringError(f"{src}: low-rank relay read before its payload shift "
                                    "is fixed")
            return _message_bits(r.payload_max >> r.shift) + 1
        return 0

    def selector(name: str) -> TokenSelectOp:
        """Quantize and schedule a token selector (once, when first needed)."""
        if name in sel_q:
            return sel_q[name]
        t = sel_float[name]
        d_in = 1 + max(src_depth(g.source) for g in t.inputs)
        inputs, max_value = [], 0
        for g in t.inputs:
            w = g.weight
            if g.source in relay_names:
                raise LoweringError(f"{g.name}: a token selector cannot read a low-rank relay")
            if not (np.all(w.data == np.round(w.data)) and np.all(w.data >= 0)
                    and w.data.max(initial=0) <= 2 ** weight_bits - 1):
                raise LoweringError(f"{g.name}: token selector inputs need non-negative integer "
                                    f"weights below {2 ** weight_bits} (a sum of spike trains)")
            bits = src_bits(g.source)
            w_int = sp.csr_matrix(w, dtype=np.int64).astype(np.int32)
            row_max = np.asarray(abs(w_int).sum(axis=1)).ravel().max(initial=0)
            max_value += int(row_max) * (2 ** bits - 1 if bits else 1)
            inputs.append(SynapseGroup(name=g.name, source=g.source, target=name,
                                       weights=w_int, weight_exp=0, num_message_bits=bits,
                                       delay=d_in - 1 - src_depth(g.source), layer=name,
                                       kind="token_input"))
        if t.previous and t.previous not in sel_float:
            raise LoweringError(f"{name}: previous selector '{t.previous}' is unknown")
        q = TokenSelectOp(name=name, inputs=tuple(inputs), dim=t.dim, n_tokens=t.n_tokens,
                          n_keep=t.n_keep, previous=t.previous, depth_in=d_in,
                          depth=d_in + fp.time_steps - 1,
                          num_message_bits=_message_bits(max_value),
                          **quantize_token_predictor(t, fp.time_steps))
        sel_q[name] = q
        return q

    def src_depth(src: str) -> int:
        if src in (INPUT, CONST):
            return 0
        if src in sel_float:
            return selector(src).depth
        if src in op_names:
            op = op_names[src]
            ds = {depth[op.q], depth[op.k], depth[op.v]}
            if len(ds) != 1:
                raise LoweringError(f"{src}: q, k and v arrive at different pipeline depths "
                                    f"({sorted(ds)}); low-rank relays add one step each: "
                                    "factorize q, k and v alike or use low_rank='fused'")
            return ds.pop()
        return depth[src]

    def source_max(src: str) -> np.ndarray:
        """Largest |payload| per neuron of a group source (before a relay consumer reads it)."""
        if src == INPUT:
            return np.full(int(np.prod(fp.input_shape)), fp.input_levels, np.int64)
        if src in op_names:
            op = op_names[src]
            return np.full(op.dim * op.n_tokens, op.n_tokens * (op.dim // op.num_heads),
                           np.int64)
        if src == CONST:
            return np.ones(1, np.int64)
        if src in sel_float:  # gated stream: at most the ungated sum of its inputs
            sel = selector(src)
            bound = np.zeros(sel.dim * sel.n_tokens, np.int64)
            for g in sel.inputs:
                bound += np.asarray(abs(g.weights).astype(np.int64) @ source_max(g.source),
                                    np.int64).ravel()
            return bound
        return np.ones(fp.population(src).size, np.int64)  # binary spikes

    if fp.token_selects and any(g.lag for g in fp.groups):
        raise LoweringError("program: token selectors need back-to-back samples, but Delay "
                            "nodes or recurrence need idle steps between samples; use one "
                            "or the other")
    pops_q, groups_q = [], []
    diagnostics = {"zeroed_weights": 0, "clipped_weights": 0, "clipped_biases": 0,
                   "decay_error": {}}
    for p in fp.populations:  # populations come in topological order
        gs = incoming[p.name]
        if not gs:
            raise LoweringError(f"{p.name}: population has no incoming synapses")
        for g in gs:
            if g.source == p.name and g.lag < 1:
                raise LoweringError(f"{g.name}: a population reading its own output needs a "
                                    "lag of at least one step")
            if g.source not in (INPUT, CONST, p.name) and g.source not in op_names and \
                    g.source not in sel_float and g.source not in depth:
                raise LoweringError(f"{g.name}: source '{g.source}' comes after its target in "
                                    "the schedule (a cycle through several populations)")
        depth[p.name] = 1 + max((src_depth(g.source) for g in gs if g.source != p.name),
                                default=0)
        if p.kind == RELAY:  # graded relay of a low-rank factor (module docstring)
            mu, payload_max, qws = _quantize_relay(p, gs, weight_bits, payload_bits,
                                                   source_max)
            relays[p.name] = _RelayScale(mu, payload_max)
            pops_q.append(Population(
                name=p.name, shape=p.shape, kind=p.kind, du=0, dv=0, vth=0,
                bias_mant=np.zeros(p.size, np.int64), bias_exp=0, depth=depth[p.name],
                scale=mu, layer=p.name, payload_shift=0,
                payload_bits=_message_bits(payload_max) + 1))
            for g, qw in zip(gs, qws):
                diagnostics["zeroed_weights"] += qw.zeroed
                diagnostics["clipped_weights"] += qw.clipped
                delay = depth[p.name] - 1 - src_depth(g.source) + g.lag
                if delay > max_delay:
                    raise CapacityError(f"{g.name}: synaptic delay ({delay}) exceeds "
                                        f"max_synaptic_delay ({max_delay}); the model is too "
                                        "deep for residual alignment by delays")
                groups_q.append(SynapseGroup(
                    name=g.name, source=g.source, target=g.target, weights=qw.weights,
                    weight_exp=qw.weight_exp, num_message_bits=src_bits(g.source),
                    delay=delay, layer=g.layer, kind=g.kind, lag=g.lag))
            continue
        per_neuron_th = isinstance(p.v_threshold, np.ndarray)
        # exact integer rule: non-negative integer weights (Lava's excitatory grid) and a
        # threshold below 64, so a sub-threshold v = 64*count decays to 0 with dv = 4095
        integer_or = (p.kind == "threshold" and not per_neuron_th and np.all(p.bias == 0) and
                      math.floor(p.v_threshold) < 2 ** LAVA_LIF.act_shift and all(
                          g.source not in (INPUT, CONST) and g.source not in op_names and
                          g.source not in relays and
                          np.all(g.weight.data == np.round(g.weight.data)) and
                          np.all(g.weight.data >= 0) and
                          g.weight.data.max(initial=0) <= 2 ** weight_bits - 1 for g in gs))
        if p.kind == LI:  # no threshold: the scale keeps the worst-case voltage in range
            lam = _li_scale(p, gs, fp.time_steps, weight_bits, source_max)
            vth = 0
        elif integer_or:
            lam = float(2 ** LAVA_LIF.act_shift)
            vth = int(math.floor(p.v_threshold)) if not p.threshold_ge else \
                int(math.ceil(p.v_threshold)) - 1
            if vth < 0:
                raise LoweringError(f"{p.name}: threshold ({p.v_threshold}) below 0 with "
                                    "integer inputs would fire without input")
        else:
            if np.any(np.asarray(p.v_threshold) <= 0):
                raise LoweringError(f"{p.name}: v_threshold ({np.min(p.v_threshold)}) must be "
                                    "positive")
            vth = vth_mant
            ge = 1 if p.threshold_ge else 0
            theta = np.asarray(p.v_threshold, np.float64)
            # per-neuron thresholds fold into a per-neuron scale (exact: the reset is to zero
            # or subtracts lam theta = 64 vth + ge, the same integer for every neuron)
            lam = ((2 ** LAVA_LIF.vth_shift) * vth + ge) / theta
            w_max = max((float(np.max(np.abs(g.weight.data))) for g in gs if g.weight.nnz),
                        default=0.0)
            if netx_grid and w_max > 0 and p.kind != LI:
                # largest vth with max |R| = (64 vth + ge) / theta * w_max / 64 <= 254
                theta_min = float(np.min(theta))
                cap = math.floor((NETX_WEIGHT_MAX * 64 * theta_min / w_max - ge) / 64)
                vth = int(min(max(cap, 1), LAVA_LIF.max_vth))
                lam = ((2 ** LAVA_LIF.vth_shift) * vth + ge) / theta
            att = [g for g in gs if g.source in op_names]
            if att:  # bound u = 64 * a_in below 2**23 for the largest possible count N*d
                op = op_names[att[0].source]
                max_count = op.n_tokens * (op.dim // op.num_heads)
                w_max = float(np.max(np.abs(att[0].weight.data)))
                lam_max = (2 ** (LAVA_LIF.uv_bits - 1) - 1) / (w_max * max_count)
                while vth > 1 and np.max(lam) > lam_max:
                    vth //= 2
                    lam = ((2 ** LAVA_LIF.vth_shift) * vth + ge) / theta
        if p.kind == "threshold":
            dv = LAVA_LIF.decay_unity if not integer_or else LAVA_LIF.max_dv
        else:
            dv_exact = LAVA_LIF.decay_unity * (1.0 - np.asarray(p.alpha, np.float64))
            dv = np.clip(np.round(dv_exact), 0, LAVA_LIF.max_dv).astype(np.int64)
            err = float(np.max(np.abs(dv - dv_exact)))
            if err:
                diagnostics["decay_error"][p.name] = err
                warnings.warn(f"{p.name}: voltage decay rounded to the /4096 grid (max error "
                              f"{err:.3f}/4096)", QuantizationWarning, stacklevel=2)
            dv = int(dv) if dv.ndim == 0 else (int(dv[0]) if np.all(dv == dv[0]) else dv)
        du = _current_decay(p, diagnostics)
        reset_subtract = 0
        if p.reset == "subtract" and p.kind != LI:
            reset_subtract = (2 ** LAVA_LIF.vth_shift) * vth + (1 if p.threshold_ge else 0)
        bias_mant, bias_exp, bclip = _bias_manexp(lam * p.bias,
                                                  NETX_BIAS_EXP if netx_grid else 0)
        diagnostics["clipped_biases"] += bclip
        if p.gate:
            if reset_subtract:
                raise LoweringError(f"{p.name}: gated by token selector '{p.gate}' with "
                                    "subtractive reset; gated token neurons support reset to "
                                    "zero only; compile with --reset zero")
            gate = selector(p.gate)
            if depth[p.name] <= gate.depth:
                raise LoweringError(f"{p.name}: gated by '{p.gate}' but computed before its "
                                    f"decision (depth {depth[p.name]} <= {gate.depth})")
        pops_q.append(Population(name=p.name, shape=p.shape, kind=p.kind, du=du,
                                 dv=dv, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp,
                                 depth=depth[p.name], scale=float(np.max(lam)), layer=p.name,
                                 gate=p.gate, reset_subtract=int(reset_subtract)))
        row_scale = sp.diags(np.broadcast_to(lam / 2 ** LAVA_LIF.act_shift, (p.size,)))
        for g in gs:
            real = row_scale @ g.weight
            if g.source in relays:  # per payload unit: x = p 2**shift / mu
                r = relays[g.source]
                real = sp.csr_matrix(real / r.mu)
                if r.shift is None:  # the first consumer fixes the relay's shift
                    r = relays[g.source] = dataclasses.replace(
                        r, shift=_relay_shift(real, r, weight_bits))
                    i = next(i for i, q in enumerate(pops_q) if q.name == g.source)
                    pops_q[i] = dataclasses.replace(
                        pops_q[i], payload_shift=r.shift, scale=r.mu / 2 ** r.shift,
                        payload_bits=_message_bits(r.payload_max >> r.shift) + 1)
                real = real * 2.0 ** r.shift
            qw = quantize_weights(real, weight_bits)
            diagnostics["zeroed_weights"] += qw.zeroed
            if g.weight.nnz and qw.zeroed > 0.05 * g.weight.nnz:
                warnings.warn(f"{g.name}: {qw.zeroed} of {g.weight.nnz} weights rounded to 0 "
                              f"(shared weight_exp {qw.weight_exp}; per-neuron scales spread "
                              "too widely?)", QuantizationWarning, stacklevel=2)
            diagnostics["clipped_weights"] += qw.clipped
            bits = src_bits(g.source)
            if g.source in op_names:
                w = qw.weights
                if w.nnz != w.shape[0] or np.count_nonzero(w.diagonal()) != w.shape[0]:
                    raise LoweringError(f"{g.name}: attention output weights must be diagonal "
                                        "(one weight per output neuron)")
            delay = depth[p.name] - 1 - src_depth(g.source) + g.lag
            if g.source in op_names and delay:
                raise LoweringError(f"{g.name}: the attention output would need a delay of "
                                    f"{delay} steps to align with the other inputs of "
                                    f"{p.name}; attention units have no delay line")
            if delay > max_delay:
                raise CapacityError(f"{g.name}: synaptic delay ({delay}) exceeds "
                                    f"max_synaptic_delay ({max_delay}); the model is too deep "
                                    "for residual alignment by delays")
            groups_q.append(SynapseGroup(name=g.name, source=g.source, target=g.target,
                                         weights=qw.weights, weight_exp=qw.weight_exp,
                                         num_message_bits=bits, delay=delay, layer=g.layer,
                                         kind=g.kind, lag=g.lag))
    if diagnostics["clipped_biases"]:
        warnings.warn(f"{diagnostics['clipped_biases']} biases clipped to the 13-bit mantissa "
                      "range; lower --vth-mant", QuantizationWarning, stacklevel=2)
    if diagnostics["clipped_weights"]:
        warnings.warn(f"{diagnostics['clipped_weights']} weights clipped to the 8-bit range",
                      QuantizationWarning, stacklevel=2)
    md = dict(fp.metadata)
    unused = [name for name, r in relays.items() if r.shift is None]
    if unused:
        raise LoweringError(f"{unused[0]}: low-rank relay feeds no population")
    md["quantization"] = {"weight_bits": weight_bits, "vth_mant": vth_mant,
                          "zeroed_weights": diagnostics["zeroed_weights"],
                          "clipped_weights": diagnostics["clipped_weights"],
                          "clipped_biases": diagnostics["clipped_biases"],
                          "float_synapses": int(sum(g.weight.nnz for g in fp.groups)),
                          "decay_rounding": diagnostics["decay_error"]}
    for t in fp.token_selects:
        selector(t.name)
    return Program(populations=tuple(pops_q), groups=tuple(groups_q), attention=fp.attention,
                   readout=fp.readout, input_shape=fp.input_shape, input_levels=fp.input_levels,
                   time_steps=fp.time_steps, metadata=md,
                   token_selects=tuple(sel_q[t.name] for t in fp.token_selects))
