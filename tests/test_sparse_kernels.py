"""Sparse kernels: the CSR path computes the same outputs and is timed beside the dense one."""

from __future__ import annotations

import copy

import torch
from torch import nn

from prunebench.sparse_kernels import (
    SparseLinear, crossover_sparsity, linear_kernel_timing, measure_sparse_speedup, sparsify,
)


def masked_mlp(sparsity: float) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                m.weight[torch.rand_like(m.weight) < sparsity] = 0
    return net


def test_sparse_linear_matches_dense() -> None:
    lin = masked_mlp(0.9)[1]
    x = torch.randn(5, 3, 64)  # leading dims are kept
    with torch.no_grad():
        assert torch.allclose(SparseLinear(lin)(x), lin(x), rtol=1e-5, atol=1e-5)
    assert SparseLinear(lin).weight.layout == torch.sparse_csr


def test_kernel_timing_reports_format_and_speedup() -> None:
    t = linear_kernel_timing(masked_mlp(0.95)[1], torch.randn(8, 64), rounds=1, repeats=2)
    assert t.format == "csr" and t.dense_ms > 0 and t.sparse_ms > 0
    assert t.speedup == t.dense_ms / t.sparse_ms


def test_sparsify_keeps_outputs_and_callers_model(monkeypatch) -> None:
    from prunebench import sparse_kernels

    net, x = masked_mlp(0.9), torch.randn(4, 1, 8, 8)
    before = [p.clone() for p in net.parameters()]
    # make the sparse path "win" deterministically so the swap is exercised
    monkeypatch.setattr(sparse_kernels, "linear_kernel_timing",
                        lambda lin, x, **_: sparse_kernels.KernelTiming(2.0, 1.0, "csr"))
    sparse, timings = sparsify(net, x)
    assert set(timings) == {"1", "3"}
    assert isinstance(sparse[1], SparseLinear) and isinstance(net[1], nn.Linear)
    with torch.no_grad():
        assert torch.allclose(sparse(x), net(x), rtol=1e-5, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    out = measure_sparse_speedup(net, x, rounds=1, repeats=1, warmup=1)
    assert out["sparse_format"] == "csr:2/2" and out["speedup_measured_sparse"] > 0


def test_dense_layers_are_not_tried() -> None:
    out = measure_sparse_speedup(masked_mlp(0.0), torch.randn(2, 64), rounds=1, repeats=1, warmup=1)
    assert out["sparse_format"] == "dense" and out["speedup_measured_sparse"] == 1.0


def test_crossover_is_where_sparse_stays_faster() -> None:
    assert crossover_sparsity([0.5, 0.9, 0.7, 0.99], [0.3, 1.5, 0.8, 3.0]) == 0.9
    assert crossover_sparsity([0.5, 0.9, 0.99], [1.2, 0.9, 3.0]) == 0.99  # a dip above 0.5 resets it
    assert crossover_sparsity([0.5, 0.9], [0.2, 0.9]) is None


# ---- the 2:4 semi-structured path (GPU only; its plumbing is checked here on the CPU) ----
def two_four_mlp() -> nn.Module:
    """An MLP whose first Linear is 2:4 (the two largest of every four inputs kept) and whose
    last is not."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        w = net[1].weight.view(32, 16, 4)
        low = w.abs().argsort(-1)[..., :2]
        w.scatter_(-1, low, 0.0)
        net[3].weight[:, :3] = 0.0
    return net


def test_two_four_pattern_is_recognised() -> None:
    from prunebench.sparse_kernels import is_two_four

    net = two_four_mlp()
    assert is_two_four(net[1].weight)
    assert not is_two_four(net[3].weight)  # rows keep three or four of their first four
    assert not is_two_four(torch.zeros(4, 6))  # inputs not a multiple of four
    w = net[1].weight.detach().clone()
    w[0, 0:4] = 1.0  # one group of four with four nonzeros
    assert not is_two_four(w)


def test_two_four_is_not_tried_on_the_cpu() -> None:
    from prunebench.sparse_kernels import _two_four_module, semi_structured_supported

    assert not semi_structured_supported(torch.device("cpu"))
    assert _two_four_module(two_four_mlp()[1], torch.randn(8, 64)) is None
    assert linear_kernel_timing(two_four_mlp()[1], torch.randn(8, 64), rounds=1, repeats=1).format == "csr"


def test_two_four_refused_by_torch_falls_back_to_csr(monkeypatch) -> None:
    from prunebench import sparse_kernels

    def refuse(_w):
        raise RuntimeError("Error original_tensor.shape torch.Size([32, 64]) is not supported!")

    monkeypatch.setattr(sparse_kernels, "semi_structured_supported", lambda device: True)
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", refuse)
    assert sparse_kernels._two_four_module(two_four_mlp()[1], torch.randn(8, 64)) is None
    assert linear_kernel_timing(two_four_mlp()[1], torch.randn(8, 64), rounds=1, repeats=1).format == "csr"


def test_two_four_layers_and_their_half_precision_reference(monkeypatch) -> None:
    """With the GPU conversion stood in for by the dense fp16 weight, a 2:4 layer that wins
    is swapped in, the reference model gets a half-precision dense layer at the same place,
    the outputs agree to fp16 precision, and the row names both formats."""
    from prunebench import sparse_kernels
    from prunebench.sparse_kernels import HalfLinear

    monkeypatch.setattr(sparse_kernels, "semi_structured_supported", lambda device: True)
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", lambda w: w)
    timings = {"2:4": sparse_kernels.KernelTiming(3.0, 1.0, "2:4"), "csr": sparse_kernels.KernelTiming(2.0, 1.0, "csr")}
    monkeypatch.setattr(sparse_kernels, "linear_kernel_timing",
                        lambda lin, x, **_: timings["2:4" if sparse_kernels.is_two_four(lin.weight) else "csr"])
    net, x = two_four_mlp(), torch.randn(4, 1, 8, 8)
    ref = copy.deepcopy(net).eval()
    sparse, got = sparsify(net, x, reference=ref)
    assert {k: t.format for k, t in got.items()} == {"1": "2:4", "3": "csr"}
    assert isinstance(sparse[1], HalfLinear) and isinstance(sparse[3], SparseLinear)
    assert isinstance(ref[1], HalfLinear) and isinstance(ref[3], nn.Linear)
    assert ref[1].weight.dtype == torch.float16
    with torch.no_grad():
        assert torch.allclose(sparse(x), net(x), rtol=1e-2, atol=1e-2)
        assert torch.allclose(ref(x), sparse(x), rtol=1e-3, atol=1e-3)
    out = measure_sparse_speedup(net, x, rounds=1, repeats=1, warmup=1)
    assert out["sparse_format"] == "csr:1/2+2:4:1/2" and out["speedup_measured_sparse"] > 0
