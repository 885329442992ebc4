"""Pruning criteria: each scores every prunable weight (higher = more important to keep).

A criterion is one small file registering a function::

    @register_criterion("magnitude")
    def magnitude(model, targets, ctx) -> dict[str, Tensor]: ...

Deciding how many weights to remove where is the allocation's job
(:mod:`prunebench.pruning.allocation`), not the criterion's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import Prunable
from prunebench.registry import Registry


@dataclass
class ScoreContext:
    """What a criterion may use besides the weights.

    ``batches`` are calibration batches from the TRAINING split only (never val/test).
    """

    mask: Mask
    batches: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy
    generator: torch.Generator | None = None
    options: dict[str, Any] = field(default_factory=dict)


Scores = dict[str, torch.Tensor]
CriterionFn = Callable[[nn.Module, list[Prunable], ScoreContext], Scores]


@dataclass(frozen=True)
class Criterion:
    name: str
    fn: CriterionFn
    needs_data: bool = False  # whether it needs calibration batches


CRITERIA: Registry[Criterion] = Registry("pruning.method")


def register_criterion(name: str, *, needs_data: bool = False) -> Callable[[CriterionFn], CriterionFn]:
    def deco(fn: CriterionFn) -> CriterionFn:
        CRITERIA.register(name)(Criterion(name, fn, needs_data))
        return fn

    return deco


def get_criterion(name: str) -> Criterion:
    return CRITERIA.get(name)


# Register the built-in criteria (each module registers itself on import).
from prunebench.pruning.criteria import magnitude as _magnitude  # noqa: E402,F401
