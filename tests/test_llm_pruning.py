"""SparseGPT, Wanda (per-output), OWL and the shared calibration hooks on hand-made layers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prunebench.errors import ConfigError
from prunebench.pruning import sparsegpt
from prunebench.pruning.scopes import ALLOCATIONS, allocate
from prunebench.pruning.calibration import block_key, blocks, collect, sequential
from prunebench.pruning.criteria import ScoreContext, get_criterion
from prunebench.pruning.criteria.wanda import prune_sequential, row_keep
from prunebench.pruning.mask import Mask
from prunebench.pruning.nm import satisfies_nm
from prunebench.pruning.owl import allocate_owl, mean_sparsity, outlier_ratio, owl_sparsities
from prunebench.pruning.targets import prunable_weights


def _correlated_inputs(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """Inputs with correlated features (rank d/2 plus noise) of uneven scales, shuffled so
    every block of columns mixes scales: where reconstruction and input norms matter."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-0.5, 0.5, d)[torch.randperm(d, generator=g)]
    latent = torch.randn(n, d // 2, generator=g) @ torch.randn(d // 2, d, generator=g) / 6
    return (latent + 0.3 * torch.randn(n, d, generator=g)) * scale


def _recon_error(W: torch.Tensor, W_hat: torch.Tensor, X: torch.Tensor) -> float:
    return float(((X @ W.T - X @ W_hat.T) ** 2).sum())


# ---- SparseGPT ----------------------------------------------------------------------------


def test_sparsegpt_reconstructs_better_than_magnitude_and_wanda_on_the_same_data():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(24, 64, generator=g)
    X = _correlated_inputs(512, 64)
    H = 2 * X.T @ X / len(X)
    W_sg, keep = sparsegpt.sparsegpt_layer(W, H, 0.5, blocksize=16)
    assert int((~keep).sum()) == W.numel() // 2  # exact count, 8 per 16-column block of 24 rows
    assert bool((W_sg[~keep] == 0).all())
    mag = row_keep(W.abs(), torch.ones_like(W, dtype=torch.bool), 0.5)
    wanda = row_keep(W.abs() * X.norm(dim=0), torch.ones_like(W, dtype=torch.bool), 0.5)
    e_sg, e_mag, e_wanda = (_recon_error(W, W_sg, X), _recon_error(W, W * mag, X), _recon_error(W, W * wanda, X))
    assert e_sg < 0.75 * e_wanda and e_wanda < 0.5 * e_mag, (e_sg, e_wanda, e_mag)


def test_sparsegpt_equals_least_squares_when_the_first_columns_are_pruned():
    """Pruning columns 0..k-1 then updating the rest column by column is exactly the damped
    least-squares reconstruction with those columns fixed at zero (the OBS property)."""
    g = torch.Generator().manual_seed(2)
    X = _correlated_inputs(300, 8, seed=3)
    W = torch.randn(1, 8, generator=g) + 3.0
    W[0, :2] = torch.tensor([0.01, -0.02])  # by far the lowest saliency: these two go
    H = (2 * X.T @ X / len(X)).double()
    W_sg, keep = sparsegpt.sparsegpt_layer(W, H.float(), 2 / 8, blocksize=8, percdamp=0.01)
    assert keep[0].tolist() == [False, False] + [True] * 6
    Hd = H + 0.01 * torch.diag(H).mean() * torch.eye(8, dtype=torch.float64)
    # minimise (w - w')ᵀ Hd (w - w') with w'_0 = w'_1 = 0: w'_R = w_R + Hd_RR⁻¹ Hd_RP w_P
    P, R = slice(0, 2), slice(2, 8)
    w = W[0].double()
    expected = w[R] + torch.linalg.solve(Hd[R, R], Hd[R, P] @ w[P])
    torch.testing.assert_close(W_sg[0, R].double(), expected, rtol=1e-4, atol=1e-4)


def test_sparsegpt_nm_keeps_the_pattern_and_earlier_prunes():
    g = torch.Generator().manual_seed(4)
    W = torch.randn(8, 32, generator=g)
    X = _correlated_inputs(256, 32)
    prev = torch.ones_like(W, dtype=torch.bool)
    prev[:, 5] = False
    W_sg, keep = sparsegpt.sparsegpt_layer(W, 2 * X.T @ X / 256, 0.0, nm=(2, 4), keep=prev, blocksize=16)
    assert satisfies_nm(Mask({"w": keep}), 2, 4)
    assert int(keep.sum()) == W.numel() // 2
    assert not bool(keep[:, 5].any())
    with pytest.raises(ConfigError, match="multiple of pruning.m"):
        sparsegpt.sparsegpt_layer(W, torch.eye(32), 0.0, nm=(2, 3), blocksize=16)


def test_sparsegpt_zero_sparsity_keeps_the_weights():
    W = torch.randn(4, 16)
    X = _correlated_inputs(64, 16)
    W_sg, keep = sparsegpt.sparsegpt_layer(W, 2 * X.T @ X / 64, 0.0)
    assert bool(keep.all())
    torch.testing.assert_close(W_sg, W)


def _two_blocks() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Sequential(nn.Linear(16, 32), nn.ReLU()), nn.Sequential(nn.Linear(32, 16), nn.ReLU()),
                         nn.Linear(16, 4))


