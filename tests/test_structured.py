"""Structured (channel) pruning: real surgery through BN, residuals, concat and depthwise convs."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

from prunebench.errors import ConfigError, CorruptFileError
from prunebench.metrics import count_params, layer_flops
from prunebench.pruning.structured import (
    CHANNEL_CRITERIA,
    StructuredBaseline,
    apply_selection,
    channel_groups,
    build_graph,
    export_onnx,
    load_pruned,
    prune_channels,
    save_pruned,
    select_channels,
    zero_channels,
)
from prunebench.pruning.structured.allocation import GroupState, plan_global, plan_layer

pytestmark = pytest.mark.integration  # end to end: Lightning fits, surgery on real architectures, figures, kernels


# ---------------------------------------------------------------- small models written here


def conv_bn(cin: int, cout: int, *, groups: int = 1, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(cout), act())


class ConcatNet(nn.Module):
    """Two conv branches concatenated along channels, then a conv: index mapping through torch.cat."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8)
        self.a = conv_bn(8, 12)
        self.b = conv_bn(8, 6)
        self.mix = conv_bn(18, 16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.mix(torch.cat([self.a(x), self.b(x)], dim=1))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class DepthwiseNet(nn.Module):
    """Depthwise-separable blocks (depthwise 3x3 + pointwise 1x1), MobileNet style."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16)
        self.dw1 = conv_bn(16, 16, groups=16)
        self.pw1 = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.dw2 = conv_bn(32, 32, groups=32, act=nn.ReLU6)
        self.pw2 = nn.Sequential(nn.Conv2d(32, 24, 1), nn.ReLU())
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pw2(self.dw2(self.pw1(self.dw1(self.stem(x)))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class PadShortcutBlock(nn.Module):
    """CIFAR ResNet option-A block: the shortcut pads channels with zeros (``F.pad``), which
    the dependency graph takes for an element-wise op."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.pad = (cout - cin) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = x if not self.pad else nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return torch.relu(self.body(x) + short)


class PadShortcutNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8)
        self.blocks = nn.Sequential(PadShortcutBlock(8, 8, 1), PadShortcutBlock(8, 16, 2))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _registry(name: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        models = pytest.importorskip("prunebench.models")
        if not hasattr(models, "build_model"):
            pytest.skip("prunebench.models.build_model not available yet")
        return models.build_model(name, (3, 32, 32), 10)

    return make


CIFAR = (2, 3, 32, 32)
SMALL_IMAGENET = (2, 3, 64, 64)

# name -> (factory, input shape); the torchvision models are ones this project did not write
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "concat": (ConcatNet, CIFAR),
    "depthwise": (DepthwiseNet, CIFAR),
    "pad_shortcut": (PadShortcutNet, CIFAR),
    "vgg11_bn": (_registry("vgg11_bn"), CIFAR),
    "resnet20": (_registry("resnet20"), CIFAR),
    "resnet56": (_registry("resnet56"), CIFAR),
    "tv_resnet18": (lambda: torchvision.models.resnet18(num_classes=10), SMALL_IMAGENET),
    "tv_mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10), SMALL_IMAGENET),
}
FAST = ["concat", "depthwise", "vgg11_bn", "resnet20", "resnet56", "tv_resnet18", "tv_mobilenet_v2"]


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so eval-mode BN really transforms."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    factory, shape = MODELS[name]
    torch.manual_seed(seed)
    model = randomize(factory(), seed)
    return model, torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 1))


