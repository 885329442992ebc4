"""Tradeoff curves and friends: pure functions ``(df, ax=None, ...) -> Axes``.

Every function takes the results table (``prunebench.results.load``), one row per
(run, level), and draws mean ± std over seeds. Conventions shared by all of them:

* A curve is one ``label`` ("<method>/<schedule>/<retrain>[/<structure>]"); a missing
  label is rebuilt from those columns. When the table mixes data sets or models, the
  legend names them and each (dataset, model) gets its own dense reference.
* Points of a curve are the pruned levels (level ≥ 1) grouped by ``target_sparsity``;
  the x position is the *mean achieved* value (sparsity, compression, ...).
* The dense model is level 0. Runs of the same seed share one dense model, so the
  reference is averaged per seed first, then mean ± std (ddof=1) across seeds.
* Only rows with status ``ok`` (or no status) are drawn; failed rows stay in the table.
* Accuracies are shown in %, sparsities in %; std with a single seed is drawn as 0.

No global plot state: with ``ax=None`` a fresh ``matplotlib.figure.Figure`` (not
registered with pyplot) is created at single-column paper size. In a notebook, show it
with ``display(ax.figure)``.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from prunebench.stats import curve_labels, feasible_flags, pareto_mask  # noqa: F401  (re-exported: plots' public names)

__all__ = [
    "PALETTE",
    "accuracy_vs_compression",
    "accuracy_vs_cost",
    "accuracy_vs_remaining",
    "accuracy_vs_sparsity",
    "accuracy_vs_speedup",
    "aggregate",
    "curve_labels",
    "dense_reference",
    "layer_sensitivity",
    "layer_sparsity",
    "new_axes",
    "objective_columns",
    "pareto_front",
    "hypervolume_history",
    "hypervolume_comparison",
    "pareto_mask",
    "pruning_drop",
    "save_figure",
    "search_history",
    "sparse_crossover",
    "sparse_speedup_vs_sparsity",
    "style",
    "summarize",
    "to_latex",
    "to_markdown",
]

#: Single-column paper figure size (inches) and font sizes: readable when printed at 3.4 in.
FIGSIZE = (3.4, 2.6)
FONT = {"label": 8, "tick": 7, "legend": 6, "title": 8}

#: Fixed colours for the labels the shipped studies produce, so a method keeps its colour
#: across every figure and paper. Anything else gets a stable hashed colour (FALLBACK).
PALETTE: dict[str, str] = {
    "magnitude/one_shot/finetune": "#1f77b4",
    "magnitude/one_shot/none": "#9ecae1",
    "magnitude/iterative/finetune": "#d62728",
    "magnitude/iterative/lr_rewind": "#ff7f0e",
    "magnitude/iterative/weight_rewind": "#2ca02c",
    "magnitude/iterative/reinit": "#7f7f7f",
    "magnitude/gradual/finetune": "#9467bd",
    "random/one_shot/finetune": "#8c564b",
    "random/iterative/finetune": "#c49c94",
    "random/iterative/weight_rewind": "#bcbd22",
    "snip/one_shot/finetune": "#e377c2",
    "taylor/one_shot/finetune": "#17becf",
    "movement/gradual/finetune": "#393b79",
    "magnitude/one_shot/finetune/channel": "#637939",
    "magnitude/iterative/finetune/channel": "#843c39",
    "taylor/one_shot/finetune/channel": "#7b4173",
    # labels of the lottery-ticket studies (label=... in their configs)
    "ticket": "#2ca02c",
    "ticket_init": "#98df8a",
    "reinit": "#7f7f7f",
    "random_mask": "#c7c7c7",
}
FALLBACK = [
    "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363", "#6baed6", "#fd8d3c", "#74c476",
    "#9e9ac8", "#969696", "#a55194", "#8ca252", "#bd9e39", "#ad494a", "#5254a3", "#e7969c",
]
MARKERS = {"one_shot": "o", "iterative": "s", "gradual": "^"}
FALLBACK_MARKERS = ["D", "v", "P", "X", "<", ">", "h", "*"]
LINESTYLES = {"channel": "-.", "nm": ":"}
DENSE_COLOR = "0.25"
#: legends with more entries than this go beside the axes (saved figures grow to fit)
LEGEND_INSIDE_MAX = 6
LEGEND_WIDTH = 2.2  # inches added to a single-axes figure for a legend beside it (per column)
LEGEND_ROWS_MAX = 24  # legend entries per column before another column starts
LEGEND_ROW_HEIGHT = 0.13  # inches per legend entry at FONT["legend"] (the figure grows to fit them)

#: Human names and units for axis labels.
_NAMES = {
    "test_acc": "Test accuracy",
    "val_acc": "Validation accuracy",
    "acc_pruned": "Test accuracy after pruning",
    "acc_pruned_val": "Validation accuracy after pruning",
    "test_loss": "Test loss",
    "val_loss": "Validation loss",
    "sparsity": "Sparsity",
    "target_sparsity": "Target sparsity",
    "compression": "Compression ratio",
    "speedup_theoretical": "Theoretical speedup (FLOPs)",
    "speedup_measured": "Measured speedup",
    "speedup_measured_sparse": "Measured speedup, sparse kernels",
    "params_nonzero": "Nonzero parameters",
    "params": "Parameters",
    "flops": "FLOPs per sample",
    "latency_ms": "Latency (ms)",
}
_PERCENT = {"sparsity", "target_sparsity", "channel_ratio"}


# ---- styling --------------------------------------------------------------------------


def _stable_index(text: str, n: int) -> int:
    # crc32, not hash(): Python's str hash is salted per process.
    return zlib.crc32(text.encode()) % n


def style(label: str) -> dict[str, Any]:
    """Colour, marker and line style of a curve label (deterministic across runs)."""
    parts = label.split("/")
    color = PALETTE.get(label) or FALLBACK[_stable_index(label, len(FALLBACK))]
    schedule = parts[1] if len(parts) > 1 else ""
    marker = MARKERS.get(schedule) or FALLBACK_MARKERS[_stable_index(schedule, len(FALLBACK_MARKERS))]
    linestyle = LINESTYLES.get(parts[3], "-") if len(parts) > 3 else "-"
    return {"color": color, "marker": marker, "linestyle": linestyle}


def styles(labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """:func:`style` for every label of one figure, with no two curves sharing a colour.

    Fixed (PALETTE) colours stay; a hashed colour already taken in this figure moves to the
    next free one of FALLBACK (labels in sorted order, so the result is deterministic).
    """
    out = {lab: style(lab) for lab in sorted(set(labels))}
    taken = {st["color"] for lab, st in out.items() if lab in PALETTE}
    for lab in sorted(out):
        if lab in PALETTE:
            continue
        color = out[lab]["color"]
        if color in taken:
            start = FALLBACK.index(color) if color in FALLBACK else 0
            for j in range(1, len(FALLBACK) + 1):
                cand = FALLBACK[(start + j) % len(FALLBACK)]
                if cand not in taken:
                    color = cand
                    break
            out[lab] = out[lab] | {"color": color}
        taken.add(color)
    return out


def new_axes(figsize: tuple[float, float] = FIGSIZE) -> Axes:
    """A fresh Axes on a pyplot-free Figure at paper size."""
    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def _finish(ax: Axes, xlabel: str, ylabel: str, legend: bool = True, title: str | None = None) -> Axes:
    ax.set_xlabel(xlabel, fontsize=FONT["label"])
    ax.set_ylabel(ylabel, fontsize=FONT["label"])
    ax.tick_params(which="both", labelsize=FONT["tick"])
    ax.grid(True, which="major", alpha=0.3, linewidth=0.5)
    if title:
        ax.set_title(title, fontsize=FONT["title"])
    handles = ax.get_legend_handles_labels()[0]
    if legend and handles:
        if len(handles) > LEGEND_INSIDE_MAX:  # many curves: beside the axes, not over the data
            ncol = math.ceil(len(handles) / LEGEND_ROWS_MAX)
            fig = ax.figure
            if isinstance(fig, Figure) and len(fig.axes) == 1:
                # Widen (and for a long legend heighten) so the axes keep their size: a legend
                # taller than the figure squeezed a 32-curve report's axes to a sliver.
                w, h = fig.get_size_inches()
                rows = math.ceil(len(handles) / ncol)
                fig.set_size_inches(w + LEGEND_WIDTH * ncol, max(h, LEGEND_ROW_HEIGHT * rows + 0.4))
            ax.legend(fontsize=FONT["legend"], frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=ncol)
        else:
            ax.legend(fontsize=FONT["legend"], frameon=False, loc="best")
    return ax


def _is_accuracy(col: str) -> bool:
    return col.endswith("_acc") or col.startswith("acc_")


def _scale(col: str) -> float:
    # Accuracies and sparsities are stored as fractions and shown in %.
    return 100.0 if _is_accuracy(col) or col in _PERCENT else 1.0


def _axis_name(col: str) -> str:
    name = _NAMES.get(col, col.replace("_", " "))
    return f"{name} (%)" if _scale(col) == 100.0 else name


# ---- the table: curves, dense reference, aggregation ------------------------------------


def _prepare(df: pd.DataFrame, *value_cols: str) -> pd.DataFrame:
    """Rows fit to draw: status ok, values present; plus helper columns for grouping."""
    d = df.copy()
    if "status" in d.columns:
        d = d[d["status"].isna() | (d["status"] == "ok")]
    for col in value_cols:
        if col not in d.columns:
            d[col] = np.nan
        d[col] = pd.to_numeric(d[col], errors="coerce").astype("float64")
        d = d[np.isfinite(d[col])]
    d["label"] = curve_labels(d)
    for col in ("dataset", "model"):
        d[col] = d[col].astype("string").fillna("?") if col in d.columns else "?"
    d["seed"] = d["seed"].astype("Int64").fillna(-1) if "seed" in d.columns else -1
    d["level"] = d["level"].astype("Int64").fillna(-1) if "level" in d.columns else 1
    # Points of a curve are keyed by the requested sparsity; fall back to achieved.
    target = pd.to_numeric(d.get("target_sparsity", pd.Series(np.nan, index=d.index)), errors="coerce")
    achieved = pd.to_numeric(d.get("sparsity", pd.Series(np.nan, index=d.index)), errors="coerce")
    d["_target"] = target.astype("float64").fillna(achieved.astype("float64")).round(6)
    return d


def dense_reference(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Dense (level 0) ``metric`` per (dataset, model): columns dataset, model, mean, std, n.

    Runs of one seed share a dense model, so level-0 rows are averaged per seed first;
    ``n`` is the number of seeds and ``std`` is across seeds (ddof=1; NaN for one seed).
    """
    d = _prepare(df, metric)
    d = d[d["level"] == 0]
    per_seed = d.groupby(["dataset", "model", "seed"], sort=True)[metric].mean().reset_index()
    out = per_seed.groupby(["dataset", "model"], sort=True)[metric].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"count": "n"}).astype({"n": "int64"})


