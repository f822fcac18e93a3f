"""Write a compiled program as a lava-dl netx HDF5 network (``netx.hdf5.Network``), and read
one (:func:`read_netx`: dense layers here, conv/pool/flatten in :mod:`.netx_conv`).

netx (lava-dl 0.6.0) builds a *chain* of blocks from ``/layer/<i>`` groups; a ``dense``
block is a ``Dense`` (or, with ``sparse_fc_layer=True``, ``Sparse``) synapse feeding a CUBA
``LIF`` (``LIFReset`` with ``reset_interval``). What it computes per layer and step::

    a    = E @ s                                   (E: the file's integer weights; s: spikes,
                                                    or graded payloads for the first layer)
    u    = trunc(u * (4096 - iDecay) / 4096) + (a << 6)
    v    = trunc(v * (4096 - vDecay) / 4096) + u + (bias << 6)
    spike where v > vThMant << 6, then v = 0

which is our :class:`~.program.Population` with ``du = iDecay - 1`` (netx passes
``iDecay - 1`` to Lava, which adds its offset 1 back), ``dv = vDecay``, ``vth = vThMant``
and a bias of ``bias << 6`` v units (netx fixes ``bias_exp`` at 6). netx has no weight
exponent of its own: it derives one from the integer weights (``optimize_weight_bits``,
mirrored by :func:`netx_synapse_weights`), which is exact for integers on its grid. So a
synapse group ``W, weight_exp`` is written as ``E = W << weight_exp`` (or ``W >> -weight_exp``
when every weight is divisible, the only case in which Lava's floor of the summed input is
exact per weight).

Expressible programs: populations in program order form a chain, each fed by exactly one
synapse group from the previous population (the first one from the input), kind "lif"
(LIF, IF, CubaLIF) or "threshold", one ``du`` and one ``dv`` per population, reset to zero,
no delay or recurrence, no gate, biases that are multiples of 64 v units (13-bit mantissa
at exponent 6), and weights that netx and Lava's 8-bit clip leave unchanged (nonzero
groups only: netx cannot load an all-zero layer). Anything else raises
:class:`~nmc_deploy.errors.ExportError` naming the first population netx cannot express.
Populations of any shape are written as flat ``dense`` layers (a convolution is its dense
matrix: the program keeps no kernels), so every layer's spike vector has our flat C order.

Input and time (docs/architecture.md, "netx export"): the first layer reads the input like
ours, a RingBuffer of pixel integers (``input_message_bits`` = the input group's
``num_message_bits``, so graded pixels are ``E @ x``); the file's input layer has a shape and
no neuron (netx never wires an input layer that has one). With
``Network(reset_interval=T, reset_offset=1)`` netx resets its k-th block (k = 1, 2, ...)
at Lava steps ``= 1 + k (mod T)``, and that block's spikes of sample n, step t appear at
Lava step ``1 + k + n T + t``: block k is our population of depth k, with the same schedule
(no offset), so samples can run back to back. Without ``reset_interval`` netx never resets
its neurons, and only the first sample of a run equals the reference. These keyword
arguments are stored as HDF5 attributes (netx ignores attributes); see
:func:`read_netx_kwargs`. The host readout is not part of the file; ``Network.out`` is the
last layer's spikes.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import ExportError, InputFileError
from ..fileio import atomic_path
from ..loihi.constants import LAVA_LIF, SYNAPTIC_ACCUMULATOR_BITS
from ..loihi.synapses import lava_effective_weights
from ..program import INPUT, LI, RELAY, Population, Program, Readout, SynapseGroup
from .quantize import GridPolicy

__all__ = ["NetxLayer", "netx_layers", "write_netx", "read_netx_kwargs",
           "netx_synapse_weights", "NetxGrid", "NETX_GRID", "NETX_FILE", "NETX_FORMAT",
           "NETX_BIAS_EXP", "NETX_WEIGHT_MAX", "read_netx", "is_netx_file", "place_netx"]

NETX_FILE = "model.net.h5"  # name next to program.json (``compile --emit netx``)
NETX_FORMAT = "nmc-deploy-netx"
NETX_BIAS_EXP = 6  # netx's CUBA neurons: bias_mant = file bias, bias_exp = 6
NETX_WEIGHT_MAX = 254  # weight_exp 0 needs the largest |weight| in (127, 254] (mixed sign)
_ACCUMULATOR_MAX = 2 ** (SYNAPTIC_ACCUMULATOR_BITS - 1) - 1  # Lava's int32 W @ s
_NETX_KINDS = ("lif", "threshold")  # binary-spiking kinds (CubaLIF is "lif" with du < 4095)


@dataclass(frozen=True)
class NetxGrid(GridPolicy):
    """The grid netx can express, as a quantization policy
    (``quantize_program(fp, grid=NETX_GRID)``, ``compile --emit netx``).

    Each spiking population's threshold mantissa is the largest (at most the requested one)
    whose incoming weights need ``weight_exp = 0``: ``max |R| = (64 vth + ge) / theta *
    w_max / 64 <= weight_max``; biases are rounded to multiples of ``2**min_bias_exp`` v units,
    since netx derives its own weight exponent and fixes the bias exponent at 6. The program
    stays self-consistent (reference == Lava); only its rounding differs from Lava's grid.
    """

    name: str = "netx"
    min_bias_exp: int = NETX_BIAS_EXP
    weight_max: int = NETX_WEIGHT_MAX

    def threshold_mant(self, vth_mant: int, theta: np.ndarray, ge: int, w_max: float) -> int:
        if w_max <= 0:
            return vth_mant
        theta_min = float(np.min(theta))
        cap = math.floor((self.weight_max * 2 ** LAVA_LIF.act_shift * theta_min / w_max - ge)
                         / 2 ** LAVA_LIF.vth_shift)
        return int(min(max(cap, 1), LAVA_LIF.max_vth))


NETX_GRID = NetxGrid()


@dataclass(frozen=True)
class NetxLayer:
    """One netx ``dense`` layer (CUBA neurons); per step, see the module docstring::

        a = weight @ s;  u = trunc(u (4096 - i_decay) / 4096) + (a << 6)
        v = trunc(v (4096 - v_decay) / 4096) + u + (bias << 6);  s = v > vth_mant << 6
    """

    name: str  # our population
    weight: np.ndarray  # (n_out, n_in) int64: a_in units per spike or payload unit
    bias: np.ndarray  # (n_out,) int64, in a_in units (64 v units each)
    i_decay: int  # = du + 1 (current decay /4096; 4096: u holds one step's input)
    v_decay: int  # = dv (voltage decay /4096)
    vth_mant: int  # = vth (threshold vth_mant << 6 v units)
    depth: int  # our pipeline depth = netx block index, 1-based


def netx_synapse_weights(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """What netx and Lava make of a layer's integer weights: ``(W, weight_exp)`` such that
    Lava's Dense/Sparse sends ``(W @ s) << weight_exp`` (``>>`` if negative; a pure function).

    netx (``lava.lib.dl.netx.utils.optimize_weight_bits``, lava-dl 0.6.0) clips mixed-sign
    weights to [-256, 254], picks ``scale`` (mixed: ``min(127/max, -128/min)``; inhibitory:
    ``-256/min``; excitatory: ``255/max``), ``scale_bits = floor(log2 scale) + signed``,
    ``n`` = the largest power of two (<= 8) dividing every weight, less ``signed``, and passes
    ``W << scale_bits``, ``num_weight_bits = 8 - scale_bits - n``, ``weight_exp =
    -scale_bits`` to Lava, whose fixed-point model then clips and truncates the weights
    (``clip_weights``, ``truncate_weights``). The result is exact for
    ``weight`` iff ``W == weight << -weight_exp``. Raises ``ValueError`` where netx fails
    (an all-zero matrix: ``OverflowError`` in netx).
    """
    w = np.asarray(weight).astype(np.int64)  # NetDict casts weights with astype(int)
    if not w.size or not w.any():
        raise ValueError("all-zero weights: netx's optimize_weight_bits overflows")
    max_w, min_w = int(w.max()), int(w.min())
    if max_w > 254 and min_w < 0:
        w = np.clip(w, -256, 254)
        max_w = int(w.max())
    if min_w < -256 and max_w > 0:
        w = np.clip(w, -256, 254)
        min_w = int(w.min())
    if max_w < 0:
        signed, scale = 0, -256.0 / min_w
    elif min_w >= 0:
        signed, scale = 0, 255.0 / max_w
    else:
        signed = 1
        scale = min(127.0 / max_w if max_w > 0 else np.inf, -128.0 / min_w)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.sum(np.abs(w / 2 ** n - np.round(w / 2 ** n))) != 0:
        n -= 1
    n -= signed
    num_weight_bits = 8 - scale_bits - n
    shifted = np.left_shift(w.astype(np.int32), scale_bits)  # as netx does (int32)
    return lava_effective_weights(shifted, num_weight_bits), -scale_bits


def _fail(pop: str, why: str) -> ExportError:
    return ExportError(f"netx: population '{pop}' {why}")


def _layer_weight(p, g, x_max: int) -> np.ndarray:
    """The dense integer weights E of group ``g`` into ``p`` (module docstring), checked."""
    if g.weights.nnz == 0:
        raise _fail(p.name, f"is fed by group '{g.name}' with no nonzero weights; netx cannot "
                    "load an all-zero layer (OverflowError in optimize_weight_bits)")
    w = np.asarray(g.weights.toarray(), np.int64)
    e = int(g.weight_exp)
    if e >= 0:
        dense = w << e
    else:
        if np.any(w % (1 << -e)):
            raise _fail(p.name, f"is fed by group '{g.name}' with weight_exp ({e}): Lava floors "
                        f"each summed input by 2**{-e}, and netx has no weight exponent of its "
                        "own (it derives one from the integer weights); recompile with a "
                        "--vth-mant that gives this group weight_exp 0")
        dense = w >> -e
    lava_w, lava_exp = netx_synapse_weights(dense)
    if lava_exp > 0:  # netx shifted the weights right (by a negative left shift): zeros
        changed = dense.size
    else:
        changed = int(np.count_nonzero(lava_w != dense << -lava_exp))
    if changed:
        raise _fail(p.name, f"is fed by group '{g.name}' whose weights W << weight_exp (range "
                    f"[{dense.min()}, {dense.max()}]) netx and Lava's 8-bit clip change "
                    f"({changed} of {dense.size} entries); netx needs 8-bit integers (mixed "
                    "sign [-256, 254], one sign [0, 255] or [-255, 0]); recompile with "
                    "another --vth-mant")
    acc = int((np.abs(lava_w) @ np.full(w.shape[1], x_max, np.int64)).max(initial=0))
    if acc > _ACCUMULATOR_MAX:
        raise _fail(p.name, f"is fed by group '{g.name}' whose worst-case sum ({acc}) after "
                    "netx's weight scaling overflows Lava's int32 synaptic accumulator")
    return dense


def netx_layers(program: Program) -> tuple[NetxLayer, ...]:
    """The netx layers of ``program`` (not modified); raises :class:`ExportError` naming the
    first population netx cannot express (module docstring)."""
    by_target: dict[str, list] = {}
    for g in program.groups:
        by_target.setdefault(g.target, []).append(g)
    ops = {op.name for op in program.attention}
    sels = {t.name for t in program.token_selects}
    pops = {p.name for p in program.populations}
    layers = []
    prev = INPUT
    for p in program.populations:
        if p.kind == RELAY and p.name in program.metadata.get("residual_relays", ()):
            raise _fail(p.name, "is a residual relay (graded payloads); netx has no such "
                        "layer; compile with --residual fan-in")
        if p.kind == RELAY:
            raise _fail(p.name, "is a low-rank relay (graded payloads); netx has no such "
                        "layer; compile with --low-rank fused")
        if p.kind == LI:
            raise _fail(p.name, "is a non-spiking leaky integrator (LI, CubaLI) whose voltage "
                        "is an output; netx layers emit spikes")
        if p.kind not in _NETX_KINDS:
            raise _fail(p.name, f"has kind '{p.kind}'; netx has CUBA layers only")
        if p.multi_spike or p.v_min is not None:
            raise _fail(p.name, "emits spike counts or clamps v (multi spike, v_min); netx's "
                        "CUBA layers do neither; compile with --spikes single --v-min none")
        if p.gate:
            raise _fail(p.name, f"is gated by token selector '{p.gate}'; netx has no token "
                        "selection")
        gs = by_target.get(p.name, [])
        for g in gs:
            if g.source in ops:
                raise _fail(p.name, f"is fed by an attention op ('{g.source}'); netx has no "
                            "such layer")
            if g.source in sels:
                raise _fail(p.name, f"is fed by token selector '{g.source}'; netx has no such "
                            "layer")
            if g.source == p.name:
                raise _fail(p.name, f"reads its own output (recurrent group '{g.name}'); this "
                            "export writes no dense_rec layers")
            if g.source != INPUT and g.source not in pops:
                raise _fail(p.name, f"is fed by '{g.source}' (constant or unknown source); a "
                            "netx layer reads the input or the previous layer only")
        if len(gs) != 1:
            raise _fail(p.name, f"is fed by {len(gs)} synapse groups (from "
                        f"{', '.join(g.source for g in gs) or 'nothing'}); a netx layer reads "
                        "exactly one layer, so fan-in (a residual stream) cannot be expressed")
        g = gs[0]
        if g.source != prev:
            raise _fail(p.name, f"reads '{g.source}', not the previous layer '{prev}'; netx "
                        "layers form a chain in program order")
        if g.delay:
            raise _fail(p.name, f"is fed by group '{g.name}' with a synaptic delay ({g.delay} "
                        "steps); this export writes chains without delays")
        if g.source != INPUT and g.num_message_bits:
            raise _fail(p.name, f"reads graded payloads ({g.num_message_bits} bits) from "
                        f"'{g.source}'; netx CUBA layers send binary spikes")
        if isinstance(p.dv, np.ndarray):
            raise _fail(p.name, "has per-neuron voltage decays (sLIF); netx's vDecay is one "
                        "value per layer")
        if isinstance(p.du, np.ndarray):
            raise _fail(p.name, "has per-neuron current decays; netx's iDecay is one value "
                        "per layer")
        if getattr(p, "reset_subtract", 0):
            raise _fail(p.name, "resets by subtraction; netx's CUBA neurons reset to zero")
        if not 0 <= p.du + 1 <= LAVA_LIF.decay_unity:
            raise _fail(p.name, f"has du ({p.du}) outside 0..4095 (iDecay = du + 1)")
        bias_v = np.asarray(p.bias_mant, np.int64) << int(p.bias_exp)
        off = np.flatnonzero(bias_v % (1 << NETX_BIAS_EXP))
        if off.size:
            raise _fail(p.name, f"has a bias ({int(bias_v[off[0]])} v units at neuron "
                        f"{int(off[0])}) that is not a multiple of {1 << NETX_BIAS_EXP}; netx "
                        f"fixes bias_exp at {NETX_BIAS_EXP}, so biases are whole a_in units")
        bias = bias_v >> NETX_BIAS_EXP
        lo, hi = LAVA_LIF.bias_mant_min, LAVA_LIF.bias_mant_max
        if bias.size and (bias.min() < lo or bias.max() > hi):
            raise _fail(p.name, f"has a bias mantissa ({int(np.abs(bias).max())}) at netx's "
                        f"bias_exp {NETX_BIAS_EXP} outside the 13-bit range [{lo}, {hi}]")
        x_max = program.input_levels if g.source == INPUT else 1
        layers.append(NetxLayer(name=p.name, weight=_layer_weight(p, g, x_max), bias=bias,
                                i_decay=int(p.du) + 1, v_decay=int(p.dv), vth_mant=int(p.vth),
                                depth=len(layers) + 1))
        prev = p.name
    leftover = sorted((ops | sels) - pops)
    if leftover:  # an op or selector that no population reads (only the host readout)
        raise ExportError(f"netx: '{leftover[0]}' is an attention op or token selector; netx "
                          "has no such layer")
    if not layers:
        raise ExportError("netx: program has no populations to write")
    return tuple(layers)


def _input_message_bits(program: Program) -> int:
    return int(next(g.num_message_bits for g in program.groups if g.source == INPUT))


def write_netx(program: Program, path: str | Path) -> Path:
    """Write ``program`` as a netx HDF5 file at ``path`` (atomically; nothing is written if
    the program is not expressible). Load it with
    ``netx.hdf5.Network(net_config=path, **read_netx_kwargs(path))``."""
    import h5py

    layers = netx_layers(program)
    path = Path(path)
    n_in = int(np.prod(program.input_shape))
    attrs = {"format": NETX_FORMAT, "version": 1, "time_steps": program.time_steps,
             "input_levels": program.input_levels,
             "input_shape": json.dumps(list(program.input_shape)),
             "input_message_bits": _input_message_bits(program),
             "reset_interval": program.time_steps, "reset_offset": 1,
             "populations": json.dumps([ly.name for ly in layers])}
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(buf := io.BytesIO(), "w") as f:  # in memory: HDF5 crashes when a
            f.attrs.update(attrs)  # write to disk fails (disk full); Python reports it
            root = f.create_group("layer")
            g = root.create_group("0")  # shape only: netx never wires an input with a neuron
            g.create_dataset("type", (1,), "S10", [b"input"])
            g.create_dataset("shape", data=np.array([n_in], np.int64))
            for i, ly in enumerate(layers, 1):
                g = root.create_group(str(i))
                g.attrs["name"] = ly.name
                g.create_dataset("type", (1,), "S10", [b"dense"])
                g.create_dataset("shape", data=np.array([ly.weight.shape[0]], np.int64))
                g.create_dataset("inFeatures", data=int(ly.weight.shape[1]))
                g.create_dataset("outFeatures", data=int(ly.weight.shape[0]))
                g.create_dataset("weight", data=ly.weight.astype(np.float32),  # as slayer
                                 compression="gzip")
                if np.any(ly.bias):
                    g.create_dataset("bias", data=ly.bias.astype(np.float32))
                g.create_dataset("neuron/type", (1,), "S10", [b"CUBA"])
                g.create_dataset("neuron/iDecay", data=ly.i_decay)
                g.create_dataset("neuron/vDecay", data=ly.v_decay)
                g.create_dataset("neuron/vThMant", data=ly.vth_mant)
                g.create_dataset("neuron/refDelay", data=1)  # written by slayer, unread
                g.create_dataset("neuron/gradedSpike", data=False)
        tmp.write_bytes(buf.getbuffer())
    return path


def read_netx_kwargs(path: str | Path) -> dict:
    """The ``netx.hdf5.Network`` keyword arguments that make a file of :func:`write_netx`
    run like our schedule: ``input_message_bits``, ``reset_interval`` (T), ``reset_offset``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != NETX_FORMAT:
                raise ValueError("wrong format tag")
            return {k: int(f.attrs[k]) for k in
                    ("input_message_bits", "reset_interval", "reset_offset")}
    except Exception as exc:
        raise InputFileError(f"{path}: not a netx file of nmc-deploy ({type(exc).__name__}); "
                             "write it with `nmc-deploy compile --emit netx`") from exc


