"""Reading pickle files that hold plain data only, without running code from them.

``pickle.load`` calls whatever a file names (``os.system`` included), so a crafted data
file runs code as it is read. The CIFAR-10 python batches are pickles of a dict of
lists, bytes, strings, ints and one uint8 numpy array; :func:`load_plain` reads exactly
that: the opcodes for dicts, lists, strings and numbers need no global, and the only
globals resolved are the three numpy uses to rebuild an array
(``numpy.core.multiarray._reconstruct`` — ``numpy._core`` since numpy 2 —,
``numpy.ndarray``, ``numpy.dtype``), plus ``_codecs.encode`` of a string as latin-1, which
is how protocol 2 spells bytes. Any other global, and arrays of Python objects, raise
:class:`UnsafePickleError` before anything is called.
"""

from __future__ import annotations

import io
import pickle
from typing import IO, Any

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global that a plain-data pickle does not need."""


def _dtype(*args: Any) -> np.dtype[Any]:
    dtype = np.dtype(*args)
    if dtype.hasobject:  # an object array would unpickle arbitrary elements
        raise UnsafePickleError(f"refusing a numpy array of Python objects (dtype {dtype})")
    return dtype


def _array(subtype: Any, shape: Any, dtype: Any) -> Any:
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"refusing to rebuild an array of type {subtype!r}")
    return _reconstruct(subtype, shape, dtype)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocol 2 written by Python 3 spells bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _array,
    ("numpy._core.multiarray", "_reconstruct"): _array,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _encode,
}


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing global {module}.{name}: a data file holds plain data "
                                    f"(dict, list, bytes, str, int, numpy arrays) only") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a persistent id: a data file holds plain data only")


def load_plain(fh: IO[bytes], *, encoding: str = "ASCII") -> Any:
    """Unpickle ``fh`` allowing plain data and numpy arrays only (see the module docstring)."""
    return _PlainUnpickler(fh, encoding=encoding).load()


def loads_plain(data: bytes, *, encoding: str = "ASCII") -> Any:
    """:func:`load_plain` on bytes."""
    return load_plain(io.BytesIO(data), encoding=encoding)
