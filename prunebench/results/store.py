"""Run folders on disk and reading them back into one table.

Layout (one folder per run, named by its content hash)::

    <root>/runs/<run_id>/
        config.yaml         resolved config of the run (what determines it)
        rows.csv            one row per finished level (schema.COLUMNS); rewritten atomically
        levels/<k>/         per level: mask.pt, layers.csv (per-layer sparsity),
                            epochs.csv (per-epoch metrics), weights for resume (level.json,
                            state.pt or weights.pt: prunebench.results.levels)
        DONE                written last: the run finished every level

Every write goes to a temporary file in the same folder followed by ``os.replace``, so a
killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import tempfile
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from prunebench.errors import ConfigError
from prunebench.paths import check_writable_root  # noqa: F401  (re-exported)
from prunebench.results import schema
from prunebench.results.lock import file_lock, run_lock  # noqa: F401 - the locks of a results root
from prunebench.results.validate import Records, ResultsError, check_records, read_records

@dataclass
class RunOutcome:
    """What executing (or finding finished) one run gave."""

    run_id: str
    path: Path
    rows: pd.DataFrame
    skipped: bool  # already finished: nothing was trained
    status: str


ROWS = "rows.csv"
DONE = "DONE"
CONFIG = "config.json"

_UMASK_GUARD = threading.Lock()


def umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_GUARD:  # elsewhere: set and restore (not atomic for other threads creating files)
        old = os.umask(0o022)
        os.umask(old)
    return old


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: 0666 less the umask."""
    return 0o666 & ~umask()



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
        os.fchmod(fd, file_mode())  # mkstemp makes 0600: results on a shared root must stay readable
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_link(src: Path, dst: Path) -> bool:
    """Make ``dst`` a hard link to ``src``, replacing ``dst`` atomically; False where links are impossible.

    For a file whose content another file already holds (a pretrained model's init and final
    weights, a run's level 0 and the dense cache): one copy on disk instead of two.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.{secrets.token_hex(6)}.tmp"
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or links not supported
        return False
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_table(path: Path, rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> None:
    """Write rows (dicts keyed by column name) as CSV, atomically."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())


def expected_levels(run_path: Path) -> int | None:
    """The number of pruned levels of the run, if its config.json records it (key ``levels``)."""
    try:
        value = json.loads((run_path / CONFIG).read_text()).get("levels")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_rows(run_path: Path, levels: int | None = None) -> pd.DataFrame:
    """The rows of one run (possibly unfinished), typed; empty if none yet.

    Raises :class:`ResultsError` (a ConfigError) naming the file when rows.csv fails
    validation (``validate.check_rows``): cut off, not a table, text in a numeric column,
    a level missing, repeated or without status, rows of another run. ``levels`` (else
    config.json's ``levels``) lets a finished run be checked for missing final levels.
    """
    header, records = _checked(run_path, levels)
    return _typed([(header, records)])


def _checked(run_path: Path, levels: int | None = None) -> tuple[list[str], Records]:
    """The validated header and records of a run's rows.csv; ResultsError if it fails."""
    path = run_path / ROWS
    if not path.exists() and not path.is_symlink():
        return [], []
    header, records, problems = read_records(path)
    if header is not None:
        levels = levels if levels is not None else expected_levels(run_path)
        problems += check_records(header, records, run_path.name, levels, finished=is_done(run_path))
    if problems:
        raise ResultsError(path, problems)
    return header or [], records


def _typed(tables: Sequence[tuple[list[str], Records]]) -> pd.DataFrame:
    """One typed table from validated CSV records (one pandas parse for all of them)."""
    columns: dict[str, None] = {}
    for header, _ in tables:
        columns.update(dict.fromkeys(header))
    if not any(records for _, records in tables):
        return schema.empty()
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for header, records in tables:
        index = [header.index(c) if c in header else -1 for c in columns]
        writer.writerows([r[j] if j >= 0 else "" for j in index] for r in records)
    buf.seek(0)
    # Text columns are read as text: a run id such as "01309e730324" would otherwise parse as a
    # number (1309e730324 = inf).
    text = {c: str for c, t in schema.COLUMNS.items() if t == "string"}
    return schema.coerce(pd.read_csv(buf, dtype=text))


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


