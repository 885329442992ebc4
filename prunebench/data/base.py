"""In-memory data modules: every split lives in a tensor, batches are cut by indexing.

Small benchmark data sets (MNIST-1D, MNIST, CIFAR-10) fit in memory many times over, so
``TensorDataModule`` loads each split once into a tensor (optionally on the GPU) and
``TensorLoader`` yields whole batches by indexing those tensors with a permutation: no
per-sample ``__getitem__``, no collate, no worker processes. A plain ``DataLoader`` over a
``TensorDataset`` was about 1.6x slower per epoch on MNIST-1D.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunebench.options import parse_bool, parse_int
from prunebench.seeding import mix_seed
from prunebench.errors import ConfigError, DataNotFoundError

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


# ---- preprocessing: data.normalize and data.augment ------------------------------------

#: Named choices of ``data.normalize``; an explicit ``{mean: [...], std: [...]}`` is the fourth.
NORMALIZE = ("train", "none", "imagenet")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALIZE_HELP = ("train (training-split statistics), none (inputs as loaded, images in [0, 1]), imagenet "
                  "(torchvision's pretrained weights' statistics), or {mean: [...], std: [...]} with one number "
                  "per channel")


def check_normalize(value: Any) -> str | dict[str, list[float]]:
    """``data.normalize``: a name of :data:`NORMALIZE` or ``{"mean": [...], "std": [...]}``
    (plain lists of floats, std > 0, equal lengths); ConfigError naming the key and value."""
    if isinstance(value, str):
        if value in NORMALIZE:
            return value
        raise ConfigError(f"data.normalize={value!r} is not a known choice; valid: {NORMALIZE_HELP}")
    if isinstance(value, Mapping):
        if set(value) != {"mean", "std"}:
            raise ConfigError(f"data.normalize={dict(value)!r} must have exactly the keys mean and std "
                              "(e.g. data.normalize={mean:[0.5],std:[0.25]})")
        out: dict[str, list[float]] = {}
        for key in ("mean", "std"):
            v = value[key]
            items = list(v) if isinstance(v, Sequence) and not isinstance(v, str) else [v]
            if not items or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
                                    for t in items):
                raise ConfigError(f"data.normalize.{key}={v!r} must be a non-empty list of finite numbers, one "
                                  "per channel")
            out[key] = [float(t) for t in items]
        if any(t <= 0 for t in out["std"]):
            raise ConfigError(f"data.normalize.std={out['std']!r} must be > 0 for every channel")
        if len(out["mean"]) != len(out["std"]):
            raise ConfigError(f"data.normalize: mean has {len(out['mean'])} values and std {len(out['std'])}; "
                              "give one of each per channel")
        return out
    raise ConfigError(f"data.normalize={value!r} must be one of: {NORMALIZE_HELP}")


def check_normalize_channels(normalize: str | dict[str, list[float]], channels: int, where: str) -> None:
    """ConfigError when an explicit mean/std (or ``imagenet``) does not fit ``channels`` input channels."""
    if isinstance(normalize, dict) and len(normalize["mean"]) != channels:
        raise ConfigError(f"data.normalize: mean/std have {len(normalize['mean'])} values but {where} has "
                          f"{channels} channel(s); give one mean and one std per channel")
    if normalize == "imagenet" and channels != 3:
        raise ConfigError(f"data.normalize='imagenet' needs 3-channel (RGB) images; {where} has {channels} "
                          "channel(s): use train, none or an explicit {mean: [...], std: [...]}")


def train_statistics(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and std of the training inputs: per channel for images ``(N, C, H, W)``,
    one scalar pair otherwise (keeps the shape of 1-D signals)."""
    dims = (0, 2, 3) if x.dim() == 4 else tuple(range(x.dim()))
    mean = x.mean(dim=dims, keepdim=True)[0]
    std = x.std(dim=dims, keepdim=True)[0].clamp_min(1e-8)
    return mean, std


class Standardize(nn.Module):
    """``(x - mean) / std``: the data module's preprocessing as a module (exports carry it).

    The same float operations as :meth:`TensorDataModule.setup` applies to the splits, so
    a model behind it, fed the raw inputs, sees bit-identical values.
    """

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class Preprocessed(nn.Module):
    """A network behind its preprocessing: takes the inputs the data set yields before
    preprocessing (images as float in [0, 1]). ``net`` is the model itself."""

    def __init__(self, net: nn.Module, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.preprocess = Standardize(mean, std)
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.preprocess(x))


