"""Random: scores drawn uniformly at random, the baseline every criterion must beat.

Drawn on the CPU from the run's generator (seeded per run and level), so the same seed
gives the same mask on any device.
"""

from __future__ import annotations

import torch
from torch import nn

from prunebench.pruning.criterion import ScoreContext, Scores, register_criterion
from prunebench.pruning.targets import Prunable


@register_criterion("random")
def random(model: nn.Module, targets: list[Prunable], ctx: ScoreContext) -> Scores:
    params = dict(model.named_parameters())
    out = {}
    for t in targets:
        p = params[t.param_name]
        out[t.param_name] = torch.rand(p.shape, generator=ctx.generator).to(p.device)
    return out
