"""Run Lightning fits with prunebench's defaults: quiet, no checkpoints, no loggers unless asked.

prunebench keeps its own results and checkpoints (content-addressed run folders), so the
Trainer's own logging, checkpointing and progress bar are off; that also keeps the
per-step overhead close to a plain PyTorch loop (see benchmarks/overhead.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch

from prunebench.engine.module import Classifier
from prunebench.spec import TrainerSpec

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*The number of training batches.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")
os.environ.setdefault("PL_DISABLE_FORK", "1")
# Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (fork-safe CUDA probing for its
# fork-based strategies, which prunebench never uses). With it, every Adam/AdamW step asks
# torch.cuda.is_available() through NVML: a dlopen per step, ~80 µs, which was ~15% of a
# step of the MNIST-1D MLP on a CPU. The runtime check is cached after the first call.
os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"


class GroupedLoader:
    """Batches of ``loader`` in lists of ``k``: one Lightning "batch" = ``k`` optimizer steps.

    Lightning spends ~0.5 ms of bookkeeping per training batch (hooks, progress, logging
    connector, fetcher), as much as a whole step of a small MLP on a CPU. Grouping keeps the
    steps, their order and the per-epoch validation exactly as they were.
    """

    def __init__(self, loader: Any, k: int) -> None:
        self.loader, self.k = loader, int(k)

    def __len__(self) -> int:
        return -(-len(self.loader) // self.k)

    def __iter__(self) -> Any:
        group: list[Any] = []
        for batch in self.loader:
            group.append(batch)
            if len(group) == self.k:
                yield group
                group = []
        if group:
            yield group


@dataclass
class FitResult:
    epochs: int
    seconds: float
    best_val_acc: float
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_accelerator(spec: TrainerSpec) -> str:
    if spec.accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return spec.accelerator


def device_of(spec: TrainerSpec) -> torch.device:
    acc = resolve_accelerator(spec)
    return torch.device("cuda") if acc in ("gpu", "cuda") else torch.device("cpu")


def make_trainer(spec: TrainerSpec, *, epochs: int, max_steps: int | None = None, **overrides: Any) -> pl.Trainer:
    kwargs: dict[str, Any] = dict(
        accelerator=resolve_accelerator(spec),
        devices=spec.devices,
        precision=spec.precision,
        deterministic=spec.deterministic,
        max_epochs=epochs,
        max_steps=max_steps if max_steps is not None else -1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=1,
    )
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)


def fit(module: Classifier, datamodule: Any, trainer_spec: TrainerSpec, *, epochs: int, max_steps: int | None = None,
        callbacks: list[pl.Callback] | None = None, loggers: list[Any] | None = None,
        progress: Any = None) -> FitResult:
    """Train ``module`` for ``epochs`` on the data module's train split, selecting on val.

    ``callbacks`` run inside the fit (in-training pruning: prunebench.engine.gradual).
    ``loggers`` (Lightning loggers from :func:`prunebench.loggers.build_loggers`) receive
    the per-epoch training/validation metrics; ``progress`` (a
    :class:`prunebench.progress.Progress`) is advanced step by step. Neither is on by default.
    """
    start = time.perf_counter()
    if epochs <= 0 and not max_steps:
        return FitResult(0, 0.0, float("nan"), [])
    callbacks = list(callbacks or [])
    extra: dict[str, Any] = {}
    if loggers:
        from prunebench.loggers import EpochMetricsToLoggers

        callbacks.append(EpochMetricsToLoggers())
        extra["logger"] = list(loggers)
        extra["log_every_n_steps"] = 1  # prunebench logs per epoch itself; silences a warning
    if progress is not None:
        from prunebench.progress import ProgressCallback

        callbacks.append(ProgressCallback(progress))
    val = datamodule.val_dataloader()
    if not len(val):  # data.val_size=0 (train.select=last): nothing to validate on
        val, extra["limit_val_batches"] = None, 0
    trainer = make_trainer(trainer_spec, epochs=epochs if epochs > 0 else 1, max_steps=max_steps,
                           callbacks=callbacks, **extra)
    module.fused_optimizer = trainer_spec.fused_optimizer
    train = datamodule.train_dataloader()
    if trainer_spec.steps_per_call > 1:
        train = GroupedLoader(train, trainer_spec.steps_per_call)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Skipping val loop.*")  # data.val_size=0: none by design
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    module.net.to(device_of(trainer_spec))
    return FitResult(trainer.current_epoch, time.perf_counter() - start, module.best_val_acc, module.history)


@contextlib.contextmanager
def batch_size(datamodule: Any, size: int | None) -> Iterator[None]:
    """Training batches of ``size`` inside the block (None: the data module's own), e.g.
    retrain.batch_size for a level's fine-tune while dense training keeps data.batch_size."""
    old = datamodule.batch_size
    if size is not None:
        datamodule.batch_size = size
    try:
        yield
    finally:
        datamodule.batch_size = old
