"""Wanda (Sun et al. 2024): ``|W_ij| · ‖X_j‖₂``, weights times input-feature norms.

``‖X_j‖₂`` is the L2 norm of input feature ``j`` of the layer over every sample (and
every position) of the calibration batches, observed with forward hooks in eval mode.
For a convolution the input feature of weight ``W[o, c, k…]`` is input channel ``c`` at
kernel offset ``k`` (a column of the unfolded input, zero padding included), so the
score is exactly Wanda's for the convolution written as a matrix product.

Rejected before training when a pruned layer is never called as a module (its weight is
used functionally, e.g. inside ``nn.MultiheadAttention``): there is no input to observe.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from prunebench.errors import ConfigError
from prunebench.pruning.criterion import ScoreContext, Scores, register_criterion
from prunebench.pruning.targets import Prunable


def _conv_input_sq_norms(module: nn.modules.conv._ConvNd, x: torch.Tensor) -> torch.Tensor:
    """Σ x² of every unfolded input column: shape ``(in_channels, *kernel_size)``."""
    pad = module._reversed_padding_repeated_twice
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    if any(pad):
        x = F.pad(x, pad, mode=mode)
    sq = x.detach().float().pow(2).sum(0)  # (C, *spatial): the batch adds up
    spatial = sq.shape[1:]
    out_size = [
        (n - d * (k - 1) - 1) // s + 1
        for n, k, s, d in zip(spatial, module.kernel_size, module.stride, module.dilation, strict=True)
    ]
    norms = sq.new_zeros((sq.shape[0], *module.kernel_size))
    dims = tuple(range(1, sq.dim()))
    for offset in itertools.product(*(range(k) for k in module.kernel_size)):
        window = tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s)
            for o, d, s, n in zip(offset, module.dilation, module.stride, out_size, strict=True)
        )
        norms[(slice(None), *offset)] = sq[(slice(None), *window)].sum(dims)
    return norms


def _input_sq_norms(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Σ x² per input feature, shaped to broadcast against ``module.weight``."""
    if isinstance(module, nn.Linear):
        return x.detach().float().pow(2).reshape(-1, x.shape[-1]).sum(0).unsqueeze(0)
    assert isinstance(module, nn.modules.conv._ConvNd)
    norms = _conv_input_sq_norms(module, x)
    groups, out = module.groups, module.out_channels
    # Grouped convolution: output channel o sees the input channels of group o // (out/groups).
    per_group = norms.view(groups, module.in_channels // groups, *module.kernel_size)
    return per_group.repeat_interleave(out // groups, dim=0)


def _observe(model: nn.Module, targets: list[Prunable], batches: list[Any]) -> dict[str, torch.Tensor]:
    """Sum of squared inputs per target module over ``batches`` (forward hooks, eval mode)."""
    modules = dict(model.named_modules())
    sums: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str) -> Any:
        def fn(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            sq = _input_sq_norms(module, args[0])
            sums[name] = sums[name] + sq if name in sums else sq

        return fn

    was_training = model.training
    try:
        for t in targets:
            handles.append(modules[t.module_name].register_forward_hook(hook(t.module_name)))
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            for x, *_ in batches:
                model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return sums


def check_observable(model: nn.Module, targets: list[Prunable], spec: Any, example: torch.Tensor) -> None:
    """Every pruned layer must be called as a module, so its input can be observed."""
    seen = _observe(model, targets, [(example,)])
    missing = [t.module_name for t in targets if t.module_name not in seen]
    if missing:
        raise ConfigError(
            f"pruning.method=wanda needs the inputs of every pruned layer, but model={spec.model.name!r} never calls "
            f"{', '.join(missing)} as a module (the weights are used functionally); choose another pruning.method "
            f"(e.g. magnitude) or keep those layers dense"
        )


@register_criterion("wanda", needs_data=True, validate=check_observable)
def wanda(model: nn.Module, targets: list[Prunable], ctx: ScoreContext) -> Scores:
    if not ctx.batches:
        raise ConfigError("pruning.method=wanda needs calibration batches; pruning.calibration_batches must be >= 1")
    sums = _observe(model, targets, ctx.batches)
    params = dict(model.named_parameters())
    out = {}
    for t in targets:
        w = params[t.param_name].detach()
        out[t.param_name] = w.abs().float() * sums[t.module_name].sqrt().to(w.device)
    return out


# ---- Wanda's comparison group: per output row -------------------------------------------
# The paper (Sun et al. 2024, Sec. 3) compares weights within each output row of a layer,
# not across the layer or the network; ``pruning.scope=row`` does that for any criterion.


def row_keep(scores: torch.Tensor, keep: torch.Tensor, sparsity: float, n_total: int | None = None) -> torch.Tensor:
    """Keep-mask removing the lowest scores of every output row, the same number per row.

    Rows are ``weight[o]`` flattened (all input positions of output ``o``). The tensor loses
    ``n_total`` weights (default ``round(sparsity · numel)``, so counts are exact as for
    ``scope=layer``): ``n_total // rows`` per row, one more in the first ``n_total % rows``
    rows. Weights already pruned (``keep`` False) sort first and count towards their row's
    quota; a row already past its quota stays as it is (masks never regrow). Ties by position.
    """
    s = torch.nan_to_num(scores.detach().float().reshape(scores.shape[0], -1).cpu(), nan=float("-inf"))
    k = keep.reshape(keep.shape[0], -1).cpu()
    s = s.masked_fill(~k, float("-inf"))
    rows, cols = s.shape
    total = round(sparsity * s.numel()) if n_total is None else int(n_total)
    quota = torch.full((rows, 1), total // rows)
    quota[: total % rows] += 1
    order = torch.argsort(s, dim=1, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(cols).expand(rows, cols).contiguous())
    out = rank >= quota
    return (out & k).view_as(keep).to(keep.device)


def allocate_row(scores: Any, mask: Any, target: float) -> Any:
    """``pruning.scope=row``: every output row of every tensor pruned to ``target`` (Wanda's group)."""
    from prunebench.pruning.mask import Mask

    return Mask({n: row_keep(scores[n], keep, target) for n, keep in mask.items()})


def wanda_layer_scores(weight: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    """``|W_ij| · ‖X_j‖₂`` from the summed squared inputs ``sq = Σ_n x_nj²`` (``[in]``)."""
    return weight.detach().abs().float() * sq.to(weight.device).sqrt().reshape(1, -1)


def prune_sequential(net: nn.Module, targets: list[Prunable], batches: list[Any], sparsity: Any,
                     nm: tuple[int, int] | None = None, *, mask: Any = None, score: str = "wanda") -> Any:
    """Wanda as in its official code: per output row, block after block, each block's input
    norms taken from the model with earlier blocks already pruned. Returns the keep-mask and
    zeroes the pruned weights (no other weight changes).

    ``sparsity``: a fraction or a mapping param name → fraction (OWL); ``nm=(n, m)`` for N:M
    (``sparsity`` ignored); ``score="magnitude"`` uses ``|W|`` with the same groups.
    """
    from prunebench.pruning.calibration import InputStats, sequential
    from prunebench.pruning.nm import nm_mask

    def prune_layer(t: Prunable, module: nn.Module, stats: InputStats) -> torch.Tensor:
        w = module.weight
        keep = mask[t.param_name] if mask is not None and t.param_name in mask else torch.ones_like(w, dtype=torch.bool)
        s = wanda_layer_scores(w, stats.sq) if score == "wanda" else w.detach().abs().float()
        if nm is not None:
            from prunebench.pruning.mask import Mask

            return nm_mask({"w": s}, Mask({"w": keep}), nm[0], nm[1])["w"]
        frac = sparsity[t.param_name] if isinstance(sparsity, dict) else sparsity
        return row_keep(s, keep, float(frac))

    return sequential(net, targets, batches, prune_layer)
