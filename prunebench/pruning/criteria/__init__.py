"""Pruning criteria: each scores every prunable weight (higher = more important to keep).

A criterion is one small file registering a function::

    @register_criterion("magnitude")
    def magnitude(model, targets, ctx) -> dict[str, Tensor]: ...

Deciding how many weights to remove where is the allocation's job
(:mod:`prunebench.pruning.allocation`), not the criterion's.

Built in: ``magnitude``, ``random`` (baseline), ``snip`` and ``taylor`` (gradient
saliencies), ``wanda`` (weights × input-activation norms), ``synflow`` (data-free,
iterative) and ``movement`` (scores learned during training; needs ``schedule=gradual``).
A criterion may also declare ``validate(net, targets, spec, example)``, run before any
training to reject combinations it cannot score, and ``learner(targets)``, a
:class:`ScoreLearner` for scores accumulated during training instead of computed at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import Prunable
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


CRITERIA: Registry[Criterion] = Registry("pruning.method")


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


# Register the built-in criteria (each module registers itself on import).
from prunebench.pruning.criteria import magnitude as _magnitude  # noqa: E402,F401
from prunebench.pruning.criteria import movement as _movement  # noqa: E402,F401
from prunebench.pruning.criteria import random as _random  # noqa: E402,F401
from prunebench.pruning.criteria import snip as _snip  # noqa: E402,F401
from prunebench.pruning.criteria import synflow as _synflow  # noqa: E402,F401
from prunebench.pruning.criteria import taylor as _taylor  # noqa: E402,F401
from prunebench.pruning.criteria import wanda as _wanda  # noqa: E402,F401
from prunebench.pruning import sparsegpt as _sparsegpt  # noqa: E402


def _sparsegpt_scores(model: nn.Module, targets: list[Prunable], ctx: ScoreContext) -> Scores:
    raise RuntimeError("sparsegpt reconstructs weights as it prunes: the mask step calls its reconstruct")


register_criterion("sparsegpt", needs_data=True, validate=_sparsegpt.validate,
                   reconstruct=_sparsegpt.prune)(_sparsegpt_scores)
