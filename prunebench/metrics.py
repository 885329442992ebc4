"""Cost metrics of a (pruned) model: parameters, FLOPs and measured latency.

FLOPs come from ``torch.utils.flop_counter`` (real operator counts, not formulas). For
unstructured masks the effective FLOPs scale each masked layer's count by its density:
that is the *theoretical* saving a sparse kernel could reach. Measured latency is reported
beside it because dense kernels on ordinary hardware do not skip zeros — the gap between
the two is what users need to see.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """All parameters (weights, biases, normalisation), pruned or not."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Parameters that are not exactly zero."""
    return sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())


@torch.no_grad()
def layer_flops(model: nn.Module, example_input: torch.Tensor) -> tuple[float, dict[str, float]]:
    """Per-sample forward FLOPs: (total, {module name: FLOPs of that module incl. children}).

    ``example_input`` is a batch; counts are divided by its size.
    """
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(example_input)
    finally:
        model.train(was_training)
    batch = example_input.shape[0]
    root = type(model).__name__
    per_module: dict[str, float] = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            continue
        name = key[len(root) + 1 :] if key.startswith(root + ".") else ("" if key == root else key)
        per_module[name] = sum(ops.values()) / batch
    return counter.get_total_flops() / batch, per_module


def effective_flops(
    model: nn.Module,
    example_input: torch.Tensor,
    densities: Mapping[str, float] | None = None,
) -> tuple[float, float]:
    """(effective FLOPs, dense FLOPs) per sample for this model as it is now.

    ``densities`` maps module names (as in ``named_modules``) to the fraction of their
    weights kept by an unstructured mask; each such module's FLOPs are scaled by it.
    Structured pruning needs no densities: the smaller model simply counts fewer FLOPs.
    """
    total, per_module = layer_flops(model, example_input)
    saved = 0.0
    for name, density in (densities or {}).items():
        saved += per_module.get(name, 0.0) * (1.0 - float(density))
    return total - saved, total


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    warmup: int = 5,
    repeats: int = 30,
) -> float:
    """Median wall time in milliseconds of one forward pass on ``example_input``.

    Runs in eval mode on the model's current device after ``warmup`` untimed passes;
    synchronises CUDA around every timed pass so the time is real, not launch latency.
    """
    was_training = model.training
    model.eval()
    device = example_input.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    try:
        for _ in range(warmup):
            model(example_input)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(example_input)
            sync()
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
    return statistics.median(times)