# ------------------------------------------------------------------------------ reading

_SUPPORTED = ("input", "dense", "conv", "pool", "flatten")
_REFUSED = {  # netx layer types we do not read, and why (one line each)
    "dense_rec": "recurrent dense layers are not read",
    "dense_comp": "complex (resonate-and-fire) dense layers are not read",
    "average": "netx 0.6.0 has no average layer (NotImplementedError); SLAYER's Average is a "
               "float mean over neuron groups, not a spiking layer; end the network with a "
               "dense layer",
    "convT": "netx 0.6.0 has no convT layer (NotImplementedError)",
    "unpool": "netx 0.6.0 has no unpool layer (NotImplementedError)",
    "concat": "netx 0.6.0 has no concat layer (NotImplementedError)",
}


def _scalar(g, key: str, where: str) -> int:
    try:
        value = np.asarray(g[key][()])
    except KeyError:
        raise InputFileError(f"{where}: no '{key}'; netx CUBA layers need iDecay, vDecay and "
                             "vThMant") from None
    if value.size != 1 or not np.isfinite(value).all() or value != np.round(value):
        raise InputFileError(f"{where}: '{key}' ({value.ravel()[:3]}) is not one integer per "
                             "layer; per-neuron decays and thresholds cannot be read")
    return int(value.ravel()[0])


