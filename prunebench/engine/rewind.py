"""Rewinding retrain modes and the lottery-ticket controls.

- ``lr_rewind`` (Renda et al. 2020): keep the pruned weights, retrain for ``retrain.epochs``
  with the dense run's optimizer and the LR schedule of its last ``retrain.epochs`` epochs
  (an epoch-interval scheduler is advanced by ``train.epochs - retrain.epochs`` epochs
  first; with ``retrain.epochs = train.epochs`` the whole schedule is replayed).
- ``weight_rewind`` (Frankle & Carbin 2019; Frankle et al. 2020 for k > 0): reset every
  parameter and buffer to its value after ``retrain.rewind_step`` = k optimizer steps of
  the dense run (k = 0: the initialisation, the original lottery ticket), keep the mask,
  retrain with the dense optimizer and schedule (the scheduler starts at epoch
  ``k // steps_per_epoch``).
- ``reinit``: same mask, fresh random weights (every module's ``reset_parameters`` under a
  seed derived from the run seed and level), trained like ``weight_rewind``.
- ``random_mask``: a random mask with the same per-tensor sparsity as the criterion's,
  drawn among the weights alive before this level (so masks still never regrow), with the
  weights rewound like ``weight_rewind``.

By default (``retrain.branch=false``) a control runs as its own trajectory: level k+1's
criterion scores the weights the control trained at level k. With ``retrain.branch=true``
it is a branch of the lottery-ticket run (Frankle & Carbin; OpenLTH's branches): at every
level it takes the ticket run's mask (``weight_rewind`` with the same settings), so the
comparison is ticket vs control on the same masks, and the ticket's finished levels are
shared, not retrained.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import torch
from torch import nn

from prunebench import seeding
from prunebench.errors import ConfigError
from prunebench.pruning.mask import Mask
from prunebench.spec import RunSpec


def rewind_step(spec: RunSpec) -> int:
    return spec.retrain.rewind_step


def check_rewind_step(spec: RunSpec, dense_steps: int) -> None:
    """The rewind point must lie inside the dense run (step 0 .. its last optimizer step)."""
    k = rewind_step(spec)
    if k > dense_steps:
        raise ConfigError(f"retrain.rewind_step={k!r} is beyond the dense run, which has {dense_steps} optimizer "
                          f"steps (train.epochs x batches per epoch, or train.max_steps); choose 0..{dense_steps}")


def _advanced(factory: partial[Any], epochs: int) -> partial[Any]:
    """A scheduler factory whose scheduler starts ``epochs`` epochs into its schedule."""

    def build(optimizer: torch.optim.Optimizer) -> Any:
        sched = factory(optimizer)
        for _ in range(max(epochs, 0)):
            optimizer.step()  # no gradients: a no-op step, keeps PyTorch's step-order warning quiet
            sched.step()
        return sched

    return partial(build)


@torch.no_grad()
def load_weights(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``net`` (same device), parameters and buffers alike."""
    own = net.state_dict()
    missing = set(own) - set(state)
    if missing:
        raise KeyError(f"rewind state lacks {sorted(missing)[:3]}")
    for k, v in own.items():
        v.copy_(state[k].to(v.device, v.dtype))


@torch.no_grad()
def reinitialise(net: nn.Module, seed: int, level: int) -> None:
    """Fresh random weights: every module's ``reset_parameters`` on the (seed, "reinit", level) stream."""
    with seeding.scoped(seed, "reinit", level):
        for m in net.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()


def random_mask_like(mask: Mask, within: Mask, generator: torch.Generator) -> Mask:
    """Random keep-mask with ``mask``'s per-tensor counts, chosen among ``within``'s survivors."""
    out = {}
    for n, m in mask.items():
        alive = within[n].flatten().cpu()
        keep = int(m.sum())
        idx = torch.nonzero(alive).flatten()
        pick = idx[torch.randperm(idx.numel(), generator=generator)[:keep]]
        new = torch.zeros_like(alive)
        new[pick] = True
        out[n] = new.view_as(m).to(m.device)
    return Mask(out)


@dataclasses.dataclass(frozen=True)
class RewindMode:
    """Shared behaviour of the rewinding modes (duck-types RetrainMode)."""

    name: str
    weights: str  # "keep" | "rewind" | "reinit"
    random_mask: bool = False
    trains: bool = True
    dense_schedule: bool = True

    def prepare(self, net: nn.Module, mask: Mask, ctx: Any) -> Mask:
        spec: RunSpec = ctx.spec
        if self.random_mask:
            previous = ctx.extras.get("previous_mask") or Mask.ones_like(net, list(mask))
            mask = random_mask_like(mask, previous, seeding.generator(spec.seed, "random_mask", ctx.level))
        if self.weights == "rewind":
            load_weights(net, ctx.rewind_state(rewind_step(spec)))
        elif self.weights == "reinit":
            reinitialise(net, spec.seed, ctx.level)
        mask.apply(net)
        return mask

    def optimizer(self, spec: RunSpec) -> partial[Any]:
        return spec.train.optimizer.partial("train.optimizer")

    def scheduler(self, spec: RunSpec, steps_per_epoch: int | None = None) -> partial[Any] | None:
        if spec.train.scheduler is None:
            return None
        factory = spec.train.scheduler.partial("train.scheduler")
        if self.weights == "keep":  # lr_rewind: the last retrain.epochs epochs of the schedule
            skip = spec.train.epochs - self.epochs(spec)
        else:
            skip = rewind_step(spec) // steps_per_epoch if steps_per_epoch else 0
        return _advanced(factory, skip) if skip > 0 else factory

    def epochs(self, spec: RunSpec) -> int:
        return spec.retrain.epochs

    def validate(self, spec: RunSpec, dense_steps: int) -> None:
        if self.weights == "rewind" or (self.weights == "reinit" and getattr(spec.retrain.options, "branch", False)):
            check_rewind_step(spec, dense_steps)
        if self.random_mask and spec.schedule.name == "gradual":
            raise ConfigError("schedule=gradual with retrain=random_mask: the mask changes during training, "
                              "so there is no fixed mask to randomise; use retrain=finetune or lr_rewind")
        if getattr(spec.retrain.options, "branch", False) and spec.pruning.structure == "channel":
            raise ConfigError("retrain.branch=true needs masks (a lottery-ticket run); channel pruning has none")


LR_REWIND = RewindMode("lr_rewind", weights="keep")
WEIGHT_REWIND = RewindMode("weight_rewind", weights="rewind")
REINIT = RewindMode("reinit", weights="reinit")
RANDOM_MASK = RewindMode("random_mask", weights="rewind", random_mask=True)
