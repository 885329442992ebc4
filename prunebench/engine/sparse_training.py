"""Dynamic sparse training: a mask that drops and regrows weights while the network trains.

Three updaters share one schedule (JaxPruner's split: updater, sparsity distribution and
schedule are separate pieces):

- ``static``: the initial mask never moves (the control);
- ``set`` (Mocanu et al. 2018): drop the live weights of least magnitude, regrow as many
  at random among the dead ones;
- ``rigl`` (Evci et al. 2020): drop by magnitude, regrow the dead weights of largest
  dense-gradient magnitude. The dense gradient is the gradient of the update step's own
  batch, read before the loop masks it (``Classifier.grad_hooks``), and only at update steps.

Schedule (RigL, Sec. 3, Eq. 1 and "Update Schedule"): an update after every ``delta_t``-th
optimizer step ``t`` with ``0 < t < t_end``, ``t_end = end_fraction x`` the fit's steps;
each layer drops ``floor(f(t) n_l)`` of its ``n_l`` live weights, with the cosine-decayed
fraction ``f(t) = alpha/2 (1 + cos(pi t / t_end))``, and regrows exactly as many, so every
layer keeps the count its allocation gave it (ERK, uniform, global): sparsity is exact
after every update, per layer. A weight dropped and regrown in the same update keeps its
value (google-research/rigl ``reinit_when_same=False``); a connection that was dead starts
at exactly zero with its optimizer state (momentum, Adam moments) zeroed at its position,
as the reference code's ``reset_momentum`` does, so nothing built up while it was alive
before can push it. Between updates the loop enforces the mask as for every other method.

Randomness: SET's regrowth draws from ``seeding.generator(seed, "regrow", level, t)``,
a fresh stream per update, so a level redone after an interruption moves its mask
exactly as the uninterrupted one did. Ties (equal magnitudes, zero gradients) are broken
by position, as in every allocation.

The history (one record per update: step, drop fraction, weights regrown, live weights,
turnover against the level's first mask) becomes the level's ``dst.csv`` and its row's
``dst_*`` columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch

from prunebench import seeding
from prunebench.errors import ConfigError
from prunebench.pruning.mask import Mask

UPDATES = ("static", "set", "rigl")


def cosine_drop_fraction(t: int, alpha: float, t_end: int) -> float:
    """RigL's drop fraction at step ``t``: ``alpha/2 (1 + cos(pi t / t_end))``, 0 from ``t_end`` on."""
    if t >= t_end:
        return 0.0
    return alpha / 2.0 * (1.0 + math.cos(math.pi * t / t_end))


@dataclass(frozen=True)
class DSTPlan:
    update: str  # static | set | rigl
    delta_t: int
    alpha: float
    t_end: int  # no update at or after this optimizer step

    def steps(self) -> list[int]:
        """Optimizer steps after which the mask is updated (none for static)."""
        if self.update == "static":
            return []
        return list(range(self.delta_t, self.t_end, self.delta_t))

    def drop_fraction(self, t: int) -> float:
        return cosine_drop_fraction(t, self.alpha, self.t_end)


def make_dst_plan(options: Any, total_steps: int) -> DSTPlan:
    """The plan of a fit of ``total_steps`` optimizer steps; ConfigError if a moving mask gets no update."""
    update = str(options.update)
    delta_t, alpha = int(options.delta_t), float(options.drop_fraction)
    t_end = math.floor(float(options.end_fraction) * total_steps)
    plan = DSTPlan(update, delta_t, alpha, t_end)
    if update != "static" and not plan.steps():
        raise ConfigError(
            f"pruning.update={update!r} never updates the mask: training has {total_steps} optimizer steps "
            f"(retrain.epochs x batches per epoch), pruning.end_fraction={options.end_fraction!r} stops updates at "
            f"step {t_end} and pruning.delta_t={delta_t} puts the first one at step {delta_t}; lower pruning.delta_t "
            f"or raise retrain.epochs")
    return plan


def _keep_top(scores: torch.Tensor, candidates: torch.Tensor, count: int) -> torch.Tensor:
    """Flat bool mask of the ``count`` highest ``scores`` among ``candidates`` (ties: first by position)."""
    from prunebench.pruning.allocation import _Layer, _select

    n = scores.numel()
    alive = int(candidates.sum())
    if count > alive:
        raise ValueError(f"cannot keep {count} of {alive} candidates")
    layer = _Layer(scores.detach().float().reshape(-1), candidates.reshape(-1), alive)
    return _select([layer], n - count)[0]


