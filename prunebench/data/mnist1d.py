"""MNIST-1D (Greydanus 2020): 40-sample 1-D signals of 10 digit templates, generated offline.

The data are generated with ``mnist1d.data.make_dataset`` (about 2 s for the default
5000 samples) and cached under ``<root>/mnist1d/`` keyed by a hash of the generation
arguments. mnist1d's ``get_dataset`` is never called: it tries a download.
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prunebench.data.base import COMMON_OPTIONS, TensorDataModule, atomic_write, check_int

#: Bump when the cache file layout changes, so old files are not misread.
CACHE_FORMAT = 1


def generation_args(num_samples: int) -> dict[str, Any]:
    """The mnist1d generation arguments we override; everything else is mnist1d's default."""
    return {"num_samples": num_samples, "train_split": 0.8, "seed": 42}


def cache_path(root: Path, args: dict[str, Any]) -> Path:
    """``<root>/mnist1d/mnist1d-<hash>.npz``; the hash covers the args and the mnist1d version."""
    try:
        version = metadata.version("mnist1d")
    except metadata.PackageNotFoundError:  # pragma: no cover - mnist1d is a dependency
        version = "unknown"
    key = json.dumps({"args": args, "mnist1d": version, "format": CACHE_FORMAT}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return root / "mnist1d" / f"mnist1d-{digest}.npz"


def generate(args: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run mnist1d's generator without disturbing anyone's random state.

    ``make_dataset`` reseeds numpy's and Python's *global* RNGs; both are saved and
    restored so that generating the data set cannot change what a caller draws next.
    """
    from mnist1d.data import get_dataset_args, make_dataset  # lazy: pulls in matplotlib

    full = get_dataset_args()
    for k, v in args.items():
        setattr(full, k, v)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(full)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x": np.asarray(d["x"], dtype=np.float32), "y": np.asarray(d["y"], dtype=np.int64),
        "x_test": np.asarray(d["x_test"], dtype=np.float32), "y_test": np.asarray(d["y_test"], dtype=np.int64),
    }


def _read_cache(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    if arrays["x"].ndim != 2 or len(arrays["x"]) != len(arrays["y"]) or len(arrays["x_test"]) != len(arrays["y_test"]):
        raise ValueError("inconsistent array shapes")
    return arrays


def load_or_generate(root: Path, num_samples: int) -> dict[str, np.ndarray]:
    """The cached arrays, or freshly generated ones (then cached atomically).

    A corrupt cache file is regenerated and replaced; an unwritable root only costs the
    caching (with a warning).
    """
    args = generation_args(num_samples)
    path = cache_path(root, args)
    if path.exists():
        try:
            return _read_cache(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            warnings.warn(f"MNIST-1D cache {path} is corrupt ({exc}); regenerating it", stacklevel=2)
    arrays = generate(args)
    try:
        # np.savez appends ".npz" to names without it; write through a file object instead.
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        atomic_write(path, write)
    except OSError as exc:
        warnings.warn(f"could not cache MNIST-1D under {path.parent} ({exc}); using it uncached", stacklevel=2)
    return arrays


class MNIST1D(TensorDataModule):
    """MNIST-1D: inputs ``(40,)``, 10 classes; 4000 train (minus ``val_size``) / 1000 test.

    ``num_samples`` (default 5000, split 80/20 into train/test as in the paper) makes
    smaller or larger versions; each is cached separately.
    """

    name = "mnist1d"

    option_defaults = {"batch_size": 100, "val_size": 500}
    options_taken = tuple(k for k in COMMON_OPTIONS if k != "augment")

    def __init__(self, *, num_samples: int = 5000, **common: Any) -> None:
        super().__init__(**common)
        # mnist1d draws num_samples // 10 per class; fewer than 10 per class leaves no test set.
        self.num_samples = check_int("num_samples", num_samples, low=100)

    @property
    def num_classes(self) -> int:
        return 10

    def prepare_data(self) -> None:
        """Generate and cache the arrays (nothing to download)."""
        load_or_generate(self.root, self.num_samples)

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        a = load_or_generate(self.root, self.num_samples)
        return (torch.from_numpy(a["x"]), torch.from_numpy(a["y"]),
                torch.from_numpy(a["x_test"]), torch.from_numpy(a["y_test"]))
