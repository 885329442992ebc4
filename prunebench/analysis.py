"""Per-layer sensitivity analysis (Distiller-style).

Prune each prunable layer ALONE, at each of a list of sparsities, on a copy of the
trained weights, and measure accuracy on the VALIDATION split (never test: the result is
meant to guide choices such as per-layer sparsities, so it must not peek at the test
set). Layers whose accuracy falls early are sensitive; flat curves mark layers that can
be pruned hard. ``prunebench.plots.layer_sensitivity`` draws the table, and
``prunebench-report`` draws every ``runs/<id>/sensitivity.csv`` it finds.

    from prunebench.analysis import layer_sensitivity
    sens = layer_sensitivity(net, dm, [0.5, 0.8, 0.9, 0.95])
    plots.layer_sensitivity(sens)

``experiments/layer_sensitivity.py`` runs it for any composed config (dense model from
the dense cache).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from prunebench.errors import ConfigError, check_range

#: Columns of the sensitivity table, in order.
COLUMNS = ["layer", "param", "kind", "numel", "sparsity", "achieved", "acc", "loss", "acc_dense", "loss_dense",
           "drop", "method", "split"]

SENSITIVITY_FILE = "sensitivity.csv"


def _val_loader(data: Any) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """A validation loader from a data module (``val_dataloader()``) or an iterable of batches."""
    if hasattr(data, "val_dataloader"):
        return data.val_dataloader()
    return data


def layer_sensitivity(
    net: nn.Module,
    data: Any,
    sparsities: Sequence[float],
    method: str = "magnitude",
    *,
    layers: Sequence[str] | None = None,
    prune_output: bool = True,
    prune_first: bool = True,
    calibration_batches: int = 8,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> pd.DataFrame:
    """Accuracy when each prunable layer alone is pruned to each sparsity.

    ``net``: the trained model (left unchanged: the analysis runs on a deep copy and
    restores each layer's weights after measuring it). ``data``: a data module (its
    ``val_dataloader()`` is used; data-driven criteria also draw ``calibration_batches``
    training batches from its ``calibration_batches()``) or an iterable of validation
    ``(x, y)`` batches. ``sparsities``: fractions of the layer's weights to remove, each in
    [0, 1). ``method``: an unstructured criterion name (``prunebench.pruning.criteria``),
    scored on the whole unpruned network and applied within the one layer. ``layers``:
    module names to analyse (default: every prunable Conv/Linear weight, honouring
    ``prune_output`` / ``prune_first``).

    Returns one row per (layer, sparsity), layers in module order, with columns
    :data:`COLUMNS`: ``acc``/``loss`` on the validation split after pruning,
    ``acc_dense``/``loss_dense`` of the unpruned model, ``drop = acc_dense - acc``,
    ``achieved`` the layer's achieved sparsity, ``split`` = "val".
    """
    from prunebench.engine.module import evaluate
    from prunebench.pruning.scopes import allocate
    from prunebench.pruning.criteria import ScoreContext, get_criterion
    from prunebench.pruning.mask import Mask
    from prunebench.pruning.targets import prunable_weights

    levels = [float(s) for s in sparsities]
    if not levels:
        raise ConfigError("sparsities is empty; give at least one layer sparsity in [0, 1)")
    for s in levels:
        check_range("sparsity", s, 0.0, 1.0)
    crit = get_criterion(method)
    work = copy.deepcopy(net)
    if device is not None:
        work = work.to(device)
    dev = next(work.parameters()).device
    targets = prunable_weights(work, prune_output=prune_output, prune_first=prune_first)
    if layers is not None:
        known = {t.module_name for t in targets}
        unknown = [name for name in layers if name not in known]
        if unknown:
            raise ConfigError(f"layers {unknown} are not prunable layers of this model; valid: {', '.join(sorted(known))}")
        targets = [t for t in targets if t.module_name in set(layers)]
    if not targets:
        raise ConfigError("the model has no prunable Conv/Linear weights to analyse")
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    if crit.needs_data:
        if not hasattr(data, "calibration_batches"):
            raise ConfigError(f"method={method!r} needs training batches: pass a data module, not a loader")
        batches = data.calibration_batches(calibration_batches)
    loader = _val_loader(data)
    acc_dense, loss_dense = evaluate(work, loader, dev)
    params = dict(work.named_parameters())
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    rows: list[dict[str, Any]] = []
    for target in targets:
        weight = params[target.param_name]
        original = weight.detach().clone()
        base = Mask.ones_like(work, [target.param_name])
        ctx = ScoreContext(mask=base, batches=batches, generator=gen, target=None, scope="layer")
        scores = crit.fn(work, [target], ctx)
        try:
            for s in levels:
                mask = allocate(scores, base, s, "layer")
                mask.apply(work)
                achieved = 1.0 - int(torch.count_nonzero(mask[target.param_name])) / target.numel
                acc, loss = evaluate(work, loader, dev)
                rows.append({
                    "layer": target.module_name, "param": target.param_name, "kind": target.kind,
                    "numel": target.numel, "sparsity": s, "achieved": achieved, "acc": acc, "loss": loss,
                    "acc_dense": acc_dense, "loss_dense": loss_dense, "drop": acc_dense - acc,
                    "method": method, "split": "val",
                })
                with torch.no_grad():
                    weight.copy_(original)
        finally:
            with torch.no_grad():
                weight.copy_(original)
    return pd.DataFrame(rows, columns=COLUMNS)
