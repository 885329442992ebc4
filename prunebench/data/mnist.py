"""MNIST and Fashion-MNIST, read straight from the original IDX files.

Files are looked up in torchvision's layout, ``<root>/<MNIST|FashionMNIST>/raw/``, either
gzip-compressed (as distributed) or extracted. Reading them directly (gzip + numpy) needs
neither torchvision's MD5 checks nor a writable folder, so a read-only copy such as
``../shared/data`` works as is. torchvision is used only to download missing files.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from prunebench.data.base import TensorDataModule
from prunebench.errors import CorruptFileError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
SPLITS = {"train": "train", "test": "t10k"}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array stored in one IDX file (``.gz`` or extracted), checked against ``magic``.

    IDX: a big-endian header (magic, then one uint32 per dimension) followed by uint8
    data. Anything else (bad gzip, wrong magic, truncated data) raises CorruptFileError
    naming the file.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise CorruptFileError(f"{path} is not a readable IDX file ({exc}); delete it and fetch it again") from exc
    ndim = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}[magic]
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise CorruptFileError(f"{path} is truncated: {len(raw)} bytes, shorter than its IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise CorruptFileError(f"{path} has magic number {found}, expected {magic}; not an IDX "
                               f"{'image' if magic == IMAGES_MAGIC else 'label'} file")
    dims = [int.from_bytes(raw[4 * (i + 1) : 4 * (i + 2)], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise CorruptFileError(f"{path} is truncated or padded: {len(raw)} bytes, expected {expected} for "
                               f"shape {tuple(dims)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


class IDXDataModule(TensorDataModule):
    """Shared loader of the MNIST-format data sets: inputs ``(1, 28, 28)``, 10 classes.

    Keyword defaults are the base class's (batch_size 128, val_size 5000).
    """

    #: torchvision class name = folder name under root (``MNIST``, ``FashionMNIST``).
    folder = ""
    input_range = (0.0, 1.0)
    channels_known = 1

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def raw_dir(self) -> Path:
        return self.root / self.folder / "raw"

    def file_path(self, split: str, kind: str) -> Path | None:
        """The extracted file if present, else the ``.gz``, else None."""
        stem = f"{SPLITS[split]}-{'images-idx3' if kind == 'images' else 'labels-idx1'}-ubyte"
        for name in (stem, stem + ".gz"):
            if (self.raw_dir / name).is_file():
                return self.raw_dir / name
        return None

    def missing(self) -> list[str]:
        return [f"{SPLITS[s]}-{'images-idx3' if k == 'images' else 'labels-idx1'}-ubyte[.gz]"
                for s in SPLITS for k in ("images", "labels") if self.file_path(s, k) is None]

    def fetch(self) -> None:
        """Download with torchvision (only when files are missing and ``download`` is set)."""
        import torchvision

        cls = getattr(torchvision.datasets, self.folder)
        for train in (True, False):
            cls(str(self.root), train=train, download=True)

    def prepare_data(self) -> None:
        """Download missing files when ``download=true``; otherwise fail clearly if absent."""
        if self.missing() and self.download:
            self.fetch()
        self.require_files(self.missing(), self.folder, self.raw_dir,
                           f"{self.folder}/raw/... (e.g. data.root=../shared/data)")

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self.prepare_data()
        out: list[Tensor] = []
        for split in SPLITS:
            img_path, lbl_path = self.file_path(split, "images"), self.file_path(split, "labels")
            assert img_path is not None and lbl_path is not None
            images = read_idx(img_path, IMAGES_MAGIC)
            labels = read_idx(lbl_path, LABELS_MAGIC)
            if len(images) != len(labels):
                raise CorruptFileError(f"{img_path} holds {len(images)} images but {lbl_path} "
                                       f"{len(labels)} labels")
            if labels.size and labels.max() >= self.num_classes:
                raise CorruptFileError(f"{lbl_path} holds label {labels.max()}, outside 0..{self.num_classes - 1}")
            # uint8 pixels → float in [0, 1]; standardised after the validation split.
            x = torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255.0)
            out += [x, torch.from_numpy(labels.astype(np.int64))]
        return out[0], out[1], out[2], out[3]


class MNIST(IDXDataModule):
    """MNIST digits: ``(1, 28, 28)``, 10 classes, 60000 train (minus ``val_size``) / 10000 test."""

    name = "mnist"
    folder = "MNIST"
    class_names = [str(i) for i in range(10)]


class FashionMNIST(IDXDataModule):
    """Fashion-MNIST (Zalando): ``(1, 28, 28)``, 10 classes, 60000 train (minus ``val_size``) / 10000 test."""

    name = "fashion_mnist"
    folder = "FashionMNIST"
    class_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
