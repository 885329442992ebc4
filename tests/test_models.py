"""The model registry: every registered model on the project's three input shapes, the
errors for bad names, kwargs and shapes, and parameter counts worked out by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from prunebench.errors import ConfigError
from prunebench.models import build_model, list_models, model_fits, model_kwargs, model_task

CONF_MODEL = Path(__file__).resolve().parents[1] / "conf" / "model"

MNIST1D, MNIST, CIFAR = (40,), (1, 28, 28), (3, 32, 32)
SHAPES = [MNIST1D, MNIST, CIFAR]
# Not 10, so a hard-coded class count shows up.
NUM_CLASSES = 7

# Modules allowed to hold parameters: what masks, the channel pruner and the FLOP counter follow.
PLAIN = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)


# Classifiers of float inputs; language models (token ids in, [B, T, V] out) are tested in test_llm_models.py.
CLASSIFIERS = [n for n in list_models(external=False) if model_task(n) == "classification"]


def canonical_shape(name: str) -> tuple[int, ...]:
    return next(s for s in SHAPES if model_fits(name, s))


def run(model: nn.Module, shape: tuple[int, ...], batch: int = 2) -> torch.Tensor:
    return model(torch.randn(batch, *shape))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.integration
def test_model_on_shape(name: str, shape: tuple[int, ...]) -> None:
    if not model_fits(name, shape):
        with pytest.raises(ConfigError, match=rf"model={name!r} needs .*; got input_shape={re.escape(str(shape))}"):
            build_model(name, shape, NUM_CLASSES)
        return
    torch.manual_seed(0)
    model = build_model(name, shape, NUM_CLASSES)
    # The classifier is the last nn.Linear and produces the logits.
    classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert classifier.out_features == NUM_CLASSES
    seen: list[torch.Tensor] = []
    classifier.register_forward_hook(lambda _m, _i, out: seen.append(out))
    logits = run(model, shape)
    assert logits.shape == (2, NUM_CLASSES)
    assert seen[0] is logits
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_plain_unshared_modules(name: str) -> None:
    model = build_model(name, canonical_shape(name), NUM_CLASSES)
    for mod_name, m in model.named_modules():
        if any(True for _ in m.parameters(recurse=False)):
            assert isinstance(m, PLAIN), f"{mod_name}: {type(m).__name__} holds parameters"
    # No module or parameter used twice: hooks, masks and channel surgery see each once.
    assert len(list(model.named_modules(remove_duplicate=False))) == len(list(model.named_modules()))
    assert len(list(model.named_parameters(remove_duplicate=False))) == len(list(model.parameters()))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_deterministic_given_seed(name: str) -> None:
    shape = canonical_shape(name)
    torch.manual_seed(3)
    a = build_model(name, shape, NUM_CLASSES).state_dict()
    torch.manual_seed(3)
    b = build_model(name, shape, NUM_CLASSES).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.integration
def test_smallest_accepted_input_runs(name: str) -> None:
    """The smallest shape model_fits accepts really runs, also non-square and odd-sized."""
    families = [lambda s: (s,), lambda s: (2, s), lambda s: (1, s, s)]
    candidates = [next((f(s) for s in range(1, 64) if model_fits(name, f(s))), None) for f in families]
    smallest = [s for s in candidates if s is not None]
    assert smallest, f"{name} accepts none of the probed shapes"
    for shape in smallest:
        assert not model_fits(name, (*shape[:-1], shape[-1] - 1))
    # Images also with H != W, odd sizes and more channels.
    extra = [(2, s[1] + 1, 2 * s[1] + 1) for s in smallest if len(s) == 3]
    for shape in smallest + extra:
        assert run(build_model(name, shape, NUM_CLASSES), shape).shape == (2, NUM_CLASSES), shape


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_config_file_matches_factory(name: str) -> None:
    """conf/model/<name>.yaml exists and repeats the factory's kwargs with their defaults."""
    cfg = yaml.safe_load((CONF_MODEL / f"{name}.yaml").read_text())
    assert cfg.pop("name") == name
    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in model_kwargs(name).items()}
    assert cfg == defaults
    build_model(name, canonical_shape(name), NUM_CLASSES, **cfg)


