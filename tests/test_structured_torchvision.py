"""Channel pruning on torchvision architectures: the invariants that must hold for any model.

For every architecture, built with random weights in eval mode on a small input, channel
pruning at ratio 0.5 must give a model that

* computes exactly what the dense model computes with the same channels zeroed
  (:func:`zero_channels`; atol 1e-5). Architectures whose normalisation spans channels
  (ConvNeXt's channels-last LayerNorm) cannot be compared by zeroing alone: a removed
  channel no longer enters the norm's mean and variance. For them the dense reference
  also computes each such LayerNorm over the kept channels only (``_masked_layernorm``),
  which is what the pruned network does;
* has fewer parameters and FLOPs;
* survives a ``weights_only`` save/load round trip bit for bit;

and an architecture the dependency graph cannot follow is refused with a ConfigError
that names the module, leaving the model exactly as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from prunebench.errors import ConfigError
from prunebench.metrics import count_params, layer_flops
from prunebench.pruning.structured import load_pruned, prune_channels, save_pruned, select_channels, zero_channels

ATOL = 1e-5
NUM_CLASSES = 10


@torch.no_grad()
def _randomize_norms(model: nn.Module) -> nn.Module:
    """Non-trivial norm statistics and affine parameters (fresh ones are the identity map,
    which would hide a norm that does not follow its channels)."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def _tv(name: str, **kw: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return _randomize_norms(getattr(torchvision.models, name)(weights=None, num_classes=NUM_CLASSES, **kw)).eval()

    return build


# name -> (factory, input side). googlenet: aux_logits=False, because its auxiliary heads only
# run in training mode, so a trace in eval mode cannot see (and resize) their inputs.
FAST = {  # a representative subset: grouped conv, depthwise, residual, concat
    "resnet18": (_tv("resnet18"), 32),  # residual additions
    "regnet_x_400mf": (_tv("regnet_x_400mf"), 32),  # grouped (non-depthwise) convs + residuals
    "mobilenet_v2": (_tv("mobilenet_v2"), 32),  # depthwise + inverted residuals
    "squeezenet1_0": (_tv("squeezenet1_0"), 64),  # concatenations (fire modules)
}
SLOW = {
    "resnext50_32x4d": (_tv("resnext50_32x4d"), 32),
    "regnet_y_400mf": (_tv("regnet_y_400mf"), 32),
    "convnext_tiny": (_tv("convnext_tiny"), 32),
    "efficientnet_b0": (_tv("efficientnet_b0"), 32),
    "efficientnet_v2_s": (_tv("efficientnet_v2_s"), 32),
    "mobilenet_v3_small": (_tv("mobilenet_v3_small"), 32),
    "densenet121": (_tv("densenet121"), 32),
    "googlenet": (_tv("googlenet", aux_logits=False, init_weights=True), 64),
    "vgg11_bn": (_tv("vgg11_bn"), 32),
    "mnasnet0_5": (_tv("mnasnet0_5"), 32),
    "resnet50": (_tv("resnet50"), 32),
    "wide_resnet50_2": (_tv("wide_resnet50_2"), 32),
}


def _masked_layernorm(ln: nn.LayerNorm, removed: list[int]) -> None:
    """Make ``ln`` (over the last dim, channels-last) normalise over the kept channels only."""
    keep = torch.tensor([i for i in range(ln.normalized_shape[0]) if i not in set(removed)])

    def forward(x: torch.Tensor) -> torch.Tensor:
        # torchvision's LayerNorm2d takes NCHW and permutes to channels-last itself
        channels_first = type(ln) is not nn.LayerNorm and x.dim() == 4
        y = x.permute(0, 2, 3, 1) if channels_first else x
        out = torch.zeros_like(y)
        out[..., keep] = nn.functional.layer_norm(y[..., keep], (len(keep),), ln.weight[keep], ln.bias[keep], ln.eps)
        return out.permute(0, 3, 1, 2) if channels_first else out

    ln.forward = forward  # type: ignore[method-assign]


