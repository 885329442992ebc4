"""``data=torchvision data.dataset=<class>``: any torchvision image classification data set.

The class (``CIFAR100``, ``SVHN``, ``FakeData`` ...) is built from ``data.root`` with
``download=data.download`` (false by default: offline) and ``data.kwargs`` as further
arguments; its ``train``/``test`` (or ``split="train"/"test"``) halves become the
training and test sets, or, for a class with neither, the test set is carved off
(``test_size``, seeded). Samples are decoded once into in-memory tensors.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import os
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from prunebench.data.base import TensorDataModule, atomic_write, check_normalize_channels, mix_seed
from prunebench.data.imagefolder import check_image_size, check_test_size, images_to_tensor
from prunebench.errors import ConfigError, DataNotFoundError


def dataset_class(name: Any) -> type:
    """``torchvision.datasets.<name>``; ConfigError naming data.dataset and listing the valid ones."""
    import torchvision

    valid = sorted(n for n, v in vars(torchvision.datasets).items()
                   if isinstance(v, type) and issubclass(v, torchvision.datasets.VisionDataset)
                   and v is not torchvision.datasets.VisionDataset)
    if name not in valid:
        raise ConfigError(f"data.dataset={name!r} is not a torchvision data set class; valid: {', '.join(valid)}")
    return getattr(torchvision.datasets, name)


class TorchvisionData(TensorDataModule):
    """A torchvision data set class by name, held in memory (see the module docstring)."""

    name = "torchvision"
    input_range = (0.0, 1.0)

    option_defaults = {"val_size": 0.1}

    def __init__(self, *, dataset: str | None = None, image_size: int | Sequence[int] | None = None,
                 channels: int | None = None, test_size: float = 0.2, kwargs: Mapping[str, Any] | None = None,
                 **common: Any) -> None:
        super().__init__(**common)
        self.cls = dataset_class(dataset)
        self.dataset = str(dataset)
        self.image_size = check_image_size(image_size)
        if channels not in (None, 1, 3):
            raise ConfigError(f"data.channels={channels!r} must be null (as stored), 1 or 3")
        self.channels = channels
        if channels is not None:
            check_normalize_channels(self.normalize, channels, f"data.dataset={dataset!r} with data.channels={channels}")
        self.test_size = check_test_size(test_size)
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise ConfigError(f"data.kwargs={kwargs!r} must be a mapping of {dataset} arguments")
        self.kwargs = dict(kwargs or {})
        self._num_classes: int | None = None

    @property
    def num_classes(self) -> int:
        if self._num_classes is None:
            raise RuntimeError("data='torchvision': call setup() before num_classes")
        return self._num_classes

    def _idx_root(self) -> Path:
        """Where torchvision should look. MNIST, FashionMNIST and KMNIST read *extracted* IDX
        files; a folder holding only the original ``.gz`` files (as distributed, possibly
        read-only) is extracted once into a cache, keyed by the folder and its files' sizes,
        and that cache becomes the root. Other classes: ``data.root`` as given."""
        import torchvision

        cls = self.cls
        if not (isinstance(cls, type) and issubclass(cls, torchvision.datasets.MNIST)
                and cls._check_exists is torchvision.datasets.MNIST._check_exists
                and isinstance(getattr(cls, "resources", None), list)):
            return self.root
        raw = self.root / cls.__name__ / "raw"
        names = [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]
        if all((raw / n).is_file() for n in names) or not all((raw / f"{n}.gz").is_file() for n in names):
            return self.root  # already extracted, or absent (torchvision downloads or reports it)
        key = hashlib.sha256(str(raw.resolve()).encode() + b"".join(
            str((raw / f"{n}.gz").stat().st_size).encode() for n in names)).hexdigest()[:16]
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prunebench" / "idx" / key
        out = cache / cls.__name__ / "raw"
        for n in names:
            if not (out / n).is_file():
                src = raw / f"{n}.gz"
                atomic_write(out / n, lambda tmp, src=src: tmp.write_bytes(gzip.decompress(src.read_bytes())))
        return cache

    def _make(self, split: str | None) -> Any:
        params = inspect.signature(self.cls).parameters
        args: dict[str, Any] = dict(self.kwargs)
        if "root" in params:
            args.setdefault("root", str(self._idx_root()))
        if "download" in params:
            args.setdefault("download", self.download)
        if split is not None:
            args["train" if "train" in params else "split"] = split == "train" if "train" in params else split
        try:
            return self.cls(**args)
        except TypeError as exc:
            raise ConfigError(f"data.dataset={self.dataset!r} rejected its arguments {sorted(args)}: {exc}; "
                              f"set data.kwargs") from exc
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
            raise DataNotFoundError(f"data.dataset={self.dataset!r} not found under data.root={str(self.root)!r} "
                                    f"({exc}); point data.root at it or pass data.download=true") from exc

    def _tensors(self, ds: Any) -> tuple[Tensor, Tensor]:
        images, labels = [], []
        for i in range(len(ds)):
            img, label = ds[i]
            images.append(img)
            labels.append(int(label))
        channels = self.channels or (3 if images and images[0].mode in ("RGB", "RGBA", "P", "CMYK") else 1)
        x = images_to_tensor(images, self.image_size, channels, f"data.dataset={self.dataset!r}")
        return x, torch.tensor(labels, dtype=torch.int64)

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        params = inspect.signature(self.cls).parameters
        if "train" in params or "split" in params:
            train, test = self._make("train"), self._make("test")
            x, y = self._tensors(train)
            x_test, y_test = self._tensors(test)
        else:
            train = self._make(None)
            x, y = self._tensors(train)
            perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(mix_seed(self.split_seed, "test")))
            n_test = max(1, round(self.test_size * len(y)))
            test_idx, rest = perm[:n_test].sort().values, perm[n_test:].sort().values
            x_test, y_test, x, y = x[test_idx], y[test_idx], x[rest], y[rest]
        classes = getattr(train, "classes", None)
        self.class_names = [str(c) for c in classes] if classes else None
        n = len(classes) if classes else int(torch.cat([y, y_test]).max()) + 1
        n = max(n, int(getattr(train, "num_classes", 0) or 0))
        if len(y) and (int(y.min()) < 0 or int(torch.cat([y, y_test]).max()) >= n):
            raise ConfigError(f"data.dataset={self.dataset!r}: labels outside 0..{n - 1}")
        self._num_classes = n
        return x, y, x_test, y_test