def test_sparsegpt_prune_on_a_model_is_sequential_and_in_place():
    net = _two_blocks()
    targets = prunable_weights(net, prune_output=False)
    batches = [(torch.randn(64, 16), torch.zeros(64, dtype=torch.long)) for _ in range(2)]
    dense = {n: p.detach().clone() for n, p in net.named_parameters()}
    mask = sparsegpt.prune(net, targets, batches, 0.5)
    assert set(mask) == {"0.0.weight", "1.0.weight"}
    assert math.isclose(mask.sparsity, 0.5, abs_tol=1e-9)
    w1 = net.get_parameter("1.0.weight")
    assert bool((w1[~mask["1.0.weight"]] == 0).all())
    assert not torch.equal(w1[mask["1.0.weight"]], dense["1.0.weight"][mask["1.0.weight"]])  # reconstructed
    torch.testing.assert_close(net.get_parameter("2.weight"), dense["2.weight"])  # output layer untouched
    # per-layer sparsities (OWL) and bad inputs
    net2 = _two_blocks()
    mask2 = sparsegpt.prune(net2, targets, batches, {"0.0.weight": 0.25, "1.0.weight": 0.75})
    assert mask2.layer_sparsity() == pytest.approx({"0.0.weight": 0.25, "1.0.weight": 0.75})
    with pytest.raises(ConfigError, match="calibration batches"):
        sparsegpt.prune(net2, targets, [], 0.5)


# ---- calibration ------------------------------------------------------------------------


def test_block_key_and_blocks_group_transformer_layers():
    assert block_key("lm.model.layers.3.mlp.up_proj") == "lm.model.layers.3"
    assert block_key("blocks.0.attn.q_proj") == "blocks.0"
    assert block_key("lm_head") == "lm_head"
    net = _two_blocks()
    assert [[t.module_name for t in b] for b in blocks(prunable_weights(net))] == [["0.0"], ["1.0"], ["2"]]


def test_collect_gives_wanda_norms_and_the_gram_matrix():
    net = _two_blocks()
    x = torch.randn(10, 16)
    stats = collect(net, prunable_weights(net)[:1], [(x[:6],), (x[6:],)], gram=True)
    s = stats["0.0"]
    torch.testing.assert_close(s.sq, (x**2).sum(0))
    torch.testing.assert_close(s.gram, x.T @ x)
    assert s.n == 10
    torch.testing.assert_close(s.hessian(), 2 * x.T @ x / 10)