def zeroed_reference(model: nn.Module, x: torch.Tensor, **kw: Any) -> nn.Module:
    """The dense model with the channels that ``prune_channels(**kw)`` removes set to zero."""
    ref = copy.deepcopy(model)
    sel = select_channels(ref, x, **kw)
    zero_channels(sel)
    for g in sel.groups:
        drop = set(sel.plan.get(g.key, []))
        for m in g.members:
            if drop and isinstance(m.module, nn.LayerNorm):
                _masked_layernorm(m.module, [li for li, r in zip(m.idxs, m.root_idxs) if r in drop])
    return ref


def check_invariants(name: str, factory: Callable[[], nn.Module], side: int, tmp_path: Any) -> None:
    model = factory()
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    kw: dict[str, Any] = {"amount": 0.5}
    ref = zeroed_reference(model, x, **kw)
    params0, flops0 = count_params(model), layer_flops(model, x[:1])[0]
    result = prune_channels(model, x[:1], **kw)
    with torch.no_grad():
        out, expected = model(x), ref(x)
    assert out.shape == (2, NUM_CLASSES)
    err = (out - expected).abs().max().item()
    assert err <= ATOL, f"{name}: pruned output differs from the zeroed dense model by {err:.3g}"
    if any(isinstance(m, nn.LayerNorm) and "forward" in vars(m) for m in ref.modules()):  # masked ones
        # The masked-LayerNorm reference is needed: plain zeroing computes something else.
        plain = copy.deepcopy(factory())
        zero_channels(select_channels(plain, x[:1], **kw))
        with torch.no_grad():
            assert (plain(x) - expected).abs().max().item() > 100 * ATOL, name
    assert count_params(model) < 0.8 * params0, name
    assert layer_flops(model, x[:1])[0] < 0.8 * flops0, name
    assert result.channel_ratio > 0.3, name

    path = save_pruned(model, tmp_path / f"{name}.pt")
    torch.load(path, weights_only=True)  # plain data only
    loaded = load_pruned(path, factory)
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert list(sd) == list(sd2)
    assert all(torch.equal(sd[k], sd2[k]) and sd[k].dtype == sd2[k].dtype for k in sd), name
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), out)


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(FAST))
def test_invariants_fast(name: str, tmp_path: Any) -> None:
    check_invariants(name, *FAST[name], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_invariants_slow(name: str, tmp_path: Any) -> None:
    check_invariants(name, *SLOW[name], tmp_path)


# ---------------------------------------------------------------- refusals leave the model as it was


def _snapshot(model: nn.Module) -> tuple[str, dict[str, torch.Tensor]]:
    return repr(model), {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, snap: tuple[str, dict[str, torch.Tensor]]) -> None:
    text, sd = snap
    assert repr(model) == text
    now = model.state_dict()
    assert list(now) == list(sd)
    assert all(torch.equal(now[k], sd[k]) for k in sd)


@pytest.mark.integration
def test_shufflenet_refused_naming_the_module() -> None:
    model = _tv("shufflenet_v2_x0_5")()
    snap = _snapshot(model)
    with pytest.raises(ConfigError, match=r"cannot follow this model's channels at the output of 'stage\d\.\d\.branch\d\.\d'.*channel shuffle"):
        prune_channels(model, torch.randn(1, 3, 64, 64), amount=0.5)
    assert_unchanged(model, snap)


@pytest.mark.slow
def test_vit_b_16_refused_then_mlp_pruned_with_ignored_layers(tmp_path: Any) -> None:
    factory = _tv("vit_b_16", image_size=32)
    model = factory()
    x = torch.randn(2, 3, 32, 32)
    snap = _snapshot(model)
    with pytest.raises(ConfigError, match=r"group 'conv_proj' runs through the attention module 'encoder\.layers\."
                                          r"encoder_layer_\d+\.self_attention'.*pruning\.ignored_layers=\['conv_proj'\]"):
        prune_channels(model, x[:1], amount=0.5)
    assert_unchanged(model, snap)
    # Following the message: the embedding width stays, the MLP hidden units go.
    ref = zeroed_reference(model, x[:1], amount=0.5, ignored_layers=["conv_proj"])
    prune_channels(model, x[:1], amount=0.5, ignored_layers=["conv_proj"])
    assert model.encoder.layers[0].mlp[0].out_features == 1536
    assert model.conv_proj.out_channels == 768
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max().item() <= ATOL
    loaded = load_pruned(save_pruned(model, tmp_path / "vit.pt"), factory)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
