"""The notebooks execute cleanly against a small results folder made here."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from prunebench.results.store import write_table
from test_plots import make_table

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nbroot")
    df = make_table(latency=True)
    for run_id, rows in df.groupby("run_id"):
        write_table(root / "runs" / str(run_id) / "rows.csv", rows)
        (root / "runs" / str(run_id) / "DONE").write_text("done")
    return root


def test_there_are_notebooks() -> None:
    names = {p.stem for p in NOTEBOOKS}
    assert {"compare_strategies", "lottery_tickets", "structured_speedup"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, results_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(path, as_version=4)
    # Stored without outputs, so the repository stays small and diffs stay readable.
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name} has stored outputs"
    monkeypatch.setenv("PRUNEBENCH_ROOT", str(results_root))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend renders figures as PNG
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("name") == "stdout"
    )
    n_runs = make_table()["run_id"].nunique()
    assert f"runs under {str(results_root)!r}" in text and f"from {n_runs} runs" in text
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no figure"