def random_crop_flip(x: Tensor, gen: torch.Generator, pad: int = 4) -> Tensor:
    """Random ``pad``-pixel-padded crop and horizontal flip of a batch ``(B, C, H, W)``.

    Vectorised: one gather for the whole batch, no per-sample Python loop. Random offsets
    and flips come from ``gen`` (reproducible for a given seed and device). The padding is
    zeros of the preprocessed inputs: the mean pixel under ``normalize=train``, black
    under ``none``.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dev = gen.device  # the loader's generator lives on the data's device: no host→device copies
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=dev).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=dev).to(x.device)
    flip = (torch.rand(b, 1, generator=gen, device=dev) < 0.5).to(x.device)
    rows = dy + torch.arange(h, device=x.device)  # (B, H)
    cols = torch.arange(w, device=x.device)
    cols = dx + torch.where(flip, cols.flip(0), cols)  # (B, W): a flip is a reversed column order
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def preprocessing_of(dm: Any) -> dict[str, Any]:
    """``dm.preprocessing()``, or ``{"normalize": "own"}`` for a data module without one
    (a user's, whose transforms prunebench does not change)."""
    fn = getattr(dm, "preprocessing", None)
    return fn() if callable(fn) else {"normalize": "own", "mean": None, "std": None}


def describe_preprocessing(pre: Mapping[str, Any]) -> str:
    """One line for the results table: ``normalize=train mean=[0.2860] std=[0.3530] input=float32[0,1]``."""
    if pre.get("input") == "token ids":
        return f"token ids ({pre.get('tokenizer', '?')}, vocab {pre.get('vocab_size', '?')}), not normalised"
    parts = [f"normalize={pre.get('normalize')}"]
    if pre.get("mean") is not None:
        fmt = lambda v: "[" + ",".join(f"{t:.4g}" for t in v) + "]"  # noqa: E731
        parts += [f"mean={fmt(pre['mean'])}", f"std={fmt(pre['std'])}"]
    rng = pre.get("input_range")
    parts.append(f"input={pre.get('input_dtype', 'float32')}" + (f"[{rng[0]:g},{rng[1]:g}]" if rng else ""))
    if pre.get("augment"):
        parts.append("augment=crop+flip")
    return " ".join(parts)


# ---- the base data module ----------------------------------------------------------------


#: The keywords every built-in data set shares, in their order in the config files.
COMMON_OPTIONS = ("root", "batch_size", "eval_batch_size", "val_size", "split_seed", "download", "drop_last",
                  "shuffle", "normalize", "augment")


@dataclass(frozen=True)
class DataOptions:
    """The common options of a data set (``data.<key>``), each checked once.

    ``root``: data folder; ``batch_size``: training batch size; ``eval_batch_size``: batch
    size of val / test loaders; ``val_size``: int count or float fraction of the training set
    used for validation; ``split_seed``: seeds that split; ``download``: fetch missing files
    (where the data set can); ``drop_last``: drop the last partial training batch;
    ``shuffle``: reshuffle the training batches every epoch (false: the training split's own
    order every epoch, as a notebook that slices its arrays); ``normalize``: see
    :func:`check_normalize`; ``augment``: random crop and flip of training images.
    """

    root: Path = Path("data")
    batch_size: int = 128
    eval_batch_size: int = 1000
    val_size: int | float = 5000
    split_seed: int = 0
    download: bool = False
    drop_last: bool = False
    shuffle: bool = True
    normalize: str | dict[str, list[float]] = "train"
    augment: bool = False

    @classmethod
    def parse(cls, values: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None,
              taken: Sequence[str] = COMMON_OPTIONS, where: str = "data") -> DataOptions:
        """Options from ``values`` over ``defaults`` (a data set's own); ConfigError naming
        ``data.<key>`` for a bad value or a key the data set does not take."""
        for key in values:
            if key not in taken:
                raise ConfigError(f"data.{key} is not an option of {where}; valid: {', '.join(sorted(taken))}")
        v = {**(defaults or {}), **values}
        base = cls()
        return cls(root=check_root(v.get("root", "data")),
                   batch_size=check_int("batch_size", v.get("batch_size", base.batch_size), low=1),
                   eval_batch_size=check_int("eval_batch_size", v.get("eval_batch_size", base.eval_batch_size), low=1),
                   val_size=check_val_size(v.get("val_size", base.val_size)),
                   split_seed=check_int("split_seed", v.get("split_seed", base.split_seed), low=0),
                   download=check_bool("download", v.get("download", base.download)),
                   drop_last=check_bool("drop_last", v.get("drop_last", base.drop_last)),
                   shuffle=check_bool("shuffle", v.get("shuffle", base.shuffle)),
                   normalize=check_normalize(v.get("normalize", base.normalize)),
                   augment=check_bool("augment", v.get("augment", base.augment)))


def data_signature(cls: type) -> inspect.Signature:
    """The keyword signature of a data set class: ``seed``, the common options it takes (with
    its defaults) and its own keywords. Config validation, the packaged config files' test and
    the run identity read the defaults from it, as from any factory's signature."""
    kw = inspect.Parameter.KEYWORD_ONLY
    base = DataOptions()
    defaults = {f.name: getattr(base, f.name) for f in dataclasses.fields(DataOptions)} | {"root": "data"}
    params = [inspect.Parameter("seed", kw, default=0)]
    params += [inspect.Parameter(k, kw, default=cls.option_defaults.get(k, defaults[k]))  # type: ignore[attr-defined]
               for k in cls.options_taken]  # type: ignore[attr-defined]
    own = inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]
    params += [p for p in own if p.kind is kw and p.name not in ("seed", "options")]
    return inspect.Signature(params)


