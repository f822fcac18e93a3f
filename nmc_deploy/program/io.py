"""Files of the compile -> simulate -> report contract: the program directory, placement.json
and activity_<backend>.json.

A compiled program is a directory with ``program.json`` (everything but arrays) and
``program.npz`` (weights as CSR triplets, shared weights as their kernel; biases; format in
docs/architecture.md), each
written atomically (:mod:`nmc_deploy.fileio`). ``placement.json`` and the activity files are
read into their typed records (:class:`~nmc_deploy.program.placement.PlacementSummary`,
:class:`~nmc_deploy.program.activity.Activity`). Bad input raises a one-line
:class:`~nmc_deploy.errors.InputFileError`.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..checks import input_file, read_json
from ..errors import InputFileError
from ..fileio import write_atomic, write_text_atomic
from .activity import Activity
from .placement import PlacementSummary
from .program import Population, Program, SynapseGroup, TokenSelectOp
from .shared import AttentionOp, Readout
from .shared_weights import ConvShared, TokenShared
from .verify import check_manifest, check_program

__all__ = ["PROGRAM_FORMAT", "PROGRAM_VERSION", "PLACEMENT_FILE", "save_program",
           "load_program", "load_placement_summary", "activity_file", "load_activity"]

PROGRAM_FORMAT = "nmc-deploy-program"
PROGRAM_VERSION = 1
PLACEMENT_FILE = "placement.json"


def _csr_to(arrs: dict, key: str, m: sp.csr_matrix):
    m = sp.csr_matrix(m)
    arrs[f"{key}/data"] = m.data
    arrs[f"{key}/indices"] = m.indices
    arrs[f"{key}/indptr"] = m.indptr
    return list(m.shape)


def _csr_from(npz, key: str, shape) -> sp.csr_matrix:
    return sp.csr_matrix((npz[f"{key}/data"], npz[f"{key}/indices"], npz[f"{key}/indptr"]),
                         shape=tuple(shape))


# zlib level of program.npz: level 1 compresses the programs of the papers' models about as
# well as numpy's default (6) in a fraction of the time
NPZ_COMPRESS_LEVEL = 1


def _savez_fast(f, arrs: dict) -> None:
    """``np.savez_compressed(f, **arrs)`` at :data:`NPZ_COMPRESS_LEVEL` (``np.load`` reads
    it like any .npz)."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=NPZ_COMPRESS_LEVEL) as zf:
        for key, value in arrs.items():
            with zf.open(f"{key}.npy", mode="w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(value), allow_pickle=False)


def _readout_weights(npz, entries: dict) -> dict:
    """The readout matrices per source; sources naming one key share one matrix."""
    loaded: dict[str, sp.csr_matrix] = {}
    out = {}
    for src, w in entries.items():
        if w["key"] not in loaded:
            loaded[w["key"]] = _csr_from(npz, w["key"], w["shape"])
        out[src] = loaded[w["key"]]
    return out


def _weights_to(arrs: dict, key: str, w) -> tuple[list, dict | None]:
    """Store a group's weights under ``key``: ``(expanded shape, sharing record or None)``."""
    if isinstance(w, TokenShared):
        _csr_to(arrs, key, w.kernel)
        return list(w.shape), {"kind": "tokens", "n_tokens": w.n_tokens,
                               "kernel_shape": list(w.kernel.shape)}
    if isinstance(w, ConvShared):
        arrs[f"{key}/kernel"] = np.asarray(w.kernel)
        return list(w.shape), {"kind": "conv", "in_shape": list(w.in_shape),
                               "stride": list(w.stride), "padding": list(w.padding),
                               "dilation": list(w.dilation), "groups": w.groups}
    return _csr_to(arrs, key, w), None


def _weights_from(npz, key: str, shape, shared: dict | None):
    if shared is None:
        return _csr_from(npz, key, shape)
    if shared["kind"] == "tokens":
        return TokenShared(_csr_from(npz, key, shared["kernel_shape"]), shared["n_tokens"])
    if shared["kind"] == "conv":
        return ConvShared(npz[f"{key}/kernel"], tuple(shared["in_shape"]),
                          tuple(shared["stride"]), tuple(shared["padding"]),
                          tuple(shared["dilation"]), int(shared["groups"]))
    raise ValueError(f"unknown shared-weight kind {shared['kind']!r}")


def _ints(npz, key: str, where) -> np.ndarray:
    """An integer array of program.npz as int64 (a float or NaN there is corruption)."""
    a = npz[key]
    if a.dtype.kind not in "biu" or (a.dtype.kind == "u" and a.size
                                     and a.max() > np.iinfo(np.int64).max):
        raise InputFileError(f"{where}: {key} holds {a.dtype} values, not int64 integers; "
                             "run `nmc-deploy compile` again")
    return a.astype(np.int64)


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
        for key in ("du", "dv", "v_min"):
            if isinstance(getattr(p, key), np.ndarray):
                arrs[f"pop{i}/{key}"] = np.asarray(getattr(p, key), np.int32)
                d[key] = "per-neuron"
        pops.append(d)
    def group_dict(g, key):
        d = {k: v for k, v in asdict(g).items() if k != "weights"}
        d["shape"], shared = _weights_to(arrs, key, g.weights)
        if shared is not None:
            d["shared"] = shared
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
    stored: dict[tuple, str] = {}  # one matrix read by several sources is stored once
    for j, (src, m) in enumerate(ro.weights.items()):
        m = sp.csr_matrix(m)  # may be a new view of the same arrays: compare the buffers
        same = (m.shape, m.data.ctypes.data, m.indices.ctypes.data, m.indptr.ctypes.data)
        if same not in stored:
            stored[same] = f"readout{j}"
            _csr_to(arrs, stored[same], m)
        readout["weights"][src] = {"key": stored[same], "shape": list(m.shape)}
    arrs["readout/bias"] = np.asarray(ro.bias, np.float64)
    manifest = {
        "format": PROGRAM_FORMAT, "version": PROGRAM_VERSION,
        "input_shape": list(program.input_shape), "input_levels": program.input_levels,
        "time_steps": program.time_steps, "metadata": program.metadata,
        "populations": pops, "groups": groups,
        "attention": [a.to_json() for a in program.attention], "readout": readout,
        "token_selects": selects,
    }
    write_atomic(directory / "program.npz", lambda f: _savez_fast(f, arrs))
    write_text_atomic(directory / "program.json", json.dumps(manifest, indent=1))


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
    if not mpath.exists() and not mpath.is_symlink() or not apath.exists() \
            and not apath.is_symlink():
        raise InputFileError(f"{directory}: no compiled program (program.json/program.npz "
                             "missing); run `nmc-deploy compile` first")
    hint = "run `nmc-deploy compile` again"
    manifest = check_manifest(read_json(mpath, hint, what="program.json"), str(mpath),
                              PROGRAM_FORMAT, PROGRAM_VERSION)
    input_file(apath, hint, what="program.npz")
    try:
        npz = np.load(apath, allow_pickle=False)
        pops = tuple(
            Population(**{**d, "shape": tuple(d["shape"]),
                          "bias_mant": _ints(npz, f"pop{i}/bias_mant", apath),
                          **{key: (_ints(npz, f"pop{i}/{key}", apath)
                                   if d[key] == "per-neuron" else
                                   None if d[key] is None else int(d[key]))
                             for key in ("du", "dv", "v_min") if key in d}})
            for i, d in enumerate(manifest["populations"]))
        def group_of(d, key):
            d = dict(d)
            shape = d.pop("shape")
            shared = d.pop("shared", None)
            return SynapseGroup(**d, weights=_weights_from(npz, key, shape, shared))

        groups = [group_of(d, f"group{i}") for i, d in enumerate(manifest["groups"])]
        selects = []
        for i, d in enumerate(manifest.get("token_selects", [])):
            d = dict(d)
            inputs = tuple(group_of(g, f"sel{i}/in{j}") for j, g in enumerate(d.pop("inputs")))
            selects.append(TokenSelectOp(**d, inputs=inputs,
                                         **{k: _ints(npz, f"sel{i}/{k}", apath)
                                            for k in ("w1", "b1", "lut", "w_score")}))
        ro = manifest["readout"]
        readout = Readout(
            weights=_readout_weights(npz, ro["weights"]),
            bias=npz["readout/bias"], scale=float(ro["scale"]), num_outputs=int(ro["num_outputs"]),
            cumulative=bool(ro.get("cumulative", False)))
        program = Program(populations=pops, groups=tuple(groups),
                          attention=tuple(AttentionOp.from_json(a)
                                          for a in manifest["attention"]),
                          readout=readout, input_shape=tuple(manifest["input_shape"]),
                          input_levels=int(manifest["input_levels"]),
                          time_steps=int(manifest["time_steps"]), metadata=manifest["metadata"],
                          token_selects=tuple(selects))
    except InputFileError:
        raise
    except Exception as exc:
        raise InputFileError(f"{directory}: corrupt compiled program (program.json/program.npz"
                             f", {type(exc).__name__}: {str(exc)[:80]}); {hint}") from None
    return check_program(program, str(mpath), str(apath))


def load_placement_summary(directory: str | Path) -> PlacementSummary:
    """Read ``placement.json`` of a compiled program directory into its typed summary."""
    path = Path(directory) / PLACEMENT_FILE
    if not path.exists() and not path.is_symlink():
        raise InputFileError(f"{directory}: placement.json missing; run `nmc-deploy compile` again")
    data = read_json(path, "run `nmc-deploy compile` again", what="placement.json")
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: not a JSON object; run `nmc-deploy compile` again")
    return PlacementSummary.from_json(data, str(path))


def activity_file(directory: str | Path, backend: str) -> Path:
    """Path of the activity a ``backend`` simulation wrote into a program directory."""
    return Path(directory) / f"activity_{backend}.json"


def load_activity(directory: str | Path, backend: str) -> Activity:
    """Read ``activity_<backend>.json`` of a program directory into a typed :class:`Activity`."""
    path = activity_file(directory, backend)
    if not path.exists() and not path.is_symlink():
        raise InputFileError(f"{path}: no simulated activity; run `nmc-deploy simulate "
                             f"{directory} --backend reference` first")
    data = read_json(path, f"run `nmc-deploy simulate {directory}` again", what="activity file")
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: not a JSON object; run `nmc-deploy simulate` again")
    return Activity.from_json(data, str(path))
