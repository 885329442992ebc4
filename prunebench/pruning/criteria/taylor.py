"""Taylor (first order): ``mean_b |w · ∂L_b/∂w|``, ShrinkBench's MagGrad family.

``w · ∂L/∂w`` is the first-order Taylor estimate of the change in loss when ``w`` is set
to zero; its magnitude is taken per calibration batch and then averaged, so batches whose
gradients disagree in sign do not cancel (the difference from :mod:`.snip`, which takes
the magnitude of the averaged gradient). Molchanov et al. (2019) square the per-batch
term instead; on a single batch both rank weights alike.
"""

from __future__ import annotations

from torch import nn

from prunebench.pruning.criterion import ScoreContext, Scores, register_criterion
from prunebench.pruning.criteria._grads import gradient_sum
from prunebench.pruning.targets import Prunable


@register_criterion("taylor", needs_data=True)
def taylor(model: nn.Module, targets: list[Prunable], ctx: ScoreContext) -> Scores:
    sums = gradient_sum(model, targets, ctx, lambda w, g: (w * g).abs())
    return {name: s / len(ctx.batches) for name, s in sums.items()}
