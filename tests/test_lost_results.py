"""Lost results are noticed: a finished (DONE) run whose rows.csv or config.json is gone,
empty or unreadable is named by the report (a warning and a count), by ``load``, and by a
relaunch, which redoes it from its last intact level; it is never reported finished."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from prunebench import report
from prunebench.results.store import collect, load, lost_results, run_dir, write_table


def _rows(run_id: str, n: int) -> list[dict[str, object]]:
    return [{"run_id": run_id, "level": k, "status": "ok", "dataset": "d", "model": "m", "method": "magnitude",
             "target_sparsity": 0.5 * k, "sparsity": 0.5 * k, "val_acc": 0.9, "test_acc": 0.9 - 0.01 * k}
            for k in range(n)]


def _finished(root: Path, run_id: str, n: int = 3) -> Path:
    path = run_dir(root, run_id)
    write_table(path / "rows.csv", _rows(run_id, n))
    (path / "config.json").write_text(json.dumps({"run_id": run_id, "levels": n - 1}))
    (path / "DONE").write_text("x")
    return path


def _damaged_root(root: Path) -> dict[str, Path]:
    runs = {name: _finished(root, name) for name in ("good", "gone", "header", "empty", "config", "short")}
    (runs["gone"] / "rows.csv").unlink()
    raw = (runs["header"] / "rows.csv").read_text()
    (runs["header"] / "rows.csv").write_text(raw.splitlines()[0] + "\n")
    (runs["empty"] / "rows.csv").write_bytes(b"")
    (runs["config"] / "config.json").write_text('{"run_id": "conf')
    write_table(runs["short"] / "rows.csv", _rows("short", 2))  # DONE, but level 2 of 2 is gone
    return runs


def test_lost_results_names_what_is_gone(tmp_path: Path) -> None:
    runs = _damaged_root(tmp_path)
    assert lost_results(runs["good"]) is None
    assert lost_results(runs["gone"]) == "rows.csv is missing"
    assert lost_results(runs["header"]) == "rows.csv holds its header only (no rows)"
    assert lost_results(runs["empty"]) == "rows.csv is empty (0 bytes)"
    assert lost_results(runs["config"]) == "config.json is empty or not valid JSON"
    assert lost_results(runs["short"]) == "rows.csv stops at level 1 of 2"
    (runs["good"] / "DONE").unlink()
    (runs["good"] / "rows.csv").unlink()
    assert lost_results(runs["good"]) is None  # an unfinished run has nothing to lose yet


def test_collect_and_load_name_lost_runs(tmp_path: Path) -> None:
    runs = _damaged_root(tmp_path)
    found = collect(tmp_path)
    assert set(found.table["run_id"]) == {"good"} and found.runs == 1
    assert sorted(p.name for p in found.lost) == ["config", "empty", "gone", "header", "short"]
    assert found.invalid == {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load(tmp_path)
    texts = [str(w.message) for w in caught]
    assert any(f"run gone left out: run gone is marked finished (DONE) but rows.csv is missing" in t and
               str(runs["gone"]) in t for t in texts)
    assert len(texts) == 5


def test_report_warns_counts_and_lists_lost_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _damaged_root(tmp_path / "root")
    assert report.main([str(tmp_path / "root"), "--out", str(tmp_path / "rep")]) == 0
    out, err = capsys.readouterr()
    assert "run(s), 3 row(s)" in out and "; 5 finished run(s) with lost results not used" in out
    assert "warning: run gone is marked finished (DONE) but rows.csv is missing: its results are lost" in err
    assert "warning: run short is marked finished (DONE) but rows.csv stops at level 1 of 2" in err
    assert err.count("warning: ") == 5
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "## Not used: finished runs whose results are lost (5 run(s))" in md and "| header |" in md.replace(" ", " ")
    # nothing else left: exit 1, and the count is still said
    only = tmp_path / "only"
    _finished(only, "alone")
    (run_dir(only, "alone") / "rows.csv").unlink()
    assert report.main([str(only)]) == 1
    err = capsys.readouterr().err
    assert "warning: run alone is marked finished (DONE) but rows.csv is missing" in err
    assert "1 finished run(s) with lost results were not used" in err


# ---- a relaunch redoes a finished run whose results are lost ------------------------------------

TINY = ["data=synthetic", "data.input_shape=[8]", "data.n_train=64", "data.n_test=32", "data.val_size=32",
        "data.batch_size=32", "model.widths=[8]", "train.epochs=1", "retrain.epochs=1", "metrics.latency=false",
        "trainer=cpu", "trainer.progress=false", "report=false", "schedule=iterative",
        "schedule.target_sparsity=0.75", "schedule.iterations=2"]


def _spec(compose, root: Path):  # type: ignore[no-untyped-def]
    from prunebench.spec import from_config

    return from_config(compose([*TINY, f"paths.root={root}"]))


def _masks(path: Path) -> dict[int, dict[str, torch.Tensor]]:
    from prunebench.pruning.mask import Mask

    return {k: dict(Mask.load(path / "levels" / str(k) / "mask.pt")) for k in (1, 2)}


@pytest.mark.integration
def test_relaunch_redoes_a_finished_run_whose_rows_are_lost(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from prunebench.engine.batch import execute_specs

    spec = _spec(compose, tmp_path)
    messages: list[str] = []
    first = execute_specs([spec], log=messages.append)[0]
    path, before = first.path, first.rows
    masks = _masks(path)
    assert not first.skipped and list(before["level"]) == [0, 1, 2]

    (path / "rows.csv").write_bytes(b"")  # emptied (a disk filled up, a hand edit)
    messages.clear()
    again = execute_specs([spec], log=messages.append)[0]
    assert not again.skipped and again.status == "ok"
    assert any(f"warning: run {spec.run_id} is marked finished (DONE) but rows.csv is empty (0 bytes): it will be "
               f"redone from its last intact level" in m for m in messages)
    assert not any("finished before, skipped" in m for m in messages)
    assert (path / "rows.csv.lost").read_bytes() == b""  # set aside, not deleted
    assert list(again.rows["level"]) == [0, 1, 2] and (path / "DONE").exists()
    cols = ["level", "sparsity", "val_acc", "test_acc", "acc_pruned"]
    assert again.rows[cols].equals(before[cols])  # redone bit-identically
    assert all(torch.equal(masks[k][n], _masks(path)[k][n]) for k in masks for n in masks[k])

    # rows cut back to levels 0..1 while DONE stays: only level 2 is redone
    write_table(path / "rows.csv", again.rows[again.rows["level"] < 2])
    mtime1 = (path / "levels" / "1" / "mask.pt").stat().st_mtime_ns
    messages.clear()
    third = execute_specs([spec], log=messages.append)[0]
    assert any("rows.csv stops at level 1 of 2" in m for m in messages)
    assert list(third.rows["level"]) == [0, 1, 2] and third.rows[cols].equals(before[cols])
    assert (path / "levels" / "1" / "mask.pt").stat().st_mtime_ns == mtime1  # level 1 kept, not redone

    # a corrupt config.json: rewritten, nothing retrained, then found finished
    (path / "config.json").write_text("{")
    messages.clear()
    fourth = execute_specs([spec], log=messages.append)[0]
    assert any("config.json is empty or not valid JSON" in m for m in messages)
    assert json.loads((path / "config.json").read_text())["run_id"] == spec.run_id
    assert fourth.rows[cols].equals(before[cols])
    messages.clear()
    assert execute_specs([spec], log=messages.append)[0].skipped
    assert any("finished before, skipped" in m for m in messages)