def predicted_params(model: nn.Module) -> int:
    """Parameter count implied by the layers' widths (constructor attributes), not their tensors."""
    total = 0
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            total += m.out_channels * (m.in_channels // m.groups) * math.prod(m.kernel_size)
            total += m.out_channels if m.bias is not None else 0
        elif isinstance(m, nn.Linear):
            total += m.out_features * m.in_features + (m.out_features if m.bias is not None else 0)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            total += 2 * m.num_features
        else:
            total += sum(p.numel() for p in m.parameters(recurse=False))
    return total


def train_step(model: nn.Module, x: torch.Tensor) -> float:
    """One SGD step on random labels; returns the loss and checks that weights moved."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(x), torch.arange(x.shape[0]) % 10)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    model.eval()
    return loss.item()


# ---------------------------------------------------------------- surgery on every model


@pytest.mark.parametrize("name", FAST)
def test_prune_shrinks_keeps_output_shape_and_trains(name: str) -> None:
    model, x = build(name)
    dense_out = model(x)
    dense_params, (dense_flops, _) = count_params(model), layer_flops(model, x)
    baseline = StructuredBaseline.measure(model, x)

    result = prune_channels(model, x, amount=0.5, criterion="l1", scope="layer")

    assert model(x).shape == dense_out.shape
    # every group keeps exactly ceil(half) of its dense width ...
    for key, dense in baseline.group_channels.items():
        assert result.group_channels[key] == math.ceil(0.5 * dense), key
    assert result.channel_ratio == pytest.approx(0.5, abs=0.02)
    # ... the parameter count is what those widths imply, and it is reported honestly
    assert count_params(model) == predicted_params(model) == result.params_after
    assert result.params_baseline == dense_params
    assert result.params_after < 0.5 * dense_params  # channels ≠ params: both sides of a conv shrink
    assert result.flops_after == pytest.approx(layer_flops(model, x)[0])
    assert result.speedup_theoretical == pytest.approx(dense_flops / result.flops_after)
    assert result.speedup_theoretical > 2.0
    # the output layer keeps its classes
    fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert fc.out_features == 10
    assert math.isfinite(train_step(model, x))


def test_hand_models_param_formula() -> None:
    """Independent check: the concat model's parameter count from its four widths."""
    model, x = build("concat")
    result = prune_channels(model, x, amount=0.5, scope="layer")
    s, a, b, c = (result.layer_channels[k] for k in ("stem.0", "a.0", "b.0", "mix.0"))
    assert (s, a, b, c) == (4, 6, 3, 8)
    expected = 27 * s + 2 * s + 9 * s * a + 2 * a + 9 * s * b + 2 * b + 9 * (a + b) * c + 2 * c + 10 * c + 10
    assert count_params(model) == expected
    assert model.mix[0].in_channels == a + b  # the concatenation followed both branches


def test_depthwise_groups_follow() -> None:
    model, x = build("depthwise")
    prune_channels(model, x, amount=0.5, scope="layer")
    for dw in (model.dw1[0], model.dw2[0]):
        assert dw.groups == dw.in_channels == dw.out_channels
    assert model.dw1[0].out_channels == model.stem[0].out_channels == 8
    assert model.dw2[0].out_channels == model.pw1[0].out_channels == 16


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("name", FAST)
def test_zeroed_channels_are_removed_exactly(name: str, scope: str) -> None:
    """Zero the producers of the channels to be removed; surgery then changes no output."""
    model, x = build(name)
    with torch.no_grad():
        dense_out = model(x)
    sel = select_channels(model, x, amount=0.5, criterion="random", scope=scope,
                          generator=torch.Generator().manual_seed(0))
    assert sum(len(v) for v in sel.plan.values()) > 0
    zero_channels(sel)
    with torch.no_grad():
        masked_out = model(x)
    assert not torch.allclose(masked_out, dense_out, atol=1e-4)  # zeroing mattered
    params_masked = count_params(model)
    apply_selection(sel)
    with torch.no_grad():
        pruned_out = model(x)
    assert count_params(model) < params_masked
    torch.testing.assert_close(pruned_out, masked_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["concat", "depthwise", "tv_resnet18"])
def test_l1_removes_exactly_the_zeroed_channels(name: str) -> None:
    model, x = build(name)
    sel = select_channels(model, x, amount=0.5, criterion="random", generator=torch.Generator().manual_seed(1))
    zero_channels(sel)
    again = select_channels(model, x, amount=0.5, criterion="l1")
    assert again.plan == sel.plan


# ---------------------------------------------------------------- save / load


@pytest.mark.parametrize("name", FAST)
def test_save_load_roundtrip(name: str, tmp_path) -> None:
    model, x = build(name)
    prune_channels(model, x, amount=0.4, scope="global", criterion="l2", round_to=4)
    path = save_pruned(model, tmp_path / "pruned.pt", extra={"note": "test"})
    raw = torch.load(path, weights_only=True)  # plain data only: no pickled modules
    assert set(raw) >= {"arch", "state_dict"} and raw["extra"] == {"note": "test"}

    factory, _ = MODELS[name]
    loaded = load_pruned(path, factory).eval()
    assert count_params(loaded) == count_params(model)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert math.isfinite(train_step(loaded, x))


def test_load_rejects_bad_files(tmp_path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptFileError, match="garbage.pt"):
        load_pruned(garbage, ConcatNet)

    model, x = build("concat")
    prune_channels(model, x, amount=0.5)
    path = save_pruned(model, tmp_path / "concat.pt")
    with pytest.raises(CorruptFileError, match="concat.pt"):
        load_pruned(path, DepthwiseNet)  # another architecture

    pickled = tmp_path / "module.pt"
    torch.save(model, pickled)  # a whole pickled module is refused (weights_only)
    with pytest.raises(CorruptFileError, match="module.pt"):
        load_pruned(pickled, ConcatNet)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptFileError, match="truncated.pt"):
        load_pruned(truncated, ConcatNet)


