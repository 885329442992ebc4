"""Retraining modes: what happens between pruning and the next level.

A mode is a small object registered by name: ``prepare`` may reset the surviving weights
(rewinding, re-initialisation) or even replace the mask (random-mask control) before
retraining; ``optimizer``/``scheduler`` choose the learning-rate schedule of retraining.

- ``finetune``: keep the pruned weights, train ``retrain.epochs`` at ``retrain.lr``.
- ``none``: no retraining (one-shot pruning without fine-tuning).
- ``lr_rewind``, ``weight_rewind``, ``reinit``, ``random_mask``: see
  :mod:`prunebench.engine.rewind`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from prunebench.pruning.mask import Mask
from prunebench import catalog
from prunebench.registry import Registry
from prunebench.spec import RunSpec


@dataclass
class RetrainContext:
    """What a retrain mode may use."""

    spec: RunSpec
    level: int
    init_state: dict[str, torch.Tensor]  # weights at initialisation (iteration 0)
    rewind_state: Callable[[int], dict[str, torch.Tensor]]  # weights after k dense steps
    generator: torch.Generator
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrainMode:
    name: str
    prepare: Callable[[nn.Module, Mask, RetrainContext], Mask] = lambda net, mask, ctx: mask
    trains: bool = True
    dense_schedule: bool = False  # retrain with the dense training's LR schedule (lr_rewind)

    def optimizer(self, spec: RunSpec) -> partial[Any]:
        # lr_rewind replays the dense run's optimizer and LR schedule exactly.
        if self.dense_schedule or spec.retrain.lr is None:
            return spec.train.optimizer.partial("train.optimizer")
        return spec.train.optimizer.partial("train.optimizer", lr=spec.retrain.lr)

    def scheduler(self, spec: RunSpec, steps_per_epoch: int | None = None) -> partial[Any] | None:
        if self.dense_schedule:
            return spec.train.scheduler.partial("train.scheduler") if spec.train.scheduler else None
        return spec.retrain.scheduler.partial("retrain.scheduler") if spec.retrain.scheduler else None

    def epochs(self, spec: RunSpec) -> int:
        return spec.retrain.epochs if self.trains else 0

    def validate(self, spec: RunSpec, dense_steps: int) -> None:
        """Checks that need the data (dense step count); none for the plain modes."""


RETRAIN_MODES: Registry[RetrainMode] = Registry("retrain", catalog.RETRAIN_MODES)


def register_retrain(mode: RetrainMode) -> RetrainMode:
    RETRAIN_MODES.register(mode.name)(mode)
    return mode


register_retrain(RetrainMode("finetune"))
register_retrain(RetrainMode("none", trains=False))

from prunebench.engine import rewind as _rewind  # noqa: E402

for _mode in (_rewind.LR_REWIND, _rewind.WEIGHT_REWIND, _rewind.REINIT, _rewind.RANDOM_MASK):
    RETRAIN_MODES.register(_mode.name)(_mode)  # type: ignore[arg-type]
