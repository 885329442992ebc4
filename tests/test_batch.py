"""Parallel studies (prunebench.engine.batch): same files as a sequential study, order, failures, no orphans."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from prunebench.engine import batch
from prunebench.errors import ConfigError

HERE = Path(__file__).parent
FAILING = HERE / "helpers" / "failing_net.py"
#: Columns that measure time, not results (they differ between any two launches).
from prunebench.results.store import result_digests

TIMING = {"train_seconds", "finished_at", "latency_ms", "latency_ms_dense", "speedup_measured"}
SMALL = ["data=synthetic", "data.input_shape=[16]", "data.n_train=256", "data.n_test=64", "data.val_size=64",
         "data.batch_size=32", "model.widths=[16]", "train.epochs=2", "retrain.epochs=1", "metrics.latency=false",
         "trainer=cpu", "trainer.threads=1", "trainer.progress=false", "report=false"]


def test_resolve_jobs() -> None:
    cores = batch.usable_cores()
    assert batch.resolve_jobs("auto", 1) == cores
    assert batch.resolve_jobs("auto", 2) == max(cores // 2, 1)
    assert batch.resolve_jobs("auto", None) == 1  # torch uses every core in one run
    assert batch.resolve_jobs(3, 1) == 3
    for bad in (0, -2, "two", 1.5, True):
        with pytest.raises(ConfigError, match=r"study.jobs=.* must be a whole number >= 1 or 'auto'"):
            batch.resolve_jobs(bad, 1)


def specs_of(tmp_path: Path, variants: dict[str, list[str]], seeds: list[int], *extra: str) -> list:
    from prunebench.api import _specs

    return _specs([*SMALL, f"paths.root={tmp_path}", f"paths.data_dir={tmp_path / 'data'}", *extra], None, None, None,
                  variants, seeds)


def test_plan_trains_shared_dense_models_first_and_tickets_before_their_controls(tmp_path: Path) -> None:
    from prunebench.engine.loop import Run

    specs = specs_of(tmp_path, {"reinit": ["retrain=reinit", "retrain.branch=true", "schedule=iterative"],
                                "ticket": ["retrain=weight_rewind", "schedule=iterative"],
                                "one_shot": ["schedule=one_shot"]}, [0, 1])
    runs = [Run(s) for s in specs]
    tasks = batch.plan(runs)
    kinds = [t.kind for t in tasks]
    assert kinds == ["dense", "dense"] + ["run"] * 6  # seeds 0 and 1: one dense model each, shared by 3 runs
    keys = [t.key for t in tasks]
    for r in runs:
        t = tasks[keys.index(f"run:{r.spec.run_id}")]
        assert f"dense:{r.spec.dense_id}" in t.deps
        if r.ticket is not None:  # the control waits for its ticket, which is launched before it
            assert f"run:{r.ticket.run_id}" in t.deps
            assert keys.index(f"run:{r.ticket.run_id}") < keys.index(t.key)
    run_keys = [t.key for t in tasks if t.kind == "run"]
    assert set(run_keys[:2]) == {f"run:{r.ticket.run_id}" for r in runs if r.ticket is not None}
    assert sorted(t.index for t in tasks if t.kind == "run") == [1, 2, 3, 4, 5, 6]


def file_digests(root: Path) -> dict[str, str]:
    return result_digests(root)


def study_conf(tmp_path: Path, variants: dict[str, list[str]], seeds: list[int]) -> Path:
    """A config folder with ``experiment/batch_test.yaml``: this study (``--config-dir``)."""
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True, exist_ok=True)
    lines = ["# @package _global_", "study:", "  jobs: auto", f"  seeds: {seeds}", "  variants:"]
    lines += [f"    {name}: [{', '.join(ov)}]" for name, ov in variants.items()]
    (conf / "experiment" / "batch_test.yaml").write_text("\n".join(lines) + "\n")
    return conf


STUDY = {"one_shot": ["schedule=one_shot"],
         "ticket": ["retrain=weight_rewind", "schedule=iterative", "schedule.iterations=2"],
         "reinit": ["retrain=reinit", "retrain.branch=true", "schedule=iterative", "schedule.iterations=2"]}


def cli_args(root: Path, conf: Path, jobs: int, base: list[str] = SMALL) -> list[str]:
    return [sys.executable, "-m", "prunebench", "--config-dir", str(conf), "experiment=batch_test", *base,
            f"paths.root={root}", f"paths.data_dir={root / 'data'}", f"study.jobs={jobs}"]


def cli(root: Path, conf: Path, jobs: int, base: list[str] = SMALL) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cli_args(root, conf, jobs, base), capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The study run sequentially (``study.jobs=1``): its config folder and results root."""
    tmp = tmp_path_factory.mktemp("reference")
    conf = study_conf(tmp, STUDY, [0, 1])
    one = cli(tmp / "one", conf, jobs=1)
    assert one.returncode == 0, one.stderr[-3000:]
    return conf, tmp / "one"