def test_onnx_export(tmp_path) -> None:
    model, x = build("concat")
    prune_channels(model, x, amount=0.5)
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="onnx"):
            export_onnx(model, x, tmp_path / "m.onnx")
        return
    assert export_onnx(model, x, tmp_path / "m.onnx").stat().st_size > 0


# ---------------------------------------------------------------- targets, scopes, schedules


@pytest.mark.parametrize("target", ["params", "flops"])
def test_params_and_flops_targets_are_reached(target: str) -> None:
    model, x = build("tv_resnet18")
    result = prune_channels(model, x, amount=0.5, target=target, scope="global")
    assert result.achieved == pytest.approx(0.5, abs=0.005)
    measured = 1 - (count_params(model) / result.params_baseline if target == "params"
                    else layer_flops(model, x)[0] / result.flops_baseline)
    assert result.achieved == pytest.approx(measured)
    assert result.channel_amount < 0.45  # fewer channels than 50% suffice: channel ratio ≠ param ratio


def test_unreachable_target_warns_and_stops_at_cap() -> None:
    model, x = build("concat")
    with pytest.warns(UserWarning, match="out of reach"):
        result = prune_channels(model, x, amount=0.99, target="params", max_layer_amount=0.5)
    for key, dense in result.group_channels_baseline.items():
        assert result.group_channels[key] >= math.ceil(0.5 * dense)


def test_round_to_multiples() -> None:
    model, x = build("tv_mobilenet_v2")
    result = prune_channels(model, x, amount=0.37, scope="global", round_to=8)
    changed = [k for k, d in result.group_channels_baseline.items() if result.group_channels[k] != d]
    assert changed
    for k in changed:
        assert result.group_channels[k] % 8 == 0, (k, result.group_channels[k])


def test_global_cap_keeps_every_layer() -> None:
    model, x = build("tv_resnet18")
    with torch.no_grad():  # network slimming would remove this whole layer without the cap
        model.layer1[0].bn1.weight.mul_(1e-3)
    result = prune_channels(model, x, amount=0.5, criterion="bn_scale", scope="global", max_layer_amount=0.75)
    for key, dense in result.group_channels_baseline.items():
        assert result.group_channels[key] >= math.ceil(0.25 * dense), key
    assert result.group_channels["layer1.0.conv1"] == 16  # it went as far as the cap allows
    assert result.channel_ratio == pytest.approx(0.5, abs=0.01)


def test_iterative_levels_are_cumulative_against_the_dense_baseline() -> None:
    model, x = build("resnet20")
    baseline = StructuredBaseline.measure(model, x)
    baseline = StructuredBaseline.from_dict(baseline.to_dict())  # survives a JSON round trip
    first = prune_channels(model, x, amount=0.3, baseline=baseline)
    second = prune_channels(model, x, amount=0.5, baseline=baseline)
    assert first.channel_ratio == pytest.approx(0.3, abs=0.03)
    assert second.channel_ratio == pytest.approx(0.5, abs=0.02)
    assert second.params_baseline == first.params_before
    for key, dense in baseline.group_channels.items():
        assert second.group_channels[key] == math.ceil(0.5 * dense)
    again = prune_channels(model, x, amount=0.4, baseline=baseline)  # below what is done: nothing regrows
    assert again.removed == {} and again.params_after == second.params_after


def test_taylor_uses_data_and_leaves_model_untouched() -> None:
    model, x = build("concat")
    y = torch.tensor([1, 2])
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    sel = select_channels(model, x, amount=0.5, criterion="taylor", batches=[(x, y)])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    assert all(p.grad is None for p in model.parameters())
    other = select_channels(model, x, amount=0.5, criterion="taylor", batches=[(-x, (y + 3) % 10)])
    assert sel.plan != other.plan
    result = prune_channels(model, x, amount=0.5, criterion="taylor", scope="global", batches=[(x, y)])
    assert result.channel_ratio == pytest.approx(0.5, abs=0.05)


def test_ignored_layers_keep_their_width() -> None:
    model, x = build("concat")
    result = prune_channels(model, x, amount=0.5, ignored_layers=[model.a[0]])
    assert result.layer_channels["a.0"] == 12
    assert result.layer_channels["b.0"] == 3


