"""Criteria, ERK allocation and N:M masks on models whose right answer can be written by hand."""

from __future__ import annotations

import math
from functools import partial
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from prunebench.errors import ConfigError
from prunebench.pruning.scopes import allocate, erk_keep_counts
from prunebench.pruning.criteria import CRITERIA, ScoreContext, get_criterion
from prunebench.pruning.mask import Mask
from prunebench.pruning.nm import check_nm_spec, kept_per_group, nm_mask, satisfies_nm
from prunebench.pruning.targets import prunable_weights

W = torch.tensor([[1.0, -2.0, 3.0, 0.5]])


def linear(weight: torch.Tensor) -> nn.Module:
    net = nn.Sequential(nn.Linear(weight.shape[1], weight.shape[0], bias=False))
    with torch.no_grad():
        net[0].weight.copy_(weight)
    return net


def dot_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L = Σ out·y: for a bias-free Linear, ∂L/∂W = yᵀx, gradients written by hand."""
    return (out * y).sum()


def score(name: str, net: nn.Module, batches=(), **kw) -> dict[str, torch.Tensor]:
    targets = prunable_weights(net)
    mask = Mask.ones_like(net, [t.param_name for t in targets])
    ctx = ScoreContext(mask=mask, batches=list(batches), loss_fn=dot_loss, **kw)
    return get_criterion(name).fn(net, targets, ctx)


def mask_of(scores: dict[str, torch.Tensor], net: nn.Module, target: float, scope: str = "global") -> Mask:
    return allocate(scores, Mask.ones_like(net, list(scores)), target, scope)


def test_registry_lists_every_criterion() -> None:
    assert CRITERIA.names() == ["magnitude", "movement", "random", "snip", "sparsegpt", "synflow", "taylor", "wanda"]
    with pytest.raises(ConfigError, match="pruning.method='snipp' is not a known name; valid: .*snip.*wanda"):
        get_criterion("snipp")


def test_snip_is_weight_times_gradient_and_differs_from_magnitude() -> None:
    net = linear(W)
    x, y = torch.tensor([[4.0, 1.0, -1.0, 2.0]]), torch.ones(1, 1)
    s = score("snip", net, [(x, y)])["0.weight"]
    assert torch.allclose(s, torch.tensor([[4.0, 2.0, 3.0, 1.0]]))  # |w · x|
    assert mask_of({"0.weight": s}, net, 0.5)["0.weight"].tolist() == [[True, False, True, False]]
    mag = score("magnitude", net)["0.weight"]
    assert mask_of({"0.weight": mag}, net, 0.5)["0.weight"].tolist() == [[False, True, True, False]]
    # The model is left untouched: no .grad written, weights unchanged.
    assert net[0].weight.grad is None and torch.equal(net[0].weight.detach(), W)


def test_snip_averages_gradients_taylor_averages_magnitudes() -> None:
    net = linear(W)
    y = torch.ones(1, 1)
    batches = [(torch.tensor([[1.0, 1.0, 1.0, 1.0]]), y), (torch.tensor([[-1.0, -1.0, -1.0, 3.0]]), y)]
    snip = score("snip", net, batches)["0.weight"]
    taylor = score("taylor", net, batches)["0.weight"]
    assert torch.allclose(snip, torch.tensor([[0.0, 0.0, 0.0, 1.0]]))  # |w · (g1 + g2)/2|: the first three cancel
    assert torch.allclose(taylor, torch.tensor([[1.0, 2.0, 3.0, 1.0]]))  # (|w g1| + |w g2|)/2


def test_gradient_criteria_restore_batchnorm_statistics_and_mode() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
    targets = prunable_weights(net)
    ctx = ScoreContext(mask=Mask.ones_like(net, [t.param_name for t in targets]), batches=batches)
    for name in ("snip", "taylor"):
        s = get_criterion(name).fn(net, targets, ctx)
        assert set(s) == {"0.weight", "2.weight"} and s["0.weight"].shape == (3, 4)
    assert not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_gradient_criteria_need_batches() -> None:
    with pytest.raises(ConfigError, match="pruning.calibration_batches must be >= 1"):
        score("snip", linear(W), [])


def test_wanda_is_weight_times_input_feature_norm() -> None:
    weight = torch.tensor([[1.0, 1.0, 1.0], [2.0, -1.0, 0.5]])
    net = linear(weight)
    b1 = torch.tensor([[3.0, 0.0, 1.0], [4.0, 1.0, 1.0]])
    b2 = torch.tensor([[0.0, 2.0, 1.0]])
    s = score("wanda", net, [(b1, None), (b2, None)])["0.weight"]
    norms = torch.tensor([5.0, math.sqrt(5.0), math.sqrt(3.0)])  # ‖X_j‖₂ over all 3 samples
    assert torch.allclose(s, weight.abs() * norms)
    # Per-row comparison: row 0 drops the smallest-norm input (feature 2) first.
    assert mask_of({"0.weight": s}, net, 1 / 6)["0.weight"].tolist() == [[True, True, True], [True, True, False]]


def test_wanda_on_a_convolution_equals_wanda_on_its_unfolded_matrix() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, kernel_size=3, padding=1, stride=2, bias=False)
    net = nn.Sequential(conv)
    x = torch.randn(4, 2, 5, 5)
    s = score("wanda", net, [(x[:2], None), (x[2:], None)])["0.weight"]
    cols = F.unfold(x, kernel_size=3, padding=1, stride=2)  # (N, C·k·k, L)
    norms = cols.pow(2).sum((0, 2)).sqrt().view(2, 3, 3)
    assert torch.allclose(s, conv.weight.detach().abs() * norms, rtol=1e-5)


class Functional(nn.Module):
    """Uses its Linear's weight functionally: there is no module input to observe."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.lin.weight, self.lin.bias)