def _text(g, key: str) -> str:
    raw = g[key][()]
    raw = raw[0] if np.ndim(raw) else raw
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@dataclass
class _Chain:
    """The layers read so far (``read_netx``'s state; never leaves this module)."""

    path: Path
    bits: int  # input_message_bits of the first layer
    x_max: int  # largest input value (input_levels) when the input is graded
    pops: list
    groups: list
    kinds: list  # netx layer type per population (dense, conv, pool)
    prev: str = INPUT
    shape: tuple | None = None  # the previous layer's (or the input's) shape
    input_shape: tuple | None = None
    flatten: bool = False  # a flatten layer came after the previous layer


def _population(g, where: str, name: str, shape: tuple, depth: int) -> Population:
    """The CUBA neurons of a dense, conv or pool layer (module docstring)."""
    from .netx_conv import layer_bias

    neuron = g.get("neuron")
    ntype = _text(neuron, "type") if neuron is not None and "type" in neuron else "?"
    if ntype != "CUBA":
        raise InputFileError(f"{where}: neuron type '{ntype}' is not supported (supported: "
                             "CUBA; sigma-delta (SDNN) neurons send graded payloads and are "
                             "not read)")
    if "gradedSpike" in neuron and bool(np.asarray(neuron["gradedSpike"][()]).any()):
        raise InputFileError(f"{where}: graded-spike CUBA neurons are not supported")
    vth = _scalar(neuron, "vThMant", where)
    return Population(
        name=name, shape=tuple(int(s) for s in shape), kind="lif",
        du=_scalar(neuron, "iDecay", where) - 1, dv=_scalar(neuron, "vDecay", where),
        vth=vth, bias_mant=layer_bias(g, where, shape), bias_exp=NETX_BIAS_EXP, depth=depth,
        scale=64.0 * max(vth, 1), layer=name)