def test_untraceable_shortcut_groups_are_kept_whole() -> None:
    """Channel padding in a shortcut couples tensors of different widths: those groups stay whole."""
    model, x = build("pad_shortcut")
    with pytest.warns(UserWarning, match="kept whole.*stem.0"):
        result = prune_channels(model, x, amount=0.5)
    assert set(result.group_channels) == {"blocks.0.body.0", "blocks.1.body.0"}  # inner convs only
    assert result.layer_channels["blocks.0.body.0"] == 4 and result.layer_channels["blocks.1.body.0"] == 8
    assert result.layer_channels["stem.0"] == 8 and result.layer_channels["blocks.1.body.3"] == 16
    assert model(x).shape == (2, 10)
    assert count_params(model) == predicted_params(model)


def test_groups_follow_residual_paths() -> None:
    model, _ = build("tv_resnet18")
    x = torch.randn(*SMALL_IMAGENET)
    groups = {g.key: g for g in channel_groups(model, build_graph(model, x), [model.fc])}
    stage1 = {m.name for m in groups["conv1"].members if m.out_side}
    assert {"conv1", "bn1", "layer1.0.bn2", "layer1.1.bn2", "layer1.0.conv2", "layer1.1.conv2"} <= stage1


# ---------------------------------------------------------------- allocation (pure)


def test_plan_layer_and_global_counts() -> None:
    scores = {"a": torch.tensor([4.0, 1.0, 3.0, 2.0]), "b": torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])}
    states = {"a": GroupState(4, 4), "b": GroupState(8, 8)}
    assert plan_layer(scores, states, 0.5, max_layer_amount=0.9) == {"a": [1, 3], "b": [0, 1, 2, 3]}
    # global, unnormalised: the 6 lowest of all 12 are in b ...
    assert plan_global(scores, states, 0.5, max_layer_amount=0.75, normalize=False) == {"a": [], "b": [0, 1, 2, 3, 4, 5]}
    # ... but with a 60% cap b keeps 4, and a pays the rest with its two lowest
    assert plan_global(scores, states, 0.5, max_layer_amount=0.6, normalize=False) == {"a": [1, 3], "b": [0, 1, 2, 3]}
    # normalised by group means, a's scores (mean 2.5) and b's (mean 0.45) rank side by side
    assert plan_global(scores, states, 0.5, max_layer_amount=0.9) == {"a": [1, 3], "b": [0, 1, 2, 3]}
    # already pruned channels count toward the cumulative target
    assert plan_layer(scores, {"a": GroupState(4, 8), "b": GroupState(8, 8)}, 0.5, max_layer_amount=0.9)["a"] == []
    assert plan_layer(scores, states, 0.0, max_layer_amount=0.9, round_to=8) == {"a": [], "b": []}


# ---------------------------------------------------------------- bad input


def test_bad_inputs_name_key_and_value() -> None:
    model, x = build("concat")
    with pytest.raises(ConfigError, match=r"pruning.method='l3'.*bn_scale, l1, l2, random, taylor"):
        prune_channels(model, x, amount=0.5, criterion="l3")
    with pytest.raises(ConfigError, match=r"schedule.target_sparsity=1.0"):
        prune_channels(model, x, amount=1.0)
    with pytest.raises(ConfigError, match=r"schedule.target_sparsity=-0.1"):
        prune_channels(model, x, amount=-0.1)
    with pytest.raises(ConfigError, match=r"pruning.target='weights'.*channels, flops, params"):
        prune_channels(model, x, amount=0.5, target="weights")
    with pytest.raises(ConfigError, match=r"pruning.scope='local'"):
        prune_channels(model, x, amount=0.5, scope="local")
    with pytest.raises(ConfigError, match=r"pruning.max_layer_amount=0.0"):
        prune_channels(model, x, amount=0.5, max_layer_amount=0.0)
    with pytest.raises(ConfigError, match=r"pruning.round_to=0"):
        prune_channels(model, x, amount=0.5, round_to=0)
    with pytest.raises(ConfigError, match=r"pruning.method='taylor' needs calibration batches"):
        prune_channels(model, x, amount=0.5, criterion="taylor")
    assert count_params(model) == count_params(build("concat")[0])  # nothing was changed
    assert set(CHANNEL_CRITERIA.names()) == {"l1", "l2", "bn_scale", "taylor", "random"}


# ---------------------------------------------------------------- the pruning=channel preset


