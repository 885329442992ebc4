"""Optuna search spaces written in Hydra's override grammar.

A search space maps a config key (or a config group) to a sweep expression, exactly as on
Hydra's command line::

    schedule.target_sparsity: interval(0.5, 0.98)       # float, uniform
    retrain.lr: tag(log, interval(1e-4, 1e-2))          # float, log scale
    schedule.iterations: range(1, 5)                    # int 1..4 (Hydra's range: stop excluded)
    pruning: choice(magnitude, random)                  # categorical (here a config group)
    pruning.scope: choice(global, layer)

``tag(int, interval(a, b))`` makes an integer interval with both ends included. A plain
value (``train.epochs: 3``) is fixed for every trial. The keys become the Optuna parameter
names, so the study reads the same in optuna-dashboard as on the command line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from prunebench.errors import ConfigError

_SIMPLE = re.compile(r"^[A-Za-z_][\w\-./]*$")
_KEYWORDS = {"null", "true", "false", "nan", "inf", "none"}


def flatten(params: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """``{"schedule": {"iterations": "range(1,5)"}}`` → ``{"schedule.iterations": "range(1,5)"}``.

    Nested mappings let a preset be overridden key by key from the command line
    (``sweep.params.retrain.lr=...``); dotted keys are accepted too.
    """
    out: dict[str, Any] = {}
    for key, value in (params or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif value is not None:  # null removes a preset's parameter
            out[name] = value
    return out


def format_value(value: Any) -> str:
    """A Python value as the right-hand side of a Hydra override (strings quoted when needed)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _SIMPLE.match(text) and text.lower() not in _KEYWORDS:
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Param:
    """One searched parameter: its override key (``+`` prefix kept) and Optuna distribution."""

    key: str
    distribution: BaseDistribution
    expression: str

    @property
    def name(self) -> str:
        """The Optuna parameter name: the key without Hydra's ``+``/``++`` prefix."""
        return self.key.lstrip("+")


@dataclass(frozen=True)
class SearchSpace:
    """Searched parameters plus overrides fixed for every trial."""

    params: tuple[Param, ...]
    fixed: tuple[str, ...] = field(default_factory=tuple)

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {p.name: p.distribution for p in self.params}

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """Hydra overrides for one trial: the fixed ones, then each sampled value."""
        return [*self.fixed, *(f"{p.key}={format_value(values[p.name])}" for p in self.params)]

    def corners(self) -> list[dict[str, Any]]:
        """Parameter settings that together touch every bound and every choice.

        Composing and validating each of them before the first trial catches unknown keys,
        unknown group options and out-of-range values (``schedule.target_sparsity`` ≥ 1).
        """
        low = {p.name: _bounds(p.distribution)[0] for p in self.params}
        high = {p.name: _bounds(p.distribution)[1] for p in self.params}
        out = [low, high] if self.params else [{}]
        for p in self.params:
            if isinstance(p.distribution, CategoricalDistribution):
                out.extend({**low, p.name: c} for c in p.distribution.choices[1:])
        unique: list[dict[str, Any]] = []
        for c in out:
            if c not in unique:
                unique.append(c)
        return unique

    def grid(self) -> dict[str, list[Any]]:
        """The search space as Optuna's GridSampler wants it (choices and ranges only)."""
        out: dict[str, list[Any]] = {}
        for p in self.params:
            d = p.distribution
            if isinstance(d, CategoricalDistribution):
                out[p.name] = list(d.choices)
            elif isinstance(d, IntDistribution) and not d.log:
                out[p.name] = list(range(d.low, d.high + 1, d.step))
            elif isinstance(d, FloatDistribution) and d.step is not None:
                n = int(round((d.high - d.low) / d.step))
                out[p.name] = [round(d.low + i * d.step, 12) for i in range(n + 1)]
            else:
                raise ConfigError(f"sweep.sampler=grid needs choice(...) or range(...) for every parameter; "
                                  f"{p.name}={p.expression} is continuous")
        return out


def _bounds(d: BaseDistribution) -> tuple[Any, Any]:
    if isinstance(d, CategoricalDistribution):
        return d.choices[0], d.choices[0]
    assert isinstance(d, (IntDistribution, FloatDistribution))
    return d.low, d.high


def _number(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"search space {key}: {v!r} is not a number")
    return float(v)