def _dense_weights(g, where: str, chain: _Chain) -> tuple[np.ndarray, int, tuple]:
    w = np.asarray(g["weight"][()], np.float64)
    if w.ndim != 2 or not np.isfinite(w).all() or np.any(w != np.round(w)):
        raise InputFileError(f"{where}: 'weight' must be a finite integer matrix "
                             f"(got shape {w.shape}); netx casts weights to int")
    if "delay" in g and np.any(np.asarray(g["delay"][()])):
        raise InputFileError(f"{where}: has synaptic delays (netx: DelayDense); layers with "
                             "delays are not read")
    n_out, n_in = w.shape
    if chain.shape is not None and len(chain.shape) > 1 and not chain.flatten \
            and chain.prev != INPUT:
        raise InputFileError(f"{where}: a dense layer after the {list(chain.shape)} layer "
                             f"'{chain.prev}' needs a flatten layer between them (netx "
                             "flattens (W, H, C) to (C, H, W) order only there)")
    n_prev = None if chain.shape is None else int(np.prod(chain.shape))
    if n_prev is not None and n_in != n_prev:
        raise InputFileError(f"{where}: inFeatures ({n_in}) differs from the previous "
                             f"layer's size ({n_prev})")
    try:
        lava_w, exp = netx_synapse_weights(w.astype(np.int64))
    except ValueError as exc:
        raise InputFileError(f"{where}: {exc}") from None
    return sp.csr_matrix(lava_w.astype(np.int32)), int(exp), (n_out,)


