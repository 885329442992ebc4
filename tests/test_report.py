"""prunebench-report on a fake results root: files written, figures skipped with reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_plots import BASE, A, B, make_table

from prunebench import report
from prunebench.results import load
from prunebench.results.store import level_dir, run_dir, write_table

pytestmark = pytest.mark.integration  # end to end: Lightning fits, surgery on real architectures, figures, kernels


def write_root(root: Path, table: pd.DataFrame, layers: bool = True) -> Path:
    """Lay ``table`` out as ``<root>/runs/<run_id>/rows.csv`` (+ layers.csv per level)."""
    for run_id, rows in table.groupby("run_id"):
        path = run_dir(root, str(run_id))
        write_table(path / "rows.csv", rows)
        (path / "DONE").write_text("done")
        (path / "config.json").write_text('{"run_id": "' + str(run_id) + '"}')
        if layers:
            for level in rows["level"]:
                sp = float(rows[rows["level"] == level]["sparsity"].iloc[0])
                write_table(level_dir(path, int(level)) / "layers.csv", [
                    {"layer": "fc1.weight", "numel": 100, "nonzero": round(100 * (1 - sp)), "sparsity": sp},
                    {"layer": "fc2.weight", "numel": 10, "nonzero": 10, "sparsity": 0.0},
                ])
    return root


def make_study(root: Path) -> None:
    """A tiny real multi-objective study (maximize x, minimize y) in ROOT/studies/sweep.db."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    (root / "studies").mkdir(parents=True)
    storage = f"sqlite:///{root / 'studies' / 'sweep.db'}"
    study = optuna.create_study(study_name="trade-off", storage=storage, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("s", 0, 1), t.suggest_float("s2", 0, 1) ** 2), n_trials=6)
    single = optuna.create_study(study_name="acc", storage=storage, direction="maximize",
                                 sampler=optuna.samplers.RandomSampler(seed=0))
    single.optimize(lambda t: t.suggest_float("s", 0, 1), n_trials=3)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_root(tmp_path_factory.mktemp("res"), make_table())


def test_load_roundtrip_of_fake_root(root: Path) -> None:
    df = load(root)
    assert len(df) == len(make_table()) and df["run_id"].nunique() == 15
    assert df["test_acc"].dtype == "float64" and str(df["level"].dtype) == "Int64"


