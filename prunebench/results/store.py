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
    """The run's DONE marker is there (see :func:`is_finished` for a run whose results are intact)."""
    return (run_path / DONE).exists()


_STOPS_EARLY = "the run is marked finished (DONE) but its rows stop at level"


def lost_results(run_path: Path, *, deep: bool = True) -> str | None:
    """Why a run marked finished (DONE) has lost its results, or None.

    Lost: ``rows.csv`` or ``config.json`` missing, empty (0 bytes; rows.csv with its header
    only) or unreadable (config.json not a JSON object), or (``deep``) rows.csv stopping
    before the run's last level. A rows.csv damaged otherwise is :func:`read_rows`'s
    business (ResultsError). Such a run is not
    finished: the report names it and leaves it out, a relaunch redoes it from its last
    level whose files are intact.
    """
    if not is_done(run_path):
        return None
    problems = []
    rows = run_path / ROWS
    if not rows.exists() and not rows.is_symlink():
        problems.append(f"{ROWS} is missing")
    else:
        try:
            raw = rows.read_bytes()
        except OSError as exc:
            problems.append(f"{ROWS} cannot be read ({exc.strerror or type(exc).__name__})")
        else:
            if not raw.strip():
                problems.append(f"{ROWS} is empty (0 bytes)")
            elif sum(1 for line in raw.splitlines() if line.strip()) < 2:
                problems.append(f"{ROWS} holds its header only (no rows)")
    config = run_path / CONFIG
    try:
        data = json.loads(config.read_bytes())
        if not isinstance(data, dict):
            problems.append(f"{CONFIG} is not a JSON object")
    except FileNotFoundError:
        problems.append(f"{CONFIG} is missing")
    except OSError as exc:
        problems.append(f"{CONFIG} cannot be read ({exc.strerror or type(exc).__name__})")
    except ValueError:
        problems.append(f"{CONFIG} is empty or not valid JSON")
    if not problems and deep:
        try:
            _checked(run_path)
        except ResultsError as exc:
            return _stops_early(exc)
    return "; ".join(problems) or None


def _stops_early(exc: ResultsError) -> str | None:
    """The lost-levels reason when that is all that is wrong with a finished run's rows."""
    if len(exc.problems) == 1 and exc.problems[0].startswith(_STOPS_EARLY):
        return f"{ROWS} stops at level {exc.problems[0][len(_STOPS_EARLY):].strip()}"
    return None


def is_finished(run_path: Path) -> bool:
    """Marked finished (DONE) and its rows and config are there (:func:`lost_results`)."""
    return is_done(run_path) and lost_results(run_path) is None


def lost_message(run_path: Path, reason: str) -> str:
    """What to tell a user about a finished run whose results are lost."""
    return (f"run {run_path.name} is marked finished (DONE) but {reason}: its results are lost; relaunch it to "
            f"redo it from its last intact level (or delete {run_path})")


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
    lost: dict[Path, str] = field(default_factory=dict)  # finished run folder -> what of its results is gone


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
    tables, invalid, lost = [], {}, {}
    for run_path in sorted(base.glob("*")) if base.is_dir() else []:
        if not run_path.is_dir():
            continue
        reason = lost_results(run_path, deep=False)
        if reason is not None:  # never silent: a finished run without its rows is named
            lost[run_path] = reason
            continue
        if not ((run_path / ROWS).exists() or (run_path / ROWS).is_symlink()):
            continue
        if not include_unfinished and not is_done(run_path):
            continue
        try:
            tables.append(_checked(run_path))
        except ResultsError as exc:
            early = _stops_early(exc) if is_done(run_path) else None
            if early is not None:
                lost[run_path] = early
            else:
                invalid[run_path] = "; ".join(exc.problems)
    df = _typed(tables)
    for key, allowed in parse_filters(filters).items():
        if key not in df.columns:
            raise ConfigError(f"filter column {key!r} is not a results column; valid: {', '.join(df.columns)}")
        df = df[df[key].astype("string").isin(allowed)]
    df = df.sort_values(["run_id", "level"], kind="stable").reset_index(drop=True)
    return Collected(df, int(df["run_id"].nunique()) if len(df) else 0, invalid, lost)


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
    for run_path, reason in found.lost.items():
        warnings.warn(f"run {run_path.name} left out: {lost_message(run_path, reason)}", stacklevel=2)
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


#: Columns that hold wall times (they differ between two launches of the same runs).
TIMING_COLUMNS = frozenset({"train_seconds", "finished_at", "latency_ms", "latency_ms_dense", "speedup_measured",
                            "latency_ms_large", "speedup_measured_large"})


def result_digests(root: str | os.PathLike[str]) -> dict[str, str]:
    """md5 of every level file and dense checkpoint under ``root``, and of each rows.csv without
    its timing columns: equal digests mean two launches produced the same results (the parallel
    study's contract with a sequential one)."""
    import hashlib

    root = Path(root)
    out = {}
    for f in sorted(root.glob("runs/*/levels/*/*")) + sorted(root.glob("cache/dense/*/*.pt")):
        if f.name != "epochs.csv":  # per-epoch wall times
            out[str(f.relative_to(root))] = hashlib.md5(f.read_bytes()).hexdigest()
    for f in sorted(root.glob("runs/*/rows.csv")):
        df = pd.read_csv(f)
        df = df[[c for c in df.columns if c not in TIMING_COLUMNS]]
        out[str(f.relative_to(root))] = hashlib.md5(df.to_csv(index=False).encode()).hexdigest()
    return out


def reopen(run_path: Path) -> None:
    """A run marked finished whose results are lost is not finished: redo what is missing.

    Its DONE marker goes; an empty or unreadable rows.csv is kept aside as rows.csv.lost
    (nothing is deleted). Resume then keeps every level rows.csv still records and whose
    files load, and redoes the rest (bit-identically; the dense model comes from the cache).
    """
    rows = run_path / ROWS
    if rows.exists() or rows.is_symlink():
        try:
            readable = bool(rows.read_bytes().strip())
        except OSError:
            readable = False
        if not readable:
            os.replace(rows, run_path / f"{ROWS}.lost")
    (run_path / DONE).unlink(missing_ok=True)
