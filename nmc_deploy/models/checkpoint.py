"""Save and load Spikformer checkpoints.

A checkpoint is a ``torch.save`` archive holding only plain data (safe to read with
``torch.load(..., weights_only=True)``)::

    {"format": "nmc-deploy-checkpoint", "version": 1,
     "config": SpikformerConfig.to_dict(), "state_dict": {...}, "meta": {...}}

Every problem with a file given by the user is reported as one
:class:`~nmc_deploy.errors.CheckpointError` line with a hint, never as a torch traceback.
"""
from __future__ import annotations

import io
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..checks import input_file, newer_version, number
from ..errors import CheckpointError, NmcDeployError
from ..fileio import write_atomic
from .spikformer import Spikformer, SpikformerConfig

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "nmc-deploy-checkpoint"  # value of the "format" key
CHECKPOINT_VERSION = 1  # value of the "version" key this code writes and reads

_HINT_CREATE = "create one with `nmc-deploy train`"
_META_SCALARS = (str, int, float, bool, type(None))
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # first 8 bytes of every HDF5 file (e.g. .nir graphs)


def _check_meta(value: Any, where: str) -> None:
    """Reject meta values that ``torch.load(weights_only=True)`` could not read back."""
    # Exact types: numpy scalars subclass float but would be pickled as numpy objects.
    if type(value) in _META_SCALARS or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_meta(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointError(
                    f"{where}: key {key!r} is a {type(key).__name__}; meta keys must be strings")
            _check_meta(item, f"{where}[{key!r}]")
        return
    raise CheckpointError(
        f"{where}: value of type {type(value).__name__} cannot be stored; use str, int, float, "
        f"bool, None, lists, dicts or tensors (convert numpy values with .item() or .tolist())")


def save_checkpoint(path: str | Path, model: Spikformer, meta: dict | None = None) -> Path:
    """Write ``model`` and ``meta`` to ``path`` atomically.

    The archive is written to a temporary file in the same directory and then renamed
    over ``path`` (``os.replace``), so ``path`` never holds a half-written file; the
    temporary file is removed on failure.

    Parameters
    ----------
    path : str or Path
        Output file (conventionally ``*.pt``); its directory must exist.
    model : Spikformer
        The model; its ``config`` and ``state_dict()`` are stored.
    meta : dict, optional
        Free-form plain data (str/int/float/bool/None, lists, dicts, tensors), e.g. the
        data set name, training history and test accuracy.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    CheckpointError
        If the directory does not exist, ``meta`` holds values that cannot be stored, or
        the file cannot be written.
    """
    path = Path(path)
    if not isinstance(model, Spikformer):
        raise CheckpointError(
            f"{path}: can only save a Spikformer, got {type(model).__name__}")
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: meta must be a dict, got {type(meta).__name__}")
    _check_meta(meta, f"{path}: meta")
    directory = path.parent
    if not directory.is_dir():
        raise CheckpointError(f"{path}: directory '{directory}' does not exist; create it first")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    buf = io.BytesIO()  # in memory: torch's writer fails on a full disk without an errno
    try:
        torch.save(payload, buf)
        write_atomic(path, lambda f: f.write(buf.getbuffer()))
    except OSError as exc:
        from ..publish import write_error

        raise (write_error(exc, path, "choose another -o") or CheckpointError(
            f"{path}: cannot write checkpoint ({exc.strerror or exc})")) from None
    return path


def read_torch_archive(path: Path, *, hint: str = "give a checkpoint written by `nmc-deploy train`",
                       safe_globals: tuple = ()) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one CheckpointError line.

    ``safe_globals`` are extra classes allowed in the archive (e.g. ``argparse.Namespace``
    for timm checkpoints); ``hint`` ends the messages about files that are not archives.
    Used by :func:`load_checkpoint` and by the official-checkpoint importer.
    """
    input_file(path, f"check the path or {_HINT_CREATE}", error=CheckpointError,
               what="checkpoint file")  # a FIFO or device is refused unopened
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if magic == _HDF5_MAGIC:
        raise CheckpointError(
            f"{path}: is an HDF5 file (a .nir graph?), not a checkpoint; give the .pt file "
            f"written by `nmc-deploy train`")
    try:
        with torch.serialization.safe_globals(list(safe_globals)), warnings.catch_warnings():
            # torch's note on a pickle protocol it "might not support": the load below
            # either succeeds or becomes one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        text = str(exc)
        unsafe = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", text)
        if unsafe:  # never repeat torch's advice to load it unsafely
            raise CheckpointError(
                f"{path}: refused: it contains code (pickled objects, {unsafe.group(1)}), "
                "which nmc-deploy does not run; re-save the state_dict "
                f"(torch.save(model.state_dict(), ...)) or {hint}") from None
        if not is_zip and magic[:1] != b"\x80":
            raise CheckpointError(
                f"{path}: not a torch archive (empty, text, truncated or another format); "
                f"{hint}") from exc
        raise CheckpointError(
            f"{path}: unreadable torch archive ({type(exc).__name__}: {_error_detail(text)}); "
            f"the file may be corrupt") from exc


def _error_detail(text: str) -> str:
    """The most telling line of a torch.load error message."""
    _, sep, rest = text.partition("WeightsUnpickler error:")
    lines = [ln.strip() for ln in (rest if sep else text).splitlines() if ln.strip()]
    return lines[0] if lines else "no detail"


def load_checkpoint(path: str | Path) -> tuple[Spikformer, dict]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Uses ``torch.load(path, map_location="cpu", weights_only=True)``: no code in the file
    is ever run.

    Parameters
    ----------
    path : str or Path
        Checkpoint file.

    Returns
    -------
    model : Spikformer
        The model, in eval mode, on the CPU.
    meta : dict
        The ``meta`` dict stored with it.

    Raises
    ------
    CheckpointError
        If the file is missing, a directory, not a torch archive, not an nmc-deploy
        checkpoint, of another version, or its config or state_dict do not fit.
    """
    path = Path(path)
    ckpt = read_torch_archive(path)
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise CheckpointError(
            f"{path}: not an nmc-deploy checkpoint (no 'format' key); {_HINT_CREATE}")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: format ({ckpt['format']!r}) is not '{CHECKPOINT_FORMAT}'; {_HINT_CREATE}")
    newer_version(f"{path}: checkpoint", ckpt.get("version"), CHECKPOINT_VERSION,
                  error=CheckpointError)
    for key in ("config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(
                f"{path}: '{key}' entry is missing or not a dict; {_HINT_CREATE}")
    try:
        config = SpikformerConfig.from_dict(ckpt["config"])
    except (NmcDeployError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad config: {exc}") from exc

    number(config.time_steps, f"{path}", "config['time_steps']", lo=1, hi=1_000_000,
           integer=True, error=CheckpointError, hint="re-save the checkpoint")
    with torch.device("meta"):  # shapes only: a config of huge sizes allocates nothing
        expected = Spikformer(config).state_dict()
    state = ckpt["state_dict"]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short_list(unexpected)}")
        raise CheckpointError(
            f"{path}: state_dict does not match the config ({'; '.join(parts)}); "
            f"the file was edited or written by another version")
    for key, ref in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: state_dict['{key}'] is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{path}: state_dict['{key}'] has shape {tuple(value.shape)}, the config "
                f"needs {tuple(ref.shape)}; the file was edited or written by another version")
        _check_tensor(path, key, value, ref)
    model = Spikformer(config)  # the state_dict in the file has its sizes
    model.load_state_dict(state, strict=True)
    model.eval()
    meta = ckpt.get("meta", {})
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: 'meta' entry is a {type(meta).__name__}, not a dict")
    if "input_levels" in meta:  # export reads it: intensity levels of the input
        number(meta["input_levels"], f"{path}", "meta['input_levels']", lo=1, hi=2 ** 16,
               integer=True, error=CheckpointError, hint="re-save the checkpoint")
    return model, meta


def _check_tensor(path: Path, key: str, value, ref) -> None:
    """A state_dict entry of the expected kind of number, finite, variances >= 0."""
    if value.dtype.is_complex or value.dtype.is_floating_point != ref.dtype.is_floating_point:
        raise CheckpointError(f"{path}: state_dict['{key}'] holds {value.dtype} values, the "
                              f"model needs {ref.dtype}; re-save the state_dict")
    if value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise CheckpointError(f"{path}: state_dict['{key}'] has {bad} non-finite value(s) "
                              "(NaN or Inf); the training diverged: retrain or restore an "
                              "earlier checkpoint")
    if key.endswith("running_var") and bool((value < 0).any()):
        raise CheckpointError(f"{path}: state_dict['{key}'] has negative variances; the file "
                              "is corrupt: retrain or restore an earlier checkpoint")


def _short_list(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:limit])
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{shown}{more}"