def test_wanda_rejects_layers_it_cannot_observe() -> None:
    net = Functional()
    spec = SimpleNamespace(model=SimpleNamespace(name="functional"))
    crit = get_criterion("wanda")
    with pytest.raises(ConfigError, match="pruning.method=wanda .* model='functional' never calls lin as a module"):
        crit.validate(net, prunable_weights(net), spec, torch.randn(2, 4))
    crit.validate(linear(W), prunable_weights(linear(W)), spec, torch.randn(2, 4))  # fine when observable


def test_random_scores_follow_the_generator() -> None:
    net = linear(torch.randn(5, 7))
    a = score("random", net, generator=torch.Generator().manual_seed(3))["0.weight"]
    b = score("random", net, generator=torch.Generator().manual_seed(3))["0.weight"]
    c = score("random", net, generator=torch.Generator().manual_seed(4))["0.weight"]
    assert a.shape == (5, 7) and torch.equal(a, b) and not torch.equal(a, c)


def two_layer(w1: torch.Tensor, w2: torch.Tensor) -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(w1)
        net[2].weight.copy_(w2)
    return net


def test_synflow_single_round_is_the_synaptic_flow() -> None:
    w1, w2 = torch.tensor([[1.0, -2.0], [0.5, 3.0]]), torch.tensor([[-4.0, 1.0]])
    net = two_layer(w1, w2)
    x = torch.randn(3, 2)
    s = score("synflow", net, [(x, None)], options={"rounds": 1})
    # R = Σ_i |w2_i| Σ_j |w1_ij|: ∂R/∂|w1_ij| = |w2_i|, ∂R/∂|w2_i| = Σ_j |w1_ij|.
    assert torch.allclose(s["0.weight"], w1.abs() * w2.abs().T)
    assert torch.allclose(s["2.weight"], w2.abs() * w1.abs().sum(1))
    assert torch.equal(net[0].weight.detach(), w1) and torch.equal(net[2].weight.detach(), w2)  # untouched


def test_synflow_iterative_reaches_the_target_without_layer_collapse() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 3))
    batches = [(torch.randn(4, 20), None)]
    s = score("synflow", net, batches, options={"rounds": 20}, target=0.98, scope="global")
    mask = mask_of(s, net, 0.98)
    assert mask.nonzero == round(0.02 * mask.numel)
    assert all(int(m.sum()) > 0 for m in mask.values())  # every layer keeps a path


def test_synflow_rejects_bad_rounds() -> None:
    with pytest.raises(ConfigError, match="pruning.rounds=0 is out of range"):
        score("synflow", linear(W), [(torch.ones(1, 4), None)], options={"rounds": 0}, target=0.5)


def test_movement_scores_accumulate_minus_gradient_times_weight() -> None:
    net = linear(W)
    learner = get_criterion("movement").learner(prunable_weights(net))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    learner.attach(net, opt)
    expected = torch.zeros_like(W)
    for g in ([1.0, 1.0, -1.0, 2.0], [0.5, -1.0, 1.0, 0.0]):
        net[0].weight.grad = torch.tensor([g])
        expected -= net[0].weight.detach() * torch.tensor([g])
        opt.step()
    learner.detach()
    assert torch.allclose(learner.scores()["0.weight"], expected)
    net[0].weight.grad = torch.ones_like(W)
    opt.step()  # detached: no further updates
    assert torch.allclose(learner.scores()["0.weight"], expected)
    with pytest.raises(ConfigError, match="use schedule=gradual"):
        score("movement", net)


def test_erk_counts_follow_sum_over_prod_and_cap_small_layers() -> None:
    shapes = {"a": torch.Size([10, 10]), "b": torch.Size([10, 1000])}
    alive = {"a": 100, "b": 10000}
    # keep ∝ sum(shape): 20 : 1010 of 103 kept.
    counts = erk_keep_counts(shapes, alive, 103)
    assert counts == {"a": 2, "b": 101} and sum(counts.values()) == 103
    # A budget the small layer cannot absorb: it stays dense, the rest goes to the big one.
    counts = erk_keep_counts(shapes, alive, 6000)  # a would get 6000·20/1030 ≈ 116.5 > 100
    assert counts == {"a": 100, "b": 5900}


