"""Locks on the results root: a short ``flock`` for critical sections, a run lock for runs.

* :func:`file_lock` — an exclusive ``flock`` held while a block runs (dense cache, study
  bookkeeping). The kernel releases it when the holder dies; it blocks until free.
* :func:`run_lock` / :class:`RunLock` — "this run is being computed": a lock file
  ``<run folder>/LOCK`` created with ``O_EXCL`` holding host, pid, start time and a random
  token; its mtime is a heartbeat refreshed while held. A second launcher either fails
  at once with :class:`LockBusy` (which says who holds it) or waits. A lock is *stale*,
  and is broken, when its owner's pid is dead on this host, or when its heartbeat is
  older than ``stale_after`` seconds (owners on other hosts of a shared file system, as
  in the SLURM recipe). ``O_EXCL`` creation is atomic on local file systems and NFSv3+.

Both create their files with the process umask (0644 under umask 022, 0664 under 002).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK = "LOCK"
#: Seconds between heartbeats of a held run lock, and the age at which a silent one is stale.
HEARTBEAT_SECONDS = 15.0
STALE_SECONDS = 120.0
#: A breaker that died while breaking leaves its guard file: ignore guards older than this.
_GUARD_STALE_SECONDS = 30.0


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` while the block runs (released if the process dies)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class LockInfo:
    """Who holds a run lock, read back from the lock file."""

    path: Path
    host: str
    pid: int
    started: str
    owner: str
    token: str
    age: float  # seconds since the last heartbeat (the file's mtime)
    inode: int

    def describe(self) -> str:
        who = f"pid {self.pid} on {self.host}" if self.pid else "an unknown process"
        what = f" ({self.owner})" if self.owner else ""
        return f"{who}{what} since {self.started or '?'}, last heartbeat {self.age:.0f}s ago"


class LockBusy(RuntimeError):
    """The run is locked by a live owner; ``holder`` says who."""

    def __init__(self, path: Path, holder: LockInfo | None) -> None:
        self.path, self.holder = path, holder
        who = holder.describe() if holder else "another process"
        super().__init__(f"run {path.parent} is in use by {who} (lock file {path})")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def read_lock(path: str | os.PathLike[str]) -> LockInfo | None:
    """The holder recorded in lock file ``path``; None if there is no lock file.

    A file being written (empty or partial JSON) reads as an unknown holder whose age is
    its mtime's, so it is judged by the heartbeat rule only.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            st = os.fstat(fh.fileno())
            raw = fh.read(4096)
    except FileNotFoundError:
        return None
    try:
        data: dict[str, Any] = json.loads(raw.decode())
        if not isinstance(data, dict):
            data = {}
    except (ValueError, UnicodeDecodeError):
        data = {}
    pid = data.get("pid")
    return LockInfo(p, str(data.get("host", "")), pid if isinstance(pid, int) else 0, str(data.get("started", "")),
                    str(data.get("owner", "")), str(data.get("token", "")), max(time.time() - st.st_mtime, 0.0),
                    st.st_ino)


def is_stale(info: LockInfo, stale_after: float = STALE_SECONDS) -> bool:
    """Dead owner on this host, or no heartbeat for ``stale_after`` seconds (any host)."""
    if info.pid and info.host == socket.gethostname() and not _pid_alive(info.pid):
        return True
    return info.age > stale_after


