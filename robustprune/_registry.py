"""One small registry type for every named thing (selection methods, models, datasets, learners).

Each registry maps canonical names to entries, accepts aliases, and looks names up under one rule: case and
surrounding spaces are ignored and ``-`` and ``_`` are the same character, so ``Fashion_MNIST``,
``fashion-mnist`` and ``FASHION-MNIST`` all find ``fashion-mnist``. An unknown name is a ``ValueError``
that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "normalize_name"]

T = TypeVar("T")


def normalize_name(name: str) -> str:
    """The lookup key of a name: lower case, stripped, ``-`` read as ``_``."""
    return name.strip().lower().replace("-", "_")


class Registry(Generic[T]):
    """Entries by canonical name, with aliases; ``kind`` names the things in error messages."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, T] = {}
        self._keys: dict[str, str] = {}  # lookup key (names and aliases) -> canonical name
        self._aliases: dict[str, tuple[str, ...]] = {}

    def add(self, name: str, entry: T, aliases: tuple[str, ...] = ()) -> None:
        """Register ``entry`` as ``name``; a name or alias that is taken is an error."""
        for key in (name, *aliases):
            if normalize_name(key) in self._keys:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
        self._entries[name] = entry
        self._aliases[name] = tuple(aliases)
        for key in (name, *aliases):
            self._keys[normalize_name(key)] = name

    def canonical(self, name: str) -> str:
        """The canonical name for ``name`` or one of its aliases."""
        if not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a string, got {name!r}")
        key = normalize_name(name)
        if key not in self._keys:
            raise ValueError(f"unknown {self.kind} {name!r}; known {self.plural}: {', '.join(self.names())}")
        return self._keys[key]

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def aliases(self, name: str) -> tuple[str, ...]:
        return self._aliases[self.canonical(name)]

    def remove(self, name: str) -> None:
        """Forget ``name`` and its aliases (nothing happens for an unknown name)."""
        if name not in self:
            return
        canonical = self.canonical(name)
        for key in (canonical, *self._aliases.pop(canonical)):
            self._keys.pop(normalize_name(key), None)
        del self._entries[canonical]

    def names(self) -> list[str]:
        """Canonical names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