def test_channel_preset_composes_to_a_valid_channel_spec(compose: Callable[..., dict]) -> None:
    from prunebench.engine.structured import check_channel_spec, options
    from prunebench.spec import RetrainSpec, from_config

    spec = from_config(compose(["pruning=channel", "model=vgg11_bn", "data=synthetic"]))
    assert (spec.pruning.method, spec.pruning.scope, spec.pruning.structure) == ("l1", "layer", "channel")
    assert options(spec).as_dict() == {"target": "params", "max_layer_amount": 0.9, "round_to": None,
                                       "ignored_layers": [], "heads": True}
    check_channel_spec(spec)  # no error
    assert spec.curve_label() == "l1/iterative/finetune/channel"
    for override, message in [
        ("pruning.target=weights", r"pruning.target='weights'.*channels, params, flops"),
        ("pruning.max_layer_amount=1.5", r"pruning.max_layer_amount=1.5"),
        ("pruning.round_to=0", r"pruning.round_to=0"),
    ]:
        try:
            bad = from_config(compose(["pruning=channel", override]))
        except ConfigError as exc:  # rejected while composing the spec: also fine
            assert re.search(message, str(exc)), (override, str(exc))
            continue
        with pytest.raises(ConfigError, match=message):
            check_channel_spec(bad)
    with pytest.raises(ConfigError, match=r"pruning.method='magnitude'.*bn_scale, l1, l2, random, taylor"):
        from_config(compose(["pruning=channel", "pruning.method=magnitude"]))
    rewind = dataclasses.replace(spec, retrain=RetrainSpec(name="weight_rewind"))
    with pytest.raises(ConfigError, match=r"retrain='weight_rewind' cannot follow pruning.structure=channel"):
        check_channel_spec(rewind)


@pytest.mark.parametrize("prune_first", [True, False])
def test_channel_pruner_honours_prune_first(compose: Callable[..., dict], prune_first: bool) -> None:
    from prunebench.engine.structured import ChannelPruner
    from prunebench.models import build_model
    from prunebench.pruning.structured import layer_channels
    from prunebench.spec import from_config

    spec = from_config(compose(["pruning=channel", "pruning.target=channels", f"pruning.prune_first={prune_first}",
                                "model=conv4", "data=synthetic", "data.input_shape=[3,8,8]"]))
    torch.manual_seed(0)
    net = build_model("conv4", (3, 8, 8), 10)
    x = torch.randn(2, 3, 8, 8)
    dense = layer_channels(net)
    pruner = ChannelPruner(spec, net, x)
    info = pruner.prune(net, 0.5, [], torch.Generator().manual_seed(0))
    after = layer_channels(net)
    first = next(iter(dense))
    assert (after[first] == dense[first]) is (not prune_first)
    assert sum(after.values()) < sum(dense.values()) and info["channel_target"] == "channels"
    assert net(x).shape == (2, 10)


# ---------------------------------------------------------------- the structured / ShrinkBench studies


def test_structured_vs_unstructured_study_variants_match_parameter_sparsity(compose: Callable[..., dict]) -> None:
    from prunebench.spec import from_config

    study = compose(["experiment=structured_vs_unstructured"])["study"]
    specs = {name: from_config(compose(["experiment=structured_vs_unstructured", *ov, "study=null"]))
             for name, ov in study["variants"].items()}
    assert set(specs) == {"channel_iterative", "channel_one_shot", "magnitude_iterative"}
    assert {s.data.name for s in specs.values()} == {"synthetic"}
    assert {tuple(s.data.kwargs["input_shape"]) for s in specs.values()} == {(3, 32, 32)}
    assert {s.model.name for s in specs.values()} == {"vgg11_bn"}
    assert specs["channel_iterative"].pruning.options["target"] == "params"
    assert specs["channel_iterative"].schedule.levels() == specs["magnitude_iterative"].schedule.levels()
    assert specs["magnitude_iterative"].pruning.structure == "unstructured"


def test_shrinkbench_study_grid(compose: Callable[..., dict]) -> None:
    from prunebench.spec import from_config

    cfg = compose(["experiment=shrinkbench_cifar10"])
    assert cfg["study"]["seeds"] == [0, 1, 2] and cfg["data"]["name"] == "cifar10" and not cfg["data"]["download"]
    seen = set()
    for ov in cfg["study"]["variants"].values():
        s = from_config(compose(["experiment=shrinkbench_cifar10", *ov, "study=null"]))
        assert s.schedule.name == "one_shot" and s.retrain.epochs == 15 and s.trainer.accelerator == "gpu"
        seen.add((s.model.name, s.pruning.method, s.pruning.scope, round(1 / (1 - s.schedule.target_sparsity))))
    assert seen == {(m, meth, scope, c) for m in ("resnet20", "resnet56")
                    for meth, scope in (("magnitude", "global"), ("magnitude", "layer"), ("random", "global"))
                    for c in (2, 4, 8, 16, 32)}
