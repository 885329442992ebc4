"""Experiment loggers (issue 15): what CSV, TensorBoard and MLflow received, read back."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import torch

from prunebench.errors import ConfigError
from prunebench.loggers import build_loggers, finish, log_level_summary, mlflow_parent_run

EPOCHS = 2


def test_none_and_bad_config() -> None:
    assert build_loggers({"name": "none"}, "r", 1, 0, "x") == []
    assert build_loggers(None, "r", 1, 0, "x") == []
    with pytest.raises(ConfigError, match=r"logger='wandb' is not a known name; valid: csv, mlflow, none, tensorboard"):
        build_loggers({"name": "wandb"}, "r", 1, 0, "x")
    with pytest.raises(ConfigError, match=r"logger.sav_dir is not an option; valid: experiment_name, name, save_dir, tracking_uri"):
        build_loggers({"name": "csv", "sav_dir": "x"}, "r", 1, 0, "x")


def two_level_run(cfg: dict, save_dir: Path, parent: str | None = None) -> list[list[dict]]:
    """Two pruning levels of one run (a real Lightning fit each), logged as the loop would."""
    from prunebench.data import build_datamodule
    from prunebench.engine.fit import fit
    from prunebench.engine.module import Classifier
    from prunebench.models import build_model
    from prunebench.spec import TrainerSpec

    dm = build_datamodule("synthetic", input_shape=[8], num_classes=3, n_train=128, n_test=64, batch_size=32,
                          val_size=64)
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(0)
    net = build_model("mlp", (8,), 3)
    histories = []
    for level in (1, 2):
        loggers = build_loggers(cfg, "run0abc", level, 7, save_dir, parent=parent)
        module = Classifier(net, partial(torch.optim.Adam, lr=1e-3))
        fit(module, dm, TrainerSpec(accelerator="cpu"), epochs=EPOCHS, loggers=loggers)
        histories.append(module.history)
        log_level_summary(loggers, {"level": level, "val_acc": 0.5 + level / 10, "sparsity": level / 4,
                                    "test_acc": float("nan"), "status": "ok"})
        finish(loggers)
    return histories


def val_accs(history: list[dict]) -> list[float]:
    return [h["val_acc"] for h in history if "val_acc" in h]


@pytest.mark.integration
def test_csv_logger_two_levels(tmp_path: Path) -> None:
    histories = two_level_run({"name": "csv"}, tmp_path)
    for level, history in zip((1, 2), histories):
        folder = tmp_path / "run0abc" / f"level_{level}"
        df = pd.read_csv(folder / "metrics.csv")
        per_epoch = df.dropna(subset=["val_acc"])
        assert list(per_epoch["epoch"]) == list(range(EPOCHS))
        assert per_epoch["val_acc"].tolist() == pytest.approx(val_accs(history))
        assert per_epoch["train_loss"].notna().all()
        summary = df.dropna(subset=["level/val_acc"])
        assert len(summary) == 1 and summary["level/val_acc"].iloc[0] == pytest.approx(0.5 + level / 10)
        assert summary["step"].iloc[0] == level
        assert "level/test_acc" not in df.columns  # NaN is not sent
        hp = (folder / "hparams.yaml").read_text()
        assert "run_id: run0abc" in hp and f"level: {level}" in hp and "seed: 7" in hp


@pytest.mark.integration
def test_tensorboard_logger_two_levels(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    histories = two_level_run({"name": "tensorboard"}, tmp_path)
    for level, history in zip((1, 2), histories):
        acc = EventAccumulator(str(tmp_path / "run0abc" / f"level_{level}"))
        acc.Reload()
        scalars = acc.Tags()["scalars"]
        assert {"val_acc", "val_loss", "train_loss", "level/val_acc", "level/sparsity"} <= set(scalars)
        events = acc.Scalars("val_acc")
        assert [e.step for e in events] == list(range(EPOCHS))
        assert [e.value for e in events] == pytest.approx(val_accs(history), abs=1e-6)
        (summary,) = acc.Scalars("level/sparsity")
        assert summary.step == level and summary.value == pytest.approx(level / 4)
        # run_id, level, seed against the level's summary metrics: TensorBoard's HPARAMS tab
        from tensorboard.plugins.hparams import plugin_data_pb2

        content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hp = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        assert hp["run_id"].string_value == "run0abc"
        assert hp["level"].number_value == level and hp["seed"].number_value == 7


@pytest.mark.integration
def test_mlflow_logger_two_levels_nested_under_parent(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    cfg = {"name": "mlflow", "experiment_name": "pb_test"}
    parent = mlflow_parent_run(cfg, "study_quick", tmp_path)
    assert parent is not None and mlflow_parent_run(cfg, "study_quick", tmp_path) == parent  # found again
    histories = two_level_run(cfg, tmp_path, parent=parent)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    exp = client.get_experiment_by_name("pb_test")
    children = client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(children) == 2
    for run in sorted(children, key=lambda r: int(r.data.tags["level"])):
        level = int(run.data.tags["level"])
        assert run.data.tags["run_id"] == "run0abc" and run.data.tags["seed"] == "7"
        assert run.data.params == {"run_id": "run0abc", "level": str(level), "seed": "7"}
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.step for m in history] == list(range(EPOCHS))
        assert [m.value for m in history] == pytest.approx(val_accs(histories[level - 1]))
        assert run.data.metrics["level/val_acc"] == pytest.approx(0.5 + level / 10)
        assert run.info.status == "FINISHED"
