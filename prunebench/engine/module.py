"""The LightningModule that trains classifiers and language models, with masks enforced exactly.

Language models are classifiers of every position: logits ``[B, T, V]`` and targets
``[B, T]`` are flattened to ``[B*T, V]`` / ``[B*T]`` (``token_loss``), so the loss is the
mean token cross-entropy and "accuracy" the next-token accuracy; classification takes the
same code path unchanged.

Masks never regrow: after every optimizer step the pruned weights are multiplied by
their mask, and before it their gradients are. Zeroing the gradients keeps Adam's
moments at zero on pruned positions (so nothing builds up to leak back), and re-zeroing
the weights after the step removes what weight decay, momentum or any other optimizer
rule may have written there. Both are one fused ``_foreach_mul_`` per step.

Optimization is manual (``automatic_optimization = False``): the step is four lines
here, and Lightning's closure machinery cost ~15% per step on small models
(benchmarks/overhead.py). Under mixed precision the Lightning optimizer wrapper and
``manual_backward`` are used so gradient scaling still happens.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from prunebench.pruning.mask import Mask

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]

#: What a data module's ``task`` may be. Classification: logits ``[B, C]``, targets ``[B]``.
#: Language modelling: logits ``[B, T, V]``, targets ``[B, T]`` (the next tokens); losses and
#: accuracies are then per token ("accuracy" = next-token accuracy, loss = mean token
#: cross-entropy, perplexity = exp(loss)).
TASKS = ("classification", "language_modeling")


def task_of(dm: Any) -> str:
    """The task a data module declares (``dm.task``), ``classification`` if it declares none."""
    return getattr(dm, "task", "classification")


def _flat(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``([N, V], [N])`` from sequence logits ``[B, T, V]``; classification passes through."""
    if logits.dim() == 3:
        return logits.flatten(0, 1), y.flatten()
    return logits, y