def test_sequential_feeds_later_blocks_the_pruned_outputs():
    net = _two_blocks()
    targets = prunable_weights(net, prune_output=False)
    x = torch.randn(32, 16)
    seen = {}

    def prune_layer(t, module, stats):
        seen[t.module_name] = stats.sq.clone()
        return torch.zeros_like(module.weight, dtype=torch.bool) if t.module_name == "0.0" else torch.ones_like(
            module.weight, dtype=torch.bool)

    sequential(net, targets, [(x,)], prune_layer)
    # block 0 fully pruned: block 1 sees relu(bias) for every sample, not the dense activations
    expected = (torch.relu(net[0][0].bias).expand(32, -1) ** 2).sum(0)
    torch.testing.assert_close(seen["1.0"], expected)


# ---- Wanda ------------------------------------------------------------------------------


def test_wanda_scores_equal_weight_times_input_norm_by_hand():
    net = _two_blocks()
    x = torch.randn(20, 16)
    targets = prunable_weights(net)
    scores = get_criterion("wanda").fn(net, targets, ScoreContext(mask=Mask.ones_like(net, [t.param_name for t in targets]),
                                                                  batches=[(x[:10], None), (x[10:], None)]))
    torch.testing.assert_close(scores["0.0.weight"], net[0][0].weight.abs() * x.norm(dim=0))
    h = torch.relu(net[0][0](x))
    torch.testing.assert_close(scores["1.0.weight"], net[1][0].weight.abs() * h.norm(dim=0))


def test_row_scope_prunes_every_output_row_equally():
    assert "row" in ALLOCATIONS.names()
    scores = {"w": torch.arange(24.0).view(4, 6).flip(1)}
    keep = torch.ones(4, 6, dtype=torch.bool)
    keep[0, 0] = False  # already pruned: counts towards row 0's quota
    m = allocate(scores, Mask({"w": keep}), 0.5, "row")
    assert m["w"].sum(1).tolist() == [3, 3, 3, 3]
    assert m["w"][1].tolist() == [True, True, True, False, False, False]  # the 3 lowest go
    assert not bool(m["w"][0, 0])


