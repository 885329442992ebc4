"""Sparse kernels, measured: does a sparse format make a masked layer faster on this device?

Unstructured masks leave dense kernels as slow as before (they do not skip zeros). This
module times a sparse execution path beside the dense one so the results table can say
where a sparse format starts to pay: masked ``nn.Linear`` layers run as a CSR matrix
(``torch.sparse.mm``, MKL/cuSPARSE underneath) times the dense activations.

Convolutions stay dense: PyTorch has no sparse convolution kernel on CPU (a sparse
im2col-matmul would be a kernel of our own, not what a user ships).

Semi-structured 2:4 (``torch.sparse.to_sparse_semi_structured``, NVIDIA's sparse tensor
cores) is tried as well when the input is on an Ampere-or-newer GPU and a Linear weight is
2:4 (at most two nonzeros in every four consecutive inputs, as ``pruning.structure=nm``
leaves it) with a shape the kernels accept. It runs in half precision, so its dense
reference is the same layer in half precision too: the speedup is the sparse kernel's
alone, not fp16's. Any refusal by torch (shape, dtype, build) falls back to CSR for that
layer. This path was written against torch's documented API but has not been run on a GPU
by this project yet (no GPU was available); CPU runs never take it.
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
TWO_FOUR_FORMAT = "2:4"


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


class HalfLinear(nn.Module):
    """``linear`` computed in half precision (inputs cast in, outputs cast back): the dense
    reference of a 2:4 layer, and, with a 2:4 weight, the sparse layer itself."""

    def __init__(self, linear: nn.Linear, semi_structured: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().to(torch.float16).contiguous()
        if semi_structured:
            w = torch.sparse.to_sparse_semi_structured(w)
        self.register_buffer("weight", w)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(torch.float16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.float16)
        y = F.linear(flat, self.weight, self.bias)
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)


def is_two_four(weight: torch.Tensor) -> bool:
    """Every group of four consecutive inputs of every row has at most two nonzeros."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    return bool(((weight != 0).reshape(weight.shape[0], -1, 4).sum(-1) <= 2).all())


def semi_structured_supported(device: torch.device) -> bool:
    """A CUDA device of compute capability 8.0 or newer (sparse tensor cores)."""
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)


def _two_four_module(linear: nn.Linear, x: torch.Tensor) -> tuple[nn.Module, nn.Module] | None:
    """(half-precision dense reference, 2:4 sparse layer) on ``x``'s device, or None where
    the path does not apply or torch refuses the weight."""
    if not semi_structured_supported(x.device) or not is_two_four(linear.weight):
        return None
    try:
        # the layer is on x's device already: no .to() on the semi-structured tensor subclass
        ref, sparse = HalfLinear(linear), HalfLinear(linear, semi_structured=True)
        with torch.inference_mode():
            sparse(x)
        return ref, sparse
    except (RuntimeError, NotImplementedError, ValueError):  # shape, dtype or build not supported
        return None


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
    """The layer's sparse path against its dense one on input ``x``, interleaved, on ``x``'s
    device: 2:4 semi-structured against half-precision dense where that applies (see the
    module docstring), else CSR against ``F.linear``."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    pair = _two_four_module(linear, x)
    if pair is not None:
        ref, semi = pair
        t = _time({"dense": lambda: ref(x), "sparse": lambda: semi(x)}, rounds, repeats, sync)
        return KernelTiming(t["dense"], t["sparse"], TWO_FOUR_FORMAT)
    sparse = SparseLinear(linear).to(x.device)
    w, b = linear.weight.detach(), None if linear.bias is None else linear.bias.detach()
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


def _replace(net: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, module)


def sparsify(model: nn.Module, example_input: torch.Tensor, *, rounds: int = 3,
             repeats: int = 10, reference: nn.Module | None = None) -> tuple[nn.Module, dict[str, KernelTiming]]:
    """(an eval copy of ``model`` with a sparse format in every Linear where that is faster
    on ``example_input``, {layer name: its timing}). Layers without zeros are not tried.

    A layer that goes 2:4 runs in half precision; pass ``reference`` (an eval copy of
    ``model``) to have the same layers swapped for half-precision dense ones there, so a
    whole-model comparison differs only in the sparse kernels.
    """
    net = copy.deepcopy(model).eval()
    inputs = _linear_inputs(net, example_input)
    timings = {}
    for name, x in inputs.items():
        lin = net.get_submodule(name)
        if bool((lin.weight != 0).all()):
            continue
        timings[name] = timing = linear_kernel_timing(lin, x, rounds=rounds, repeats=repeats)
        if timing.speedup <= 1.0:
            continue
        if timing.format == TWO_FOUR_FORMAT:
            _replace(net, name, HalfLinear(lin, semi_structured=True))
            if reference is not None:
                _replace(reference, name, HalfLinear(reference.get_submodule(name)))
        else:
            _replace(net, name, SparseLinear(lin))
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
    dense = copy.deepcopy(model).eval()
    sparse, timings = sparsify(model, example_input, rounds=rounds, repeats=repeats, reference=dense)
    n_csr = sum(isinstance(m, SparseLinear) for m in sparse.modules())
    n_24 = sum(isinstance(m, HalfLinear) for m in sparse.modules())
    if n_csr + n_24 == 0:
        return {"speedup_measured_sparse": 1.0, "sparse_format": "dense", "latency_ms_sparse": float("nan")}
    t = interleaved_latency({"dense": dense, "sparse": sparse}, example_input, rounds=rounds, repeats=repeats,
                            warmup=warmup)
    formats = [f"{fmt}:{k}/{n_linear}" for fmt, k in ((SPARSE_FORMAT, n_csr), (TWO_FOUR_FORMAT, n_24)) if k]
    return {"speedup_measured_sparse": t["dense"] / t["sparse"], "sparse_format": "+".join(formats),
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
