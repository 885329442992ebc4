"""``prunebench-report``: collect every run under a results root into one table and figures.

    prunebench-report [ROOT] [--filter col=val[,val]]... [--out DIR] [--pdf] [--jobs N] [--quiet]

Writes into ``DIR`` (default ``ROOT/report``): ``results.parquet`` and ``results.csv``
(one row per run and level), ``summary.md`` and ``summary.tex`` (mean ± std over seeds
per curve and target sparsity, drop vs dense, then 95% t intervals and the paired difference
to dense by seed), ``claims.md`` and ``claims.csv`` (a verdict per published claim declared
by the experiments in the table; see ``prunebench.claims``), ``disk.csv``/``disk.md`` (each
run's bytes on disk), and every figure that applies as PNG (and PDF with ``--pdf``), drawn
once each by ``--jobs`` worker processes (default: the usable cores). A figure that does
not apply is skipped with the reason, never drawn empty.
Optuna studies are read from ``ROOT/studies/*.db`` (SQLite); per-layer sensitivity
tables from ``ROOT/runs/<id>/sensitivity.csv`` (``experiments/layer_sensitivity.py``).

Every run's rows.csv is validated as it is read: a run whose file is damaged (cut off,
text in a numeric column, a level repeated or missing, no status) is not used; the report
names it with the reason (on stderr and in summary.md) and is drawn from the other runs.

The report records a hash of its inputs (the collected table, the options, the per-layer,
sensitivity and study files it reads, its own code) in ``DIR/report.json``: a relaunch
with nothing changed writes nothing and says "report up to date"; after a change only the
figures whose data changed are redrawn (``--force`` redraws everything). It never imports
torch.

Exit codes: 0 report written or up to date (damaged runs, if any, are listed on stderr);
1 nothing to report (no root, no runs, no matching rows, or every run damaged); 2 bad
input (an unknown filter column, a root or ``--out`` that is a file or not writable).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prunebench.errors import ConfigError
from prunebench.results.store import (
    atomic_write_bytes,
    atomic_write_text,
    check_writable_root,
    collect,
    level_dir,
    lost_message,
    runs_dir,
)

Filters = Sequence[str] | Mapping[str, Any] | None
MANIFEST = "report.json"
#: Written by experiments/layer_sensitivity.py (prunebench.analysis.SENSITIVITY_FILE; not
#: imported from there: analysis imports torch, the report must not).
SENSITIVITY_FILE = "sensitivity.csv"


@dataclass
class ReportResult:
    """What ``build_report`` did: files written, figures drawn, figures skipped (name → reason)."""

    root: Path
    out: Path
    rows: int = 0
    runs: int = 0
    written: list[Path] = field(default_factory=list)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    message: str = ""
    invalid: dict[str, str] = field(default_factory=dict)  # run folder -> why its files were not used
    lost: dict[str, str] = field(default_factory=dict)  # finished run folder -> what of its results is gone
    up_to_date: bool = False  # nothing changed since the last report: nothing was written
    reused: list[str] = field(default_factory=list)  # figures kept from the last report (same data)
    disk_bytes: int = 0  # the runs' folders and the dense cache on disk (disk.csv per run)

    @property
    def ok(self) -> bool:
        """True when there was something to report."""
        return self.rows > 0


def _finite(df: pd.DataFrame, col: str, pruned_only: bool = True) -> bool:
    if col not in df.columns:
        return False
    d = df[df["level"].astype("Int64").fillna(-1) >= 1] if pruned_only else df
    if "status" in d.columns:
        d = d[d["status"].isna() | (d["status"] == "ok")]
    vals = pd.to_numeric(d[col], errors="coerce").astype("float64")
    return bool(np.isfinite(vals).any())


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "study"


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, pd.DataFrame):
            part = part.to_csv(index=False)
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _code_version() -> str:
    """The report's own code: a change to how figures are drawn redraws them (read, not imported)."""
    here = Path(__file__)
    return _digest(here.read_bytes(), here.with_name("plots.py").read_bytes())


