"""Magnitude: keep the weights of largest absolute value (Han et al. 2015)."""

from __future__ import annotations

from torch import nn

from prunebench.pruning.criterion import ScoreContext, Scores, register_criterion
from prunebench.pruning.targets import Prunable


@register_criterion("magnitude")
def magnitude(model: nn.Module, targets: list[Prunable], ctx: ScoreContext) -> Scores:
    params = dict(model.named_parameters())
    return {t.param_name: params[t.param_name].detach().abs() for t in targets}
