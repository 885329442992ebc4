"""Checks on a run's ``rows.csv`` as read back: damaged results are never read as data.

``rows.csv`` is written atomically, so a damaged one was damaged outside prunebench (a
disk filling up, a copy cut short, a hand edit). :func:`check_rows` lists what is wrong
with one, in words that name the file, the line and the level; ``store.read_rows`` raises
:class:`ResultsError` with that list, and ``store.collect`` sets such runs aside (the
report names them and does not use them).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

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


Records = list[list[str]]


def read_records(path: Path) -> tuple[list[str] | None, Records, list[str]]:
    """``(header, rows, problems)`` of a CSV results file; header None if it cannot be parsed.

    Plain ``csv`` rather than pandas: a report reads hundreds of these, and checking them
    cell by cell in Python is faster than building a DataFrame per file.
    """
    if path.is_dir():
        return None, [], ["it is a directory, not a file"]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [], [f"it cannot be read ({exc.strerror or type(exc).__name__})"]
    if not raw:
        return None, [], ["it is empty (0 bytes)"]
    problems = []
    if not raw.endswith(b"\n"):  # every writer ends the file with a newline: the last line was cut
        problems.append("its last line is cut off (no final newline): the file was truncated")
    try:
        lines = list(csv.reader(io.StringIO(raw.decode())))
    except (UnicodeDecodeError, csv.Error) as exc:
        return None, [], problems + [f"it is not a valid CSV table ({type(exc).__name__}: {exc})"]
    lines = [ln for ln in lines if ln]
    if not lines:
        return None, [], problems + ["it has no header line"]
    header, rows = lines[0], lines[1:]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            problems.append(f"line {i + 2} has {len(row)} fields, the header {len(header)}")
    return header, rows, problems


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def check_records(header: list[str], rows: Records, run_name: str | None = None, levels: int | None = None,
                  finished: bool = False) -> list[str]:
    """What is wrong with the rows of one run; empty when they are sound.

    Checked: the key columns are there; every row has a level (an integer) and a known
    status; numeric columns hold numbers; one row per level, levels 0..k without gaps;
    the rows belong to the run folder ``run_name``; a ``finished`` run with ``levels``
    pruned levels has all of them unless its last row records why it stopped.
    """
    missing = [c for c in KEY_COLUMNS if c not in header]
    if missing:
        return [f"column(s) {missing} missing (header: {', '.join(header[:8])}...)"]
    problems: list[str] = []
    col = {name: j for j, name in enumerate(header)}
    rows = [r for r in rows if len(r) == len(header)]  # short/long lines are reported by read_records
    levels_seen: list[int | None] = []
    for i, row in enumerate(rows):
        text = row[col["level"]].strip()
        value = _number(text) if text else None
        level = int(value) if value is not None and value.is_integer() else None
        levels_seen.append(level)
        at = f"line {i + 2}" + (f" (level {level})" if level is not None else "")
        if level is None:
            problems.append(f"line {i + 2} has no level" if not text else
                            f"column 'level' holds {text!r}, not an integer, at line {i + 2}")
        for name, j in col.items():
            kind = _NUMERIC.get(name)
            cell = row[j].strip()
            if kind is None or not cell or name == "level":
                continue
            num = _number(cell)
            if num is None:
                problems.append(f"column {name!r} holds {cell!r}, not a number, at {at}")
            elif kind == "Int64" and num == num and not num.is_integer():
                problems.append(f"column {name!r} holds {cell!r}, not an integer, at {at}")
        status = row[col["status"]].strip()
        if not status:
            problems.append(f"{at} has no status")
        elif status not in schema.STATUSES:
            problems.append(f"{at} has status {status!r}; known: {', '.join(schema.STATUSES)}")
        if len(problems) > 20:
            break
    if run_name is not None:
        other = sorted({r[col["run_id"]].strip() or "<none>" for r in rows} - {run_name})
        if other:
            problems.append(f"rows of run(s) {other} in the folder of run {run_name!r}")
    counts = Counter(lv for lv in levels_seen if lv is not None)
    for lv, n in sorted(counts.items()):
        if n > 1:
            problems.append(f"level {lv} appears {n} times (one row per level)")
    have = sorted(counts)
    if have and have != list(range(have[-1] + 1)):
        gaps = sorted(set(range(have[-1] + 1)) - set(have))
        problems.append(f"level(s) {gaps} missing between 0 and {have[-1]}")
    if finished and levels is not None and have and have[-1] < levels and not problems:
        last = rows[levels_seen.index(have[-1])][col["status"]].strip()
        if last == "ok":
            problems.append(f"the run is marked finished (DONE) but its rows stop at level {have[-1]} of {levels}")
    return problems
