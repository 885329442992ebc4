"""data=imagefolder / torchvision / custom on data the tests make (issue 11)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from prunebench.data import LoaderDataModule, build_datamodule, list_datasets
from prunebench.errors import ConfigError, DataNotFoundError

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "owl": (30, 30, 200)}


def write_tree(root: Path, per_class: int = 6, size: int = 8, splits: tuple[str, ...] = ("",)) -> Path:
    """PNG class folders (one colour per class, noisy) under root/<split>/<class>/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for cls, rgb in COLOURS.items():
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = np.clip(np.array(rgb) + rng.integers(-20, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


def test_registered() -> None:
    assert {"imagefolder", "torchvision", "custom"} <= set(list_datasets())


def test_imagefolder_single_folder_seeded_split(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "imgs", per_class=10)
    dm = build_datamodule("imagefolder", seed=0, root=root, val_size=0.2, test_size=0.2)
    dm.setup()
    assert dm.num_classes == 3 and dm.classes == ["cat", "dog", "owl"] and dm.input_shape == (3, 8, 8)
    assert dm.sizes == {"train": 19, "val": 5, "test": 6}
    again = build_datamodule("imagefolder", seed=5, root=root, val_size=0.2, test_size=0.2)
    again.setup()
    assert torch.equal(again.y_test, dm.y_test) and torch.equal(again.x_val, dm.x_val)  # split_seed only
    other = build_datamodule("imagefolder", root=root, val_size=0.2, test_size=0.2, split_seed=1)
    other.setup()
    assert not torch.equal(other.x_test, dm.x_test)
    # standardised with training statistics; a colour class is told apart by its mean
    assert dm.x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, 8, 8) and y.dtype == torch.int64 and int(y.max()) <= 2


def test_imagefolder_split_folders_resize_grey(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "imgs", per_class=4, size=10, splits=("train", "val", "test"))
    dm = build_datamodule("imagefolder", root=root, image_size=[6, 5], channels=1, normalize="none")
    dm.setup()
    assert dm.input_shape == (1, 6, 5) and dm.sizes == {"train": 12, "val": 12, "test": 12}
    assert 0.0 <= float(dm.x_train.min()) and float(dm.x_train.max()) <= 1.0  # normalize=none
    assert len(dm.calibration_batches(2, batch_size=4)) == 2


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.root=None: set data.root="):
        build_datamodule("imagefolder", root=None)
    with pytest.raises(DataNotFoundError, match="is not a folder"):
        build_datamodule("imagefolder", root=tmp_path / "none").setup()
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="no class folders with images"):
        build_datamodule("imagefolder", root=tmp_path / "empty").setup()
    with pytest.raises(ConfigError, match="data.normalize='z' is not a known choice; valid: train .*, none .*, imagenet"):
        build_datamodule("imagefolder", root=tmp_path, normalize="z")
    root = write_tree(tmp_path / "mixed", per_class=3)
    from PIL import Image

    Image.new("RGB", (9, 9)).save(root / "cat" / "big.png")
    with pytest.raises(ConfigError, match=r"images differ in size .*set data.image_size=\[H, W\]"):
        build_datamodule("imagefolder", root=root).setup()
    (root / "cat" / "big.png").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="big.png is not a readable image"):
        build_datamodule("imagefolder", root=root).setup()
    (root / "cat" / "big.png").unlink()
    with pytest.raises(ConfigError, match="over data.max_memory_mb=1; .* data.lazy=true"):
        build_datamodule("imagefolder", root=root, image_size=512, max_memory_mb=1, lazy=False).setup()


def test_imagefolder_streams_when_too_large_or_asked(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "imgs", per_class=4, size=10, splits=("train", "test"))
    auto = build_datamodule("imagefolder", root=root, max_memory_mb=1, image_size=300)
    assert isinstance(auto, LoaderDataModule)  # 24 images at 300x300 exceed 1 MB: streamed
    dm = build_datamodule("imagefolder", seed=1, root=root, lazy=True, image_size=6, batch_size=4, val_size=0.25)
    assert isinstance(dm, LoaderDataModule)
    dm.setup()
    assert dm.input_shape == (3, 6, 6) and dm.num_classes == 3 and dm.sizes == {"train": 9, "val": 3, "test": 12}
    mem = build_datamodule("imagefolder", root=root, image_size=6)
    mem.setup()
    x_lazy = torch.cat([x for x, _ in dm.test_dataloader()])
    y_lazy = torch.cat([y for _, y in dm.test_dataloader()])
    assert torch.equal(y_lazy, mem.y_test)  # the same test images in the same order ...
    assert x_lazy.shape == mem.x_test.shape  # ... decoded the same size (normalised from a sample)
    with pytest.raises(ConfigError, match="data.lazy='yes' must be null"):
        build_datamodule("imagefolder", root=root, lazy="yes")


def test_torchvision_dataset_class_offline() -> None:
    dm = build_datamodule("torchvision", dataset="FakeData", kwargs={"size": 40, "image_size": [3, 6, 6],
                                                                    "num_classes": 4})
    dm.setup()
    assert dm.input_shape == (3, 6, 6) and dm.num_classes == 4 and sum(dm.sizes.values()) == 40
    assert dm.sizes["test"] == 8  # test_size 0.2 carved off a class without train/test halves


