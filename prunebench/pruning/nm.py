"""N:M semi-structured sparsity: in every group of M consecutive weights keep at most N.

Groups run along the input dimension (dim 1 of a Linear ``(out, in)`` or Conv
``(out, in, *kernel)`` weight, at each output and kernel position), the layout sparse
tensor cores accelerate (2:4 on NVIDIA Ampere and later). Any criterion's scores choose
which N survive in each group (ties by position); weights already pruned stay pruned.

Sparsity is fixed by the pattern: ``pruning.structure=nm`` with ``pruning.n=N`` and
``pruning.m=M`` requires ``schedule.target_sparsity = 1 - N/M``, and an iterative schedule
only if every level removes a whole number of weights per group (``schedule.mode=linear``
with 2:8 in three levels keeps 6, 4, then 2 of every 8). Every pruned tensor's input
dimension must be a multiple of M; the first or last layer can be kept dense with
``pruning.prune_first=false`` / ``pruning.prune_output=false``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from prunebench.errors import ConfigError
from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import Prunable


def _grouped(t: torch.Tensor, m: int) -> torch.Tensor:
    """View ``t`` (out, in, *k) as rows of ``m`` consecutive input positions."""
    return t.movedim(1, -1).reshape(-1, m)


def _ungrouped(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    moved = (shape[0], *shape[2:], shape[1])
    return g.reshape(moved).movedim(-1, 1)


def nm_mask(scores: Mapping[str, torch.Tensor], mask: Mask, n: int, m: int) -> Mask:
    """Keep the ``n`` highest-scoring surviving weights of every group of ``m``."""
    out = {}
    for name, keep in mask.items():
        s = torch.nan_to_num(scores[name].detach().float().cpu(), nan=float("-inf"))
        s[~keep.cpu()] = float("-inf")
        order = torch.argsort(_grouped(s, m), dim=-1, descending=True, stable=True)
        kept = torch.zeros_like(order, dtype=torch.bool).scatter_(-1, order[:, :n], True)
        kept &= _grouped(keep.cpu(), m)  # a group with fewer than n survivors does not regrow
        out[name] = _ungrouped(kept, keep.shape).to(keep.device)
    return Mask(out)


def satisfies_nm(mask: Mask, n: int, m: int) -> bool:
    """Whether every group of ``m`` consecutive input weights keeps at most ``n``."""
    return all(bool((_grouped(k, m).sum(-1) <= n).all()) for k in mask.values())


def options(spec: Any) -> tuple[int, int]:
    """``(pruning.n, pruning.m)``, validated."""
    n, m = spec.pruning.options.get("n"), spec.pruning.options.get("m")
    for key, value in (("pruning.m", m), ("pruning.n", n)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}={value!r} must be an integer with pruning.structure=nm (e.g. pruning.n=2 pruning.m=4)")
    if m < 2:
        raise ConfigError(f"pruning.m={m!r} is out of range; expected an integer >= 2")
    if not 1 <= n < m:
        raise ConfigError(f"pruning.n={n!r} is out of range; expected an integer in [1, pruning.m={m})")
    return n, m


def kept_per_group(target: float, m: int) -> int:
    """N at a level of cumulative sparsity ``target`` (a whole number of weights per group)."""
    return m - round(target * m)


def check_nm_spec(spec: Any, targets: list[Prunable], shapes: Mapping[str, torch.Size]) -> None:
    """Reject N:M settings that cannot hold exactly, before anything trains."""
    n, m = options(spec)
    sched = spec.schedule
    want = 1.0 - n / m
    if sched.name == "gradual":
        raise ConfigError("pruning.structure=nm fixes the sparsity at 1 - N/M per group; schedule=gradual is not supported")
    if not math.isclose(sched.target_sparsity, want, abs_tol=1e-5):  # the advice below prints 6 digits
        raise ConfigError(
            f"schedule.target_sparsity={sched.target_sparsity!r} does not match pruning.structure=nm with "
            f"pruning.n={n} pruning.m={m}, which removes exactly 1 - N/M = {want:g}; set schedule.target_sparsity={want:g}"
        )
    levels = spec.schedule.levels()
    if any(not math.isclose(s * m, round(s * m), abs_tol=1e-4) for s in levels):
        raise ConfigError(
            f"with pruning.structure=nm every level must remove a whole number of weights per group of m={m}, but "
            f"schedule={sched.name!r} (mode={sched.mode!r}) has levels {[round(s, 4) for s in levels]}; "
            f"use schedule=one_shot or schedule.mode=linear with iterations dividing {m - n}"
        )
    for t in targets:
        width = shapes[t.param_name][1]
        if width % m:
            raise ConfigError(
                f"pruning.structure=nm with pruning.m={m}: layer {t.module_name!r} has {width} input "
                f"{'features' if t.kind == 'linear' else 'channels'}, not a multiple of {m} (groups run along the "
                f"input dimension); choose an m dividing it, or keep the layer dense (pruning.prune_first=false / "
                f"pruning.prune_output=false)"
            )
