"""The run lock (issue 12, item 12): one launcher computes a run, others are told who does.

Unit tests use a lock file written by hand (a dead pid, an old heartbeat); the
integration tests use real processes: a holder in another process, a waiter that gets the
lock once it is released, and a lock left behind by a SIGKILLed process.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from prunebench.results.lock import LOCK, LockBusy, RunLock, is_stale, read_lock, run_lock


def _write_lock(run: Path, pid: int, host: str | None = None, age: float = 0.0) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    path = run / LOCK
    path.write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid, "owner": "prunebench test",
                                "token": "t0", "started": "2026-01-01T00:00:00+00:00"}))
    if age:
        t = time.time() - age
        os.utime(path, (t, t))
    return path


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:  # the child exits at once: its pid is then dead (reaped below)
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_acquire_release_and_busy(tmp_path: Path) -> None:
    with run_lock(tmp_path / "r", owner="first") as lock:
        info = read_lock(lock.path)
        assert info is not None and info.pid == os.getpid() and info.owner == "first"
        other = RunLock(tmp_path / "r")
        other._depth = 0
        # Another process would be refused; in this process a second handle nests.
        assert other.try_acquire() and other._depth == -1
        other.release()
        assert (tmp_path / "r" / LOCK).exists()
    assert not (tmp_path / "r" / LOCK).exists()


def test_live_owner_elsewhere_is_reported(tmp_path: Path) -> None:
    _write_lock(tmp_path / "r", pid=os.getppid(), host="other-node")  # fresh heartbeat, other host
    with pytest.raises(LockBusy) as info:
        with run_lock(tmp_path / "r"):
            pass
    assert info.value.holder is not None and info.value.holder.host == "other-node"
    assert f"pid {os.getppid()} on other-node (prunebench test)" in str(info.value)


def test_dead_owner_on_this_host_is_stale(tmp_path: Path) -> None:
    _write_lock(tmp_path / "r", pid=_dead_pid())
    with run_lock(tmp_path / "r", owner="second") as lock:
        assert lock.broke is not None and lock.broke.owner == "prunebench test"
        assert read_lock(lock.path).owner == "second"


def test_silent_owner_on_another_host_is_stale_after_the_timeout(tmp_path: Path) -> None:
    path = _write_lock(tmp_path / "r", pid=12345, host="other-node", age=50)
    assert not is_stale(read_lock(path), stale_after=60)
    assert is_stale(read_lock(path), stale_after=30)
    with pytest.raises(LockBusy):
        with run_lock(tmp_path / "r", stale_after=60, heartbeat=1):
            pass
    with run_lock(tmp_path / "r", stale_after=30, heartbeat=1) as lock:
        assert lock.broke is not None and lock.broke.host == "other-node"


def test_heartbeat_refreshes_the_lock(tmp_path: Path) -> None:
    with run_lock(tmp_path / "r", stale_after=2, heartbeat=0.2) as lock:
        t = time.time() - 100
        os.utime(lock.path, (t, t))
        time.sleep(0.6)
        assert read_lock(lock.path).age < 1.0 and not lock.lost


def test_wait_times_out_with_the_holder(tmp_path: Path) -> None:
    _write_lock(tmp_path / "r", pid=os.getppid(), host="other-node")
    seen = []
    t0 = time.monotonic()
    with pytest.raises(LockBusy, match="other-node"):
        RunLock(tmp_path / "r").acquire(wait=True, timeout=0.5, poll=0.1, on_wait=seen.append)
    assert 0.4 < time.monotonic() - t0 < 3 and seen and seen[0].host == "other-node"


# ---- several processes ----------------------------------------------------------------------
def _hold(run: str, ready, release, log: str) -> None:  # noqa: ANN001 - mp primitives
    with run_lock(run, owner="holder"):
        Path(log).write_text("held")
        ready.set()
        release.wait(30)


def _try(run: str, out) -> None:  # noqa: ANN001
    try:
        with run_lock(run, owner="second"):
            out.put("acquired")
    except LockBusy as exc:
        out.put(f"busy: {exc.holder.pid} {exc.holder.owner}")


def _wait(run: str, out) -> None:  # noqa: ANN001
    with run_lock(run, owner="waiter", wait=True, timeout=60, on_wait=lambda h: out.put(f"waiting for {h.owner}")):
        out.put("acquired")


@pytest.mark.integration
def test_two_processes(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    ready, release, out = ctx.Event(), ctx.Event(), ctx.Queue()
    run = str(tmp_path / "r")
    holder = ctx.Process(target=_hold, args=(run, ready, release, str(tmp_path / "log")))
    holder.start()
    try:
        assert ready.wait(60)
        trier = ctx.Process(target=_try, args=(run, out))
        trier.start()
        trier.join(60)
        assert out.get(timeout=5) == f"busy: {holder.pid} holder"
        waiter = ctx.Process(target=_wait, args=(run, out))
        waiter.start()
        assert out.get(timeout=60) == "waiting for holder"
        time.sleep(0.5)
        assert out.empty()  # still waiting
        release.set()
        waiter.join(60)
        assert out.get(timeout=5) == "acquired"
    finally:
        release.set()
        holder.join(10)
    assert not (tmp_path / "r" / LOCK).exists()


@pytest.mark.integration
def test_lock_of_a_killed_process_is_broken(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    ready, release, out = ctx.Event(), ctx.Event(), ctx.Queue()
    run = str(tmp_path / "r")
    holder = ctx.Process(target=_hold, args=(run, ready, release, str(tmp_path / "log")))
    holder.start()
    assert ready.wait(60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    info = read_lock(Path(run) / LOCK)
    assert info is not None and info.pid == holder.pid  # left behind
    trier = ctx.Process(target=_try, args=(run, out))
    trier.start()
    trier.join(60)
    assert out.get(timeout=5) == "acquired"
