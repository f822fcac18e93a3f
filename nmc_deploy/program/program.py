"""The fixed-point program: what ``nmc-deploy compile`` writes and ``simulate`` / ``report`` read.

:class:`Program` (from :func:`~nmc_deploy.compile.quantize.quantize_program`): Lava/Loihi
fixed point (8-bit weights + shared exponent, decays /4096, threshold mantissa, bias
mantissa/exponent), per-population pipeline depth and per-group delays; the float level it
is quantized from is :class:`~nmc_deploy.program.float_program.FloatProgram`.

Population kinds: "lif" and "threshold" emit binary spikes ("lif" covers NIR's LIF, IF and
CubaLIF: a current state when ``du < 4095``); "li" (NIR's LI and CubaLI) never spikes,
its voltage is a graph output read per step; "relay" (a low-rank factor deployed as two
synaptic stages) emits its integer synaptic input as a graded payload each step (Loihi 2
graded spikes): no leak, no threshold, no state. Equations in :class:`Population` and
:class:`Program`.

Group sources: a population, :data:`~nmc_deploy.program.shared.INPUT` (the graded input),
:data:`~nmc_deploy.program.shared.CONST` (a source that emits 1 at every step of a sample),
an attention op or a token selector. A group with ``lag = L > 0`` delivers its source's
output of sample step ``t - L`` (0 for ``t < L``).

On disk: :mod:`nmc_deploy.program.io` (``program.json`` + ``program.npz``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .shared import LI, RELAY, ProgramBase, SourceKind

__all__ = ["Population", "SynapseGroup", "TokenSelectOp", "Program"]


@dataclass(frozen=True)
class Population:
    """Lava ``LIFReset`` fixed point (PyLifResetModelBitAcc), per step::

        u = trunc(u * (4096 - (du + 1)) / 4096) + (a_in << 6)     (24-bit wrap)
        v = trunc(v * (4096 - dv) / 4096) + u + (bias_mant << bias_exp)   (saturate)
        s = v > (vth << 6);  v[s] = 0   (reset_subtract > 0: v[s] -= reset_subtract)

    ``du = 4095`` means no current state (u is this step's input); a CubaLIF current has
    ``du = 4096 (1 - alpha_syn) - 1``. ``reset_subtract = lam * v_threshold = 64 vth + [>=]``
    for a subtractive reset (our ``LoihiLIF`` Process with its subtractive-reset option;
    Lava's LIF resets to zero).

    Multi spikes (``max_spikes > 1``; sinabs' MultiSpike, rockpool's LIFTorch; our
    ``LoihiLIF`` with its multi-spike option, a Loihi 2 graded-spike neuron)::

        k = min(1 + floor((v - (vth << 6) - 1) / spike_unit), max_spikes)   where v > vth << 6
        v[k > 0] -= k * reset_subtract      (reset_subtract 0: v[k > 0] = 0)

    ``spike_unit = 64 vth + [>=] = lam theta``; ``k`` is sent as a graded payload (a
    message where ``k > 0``; its groups have ``num_message_bits = payload_bits``, the
    unsigned width of the worst-case ``k``). ``v_min`` (None: no clamp; an int or one per
    neuron): finally ``v = max(v, v_min)`` (sinabs' ``min_v_mem``, any spike rule).

    Kind "li": no spike and no reset; ``v`` is the output (``vth`` 0), in ``scale`` units
    per float unit.

    ``depth`` is the number of synapse stages between the input and this population: its
    spikes for sample step t appear at Lava time step ``1 + depth + t`` (plus the sample's
    offset), and u, v are reset at the first step of each sample window.

    Kind "relay" (our ``GradedRelay`` Process, a Loihi 2 graded-spike neuron like Lava's
    ``GradedVec`` with ``vth = 0``), per step, no state::

        p = a_in >> payload_shift        (arithmetic shift: floor)
        send p as a graded payload (a message only where p != 0)

    with ``a_in`` the integer sum of its incoming groups. The compiler bounds the worst case
    so that ``|p| < 2**(payload_bits - 1)`` (signed graded payload of the target). ``scale``
    is then the payload units per float unit of the relay value, ``mu / 2**payload_shift``,
    where ``mu`` scales its incoming (down-factor) weights; ``du, dv, vth, bias_mant,
    bias_exp`` are 0. Depth: ``1 + max depth of its sources``, as for every population, so
    a relay adds one step of latency.
    """

    name: str
    shape: tuple[int, ...]
    kind: str
    du: int | np.ndarray  # scalar, or per neuron (CubaLIF with per-neuron tau_syn)
    dv: int | np.ndarray  # scalar, or per neuron (sLIF leaks: a per-neuron LIF Process)
    vth: int
    bias_mant: np.ndarray  # (size,) int
    bias_exp: int
    depth: int
    scale: float  # lambda: v units per float unit of membrane (relay: payload units per float)
    layer: str
    payload_shift: int = 0  # relay only: right shift from a_in to the payload
    payload_bits: int = 0  # relay only: signed width of its worst-case payload (<= target's)
    gate: str = ""  # token selector gating these (C, N) neurons; see FloatPopulation
    reset_subtract: int = 0  # 0: reset to zero; > 0: subtract this from v on a spike
    max_spikes: int = 1  # > 1: spike counts up to this (a graded payload; see above)
    spike_unit: int = 0  # multi spikes: the integer threshold step 64 vth + [>=]
    v_min: int | np.ndarray | None = None  # clamp of v from below (None: none)

    @property
    def multi_spike(self) -> bool:
        """True for a population emitting spike counts as graded payloads."""
        return self.max_spikes > 1

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def spiking(self) -> bool:
        """True for populations that emit spikes ("lif", "threshold"; binary, or counts
        with ``max_spikes > 1``)."""
        return self.kind not in (RELAY, LI)

    @property
    def graded(self) -> bool:
        """True for a relay (graded integer payloads), False for binary spikes."""
        return self.kind == RELAY


@dataclass(frozen=True)
class SynapseGroup:
    """Lava ``Sparse``/``DelaySparse`` fixed point: ``a = (W @ s) << weight_exp`` (or ``>>``),
    arriving ``1 + delay`` steps after the source spiked. ``num_message_bits > 0`` means
    graded payloads (the input's pixel values, the attention op's counts, a relay's
    signed payloads): ``W @ p`` with the integer payload ``p`` instead of a sum of the
    columns of spiking sources. ``lag`` (sample steps, part of ``delay``): the target's
    step t reads the source's step ``t - lag`` (0 for ``t < lag``)."""

    name: str
    source: str
    target: str
    weights: sp.csr_matrix  # (target.size, source.size) int32, on Lava's effective grid
    weight_exp: int
    num_message_bits: int
    delay: int
    layer: str
    kind: str
    lag: int = 0

    @property
    def num_synapses(self) -> int:
        return int(self.weights.nnz)


@dataclass(frozen=True)
class TokenSelectOp:
    """The fixed-point token selector (an embedded-core op between stages).

    Integer feature counts ``c[n, :] = sum_t x_t[:, n]`` (``x_t`` from ``inputs``, integer
    synapses, arriving aligned at ``depth_in``), then per token::

        h  = w1 @ c + b1                         (int64; w1 = round(W1 / T * 2**s1), 16-bit)
        hq = h >> h_shift                        (floor; GELU argument in 1/2**gelu_frac_bits)
        g  = 0 if hq < lut_min, hq if hq >= lut_min + len(lut), else lut[hq - lut_min]
        score = w_score @ g + b_score            (int64)

    keep the ``n_keep`` highest scores among the tokens ``previous`` kept (ties to the
    lower index). The selector buffers a sample: input step t arrives at Lava step
    ``1 + depth_in + t``; after step T-1 it decides and emits ``y_t = m x_t`` at
    ``1 + depth + t`` with ``depth = depth_in + T - 1`` (graded, ``num_message_bits``).
    """

    name: str
    inputs: tuple["SynapseGroup", ...]
    w1: np.ndarray  # (H, dim) int
    b1: np.ndarray  # (H,) int64
    h_shift: int
    lut: np.ndarray  # int64
    lut_min: int
    w_score: np.ndarray  # (H,) int
    b_score: int
    dim: int
    n_tokens: int
    n_keep: int
    previous: str
    depth_in: int
    depth: int
    num_message_bits: int


@dataclass(frozen=True)
class Program(ProgramBase):
    """The fixed-point program. Per population and step (sample time; see docs/architecture.md)::

        a_in[pop] = sum over groups g into pop of (W_g @ x_src(g)) << weight_exp_g   (>> if < 0)

    with ``x_src`` the input pixels, an attention op's counts, a LIF/threshold population's
    0/1 spikes, or a relay's payload ``p = a_in[relay] >> payload_shift``. A low-rank factor
    pair ``W ~ U V`` in relay form is therefore two stages: ``a_in[relay] ~ mu V s`` (down
    groups, one per source population of the factor's input) and
    ``a_in[lif] ~ (lam/64) gain U p 2**payload_shift / mu`` (the up group).
    """

    @property
    def pipeline_depth(self) -> int:
        return max([p.depth for p in self.populations] + [s.depth for s in self.token_selects])

    @property
    def sample_gap(self) -> int:
        """Idle steps between samples on Lava: the largest group lag (0 without Delay nodes
        and recurrence). A lagged group would otherwise carry the end of one sample into
        the start of the next (docs/architecture.md, "Time")."""
        return max((g.lag for g in self.groups), default=0)

    def token_select(self, name: str) -> TokenSelectOp | None:
        return next((s for s in self.token_selects if s.name == name), None)

    def population(self, name: str) -> Population:
        return next(p for p in self.populations if p.name == name)

    def depth_of(self, source: str) -> int:
        """Depth of a group source: 0 for the input, the q population's depth for an op."""
        kind = self.source_kinds()[source]
        if kind in (SourceKind.INPUT, SourceKind.CONST):
            return 0
        if kind is SourceKind.ATTENTION:
            op = next(op for op in self.attention if op.name == source)
            return self.population(op.q).depth
        if kind is SourceKind.SELECTOR:
            return self.token_select(source).depth
        return self.population(source).depth

    def source_size(self, source: str) -> int:
        kind = self.source_kinds()[source]
        if kind is SourceKind.INPUT:
            return int(np.prod(self.input_shape))
        if kind is SourceKind.CONST:
            return 1
        if kind is SourceKind.ATTENTION:
            op = next(op for op in self.attention if op.name == source)
            return op.dim * op.n_tokens
        if kind is SourceKind.SELECTOR:
            sel = self.token_select(source)
            return sel.dim * sel.n_tokens
        return self.population(source).size

