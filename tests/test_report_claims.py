"""prunebench-report: claims.md/claims.csv and the interval section of the summary."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_plots import B, make_table
from test_report import write_root

from prunebench import report


def _table() -> pd.DataFrame:
    t = make_table()
    t["experiment"] = "demo"
    return t


def test_interval_summary_pairs_each_run_with_its_dense() -> None:
    iv = report.interval_summary(_table())
    row = iv[(iv["label"] == B) & (iv["target_sparsity"] == 0.9)].iloc[0]
    # B at 0.9: 0.86/0.89/0.92 against dense 0.90/0.92/0.94 -> Δ -0.04/-0.03/-0.02
    assert row["n"] == 3 and row["delta_n"] == 3
    assert row["delta"] == pytest.approx(-0.03)
    assert row["delta_high"] - row["delta"] == pytest.approx(4.302653 * 0.01 / 3 ** 0.5, abs=1e-6)
    text = report.format_intervals(iv[iv["label"] == B]).to_string()
    assert "-3.00 [-5.48, -0.52]" in text


def _claims_only(root: Path, out: Path) -> report.ReportResult:
    """The claims step of build_report alone (no figures: fast)."""
    from prunebench.results import load

    out.mkdir(parents=True, exist_ok=True)
    res = report.ReportResult(root=root, out=out)
    report._claims_files(load(root), root, out, res)
    return res


@pytest.mark.integration
def test_report_writes_claims_and_intervals(tmp_path: Path) -> None:
    root = write_root(tmp_path / "res", _table(), layers=False)
    (root / "claims").mkdir()
    (root / "claims" / "demo.json").write_text(
        '[{"id": "iterative_keeps_dense", "paper": "P", "where": "Fig. 2",'
        ' "quantity": {"arm": "%s", "at_sparsity": 0.9, "minus": "dense"},'
        ' "paper_value": 0.0, "rule": {"direction": "greater", "margin": -0.005}}]' % B)
    res = report.build_report(root, tmp_path / "rep")
    md = (tmp_path / "rep" / "claims.md").read_text()
    assert "| demo | iterative_keeps_dense | P (Fig. 2) |" in md and "**not reproduced**" in md
    csv = pd.read_csv(tmp_path / "rep" / "claims.csv")
    assert csv.loc[0, "verdict"] == "not reproduced" and csv.loc[0, "n"] == 3
    assert csv.loc[0, "ours_mean"] == pytest.approx(-0.03)
    assert tmp_path / "rep" / "claims.md" in res.written
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert "## 95% intervals and paired differences to dense" in summary and "-3.00 [-5.48, -0.52]" in summary


def test_no_claims_is_skipped_with_reason(tmp_path: Path) -> None:
    root = write_root(tmp_path / "res", make_table(), layers=False)
    res = _claims_only(root, tmp_path / "rep")
    assert res.skipped["claims"] == "no experiment in the table declares claims"
    assert not (tmp_path / "rep" / "claims.md").exists()


def test_bad_claims_file_does_not_break_the_report(tmp_path: Path) -> None:
    root = write_root(tmp_path / "res", _table(), layers=False)
    (root / "claims").mkdir()
    (root / "claims" / "demo.json").write_text('[{"id": "x", "paper": "P", "where": "W", "rule": {}}]')
    res = _claims_only(root, tmp_path / "rep")
    assert "claim 'x': quantity=None" in res.skipped["claims"]
