"""The sparse-kernel speedup plot and its crossover sparsity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from prunebench import plots


def table() -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        for level, (sp, a, b) in enumerate([(0.0, 1.0, 1.0), (0.5, 0.4, 0.2), (0.9, 1.5, 0.5), (0.99, 3.0, 0.9)]):
            for label, speed in (("fast", a), ("slow", b)):
                rows.append({"run_id": f"{label}{seed}", "seed": seed, "level": level, "label": label,
                             "dataset": "mnist", "model": "lenet300", "target_sparsity": sp,
                             "sparsity": sp, "speedup_measured_sparse": speed + 0.1 * seed, "status": "ok"})
    return pd.DataFrame(rows)


def test_crossover_per_curve() -> None:
    agg = plots.aggregate(table(), "speedup_measured_sparse", "sparsity")
    cross = plots.sparse_crossover(agg).set_index("label")["crossover"]
    assert cross["fast"] == pytest.approx(0.9)  # means 0.45, 1.55, 3.05 → above 1 from 90 %
    assert math.isnan(cross["slow"])  # never above 1


def test_plot_draws_curves_break_even_and_crossover() -> None:
    ax = plots.sparse_speedup_vs_sparsity(table())
    lines = {c.get_label(): c for c in ax.containers}
    assert set(lines) == {"fast", "slow"}
    x, y = (np.asarray(v) for v in lines["fast"].lines[0].get_data())
    assert np.allclose(x, [50, 90, 99]) and np.allclose(y, [0.45, 1.55, 3.05])
    assert [ln.get_ydata()[0] for ln in ax.lines if ln.get_gid() == "break_even"] == [1.0]
    assert [ln.get_xdata()[0] for ln in ax.lines if ln.get_gid() == "crossover"] == [pytest.approx(90.0)]
    assert ax.get_yscale() == "log"


def test_missing_column_is_named() -> None:
    with pytest.raises(KeyError, match="speedup_measured_sparse"):
        plots.sparse_speedup_vs_sparsity(table().drop(columns="speedup_measured_sparse"))


def test_report_draws_the_sparse_figure_only_when_measured(tmp_path) -> None:
    from prunebench import report

    result = report.ReportResult(root=tmp_path, out=tmp_path)
    df = table()
    report._curve_figures(df, report._Writer(result))
    assert "sparse_speedup" in result.figures and "sparse_speedup" not in result.skipped
    result2 = report.ReportResult(root=tmp_path, out=tmp_path / "b")
    (tmp_path / "b").mkdir()
    report._curve_figures(df.assign(speedup_measured_sparse=np.nan), report._Writer(result2))
    assert "sparse_speedup" not in result2.figures and "sparse_speedup" not in result2.skipped
