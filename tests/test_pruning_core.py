"""Masks, allocation and schedules on models whose right answer can be written by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prunebench.errors import ConfigError, CorruptFileError
from prunebench.pruning.scopes import allocate
from prunebench.pruning.criteria import ScoreContext, get_criterion
from prunebench.pruning.mask import Mask
from prunebench.schedules import levels, per_round_rate, target_from_rate
from prunebench.pruning.targets import output_layer_name, prunable_weights


def arange_net() -> nn.Module:
    """Linear(4→3) weights 1..12, BN, Linear(3→2) weights -1..-6: magnitudes are known."""
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(1, 13, dtype=torch.float).view(3, 4))
        net[3].weight.copy_(-torch.arange(1, 7, dtype=torch.float).view(2, 3))
    return net


def magnitude_mask(net: nn.Module, target: float, scope: str, mask: Mask | None = None) -> Mask:
    targets = prunable_weights(net)
    mask = mask or Mask.ones_like(net, [t.param_name for t in targets])
    scores = get_criterion("magnitude").fn(net, targets, ScoreContext(mask))
    return allocate(scores, mask, target, scope)


def test_prunable_weights_exclude_bias_and_batchnorm_and_optionally_output() -> None:
    net = arange_net()
    names = [t.param_name for t in prunable_weights(net)]
    assert names == ["0.weight", "3.weight"]  # no biases, no BatchNorm
    assert output_layer_name(net) == "3"
    assert [t.param_name for t in prunable_weights(net, prune_output=False)] == ["0.weight"]
    assert [t.param_name for t in prunable_weights(net, prune_first=False)] == ["3.weight"]


def test_global_magnitude_removes_the_smallest_weights_across_layers() -> None:
    net = arange_net()
    mask = magnitude_mask(net, 0.5, "global")  # 18 weights → remove the 9 smallest |w|
    # |w| values: layer0 1..12, layer3 1..6 → ties (1..6 appear twice) broken by position:
    # the 9 smallest are 1,1,2,2,3,3,4,4,5(layer0 first).
    assert mask.nonzero == 9
    assert mask["0.weight"].flatten().tolist() == [False] * 5 + [True] * 7
    assert mask["3.weight"].flatten().tolist() == [False] * 4 + [True] * 2
    assert math.isclose(mask.sparsity, 0.5)


def test_layer_scope_prunes_each_tensor_to_the_target() -> None:
    net = arange_net()
    mask = magnitude_mask(net, 0.5, "layer")
    assert mask["0.weight"].flatten().tolist() == [False] * 6 + [True] * 6
    assert mask["3.weight"].flatten().tolist() == [False] * 3 + [True] * 3


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("target", [0.0, 0.13, 0.5, 0.77, 0.95, 0.999])
def test_achieved_sparsity_equals_target_within_one_weight_per_tensor(scope: str, target: float) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 7, 3), nn.ReLU(), nn.Flatten(), nn.Linear(7 * 6 * 6, 13), nn.Linear(13, 5))
    mask = magnitude_mask(net, target, scope)
    removed = mask.numel - mask.nonzero
    assert abs(removed - target * mask.numel) <= len(mask)
    if scope == "layer":
        for m in mask.values():
            assert abs((m.numel() - int(m.sum())) - target * m.numel()) <= 1


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_masks_never_regrow_across_levels(scope: str) -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    mask = None
    for target in levels("iterative", 0.9, 4):
        new = magnitude_mask(net, target, scope, mask)
        if mask is not None:
            for n in new:
                assert not bool((new[n] & ~mask[n]).any()), "a pruned weight came back"
        mask = new
        mask.apply(net)
        with torch.no_grad():  # perturb survivors so the next ranking differs
            for p in net.parameters():
                p.add_(0.01 * torch.randn_like(p))
        mask.apply(net)
    assert mask is not None and abs(mask.sparsity - 0.9) < 0.01


def test_global_magnitude_keeps_exactly_the_largest() -> None:
    # 18 weights, magnitudes 1..12 and 1..6; 60% pruned = 11 removed (round(0.6 * 18) = 11), 7 kept:
    # the largest seven magnitudes are 7..12 of the first layer and one 6 (both layers hold a 6:
    # the tie is broken so that exactly 7 are kept).
    net = arange_net()
    mask = magnitude_mask(net, 0.6, "global")
    assert mask.numel - int(sum(int(m.sum()) for m in mask.values())) == 11
    kept = torch.cat([net[0].weight[mask["0.weight"]].abs(), net[3].weight[mask["3.weight"]].abs()])
    pruned = torch.cat([net[0].weight[~mask["0.weight"]].abs(), net[3].weight[~mask["3.weight"]].abs()])
    assert len(kept) == 7 and kept.min() >= pruned.max()
    assert sorted(kept.tolist()) == [6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]


def test_geometric_schedule_removes_a_fixed_fraction_of_what_remains() -> None:
    lv = levels("iterative", 0.96, 2)  # keep 0.2 per level: 0.8, 0.96
    assert lv == pytest.approx([0.8, 0.96])
    lv = levels("iterative", 0.9, 5)
    remaining = [1.0] + [1 - s for s in lv]
    ratios = [b / a for a, b in zip(remaining, remaining[1:], strict=False)]
    assert ratios == pytest.approx([ratios[0]] * 5)
    assert lv[-1] == pytest.approx(0.9)
    assert per_round_rate(0.9, 5) == pytest.approx(1 - ratios[0])
    assert target_from_rate(0.2, 10) == pytest.approx(1 - 0.8**10)


def test_linear_schedule_takes_equal_steps_and_one_shot_has_one_level() -> None:
    assert levels("iterative", 0.9, 3, "linear") == pytest.approx([0.3, 0.6, 0.9])
    assert levels("one_shot", 0.7, 1) == [0.7]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("iterative", 1.5, 3), "schedule.target_sparsity=1.5"),
        (("iterative", -0.1, 3), "schedule.target_sparsity=-0.1"),
        (("iterative", 0.5, 0), "schedule.iterations=0"),
        (("one_shot", 0.5, 3), "schedule.iterations=3"),
        (("gradualish", 0.5, 3), "schedule='gradualish'"),
    ],
)
def test_schedule_errors_name_key_and_value(args: tuple, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        levels(*args)


def test_mask_save_load_roundtrip_and_corrupt_files(tmp_path) -> None:
    net = arange_net()
    mask = magnitude_mask(net, 0.5, "global")
    mask.save(tmp_path / "mask.pt")
    assert Mask.load(tmp_path / "mask.pt", net) == mask
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptFileError, match="bad.pt"):
        Mask.load(tmp_path / "bad.pt")
    other = nn.Sequential(nn.Linear(5, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(CorruptFileError, match="does not fit"):
        Mask.load(tmp_path / "mask.pt", other)


def test_mask_rejects_non_binary_values() -> None:
    with pytest.raises(ValueError, match="other than 0 and 1"):
        Mask({"w": torch.tensor([0.0, 0.5])})
