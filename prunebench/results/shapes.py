"""Tensor shapes of a torch checkpoint, read without importing torch.

``prunebench-report`` needs the dense layer widths of a channel run (``levels/0/state.pt``)
and must stay torch-free (importing torch and Lightning costs seconds). A torch file is a
zip whose ``data.pkl`` names each tensor's size; this unpickler resolves only the few
globals a state dict uses (tensors, parameters, storages, OrderedDict) and refuses any
other, so it runs no code from the file and never reads the tensor data.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from typing import Any

from prunebench.errors import CorruptFileError


class _Shape(tuple):
    """A tensor seen as its size only."""

    def dim(self) -> int:
        return len(self)


def _tensor(storage: Any, offset: int, size: tuple[int, ...], *_: Any, **__: Any) -> _Shape:
    return _Shape(size)


def _parameter(data: Any, *_: Any, **__: Any) -> Any:
    return data


class _Storage:
    pass


class _Reader(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _parameter
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and (name.endswith("Storage") or name in ("float32", "float16", "bfloat16", "int64")):
            return _Storage
        raise pickle.UnpicklingError(f"unsupported global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        return None  # a storage: its bytes are never needed here


def tensor_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the tensors in a torch state-dict file; CorruptFileError if unreadable."""
    try:
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            state = _Reader(z.open(name)).load()
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, StopIteration, pickle.UnpicklingError, EOFError, TypeError, ValueError,
            AttributeError, OSError) as exc:
        raise CorruptFileError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise CorruptFileError(f"checkpoint {path} is not a state dict")
    return {str(k): tuple(v) for k, v in state.items() if isinstance(v, _Shape)}
