"""Sparse kernels, measured: does a sparse format make a masked layer faster on this device?

Unstructured masks leave dense kernels as slow as before (they do not skip zeros). This
module times a sparse execution path beside the dense one so the results table can say
where a sparse format starts to pay: masked ``nn.Linear`` layers run as a CSR matrix
(``torch.sparse.mm``, MKL/cuSPARSE underneath) times the dense activations.

Convolutions stay dense: PyTorch has no sparse convolution kernel on CPU (a sparse
im2col-matmul would be a kernel of our own, not what a user ships). Semi-structured 2:4
(``torch.sparse.to_sparse_semi_structured``) needs an Ampere-or-newer GPU and a 2:4 mask;
it is not tried here.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from prunebench.metrics import interleaved_latency

SPARSE_FORMAT = "csr"


def _csr(weight: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return weight.detach().to_sparse_csr()


class SparseLinear(nn.Module):
    """An ``nn.Linear`` whose weight is stored in CSR: ``y = (W_csr @ x^T)^T + b``."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", _csr(linear.weight))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


@dataclass(frozen=True)
class KernelTiming:
    dense_ms: float
    sparse_ms: float
    format: str

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.sparse_ms if self.sparse_ms else float("nan")


def _time(fns: dict[str, Callable[[], object]], rounds: int, repeats: int, sync: Callable[[], None]) -> dict[str, float]:
    """Best-of-rounds median ms of each callable, the callables timed in turn."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            one = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                f()
                sync()
                one.append((time.perf_counter() - t0) * 1e3)
            times[k].append(statistics.median(one))
    return {k: min(v) for k, v in times.items()}


@torch.inference_mode()
def linear_kernel_timing(linear: nn.Linear, x: torch.Tensor, *, rounds: int = 3, repeats: int = 10) -> KernelTiming:
    """Dense ``F.linear`` vs the CSR path on input ``x``, interleaved, on ``x``'s device."""
    sparse = SparseLinear(linear).to(x.device)
    w, b = linear.weight.detach(), None if linear.bias is None else linear.bias.detach()
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    t = _time({"dense": lambda: F.linear(x, w, b), "sparse": lambda: sparse(x)}, rounds, repeats, sync)
    return KernelTiming(t["dense"], t["sparse"], SPARSE_FORMAT)


def _linear_inputs(model: nn.Module, example_input: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each ``nn.Linear`` of ``model`` sees on ``example_input``."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda _m, args, name=name: seen.setdefault(name, args[0].detach()))
             for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    try:
        with torch.inference_mode():
            model(example_input)
    finally:
        for h in hooks:
            h.remove()
    return seen


def sparsify(model: nn.Module, example_input: torch.Tensor, *, rounds: int = 3,
             repeats: int = 10) -> tuple[nn.Module, dict[str, KernelTiming]]:
    """(an eval copy of ``model`` with CSR weights in every Linear where that is faster on
    ``example_input``, {layer name: its timing}). Layers without zeros are not tried."""
    net = copy.deepcopy(model).eval()
    inputs = _linear_inputs(net, example_input)
    timings = {}
    for name, x in inputs.items():
        lin = net.get_submodule(name)
        if bool((lin.weight != 0).all()):
            continue
        timings[name] = linear_kernel_timing(lin, x, rounds=rounds, repeats=repeats)
        if timings[name].speedup > 1.0:
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, child, SparseLinear(lin))
    return net, timings


def measure_sparse_speedup(model: nn.Module, example_input: torch.Tensor, *, rounds: int = 3,
                           repeats: int = 10, warmup: int = 3) -> dict[str, object]:
    """Whole-model latency with the sparse format where it wins, against the model as is.

    Returns the row columns ``speedup_measured_sparse`` (dense ms / sparse ms, both timed
    eagerly in interleaved rounds), ``sparse_format`` (``csr`` with the number of Linear
    layers it replaced, e.g. ``csr:2/3``, or ``dense`` when no layer gained or none has
    zeros) and ``latency_ms_sparse``. The caller's model is unchanged.
    """
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    sparse, timings = sparsify(model, example_input, rounds=rounds, repeats=repeats)
    n_sparse = sum(isinstance(m, SparseLinear) for m in sparse.modules())
    if n_sparse == 0:
        return {"speedup_measured_sparse": 1.0, "sparse_format": "dense", "latency_ms_sparse": float("nan")}
    dense = copy.deepcopy(model).eval()
    t = interleaved_latency({"dense": dense, "sparse": sparse}, example_input, rounds=rounds, repeats=repeats,
                            warmup=warmup)
    return {"speedup_measured_sparse": t["dense"] / t["sparse"], "sparse_format": f"{SPARSE_FORMAT}:{n_sparse}/{n_linear}",
            "latency_ms_sparse": t["sparse"]}


def crossover_sparsity(sparsities: list[float], speedups: list[float]) -> float | None:
    """The lowest sparsity from which the sparse path stays faster (speedup > 1 there and at
    every higher sparsity measured), or None when it never overtakes dense."""
    pairs = sorted(zip(sparsities, speedups))
    best = None
    for s, x in reversed(pairs):
        if x <= 1.0:
            break
        best = s
    return best
