"""prunebench-report: damaged runs named and not used, bad --out, no torch, no redraw (issue 12).

Items 6 (a finished run whose rows.csv fails validation is reported, not used), 9
(``--out`` on a file or an unwritable place: exit 2 with a message), 16 (no torch import;
an unchanged relaunch says "report up to date" and writes nothing; a change redraws only
the figures whose data changed).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_plots import make_table
from test_report import write_root

from prunebench import report
from prunebench.results.store import level_dir, run_dir, write_table

pytestmark = pytest.mark.integration  # end to end: damaged files, report builds, subprocesses

REPO = Path(__file__).resolve().parents[1]


def _small_root(root: Path) -> Path:
    table = make_table()
    keep = sorted(table["run_id"].unique())[:6]
    return write_root(root, table[table["run_id"].isin(keep)])


def _cut(path: Path) -> None:
    raw = (path / "rows.csv").read_bytes()
    (path / "rows.csv").write_bytes(raw[:-15])


def test_damaged_run_is_named_and_not_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _small_root(tmp_path / "root")
    runs = sorted((root / "runs").iterdir())
    _cut(runs[0])
    res = report.build_report(root, tmp_path / "rep")
    assert res.ok and res.runs == 5 and list(res.invalid) == [str(runs[0])]
    assert "cut off" in res.invalid[str(runs[0])]
    assert runs[0].name not in set(pd.read_csv(tmp_path / "rep" / "results.csv")["run_id"])
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "## Not used: damaged results files (1 run(s))" in md and runs[0].name in md
    assert report.main([str(root), "--out", str(tmp_path / "rep2"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"warning: run {runs[0].name} not used: {runs[0]}/rows.csv is damaged" in err


def test_nothing_valid_left_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    path = run_dir(root, "only")
    write_table(path / "rows.csv", [{"run_id": "only", "level": 0, "status": "ok", "test_acc": 0.9}])
    (path / "DONE").write_text("x")
    (path / "config.json").write_text(json.dumps({"run_id": "only"}))
    df = pd.read_csv(path / "rows.csv")
    df["test_acc"] = ["high"]
    df.to_csv(path / "rows.csv", index=False)
    assert report.main([str(root), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "column 'test_acc' holds 'high', not a number" in err
    assert "1 run(s) with damaged results files were not used" in err


def test_rows_csv_that_is_a_directory_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _small_root(tmp_path / "root")
    bad = run_dir(root, "zz-dir")
    (bad / "rows.csv").mkdir(parents=True)
    assert report.main([str(root), "--quiet"]) == 0
    assert "run zz-dir not used" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["file", "under_file", "proc"])
def test_out_on_a_file_or_unwritable_place_exits_2(tmp_path: Path, where: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = _small_root(tmp_path / "root")
    (tmp_path / "f").write_text("x")
    out = {"file": tmp_path / "f", "under_file": tmp_path / "f" / "rep", "proc": Path("/proc/prunebench-rep")}[where]
    assert report.main([str(root), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out=") and "Traceback" not in err
    assert ("is a file" in err) if where != "proc" else ("is not writable" in err)


@pytest.mark.integration  # draws about 40 figures, three times
def test_unchanged_relaunch_is_up_to_date_and_changes_redraw_only_their_figures(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_root(tmp_path / "root", pd.concat([make_table(), make_table(dataset="mnist")]))
    out = root / "report"
    first = report.build_report(root)
    assert not first.up_to_date and not first.reused and "accuracy_vs_sparsity__mnist_mlp" in first.figures
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    assert report.main([str(root)]) == 0
    assert capsys.readouterr().out.startswith("report up to date: 30 run(s)")
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing written
    # One run of the mnist group changes: its group's and the overview's figures are redrawn,
    # the mnist1d group's are kept.
    run = run_dir(root, "mnist-b-s0")
    df = pd.read_csv(run / "rows.csv")
    df.loc[df["level"] == 1, "test_acc"] = 0.5
    write_table(run / "rows.csv", df)
    second = report.build_report(root)
    assert not second.up_to_date
    assert "accuracy_vs_sparsity__mnist1d_mlp" in second.reused
    assert "accuracy_vs_sparsity__mnist_mlp" not in second.reused and "accuracy_vs_sparsity" not in second.reused
    assert (out / "accuracy_vs_sparsity__mnist1d_mlp.png").stat().st_mtime_ns == \
        stamps[out / "accuracy_vs_sparsity__mnist1d_mlp.png"]
    # --force redraws everything; a deleted figure file is redrawn.
    (out / "layer_sparsity.png").unlink()
    third = report.build_report(root)
    assert "layer_sparsity" not in third.reused and (out / "layer_sparsity.png").exists()
    assert not report.build_report(root, force=True).reused
    assert json.loads((out / "report.json").read_text())["figures"]["pruning_drop"]["files"] == \
        ["pruning_drop.png"]


def test_sensitivity_file_name_matches_analysis() -> None:
    from prunebench.analysis import SENSITIVITY_FILE

    assert report.SENSITIVITY_FILE == SENSITIVITY_FILE


def test_channel_widths_read_without_torch(tmp_path: Path) -> None:
    import torch

    from prunebench.results.shapes import tensor_shapes

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.BatchNorm2d(16), torch.nn.Linear(4, 2))
    torch.save(net.state_dict(), tmp_path / "s.pt")
    assert tensor_shapes(tmp_path / "s.pt") == {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _channel_root(root: Path) -> Path:
    import torch

    root = _small_root(root)
    rid = "ch-run"
    rows = [{"run_id": rid, "seed": 0, "level": k, "dataset": "mnist1d", "model": "cnn", "method": "magnitude",
             "scope": "global", "structure": "channel", "schedule": "one_shot", "retrain": "finetune",
             "sparsity": 0.5 * k, "target_sparsity": 0.5 * k, "test_acc": 0.8, "status": "ok",
             "label": "magnitude/one_shot/finetune/channel"} for k in (0, 1)]
    write_table(run_dir(root, rid) / "rows.csv", rows)
    write_table(level_dir(run_dir(root, rid), 1) / "layers.csv", [{"layer": "conv1", "channels": 8}])
    buf = io.BytesIO()
    torch.save({"conv1.weight": torch.zeros(16, 3, 3), "conv1.bias": torch.zeros(16)}, buf)
    (level_dir(run_dir(root, rid), 0) / "state.pt").parent.mkdir(parents=True, exist_ok=True)
    (level_dir(run_dir(root, rid), 0) / "state.pt").write_bytes(buf.getvalue())
    (run_dir(root, rid) / "DONE").write_text("x")
    return root


PROBE = """
import sys
from prunebench import report
rc = report.main(sys.argv[1:])
res = report.build_report(sys.argv[1], sys.argv[3])
print("RC", rc, "TORCH", "torch" in sys.modules, "LIGHTNING", "pytorch_lightning" in sys.modules,
      "LAYERS", "layer_sparsity" in res.figures)
"""


@pytest.mark.integration
def test_report_does_not_import_torch(tmp_path: Path) -> None:
    root = _channel_root(tmp_path / "root")
    out = subprocess.run([sys.executable, "-c", PROBE, str(root), "--out", str(tmp_path / "rep"), "--quiet"],
                         capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"},
                         timeout=600)
    assert "RC 0 TORCH False LIGHTNING False LAYERS True" in out.stdout, out.stderr[-2000:]
    layers = pd.read_csv(level_dir(run_dir(root, "ch-run"), 1) / "layers.csv")
    assert list(layers["channels"]) == [8]
