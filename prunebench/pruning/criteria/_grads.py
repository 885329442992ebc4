"""Loss gradients for the saliency criteria (SNIP, Taylor), leaving the model untouched.

Gradients are taken in training mode (BatchNorm normalises with batch statistics, as in
the training loss the saliency approximates) with ``torch.autograd.grad``, so no
``.grad`` is written; the model's buffers (BatchNorm running statistics) and its
train/eval mode are restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from prunebench.errors import ConfigError
from prunebench.pruning.criterion import ScoreContext, Scores
from prunebench.pruning.targets import Prunable


@contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Restore ``model``'s buffers and train/eval mode when the block ends."""
    was_training = model.training
    saved = {n: b.detach().clone() for n, b in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for n, b in model.named_buffers():
                b.copy_(saved[n])
        model.train(was_training)


def gradient_sum(
    model: nn.Module,
    targets: list[Prunable],
    ctx: ScoreContext,
    term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Scores:
    """``Σ_b term(w, ∂L_b/∂w)`` over the calibration batches ``b``, for every target weight."""
    if not ctx.batches:
        raise ConfigError("this criterion needs calibration batches; pruning.calibration_batches must be >= 1")
    params = dict(model.named_parameters())
    weights = [params[t.param_name] for t in targets]
    sums = {t.param_name: torch.zeros_like(w, dtype=torch.float32) for t, w in zip(targets, weights, strict=True)}
    device = weights[0].device
    with untouched(model), torch.enable_grad():
        model.train()
        for x, y in ctx.batches:
            loss = ctx.loss_fn(model(x.to(device)), y.to(device))
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
            for t, w, g in zip(targets, weights, grads, strict=True):
                if g is not None:  # a weight the loss does not reach has zero gradient
                    sums[t.param_name] += term(w.detach(), g).float()
    return sums
