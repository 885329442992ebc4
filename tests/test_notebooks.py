"""The notebooks execute cleanly against a small results folder made here."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from prunebench.results.store import write_table
from test_plots import make_table

pytestmark = pytest.mark.integration  # end to end: Lightning fits, surgery on real architectures, figures, kernels

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
#: Notebooks that read a results root (PRUNEBENCH_ROOT); prune_your_model trains its own runs.
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if p.stem != "prune_your_model")


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nbroot")
    df = make_table(latency=True)
    for run_id, rows in df.groupby("run_id"):
        write_table(root / "runs" / str(run_id) / "rows.csv", rows)
        (root / "runs" / str(run_id) / "config.json").write_text('{"run_id": "' + str(run_id) + '"}')
        (root / "runs" / str(run_id) / "DONE").write_text("done")  # a finished run has its config (else: lost)
    return root


def test_there_are_notebooks() -> None:
    names = {p.stem for p in NOTEBOOKS}
    assert {"compare_strategies", "lottery_tickets", "structured_speedup"} <= names
    assert (NOTEBOOK_DIR / "prune_your_model.ipynb").exists()


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


def test_prune_your_model_notebook_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model and a data module defined in the notebook: a run, a study, a figure, an export."""
    path = NOTEBOOK_DIR / "prune_your_model.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name} has stored outputs"
    monkeypatch.setenv("PRUNEBENCH_NB_ROOT", str(tmp_path / "nbruns"))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "\n".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert "rejected before training: schedule.target_sparsty is not a config key" in text
    assert "4 runs, 12 rows" in text and "exported" in text
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert [o for o in outputs if "image/png" in o.get("data", {})], "no figure drawn"
    runs = list((tmp_path / "nbruns" / "runs").iterdir())
    assert len(runs) == 5 and all((r / "DONE").exists() for r in runs)  # the single run + 2 variants x 2 seeds
