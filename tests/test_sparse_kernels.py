"""Sparse kernels: the CSR path computes the same outputs and is timed beside the dense one."""

from __future__ import annotations

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
