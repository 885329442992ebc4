"""A tiny name → factory registry shared by models, data sets and pruning pieces."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from prunebench.errors import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase names to objects; unknown names raise a ConfigError listing the valid ones.

    ``key`` is the config key users set to choose an entry (e.g. ``"model"``), so the
    error message tells them exactly what to change.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            n = name or getattr(obj, "__name__")
            if n in self._entries:
                raise KeyError(f"{self.key} {n!r} registered twice")
            self._entries[n] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.key, name, self._entries) from None

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
