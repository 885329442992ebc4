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

from torch import nn

from prunebench.pruning import sparsegpt as _sparsegpt
from prunebench.pruning.criteria import magnitude as _magnitude  # noqa: F401  (each registers itself)
from prunebench.pruning.criteria import movement as _movement  # noqa: F401
from prunebench.pruning.criteria import random as _random  # noqa: F401
from prunebench.pruning.criteria import snip as _snip  # noqa: F401
from prunebench.pruning.criteria import synflow as _synflow  # noqa: F401
from prunebench.pruning.criteria import taylor as _taylor  # noqa: F401
from prunebench.pruning.criteria import wanda as _wanda  # noqa: F401
from prunebench.pruning.criterion import (  # noqa: F401  (the registry's names, re-exported)
    CRITERIA,
    Criterion,
    CriterionFn,
    ScoreContext,
    ScoreLearner,
    Scores,
    ValidateFn,
    get_criterion,
    register_criterion,
)
from prunebench.pruning.targets import Prunable


def _sparsegpt_scores(model: nn.Module, targets: list[Prunable], ctx: ScoreContext) -> Scores:
    raise RuntimeError("sparsegpt reconstructs weights as it prunes: the mask step calls its reconstruct")


register_criterion("sparsegpt", needs_data=True, validate=_sparsegpt.validate,
                   reconstruct=_sparsegpt.prune)(_sparsegpt_scores)
