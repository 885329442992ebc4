"""End to end through the real command line (in-process ``prunebench.cli.main``).

Tiny runs on generated data: a run folder with the documented columns, skip-if-done,
resume after an interruption, studies, and bad input rejected before any training with
the key and value named, without touching what is already on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from prunebench.cli import main
from prunebench.results import schema
from prunebench.results.levels import load_level_state
from prunebench.results.store import load

pytestmark = pytest.mark.integration

DATA = [
    "data=synthetic",
    "data.input_shape=[16]",
    "data.n_train=320",
    "data.n_test=64",
    "data.val_size=64",
    "data.batch_size=32",
]
SYNTH = [
    "model.widths=[16]",
    "train.epochs=2",
    "retrain.epochs=1",
    "metrics.latency=false",
    "trainer=cpu",
    "report=false",
]


def cli(root: Path, *overrides: str) -> None:
    data = [] if any(o.startswith("data=") for o in overrides) else DATA
    main([*data, *SYNTH, f"paths.root={root}", f"paths.data_dir={root / 'data'}", *overrides])


def run_dirs(root: Path) -> list[Path]:
    runs = root / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.exists() else []


def bad(root: Path, capsys: pytest.CaptureFixture[str], *overrides: str, code: int = 2) -> str:
    with pytest.raises(SystemExit) as exc:
        cli(root, *overrides)
    assert exc.value.code == code
    return capsys.readouterr().err


def test_run_writes_rows_masks_and_is_skipped_when_launched_again(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cli(tmp_path, "schedule=iterative", "schedule.target_sparsity=0.75", "schedule.iterations=2", "seed=3")
    (run,) = run_dirs(tmp_path)
    assert (run / "DONE").exists()
    rows = pd.read_csv(run / "rows.csv")
    assert list(rows["level"]) == [0, 1, 2]
    assert set(schema.REQUIRED) <= set(rows.columns)
    # geometric: remove half of the remaining weights per step -> 0.5 then 0.75
    assert rows["target_sparsity"].tolist() == pytest.approx([0.0, 0.5, 0.75])
    # exact counts: within one weight per tensor of the target (global scope: exact overall)
    n = rows["prunable_params"].iloc[0]
    assert abs(rows["sparsity"].iloc[-1] - 0.75) <= 1 / n
    assert (rows["status"] == "ok").all() and (rows["seed"] == 3).all()
    assert rows["compression"].iloc[-1] > rows["compression"].iloc[0] == pytest.approx(1.0)
    for k in (1, 2):
        state, mask = load_level_state(run / "levels" / str(k))
        for name, m in mask.items():
            assert torch.all(state[name][~m.bool()] == 0), f"level {k}: {name} has pruned weights that are not zero"
    config = json.loads((run / "config.json").read_text())
    assert config["run_id"] == run.name
    assert config["prunable"]  # which tensors were prunable is recorded

    before = (run / "rows.csv").stat().st_mtime_ns
    capsys.readouterr()
    cli(tmp_path, "schedule=iterative", "schedule.target_sparsity=0.75", "schedule.iterations=2", "seed=3")
    err = capsys.readouterr().err
    assert "finished before, skipped" in err and "1 run(s): 0 trained, 1 skipped" in err
    assert (run / "rows.csv").stat().st_mtime_ns == before
    assert len(run_dirs(tmp_path)) == 1


def test_interrupted_run_resumes_from_its_last_finished_level(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    args = ("schedule=iterative", "schedule.target_sparsity=0.875", "schedule.iterations=3")
    cli(tmp_path, *args)
    (run,) = run_dirs(tmp_path)
    full = pd.read_csv(run / "rows.csv")
    # Simulate a crash during level 3: no DONE, level 3's row and files missing.
    (run / "DONE").unlink()
    full[full["level"] < 3].to_csv(run / "rows.csv", index=False)
    for f in (run / "levels" / "3").iterdir():
        f.unlink()
    capsys.readouterr()
    cli(tmp_path, *args)
    err = capsys.readouterr().err
    assert "level 3/3" in err and "level 1/3" not in err and "level 2/3" not in err
    resumed = pd.read_csv(run / "rows.csv")
    assert list(resumed["level"]) == [0, 1, 2, 3]
    # finished levels were kept as they were, not recomputed
    pd.testing.assert_frame_equal(resumed[resumed["level"] < 3].reset_index(drop=True),
                                  full[full["level"] < 3].reset_index(drop=True))
    assert resumed["sparsity"].iloc[-1] == pytest.approx(full["sparsity"].iloc[-1])
    assert (run / "DONE").exists()


def test_failed_level_is_redone_on_resume(tmp_path: Path) -> None:
    args = ("schedule=one_shot", "schedule.target_sparsity=0.5")
    cli(tmp_path, *args)
    (run,) = run_dirs(tmp_path)
    rows = pd.read_csv(run / "rows.csv")
    (run / "DONE").unlink()
    rows.loc[rows["level"] == 1, "status"] = "failed"
    rows.to_csv(run / "rows.csv", index=False)
    cli(tmp_path, *args)
    again = pd.read_csv(run / "rows.csv")
    assert list(again["level"]) == [0, 1] and (again["status"] == "ok").all()


def test_study_runs_every_variant_and_seed_and_reports(tmp_path: Path) -> None:
    cli(tmp_path, "schedule=one_shot", "study={seeds: [0, 1], variants: {a: ['schedule.target_sparsity=0.5'], "
                  "b: ['schedule.target_sparsity=0.9']}}", "report=true")
    runs = run_dirs(tmp_path)
    assert len(runs) == 4
    df = load(tmp_path)
    assert sorted(df.query("level == 1")["target_sparsity"].round(2).tolist()) == [0.5, 0.5, 0.9, 0.9]
    assert sorted(df["seed"].unique().tolist()) == [0, 1]
    report = tmp_path / "report"
    assert (report / "results.parquet").exists() and (report / "accuracy_vs_sparsity.png").exists()
    assert len(pd.read_parquet(report / "results.parquet")) == len(df) == 8


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.name=nosuchnet", "resnet56"),  # the error lists the valid names
        ("pruning.method=nosuch", "magnitude"),  # the error lists the valid names
        ("schedule.target_sparsity=1.5", "schedule.target_sparsity"),
        ("schedule.iterations=0", "schedule.iterations"),
        ("retrain.lr=-0.1", "retrain.lr"),
        ("pruning.scope=nowhere", "pruning.scope"),
    ],
)
def test_bad_input_is_rejected_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               override: str, expected: str) -> None:
    err = bad(tmp_path, capsys, override)
    assert "error:" in err
    assert expected in err
    assert "Traceback" not in err
    assert not run_dirs(tmp_path)


def test_unknown_config_group_option_lists_choices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Hydra itself rejects an unknown group option and lists the available ones: bad input, exit 2.
    err = bad(tmp_path, capsys, "model=nosuchnet", code=2)
    assert "Could not find 'model/nosuchnet'" in err and "lenet_300_100" in err
    assert not run_dirs(tmp_path)


def test_unknown_method_lists_valid_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = bad(tmp_path, capsys, "pruning.method=magnitud")
    assert "pruning.method" in err and "'magnitud'" in err and "magnitude" in err.split("magnitud'", 1)[1]


def test_missing_data_files_name_the_root_and_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = bad(tmp_path, capsys, "data=mnist", "data.download=false")
    assert str(tmp_path / "data") in err
    assert "download" in err
    assert not run_dirs(tmp_path)


def test_study_with_one_bad_variant_trains_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = bad(tmp_path, capsys, "data=mnist1d", "schedule=one_shot",
              "study={seeds: [0], variants: {good: ['schedule.target_sparsity=0.5'], "
              "bad: ['data=mnist', 'data.download=false']}}")
    assert "download" in err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("final.pt"))
    assert all(not (r / "rows.csv").exists() for r in run_dirs(tmp_path))


def test_study_variant_that_does_not_compose_is_a_config_error(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    err = bad(tmp_path, capsys, "study={seeds: [0], variants: {typo: ['schedule.target_sparsty=0.5']}}")
    assert "study variant 'typo'" in err and "target_sparsty" in err
    assert not run_dirs(tmp_path)


def test_corrupt_dense_checkpoint_is_a_clear_error_and_is_left_alone(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cli(tmp_path, "schedule=one_shot", "schedule.target_sparsity=0.5")
    (final,) = list((tmp_path / "cache").rglob("final.pt"))
    final.write_bytes(b"not a checkpoint")
    (run,) = run_dirs(tmp_path)
    rows_before = (run / "rows.csv").read_bytes()
    capsys.readouterr()
    err = bad(tmp_path, capsys, "schedule=one_shot", "schedule.target_sparsity=0.7")
    assert "final.pt" in err and "Traceback" not in err
    assert final.read_bytes() == b"not a checkpoint"  # evidence kept, not overwritten
    assert (run / "rows.csv").read_bytes() == rows_before
    assert len(run_dirs(tmp_path)) == 1  # the new run never started


def test_corrupt_level_checkpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("schedule=iterative", "schedule.target_sparsity=0.75", "schedule.iterations=2")
    cli(tmp_path, *args)
    (run,) = run_dirs(tmp_path)
    (run / "DONE").unlink()
    (run / "levels" / "1" / "mask.pt").write_bytes(b"\x00garbage")
    capsys.readouterr()
    err = bad(tmp_path, capsys, *args)
    assert "mask.pt" in err
    assert (run / "levels" / "1" / "mask.pt").read_bytes() == b"\x00garbage"


def test_python_dash_m_equals_console_script() -> None:
    """Both entry points run the same main: same output and exit status, bad input included."""
    import shutil
    import subprocess
    import sys

    script = shutil.which("prunebench", path=str(Path(sys.executable).parent))
    assert script is not None, "the prunebench console script is not installed next to this python"
    for args in (["describe", "pruning/synflow"], ["schedule.target_sparsity=1.5"]):
        a = subprocess.run([sys.executable, "-m", "prunebench", *args], capture_output=True, text=True, timeout=120)
        b = subprocess.run([script, *args], capture_output=True, text=True, timeout=120)
        assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)
    assert a.returncode == 2 and "schedule.target_sparsity=1.5 is out of range" in a.stderr


def test_failed_run_exits_nonzero_and_is_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that crashes is recorded as failed, the summary counts it and the exit status is 1."""
    import prunebench.engine.loop as loop

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(loop, "train_dense", boom)
    with pytest.raises(SystemExit) as exc:
        cli(tmp_path, "schedule=one_shot", "schedule.target_sparsity=0.5")
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "1 run(s): 1 trained, 0 skipped, 1 failed" in err
    (run,) = run_dirs(tmp_path)
    rows = pd.read_csv(run / "rows.csv")
    assert rows["status"].tolist() == ["failed"] and "disk on fire" in rows["error"].iloc[0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+train.optimizer.momentun=0.9"], "train.optimizer.momentun is not an argument of torch.optim.Adam"),
        (["retrain=weight_rewind", "retrain.rewind_step=100000"],
         "retrain.rewind_step=100000 is beyond the dense run, which has 16 optimizer steps"),
        (["pruning=nm", "pruning.n=2", "pruning.m=3", "schedule=one_shot"],
         r"set schedule.target_sparsity=0.333333"),
        (["trainer.accelerator=gpu"], "trainer.accelerator='gpu' needs a CUDA GPU and none is visible"),
        (["pruning=nm", "pruning.method=wanda", "pruning.scope=owl", "schedule=one_shot",
          "schedule.target_sparsity=0.5"],
         "pruning.scope='owl' gives every layer its own sparsity, but pruning.structure=nm fixes each layer"),
    ],
)
def test_checks_that_need_torch_still_come_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            overrides: list[str], message: str) -> None:
    import re

    err = bad(tmp_path, capsys, *overrides)
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert not (tmp_path / "cache").exists() and not run_dirs(tmp_path)


