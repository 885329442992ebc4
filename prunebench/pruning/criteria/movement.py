"""Movement pruning (Sanh et al. 2020): importance scores learned during fine-tuning.

The layer computes with ``W ⊙ M``, ``M = TopK(S)``; the straight-through estimator passes
the gradient through the top-k, so ``∂L/∂S = ∂L/∂(W ⊙ M) ⊙ W``, and the scores descend
it: ``S ← S − α ∂L/∂S``. Weights moving away from zero gain score, weights moving towards
zero lose it. With ``S`` starting at zero and plain SGD on the scores, ``S`` is the
accumulated movement ``−α Σ_t ∂L/∂W_t ⊙ W_t`` and ``α`` only scales it, which never
changes a top-k: so there is no learning rate to choose. The update runs as an optimizer
step pre-hook, i.e. on the gradient the weights are about to be stepped with (already
masked, and unscaled under mixed precision).

The mask follows ``schedule=gradual`` (cubic sparsity at step granularity), reaching the
target exactly at its last pruning step, and stays fixed afterwards. Pruned weights stay
zero (prunebench's masks never regrow), so a pruned score stops moving: the top-k is
taken among surviving weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunebench.errors import ConfigError
from prunebench.pruning.criterion import ScoreContext, Scores, register_criterion
from prunebench.pruning.targets import Prunable


class MovementScores:
    """Learned movement scores of the target weights (a :class:`ScoreLearner`)."""

    def __init__(self, targets: list[Prunable]) -> None:
        self.names = [t.param_name for t in targets]
        self._scores: Scores = {}
        self._handle: Any = None

    def attach(self, net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        params = dict(net.named_parameters())
        watched = [(n, params[n]) for n in self.names]
        self._scores = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in watched}

        @torch.no_grad()
        def update(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            for n, p in watched:
                if p.grad is not None:
                    self._scores[n].sub_(p.grad.float() * p.float())  # S -= ∂L/∂S (STE), α = 1

        self._handle = optimizer.register_step_pre_hook(update)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def scores(self) -> Scores:
        return {n: s.clone() for n, s in self._scores.items()}


def needs_gradual(model: nn.Module, targets: list[Prunable], spec: Any, example: torch.Tensor) -> None:
    if spec.schedule.name != "gradual":
        raise ConfigError(
            f"pruning.method=movement learns its scores while training, so it needs schedule=gradual "
            f"(got schedule={spec.schedule.name!r})"
        )


@register_criterion("movement", validate=needs_gradual, learner=MovementScores)
def movement(model: nn.Module, targets: list[Prunable], ctx: ScoreContext) -> Scores:
    raise ConfigError("pruning.method=movement has no scores outside training; use schedule=gradual")