def token_loss(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy for ``[B, C]`` / ``[B]`` (classification, unchanged) or ``[B, T, V]`` / ``[B, T]``."""
    logits, y = _flat(logits, y)
    return nn.functional.cross_entropy(logits, y, reduction=reduction)


def perplexity(loss: float) -> float:
    """``exp(mean token cross-entropy)``; inf when it overflows, nan for nan."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


class DivergedError(RuntimeError):
    """Training produced a non-finite loss, or one exploding far beyond a uniform guess's."""


#: an epoch whose mean training cross-entropy exceeds this many times ln(num_classes) (the
#: loss of a uniform guess) has diverged; legitimate training never comes near it.
DIVERGENCE_FACTOR = 100.0


class Classifier(pl.LightningModule):
    """Cross-entropy classification of ``net`` with optional exact masking.

    ``optimizer`` and ``scheduler`` are partials (``functools.partial(torch.optim.Adam,
    lr=...)``) completed with the parameters here. The best validation weights (highest
    accuracy, or lowest loss with ``select="best_loss"``) are kept in memory and restored
    after fit (select on validation, never on test).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        mask: Mask | None = None,
        select: str = "best",
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.select = select
        self.mask = mask
        self._masked: list[tuple[nn.Parameter, torch.Tensor]] = []
        self.history: list[dict[str, float]] = []
        self.best_val_acc = -math.inf
        self.best_val_loss = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self._loss_sum: torch.Tensor | None = None
        self._classes: int | None = None  # logits per sample, seen at the first training step
        self._steps = 0
        #: use the optimizer's fused kernel when it has one and none was chosen (set by fit())
        self.fused_optimizer = True
        self.optimizer_steps = 0  # over the whole fit (in-training pruning schedules count these)
        #: called with this module after every optimizer step (in-training pruning schedules)
        self.step_hooks: list[Callable[[Classifier], None]] = []
        #: called with this module after backward, before the gradients are masked (RigL's dense gradients)
        self.grad_hooks: list[Callable[[Classifier], None]] = []
        self._val_correct: torch.Tensor | None = None
        self._val_loss: torch.Tensor | None = None
        self._val_count = 0
        self.automatic_optimization = False
        self._opt: Any = None
        self._plain_precision = True

    # ---- masking -----------------------------------------------------------------------
    def _bind_mask(self) -> None:
        self._masked = []
        if self.mask is None:
            return
        params = dict(self.net.named_parameters())
        for name, m in self.mask.items():
            p = params[name]
            self._masked.append((p, m.to(device=p.device, dtype=p.dtype)))

    @torch.no_grad()
    def apply_mask(self) -> None:
        if self._masked:
            torch._foreach_mul_([p for p, _ in self._masked], [m for _, m in self._masked])

    @torch.no_grad()
    def mask_grads(self) -> None:
        grads = [(p.grad, m) for p, m in self._masked if p.grad is not None]
        if grads:
            torch._foreach_mul_([g for g, _ in grads], [m for _, m in grads])

    def set_mask(self, mask: Mask) -> None:
        """Replace the enforced mask mid-fit (in-training pruning) and zero what it removes.

        Selection restarts: a checkpoint from before the mask changed is less sparse than
        the run claims, so only epochs validated under the newest mask may be restored.
        """
        self.mask = mask
        self._bind_mask()
        self.apply_mask()
        self.best_val_acc = -math.inf
        self.best_val_loss = math.inf
        self.best_state = None

    def on_fit_start(self) -> None:
        self._bind_mask()
        self.apply_mask()

    def on_train_start(self) -> None:
        precision = str(self.trainer.precision)
        self._plain_precision = precision in ("32-true", "32", "64-true", "64")
        self._opt = self.optimizers(use_pl_optimizer=not self._plain_precision)

    # ---- training ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        """One optimizer step per ``(x, y)`` batch; a list of batches is K steps in a row.

        :func:`prunebench.engine.fit.fit` hands Lightning groups of ``steps_per_call``
        batches (Lightning's per-batch bookkeeping then runs once per group, not per step);
        the optimizer still steps once per batch, in the same order, and ``step_hooks``
        (in-training pruning) still run after every optimizer step.
        """
        if isinstance(batch, list):
            loss = None
            for x, y in batch:
                if self.trainer.should_stop:  # max_steps reached inside the group
                    break
                loss = self._step(x, y)
            return loss
        x, y = batch
        return self._step(x, y)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opt = self._opt
        opt.zero_grad(set_to_none=True)
        logits = self.net(x)
        if self._classes is None:  # once: the divergence limit scales with ln(classes)
            self._classes = logits.shape[-1]
        loss = token_loss(logits, y)
        if self._plain_precision:
            loss.backward()
        else:
            self.manual_backward(loss)
        for hook in self.grad_hooks:
            hook(self)
        self.mask_grads()
        opt.step()
        self.apply_mask()
        self.optimizer_steps += 1
        for hook in self.step_hooks:
            hook(self)
        # Under manual optimization with the raw optimizer, Lightning's global_step stays 0,
        # so Trainer(max_steps=...) would never stop: honour it here (rewinding replays
        # exactly k dense steps through it).
        max_steps = self.trainer.max_steps
        if max_steps is not None and max_steps > 0 and self.optimizer_steps >= max_steps:
            self.trainer.should_stop = True
        # Accumulate on device; checking finiteness every step would force a GPU sync.
        d = loss.detach()
        self._loss_sum = d if self._loss_sum is None else self._loss_sum + d
        self._steps += 1
        return loss

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._steps = None, 0

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is not None:
            for sch in schedulers if isinstance(schedulers, list) else [schedulers]:
                sch.step()
        train_loss = float(self._loss_sum) / max(self._steps, 1) if self._loss_sum is not None else math.nan
        if not math.isfinite(train_loss):
            raise DivergedError(f"training loss became {train_loss} in epoch {self.current_epoch}")
        # Exploding without overflowing (e.g. Adam at lr=10): an epoch's mean cross-entropy
        # far above that of a uniform guess, ln(C), means the logits blew up.
        classes = self._classes or 2
        limit = DIVERGENCE_FACTOR * math.log(max(classes, 2))
        if train_loss > limit:
            raise DivergedError(
                f"training loss {train_loss:.4g} in epoch {self.current_epoch} exceeds {DIVERGENCE_FACTOR:g} x "
                f"ln({classes} classes) = {limit:.4g}: the logits exploded (learning rate too high?)")
        if self.history and self.history[-1]["epoch"] == self.current_epoch:
            self.history[-1]["train_loss"] = train_loss
        else:
            self.history.append({"epoch": self.current_epoch, "train_loss": train_loss})
        if self.select == "last" or not self._has_val:
            self.best_state = None  # keep the final weights

    @property
    def _has_val(self) -> bool:
        return self.trainer is not None and self.trainer.num_val_batches not in ([], [0]) and bool(
            sum(self.trainer.num_val_batches) if isinstance(self.trainer.num_val_batches, list) else self.trainer.num_val_batches
        )

    # ---- validation (selection) -----------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_correct, self._val_loss, self._val_count = None, None, 0

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits, y = _flat(self.net(x), y)
        loss = nn.functional.cross_entropy(logits, y, reduction="sum")
        correct = (logits.argmax(1) == y).sum()
        self._val_correct = correct if self._val_correct is None else self._val_correct + correct
        self._val_loss = loss if self._val_loss is None else self._val_loss + loss
        self._val_count += y.numel()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._val_count:
            return
        val_acc = float(self._val_correct) / self._val_count
        val_loss = float(self._val_loss) / self._val_count
        self.history.append({"epoch": self.current_epoch, "val_acc": val_acc, "val_loss": val_loss})
        self.consider(val_acc, val_loss)

    def consider(self, val_acc: float, val_loss: float) -> bool:
        """Keep the current weights if this validation is the best so far; True if kept.

        ``select``: ``best`` — highest validation accuracy (ties keep the earlier epoch);
        ``best_loss`` — lowest validation loss (language models: lowest perplexity);
        ``last`` — the final weights (nothing kept here).
        """
        if self.select == "last":
            self.best_val_acc = val_acc
            return False
        better = val_acc > self.best_val_acc if self.select == "best" else val_loss < self.best_val_loss
        if better:
            self.best_val_acc, self.best_val_loss = val_acc, val_loss
            self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        return better

    def on_fit_end(self) -> None:
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)
        self.apply_mask()

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.optimizer_factory, self.net.parameters(), fused=self.fused_optimizer)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}}


def build_optimizer(factory: OptimizerFactory, params: Any, *, fused: bool = True) -> torch.optim.Optimizer:
    """``factory(params)``, with ``fused=True`` when the optimizer has a fused kernel.

    Only an implementation choice (same update rule; last-bit differences in rounding), so
    it is not part of a run's identity; an explicit ``fused``/``foreach`` in the config wins.
    On a CPU it matters beyond the usual speedup: the for-loop Adam computes
    ``exp_avg_sq.sqrt()``, and a vector ``sqrt`` over exact zeros (the moments of pruned
    weights, whose gradients are masked) takes a slow path on some x86 CPUs (~7x slower
    than over nonzero values, measured on AVX-512); the fused kernel does not.
    """
    params = list(params)
    chosen = getattr(factory, "keywords", None) or {}
    cls = getattr(factory, "func", factory)
    if fused and "fused" not in chosen and "foreach" not in chosen and _has_fused(cls):
        try:
            return factory(params, fused=True)
        except (RuntimeError, ValueError, TypeError):  # a dtype/device the fused kernel lacks
            pass
    return factory(params)


def _has_fused(cls: Any) -> bool:
    import inspect

    try:
        return isinstance(cls, type) and "fused" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


@torch.inference_mode()
def evaluate(net: nn.Module, loader: Any, device: torch.device | str | None = None) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``net`` over ``loader``; plain PyTorch, no Trainer.

    For sequence logits ``[B, T, V]`` both are per token (next-token accuracy, mean token
    loss; :func:`perplexity` of the loss is the perplexity).
    """
    was_training = net.training
    net.eval()
    dev = torch.device(device) if device is not None else next(net.parameters()).device
    correct = torch.zeros((), device=dev)
    loss = torch.zeros((), device=dev)
    count = 0
    try:
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            logits, y = _flat(net(x), y)
            loss += nn.functional.cross_entropy(logits, y, reduction="sum").float()
            correct += (logits.argmax(1) == y).sum()
            count += y.numel()
    finally:
        net.train(was_training)
    if count == 0:
        return math.nan, math.nan
    return float(correct) / count, float(loss) / count


def clone_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def copy_net(net: nn.Module) -> nn.Module:
    return copy.deepcopy(net)