def test_torchvision_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.dataset='Nope' is not a torchvision data set class; valid: .*CIFAR10"):
        build_datamodule("torchvision", dataset="Nope")
    with pytest.raises(DataNotFoundError, match="data.dataset='CIFAR100' not found under data.root=.*data.download=true"):
        build_datamodule("torchvision", dataset="CIFAR100", root=tmp_path).setup()


DATA_FILE = textwrap.dedent("""
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    class Blobs(pl.LightningDataModule):
        def __init__(self, n=60, label_offset=0, with_val=False, seed=None):
            super().__init__()
            self.n, self.label_offset, self.with_val, self.seed_seen = n, label_offset, with_val, seed
            self.num_classes = 3

        def setup(self, stage=None):
            g = torch.Generator().manual_seed(0)
            y = torch.arange(self.n) % 3
            x = 0.5 * torch.randn(self.n, 2, 5, generator=g) + 2 * y[:, None, None].float()
            self.train = TensorDataset(x, y + self.label_offset)
            self.val = TensorDataset(x[:9], y[:9])

        def train_dataloader(self):
            return DataLoader(self.train, batch_size=8, shuffle=True)

        def val_dataloader(self):
            if not self.with_val:
                return None
            return DataLoader(self.val, batch_size=8)

    def make(**kw):
        return Blobs(**kw)

    def not_dm():
        return [1, 2]

    def float_labels():
        dm = Blobs()
        dm.setup()
        dm.train = TensorDataset(dm.train.tensors[0], dm.train.tensors[1].float())
        dm.setup = lambda stage=None: None
        return dm
""")


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_data.py"
    path.write_text(DATA_FILE)
    return path


def test_custom_lightning_datamodule_adapted(data_file: Path) -> None:
    dm = build_datamodule("custom", seed=3, root="data", target=f"{data_file}:Blobs", val_size=0.2, test_size=0.1)
    assert isinstance(dm, LoaderDataModule) and dm.user.seed_seen == 3  # seed passed: the factory takes it
    dm.prepare_data()
    dm.setup("fit")
    assert dm.input_shape == (2, 5) and dm.num_classes == 3 and dm.batch_size == 8
    assert dm.sizes == {"train": 43, "val": 11, "test": 6}
    loader = dm.train_dataloader()
    first = [y.tolist() for _, y in loader]
    assert len(loader) == 6 and sum(map(len, first)) == 43
    assert [y.tolist() for _, y in loader] != first  # reshuffled per epoch ...
    loader.set_epoch(0)
    assert [y.tolist() for _, y in loader] == first  # ... from (seed, epoch)
    calib = dm.calibration_batches(2)
    assert len(calib) == 2 and calib[0][0].shape == (8, 2, 5)
    again = build_datamodule("custom", seed=3, target=f"{data_file}:make", val_size=0.2, test_size=0.1)
    again.setup()
    assert again.val_set.indices == dm.val_set.indices


def test_custom_given_val_split_is_used(data_file: Path) -> None:
    dm = build_datamodule("custom", target=f"{data_file}:make", with_val=True, test_size=6)
    dm.setup()
    assert dm.sizes == {"train": 54, "val": 9, "test": 6}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target": "{f}:make", "label_offset": 2}, "train labels range 2..4, outside 0..2 for num_classes=3"),
    ({"target": "{f}:not_dm"}, "returned a list, not a LightningDataModule"),
    ({"target": "{f}:float_labels"}, "train labels must be integer class indices"),
    ({"target": "{f}:make", "n": 2}, "cannot carve test"),
    ({"target": "{f}:make", "bogus": 1}, "raised TypeError"),
    ({"target": None}, "data.target=None must name a callable"),
])
def test_custom_errors_name_data_target(data_file: Path, kwargs: dict, message: str) -> None:
    kwargs = {k: (v.format(f=data_file) if isinstance(v, str) else v) for k, v in kwargs.items()}
    with pytest.raises(ConfigError) as err:
        dm = build_datamodule("custom", **kwargs)
        dm.setup()
    assert message in str(err.value) and "data.target=" in str(err.value)


def test_custom_returning_tensor_datamodule_is_used_as_is(tmp_path: Path) -> None:
    (tmp_path / "syn.py").write_text("from prunebench.data import Synthetic\n"
                                     "def make(seed):\n    return Synthetic(seed=seed, input_shape=[6], n_train=64, n_test=16, val_size=16)\n")
    dm = build_datamodule("custom", seed=2, target=f"{tmp_path}/syn.py:make")
    dm.setup()
    assert type(dm).__name__ == "Synthetic" and dm.seed == 2 and dm.input_shape == (6,)


def test_data_identity_follows_content(tmp_path: Path, data_file: Path) -> None:
    from prunebench.identity import data_identity

    a = write_tree(tmp_path / "a", per_class=2)
    b = write_tree(tmp_path / "b", per_class=2)
    ident = data_identity("imagefolder", {"root": str(a)})
    assert ident == data_identity("imagefolder", {"root": str(b)}) and len(ident["files_sha256"]) == 64
    (b / "cat" / "0.png").unlink()
    assert data_identity("imagefolder", {"root": str(b)}) != ident
    custom = data_identity("custom", {"target": f"{data_file}:make"})
    assert custom["target"] == "my_data.py:make" and len(custom["source_sha256"]) == 64
    assert data_identity("torchvision", {"dataset": "CIFAR10"}) == {}