def _to_distribution(key: str, override: Any, expression: str) -> BaseDistribution:
    from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, RangeSweep

    if isinstance(override._value, Glob):  # value() does not expose globs
        raise ConfigError(f"search space {key}={expression}: glob() is not supported; list the options with choice(...)")
    sweep = override.value()
    tags = set(getattr(sweep, "tags", set()) or set())
    unknown_tags = tags - {"log", "int"}
    if unknown_tags:
        raise ConfigError(f"search space {key}={expression}: unknown tag(s) {sorted(unknown_tags)}; valid: log, int")
    log = "log" in tags
    if isinstance(sweep, ChoiceSweep):
        if getattr(sweep, "shuffle", False):
            raise ConfigError(f"search space {key}={expression}: shuffle() is meaningless for Optuna")
        choices = []
        for c in sweep.list:
            c = getattr(c, "text", c)  # QuotedString → str
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise ConfigError(f"search space {key}={expression}: choice {c!r} is not a scalar")
            choices.append(c)
        if not choices:
            raise ConfigError(f"search space {key}={expression}: empty choice")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"search space {key}={expression}: repeated choices")
        if log:
            raise ConfigError(f"search space {key}={expression}: tag(log) needs a numeric interval or range")
        return CategoricalDistribution(choices)
    if isinstance(sweep, RangeSweep):
        if sweep.shuffle:
            raise ConfigError(f"search space {key}={expression}: shuffle() is meaningless for Optuna")
        values = list(sweep.range())
        if not values:
            raise ConfigError(f"search space {key}={expression}: empty range "
                              f"(range(start, stop, step) excludes stop, like Python's range)")
        step = sweep.step
        if isinstance(sweep.start, int) and isinstance(step, int) and all(isinstance(v, int) for v in values):
            if step <= 0:
                raise ConfigError(f"search space {key}={expression}: step must be positive")
            if log and (values[0] <= 0 or step != 1):
                raise ConfigError(f"search space {key}={expression}: a log range needs start > 0 and step 1")
            return IntDistribution(values[0], values[-1], log=log, step=step)
        if log:
            raise ConfigError(f"search space {key}={expression}: tag(log) on a float range; use tag(log, interval(a, b))")
        lo, hi, st = float(values[0]), float(values[-1]), float(step)
        if st <= 0:
            raise ConfigError(f"search space {key}={expression}: step must be positive")
        # Snap the upper end onto the step grid (Hydra's float ranges accumulate rounding).
        hi = lo + round((hi - lo) / st) * st
        return FloatDistribution(lo, hi, step=st) if hi > lo else CategoricalDistribution([lo])
    if isinstance(sweep, IntervalSweep):
        lo, hi = _number(sweep.start, key), _number(sweep.end, key)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ConfigError(f"search space {key}={expression}: bounds must be finite")
        if lo >= hi:
            raise ConfigError(f"search space {key}={expression}: empty range (low {lo:g} >= high {hi:g})")
        if log and lo <= 0:
            raise ConfigError(f"search space {key}={expression}: a log interval needs low > 0, got {lo:g}")
        if "int" in tags:
            if lo != int(lo) or hi != int(hi):
                raise ConfigError(f"search space {key}={expression}: tag(int) needs integer bounds")
            return IntDistribution(int(lo), int(hi), log=log)
        return FloatDistribution(lo, hi, log=log)
    raise ConfigError(f"search space {key}={expression}: unsupported sweep {type(sweep).__name__}")


def parse_space(params: Mapping[str, Any] | None, arguments: Sequence[str] = ()) -> SearchSpace:
    """Parse ``sweep.params`` and command-line overrides into a :class:`SearchSpace`.

    Command-line sweep overrides (``retrain.lr='interval(1e-4,1e-2)'``, or the same as
    ``sweep.params.retrain.lr=...``) add to or replace the preset's parameters; plain
    command-line overrides are fixed for every trial and take a key out of the search.
    Raises ConfigError for a malformed expression or an empty range.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException

    parser = OverridesParser.create()
    searched: dict[str, Param] = {}
    fixed: list[str] = []

    def parse_one(line: str, origin: str) -> Any:
        try:
            return parser.parse_override(line)
        except (OverrideParseException, HydraException) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{origin}: cannot parse {line!r} ({msg})") from None

    for key, value in flatten(params).items():
        expression = value if isinstance(value, str) else format_value(value)
        if isinstance(value, (list, tuple)):
            expression = "choice(" + ", ".join(format_value(v) for v in value) + ")"
        ov = parse_one(f"{key}={expression}", f"sweep.params.{key}")
        if ov.is_sweep_override():
            searched[ov.key_or_group] = Param(key, _to_distribution(f"sweep.params.{key}", ov, expression), expression)
        else:
            fixed.append(f"{key}={expression}")
    for line in arguments:
        ov = parse_one(line, "command line")
        if ov.is_sweep_override():
            key = ov.get_key_element()
            expression = (ov.input_line or line).split("=", 1)[1]
            if key.lstrip("+").startswith("sweep.params."):
                # `sweep.params.retrain.lr=interval(...)` edits the preset's entry: the same
                # parameter as `retrain.lr=interval(...)`.
                key = key.lstrip("+")[len("sweep.params."):]
                ov = parse_one(f"{key}={expression}", "command line")
            elif key.lstrip("+").startswith("sweep."):
                raise ConfigError(f"{line}: sweep settings cannot be swept; give one value")
            # A command-line sweep replaces the preset's entry for the same key.
            searched.pop(ov.key_or_group, None)
            searched[ov.key_or_group] = Param(key, _to_distribution(key, ov, expression), expression)
        else:
            fixed.append(ov.input_line or line)
    # A value fixed on the command line wins over the preset's search for that key.
    fixed_keys = {f.lstrip("+~").split("=", 1)[0] for f in fixed}
    return SearchSpace(tuple(p for p in searched.values() if p.name not in fixed_keys), tuple(fixed))

