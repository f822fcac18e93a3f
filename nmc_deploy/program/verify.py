"""A compiled program read back from disk, checked before any simulation or report uses it.

``program.json`` and ``program.npz`` are files a user can edit, truncate or replace; the
simulators index arrays with their values (an out-of-range CSR index crashed scipy with
SIGSEGV). :func:`check_manifest` checks the JSON before anything is built (format, version,
shapes, time steps), :func:`check_program` the built :class:`~.program.Program`: every
population's registers within Lava's fixed-point ranges (:data:`~nmc_deploy.loihi.LAVA_LIF`),
every group's weights a consistent CSR matrix of the right shape whose indices lie inside it
and whose values lie on the 8-bit weight grid, finite readout weights. One line per problem,
naming the file and the field.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..checks import finite, newer_version, number
from ..errors import InputFileError
from ..loihi.constants import GRADED_BITS, LAVA_LIF, LAVA_SYNAPSE
from .shared import LI, RELAY
from .shared_weights import ConvShared, TokenShared

__all__ = ["check_manifest", "check_program", "MAX_TIME_STEPS", "MAX_NEURONS"]

MAX_TIME_STEPS = 1_000_000  # as nirio.values: a simulation holds B x T x n arrays
MAX_NEURONS = 2 ** 31 - 1  # int32 CSR indices
POPULATION_KINDS = ("lif", "threshold", LI, RELAY)
_HINT = "run `nmc-deploy compile` again"


def _int(value, where, field, lo, hi):
    return number(value, where, field, lo=lo, hi=hi, integer=True, hint=_HINT,
                  error=InputFileError)


def _shape(value, where, field) -> tuple:
    if not isinstance(value, (list, tuple)) or not value:
        raise InputFileError(f"{where}: {field} ({value!r}) is not a shape; {_HINT}")
    shape = tuple(_int(v, where, field, 1, MAX_NEURONS) for v in value)
    if math.prod(shape) > MAX_NEURONS:
        raise InputFileError(f"{where}: {field} {shape} holds more than {MAX_NEURONS:,} "
                             f"entries; {_HINT}")
    return shape


def check_manifest(manifest, where: str, fmt: str, version: int) -> dict:
    """The top level of ``program.json``: format tag, version (newer ones ask for an
    upgrade), input shape, time steps, input levels and the kinds of the sections."""
    if not isinstance(manifest, dict):
        raise InputFileError(f"{where}: not a JSON object; {_HINT}")
    if manifest.get("format") != fmt:
        raise InputFileError(f"{where}: format ({manifest.get('format')!r}) is not '{fmt}'; "
                             f"give the program.json of `nmc-deploy compile`")
    newer_version(where, manifest.get("version"), version)
    _shape(manifest.get("input_shape"), where, "input_shape")
    _int(manifest.get("time_steps"), where, "time_steps", 1, MAX_TIME_STEPS)
    _int(manifest.get("input_levels"), where, "input_levels", 1, 2 ** GRADED_BITS)
    for key, kind in (("populations", list), ("groups", list), ("readout", dict),
                      ("metadata", dict), ("attention", list)):
        if not isinstance(manifest.get(key), kind):
            raise InputFileError(f"{where}: {key} is missing or not a JSON "
                                 f"{'array' if kind is list else 'object'}; {_HINT}")
    if not manifest["populations"]:
        raise InputFileError(f"{where}: populations is empty; {_HINT}")
    dt = manifest["metadata"].get("dt")
    if dt is not None:
        number(dt, where, "metadata.dt", lo=0, lo_open=True, hint=_HINT, error=InputFileError)
    return manifest


def _check_population(p, where: str, arrays: str) -> None:
    w = f"{where}: population '{p.name}'"
    wn = f"{arrays}: population '{p.name}'"
    shape = _shape(list(p.shape), w, "shape")
    if p.kind not in POPULATION_KINDS:
        raise InputFileError(f"{w}: kind ({p.kind!r}) is not one of "
                             f"{', '.join(POPULATION_KINDS)}; {_HINT}")
    bias = finite(p.bias_mant, wn, "bias_mant", _HINT)
    if bias.shape != (math.prod(shape),):
        raise InputFileError(f"{wn}: bias_mant has {bias.size} entries, shape {shape} needs "
                             f"{math.prod(shape)}; {_HINT}")
    for field, hi in (("du", LAVA_LIF.max_du), ("dv", LAVA_LIF.max_dv)):
        value = finite(getattr(p, field), wn if np.ndim(getattr(p, field)) else w, field, _HINT)
        if value.size and (value.min() < 0 or value.max() > hi):
            raise InputFileError(f"{w}: {field} ({value.min()}..{value.max()}) is outside its "
                                 f"register (0..{hi}); {_HINT}")
    _int(p.vth, w, "vth", 0, LAVA_LIF.max_vth)
    _int(p.bias_exp, w, "bias_exp", 0, LAVA_LIF.bias_exp_max)
    _int(p.depth, w, "depth", 0, MAX_NEURONS)
    number(p.scale, w, "scale", hint=_HINT, error=InputFileError)
    big = np.abs(bias.astype(np.float64)).max() if bias.size else 0
    if big > 2 ** (GRADED_BITS - 1):
        raise InputFileError(f"{wn}: bias_mant ({big:.0f}) exceeds the "
                             f"{GRADED_BITS}-bit state ({2 ** (GRADED_BITS - 1)}); {_HINT}")


def _check_csr(m, where: str, shape: tuple, *, integer: bool) -> None:
    """A CSR matrix whose arrays agree with each other and with ``shape``, indices inside
    it, values finite (and on the weight grid for ``integer``), before any product."""
    if not sp.issparse(m) or m.format != "csr":
        raise InputFileError(f"{where}: weights are not a CSR matrix; {_HINT}")
    if tuple(m.shape) != tuple(shape):
        raise InputFileError(f"{where}: weight shape {tuple(m.shape)} is not {tuple(shape)} "
                             f"(target x source neurons); {_HINT}")
    indptr, indices, data = np.asarray(m.indptr), np.asarray(m.indices), np.asarray(m.data)
    if indptr.shape != (shape[0] + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0) \
            or indptr[-1] != len(indices) or len(indices) != len(data):
        raise InputFileError(f"{where}: CSR indptr is inconsistent (length {len(indptr)}, "
                             f"{len(indices)} indices, {len(data)} values); {_HINT}")
    if indices.size and (indices.min() < 0 or indices.max() >= shape[1]):
        bad = int(indices.min()) if indices.min() < 0 else int(indices.max())
        raise InputFileError(f"{where}: CSR column index ({bad}) is outside 0..{shape[1] - 1}; "
                             f"{_HINT}")
    data = finite(data, where, "weights", _HINT)
    if integer and data.size:
        limit = LAVA_SYNAPSE.weight_max
        if np.any(data != np.round(data)) or np.abs(data).max() > limit:
            raise InputFileError(f"{where}: weight ({np.abs(data).max():g}) is off the "
                                 f"{LAVA_SYNAPSE.max_weight_bits}-bit weight grid (integers, "
                                 f"|w| <= {limit}); {_HINT}")


def _check_group(program, g, where: str, arrays: str, sizes: dict) -> None:
    w = f"{where}: group '{g.name}'"
    wn = f"{arrays}: group '{g.name}'"
    if g.target not in sizes:
        raise InputFileError(f"{w}: target ({g.target!r}) is not a population; {_HINT}")
    kinds = program.source_kinds()
    if g.source not in kinds:
        raise InputFileError(f"{w}: source ({g.source!r}) is not a population, the input or "
                             f"an op; {_HINT}")
    _int(g.weight_exp, w, "weight_exp", LAVA_LIF.weight_exp_min, LAVA_LIF.weight_exp_max)
    _int(g.delay, w, "delay", 0, MAX_TIME_STEPS)
    _int(g.lag, w, "lag", 0, MAX_TIME_STEPS)
    _int(g.num_message_bits, w, "num_message_bits", 0, GRADED_BITS)
    shape = (sizes[g.target], program.source_size(g.source))
    weights = g.weights
    if isinstance(weights, TokenShared):
        if tuple(weights.shape) != shape:
            raise InputFileError(f"{w}: weight shape {tuple(weights.shape)} is not {shape}; "
                                 f"{_HINT}")
        kernel = weights.kernel
        _check_csr(kernel, wn, tuple(kernel.shape), integer=True)
        if kernel.shape[0] * weights.n_tokens != shape[0]:
            raise InputFileError(f"{w}: shared kernel {tuple(kernel.shape)} x "
                                 f"{weights.n_tokens} tokens is not {shape}; {_HINT}")
    elif isinstance(weights, ConvShared):
        kernel = finite(weights.kernel, wn, "kernel", _HINT)
        if tuple(weights.shape) != shape or np.any(kernel != np.round(kernel)) or (
                kernel.size and np.abs(kernel).max() > LAVA_SYNAPSE.weight_max):
            raise InputFileError(f"{w}: convolution kernel does not fit shape {shape} or the "
                                 f"weight grid; {_HINT}")
    else:
        _check_csr(weights, wn, shape, integer=True)


def check_program(program, where: str, arrays: str | None = None):
    """Refuse a built program whose values the simulators cannot run (module docstring);
    messages name ``where`` (the file of the scalar fields, e.g. program.json) or
    ``arrays`` (of the arrays, e.g. program.npz; default ``where``)."""
    arrays = arrays or where
    _shape(list(program.input_shape), where, "input_shape")
    _int(program.time_steps, where, "time_steps", 1, MAX_TIME_STEPS)
    _int(program.input_levels, where, "input_levels", 1, 2 ** GRADED_BITS)
    for p in program.populations:
        _check_population(p, where, arrays)
    sizes = {p.name: p.size for p in program.populations}
    if len(sizes) != len(program.populations):
        raise InputFileError(f"{where}: two populations share a name; {_HINT}")
    for g in program.groups:
        _check_group(program, g, where, arrays, sizes)
    for t in program.token_selects:
        for g in t.inputs:  # into the selector: a CSR of its own shape
            if sp.issparse(g.weights):
                _check_csr(g.weights, f"{arrays}: group '{g.name}'", tuple(g.weights.shape),
                           integer=True)
    ro = program.readout
    w = f"{where}: readout"
    _int(ro.num_outputs, w, "num_outputs", 1, MAX_NEURONS)
    number(ro.scale, w, "scale", hint=_HINT, error=InputFileError)
    bias = finite(ro.bias, f"{arrays}: readout", "bias", _HINT)
    if bias.shape != (ro.num_outputs,):
        raise InputFileError(f"{w}: bias has {bias.size} entries, not num_outputs "
                             f"({ro.num_outputs}); {_HINT}")
    for src, m in ro.weights.items():
        if src not in sizes and src not in program.source_kinds():
            raise InputFileError(f"{w}: source ({src!r}) is not a population; {_HINT}")
        _check_csr(m, f"{arrays}: readout of '{src}'", (ro.num_outputs, program.source_size(src)),
                   integer=False)
    return program
