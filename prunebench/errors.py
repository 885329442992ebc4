"""Errors raised on bad user input.

Everything a user can get wrong (an unknown name, a value out of range, a missing or
corrupt file) raises :class:`ConfigError` *before* any training starts, with a message
that names the offending key and value and, for names, lists the valid choices.
"""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """Bad user input: the message names the key, the value and the fix."""


class DataNotFoundError(ConfigError, FileNotFoundError):
    """A data set is missing on disk and may not be downloaded."""


class CorruptFileError(ConfigError):
    """A checkpoint, mask or results file exists but cannot be read back."""


def unknown_name(key: str, value: object, valid: Iterable[str]) -> ConfigError:
    """Build the standard error for an unknown registry name."""
    choices = ", ".join(sorted(valid))
    return ConfigError(f"{key}={value!r} is not a known name; valid: {choices}")


def check_range(
    key: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = False,
) -> float:
    """Return ``value`` or raise ConfigError naming ``key`` when it leaves the range."""
    ok = True
    if low is not None:
        ok &= value >= low if low_inclusive else value > low
    if high is not None:
        ok &= value <= high if high_inclusive else value < high
    if value != value:  # NaN
        ok = False
    if not ok:
        lo = "" if low is None else ("[" if low_inclusive else "(") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + ("]" if high_inclusive else ")")
        rng = f"{lo or '(-inf'}, {hi or 'inf)'}"
        raise ConfigError(f"{key}={value!r} is out of range; expected a value in {rng}")
    return value