def _create_exclusive(path: Path, payload: bytes) -> bool:
    """Create ``path`` with ``payload``; False if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode & ~umask
    except FileExistsError:
        return False
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _break(path: Path, judged: LockInfo, stale_after: float) -> None:
    """Remove the stale lock ``judged`` unless someone replaced it meanwhile.

    Breakers take turns through an ``O_EXCL`` guard file, and re-read the lock under it:
    two launchers that both found the same stale lock cannot delete each other's fresh one.
    """
    guard = path.with_name(path.name + ".break")
    if not _create_exclusive(guard, str(os.getpid()).encode()):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - guard.stat().st_mtime > _GUARD_STALE_SECONDS:
                guard.unlink()
        return
    try:
        now = read_lock(path)
        if now is not None and now.token == judged.token and now.inode == judged.inode and is_stale(now, stale_after):
            path.unlink()
    finally:
        with contextlib.suppress(FileNotFoundError):
            guard.unlink()


# Run locks held by this process, by lock path: nested acquisition (a study's run inside a
# sweep trial, the loop inside the CLI) counts instead of deadlocking on itself.
_HELD: dict[Path, RunLock] = {}
_HELD_GUARD = threading.Lock()


class RunLock:
    """The lock of one run folder (see the module docstring)."""

    def __init__(self, run_path: str | os.PathLike[str], owner: str = "", *,
                 stale_after: float = STALE_SECONDS, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        if heartbeat >= stale_after:
            raise ValueError(f"heartbeat ({heartbeat}s) must be shorter than stale_after ({stale_after}s)")
        self.run_path = Path(run_path)
        self.path = (self.run_path / LOCK).absolute()
        self.owner, self.stale_after, self.heartbeat = owner, stale_after, heartbeat
        self.token = ""
        self.broke: LockInfo | None = None  # the stale lock this one replaced, if any
        self._depth = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False  # the file vanished or was replaced while held (clock skew, manual delete)

    def holder(self) -> LockInfo | None:
        return read_lock(self.path)

    def try_acquire(self) -> bool:
        """Take the lock if it is free or stale; False if a live owner holds it."""
        with _HELD_GUARD:
            mine = _HELD.get(self.path)
            if mine is not None:
                mine._depth += 1
                self.token, self._depth = mine.token, -1  # a nested handle: release() only counts down
                return True
        self.run_path.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        payload = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "owner": self.owner, "token": token,
                              "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}).encode()
        for _ in range(3):
            if _create_exclusive(self.path, payload):
                self.token, self._depth = token, 1
                with _HELD_GUARD:
                    _HELD[self.path] = self
                self._start_heartbeat()
                return True
            info = read_lock(self.path)
            if info is None:
                continue  # released meanwhile: try again
            if not is_stale(info, self.stale_after):
                return False
            self.broke = info
            _break(self.path, info, self.stale_after)
        return False

    def acquire(self, wait: bool = False, timeout: float | None = None, poll: float = 1.0,
                on_wait: Callable[[LockInfo | None], None] | None = None) -> None:
        """Take the lock; without ``wait`` raise LockBusy at once if it is held.

        With ``wait``, poll until it is free (or stale), ``on_wait(holder)`` being called
        once first; LockBusy after ``timeout`` seconds if given.
        """
        if self.try_acquire():
            return
        if not wait:
            raise LockBusy(self.path, self.holder())
        if on_wait is not None:
            on_wait(self.holder())
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.try_acquire():
            if deadline is not None and time.monotonic() > deadline:
                raise LockBusy(self.path, self.holder())
            time.sleep(poll)

    def release(self) -> None:
        if self._depth == -1:  # nested handle
            with _HELD_GUARD:
                mine = _HELD.get(self.path)
                if mine is not None:
                    mine._depth -= 1
            self._depth = 0
            return
        if self._depth <= 0:
            return
        with _HELD_GUARD:
            self._depth -= 1
            if self._depth > 0:
                return
            _HELD.pop(self.path, None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        info = read_lock(self.path)
        if info is not None and info.token == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _start_heartbeat(self) -> None:
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(self.heartbeat):
                info = read_lock(self.path)
                if info is None or info.token != self.token:
                    self.lost = True
                    return
                with contextlib.suppress(OSError):
                    os.utime(self.path)

        self._thread = threading.Thread(target=beat, name=f"run-lock-{self.run_path.name}", daemon=True)
        self._thread.start()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def run_lock(run_path: str | os.PathLike[str], owner: str = "", *, wait: bool = False, timeout: float | None = None,
             stale_after: float = STALE_SECONDS, heartbeat: float = HEARTBEAT_SECONDS,
             on_wait: Callable[[LockInfo | None], None] | None = None) -> Iterator[RunLock]:
    """Hold the lock of the run in ``run_path`` while the block runs.

    ``wait=False`` raises :class:`LockBusy` (with ``.holder``) when a live owner holds it;
    ``wait=True`` waits (at most ``timeout`` seconds), calling ``on_wait(holder)`` once.
    Nested use in one process is allowed (counted). A stale lock is broken and recorded in
    ``lock.broke``.
    """
    lock = RunLock(run_path, owner, stale_after=stale_after, heartbeat=heartbeat)
    lock.acquire(wait=wait, timeout=timeout, on_wait=on_wait)
    try:
        yield lock
    finally:
        lock.release()

