"""optuna-dashboard reads a prunebench study (issue 15): its WSGI app, called without a browser."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import optuna
import pytest

from prunebench.results.store import run_dir, write_table
from prunebench.sweep.settings import SweepSettings
from prunebench.sweep.trial import TrialLink

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]


def get(app: Any, path: str) -> Any:
    """One GET through the WSGI interface (what a browser's request would do)."""
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


@pytest.mark.integration
def test_dashboard_reads_every_trial_with_its_user_attributes(tmp_path: Path) -> None:
    dashboard = pytest.importorskip("optuna_dashboard")
    s = SweepSettings.from_config({"study_name": "pareto_mnist1d_mlp", "n_trials": 4,
                                   "objectives": ["val_acc", "sparsity"], "constraints": ["sparsity>=0.5"]}, tmp_path)
    study = optuna.create_study(study_name=s.study_name, storage=s.make_storage(), directions=list(s.directions))
    study.set_metric_names(list(s.objectives))
    expected = {}
    for i, sparsity in enumerate([0.3, 0.6, 0.9]):
        path = run_dir(tmp_path, f"run{i}")
        write_table(path / "rows.csv", [
            {"run_id": f"run{i}", "level": 0, "status": "ok", "val_acc": 0.8, "sparsity": 0.0, "test_acc": 0.79},
            {"run_id": f"run{i}", "level": 1, "status": "ok", "val_acc": 0.8 - sparsity / 4, "sparsity": sparsity,
             "test_acc": 0.7}])
        (path / "DONE").write_text("x")
        trial = study.ask({"schedule.target_sparsity": optuna.distributions.FloatDistribution(0.1, 0.99)})
        TrialLink.open(s, {"study_name": s.study_name, "trial_id": trial._trial_id}, log=lambda m: None).finish(path)
        expected[trial.number] = {"run_id": f"run{i}", "level": 1, "feasible": sparsity >= 0.5, "status": "ok"}
    study.ask()  # a running trial is listed too

    app = dashboard.wsgi(s.storage)
    studies = get(app, "/api/studies")["study_summaries"]
    assert [x["study_name"] for x in studies] == [s.study_name]
    detail = get(app, f"/api/studies/{studies[0]['study_id']}")
    trials = {t["number"]: t for t in detail["trials"]}
    assert sorted(trials) == [0, 1, 2, 3]
    for number, attrs in expected.items():
        got = {a["key"]: a["value"] for a in trials[number]["user_attrs"]}
        assert got["run_id"] == attrs["run_id"] and got["status"] == "ok"
        assert float(got["level"]) == attrs["level"] and str(got["feasible"]) == str(attrs["feasible"])
        assert float(got["test_acc"]) == pytest.approx(0.7)  # shown, never optimised
        assert trials[number]["state"] == "Complete"
    assert trials[3]["state"] == "Running"
    assert {k["key"] for k in detail["union_user_attrs"]} >= {"run_id", "level", "feasible", "constraints", "status"}
    assert detail["objective_names"] == ["val_acc", "sparsity"]
