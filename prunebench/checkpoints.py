"""Pretrained weights a run starts from (``train.init_from=<file>``).

Reads a state dict saved with ``torch.save`` (``.pt`` / ``.pth`` / ``.bin``), a
``.safetensors`` file, or a Lightning ``.ckpt`` (its ``state_dict``, with the
LightningModule's attribute prefix such as ``net.`` or ``model.`` stripped), always with
``weights_only=True``. Anything wrong (missing file, unreadable file, keys or shapes that
do not fit the model) is a ConfigError naming ``train.init_from``, raised before training.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunebench.errors import ConfigError, CorruptFileError
from prunebench.imports import file_sha256

KEY = "train.init_from"
SHOW = 5  # keys listed in a mismatch message


def _tensors_only(obj: Any, path: Path, key: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__ if not isinstance(obj, Mapping) else "mapping with non-tensor values"
        raise CorruptFileError(f"{key}={str(path)!r} holds a {kind}, not a state dict of tensors (save "
                               f"model.state_dict(), not the model object)")
    return {str(k): v for k, v in obj.items()}


def load_state_file(path: str | os.PathLike[str], key: str = KEY) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (``.safetensors``, ``.ckpt`` or a torch.save file), weights only."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}={str(path)!r}: file not found")
    try:
        if path.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError as exc:  # pragma: no cover - a dependency; kept optional in spirit
                raise ConfigError(f"{key}={str(path)!r}: reading .safetensors needs `pip install safetensors`") from exc
            return _tensors_only(load_file(str(path), device="cpu"), path, key)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except ConfigError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"{key}={str(path)!r} cannot be read as a weights-only checkpoint "
                               f"({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # a Lightning .ckpt (or {"state_dict": ...} saved by hand)
    return _tensors_only(obj, path, key)


def strip_prefix(state: Mapping[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """``state`` with a common wrapper prefix removed when that makes its keys the model's.

    A LightningModule saves its network's tensors as ``<attribute>.<name>`` (``net.``,
    ``model.``, ...); a model wrapped in DataParallel as ``module.``. The prefix is
    stripped only when the stripped keys match the model's better than the keys as they are.
    """
    own = set(net.state_dict())
    best, best_hits = dict(state), len(own & set(state))
    prefixes = {k.split(".", 1)[0] + "." for k in state if "." in k}
    for prefix in prefixes:
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        hits = len(own & set(stripped))
        if hits > best_hits:
            best, best_hits = stripped, hits
    return best


def _few(keys: Collection[str]) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - SHOW} more)" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


def check_state_fits(net: nn.Module, state: Mapping[str, torch.Tensor], what: str,
                     allow_missing: Collection[str] = ()) -> None:
    """ConfigError naming ``what`` unless ``state`` has exactly ``net``'s keys and shapes."""
    own = net.state_dict()
    missing = set(own) - set(state) - set(allow_missing)
    unexpected = set(state) - set(own)
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_few(unexpected)}")
    if shapes:
        more = f" (+{len(shapes) - SHOW} more)" if len(shapes) > SHOW else ""
        problems.append(f"{len(shapes)} shape mismatch(es): {'; '.join(shapes[:SHOW])}{more}")
    if problems:
        raise ConfigError(f"{what} does not fit the model: {'; '.join(problems)}")


def load_init(net: nn.Module, path: str | os.PathLike[str], key: str = KEY) -> nn.Module:
    """Load the weights in ``path`` into ``net`` (in place, strict) and return it.

    ConfigError naming ``key`` for a missing or unreadable file, or one whose keys or
    shapes do not fit ``net`` (listing a few of each).
    """
    state = strip_prefix(load_state_file(path, key), net)
    check_state_fits(net, state, f"{key}={str(path)!r}")
    for name, tensor in state.items():  # a start with NaN/inf weights is not a trained model
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ConfigError(f"{key}={str(path)!r}: tensor {name!r} holds {bad} NaN/inf value(s) of "
                              f"{tensor.numel()}; these weights are not a trained model")
    with torch.no_grad():
        net.load_state_dict(state, strict=True)
    return net


def init_identity(path: str | os.PathLike[str], key: str = KEY) -> dict[str, str]:
    """Run-identity entry of ``train.init_from``: the file's content hash, not its path
    (same bytes elsewhere = same run; an edited file = a new run)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}={str(path)!r}: file not found")
    return {"sha256": file_sha256(path)}
