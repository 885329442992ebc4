"""The files of one finished masked level, and the one function that reads them back.

A masked level (unstructured or N:M) is its mask plus its weights. Since format 2 a
level folder ``levels/<k>/`` holds:

``level.json``
    ``{"format": 2, "base": j | null}``. ``base`` names the level of the same run whose
    weights this one masks (null: none).
``mask.pt``
    The mask, bit-packed: 8 weights per byte (:meth:`Mask.save`).
``state.pt`` (level 0)
    The full state dict (a hard link to the dense cache's ``final.pt`` where they match).
``weights.pt`` (levels >= 1)
    Only what the base does not already give. For every tensor of the state dict:

    * absent: it is, bit for bit, the base level's tensor times this level's mask (a level
      pruned without retraining, by a criterion that leaves the surviving weights alone);
    * under ``"kept"``: a masked tensor stored as its values at the kept positions (row-major
      order), plus, under ``"negzero"``, the packed positions of pruned entries holding -0.0;
    * under ``"full"``: the tensor itself.

Every choice is checked on the bytes when the level is written: a tensor is left out or
stored as kept values only when reading it back gives the same bits, so resume and export
see exactly the tensors the level loop had.

Format 1 (no ``level.json``): ``state.pt`` (full weights) and ``mask.pt`` (one bool per
weight). Such folders still load, and a run resumed from one continues in format 2.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from prunebench.errors import CorruptFileError
from prunebench.pruning.mask import Mask, pack_bits, unpack_bits
from prunebench.results.store import (atomic_link, atomic_write_bytes, atomic_write_text, disk_bytes,  # noqa: F401
                                      load_failure)

#: The level file format this code writes.
FORMAT = 2
LEVEL_JSON = "level.json"
MASK = "mask.pt"
STATE = "state.pt"
WEIGHTS = "weights.pt"

State = dict[str, torch.Tensor]


def _int_view(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as integers of the same width (so -0.0 differs from 0.0, NaN equals itself)."""
    if t.is_floating_point() or t.is_complex():
        t = t.contiguous()
        width = t.element_size()
        return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64, 16: torch.int64}[width])
    return t


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors have the same dtype, shape and bytes."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_int_view(a), _int_view(b))


