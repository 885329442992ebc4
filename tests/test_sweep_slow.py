"""Sweeps end to end with real jobs on MNIST-1D (tiny budgets, CPU): the acceptance checks of
the sweep issue. Each test runs ``python -m prunebench`` in subprocesses, as a user would.

PostgreSQL: the shared-study test uses ``PRUNEBENCH_TEST_POSTGRES_URL`` if set, else starts a
throwaway server from Debian's postgresql binaries on loopback, else skips saying why.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import REPO
from optuna.trial import TrialState

from prunebench.results import load
from prunebench.results.store import read_rows, run_dir

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)
DATA = os.environ.get("PRUNEBENCH_DATA", str(REPO / "data"))
#: A trial in a couple of seconds: 3 dense epochs (trained once, cached), 1 fine-tune epoch per level.
TINY = ["train.epochs=3", "retrain.epochs=1", "metrics.latency=false", "trainer=cpu", "trainer.threads=1",
        "trainer.progress=false", "report=false"]
#: Optuna sweeps: heartbeats every second, a trial silent for 3 s is stale (a killed launch).
FAST_HEARTBEAT = ["sweep.heartbeat_interval=1", "sweep.grace_period=3"]
PARETO = "pareto_mnist1d_mlp"


def cmd(root: Path, *args: str) -> list[str]:
    optuna_sweep = any(a.startswith("sweep=optuna") for a in args)
    return [sys.executable, "-m", "prunebench", f"paths.root={root}", *TINY,
            *(FAST_HEARTBEAT if optuna_sweep else []), *args]


def env() -> dict[str, str]:
    return {**os.environ, "PRUNEBENCH_DATA": DATA, "PL_DISABLE_FORK": "1"}


def run(args: list[str], timeout: int = 400) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(args, cwd=REPO, env=env(), text=True, capture_output=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-4000:]
    return res


def study_of(root: Path, name: str = PARETO, storage: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage or f"sqlite:///{root / 'studies' / 'optuna.db'}")


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def check_results(root: Path, study: optuna.Study) -> pd.DataFrame:
    """Rows intact and consistent with the study: one run per complete trial, values equal."""
    for rows_csv in root.glob("runs/*/rows.csv"):
        rows = read_rows(rows_csv.parent)  # parses: no half-written file
        assert rows["level"].is_unique, rows_csv
        if (rows_csv.parent / "DONE").exists() and (rows["status"] == "ok").all():
            assert list(rows["level"]) == list(range(len(rows))), rows_csv
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    by_run: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in complete:
        by_run.setdefault(t.user_attrs["run_id"], []).append(t)
    for run_id, trials in by_run.items():
        # Trials share a run only when they sampled the same point (the later one reused it).
        assert all(t.params == trials[0].params for t in trials), run_id
        final = read_rows(run_dir(root, run_id)).iloc[-1]
        assert final["trial"] == trials[0].number and final["study"] == study.study_name
        for t in trials:
            for name, value in zip(study.metric_names, t.values):
                assert final[name] == pytest.approx(value)
    return load(root)


def launched(stderr: str) -> int:
    line = next(ln for ln in stderr.splitlines() if "trial(s) launched by this process" in ln)
    return int(line.split("; ")[-1].split(" trial(s)")[0])


# ---- 12 trials, 2 jobs, Pareto front; a larger budget adds only the new trials ---------------

def test_pareto_sweep_then_larger_budget(tmp_path: Path) -> None:
    root = tmp_path / "out"
    first = run(cmd(root, "sweep=optuna_pareto", "sweep.n_trials=12", "sweep.n_jobs=2", "report=true"))
    study = study_of(root)
    assert states(study) == {"COMPLETE": 12} and launched(first.stderr) == 12
    assert study.metric_names == ["val_acc", "sparsity"] and len(study.best_trials) >= 1
    assert (root / "report" / f"pareto_front_{PARETO}.png").stat().st_size > 0
    assert (root / "report" / f"search_history_{PARETO}.png").stat().st_size > 0
    table = check_results(root, study)
    first = {min(t.number for t in study.trials if t.user_attrs["run_id"] == r) for r in table["run_id"].unique()}
    assert sorted(table["trial"].dropna().unique()) == sorted(first)  # rows carry the trial number
    assert len(first) >= 11  # TPE on a continuous space: (almost) every trial its own run
    stamps = {t.number: t.datetime_complete for t in study.trials}

    second = run(cmd(root, "sweep=optuna_pareto", "sweep.n_trials=14", "sweep.n_jobs=2"))
    study = study_of(root)
    assert launched(second.stderr) == 2 and states(study) == {"COMPLETE": 14}
    assert {t.number: t.datetime_complete for t in study.trials[:12]} == stamps  # old trials untouched
    check_results(root, study)
    assert launched(run(cmd(root, "sweep=optuna_pareto", "sweep.n_trials=14")).stderr) == 0


# ---- SIGKILL mid-sweep, launch again --------------------------------------------------------

def test_killed_sweep_is_finished_by_the_next_launch(tmp_path: Path) -> None:
    root = tmp_path / "out"
    args = cmd(root, "sweep=optuna_pareto", "sweep.n_trials=8", "sweep.n_jobs=2", "sweep.max_retry=1")
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(args, cwd=REPO, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    db = root / "studies" / "optuna.db"
    deadline = time.time() + 240
    seen: dict[str, int] = {}
    try:
        while time.time() < deadline:
            time.sleep(0.3)
            if db.exists():
                try:
                    seen = states(study_of(root))
                except Exception:  # the study is being created
                    continue
                if seen.get("COMPLETE", 0) >= 2 and seen.get("RUNNING", 0) >= 1:
                    break
        assert seen.get("RUNNING", 0) >= 1, f"never caught a running trial: {seen}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweeper and its joblib workers, mid-trial
        proc.wait()
    running = [t.number for t in study_of(root).trials if t.state == TrialState.RUNNING]
    assert running

    # The killed trials stay RUNNING until their heartbeat is grace_period (3 s) old; the
    # relaunch then marks them failed and reruns them first, resuming their runs.
    run(cmd(root, "sweep=optuna_pareto", "sweep.n_trials=8", "sweep.n_jobs=2", "sweep.max_retry=1"))
    study = study_of(root)
    by_state = states(study)
    assert by_state["COMPLETE"] == 8 and set(by_state) <= {"COMPLETE", "FAIL"}
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert sorted(t.number for t in failed) == sorted(running)  # exactly the killed ones
    retries = {t.system_attrs.get("failed_trial"): t for t in study.trials if "failed_trial" in t.system_attrs}
    for t in failed:  # each killed trial was retried once with the same point, and completed
        assert retries[t.number].state == TrialState.COMPLETE and retries[t.number].params == t.params
    check_results(root, study)


# ---- two workers, one study: SQLite and PostgreSQL -----------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL: PRUNEBENCH_TEST_POSTGRES_URL, or a throwaway server on loopback."""
    url = os.environ.get("PRUNEBENCH_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    try:
        import psycopg  # noqa: F401 - SQLAlchemy 2's postgresql:// driver
    except ImportError:
        pytest.skip("PostgreSQL test skipped: no driver (pip install 'psycopg[binary]') and no PRUNEBENCH_TEST_POSTGRES_URL")
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    initdb = shutil.which("initdb", path=os.pathsep.join([*bins[-1:], os.environ.get("PATH", "")]))
    if initdb is None:
        pytest.skip("PostgreSQL test skipped: no server (apt-get install postgresql, or set "
                    "PRUNEBENCH_TEST_POSTGRES_URL=postgresql://user@host/db)")
    bindir = Path(initdb).resolve().parent
    # Not under pytest's tmp dir: that is private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="prunebench-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: use Debian's postgres user
        shutil.chown(base, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = base / "data"
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w",
                        "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"PostgreSQL test skipped: could not start a local server ({exc}: "
                    f"{detail.decode(errors='replace').strip()[:300]})")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_one_study(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root = tmp_path / "out"
    name = f"shared_{backend}_{tmp_path.name}"[:60]
    storage = f"sqlite:///{root / 'studies' / 'optuna.db'}"
    if backend == "postgresql":
        storage = request.getfixturevalue("postgres_url")
    # One job at a time, in-process (basic launcher): the two workers are the two processes.
    args = cmd(root, "sweep=optuna_pareto", "hydra/launcher=basic", "sweep.n_trials=6", "sweep.n_jobs=1",
               f"sweep.study_name={name}", f"sweep.storage='{storage}'")
    procs = [subprocess.Popen(args, cwd=REPO, env=env(), text=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=400)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    study = study_of(root, name, storage)
    assert states(study) == {"COMPLETE": 6}  # no trial lost, none run twice, none over budget
    assert sorted(t.number for t in study.trials) == list(range(6))
    per_worker = [launched(o) for o in outs]
    assert sum(per_worker) == 6 and min(per_worker) >= 1, per_worker
    check_results(root, study)


# ---- a diverging trial; pruned trials --------------------------------------------------------

def test_diverging_trial_is_failed_and_the_sweep_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "out"
    # A grid over the fine-tune LR (other preset parameters fixed): lr=1e20 makes the loss NaN.
    res = run(cmd(root, "sweep=optuna_accuracy", "sweep.sampler=grid", "sweep.seed=0", "sweep.pruner=null",
                  "sweep.n_trials=3", "sweep.n_jobs=1", "schedule.iterations=2", "retrain.epochs=1",
                  "pruning.scope=global", "retrain.lr=choice(1e20,0.001,0.003)"))
    study = study_of(root, "accuracy_mnist1d_mlp_s0.9")
    assert states(study) == {"COMPLETE": 2, "FAIL": 1}  # every grid point ran despite the failure
    (bad,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert bad.params == {"retrain.lr": 1e20}
    assert bad.user_attrs["status"] == "diverged" and "nan" in bad.user_attrs["error"].lower()
    rows = read_rows(run_dir(root, bad.user_attrs["run_id"]))
    assert rows["status"].iloc[-1] == "diverged" and rows["trial"].iloc[-1] == bad.number
    assert "trial" in res.stderr and "diverged" in res.stderr
    check_results(root, study)


def test_pruner_stops_hopeless_trials_after_a_level(tmp_path: Path) -> None:
    root = tmp_path / "out"
    # Threshold pruner at val_acc 0.99: every trial is hopeless after level 1 of 3.
    run(cmd(root, "sweep=optuna_accuracy", "sweep.pruner=threshold", "+sweep.pruner_kwargs.lower=0.99",
            "sweep.n_trials=2", "sweep.n_jobs=2", "schedule.iterations=3", "retrain.epochs=1",
            "pruning.scope=global"))
    study = study_of(root, "accuracy_mnist1d_mlp_s0.9")
    assert states(study) == {"PRUNED": 2}
    for t in study.trials:
        assert sorted(t.intermediate_values) == [0, 1] and t.user_attrs["status"] == "pruned"
        rows = read_rows(run_dir(root, t.user_attrs["run_id"]))
        assert list(rows["status"]) == ["ok", "ok", "pruned"]  # level 2 never trained
        assert not (run_dir(root, t.user_attrs["run_id"]) / "DONE").exists()  # resumable if wanted


# ---- cluster launcher, locally; grid with joblib -----------------------------------------------

def test_submitit_local_launcher(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    root = tmp_path / "out"
    run(cmd(root, "sweep=optuna_pareto", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
            "sweep.n_trials=2", "sweep.n_jobs=2"))
    study = study_of(root)
    assert states(study) == {"COMPLETE": 2}
    assert list((root / "logs" / "sweeps" / PARETO / ".submitit").glob("*/*_result.pkl"))
    check_results(root, study)


def test_parallel_grid_relaunch_trains_nothing(tmp_path: Path) -> None:
    root = tmp_path / "out"
    args = cmd(root, "sweep=grid_methods", "schedule.target_sparsity=0.8", "seed=0,1", "sweep.n_jobs=2")
    first = run(args)
    assert "grid: 4 job(s), 4 distinct run(s), 0 finished before or duplicate (not launched), 4 to run" in first.stderr
    table = load(root)
    assert table["run_id"].nunique() == 4 and (table["status"] == "ok").all()
    # Runs of one seed share one dense model: trained once per seed, then read from the cache.
    assert len(list((root / "cache" / "dense").glob("*/final.pt"))) == 2
    second = run(args)
    assert "4 finished before or duplicate (not launched), 0 to run" in second.stderr
    assert load(root).equals(table)
