"""Inter-process locks for sweeps: a file lock, and a lock held in the study's database.

The database lock serialises "count the study's trials, then ask for new ones" across
workers on several machines, so that ``sweep.n_trials`` is an exact total: SQLite uses a
file lock next to the database file, PostgreSQL an advisory lock, MySQL ``GET_LOCK``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

from prunebench.results.store import file_lock  # noqa: F401 - re-exported for sweep code


def _key(name: str) -> int:
    """A stable signed 63-bit key for PostgreSQL's advisory locks."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True) >> 1


@contextlib.contextmanager
def study_lock(storage: Any, url: str, study_name: str) -> Iterator[None]:
    """Hold a lock named after the study in the database behind ``storage`` (an RDBStorage)."""
    name = f"prunebench-sweep-{study_name}"
    if url.startswith("sqlite"):
        db = url.split("sqlite:///", 1)[-1]
        if not db or db == ":memory:":
            yield
            return
        with file_lock(f"{db}.{study_name}.lock"):
            yield
        return
    from sqlalchemy import text

    dialect = storage.engine.dialect.name
    if dialect == "postgresql":
        with storage.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _key(name)})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _key(name)})
        return
    if dialect in ("mysql", "mariadb"):
        with storage.engine.connect() as conn:
            conn.execute(text("SELECT GET_LOCK(:n, 600)"), {"n": name[:64]})
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name[:64]})
        return
    # Other databases: no cross-worker lock; concurrent workers may overshoot n_trials by
    # at most (workers - 1) trials.
    yield
