"""Exact selection without a sort: masks identical to the argsort implementation it replaced."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
import torch

from prunebench.pruning import allocation
from prunebench.pruning.allocation import allocate, erk_keep_counts
from prunebench.pruning.mask import Mask


# ---- the previous implementation (commit 44ec716), kept verbatim as the oracle ----
def _old_masked_scores(scores: Mapping[str, torch.Tensor], mask: Mask) -> dict[str, torch.Tensor]:
    out = {}
    for name, keep in mask.items():
        s = scores[name].detach().float().flatten().clone()
        s = torch.nan_to_num(s, nan=float("-inf"))
        s[~keep.flatten().to(s.device)] = float("-inf")
        out[name] = s
    return out


def _old_prune_lowest(flat: torch.Tensor, n_prune: int) -> torch.Tensor:
    keep = torch.ones_like(flat, dtype=torch.bool)
    if n_prune > 0:
        order = torch.argsort(flat, stable=True)
        keep[order[:n_prune]] = False
    return keep


def old_global(scores, mask: Mask, target: float) -> Mask:
    s = _old_masked_scores(scores, mask)
    names = list(s)
    flat = torch.cat([s[n].cpu() for n in names])
    total = flat.numel()
    already = total - mask.nonzero
    n_prune = max(round(target * total), already)
    keep = _old_prune_lowest(flat, n_prune)
    out, start = {}, 0
    for n in names:
        size = s[n].numel()
        out[n] = keep[start : start + size].view_as(mask[n]).to(mask[n].device)
        start += size
    return Mask(out)


def old_layer(scores, mask: Mask, target: float) -> Mask:
    s = _old_masked_scores(scores, mask)
    out = {}
    for n, flat in s.items():
        already = flat.numel() - int(mask[n].sum())
        n_prune = max(round(target * flat.numel()), already)
        out[n] = _old_prune_lowest(flat.cpu(), n_prune).view_as(mask[n]).to(mask[n].device)
    return Mask(out)


def old_erk(scores, mask: Mask, target: float) -> Mask:
    s = _old_masked_scores(scores, mask)
    total = mask.numel
    alive = {n: int(mask[n].sum()) for n in s}
    keep_total = min(round((1.0 - target) * total), sum(alive.values()))
    counts = erk_keep_counts({n: mask[n].shape for n in s}, alive, keep_total)
    return Mask({n: _old_prune_lowest(f.cpu(), f.numel() - counts[n]).view_as(mask[n]) for n, f in s.items()})


OLD = {"global": old_global, "layer": old_layer, "erk": old_erk}
# ---- end of the oracle ----


def random_case(seed: int) -> tuple[dict[str, torch.Tensor], Mask, float]:
    """Layers of varied sizes (empty and one-weight ones included), scores drawn to tie heavily
    (few distinct values, many zeros, signed zeros, NaN, ±inf) or not, some weights already pruned."""
    g = torch.Generator().manual_seed(seed)
    n_layers = int(torch.randint(1, 7, (1,), generator=g))
    scores, keeps = {}, {}
    for i in range(n_layers):
        size = [0, 1, 3, 17, 256, 3000, 40_000][int(torch.randint(0, 7, (1,), generator=g))]
        shape = (size,) if i % 2 else (1, size)
        kind = seed % 4
        if kind == 0:  # continuous
            s = torch.randn(shape, generator=g)
        elif kind == 1:  # heavy ties: five values, zeros and -0.0 among them
            s = torch.tensor([0.0, -0.0, 1.0, 2.0, 0.5])[torch.randint(0, 5, shape, generator=g)]
        elif kind == 2:  # mostly zeros
            s = torch.where(torch.rand(shape, generator=g) < 0.8, 0.0, torch.rand(shape, generator=g))
        else:  # specials
            s = torch.tensor([float("nan"), float("inf"), float("-inf"), 0.0, 3.0, -1.0])[
                torch.randint(0, 6, shape, generator=g)]
        scores[f"l{i}.weight"] = s
        pruned_frac = [0.0, 0.3, 0.9][int(torch.randint(0, 3, (1,), generator=g))]
        keeps[f"l{i}.weight"] = torch.rand(shape, generator=g) >= pruned_frac
    target = [0.0, 0.1, 0.5, 0.9, 0.95, 0.999][seed % 6]
    return scores, Mask(keeps), target


def assert_same(a: Mask, b: Mask) -> None:
    assert list(a) == list(b)
    for n in a:
        assert a[n].shape == b[n].shape and a[n].dtype == b[n].dtype == torch.bool
        assert torch.equal(a[n], b[n]), n


@pytest.mark.parametrize("scope", ["global", "layer", "erk"])
@pytest.mark.parametrize("seed", range(20))
def test_masks_equal_the_argsort_implementation(seed: int, scope: str) -> None:
    scores, mask, target = random_case(seed)
    assert_same(allocate(scores, mask, target, scope), OLD[scope](scores, mask, target))


@pytest.mark.parametrize("seed", range(20))
def test_small_chunks_and_sample_force_bracket_retries(seed: int, monkeypatch) -> None:
    """Small chunks and a 4-score sample: the bracket misses often and ties span chunk edges."""
    monkeypatch.setattr(allocation, "_CHUNK", 61)
    monkeypatch.setattr(allocation, "_SAMPLE", 4)
    scores, mask, target = random_case(seed)
    assert_same(allocate(scores, mask, target, "global"), old_global(scores, mask, target))
    assert_same(allocate(scores, mask, target, "layer"), old_layer(scores, mask, target))


def test_ties_are_broken_by_position_across_layers() -> None:
    scores = {"a": torch.zeros(5), "b": torch.zeros(5)}
    mask = Mask({"a": torch.ones(5, dtype=torch.bool), "b": torch.ones(5, dtype=torch.bool)})
    out = allocate(scores, mask, 0.7, "global")  # 7 of 10 equal scores: the first seven go
    assert out["a"].tolist() == [False] * 5
    assert out["b"].tolist() == [False, False, True, True, True]


def test_pruned_weights_stay_pruned_and_count_is_exact() -> None:
    scores = {"w": torch.arange(10.0)}
    mask = Mask({"w": torch.tensor([True] * 8 + [False] * 2)})  # the two largest are pruned
    out = allocate(scores, mask, 0.5, "global")
    assert out["w"].tolist() == [False, False, False, True, True, True, True, True, False, False]
    assert math.isclose(out.sparsity, 0.5)


def test_missing_score_names_the_tensor() -> None:
    mask = Mask({"w": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(KeyError, match="no score for w"):
        allocate({}, mask, 0.5, "global")


def test_does_not_modify_the_scores() -> None:
    s = torch.tensor([3.0, float("nan"), 1.0, 2.0])
    before = s.clone()
    allocate({"w": s}, Mask({"w": torch.tensor([True, True, False, True])}), 0.5, "global")
    assert torch.equal(s.isnan(), before.isnan()) and torch.equal(s.nan_to_num(), before.nan_to_num())


# ---- the fused numba kernel (prunebench[fast]) must give the same masks ----
def _big_case(seed: int) -> tuple[dict[str, torch.Tensor], Mask, float]:
    """Bigger layers than ``random_case`` so the sample brackets the threshold between finite
    bounds (the kernel's domain), with the same kinds of ties and specials."""
    g = torch.Generator().manual_seed(1000 + seed)
    scores, keeps = {}, {}
    for i in range(1 + seed % 4):
        size = [5_000, 33_333, 120_000][int(torch.randint(0, 3, (1,), generator=g))]
        kind = seed % 4
        if kind == 0:
            s = torch.randn(size, generator=g)
        elif kind == 1:  # heavy ties: 200 distinct values
            s = torch.randint(0, 200, (size,), generator=g).float() / 7.0
        elif kind == 2:  # mostly zeros, the rest continuous
            s = torch.where(torch.rand(size, generator=g) < 0.6, 0.0, torch.rand(size, generator=g))
        else:  # specials sprinkled into continuous scores
            s = torch.randn(size, generator=g)
            s[torch.rand(size, generator=g) < 0.05] = float("nan")
            s[torch.rand(size, generator=g) < 0.02] = float("inf")
            s[torch.rand(size, generator=g) < 0.02] = float("-inf")
        scores[f"l{i}.weight"] = s.view(1, -1) if i % 2 else s
        keeps[f"l{i}.weight"] = (torch.rand(size, generator=g) >= [0.0, 0.3, 0.7][i % 3]).view_as(scores[f"l{i}.weight"])
    return scores, Mask(keeps), [0.2, 0.5, 0.75, 0.9, 0.97][seed % 5]


@pytest.fixture
def kernel_spy(monkeypatch):
    """Force the kernel for every selection and count the selections it completed."""
    pytest.importorskip("numba")
    monkeypatch.setenv("PRUNEBENCH_NUMBA", "1")
    monkeypatch.setattr(allocation, "KERNEL_MIN_NUMEL", 0)
    calls = {"done": 0, "declined": 0}
    real = allocation._kernel_select

    def spy(*args):
        ok = real(*args)
        calls["done" if ok else "declined"] += 1
        return ok

    monkeypatch.setattr(allocation, "_kernel_select", spy)
    return calls


@pytest.mark.parametrize("scope", ["global", "layer", "erk"])
@pytest.mark.parametrize("seed", range(20))
def test_kernel_masks_equal_the_argsort_implementation(seed: int, scope: str, kernel_spy) -> None:
    scores, mask, target = _big_case(seed)
    assert_same(allocate(scores, mask, target, scope), OLD[scope](scores, mask, target))
    if seed % 4 in (0, 1):  # continuous or 200-value ties: the kernel really selected
        assert kernel_spy["done"] >= 1, kernel_spy
    # mostly-zero and special scores: the threshold can sit in a tie at a bound or at ±inf,
    # where the kernel declines and the torch path answers (the masks are checked either way)


@pytest.mark.parametrize("seed", range(20))
def test_kernel_on_the_small_random_cases(seed: int, kernel_spy) -> None:
    """The tie-heavy small cases too: where the kernel declines (bounds at ±inf), the torch path answers."""
    scores, mask, target = random_case(seed)
    for scope in ("global", "layer", "erk"):
        assert_same(allocate(scores, mask, target, scope), OLD[scope](scores, mask, target))


def test_kernel_gather_overflow_falls_back_exactly(kernel_spy, monkeypatch) -> None:
    monkeypatch.setattr(allocation, "_KERNEL_CAP", 0.0)  # room for 64 blocks only
    g = torch.Generator().manual_seed(7)
    scores = {"a": torch.randn(300_000, generator=g), "b": torch.randn(200_000, generator=g)}
    mask = Mask({"a": torch.rand(300_000, generator=g) > 0.1, "b": torch.ones(200_000, dtype=torch.bool)})
    assert_same(allocate(scores, mask, 0.6, "global"), old_global(scores, mask, 0.6))
    assert kernel_spy == {"done": 0, "declined": 1}


def test_kernel_switched_off_by_environment(kernel_spy, monkeypatch) -> None:
    monkeypatch.setenv("PRUNEBENCH_NUMBA", "0")
    scores, mask, target = _big_case(0)
    assert_same(allocate(scores, mask, target, "global"), old_global(scores, mask, target))
    assert kernel_spy == {"done": 0, "declined": 0}
