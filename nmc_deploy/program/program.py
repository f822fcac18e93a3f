"""The core program: what ``nmc-deploy compile`` writes and ``simulate`` / ``report`` read.

Two levels:

* :class:`FloatProgram` (from :func:`~nmc_deploy.compile.lower.lower_graph`): neuron
  populations and synapse groups with float weights, no hardware detail.
* :class:`Program` (from :func:`~nmc_deploy.compile.quantize.quantize_program`): Lava/Loihi
  fixed point (8-bit weights + shared exponent, decays /4096, threshold mantissa, bias
  mantissa/exponent), per-population pipeline depth and per-group delays.

Population kinds: "lif" and "threshold" emit binary spikes ("lif" covers NIR's LIF, IF and
CubaLIF: a current state when ``alpha_syn > 0``); "li" (NIR's LI and CubaLI) never spikes,
its voltage is a graph output read per step; "relay" (a low-rank factor deployed as two
synaptic stages, ``lower_graph(..., low_rank="relay")``) emits its integer synaptic input as
a graded payload each step (Loihi 2 graded spikes): no leak, no threshold, no state.
Equations in :class:`Population` and :class:`Program`.

Group sources: a population, :data:`INPUT` (the graded input), :data:`CONST` (a source that
emits 1 at every step of a sample: constants that must reach a synaptic current or start
late), an attention op or a token selector. A group with ``lag = L > 0`` delivers its
source's output of sample step ``t - L`` (0 for ``t < L``): NIR ``Delay`` nodes and the
one-step delay of recurrent edges.

On disk (a directory): ``program.json`` (everything but arrays) and ``program.npz`` (weights
as CSR triplets, biases). Format documented in docs/architecture.md.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InputFileError

__all__ = ["FloatPopulation", "FloatGroup", "AttentionOp", "FloatTokenSelect", "TokenSelectOp",
           "Readout", "FloatProgram",
           "Population", "SynapseGroup", "Program", "save_program", "load_program",
           "PROGRAM_FORMAT", "INPUT", "CONST", "RELAY", "LI", "LOW_RANK_MODES"]

PROGRAM_FORMAT = "nmc-deploy-program"
PROGRAM_VERSION = 1
INPUT = "input"  # source name of the graded input (pixel intensities)
CONST = "const"  # source name of the constant 1 (every step of a sample; 0 between samples)
RELAY = "relay"  # population kind of a graded-payload relay (low-rank factor stage)
LI = "li"  # population kind of a non-spiking leaky integrator whose voltage is an output
LOW_RANK_MODES = ("fused", "relay")  # how low-rank factor pairs are deployed


@dataclass(frozen=True)
class FloatPopulation:
    """Neurons of one graph node. Per step::

        i = alpha_syn i + x                 (alpha_syn = 0: i = x, no current state)
        v = alpha v + i + bias
        spike on v >= v_threshold (threshold_ge) or v > v_threshold, then
        v = 0 (reset "zero") or v = v - v_threshold (reset "subtract")

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


@dataclass(frozen=True)
class FloatProgram:
    populations: tuple[FloatPopulation, ...]
    groups: tuple[FloatGroup, ...]
    attention: tuple[AttentionOp, ...]
    readout: Readout
    input_shape: tuple[int, ...]
    input_levels: int
    time_steps: int
    metadata: dict[str, Any] = field(default_factory=dict)
    token_selects: tuple[FloatTokenSelect, ...] = ()

    def population(self, name: str) -> FloatPopulation:
        return next(p for p in self.populations if p.name == name)


