"""Damaged results are never read as data (issue 12, items 6 and 9).

A run folder's rows.csv is validated on read: a cut last line, text in a numeric column,
a repeated or missing level, a row without status, a directory in its place, rows of
another run. ``read_rows`` (resume, sweeps) raises ResultsError naming the file;
``collect``/``load`` (the notebook API and the report) leave such a run out and say so.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from prunebench.errors import ConfigError, CorruptFileError
from prunebench.results import ResultsError, collect, load
from prunebench.results.store import read_rows, run_dir, write_table


def _rows(run_id: str, n: int = 3) -> list[dict[str, object]]:
    return [{"run_id": run_id, "seed": 0, "level": k, "dataset": "mnist1d", "model": "mlp", "method": "magnitude",
             "target_sparsity": 0.3 * k, "sparsity": 0.3 * k, "params": 1000, "val_acc": 0.9 - 0.1 * k,
             "test_acc": 0.88 - 0.1 * k, "status": "ok"} for k in range(n)]


def _run(root: Path, run_id: str, n: int = 3, done: bool = True) -> Path:
    path = run_dir(root, run_id)
    write_table(path / "rows.csv", _rows(run_id, n))
    if done:
        (path / "DONE").write_text("x")
        (path / "config.json").write_text("{}")
    return path


def test_sound_rows_read_back(tmp_path: Path) -> None:
    rows = read_rows(_run(tmp_path, "r1"))
    assert list(rows["level"]) == [0, 1, 2] and list(rows["status"]) == ["ok"] * 3
    assert rows["val_acc"].dtype == "float64"


def test_truncated_rows_csv_is_an_error_not_a_finished_run(tmp_path: Path) -> None:
    path = _run(tmp_path, "r1")
    raw = (path / "rows.csv").read_bytes()
    (path / "rows.csv").write_bytes(raw[: raw.rindex(b",") - 2])  # cut inside the last row
    with pytest.raises(ResultsError) as info:
        read_rows(path)
    msg = str(info.value)
    assert str(path / "rows.csv") in msg and "cut off" in msg and "line 4 has 11 fields, the header 12" in msg
    assert isinstance(info.value, CorruptFileError) and isinstance(info.value, ConfigError)


def test_cut_at_a_line_end_is_caught_when_the_levels_are_known(tmp_path: Path) -> None:
    path = _run(tmp_path, "r1")
    lines = (path / "rows.csv").read_text().splitlines(keepends=True)
    (path / "rows.csv").write_text("".join(lines[:-1]))  # the last level's row is gone entirely
    (path / "config.json").write_text('{"levels": 2}')
    with pytest.raises(ResultsError, match=r"marked finished \(DONE\) but its rows stop at level 1 of 2"):
        read_rows(path)


def test_duplicated_level_is_named(tmp_path: Path) -> None:
    path = run_dir(tmp_path, "r1")
    rows = _rows("r1")
    write_table(path / "rows.csv", rows + [rows[1]])
    with pytest.raises(ResultsError, match="level 1 appears 2 times"):
        read_rows(path)


def test_text_in_a_numeric_column_is_named(tmp_path: Path) -> None:
    path = _run(tmp_path, "r1")
    df = pd.read_csv(path / "rows.csv")
    df["val_acc"] = df["val_acc"].astype(object)
    df.loc[1, "val_acc"] = "oops"
    df.to_csv(path / "rows.csv", index=False)
    with pytest.raises(ResultsError, match=r"column 'val_acc' holds 'oops', not a number, at line 3 \(level 1\)"):
        read_rows(path)


def test_rows_csv_that_is_a_directory(tmp_path: Path) -> None:
    path = run_dir(tmp_path, "r1")
    (path / "rows.csv").mkdir(parents=True)
    with pytest.raises(ResultsError, match="is a directory"):
        read_rows(path)


@pytest.mark.parametrize("edit, message", [
    (lambda df: df.assign(status=[None, "ok", "ok"]), r"line 2 \(level 0\) has no status"),
    (lambda df: df.assign(status=["ok", "fine", "ok"]), "has status 'fine'"),
    (lambda df: df[df["level"] != 1], r"level\(s\) \[1\] missing"),
    (lambda df: df.assign(run_id="other"), r"rows of run\(s\) \['other'\] in the folder of run 'r1'"),
    (lambda df: df.drop(columns="status"), r"column\(s\) \['status'\] missing"),
    (lambda df: df.assign(level=[0, 1.5, 2]), "'level' holds '1.5', not an integer"),
])
def test_schema_problems_are_named(tmp_path: Path, edit, message: str) -> None:
    path = _run(tmp_path, "r1")
    edit(pd.read_csv(path / "rows.csv")).to_csv(path / "rows.csv", index=False)
    with pytest.raises(ResultsError, match=message):
        read_rows(path)


def test_empty_rows_csv_says_empty(tmp_path: Path) -> None:
    path = run_dir(tmp_path, "r1")
    path.mkdir(parents=True)
    (path / "rows.csv").write_bytes(b"")
    with pytest.raises(ResultsError, match=r"is empty \(0 bytes\)"):
        read_rows(path)


def test_collect_sets_damaged_runs_aside(tmp_path: Path) -> None:
    _run(tmp_path, "good")
    bad = _run(tmp_path, "bad")
    raw = (bad / "rows.csv").read_bytes()
    (bad / "rows.csv").write_bytes(raw[:-20])
    found = collect(tmp_path)
    assert set(found.table["run_id"]) == {"good"} and found.runs == 1
    assert list(found.invalid) == [bad] and "cut off" in found.invalid[bad]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load(tmp_path)
    assert len(df) == 3 and any("run bad left out" in str(w.message) for w in caught)


def test_collect_on_a_file_root(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        collect(tmp_path / "f")
