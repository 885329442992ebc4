"""Pretrained starting points (``train.init_from``): load a user's weights, safely.

Files are read with ``weights_only=True`` (no pickled code runs). A state dict saved with
``torch.save(model.state_dict())`` loads as is; a Lightning ``.ckpt`` contributes its
``state_dict`` with a common module prefix (``net.``, ``model.``) stripped.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from prunebench.errors import ConfigError


def read_state(path: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"train.init_from={path!r}: no such file")
    if p.stat().st_size == 0:
        raise ConfigError(f"train.init_from={path!r} is empty (0 bytes)")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(p))
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except ImportError:
        raise ConfigError(f"train.init_from={path!r}: reading .safetensors needs the safetensors package") from None
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in reason or "Weights only" in reason:
            reason = "it is not a plain state dict of tensors (pickled objects are not loaded)"
        raise ConfigError(f"train.init_from={path!r} cannot be read: {reason}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"train.init_from={path!r} is not a state dict (a mapping of names to tensors)")
    return obj


def _strip_prefix(state: dict[str, torch.Tensor], own: set[str]) -> dict[str, torch.Tensor]:
    if set(state) <= own:
        return state
    for prefix in ("net.", "model.", "module."):
        if all(k.startswith(prefix) for k in state):
            stripped = {k[len(prefix):]: v for k, v in state.items()}
            if set(stripped) <= own:
                return stripped
    return state


def load_init_state(net: nn.Module, path: str) -> None:
    """Copy the file's weights into ``net``; ConfigError naming what does not match."""
    own = net.state_dict()
    state = _strip_prefix(read_state(path), set(own))
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ConfigError(f"train.init_from={path!r} does not fit the model: missing {missing[:3]}"
                          f"{' ...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
                          f"{' ...' if len(unexpected) > 3 else ''}")
    bad = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items() if state[k].shape != v.shape]
    if bad:
        k, got, want = bad[0]
        raise ConfigError(f"train.init_from={path!r} does not fit the model: {k} has shape {got}, the model {want}")
    net.load_state_dict(state)