def test_list_models_pattern() -> None:
    assert list_models("resnet*") == ["resnet20", "resnet56"]
    assert list_models("conv*") == ["conv2", "conv4", "conv6"]
    assert {"mlp", "cnn1d", "lenet_300_100", "lenet5", "vgg11_bn", "vgg16_bn"} <= set(list_models())


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="model='resnet18' is not a known name; valid: .*resnet20, resnet56"):
        build_model("resnet18", CIFAR, 10)
    with pytest.raises(ConfigError, match="valid: cnn1d"):
        model_fits("nope", CIFAR)


def test_unknown_kwarg_names_the_key_and_accepted_ones() -> None:
    with pytest.raises(ConfigError, match=r"model\.width is not a parameter of model='mlp'; accepted: widths"):
        build_model("mlp", MNIST1D, 10, width=[10])
    with pytest.raises(ConfigError, match=r"model\.width_mult .*accepted: none"):
        build_model("lenet5", MNIST, 10, width_mult=2.0)
    with pytest.raises(ConfigError, match=r"model\.width_mult .*accepted: init"):
        build_model("lenet_300_100", MNIST, 10, width_mult=2.0)


def test_shape_error_message() -> None:
    msg = r"model='resnet20' needs image input \(C, H, W\) of at least 8x8; got input_shape=\(40,\)"
    with pytest.raises(ConfigError, match=msg):
        build_model("resnet20", MNIST1D, 10)
    with pytest.raises(ConfigError, match=r"model='cnn1d' needs sequence input \(L,\) or \(C, L\)"):
        build_model("cnn1d", CIFAR, 10)
    assert not model_fits("vgg11_bn", (3, 7, 32)) and not model_fits("mlp", ())


@pytest.mark.parametrize(
    ("name", "kwargs", "shown"),
    [
        ("mlp", {"widths": []}, "model.widths=[]"),
        ("mlp", {"widths": [100, 0]}, "model.widths=[100, 0]"),
        ("mlp", {"widths": [1.5]}, "model.widths=[1.5]"),
        ("mlp", {"widths": "100"}, "model.widths='100'"),
        ("cnn1d", {"channels": 0}, "model.channels=0"),
        ("resnet20", {"width_mult": -1.0}, "model.width_mult=-1.0"),
        ("vgg11_bn", {"width_mult": float("nan")}, "model.width_mult=nan"),
        ("conv4", {"width_mult": "wide"}, "model.width_mult='wide'"),
    ],
)
def test_invalid_values_name_key_and_value(name: str, kwargs: dict, shown: str) -> None:
    shape = canonical_shape(name)
    with pytest.raises(ConfigError, match=shown.replace("[", r"\[").replace("]", r"\]")):
        build_model(name, shape, 10, **kwargs)


def test_num_classes_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="num_classes=0"):
        build_model("mlp", MNIST1D, 0)


def test_width_mult_scales_channels() -> None:
    model = build_model("resnet20", CIFAR, 10, width_mult=0.5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert {c.out_channels for c in convs} == {8, 16, 32}
    assert run(model, CIFAR).shape == (2, 10)


def test_resnet_projection_shortcuts() -> None:
    """Option B: the two shape-changing blocks of resnet20 have a 1x1 conv + BN shortcut."""
    model = build_model("resnet20", CIFAR, 10)
    shortcuts = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in shortcuts] == [(16, 32, (2, 2)), (32, 64, (2, 2))]


# ---- parameter counts, worked out by hand ------------------------------------------------


def linear(i: int, o: int) -> int:
    return i * o + o


def conv_bn(i: int, o: int, k: int = 3) -> int:
    return i * o * k * k + 2 * o  # no conv bias before BN; BN weight + bias


def resnet_params(n: int, in_ch: int = 3, classes: int = 10) -> int:
    total = conv_bn(in_ch, 16)
    c = 16
    for w in (16, 32, 64):
        for j in range(n):
            total += conv_bn(c, w) + conv_bn(w, w) + (conv_bn(c, w, 1) if c != w else 0)
            c = w
    return total + linear(64, classes)


