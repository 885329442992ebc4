"""Experiment loggers (``logger=none|csv|tensorboard|mlflow``): curves while a run trains.

prunebench keeps its own results (run folders, ``levels/<k>/epochs.csv``); these loggers
are a *view* for the tools people already use. Each pruning level of a run is one logger
"run" (a CSV/TensorBoard version, an MLflow run), tagged with the run id, level and seed:

* per epoch: ``train_loss``, ``val_acc``, ``val_loss`` (step = epoch);
* per level, once: a summary of its results row under ``level/<column>`` (``val_acc``,
  ``test_acc``, ``sparsity``, ``params_nonzero``, ``latency_ms``, ... ; step = level).

MLflow runs are nested under a parent run for the study or sweep
(:func:`mlflow_parent_run`); only a local file store is used (no server, offline).
TensorBoard and MLflow are optional: ``pip install -e ".[loggers]"``.

Wiring: ``build_loggers(cfg.logger, run_id, level, seed, save_dir)`` gives the Lightning
loggers for one level's fit (``fit(..., loggers=...)``); after the level's row is written,
``log_level_summary(loggers, row)`` then ``finish(loggers)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger

from prunebench.errors import ConfigError, unknown_name

LOGGERS = ("none", "csv", "tensorboard", "mlflow")
#: Results-row columns sent as the per-level summary (those present and numeric).
SUMMARY_COLUMNS = ("val_acc", "val_loss", "test_acc", "test_loss", "acc_pruned", "acc_pruned_val", "sparsity",
                   "target_sparsity", "params", "params_nonzero", "compression", "flops", "speedup_theoretical",
                   "latency_ms", "speedup_measured", "train_seconds")
EPOCH_KEYS = ("train_loss", "val_acc", "val_loss")


def check_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``logger`` node validated (name in LOGGERS, known keys only); ConfigError otherwise."""
    from prunebench.spec import parse_logger

    return parse_logger(cfg)


def _missing(name: str, package: str) -> ConfigError:
    return ConfigError(f"logger={name} needs the {package!r} package: pip install -e \".[loggers]\" "
                       f"(or pip install {package})")