class _Writer:
    """Books the figures of a report into ``out``; :meth:`flush` draws them (in parallel processes).

    ``key`` identifies the data a figure is drawn from; a figure whose key equals the one
    in the last report's manifest, and whose files are still there, is kept, not redrawn.
    """

    def __init__(self, result: ReportResult, suffix: str = "", key: str = "",
                 previous: Mapping[str, Any] | None = None, formats: Sequence[str] = ("png",),
                 pending: list[tuple[str, Callable[[], Any], str]] | None = None) -> None:
        self.result = result
        self.suffix = suffix  # appended to every figure name (per data set/model sets)
        self.key = key
        self.previous: Mapping[str, Any] = previous if previous is not None else {}
        self.formats = tuple(formats)
        self.keys: dict[str, str] = {}
        self.pending = pending if pending is not None else []  # (name, draw, key): drawn by flush

    def sub(self, suffix: str, key: str) -> _Writer:
        w = _Writer(self.result, suffix, key, self.previous, self.formats, self.pending)
        w.keys = self.keys  # one book of keys for the whole report
        return w

    def figure(self, name: str, draw: Callable[[], Any], reason_if_skipped: str | None = None,
               key: str | None = None) -> None:
        name += self.suffix
        if reason_if_skipped:
            self.result.skipped[name] = reason_if_skipped
            return
        key = _digest(name, key if key is not None else self.key, *self.formats)
        before = self.previous.get(name) or {}
        files = [self.result.out / f for f in before.get("files", [])]
        if key and before.get("key") == key and files and all(f.exists() for f in files):
            self.result.figures[name] = files
            self.result.reused.append(name)
            self.keys[name] = key
            return
        self.result.figures[name] = []  # its place in the listing; filled by flush
        self.pending.append((name, draw, key))

    def start(self, processes: int | None = None) -> None:
        """Start drawing the booked figures (in worker processes, while the caller writes tables)."""
        jobs = [(self.result.out / name, draw) for name, draw, _ in self.pending]
        self._drawing = FigureDrawing(jobs, self.formats, processes)

    def flush(self, processes: int | None = None) -> None:
        """Wait for (or draw) every booked figure and book the files or the reason it failed."""
        drawing = getattr(self, "_drawing", None) or FigureDrawing(
            [(self.result.out / name, draw) for name, draw, _ in self.pending], self.formats, processes)
        for (name, _, key), (paths, error) in zip(self.pending, drawing.results(), strict=True):
            if error is not None:  # one broken figure must not cost the rest of the report
                del self.result.figures[name]
                self.result.skipped[name] = f"failed to draw ({error})"
                continue
            self.result.figures[name] = paths
            self.result.written.extend(paths)
            self.keys[name] = key
        self.pending.clear()
        self._drawing = None


#: The figures being drawn, read by forked workers (the drawing closures do not pickle).
_JOBS: list[tuple[Path, Callable[[], Any]]] = []
_FORMATS: tuple[str, ...] = ("png",)


def _draw_job(i: int) -> tuple[list[Path] | None, str | None]:
    from prunebench import plots

    path, draw = _JOBS[i]
    try:
        return plots.save_figure(draw(), path, formats=_FORMATS), None
    except Exception as exc:  # noqa: BLE001 - reported per figure
        return None, f"{type(exc).__name__}: {exc}"


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


class FigureDrawing:
    """Figures being drawn and saved, each ``(path without suffix, draw)``; :meth:`results` waits.

    Figures are independent, so they go to ``processes`` (default: the usable cores) forked
    workers, started at once so the caller can write its tables meanwhile. Forked, because
    the drawing closures cannot be pickled; and only in a process without torch (the report
    never imports it; a training process that calls the report has torch's threads, which a
    fork does not survive safely): there the figures are drawn in-process by :meth:`results`.
    """

    def __init__(self, jobs: Sequence[tuple[Path, Callable[[], Any]]], formats: Sequence[str] = ("png",),
                 processes: int | None = None) -> None:
        import multiprocessing as mp

        self.jobs, self.formats = list(jobs), tuple(formats)
        n = min(len(self.jobs), processes if processes is not None else usable_cores())
        self.pool: Any = None
        self.pending: Any = None
        if n < 2 or "torch" in sys.modules or "fork" not in mp.get_all_start_methods():
            return
        global _JOBS, _FORMATS
        _JOBS, _FORMATS = self.jobs, self.formats
        try:
            self.pool = mp.get_context("fork").Pool(n)  # the workers get _JOBS as it is now
        finally:
            _JOBS = []
        self.pending = self.pool.map_async(_draw_job, range(len(self.jobs)), chunksize=1)

    def results(self) -> list[tuple[list[Path] | None, str | None]]:
        """Per job: the files written, or the error that stopped it."""
        global _JOBS, _FORMATS
        if self.pool is None:
            _JOBS, _FORMATS = self.jobs, self.formats
            try:
                return [_draw_job(i) for i in range(len(self.jobs))]
            finally:
                _JOBS = []
        try:
            return self.pending.get()
        finally:
            self.pool.close()
            self.pool.join()


def draw_figures(jobs: Sequence[tuple[Path, Callable[[], Any]]], formats: Sequence[str] = ("png",),
                 processes: int | None = None) -> list[tuple[list[Path] | None, str | None]]:
    """Draw and save each ``(path without suffix, draw)``: per job its paths or the error (:class:`FigureDrawing`)."""
    return FigureDrawing(jobs, formats, processes).results()


def _table_files(df: pd.DataFrame, out: Path, result: ReportResult) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(out / "results.parquet", buf.getvalue())
    atomic_write_text(out / "results.csv", df.to_csv(index=False))
    result.written += [out / "results.parquet", out / "results.csv"]