def _read_layer(g, key: str, chain: _Chain) -> None:
    """Add layer ``key`` (group ``g``) of the file to ``chain``."""
    from .netx_conv import chw_shape, conv_input_shape, read_conv, read_pool

    where = f"{chain.path}: layer {key}"
    kind = _text(g, "type") if "type" in g else "?"
    if kind in _REFUSED or kind not in _SUPPORTED:
        why = _REFUSED.get(kind, f"supported: {', '.join(_SUPPORTED)}")
        raise InputFileError(f"{where}: type '{kind}' is not supported ({why})")
    if kind == "input":
        if chain.pops or chain.shape is not None:
            raise InputFileError(f"{where}: an input layer after the first")
        if "neuron" in g:
            raise InputFileError(f"{where}: an input layer with a neuron (SLAYER's Input "
                                 "block): netx builds an Input block whose neuron never sees "
                                 "the network input; export without it (a shape only)")
        chain.shape = chain.input_shape = chw_shape(g, where)
        return
    if kind == "flatten":
        if chain.flatten or chain.shape is None:
            raise InputFileError(f"{where}: a flatten layer must follow a conv, pool or input "
                                 "layer")
        chain.flatten = True
        return
    x_max = chain.x_max if chain.prev == INPUT and chain.bits else 1
    if kind == "dense":
        weights, exp, shape = _dense_weights(g, where, chain)
    else:
        if chain.flatten:
            raise InputFileError(f"{where}: a {kind} layer after a flatten layer (netx "
                                 "flattens only into a dense layer)")
        if chain.shape is None:
            chain.shape = chain.input_shape = conv_input_shape(g, where, kind == "pool")
        read = read_conv if kind == "conv" else read_pool
        layer = read(g, where, chain.shape, x_max)
        weights, exp, shape = layer.weights, layer.weight_exp, layer.shape
    if chain.input_shape is None:
        chain.input_shape = (weights.shape[1],)
    name = str(g.attrs.get("name", f"layer{key}"))
    chain.pops.append(_population(g, where, name, shape, len(chain.pops) + 1))
    chain.kinds.append(kind)
    first = chain.prev == INPUT
    chain.groups.append(SynapseGroup(
        name=f"{chain.prev}->{name}", source=chain.prev, target=name, weights=weights,
        weight_exp=exp, num_message_bits=chain.bits if first else 0, delay=0, layer=name,
        kind="encoding" if first and chain.bits else "synapses"))
    chain.prev, chain.shape, chain.flatten = name, shape, False