def _aggregate_prepared(d: pd.DataFrame, value: str, x: str) -> pd.DataFrame:
    d = d[(d["level"] >= 1) & np.isfinite(d[x].astype("float64"))]
    if not len(d):
        return pd.DataFrame(columns=["dataset", "model", "label", "target_sparsity", "x", "x_std", "mean", "std", "n"])
    g = d.groupby(["dataset", "model", "label", "_target"], sort=True)
    out = g.agg(x=(x, "mean"), x_std=(x, "std"), mean=(value, "mean"), std=(value, "std"), n=(value, "count"))
    out = out.reset_index().rename(columns={"_target": "target_sparsity"})
    return out.sort_values(["dataset", "model", "label", "x"], kind="stable").reset_index(drop=True)


def aggregate(df: pd.DataFrame, metric: str = "test_acc", x: str = "sparsity") -> pd.DataFrame:
    """Mean ± std over seeds of ``metric`` and ``x`` per (dataset, model, label, target sparsity).

    Pruned levels only (level ≥ 1). Columns: dataset, model, label, target_sparsity, x,
    x_std, mean, std, n. Values are as stored (fractions, not %).
    """
    return _aggregate_prepared(_prepare(df, metric, x), metric, x)


def _legend_name(row: pd.Series, multi: bool) -> str:
    return f"{row['label']} [{row['dataset']}/{row['model']}]" if multi else str(row["label"])


