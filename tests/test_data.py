"""Data modules on small data the tests write themselves (IDX files, CIFAR batches, MNIST-1D)."""

from __future__ import annotations

import gzip
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from prunebench.data import DATASETS, TensorDataModule, TensorLoader, build_datamodule, list_datasets
from prunebench.data import mnist1d as mnist1d_mod
from prunebench.data.cifar import random_crop_flip
from prunebench.errors import ConfigError, CorruptFileError, DataNotFoundError

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


# ---- helpers --------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, magic: int, gz: bool = True) -> Path:
    """An IDX file as distributed: big-endian magic and dims, then uint8 data."""
    raw = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw += array.astype(np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 50, n_test: int = 20, gz: bool = True) -> dict:
    """Tiny MNIST-format files under ``root/<folder>/raw``; returns the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {
        "train": (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10),
        "t10k": (rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test)),
    }
    raw = root / folder / "raw"
    for split, (x, y) in arrays.items():
        write_idx(raw / f"{split}-images-idx3-ubyte", x, 2051, gz)
        write_idx(raw / f"{split}-labels-idx1-ubyte", y, 2049, gz)
    return arrays


def ready(name: str, **kwargs) -> TensorDataModule:
    dm = build_datamodule(name, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def synthetic(**kwargs) -> TensorDataModule:
    opts = dict(input_shape=[8], n_train=64, n_test=16, val_size=16, batch_size=8)
    return ready("synthetic", **{**opts, **kwargs})


# ---- registry, names and validation ---------------------------------------------------------


def test_registry_and_unknown_name() -> None:
    assert list_datasets(external=False) == ["cifar10", "fashion_mnist", "mnist", "mnist1d", "shakespeare",
                                             "synthetic"]
    assert list_datasets() == ["cifar10", "custom", "fashion_mnist", "imagefolder", "mnist", "mnist1d", "shakespeare",
                               "synthetic", "torchvision"]
    assert list_datasets("*mnist") == ["fashion_mnist", "mnist"]
    with pytest.raises(ConfigError, match=r"data='imagenet' is not a known name; valid: cifar10, .*mnist1d"):
        build_datamodule("imagenet")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"val_size": -1}, r"data\.val_size=-1 "),
        ({"val_size": 1.5}, r"data\.val_size=1\.5 "),
        ({"val_size": 0.0}, r"data\.val_size=0\.0 "),
        ({"val_size": "10%"}, r"data\.val_size='10%' "),
        ({"val_size": True}, r"data\.val_size=True "),
        ({"batch_size": 0}, r"data\.batch_size=0 "),
        ({"eval_batch_size": 2.5}, r"data\.eval_batch_size=2\.5 "),
        ({"download": "yes"}, r"data\.download='yes' "),
        ({"split_seed": -3}, r"data\.split_seed=-3 "),
        ({"batchsize": 10}, r"data\.batchsize is not an option of data='mnist'; valid: .*batch_size"),
    ],
)
def test_bad_kwargs_name_the_key(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        build_datamodule("mnist", **kwargs)


def test_val_size_larger_than_training_set() -> None:
    with pytest.raises(ConfigError, match=r"data\.val_size=64 leaves no training data"):
        synthetic(val_size=64)


@pytest.mark.parametrize("name", list_datasets(external=False))
def test_every_dataset_has_a_valid_config(name: str, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    path = REPO / "conf" / "data" / f"{name}.yaml"
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert cfg.pop("name") == name and cfg.pop("root") == "${paths.data_dir}"
    dm = build_datamodule(name, root=tmp_path, **cfg)  # every key is a known, valid option
    assert type(dm) is DATASETS.get(name)


# ---- MNIST / Fashion-MNIST from IDX files ---------------------------------------------------


@pytest.mark.parametrize(("name", "folder", "gz"), [("mnist", "MNIST", True), ("fashion_mnist", "FashionMNIST", False)])
def test_idx_loading(tmp_path: Path, name: str, folder: str, gz: bool) -> None:
    arrays = write_mnist(tmp_path, folder, gz=gz)
    dm = ready(name, root=tmp_path, val_size=10, batch_size=8, eval_batch_size=7)
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10
    assert dm.sizes == {"train": 40, "val": 10, "test": 20}
    for x, y in ((dm.x_train, dm.y_train), (dm.x_val, dm.y_val), (dm.x_test, dm.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (1, 28, 28)
    # Labels follow the files: test in file order, train/val by their recorded indices.
    x_tr, y_tr = arrays["train"]
    assert dm.y_test.tolist() == arrays["t10k"][1].tolist()
    assert dm.y_train.tolist() == y_tr[dm.train_indices.numpy()].tolist()
    assert dm.y_val.tolist() == y_tr[dm.val_indices.numpy()].tolist()
    # Standardised with training-split statistics, the same map for every split.
    assert abs(dm.x_train.mean().item()) < 1e-5 and dm.x_train.std().item() == pytest.approx(1.0, abs=1e-3)
    pixels = torch.from_numpy(x_tr[dm.train_indices.numpy()]).float() / 255
    assert dm.mean.item() == pytest.approx(pixels.mean().item(), abs=1e-5)
    expected_test = (torch.from_numpy(arrays["t10k"][0]).float() / 255 - dm.mean) / dm.std
    assert torch.allclose(dm.x_test[:, 0], expected_test, atol=1e-5)
    # Loaders: batch sizes, and a test pass in file order.
    assert [len(y) for _, y in dm.test_dataloader()] == [7, 7, 6]
    assert len(dm.train_dataloader()) == 5
    assert torch.cat([y for _, y in dm.test_dataloader()]).tolist() == dm.y_test.tolist()
    dm.setup("fit")  # idempotent
    assert dm.sizes["train"] == 40


def test_missing_files_say_where_and_how(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    dm = build_datamodule("mnist", root=root)
    with pytest.raises(DataNotFoundError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert str(root) in msg and "data.download" in msg and "data.root" in msg
    assert "train-images-idx3-ubyte" in msg and "../shared/data" in msg
    assert isinstance(err.value, ConfigError)
    with pytest.raises(DataNotFoundError, match="data.download"):
        build_datamodule("fashion_mnist", root=root).setup("fit")  # setup alone also checks
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        build_datamodule("cifar10", root=root).setup("fit")


def test_corrupt_idx_files_are_named(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    # Truncated data (header promises 20 images).
    bad = write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((20, 28, 28)), 2051)
    bad.write_bytes(gzip.compress(gzip.decompress(bad.read_bytes())[:-100]))
    with pytest.raises(CorruptFileError, match=f"{bad}.*truncated"):
        ready("mnist", root=tmp_path, val_size=5)
    # Labels written where images belong: wrong magic.
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros(20), 2049)
    with pytest.raises(CorruptFileError, match=f"{bad}.*magic number 2049, expected 2051"):
        ready("mnist", root=tmp_path, val_size=5)
    # A gzip stream cut short.
    good = write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((20, 28, 28)), 2051).read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptFileError, match=str(bad)):
        ready("mnist", root=tmp_path, val_size=5)


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason=f"no MNIST copy at {SHARED_DATA}")
def test_real_mnist_from_shared_copy() -> None:
    dm = ready("mnist", root=SHARED_DATA)  # read-only folder: nothing is written
    assert dm.sizes == {"train": 55000, "val": 5000, "test": 10000}
    assert dm.input_shape == (1, 28, 28)
    assert dm.mean.item() == pytest.approx(0.1307, abs=2e-3) and dm.std.item() == pytest.approx(0.3081, abs=2e-3)
    assert torch.bincount(dm.y_test).tolist()[:3] == [980, 1135, 1032]


# ---- MNIST-1D --------------------------------------------------------------------------------


def test_mnist1d_generates_once_and_leaves_global_rngs_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.random.seed(123)
    random.seed(123)
    np_state, py_state = np.random.get_state(), random.getstate()
    dm = ready("mnist1d", root=tmp_path, num_samples=200, val_size=0.25, batch_size=30)
    after = np.random.get_state()
    assert np_state[0] == after[0] and np.array_equal(np_state[1], after[1]) and np_state[2:] == after[2:]
    assert random.getstate() == py_state
    assert dm.input_shape == (40,) and dm.num_classes == 10
    assert dm.sizes == {"train": 120, "val": 40, "test": 40}
    assert set(dm.y_test.tolist()) <= set(range(10)) and len(set(dm.y_train.tolist())) == 10

    (cache,) = (tmp_path / "mnist1d").glob("*.npz")
    mtime = cache.stat().st_mtime_ns
    monkeypatch.setattr(mnist1d_mod, "generate", lambda args: pytest.fail("regenerated despite the cache"))
    again = ready("mnist1d", root=tmp_path, num_samples=200, val_size=0.25, seed=5)
    assert cache.stat().st_mtime_ns == mtime and not list((tmp_path / "mnist1d").glob("*.tmp"))
    assert torch.equal(again.x_test, dm.x_test) and torch.equal(again.val_indices, dm.val_indices)
    monkeypatch.undo()

    # A corrupt cache file is regenerated (same data) and replaced.
    cache.write_bytes(b"not an npz file")
    with pytest.warns(UserWarning, match="corrupt"):
        fresh = ready("mnist1d", root=tmp_path, num_samples=200, val_size=0.25)
    assert torch.equal(fresh.x_train, dm.x_train)
    assert np.load(cache)["x"].shape == (160, 40)


def test_mnist1d_default_sizes_and_cache_key() -> None:
    a = mnist1d_mod.cache_path(Path("r"), mnist1d_mod.generation_args(5000))
    b = mnist1d_mod.cache_path(Path("r"), mnist1d_mod.generation_args(200))
    assert a != b and a.parent == Path("r/mnist1d")


# ---- TensorLoader ----------------------------------------------------------------------------


def test_tensor_loader_epochs() -> None:
    x = torch.arange(10).float().unsqueeze(1)
    y = torch.arange(10)
    loader = TensorLoader(x, y, batch_size=4, shuffle=True, seed=3)
    assert len(loader) == 3
    orders = []
    for _ in range(3):
        batches = list(loader)
        assert [len(b[1]) for b in batches] == [4, 4, 2]
        order = torch.cat([b[1] for b in batches])
        assert sorted(order.tolist()) == list(range(10))  # every sample exactly once
        assert all(torch.equal(bx[:, 0].long(), by) for bx, by in batches)  # x and y stay paired
        orders.append(order.tolist())
    assert orders[0] != orders[1] != orders[2]  # reshuffled every epoch
    same = TensorLoader(x, y, batch_size=4, shuffle=True, seed=3)
    assert [torch.cat([b[1] for b in same]).tolist() for _ in range(3)] == orders  # reproducible
    other = TensorLoader(x, y, batch_size=4, shuffle=True, seed=4)
    assert torch.cat([b[1] for b in other]).tolist() != orders[0]
    same.set_epoch(1)
    assert torch.cat([b[1] for b in same]).tolist() == orders[1]

    dropped = TensorLoader(x, y, batch_size=4, shuffle=True, drop_last=True)
    assert len(dropped) == 2 and [len(b[1]) for b in dropped] == [4, 4]
    plain = TensorLoader(x, y, batch_size=3)
    assert torch.cat([b[1] for b in plain]).tolist() == list(range(10)) and len(plain) == 4


def test_training_loader_uses_seed_and_drop_last() -> None:
    def first_epoch(dm: TensorDataModule) -> list[int]:
        return torch.cat([y for _, y in dm.train_dataloader()]).tolist()

    a, b = synthetic(seed=0, drop_last=True, batch_size=10), synthetic(seed=1, drop_last=True, batch_size=10)
    assert len(a.train_dataloader()) == 4 and all(len(y) == 10 for _, y in a.train_dataloader())
    assert first_epoch(a) == first_epoch(synthetic(seed=0, drop_last=True, batch_size=10))
    order_a = [x[:, 0].tolist() for x, _ in a.train_dataloader()]
    order_b = [x[:, 0].tolist() for x, _ in b.train_dataloader()]
    assert order_a != order_b


def test_shuffle_false_serves_the_split_in_order_every_epoch() -> None:
    dm = synthetic(seed=3, shuffle=False, batch_size=10)
    loader = dm.train_dataloader()
    first = torch.cat([x for x, _ in loader])
    assert torch.equal(first, dm.x_train)  # the split's own order, batch after batch
    assert torch.equal(torch.cat([x for x, _ in loader]), first)  # and again the next epoch
    assert [len(y) for _, y in loader] == [10, 10, 10, 10, 8]
    shuffled = torch.cat([x for x, _ in synthetic(seed=3, batch_size=10).train_dataloader()])
    assert not torch.equal(shuffled, first)  # the default reshuffles
    assert sorted(map(tuple, shuffled.tolist())) == sorted(map(tuple, first.tolist()))
    with pytest.raises(ConfigError, match=r"data.shuffle='no' must be true or false"):
        synthetic(shuffle="no")


def test_val_size_zero_trains_on_the_whole_training_set() -> None:
    dm = synthetic(val_size=0)
    assert dm.sizes == {"train": 64, "val": 0, "test": 16}
    assert torch.equal(dm.train_indices, torch.arange(64))  # in the file's order
    assert len(dm.val_dataloader()) == 0 and list(dm.val_dataloader()) == []


def test_data_sets_share_one_options_object() -> None:
    import inspect

    from prunebench.data import MNIST1D, Synthetic
    from prunebench.data.base import DataOptions

    sig = inspect.signature(MNIST1D).parameters  # the common options with MNIST-1D's defaults, and its own
    assert (sig["batch_size"].default, sig["val_size"].default, sig["shuffle"].default) == (100, 500, True)
    assert sig["num_samples"].default == 5000 and "augment" not in sig and "options" not in sig
    assert inspect.signature(DATASETS.get("imagefolder")).parameters["root"].default is None
    opts = DataOptions.parse({"batch_size": 7, "shuffle": False}, defaults={"val_size": 16})
    dm = Synthetic(options=opts, input_shape=[8], n_train=64, n_test=16)
    assert dm.options is opts and (dm.batch_size, dm.shuffle, dm.val_size, dm.eval_batch_size) == (7, False, 16, 1000)
    with pytest.raises(ConfigError, match=r"data.augment is not an option of data='mnist1d'; valid: batch_size, "
                                          r"download, drop_last, eval_batch_size, normalize, root, shuffle, "
                                          r"split_seed, val_size"):
        MNIST1D(augment=True)
    with pytest.raises(ConfigError, match=r"data.batch_size=0 is out of range; expected an integer >= 1"):
        DataOptions.parse({"batch_size": 0})
    with pytest.raises(TypeError, match=r"either as options= or as keywords, not both: \['batch_size'\]"):
        Synthetic(options=opts, batch_size=3)


# ---- splits and calibration batches -----------------------------------------------------------


def test_val_split_is_disjoint_and_shared_across_seeds() -> None:
    a, b = synthetic(seed=0), synthetic(seed=7)
    assert torch.equal(a.val_indices, b.val_indices) and torch.equal(a.x_val, b.x_val)
    train, val = set(a.train_indices.tolist()), set(a.val_indices.tolist())
    assert not train & val and train | val == set(range(64)) and len(val) == 16
    rows = lambda t: {tuple(r) for r in t.tolist()}  # noqa: E731
    assert not rows(a.x_train) & rows(a.x_val)
    c = synthetic(split_seed=1)
    assert not torch.equal(a.val_indices, c.val_indices)
    assert synthetic(val_size=0.25).sizes == {"train": 48, "val": 16, "test": 16}


def test_calibration_batches_deterministic_from_training_split() -> None:
    dm = synthetic(seed=2)
    batches = dm.calibration_batches(3)
    assert len(batches) == 3 and all(x.shape == (8, 8) and y.shape == (8,) for x, y in batches)
    again = synthetic(seed=2).calibration_batches(3)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(batches, again))
    list(dm.train_dataloader())  # training epochs do not shift the calibration batches
    assert torch.equal(dm.calibration_batches(3)[0][0], batches[0][0])
    rows = lambda t: {tuple(r) for r in t.tolist()}  # noqa: E731
    drawn = rows(torch.cat([x for x, _ in batches]))
    assert drawn <= rows(dm.x_train) and not drawn & (rows(dm.x_val) | rows(dm.x_test))
    assert [len(y) for _, y in dm.calibration_batches(2, batch_size=5)] == [5, 5]
    assert sum(len(y) for _, y in dm.calibration_batches(100)) == 48  # capped at the split
    assert dm.calibration_batches(0) == []


# ---- synthetic ---------------------------------------------------------------------------------


def test_synthetic_teacher_labels() -> None:
    dm = synthetic(n_train=512, n_test=128, val_size=64)
    counts = torch.bincount(dm.y_train, minlength=10)
    assert (counts > 0).sum() >= 8 and counts.max() < 0.3 * len(dm.y_train)  # not constant, roughly balanced
    again = synthetic(n_train=512, n_test=128, val_size=64, seed=9)  # the training seed does not matter
    assert torch.equal(dm.x_train, again.x_train) and torch.equal(dm.y_test, again.y_test)
    other = synthetic(n_train=512, n_test=128, val_size=64, teacher_seed=1)
    assert not torch.equal(dm.y_test, other.y_test)
    img = synthetic(input_shape=[3, 8, 8], num_classes=4, n_train=32, val_size=8)
    assert img.input_shape == (3, 8, 8) and img.num_classes == 4 and img.mean.shape == (3, 1, 1)
    with pytest.raises(ConfigError, match=r"data\.input_shape"):
        build_datamodule("synthetic", input_shape=[3, 0, 2])


@pytest.mark.integration
def test_synthetic_is_learnable() -> None:
    """A linear student beats chance (10 %) by far: accuracy on this data means something."""
    dm = synthetic(input_shape=[20], n_train=1024, n_test=512, val_size=128, batch_size=64)
    # Plain SGD on a softmax regression (torch.optim's first step alone costs ~1 s of imports).
    w, b = torch.zeros(20, 10, requires_grad=True), torch.zeros(10, requires_grad=True)
    for _ in range(10):
        for x, y in dm.train_dataloader():
            gw, gb = torch.autograd.grad(torch.nn.functional.cross_entropy(x @ w + b, y), (w, b))
            with torch.no_grad():
                w -= 0.5 * gw
                b -= 0.5 * gb
    with torch.no_grad():
        acc = ((dm.x_test @ w + b).argmax(1) == dm.y_test).float().mean().item()
    assert acc > 0.4


# ---- CIFAR-10 (tiny stand-in files) and augmentation --------------------------------------------


def write_cifar(root: Path, per_file: int = 4) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        d = {"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8), "labels": [(i + j) % 10 for j in range(per_file)]}
        (folder / name).write_bytes(pickle.dumps(d))


def test_cifar10_loading_and_augmentation(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    dm = ready("cifar10", root=tmp_path, val_size=4, batch_size=16, augment=True, checksum=False)
    assert dm.input_shape == (3, 32, 32) and dm.sizes == {"train": 16, "val": 4, "test": 4}
    assert dm.mean.shape == (3, 1, 1)
    loader = dm.train_dataloader()
    perm = loader.order(0)
    ((x, y),) = list(loader)
    assert x.shape == (16, 3, 32, 32) and torch.equal(y, dm.y_train[perm])  # pairing kept
    assert not torch.equal(x, dm.x_train[perm])  # training batches are augmented
    ((xv, _),) = list(dm.val_dataloader())
    assert torch.equal(xv, dm.x_val)  # validation never is
    calib = dm.calibration_batches(1)[0][0]
    assert {tuple(r) for r in calib.flatten(1).tolist()} <= {tuple(r) for r in dm.x_train.flatten(1).tolist()}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(CorruptFileError, match="test_batch"):
        ready("cifar10", root=tmp_path, val_size=4, checksum=False)


def test_random_crop_flip_is_a_shifted_or_flipped_crop() -> None:
    x = torch.randn(6, 2, 5, 5)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        candidates = [padded[i, :, dy : dy + 5, dx : dx + 5] for dy in range(5) for dx in range(5)]
        candidates += [c.flip(-1) for c in candidates]
        assert any(torch.equal(out[i], c) for c in candidates)
    again = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert torch.equal(out, again)


# ---- devices ------------------------------------------------------------------------------------


def test_to_device_returns_self_and_loaders_follow() -> None:
    dm = build_datamodule("synthetic", input_shape=[4], n_train=32, n_test=8, val_size=8)
    assert dm.to("cpu") is dm  # before setup: remembered, applied at setup
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.device.type == "cpu" and dm.input_shape == (4,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_loaders_yield_on_device(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    dm = ready("cifar10", root=tmp_path, val_size=4, batch_size=8, augment=True, checksum=False).to("cuda")
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        for x, y in loader:
            assert x.is_cuda and y.is_cuda
    assert all(x.is_cuda for x, _ in dm.calibration_batches(2))
    cpu = ready("cifar10", root=tmp_path, val_size=4, batch_size=8, checksum=False)
    gpu = ready("cifar10", root=tmp_path, val_size=4, batch_size=8, checksum=False).to("cuda")
    order_cpu = torch.cat([y for _, y in cpu.train_dataloader()])
    order_gpu = torch.cat([y for _, y in gpu.train_dataloader()]).cpu()
    assert torch.equal(order_cpu, order_gpu)  # the same shuffle on either device
