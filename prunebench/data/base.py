"""In-memory data modules: every split lives in a tensor, batches are cut by indexing.

Small benchmark data sets (MNIST-1D, MNIST, CIFAR-10) fit in memory many times over, so
``TensorDataModule`` loads each split once into a tensor (optionally on the GPU) and
``TensorLoader`` yields whole batches by indexing those tensors with a permutation: no
per-sample ``__getitem__``, no collate, no worker processes. A plain ``DataLoader`` over a
``TensorDataset`` was about 1.6x slower per epoch on MNIST-1D.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from torch import Tensor

from prunebench.options import parse_bool, parse_int
from prunebench.seeding import mix_seed
from prunebench.errors import ConfigError

Batch = tuple[Tensor, Tensor]
#: ``transform(x_batch, generator) -> x_batch``, applied to training batches only.
BatchTransform = Callable[[Tensor, torch.Generator], Tensor]


class TensorLoader:
    """Iterable of ``(x, y)`` batches cut from in-memory tensors.

    With ``shuffle=True`` each pass (epoch) draws a fresh permutation from its own
    ``torch.Generator`` seeded by ``(seed, epoch)``, so the order is reproducible, differs
    between epochs and does not touch torch's global RNG. The epoch counter advances on
    every ``iter()``; ``set_epoch`` sets it explicitly. The permutation is drawn on the CPU
    (so CPU and GPU runs see the same order) and moved to the tensors' device once per
    epoch; batches are then gathered on that device.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        epoch: int = 0,
        transform: BatchTransform | None = None,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = epoch
        self.transform = transform

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` yield the order of ``epoch``."""
        self.epoch = epoch

    def order(self, epoch: int) -> Tensor | None:
        """The sample order of ``epoch`` (None = sequential), as a CPU index tensor."""
        if not self.shuffle:
            return None
        g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        return torch.randperm(len(self.y), generator=g)

    def __iter__(self) -> Iterator[Batch]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        perm = self.order(epoch)
        if perm is not None:
            perm = perm.to(self.x.device)
        gen = None
        if self.transform is not None:  # on the data's device, so augmenting needs no host→device copies
            gen = torch.Generator(device=self.x.device).manual_seed(mix_seed(self.seed, epoch, "transform"))
        bs = self.batch_size
        for i in range(len(self)):
            if perm is None:  # slices are views: no copy at all
                xb, yb = self.x[i * bs : (i + 1) * bs], self.y[i * bs : (i + 1) * bs]
            else:
                idx = perm[i * bs : (i + 1) * bs]
                xb, yb = self.x[idx], self.y[idx]
            if self.transform is not None:
                assert gen is not None
                xb = self.transform(xb, gen)
            yield xb, yb

    def __repr__(self) -> str:
        return (f"TensorLoader(n={len(self.y)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, device={self.x.device})")


# ---- validation of the common keyword arguments -----------------------------------------


def check_int(key: str, value: Any, low: int | None = None) -> int:
    """``value`` as an int, or ConfigError naming ``data.<key>`` and the value (the one integer parser)."""
    value = parse_int(value, f"data.{key}")
    if low is not None and value < low:
        raise ConfigError(f"data.{key}={value!r} is out of range; expected an integer >= {low}")
    return value


def check_bool(key: str, value: Any) -> bool:
    return parse_bool(value, f"data.{key}")


def check_val_size(value: Any) -> int | float:
    """An int count (>= 0) or a float fraction in (0, 1) of the training set."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"data.val_size={value!r} must be a count (int >= 0) or a fraction in (0, 1)")
    if isinstance(value, float):
        if not 0.0 < value < 1.0:
            raise ConfigError(
                f"data.val_size={value!r} is out of range; a float is a fraction of the training set "
                "in (0, 1), an int a count"
            )
        return value
    return check_int("val_size", value, low=0)


def check_root(value: Any) -> Path:
    if value is None:
        return Path("data")
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"data.root={value!r} must be a folder path")
    return Path(value)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a temp file in the same folder and ``os.replace``.

    Readers see the old file or the complete new one, never a half-written file, even
    when several runs write the same cache entry at once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a shared cache should be readable by all
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- the base data module ----------------------------------------------------------------


class TensorDataModule(pl.LightningDataModule):
    """A LightningDataModule holding train / val / test splits as in-memory tensors.

    Subclasses implement :meth:`load` (the full training set and the test set as tensors)
    and may override :meth:`prepare_data` (downloads). This class carves the validation
    split off the training set (seeded by ``split_seed``, so every training ``seed`` sees
    the same validation set), standardises inputs with training-split statistics and
    serves batches through :class:`TensorLoader`.

    Common keyword arguments (each validated; bad values raise ConfigError naming
    ``data.<key>``):

    - ``root``: data folder; ``batch_size``: training batch size; ``eval_batch_size``:
      batch size of val / test loaders; ``val_size``: int count or float fraction of the
      training set used for validation; ``split_seed``: seeds that split; ``download``:
      fetch missing files (where the data set can); ``drop_last``: drop the last partial
      training batch. ``seed`` seeds training shuffles and calibration batches.
    """

    #: Registry name, set by each subclass.
    name: ClassVar[str] = ""
    #: classification, or language_modeling (targets are the next tokens; see engine/module.py)
    task: ClassVar[str] = "classification"

    def __init__(
        self,
        *,
        seed: int = 0,
        root: str | os.PathLike[str] | None = "data",
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int | float = 5000,
        split_seed: int = 0,
        download: bool = False,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        self.seed = check_int("seed", seed, low=0)
        self.root = check_root(root)
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size, low=1)
        self.val_size = check_val_size(val_size)
        self.split_seed = check_int("split_seed", split_seed, low=0)
        self.download = check_bool("download", download)
        self.drop_last = check_bool("drop_last", drop_last)
        self.device = torch.device("cpu")
        self._ready = False
        self.x_train: Tensor
        self.y_train: Tensor
        self.x_val: Tensor
        self.y_val: Tensor
        self.x_test: Tensor
        self.y_test: Tensor
        #: Indices (into the full training set) of the training and validation samples.
        self.train_indices: Tensor
        self.val_indices: Tensor
        #: The standardisation applied to every split: ``(x - mean) / std``.
        self.mean: Tensor
        self.std: Tensor

    # -- to implement ----------------------------------------------------------------------
    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(x_train, y_train, x_test, y_test)``: the full training set (validation not yet
        carved off) and the test set; x float32 (unnormalised), y int64."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Number of classes (labels are ``0 .. num_classes - 1``)."""
        raise NotImplementedError

    def train_transform(self) -> BatchTransform | None:
        """Augmentation applied to training batches (never val / test / calibration)."""
        return None

    # -- LightningDataModule ---------------------------------------------------------------
    def prepare_data(self) -> None:
        """Download or generate files (once per machine). Idempotent; default: nothing."""

    def setup(self, stage: str | None = None) -> None:
        """Load every split into memory (idempotent: later calls do nothing)."""
        if self._ready:
            return
        x, y, x_test, y_test = self.load()
        n = len(y)
        n_val = round(self.val_size * n) if isinstance(self.val_size, float) else self.val_size
        if n_val >= n:
            raise ConfigError(
                f"data.val_size={self.val_size!r} leaves no training data: data={self.name!r} has {n} "
                "training samples"
            )
        # The split depends on split_seed only, never on the training seed.
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(self.split_seed, "val")))
        self.val_indices = perm[:n_val].sort().values
        self.train_indices = perm[n_val:].sort().values
        x_train, y_train = x[self.train_indices], y[self.train_indices]
        self.mean, self.std = self.statistics(x_train)
        norm = lambda t: ((t - self.mean) / self.std).contiguous()  # noqa: E731
        dev = self.device
        self.x_train, self.y_train = norm(x_train).to(dev), y_train.to(dev)
        self.x_val, self.y_val = norm(x[self.val_indices]).to(dev), y[self.val_indices].to(dev)
        self.x_test, self.y_test = norm(x_test).to(dev), y_test.to(dev)
        self._ready = True

    @staticmethod
    def statistics(x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std of the training inputs: per channel for images ``(N, C, H, W)``,
        one scalar pair otherwise (keeps the shape of 1-D signals)."""
        dims = (0, 2, 3) if x.dim() == 4 else tuple(range(x.dim()))
        mean = x.mean(dim=dims, keepdim=True)[0]
        std = x.std(dim=dims, keepdim=True)[0].clamp_min(1e-8)
        return mean, std

    # -- the public API --------------------------------------------------------------------
    def to(self, device: torch.device | str) -> TensorDataModule:
        """Move every split to ``device`` once; loaders then yield tensors there."""
        self.device = torch.device(device)
        if self._ready:
            for attr in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
                setattr(self, attr, getattr(self, attr).to(self.device))
        return self

    def _require_setup(self) -> None:
        if not self._ready:
            raise RuntimeError(f"data={self.name!r}: call setup() before using the data")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape, e.g. ``(40,)`` or ``(3, 32, 32)`` (after setup)."""
        self._require_setup()
        return tuple(self.x_train.shape[1:])

    @property
    def sizes(self) -> dict[str, int]:
        """Number of samples per split (after setup)."""
        self._require_setup()
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def train_dataloader(self) -> TensorLoader:
        """Shuffled training batches (``batch_size``), reshuffled every epoch from ``seed``."""
        self._require_setup()
        return TensorLoader(self.x_train, self.y_train, self.batch_size, shuffle=True,
                            drop_last=self.drop_last, seed=self.seed, transform=self.train_transform())

    def val_dataloader(self) -> TensorLoader:
        """Validation batches in a fixed order (``eval_batch_size``)."""
        self._require_setup()
        return TensorLoader(self.x_val, self.y_val, self.eval_batch_size)

    def test_dataloader(self) -> TensorLoader:
        """Test batches in a fixed order (``eval_batch_size``)."""
        self._require_setup()
        return TensorLoader(self.x_test, self.y_test, self.eval_batch_size)

    def calibration_batches(self, n: int, batch_size: int | None = None) -> list[Batch]:
        """The first ``n`` batches of a fixed shuffle of the training split.

        For data-dependent pruning criteria (SNIP, Taylor, ...). Deterministic for a given
        ``seed``, drawn from the training split only (never val / test) and without
        augmentation. Returns fewer than ``n`` batches when the split runs out.
        """
        self._require_setup()
        if n < 0 or (batch_size is not None and batch_size < 1):
            raise ValueError(f"calibration_batches needs n >= 0 and batch_size >= 1, got n={n}, batch_size={batch_size}")
        bs = self.batch_size if batch_size is None else int(batch_size)
        perm = torch.randperm(len(self.y_train), generator=torch.Generator().manual_seed(
            mix_seed(self.seed, "calibration")))
        perm = perm[: n * bs].to(self.device)
        return [(self.x_train[idx], self.y_train[idx]) for idx in perm.split(bs) if len(idx)]

    def __repr__(self) -> str:
        state = ", ".join(f"{k}={v}" for k, v in self.sizes.items()) if self._ready else "not set up"
        return f"{type(self).__name__}(name={self.name!r}, root={str(self.root)!r}, {state})"

    __str__ = __repr__  # Lightning's __str__ expects DataLoaders
