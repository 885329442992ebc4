"""A tiny name → factory registry shared by models, data sets and pruning pieces."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Container, Iterator
from typing import Generic, TypeVar

from prunebench.errors import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase names to objects; unknown names raise a ConfigError listing the valid ones.

    ``key`` is the config key users set to choose an entry (e.g. ``"model"``), so the
    error message tells them exactly what to change. ``catalog``: the names the configs may
    choose (:mod:`prunebench.catalog`, torch-free); registering a name it lacks is refused, so
    the catalog and the registry agree as soon as the package loads (a plugin adds its name
    to the catalog first: ``catalog.CRITERIA.add("mine", MyOptions)``).
    """

    def __init__(self, key: str, catalog: Container[str] | None = None) -> None:
        self.key = key
        self.catalog = catalog
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            n = name or getattr(obj, "__name__")
            if n in self._entries:
                raise KeyError(f"{self.key} {n!r} registered twice")
            if self.catalog is not None and n not in self.catalog:
                raise KeyError(f"{self.key} {n!r} is not in prunebench.catalog, so no config could choose it: add it "
                               f"there first (a plugin: catalog.<NAME>.add({n!r}, its options class))")
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
