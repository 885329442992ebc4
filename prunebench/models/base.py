"""The model registry and what every architecture file shares.

A model is a small typed factory ``fn(input_shape, num_classes, *, **kwargs) -> nn.Module``
registered under a lowercase name together with the input shapes it accepts
(:class:`Accepts`), so a mismatch between model and data set is reported by name before
anything is built. The keyword-only parameters of the factory are the model's config keys;
their defaults are what ``conf/model/<name>.yaml`` repeats.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from torch import nn

from prunebench.errors import ConfigError
from prunebench import catalog
from prunebench.registry import Registry

ModelFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelFactory)

#: name -> factory; ``MODELS.get(name)`` raises ConfigError listing the valid names.
MODELS: Registry[ModelFactory] = Registry("model", catalog.MODELS)


@dataclass(frozen=True)
class Accepts:
    """The input shapes (batch dimension excluded) a model can take.

    ``kind`` is ``"any"`` (the model flattens its input), ``"sequence"`` (``(L,)`` or
    ``(C, L)``) or ``"image"`` (``(C, H, W)``); ``min_size`` is the smallest length, height
    and width supported: at least what keeps one position through every layer.
    """

    kind: Literal["any", "sequence", "image"]
    min_size: int = 1

    def describe(self) -> str:
        """What the model needs, in words, for error messages."""
        if self.kind == "any":
            return "a non-empty input shape of positive sizes"
        if self.kind == "sequence":
            return f"sequence input (L,) or (C, L) with L >= {self.min_size}"
        return f"image input (C, H, W) of at least {self.min_size}x{self.min_size}"

    def fits(self, input_shape: Sequence[int]) -> bool:
        """Whether inputs of ``input_shape`` (batch dimension excluded) are accepted."""
        shape = as_shape(input_shape)
        if shape is None:
            return False
        if self.kind == "sequence":
            return len(shape) in (1, 2) and shape[-1] >= self.min_size
        if self.kind == "image":
            return len(shape) == 3 and min(shape[1:]) >= self.min_size
        return True


_ACCEPTS: dict[str, Accepts] = {}


def register_model(name: str, *, accepts: Accepts = Accepts("any")) -> Callable[[F], F]:
    """Register a model factory under ``name`` with the input shapes it ``accepts``."""

    def deco(fn: F) -> F:
        MODELS.register(name)(fn)
        _ACCEPTS[name] = accepts
        return fn

    return deco


def accepted_inputs(name: str) -> Accepts:
    """The input shapes model ``name`` accepts (ConfigError for unknown names)."""
    MODELS.get(name)
    return _ACCEPTS[name]


# ---- validation of factory kwargs: errors name the config key and the value -------------


def check_widths(key: str, value: Any) -> list[int]:
    """A non-empty list of positive integers, or ConfigError naming ``model.<key>``."""
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
    if ok:
        ok = all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in value)
    if not ok:
        raise ConfigError(f"model.{key}={_show(value)} must be a non-empty list of positive integers")
    return [int(w) for w in value]


def check_positive_int(key: str, value: Any) -> int:
    """A positive integer, or ConfigError naming ``model.<key>``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model.{key}={value!r} must be a positive integer")
    return value


def check_width_mult(value: Any) -> float:
    """A finite positive multiplier, or ConfigError naming ``model.width_mult``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"model.width_mult={value!r} must be a positive number")
    return float(value)


def scaled(channels: int, width_mult: float) -> int:
    """Channel count scaled by ``width_mult``, never below one."""
    return max(1, round(channels * width_mult))


def as_shape(input_shape: Sequence[int]) -> tuple[int, ...] | None:
    """``input_shape`` as a tuple of plain ints (numpy and torch ints too), or None if not a valid shape."""
    try:
        shape = tuple(operator.index(s) for s in input_shape if not isinstance(s, bool))
    except TypeError:
        return None
    if not shape or len(shape) != len(input_shape) or min(shape) < 1:
        return None
    return shape


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling (floor mode) along one dimension."""
    return (size + 2 * padding - kernel) // stride + 1


def _show(value: Any) -> str:
    # Hydra ListConfig and tuples print as plain lists in messages.
    if isinstance(value, Sequence) and not isinstance(value, str):
        return repr(list(value))
    return repr(value)
