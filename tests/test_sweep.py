"""Sweeps, fast part: search-space parsing, settings validation, presets, the trial link,
the study driver's budget and fault handling (with a fake launcher), preflight errors and a
tiny grid relaunched. End-to-end sweeps with real jobs are in test_sweep_slow.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import CONF, REPO, TINY, compose_cfg
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from prunebench.errors import ConfigError
from prunebench.results.store import run_dir, write_table
from prunebench.spec import from_config
from prunebench.sweep.driver import StudyDriver, preflight
from prunebench.sweep.settings import SweepSettings, default_storage
from prunebench.sweep.space import format_value, parse_space
from prunebench.sweep.trial import LevelPruned, TrialLink

optuna.logging.set_verbosity(optuna.logging.WARNING)
# The tests ask trials directly from a heartbeat-enabled storage, as the driver does.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")
PRESETS = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))
DATA = os.environ.get("PRUNEBENCH_DATA", str(REPO / "data"))


def settings(tmp_path: Path, **kw: Any) -> SweepSettings:
    node = {"study_name": "s", "n_trials": 3, "objectives": ["val_acc"], **kw}
    return SweepSettings.from_config(node, tmp_path)


# ---- search space ------------------------------------------------------------------------

@pytest.mark.parametrize("expr, dist", [
    ("interval(0.5, 0.98)", FloatDistribution(0.5, 0.98)),
    ("tag(log, interval(1e-4, 1e-2))", FloatDistribution(1e-4, 1e-2, log=True)),
    ("range(1, 5)", IntDistribution(1, 4)),  # stop excluded, as in Hydra's basic sweeper
    ("range(2, 11, 4)", IntDistribution(2, 10, step=4)),
    ("tag(int, interval(1, 4))", IntDistribution(1, 4)),
    ("range(0.1, 0.5, 0.1)", FloatDistribution(0.1, 0.4, step=0.1)),
    ("choice(magnitude, random)", CategoricalDistribution(["magnitude", "random"])),
    ("global,layer", CategoricalDistribution(["global", "layer"])),
    ("choice(1, 2.5, true, 'x y')", CategoricalDistribution([1, 2.5, True, "x y"])),
])
def test_space_expressions(expr: str, dist: Any) -> None:
    space = parse_space({"a": {"b": expr}})
    (p,) = space.params
    assert p.name == "a.b"
    got = p.distribution
    assert type(got) is type(dist)
    if isinstance(dist, CategoricalDistribution):
        assert got.choices == dist.choices
    else:
        assert (got.low, got.high, got.log, got.step) == pytest.approx((dist.low, dist.high, dist.log, dist.step))


@pytest.mark.parametrize("expr, message", [
    ("interval(0.9, 0.5)", r"empty range \(low 0.9 >= high 0.5\)"),
    ("interval(0.5, 0.5)", "empty range"),
    ("range(5, 1)", "empty range"),
    ("tag(log, interval(0, 1))", "log interval needs low > 0"),
    ("tag(foo, interval(0, 1))", r"unknown tag\(s\) \['foo'\]"),
    ("choice(a, a)", "repeated choices"),
    ("glob(*)", "glob"),
    ("interval(a, b)", "cannot parse"),
    ("tag(int, interval(0.5, 2))", "integer bounds"),
])
def test_space_rejects(expr: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_space({"k": expr})


def test_command_line_adds_replaces_and_fixes() -> None:
    preset = {"schedule": {"target_sparsity": "interval(0.5, 0.98)", "iterations": "range(1, 5)"},
              "retrain": {"lr": "tag(log, interval(1e-4, 1e-2))"}, "train": {"epochs": 3}}
    space = parse_space(preset, ["sweep.params.retrain.lr=interval(0.001,0.01)",  # edits the preset's entry
                                 "pruning.scope=global,layer",                    # adds a parameter
                                 "schedule.iterations=3",                         # fixes one: out of the search
                                 "seed=1"])
    assert [p.name for p in space.params] == ["schedule.target_sparsity", "retrain.lr", "pruning.scope"]
    assert space.distributions["retrain.lr"] == FloatDistribution(0.001, 0.01)
    assert space.fixed == ("train.epochs=3", "schedule.iterations=3", "seed=1")
    assert space.overrides({"schedule.target_sparsity": 0.7, "retrain.lr": 0.002, "pruning.scope": "layer"}) == [
        "train.epochs=3", "schedule.iterations=3", "seed=1",
        "schedule.target_sparsity=0.7", "retrain.lr=0.002", "pruning.scope=layer"]
    # Corners: all lows, all highs, and each further choice: 3 configs validate every bound and option.
    assert space.corners() == [
        {"schedule.target_sparsity": 0.5, "retrain.lr": 0.001, "pruning.scope": "global"},
        {"schedule.target_sparsity": 0.98, "retrain.lr": 0.01, "pruning.scope": "global"},
        {"schedule.target_sparsity": 0.5, "retrain.lr": 0.001, "pruning.scope": "layer"}]
    with pytest.raises(ConfigError, match="cannot be swept"):
        parse_space({}, ["sweep.n_trials=1,2"])


@pytest.mark.parametrize("value", [0.1, 1e-05, 3, True, None, "magnitude", "x y", "1", "null", "it's", "a,b"])
def test_format_value_round_trips(value: Any) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    ov = OverridesParser.create().parse_override(f"k={format_value(value)}")
    assert not ov.is_sweep_override()
    assert ov.value() == value and type(ov.value()) is type(value)


# ---- settings --------------------------------------------------------------------------------

def test_settings_defaults_and_directions(tmp_path: Path) -> None:
    s = settings(tmp_path, objectives=["val_acc", "flops"])
    assert s.directions == ("maximize", "minimize")
    assert s.sampler_name == "auto" and s.report_metric is None
    assert s.resolve_sampler(parse_space({"schedule.target_sparsity": "interval(0.5, 0.9)"}))[0] == "gp"
    assert s.storage == f"sqlite:///{(tmp_path / 'studies' / 'optuna.db').resolve()}" == default_storage(tmp_path)
    one = settings(tmp_path, storage="postgresql://u:secret@db/x", sampler="auto")
    assert one.resolve_sampler(parse_space({"pruning.scope": "choice(global, layer)"}))[0] == "tpe"
    assert one.report_metric == "val_acc" and not one.is_sqlite


@pytest.mark.parametrize("kw, message", [
    ({"objectives": ["accuracy"]}, "'accuracy' is not a results column; valid: val_acc"),
    ({"objectives": ["test_acc"]}, "'test_acc' is a test metric"),
    ({"objectives": ["level"]}, "'level' is not an objective"),
    ({"objectives": ["val_acc", "sparsity"], "pruner": "median"}, "needs a single objective"),
    ({"objectives": ["val_acc", "sparsity"], "directions": ["maximize"]}, "one direction per objective"),
    ({"directions": ["up"]}, "'up' is not 'maximize' or 'minimize'"),
    ({"n_trials": 0}, r"sweep.n_trials=0: expected an integer >= 1"),
    ({"n_jobs": 1.5}, "sweep.n_jobs"),
    ({"sampler": "cmaes"}, "sweep.sampler='cmaes' is not a known name"),
    ({"pruner": "asha"}, "sweep.pruner='asha' is not a known name"),
    ({"heartbeat_interval": 5, "grace_period": 5}, "must exceed"),
    ({"n_trails": 5}, r"unknown sweep key\(s\) \['n_trails'\]"),
    ({"storage": "optuna.db"}, "expected a database URL"),
    ({"study_name": "my study"}, "letters, digits"),
])
def test_settings_reject(tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, **kw)


@pytest.mark.integration
def test_missing_database_driver_is_a_clear_error(tmp_path: Path) -> None:
    s = settings(tmp_path, storage="mysql+nosuchdriver://u@localhost/db")
    with pytest.raises(ConfigError, match="sweep.storage=mysql"):
        s.make_storage()


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.integration
def test_every_sweep_preset_composes_and_validates(preset: str, tmp_path: Path) -> None:
    """Registry-style: a new conf/sweep/*.yaml is tested the moment it exists."""
    base = [*TINY, f"sweep={preset}", f"paths.root={tmp_path}"]
    cfg = compose_cfg(base)
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        hcfg = compose(config_name="config", overrides=base, return_hydra_config=True)
    assert str(hcfg.hydra.mode) == "RunMode.MULTIRUN"
    if hcfg.hydra.sweeper._target_.endswith("PrunebenchOptunaSweeper"):
        s = SweepSettings.from_config(cfg["sweep"], tmp_path)
        space = parse_space(s.params)
        assert space.params and s.n_trials >= 1
        checked = preflight(s, space, lambda ov: from_config(compose_cfg([*base, *ov])))
        assert checked >= 2
    else:
        grid = dict(hcfg.hydra.sweeper.params)
        assert grid, "a grid preset names its axes in hydra.sweeper.params"
        first = [f"{k}={str(v).split(',')[0]}" for k, v in grid.items()]
        last = [f"{k}={str(v).split(',')[-1]}" for k, v in grid.items()]
        for point in (first, last):
            from_config(compose_cfg([*base, *point]))


# ---- the job side: reports, pruning, outcome ----------------------------------------------

def _study(s: SweepSettings) -> optuna.Study:
    return optuna.create_study(study_name=s.study_name, storage=s.make_storage(), directions=list(s.directions),
                               load_if_exists=True)


def test_trial_link_reports_levels_and_prunes(tmp_path: Path) -> None:
    s = settings(tmp_path, pruner="threshold", pruner_kwargs={"lower": 0.6})
    study = _study(s)
    trial = study.ask()
    link = TrialLink.open(s, {"study_name": "s", "trial_id": trial._trial_id}, log=lambda m: None)
    link.last_level = 3
    link.on_level(0, {"val_acc": 0.5})  # level 0 is warm-up: reported, never pruned
    link.on_level(1, {"val_acc": 0.7})
    with pytest.raises(LevelPruned) as info:
        link.on_level(2, {"val_acc": 0.55})
    assert info.value.run_status == "pruned" and isinstance(info.value, optuna.TrialPruned)
    assert study.trials[0].intermediate_values == {0: 0.5, 1: 0.7, 2: 0.55}
    link.on_level(3, {"val_acc": 0.1})  # the last level: pruning would save nothing
    assert study.trials[0].intermediate_values[3] == 0.1


def _fake_run(root: Path, run_id: str, statuses: list[str], done: bool = True, error: str = "") -> Path:
    path = run_dir(root, run_id)
    rows = [{"run_id": run_id, "level": k, "status": st, "val_acc": 0.8 - 0.1 * k, "sparsity": 0.3 * k,
             "test_acc": 0.5, "error": error if st != "ok" else None} for k, st in enumerate(statuses)]
    write_table(path / "rows.csv", rows)
    if done:
        (path / "DONE").write_text("x")
    return path


@pytest.mark.parametrize("statuses, done, state, status", [
    (["ok", "ok", "ok"], True, TrialState.COMPLETE, "ok"),
    (["ok", "diverged"], True, TrialState.FAIL, "diverged"),
    (["ok", "ok", "pruned"], False, TrialState.PRUNED, "pruned"),
    (["ok", "failed"], False, TrialState.FAIL, "failed"),
    (["ok", "ok"], False, TrialState.FAIL, "failed"),  # stopped without a reason: not complete
])
@pytest.mark.integration
def test_trial_outcome_follows_the_rows(tmp_path: Path, statuses: list[str], done: bool, state: TrialState,
                                        status: str) -> None:
    s = settings(tmp_path, objectives=["val_acc", "sparsity"])
    study = _study(s)
    trial = study.ask()
    link = TrialLink.open(s, {"study_name": "s", "trial_id": trial._trial_id}, log=lambda m: None)
    out = link.finish(_fake_run(tmp_path, "abc", statuses, done, error="DivergedError: loss nan"))
    t = study.trials[0]
    assert t.state == state and t.user_attrs["status"] == status and t.user_attrs["run_id"] == "abc"
    if state == TrialState.COMPLETE:
        assert t.values == pytest.approx([0.6, 0.6]) and out == pytest.approx({"val_acc": 0.6, "sparsity": 0.6})
        assert t.user_attrs["test_acc"] == 0.5  # reported for reading, never an objective
    else:
        assert out is None
    if status == "diverged":
        assert t.user_attrs["error"] == "DivergedError: loss nan"


# ---- the driver: budget, failures, stale trials (fake launcher, no training) ---------------

class FakeLauncher:
    """Plays the jobs: tells each trial value = x, except numbers in ``crash`` (job dies silently)."""

    def __init__(self, s: SweepSettings, crash: set[int] = frozenset()) -> None:
        self.s, self.crash, self.launched = s, set(crash), []

    def __call__(self, batch: list[list[str]], idx: int) -> list[Any]:
        from hydra.core.utils import JobReturn, JobStatus

        study = optuna.load_study(study_name=self.s.study_name, storage=self.s.storage)
        out = []
        for overrides in batch:
            number = int(re.search(r"number:(\d+)", overrides[-1]).group(1))
            x = float(next(o for o in overrides if o.startswith("x=")).split("=")[1])
            self.launched.append(number)
            if number in self.crash:
                out.append(JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("worker lost")))
            else:
                study.tell(number, x)
                out.append(JobReturn(status=JobStatus.COMPLETED, _return_value=x))
        return out


def test_n_trials_is_a_total_and_failures_do_not_count(tmp_path: Path) -> None:
    space = parse_space({"x": "interval(0, 1)"})
    s = settings(tmp_path, n_trials=5, n_jobs=2)
    fake = FakeLauncher(s, crash={1})
    summary = StudyDriver(s, space, fake, log=lambda m: None).run()
    study = optuna.load_study(study_name="s", storage=s.storage)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 5 and states.count(TrialState.FAIL) == 1
    assert study.trials[1].user_attrs == {"status": "failed", "error": "RuntimeError: worker lost"}
    assert summary.launched == 6 and fake.launched == [0, 1, 2, 3, 4, 5]
    # Same budget again: nothing to do. A larger one: only the difference.
    again = FakeLauncher(s)
    assert StudyDriver(s, space, again, log=lambda m: None).run().launched == 0
    more = FakeLauncher(SweepSettings.from_config({"study_name": "s", "n_trials": 8, "n_jobs": 2}, tmp_path))
    s8 = more.s
    assert StudyDriver(s8, space, more, log=lambda m: None).run().launched == 3
    assert [t.state for t in optuna.load_study(study_name="s", storage=s.storage).trials].count(
        TrialState.COMPLETE) == 8


def test_every_failure_stops_at_max_failures(tmp_path: Path) -> None:
    space = parse_space({"x": "interval(0, 1)"})
    s = settings(tmp_path, n_trials=4, n_jobs=1, max_failures=2)
    fake = FakeLauncher(s, crash=set(range(100)))
    assert StudyDriver(s, space, fake, log=lambda m: None).run().launched == 2


@pytest.mark.integration
def test_stale_trial_is_failed_and_retried_with_its_parameters(tmp_path: Path) -> None:
    space = parse_space({"x": "interval(0, 1)"})
    s = settings(tmp_path, n_trials=2, n_jobs=2, heartbeat_interval=1, grace_period=2, max_retry=1)
    study = _study(s)
    orphan = study.ask({"x": FloatDistribution(0, 1)})  # a trial of a launch that was killed
    s.make_storage().record_heartbeat(orphan._trial_id)
    time.sleep(3.2)  # its heartbeat is now older than grace_period
    fake = FakeLauncher(s)
    StudyDriver(s, space, fake, log=lambda m: None).run()
    trials = optuna.load_study(study_name="s", storage=s.storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    retry = trials[1]  # the retry was queued first and asked first, with the orphan's parameters
    assert retry.params == orphan.params and retry.system_attrs["failed_trial"] == 0
    assert fake.launched == [1, 2]


@pytest.mark.integration
def test_trial_killed_before_its_first_heartbeat_is_failed_and_retried(tmp_path: Path) -> None:
    # A launch SIGKILLed between study.ask and its first heartbeat leaves a RUNNING trial with
    # no heartbeat row, which Optuna never finds stale: the next launch must not wait for it forever.
    space = parse_space({"x": "interval(0, 1)"})
    s = settings(tmp_path, n_trials=2, n_jobs=1, heartbeat_interval=1, grace_period=2, max_retry=1)
    orphan = _study(s).ask({"x": FloatDistribution(0, 1)})  # no heartbeat recorded
    messages: list[str] = []
    fake = FakeLauncher(s)
    start = time.monotonic()
    StudyDriver(s, space, fake, log=messages.append, poll_seconds=0.2).run()
    assert time.monotonic() - start < 30
    trials = optuna.load_study(study_name="s", storage=s.storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == orphan.number)
    assert retry.params == orphan.params and retry.state == TrialState.COMPLETE
    assert any(m.startswith("trial 0 is running without a heartbeat") for m in messages), messages


# ---- the command line: preflight errors, grid relaunch ---------------------------------------

def _prunebench(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRUNEBENCH_DATA": DATA, "PL_DISABLE_FORK": "1"}
    return subprocess.run([sys.executable, "-m", "prunebench", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.mark.parametrize("bad, message", [
    ("schedule.foo=interval(0.1,0.5)", "Key 'foo' is not in struct"),
    ("schedule.target_sparsity=interval(0.9,0.5)", r"empty range \(low 0.9 >= high 0.5\)"),
    ("sweep.objectives=[val_acc,accuracy]", "'accuracy' is not a results column"),
])
@pytest.mark.integration
def test_bad_search_space_is_rejected_before_any_trial(bad: str, message: str, tmp_path: Path) -> None:
    root = tmp_path / "out"
    res = _prunebench(["sweep=optuna_pareto", f"paths.root={root}", bad], tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert re.search(message, res.stderr), res.stderr[-2000:]
    assert not (root / "studies").exists() and not (root / "runs").exists()  # no study, no trial, no run


@pytest.mark.integration
def test_grid_relaunch_trains_nothing(tmp_path: Path) -> None:
    root = tmp_path / "out"
    args = ["sweep=grid_sparsity", "hydra/launcher=basic", *TINY, "trainer.threads=1", "trainer.progress=false",
            "train.epochs=1", "schedule=one_shot", "schedule.target_sparsity=0.5,0.9", "seed=0", f"paths.root={root}"]
    first = _prunebench(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "grid: 2 job(s), 2 distinct run(s), 0 finished before or duplicate (not launched), 2 to run" in first.stderr
    rows = sorted(root.glob("runs/*/rows.csv"))
    assert len(rows) == 2 and all((r.parent / "DONE").exists() for r in rows)
    stamps = [r.stat().st_mtime_ns for r in rows]
    second = _prunebench(args, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 finished before or duplicate (not launched), 0 to run" in second.stderr
    assert "dense training" not in second.stderr and "level 1/1" not in second.stderr
    assert [r.stat().st_mtime_ns for r in rows] == stamps


@pytest.mark.integration
def test_bad_grid_point_is_rejected_before_any_run(tmp_path: Path) -> None:
    root = tmp_path / "out"
    res = _prunebench(["sweep=grid_sparsity", "hydra/launcher=basic", f"paths.root={root}",
                       "schedule.target_sparsity=0.5,1.5", "seed=0"], tmp_path)
    assert res.returncode == 2
    assert "1 of 2 grid job(s) are invalid, nothing was run" in res.stderr
    assert "schedule.target_sparsity=1.5 is out of range" in res.stderr
    assert not (root / "runs").exists()
