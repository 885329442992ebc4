"""``data=imagefolder data.root=<folder>``: a user's images in class folders.

Layouts: ``root/{train,val,test}/<class>/<image>`` (``val`` and ``test`` optional: what is
absent is carved off ``train``, seeded by ``split_seed``), or ``root/<class>/<image>``
(test and validation both carved off, seeded). Images are decoded once with PIL, resized
to ``image_size`` when given, and held in memory as tensors like the built-in data sets;
a tree whose decoded size exceeds ``max_memory_mb`` (or ``lazy=true``) is streamed from
disk per batch instead (torchvision's ImageFolder through :class:`LoaderDataModule`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from prunebench.data.base import (IMAGENET_MEAN, IMAGENET_STD, NORMALIZE, TensorDataModule,  # noqa: F401
                                  check_int, check_normalize_channels, mix_seed, train_statistics)
from prunebench.errors import ConfigError, CorruptFileError, DataNotFoundError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def check_image_size(value: Any) -> tuple[int, int] | None:
    """None, an int (square) or ``[H, W]`` of positive ints; ConfigError naming data.image_size."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return (value, value)
    if (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        return (int(value[0]), int(value[1]))
    raise ConfigError(f"data.image_size={value!r} must be null, a positive int or [height, width]")


def check_test_size(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"data.test_size={value!r} is out of range; expected a fraction in (0, 1)")
    return float(value)


def images_to_tensor(images: Sequence[Any], size: tuple[int, int] | None, channels: int, where: str) -> Tensor:
    """PIL images → float tensor ``(N, C, H, W)`` in [0, 1]; all of one size unless ``size`` is set."""
    mode = "RGB" if channels == 3 else "L"
    arrays = []
    for i, img in enumerate(images):
        img = img.convert(mode)
        if size is not None and img.size != (size[1], size[0]):
            from PIL import Image

            img = img.resize((size[1], size[0]), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
        arrays.append(arr[:, :, None] if arr.ndim == 2 else arr)
        if arrays[-1].shape != arrays[0].shape:
            raise ConfigError(f"{where}: images differ in size ({arrays[0].shape[1]}x{arrays[0].shape[0]} and "
                              f"{arr.shape[1]}x{arr.shape[0]} at image {i}); set data.image_size=[H, W] to resize them")
    if not arrays:
        return torch.empty(0, channels, *(size or (1, 1)))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


class ImageFolder(TensorDataModule):
    """Images in class folders under ``root`` (see the module docstring for layouts).

    Keys: ``image_size`` (null = keep, all images must then share one size), ``channels``
    (3 = RGB, 1 = grey), ``normalize`` (as every image data set: ``train``, ``none``,
    ``imagenet`` or ``{mean: [...], std: [...]}``), ``augment``, ``test_size`` (the
    fraction carved off for testing when there is no ``test`` folder), ``max_memory_mb``.
    """

    name = "imagefolder"
    input_range = (0.0, 1.0)

    option_defaults = {"root": None, "batch_size": 64, "eval_batch_size": 256, "val_size": 0.1}

    def __init__(self, *, image_size: int | Sequence[int] | None = None, channels: int = 3, test_size: float = 0.2,
                 max_memory_mb: int = 4096, **common: Any) -> None:
        root = common.get("root")
        if common.get("options") is None and (root is None or not str(root)):
            raise ConfigError(f"data.root={root!r}: set data.root=<folder> holding train/val/test class folders "
                              f"or class folders directly")
        super().__init__(**common)
        self.image_size = check_image_size(image_size)
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ConfigError(f"data.channels={channels!r} must be 1 (grey) or 3 (RGB)")
        self.channels = int(channels)
        check_normalize_channels(self.normalize, self.channels, f"data=imagefolder with data.channels={channels}")
        self.test_size = check_test_size(test_size)
        self.max_memory_mb = check_int("max_memory_mb", max_memory_mb, low=1)
        self.classes: list[str] = []
        self._given_val: tuple[Tensor, Tensor] | None = None

    @property
    def num_classes(self) -> int:
        if not self.classes:
            raise RuntimeError("data='imagefolder': call setup() before num_classes")
        return len(self.classes)

    # -- files ------------------------------------------------------------------------------
    def split_dirs(self) -> dict[str, Path]:
        """The split folders present: ``{"train": ..., "val"?: ..., "test"?: ...}`` or ``{"all": root}``."""
        if not self.root.is_dir():
            raise DataNotFoundError(f"data.root={str(self.root)!r} is not a folder")
        if (self.root / "train").is_dir():
            out = {"train": self.root / "train"}
            for split, names in (("val", ("val", "valid", "validation")), ("test", ("test",))):
                for n in names:
                    if (self.root / n).is_dir():
                        out[split] = self.root / n
                        break
            return out
        return {"all": self.root}

    @staticmethod
    def scan(folder: Path) -> dict[str, list[Path]]:
        """``class name → image files`` (sorted) of one split folder."""
        return {d.name: sorted(p for p in d.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)
                for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")}

    def read(self, files: dict[str, list[Path]], where: str) -> tuple[Tensor, Tensor]:
        from PIL import Image, UnidentifiedImageError

        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(files) - set(index))
        if unknown:
            raise ConfigError(f"data.root: {where} has class folders {unknown} that the training folder lacks "
                              f"(classes: {self.classes})")
        images, labels = [], []
        for cls, paths in files.items():
            for p in paths:
                try:
                    with Image.open(p) as img:
                        img.load()
                        images.append(img.copy())
                except (OSError, UnidentifiedImageError) as exc:
                    raise CorruptFileError(f"data.root: {p} is not a readable image ({exc})") from exc
                labels.append(index[cls])
        return images_to_tensor(images, self.image_size, self.channels, f"data.root={str(self.root)!r}"), \
            torch.tensor(labels, dtype=torch.int64)

    def _check_memory(self, groups: list[dict[str, list[Path]]]) -> None:
        n = sum(len(v) for g in groups for v in g.values())
        if self.image_size is None or not n:
            return
        mb = n * self.channels * self.image_size[0] * self.image_size[1] * 4 / 2**20
        if mb > self.max_memory_mb:
            raise ConfigError(f"data=imagefolder: {n} images at {self.image_size} need ~{mb:.0f} MB in memory, over "
                              f"data.max_memory_mb={self.max_memory_mb}; raise it, lower data.image_size, or stream "
                              f"them from disk with data.lazy=true")

    # -- TensorDataModule -------------------------------------------------------------------
    def prepare_data(self) -> None:
        dirs = self.split_dirs()
        first = dirs.get("train", dirs.get("all"))
        assert first is not None
        files = self.scan(first)
        if not files or not any(files.values()):
            raise DataNotFoundError(f"data.root={str(self.root)!r}: no class folders with images ({', '.join(IMG_EXTENSIONS)}) "
                                    f"in {first}")
        if len(files) < 2:
            raise ConfigError(f"data.root={str(self.root)!r}: one class folder only ({list(files)}); need >= 2 classes")

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self.prepare_data()
        dirs = self.split_dirs()
        train_files = self.scan(dirs.get("train", dirs.get("all", self.root)))
        self.classes = sorted(train_files)
        self.class_names = list(self.classes)
        groups = [train_files] + [self.scan(dirs[s]) for s in ("val", "test") if s in dirs]
        self._check_memory(groups)
        x, y = self.read(train_files, "train")
        if "test" in dirs:
            x_test, y_test = self.read(self.scan(dirs["test"]), "test")
        else:  # carve the test split off, seeded, before validation is carved off the rest
            perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(mix_seed(self.split_seed, "test")))
            n_test = max(1, round(self.test_size * len(y)))
            test_idx, rest = perm[:n_test].sort().values, perm[n_test:].sort().values
            x_test, y_test, x, y = x[test_idx], y[test_idx], x[rest], y[rest]
        self._given_val = self.read(self.scan(dirs["val"]), "val") if "val" in dirs else None
        return x, y, x_test, y_test

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        if "val" in self.split_dirs():
            self.val_size = 0  # a val folder is the validation split: carve nothing off train
        super().setup(stage)
        if self._given_val is not None:
            x_val, y_val = self._given_val
            self.x_val = ((x_val - self.mean) / self.std).contiguous().to(self.device)
            self.y_val = y_val.to(self.device)
            self._given_val = None


# ---- trees too large for memory: streamed through the LoaderDataModule adapter ------------


class LazyImageFolder(pl.LightningDataModule):
    """torchvision ImageFolder splits decoded per batch (for :class:`LoaderDataModule`).

    ``train``/``val``/``test`` folders become the splits; what is absent the adapter carves
    off ``train`` (seeded). ``normalize=train`` uses per-channel statistics of up to
    ``STATS_IMAGES`` training images (a seeded sample), as the in-memory module uses all.
    """

    STATS_IMAGES = 512

    def __init__(self, folder: ImageFolder, num_workers: int) -> None:
        super().__init__()
        self.folder, self.num_workers = folder, num_workers
        self.sets: dict[str, Any] = {}
        self.classes: list[str] = []

    def _transform(self, mean: Tensor | None, std: Tensor | None) -> Any:
        from torchvision import transforms as T

        steps: list[Any] = [T.Grayscale(1) if self.folder.channels == 1 else T.Lambda(lambda im: im.convert("RGB"))]
        if self.folder.image_size is not None:
            steps.append(T.Resize(self.folder.image_size))
        steps.append(T.ToTensor())
        if mean is not None and std is not None:
            steps.append(T.Normalize(mean.flatten().tolist(), std.flatten().tolist()))
        return T.Compose(steps)

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        from torchvision.datasets import ImageFolder as TVImageFolder

        dirs = self.folder.split_dirs()
        train_dir = dirs.get("train", dirs.get("all"))
        raw = TVImageFolder(str(train_dir), transform=self._transform(None, None))
        self.classes = list(raw.classes)
        if self.folder.normalize == "train":
            g = torch.Generator().manual_seed(mix_seed(self.folder.split_seed, "stats"))
            idx = torch.randperm(len(raw), generator=g)[: self.STATS_IMAGES].tolist()
            mean, std = train_statistics(torch.stack([raw[i][0] for i in idx]))
        else:
            mean, std = self.folder.statistics(torch.zeros(1, self.folder.channels, 1, 1))
        tf = self._transform(mean, std)
        for split in ("train", "val", "test"):
            if split in dirs:
                ds = TVImageFolder(str(dirs[split]), transform=tf)
                if ds.classes != self.classes:
                    raise ConfigError(f"data.root: {dirs[split]} has classes {ds.classes}, the training folder "
                                      f"{self.classes}")
                self.sets[split] = ds
        if "all" in dirs:
            self.sets["train"] = TVImageFolder(str(dirs["all"]), transform=tf)

    def _loader(self, split: str) -> Any:
        from torch.utils.data import DataLoader

        return DataLoader(self.sets[split], batch_size=self.folder.batch_size)

    def train_dataloader(self) -> Any:
        return self._loader("train")

    def val_dataloader(self) -> Any:
        return self._loader("val") if "val" in self.sets else None

    def test_dataloader(self) -> Any:
        return self._loader("test") if "test" in self.sets else None


def _estimate_mb(folder: ImageFolder) -> float:
    """Decoded size of the whole tree in MB (image size from the first image's header)."""
    from PIL import Image

    files = [p for d in folder.split_dirs().values() for v in folder.scan(d).values() for p in v]
    if not files:
        return 0.0
    if folder.image_size is not None:
        h, w = folder.image_size
    else:
        with Image.open(files[0]) as img:
            w, h = img.size
    return len(files) * folder.channels * h * w * 4 / 2**20


def image_folder(*, lazy: bool | None = None, num_workers: int = 0, **kwargs: Any) -> Any:
    """``data=imagefolder``: in memory (:class:`ImageFolder`) when the decoded tree fits in
    ``max_memory_mb`` (or ``lazy=false``), else streamed from disk per batch (``lazy=true``,
    or automatically when too large) with ``num_workers`` loader processes. ``kwargs`` are
    :class:`ImageFolder`'s."""
    folder = ImageFolder(**kwargs)
    max_memory_mb = folder.max_memory_mb
    if lazy is not None and not isinstance(lazy, bool):
        raise ConfigError(f"data.lazy={lazy!r} must be null (automatic), true or false")
    if lazy is False or (lazy is None and (not folder.root.is_dir() or _estimate_mb(folder) <= max_memory_mb)):
        return folder
    folder.prepare_data()  # the same checks on the tree as in memory
    if folder.augment:
        raise ConfigError("data.augment=true is applied to in-memory images; this tree is streamed from disk "
                          "(data.lazy or over data.max_memory_mb): set data.augment=false or data.lazy=false")
    from prunebench.data.custom import LoaderDataModule

    return LoaderDataModule(LazyImageFolder(folder, num_workers), target=str(folder.root), seed=folder.seed,
                            batch_size=folder.batch_size, eval_batch_size=folder.eval_batch_size,
                            val_size=folder.val_size, test_size=folder.test_size, split_seed=folder.split_seed,
                            num_workers=num_workers, drop_last=folder.drop_last, key="data.root", name="imagefolder",
                            shuffle=folder.shuffle)


image_folder.name = "imagefolder"  # type: ignore[attr-defined]
# Its keys: ImageFolder's and its own two (what config validation and data=imagefolder's file list).
image_folder.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [*ImageFolder.__signature__.parameters.values(),  # type: ignore[attr-defined]
     *[p for p in inspect.signature(image_folder).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]])
