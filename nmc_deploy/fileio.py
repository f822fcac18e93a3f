"""Atomic file output: the one way nmc-deploy writes a file that another stage reads.

A writer gets a fresh sibling path (same directory, so the final ``os.replace`` is atomic on
one file system); when it returns, the temporary file is flushed to disk and renamed over the
destination; when it raises (or is interrupted), the temporary file is removed and the
destination is untouched. Temporary files are created by the writer itself, so they get the
process's umask like any other file (``tempfile.mkstemp`` would make them 0600).
"""
from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["atomic_path", "write_atomic", "write_text_atomic", "write_json_atomic",
           "json_default"]


def _sibling(path: Path, suffix: str) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp{suffix}"


@contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling path of ``path``; rename it over ``path`` on success.

    ``suffix`` ends the temporary name (writers such as ``np.savez`` append their own
    extension to a name without it). On any exception
    the temporary file is removed and re-raised; ``path`` keeps its old content.
    """
    path = Path(path)
    tmp = _sibling(path, suffix)
    try:
        yield tmp
        if tmp.exists():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, writer: Callable[[Any], None], *,
                 mode: str = "wb", **open_kwargs) -> Path:
    """Open a temporary sibling of ``path`` with ``mode``, call ``writer(file)``, rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, mode.replace("w", "x"), **open_kwargs) as f:
            writer(f)
            f.flush()
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically."""
    return write_atomic(path, lambda f: f.write(text), mode="w", encoding="utf-8",
                        newline="\n")


def json_default(o):
    """``json.dump`` fallback for numpy scalars and arrays."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as JSON (``indent=1``, numpy values converted) to ``path`` atomically."""
    return write_atomic(path, lambda f: json.dump(data, f, indent=1, default=json_default),
                        mode="w")
