"""OWL (Yin et al. 2023, "Outlier Weighed Layerwise sparsity") as an allocation: ``pruning.scope=owl``.

Blocks with many outlier scores are pruned less. Following the official code
(luuyin/OWL, ``prune_wanda_outlier``):

1. For every transformer block ``l`` (:func:`prunebench.pruning.calibration.block_key`),
   concatenate the scores of all its pruned layers (Wanda's ``|W|·‖X‖`` in the paper) and
   take the outlier ratio ``D_l`` = fraction of scores above ``M × mean`` (``M = 5``).
2. Rescale the ratios to ``[0, 2λ]`` (``λ = 0.08``), subtract their mean, and set block
   density ``1 - target + (D̃_l - mean D̃)``: sparsities span ``2λ`` around the target,
   whose mean over blocks is the target (weighted by block size here; the official plain
   mean is the same for a transformer's equal blocks). Counts are exact overall.
3. Inside each layer the weights are compared per output row (Wanda's group) at the
   block's sparsity (:func:`prunebench.pruning.criteria.wanda.row_keep`).

The ratios come from whatever scores the criterion gives (the paper's OWL-magnitude also
takes ratios from magnitudes). Layers outside any numbered block form their own group.
N:M has no OWL variant here (the paper's mixed N:M is not implemented).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from prunebench.pruning.allocation import ALLOCATIONS
from prunebench.pruning.calibration import block_key
from prunebench.pruning.criteria.wanda import row_keep
from prunebench.pruning.mask import Mask

#: OWL's defaults (the paper's LLaMA settings): outlier threshold M and sparsity spread λ.
M_DEFAULT = 5.0
LAMBDA_DEFAULT = 0.08


def outlier_ratio(scores: torch.Tensor, m: float = M_DEFAULT) -> float:
    """Fraction of ``scores`` greater than ``m`` times their mean."""
    s = scores.detach().float().flatten()
    return float((s > s.mean() * m).float().mean())


def owl_sparsities(scores: Mapping[str, torch.Tensor], target: float, *, m: float = M_DEFAULT,
                   lam: float = LAMBDA_DEFAULT) -> dict[str, float]:
    """Sparsity of every tensor (param name → fraction): its block's OWL sparsity around ``target``.

    The official code centres the block densities on ``1 - target`` by their plain mean; here
    the mean is weighted by block size, so the model as a whole is at ``target`` also when
    blocks differ in size (identical for a transformer's equal blocks).
    """
    groups: dict[str, list[str]] = {}
    for name in scores:
        groups.setdefault(block_key(name.removesuffix(".weight")), []).append(name)
    ratios = torch.tensor([outlier_ratio(torch.cat([scores[n].flatten() for n in names]), m)
                           for names in groups.values()], dtype=torch.float64)
    sizes = torch.tensor([sum(scores[n].numel() for n in names) for names in groups.values()], dtype=torch.float64)
    spread = ratios.max() - ratios.min()
    scaled = (ratios - ratios.min()) / spread * (2 * lam) if spread > 0 else torch.zeros_like(ratios)
    density = scaled - (scaled * sizes).sum() / sizes.sum() + (1.0 - target)
    sparsity = (1.0 - density).clamp(0.0, 0.99)  # the official code clips to [0.01, 0.99] density
    return {n: float(s) for s, names in zip(sparsity, groups.values(), strict=True) for n in names}


def allocate_owl(scores: Mapping[str, torch.Tensor], mask: Mask, target: float, *, m: float = M_DEFAULT,
                 lam: float = LAMBDA_DEFAULT) -> Mask:
    """``pruning.scope=owl``: per-block sparsities from outlier ratios, per-row comparison inside.

    Counts are exact overall: ``round(target · total)`` weights go, split over tensors in
    proportion to their OWL sparsities by largest remainder (never more than a tensor has).
    """
    per = owl_sparsities({n: scores[n] for n in mask}, target, m=m, lam=lam)
    share = {n: per[n] * mask[n].numel() for n in mask}
    counts = {n: int(share[n]) for n in mask}
    short = round(target * mask.numel) - sum(counts.values())
    for n in sorted(mask, key=lambda n: -(share[n] - int(share[n]))):  # stable: ties by position
        if short <= 0:
            break
        if counts[n] < mask[n].numel():
            counts[n] += 1
            short -= 1
    return Mask({n: row_keep(scores[n], keep, per[n], counts[n]) for n, keep in mask.items()})


def mean_sparsity(per: Mapping[str, float], sizes: Mapping[str, int]) -> float:
    """Parameter-weighted mean of per-tensor sparsities."""
    total = sum(sizes[n] for n in per)
    return sum(per[n] * sizes[n] for n in per) / total


if "owl" not in ALLOCATIONS.names():
    ALLOCATIONS.register("owl")(allocate_owl)
