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
from prunebench.data.custom import LoaderDataModule, custom_datamodule
from prunebench.data.imagefolder import ImageFolder, image_folder
from prunebench.data.mnist import MNIST, FashionMNIST
from prunebench.data.mnist1d import MNIST1D
from prunebench.data.shakespeare import Shakespeare
from prunebench.data.synthetic import Synthetic
from prunebench.data.tvdata import TorchvisionData
from prunebench.errors import ConfigError
from prunebench import catalog
from prunebench.registry import Registry

#: name → TensorDataModule subclass; its keyword defaults are the data set's defaults.
DATASETS: Registry[type[TensorDataModule]] = Registry("data", catalog.DATASETS)
for _cls in (MNIST1D, MNIST, FashionMNIST, CIFAR10, Synthetic, TorchvisionData, Shakespeare):
    DATASETS.register(_cls.name)(_cls)
# Factories, not classes: they return an in-memory module or a streaming adapter.
DATASETS.register("imagefolder")(image_folder)  # type: ignore[arg-type]
DATASETS.register("custom")(custom_datamodule)  # type: ignore[arg-type]


#: Entries reading a user's data (``data.root`` of images, ``data.dataset``, ``data.target``);
#: they take required keys, so registry-wide tests of the built-ins skip them.
EXTERNAL = ("custom", "imagefolder", "torchvision")


def list_datasets(pattern: str = "*", *, external: bool = True) -> list[str]:
    """Registered data set names matching a glob ``pattern``, sorted (``external=False``:
    the built-in data sets only)."""
    return [n for n in DATASETS.names(pattern) if external or n not in EXTERNAL]


def build_datamodule(name: str, *, seed: int = 0, **kwargs: Any) -> TensorDataModule:
    """The data module ``name`` (see :data:`DATASETS`) configured by ``kwargs``.

    ``kwargs`` are the keys of ``conf/data/<name>.yaml`` except ``name``. Unknown names and
    unknown or invalid keys raise ConfigError naming ``data`` / ``data.<key>``. Nothing is
    read from disk until ``prepare_data()`` / ``setup()``.
    """
    cls = DATASETS.get(name)
    params = inspect.signature(cls).parameters
    # data=custom passes its other keys on to the user's factory (**kwargs).
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key in kwargs:
        if (key not in params and not open_kwargs) or key == "seed":
            valid = ", ".join(sorted(p for p in params if p != "seed"))
            raise ConfigError(f"data.{key} is not an option of data={name!r}; valid: {valid}")
    return cls(seed=seed, **kwargs)


__all__ = [
    "CIFAR10",
    "DATASETS",
    "EXTERNAL",
    "MNIST",
    "MNIST1D",
    "Shakespeare",
    "FashionMNIST",
    "ImageFolder",
    "LoaderDataModule",
    "TorchvisionData",
    "custom_datamodule",
    "Synthetic",
    "TensorDataModule",
    "TensorLoader",
    "build_datamodule",
    "list_datasets",
    "mix_seed",
]
