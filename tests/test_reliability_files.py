"""Files that fail say so plainly; results are created with the umask's modes (issue 12, items 9, 14).

* Corrupt or empty checkpoints, masks and pruned-model files: a message naming the file
  that never repeats torch's advice to load with ``weights_only=False``, and "empty" for
  a 0-byte file (not "is corrupt ()").
* ``check_writable_root``: a results root that is a file, under a file, or not writable.
* Atomic writes and lock files honour the umask (0644 under 022, 0664 under 002).
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

from prunebench.engine.dense import check_loadable, load_state
from prunebench.errors import ConfigError, CorruptFileError
from prunebench.pruning.mask import Mask
from prunebench.pruning.structured.io import read_pruned
from prunebench.results.lock import RunLock, file_lock
from prunebench.results.store import atomic_write_text, check_writable_root, write_table


class _Obj:  # a pickled class: weights_only loading refuses it
    pass


def _bad_files(tmp: Path) -> dict[str, Path]:
    files = {"empty": tmp / "empty.pt", "garbage": tmp / "garbage.pt", "truncated": tmp / "cut.pt",
             "objects": tmp / "obj.pt"}
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(b"garbage" * 20)
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf)
    files["truncated"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    torch.save({"w": _Obj()}, files["objects"])
    return files


LOADERS = {
    "load_state": lambda p: load_state(p, "dense checkpoint"),
    "check_loadable": lambda p: check_loadable(nn.Linear(2, 2), p, "level 1 checkpoint"),
    "Mask.load": lambda p: Mask.load(p),
    "read_pruned": lambda p: read_pruned(p),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated", "objects"])
def test_corrupt_file_messages(tmp_path: Path, loader: str, kind: str) -> None:
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(CorruptFileError) as info:
        LOADERS[loader](path)
    msg = str(info.value)
    assert str(path) in msg
    assert "weights_only" not in msg and "arbitrary code" not in msg and "()" not in msg
    assert len(msg) < 400, msg
    expected = {"empty": "is empty (0 bytes)", "garbage": "not a torch file",
                "truncated": "truncated or not a torch file", "objects": "holds Python objects"}[kind]
    assert expected in msg
    assert info.value.__cause__ is None  # torch's own text does not come back through the chain


def test_root_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "results.txt"
    f.write_text("x")
    with pytest.raises(ConfigError, match=r"paths.root='.*results.txt' is a file, not a folder"):
        check_writable_root(f)
    with pytest.raises(ConfigError, match=r"cannot be made: .*results.txt is a file"):
        check_writable_root(f / "sub" / "deeper")


def test_root_with_runs_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("x")
    with pytest.raises(ConfigError, match=r"runs is a file, not a folder \(runs/ inside it\)"):
        check_writable_root(tmp_path)


def test_root_in_an_unwritable_place() -> None:
    # /proc refuses new entries even to root (permission bits do not stop root)
    with pytest.raises(ConfigError, match=r"paths.root='/proc/prunebench-results' is not writable"):
        check_writable_root("/proc/prunebench-results")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_root_without_write_permission(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="is not writable"):
            check_writable_root(ro / "results")
    finally:
        ro.chmod(0o755)


def test_writable_root_leaves_nothing_behind(tmp_path: Path) -> None:
    assert check_writable_root(tmp_path / "new" / "root") == (tmp_path / "new" / "root").absolute()
    assert list(tmp_path.iterdir()) == []  # the probe made nothing, not even the root
    (tmp_path / "runs").mkdir()
    check_writable_root(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask, want", [(0o022, 0o644), (0o002, 0o664)])
def test_results_files_follow_the_umask(tmp_path: Path, umask: int, want: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "DONE", "x")
        write_table(tmp_path / "rows.csv", [{"run_id": "r", "level": 0, "status": "ok"}])
        Mask({"w": torch.ones(3)}).save(tmp_path / "mask.pt")
        with file_lock(tmp_path / "cache.lock"):
            pass
        lock = RunLock(tmp_path / "run")
        lock.acquire()
        try:
            assert _mode(lock.path) == want
        finally:
            lock.release()
    finally:
        os.umask(old)
    for name in ("DONE", "rows.csv", "mask.pt", "cache.lock"):
        assert _mode(tmp_path / name) == want, name
