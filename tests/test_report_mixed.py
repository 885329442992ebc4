"""prunebench-report on a root mixing unstructured, channel and Optuna runs, all made for real.

The runs go through the engine (prunebench.engine.loop.run) with specs composed from the
real Hydra config at tiny sizes (Conv-2 at width 0.25 on 3x8x8 synthetic data); the Optuna
study lives in ROOT/studies/<name>.db like the sweeper's. One dense model (cache) serves all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from prunebench import report
from prunebench.results import load
from prunebench.spec import RunSpec, from_config

pytestmark = pytest.mark.integration  # end to end: Lightning fits, surgery on real architectures, figures, kernels

BASE = [
    "data=synthetic", "data.input_shape=[3,8,8]", "data.n_train=256", "data.val_size=64", "data.n_test=128",
    "model=conv2", "model.width_mult=0.25", "train.epochs=1", "retrain.epochs=1", "trainer=cpu",
    "trainer.progress=false", "report=false", "metrics.latency_warmup=1", "metrics.latency_repeats=2",
    "metrics.latency_batch_large=8",
]
STUDY = "mixed-pareto"


def _spec(compose: Callable[[Sequence[str]], dict[str, Any]], root: Path, *overrides: str) -> RunSpec:
    return from_config(compose([*BASE, f"paths.root={root}", *overrides]))


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    import optuna
    from conftest import compose_cfg

    from prunebench.analysis import SENSITIVITY_FILE, layer_sensitivity
    from prunebench.engine.dense import load_state
    from prunebench.engine.loop import Run, run
    from prunebench.results.store import level_dir

    root = tmp_path_factory.mktemp("mixed")
    quiet = lambda _m: None  # noqa: E731
    ids: dict[str, str] = {}
    unstructured = _spec(compose_cfg, root, "pruning=magnitude", "schedule=one_shot", "schedule.target_sparsity=0.8")
    ids["unstructured"] = run(unstructured, quiet).run_id
    channel = _spec(compose_cfg, root, "pruning=channel", "schedule=iterative", "schedule.target_sparsity=0.6",
                    "schedule.iterations=2")
    ids["channel"] = run(channel, quiet).run_id

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    (root / "studies").mkdir()
    storage = f"sqlite:///{root / 'studies' / 'sweep.db'}"
    study = optuna.create_study(study_name=STUDY, storage=storage, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        s = trial.suggest_float("schedule.target_sparsity", 0.3, 0.9)
        spec = _spec(compose_cfg, root, "schedule=one_shot", f"schedule.target_sparsity={s}")
        out = run(dataclasses.replace(spec, trial=trial.number, study=STUDY), quiet)
        last = out.rows.iloc[-1]
        return float(last["val_acc"]), float(last["params_nonzero"])

    study.optimize(objective, n_trials=2)

    # A sensitivity table for the unstructured run, from its dense (level 0) weights.
    r = Run(unstructured, quiet)
    r.prepare()
    net = r.build_net()
    path = root / "runs" / ids["unstructured"]
    net.load_state_dict(load_state(level_dir(path, 0) / "state.pt", "level 0"))
    sens = layer_sensitivity(net, r.dm, [0.5, 0.9])
    (path / SENSITIVITY_FILE).write_text(sens.to_csv(index=False))
    return root, ids


def test_mixed_table_has_both_structures_and_trials(mixed_root: tuple[Path, dict[str, str]]) -> None:
    root, ids = mixed_root
    df = load(root)
    assert set(df["structure"]) == {"unstructured", "channel"}
    assert df["run_id"].nunique() == 4  # unstructured, channel, 2 Optuna trials
    assert len(df) == 2 + 3 + 2 * 2  # levels 0-1, 0-2, and 0-1 per trial
    ch = df[df["run_id"] == ids["channel"]].sort_values("level")
    # Channel surgery really shrinks the model: fewer parameters, all of them nonzero.
    assert ch["params"].iloc[-1] < ch["params"].iloc[0]
    assert (ch["params"] == ch["params_nonzero"]).all()
    un = df[df["run_id"] == ids["unstructured"]].sort_values("level")
    assert un["params"].nunique() == 1 and un["params_nonzero"].iloc[-1] < un["params"].iloc[-1]
    trials = df[df["study"].astype("string") == STUDY]
    assert sorted(trials["trial"].dropna().astype(int).unique()) == [0, 1]


def test_mixed_report_draws_every_applicable_figure(mixed_root: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, _ = mixed_root
    out = tmp_path / "rep"
    res = report.build_report(root, out, formats=("png", "pdf"))
    assert res.ok and res.runs == 4 and res.rows == 9
    expected = ["accuracy_vs_sparsity", "accuracy_vs_remaining", "accuracy_vs_compression", "speedup_theoretical",
                "speedup_measured", "accuracy_vs_params", "accuracy_vs_flops", "accuracy_vs_latency",
                "pruning_drop", "layer_sparsity", "layer_sensitivity", f"pareto_front_{STUDY}",
                f"search_history_{STUDY}"]
    for name in expected:
        assert res.figures.get(name) == [out / f"{name}.png", out / f"{name}.pdf"], (name, res.skipped.get(name))
        assert all(p.stat().st_size > 0 for p in res.figures[name])
    assert set(res.skipped) <= {"claims"}, res.skipped  # no experiment here declares claims
    table = pd.read_csv(out / "results.csv")
    assert set(table["structure"]) == {"unstructured", "channel"}
    md = (out / "summary.md").read_text()
    assert "channel" in md and "Dense synthetic/conv2" in md


def test_mixed_report_cli_lists_skips_with_reasons(mixed_root: tuple[Path, dict[str, str]], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root, ids = mixed_root
    # Channel rows only: the sensitivity file belongs to the unstructured run, so it is skipped;
    # the Optuna study is still read from ROOT/studies.
    code = report.main([str(root), "--filter", "structure=channel", "--out", str(tmp_path / "ch"), "--pdf"])
    out = capsys.readouterr().out
    assert code == 0
    assert "1 run(s), 3 row(s)" in out
    assert "figure accuracy_vs_latency (.png, .pdf)" in out and f"figure pareto_front_{STUDY}" in out
    assert "skipped layer_sensitivity: no runs/<id>/sensitivity.csv" in out
    assert (tmp_path / "ch" / "speedup_measured.png").exists()


def test_channel_runs_show_channel_sparsity_per_layer(mixed_root: tuple[Path, dict[str, str]]) -> None:
    from prunebench.results.store import level_dir, runs_dir

    root, ids = mixed_root
    run_path = runs_dir(root) / ids["channel"]
    raw = pd.read_csv(level_dir(run_path, 2) / "layers.csv")
    assert list(raw.columns) == ["layer", "channels"]
    layers = report._channel_layer_sparsity(raw, run_path)
    assert layers is not None and len(layers) == len(raw)
    assert all(name.endswith(".weight") for name in layers["layer"])
    expect = 1.0 - layers["channels"] / layers["channels_dense"]
    assert (layers["sparsity"] == expect).all()
    classifier = layers.iloc[-1]
    assert classifier["channels"] == classifier["channels_dense"] == 10 and classifier["sparsity"] == 0.0
    assert (layers["sparsity"].iloc[:-1] > 0).any()  # hidden widths really shrank
