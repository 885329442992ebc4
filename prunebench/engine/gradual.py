"""Gradual pruning during training (Zhu & Gupta 2017, AGP/GMP), at optimizer-step granularity.

The sparsity follows the cubic schedule

    s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n Δt))³,   t ∈ {t0, t0 + Δt, …, t0 + n Δt}

where ``t`` counts optimizer steps of the level's fine-tune. Every ``Δt`` steps the mask is
recomputed by the run's criterion (or read from a learned-score criterion such as
movement) and allocation, among the weights still alive, so masks never regrow. The
target ``s_f`` is reached exactly at step ``t0 + n Δt``; training then continues at that
sparsity to the end of the fine-tune.

Rows contract: ``schedule=gradual`` has one level. Level 1 prunes to ``s_i`` when the
level starts (``acc_pruned`` is measured there; ``s_i = 0`` by default, i.e. the dense
model), then fine-tunes for the retrain mode's epochs while the callback raises the
sparsity to ``schedule.target_sparsity``; the level's row reports the end of that
fine-tune. Options (``schedule.*``):

- ``initial_sparsity`` (s_i, default 0),
- ``frequency`` (Δt in optimizer steps, default 10),
- ``start_fraction`` / ``end_fraction``: where t0 and the last pruning step may lie, as
  fractions of the fine-tune's optimizer steps (defaults 0 and 0.75);
  ``n = ⌊(end − t0) / Δt⌋`` must be at least 1.

Validation selection restarts at every mask change (Classifier.set_mask), so the weights
kept are always at the final sparsity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
from torch import nn

from prunebench.errors import ConfigError
from prunebench.pruning.mask import Mask
from prunebench.spec import ScheduleSpec


def cubic_sparsity(t: int, s_i: float, s_f: float, t0: int, n: int, dt: int) -> float:
    """Zhu & Gupta's cubic sparsity at optimizer step ``t`` (clamped outside [t0, t0 + nΔt])."""
    if n < 1 or dt < 1:
        raise ValueError("n and dt must be >= 1")
    frac = min(max((t - t0) / (n * dt), 0.0), 1.0)
    return s_f + (s_i - s_f) * (1.0 - frac) ** 3


@dataclass(frozen=True)
class GradualPlan:
    initial: float
    final: float
    start: int  # t0
    frequency: int  # Δt
    n: int  # pruning steps after t0

    @property
    def end(self) -> int:
        return self.start + self.n * self.frequency

    def steps(self) -> list[int]:
        """Optimizer steps at which the mask is recomputed (t0 included)."""
        return [self.start + j * self.frequency for j in range(self.n + 1)]

    def sparsity_at(self, t: int) -> float:
        if t >= self.end:
            return self.final  # exact, no floating-point residue at the end step
        return cubic_sparsity(t, self.initial, self.final, self.start, self.n, self.frequency)


def make_plan(schedule: ScheduleSpec, total_steps: int) -> GradualPlan:
    """The plan of a fine-tune of ``total_steps`` optimizer steps; ConfigError if impossible.

    The options' types and ranges were checked when the config was parsed
    (:class:`prunebench.catalog.GradualOptions`); what is left needs the step count.
    """
    o = schedule.options
    freq, s_i = int(o.frequency), float(o.initial_sparsity)
    start_f, end_f = float(o.start_fraction), float(o.end_fraction)
    t0 = round(start_f * total_steps)
    n = (math.floor(end_f * total_steps) - t0) // freq
    if n < 1:
        raise ConfigError(
            f"schedule=gradual needs at least one pruning step during the fine-tune, but it has {total_steps} optimizer "
            f"steps (retrain.epochs x batches per epoch) and schedule.frequency={freq} with fractions "
            f"[{start_f:g}, {end_f:g}]; raise retrain.epochs or lower schedule.frequency"
        )
    return GradualPlan(s_i, schedule.target_sparsity, t0, freq, n)


#: ``prune(net, mask, target, learned_scores) -> new mask`` (learned_scores None unless a learner runs)
PruneFn = Callable[[nn.Module, Mask, float, "dict[str, torch.Tensor] | None"], Mask]


@dataclass(eq=False)
class GradualPruning(pl.Callback):
    """Raises a Classifier's mask along ``plan`` while it trains."""

    plan: GradualPlan
    prune: PruneFn
    learner: Any = None  # a ScoreLearner (movement) or None
    history: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self._pending = sorted(set(self.plan.steps()))

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.learner is not None:
            self.learner.attach(pl_module.net, trainer.optimizers[0])
        self._step(pl_module)
        # After every optimizer step, not every Lightning batch: fit() may group several
        # optimizer steps into one Lightning batch (trainer.steps_per_call).
        pl_module.step_hooks.append(self._step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self._step in pl_module.step_hooks:
            pl_module.step_hooks.remove(self._step)
        if self.learner is not None:
            self.learner.detach()

    def _step(self, module: Any) -> None:
        t = module.optimizer_steps
        while self._pending and self._pending[0] <= t:
            step = self._pending.pop(0)
            target = self.plan.sparsity_at(step)
            scores = self.learner.scores() if self.learner is not None else None
            mask = self.prune(module.net, module.mask, target, scores)
            module.set_mask(mask)
            self.history.append({"step": step, "target": target, "sparsity": mask.sparsity})

    @property
    def finished(self) -> bool:
        return not self._pending