def _summary_files(df: pd.DataFrame, root: Path, out: Path, filters: Filters, result: ReportResult) -> None:
    from prunebench import plots

    summary = plots.summarize(df)
    table = plots.format_summary(summary)
    dense = plots.dense_reference(df)
    failed = df[df["status"].notna() & (df["status"] != "ok")] if "status" in df.columns else df.iloc[:0]
    lines = [f"# prunebench summary: {root}", ""]
    if filters:
        lines += [f"Filters: {filters}", ""]
    lines += [f"{result.runs} run(s), {result.rows} row(s). Test accuracy, mean ± std over seeds (ddof=1); "
              "`drop` is dense − pruned in percentage points; sparsity is the mean achieved fraction of "
              "prunable weights removed.", ""]
    for _, r in dense.iterrows():
        std = "" if pd.isna(r["std"]) else f" ± {100 * r['std']:.2f}"
        lines.append(f"Dense {r['dataset']}/{r['model']}: {100 * r['mean']:.2f}{std} % (n={r['n']} seeds)")
    if len(dense):
        lines.append("")
    lines.append(plots.to_markdown(table) if len(table) else "No pruned levels yet.\n")
    intervals = interval_summary(df)
    if len(intervals):
        lines += ["", "## 95% intervals and paired differences to dense", "",
                  "Test accuracy: mean [95% t interval] over seeds; `Δ dense` is pruned − dense, paired by "
                  "seed (each run against its own level 0), with its interval; n = seeds. One seed: no interval.",
                  "", plots.to_markdown(format_intervals(intervals))]
    best = best_levels(df)
    if len(best):
        lines += ["", "## Best level under a budget", "",
                  "Per run: the smallest model whose validation accuracy is within 1 point of its own dense "
                  "level (chosen on validation only; test shown). Export it with "
                  "`prunebench-export ROOT --run RUN --level K`.", "", plots.to_markdown(best)]
    if len(failed):
        lines += ["", f"## Failed or diverged ({failed['run_id'].nunique()} run(s))", ""]
        cols = [c for c in ("run_id", "label", "level", "status", "error") if c in failed.columns]
        lines.append(plots.to_markdown(failed[cols].astype("string").fillna("")))
    if result.lost:
        lines += ["", f"## Not used: finished runs whose results are lost ({len(result.lost)} run(s))", "",
                  "Marked finished (DONE), but their rows or config are gone; relaunch them to redo them.", ""]
        lines.append(plots.to_markdown(pd.DataFrame(
            [{"run": Path(k).name, "reason": v} for k, v in sorted(result.lost.items())])))
    if result.invalid:
        lines += ["", f"## Not used: damaged results files ({len(result.invalid)} run(s))", ""]
        lines.append(plots.to_markdown(pd.DataFrame(
            [{"run": Path(k).name, "reason": v} for k, v in sorted(result.invalid.items())])))
    atomic_write_text(out / "summary.md", "\n".join(lines))
    tex = plots.to_latex(table, caption="Test accuracy (mean ± std over seeds) at each target sparsity.") \
        if len(table) else "% no pruned levels\n"
    atomic_write_text(out / "summary.tex", tex)
    result.written += [out / "summary.md", out / "summary.tex"]


def best_levels(df: pd.DataFrame, max_drop: float = 0.01) -> pd.DataFrame:
    """One row per run: the level :func:`prunebench.results.select.best_level` picks within ``max_drop``."""
    from prunebench.errors import ConfigError
    from prunebench.results.select import best_level

    out = []
    for run_id, rows in df.groupby("run_id", sort=True):
        if not (rows["level"] > 0).any():
            continue
        try:
            r = best_level(rows, max_drop=max_drop)
        except ConfigError:
            continue
        out.append({"label": r.get("label"), "seed": r.get("seed"), "run": run_id, "level": int(r["level"]),
                    "sparsity": f"{100 * float(r['sparsity']):.1f}%", "val_acc": f"{100 * float(r['val_acc']):.2f}",
                    "test_acc": f"{100 * float(r['test_acc']):.2f}", "params_nonzero": r.get("params_nonzero")})
    return pd.DataFrame(out)


