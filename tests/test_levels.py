"""Compact level files (prunebench.results.levels): packed masks, weights stored only when changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from prunebench.errors import CorruptFileError
from prunebench.pruning.mask import Mask, pack_bits, unpack_bits
from prunebench.results.levels import (FORMAT, disk_bytes, has_level, level_format, load_level_into,
                                       load_level_state, same_bits, save_level)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 10))


def random_mask(model: nn.Module, keep: float, seed: int = 1) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(p.shape, generator=g) < keep for n, p in model.named_parameters() if p.dim() == 2})


def bits(state: dict[str, torch.Tensor]) -> dict[str, bytes]:
    return {k: v.contiguous().view(torch.uint8).numpy().tobytes() if v.is_floating_point() else v.numpy().tobytes()
            for k, v in state.items()}


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (9,), (3, 5, 7)])
def test_pack_bits_is_eight_weights_per_byte_and_round_trips(shape: tuple[int, ...]) -> None:
    keep = torch.rand(shape, generator=torch.Generator().manual_seed(0)) < 0.4
    packed = pack_bits(keep)
    n = keep.numel()
    assert packed.dtype == torch.uint8 and packed.numel() == (n + 7) // 8
    assert torch.equal(unpack_bits(packed, keep.shape), keep)
    with pytest.raises(ValueError, match="does not hold shape"):
        unpack_bits(packed, (n + 8,))


def test_mask_file_is_packed_and_an_all_kept_tensor_stores_no_bits(tmp_path: Path) -> None:
    keep = torch.zeros(1000, 100, dtype=torch.bool)
    keep[::3] = True
    mask = Mask({"a": keep, "b": torch.ones(1000, 100, dtype=torch.bool)})
    mask.save(tmp_path / "m.pt")
    size = (tmp_path / "m.pt").stat().st_size
    assert 100_000 / 8 <= size < 100_000 / 8 + 2_000  # one tensor of bits; the all-kept one is free
    back = Mask.load(tmp_path / "m.pt")
    assert back == mask and back["a"].dtype == torch.bool


def test_unretrained_level_stores_only_its_mask_and_loads_bit_identically(tmp_path: Path) -> None:
    model = net()
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    save_level(tmp_path / "0", dense, Mask.ones_like(model, ["0.weight", "2.weight"]))
    mask = random_mask(model, 0.3)
    mask.apply(model)  # a criterion that does not change the surviving weights (-0.0 where a negative is pruned)
    counts = save_level(tmp_path / "1", model.state_dict(), mask, base=0, base_state=dense)
    assert counts == {"ref": 4, "kept": 0, "full": 0}
    assert json.loads((tmp_path / "1" / "level.json").read_text()) == {"format": FORMAT, "base": 0}
    assert not (tmp_path / "1" / "state.pt").exists()
    assert (tmp_path / "1" / "weights.pt").stat().st_size < 2_000  # no tensor in it
    state, back = load_level_state(tmp_path / "1")
    assert back == mask
    assert bits(state) == bits(model.state_dict())
    # A second unretrained level chains on the first (base 1, itself a reference to 0).
    mask2 = Mask({n: m & (torch.arange(m.numel()).reshape(m.shape) % 2 == 0) for n, m in mask.items()})
    mask2.apply(model)
    assert save_level(tmp_path / "2", model.state_dict(), mask2, base=1, base_state=state)["ref"] == 4
    assert bits(load_level_state(tmp_path / "2")[0]) == bits(model.state_dict())


def test_retrained_level_stores_kept_values_and_changed_tensors_bit_identically(tmp_path: Path) -> None:
    model = net()
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    mask = random_mask(model, 0.1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # retrained: every tensor changed
        model[0].bias[:3] = dense["0.bias"][:3]
        model[2].bias.copy_(dense["2.bias"])  # an unchanged tensor is a reference
        mask.apply(model)
    counts = save_level(tmp_path / "1", model.state_dict(), mask, base=0, base_state=dense)
    assert counts == {"ref": 1, "kept": 2, "full": 1}
    stored = torch.load(tmp_path / "1" / "weights.pt", weights_only=True)
    assert stored["kept"]["0.weight"].numel() == int(mask["0.weight"].sum())  # 10% of the weights, not all
    assert set(stored["negzero"]) == {"0.weight", "2.weight"}  # -0.0 where negatives were masked, kept exactly
    save_level(tmp_path / "0", dense, Mask.ones_like(model, list(mask)))
    state, _ = load_level_state(tmp_path / "1")
    assert bits(state) == bits(model.state_dict())
    target = net()
    assert load_level_into(tmp_path / "1", target) == mask
    assert all(same_bits(target.state_dict()[k], v) for k, v in model.state_dict().items())


def old_format_level(ld: Path, state: dict[str, torch.Tensor], mask: Mask) -> None:
    """A level folder as prunebench wrote it before format 2: state.pt + mask.pt, one bool per weight."""
    ld.mkdir(parents=True)
    torch.save({k: v.clone() for k, v in state.items()}, ld / "state.pt")
    torch.save({n: m.clone() for n, m in mask.items()}, ld / "mask.pt")


def test_old_format_folder_loads_and_a_new_level_can_build_on_it(tmp_path: Path) -> None:
    model = net()
    mask = random_mask(model, 0.5)
    mask.apply(model)
    old_format_level(tmp_path / "1", model.state_dict(), mask)
    assert (tmp_path / "1" / "mask.pt").stat().st_size > sum(m.numel() for m in mask.values())  # a byte per weight
    assert has_level(tmp_path / "1") and level_format(tmp_path / "1") == 1
    state, back = load_level_state(tmp_path / "1")
    assert back == mask and bits(state) == bits(model.state_dict())
    mask2 = random_mask(model, 0.2, seed=5)
    mask2 = Mask({n: m & mask[n] for n, m in mask2.items()})
    mask2.apply(model)
    assert save_level(tmp_path / "2", model.state_dict(), mask2, base=1, base_state=state)["ref"] == 4
    assert bits(load_level_state(tmp_path / "2")[0]) == bits(model.state_dict())


def test_damaged_level_files_name_the_file(tmp_path: Path) -> None:
    model = net()
    dense = model.state_dict()
    save_level(tmp_path / "0", dense, Mask.ones_like(model, ["0.weight"]))
    save_level(tmp_path / "1", dense, random_mask(model, 1.0), base=0, base_state=dense)
    (tmp_path / "1" / "weights.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CorruptFileError, match="weights.pt"):
        load_level_state(tmp_path / "1")
    (tmp_path / "1" / "level.json").write_text(json.dumps({"format": 99, "base": 0}))
    with pytest.raises(CorruptFileError, match="format 99"):
        load_level_state(tmp_path / "1")
    (tmp_path / "1" / "level.json").write_text(json.dumps({"format": 2, "base": 1}))
    with pytest.raises(CorruptFileError, match="base level 1"):
        load_level_state(tmp_path / "1")


def test_disk_bytes_counts_a_hard_linked_file_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_bytes(b"1" * 1000)
    (tmp_path / "a" / "y").hardlink_to(tmp_path / "a" / "x")
    (tmp_path / "a" / "z").write_bytes(b"2" * 10)
    assert disk_bytes(tmp_path / "a") == 1010
    seen: set[tuple[int, int]] = set()
    assert disk_bytes(tmp_path / "a", seen) == 1010 and disk_bytes(tmp_path / "a", seen) == 0