def _draw_curves(ax: Axes, agg: pd.DataFrame, xscale: float, yscale: float, suffix: str = "",
                 **kwargs: Any) -> None:
    """One errorbar container per curve; its label is the curve's legend name."""
    multi = agg[["dataset", "model"]].drop_duplicates().shape[0] > 1
    figure_styles = styles([str(v) for v in agg["label"].unique()])
    for _, pts in agg.groupby(["dataset", "model", "label"], sort=True):
        first = pts.iloc[0]
        st = figure_styles[str(first["label"])] | kwargs
        ax.errorbar(
            pts["x"].to_numpy(float) * xscale,
            pts["mean"].to_numpy(float) * yscale,
            yerr=np.nan_to_num(pts["std"].to_numpy(float)) * yscale,
            label=_legend_name(first, multi) + suffix,
            markersize=3.5, linewidth=1.1, capsize=2, elinewidth=0.7, **st,
        )


def _draw_dense(ax: Axes, dense: pd.DataFrame, yscale: float) -> None:
    """Dense reference: dashed horizontal line (gid "dense") with its ±std band."""
    multi = len(dense) > 1
    for i, row in dense.reset_index(drop=True).iterrows():
        mean, std = float(row["mean"]) * yscale, float(np.nan_to_num(row["std"])) * yscale
        name = f"dense [{row['dataset']}/{row['model']}]" if multi else "dense"
        ls = ["--", (0, (5, 2, 1, 2)), (0, (1, 1))][int(i) % 3]  # type: ignore[call-overload]
        line = ax.axhline(mean, color=DENSE_COLOR, linestyle=ls, linewidth=0.9, label=name, zorder=1)
        line.set_gid("dense")
        if std > 0:
            band = ax.axhspan(mean - std, mean + std, color=DENSE_COLOR, alpha=0.12, linewidth=0, zorder=0)
            band.set_gid("dense_band")


def _empty_note(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no data: {what}", ha="center", va="center", transform=ax.transAxes,
            fontsize=FONT["label"], color="0.4")


def _check_metric(df: pd.DataFrame, *cols: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"column(s) {', '.join(missing)} not in the table; columns: {', '.join(map(str, df.columns))}")


# ---- accuracy curves ----------------------------------------------------------------------


def accuracy_vs_sparsity(df: pd.DataFrame, ax: Axes | None = None, metric: str = "test_acc",
                         x: str = "sparsity") -> Axes:
    """Accuracy vs sparsity, one line per label, mean ± std over seeds; dense reference dashed.

    ``x`` is the achieved ``sparsity`` (mean over seeds) by default; ``target_sparsity``
    works too. Both axes in %.
    """
    _check_metric(df, metric, x)
    ax = ax if ax is not None else new_axes()
    d = _prepare(df, metric)
    agg = _aggregate_prepared(d.assign(**{x: pd.to_numeric(d[x], errors="coerce").astype("float64")}), metric, x)
    _draw_dense(ax, dense_reference(df, metric), _scale(metric))
    if len(agg):
        _draw_curves(ax, agg, _scale(x), _scale(metric))
    else:
        _empty_note(ax, "no pruned levels")
    return _finish(ax, _axis_name(x), _axis_name(metric))


def perplexity_vs_sparsity(df: pd.DataFrame, ax: Axes | None = None, split: str = "test",
                           x: str = "sparsity") -> Axes:
    """Language models: perplexity vs sparsity on a log axis, mean ± std over seeds, dense dashed.

    Reads ``<split>_ppl``, or ``exp(<split>_loss)`` (mean token cross-entropy) when the table
    has no perplexity column. Sparsity in %.
    """
    col = f"{split}_ppl"
    d = df
    if col not in df.columns:
        _check_metric(df, f"{split}_loss", x)
        d = df.assign(**{col: np.exp(pd.to_numeric(df[f"{split}_loss"], errors="coerce").astype("float64"))})
    ax = accuracy_vs_sparsity(d, ax, metric=col, x=x)
    ax.set_yscale("log")
    ax.set_ylabel(f"{split} perplexity (log scale)", fontsize=FONT["label"])
    return ax


def _percent_ticks(value: float, _pos: int) -> str:
    return f"{value:g}"


