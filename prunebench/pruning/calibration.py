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
and Wanda's sequential order: later layers see the pruned earlier layers' outputs). When the
blocks are modules run one after another, their inputs are cached and each block is re-run
alone (about three forwards in all, as in the official code); otherwise each block's pass
runs the model and stops once every layer of the block has seen its input.
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
            stop_early: bool = True, forward: Callable[[Any], Any] | None = None) -> dict[str, InputStats]:
    """Input statistics of every target Linear over ``batches`` (eval mode, no grad).

    ``batches`` are ``(x, ...)`` tuples (or bare tensors) of model inputs. Layers that are
    never called as modules are missing from the result. With ``stop_early`` the forward
    of each batch is cut short once all targets were called. ``forward(batch)``, if given,
    replaces ``model(x)`` (re-running one block from cached inputs).
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
                seen.clear()
                try:
                    if forward is not None:
                        forward(batch)
                    else:
                        x = batch[0] if isinstance(batch, (tuple, list)) else batch
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


def _block_inputs(model: nn.Module, keys: list[str], batches: Sequence[Any]) -> list[list[tuple[tuple, dict]]] | None:
    """The arguments each block module is called with, per batch, from one dense forward;
    None unless the blocks run once each, in order, each fed the previous block's output
    (then a block can be re-run on its own from cached inputs)."""
    modules = dict(model.named_modules())
    if any(k not in modules for k in keys):
        return None
    calls: list[list[tuple[tuple, dict, Any]]] = []
    current: list[tuple[tuple, dict, Any]] = []
    handles = []
    for i, k in enumerate(keys):
        last = i == len(keys) - 1

        def fn(module: nn.Module, args: tuple, kwargs: dict, output: Any, last: bool = last) -> None:
            current.append((args, kwargs, output))
            if last:
                raise _Stop

        handles.append(modules[k].register_forward_hook(fn, with_kwargs=True))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                current = []
                try:
                    model(x.to(device))
                except _Stop:
                    pass
                calls.append(current)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for per_batch in calls:
        if len(per_batch) != len(keys) or not per_batch[0][0]:
            return None
        for (_, _, out), (args, _, _) in zip(per_batch, per_batch[1:], strict=False):
            first = out[0] if isinstance(out, tuple) else out
            if not args or not isinstance(first, torch.Tensor) or first.shape != args[0].shape or not torch.equal(first, args[0]):
                return None
    return [[(args, kwargs) for args, kwargs, _ in per_batch] for per_batch in calls]


def sequential(model: nn.Module, targets: Sequence[Prunable], batches: Sequence[Any], prune_layer: LayerPruner,
               *, gram: bool = False) -> Mask:
    """Prune block after block: statistics of block ``b`` come from the model with blocks
    ``< b`` already pruned (weights zeroed, or reconstructed by ``prune_layer``).

    When the blocks are modules run one after the other (transformer decoder layers), each
    block's inputs are cached and only that block is re-run (as the official SparseGPT and
    Wanda code do): about three forwards in all. Otherwise every block costs a (truncated)
    forward of the whole model. Returns the keep-mask of every target; the model's pruned
    weights are zero on return.
    """
    modules = dict(model.named_modules())
    groups = blocks(targets)
    keys = [block_key(g[0].module_name) for g in groups]
    cached = _block_inputs(model, keys, batches) if len(set(keys)) == len(keys) else None
    hidden = [calls[0][0][0] for calls in cached] if cached is not None else []
    out: dict[str, torch.Tensor] = {}
    was_training = model.training
    model.eval()
    try:
        for b, group in enumerate(groups):
            if cached is None:
                stats = collect(model, group, batches, gram=gram)
            else:
                block = modules[keys[b]]

                def run(block: nn.Module = block, b: int = b) -> list[Any]:
                    with torch.no_grad():
                        res = []
                        for j, calls in enumerate(cached):
                            args, kwargs = calls[b]
                            o = block(hidden[j], *args[1:], **kwargs)
                            res.append(o[0] if isinstance(o, tuple) else o)
                        return res

                stats = _collect_with(model, group, run, gram=gram)
            for t in group:
                if t.module_name not in stats:
                    raise ValueError(f"layer {t.module_name!r} was never called as a module; its inputs cannot be observed")
                module = modules[t.module_name]
                keep = prune_layer(t, module, stats.pop(t.module_name))
                with torch.no_grad():
                    module.weight.mul_(keep.to(module.weight.dtype))
                out[t.param_name] = keep.bool()
            del stats
            if cached is not None:
                hidden = run()  # the pruned block's outputs feed the next block
    finally:
        model.train(was_training)
    return Mask(out)


def _collect_with(model: nn.Module, targets: Iterable[Prunable], run: Callable[[], Any], *, gram: bool) -> dict[str, InputStats]:
    """:func:`collect`, with ``run()`` doing the forward passes instead of the whole model."""
    return collect(model, targets, [None], gram=gram, stop_early=False, forward=lambda _: run())