def vgg_params(cfg: list[int], in_ch: int = 3, classes: int = 10) -> int:
    total, c = 0, in_ch
    for o in cfg:
        total, c = total + conv_bn(c, o), o
    return total + linear(512, classes)


EXPECTED_PARAMS = {
    # 40·100+100 + 100·100+100 + 100·10+10
    ("mlp", MNIST1D): 15_210,
    # 784·300+300 + 300·100+100 + 100·10+10
    ("lenet_300_100", MNIST): 266_610,
    # conv 1→25 k5, 25→25 k3 (x2), Linear(25·5 → 10): the paper's ConvBase
    ("cnn1d", MNIST1D): 5_210,
    # conv 1→6 k5, 6→16 k5, FC 16·4·4→120→84→10
    ("lenet5", MNIST): 44_426,
    # the original LeNet-5 on 1x32x32 (flatten 16·5·5 = 400)
    ("lenet5", (1, 32, 32)): 61_706,
    # conv 3→64, 64→64 (3x3 with bias), FC 64·16·16→256→256→10
    ("conv2", CIFAR): 4_301_642,
    ("resnet20", CIFAR): 272_474,
    ("resnet56", CIFAR): 855_770,
    ("vgg11_bn", CIFAR): 9_228_362,
    ("vgg16_bn", CIFAR): 14_724_042,
}


def test_hand_formulas_agree_with_literals() -> None:
    """The literals above, recomputed from the architectures' definitions."""
    assert linear(40, 100) + linear(100, 100) + linear(100, 10) == EXPECTED_PARAMS[("mlp", MNIST1D)]
    assert linear(784, 300) + linear(300, 100) + linear(100, 10) == EXPECTED_PARAMS[("lenet_300_100", MNIST)]
    assert (1 * 25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + linear(125, 10) == EXPECTED_PARAMS[("cnn1d", MNIST1D)]

    def lenet(s: int) -> int:  # s: side of the 16-channel map the classifier head flattens
        return (6 * 25 + 6) + (16 * 6 * 25 + 16) + linear(16 * s * s, 120) + linear(120, 84) + linear(84, 10)

    assert lenet(4) == EXPECTED_PARAMS[("lenet5", MNIST)] and lenet(5) == EXPECTED_PARAMS[("lenet5", (1, 32, 32))]
    conv2 = (3 * 64 * 9 + 64) + (64 * 64 * 9 + 64) + linear(64 * 16 * 16, 256) + linear(256, 256) + linear(256, 10)
    assert conv2 == EXPECTED_PARAMS[("conv2", CIFAR)]
    # Option A (zero-padded shortcuts) has 269,722 / 853,018: the paper's "0.27M" / "0.85M";
    # the two 1x1 conv + BN projections add 16·32+64 + 32·64+128 = 2,752.
    assert resnet_params(3) == 269_722 + 2_752 == EXPECTED_PARAMS[("resnet20", CIFAR)]
    assert resnet_params(9) == 853_018 + 2_752 == EXPECTED_PARAMS[("resnet56", CIFAR)]
    assert vgg_params([64, 128, 256, 256, 512, 512, 512, 512]) == EXPECTED_PARAMS[("vgg11_bn", CIFAR)]
    vgg16 = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert vgg_params(vgg16) == EXPECTED_PARAMS[("vgg16_bn", CIFAR)]


@pytest.mark.parametrize(("name", "shape"), list(EXPECTED_PARAMS), ids=lambda v: str(v))
def test_param_count(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, shape, 10)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[(name, shape)]


def test_param_count_follows_input_and_classes() -> None:
    model = build_model("mlp", (3, 8, 8), 5, widths=[16])
    assert sum(p.numel() for p in model.parameters()) == linear(3 * 8 * 8, 16) + linear(16, 5)


def test_shape_may_be_torch_size_or_numpy_ints() -> None:
    import numpy as np

    assert model_fits("resnet20", torch.Size([3, 32, 32]))
    assert build_model("cnn1d", (np.int64(40),), 10).classifier.in_features == 125
    assert not model_fits("mlp", (2.5,)) and not model_fits("mlp", (True, 3))