@pytest.mark.integration
def test_parallel_study_writes_the_same_files_as_a_sequential_one(tmp_path: Path, reference: tuple[Path, Path]) -> None:
    conf, one = reference
    two = cli(tmp_path / "two", conf, jobs=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = file_digests(one), file_digests(tmp_path / "two")
    assert len([k for k in a if k.endswith("rows.csv")]) == 6 and any("weights.pt" in k for k in a)
    assert a == b
    assert "6 run(s): 6 trained, 0 skipped" in two.stderr


@pytest.mark.integration
def test_a_failing_run_fails_alone_and_the_study_exits_1(tmp_path: Path) -> None:
    target = f"'{FAILING}:make_net'"
    conf = study_conf(tmp_path, {"good": ["model=custom", f"model.target={target}"],
                                 "bad": ["model=custom", f"model.target={target}", "+model.fail=true"]}, [0, 1])
    out = cli(tmp_path / "res", conf, jobs=2, base=[a for a in SMALL if not a.startswith("model.")])
    assert out.returncode == 1, out.stderr[-3000:]
    assert "4 run(s): 4 trained, 0 skipped, 2 failed" in out.stderr
    rows = pd.concat([pd.read_csv(f) for f in (tmp_path / "res").glob("runs/*/rows.csv")])
    assert sorted(rows.groupby("run_id")["status"].last()) == ["failed", "failed", "ok", "ok"]
    assert rows["error"].dropna().str.contains("training step refused on purpose").all()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc")
@pytest.mark.parametrize(("sig", "seed"), [(signal.SIGKILL, 0), (signal.SIGKILL, 1), (signal.SIGINT, 2)])
def test_killed_parallel_study_leaves_no_worker_and_resumes_to_the_same_files(tmp_path: Path, sig: int, seed: int,
                                                                              reference: tuple[Path, Path]) -> None:
    """SIGKILL of the launcher (the workers die with it) or Ctrl-C (SIGINT: it stops them)."""
    conf, ref = reference
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = cli_args(tmp_path / "run", conf, jobs=2)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[int] = []
    wait_until = time.monotonic() + 120
    while len(children) < 2 and time.monotonic() < wait_until and proc.poll() is None:  # the pool is up
        time.sleep(0.2)
        listing = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        children = [int(p) for p in listing.read_text().split()] if listing.exists() else []
    assert len(children) >= 2, "the study never started its 2 workers"
    time.sleep(random.Random(seed).uniform(0.5, 6.0))  # somewhere in the dense models or the runs
    proc.send_signal(sig)
    proc.wait(timeout=60)
    start = time.monotonic()
    deadline = time.monotonic() + 30
    alive = children
    while alive and time.monotonic() < deadline:
        alive = [c for c in alive if Path(f"/proc/{c}").exists() and
                 "Z" not in (Path(f"/proc/{c}/stat").read_text().split()[2:3] or ["Z"])]
        time.sleep(0.5)
    assert not alive, f"workers left behind {time.monotonic() - start:.0f}s after the kill: {alive}"
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert file_digests(ref) == file_digests(tmp_path / "run")
    leftovers = [p for p in (tmp_path / "run").rglob("*") if ".tmp" in p.name or p.name == "LOCK"]
    assert not leftovers


@pytest.mark.integration
def test_api_study_sends_a_model_object_to_its_workers(tmp_path: Path) -> None:
    import torch
    from torch import nn

    import prunebench

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 10))
    keys = {"data.input_shape": [16], "data.n_train": 256, "data.n_test": 64, "data.val_size": 64,
            "data.batch_size": 32, "train.epochs": 1, "retrain.epochs": 1, "metrics.latency": False,
            "trainer": "cpu", "trainer.threads": 1, "trainer.progress": False}
    variants = {"half": ["schedule=one_shot", "schedule.target_sparsity=0.5"],
                "most": ["schedule=one_shot", "schedule.target_sparsity=0.8"]}
    frames = {}
    for jobs in (1, 2):
        lines: list[str] = []
        frames[jobs] = prunebench.study(variants, model=net, data="synthetic", seeds=[0, 1], root=tmp_path / str(jobs),
                                        log=lines.append, report=False, jobs=jobs, **keys)
        assert not any("cannot be sent to worker processes" in ln for ln in lines)
    a, b = (frames[j].drop(columns=[c for c in frames[j].columns if c in TIMING]) for j in (1, 2))
    assert len(a) == 8 and (b["status"] == "ok").all() and b["model"].str.startswith("object_sequential_").all()
    pd.testing.assert_frame_equal(a.sort_values(["run_id", "level"]).reset_index(drop=True),
                                  b.sort_values(["run_id", "level"]).reset_index(drop=True))
    assert file_digests(tmp_path / "1") == file_digests(tmp_path / "2")
