"""SparseGPT (Frantar & Alistarh 2023): one-shot pruning with layer-wise reconstruction.

Unlike a score criterion, SparseGPT changes the surviving weights: for each Linear layer
with calibration inputs ``X`` it chooses the mask and updates the remaining weights so the
layer output ``W X`` is reconstructed as well as possible (Optimal Brain Surgeon updates,
made cheap by sharing one inverse Hessian across rows). Following the official code
(IST-DASLab/sparsegpt, ``SparseGPT.fasterprune``):

- Hessian ``H = 2 XᵀX / N`` over all calibration tokens; columns never active get
  ``H_jj = 1``; dampening ``λ = percdamp · mean(diag H)`` (``percdamp = 0.01``) on the
  diagonal; then the upper Cholesky factor of ``H⁻¹`` (``Hinv``).
- Columns are processed left to right in blocks of ``blocksize = 128``. Per block, the
  mask is chosen by the OBS saliency ``w² / [Hinv]_jj²``: unstructured, the lowest
  ``sparsity`` fraction of the block (an exact count here, the official code thresholds);
  N:M, the ``M - N`` lowest of every group of M columns, chosen when the group is reached.
- Column by column, the pruned weights' error ``(w - q) / [Hinv]_jj`` is spread over the
  remaining columns of the block (``W[:, j:] -= err · Hinv[j, j:]``), and after the block
  over all later columns (lazy batched updates).
- Layers are pruned block by block in forward order (:func:`prunebench.pruning.calibration.sequential`):
  each transformer block's Hessians are taken from the model with earlier blocks already
  pruned and reconstructed.

Deviation: the official code zeroes the weights of never-active input columns; here they
are left as they are (they cannot affect calibration outputs, but may matter on other
data), so the achieved sparsity is exactly the requested one. Weights already pruned
(``mask``) stay pruned and count towards the target, as everywhere in prunebench.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from prunebench.errors import ConfigError
from prunebench.pruning.calibration import InputStats, sequential
from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import Prunable

BLOCKSIZE = 128
PERCDAMP = 0.01


def inverse_hessian_factor(H: torch.Tensor, percdamp: float = PERCDAMP) -> torch.Tensor:
    """Upper Cholesky factor of ``(H + λI)⁻¹`` with ``λ = percdamp · mean(diag H)``."""
    H = H.clone().double()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    idx = torch.arange(H.shape[0])
    H[idx, idx] += percdamp * torch.mean(torch.diag(H))
    L = torch.linalg.cholesky(H)
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True).float()


def sparsegpt_layer(W: torch.Tensor, H: torch.Tensor, sparsity: float, *, nm: tuple[int, int] | None = None,
                    keep: torch.Tensor | None = None, blocksize: int = BLOCKSIZE,
                    percdamp: float = PERCDAMP) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune and reconstruct one weight ``W [out, in]`` given the Hessian ``H [in, in]``.

    Returns ``(W_new, keep_mask)``: ``W_new`` is zero where ``keep_mask`` is False. ``nm =
    (n, m)`` keeps ``n`` of every ``m`` consecutive input weights (``sparsity`` is then
    ignored); ``keep`` is a previous keep-mask whose zeros stay pruned.
    """
    if nm is not None and blocksize % nm[1]:
        raise ConfigError(f"SparseGPT blocksize={blocksize} must be a multiple of pruning.m={nm[1]}")
    W = W.detach().clone().float()
    rows, cols = W.shape
    Hinv = inverse_hessian_factor(H.to(W.device), percdamp)
    prev_pruned = torch.zeros_like(W, dtype=torch.bool) if keep is None else ~keep.bool().to(W.device)
    pruned = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)
        prev1 = prev_pruned[:, i1:i2]
        if nm is None:
            sal = (W1**2 / d.reshape(1, -1) ** 2).masked_fill(prev1, -1.0)  # earlier prunes go first
            k = max(round(sparsity * W1.numel()), int(prev1.sum()))
            mask1 = torch.zeros(W1.numel(), dtype=torch.bool, device=W.device)
            mask1[torch.argsort(sal.flatten(), stable=True)[:k]] = True
            mask1 = mask1.view_as(W1)
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(count):
            w = W1[:, i]
            if nm is not None and i % nm[1] == 0:
                n, m = nm
                sal = (W1[:, i : i + m] ** 2 / d[i : i + m].reshape(1, -1) ** 2).masked_fill(prev1[:, i : i + m], -1.0)
                low = torch.argsort(sal, dim=1, stable=True)[:, : m - n]
                mask1.scatter_(1, i + low, True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err = (w - q) / d[i]
            W1[:, i:] -= err.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        pruned[:, i1:i2] = mask1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W, ~pruned


def _sparsity_of(sparsity: float | Mapping[str, float], t: Prunable) -> float:
    s = sparsity[t.param_name] if isinstance(sparsity, Mapping) else sparsity
    if not 0.0 <= s < 1.0:
        raise ConfigError(f"schedule.target_sparsity={s!r} is out of range for SparseGPT; expected [0, 1)")
    return float(s)


def prune(net: nn.Module, targets: Sequence[Prunable], batches: Sequence[Any], sparsity: float | Mapping[str, float],
          nm: tuple[int, int] | None = None, *, mask: Mask | None = None, blocksize: int = BLOCKSIZE,
          percdamp: float = PERCDAMP) -> Mask:
    """Prune ``targets`` of ``net`` with SparseGPT, updating the weights in place; returns the keep-mask.

    ``sparsity`` is one fraction for every layer or a mapping param name → fraction (OWL's
    per-layer sparsities); ``nm = (n, m)`` for N:M instead. ``batches`` are calibration
    batches of the training split. Only ``nn.Linear`` targets (the Hessian is of a matrix
    product); ``mask`` holds earlier levels' keep-masks, whose zeros stay zero.
    """
    if not batches:
        raise ConfigError("pruning.method=sparsegpt needs calibration batches; pruning.calibration_batches must be >= 1")
    bad = [t.module_name for t in targets if t.kind != "linear"]
    if bad:
        raise ConfigError(f"pruning.method=sparsegpt prunes nn.Linear layers only; not supported: {', '.join(bad)}")

    def prune_layer(t: Prunable, module: nn.Module, stats: InputStats) -> torch.Tensor:
        keep_prev = mask[t.param_name] if mask is not None and t.param_name in mask else None
        W, keep = sparsegpt_layer(module.weight, stats.hessian(), _sparsity_of(sparsity, t), nm=nm, keep=keep_prev,
                                  blocksize=blocksize, percdamp=percdamp)
        with torch.no_grad():
            module.weight.copy_(W.to(module.weight.dtype))
        return keep

    return sequential(net, targets, batches, prune_layer, gram=True)


def validate(net: nn.Module, targets: list[Prunable], spec: Any, example: torch.Tensor) -> None:
    """Reject, before any training, what SparseGPT cannot prune (for ``register_criterion(validate=...)``)."""
    bad = [t.module_name for t in targets if t.kind != "linear"]
    if bad:
        raise ConfigError(f"pruning.method=sparsegpt prunes nn.Linear layers only; model={spec.model.name!r} has "
                          f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}; use pruning.method=wanda or magnitude")
    if spec.pruning.structure not in ("unstructured", "nm"):
        raise ConfigError(f"pruning.method=sparsegpt supports pruning.structure=unstructured or nm; got {spec.pruning.structure!r}")
    if spec.schedule.name == "gradual":
        raise ConfigError("pruning.method=sparsegpt prunes one-shot per level; schedule=gradual is not supported")
    if spec.pruning.scope not in ("layer", "owl"):
        raise ConfigError(f"pruning.method=sparsegpt: pruning.scope={spec.pruning.scope!r} is not supported; valid: layer, owl")