class TensorDataModule(pl.LightningDataModule):
    """A LightningDataModule holding train / val / test splits as in-memory tensors.

    Subclasses implement :meth:`load` (the full training set and the test set as tensors)
    and may override :meth:`prepare_data` (downloads). This class carves the validation
    split off the training set (seeded by ``split_seed``, so every training ``seed`` sees
    the same validation set), standardises inputs with training-split statistics and
    serves batches through :class:`TensorLoader`.

    The common options come as one :class:`DataOptions` (or as its keywords, checked with
    the data set's ``option_defaults``); ``seed`` seeds training shuffles and calibration
    batches. A subclass declares only its own keywords: its signature (``data_signature``)
    lists the common ones with its defaults, so ``conf/data/<name>.yaml`` is checked against it.
    """

    #: Registry name, set by each subclass.
    name: ClassVar[str] = ""
    #: classification, or language_modeling (targets are the next tokens; see engine/module.py)
    task: ClassVar[str] = "classification"
    #: Range of the inputs :meth:`load` yields (before preprocessing): ``(0, 1)`` for images.
    input_range: ClassVar[tuple[float, float] | None] = None
    #: Input channels when fixed by the data set (checked against data.normalize at once).
    channels_known: ClassVar[int | None] = None
    #: Class names in label order, when known (exports record them).
    class_names: list[str] | None = None

    #: This data set's defaults of the common options, where they differ from DataOptions'.
    option_defaults: ClassVar[Mapping[str, Any]] = {}
    #: The common options this data set takes (``data.<key>`` of its config file).
    options_taken: ClassVar[tuple[str, ...]] = COMMON_OPTIONS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = data_signature(cls)  # type: ignore[attr-defined]

    def __init__(self, *, seed: int = 0, options: DataOptions | None = None, **common: Any) -> None:
        """``options`` (one :class:`DataOptions`) or the common keywords themselves (checked
        here, with this data set's defaults); a subclass takes its own keywords besides."""
        super().__init__()
        if options is None:
            options = DataOptions.parse(common, defaults=self.option_defaults, taken=self.options_taken,
                                        where=f"data={self.name!r}")
        elif common:
            raise TypeError(f"give the common data options either as options= or as keywords, not both: {sorted(common)}")
        self.options = options
        self.seed = check_int("seed", seed, low=0)
        self.root, self.batch_size, self.eval_batch_size = options.root, options.batch_size, options.eval_batch_size
        self.val_size, self.split_seed, self.download = options.val_size, options.split_seed, options.download
        self.drop_last, self.shuffle, self.normalize = options.drop_last, options.shuffle, options.normalize
        self.augment = options.augment
        if self.channels_known is not None:
            check_normalize_channels(self.normalize, self.channels_known, f"data={self.name!r}")
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
        """Augmentation applied to training batches (never val / test / calibration):
        ``data.augment=true`` is a random crop (pad 4) and horizontal flip of images."""
        return random_crop_flip if self.augment else None

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
        self.check_preprocessing(x_train)
        self.mean, self.std = self.statistics(x_train)
        norm = lambda t: ((t - self.mean) / self.std).contiguous()  # noqa: E731
        dev = self.device
        self.x_train, self.y_train = norm(x_train).to(dev), y_train.to(dev)
        self.x_val, self.y_val = norm(x[self.val_indices]).to(dev), y[self.val_indices].to(dev)
        self.x_test, self.y_test = norm(x_test).to(dev), y_test.to(dev)
        self._ready = True

    def require_files(self, missing: Sequence[str], label: str, folder: Path, layout: str) -> None:
        """DataNotFoundError naming the ``missing`` files of ``label``, the ``folder`` they were
        looked for in and how to get them (a ``data.root`` holding ``layout``, or a download)."""
        if missing:
            raise DataNotFoundError(
                f"data={self.name!r}: {label} files not found under root {str(self.root)!r}: expected "
                f"{', '.join(missing)} in {folder}. Set data.root=... to a folder holding {layout}, or pass "
                f"data.download=true")

    def check_preprocessing(self, x_train: Tensor) -> None:
        """ConfigError (before any training) when data.normalize / data.augment do not fit
        the loaded inputs: mean/std per channel, imagenet on RGB, augmentation on images."""
        where = f"data={self.name!r}"
        if x_train.dim() == 4:
            check_normalize_channels(self.normalize, int(x_train.shape[1]), where)
        else:
            if self.normalize == "imagenet":
                raise ConfigError(f"data.normalize='imagenet' needs images; {where} has inputs of shape "
                                  f"{tuple(x_train.shape[1:])}")
            if isinstance(self.normalize, dict) and len(self.normalize["mean"]) != 1:
                raise ConfigError(f"data.normalize: {where} has non-image inputs of shape {tuple(x_train.shape[1:])}: "
                                  f"give one mean and one std, not {len(self.normalize['mean'])}")
            if self.augment:
                raise ConfigError(f"data.augment=true crops and flips images; {where} has inputs of shape "
                                  f"{tuple(x_train.shape[1:])}")

    def statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The ``(mean, std)`` of ``data.normalize`` for training inputs ``x``: per channel
        ``(C, 1, 1)`` for images, one scalar pair otherwise (keeps the shape of 1-D signals)."""
        mean, std = train_statistics(x)
        if self.normalize == "train":
            return mean, std
        if self.normalize == "none":
            return torch.zeros_like(mean), torch.ones_like(std)
        values = (IMAGENET_MEAN, IMAGENET_STD) if self.normalize == "imagenet" else \
            (self.normalize["mean"], self.normalize["std"])  # type: ignore[index]
        return (torch.tensor(values[0], dtype=x.dtype).view(mean.shape),
                torch.tensor(values[1], dtype=x.dtype).view(std.shape))

    def preprocessing(self) -> dict[str, Any]:
        """What the model receives (after setup): for config.json, each row and exports.

        ``normalize`` (the choice: a name or ``explicit``), ``mean`` / ``std`` (the numbers,
        per channel), ``input_dtype`` / ``input_range`` / ``input_shape`` of the raw inputs
        (what an exported model takes), ``augment``.
        """
        self._require_setup()
        return {"normalize": self.normalize if isinstance(self.normalize, str) else "explicit",
                "mean": [float(v) for v in self.mean.flatten()], "std": [float(v) for v in self.std.flatten()],
                "input_dtype": "float32", "input_range": list(self.input_range) if self.input_range else None,
                "input_shape": list(self.input_shape), "augment": bool(self.augment)}

    def preprocess_module(self) -> nn.Module:
        """The preprocessing as a module (raw inputs → what the model receives)."""
        self._require_setup()
        return Standardize(self.mean.cpu(), self.std.cpu())

    def raw_split(self, split: str) -> Batch:
        """``(x, y)`` of ``split`` (train / val / test) as :meth:`load` yields them, before
        preprocessing (on the CPU): what an exported model takes. Loads the files again."""
        self._require_setup()
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        x, y, x_test, y_test = self.load()
        if split == "test":
            return x_test, y_test
        idx = self.train_indices if split == "train" else self.val_indices
        return x[idx], y[idx]

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
        """Training batches (``batch_size``), reshuffled every epoch from ``seed`` (``shuffle``;
        otherwise in the training split's order every epoch)."""
        self._require_setup()
        return TensorLoader(self.x_train, self.y_train, self.batch_size, shuffle=self.shuffle,
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
