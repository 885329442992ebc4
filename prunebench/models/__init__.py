"""Model architectures, chosen by name (``model=<name>`` in the config).

Every model maps inputs ``[B, *input_shape]`` to logits ``[B, num_classes]`` and is made of
plain ``nn.Conv1d``/``nn.Conv2d``/``nn.Linear``/``nn.BatchNorm*``/``nn.ReLU`` modules (no
functional-only weights, no shared modules), so masks, the channel pruner's dependency
graph and the FLOP counter can follow every layer. The classifier, the layer producing the
logits, is the last ``nn.Linear`` in ``model.modules()`` order.

    >>> model = build_model("resnet20", (3, 32, 32), 10)
    >>> list_models("resnet*")
    ['resnet20', 'resnet56']

New models: a factory decorated with :func:`register_model` in a module imported below,
plus ``conf/model/<name>.yaml`` listing its keyword arguments with their defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from prunebench.errors import ConfigError
from prunebench.models import (  # noqa: F401  (imported to register)
    cnn1d, convnets, external, gpt, hf, lenet, mlp, residual_mlp, resnet, vgg,
)
from prunebench.models.base import MODELS, Accepts, accepted_inputs, as_shape, register_model

__all__ = [
    "MODELS",
    "EXTERNAL",
    "Accepts",
    "accepted_inputs",
    "build_model",
    "check_model_keys",
    "list_models",
    "model_fits",
    "model_kwargs",
    "model_task",
    "register_model",
]


#: Entries that build a model from outside the package (``model.arch`` / ``model.target``);
#: they take required keys, so registry-wide tests of the built-ins skip them.
EXTERNAL = ("custom", "torchvision")


def list_models(pattern: str = "*", *, external: bool = True) -> list[str]:
    """Registered model names matching the glob ``pattern``, sorted (``external=False``:
    the built-in architectures only)."""
    return [n for n in MODELS.names(pattern) if external or n not in EXTERNAL]


def model_task(name: str) -> str:
    """``classification`` (logits ``[B, C]``) or ``language_modeling`` (token ids in, logits ``[B, T, V]`` out)."""
    return getattr(MODELS.get(name), "task", "classification")


def model_fits(name: str, input_shape: Sequence[int]) -> bool:
    """Whether model ``name`` accepts inputs of ``input_shape`` (batch dimension excluded)."""
    return accepted_inputs(name).fits(input_shape)


def model_kwargs(name: str) -> dict[str, Any]:
    """The keyword arguments model ``name`` accepts, with their defaults."""
    sig = inspect.signature(MODELS.get(name))
    return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_model_keys(name: str, kwargs: Mapping[str, Any]) -> None:
    """Keys no model may set (their values come from the data set); call at spec time.

    ``build_model(name, shape, n, num_classes=...)`` would fail in Python's call itself.
    """
    MODELS.get(name)
    for key in ("num_classes", "input_shape"):
        if key in kwargs:
            raise ConfigError(f"model.{key} cannot be set: it comes from the data set (a factory with a parameter "
                              f"named {key} receives it)")


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **kwargs: Any) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` and ``num_classes`` outputs.

    Raises ConfigError, before building anything, for an unknown name (listing the valid
    ones), an unknown keyword argument (naming ``model.<kwarg>`` and the accepted ones), an
    input shape the model cannot take, or an invalid value (naming the key and the value).
    """
    factory = MODELS.get(name)
    accepted = model_kwargs(name)
    params = inspect.signature(factory).parameters.values()
    # torchvision / custom pass their other keys on (**kwargs): the callee checks those.
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        for key in kwargs:
            if key not in accepted:
                valid = ", ".join(sorted(accepted)) or "none"
                raise ConfigError(f"model.{key} is not a parameter of model={name!r}; accepted: {valid}")
    for key, default in accepted.items():
        if default is inspect.Parameter.empty and key not in kwargs:
            raise ConfigError(f"model.{key} is required for model={name!r} (e.g. model.{key}=...)")
    spec = accepted_inputs(name)
    shape = as_shape(input_shape)
    if shape is None or not spec.fits(shape):
        raise ConfigError(f"model={name!r} needs {spec.describe()}; got input_shape={tuple(input_shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r} must be a positive integer")
    return factory(shape, num_classes, **kwargs)