def test_erk_allocation_is_exact_and_never_regrows() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 30), nn.ReLU(), nn.Linear(30, 30), nn.ReLU(), nn.Linear(30, 4))
    scores = score("magnitude", net)
    m1 = mask_of(scores, net, 0.5, "erk")
    m2 = allocate(scores, m1, 0.9, "erk")
    for m, t in ((m1, 0.5), (m2, 0.9)):
        assert m.nonzero == round((1 - t) * m.numel)
    assert all(not (m2[n] & ~m1[n]).any() for n in m1)
    dens = {n: 1 - s for n, s in m2.layer_sparsity().items()}
    assert dens["0.weight"] > dens["2.weight"]  # the thin input layer keeps more


def test_nm_mask_keeps_top_n_of_every_group() -> None:
    scores = {"w": torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.1, 0.2, 0.3, 0.4]])}
    mask = Mask({"w": torch.ones(1, 8, dtype=torch.bool)})
    got = nm_mask(scores, mask, 2, 4)["w"]
    assert got.int().tolist() == [[1, 0, 1, 0, 0, 0, 1, 1]]
    # A weight already pruned never regrows, even if its score is high.
    mask = Mask({"w": torch.tensor([[False, True, True, True, True, True, True, True]])})
    assert nm_mask(scores, mask, 2, 4)["w"].int().tolist() == [[0, 0, 1, 1, 0, 0, 1, 1]]


def test_nm_groups_run_along_the_input_dimension_of_convolutions() -> None:
    torch.manual_seed(0)
    w = torch.randn(3, 8, 2, 2)
    mask = nm_mask({"w": w.abs()}, Mask({"w": torch.ones_like(w, dtype=torch.bool)}), 2, 4)
    groups = mask["w"].view(3, 2, 4, 2, 2).sum(2)  # groups of 4 input channels at each (out, kh, kw)
    assert bool((groups == 2).all()) and satisfies_nm(mask, 2, 4) and mask.sparsity == 0.5
    assert not satisfies_nm(Mask({"w": torch.ones(3, 8, 2, 2)}), 2, 4)


def nm_spec(n, m, target, name="one_shot", iterations=1, mode="geometric"):
    from prunebench.catalog import IterativeOptions
    from prunebench.options import Options
    from prunebench.spec import ScheduleSpec

    options = IterativeOptions(mode=mode) if name == "iterative" else Options()
    return SimpleNamespace(
        pruning=SimpleNamespace(options={"n": n, "m": m}),
        schedule=ScheduleSpec(name=name, target_sparsity=target, iterations=iterations, options=options),
    )


def test_nm_spec_checks_name_key_and_value() -> None:
    net = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    targets = prunable_weights(net)
    shapes = {n: p.shape for n, p in net.named_parameters()}
    check_nm_spec(nm_spec(2, 4, 0.5), targets, shapes)
    with pytest.raises(ConfigError, match="layer '0' has 12 input features, not a multiple of 8"):
        check_nm_spec(nm_spec(4, 8, 0.5), targets, shapes)
    with pytest.raises(ConfigError, match="schedule.target_sparsity=0.9 does not match .* pruning.n=2 pruning.m=4"):
        check_nm_spec(nm_spec(2, 4, 0.9), targets, shapes)
    with pytest.raises(ConfigError, match="pruning.n=4 is out of range"):
        check_nm_spec(nm_spec(4, 4, 0.0), targets, shapes)
    with pytest.raises(ConfigError, match="every level must remove a whole number of weights per group"):
        check_nm_spec(nm_spec(2, 4, 0.5, "iterative", 2), targets, shapes)
    check_nm_spec(nm_spec(2, 8, 0.75, "iterative", 3, "linear"), targets[1:], shapes)  # 6, 4, 2 of 8
    assert [kept_per_group(s, 8) for s in (0.25, 0.5, 0.75)] == [6, 4, 2]
    with pytest.raises(ConfigError, match="schedule=gradual is not supported"):
        check_nm_spec(nm_spec(2, 4, 0.5, "gradual"), targets, shapes)


@pytest.mark.parametrize("name", ["magnitude", "random", "snip", "taylor", "wanda", "synflow"])
def test_every_criterion_scores_every_target_with_its_shape(name: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(24, 3))
    batches = [(torch.randn(6, 1, 8), torch.randint(0, 3, (6,))) for _ in range(2)]
    targets = prunable_weights(net)
    ctx = ScoreContext(mask=Mask.ones_like(net, [t.param_name for t in targets]), batches=batches,
                       generator=torch.Generator().manual_seed(0), options={"rounds": 3}, target=0.5)
    s = get_criterion(name).fn(net, targets, ctx)
    assert {n: tuple(v.shape) for n, v in s.items()} == {"0.weight": (4, 1, 3), "4.weight": (3, 24)}
    assert all(bool(torch.isfinite(v).all()) for v in s.values())


_ = partial  # keep import for readers extending the file
