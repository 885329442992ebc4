"""Own model + own data through the existing engine (dense → iterative pruning), composed
from the real configs. The CLI / API end-to-end tests and run identity (custom source hash,
train.init_from) come with the lead's wiring; these check the pieces run as they are."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from prunebench.engine.batch import execute_specs
from prunebench.spec import from_config
from tests.conftest import TINY
from tests.test_own_data import write_tree

NET = textwrap.dedent("""
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes, width=16):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
            self.head = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.head(self.features(x).flatten(1))
""")


@pytest.mark.integration
@pytest.mark.parametrize("model", [["model=custom", "model.target={net}:Net", "+model.width=8"],
                                   ["model=torchvision", "model.arch=resnet18"]])
def test_own_model_on_imagefolder_prunes(tmp_path: Path, compose: Callable[[Sequence[str]], dict[str, Any]],
                                         model: list[str]) -> None:
    (tmp_path / "net.py").write_text(NET)
    root = write_tree(tmp_path / "imgs", per_class=8, size=16)
    overrides = [*TINY, "data=imagefolder", f"data.root={root}", "data.batch_size=8", "data.drop_last=true",  # BatchNorm: no batch of 1
                 *(o.format(net=tmp_path / "net.py") for o in model),
                 "schedule=iterative", "schedule.iterations=2", "schedule.target_sparsity=0.5",
                 f"paths.root={tmp_path / 'out'}", "trainer.progress=false"]
    spec = from_config(compose(overrides))
    logs: list[str] = []
    outcomes = execute_specs([spec], log=logs.append)
    assert len(outcomes) == 1, logs
    outcome = outcomes[0]
    rows = outcome.rows
    assert outcome.status == "ok" and list(rows["level"]) == [0, 1, 2]
    assert rows["sparsity"].iloc[-1] == pytest.approx(0.5, abs=0.02)
    assert rows["dataset"].iloc[0] == "imgs" and rows["test_acc"].notna().all()  # the folder's name


@pytest.mark.integration
def test_own_lightning_datamodule_prunes(tmp_path: Path, compose: Callable[[Sequence[str]], dict[str, Any]]) -> None:
    from tests.test_own_data import DATA_FILE

    (tmp_path / "my_data.py").write_text(DATA_FILE)
    overrides = [*TINY, "data=custom", f"data.target={tmp_path / 'my_data.py'}:Blobs", "+data.n=90",
                 "model=mlp", "model.widths=[16]", "train.epochs=10", "schedule=iterative", "schedule.iterations=2",
                 "schedule.target_sparsity=0.5", f"paths.root={tmp_path / 'out'}", "trainer.progress=false"]
    spec = from_config(compose(overrides))
    logs: list[str] = []
    outcomes = execute_specs([spec], log=logs.append)
    assert len(outcomes) == 1, logs
    rows = outcomes[0].rows
    assert list(rows["level"]) == [0, 1, 2] and rows["dataset"].iloc[0] == "Blobs"  # the factory's name
    assert rows["test_acc"].iloc[0] > 0.5, rows[["level", "val_acc", "test_acc", "acc_pruned", "status"]].to_string()  # blobs: far above chance (1/3)