@dataclass
class Collected:
    """What :func:`collect` found: the rows of every sound run, and the runs set aside."""

    table: pd.DataFrame
    runs: int = 0
    invalid: dict[Path, str] = field(default_factory=dict)  # run folder -> reason


def collect(
    root: str | os.PathLike[str] = "outputs",
    *,
    filters: Sequence[str] | Mapping[str, Any] | None = None,
    include_unfinished: bool = True,
) -> Collected:
    """Every run's rows under ``root``, validated: runs whose rows.csv is damaged are not
    used but listed in ``invalid`` with the reason. See :func:`load` for the arguments."""
    base = runs_dir(root)
    if not Path(root).exists():
        raise ConfigError(f"results root {str(root)!r} does not exist")
    if not Path(root).is_dir():
        raise ConfigError(f"results root {str(root)!r} is not a directory")
    tables, invalid = [], {}
    for run_path in sorted(base.glob("*")) if base.is_dir() else []:
        if not run_path.is_dir() or not ((run_path / ROWS).exists() or (run_path / ROWS).is_symlink()):
            continue
        if not include_unfinished and not is_done(run_path):
            continue
        try:
            tables.append(_checked(run_path))
        except ResultsError as exc:
            invalid[run_path] = "; ".join(exc.problems)
    df = _typed(tables)
    for key, allowed in parse_filters(filters).items():
        if key not in df.columns:
            raise ConfigError(f"filter column {key!r} is not a results column; valid: {', '.join(df.columns)}")
        df = df[df[key].astype("string").isin(allowed)]
    df = df.sort_values(["run_id", "level"], kind="stable").reset_index(drop=True)
    return Collected(df, int(df["run_id"].nunique()) if len(df) else 0, invalid)


def load(
    root: str | os.PathLike[str] = "outputs",
    *,
    filters: Sequence[str] | Mapping[str, Any] | None = None,
    include_unfinished: bool = True,
) -> pd.DataFrame:
    """Every run's rows under ``root`` as one typed DataFrame (schema.COLUMNS first).

    ``filters`` keeps rows whose column equals one of the given values (compared as
    strings, so ``seed=0`` works). Unfinished runs contribute the levels they finished
    unless ``include_unfinished`` is false. A run whose rows.csv fails validation is left
    out with a warning naming it (:func:`collect` returns them). No Hydra needed: this is
    the notebook API.
    """
    found = collect(root, filters=filters, include_unfinished=include_unfinished)
    for run_path, reason in found.invalid.items():
        warnings.warn(f"run {run_path.name} left out: {run_path / ROWS} is damaged ({reason})", stacklevel=2)
    return found.table


def disk_bytes(path: str | os.PathLike[str], seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes the files under ``path`` occupy, each inode counted once (hard links share one copy).

    ``seen`` carries the inodes already counted across calls (a run's level 0 and the dense
    cache are one file): pass one set to count a whole results root once.
    """
    seen = set() if seen is None else seen
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_size
    return total


def load_failure(path: str | os.PathLike[str], exc: BaseException) -> str:
    """Why a torch file could not be read, in a few words for a user.

    Never repeats torch's advice to load with ``weights_only=False`` (running code from a
    damaged or foreign file is not a fix); says "empty" for a 0-byte file.
    """
    try:
        if Path(path).stat().st_size == 0:
            return "it is empty (0 bytes)"
    except OSError:
        pass
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0].strip()
        detail = detail.split(" was not an allowed global")[0].split(". Please use")[0]
        if detail.startswith("Unsupported global"):
            return f"it holds Python objects, not plain tensors ({detail})"
        return f"it is not a torch file of tensors ({detail or 'unpickling failed'})"
    if "PytorchStreamReader" in text or "zip archive" in text:
        return f"it is truncated or not a torch file ({text.split('. This is')[0].split(': ', 1)[-1].strip()})"
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    if "weights_only" in first:
        first = ""
    return f"it cannot be read ({type(exc).__name__}{': ' + first[:200] if first else ''})"