def accuracy_vs_remaining(df: pd.DataFrame, ax: Axes | None = None, metric: str = "test_acc") -> Axes:
    """Accuracy vs % of prunable weights remaining, log axis, inverted (sparser → right).

    The lottery-ticket papers' view: 100, 50, 20, ... % remaining from left to right.
    """
    _check_metric(df, metric, "sparsity")
    ax = ax if ax is not None else new_axes()
    d = _prepare(df, metric, "sparsity")
    d["remaining"] = 1.0 - d["sparsity"]
    agg = _aggregate_prepared(d[d["remaining"] > 0], metric, "remaining")
    _draw_dense(ax, dense_reference(df, metric), _scale(metric))
    if len(agg):
        _draw_curves(ax, agg, 100.0, _scale(metric))
    else:
        _empty_note(ax, "no pruned levels")
    ax.set_xscale("log")
    lo = float(agg["x"].min() * 100) if len(agg) else 1.0
    ticks = [t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01) if t >= lo / 1.5]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(_percent_ticks))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(110, lo / 1.3)  # inverted: high → low remaining
    return _finish(ax, "Weights remaining (%)", _axis_name(metric))


def _log2_axis(ax: Axes) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}×"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _minor_log_label(axis: Any) -> FuncFormatter:
    """Minor labels of a base-10 log axis spanning about a decade: only 2× and 5× (matplotlib's
    default labels 2, 3, 4, 6 of each decade, which collide on narrow panels)."""

    def fmt(value: float, _pos: int | None) -> str:
        lo, hi = sorted(axis.get_view_interval())
        if value <= 0 or lo <= 0 or math.log10(hi / lo) > 1.5:
            return ""
        exp = math.floor(math.log10(value) + 1e-9)
        mant = value / 10**exp
        if abs(mant - round(mant)) > 1e-6 or round(mant) not in (2, 5):
            return ""
        return rf"$\mathdefault{{{round(mant)}\times10^{{{exp}}}}}$"

    return FuncFormatter(fmt)


def _accuracy_vs_ratio(df: pd.DataFrame, ax: Axes | None, metric: str, col: str) -> Axes:
    _check_metric(df, metric, col)
    ax = ax if ax is not None else new_axes()
    agg = aggregate(df, metric, col)
    agg = agg[agg["x"] > 0]
    _draw_dense(ax, dense_reference(df, metric), _scale(metric))
    if len(agg):
        _draw_curves(ax, agg, 1.0, _scale(metric))
    else:
        _empty_note(ax, f"no {col}")
    _log2_axis(ax)
    if len(agg):  # start at 1× (the dense model) so the ratio reads from the origin
        lo, hi = float(agg["x"].min()), float(agg["x"].max())
        ax.set_xlim(min(0.9, lo / 1.1), max(hi * 1.1, 1.2))
    return _finish(ax, _axis_name(col), _axis_name(metric))


def accuracy_vs_compression(df: pd.DataFrame, ax: Axes | None = None, metric: str = "test_acc") -> Axes:
    """Accuracy vs compression ratio (params / nonzero params) on a log2 axis (ShrinkBench)."""
    return _accuracy_vs_ratio(df, ax, metric, "compression")


def accuracy_vs_speedup(df: pd.DataFrame, ax: Axes | None = None,
                        kind: Literal["theoretical", "measured"] = "theoretical",
                        metric: str = "test_acc") -> Axes:
    """Accuracy vs speedup on a log2 axis: ``speedup_theoretical`` (FLOPs) or ``speedup_measured``."""
    if kind not in ("theoretical", "measured"):
        raise ValueError(f"kind={kind!r}; expected 'theoretical' or 'measured'")
    return _accuracy_vs_ratio(df, ax, metric, f"speedup_{kind}")


#: accuracy_vs_cost x → column. "params" means nonzero parameters: for unstructured runs
#: the tensors keep their shape, so only the nonzero count compares with channel pruning.
COST_COLUMNS = {"params": "params_nonzero", "flops": "flops", "latency_ms": "latency_ms"}


def accuracy_vs_cost(df: pd.DataFrame, ax: Axes | None = None,
                     x: Literal["params", "flops", "latency_ms"] = "params",
                     metric: str = "test_acc") -> Axes:
    """Accuracy vs absolute cost, so structured and unstructured runs share one plot.

    ``x``: "params" (nonzero parameters, log axis), "flops" (per-sample FLOPs, log axis)
    or "latency_ms" (measured median latency). The dense model is a black star at its own
    cost, with the dashed accuracy reference.
    """
    if x not in COST_COLUMNS:
        raise ValueError(f"x={x!r}; expected one of {', '.join(COST_COLUMNS)}")
    col = COST_COLUMNS[x]
    _check_metric(df, metric, col)
    ax = ax if ax is not None else new_axes()
    agg = aggregate(df, metric, col)
    agg = agg[agg["x"] > 0]
    _draw_dense(ax, dense_reference(df, metric), _scale(metric))
    d = _prepare(df, metric, col)
    d0 = d[d["level"] == 0]
    if len(d0):
        per_seed = d0.groupby(["dataset", "model", "seed"])[[col, metric]].mean()
        dense_pts = per_seed.groupby(["dataset", "model"]).mean()
        star = ax.plot(dense_pts[col].to_numpy(float), dense_pts[metric].to_numpy(float) * _scale(metric),
                       linestyle="none", marker="*", markersize=7, color="black", zorder=3)[0]
        star.set_gid("dense_point")
    if len(agg):
        _draw_curves(ax, agg, 1.0, _scale(metric))
    else:
        _empty_note(ax, f"no {col}")
    if x != "latency_ms":
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(_minor_log_label(ax.xaxis))
    return _finish(ax, _axis_name(col), _axis_name(metric))


