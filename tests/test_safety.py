"""Nothing runs from data files: the restricted unpickler and the CIFAR-10 MD5 check."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from prunebench.data import build_datamodule
from prunebench.data import cifar
from prunebench.errors import CorruptFileError
from prunebench.safe_unpickle import UnsafePickleError, loads_plain


class _Evil:
    """Pickles to a call of os.system that creates ``marker`` when unpickled by pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def _write_stand_ins(root: Path, evil: object | None = None) -> Path:
    folder = root / cifar.FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(cifar.TRAIN_FILES + cifar.TEST_FILES):
        d = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [(i + j) % 10 for j in range(4)],
             "batch_label": "stand-in", "filenames": [b"a.png"] * 4}
        if evil is not None and name == "data_batch_1":
            d["labels"] = evil  # type: ignore[assignment]
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    return folder


def test_malicious_cifar_batch_raises_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _write_stand_ins(tmp_path / "data", evil=_Evil(marker))
    pickle.loads(pickle.dumps(_Evil(tmp_path / "control")))  # the payload works under plain pickle
    assert (tmp_path / "control").exists()
    dm = build_datamodule("cifar10", root=tmp_path / "data", val_size=4, checksum=False)
    with pytest.raises(CorruptFileError, match=r"data_batch_1 is not a CIFAR-10 batch file: refusing global "
                                               r"(posix|os|nt)\.system"):
        dm.setup("fit")
    assert not marker.exists()


def test_plain_unpickler_reads_numpy_arrays_and_plain_types() -> None:
    value = {"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3], "b": b"x", "s": "y", "n": 7}
    for protocol in (2, 3, 4):
        got = loads_plain(pickle.dumps(value, protocol=protocol))
        assert got["labels"] == [1, 2, 3] and got["b"] == b"x" and got["s"] == "y" and got["n"] == 7
        assert got["data"].dtype == np.uint8 and got["data"].shape == (3, 4)
        assert got["data"].tolist() == value["data"].tolist()
    with pytest.raises(UnsafePickleError, match="array of Python objects"):
        loads_plain(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refusing global collections\.OrderedDict"):
        loads_plain(pickle.dumps(__import__("collections").OrderedDict(a=1), protocol=2))


def test_cifar_md5_mismatch_is_a_clear_error_and_match_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _write_stand_ins(tmp_path)
    with pytest.raises(CorruptFileError, match=r"data_batch_1 is not the published CIFAR-10 file: its MD5 is "
                                               r"[0-9a-f]{32}, expected c99cafc152244af753f735de768cd75f"):
        build_datamodule("cifar10", root=tmp_path, val_size=4).setup("fit")
    sums = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in cifar.MD5}
    monkeypatch.setattr(cifar, "MD5", sums)  # as if these were the published files
    dm = build_datamodule("cifar10", root=tmp_path, val_size=4)
    dm.setup("fit")
    assert dm.sizes == {"train": 16, "val": 4, "test": 4}
