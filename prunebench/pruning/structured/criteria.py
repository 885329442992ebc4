"""Channel criteria: a score per channel of every group (higher = more important to keep).

Each criterion is a small function registered in :data:`CHANNEL_CRITERIA`::

    @register_channel_criterion("l1", normalize=True)
    def l1(model, groups, ctx) -> dict[str, Tensor]: ...   # group key -> scores[channels]

A group may hold several producers (every conv writing into one residual sum); their
per-channel scores are averaged. ``normalize`` tells the global allocation to divide a
group's scores by their mean before ranking across groups — filter norms and Taylor
scores scale with fan-in and depth, BatchNorm scales (network slimming) and random
scores are already comparable.

Deciding how many channels to remove where is the allocation's job, not the criterion's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from prunebench.pruning.structured.groups import ChannelGroup, Member
from prunebench import catalog
from prunebench.registry import Registry


def token_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classification ``[B, C]``/``[B]`` and for sequences ``[B, T, V]``/``[B, T]``."""
    if logits.dim() == 3:
        return nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
    return nn.functional.cross_entropy(logits, y)


@dataclass
class ChannelScoreContext:
    """What a criterion may use besides the weights.

    ``batches`` are calibration batches from the TRAINING split (only ``taylor`` needs them).
    """

    batches: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = token_cross_entropy
    generator: torch.Generator | None = None


ChannelScores = dict[str, torch.Tensor]
ChannelCriterionFn = Callable[[nn.Module, list[ChannelGroup], ChannelScoreContext], ChannelScores]


@dataclass(frozen=True)
class ChannelCriterion:
    name: str
    fn: ChannelCriterionFn
    needs_data: bool = False
    normalize: bool = True  # divide by the group mean before a global ranking


# "pruning.method" is the config key that chooses a criterion (as for unstructured runs).
CHANNEL_CRITERIA: Registry[ChannelCriterion] = Registry("pruning.method", catalog.CHANNEL_CRITERIA)


def register_channel_criterion(
    name: str, *, needs_data: bool = False, normalize: bool = True
) -> Callable[[ChannelCriterionFn], ChannelCriterionFn]:
    def deco(fn: ChannelCriterionFn) -> ChannelCriterionFn:
        CHANNEL_CRITERIA.register(name)(ChannelCriterion(name, fn, needs_data, normalize))
        return fn

    return deco


def _filters(member: Member) -> torch.Tensor:
    """The member's output filters as rows: [len(idxs), fan_in]."""
    w = member.module.weight.detach()
    if getattr(member.module, "transposed", False):
        w = w.transpose(0, 1)
    return w[member.idxs].flatten(1).float()


def _scatter_mean(group: ChannelGroup, parts: list[tuple[Member, torch.Tensor]]) -> torch.Tensor:
    """Average per-member scores onto the group's channel positions."""
    total = torch.zeros(group.channels)
    count = torch.zeros(group.channels)
    for member, local in parts:
        idx = torch.tensor(member.root_idxs, dtype=torch.long)
        total.index_add_(0, idx, local.detach().float().cpu())
        count.index_add_(0, idx, torch.ones(len(idx)))
    return total / count.clamp(min=1)


def _filter_norm(groups: list[ChannelGroup], p: int) -> ChannelScores:
    return {g.key: _scatter_mean(g, [(m, _filters(m).norm(p=p, dim=1)) for m in g.producers()]) for g in groups}


@register_channel_criterion("l1")
def l1(model: nn.Module, groups: list[ChannelGroup], ctx: ChannelScoreContext) -> ChannelScores:
    """L1 norm of each channel's filters (Li et al. 2017)."""
    return _filter_norm(groups, 1)


@register_channel_criterion("l2")
def l2(model: nn.Module, groups: list[ChannelGroup], ctx: ChannelScoreContext) -> ChannelScores:
    """L2 norm of each channel's filters."""
    return _filter_norm(groups, 2)


@register_channel_criterion("bn_scale", normalize=False)
def bn_scale(model: nn.Module, groups: list[ChannelGroup], ctx: ChannelScoreContext) -> ChannelScores:
    """|gamma| of the channel's BatchNorm (network slimming, Liu et al. 2017).

    A group without an affine BatchNorm gets ``+inf`` everywhere: the criterion has
    nothing to say about it, so it is kept whole rather than pruned by another measure.
    """
    out = {}
    for g in groups:
        bns = g.batchnorms()
        if not bns:
            out[g.key] = torch.full((g.channels,), float("inf"))
            continue
        out[g.key] = _scatter_mean(g, [(m, m.module.weight.detach()[m.idxs].abs()) for m in bns])
    return out


@register_channel_criterion("random", normalize=False)
def random(model: nn.Module, groups: list[ChannelGroup], ctx: ChannelScoreContext) -> ChannelScores:
    """Uniform random scores (the control); reproducible through ``ctx.generator``."""
    return {g.key: torch.rand(g.channels, generator=ctx.generator) for g in groups}


@register_channel_criterion("taylor", needs_data=True)
def taylor(model: nn.Module, groups: list[ChannelGroup], ctx: ChannelScoreContext) -> ChannelScores:
    """First-order Taylor estimate of the loss change (Molchanov et al. 2019).

    Per batch, a channel's contribution is ``sum(w * dL/dw)`` over every parameter that
    removing it deletes (its filters and biases in all producers, its BatchNorm scale and
    shift); the score is the mean of its square over batches. Gradients are taken in eval
    mode with ``torch.autograd.grad``, so BatchNorm statistics and ``.grad`` are untouched.
    """
    slices: list[tuple[ChannelGroup, Member, str]] = []
    for g in groups:
        for m in g.members:
            if not (m.out_side and m.scorable):
                continue
            if isinstance(m.module, (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)):
                for pname in ("weight", "bias"):
                    p = getattr(m.module, pname, None)
                    if isinstance(p, nn.Parameter) and p.requires_grad:
                        slices.append((g, m, pname))
    params = list({id(getattr(m.module, n)): getattr(m.module, n) for _, m, n in slices}.values())
    index = {id(p): i for i, p in enumerate(params)}
    scores = {g.key: torch.zeros(g.channels) for g in groups}
    was_training = model.training
    model.eval()
    try:
        for x, y in ctx.batches:
            with torch.enable_grad():
                loss = ctx.loss_fn(model(x), y)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
            contrib = {g.key: torch.zeros(g.channels) for g in groups}
            for g, m, pname in slices:
                p = getattr(m.module, pname)
                grad = grads[index[id(p)]]
                if grad is None:
                    continue
                wg = (p.detach() * grad).float()
                if pname == "weight" and getattr(m.module, "transposed", False):
                    wg = wg.transpose(0, 1)
                local = wg[m.idxs].flatten(1).sum(1) if wg.dim() > 1 else wg[m.idxs]
                contrib[g.key].index_add_(0, torch.tensor(m.root_idxs, dtype=torch.long), local.cpu())
            for k, c in contrib.items():
                scores[k] += c.pow(2)
    finally:
        model.train(was_training)
    n = max(len(ctx.batches), 1)
    return {k: s / n for k, s in scores.items()}


def get_channel_criterion(name: str) -> ChannelCriterion:
    """The registered criterion ``name``; an unknown name raises ConfigError listing the valid ones."""
    return CHANNEL_CRITERIA.get(name)