def test_report_writes_table_summary_figures(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    res = report.build_report(root, out)
    assert res.ok and res.runs == 15 and res.rows == 39
    for name in ("results.parquet", "results.csv", "summary.md", "summary.tex"):
        assert (out / name).exists(), name
    back = pd.read_parquet(out / "results.parquet")
    assert len(back) == 39 and set(back["label"]) == {A, B}
    assert len(pd.read_csv(out / "results.csv")) == 39
    for fig in ("accuracy_vs_sparsity", "accuracy_vs_remaining", "accuracy_vs_compression",
                "speedup_theoretical", "accuracy_vs_params", "accuracy_vs_flops", "pruning_drop", "layer_sparsity"):
        assert res.figures[fig] == [out / f"{fig}.png"], fig  # PNG only by default
        assert all(p.stat().st_size > 0 for p in res.figures[fig])
    assert res.skipped["speedup_measured"] == "no measured latency in the table"
    assert res.skipped["accuracy_vs_latency"] == "no measured latency in the table"
    assert "no Optuna studies" in res.skipped["pareto_front"]
    assert res.skipped["layer_sensitivity"] == ("no runs/<id>/sensitivity.csv "
                                                "(experiments/layer_sensitivity.py writes one)")
    md = (out / "summary.md").read_text()
    assert f"{100 * BASE[A][2]:.2f} ± 3.00" in md and "Dense mnist1d/mlp: 92.00 ± 2.00 % (n=3 seeds)" in md
    assert r"\pm" in (out / "summary.tex").read_text()


def drawn(path: Path) -> bool:
    """A PNG figure with something drawn on it (not a blank canvas)."""
    import matplotlib.image as mpimg

    if path.suffix != ".png" or path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    img = mpimg.imread(path)
    return img.shape[0] > 100 and img.shape[1] > 100 and float(img[..., :3].std()) > 0.02


def test_report_default_out_and_studies(tmp_path: Path) -> None:
    root = write_root(tmp_path / "res", make_table(latency=True), layers=False)
    make_study(root)
    res = report.build_report(root)
    assert res.out == root / "report"
    assert "speedup_measured" in res.figures and "accuracy_vs_latency" in res.figures
    assert drawn(res.figures["pareto_front_trade-off"][0])
    assert drawn(res.figures["search_history_trade-off"][0])
    assert drawn(res.figures["search_history_acc"][0])
    assert res.skipped["pareto_front_acc"] == "study 'acc' has a single objective"
    # issue 15: hypervolume vs trials per multi-objective study, and one row per study
    assert drawn(res.figures["hypervolume_trade-off"][0]) and "hypervolume_acc" in res.skipped
    studies = pd.read_csv(root / "report" / "studies.csv").set_index("study")
    assert studies.loc["trade-off", "complete"] == 6 and studies.loc["trade-off", "hypervolume"] > 0
    assert np.isnan(studies.loc["acc", "hypervolume"]) and studies.loc["acc", "best"].startswith("#")
    assert res.skipped["layer_sparsity"] == "no levels/<k>/layers.csv for a pruned level (k >= 1)"

    # Our Pareto front agrees with Optuna's own (study.best_trials) on the real study.
    import optuna
    from matplotlib.collections import PathCollection

    from prunebench import plots

    study = optuna.load_study(study_name="trade-off", storage=f"sqlite:///{root / 'studies' / 'sweep.db'}")
    ax = plots.pareto_front(study.trials_dataframe(), directions=["maximize", "minimize"])
    (front,) = [a for a in ax.get_children() if isinstance(a, PathCollection) and a.get_gid() == "pareto"]
    got = sorted(map(tuple, front.get_offsets().tolist()))
    assert got == sorted(tuple(t.values) for t in study.best_trials)


def test_main_cli(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert report.main([str(root), "--out", str(out), "--filter", "seed=0,1", "--filter", "schedule=iterative"]) == 0
    text = capsys.readouterr().out
    assert "figure accuracy_vs_sparsity (.png)" in text and not list(out.glob("*.pdf"))
    assert "skipped speedup_measured: no measured latency in the table" in text
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 10 and set(table["label"]) == {B} and set(table["seed"]) == {0, 1}

    assert report.main([str(root), "--out", str(out), "--filter", "colour=red"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "'colour'" in err

    assert report.main([str(root), "--out", str(out), "--filter", "method=snip", "--quiet"]) == 1
    assert "no rows match" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert report.main([str(empty), "--quiet"]) == 1
    assert "no runs under" in capsys.readouterr().err
    assert report.main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (empty / "report").exists()


def test_failed_runs_listed_and_figures_skipped(tmp_path: Path) -> None:
    t = make_table()
    t = t[t["run_id"] == "mnist1d-b-s0"].head(1).assign(status="failed", error="RuntimeError: boom", test_acc=None)
    root = write_root(tmp_path / "res", t)
    (root / "studies").mkdir()
    (root / "studies" / "junk.db").write_text("not a database")
    res = report.build_report(root)
    assert res.ok and res.figures == {}
    assert res.skipped["accuracy_vs_sparsity"] == "no pruned levels (level >= 1) with test_acc"
    assert res.skipped["study junk.db"].startswith("cannot read")
    md = (res.out / "summary.md").read_text()
    assert "Failed or diverged (1 run(s))" in md and "RuntimeError: boom" in md


def test_report_draws_layer_sensitivity_files(tmp_path: Path) -> None:
    table = make_table()
    root = write_root(tmp_path / "res", table, layers=False)
    ids = sorted(table["run_id"].astype(str).unique())
    sens = pd.DataFrame({"layer": ["fc1", "fc1", "fc2", "fc2"], "sparsity": [0.5, 0.9] * 2,
                         "acc": [0.9, 0.8, 0.85, 0.3]})
    sens.to_csv(run_dir(root, ids[0]) / "sensitivity.csv", index=False)
    res = report.build_report(root, tmp_path / "one")
    assert res.figures["layer_sensitivity"] == [tmp_path / "one" / "layer_sensitivity.png"]
    sens.to_csv(run_dir(root, ids[1]) / "sensitivity.csv", index=False)
    (run_dir(root, ids[2]) / "sensitivity.csv").write_text("")
    res = report.build_report(root, tmp_path / "many")
    assert {f"layer_sensitivity_{ids[0]}", f"layer_sensitivity_{ids[1]}"} <= set(res.figures)
    assert "layer_sensitivity" not in res.figures
    assert res.skipped[f"layer_sensitivity_{ids[2]}"].startswith("cannot read")
    # With filters, only runs that have rows in the filtered table count.
    res = report.build_report(root, tmp_path / "filtered", filters={"run_id": [ids[1]]})
    assert list(k for k in res.figures if k.startswith("layer_sensitivity")) == ["layer_sensitivity"]


def test_several_datasets_get_one_figure_set_each(tmp_path: Path) -> None:
    one = make_table()
    two = one.copy()
    two["run_id"] = two["run_id"].astype(str) + "x"
    two["dataset"], two["model"] = "synthetic", "vgg11_bn"
    root = write_root(tmp_path / "mixed", pd.concat([one, two], ignore_index=True), layers=False)
    res = report.build_report(root, tmp_path / "rep")
    groups = sorted({f"__{d}_{m}" for d, m in zip(one["dataset"], one["model"])} | {"__synthetic_vgg11_bn"})
    assert len(groups) == 2
    for g in groups:
        assert res.figures["accuracy_vs_sparsity" + g][0].name == f"accuracy_vs_sparsity{g}.png"
    assert "accuracy_vs_sparsity" in res.figures  # the overview with every curve stays
    # a crowded legend goes beside the axes, and the figure grows to keep the axes' size
    from matplotlib.figure import Figure

    from prunebench import plots

    ax = plots.new_axes()
    for i in range(plots.LEGEND_INSIDE_MAX + 1):
        ax.plot([0, 1], [i, i], label=f"c{i}")
    plots._finish(ax, "x", "y")
    assert isinstance(ax.figure, Figure)
    assert ax.figure.get_size_inches()[0] == pytest.approx(plots.FIGSIZE[0] + plots.LEGEND_WIDTH)
    # The legend sits beside the axes, not over the data: left of it is the axes' right edge.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(ax.figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend_box, axes_box = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend_box.x0 >= axes_box.x1


def test_figures_drawn_in_parallel_are_the_same_files_as_drawn_in_one_process(root: Path, tmp_path: Path) -> None:
    one = report.build_report(root, tmp_path / "one", jobs=1)
    two = report.build_report(root, tmp_path / "two", jobs=2)
    assert list(one.figures) == list(two.figures) and len(one.figures) >= 8 and one.skipped == two.skipped
    for name, paths in one.figures.items():
        other = two.figures[name]
        assert [p.name for p in paths] == [p.name for p in other] == [f"{name}.png"]
        assert paths[0].read_bytes() == other[0].read_bytes(), name


def test_a_figure_that_fails_in_a_worker_is_skipped_with_its_reason(tmp_path: Path) -> None:
    from prunebench import plots

    def good() -> object:
        return plots.accuracy_vs_sparsity(make_table())

    def bad() -> object:
        raise ValueError("no such column")

    out = report.draw_figures([(tmp_path / "a", good), (tmp_path / "b", bad), (tmp_path / "c", good)], ("png",), 2)
    assert out[0] == ([tmp_path / "a.png"], None) and out[2] == ([tmp_path / "c.png"], None)
    assert out[1] == (None, "ValueError: no such column") and not (tmp_path / "b.png").exists()


def test_pdf_on_request_and_a_format_change_redraws(root: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    assert report.main([str(root), "--out", str(out), "--quiet"]) == 0
    assert not list(out.glob("*.pdf")) and (out / "accuracy_vs_sparsity.png").exists()
    assert report.main([str(root), "--out", str(out), "--pdf"]) == 0
    assert "figure accuracy_vs_sparsity (.png, .pdf)" in capsys.readouterr().out
    assert (out / "accuracy_vs_sparsity.pdf").read_bytes()[:4] == b"%PDF"
    assert report.main([str(root), "--out", str(out), "--pdf"]) == 0
    assert "report up to date" in capsys.readouterr().out
    assert report.main([str(root), "--out", str(out), "--jobs", "0"]) == 2
    assert "--jobs=0 must be at least 1" in capsys.readouterr().err


def test_disk_use_per_run_counts_a_linked_dense_file_once(tmp_path: Path) -> None:
    table = make_table()
    root = write_root(tmp_path / "res", table)
    ids = sorted(table["run_id"].astype(str).unique())
    cache = root / "cache" / "dense" / "d1"
    cache.mkdir(parents=True)
    (cache / "final.pt").write_bytes(b"w" * 5000)
    (level_dir(run_dir(root, ids[0]), 0) / "state.pt").hardlink_to(cache / "final.pt")
    (level_dir(run_dir(root, ids[0]), 1) / "weights.pt").write_bytes(b"v" * 300)
    res = report.build_report(root)
    disk = pd.read_csv(root / "report" / "disk.csv").set_index("run_id")
    assert disk.loc["cache/dense", "bytes"] == 5000
    run0 = run_dir(root, ids[0])
    own = sum(p.stat().st_size for p in run0.rglob("*") if p.is_file() and p.name != "state.pt")
    assert disk.loc[ids[0], "bytes"] == own  # its level 0 is the cache's file: counted there
    assert disk.loc[ids[1], "bytes"] == sum(p.stat().st_size for p in run_dir(root, ids[1]).rglob("*") if p.is_file())
    assert res.disk_bytes == int(disk["bytes"].sum()) and set(disk["label"].dropna()) == {A, B}
    assert "| cache/dense   |" in (root / "report" / "disk.md").read_text()
