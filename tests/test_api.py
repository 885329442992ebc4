"""Prune your own model end to end: the Python API, a user's model file, a pretrained start.

Through the same validation and run folders as the CLI: a model object defined here, a
factory in a file outside the package on an ImageFolder tree the test writes (CLI, then
the report), and a LeNet-300-100 trained once, saved as a user's file and studied from
it with ``train.init_from`` and ``train.epochs=0``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import prunebench
from prunebench.cli import main

pytestmark = pytest.mark.integration

SYNTH = {"data.input_shape": [16], "data.n_train": 256, "data.n_test": 64, "data.val_size": 64,
         "data.batch_size": 32, "retrain.epochs": 1, "metrics.latency": False, "trainer": "cpu",
         "trainer.progress": False}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_api_runs_an_object_model_and_finds_it_again(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Net()
    lines: list[str] = []
    df = prunebench.run("schedule=one_shot", model=net, data="synthetic", root=tmp_path, log=lines.append,
                        schedule__target_sparsity=0.75, **{"train.epochs": 1}, **SYNTH)
    assert list(df["level"]) == [0, 1] and (df["status"] == "ok").all()
    assert df["sparsity"].iloc[1] == pytest.approx(0.75, abs=1 / 640)
    assert df["model"].iloc[0].startswith("object_net_")
    (run,) = list((tmp_path / "runs").iterdir())
    assert (run / "DONE").exists() and json.loads((run / "config.json").read_text())["run_id"] == run.name
    # Level 0 is the dense model: its weights are the dense cache's file, linked rather than copied.
    (final,) = (tmp_path / "cache" / "dense").glob("*/final.pt")
    assert (run / "levels" / "0" / "state.pt").samefile(final)
    assert (run / "levels" / "1" / "weights.pt").exists() and not (run / "levels" / "1" / "state.pt").exists()
    # The same object again: the same run, found finished (nothing trains).
    lines.clear()
    again = prunebench.run("schedule=one_shot", model=net, data="synthetic", root=tmp_path, log=lines.append,
                           schedule__target_sparsity=0.75, **{"train.epochs": 1}, **SYNTH)
    assert any("finished before, skipped" in ln for ln in lines)
    pd.testing.assert_frame_equal(df, again)
    # Other weights are another model: a new run.
    with torch.no_grad():
        net.body[0].weight.add_(1.0)
    prunebench.run("schedule=one_shot", model=net, data="synthetic", root=tmp_path, log=lines.append,
                   schedule__target_sparsity=0.75, **{"train.epochs": 1}, **SYNTH)
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_api_validates_like_the_cli(tmp_path: Path) -> None:
    with pytest.raises(prunebench.ConfigError, match="schedule.target_sparsty is not a config key; valid keys of "
                                                     "schedule: iterations, mode, name, target_sparsity"):
        prunebench.run(root=tmp_path, **{"schedule.target_sparsty": 0.9})
    with pytest.raises(prunebench.ConfigError, match="pruning.prune_output='no' must be true or false"):
        prunebench.run(root=tmp_path, pruning__prune_output="no")
    assert not (tmp_path / "runs").exists()


MODEL_FILE = '''
from torch import nn

def make_net(num_classes, width=8):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
'''


def write_image_tree(root: Path, classes: int = 3, per_class: int = 12) -> None:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, n in (("train", per_class), ("val", 4), ("test", 4)):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                px = (torch.rand(8, 8, 3, generator=g) * 80 + 60 * c).clamp(0, 255).to(torch.uint8)
                Image.fromarray(px.numpy()).save(d / f"{i}.png")


def test_cli_user_model_file_on_an_image_folder_through_the_report(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "myproject"
    project.mkdir()
    (project / "mynet.py").write_text(MODEL_FILE)
    write_image_tree(tmp_path / "images")
    root = tmp_path / "out"
    args = ["model=custom", f"model.target={project / 'mynet.py'}:make_net", "+model.width=6", "data=imagefolder",
            f"data.root={tmp_path / 'images'}", "data.image_size=8", "data.batch_size=12", "schedule=iterative",
            "schedule.iterations=2", "schedule.target_sparsity=0.75", "train.epochs=1", "retrain.epochs=1",
            "trainer=cpu", "metrics.latency=false", "trainer.progress=false", f"paths.root={root}"]
    main(args)
    df = prunebench.load(root)
    assert sorted(df["level"]) == [0, 1, 2] and (df["status"] == "ok").all()
    assert set(df["model"]) == {"make_net"} and set(df["dataset"]) == {"images"}
    assert (root / "report" / "results.csv").exists()
    # Editing the user's file makes a new run; the unchanged file is found again.
    capsys.readouterr()
    main(args)
    assert "finished before, skipped" in capsys.readouterr().err
    (project / "mynet.py").write_text(MODEL_FILE + "\n# edited\n")
    main([*args, "report=false"])
    assert len(list((root / "runs").iterdir())) == 2


def test_pretrained_start_level0_is_that_model_and_relaunch_trains_nothing(tmp_path: Path) -> None:
    data = {"data": "synthetic", "data.input_shape": [784], "data.n_train": 320, "data.n_test": 96,
            "data.val_size": 64, "data.batch_size": 32, "model": "lenet_300_100", "trainer": "cpu",
            "metrics.latency": False, "trainer.progress": False}
    first = prunebench.run("schedule=one_shot", root=tmp_path / "a", **{"train.epochs": 2, "retrain.epochs": 0},
                           **data)
    (final,) = list((tmp_path / "a" / "cache").rglob("final.pt"))
    mine = tmp_path / "lenet_trained.pt"
    torch.save(torch.load(final, weights_only=True), mine)  # "the user's trained model"

    variants = {"one_shot_80": ["schedule=one_shot", "schedule.target_sparsity=0.8"],
                "iterative_80": ["schedule=iterative", "schedule.iterations=2", "schedule.target_sparsity=0.8"]}
    keys = {"train.init_from": str(mine), "train.epochs": 0, "retrain.epochs": 1}
    lines: list[str] = []
    df = prunebench.study(variants, root=tmp_path / "b", seeds=[0], log=lines.append, report=False, **keys, **data)
    dense = df[df["level"] == 0]
    # Level 0 is that model's own accuracy, exactly (no training happened before it).
    assert (dense["test_acc"] == first[first["level"] == 0]["test_acc"].iloc[0]).all()
    assert any("evaluating the pretrained model" in ln for ln in lines)
    # Nothing trained: the dense cache holds one file under both names (a 135M LM is 650 MB).
    (cached,) = list((tmp_path / "b" / "cache" / "dense").glob("*/final.pt"))
    assert cached.samefile(cached.with_name("init.pt"))
    lines.clear()
    prunebench.study(variants, root=tmp_path / "b", seeds=[0], log=lines.append, report=False, **keys, **data)
    assert sum("finished before, skipped" in ln for ln in lines) == 2
    ids = set(df["run_id"])
    # Editing the file changes the run ids.
    state = torch.load(mine, weights_only=True)
    first_key = next(iter(state))
    state[first_key] = state[first_key] * 0.5
    torch.save(state, mine)
    from prunebench.api import _specs

    new = {s.run_id for s in _specs([f"train.init_from={mine}", "train.epochs=0", "retrain.epochs=1",
                                     *[f"{k}={prunebench.api._value(v)}" for k, v in data.items()],
                                     f"paths.root={tmp_path / 'b'}"], None, None, None, variants, [0])}
    assert new.isdisjoint(ids)


def test_pretrained_file_that_does_not_fit_is_refused_before_training(tmp_path: Path) -> None:
    bad = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(prunebench.ConfigError, match="does not fit|missing"):
        prunebench.run(root=tmp_path, **{"train.init_from": str(bad), "train.epochs": 0}, **SYNTH,
                       data="synthetic")
    assert not list((tmp_path / "cache").rglob("*.pt")) if (tmp_path / "cache").exists() else True
