"""Optuna 5 for pruning studies (issue 15): GP / auto sampler, constraints, hypervolume."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import REPO, TINY

from prunebench.errors import ConfigError
from prunebench.results.store import read_rows, run_dir, write_table
from prunebench.sweep.constraints import (
    LARGE_BUDGET,
    auto_sampler,
    best_feasible,
    hypervolume,
    hypervolume_history,
    parse_constraints,
    study_summary,
)
from prunebench.sweep.settings import SweepSettings
from prunebench.sweep.space import parse_space
from prunebench.sweep.trial import TrialLink

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]
DATA = os.environ.get("PRUNEBENCH_DATA", str(REPO / "data"))


def settings(tmp_path: Path, **kw: object) -> SweepSettings:
    node = {"study_name": "s", "n_trials": 3, "objectives": ["val_acc", "sparsity"], **kw}
    return SweepSettings.from_config(node, tmp_path)


# ---- parsing -------------------------------------------------------------------------------------

def test_constraints_parse() -> None:
    cs = parse_constraints(["latency_ms<=2.0", "params <= 1e5", "val_acc>=0.6"])
    assert [(c.column, c.op, c.bound) for c in cs] == [("latency_ms", "<=", 2.0), ("params", "<=", 1e5),
                                                       ("val_acc", ">=", 0.6)]
    assert cs[1].violation(1.2e5) == pytest.approx(2e4) and cs[1].violation(9e4) < 0
    assert cs[2].violation(0.5) == pytest.approx(0.1) and cs[2].violation(0.7) < 0
    assert parse_constraints(None) == ()


@pytest.mark.parametrize("value, message", [
    (["latency_ms<2"], r"'latency_ms<2' is not '<column><=<number>'"),
    (["params<=1e5x"], r"'params<=1e5x' is not"),
    (["accuracy>=0.5"], r"'accuracy>=0.5': 'accuracy' is not a constrainable column; valid: val_acc"),
    (["test_acc>=0.5"], r"constrains a test metric"),
    (["params<=inf"], r"is not '<column>"),
    (["params<=1", "params<=1.0"], r"repeated constraint"),
    ({"params": 1}, r"sweep.constraints=\{'params': 1\}: expected a list"),
])
def test_constraints_rejected_naming_key_and_value(tmp_path: Path, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, constraints=value)


def test_reference_point(tmp_path: Path) -> None:
    assert settings(tmp_path, reference_point=[0, 0.5]).reference_point == (0.0, 0.5)
    with pytest.raises(ConfigError, match=r"sweep.reference_point=\[0.0\]: expected one finite number per "
                                          r"objective \['val_acc', 'sparsity'\]"):
        settings(tmp_path, reference_point=[0.0])


# ---- samplers ------------------------------------------------------------------------------------

def test_auto_rule_and_gp_sampler(tmp_path: Path) -> None:
    numeric = parse_space({"schedule.target_sparsity": "interval(0.5, 0.98)", "retrain.lr": "tag(log, interval(1e-4, 1e-2))",
                           "schedule.iterations": "range(1, 5)"})
    categorical = parse_space({"schedule.target_sparsity": "interval(0.5, 0.98)", "pruning.scope": "choice(global, layer)"})
    conditional = parse_space({"pruning": "choice(magnitude, random)", "pruning.scope": "choice(global, layer)"})
    assert auto_sampler(numeric, 2, 20)[0] == "gp"
    assert auto_sampler(categorical, 2, 20) == ("tpe", "pruning.scope categorical")
    assert "pruning.scope conditional" in auto_sampler(conditional, 1, 20)[1]
    assert auto_sampler(numeric, 2, LARGE_BUDGET)[0] == "nsga2"
    assert auto_sampler(numeric, 1, LARGE_BUDGET)[0] == "tpe"
    s = settings(tmp_path, sampler="auto", seed=1)
    assert isinstance(s.make_sampler(numeric), optuna.samplers.GPSampler)
    assert isinstance(s.make_sampler(categorical), optuna.samplers.TPESampler)
    assert isinstance(settings(tmp_path, sampler="gp").make_sampler(categorical), optuna.samplers.GPSampler)
    assert s.resolve_sampler(numeric) == ("gp", "auto: all parameters numeric")


# ---- hypervolume ---------------------------------------------------------------------------------

def test_hypervolume_known_values() -> None:
    # maximise both: points (0.8, 0.5), (0.6, 0.9) over reference (0, 0): 0.8*0.5 + 0.6*(0.9-0.5) = 0.64
    assert hypervolume([[0.8, 0.5], [0.6, 0.9]], ["maximize", "maximize"], [0, 0]) == pytest.approx(0.64)
    # a dominated point adds nothing; one beyond the reference neither
    assert hypervolume([[0.8, 0.5], [0.6, 0.9], [0.5, 0.4], [-1, 2]], ["maximize", "maximize"], [0, 0]) == \
        pytest.approx(0.64)
    # maximise accuracy, minimise latency (reference: acc 0, 10 ms)
    assert hypervolume([[0.5, 2.0]], ["maximize", "minimize"], [0, 10]) == pytest.approx(4.0)
    trials = pd.DataFrame({"number": [0, 1, 2, 3], "state": ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"],
                           "values_0": [0.8, 0.99, 0.6, 0.9], "values_1": [0.5, 0.99, 0.9, 0.9],
                           "user_attrs_feasible": [True, np.nan, True, False]})
    h = hypervolume_history(trials, ["values_0", "values_1"], ["maximize", "maximize"], [0, 0])
    assert h["hypervolume"].tolist() == pytest.approx([0.4, 0.4, 0.64, 0.64])  # failed, infeasible: no gain


# ---- the job side: constraints on the trial ------------------------------------------------------

def _fake_run(root: Path, run_id: str, sparsity: float, params_nonzero: int) -> Path:
    path = run_dir(root, run_id)
    write_table(path / "rows.csv", [{"run_id": run_id, "level": 0, "status": "ok", "val_acc": 0.8, "sparsity": 0.0,
                                     "params_nonzero": 1000},
                                    {"run_id": run_id, "level": 1, "status": "ok", "val_acc": 0.7,
                                     "sparsity": sparsity, "params_nonzero": params_nonzero}])
    (path / "DONE").write_text("x")
    return path


def test_trial_carries_constraints_and_best_feasible(tmp_path: Path) -> None:
    s = settings(tmp_path, constraints=["params_nonzero<=300", "sparsity>=0.5"], reference_point=[0, 0])
    study = optuna.create_study(study_name="s", storage=s.make_storage(), directions=list(s.directions))
    study.set_metric_names(list(s.objectives))
    study.set_user_attr("constraints", [c.expression for c in s.constraints])  # as the driver does
    study.set_user_attr("reference_point", list(s.reference_point))
    for i, (sp, nz) in enumerate([(0.8, 200), (0.9, 400), (0.6, 250)]):
        trial = study.ask()
        link = TrialLink.open(s, {"study_name": "s", "trial_id": trial._trial_id}, log=lambda m: None)
        link.finish(_fake_run(tmp_path, f"r{i}", sp, nz))
    t = study.trials
    assert [x.user_attrs["feasible"] for x in t] == [True, False, True]
    assert t[1].constraints == {"params_nonzero<=300": pytest.approx(100.0), "sparsity>=0.5": pytest.approx(-0.4)}
    assert t[1].user_attrs["constraints"]["params_nonzero<=300"] == pytest.approx(100.0)
    # 0.9 sparsity would dominate, but it is infeasible: the feasible front is #0 only
    assert [b.number for b in best_feasible(t, s.directions)] == [0]
    row, history = study_summary(study)
    assert row["feasible"] == 2 and row["best"] == "#0" and row["hypervolume"] == pytest.approx(0.7 * 0.8)
    assert row["constraints"] == "params_nonzero<=300, sparsity>=0.5"
    assert history["hypervolume"].tolist() == pytest.approx([0.56, 0.56, 0.56])


def test_missing_constrained_value_fails_the_trial(tmp_path: Path) -> None:
    s = settings(tmp_path, constraints=["latency_ms<=2"])
    study = optuna.create_study(study_name="s", storage=s.make_storage(), directions=list(s.directions))
    trial = study.ask()
    link = TrialLink.open(s, {"study_name": "s", "trial_id": trial._trial_id}, log=lambda m: None)
    assert link.finish(_fake_run(tmp_path, "r", 0.8, 200)) is None
    t = study.trials[0]
    assert t.state.name == "FAIL" and "no finite 'latency_ms'" in t.user_attrs["error"]


def test_pareto_plot_marks_infeasible_trials() -> None:
    from prunebench import plots

    trials = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE"] * 3, "values_0": [0.8, 0.9, 0.6],
                           "values_1": [0.8, 0.9, 0.95], "user_attrs_feasible": [True, False, True]})
    ax = plots.pareto_front(trials)
    by_gid = {c.get_gid(): c for c in ax.collections}
    assert by_gid["infeasible"].get_offsets().tolist() == [[0.9, 0.9]]
    assert sorted(map(tuple, by_gid["pareto"].get_offsets().tolist())) == [(0.6, 0.95), (0.8, 0.8)]


def test_hypervolume_comparison_draws_interval_per_sampler() -> None:
    from prunebench import plots

    df = pd.DataFrame([{"sampler": s, "seed": seed, "number": n, "hypervolume": n * (1 + seed) * (2 if s == "gp" else 1)}
                       for s in ("gp", "random") for seed in range(3) for n in range(4)])
    ax = plots.hypervolume_comparison(df)
    gids = {line.get_gid(): line for line in ax.lines}
    assert set(gids) == {"hv:gp", "hv:random"}
    assert gids["hv:gp"].get_ydata().tolist() == pytest.approx([0, 4, 8, 12])  # mean over seeds 1, 2, 3 × 2n
    bands = [c for c in ax.collections if str(c.get_gid()).startswith("hv_band:")]
    assert len(bands) == 2


# ---- end to end: a constrained sweep ---------------------------------------------------------------

@pytest.mark.integration
def test_constrained_sweep_reports_best_feasible(tmp_path: Path) -> None:
    root = tmp_path / "out"
    args = ["sweep=optuna_pareto", "hydra/launcher=basic", *TINY, "trainer.threads=1", "trainer.progress=false",
            "train.epochs=1", "schedule.iterations=1", "~sweep.params.retrain", "sweep.n_trials=5", "sweep.n_jobs=1",
            "sweep.sampler=random", "sweep.seed=3", "sweep.constraints=['sparsity>=0.75']",  # quoted: Hydra's grammar has no bare '>'
           
            "sweep.reference_point=[0.0,0.0]", "report=true", f"paths.root={root}"]
    env = {**os.environ, "PRUNEBENCH_DATA": DATA, "PL_DISABLE_FORK": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "prunebench", *args], cwd=tmp_path, env=env,
                         text=True, capture_output=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    study = optuna.load_study(study_name="pareto_mnist1d_mlp", storage=f"sqlite:///{root / 'studies' / 'optuna.db'}")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 5
    feasible = [t for t in done if t.user_attrs["feasible"]]
    infeasible = [t for t in done if not t.user_attrs["feasible"]]
    assert feasible and infeasible, [t.params for t in done]  # seed 3 draws both kinds
    for t in done:
        final = read_rows(run_dir(root, t.user_attrs["run_id"])).sort_values("level").iloc[-1]
        assert (final["sparsity"] >= 0.75) == t.user_attrs["feasible"]
        assert t.constraints["sparsity>=0.75"] == pytest.approx(0.75 - final["sparsity"])
    best = best_feasible(done, ["maximize", "maximize"])
    assert best and all(t.user_attrs["feasible"] for t in best)
    assert "Pareto front (feasible trials)" in res.stderr
    for t in best:
        assert f"#{t.number} val_acc={t.values[0]:.4g}" in res.stderr
    table = pd.read_csv(root / "report" / "studies.csv")
    assert table["feasible"].iloc[0] == len(feasible) and table["complete"].iloc[0] == 5
    assert table["best"].iloc[0] == " ".join(f"#{t.number}" for t in sorted(best, key=lambda t: t.number))
    assert math.isfinite(table["hypervolume"].iloc[0]) and table["hypervolume"].iloc[0] > 0
    assert (root / "report" / "hypervolume_pareto_mnist1d_mlp.png").stat().st_size > 0


@pytest.mark.integration  # three Hydra compositions: seconds, not milliseconds
def test_sampler_comparison_experiment_composes_and_validates(tmp_path: Path) -> None:
    from conftest import CONF, compose_cfg
    from hydra import compose, initialize_config_dir

    from prunebench.spec import from_config
    from prunebench.sweep.driver import preflight

    base = ["experiment=sampler_comparison", f"paths.root={tmp_path}", "sweep.sampler=gp", "sweep.seed=2"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        hcfg = compose(config_name="config", overrides=base, return_hydra_config=True)
    assert str(hcfg.hydra.mode) == "RunMode.MULTIRUN"
    assert hcfg.hydra.sweeper._target_.endswith("PrunebenchOptunaSweeper")
    cfg = compose_cfg(base)
    s = SweepSettings.from_config(cfg["sweep"], tmp_path)
    assert s.study_name == "cmp_gp_s2" and s.objectives == ("val_acc", "sparsity") and s.reference_point == (0.0, 0.0)
    space = parse_space(s.params)
    assert [p.name for p in space.params] == ["schedule.target_sparsity", "retrain.lr"]
    assert auto_sampler(space, 2, s.n_trials)[0] == "gp"  # all numeric: what auto would pick too
    assert preflight(s, space, lambda ov: from_config(compose_cfg([*base, *ov]))) == 2
