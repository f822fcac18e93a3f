"""Value coercion between nir and the graph IR: arrays, scalars, shapes and metadata.

NIR parameters arrive as numpy arrays, numbers, lists or CPU torch tensors; NIR metadata comes
back from HDF5 as numpy scalars and bytes. These helpers turn both into what the graph IR
holds, and IR metadata into what NIR can store. They import neither nir nor torch.
"""
from __future__ import annotations

import numpy as np

__all__ = ["to_array", "to_numpy", "to_scalar", "to_shape", "to_storable_metadata",
           "to_plain", "to_plain_graph_metadata", "format_shape", "kind_of"]


def to_array(x, dtype=None) -> np.ndarray:
    """A fresh numpy array (always a copy) of ``x``, for a NIR node field."""
    return np.array(x, dtype=dtype)


def to_numpy(x) -> np.ndarray | None:
    """A numpy array from a numpy array, number, list or CPU torch tensor (no torch import)."""
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def to_scalar(x) -> float:
    """The first element of ``x`` as a float (NIR stores scalars as 0-d or 1-element arrays)."""
    return float(np.ravel(to_numpy(x))[0])


def to_shape(x) -> tuple[int, ...] | None:
    """A shape tuple from a NIR type entry (array/list/None)."""
    if x is None:
        return None
    return tuple(int(v) for v in np.ravel(to_numpy(x)))


def to_storable_metadata(m) -> dict:
    """Metadata that NIR can store (no None values, at any depth)."""
    out = {}
    for k, v in dict(m or {}).items():
        if v is None:
            continue
        out[k] = to_storable_metadata(v) if isinstance(v, dict) else v
    return out


def to_plain(value):
    """NIR metadata comes back as numpy scalars/bytes; make it plain Python."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [v.decode() if isinstance(v, bytes) else v for v in value.tolist()]
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_plain_graph_metadata(value):
    """Graph-level metadata as plain Python down to lists (it ends up in program.json)."""
    value = to_plain(value)
    if isinstance(value, dict):
        return {k: to_plain_graph_metadata(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def format_shape(shape) -> str:
    """``shape`` as a tuple string for messages, or ``"unknown"``."""
    return str(tuple(int(s) for s in shape)) if shape is not None else "unknown"


def kind_of(node) -> str:
    """The NIR type name of ``node`` (its class name; extensions are renamed to theirs)."""
    return type(node).__name__
