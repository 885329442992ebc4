"""Sweep workers die with the sweeper; a relaunch does not duplicate a running trial (issue 12, item 13).

SIGKILL of an Optuna sweep's main process used to leave its joblib workers training for
many minutes. ``make_launcher`` wraps the task function for the joblib launcher in
``DiesWithParent``: each worker watches the sweeper and ends when it is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from prunebench.sweep.common import DiesWithParent
from prunebench.sweep.driver import StudyDriver
from prunebench.sweep.settings import SweepSettings
from prunebench.sweep.space import parse_space

REPO = Path(__file__).resolve().parents[1]

POOL = textwrap.dedent("""
    import os, sys, time
    from joblib import Parallel, delayed
    from prunebench.sweep.common import DiesWithParent

    def job(i):
        open(os.path.join(sys.argv[1], f"worker{i}"), "w").write(str(os.getpid()))
        time.sleep(120)  # a trial that trains for minutes
        return i

    task = DiesWithParent(job) if sys.argv[2] == "watch" else job
    Parallel(n_jobs=2, backend="loky")(delayed(task)(i) for i in range(2))
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too (reaped by init shortly)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _pool_workers_after_kill(tmp_path: Path, mode: str) -> list[int]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", POOL, str(tmp_path), mode], env=env)
    files = [tmp_path / "worker0", tmp_path / "worker1"]
    deadline = time.monotonic() + 120
    while not all(f.exists() and f.read_text() for f in files):
        assert time.monotonic() < deadline and proc.poll() is None, "pool did not start"
        time.sleep(0.2)
    pids = [int(f.read_text()) for f in files]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if _alive(p)]
    for p in left:  # never leave what this test started
        os.kill(p, signal.SIGKILL)
    return left


@pytest.mark.integration
def test_workers_die_with_the_sweeper(tmp_path: Path) -> None:
    assert _pool_workers_after_kill(tmp_path, "watch") == []


@pytest.mark.integration
def test_unwatched_workers_are_orphaned(tmp_path: Path) -> None:
    """The control: without the watch the workers outlive the sweeper (what the issue saw)."""
    assert len(_pool_workers_after_kill(tmp_path, "plain")) == 2


def test_dies_with_parent_calls_through_in_the_sweeper() -> None:
    task = DiesWithParent(lambda cfg: cfg * 2)
    assert task(21) == 42
    from prunebench.sweep import common

    assert "thread" not in common._WATCH  # no watch in the sweeper's own process


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")
def test_relaunch_waits_for_a_trial_running_elsewhere(tmp_path: Path) -> None:
    """A RUNNING trial with a fresh heartbeat (an orphan, or another worker) is waited for, not re-run."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = SweepSettings.from_config({"study_name": "s", "n_trials": 1, "heartbeat_interval": 1, "grace_period": 30},
                                  tmp_path)
    storage = s.make_storage()
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"])
    elsewhere = study.ask({"x": FloatDistribution(0, 1)})
    stop = threading.Event()

    def worker() -> None:  # beats for ~2 s, then tells the study its result
        for _ in range(8):
            storage.record_heartbeat(elsewhere._trial_id)
            if stop.wait(0.25):
                return
        study.tell(elsewhere.number, 0.5)

    t = threading.Thread(target=worker)
    t.start()
    launched: list[list[str]] = []
    logs: list[str] = []
    try:
        driver = StudyDriver(s, parse_space({"x": "interval(0, 1)"}), lambda b, i: launched.extend(b) or [],
                             logs.append, poll_seconds=0.2)
        summary = driver.run()
    finally:
        stop.set()
        t.join()
    assert launched == [] and summary.launched == 0
    assert any("waiting for 1 trial(s) running elsewhere" in m for m in logs)
    assert [tr.state for tr in optuna.load_study(study_name="s", storage=s.storage).trials] == [TrialState.COMPLETE]


@pytest.mark.parametrize("target, wrapped", [
    ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", True),
    ("hydra._internal.core_plugins.basic_launcher.BasicLauncher", False),
])
def test_make_launcher_wraps_joblib_jobs(monkeypatch: pytest.MonkeyPatch, target: str, wrapped: bool) -> None:
    from hydra.core.plugins import Plugins
    from omegaconf import OmegaConf

    from prunebench.sweep.common import make_launcher

    seen = {}
    monkeypatch.setattr(Plugins.instance(), "instantiate_launcher",
                        lambda hydra_context, task_function, config: seen.setdefault("task", task_function))
    config = OmegaConf.create({"hydra": {"launcher": {"_target_": target, "n_jobs": 1}}})

    def task(cfg: object) -> object:
        return cfg

    make_launcher(None, task, config, 2)
    assert isinstance(seen["task"], DiesWithParent) is wrapped
    assert seen["task"]("x") == "x" and seen["task"].__name__ == "task"
