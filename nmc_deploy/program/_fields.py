"""Field readers for the JSON records of program/: one-line errors that name the field.

Each reader takes the dict ``d`` holding the field, its ``key`` and ``where`` (the path of
``d`` in its file, e.g. ``"activity: layers[2]"``) and returns the value or raises
:class:`~nmc_deploy.errors.InputFileError` ``"<where>: <problem>"``.
"""
from __future__ import annotations

from numbers import Integral, Real
from typing import Any

from ..errors import InputFileError

__all__ = ["read_count", "read_text", "read_list", "read_fraction", "read_dict",
           "optional_count", "optional_text", "put_present", "read_ints"]


def _value(d: dict, key: str, where: str) -> Any:
    if key not in d:
        raise InputFileError(f"{where}: missing key '{key}'")
    return d[key]


def _typed(d: dict, key: str, where: str, types, what: str) -> Any:
    value = _value(d, key, where)
    if not isinstance(value, types):
        raise InputFileError(f"{where}: '{key}' must be {what}")
    return value


def read_count(d: dict, key: str, where: str, minimum: int = 0) -> int:
    """An integer ``>= minimum`` (an integral float such as ``3.0`` is taken as ``3``)."""
    value = _value(d, key, where)
    if isinstance(value, bool) or not isinstance(value, Integral):
        if isinstance(value, Real) and float(value).is_integer():
            value = int(value)
        else:
            raise InputFileError(f"{where}: '{key}' must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise InputFileError(f"{where}: '{key}' ({value}) is below {minimum}")
    return value


def read_text(d: dict, key: str, where: str) -> str:
    """A string."""
    value = _value(d, key, where)
    if not isinstance(value, str):
        raise InputFileError(f"{where}: '{key}' must be a string, got {value!r}")
    return value


def read_list(d: dict, key: str, where: str) -> list:
    """A list (or tuple), returned as a new list."""
    return list(_typed(d, key, where, (list, tuple), "a list"))


def read_ints(d: dict, key: str, where: str) -> tuple[int, ...]:
    """A list of integers ``>= 0`` (e.g. a grid position), as a tuple."""
    return tuple(read_count({key: v}, key, where) for v in read_list(d, key, where))


def read_fraction(d: dict, key: str, where: str) -> float:
    """A number in [0, 1] (a missing key reads as ``None`` and fails the same way)."""
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
        raise InputFileError(f"{where}: '{key}' must be a number in [0, 1], got {value!r}")
    return float(value)


def read_dict(d: dict, key: str, where: str) -> dict:
    """A dict (the same object: opaque records are carried, not copied)."""
    return _typed(d, key, where, dict, "a dict")


def optional_count(d: dict, key: str, where: str) -> int | None:
    """:func:`read_count` (minimum 0) if ``key`` is present, else ``None``."""
    return read_count(d, key, where) if key in d else None


def optional_text(d: dict, key: str, where: str) -> str | None:
    """:func:`read_text` if ``key`` is present, else ``None``."""
    return read_text(d, key, where) if key in d else None


def put_present(out: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Add the ``fields`` that are not ``None`` to ``out`` (in order); return ``out``."""
    out.update((k, v) for k, v in fields.items() if v is not None)
    return out
