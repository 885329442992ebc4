"""Calibration: statistics of each pruned layer's inputs, from forward hooks on calibration batches.

One mechanism serves Wanda, SparseGPT and OWL. For a Linear layer with inputs ``X`` (all
tokens of all calibration batches as rows, ``[N, d_in]``) :func:`collect` accumulates
``XᵀX`` (the Gram matrix; ``2·XᵀX/N`` is SparseGPT's Hessian) or only its diagonal
``Σ_n x_nj²`` (Wanda's squared input-feature norms, ``‖X_j‖₂²``). Statistics are
accumulated inside the hook, so no activation is stored.

Layers are processed in **blocks** (:func:`block_key`: the module name up to its first
numeric component, e.g. ``lm.model.layers.3`` or ``blocks.0``): the layers of one
transformer block share a pass, and :func:`sequential` prunes block after block, each
block's statistics taken from the model with every earlier block already pruned (SparseGPT's
and Wanda's sequential order: later layers see the pruned earlier layers' outputs). A pass
stops as soon as every layer of the block has seen its input (the rest of the forward is
skipped), so pruning all blocks costs about half a forward per block, not a whole one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import Prunable


@dataclass
class InputStats:
    """Accumulated inputs of one Linear layer: ``sq`` = Σ x² per input feature (``[d_in]``),
    ``gram`` = Σ x xᵀ (``[d_in, d_in]``, only when asked), ``n`` = number of input rows (tokens)."""

    sq: torch.Tensor
    gram: torch.Tensor | None
    n: int

    def hessian(self) -> torch.Tensor:
        """SparseGPT's ``H = 2 XᵀX / N`` (float32)."""
        if self.gram is None:
            raise ValueError("collected without gram=True")
        return self.gram * (2.0 / max(self.n, 1))


def block_key(module_name: str) -> str:
    """The block a layer belongs to: its name up to the first all-digit component."""
    parts = module_name.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[: i + 1])
    return module_name


def blocks(targets: Sequence[Prunable]) -> list[list[Prunable]]:
    """``targets`` grouped into consecutive runs of the same :func:`block_key`, order kept."""
    out: list[list[Prunable]] = []
    for t in targets:
        if out and block_key(out[-1][-1].module_name) == block_key(t.module_name):
            out[-1].append(t)
        else:
            out.append([t])
    return out


class _Stop(Exception):
    """Raised from a hook once every layer of interest has seen its input: skip the rest."""


def collect(model: nn.Module, targets: Iterable[Prunable], batches: Sequence[Any], *, gram: bool = False,
            stop_early: bool = True) -> dict[str, InputStats]:
    """Input statistics of every target Linear over ``batches`` (eval mode, no grad).

    ``batches`` are ``(x, ...)`` tuples (or bare tensors) of model inputs. Layers that are
    never called as modules are missing from the result. With ``stop_early`` the forward
    of each batch is cut short once all targets were called.
    """
    modules = dict(model.named_modules())
    names = [t.module_name for t in targets]
    stats: dict[str, InputStats] = {}
    seen: set[str] = set()

    def hook(name: str) -> Callable[..., None]:
        def fn(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            sq = x.pow(2).sum(0)
            g = x.T @ x if gram else None
            s = stats.get(name)
            if s is None:
                stats[name] = InputStats(sq, g, x.shape[0])
            else:
                s.sq += sq
                if g is not None and s.gram is not None:
                    s.gram += g
                s.n += x.shape[0]
            seen.add(name)
            if stop_early and len(seen) == len(names):
                raise _Stop

        return fn

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                seen.clear()
                try:
                    model(x.to(device))
                except _Stop:
                    pass
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return stats


#: ``prune_layer(target, module, stats) -> keep-mask`` (bool, weight-shaped); may change the weight.
LayerPruner = Callable[[Prunable, nn.Module, InputStats], torch.Tensor]


def sequential(model: nn.Module, targets: Sequence[Prunable], batches: Sequence[Any], prune_layer: LayerPruner,
               *, gram: bool = False) -> Mask:
    """Prune block after block: statistics of block ``b`` come from the model with blocks
    ``< b`` already pruned (weights zeroed, or reconstructed by ``prune_layer``).

    Returns the keep-mask of every target; the model's pruned weights are zero on return.
    """
    modules = dict(model.named_modules())
    out: dict[str, torch.Tensor] = {}
    for group in blocks(targets):
        stats = collect(model, group, batches, gram=gram)
        for t in group:
            if t.module_name not in stats:
                raise ValueError(f"layer {t.module_name!r} was never called as a module; its inputs cannot be observed")
            module = modules[t.module_name]
            keep = prune_layer(t, module, stats.pop(t.module_name))
            with torch.no_grad():
                module.weight.mul_(keep.to(module.weight.dtype))
            out[t.param_name] = keep.bool()
        del stats
    return Mask(out)
