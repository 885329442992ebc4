"""The unstructured / N:M mask step as one pure function.

``mask_step`` is what every level (and every in-training step of a gradual level) does to
pick the weights that stay: score with the criterion (or take learned scores), then
allocate to the target (global / layer / ERK, the output layer's own rate) or keep N of
every M. It changes nothing in place; the level loop applies the mask it returns, and
tests call this very function.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import output_layer_name, prunable_weights
from prunebench.spec import PruningSpec


def mask_step(
    net: nn.Module,
    mask: Mask,
    target: float,
    pruning: PruningSpec,
    *,
    batches: list[Any] | None = None,
    generator: torch.Generator | None = None,
    learned: dict[str, torch.Tensor] | None = None,
    round_rate: float | None = None,
) -> Mask:
    """The mask at cumulative sparsity ``target`` chosen from ``mask``'s survivors.

    ``batches``: calibration batches (training split) for data-driven criteria;
    ``generator``: the criterion's random stream at this level; ``learned``: scores a
    learner accumulated during training (movement), used instead of the criterion;
    ``round_rate``: the schedule's per-round rate (for ``output_rate``).
    """
    from prunebench.pruning.scopes import allocate, allocate_split, output_rate_target
    from prunebench.pruning.criteria import ScoreContext, get_criterion

    nm = pruning.structure == "nm"
    if target <= mask.sparsity and not nm:
        return mask  # nothing to remove (gradual's initial step, s_i = 0)
    targets = [t for t in prunable_weights(net, prune_output=pruning.prune_output, prune_first=pruning.prune_first,
                                                prune_bias=pruning.prune_bias)
               if t.param_name in mask]
    crit = get_criterion(pruning.method)
    if crit.reconstruct is not None and learned is None:
        return _reconstruct(net, mask, target, pruning, targets, list(batches or []))
    if learned is not None:
        scores = learned
    else:
        ctx = ScoreContext(mask=mask, batches=list(batches or []), generator=generator, options=pruning.options,
                           target=None if nm else target, scope=pruning.scope)
        scores = crit.fn(net, targets, ctx)
    if nm:
        from prunebench.pruning.nm import kept_per_group, nm_mask

        m = int(pruning.options["m"])
        return nm_mask(scores, mask, kept_per_group(target, m), m)
    out_rate = pruning.options.get("output_rate")
    if out_rate is not None:
        if round_rate is None:
            raise ValueError("pruning.output_rate needs the schedule's per-round rate")
        out_name = f"{output_layer_name(net)}.weight"
        return allocate_split(scores, mask, {"": target, out_name: output_rate_target(target, round_rate, out_rate)},
                              pruning.scope)
    return allocate(scores, mask, target, pruning.scope)


def _reconstruct(net: nn.Module, mask: Mask, target: float, pruning: PruningSpec, targets: list[Any],
                 batches: list[Any]) -> Mask:
    """Methods that change the surviving weights as they prune (SparseGPT): weights updated in place."""
    from prunebench.pruning.criteria import ScoreContext, get_criterion

    crit = get_criterion(pruning.method)
    nm = None
    if pruning.structure == "nm":
        from prunebench.pruning.nm import kept_per_group

        m = int(pruning.options["m"])
        nm = (kept_per_group(target, m), m)
    sparsity: Any = target
    if pruning.scope == "owl":  # per-layer sparsities from Wanda scores' outlier ratios
        from prunebench.pruning.owl import owl_sparsities

        scores = get_criterion("wanda").fn(net, targets, ScoreContext(mask=mask, batches=batches))
        sparsity = owl_sparsities({n: scores[n] for n in mask}, target)
    opts = pruning.method_options  # the method's typed options (SparseGPTOptions): defaults live in the catalog
    keep = crit.reconstruct(net, targets, batches, sparsity, nm, mask=mask, blocksize=opts.blocksize,
                            percdamp=opts.percdamp)
    return Mask({n: keep[n].to(mask[n].device) if n in keep else mask[n] for n in mask})