def read_netx(path: str | Path, *, time_steps: int | None = None) -> Program:
    """The fixed-point program of a lava-dl netx HDF5 network (``netx.hdf5.Network``'s
    file; written by lava-dl/SLAYER or by :func:`write_netx`): a chain of CUBA layers,
    each a population of depth k (module docstring: ``du = iDecay - 1``, ``dv = vDecay``,
    ``vth = vThMant``, bias ``<< 6``). ``dense`` layers are fed by netx's own weights and
    exponent (:func:`netx_synapse_weights`); ``conv`` and ``pool`` layers by shared kernels
    and ``flatten`` orders a dense layer's input as netx does (:mod:`.netx_conv`); conv
    and pool populations have the (C, H, W) shape. The readout counts the last layer's
    spikes in netx's output order ((W, H, C) for a conv or pool layer).

    ``time_steps``: steps per sample (default: the file's ``time_steps`` attribute, which
    files of :func:`write_netx` carry). Layers of another type (average, convT, unpool,
    concat, recurrent, complex), sigma-delta or graded-spike neurons and synaptic delays
    raise :class:`InputFileError` naming the layer. The input reads binary spikes, or
    graded integers where the file says so (``input_message_bits``, files of
    :func:`write_netx`).
    """
    import h5py

    from .netx_conv import netx_order

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(f"{path}: not an HDF5 file netx can read ({exc})") from None
    with f:
        if "layer" not in f:
            raise InputFileError(f"{path}: no 'layer' group; not a netx network file")
        attrs = dict(f.attrs)
        keys = sorted(f["layer"], key=lambda k: int(k) if str(k).isdigit() else -1)
        if not keys or not all(str(k).isdigit() for k in keys):
            raise InputFileError(f"{path}: layer names must be 0, 1, 2, ...")
        steps = time_steps if time_steps is not None else attrs.get("time_steps")
        if steps is None:
            raise InputFileError(f"{path}: the file does not say its time steps per sample; "
                                 "give them (--time-steps)")
        chain = _Chain(path, int(attrs.get("input_message_bits", 0)),
                       int(attrs.get("input_levels", 1)), [], [], [])
        for key in keys:
            try:
                _read_layer(f["layer"][key], key, chain)
            except (ValueError, TypeError, KeyError) as exc:  # values that are not numbers
                if isinstance(exc, InputFileError):
                    raise
                raise InputFileError(f"{path}: layer {key}: unreadable values ("
                                     f"{type(exc).__name__}: {str(exc)[:60]})") from None
    if not chain.pops:
        raise InputFileError(f"{path}: no dense, conv or pool layer")
    last = chain.pops[-1]
    order = netx_order(last.shape)  # netx's output j is our neuron order[j]
    readout = Readout({last.name: sp.csr_matrix(
        (np.ones(last.size), (np.arange(last.size), order)), shape=(last.size, last.size))},
        np.zeros(last.size), 1.0, last.size)
    in_shape = tuple(json.loads(attrs["input_shape"])) if "input_shape" in attrs \
        else chain.input_shape
    return Program(tuple(chain.pops), tuple(chain.groups), (), readout, in_shape,
                   int(attrs.get("input_levels", 1)), int(steps),
                   metadata={"source": f"netx:{path.name}", "netx_layers": chain.kinds})


def is_netx_file(path) -> bool:
    """A lava-dl netx network file (``.net``/``.h5``/``.hdf5``, HDF5 with a ``layer``
    group), not a NIR graph."""
    path = Path(path)
    if not path.is_file() or path.suffix not in (".net", ".h5", ".hdf5"):
        return False
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "layer" in f and "nodes" not in f
    except OSError:
        return False


def place_netx(path, target, *, time_steps: int | None = None,
               **layout) -> tuple[Program, dict]:
    """The program of a netx file (:func:`read_netx`), validated and placed on ``target``
    (cores laid out by :func:`~.mesh.layout_cores` with ``layout``'s keywords), and its
    ``placement.json`` content."""
    from ..program.placement import summarize_placement
    from ..program.verify import check_program
    from .mesh import layout_cores
    from .partition import partition_program
    from .validate import validate_program

    program = check_program(read_netx(path, time_steps=time_steps), str(path))
    validate_program(program, target)
    placement = layout_cores(partition_program(program, target), program, target, **layout)
    return program, summarize_placement(placement, program).to_json()
