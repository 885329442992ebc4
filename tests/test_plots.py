"""Figures checked on the data behind them: synthetic tables with known means and stds."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.container import BarContainer, ErrorbarContainer

from prunebench import plots
from prunebench.results import schema

A = "magnitude/one_shot/finetune"  # one run per (seed, target), like the quickstart variants
B = "magnitude/iterative/finetune"  # one run per seed, one level per target
TARGETS = [0.5, 0.7, 0.9, 0.95]
SEEDS = [0, 1, 2]
DENSE = {0: 0.90, 1: 0.92, 2: 0.94}  # mean 0.92, std 0.02
BASE = {A: [0.91, 0.88, 0.70, 0.50], B: [0.915, 0.91, 0.89, 0.85]}


def acc(label: str, i: int, seed: int) -> float:
    # seed offsets -1, 0, +1 scaled by (1 + i): mean = BASE, std (ddof=1) = 0.01 * (1 + i)
    return BASE[label][i] + 0.01 * (seed - 1) * (1 + i)


def achieved(i: int, seed: int) -> float:
    return TARGETS[i] + 0.001 * seed  # mean = target + 0.001


def make_table(dataset: str = "mnist1d", model: str = "mlp", latency: bool = False) -> pd.DataFrame:
    """2 labels × 4 sparsities × 3 seeds, plus the dense level 0 of every run (schema-typed)."""
    rows: list[dict[str, object]] = []

    def row(run_id: str, label: str, seed: int, level: int, i: int | None) -> dict[str, object]:
        method, sched, retrain = label.split("/")
        sp = 0.0 if i is None else achieved(i, seed)
        a = DENSE[seed] if i is None else acc(label, i, seed)
        return {
            "run_id": run_id, "seed": seed, "level": level, "dataset": dataset, "model": model,
            "method": method, "scope": "global", "structure": "unstructured", "schedule": sched,
            "retrain": retrain, "target_sparsity": 0.0 if i is None else TARGETS[i], "sparsity": sp,
            "params": 1000, "params_nonzero": round(1000 * (1 - sp)), "compression": 1 / (1 - sp),
            "flops": 1e6 * (1 - 0.8 * sp), "flops_dense": 1e6, "speedup_theoretical": 1 / (1 - 0.8 * sp),
            "latency_ms": (1.0 - 0.5 * sp) if latency else math.nan,
            "speedup_measured": 1 / (1.0 - 0.5 * sp) if latency else math.nan,
            "val_acc": a, "test_acc": a, "test_loss": 1 - a,
            "acc_pruned": a if i is None else a - 0.1 * TARGETS[i],
            "status": "ok", "label": label,
        }

    for seed in SEEDS:
        for i in range(len(TARGETS)):
            rid = f"{dataset}-a{i}-s{seed}"
            rows += [row(rid, A, seed, 0, None), row(rid, A, seed, 1, i)]
        rid = f"{dataset}-b-s{seed}"
        rows.append(row(rid, B, seed, 0, None))
        rows += [row(rid, B, seed, i + 1, i) for i in range(len(TARGETS))]
    # Every schema column present (None → NA) so coerce never has to invent a column.
    return schema.coerce(pd.DataFrame([dict.fromkeys(schema.COLUMNS) | r for r in rows]))


def by_label(ax) -> dict[str, ErrorbarContainer]:
    return {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}


def xy(container: ErrorbarContainer) -> tuple[np.ndarray, np.ndarray]:
    line = container.lines[0]
    return np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)


def yerr(container: ErrorbarContainer) -> np.ndarray:
    segs = container.lines[2][0].get_segments()
    return np.array([(s[1][1] - s[0][1]) / 2 for s in segs])


def gid(ax, name: str) -> list:
    return [a for a in ax.get_children() if a.get_gid() == name]


def expected(label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.array(TARGETS) + 0.001
    y = np.array(BASE[label])
    std = 0.01 * (1 + np.arange(len(TARGETS)))
    return x, y, std


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_table()


def test_accuracy_vs_sparsity_means_stds_and_dense(table: pd.DataFrame) -> None:
    ax = plots.accuracy_vs_sparsity(table)
    curves = by_label(ax)
    assert sorted(curves) == sorted([A, B])
    for label, c in curves.items():
        x, y, std = expected(label)
        cx, cy = xy(c)
        np.testing.assert_allclose(cx, 100 * x)
        np.testing.assert_allclose(cy, 100 * y)
        np.testing.assert_allclose(yerr(c), 100 * std, atol=1e-9)
    (dense,) = gid(ax, "dense")
    np.testing.assert_allclose(dense.get_ydata(), [92.0, 92.0])
    assert dense.get_linestyle() == "--"
    (band,) = gid(ax, "dense_band")
    np.testing.assert_allclose([band.get_y(), band.get_y() + band.get_height()], [90.0, 94.0])  # ± std
    assert ax.get_xlabel() == "Sparsity (%)" and ax.get_ylabel() == "Test accuracy (%)"
    assert ax.get_legend() is not None
    assert tuple(ax.figure.get_size_inches()) == pytest.approx(plots.FIGSIZE)


def test_a_long_legend_grows_the_figure_instead_of_squeezing_the_axes() -> None:
    import warnings

    tables = [make_table(dataset=f"d{i}", model=m) for i in range(8) for m in ("mlp", "lenet")]
    big = pd.concat(tables, ignore_index=True)
    ax = plots.accuracy_vs_sparsity(big)
    n = len(ax.get_legend().get_texts())
    assert n > plots.LEGEND_ROWS_MAX  # two columns
    w, h = ax.figure.get_size_inches()
    assert w == pytest.approx(plots.FIGSIZE[0] + 2 * plots.LEGEND_WIDTH)
    assert h == pytest.approx(plots.LEGEND_ROW_HEIGHT * math.ceil(n / 2) + 0.4)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied because axes sizes collapsed"
        FigureCanvasAgg(ax.figure).draw()
    assert ax.get_position().height > 0.3  # the axes keep a real share of the figure


def test_target_x_and_existing_axes(table: pd.DataFrame) -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    ax0 = fig.add_subplot()
    ax = plots.accuracy_vs_sparsity(table, ax=ax0, metric="val_acc", x="target_sparsity")
    assert ax is ax0
    cx, _ = xy(by_label(ax)[A])
    np.testing.assert_allclose(cx, 100 * np.array(TARGETS))


def test_accuracy_vs_remaining_log_inverted(table: pd.DataFrame) -> None:
    ax = plots.accuracy_vs_remaining(table)
    assert ax.get_xscale() == "log"
    lo, hi = ax.get_xlim()
    assert lo > hi  # inverted: fewer weights remaining to the right
    x, y, _ = expected(B)
    cx, cy = xy(by_label(ax)[B])
    np.testing.assert_allclose(np.sort(cx), np.sort(100 * (1 - x)))
    np.testing.assert_allclose(cy[np.argsort(cx)], (100 * y)[np.argsort(1 - x)])


def test_compression_and_speedup_log2(table: pd.DataFrame) -> None:
    ax = plots.accuracy_vs_compression(table)
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    cx, _ = xy(by_label(ax)[A])
    comp = [np.mean([1 / (1 - achieved(i, s)) for s in SEEDS]) for i in range(4)]
    np.testing.assert_allclose(cx, comp)

    ax = plots.accuracy_vs_speedup(table, kind="theoretical")
    assert ax.xaxis.get_transform().base == 2
    cx, cy = xy(by_label(ax)[A])
    np.testing.assert_allclose(cx, [np.mean([1 / (1 - 0.8 * achieved(i, s)) for s in SEEDS]) for i in range(4)])
    np.testing.assert_allclose(cy, 100 * np.array(BASE[A]))

    ax = plots.accuracy_vs_speedup(table, kind="measured")  # all NaN: no curves, no crash
    assert by_label(ax) == {}
    with pytest.raises(ValueError, match="kind"):
        plots.accuracy_vs_speedup(table, kind="wall")


def test_accuracy_vs_cost(table: pd.DataFrame) -> None:
    ax = plots.accuracy_vs_cost(table, x="params")
    assert ax.get_xscale() == "log"
    cx, _ = xy(by_label(ax)[B])
    want = [np.mean([round(1000 * (1 - achieved(i, s))) for s in SEEDS]) for i in range(4)]
    np.testing.assert_allclose(cx, sorted(want))  # points in order of x
    (star,) = gid(ax, "dense_point")
    np.testing.assert_allclose(star.get_xydata(), [[1000, 92.0]])
    ax = plots.accuracy_vs_cost(make_table(latency=True), x="latency_ms")
    assert ax.get_xscale() == "linear" and len(by_label(ax)) == 2
    with pytest.raises(ValueError):
        plots.accuracy_vs_cost(table, x="energy")  # type: ignore[arg-type]


def test_pruning_drop_paired_with_dense(table: pd.DataFrame) -> None:
    ax = plots.pruning_drop(table)
    curves = by_label(ax)
    assert sorted(curves) == sorted(f"{lab} ({k})" for lab in (A, B) for k in ("pruned", "retrained"))
    for lab in (A, B):
        _, y, _ = expected(lab)
        _, retrained = xy(curves[f"{lab} (retrained)"])
        _, pruned = xy(curves[f"{lab} (pruned)"])
        np.testing.assert_allclose(retrained, 100 * (0.92 - y))
        np.testing.assert_allclose(pruned, 100 * (0.92 - y + 0.1 * np.array(TARGETS)))
        # paired per run: dense offsets 0.02·(s−1) minus acc offsets 0.01·(s−1)·(1+i)
        np.testing.assert_allclose(yerr(curves[f"{lab} (retrained)"]), [1, 0, 1, 2], atol=1e-9)
    assert ax.get_ylabel() == "Accuracy drop vs dense (pp)"


def test_labels_built_failed_rows_dropped_and_multi_dataset() -> None:
    t = make_table()
    t.loc[t["label"] == A, "structure"] = "channel"
    t["label"] = pd.NA
    bad = t.iloc[[1]].assign(status="failed", test_acc=0.0, run_id="bad")
    t = schema.coerce(pd.concat([t, bad], ignore_index=True))
    assert set(plots.curve_labels(t)) == {A + "/channel", B}
    ax = plots.accuracy_vs_sparsity(t)
    c = by_label(ax)[A + "/channel"]
    np.testing.assert_allclose(xy(c)[1], 100 * np.array(BASE[A]))  # failed row ignored
    assert c.lines[0].get_linestyle() == "-."

    two = pd.concat([make_table("d1"), make_table("d2").assign(test_acc=lambda d: d["test_acc"] - 0.1)])
    ax = plots.accuracy_vs_sparsity(schema.coerce(two))
    assert len(by_label(ax)) == 4 and f"{A} [d2/mlp]" in by_label(ax)
    np.testing.assert_allclose(sorted(line.get_ydata()[0] for line in gid(ax, "dense")), [82.0, 92.0])


def test_style_is_deterministic() -> None:
    assert plots.style(A)["color"] == plots.PALETTE[A]
    other = plots.style("foo/bar/baz")  # not in PALETTE: colour by crc32, the same in every process
    assert other["color"] == plots.FALLBACK[1931599003 % len(plots.FALLBACK)]  # zlib.crc32(b"foo/bar/baz")
    assert plots.style(B)["marker"] == "s" and plots.style(A)["marker"] == "o"


# ---- Optuna --------------------------------------------------------------------------


def test_pareto_mask_by_hand() -> None:
    pts = [(1, 5), (2, 4), (2, 3), (3, 1), (0, 5), (3, 1), (1, 1), (np.nan, 9)]
    # maximize both: (1,5) (2,4) (3,1) twice are non-dominated; (0,5) < (1,5); (2,3) < (2,4)
    np.testing.assert_array_equal(plots.pareto_mask(pts, ["maximize", "maximize"]),
                                  [True, True, False, True, False, True, False, False])
    # maximize x, minimize y: (3,1) twice dominates everything else
    np.testing.assert_array_equal(plots.pareto_mask(pts, ["maximize", "minimize"]),
                                  [False, False, False, True, False, True, False, False])
    with pytest.raises(ValueError):
        plots.pareto_mask(pts, ["up", "down"])


def trials_frame() -> pd.DataFrame:
    vals = [(0.90, 100), (0.80, 50), (0.85, 80), (0.70, 60), (0.95, 200), (0.60, 40), (np.nan, np.nan)]
    return pd.DataFrame({
        "number": range(len(vals)),
        "values_0": [v[0] for v in vals],
        "values_1": [v[1] for v in vals],
        "state": ["COMPLETE"] * 6 + ["FAIL"],
        "params_x": range(len(vals)),
    })


def test_pareto_front_points_and_step() -> None:
    ax = plots.pareto_front(trials_frame(), directions=["maximize", "minimize"])
    (front,) = [c for c in gid(ax, "pareto") if isinstance(c, PathCollection)]
    got = {tuple(p) for p in np.round(front.get_offsets(), 6)}
    # by hand: acc up, params down. (0.70, 60) is dominated by (0.80, 50).
    want = {(0.90, 100), (0.80, 50), (0.85, 80), (0.95, 200), (0.60, 40)}
    assert got == want
    (others,) = gid(ax, "trials")
    assert {tuple(p) for p in np.round(others.get_offsets(), 6)} == {(0.70, 60)}
    (step,) = gid(ax, "front")
    assert step.get_drawstyle() == "steps-pre"  # x maximised
    np.testing.assert_allclose(step.get_xdata(), sorted(p[0] for p in want))


def test_search_history_running_best() -> None:
    ax = plots.search_history(trials_frame(), objective="values_0", direction="maximize")
    (best,) = gid(ax, "best")
    np.testing.assert_allclose(best.get_xdata(), range(6))
    np.testing.assert_allclose(best.get_ydata(), [0.90, 0.90, 0.90, 0.90, 0.95, 0.95])
    ax = plots.search_history(trials_frame(), objective="values_1", direction="minimize")
    np.testing.assert_allclose(gid(ax, "best")[0].get_ydata(), [100, 50, 50, 50, 50, 40])
    single = pd.DataFrame({"number": [0, 1, 2], "value": [3.0, 1.0, 2.0], "state": ["COMPLETE"] * 3})
    assert plots.objective_columns(single) == ["value"]
    ax = plots.search_history(single, direction="minimize")
    np.testing.assert_allclose(gid(ax, "best")[0].get_ydata(), [3, 1, 1])


# ---- per-layer views ---------------------------------------------------------------------


def test_layer_sparsity_bars() -> None:
    layers = pd.DataFrame({
        "level": [1, 1, 1, 2, 2, 2],
        "layer": ["fc1.weight", "fc2.weight", "fc3.weight"] * 2,
        "numel": [100, 50, 10] * 2,
        "nonzero": [50, 30, 9, 20, 10, 8],
    }).assign(sparsity=lambda d: 1 - d["nonzero"] / d["numel"])
    ax = plots.layer_sparsity(layers)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [b.get_label() for b in bars] == ["level 1", "level 2"]
    np.testing.assert_allclose([r.get_height() for r in bars[1]], [80, 80, 20])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    ax = plots.layer_sparsity(layers[layers["level"] == 2].drop(columns="level"))
    assert len(ax.containers) == 1 and ax.get_legend() is None


def test_layer_sensitivity_lines() -> None:
    sens = pd.DataFrame({
        "layer": ["conv1"] * 4 + ["fc"] * 4,
        "sparsity": [0.5, 0.5, 0.9, 0.9] * 2,
        "acc": [0.9, 0.8, 0.5, 0.4, 0.95, 0.95, 0.9, 0.8],
    })
    ax = plots.layer_sensitivity(sens)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"conv1", "fc"}
    np.testing.assert_allclose(lines["conv1"].get_xydata(), [[50, 85], [90, 45]])
    np.testing.assert_allclose(lines["fc"].get_ydata(), [95, 85])


# ---- tables and files ---------------------------------------------------------------------


def test_summarize_exact(table: pd.DataFrame) -> None:
    s = plots.summarize(table)
    assert len(s) == 8 and set(s["label"]) == {A, B}
    row = s[(s["label"] == A) & (s["target_sparsity"] == 0.9)].iloc[0]
    assert row["mean"] == pytest.approx(0.70)
    assert row["std"] == pytest.approx(0.03)
    assert row["n"] == 3
    assert row["sparsity"] == pytest.approx(0.901)
    assert row["dense_mean"] == pytest.approx(0.92) and row["dense_std"] == pytest.approx(0.02)
    assert row["dense_n"] == 3  # 15 level-0 rows, 3 seeds
    assert row["drop"] == pytest.approx(0.22)

    m = plots.summarize(table, sparsities=[0.5, 0.9, 0.6, 0.955])
    assert sorted(m["requested"].unique()) == [0.5, 0.9, 0.955]  # 0.6: nothing within 0.5 pp
    assert len(m) == 6
    hit = m[(m["label"] == B) & (m["requested"] == 0.955)].iloc[0]
    assert hit["target_sparsity"] == 0.95 and hit["mean"] == pytest.approx(0.85)


def test_markdown_and_latex(table: pd.DataFrame) -> None:
    shown = plots.format_summary(plots.summarize(table))
    assert "dataset" not in shown.columns  # constant columns dropped
    md = plots.to_markdown(shown)
    lines = md.strip().splitlines()
    assert len(lines) == 2 + 8 and lines[0].startswith("| label")
    assert "70.00 ± 3.00" in md and "+22.00" in md
    assert len({len(line) for line in lines}) == 1  # aligned columns
    num = plots.to_markdown(pd.DataFrame({"a": ["x|y"], "b": [0.123456]}))
    assert r"x\|y" in num and "0.1235" in num and "---:" in num
    tex = plots.to_latex(shown, caption="Accuracy")
    assert r"\toprule" in tex and r"magnitude/one\_shot/finetune" in tex and r"70.00 $\pm$ 3.00" in tex
    assert tex.count(r"\\") == 1 + 8


def test_save_figure_png_pdf(tmp_path: Path, table: pd.DataFrame) -> None:
    from matplotlib.image import imread

    ax = plots.accuracy_vs_remaining(table)
    assert [p.name for p in plots.save_figure(ax, tmp_path / "png" / "fig")] == ["fig.png"]  # the default
    paths = plots.save_figure(ax, tmp_path / "sub" / "fig", formats=("png", "pdf"))
    assert [p.name for p in paths] == ["fig.png", "fig.pdf"]
    assert paths[1].read_bytes()[:4] == b"%PDF"
    # One draw at the figure's own size (no tight bounding box): 150+ dpi at its width in inches.
    width = ax.figure.get_size_inches()[0]
    assert imread(paths[0]).shape[1] == round(width * 200)
    with pytest.raises(ValueError, match="choose from png, pdf, svg"):
        plots.save_figure(ax, tmp_path / "x", formats=("jpg",))


def test_cost_log_axis_minor_labels_do_not_collide() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    ax = plots.new_axes()
    fmt = plots._minor_log_label(ax.xaxis)
    ax.set_xscale("log")
    ax.set_xlim(5e4, 6.5e5)  # about a decade: 2x and 5x labelled only
    assert [fmt(v, None) for v in (2e4, 3e5, 5e5, 2e5, 6e5)] == [
        r"$\mathdefault{2\times10^{4}}$", "", r"$\mathdefault{5\times10^{5}}$", r"$\mathdefault{2\times10^{5}}$", ""]
    ax.set_xlim(1e2, 1e6)  # several decades: no minor labels
    assert fmt(2e4, None) == ""
    ax = plots.accuracy_vs_cost(make_table(), x="flops")
    FigureCanvasAgg(ax.figure).draw()
    minor = [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert all(r"2\times" in t or r"5\times" in t for t in minor)


def test_curves_of_one_figure_never_share_a_colour() -> None:
    from prunebench.plots import FALLBACK, PALETTE, style, styles

    # find two labels outside the palette whose hashed colours collide
    seen: dict[str, str] = {}
    pair = None
    for i in range(500):
        lab = f"method{i}/one_shot/finetune"
        c = style(lab)["color"]
        if c in seen:
            pair = (seen[c], lab)
            break
        seen[c] = lab
    assert pair is not None
    out = styles([*pair, "magnitude/one_shot/finetune"])
    colours = [st["color"] for st in out.values()]
    assert len(set(colours)) == 3
    assert out["magnitude/one_shot/finetune"]["color"] == PALETTE["magnitude/one_shot/finetune"]
    assert all(c in FALLBACK for lab, c in zip(out, colours) if lab not in PALETTE)
    assert styles(list(reversed([*pair]))) == styles(list(pair))  # order-independent
    assert styles(["ticket", "ticket_init", "reinit"])["reinit"]["color"] != styles(["ticket_init"])["ticket_init"]["color"]
