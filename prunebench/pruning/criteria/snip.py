"""SNIP (Lee et al. 2019): connection sensitivity ``|w · ∂L/∂w|``.

``∂L/∂w`` is the gradient of the mean loss over the calibration batches (training split).
Usable at initialisation: with ``train.epochs=0`` the level-1 scores are those of the
initial weights, and retraining trains the sparse network from there.
"""

from __future__ import annotations

from torch import nn

from prunebench.pruning.criterion import ScoreContext, Scores, register_criterion
from prunebench.pruning.criteria._grads import gradient_sum
from prunebench.pruning.targets import Prunable


@register_criterion("snip", needs_data=True)
def snip(model: nn.Module, targets: list[Prunable], ctx: ScoreContext) -> Scores:
    grads = gradient_sum(model, targets, ctx, lambda w, g: g)
    params = dict(model.named_parameters())
    n = len(ctx.batches)
    return {name: (params[name].detach().float() * g / n).abs() for name, g in grads.items()}
