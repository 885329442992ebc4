"""The prune–retrain loop over the levels of a schedule, for one run.

Level 0 is the dense model. Level k prunes to the schedule's k-th sparsity (from the
weights selected at level k-1), measures accuracy right after pruning, retrains with the
run's retrain mode, and records one results row. Rows, masks and weights are written
after every level, so an interrupted run resumes from its last finished level and a
finished one is skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunebench import seeding
from prunebench.data.eval_texts import eval_columns
from prunebench.engine import preflight
from prunebench.engine.dense import DenseModel, train_dense
from prunebench.engine.fit import batch_size, device_of, fit
from prunebench.engine.module import Classifier, DivergedError, evaluate
from prunebench.engine.retrain import RETRAIN_MODES, RetrainContext
from prunebench.engine.rows import LevelRows, early_stop_columns, ok_levels
from prunebench.engine.structures import LevelInputs, Structure, TicketBranch, structure_for, ticket_spec
from prunebench.log import Logger
from prunebench.log import log as default_log
from prunebench.loggers import finish as finish_loggers
from prunebench.loggers import level_loggers, summarise_level
from prunebench.models import build_model
from prunebench.pruning.mask import Mask
from prunebench.results.store import RunOutcome  # noqa: F401  (re-exported)
from prunebench.results.store import (DONE, atomic_write_text, check_writable_root, is_finished, level_dir,
                                      lost_results, read_rows, reopen, run_dir, write_table)
from prunebench.schedules import per_round_rate
from prunebench.spec import RunSpec

#: Called after every finished level with (level, row); may raise to stop the run early
#: (an Optuna pruner raises optuna.TrialPruned, recorded as status "pruned").
LevelHook = Callable[[int, dict[str, Any]], None]


class Run:
    """One run: its spec, data, model, structure and folder. ``prepare`` validates everything first."""

    def __init__(self, spec: RunSpec, log: Logger = default_log, on_level: LevelHook | None = None,
                 progress: Any = None, mlflow_parent: str | None = None) -> None:
        self.spec = spec
        self.log = log
        self.on_level = on_level
        self.progress = progress  # prunebench.progress.Progress (live display) or None
        self.mlflow_parent = mlflow_parent
        self.path = run_dir(spec.root, spec.run_id)
        self.device = device_of(spec.trainer)
        self.dm: Any = None
        self.targets: list[str] = []
        self.structure: Structure = structure_for(spec)
        self.mode = RETRAIN_MODES.get(spec.retrain.name)
        self.ticket: RunSpec | None = ticket_spec(spec)
        if self.ticket is not None:
            self.structure = TicketBranch(spec, self.ticket)
        self.prepared = False  # execute() runs prepare() first unless it ran
        self._rows: LevelRows | None = None

    @property
    def rows(self) -> LevelRows:
        """Measurement and row assembly (engine/rows.py), once the data module is built."""
        if self._rows is None:
            self._rows = LevelRows(self.spec, self.dm, self.device, self.mode, self.structure, self.path)
        return self._rows

    # ---- preflight: everything that can fail on bad input, before any training ---------
    def prepare(self) -> None:
        """Everything that can fail on bad input, before any training (engine/preflight.py)."""
        spec = self.spec
        spec.check_deep()
        check_writable_root(spec.root)
        if spec.trainer.threads:
            torch.set_num_threads(spec.trainer.threads)
        self.dm = preflight.load_data(spec, self.device)
        net = self.build_net()
        self.targets = preflight.check_model(spec, self.dm, net, self.log)
        preflight.check_training(self, net)
        if self.ticket is not None:
            Run(self.ticket, self.log).prepare()
        self.prepared = True

    def _retrain_steps(self) -> int:
        """Optimizer steps of one level's retraining: retrain.epochs of retrain.batch_size
        batches, capped by retrain.max_steps."""
        steps = self.mode.epochs(self.spec) * self._steps_per_epoch()
        cap = self.spec.retrain.max_steps
        return min(steps, cap) if cap else steps

    def build_net(self) -> nn.Module:
        """The model at initialisation: drawn on the (seed, "init") stream, the caller's RNG untouched."""
        with seeding.scoped(self.spec.seed, "init"):
            return build_model(self.spec.model.name, tuple(self.dm.input_shape), self.dm.num_classes,
                               **self.spec.model.kwargs)

    # ---- execution ----------------------------------------------------------------------
    def execute(self) -> RunOutcome:
        spec = self.spec
        if (self.path / DONE).exists():
            lost = lost_results(self.path)
            if lost is None:
                return RunOutcome(spec.run_id, self.path, read_rows(self.path), True, "ok")
            self.log(f"  [{spec.run_id}] marked finished but {lost}: redoing it from its last intact level")
            reopen(self.path)
        if not self.prepared:
            self.prepare()
        if self.ticket is not None:
            # A control branch reads the ticket run's masks: that run goes first (or is found finished).
            ticket = Run(self.ticket, self.log)
            if not is_finished(ticket.path):
                self.log(f"  [{spec.run_id}] {spec.retrain.name} branches from the ticket run {ticket.path}")
                ticket.execute()
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.json", json.dumps(self.rows.run_record(self.targets, self.ticket),
                                                                indent=2, default=str))
        rows = read_rows(self.path)
        done_levels = ok_levels(rows)
        status = "ok"
        try:
            dense = train_dense(spec, self.dm, self.build_net, self.log, self.progress)
            status = self._levels(dense, done_levels)
        except DivergedError as exc:
            status = "diverged"
            self.record_failure(status, str(exc))
        rows = read_rows(self.path)
        atomic_write_text(self.path / DONE, dt.datetime.now(dt.timezone.utc).isoformat())
        return RunOutcome(spec.run_id, self.path, rows, False, status)

    def record_failure(self, status: str, reason: str) -> None:
        """A failed or diverged run: one row at its first unfinished level says so."""
        self.rows.failure(status, reason)
        self.log(f"run {self.spec.run_id} {status}: {reason}")

    def _levels(self, dense: DenseModel, done_levels: set[int]) -> str:
        """Level 0 (the dense model), then every level of the schedule; a finished level is
        loaded, not redone."""
        net = self.build_net().to(self.device)
        net.load_state_dict(dense.state)
        example = self.rows.example_batch()
        mask = Mask.ones_like(net, self.targets)
        self.rows.measure_dense(net, mask, example)
        self.structure.setup(net, example)
        if 0 not in done_levels:
            self._dense_level(net, mask, example, dense)
        for k, target in enumerate(self.spec.schedule.levels(), start=1):
            loaded = self.structure.load(level_dir(self.path, k), net, self.build_net) if k in done_levels else None
            net, mask = loaded if loaded is not None else self._level(k, target, net, mask, dense, example)
        return "ok"

    def _dense_level(self, net: nn.Module, mask: Mask, example: torch.Tensor, dense: DenseModel) -> None:
        val_acc, val_loss = evaluate(net, self.dm.val_dataloader(), self.device)
        test_acc, test_loss = evaluate(net, self.dm.test_dataloader(), self.device)
        row = self.rows.base_row(0, 0.0) | self.rows.cost_row(net, mask, example, dense_level=True) | {
            "val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc, "test_loss": test_loss,
            "acc_pruned": test_acc, "acc_pruned_val": val_acc, **self.rows.task_columns(val_loss, test_loss, test_loss),
            **eval_columns(self.dm, net, self.device),
            "train_seconds": 0.0 if dense.meta.get("cached") else dense.meta.get("train_seconds"),
            "epochs_finetune": 0, "batch_size_finetune": None,
        }
        self.rows.append_row(row)
        Structure(self.spec).save_dense(level_dir(self.path, 0), net, mask, dense)
        summarise_level(level_loggers(self.spec, 0, self.mlflow_parent), row)
        self._finish_level(0, row)

    def _level(self, k: int, target: float, net: nn.Module, mask: Mask, dense: DenseModel,
               example: torch.Tensor) -> tuple[nn.Module, Mask]:
        """One level: prune, evaluate, retrain, record (its row, epochs and weights)."""
        spec, start, previous_mask = self.spec, time.perf_counter(), mask
        inputs = LevelInputs(k, seeding.generator(spec.seed, "criterion", k), self._calibration,
                             round_rate=per_round_rate(spec.schedule.target_sparsity, spec.schedule.iterations))
        net, mask = self.structure.prune_level(net, mask, target, inputs)
        acc_pruned_val, _ = evaluate(net, self.dm.val_dataloader(), self.device)
        acc_pruned, loss_pruned = evaluate(net, self.dm.test_dataloader(), self.device)
        if isinstance(self.structure, TicketBranch):
            previous_mask = Mask.ones_like(net, list(mask))  # a branch's random mask is drawn afresh
        net, mask, result, loggers = self._retrain(k, net, mask, previous_mask, dense, inputs)
        val_acc, val_loss = evaluate(net, self.dm.val_dataloader(), self.device)
        test_acc, test_loss = evaluate(net, self.dm.test_dataloader(), self.device)
        # An empty validation split (data.val_size=0, train.select=last) has a NaN val_loss.
        if not math.isfinite(test_loss) or (not math.isfinite(val_loss) and self.dm.sizes["val"] > 0):
            raise DivergedError(f"level {k}: evaluation loss is {test_loss}")
        row = self.rows.base_row(k, target) | self.rows.cost_row(net, mask, example) | {
            "val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc, "test_loss": test_loss,
            "acc_pruned": acc_pruned, "acc_pruned_val": acc_pruned_val,
            **self.rows.task_columns(val_loss, test_loss, loss_pruned), **eval_columns(self.dm, net, self.device),
            "train_seconds": time.perf_counter() - start, "epochs_finetune": result.epochs,
        }
        row |= early_stop_columns(result.history, self._steps_per_epoch()) | self.structure.level_columns()
        write_table(level_dir(self.path, k) / "epochs.csv", result.history or [{"epoch": 0}])
        self.structure.save(level_dir(self.path, k), net, mask)
        self.rows.append_row(row)
        summarise_level(loggers, row)
        self._finish_level(k, row)
        return net, mask

    def _retrain(self, k: int, net: nn.Module, mask: Mask, previous_mask: Mask, dense: DenseModel,
                 inputs: LevelInputs) -> tuple[nn.Module, Mask, Any, list[Any]]:
        """Retrain a pruned level as the retrain mode says (its weights, optimizer and schedule):
        the network, its final mask, the fit's result and the level's loggers."""
        spec, mode, steps_per_epoch = self.spec, self.mode, self._steps_per_epoch()
        ctx = RetrainContext(spec, k, dense.init_state, dense.rewind_state, inputs.generator,
                             extras={"previous_mask": previous_mask, "steps_per_epoch": steps_per_epoch})
        mask = mode.prepare(net, mask, ctx)
        mask.apply(net)
        module = Classifier(net, mode.optimizer(spec), mode.scheduler(spec, steps_per_epoch),
                            mask=mask if self.structure.enforce_mask else None, select=spec.train.select)
        if self.progress is not None:
            self.progress.start_level(k, epochs=mode.epochs(spec), steps_per_epoch=steps_per_epoch)
        loggers = level_loggers(spec, k, self.mlflow_parent)
        try:
            with seeding.scoped(spec.seed, "train", k), batch_size(self.dm, spec.retrain.batch_size):
                callbacks = self.structure.training_callbacks(k)
                result = fit(module, self.dm, spec.trainer, epochs=mode.epochs(spec), max_steps=spec.retrain.max_steps,
                             callbacks=callbacks or None, loggers=loggers, progress=self.progress)
        except BaseException:
            finish_loggers(loggers, "failed")
            raise
        return module.net, self.structure.level_mask(module, mask), result, loggers

    def _steps_per_epoch(self) -> int:
        """Optimizer steps per retraining epoch (batches of retrain.batch_size)."""
        with batch_size(self.dm, self.spec.retrain.batch_size):
            return len(self.dm.train_dataloader())

    def _finish_level(self, k: int, row: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.end_level(row)
        self.log(self.rows.progress_line(k, row))
        if self.on_level:
            self.on_level(k, row)

    def _calibration(self) -> list[Any]:
        n = self.spec.pruning.calibration_batches
        return self.dm.calibration_batches(n) if n else []



def run(spec: RunSpec, log: Logger = default_log, on_level: LevelHook | None = None) -> RunOutcome:
    """Prepare (validate) and execute one run; skipped if already finished."""
    return Run(spec, log, on_level).execute()
