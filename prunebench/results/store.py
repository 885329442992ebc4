"""Run folders on disk and reading them back into one table.

Layout (one folder per run, named by its content hash)::

    <root>/runs/<run_id>/
        config.yaml         resolved config of the run (what determines it)
        rows.csv            one row per finished level (schema.COLUMNS); rewritten atomically
        levels/<k>/         per level: mask.pt, layers.csv (per-layer sparsity),
                            epochs.csv (per-epoch metrics), state.pt (weights, for resume)
        DONE                written last: the run finished every level

Every write goes to a temporary file in the same folder followed by ``os.replace``, so a
killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from prunebench.paths import check_writable_root  # noqa: F401  (re-exported)

from prunebench.errors import ConfigError, CorruptFileError
from prunebench.results import schema

ROWS = "rows.csv"
DONE = "DONE"



@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` while the block runs (released if the process dies).

    ``on_wait`` is called once if another process holds the lock, before waiting for it.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

def runs_dir(root: str | os.PathLike[str]) -> Path:
    return Path(root) / "runs"


def run_dir(root: str | os.PathLike[str], run_id: str) -> Path:
    return runs_dir(root) / run_id


def level_dir(run_path: Path, level: int) -> Path:
    return run_path / "levels" / str(level)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_table(path: Path, rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> None:
    """Write rows (dicts keyed by column name) as CSV, atomically."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())


def read_rows(run_path: Path) -> pd.DataFrame:
    """The rows of one run (possibly unfinished), typed; empty if none yet."""
    path = run_path / ROWS
    if not path.exists():
        return schema.empty()
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"results file {path} cannot be read ({exc}); delete it to redo the run") from exc
    return schema.coerce(df)


def is_done(run_path: Path) -> bool:
    return (run_path / DONE).exists()


def parse_filters(filters: Sequence[str] | Mapping[str, Any] | None) -> dict[str, list[str]]:
    """``["dataset=mnist1d", "method=magnitude,random"]`` → {column: [allowed values]}."""
    if filters is None:
        return {}
    if isinstance(filters, Mapping):
        return {k: [str(v) for v in (val if isinstance(val, (list, tuple)) else [val])] for k, val in filters.items()}
    out: dict[str, list[str]] = {}
    for item in filters:
        if "=" not in item:
            raise ConfigError(f"filter {item!r} is not of the form column=value[,value...]")
        key, value = item.split("=", 1)
        out.setdefault(key.strip(), []).extend(v.strip() for v in value.split(","))
    return out


def load(
    root: str | os.PathLike[str] = "outputs",
    *,
    filters: Sequence[str] | Mapping[str, Any] | None = None,
    include_unfinished: bool = True,
) -> pd.DataFrame:
    """Every run's rows under ``root`` as one typed DataFrame (schema.COLUMNS first).

    ``filters`` keeps rows whose column equals one of the given values (compared as
    strings, so ``seed=0`` works). Unfinished runs contribute the levels they finished
    unless ``include_unfinished`` is false. No Hydra needed: this is the notebook API.
    """
    base = runs_dir(root)
    if not Path(root).exists():
        raise ConfigError(f"results root {str(root)!r} does not exist")
    frames = []
    for run_path in sorted(base.glob("*")) if base.exists() else []:
        if not run_path.is_dir() or not (run_path / ROWS).exists():
            continue
        if not include_unfinished and not is_done(run_path):
            continue
        frames.append(read_rows(run_path))
    frames = [f for f in frames if len(f)]
    df = schema.coerce(pd.concat(frames, ignore_index=True)) if frames else schema.empty()
    for key, allowed in parse_filters(filters).items():
        if key not in df.columns:
            raise ConfigError(f"filter column {key!r} is not a results column; valid: {', '.join(df.columns)}")
        df = df[df[key].astype("string").isin(allowed)]
    return df.sort_values(["run_id", "level"], kind="stable").reset_index(drop=True)