def interval_summary(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Per (dataset, model, label, target sparsity): mean, 95% t interval and n over seeds, and
    the paired difference to dense (``metric`` at the level minus level 0 of the same run).

    Columns: dataset, model, label, target_sparsity, sparsity, mean, ci_low, ci_high, n,
    delta, delta_low, delta_high, delta_n. Fractions, as stored.
    """
    from prunebench import plots, stats

    d = plots._prepare(df, metric)
    dense = d[d["level"] == 0][["run_id", metric]].groupby("run_id")[metric].mean()
    d = d[d["level"] >= 1].copy()
    if not len(d):
        return pd.DataFrame()
    d["_dense"] = d["run_id"].map(dense).astype("float64")
    d["_delta"] = d[metric] - d["_dense"]
    rows = []
    for (ds, model, label, target), g in d.groupby(["dataset", "model", "label", "_target"], sort=True):
        per_seed = g.groupby("seed")[[metric, "_delta", "sparsity"]].mean()
        acc = stats.t_interval(per_seed[metric])
        delta = stats.t_interval(per_seed["_delta"])
        rows.append({"dataset": ds, "model": model, "label": label, "target_sparsity": target,
                     "sparsity": float(pd.to_numeric(per_seed["sparsity"], errors="coerce").mean()),
                     "mean": acc.mean, "ci_low": acc.low, "ci_high": acc.high, "n": acc.n,
                     "delta": delta.mean, "delta_low": delta.low, "delta_high": delta.high, "delta_n": delta.n})
    return pd.DataFrame(rows)


def format_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """``interval_summary`` as display strings (%, pp); dataset/model columns only when they vary."""
    def ci(mean: float, low: float, high: float, signed: bool = False) -> str:
        if not np.isfinite(mean):
            return "–"
        f = "{:+.2f}" if signed else "{:.2f}"
        text = f.format(100 * mean)
        return text + (f" [{f.format(100 * low)}, {f.format(100 * high)}]" if np.isfinite(low) else "")

    out = pd.DataFrame({
        "dataset": table["dataset"], "model": table["model"], "label": table["label"],
        "target (%)": [f"{100 * t:.1f}" for t in table["target_sparsity"]],
        "sparsity (%)": [f"{100 * s:.2f}" for s in table["sparsity"]],
        "test acc. (%) [95% CI]": [ci(m, lo, hi) for m, lo, hi in zip(table["mean"], table["ci_low"], table["ci_high"])],
        "n": table["n"].astype(int).astype(str),
        "Δ dense (pp) [95% CI], paired": [ci(m, lo, hi, True) for m, lo, hi
                                          in zip(table["delta"], table["delta_low"], table["delta_high"])],
    })
    for col in ("dataset", "model"):
        if out[col].nunique() <= 1:
            out = out.drop(columns=col)
    return out


from prunebench.formats import check_formats  # noqa: E402,F401  (re-exported: prunebench.report.check_formats)
from prunebench.artifact import write_report_files  # noqa: E402  (exports table and deploy figure)


def _claims_files(df: pd.DataFrame, root: Path, out: Path, result: ReportResult) -> None:
    """claims.md and claims.csv: a verdict for every claim of every experiment in the table.

    Written only when some experiment in the table declares claims. An unreadable claim
    spec is reported in claims.md (and as a skipped item), never fatal to the report.
    """
    from prunebench import claims

    try:
        verdicts, sources = claims.evaluate_root(df, root)
    except ConfigError as exc:
        result.skipped["claims"] = f"claims not evaluated: {exc}"
        atomic_write_text(out / "claims.md", f"# Claims\n\nNot evaluated: {exc}\n")
        result.written.append(out / "claims.md")
        return
    if not verdicts:
        result.skipped["claims"] = "no experiment in the table declares claims"
        return
    atomic_write_text(out / "claims.md", claims.render_markdown(verdicts, sources))
    atomic_write_text(out / "claims.csv", claims.verdict_table(verdicts).to_csv(index=False))
    result.written += [out / "claims.md", out / "claims.csv"]


def _curve_figures(df: pd.DataFrame, w: _Writer) -> None:
    from prunebench import plots

    if not w.suffix:
        groups = df[["dataset", "model"]].dropna().drop_duplicates()
        if len(groups) > 1:  # one readable set per data set and model, beside the overview
            for _, g in groups.sort_values(["dataset", "model"]).iterrows():
                sub = df[(df["dataset"] == g["dataset"]) & (df["model"] == g["model"])]
                suffix = f"__{_safe_name(str(g['dataset']))}_{_safe_name(str(g['model']))}"
                _curve_figures(sub, w.sub(suffix, _digest(sub)))

    has_pruned = _finite(df, "test_acc")
    no_pruned = None if has_pruned else "no pruned levels (level >= 1) with test_acc"
    w.figure("accuracy_vs_sparsity", lambda: plots.accuracy_vs_sparsity(df), no_pruned)
    w.figure("accuracy_vs_remaining", lambda: plots.accuracy_vs_remaining(df), no_pruned)
    w.figure("accuracy_vs_compression", lambda: plots.accuracy_vs_compression(df),
             no_pruned or (None if _finite(df, "compression") else "no compression in the table"))
    w.figure("speedup_theoretical", lambda: plots.accuracy_vs_speedup(df, kind="theoretical"),
             no_pruned or (None if _finite(df, "speedup_theoretical") else "no theoretical speedup (FLOPs) in the table"))
    w.figure("speedup_measured", lambda: plots.accuracy_vs_speedup(df, kind="measured"),
             no_pruned or (None if _finite(df, "speedup_measured") else "no measured latency in the table"))
    w.figure("accuracy_vs_params", lambda: plots.accuracy_vs_cost(df, x="params"),
             no_pruned or (None if _finite(df, "params_nonzero") else "no nonzero parameter counts in the table"))
    w.figure("accuracy_vs_flops", lambda: plots.accuracy_vs_cost(df, x="flops"),
             no_pruned or (None if _finite(df, "flops") else "no FLOPs in the table"))
    w.figure("accuracy_vs_latency", lambda: plots.accuracy_vs_cost(df, x="latency_ms"),
             no_pruned or (None if _finite(df, "latency_ms") else "no measured latency in the table"))
    if _finite(df, "speedup_measured_sparse"):  # only runs that timed sparse kernels: no skip note otherwise
        w.figure("sparse_speedup", lambda: plots.sparse_speedup_vs_sparsity(df))
    if "task" in df and (df["task"] == "language_modeling").any():  # language models: perplexity, log axis
        lm = df[df["task"] == "language_modeling"]
        w.figure("perplexity_vs_sparsity", lambda: plots.perplexity_vs_sparsity(lm))
    has_dense = _finite(df[df["level"].astype("Int64").fillna(-1) == 0], "test_acc", pruned_only=False)
    w.figure("pruning_drop", lambda: plots.pruning_drop(df),
             no_pruned or (None if _finite(df, "acc_pruned") else "no acc_pruned in the table")
             or (None if has_dense else "no dense (level 0) rows to compare with"))


def _channel_layer_sparsity(layers: pd.DataFrame, run_path: Path) -> pd.DataFrame | None:
    """A channel run's ``layers.csv`` (layer, channels) as per-layer sparsity: the fraction of
    each layer's output channels removed, against the dense widths in ``levels/0/state.pt``.
    Layer names get the ``.weight`` suffix of the unstructured tables so the bars line up."""
    from prunebench.errors import CorruptFileError
    from prunebench.results.shapes import tensor_shapes

    try:  # shapes only, read without torch
        dense = tensor_shapes(level_dir(run_path, 0) / "state.pt")
    except (FileNotFoundError, CorruptFileError):
        return None
    rows = []
    for name, channels in zip(layers["layer"].astype(str), pd.to_numeric(layers["channels"])):
        shape = dense.get(f"{name}.weight")
        if shape is None or len(shape) < 2:
            continue
        rows.append({"layer": f"{name}.weight", "channels": int(channels), "channels_dense": int(shape[0]),
                     "sparsity": 1.0 - float(channels) / int(shape[0])})
    return pd.DataFrame(rows) if rows else None


def _layer_figure(df: pd.DataFrame, root: Path, w: _Writer) -> None:
    """Per-layer sparsity of the last level of the first run of each label, side by side.

    Channel runs show the fraction of each layer's output channels removed.
    """
    from prunebench import plots

    frames = []
    d = df.assign(label=plots.curve_labels(df))
    d = d[(d["level"].astype("Int64").fillna(-1) >= 1) & (d["status"].isna() | (d["status"] == "ok"))]
    for label, g in d.groupby("label", sort=True):
        run_id = str(sorted(g["run_id"].astype(str))[0])
        level = int(g[g["run_id"] == run_id]["level"].max())
        path = level_dir(runs_dir(root) / run_id, level) / "layers.csv"
        if path.exists():
            try:
                layers = pd.read_csv(path)
            except (pd.errors.ParserError, pd.errors.EmptyDataError):
                continue
            if "sparsity" not in layers.columns and {"layer", "channels"} <= set(layers.columns):
                layers = _channel_layer_sparsity(layers, runs_dir(root) / run_id)
            if layers is not None and "sparsity" in layers.columns:
                frames.append(layers.assign(label=str(label)))
    reason = None if frames else "no levels/<k>/layers.csv for a pruned level (k >= 1)"
    layers = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    w.figure("layer_sparsity", lambda: plots.layer_sparsity(layers, by="label"), reason, key=_digest(layers))


def _sensitivity_figures(df: pd.DataFrame, root: Path, w: _Writer, filters: Filters) -> None:
    """Layer sensitivity (``experiments/layer_sensitivity.py``) of every run folder holding a sensitivity.csv.

    One figure, ``layer_sensitivity``, when there is one such file; else one per run
    (``layer_sensitivity_<run_id>``). With filters, only runs with rows in the table count.
    """
    from prunebench import plots

    files = sorted(runs_dir(root).glob(f"*/{SENSITIVITY_FILE}"))
    if filters:
        keep = set(df["run_id"].astype(str))
        files = [f for f in files if f.parent.name in keep]
    if not files:
        w.result.skipped["layer_sensitivity"] = (f"no runs/<id>/{SENSITIVITY_FILE} "
                                                 "(experiments/layer_sensitivity.py writes one)")
        return
    for path in files:
        name = "layer_sensitivity" if len(files) == 1 else f"layer_sensitivity_{path.parent.name}"
        try:
            sens = pd.read_csv(path, dtype={"layer": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            w.result.skipped[name] = f"cannot read {path} ({type(exc).__name__})"
            continue
        w.figure(name, lambda s=sens: plots.layer_sensitivity(s), key=_digest(sens))


def _study_figures(root: Path, w: _Writer) -> None:
    """Pareto front (multi-objective) and search history of every study in ROOT/studies/*.db."""
    files = sorted((root / "studies").glob("*.db"))
    if not files:
        reason = f"no Optuna studies ({root / 'studies'}/*.db)"
        w.result.skipped["pareto_front"] = reason
        w.result.skipped["search_history"] = reason
        return
    import optuna

    from prunebench import plots

    summaries: list[dict[str, Any]] = []
    for path in files:
        storage = f"sqlite:///{path.resolve()}"
        try:
            names = optuna.study.get_all_study_names(storage=storage)
        except Exception as exc:  # not an Optuna database, or locked beyond the timeout
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            w.result.skipped[f"study {path.name}"] = f"cannot read ({type(exc).__name__}: {first})"
            continue
        for name in names:
            study = optuna.load_study(study_name=name, storage=storage)
            trials = study.trials_dataframe()
            tag = _safe_name(name if len(files) == 1 else f"{path.stem}_{name}")
            directions = [d.name.lower() for d in study.directions]
            key = _digest(trials, directions, study.metric_names)
            objs = plots.objective_columns(trials)
            n_complete = sum(t.state.name == "COMPLETE" for t in study.trials)
            if not n_complete or not objs:
                reason = f"study {name!r} has no complete trials"
                w.figure(f"pareto_front_{tag}", lambda: None, reason)
                w.figure(f"search_history_{tag}", lambda: None, reason)
                continue
            labels = study.metric_names or [plots._short(c) for c in objs]
            if len(directions) >= 2:
                w.figure(f"pareto_front_{tag}", lambda t=trials, o=objs, d=directions, m=labels: plots.pareto_front(
                    t, x=o[0], y=o[1], directions=d[:2],
                    xlabel=f"{m[0]} ({'→' if d[0] == 'maximize' else '←'} better)",
                    ylabel=f"{m[1]} ({'↑' if d[1] == 'maximize' else '↓'} better)"), key=key)
            else:
                w.result.skipped[f"pareto_front_{tag}"] = f"study {name!r} has a single objective"

            def history(t: pd.DataFrame = trials, o: list[str] = objs, d: list[str] = directions,
                        m: list[str] = labels) -> Any:
                # One panel per objective, stacked, on one pyplot-free figure.
                from matplotlib.figure import Figure

                fig = Figure(figsize=(3.4, 2.0 * len(o)), layout="constrained")
                axes = fig.subplots(len(o), 1, squeeze=False)[:, 0]
                for ax, col, direction, metric in zip(axes, o, d, m):
                    plots.search_history(t, ax=ax, objective=col, direction=direction, ylabel=metric)
                return axes[0]

            w.figure(f"search_history_{tag}", history, key=key)
            _hypervolume(study, tag, w, summaries)
    _studies_table(summaries, w)


def _hypervolume(study: Any, tag: str, w: _Writer, summaries: list[dict[str, Any]]) -> None:
    """Issue 15: the study's hypervolume vs trials (multi-objective) and its row of studies.csv."""
    from prunebench import plots
    from prunebench.sweep.constraints import study_summary

    row, history = study_summary(study)
    summaries.append(row)
    if history is not None:
        w.figure(f"hypervolume_{tag}", lambda h=history: plots.hypervolume_history(h))
    else:
        w.result.skipped[f"hypervolume_{tag}"] = f"study {study.study_name!r} has a single objective or no complete trial"


def _studies_table(summaries: list[dict[str, Any]], w: _Writer) -> None:
    """studies.csv / studies.md: one row per study (trials, feasible, hypervolume, best feasible)."""
    if not summaries:
        return
    table = pd.DataFrame(summaries)
    out = w.result.out
    atomic_write_text(out / "studies.csv", table.to_csv(index=False))
    from prunebench import plots

    atomic_write_text(out / "studies.md", plots.to_markdown(table))
    w.result.written.extend([out / "studies.csv", out / "studies.md"])


def _inputs_key(root: Path, out: Path, df: pd.DataFrame, filters: Filters, invalid: Mapping[str, str],
                formats: Sequence[str] = ("png",)) -> str:
    """A hash of everything the report reads: a relaunch with the same key has nothing to do."""
    files = []
    for pattern in ("runs/*/levels/*/layers.csv", "runs/*/levels/0/state.pt", f"runs/*/{SENSITIVITY_FILE}",
                    "studies/*.db", "studies/*.db-wal", "export/exports.csv"):
        for p in sorted(root.glob(pattern)):
            st = p.stat()
            files.append(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}")
    opts = json.dumps({"filters": filters if isinstance(filters, Mapping) else list(filters or []),
                       "out": str(out.resolve()), "invalid": sorted(invalid.items()), "formats": list(formats)},
                      sort_keys=True, default=str)
    return _digest(_code_version(), opts, df, *files)


def _read_manifest(out: Path) -> dict[str, Any]:
    try:
        data = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def build_report(root: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                 filters: Filters = None, force: bool = False, formats: Sequence[str] = ("png",),
                 jobs: int | None = None) -> ReportResult:
    """Collect every run under ``root`` (validated, ``prunebench.results.collect``) and write
    table, summary and figures.

    Returns what was written, reused and skipped (with reasons) and the runs whose files
    failed validation (``invalid``: not used). With no rows (no runs, or nothing matches
    ``filters``) it writes nothing and sets ``message``. When nothing changed since the
    last report in ``out`` it writes nothing and sets ``up_to_date`` (``force`` redraws).
    Figures are written in ``formats`` (PNG by default; add ``"pdf"`` for PDF too), drawn by
    ``jobs`` processes (default: the usable cores).
    Raises ``ConfigError`` for a missing root, an unknown filter column, or an output
    folder that is a file or not writable.
    """
    root = Path(root)
    out_dir = Path(out) if out is not None else root / "report"
    result = ReportResult(root=root, out=out_dir)
    found = collect(root, filters=filters)
    df = found.table
    result.invalid = {str(k): v for k, v in found.invalid.items()}
    result.lost = {str(k): v for k, v in found.lost.items()}
    result.rows, result.runs = len(df), found.runs
    if not len(df):
        where = runs_dir(root)
        result.message = (f"no rows match the filters {filters} under {where}" if filters
                          else f"no runs under {where} (nothing to report)")
        if result.invalid:
            result.message += f"; {len(result.invalid)} run(s) with damaged results files were not used"
        if result.lost:
            result.message += f"; {len(result.lost)} finished run(s) with lost results were not used"
        return result
    check_writable_root(out_dir, key="--out" if out is not None else "report folder")
    formats = check_formats(formats)
    key = _inputs_key(root, out_dir, df, filters, {**result.invalid, **{k: "lost: " + v for k, v in result.lost.items()}},
                      formats)
    previous = {} if force else _read_manifest(out_dir)
    before = previous.get("figures", {})
    if previous.get("inputs") == key and all((out_dir / f).exists() for f in previous.get("files", [])):
        result.up_to_date = True
        result.figures = {n: [out_dir / f for f in v["files"]] for n, v in before.items()}
        result.skipped = dict(previous.get("skipped", {}))
        result.message = f"report up to date: {result.runs} run(s), {result.rows} row(s) from {root} -> {out_dir}"
        if result.lost:
            result.message += f"; {len(result.lost)} finished run(s) with lost results not used"
        return result
    out_dir.mkdir(parents=True, exist_ok=True)
    # Figures first: they are drawn in worker processes while this one writes the tables.
    w = _Writer(result, key=_digest(df), previous=before, formats=formats)
    _curve_figures(df, w)
    _layer_figure(df, root, w)
    _sensitivity_figures(df, root, w, filters)
    _study_figures(root, w)
    w.start(jobs)
    _table_files(df, out_dir, result)
    _summary_files(df, root, out_dir, filters, result)
    _claims_files(df, root, out_dir, result)
    result.written += write_report_files(root, out_dir)  # prunebench-export's measured artifacts (export/exports.csv)
    _disk_files(df, root, out_dir, result)
    w.flush()
    files = [str(p.relative_to(out_dir)) for p in result.written + [q for n in result.reused
                                                                     for q in result.figures[n]]]
    manifest = {"inputs": key, "files": sorted(set(files)), "skipped": result.skipped,
                "figures": {n: {"key": w.keys.get(n, ""), "files": [str(p.relative_to(out_dir)) for p in paths]}
                            for n, paths in result.figures.items()}}
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    result.message = f"{result.runs} run(s), {result.rows} row(s) from {root} -> {out_dir}"
    if result.lost:
        result.message += f"; {len(result.lost)} finished run(s) with lost results not used"
    return result


def disk_table(root: Path, run_ids: Sequence[str]) -> pd.DataFrame:
    """Bytes each run's folder occupies (hard links counted once; level 0 linked to the shared
    dense cache counts for the cache, listed as run ``cache/dense``)."""
    from prunebench.results.store import disk_bytes

    seen: set[tuple[int, int]] = set()
    rows = []
    cache = Path(root) / "cache" / "dense"
    if cache.is_dir():
        rows.append({"run_id": "cache/dense", "levels": 0, "bytes": disk_bytes(cache, seen)})
    for rid in run_ids:
        path = runs_dir(root) / rid
        levels = len([p for p in (path / "levels").iterdir() if p.is_dir()]) if (path / "levels").is_dir() else 0
        rows.append({"run_id": rid, "levels": levels, "bytes": disk_bytes(path, seen)})
    table = pd.DataFrame(rows, columns=["run_id", "levels", "bytes"])
    table["mb"] = (table["bytes"] / 1e6).round(3)
    return table


def _disk_files(df: pd.DataFrame, root: Path, out: Path, result: ReportResult) -> None:
    """disk.csv: each run's disk use (prunebench.results.levels stores only what changed)."""
    runs = df.drop_duplicates("run_id")[["run_id", "label"]] if "label" in df.columns else df[["run_id"]].drop_duplicates()
    table = disk_table(root, list(runs["run_id"].astype(str)))
    if "label" in runs.columns:
        table = table.merge(runs.astype({"run_id": str}), on="run_id", how="left")
    from prunebench import plots

    atomic_write_text(out / "disk.csv", table.to_csv(index=False))
    atomic_write_text(out / "disk.md", plots.to_markdown(table))
    result.written += [out / "disk.csv", out / "disk.md"]
    result.disk_bytes = int(table["bytes"].sum())


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="prunebench-report", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?", default="outputs", help="results root (default: outputs)")
    ap.add_argument("--filter", action="append", default=[], metavar="COL=VAL[,VAL]",
                    help="keep rows whose column equals one of the values (repeatable)")
    ap.add_argument("--out", default=None, help="output folder (default: ROOT/report)")
    ap.add_argument("--force", action="store_true", help="redraw every figure even if its data did not change")
    ap.add_argument("--pdf", action="store_true", help="write every figure as PDF too (default: PNG only)")
    ap.add_argument("--jobs", type=int, default=None, help="processes drawing figures (default: the usable cores)")
    ap.add_argument("--quiet", action="store_true", help="print errors only")
    return ap


def write_report(root: str, log: Any = None, formats: Sequence[str] = ("png",)) -> None:
    """Build the report under ``root`` and say where it went (the CLI's and the sweeps' last step)."""
    from prunebench.log import log as default_log

    say = log or default_log
    try:
        result = build_report(root, formats=formats)
    except OSError as exc:  # the runs are written; only the report could not be (a full disk)
        say(f"warning: the report was not written: {exc.strerror or type(exc).__name__}"
            f"{f' ({exc.filename})' if exc.filename else ''}; the results are safe: run prunebench-report {root} "
            f"once there is room")
        return
    for run, reason in sorted(result.invalid.items()):  # never silent
        say(f"warning: run {Path(run).name} not used in the report: {reason}")
    for run, reason in sorted(result.lost.items()):
        say(f"warning: {lost_message(Path(run), reason)}")
    say(f"report: {result.message or result.out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, 1 nothing to report, 2 bad input: a root
    that is missing or a file, an unknown filter column, an --out that cannot be written)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: the report never opens a window
    args = _parser().parse_args(argv)
    say: Callable[[str], None] = (lambda _m: None) if args.quiet else print
    root = Path(args.root)
    if args.jobs is not None and args.jobs < 1:
        print(f"error: --jobs={args.jobs} must be at least 1", file=sys.stderr)
        return 2
    if not root.exists():
        print(f"error: results root {str(root)!r} does not exist (nothing to report)", file=sys.stderr)
        return 2  # bad input, as a root that is a file
    try:
        result = build_report(root, args.out, args.filter or None, force=args.force,
                              formats=("png", "pdf") if args.pdf else ("png",), jobs=args.jobs)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a folder gone read-only: the results are untouched
        print(f"error: writing the report failed: {exc.strerror or type(exc).__name__}"
              f"{f' ({exc.filename})' if exc.filename else ''}; the results under {str(root)!r} are untouched",
              file=sys.stderr)
        return 1
    for run, reason in sorted(result.invalid.items()):  # never silent, even with --quiet
        print(f"warning: run {Path(run).name} not used: {run}/rows.csv is damaged ({reason})", file=sys.stderr)
    for run, reason in sorted(result.lost.items()):
        print(f"warning: {lost_message(Path(run), reason)}", file=sys.stderr)
    if not result.ok:
        print(f"error: {result.message}", file=sys.stderr)
        return 1
    if result.up_to_date:
        say(result.message)
        return 0
    say(f"report: {result.message}")
    tables = [p.name for p in result.written if p.suffix in (".parquet", ".csv", ".md", ".tex")]
    say(f"  wrote {', '.join(tables)}")
    say(f"  disk use: {result.disk_bytes / 1e6:.1f} MB (per run: disk.csv)")
    for name, paths in result.figures.items():
        kept = " unchanged, kept" if name in result.reused else ""
        say(f"  figure {name} ({', '.join(p.suffix for p in paths)}){kept}")
    for name, reason in result.skipped.items():
        say(f"  skipped {name}: {reason}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