def masked(base: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``base`` times its mask, computed as :meth:`Mask.apply` computes it (so the bits agree)."""
    return base.mul(keep.to(base.device, base.dtype))


def _save_torch(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _read_torch(path: Path, what: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many types for garbage input
        raise CorruptFileError(f"{what} {path} is corrupt: {load_failure(path, exc)}; delete it to recompute "
                               f"that level") from None


def _state_file(path: Path, what: str) -> State:
    state = _read_torch(path, what)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptFileError(f"{what} {path} is corrupt: it is not a dict of tensors; delete it to recompute "
                               f"that level")
    return state


def level_format(ld: Path) -> int:
    """The format of the level folder ``ld`` (1: written before level.json existed)."""
    meta = _meta(ld)
    return int(meta.get("format", 1)) if meta is not None else 1


def _meta(ld: Path) -> dict[str, Any] | None:
    path = ld / LEVEL_JSON
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"level file {path} is corrupt ({exc}); delete the level folder to recompute it") \
            from None
    if meta.get("format", 1) > FORMAT:
        raise CorruptFileError(f"level file {path} has format {meta.get('format')!r}, newer than this prunebench "
                               f"reads ({FORMAT}); upgrade prunebench")
    return meta


def has_level(ld: Path) -> bool:
    """Whether ``ld`` holds a complete masked level (either format)."""
    if not (ld / MASK).exists():
        return False
    meta = _meta(ld)
    if meta is None:
        return (ld / STATE).exists()
    return (ld / STATE).exists() or (ld / WEIGHTS).exists()


def save_level(ld: Path, state: Mapping[str, torch.Tensor], mask: Mask, *, base: int | None = None,
               base_state: Mapping[str, torch.Tensor] | None = None, link_from: Path | None = None) -> dict[str, int]:
    """Write a masked level: its packed mask and only the weights that ``base`` does not give.

    ``state``: the level's weights; ``base``/``base_state``: an earlier level of the run and
    its weights (as :func:`load_level_state` returns them); ``link_from``: a file known to
    hold exactly ``state`` (the dense cache), hard-linked as ``state.pt`` instead of written.
    Without a base (level 0) the full state goes to ``state.pt``. Returns how many tensors
    went each way (``ref``, ``kept``, ``full``).
    """
    state = {k: v.detach().cpu() for k, v in state.items()}
    mask.save(ld / MASK)
    counts = {"ref": 0, "kept": 0, "full": 0}
    if base is None or base_state is None:
        if link_from is None or not atomic_link(link_from, ld / STATE):
            _save_torch(ld / STATE, state)
        counts["full"] = len(state)
        (ld / WEIGHTS).unlink(missing_ok=True)
        atomic_write_text(ld / LEVEL_JSON, json.dumps({"format": FORMAT, "base": None}))
        return counts
    full: State = {}
    kept: dict[str, torch.Tensor] = {}
    negzero: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        b = base_state.get(name)
        keep = mask[name].cpu() if name in mask else None
        if b is not None and b.shape == t.shape and b.dtype == t.dtype:
            expect = masked(b, keep) if keep is not None else b
            if same_bits(expect, t):
                counts["ref"] += 1
                continue
        if keep is not None and t.is_floating_point() and keep.shape == t.shape:
            values = t[keep]
            neg = (~keep) & torch.signbit(t)
            if same_bits(_from_kept(values, keep, neg if bool(neg.any()) else None, t.dtype), t):
                kept[name] = values.clone()
                if bool(neg.any()):
                    negzero[name] = pack_bits(neg)
                counts["kept"] += 1
                continue
        full[name] = t
        counts["full"] += 1
    _save_torch(ld / WEIGHTS, {"format": FORMAT, "full": full, "kept": kept, "negzero": negzero})
    (ld / STATE).unlink(missing_ok=True)  # a level recomputed over an older format's file
    atomic_write_text(ld / LEVEL_JSON, json.dumps({"format": FORMAT, "base": int(base)}))
    return counts


def _from_kept(values: torch.Tensor, keep: torch.Tensor, neg: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    out = torch.zeros(keep.shape, dtype=dtype)
    out[keep] = values
    if neg is not None:
        out[neg] = -0.0
    return out


def load_level_state(ld: Path, *, template: torch.nn.Module | None = None,
                     _seen: frozenset[int] = frozenset()) -> tuple[State, Mask]:
    """The weights and mask of the masked level in ``ld`` (format 1 or 2): THE level reader.

    Resume (the level loop), export and the tests read levels through this function.
    ``template``: a model the mask must fit (CorruptFileError otherwise). A missing file
    raises FileNotFoundError; a damaged one CorruptFileError naming it.
    """
    mask = Mask.load(ld / MASK, template)
    meta = _meta(ld)
    if meta is None or meta.get("base") is None:
        return _state_file(ld / STATE, "level checkpoint"), mask
    base = meta["base"]
    earlier = not ld.name.isdigit() or (isinstance(base, int) and base < int(ld.name))
    if not isinstance(base, int) or isinstance(base, bool) or base < 0 or base in _seen or not earlier:
        raise CorruptFileError(f"level file {ld / LEVEL_JSON} names base level {base!r}, which is not an earlier "
                               f"level; delete the level folder to recompute it")
    data = _read_torch(ld / WEIGHTS, "level weights")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("full", "kept", "negzero")):
        raise CorruptFileError(f"level weights {ld / WEIGHTS} is corrupt: not a format-2 weights file; delete it to "
                               f"recompute that level")
    base_state, _ = load_level_state(ld.parent / str(base), _seen=_seen | {base})
    state: State = {}
    for name, b in base_state.items():
        if name in data["full"]:
            state[name] = data["full"][name]
        elif name in data["kept"]:
            keep = mask[name]
            neg = data["negzero"].get(name)
            state[name] = _from_kept(data["kept"][name], keep, unpack_bits(neg, keep.shape) if neg is not None else None,
                                     b.dtype)
        else:
            state[name] = masked(b, mask[name]) if name in mask else b
    for name, t in data["full"].items():  # a tensor the base did not have
        state.setdefault(name, t)
    return state, mask


def load_level_into(ld: Path, net: torch.nn.Module) -> Mask:
    """Load the level in ``ld`` into ``net`` (strict) and return its mask; CorruptFileError if it does not fit."""
    state, mask = load_level_state(ld, template=net)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CorruptFileError(f"level checkpoint in {ld} does not fit the model ({str(exc).splitlines()[0]}); "
                               f"delete the level folder to recompute it") from None
    return mask
