"""The criterion registry: what a pruning criterion is (:class:`Criterion`), what it is given
(:class:`ScoreContext`) and :func:`register_criterion`. A leaf module: each criterion's file
imports it, and :mod:`prunebench.pruning.criteria` imports every built-in criterion, so the
package and its members do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import Prunable
from prunebench import catalog
from prunebench.registry import Registry


@dataclass
class ScoreContext:
    """What a criterion may use besides the weights.

    ``batches`` are calibration batches from the TRAINING split only (never val/test).
    ``target`` and ``scope`` are the sparsity and allocation the scores are for; only
    criteria that prune in several rounds themselves (SynFlow) use them.
    """

    mask: Mask
    batches: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy
    generator: torch.Generator | None = None
    options: dict[str, Any] = field(default_factory=dict)
    target: float | None = None
    scope: str = "global"


Scores = dict[str, torch.Tensor]
CriterionFn = Callable[[nn.Module, list[Prunable], ScoreContext], Scores]
#: ``validate(net, targets, spec, example)``: raise ConfigError before training if the
#: criterion cannot score this model/run; ``example`` is a small training-input batch.
ValidateFn = Callable[[nn.Module, list[Prunable], Any, torch.Tensor], None]


class ScoreLearner(Protocol):
    """Scores accumulated during training (movement pruning), read at each pruning step."""

    def attach(self, net: nn.Module, optimizer: torch.optim.Optimizer) -> None: ...

    def detach(self) -> None: ...

    def scores(self) -> Scores: ...


@dataclass(frozen=True)
class Criterion:
    name: str
    fn: CriterionFn
    needs_data: bool = False  # whether it needs calibration batches
    validate: ValidateFn | None = None
    learner: Callable[[list[Prunable]], ScoreLearner] | None = None  # scores learned in training
    #: ``reconstruct(net, targets, batches, sparsity, nm, mask=...) -> Mask``: methods that change
    #: the surviving weights as they prune (SparseGPT), instead of returning scores
    reconstruct: Callable[..., Mask] | None = None


CRITERIA: Registry[Criterion] = Registry("pruning.method", catalog.CRITERIA)


def register_criterion(
    name: str,
    *,
    needs_data: bool = False,
    validate: ValidateFn | None = None,
    learner: Callable[[list[Prunable]], ScoreLearner] | None = None,
    reconstruct: Callable[..., Mask] | None = None,
) -> Callable[[CriterionFn], CriterionFn]:
    def deco(fn: CriterionFn) -> CriterionFn:
        CRITERIA.register(name)(Criterion(name, fn, needs_data, validate, learner, reconstruct))
        return fn

    return deco


def get_criterion(name: str) -> Criterion:
    return CRITERIA.get(name)
