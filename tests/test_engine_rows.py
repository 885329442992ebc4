"""The pieces the level loop calls: finished levels from rows, the retraining batch size,
reopening a run whose rows are lost, and a failure row at the first unfinished level."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from prunebench.engine.fit import batch_size
from prunebench.engine.rows import ok_levels
from prunebench.results.store import DONE, ROWS, reopen


def test_ok_levels_skip_failed_rows_and_empty_tables() -> None:
    rows = pd.DataFrame({"level": [0, 1, 2, 3], "status": ["ok", None, "failed", "diverged"]})
    assert ok_levels(rows) == {0, 1}  # a missing status is a row written before statuses existed
    assert ok_levels(pd.DataFrame()) == set()
    assert ok_levels(pd.DataFrame({"level": [0, 2]})) == {0, 2}


def test_batch_size_holds_inside_the_block_only() -> None:
    dm = SimpleNamespace(batch_size=100)
    with batch_size(dm, 32):
        assert dm.batch_size == 32
    assert dm.batch_size == 100
    with batch_size(dm, None):  # None: the data module's own
        assert dm.batch_size == 100
    with pytest.raises(RuntimeError), batch_size(dm, 7):
        raise RuntimeError("a failed fit")
    assert dm.batch_size == 100  # restored on the way out of a failure too


def test_reopen_sets_an_empty_rows_file_aside(tmp_path: Path) -> None:
    (tmp_path / ROWS).write_text("")
    (tmp_path / DONE).write_text("2026-12-05")
    reopen(tmp_path)
    assert not (tmp_path / DONE).exists() and not (tmp_path / ROWS).exists()
    assert (tmp_path / f"{ROWS}.lost").read_text() == ""
    (tmp_path / ROWS).write_text("level\n0\n")  # readable rows stay where they are
    (tmp_path / DONE).write_text("x")
    reopen(tmp_path)
    assert (tmp_path / ROWS).read_text() == "level\n0\n" and not (tmp_path / DONE).exists()


@pytest.mark.integration
def test_a_failure_row_lands_at_the_first_unfinished_level(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from prunebench.engine.loop import Run
    from prunebench.results.store import read_rows
    from prunebench.spec import from_config

    spec = from_config(compose(["data=synthetic", "data.input_shape=[8]", "data.n_train=64", "data.n_test=32",
                                "data.val_size=32", "data.batch_size=32", "model.widths=[8]", "train.epochs=1",
                                "retrain.epochs=1", "metrics.latency=false", "trainer=cpu", "report=false",
                                "schedule=iterative", "schedule.iterations=2", "schedule.target_sparsity=0.5",
                                f"paths.root={tmp_path}"]))
    run = Run(spec, log=lambda *_: None)
    run.prepare()
    run.record_failure("failed", "boom")
    rows = read_rows(run.path)
    assert list(rows["level"]) == [0] and rows.loc[0, "status"] == "failed" and rows.loc[0, "error"] == "boom"
    assert rows.loc[0, "target_sparsity"] == 0.0
