"""CIFAR-10: ``(3, 32, 32)`` colour images, 10 classes, with optional batch augmentation.

The python-version batches (``<root>/cifar-10-batches-py/``) are read directly, with a
restricted unpickler (:mod:`prunebench.safe_unpickle`: plain data and numpy arrays only,
so a crafted file runs no code) after checking each file against the MD5 sum torchvision
publishes (``checksum=false`` skips that check, for stand-in files).
torchvision's ``CIFAR10(root, download=True)`` fetches them when missing and
``download=true``.
"""

from __future__ import annotations

import hashlib
from typing import Any
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from prunebench.data.base import TensorDataModule, check_bool, random_crop_flip  # noqa: F401  (re-exported)
from prunebench.errors import CorruptFileError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
#: The published MD5 sums (torchvision.datasets.CIFAR10.train_list / test_list).
MD5 = {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
       "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
       "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e"}


def check_md5(path: Path) -> None:
    """CorruptFileError unless ``path`` has the published MD5 sum of its CIFAR-10 file."""
    with open(path, "rb") as fh:
        got = hashlib.file_digest(fh, "md5").hexdigest()
    if got != MD5[path.name]:
        raise CorruptFileError(f"{path} is not the published CIFAR-10 file: its MD5 is {got}, expected "
                               f"{MD5[path.name]}; delete it and download again (data.download=true), or pass "
                               f"data.checksum=false for files of your own")


def _read_batch(path: Path, checksum: bool = False) -> tuple[np.ndarray, np.ndarray]:
    from prunebench.safe_unpickle import UnsafePickleError, load_plain

    if checksum:
        check_md5(path)
    try:
        with open(path, "rb") as fh:
            d = load_plain(fh, encoding="latin1")  # never pickle.load: a crafted file would run code
        data = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d["labels"] if "labels" in d else d["fine_labels"], dtype=np.int64)
    except UnsafePickleError as exc:
        raise CorruptFileError(f"{path} is not a CIFAR-10 batch file: {exc}; delete it") from None
    except Exception as exc:  # unpickling garbage can raise nearly anything
        raise CorruptFileError(f"{path} is not a CIFAR-10 batch file ({type(exc).__name__}: {exc}); "
                               "delete it and download again") from exc
    if len(data) != len(labels) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise CorruptFileError(f"{path} holds {len(data)} images, {len(labels)} labels in "
                               f"{labels.min() if labels.size else '-'}..{labels.max() if labels.size else '-'}")
    return data, labels


class CIFAR10(TensorDataModule):
    """CIFAR-10: ``(3, 32, 32)``, 10 classes, 50000 train (minus ``val_size``) / 10000 test.

    ``augment=true`` applies a random crop (pad 4) and horizontal flip to training batches
    only; validation, test and calibration batches are never augmented.
    """

    name = "cifar10"
    input_range = (0.0, 1.0)
    channels_known = 3
    class_names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def __init__(self, *, checksum: bool = True, **common: Any) -> None:
        super().__init__(**common)
        self.checksum = check_bool("checksum", checksum)

    @property
    def num_classes(self) -> int:
        return 10

    def missing(self) -> list[str]:
        return [n for n in TRAIN_FILES + TEST_FILES if not (self.root / FOLDER / n).is_file()]

    def prepare_data(self) -> None:
        """Download missing files when ``download=true``; otherwise fail clearly if absent."""
        if self.missing() and self.download:
            import torchvision

            for train in (True, False):
                torchvision.datasets.CIFAR10(str(self.root), train=train, download=True)
        self.require_files(self.missing(), "CIFAR-10", self.root / FOLDER, f"{FOLDER}/...")

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self.prepare_data()
        out: list[Tensor] = []
        for files in (TRAIN_FILES, TEST_FILES):
            parts = [_read_batch(self.root / FOLDER / n, self.checksum) for n in files]
            x = torch.from_numpy(np.concatenate([p[0] for p in parts])).float().div_(255.0)
            out += [x, torch.from_numpy(np.concatenate([p[1] for p in parts]))]
        return out[0], out[1], out[2], out[3]
