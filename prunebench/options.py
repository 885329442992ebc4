"""Typed options: one frozen dataclass per method, schedule, retrain mode and structure.

OpenLTH's hparams pattern. Every registry entry declares the options it reads as a frozen
dataclass with defaults and a one-line help per field (:func:`opt`). Composition builds
it with :meth:`Options.parse`, which

- rejects unknown keys, naming the key and listing the valid ones;
- parses strictly: ``true``/``false`` only for booleans (``no`` is an error, not True),
  integers for integer fields, numbers in range;
- and :meth:`Options.identity` drops every field equal to its default, so spelling out a
  default (``+schedule.frequency=10``) or adding a new defaulted option leaves run ids
  unchanged.

This module imports no torch: bad values are reported within a second or two of launch.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from prunebench.errors import ConfigError, check_range

O = TypeVar("O", bound="Options")

_TRUE = {True}
_FALSE = {False}


def opt(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    choices: Sequence[str] | None = None,
    parse: Callable[[Any, str], Any] | None = None,
) -> Any:
    """A typed option field: its default, one-line help, and the range or choices it takes."""
    meta = {"help": help, "low": low, "high": high, "low_inclusive": low_inclusive,
            "high_inclusive": high_inclusive, "choices": tuple(choices) if choices else None, "parse": parse}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def parse_bool(value: Any, key: str) -> bool:
    """``true``/``false`` (YAML booleans) only: a string such as ``no`` or ``off`` is an error."""
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}={value!r} must be true or false")


def parse_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise ConfigError(f"{key}={value!r} must be an integer")
    return int(value)


def parse_float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r} must be a number")
    if not math.isfinite(float(value)):  # nan, and inf too: no rate, size or fraction is infinite
        raise ConfigError(f"{key}={value!r} must be a finite number")
    return float(value)


def parse_str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}={value!r} must be a string")
    return value


def parse_str_list(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}={value!r} must be a list of strings (e.g. {key}=[features.0,classifier])")
    return tuple(value)


_PARSERS: dict[Any, Callable[[Any, str], Any]] = {bool: parse_bool, int: parse_int, float: parse_float, str: parse_str}


def _field_parser(tp: Any) -> tuple[Callable[[Any, str], Any], bool]:
    """(parser, optional) for a resolved annotation."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0] if len(args) == 1 else tp
        origin = typing.get_origin(tp)
    if origin in (tuple, list) or tp in (tuple, list):
        return parse_str_list, optional
    if tp in _PARSERS:
        return _PARSERS[tp], optional
    return (lambda v, k: v), optional


def _check_range(value: Any, key: str, meta: Mapping[str, Any]) -> None:
    low, high = meta.get("low"), meta.get("high")
    if low is not None or high is not None:
        check_range(key, value, low, high, low_inclusive=meta["low_inclusive"], high_inclusive=meta["high_inclusive"])


@dataclass(frozen=True)
class Options:
    """Base class of every option dataclass (an entry with no options uses it as is)."""

    #: Keys accepted in the config node but not options of this entry (e.g. the entry's name).
    owner: ClassVar[str] = ""

    @classmethod
    def fields(cls) -> list[dataclasses.Field[Any]]:
        return [f for f in dataclasses.fields(cls) if f.init]

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in cls.fields()]

    @classmethod
    def parse(cls: type[O], node: Mapping[str, Any], path: str, *, what: str = "") -> O:
        """Build from a plain mapping; ConfigError for unknown keys and bad values."""
        known = set(cls.keys())
        unknown = [k for k in node if k not in known]
        if unknown:
            raise unknown_key(path, unknown[0], sorted(known), what)
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in cls.fields():
            if f.name not in node:
                continue
            key = f"{path}.{f.name}"
            raw = node[f.name]
            parser, optional = _field_parser(hints[f.name])
            if f.metadata.get("parse") is not None:
                parser = f.metadata["parse"]
            if raw is None:
                if not optional and _default(f) is not None:
                    raise ConfigError(f"{key}=null is not allowed; expected a value like {_default(f)!r}")
                values[f.name] = None
                continue
            value = parser(raw, key)
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise ConfigError(f"{key}={value!r} is not a known name; valid: {', '.join(choices)}")
            _check_range(value, key, f.metadata)
            values[f.name] = value
        obj = cls(**values)
        obj.check(path)
        return obj

    def check(self, path: str) -> None:
        """Cross-field checks (override); raise ConfigError naming the keys."""

    def identity(self) -> dict[str, Any]:
        """Fields that differ from their defaults (what names a run)."""
        out: dict[str, Any] = {}
        for f in self.fields():
            value = getattr(self, f.name)
            if _same(value, _default(f)):
                continue
            out[f.name] = _plain(value)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in self.fields()}

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """(key, type, default, help) per option, for ``prunebench describe``."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in cls.fields():
            tp = hints[f.name]
            name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
            help_ = f.metadata.get("help", "")
            if f.metadata.get("choices"):
                help_ += f" ({' | '.join(f.metadata['choices'])})"
            rows.append((f.name, name, _default(f), help_))
        return rows


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _plain(value: Any) -> Any:
    if isinstance(value, Options):
        return value.identity()
    ident = getattr(value, "identity", None)
    if callable(ident):
        return ident()
    if isinstance(value, tuple):
        return list(value)
    return value


def unknown_key(path: str, key: str, valid: Sequence[str], what: str = "") -> ConfigError:
    where = f" of {what}" if what else ""
    name = key if path == "config" else f"{path}.{key}"
    kind = "a config key" if path == "config" else "an option"
    return ConfigError(f"{name} is not {kind}{where}; valid: {', '.join(valid) or '(none)'}")