@torch.no_grad()
def update_layer(weight: torch.Tensor, keep: torch.Tensor, fraction: float, grow_scores: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's drop-and-regrow: (new keep-mask, newly grown positions), both shaped like ``weight``.

    ``floor(fraction x live)`` live weights of least ``|weight|`` are dropped; as many
    positions outside the surviving set (the just-dropped ones included, as in the
    reference code) are regrown by highest ``grow_scores``. The live count is unchanged.
    ``grow_scores`` None: drop only (not used by the updaters; kept for tests of the count).
    """
    flat_keep = keep.reshape(-1).bool()
    live = int(flat_keep.sum())
    n_drop = int(fraction * live)  # floor, as google-research/rigl's int cast
    if n_drop == 0:
        return keep.bool().clone(), torch.zeros_like(keep, dtype=torch.bool)
    survivors = _keep_top(weight.abs(), flat_keep, live - n_drop)
    if grow_scores is None:
        return survivors.view_as(keep), torch.zeros_like(keep, dtype=torch.bool)
    grown = _keep_top(grow_scores.to(survivors.device), ~survivors, n_drop)
    new_keep = survivors | grown
    new_connections = grown & ~flat_keep
    return new_keep.view_as(keep), new_connections.view_as(keep)


@dataclass(eq=False)
class DynamicSparseTraining(pl.Callback):
    """Moves a Classifier's mask along ``plan`` while it trains (the fit calls it after optimizer steps)."""

    plan: DSTPlan
    seed: int
    level: int
    history: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self._pending = list(self.plan.steps())
        self._grads: dict[str, torch.Tensor] | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self.first_mask: Mask | None = None
        self.last_mask: Mask | None = None

    # ---- joining the fit ------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._optimizer = trainer.optimizers[0]
        self.first_mask = self.last_mask = pl_module.mask
        if self._pending:
            pl_module.step_hooks.append(self._step)
            if self.plan.update == "rigl":
                pl_module.grad_hooks.append(self._capture)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self._step in pl_module.step_hooks:
            pl_module.step_hooks.remove(self._step)
        if self._capture in pl_module.grad_hooks:
            pl_module.grad_hooks.remove(self._capture)
        self._grads = None

    def _capture(self, module: Any) -> None:
        """Before the loop masks the gradients of step t+1: keep them if t+1 updates the mask."""
        if self._pending and module.optimizer_steps + 1 == self._pending[0]:
            params = dict(module.net.named_parameters())
            self._grads = {n: params[n].grad.detach().abs().clone() for n in module.mask
                           if params[n].grad is not None}

    def _step(self, module: Any) -> None:
        t = module.optimizer_steps
        while self._pending and self._pending[0] <= t:
            step = self._pending.pop(0)
            self._update(module, step)

    # ---- one update -----------------------------------------------------------------------
    @torch.no_grad()
    def _update(self, module: Any, step: int) -> None:
        old: Mask = module.mask
        params = dict(module.net.named_parameters())
        fraction = self.plan.drop_fraction(step)
        gen = seeding.generator(self.seed, "regrow", self.level, step) if self.plan.update == "set" else None
        new, regrown, live = {}, 0, 0
        for name, keep in old.items():
            w = params[name]
            if self.plan.update == "set":
                scores = torch.rand(keep.shape, generator=gen).to(keep.device)
            else:
                grads = self._grads or {}
                if name not in grads:
                    raise RuntimeError(f"RigL update at step {step}: no dense gradient of {name} was captured")
                scores = grads[name]
            new_keep, grown = update_layer(w.detach(), keep.to(w.device), fraction, scores)
            if bool(grown.any()):
                w.masked_fill_(grown, 0.0)  # a new connection starts at exactly zero
                self._reset_state(w, grown)
            new[name] = new_keep.to(keep.device)
            regrown += int(grown.sum())
            live += int(keep.sum())
        self._grads = None
        mask = Mask(new)
        module.set_mask(mask)
        self.last_mask = mask
        self.history.append({"step": step, "drop_fraction": fraction, "regrown": regrown, "live": live,
                             "regrown_fraction": regrown / live if live else 0.0,
                             "turnover": turnover(self.first_mask, mask), "sparsity": mask.sparsity})

    def _reset_state(self, w: torch.Tensor, grown: torch.Tensor) -> None:
        """Zero every per-weight optimizer buffer (momentum, Adam moments) at the new connections."""
        state = self._optimizer.state.get(w, {}) if self._optimizer is not None else {}
        for v in state.values():
            if isinstance(v, torch.Tensor) and v.shape == w.shape:
                v.masked_fill_(grown.to(v.device), 0)

    # ---- what the level reports --------------------------------------------------------------
    def columns(self) -> dict[str, Any]:
        regrown = sum(h["regrown"] for h in self.history)
        return {
            "dst_update": self.plan.update,
            "dst_updates": len(self.history),
            "dst_delta_t": self.plan.delta_t,
            "dst_end_step": self.plan.t_end,
            "dst_regrown": regrown,
            # mean over updates of the fraction of live weights that were new connections
            "dst_regrown_fraction": (sum(h["regrown_fraction"] for h in self.history) / len(self.history)
                                     if self.history else 0.0),
            "dst_turnover": turnover(self.first_mask, self.last_mask) if self.first_mask is not None else 0.0,
        }


def turnover(first: Mask | None, last: Mask | None) -> float:
    """Fraction of ``first``'s live weights that are not live in ``last`` (0: the same mask)."""
    if first is None or last is None:
        return 0.0
    live = sum(int(m.sum()) for m in first.values())
    if not live:
        return 0.0
    kept = sum(int((first[n].to(last[n].device) & last[n]).sum()) for n in first)
    return 1.0 - kept / live
