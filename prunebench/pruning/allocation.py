"""Allocation: turn scores into a mask at a target sparsity.

``global`` ranks all prunable weights together (layers end up with different sparsities);
``layer`` prunes every tensor to the same sparsity. Weights already pruned stay pruned
(their score is forced to -inf), so masks never regrow and an iterative schedule removes
a fraction of what remains.

Counts are exact: global scope removes ``round(target * total)`` weights in all;
layer scope removes ``round(target * numel)`` from each tensor, so the achieved sparsity
is the target to within one weight per tensor. Ties are broken by position (stable sort)
so the same scores always give the same mask.
"""

from __future__ import annotations

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


def allocate(scores: Mapping[str, torch.Tensor], mask: Mask, target: float, scope: str) -> Mask:
    """Mask at ``target`` sparsity of the masked tensors, chosen by ``scope``."""
    if not 0.0 <= target < 1.0:
        raise ConfigError(f"schedule.target_sparsity={target!r} is out of range; expected a value in [0, 1)")
    return ALLOCATIONS.get(scope)(scores, mask, target)
