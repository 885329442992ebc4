"""Checks on a run's ``rows.csv`` as read back: damaged results are never read as data.

``rows.csv`` is written atomically, so a damaged one was damaged outside prunebench (a
disk filling up, a copy cut short, a hand edit). :func:`check_rows` lists what is wrong
with one, in words that name the file, the line and the level; ``store.read_rows`` raises
:class:`ResultsError` with that list, and ``store.collect`` sets such runs aside (the
report names them and does not use them).
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from prunebench.errors import CorruptFileError
from prunebench.results import schema

#: Columns without which a row cannot be placed (the rest may be absent in hand-made tables).
KEY_COLUMNS = ("run_id", "level", "status")
_NUMERIC = {c: t for c, t in schema.COLUMNS.items() if t in ("float64", "Int64")}


class ResultsError(CorruptFileError):
    """A results file that exists but fails validation; ``problems`` lists why."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path, self.problems = Path(path), list(problems)
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        super().__init__(f"results file {path} is damaged: {shown}. Nothing of this run was used; "
                         f"delete the run folder {Path(path).parent} to redo it")


def _where(df: pd.DataFrame, i: int) -> str:
    level = df["level"].iloc[i] if "level" in df.columns else None
    at = f"line {i + 2}"
    return f"{at} (level {level})" if level is not None and pd.notna(level) else at


def read_table(path: Path) -> tuple[pd.DataFrame | None, list[str]]:
    """Parse ``path`` as CSV, or return the reason it cannot be (never a traceback)."""
    if path.is_dir():
        return None, ["it is a directory, not a file"]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [f"it cannot be read ({exc.strerror or type(exc).__name__})"]
    if not raw:
        return None, ["it is empty (0 bytes)"]
    problems = []
    if not raw.endswith(b"\n"):  # every writer ends the file with a newline: the last line was cut
        problems.append("its last line is cut off (no final newline): the file was truncated")
    try:
        df = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, problems + [f"it is not a valid CSV table ({first})"]
    return df, problems


def check_rows(df: pd.DataFrame, run_name: str | None = None, levels: int | None = None,
               finished: bool = False) -> list[str]:
    """What is wrong with the raw (all-string) rows of one run; empty when they are sound.

    Checked: the key columns are there; every row has a level (an integer) and a known
    status; numeric columns hold numbers; one row per level, levels 0..k without gaps;
    the rows belong to the run folder ``run_name``; a ``finished`` run with ``levels``
    pruned levels has all of them unless its last row records why it stopped.
    """
    problems: list[str] = []
    missing = [c for c in KEY_COLUMNS if c not in df.columns]
    if missing:
        return [f"column(s) {missing} missing (header: {', '.join(map(str, df.columns[:8]))}...)"]
    for col in df.columns:
        if col not in _NUMERIC:
            continue
        text = df[col]
        nums = pd.to_numeric(text, errors="coerce")
        bad = text.notna() & nums.isna() & ~text.str.strip().str.lower().isin(("nan", "inf", "-inf", "<na>", ""))
        for i in list(bad[bad].index[:3]):
            problems.append(f"column {col!r} holds {text.iloc[i]!r}, not a number, at {_where(df, i)}")
        if _NUMERIC[col] == "Int64":
            frac = nums.notna() & (nums % 1 != 0)
            for i in list(frac[frac].index[:3]):
                problems.append(f"column {col!r} holds {text.iloc[i]!r}, not an integer, at {_where(df, i)}")
    level = pd.to_numeric(df["level"], errors="coerce")
    for i in list(level[level.isna()].index[:3]):
        problems.append(f"line {i + 2} has no level")
    status = df["status"]
    for i in list(status[status.isna()].index[:3]):
        problems.append(f"{_where(df, i)} has no status")
    unknown = status.notna() & ~status.isin(schema.STATUSES)
    for i in list(unknown[unknown].index[:3]):
        problems.append(f"{_where(df, i)} has status {status.iloc[i]!r}; known: {', '.join(schema.STATUSES)}")
    if run_name is not None:
        other = sorted(set(df["run_id"].dropna().astype(str)) - {run_name})
        if other or df["run_id"].isna().any():
            problems.append(f"rows of run(s) {other or ['<none>']} in the folder of run {run_name!r}")
    counts = level.dropna().value_counts()
    for lv, n in sorted(counts[counts > 1].items()):
        problems.append(f"level {int(lv)} appears {n} times (one row per level)")
    have = sorted(int(v) for v in counts.index if float(v).is_integer())
    if have and have != list(range(have[-1] + 1)):
        gaps = sorted(set(range(have[-1] + 1)) - set(have))
        problems.append(f"level(s) {gaps} missing between 0 and {have[-1]}")
    if finished and levels is not None and have and have[-1] < levels and not problems:
        last = status.iloc[int(level.idxmax())]
        if last == "ok":
            problems.append(f"the run is marked finished (DONE) but its rows stop at level {have[-1]} of {levels}")
    return problems
