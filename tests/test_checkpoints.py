"""train.init_from: loading .pt / .safetensors / Lightning .ckpt, errors, content hash (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from prunebench.checkpoints import init_identity, load_init, load_state_file, strip_prefix
from prunebench.errors import ConfigError


def _net(hidden: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(3, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 2))


@pytest.fixture
def trained() -> nn.Module:
    torch.manual_seed(1)
    return _net()


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_pt_state_dict(tmp_path: Path, trained: nn.Module) -> None:
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    torch.manual_seed(2)
    net = load_init(_net(), tmp_path / "w.pt")
    assert _same(net, trained)


def test_safetensors(tmp_path: Path, trained: nn.Module) -> None:
    from safetensors.torch import save_file

    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    assert _same(load_init(_net(), tmp_path / "w.safetensors"), trained)


def test_lightning_ckpt_prefix_stripped(tmp_path: Path, trained: nn.Module) -> None:
    # What Lightning writes for a LightningModule holding the network as self.net.
    ckpt = {"epoch": 3, "global_step": 30, "pytorch-lightning_version": "2.6",
            "state_dict": {f"net.{k}": v for k, v in trained.state_dict().items()}}
    torch.save(ckpt, tmp_path / "m.ckpt")
    assert _same(load_init(_net(), tmp_path / "m.ckpt"), trained)


def test_strip_prefix_only_when_it_helps(trained: nn.Module) -> None:
    state = trained.state_dict()
    assert strip_prefix(state, _net()).keys() == state.keys()
    assert strip_prefix({f"module.{k}": v for k, v in state.items()}, _net()).keys() == state.keys()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train.init_from='.*nope.pt': file not found"):
        load_init(_net(), tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="file not found"):
        init_identity(tmp_path / "nope.pt")


def test_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match=r"train.init_from='.*bad.pt' cannot be read as a weights-only checkpoint"):
        load_init(_net(), tmp_path / "bad.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_init(_net(), tmp_path / "bad.safetensors")


def test_pickled_model_object_is_refused(tmp_path: Path, trained: nn.Module) -> None:
    torch.save(trained, tmp_path / "model.pt")  # a whole module: needs unpickling code, not weights only
    with pytest.raises(ConfigError, match="cannot be read as a weights-only checkpoint"):
        load_init(_net(), tmp_path / "model.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="holds a list, not a state dict of tensors"):
        load_state_file(tmp_path / "list.pt")


def test_mismatch_lists_keys_and_shapes(tmp_path: Path, trained: nn.Module) -> None:
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    with pytest.raises(ConfigError) as err:
        load_init(_net(hidden=5), tmp_path / "w.pt")
    msg = str(err.value)
    assert "does not fit the model: 7 shape mismatch(es)" in msg and "0.weight (4, 3) vs model (5, 3)" in msg
    state = dict(trained.state_dict())
    state["extra.weight"] = torch.zeros(1)
    del state["3.bias"]
    torch.save(state, tmp_path / "w2.pt")
    with pytest.raises(ConfigError) as err:
        load_init(_net(), tmp_path / "w2.pt")
    assert "1 missing key(s): 3.bias" in str(err.value) and "1 unexpected key(s): extra.weight" in str(err.value)


def test_failed_load_leaves_model_unchanged(tmp_path: Path, trained: nn.Module) -> None:
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    net = _net(hidden=5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ConfigError):
        load_init(net, tmp_path / "w.pt")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_identity_is_content_hash(tmp_path: Path, trained: nn.Module) -> None:
    torch.save(trained.state_dict(), tmp_path / "a.pt")
    (tmp_path / "b.pt").write_bytes((tmp_path / "a.pt").read_bytes())
    a = init_identity(tmp_path / "a.pt")
    assert a == init_identity(tmp_path / "b.pt") and len(a["sha256"]) == 64
    with torch.no_grad():
        trained[0].weight[0, 0] += 1
    torch.save(trained.state_dict(), tmp_path / "a.pt")
    assert init_identity(tmp_path / "a.pt") != a
