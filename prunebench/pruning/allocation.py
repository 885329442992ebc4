"""Allocation: turn scores into a mask at a target sparsity.

``global`` ranks all prunable weights together (layers end up with different sparsities);
``layer`` prunes every tensor to the same sparsity; ``erk`` (Erdős–Rényi-Kernel, Evci et
al. 2020) gives each tensor a density proportional to ``sum(shape) / prod(shape)``, so
small layers stay denser than large ones. Weights already pruned stay pruned
(their score is forced to -inf), so masks never regrow and an iterative schedule removes
a fraction of what remains.

Counts are exact: global scope removes ``round(target * total)`` weights in all;
layer scope removes ``round(target * numel)`` from each tensor, so the achieved sparsity
is the target to within one weight per tensor; erk keeps ``round((1 - target) * total)``
weights in all, split by largest remainders. Ties are broken by position (stable sort)
so the same scores always give the same mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from prunebench.errors import ConfigError
from prunebench.pruning.mask import Mask
from prunebench.registry import Registry

AllocateFn = Callable[[Mapping[str, torch.Tensor], Mask, float], Mask]

ALLOCATIONS: Registry[AllocateFn] = Registry("pruning.scope")


def _masked_scores(scores: Mapping[str, torch.Tensor], mask: Mask) -> dict[str, torch.Tensor]:
    out = {}
    for name, keep in mask.items():
        if name not in scores:
            raise KeyError(f"criterion returned no score for {name}")
        s = scores[name].detach().float().flatten().clone()
        s = torch.nan_to_num(s, nan=float("-inf"))  # a NaN score must never keep a weight by accident
        s[~keep.flatten().to(s.device)] = float("-inf")
        out[name] = s
    return out


def _prune_lowest(flat: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Keep-mask removing the ``n_prune`` lowest entries of ``flat`` (stable on ties)."""
    keep = torch.ones_like(flat, dtype=torch.bool)
    if n_prune > 0:
        order = torch.argsort(flat, stable=True)
        keep[order[:n_prune]] = False
    return keep


@ALLOCATIONS.register("global")
def allocate_global(scores: Mapping[str, torch.Tensor], mask: Mask, target: float) -> Mask:
    s = _masked_scores(scores, mask)
    names = list(s)
    flat = torch.cat([s[n].cpu() for n in names])
    total = flat.numel()
    already = total - mask.nonzero
    n_prune = max(round(target * total), already)
    keep = _prune_lowest(flat, n_prune)
    out, start = {}, 0
    for n in names:
        size = s[n].numel()
        out[n] = keep[start : start + size].view_as(mask[n]).to(mask[n].device)
        start += size
    return Mask(out)


@ALLOCATIONS.register("layer")
def allocate_layer(scores: Mapping[str, torch.Tensor], mask: Mask, target: float) -> Mask:
    s = _masked_scores(scores, mask)
    out = {}
    for n, flat in s.items():
        already = flat.numel() - int(mask[n].sum())
        n_prune = max(round(target * flat.numel()), already)
        out[n] = _prune_lowest(flat.cpu(), n_prune).view_as(mask[n]).to(mask[n].device)
    return Mask(out)


def erk_keep_counts(shapes: Mapping[str, torch.Size], alive: Mapping[str, int], keep_total: int) -> dict[str, int]:
    """Weights to keep per tensor under ERK: ``keep_l ∝ sum(shape_l)`` capped at ``alive_l``.

    ``density_l = ε · sum(shape_l) / prod(shape_l)``, so ``keep_l = ε · sum(shape_l)``;
    tensors whose share would exceed what is still alive keep all of it and ε is solved
    again for the rest (RigL's procedure). Real-valued shares are rounded by largest
    remainder (ties by position), so the counts add up to ``keep_total`` exactly.
    """
    names = list(shapes)
    weight = {n: float(sum(shapes[n])) for n in names}
    capped: set[str] = set()
    while True:
        free = [n for n in names if n not in capped]
        budget = keep_total - sum(alive[n] for n in capped)
        denom = sum(weight[n] for n in free)
        eps = budget / denom if denom else 0.0
        over = [n for n in free if eps * weight[n] > alive[n]]
        if not over:
            break
        capped.update(over)
    share = {n: float(alive[n]) if n in capped else eps * weight[n] for n in names}
    counts = {n: min(int(share[n]), alive[n]) for n in names}
    short = keep_total - sum(counts.values())
    by_remainder = sorted(names, key=lambda n: -(share[n] - int(share[n])))  # stable: ties by position
    for n in by_remainder:
        if short <= 0:
            break
        if counts[n] < alive[n]:
            counts[n] += 1
            short -= 1
    return counts


@ALLOCATIONS.register("erk")
def allocate_erk(scores: Mapping[str, torch.Tensor], mask: Mask, target: float) -> Mask:
    s = _masked_scores(scores, mask)
    total = mask.numel
    alive = {n: int(mask[n].sum()) for n in s}
    keep_total = min(round((1.0 - target) * total), sum(alive.values()))
    counts = erk_keep_counts({n: mask[n].shape for n in s}, alive, keep_total)
    out = {}
    for n, flat in s.items():
        out[n] = _prune_lowest(flat.cpu(), flat.numel() - counts[n]).view_as(mask[n]).to(mask[n].device)
    return Mask(out)


def allocate(scores: Mapping[str, torch.Tensor], mask: Mask, target: float, scope: str) -> Mask:
    """Mask at ``target`` sparsity of the masked tensors, chosen by ``scope``."""
    if not 0.0 <= target < 1.0:
        raise ConfigError(f"schedule.target_sparsity={target!r} is out of range; expected a value in [0, 1)")
    return ALLOCATIONS.get(scope)(scores, mask, target)


def output_rate_target(target: float, round_rate: float, output_rate: float) -> float:
    """Cumulative sparsity of a layer pruned at ``output_rate`` per round while the others
    are at ``target`` after rounds of ``round_rate`` (Frankle & Carbin's slower output layer).

    ``k = ln(1 - target) / ln(1 - round_rate)`` rounds have passed; the output layer keeps
    ``(1 - output_rate)^k``.
    """
    if target <= 0.0:
        return 0.0
    rounds = math.log(1.0 - target) / math.log(1.0 - round_rate)
    return 1.0 - (1.0 - output_rate) ** rounds


def allocate_split(scores: Mapping[str, torch.Tensor], mask: Mask, targets: Mapping[str, float], scope: str) -> Mask:
    """Allocate groups of tensors separately: ``targets`` maps a tensor name to its own target;
    every other tensor is allocated together at ``targets[""]``."""
    own = {n for n in targets if n and n in mask}
    rest = Mask({n: m for n, m in mask.items() if n not in own})
    out = dict(allocate(scores, rest, targets[""], scope)) if len(rest) else {}
    for n in own:
        out |= dict(allocate(scores, Mask({n: mask[n]}), targets[n], scope))
    return Mask({n: out[n] for n in mask})
