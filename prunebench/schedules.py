"""Schedules: the target sparsity of every pruning level.

A schedule is a tiny pure function ``(target, iterations) -> [s_1, ..., s_n]`` of
cumulative sparsities (fraction of prunable weights removed after level k); level 0 is
the dense model and is not listed.

- ``one_shot``: one level at the target.
- ``iterative`` with ``mode=geometric`` (the lottery-ticket schedule): every level removes
  the same fraction ``r`` of the weights that remain, ``s_k = 1 - (1 - target)^(k/n)``,
  so ``r = 1 - (1 - target)^(1/n)``.
- ``iterative`` with ``mode=linear``: equal steps of total sparsity, ``s_k = target·k/n``.

- ``gradual``: one level whose fine-tune raises the sparsity along Zhu & Gupta's cubic
  schedule every Δt optimizer steps, reaching the target at its last pruning step; the
  step-granular part lives with the engine code that applies it
  (:mod:`prunebench.engine.gradual`).
"""

from __future__ import annotations

from collections.abc import Callable

from prunebench.errors import ConfigError, check_range
from prunebench import catalog
from prunebench.registry import Registry

ScheduleFn = Callable[[float, int], list[float]]

SCHEDULES: Registry[ScheduleFn] = Registry("schedule", catalog.SCHEDULES)


def geometric(target: float, iterations: int) -> list[float]:
    keep = 1.0 - target
    return [1.0 - keep ** (k / iterations) for k in range(1, iterations + 1)]


def linear(target: float, iterations: int) -> list[float]:
    return [target * k / iterations for k in range(1, iterations + 1)]


@SCHEDULES.register("one_shot")
def one_shot(target: float, iterations: int = 1) -> list[float]:
    if iterations != 1:
        raise ConfigError(f"schedule.iterations={iterations!r} is invalid for schedule=one_shot; it must be 1")
    return [target]


@SCHEDULES.register("gradual")
def gradual(target: float, iterations: int = 1) -> list[float]:
    if iterations != 1:
        raise ConfigError(
            f"schedule.iterations={iterations!r} is invalid for schedule=gradual; it must be 1 (the sparsity rises "
            f"during one fine-tune; set its pace with schedule.frequency)"
        )
    return [target]


MODES: dict[str, ScheduleFn] = {"geometric": geometric, "linear": linear}


def per_round_rate(target: float, iterations: int) -> float:
    """Fraction of the remaining weights each geometric level removes."""
    return 1.0 - (1.0 - target) ** (1.0 / iterations)


def target_from_rate(rate: float, iterations: int) -> float:
    """Cumulative sparsity after ``iterations`` geometric levels of ``rate``."""
    return 1.0 - (1.0 - rate) ** iterations


def levels(name: str, target: float, iterations: int, mode: str = "geometric") -> list[float]:
    """Cumulative target sparsity at levels 1..n of schedule ``name``."""
    check_range("schedule.target_sparsity", target, 0.0, 1.0)
    if not isinstance(iterations, int) or iterations < 1:
        raise ConfigError(f"schedule.iterations={iterations!r} is out of range; expected an integer >= 1")
    if name == "iterative":
        if mode not in MODES:
            raise ConfigError(f"schedule.mode={mode!r} is not a known name; valid: {', '.join(MODES)}")
        return MODES[mode](target, iterations)
    return SCHEDULES.get(name)(target, iterations)


SCHEDULES.register("iterative")(geometric)