@dataclass(frozen=True)
class Population:
    """Lava ``LIFReset`` fixed point (PyLifResetModelBitAcc), per step::

        u = trunc(u * (4096 - (du + 1)) / 4096) + (a_in << 6)     (24-bit wrap)
        v = trunc(v * (4096 - dv) / 4096) + u + (bias_mant << bias_exp)   (saturate)
        s = v > (vth << 6);  v[s] = 0   (reset_subtract > 0: v[s] -= reset_subtract)

    ``du = 4095`` means no current state (u is this step's input); a CubaLIF current has
    ``du = 4096 (1 - alpha_syn) - 1``. ``reset_subtract = lam * v_threshold = 64 vth + [>=]``
    for a subtractive reset (our ``LIFWindowed`` Process; Lava's LIF resets to zero).

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

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def spiking(self) -> bool:
        """True for populations that emit binary spikes ("lif", "threshold")."""
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
class Program:
    """The fixed-point program. Per population and step (sample time; see docs/architecture.md)::

        a_in[pop] = sum over groups g into pop of (W_g @ x_src(g)) << weight_exp_g   (>> if < 0)

    with ``x_src`` the input pixels, an attention op's counts, a LIF/threshold population's
    0/1 spikes, or a relay's payload ``p = a_in[relay] >> payload_shift``. A low-rank factor
    pair ``W ~ U V`` in relay form is therefore two stages: ``a_in[relay] ~ mu V s`` (down
    groups, one per source population of the factor's input) and
    ``a_in[lif] ~ (lam/64) gain U p 2**payload_shift / mu`` (the up group).
    """

    populations: tuple[Population, ...]
    groups: tuple[SynapseGroup, ...]
    attention: tuple[AttentionOp, ...]
    readout: Readout
    input_shape: tuple[int, ...]
    input_levels: int
    time_steps: int
    metadata: dict[str, Any] = field(default_factory=dict)
    token_selects: tuple[TokenSelectOp, ...] = ()

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
        if source in (INPUT, CONST):
            return 0
        for op in self.attention:
            if op.name == source:
                return self.population(op.q).depth
        sel = self.token_select(source)
        if sel is not None:
            return sel.depth
        return self.population(source).depth

    def source_size(self, source: str) -> int:
        if source == INPUT:
            return int(np.prod(self.input_shape))
        if source == CONST:
            return 1
        for op in self.attention:
            if op.name == source:
                return op.dim * op.n_tokens
        sel = self.token_select(source)
        if sel is not None:
            return sel.dim * sel.n_tokens
        return self.population(source).size


# ----------------------------------------------------------------------------- I/O

def _csr_to(arrs: dict, key: str, m: sp.csr_matrix):
    m = sp.csr_matrix(m)
    arrs[f"{key}/data"] = m.data
    arrs[f"{key}/indices"] = m.indices
    arrs[f"{key}/indptr"] = m.indptr
    return list(m.shape)


def _csr_from(npz, key: str, shape) -> sp.csr_matrix:
    return sp.csr_matrix((npz[f"{key}/data"], npz[f"{key}/indices"], npz[f"{key}/indptr"]),
                         shape=tuple(shape))


def save_program(program: Program, directory: str | Path) -> None:
    """Write ``program.json`` and ``program.npz`` into ``directory`` (each atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrs: dict[str, np.ndarray] = {}
    pops = []
    for i, p in enumerate(program.populations):
        d = asdict(p)
        d.pop("bias_mant")
        arrs[f"pop{i}/bias_mant"] = np.asarray(p.bias_mant, np.int32)
        for key in ("du", "dv"):
            if isinstance(getattr(p, key), np.ndarray):
                arrs[f"pop{i}/{key}"] = np.asarray(getattr(p, key), np.int32)
                d[key] = "per-neuron"
        pops.append(d)
    def group_dict(g, key):
        d = {k: v for k, v in asdict(g).items() if k != "weights"}
        d["shape"] = _csr_to(arrs, key, g.weights)
        return d

    groups = [group_dict(g, f"group{i}") for i, g in enumerate(program.groups)]
    selects = []
    for i, t in enumerate(program.token_selects):
        d = {"name": t.name, "h_shift": t.h_shift, "lut_min": t.lut_min,
             "b_score": int(t.b_score), "dim": t.dim, "n_tokens": t.n_tokens,
             "n_keep": t.n_keep, "previous": t.previous, "depth_in": t.depth_in,
             "depth": t.depth, "num_message_bits": t.num_message_bits,
             "inputs": [group_dict(g, f"sel{i}/in{j}") for j, g in enumerate(t.inputs)]}
        for key in ("w1", "b1", "lut", "w_score"):
            arrs[f"sel{i}/{key}"] = np.asarray(getattr(t, key), np.int64)
        selects.append(d)
    ro = program.readout
    readout = {"scale": ro.scale, "num_outputs": ro.num_outputs, "cumulative": ro.cumulative,
               "weights": {}}
    for j, (src, m) in enumerate(ro.weights.items()):
        readout["weights"][src] = {"key": f"readout{j}", "shape": _csr_to(arrs, f"readout{j}", m)}
    arrs["readout/bias"] = np.asarray(ro.bias, np.float64)
    manifest = {
        "format": PROGRAM_FORMAT, "version": PROGRAM_VERSION,
        "input_shape": list(program.input_shape), "input_levels": program.input_levels,
        "time_steps": program.time_steps, "metadata": program.metadata,
        "populations": pops, "groups": groups,
        "attention": [asdict(a) for a in program.attention], "readout": readout,
        "token_selects": selects,
    }
    _atomic_write(directory / "program.npz", lambda f: np.savez_compressed(f, **arrs))
    _atomic_write(directory / "program.json",
                  lambda f: f.write(json.dumps(manifest, indent=1).encode()))


def _atomic_write(path: Path, writer) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_program(directory: str | Path) -> Program:
    """Read a compiled program directory; bad input raises one-line :class:`InputFileError`."""
    directory = Path(directory)
    if not directory.exists():
        raise InputFileError(f"{directory}: no such directory; give the output directory of "
                             "`nmc-deploy compile`")
    if not directory.is_dir():
        raise InputFileError(f"{directory}: not a directory; give the output directory of "
                             "`nmc-deploy compile`")
    mpath, apath = directory / "program.json", directory / "program.npz"
    if not mpath.exists() or not apath.exists():
        raise InputFileError(f"{directory}: no compiled program (program.json/program.npz "
                             "missing); run `nmc-deploy compile` first")
    try:
        manifest = json.loads(mpath.read_text())
        if manifest.get("format") != PROGRAM_FORMAT:
            raise ValueError("wrong format tag")
        npz = np.load(apath)
        pops = tuple(
            Population(**{**d, "shape": tuple(d["shape"]),
                          "bias_mant": npz[f"pop{i}/bias_mant"].astype(np.int64),
                          **{key: (npz[f"pop{i}/{key}"].astype(np.int64)
                                   if d[key] == "per-neuron" else int(d[key]))
                             for key in ("du", "dv")}})
            for i, d in enumerate(manifest["populations"]))
        def group_of(d, key):
            d = dict(d)
            shape = d.pop("shape")
            return SynapseGroup(**d, weights=_csr_from(npz, key, shape))

        groups = [group_of(d, f"group{i}") for i, d in enumerate(manifest["groups"])]
        selects = []
        for i, d in enumerate(manifest.get("token_selects", [])):
            d = dict(d)
            inputs = tuple(group_of(g, f"sel{i}/in{j}") for j, g in enumerate(d.pop("inputs")))
            selects.append(TokenSelectOp(**d, inputs=inputs,
                                         **{k: npz[f"sel{i}/{k}"].astype(np.int64)
                                            for k in ("w1", "b1", "lut", "w_score")}))
        ro = manifest["readout"]
        readout = Readout(
            weights={src: _csr_from(npz, w["key"], w["shape"]) for src, w in ro["weights"].items()},
            bias=npz["readout/bias"], scale=float(ro["scale"]), num_outputs=int(ro["num_outputs"]),
            cumulative=bool(ro.get("cumulative", False)))
        return Program(populations=pops, groups=tuple(groups),
                       attention=tuple(AttentionOp(**a) for a in manifest["attention"]),
                       readout=readout, input_shape=tuple(manifest["input_shape"]),
                       input_levels=int(manifest["input_levels"]),
                       time_steps=int(manifest["time_steps"]), metadata=manifest["metadata"],
                       token_selects=tuple(selects))
    except InputFileError:
        raise
    except Exception as exc:
        raise InputFileError(f"{directory}: corrupt compiled program ({type(exc).__name__}: "
                             f"{str(exc)[:80]}); run `nmc-deploy compile` again") from exc