def test_wanda_sequential_per_row_and_nm():
    net = _two_blocks()
    targets = prunable_weights(net, prune_output=False)
    batches = [(torch.randn(32, 16),)]
    mask = prune_sequential(net, targets, batches, 0.5)
    assert all(bool((k.sum(1) == k.shape[1] // 2).all()) for k in mask.values())
    assert bool((net[0][0].weight[~mask["0.0.weight"]] == 0).all())
    mask24 = prune_sequential(_two_blocks(), targets, batches, None, nm=(2, 4))
    assert satisfies_nm(mask24, 2, 4) and math.isclose(mask24.sparsity, 0.5)


# ---- OWL --------------------------------------------------------------------------------


def _block_scores(outliers: list[int]) -> dict[str, torch.Tensor]:
    """Three blocks of two equal layers; block b has outliers[b] huge scores."""
    out = {}
    for b, k in enumerate(outliers):
        for layer in ("q", "fc"):
            s = torch.ones(8, 16)
            s.view(-1)[:k] = 100.0
            out[f"blocks.{b}.{layer}.weight"] = s
    return out


def test_owl_sparsities_average_to_the_target_and_spare_outlier_blocks():
    scores = _block_scores([0, 4, 12])
    per = owl_sparsities(scores, 0.7, m=5.0, lam=0.08)
    sizes = {n: s.numel() for n, s in scores.items()}
    assert mean_sparsity(per, sizes) == pytest.approx(0.7)
    assert sum(per.values()) / len(per) == pytest.approx(0.7)
    b0, b1, b2 = per["blocks.0.q.weight"], per["blocks.1.q.weight"], per["blocks.2.q.weight"]
    assert b0 > b1 > b2  # more outliers, less pruning
    assert b0 - b2 == pytest.approx(0.16)  # the spread is 2λ
    assert per["blocks.1.q.weight"] == per["blocks.1.fc.weight"]  # one sparsity per block
    assert outlier_ratio(scores["blocks.2.q.weight"], 5.0) == pytest.approx(12 / 128)


def test_owl_allocation_prunes_rows_at_block_sparsity():
    scores = _block_scores([0, 4, 12])
    mask = Mask({n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()})
    out = allocate(scores, mask, 0.5, "owl")
    per = owl_sparsities(scores, 0.5)
    assert mask.numel - out.nonzero == round(0.5 * mask.numel)  # exact overall
    for n, k in out.items():
        pruned = (~k).sum(1)
        assert abs(int(pruned.sum()) - per[n] * k.numel()) <= 1  # the block's sparsity, to a weight
        assert int(pruned.max() - pruned.min()) <= 1  # compared per output row
    same = allocate_owl(_block_scores([3, 3, 3]), mask, 0.5)  # equal ratios: uniform
    assert same.layer_sparsity() == pytest.approx({n: 0.5 for n in mask})


@pytest.mark.parametrize("model", ["two_blocks", "gpt_tiny"])
def test_sequential_cached_block_inputs_match_full_forwards(model, monkeypatch):
    """Re-running one block from cached inputs gives what running the whole model gives."""
    from prunebench.models import build_model
    from prunebench.pruning import calibration

    def make() -> nn.Module:
        torch.manual_seed(0)
        if model == "gpt_tiny":
            return build_model("gpt_tiny", (16,), 11, n_layer=2, n_head=2, d_model=16)
        return _two_blocks()

    x = torch.randint(0, 11, (4, 16)) if model == "gpt_tiny" else torch.randn(32, 16)
    net = make()
    targets = prunable_weights(net, prune_output=False)
    keys = [block_key(g[0].module_name) for g in blocks(targets)]
    assert calibration._block_inputs(net, keys, [(x,)]) is not None  # the fast path applies
    fast = sparsegpt.prune(net, targets, [(x[:2],), (x[2:],)], 0.5)
    monkeypatch.setattr(calibration, "_block_inputs", lambda *a: None)
    slow_net = make()
    slow = sparsegpt.prune(slow_net, targets, [(x[:2],), (x[2:],)], 0.5)
    for n in fast:
        assert torch.equal(fast[n], slow[n])
        torch.testing.assert_close(net.get_parameter(n), slow_net.get_parameter(n), rtol=1e-4, atol=1e-5)


def test_block_inputs_refuse_blocks_with_work_in_between():
    from prunebench.pruning import calibration

    class Gap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])

        def forward(self, x):
            return self.blocks[1](2 * self.blocks[0](x))

    net = Gap()
    assert calibration._block_inputs(net, ["blocks.0", "blocks.1"], [(torch.randn(3, 4),)]) is None
    mask = sparsegpt.prune(net, prunable_weights(net, prune_output=False), [(torch.randn(8, 4),)], 0.5)
    assert math.isclose(mask.sparsity, 0.5)


def test_sparsegpt_validate_names_what_it_cannot_prune():
    from types import SimpleNamespace

    def spec(structure="unstructured", schedule="one_shot", scope="layer"):
        return SimpleNamespace(model=SimpleNamespace(name="m"), pruning=SimpleNamespace(structure=structure, scope=scope),
                               schedule=SimpleNamespace(name=schedule))

    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="prunes nn.Linear layers only; model='m' has 0"):
        sparsegpt.validate(conv, prunable_weights(conv), spec(), torch.zeros(1))
    lin = _two_blocks()
    t = prunable_weights(lin)
    sparsegpt.validate(lin, t, spec(scope="owl"), torch.zeros(1))
    with pytest.raises(ConfigError, match="schedule=gradual"):
        sparsegpt.validate(lin, t, spec(schedule="gradual"), torch.zeros(1))
    with pytest.raises(ConfigError, match="pruning.scope='global' is not supported; valid: layer, owl"):
        sparsegpt.validate(lin, t, spec(scope="global"), torch.zeros(1))
