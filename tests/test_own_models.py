"""model=torchvision / model=custom: factories, the input/output check, identity (issue 11)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from prunebench.errors import ConfigError
from prunebench.imports import load_callable, split_target, target_identity
from prunebench.models import build_model, check_model_keys, list_models
from prunebench.identity import model_identity
from prunebench.models.external import check_io

FACTORY = textwrap.dedent("""
    from torch import nn

    def make_net(num_classes, hidden=8):
        return nn.Sequential(nn.Flatten(), nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def fixed(hidden=8):
        return nn.Sequential(nn.Flatten(), nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def not_a_module():
        return 42

    def broken():
        raise ValueError("bad width")

    def with_shape(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1], num_classes))
""")


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_nets.py"
    path.write_text(FACTORY)
    return path


def test_registry_lists_external_models() -> None:
    assert {"torchvision", "custom"} <= set(list_models())


def test_torchvision_arch_with_data_class_count() -> None:
    net = build_model("torchvision", (3, 32, 32), 7, arch="resnet18").eval()
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 7)
    assert sum(p.numel() for p in net.fc.parameters()) == 512 * 7 + 7


@pytest.mark.integration
def test_torchvision_googlenet_trains_on_plain_logits() -> None:
    net = build_model("torchvision", (3, 64, 64), 5, arch="googlenet").train()
    out = net(torch.zeros(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)  # no aux-logit tuple in training


@pytest.mark.parametrize(("kwargs", "shape", "message"), [
    ({"arch": "resnet"}, (3, 32, 32), "model.arch='resnet' is not a torchvision classification architecture; did you mean"),
    ({}, (3, 32, 32), "model.arch is required for model='torchvision'"),
    ({"arch": "resnet18"}, (1, 28, 28), "torchvision architectures take 3-channel images; the data has 1"),
    ({"arch": "resnet18"}, (40,), "model='torchvision' needs image input (C, H, W)"),
    ({"arch": "resnet18", "widthx": 2}, (3, 32, 32), "rejected its keyword arguments (model.widthx)"),
    ({"arch": "resnet18", "weights": "NOPE"}, (3, 32, 32), "model.weights='NOPE' is not a weight set of model.arch='resnet18'; valid: IMAGENET1K_V1"),
])
def test_torchvision_errors_name_the_key(kwargs: dict, shape: tuple, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_model("torchvision", shape, 10, **kwargs)
    assert message in str(err.value)


def test_torchvision_weights_only_from_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match="not in the local torch hub cache .*never downloads"):
        build_model("torchvision", (3, 32, 32), 10, arch="squeezenet1_1", weights="IMAGENET1K_V1")
    # A "pretrained" file in the cache: a 1000-class model's state; 10 classes keep all but the head.
    from prunebench.models.external import weights_file

    path, _ = weights_file("squeezenet1_1", "IMAGENET1K_V1")
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    pre = build_model("torchvision", (3, 32, 32), 1000, arch="squeezenet1_1")
    torch.save(pre.state_dict(), path)
    net = build_model("torchvision", (3, 32, 32), 10, arch="squeezenet1_1", weights="IMAGENET1K_V1")
    assert torch.equal(net.features[0].weight, pre.features[0].weight)
    assert net.classifier[1].weight.shape[0] == 10


def test_custom_file_target_gets_num_classes(user_file: Path) -> None:
    net = build_model("custom", (3, 4), 5, target=f"{user_file}:make_net", hidden=6)
    assert net[1].out_features == 6 and net(torch.zeros(2, 3, 4)).shape == (2, 5)
    net = build_model("custom", (3, 4), 5, target=f"{user_file}:with_shape")
    assert net[1].in_features == 12


def test_custom_module_target() -> None:
    net = build_model("custom", (3, 8, 8), 4, target="torchvision.models.resnet:ResNet",
                      block=__import__("torchvision").models.resnet.BasicBlock, layers=[1, 1, 1, 1]).eval()
    assert net.fc.out_features == 4  # ResNet(num_classes=...) received the data's class count
    net = build_model("custom", (3, 8, 8), 4, target="torchvision.models.resnet.ResNet",  # dotted form
                      block=__import__("torchvision").models.resnet.BasicBlock, layers=[1, 1, 1, 1])
    assert net.fc.out_features == 4
    with pytest.raises(ConfigError, match="model.num_classes cannot be set: it comes from the data set"):
        check_model_keys("custom", {"target": "torchvision.models:resnet18", "num_classes": 4})
    with pytest.raises(ConfigError, match=r"returns logits of shape \(2, 1000\)"):  # **kwargs only: not passed
        build_model("custom", (3, 8, 8), 4, target="torchvision.models:resnet18")


@pytest.mark.parametrize(("target", "kwargs", "message"), [
    ("{f}:nope", {}, "has no attribute 'nope'; its callables: broken, fixed, make_net"),
    ("{f}:not_a_module", {}, "returned a int, not a torch.nn.Module"),
    ("{f}:broken", {}, "raised ValueError: bad width when called with no arguments"),
    ("{f}:fixed", {}, "returns logits of shape (2, 3) for a batch of 2 inputs of shape (3, 4); the data has num_classes=5"),
    ("{f}:make_net", {"depth": 3}, "raised TypeError"),
    ("missing_dir/none.py:f", {}, "file '"),
    ("no_such_pkg_xyz.mod:f", {}, "cannot import module 'no_such_pkg_xyz.mod'"),
    ("justaname", {}, "must name a callable"),
])
def test_custom_errors_name_model_target(user_file: Path, target: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_model("custom", (3, 4), 5, target=target.format(f=user_file), **kwargs)
    assert "model.target=" in str(err.value) and message in str(err.value)


def test_custom_wrong_input_shape_is_reported(user_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot take the data's inputs: a batch of shape \(2, 5, 5\)"):
        build_model("custom", (5, 5), 5, target=f"{user_file}:make_net")


def test_check_io_keeps_training_mode_and_rng() -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5)).train()
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    check_io(net, (4,), 3, "x")
    assert net.training and torch.equal(torch.rand(1), before)


def test_split_target_forms() -> None:
    assert split_target("pkg.mod:fn", "k") == ("pkg.mod", "fn", False)
    assert split_target("a/b/nets.py:make", "k") == ("a/b/nets.py", "make", True)
    assert split_target("pkg.mod.fn", "k") == ("pkg.mod", "fn", False)


def test_identity_follows_file_content_not_path(user_file: Path, tmp_path: Path) -> None:
    ident = model_identity("custom", {"target": f"{user_file}:make_net"})
    assert ident["target"] == "my_nets.py:make_net" and len(ident["source_sha256"]) == 64
    moved = tmp_path / "elsewhere" / "my_nets.py"
    moved.parent.mkdir()
    moved.write_text(FACTORY)
    assert model_identity("custom", {"target": f"{moved}:make_net"}) == ident
    moved.write_text(FACTORY + "\n# edited\n")
    assert model_identity("custom", {"target": f"{moved}:make_net"})["source_sha256"] != ident["source_sha256"]
    assert model_identity("torchvision", {"arch": "resnet18"}) == {}
    assert target_identity("torchvision.models:resnet18", "model.target")["target"] == "torchvision.models:resnet18"


def test_file_import_is_cached_and_sibling_imports_work(tmp_path: Path) -> None:
    (tmp_path / "blocks_own_test.py").write_text("from torch import nn\nBLOCK = nn.Linear\n")
    (tmp_path / "net_own_test.py").write_text("from blocks_own_test import BLOCK\ndef make():\n    return BLOCK(2, 2)\n")
    a = load_callable(f"{tmp_path}/net_own_test.py:make", "model.target")
    assert a is load_callable(f"{tmp_path}/net_own_test.py:make", "model.target")


def test_absolute_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prunebench.imports import absolute_target

    monkeypatch.chdir(tmp_path)
    assert absolute_target("nets/my.py:make", "model.target") == f"{tmp_path}/nets/my.py:make"
    assert absolute_target("pkg.mod:make", "model.target") == "pkg.mod:make"


def test_display_names() -> None:
    from prunebench.identity import display_name

    assert display_name("model", "torchvision", {"arch": "resnet18"}) == "resnet18"
    assert display_name("model", "custom", {"target": "nets/my.py:make_net"}) == "make_net"
    assert display_name("model", "custom", {"target": "pkg.mod.make_net"}) == "make_net"
    assert display_name("data", "torchvision", {"dataset": "CIFAR100"}) == "CIFAR100"
    assert display_name("data", "imagefolder", {"root": "/x/flowers/"}) == "flowers"
    assert display_name("model", "mlp", {}) == "mlp"