def sparse_crossover(agg: pd.DataFrame) -> pd.DataFrame:
    """Per curve of ``aggregate(df, "speedup_measured_sparse", "sparsity")``: the lowest
    mean sparsity from which the mean sparse-kernel speedup stays above 1 (NaN: never).
    Columns: dataset, model, label, crossover."""
    rows = []
    for (dataset, model, label), pts in agg.groupby(["dataset", "model", "label"], sort=True):
        pts = pts.sort_values("x")
        xs, ys = pts["x"].to_numpy(float), pts["mean"].to_numpy(float)
        cross = math.nan
        for xv, yv in zip(xs[::-1], ys[::-1]):
            if not yv > 1.0:
                break
            cross = float(xv)
        rows.append({"dataset": dataset, "model": model, "label": label, "crossover": cross})
    return pd.DataFrame(rows, columns=["dataset", "model", "label", "crossover"])


def sparse_speedup_vs_sparsity(df: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Measured speedup of the sparse-kernel path (``speedup_measured_sparse``) vs sparsity,
    log2 y axis, with the break-even line at 1x (gid "break_even") and, per curve, a dotted
    vertical line at its crossover sparsity (gid "crossover") when the sparse path overtakes."""
    col = "speedup_measured_sparse"
    _check_metric(df, col, "sparsity")
    ax = ax if ax is not None else new_axes()
    agg = aggregate(df, col, "sparsity")
    agg = agg[agg["mean"] > 0]
    ax.axhline(1.0, color=DENSE_COLOR, linestyle="--", linewidth=0.9, label="dense kernels").set_gid("break_even")
    if len(agg):
        _draw_curves(ax, agg, _scale("sparsity"), 1.0)
        figure_styles = styles([str(v) for v in agg["label"].unique()])
        for _, row in sparse_crossover(agg).iterrows():
            if np.isfinite(row["crossover"]):
                line = ax.axvline(row["crossover"] * _scale("sparsity"), linestyle=":", linewidth=0.9,
                                  color=figure_styles[str(row["label"])].get("color", "0.3"))
                line.set_gid("crossover")
    else:
        _empty_note(ax, f"no {col}")
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}×"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    return _finish(ax, _axis_name("sparsity"), _axis_name(col))


def pruning_drop(df: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Accuracy drop vs dense right after pruning (dashed, hollow) and after retraining (solid).

    Per row the drop is paired with the dense accuracy of the same run (its level 0;
    the (dataset, model) dense mean when absent), then mean ± std over seeds per target.
    """
    _check_metric(df, "test_acc", "acc_pruned", "sparsity")
    ax = ax if ax is not None else new_axes()
    d = _prepare(df, "test_acc")
    d["acc_pruned"] = pd.to_numeric(d["acc_pruned"], errors="coerce").astype("float64")
    d["sparsity"] = pd.to_numeric(d["sparsity"], errors="coerce").astype("float64")
    dense_run = d[d["level"] == 0].groupby("run_id")["test_acc"].mean() if "run_id" in d.columns else pd.Series()
    dense = dense_reference(df).set_index(["dataset", "model"])["mean"]
    pruned = d[d["level"] >= 1].copy()
    fallback = [dense.get((ds, m), np.nan) for ds, m in zip(pruned["dataset"], pruned["model"])]
    ref = pruned["run_id"].map(dense_run) if "run_id" in pruned.columns else pd.Series(np.nan, index=pruned.index)
    ref = ref.astype("float64").fillna(pd.Series(fallback, index=pruned.index, dtype="float64"))
    pruned["drop_pruned"] = ref - pruned["acc_pruned"]
    pruned["drop_retrained"] = ref - pruned["test_acc"]
    ax.axhline(0.0, color=DENSE_COLOR, linewidth=0.6, zorder=1)
    drawn = False
    for col, suffix, extra in (("drop_pruned", " (pruned)", {"linestyle": "--", "markerfacecolor": "white"}),
                               ("drop_retrained", " (retrained)", {})):
        sub = pruned[np.isfinite(pruned[col])]
        agg = _aggregate_prepared(sub, col, "sparsity")
        if len(agg):
            _draw_curves(ax, agg, 100.0, 100.0, suffix=suffix, **extra)
            drawn = True
    if not drawn:
        _empty_note(ax, "no pruned levels with a dense reference")
    return _finish(ax, _axis_name("sparsity"), "Accuracy drop vs dense (pp)")


# ---- Optuna studies -----------------------------------------------------------------------


def objective_columns(trials: pd.DataFrame) -> list[str]:
    """Objective columns of a ``Study.trials_dataframe()``: ["value"] or ["values_0", ...]."""
    if "value" in trials.columns:
        return ["value"]
    return [c for c in trials.columns if str(c).startswith("values_")]


def _complete(trials: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    t = trials
    if "state" in t.columns:
        t = t[t["state"].astype(str).str.upper().str.endswith("COMPLETE")]
    for c in cols:
        if c not in t.columns:
            raise KeyError(f"column {c!r} not in the trials; columns: {', '.join(map(str, trials.columns))}")
        t = t[np.isfinite(pd.to_numeric(t[c], errors="coerce").astype("float64"))]
    return t


def _short(col: str) -> str:
    """Axis name of a trials column: "values_0" → "objective 0", "user_attrs_acc" → "acc"."""
    if col.startswith("values_") and col[7:].isdigit():
        return f"objective {col[7:]}"
    for prefix in ("values_", "user_attrs_", "params_"):
        if col.startswith(prefix):
            return col[len(prefix):]
    return col


def pareto_front(trials: pd.DataFrame, ax: Axes | None = None, x: str | None = None, y: str | None = None,
                 directions: Sequence[str] = ("maximize", "maximize"),
                 xlabel: str | None = None, ylabel: str | None = None,
                 feasible: str | None = "user_attrs_feasible") -> Axes:
    """All complete trials (grey) and the Pareto-optimal ones (gid "pareto"), front as a step line.

    ``trials`` is ``optuna.Study.trials_dataframe()``; ``x``/``y`` default to the first
    two objective columns; ``directions`` are those of x and y (``study.directions``).
    With ``sweep.constraints`` the trials carry a ``feasible`` column: infeasible trials
    are drawn as crosses (gid "infeasible") and the front is that of the feasible ones.
    """
    objs = objective_columns(trials)
    x = x or (objs[0] if objs else None)
    y = y or (objs[1] if len(objs) > 1 else None)
    if x is None or y is None:
        raise ValueError(f"need two objectives for a Pareto front; objective columns: {objs or 'none'}")
    ax = ax if ax is not None else new_axes()
    t = _complete(trials, [x, y])
    ok = feasible_flags(t, feasible) if feasible else np.ones(len(t), bool)
    if not ok.all():
        ax.scatter(pd.to_numeric(t[x]).to_numpy(float)[~ok], pd.to_numeric(t[y]).to_numpy(float)[~ok], s=16,
                   marker="x", linewidths=0.8, color="0.45", label="infeasible", zorder=2).set_gid("infeasible")
    t = t[ok]
    xs = pd.to_numeric(t[x]).to_numpy(float)
    ys = pd.to_numeric(t[y]).to_numpy(float)
    on = pareto_mask(np.column_stack([xs, ys]), directions) if len(t) else np.zeros(0, bool)
    ax.scatter(xs[~on], ys[~on], s=10, color="0.65", label="feasible" if not ok.all() else "trials",
               zorder=2).set_gid("trials")
    ax.scatter(xs[on], ys[on], s=18, color="#d62728", label="Pareto-optimal", zorder=3).set_gid("pareto")
    if on.any():
        order = np.argsort(xs[on], kind="stable")
        # The attainment boundary steps after a point when x is minimised, before it when maximised.
        where = "pre" if directions[0] == "maximize" else "post"
        ax.step(xs[on][order], ys[on][order], where=where, color="#d62728", linewidth=0.9,
                zorder=2)[0].set_gid("front")
    else:
        _empty_note(ax, "no complete trials")
    xl = xlabel or f"{_short(x)} ({'→' if directions[0] == 'maximize' else '←'} better)"
    yl = ylabel or f"{_short(y)} ({'↑' if directions[1] == 'maximize' else '↓'} better)"
    return _finish(ax, xl, yl)


def search_history(trials: pd.DataFrame, ax: Axes | None = None, objective: str | None = None,
                   direction: str = "maximize", ylabel: str | None = None) -> Axes:
    """Objective per complete trial (dots) and the running best (step line, gid "best")."""
    objs = objective_columns(trials)
    objective = objective or (objs[0] if objs else None)
    if objective is None:
        raise ValueError("no objective column (value / values_*) in the trials")
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction={direction!r}; expected 'maximize' or 'minimize'")
    ax = ax if ax is not None else new_axes()
    t = _complete(trials, [objective])
    number = t["number"] if "number" in t.columns else pd.Series(np.arange(len(t)), index=t.index)
    t = t.assign(_n=pd.to_numeric(number)).sort_values("_n", kind="stable")
    ns = t["_n"].to_numpy(float)
    vals = pd.to_numeric(t[objective]).to_numpy(float)
    ax.scatter(ns, vals, s=10, color="0.5", label="trial", zorder=2).set_gid("trials")
    if len(vals):
        best = np.maximum.accumulate(vals) if direction == "maximize" else np.minimum.accumulate(vals)
        ax.step(ns, best, where="post", color="#1f77b4", linewidth=1.1, label="best so far",
                zorder=3)[0].set_gid("best")
    else:
        _empty_note(ax, "no complete trials")
    return _finish(ax, "Trial", ylabel or _short(objective))


def hypervolume_history(history: pd.DataFrame, ax: Axes | None = None, label: str | None = None) -> Axes:
    """Hypervolume after each trial (``prunebench.sweep.constraints.hypervolume_history``), gid "hypervolume"."""
    ax = ax if ax is not None else new_axes()
    if len(history):
        ax.step(history["number"].to_numpy(float), history["hypervolume"].to_numpy(float), where="post",
                color="#2ca02c", linewidth=1.1, label=label or "hypervolume")[0].set_gid("hypervolume")
    else:
        _empty_note(ax, "no trials")
    return _finish(ax, "Trial", "Hypervolume (↑ better)", legend=label is not None)


def hypervolume_comparison(df: pd.DataFrame, ax: Axes | None = None, by: str = "sampler",
                           interval: str = "ci95") -> Axes:
    """Hypervolume vs trials, one line per ``by`` (mean over seeds) with a shaded interval.

    ``df``: columns ``by``, ``seed``, ``number`` (trial, from 0), ``hypervolume``.
    ``interval``: ``ci95`` (t-interval of the mean over seeds) or ``std``. Each line's gid
    is ``hv:<name>``, its band ``hv_band:<name>``.
    """
    from scipy import stats

    ax = ax if ax is not None else new_axes()
    for i, (name, g) in enumerate(sorted(df.groupby(by), key=lambda kv: str(kv[0]))):
        agg = g.groupby("number")["hypervolume"].agg(["mean", "std", "count"]).reset_index()
        sd = agg["std"].fillna(0.0).to_numpy(float)
        n = agg["count"].to_numpy(float)
        if interval == "ci95":
            half = np.where(n > 1, stats.t.ppf(0.975, np.maximum(n - 1, 1)) * sd / np.sqrt(n), 0.0)
        else:
            half = sd
        colour = f"C{i}"
        xs, mean = agg["number"].to_numpy(float) + 1, agg["mean"].to_numpy(float)
        ax.plot(xs, mean, color=colour, linewidth=1.2,
                label=f"{name} (n={int(n.max()) if len(n) else 0})")[0].set_gid(f"hv:{name}")
        ax.fill_between(xs, mean - half, mean + half, color=colour, alpha=0.2, linewidth=0).set_gid(f"hv_band:{name}")
    if not len(df):
        _empty_note(ax, "no trials")
    what = "95% CI of the mean" if interval == "ci95" else "± 1 std"
    return _finish(ax, "Trials", f"Hypervolume (mean, {what})")


# ---- per-layer views ------------------------------------------------------------------------


def layer_sparsity(layers: pd.DataFrame, ax: Axes | None = None, by: str | None = None) -> Axes:
    """Per-layer sparsity bars from a ``levels/<k>/layers.csv`` table (layer, numel, nonzero, sparsity).

    Several groups (e.g. levels, or labels) side by side: ``by`` names the grouping
    column; by default ``level`` when present. One bar container per group, in order of
    first appearance of the layers.
    """
    _check_metric(layers, "layer", "sparsity")
    ax = ax if ax is not None else new_axes((max(3.4, 0.35 * layers["layer"].nunique() + 1.5), 2.6))
    by = by if by is not None else ("level" if "level" in layers.columns else None)
    names = list(dict.fromkeys(layers["layer"].astype(str)))
    pos = {n: i for i, n in enumerate(names)}
    groups = list(layers.groupby(by, sort=True)) if by else [(None, layers)]
    width = 0.8 / max(len(groups), 1)
    for j, (key, g) in enumerate(groups):
        xs = np.array([pos[n] for n in g["layer"].astype(str)], float) + (j - (len(groups) - 1) / 2) * width
        label = None if key is None else (f"{by} {key}" if by == "level" else str(key))
        color = style(str(key))["color"] if by not in (None, "level") else f"C{j % 10}"
        ax.bar(xs, pd.to_numeric(g["sparsity"]).to_numpy(float) * 100.0, width=width, label=label, color=color)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=FONT["tick"] - 1)
    ax.set_ylim(0, 100)
    return _finish(ax, "Layer", "Sparsity (%)", legend=by is not None)


def layer_sensitivity(sens: pd.DataFrame, ax: Axes | None = None, metric: str = "acc") -> Axes:
    """Distiller-style sensitivity: accuracy vs sparsity when each layer is pruned alone.

    ``sens`` has columns layer, sparsity, ``metric`` (fractions); repeated rows (seeds)
    are averaged. One line per layer.
    """
    _check_metric(sens, "layer", "sparsity", metric)
    ax = ax if ax is not None else new_axes()
    mean = sens.groupby(["layer", "sparsity"], sort=True)[metric].mean().reset_index()
    order = list(dict.fromkeys(sens["layer"].astype(str)))
    scale = 100.0 if float(pd.to_numeric(mean[metric]).max()) <= 1.0 else 1.0
    for i, name in enumerate(order):
        g = mean[mean["layer"].astype(str) == name].sort_values("sparsity")
        ax.plot(g["sparsity"].to_numpy(float) * 100.0, g[metric].to_numpy(float) * scale,
                marker=FALLBACK_MARKERS[i % len(FALLBACK_MARKERS)], markersize=3, linewidth=1.0,
                color=FALLBACK[i % len(FALLBACK)], label=name)
    return _finish(ax, "Sparsity of the layer (%)", "Accuracy (%)" if scale == 100.0 else "Accuracy")


# ---- output -------------------------------------------------------------------------------


from prunebench.formats import FIGURE_FORMATS  # noqa: E402  (the formats save_figure writes)


def save_figure(fig_or_ax: Figure | Axes, path_without_suffix: str | os.PathLike[str],
                dpi: int = 200, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write ``<path>.<format>`` for each of ``formats`` (PNG at ``dpi`` >= 150; PDF on request).

    One draw per file: no ``bbox_inches="tight"`` (which draws a figure twice to measure it);
    the figures here are laid out when created (``layout="constrained"``).
    """
    fig = fig_or_ax.figure if isinstance(fig_or_ax, Axes) else fig_or_ax
    if not isinstance(fig, Figure):
        raise TypeError(f"expected a matplotlib Figure or Axes, got {type(fig_or_ax).__name__}")
    unknown = [f for f in formats if f not in FIGURE_FORMATS]
    if unknown or not formats:
        raise ValueError(f"figure formats {list(formats)!r}: choose from {', '.join(FIGURE_FORMATS)}")
    base = Path(path_without_suffix)
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_name(f"{base.name}.{f}") for f in formats]
    for path, f in zip(paths, formats, strict=True):
        fig.savefig(path, dpi=max(dpi, 150) if f == "png" else "figure")
    return paths


# ---- summary tables -----------------------------------------------------------------------


def summarize(df: pd.DataFrame, sparsities: Sequence[float] | None = None, metric: str = "test_acc",
              tolerance: float = 0.005) -> pd.DataFrame:
    """Per (dataset, model, label, target sparsity): ``metric`` mean, std, n over seeds vs dense.

    Columns: dataset, model, label, target_sparsity, sparsity (mean achieved), mean, std
    (ddof=1), n, dense_mean, dense_std, dense_n, drop (dense_mean − mean). Fractions, as
    stored. With ``sparsities``, each curve contributes the point whose mean achieved
    sparsity is nearest to each requested value, if within ``tolerance`` (0.5 pp); the
    requested value is in column ``requested``. Curves without a match are left out.
    """
    _check_metric(df, metric)
    agg = aggregate(df, metric, "sparsity").rename(columns={"x": "sparsity"}).drop(columns="x_std")
    dense = dense_reference(df, metric).rename(columns={"mean": "dense_mean", "std": "dense_std", "n": "dense_n"})
    if sparsities is not None:
        picked = []
        for _, pts in agg.groupby(["dataset", "model", "label"], sort=True):
            for s in sparsities:
                dist = (pts["sparsity"] - float(s)).abs()
                if len(dist) and dist.min() <= tolerance + 1e-12:
                    picked.append(pts.loc[[dist.idxmin()]].assign(requested=float(s)))
        cols = [*agg.columns, "requested"]
        agg = pd.concat(picked, ignore_index=True) if picked else pd.DataFrame(columns=cols)
    out = agg.merge(dense, on=["dataset", "model"], how="left")
    out["drop"] = out["dense_mean"].astype("float64") - out["mean"].astype("float64")
    first = ["dataset", "model", "label"] + (["requested"] if sparsities is not None else [])
    rest = ["target_sparsity", "sparsity", "mean", "std", "n", "dense_mean", "dense_std", "dense_n", "drop"]
    out = out[first + rest].astype({"n": "int64"})
    return out.reset_index(drop=True)


def format_summary(summary: pd.DataFrame, metric_name: str = "Test acc.") -> pd.DataFrame:
    """``summarize`` output as display strings: %, "mean ± std", drop in pp.

    The dataset/model columns are kept only when they vary.
    """
    def pm(mean: float, std: float) -> str:
        if not math.isfinite(mean):
            return "–"
        return f"{100 * mean:.2f} ± {100 * std:.2f}" if math.isfinite(std) else f"{100 * mean:.2f}"

    rows = []
    for _, r in summary.iterrows():
        row = {"dataset": r["dataset"], "model": r["model"], "label": r["label"]}
        if "requested" in summary.columns:
            row["requested (%)"] = f"{100 * r['requested']:.1f}"
        row |= {
            "target (%)": f"{100 * r['target_sparsity']:.1f}",
            "sparsity (%)": f"{100 * r['sparsity']:.2f}",
            f"{metric_name} (%)": pm(float(r["mean"]), float(r["std"])),
            "n": str(int(r["n"])),
            "dense (%)": pm(float(r["dense_mean"]), float(r["dense_std"])),
            "drop (pp)": "–" if not math.isfinite(float(r["drop"])) else f"{100 * r['drop']:+.2f}",
        }
        rows.append(row)
    out = pd.DataFrame(rows)
    if not len(out):
        return out
    for col in ("dataset", "model"):
        if out[col].nunique() <= 1:
            out = out.drop(columns=col)
    return out


def _cell(value: Any, floatfmt: str) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return format(float(value), floatfmt)
    return str(value)


_NUMBER = r"^[+\-−]?\d[\d.,eE+\-]*( ± \d[\d.eE+\-]*)?$|^–?$"


def _is_numeric(s: pd.Series) -> bool:
    """Numbers, or text that only holds formatted numbers ("91.50 ± 1.00"): right-aligned."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return False
    if pd.api.types.is_numeric_dtype(s.dtype):
        return True
    text = s.dropna().astype(str)
    return bool(len(text)) and bool(text.str.match(_NUMBER).all())


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g", index: bool = False) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned); no ``tabulate`` needed."""
    d = df.reset_index() if index else df
    header = [str(c) for c in d.columns]
    cells = [[_cell(v, floatfmt).replace("|", r"\|") for v in row] for row in d.itertuples(index=False)]
    widths = [max([len(h), 3] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    right = [_is_numeric(d[c]) for c in d.columns]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)) + " |"

    sep = "| " + " | ".join(("-" * (w - 1) + ":") if r else "-" * w for w, r in zip(widths, right)) + " |"
    return "\n".join([line(header), sep, *(line(r) for r in cells)]) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return out.replace("±", r"$\pm$").replace("–", "--").replace("→", r"$\rightarrow$")


def to_latex(df: pd.DataFrame, floatfmt: str = ".4g", index: bool = False, caption: str | None = None) -> str:
    """A booktabs ``tabular`` (numbers right-aligned, text escaped, ± as ``$\\pm$``)."""
    d = df.reset_index() if index else df
    align = "".join("r" if _is_numeric(d[c]) else "l" for c in d.columns)
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_latex_escape(str(c)) for c in d.columns) + r" \\", r"\midrule"]
    for row in d.itertuples(index=False):
        lines.append(" & ".join(_latex_escape(_cell(v, floatfmt)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    body = "\n".join(lines) + "\n"
    if caption:
        body = (r"\begin{table}[t]" + "\n" + r"\centering" + "\n" + body
                + rf"\caption{{{_latex_escape(caption)}}}" + "\n" + r"\end{table}" + "\n")
    return body
