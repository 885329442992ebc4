"""SynFlow (Tanaka et al. 2020): iterative synaptic flow, data-free, meant for initialisation.

Scores are ``|θ ⊙ ∂R/∂θ|`` with ``R = 1ᵀ f_|θ|(1)``: the network with every parameter and
buffer replaced by its absolute value (in float64, eval mode) applied to an all-ones
input. No data values are used (only the input shape of the calibration batches).
Pruning in one shot by these scores collapses whole layers; SynFlow avoids it by pruning
in ``pruning.rounds`` rounds (100 in the paper) along an exponential schedule from the
current density to the level's target, rescoring after each. The returned scores rank
weights by the round that removed them (survivors highest), so the level's allocation
reproduces that mask. Under ``structure=nm`` there is no intermediate target: one round.
Run at initialisation with ``train.epochs=0``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from prunebench.errors import ConfigError
from prunebench.pruning.allocation import allocate
from prunebench.pruning.criterion import ScoreContext, Scores, register_criterion
from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import Prunable


def _synflow_scores(net: nn.Module, targets: list[Prunable], mask: Mask, ones: torch.Tensor) -> Scores:
    params = dict(net.named_parameters())
    with torch.no_grad():
        for name, keep in mask.items():
            params[name].mul_(keep.to(params[name].device, params[name].dtype))
    weights = [params[t.param_name] for t in targets]
    with torch.enable_grad():
        grads = torch.autograd.grad(net(ones).sum(), weights, allow_unused=True)
    return {
        t.param_name: (w.detach() * g).abs().float() if g is not None else torch.zeros_like(w, dtype=torch.float32)
        for t, w, g in zip(targets, weights, grads, strict=True)
    }


def rounds_of(ctx: ScoreContext) -> int:
    rounds = ctx.options.get("rounds", 100)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"pruning.rounds={rounds!r} is out of range; expected an integer >= 1")
    return rounds


@register_criterion("synflow", needs_data=True)
def synflow(model: nn.Module, targets: list[Prunable], ctx: ScoreContext) -> Scores:
    rounds = rounds_of(ctx)
    if not ctx.batches:
        raise ConfigError("pruning.method=synflow needs the input shape of one calibration batch")
    device = next(model.parameters()).device
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for v in net.state_dict().values():
            if v.is_floating_point():
                v.abs_()
    ones = torch.ones((1, *ctx.batches[0][0].shape[1:]), dtype=torch.float64, device=device)
    mask = Mask({t.param_name: ctx.mask[t.param_name] for t in targets})
    if ctx.target is None or rounds == 1:
        return _synflow_scores(net, targets, mask, ones)
    density0, density1 = 1.0 - mask.sparsity, 1.0 - ctx.target
    removed_in = {n: torch.zeros(m.shape, dtype=torch.float32, device=m.device) for n, m in mask.items()}
    for k in range(1, rounds + 1):
        scores = _synflow_scores(net, targets, mask, ones)
        density = density0 * (density1 / density0) ** (k / rounds) if density0 > 0 else 0.0
        new = allocate(scores, mask, min(max(1.0 - density, mask.sparsity), ctx.target), ctx.scope)
        for n in mask:
            removed_in[n][mask[n] & ~new[n]] = float(k - rounds - 1)  # earlier rounds rank lower
        mask = new
    return {n: torch.where(mask[n], scores[n].to(mask[n].device), removed_in[n]) for n in mask}
