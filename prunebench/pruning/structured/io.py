"""Saving and loading channel-pruned models without pickling modules.

A pruned model's file holds plain data only, so ``torch.load(weights_only=True)`` reads it:

    {"format": "prunebench.pruned/1",
     "arch": {module name: {"type": class name, "out_channels": 24, "groups": 24, ...}},
     "state_dict": {...},
     "extra": {...}}          # caller's metadata (plain types), e.g. the baseline

Loading builds the DENSE model from a factory (e.g. the model registry), shrinks every
recorded layer to the saved widths (constructor attributes, and the parameter/buffer
tensors resized to the saved shapes), then loads the state dict strictly.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunebench.errors import ConfigError, CorruptFileError

FORMAT = "prunebench.pruned/1"

# Constructor attributes that Torch-Pruning changes when it removes channels.
SHAPE_ATTRS = (
    "in_channels",
    "out_channels",
    "groups",
    "in_features",
    "out_features",
    "num_features",
    "num_channels",
    "num_groups",
    "num_parameters",
    "normalized_shape",
    "embedding_dim",
    # attention head counts (prunebench.pruning.structured.attention removes whole heads)
    "n_head",
    "num_heads",
    "num_key_value_heads",
    "num_key_value_groups",
)


def architecture(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per-module widths (ints / tuples of ints) for every module that has any."""
    arch = {}
    for name, module in model.named_modules():
        info: dict[str, Any] = {}
        for attr in SHAPE_ATTRS:
            value = getattr(module, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                info[attr] = value
            elif isinstance(value, tuple) and all(isinstance(v, int) for v in value):
                info[attr] = list(value)
        if info:
            info["type"] = type(module).__name__
            arch[name] = info
    return arch


def save_pruned(model: nn.Module, path: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s architecture and weights to ``path`` (atomically: temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict()
    payload = {
        "format": FORMAT,
        "arch": architecture(model),
        "state_dict": {k: v.detach().cpu() for k, v in sd.items()},
        # Per-module state-dict versions: some modules' loaders need them (torchvision's MNASNet).
        "metadata": {k: dict(v) for k, v in getattr(sd, "_metadata", {}).items()},
        "extra": dict(extra or {}),
    }
    import io

    from prunebench.results.store import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())  # atomic, and respects the umask like every results file
    return path


def read_pruned(path: str | os.PathLike) -> dict[str, Any]:
    """The raw payload of a pruned-model file (weights_only); CorruptFileError if unreadable."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"pruned model file {str(path)!r} does not exist") from None
    except Exception as e:  # truncated, not a torch file, or pickled objects
        from prunebench.results.store import load_failure

        raise CorruptFileError(f"pruned model file {str(path)!r} cannot be read: {load_failure(path, e)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or not {"arch", "state_dict"} <= set(payload):
        raise CorruptFileError(f"pruned model file {str(path)!r} is not a {FORMAT} file")
    return payload


def _resize(module: nn.Module, attr: str, shape: torch.Size, dtype: torch.dtype) -> None:
    old = getattr(module, attr)
    if old is not None and old.shape == shape:
        return
    new = torch.empty(shape, dtype=dtype, device=old.device if old is not None else "cpu")
    if attr in module._parameters:
        requires_grad = old.requires_grad if old is not None else True
        module._parameters[attr] = nn.Parameter(new, requires_grad=requires_grad)
    else:
        module._buffers[attr] = new


def shrink_to(model: nn.Module, arch: dict[str, dict[str, Any]], state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Make the dense ``model`` match ``arch`` and ``state_dict`` shapes, then load the weights (in place).

    Raises ValueError/KeyError/RuntimeError on any mismatch; :func:`load_pruned` turns
    those into CorruptFileError naming the file.
    """
    modules = dict(model.named_modules())
    for name, info in arch.items():
        if name not in modules:
            raise KeyError(f"module {name!r} of the saved architecture is not in the model")
        module = modules[name]
        if type(module).__name__ != info.get("type"):
            raise ValueError(f"module {name!r} is a {type(module).__name__}, saved as {info.get('type')}")
        for attr, value in info.items():
            if attr != "type":
                setattr(module, attr, tuple(value) if isinstance(value, list) else int(value))
    for key, tensor in state_dict.items():
        owner, _, attr = key.rpartition(".")
        if owner not in modules:
            raise KeyError(f"state dict entry {key!r} has no module in the model")
        module = modules[owner]
        if attr in module._parameters or attr in module._buffers:
            _resize(module, attr, tensor.shape, tensor.dtype)
    model.load_state_dict(state_dict, strict=True)
    return model


def load_pruned(
    path: str | os.PathLike, base_model_factory: Callable[[], nn.Module]
) -> nn.Module:
    """Rebuild a model saved by :func:`save_pruned`: dense model from the factory, shrunk, weights loaded.

    A file that cannot be read, or whose architecture/weights do not fit the factory's
    model, raises CorruptFileError naming ``path``.
    """
    payload = read_pruned(path)
    model = base_model_factory()
    state = OrderedDict(payload["state_dict"])
    state._metadata = OrderedDict(payload.get("metadata", {}))  # type: ignore[attr-defined]
    try:
        shrink_to(model, payload["arch"], state)
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
        raise CorruptFileError(f"pruned model file {str(path)!r} does not fit the model: {e}") from None
    return model


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: str | os.PathLike, *,
                dynamic_batch: bool = True) -> Path:
    """Export to ONNX with torch's exporter (needs the ``onnx``/``onnxscript`` packages).

    Input ``input``, output ``logits``; with ``dynamic_batch`` the batch dimension is
    symbolic (trace with a batch of at least 2). A pruned model is an ordinary
    ``nn.Module``, so nothing here is specific to pruning; this wrapper only fixes the
    names and turns a missing exporter into a clear error.
    """
    was_training = model.training
    model.eval()
    kw: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"]}
    if dynamic_batch:
        kw["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    try:
        # One self-contained file (weights inside, not in a side .data file): what a deployment copies.
        torch.onnx.export(model, (example_input,), str(path), verbose=False, external_data=False, **kw)
    except (ModuleNotFoundError, ImportError) as e:
        raise ConfigError(f"ONNX export needs the onnx and onnxscript packages: {e}") from None
    except Exception as e:
        if "not installed" in str(e):  # torch raises OnnxExporterError for a missing onnx
            raise ConfigError(f"ONNX export needs the onnx and onnxscript packages: {e}") from None
        raise
    finally:
        model.train(was_training)
    return Path(path)
