"""Immutable containers for frozen records (stdlib only)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping

__all__ = ["ReadOnlyMapping"]


class ReadOnlyMapping(Mapping):
    """An immutable mapping that, unlike ``types.MappingProxyType``, pickles and deep-copies."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping | None = None):
        object.__setattr__(self, "_data", dict(data or {}))

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setattr__(self, name, value):
        raise AttributeError("ReadOnlyMapping is immutable")

    def __reduce__(self):
        return (ReadOnlyMapping, (self._data,))

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return f"ReadOnlyMapping({self._data!r})"