def test_nm_advice_is_accepted(tmp_path: Path) -> None:
    """The N:M error's suggested value is itself accepted (it used to be rejected)."""
    cli(tmp_path, "pruning=nm", "pruning.n=2", "pruning.m=3", "schedule=one_shot", "schedule.target_sparsity=0.333333",
        "data.input_shape=[18]", "model.widths=[18]")
    (run,) = run_dirs(tmp_path)
    assert pd.read_csv(run / "rows.csv")["status"].tolist() == ["ok", "ok"]


def test_root_on_a_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(SystemExit) as exc:
        main([*DATA, *SYNTH, f"paths.root={f}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"paths.root='{f}'" in err and "is a file, not a folder" in err and "Traceback" not in err


def test_exploding_fine_tune_is_recorded_as_diverged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Adam at retrain.lr=10 blows the logits up without reaching NaN: still 'diverged'."""
    cli(tmp_path, "schedule=one_shot", "schedule.target_sparsity=0.5", "retrain.lr=10", "model.widths=[64,64]")
    err = capsys.readouterr().err
    (run,) = run_dirs(tmp_path)
    rows = pd.read_csv(run / "rows.csv")
    assert rows["status"].tolist() == ["ok", "diverged"]
    assert "exceeds 100 x ln(" in rows["error"].iloc[-1]
    assert "diverged" in err and (run / "DONE").exists()


def test_failed_download_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """data.download=true without a network: one line naming the data set and root, exit 2."""
    import urllib.error

    from prunebench.data.synthetic import Synthetic

    def offline(self) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(Synthetic, "prepare_data", offline)
    err = bad(tmp_path, capsys)
    assert "data='synthetic': could not get the data set into data.root=" in err
    assert "URLError" in err and "Traceback" not in err
