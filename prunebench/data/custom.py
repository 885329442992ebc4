"""``data=custom data.target=<module>:<callable>``: a user's own data module.

The factory (``package.module:fn`` or ``path/to/file.py:fn``, called with the other
``data.*`` keys it has parameters for, plus ``seed``/``root`` where it takes them) returns
a prunebench :class:`TensorDataModule` (used as it is) or any LightningDataModule, which
:class:`LoaderDataModule` adapts to what the engine needs: its map-style datasets are
re-batched with prunebench's seeded shuffles, a missing validation (or test) split is
carved off the training set (seeded by ``split_seed``), and the first batches of every
split are checked (an ``(x, y)`` pair, float inputs of one shape, int labels within the
class count) with messages naming ``data.target``. Batches stream from the user's
datasets (nothing is loaded into memory up front), so large data sets work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from prunebench.data.base import Batch, TensorDataModule, check_bool, check_int, check_val_size, mix_seed
from prunebench.errors import ConfigError
from prunebench.imports import call_with_accepted, load_callable

KEY = "data.target"


class DeviceLoader:
    """Batches of a map-style dataset, reshuffled per epoch from ``(seed, epoch)``, on ``device``."""

    def __init__(self, dataset: Dataset[Any], batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, collate_fn: Any = None, num_workers: int = 0,
                 device: torch.device = torch.device("cpu")) -> None:
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, int(batch_size), shuffle, seed
        self.drop_last, self.collate_fn, self.num_workers, self.device = drop_last, collate_fn, num_workers, device
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch)) if self.shuffle else None
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=self.shuffle, generator=gen,
                            drop_last=self.drop_last, collate_fn=self.collate_fn, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda")
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def _implemented(dm: Any, method: str) -> bool:
    own = getattr(type(dm), method, None)
    return own is not None and own is not getattr(pl.LightningDataModule, method, None)


class LoaderDataModule:
    """Adapts a user's LightningDataModule to prunebench's data module interface.

    ``setup()`` calls the user's ``prepare_data``/``setup`` and checks what comes back;
    ``input_shape``, ``num_classes``, ``sizes``, the three loaders, ``calibration_batches``
    and ``to(device)`` then behave as :class:`TensorDataModule`'s do.
    """

    name = "custom"

    def __init__(self, user: Any, *, target: str, seed: int = 0, batch_size: int | None = None,
                 eval_batch_size: int | None = None, val_size: int | float = 0.1, test_size: int | float = 0.1,
                 split_seed: int = 0, num_classes: int | None = None, num_workers: int = 0, drop_last: bool = False,
                 check_batches: int = 2, key: str = KEY, name: str = "custom", shuffle: bool = True) -> None:
        self.user, self.target, self.key, self.name = user, target, key, name
        self.seed = check_int("seed", seed, low=0)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, low=1)
        self.eval_batch_size = None if eval_batch_size is None else check_int("eval_batch_size", eval_batch_size, low=1)
        self.val_size = check_val_size(val_size)
        self.test_size = check_val_size(test_size)
        self.split_seed = check_int("split_seed", split_seed, low=0)
        self._num_classes = None if num_classes is None else check_int("num_classes", num_classes, low=2)
        self.num_workers = check_int("num_workers", num_workers, low=0)
        self.drop_last = bool(drop_last)
        self.shuffle = check_bool("shuffle", shuffle)
        self.check_batches = check_int("check_batches", check_batches, low=1)
        self.device = torch.device("cpu")
        self._ready = False
        self.collate_fn: Any = None
        self.train_set: Dataset[Any]
        self.val_set: Dataset[Any]
        self.test_set: Dataset[Any]
        self._shape: tuple[int, ...] = ()

    # -- the user's module --------------------------------------------------------------
    def _what(self) -> str:
        return f"{self.key}={self.target!r}"

    def _dataset(self, loader: Any, split: str) -> Dataset[Any]:
        ds = getattr(loader, "dataset", None)
        if ds is None or isinstance(ds, IterableDataset) or not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
            raise ConfigError(f"{self._what()}: {split}_dataloader() must be a torch DataLoader over a map-style "
                              f"dataset (with __len__ and __getitem__); got {type(loader).__name__}")
        if len(ds) == 0:
            raise ConfigError(f"{self._what()}: the {split} split is empty")
        return ds

    def _carve(self, n: int, size: int | float, purpose: str) -> tuple[Any, Any]:
        k = round(size * n) if isinstance(size, float) else int(size)
        if not 1 <= k < n:
            raise ConfigError(f"{self._what()}: cannot carve {purpose} ({k} of {n} training samples); set "
                              f"data.{'val' if purpose == 'validation' else 'test'}_size")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(self.split_seed, purpose)))
        return perm[:k].sort().values.tolist(), perm[k:].sort().values.tolist()

    def prepare_data(self) -> None:
        try:
            self.user.prepare_data()
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"{self._what()}: prepare_data() raised {type(exc).__name__}: {exc}") from exc

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        try:
            for s in ("fit", "test"):
                self.user.setup(s)
            train_loader = self.user.train_dataloader()
            val_loader = self.user.val_dataloader() if _implemented(self.user, "val_dataloader") else None
            test_loader = self.user.test_dataloader() if _implemented(self.user, "test_dataloader") else None
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"{self._what()}: setting up the data module raised {type(exc).__name__}: {exc}") from exc
        train = self._dataset(train_loader, "train")
        self.collate_fn = getattr(train_loader, "collate_fn", None)
        if self.batch_size is None:
            self.batch_size = int(getattr(train_loader, "batch_size", None) or 64)
        if self.eval_batch_size is None:
            self.eval_batch_size = self.batch_size
        idx = list(range(len(train)))
        test = self._dataset(test_loader, "test") if test_loader is not None else None
        if test is None:  # carved first, so validation does not depend on whether test was given
            test_idx, idx = self._carve(len(idx), self.test_size, "test")
            test = Subset(train, test_idx)
        val = self._dataset(val_loader, "val") if val_loader is not None else None
        if val is None:
            val_pos, train_pos = self._carve(len(idx), self.val_size, "validation")
            val = Subset(train, [idx[i] for i in val_pos])
            idx = [idx[i] for i in train_pos]
        self.train_set = train if len(idx) == len(train) else Subset(train, idx)
        self.val_set, self.test_set = val, test
        if self._num_classes is None:
            self._num_classes = self._infer_classes(train)
        for split, ds in (("train", self.train_set), ("val", self.val_set), ("test", self.test_set)):
            self._check(split, ds)
        self._ready = True

    def _infer_classes(self, train: Any) -> int:
        for source in (self.user, train):
            n = getattr(source, "num_classes", None)
            if isinstance(n, int) and not isinstance(n, bool):
                return check_int("num_classes", n, low=2)
            classes = getattr(source, "classes", None)
            if classes is not None and len(classes) >= 2:
                return len(classes)
        raise ConfigError(f"{self._what()}: cannot tell the class count: give the data module a num_classes "
                          f"attribute, its dataset a classes list, or set +data.num_classes=<n>")

    def _check(self, split: str, ds: Dataset[Any]) -> None:
        loader = DeviceLoader(ds, self.eval_batch_size or 64, collate_fn=self.collate_fn)
        for i, batch in enumerate(self._raw_batches(loader)):
            if i >= self.check_batches:
                break
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ConfigError(f"{self._what()}: {split} batches must be (inputs, labels) pairs; got "
                                  f"{type(batch).__name__}")
            x, y = batch
            if not isinstance(x, Tensor) or not isinstance(y, Tensor):
                raise ConfigError(f"{self._what()}: {split} batches must hold tensors; got "
                                  f"({type(x).__name__}, {type(y).__name__})")
            if not x.is_floating_point() or x.dim() < 2:
                raise ConfigError(f"{self._what()}: {split} inputs must be float tensors [batch, ...]; got dtype "
                                  f"{x.dtype}, shape {tuple(x.shape)}")
            if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or y.dim() != 1 or len(y) != len(x):
                raise ConfigError(f"{self._what()}: {split} labels must be integer class indices of shape [batch] "
                                  f"({len(x)}); got dtype {y.dtype}, shape {tuple(y.shape)}")
            shape = tuple(x.shape[1:])
            if not self._shape:
                self._shape = shape
            elif shape != self._shape:
                raise ConfigError(f"{self._what()}: {split} inputs have shape {shape}, train inputs {self._shape}")
            n = self.num_classes
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= n):
                raise ConfigError(f"{self._what()}: {split} labels range {int(y.min())}..{int(y.max())}, outside "
                                  f"0..{n - 1} for num_classes={n}")

    def _raw_batches(self, loader: DeviceLoader) -> Iterator[Any]:
        dl = DataLoader(loader.dataset, batch_size=loader.batch_size, collate_fn=loader.collate_fn)
        try:
            yield from dl
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"{self._what()}: reading a batch raised {type(exc).__name__}: {exc}") from exc

    # -- what the engine uses -------------------------------------------------------------
    def _require_setup(self) -> None:
        if not self._ready:
            raise RuntimeError(f"{self._what()}: call setup() before using the data")

    @property
    def num_classes(self) -> int:
        assert self._num_classes is not None
        return self._num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        self._require_setup()
        return self._shape

    @property
    def sizes(self) -> dict[str, int]:
        self._require_setup()
        return {"train": len(self.train_set), "val": len(self.val_set), "test": len(self.test_set)}  # type: ignore[arg-type]

    def to(self, device: torch.device | str) -> LoaderDataModule:
        self.device = torch.device(device)
        return self

    def _loader(self, ds: Dataset[Any], bs: int, train: bool = False) -> DeviceLoader:
        self._require_setup()
        return DeviceLoader(ds, bs, shuffle=train and self.shuffle, seed=self.seed, drop_last=self.drop_last and train,
                            collate_fn=self.collate_fn, num_workers=self.num_workers, device=self.device)

    def train_dataloader(self) -> DeviceLoader:
        assert self.batch_size is not None
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> DeviceLoader:
        assert self.eval_batch_size is not None
        return self._loader(self.val_set, self.eval_batch_size)

    def test_dataloader(self) -> DeviceLoader:
        assert self.eval_batch_size is not None
        return self._loader(self.test_set, self.eval_batch_size)

    def calibration_batches(self, n: int, batch_size: int | None = None) -> list[Batch]:
        """The first ``n`` batches of a fixed (``seed``) shuffle of the training split."""
        self._require_setup()
        bs = int(batch_size or self.batch_size or 64)
        perm = torch.randperm(len(self.train_set), generator=torch.Generator().manual_seed(  # type: ignore[arg-type]
            mix_seed(self.seed, "calibration")))[: n * bs].tolist()
        loader = self._loader(Subset(self.train_set, perm), bs)
        return list(loader)

    def preprocessing(self) -> dict[str, Any]:
        """Your data module's own transforms, untouched: prunebench adds no normalisation."""
        self._require_setup()
        return {"normalize": "own", "mean": None, "std": None, "input_dtype": "float32", "input_range": None,
                "input_shape": list(self._shape), "augment": False}

    def preprocess_module(self) -> torch.nn.Module:
        return torch.nn.Identity()

    def raw_split(self, split: str) -> Batch:
        """``(x, y)`` of a whole split as your loaders yield it (on the CPU)."""
        ds = {"train": self.train_set, "val": self.val_set, "test": self.test_set}[split]
        xs, ys = [], []
        for x, y in self._loader(ds, int(self.eval_batch_size or 256)):
            xs.append(x.cpu())
            ys.append(y.cpu())
        return torch.cat(xs), torch.cat(ys)

    def __repr__(self) -> str:
        state = ", ".join(f"{k}={v}" for k, v in self.sizes.items()) if self._ready else "not set up"
        return f"LoaderDataModule({self._what()}, {state})"

    __str__ = __repr__


