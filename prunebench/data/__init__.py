"""Data sets as in-memory LightningDataModules, chosen by name::

    dm = build_datamodule("mnist1d", seed=0, root="data")
    dm.prepare_data(); dm.setup("fit")
    dm.input_shape, dm.num_classes  # ((40,), 10)

Every data set is a :class:`TensorDataModule`: all splits live in tensors (move them to
the GPU once with ``dm.to(device)``), validation is carved off the training set with
``split_seed``, inputs are standardised with training-split statistics, and batches come
from :class:`TensorLoader`. ``conf/data/<name>.yaml`` holds each one's defaults.
"""

from __future__ import annotations

import inspect
from typing import Any

from prunebench.data.base import TensorDataModule, TensorLoader, mix_seed
from prunebench.data.cifar import CIFAR10
from prunebench.data.mnist import MNIST, FashionMNIST
from prunebench.data.mnist1d import MNIST1D
from prunebench.data.shakespeare import Shakespeare
from prunebench.data.synthetic import Synthetic
from prunebench.errors import ConfigError
from prunebench.registry import Registry

#: name → TensorDataModule subclass; its keyword defaults are the data set's defaults.
DATASETS: Registry[type[TensorDataModule]] = Registry("data")
for _cls in (MNIST1D, MNIST, FashionMNIST, CIFAR10, Synthetic, Shakespeare):
    DATASETS.register(_cls.name)(_cls)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered data set names matching a glob ``pattern``, sorted."""
    return DATASETS.names(pattern)


def build_datamodule(name: str, *, seed: int = 0, **kwargs: Any) -> TensorDataModule:
    """The data module ``name`` (see :data:`DATASETS`) configured by ``kwargs``.

    ``kwargs`` are the keys of ``conf/data/<name>.yaml`` except ``name``. Unknown names and
    unknown or invalid keys raise ConfigError naming ``data`` / ``data.<key>``. Nothing is
    read from disk until ``prepare_data()`` / ``setup()``.
    """
    cls = DATASETS.get(name)
    params = inspect.signature(cls).parameters
    for key in kwargs:
        if key not in params or key == "seed":
            valid = ", ".join(sorted(p for p in params if p != "seed"))
            raise ConfigError(f"data.{key} is not an option of data={name!r}; valid: {valid}")
    return cls(seed=seed, **kwargs)


__all__ = [
    "CIFAR10",
    "DATASETS",
    "MNIST",
    "MNIST1D",
    "Shakespeare",
    "FashionMNIST",
    "Synthetic",
    "TensorDataModule",
    "TensorLoader",
    "build_datamodule",
    "list_datasets",
    "mix_seed",
]