def mlflow_uri(save_dir: str | Path) -> str:
    """The local MLflow store: a SQLite file ``<save_dir>/mlflow.db`` (offline, no server).

    MLflow 3 refuses its plain-folder store (``./mlruns``, "maintenance mode") unless an
    environment variable opts in; a SQLite file is its recommended local store.
    """
    path = Path(save_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def _artifacts(save_dir: str | Path) -> str:
    return str(Path(save_dir).resolve() / "artifacts")


def mlflow_parent_run(logger_cfg: Mapping[str, Any] | None, name: str, save_dir: str | Path,
                      tags: Mapping[str, Any] | None = None) -> str | None:
    """Create (or find, by ``name``) the parent MLflow run of a study/sweep; return its id.

    Returns None unless ``logger=mlflow``. Children pass it as ``parent=`` to
    :func:`build_loggers`, which tags them ``mlflow.parentRunId`` (MLflow's nesting).
    """
    cfg = check_config(logger_cfg)
    if cfg["name"] != "mlflow":
        return None
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise _missing("mlflow", "mlflow-skinny") from None
    save = cfg.get("save_dir") or save_dir
    client = MlflowClient(tracking_uri=cfg.get("tracking_uri") or mlflow_uri(save))
    experiment = cfg.get("experiment_name") or "prunebench"
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(
        experiment, artifact_location=_artifacts(save))
    found = client.search_runs([exp_id], filter_string=f"tags.`prunebench.parent` = '{name}'", max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(exp_id, run_name=name, tags={"prunebench.parent": name, **{k: str(v) for k, v in (tags or {}).items()}})
    return run.info.run_id


def build_loggers(logger_cfg: Mapping[str, Any] | None, run_id: str, level: int, seed: int,
                  save_dir: str | Path, parent: str | None = None) -> list[Logger]:
    """Lightning loggers for one level of one run (an empty list for ``logger=none``).

    ``logger_cfg``: the ``logger`` config node (``name`` plus optional ``save_dir``,
    ``experiment_name``, ``tracking_uri``); ``save_dir``: default folder (e.g.
    ``<paths.root>/logs/<name>``); ``parent``: the MLflow parent run id of the study/sweep.
    """
    cfg = check_config(logger_cfg)
    name = cfg["name"]
    if name == "none":
        return []
    save = Path(cfg.get("save_dir") or save_dir)
    hparams = {"run_id": run_id, "level": int(level), "seed": int(seed)}
    version = f"level_{int(level)}"
    if name == "csv":
        from pytorch_lightning.loggers import CSVLogger

        logger: Logger = CSVLogger(str(save), name=run_id, version=version)
    elif name == "tensorboard":
        from pytorch_lightning.loggers.tensorboard import _TENSORBOARD_AVAILABLE, TensorBoardLogger

        if not _TENSORBOARD_AVAILABLE:
            raise _missing("tensorboard", "tensorboard")
        logger = TensorBoardLogger(str(save), name=run_id, version=version, default_hp_metric=False)
    else:
        from pytorch_lightning.loggers.mlflow import _MLFLOW_AVAILABLE, MLFlowLogger

        if not _MLFLOW_AVAILABLE:
            raise _missing("mlflow", "mlflow-skinny")
        tags = {k: str(v) for k, v in hparams.items()}
        if parent:
            tags["mlflow.parentRunId"] = parent
        logger = MLFlowLogger(experiment_name=cfg.get("experiment_name") or "prunebench",
                              run_name=f"{run_id}/{version}", tags=tags, artifact_location=_artifacts(save),
                              tracking_uri=cfg.get("tracking_uri") or mlflow_uri(save))
    logger.log_hyperparams(hparams)
    return [logger]


def log_epochs(loggers: Sequence[Logger], history: Sequence[Mapping[str, Any]]) -> None:
    """Per-epoch metrics from a module's ``history`` (records of epoch + some EPOCH_KEYS)."""
    by_epoch: dict[int, dict[str, float]] = {}
    for rec in history:
        metrics = {k: float(rec[k]) for k in EPOCH_KEYS if k in rec and _finite(rec[k])}
        by_epoch.setdefault(int(rec.get("epoch", 0)), {}).update(metrics)
    for epoch, metrics in sorted(by_epoch.items()):
        if metrics:
            for lg in loggers:
                lg.log_metrics(metrics | {"epoch": float(epoch)}, step=epoch)


def log_level_summary(loggers: Sequence[Logger], row: Mapping[str, Any]) -> None:
    """One summary per level: the numeric columns of its results row, as ``level/<column>``."""
    level = int(row.get("level", 0) or 0)
    metrics = {f"level/{c}": float(row[c]) for c in SUMMARY_COLUMNS if c in row and _finite(row[c])}
    for lg in loggers:
        if metrics:
            lg.log_metrics(metrics, step=level)
            _tensorboard_hparams(lg, metrics)


def _tensorboard_hparams(lg: Logger, metrics: Mapping[str, float]) -> None:
    """TensorBoard's HPARAMS tab: this level's run_id/level/seed against its summary metrics.

    Written here, not by ``log_hyperparams`` (which needs the metrics up front and would log
    them again at step 0); the values come from the ``level/*`` scalars of the same names.
    """
    from pytorch_lightning.loggers import TensorBoardLogger

    if not isinstance(lg, TensorBoardLogger):
        return
    from torch.utils.tensorboard.summary import hparams

    writer = lg.experiment._get_file_writer()
    for summary in hparams(dict(lg.hparams), dict(metrics)):
        writer.add_summary(summary)


def finish(loggers: Sequence[Logger], status: str = "success") -> None:
    """Flush and close (MLflow: end the level's run with ``status``: success/failed)."""
    for lg in loggers:
        lg.save()
        lg.finalize(status)


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


class EpochMetricsToLoggers(pl.Callback):
    """Sends the module's per-epoch ``history`` to the Trainer's loggers as epochs finish.

    prunebench's Classifier does not call ``self.log`` (that costs time per step); it keeps
    a ``history`` list instead. An epoch's record is complete (training loss added) only
    after the module's own ``on_train_epoch_end``, which Lightning calls after the
    callbacks': so an epoch is sent when the next one starts, and the last when training ends.
    """

    def __init__(self) -> None:
        self._sent = 0  # number of epochs already sent

    def _flush(self, trainer: pl.Trainer, pl_module: pl.LightningModule, upto: int | None) -> None:
        history = [h for h in getattr(pl_module, "history", []) or [] if int(h.get("epoch", 0)) >= self._sent
                   and (upto is None or int(h.get("epoch", 0)) < upto)]
        if history and trainer.loggers:
            log_epochs(trainer.loggers, history)
        if history:
            self._sent = max(int(h.get("epoch", 0)) for h in history) + 1

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer, pl_module, upto=trainer.current_epoch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer, pl_module, upto=None)


def level_loggers(spec: Any, level: int, parent: str | None = None) -> list[Logger]:
    """The experiment loggers of one level of the run ``spec`` (none unless ``logger=`` asks),
    under ``<root>/logs/<logger>`` unless the config gives a folder; nested under ``parent``."""
    if spec.logger.get("name", "none") == "none":
        return []
    default_dir = Path(spec.root) / "logs" / str(spec.logger["name"])
    return build_loggers(spec.logger, spec.run_id, level, spec.seed, default_dir, parent=parent)


def summarise_level(loggers: Sequence[Logger], row: Mapping[str, Any]) -> None:
    """One summary per level to the experiment loggers (level 0: the dense model), then finish them."""
    if loggers:
        log_level_summary(loggers, row)
        finish(loggers)