def custom_datamodule(*, seed: int = 0, root: str | os.PathLike[str] | None = None, target: str | None = None,
                      batch_size: int | None = None, eval_batch_size: int | None = None,
                      val_size: int | float = 0.1, test_size: int | float = 0.1, split_seed: int = 0,
                      num_classes: int | None = None, num_workers: int = 0, drop_last: bool = False,
                      check_batches: int = 2, shuffle: bool = True, **kwargs: Any) -> Any:
    """The data module ``target(**kwargs)`` returns, adapted when it is not a TensorDataModule.

    ``kwargs`` (other ``data.*`` keys) go to the factory; ``seed`` and ``root`` too when it
    has parameters of those names.
    """
    fn = load_callable(target, KEY)
    offered = {"seed": seed} | ({"root": str(root)} if root is not None else {})
    call = call_with_accepted(fn, offered, kwargs)
    try:
        dm = fn(**call)
    except Exception as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in call.items()) or "no arguments"
        raise ConfigError(f"{KEY}={target!r} raised {type(exc).__name__}: {exc} when called with {shown}") from exc
    if isinstance(dm, TensorDataModule):
        return dm
    if not isinstance(dm, pl.LightningDataModule) and not all(
            callable(getattr(dm, m, None)) for m in ("setup", "train_dataloader")):
        raise ConfigError(f"{KEY}={target!r} returned a {type(dm).__name__}, not a LightningDataModule")
    assert target is not None
    return LoaderDataModule(dm, target=target, seed=seed, batch_size=batch_size, eval_batch_size=eval_batch_size,
                            val_size=val_size, test_size=test_size, split_seed=split_seed, num_classes=num_classes,
                            num_workers=num_workers, drop_last=drop_last, check_batches=check_batches, shuffle=shuffle)


custom_datamodule.name = "custom"  # type: ignore[attr-defined]
