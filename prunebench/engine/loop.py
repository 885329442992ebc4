"""The prune–retrain loop over the levels of a schedule, for one run.

Level 0 is the dense model. Level k prunes to the schedule's k-th sparsity (from the
weights selected at level k-1), measures accuracy right after pruning, retrains with the
run's retrain mode, and records one results row. Rows, masks and weights are written
after every level, so an interrupted run resumes from its last finished level and a
finished one is skipped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from prunebench import metrics, seeding
from prunebench.data import build_datamodule
from prunebench.data.base import describe_preprocessing, preprocessing_of
from prunebench.data.eval_texts import eval_columns
from prunebench.data.eval_texts import provenance as eval_provenance
from prunebench.engine.dense import DenseModel, check_loadable, load_state, save_state, train_dense
from prunebench.engine.fit import device_of, fit
from prunebench.engine.module import Classifier, DivergedError, evaluate, perplexity, task_of
from prunebench.engine.retrain import RETRAIN_MODES, RetrainContext
from prunebench.engine.structures import LevelInputs, Structure, TicketBranch, structure_for, ticket_spec
from prunebench.errors import ConfigError
from prunebench.export import net_record
from prunebench.identity import display_name
from prunebench.log import Logger
from prunebench.log import log as default_log
from prunebench.models import build_model
from prunebench.pruning.mask import Mask
from prunebench.schedules import per_round_rate
from prunebench.pruning.targets import prunable_weights
from prunebench.results import schema
from prunebench.results.store import RunOutcome  # noqa: F401  (re-exported)
from prunebench.results.store import (DONE, ROWS, atomic_write_text, check_writable_root, is_finished, level_dir,
                                      lost_results, read_rows, run_dir, write_table)
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

    # ---- preflight: everything that can fail on bad input, before any training ---------
    def prepare(self) -> None:
        spec = self.spec
        spec.check_deep()
        check_writable_root(spec.root)
        if spec.trainer.threads:
            torch.set_num_threads(spec.trainer.threads)
        self.dm = build_datamodule(spec.data.name, seed=spec.seed, root=spec.data.kwargs.get("root", spec.data_dir),
                                   **{k: v for k, v in spec.data.kwargs.items() if k != "root"})
        try:
            self.dm.prepare_data()
        except OSError as exc:  # a download that cannot reach its server (urllib's URLError is an OSError)
            if isinstance(exc, ConfigError):
                raise
            root = spec.data.kwargs.get("root", spec.data_dir)
            raise ConfigError(f"data={spec.data.name!r}: could not get the data set into data.root={str(root)!r} "
                              f"({type(exc).__name__}: {getattr(exc, 'reason', exc)}); put its files there, or "
                              f"check the network if data.download=true") from None
        self.dm.setup("fit")
        self.dm.to(self.device)
        check_task_fits(spec, self.dm)
        net = self.build_net()
        check_layer_sizes(spec, net)
        targets = prunable_weights(net, prune_output=spec.pruning.prune_output, prune_first=spec.pruning.prune_first,
                                   prune_bias=spec.pruning.prune_bias)
        if not targets:
            raise ConfigError(f"model={spec.model.name!r} has no prunable Conv/Linear weights with these pruning options")
        self.targets = [t.param_name for t in targets]
        check_levels_prune(spec, sum(t.numel for t in targets))
        if spec.train.init_from is not None:  # a pretrained start must load into this model, now
            from prunebench.checkpoints import load_init

            load_init(net, spec.train.init_from)
            # A pretrained model judged on inputs it never saw is silently wrong: say what it gets.
            self.log(f"  [{spec.run_id}] level 0: the pretrained model {spec.train.init_from} receives "
                     f"{describe_preprocessing(preprocessing_of(self.dm))} (set by data.normalize; none = as loaded, "
                     "images in [0, 1])")
        self.structure.validate(net, targets, self._example_batch())
        steps_per_epoch = len(self.dm.train_dataloader())
        dense_steps = spec.train.max_steps or spec.train.epochs * steps_per_epoch
        if spec.train.max_steps:
            dense_steps = min(spec.train.max_steps, spec.train.epochs * steps_per_epoch)
        self.mode.validate(spec, dense_steps)
        self.structure.check_training(self._retrain_steps())
        if spec.schedule.name == "gradual":
            from prunebench.pruning.criteria import get_criterion

            plan = self._gradual_plan()
            if get_criterion(spec.pruning.method).learner is not None and plan.initial > 0:
                raise ConfigError(f"schedule.initial_sparsity={plan.initial!r} with pruning.method="
                                  f"{spec.pruning.method!r}: learned scores start at zero, so the level cannot start "
                                  f"pruned; set schedule.initial_sparsity=0")
        # Existing artifacts must load: fail now, not after an hour of training.
        from prunebench.engine.dense import dense_dir

        for name in ("init.pt", "final.pt"):
            check_loadable(net, dense_dir(spec) / name, "dense checkpoint")
        if self.path.exists():
            if lost_results(self.path) is None:  # lost rows are set aside by execute()
                read_rows(self.path)
            for k in range(1, len(spec.schedule.levels()) + 1):
                self.structure.check_files(level_dir(self.path, k), net, self.build_net)
        if self.ticket is not None:
            Run(self.ticket, self.log).prepare()

    @contextlib.contextmanager
    def _retrain_batches(self) -> Iterator[None]:
        """Training batches of retrain.batch_size inside the block (dense training keeps data.batch_size)."""
        bs = self.spec.retrain.batch_size
        old = self.dm.batch_size
        if bs is not None:
            self.dm.batch_size = bs
        try:
            yield
        finally:
            self.dm.batch_size = old

    def _retrain_steps(self) -> int:
        """Optimizer steps of one level's retraining: retrain.epochs of retrain.batch_size
        batches, capped by retrain.max_steps."""
        with self._retrain_batches():
            steps = self.mode.epochs(self.spec) * len(self.dm.train_dataloader())
        cap = self.spec.retrain.max_steps
        return min(steps, cap) if cap else steps

    def _gradual_plan(self) -> Any:
        from prunebench.engine.gradual import make_plan

        return make_plan(self.spec.schedule, self._retrain_steps())

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
            self._reopen(lost)
        if self.ticket is not None:
            # A control branch reads the ticket run's masks: that run goes first (or is found finished).
            ticket = Run(self.ticket, self.log)
            if not is_finished(ticket.path):
                self.log(f"  [{spec.run_id}] {spec.retrain.name} branches from the ticket run {ticket.path}")
                ticket.prepare()
                ticket.execute()
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.json", json.dumps(
            {"run_id": spec.run_id, "dense_id": spec.dense_id, "identity": spec.identity(),
             "label": spec.curve_label(), "describe": spec.describe(), "prunable": self.targets,
             "ticket_run_id": self.ticket.run_id if self.ticket else None,
             "levels": len(spec.schedule.levels()),  # rows.csv holds levels 0..this (checked on read)
             # how to rebuild the dense network (prunebench-export)
             "net": net_record(spec.model.name, dict(spec.model.kwargs), self.dm.input_shape, self.dm.num_classes),
             # what the model receives and how to rebuild the data (prunebench-export measures the artifact)
             "preprocessing": preprocessing_of(self.dm),
             "data": {"name": spec.data.name, "root": str(Path(spec.data.kwargs.get("root", spec.data_dir)).absolute()),
                      "kwargs": {k: v for k, v in spec.data.kwargs.items() if k != "root"},
                      "class_names": getattr(self.dm, "class_names", None)},
             **eval_provenance(self.dm)},  # calibration and evaluation sources
            indent=2, default=str))
        rows = read_rows(self.path)
        done_levels = _ok_levels(rows)
        status = "ok"
        try:
            dense = train_dense(spec, self.dm, self.build_net, self.log, self.progress)
            status = self._levels(dense, done_levels)
        except DivergedError as exc:
            status = "diverged"
            self._record_failure(status, str(exc))
        rows = read_rows(self.path)
        atomic_write_text(self.path / DONE, dt.datetime.now(dt.timezone.utc).isoformat())
        return RunOutcome(spec.run_id, self.path, rows, False, status)

    def _reopen(self, lost: str) -> None:
        """A run marked finished whose results are lost is not finished: redo what is missing.

        Its DONE marker goes; an empty or unreadable rows.csv is kept aside as rows.csv.lost
        (nothing is deleted). Resume then keeps every level rows.csv still records and whose
        files load, and redoes the rest (bit-identically; the dense model comes from the cache).
        """
        self.log(f"  [{self.spec.run_id}] marked finished but {lost}: redoing it from its last intact level")
        rows = self.path / ROWS
        if rows.exists() or rows.is_symlink():
            try:
                readable = bool(rows.read_bytes().strip())
            except OSError:
                readable = False
            if not readable:
                os.replace(rows, self.path / f"{ROWS}.lost")
        (self.path / DONE).unlink(missing_ok=True)

    def _record_failure(self, status: str, reason: str) -> None:
        done = _ok_levels(read_rows(self.path)) if self.path.exists() else set()
        levels = [0] + list(range(1, len(self.spec.schedule.levels()) + 1))
        pending = [k for k in levels if k not in done]
        if pending:
            k = pending[0]
            target = 0.0 if k == 0 else self.spec.schedule.levels()[k - 1]
            row = self._base_row(k, target) | {"status": status, "error": reason}
            self._append_row(row)
        self.log(f"run {self.spec.run_id} {status}: {reason}")

    def _levels(self, dense: DenseModel, done_levels: set[int]) -> str:
        spec = self.spec
        net = self.build_net().to(self.device)
        net.load_state_dict(dense.state)
        example = self._example_batch()
        self._dense_cost = self._cost(net, None, example)
        mask = Mask.ones_like(net, self.targets)
        self._dense_prunable = mask.numel
        self.structure.setup(net, example)
        if 0 not in done_levels:
            val_acc, val_loss = evaluate(net, self.dm.val_dataloader(), self.device)
            test_acc, test_loss = evaluate(net, self.dm.test_dataloader(), self.device)
            row = self._base_row(0, 0.0) | self._cost_row(net, mask, example, dense_level=True) | {
                "val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc, "test_loss": test_loss,
                "acc_pruned": test_acc, "acc_pruned_val": val_acc, **self._task_columns(val_loss, test_loss, test_loss),
                **eval_columns(self.dm, net, self.device),
                "train_seconds": 0.0 if dense.meta.get("cached") else dense.meta.get("train_seconds"),
                "epochs_finetune": 0, "batch_size_finetune": None,
            }
            self._append_row(row)
            self._save_dense_level(net, mask, dense)
            self._log_level(0, row)
            self._finish_level(0, row)
        mode = self.mode
        levels = spec.schedule.levels()
        round_rate = per_round_rate(spec.schedule.target_sparsity, spec.schedule.iterations)
        with self._retrain_batches():
            steps_per_epoch = len(self.dm.train_dataloader())
        for k, target in enumerate(levels, start=1):
            ld = level_dir(self.path, k)
            if k in done_levels:
                loaded = self.structure.load(ld, net, self.build_net)
                if loaded is not None:
                    net, mask = loaded
                    continue
            start = time.perf_counter()
            previous_mask = mask
            inputs = LevelInputs(k, seeding.generator(spec.seed, "criterion", k), self._calibration,
                                 round_rate=round_rate)
            gradual = self._gradual(net, inputs) if spec.schedule.name == "gradual" else None
            # Gradual: the level starts at the plan's initial sparsity; the fine-tune raises it.
            net, mask = self.structure.prune(net, mask, gradual.plan.initial if gradual else target, inputs)
            acc_pruned_val, _ = evaluate(net, self.dm.val_dataloader(), self.device)
            acc_pruned, loss_pruned = evaluate(net, self.dm.test_dataloader(), self.device)
            if isinstance(self.structure, TicketBranch):
                previous_mask = Mask.ones_like(net, list(mask))  # a branch's random mask is drawn afresh
            ctx = RetrainContext(spec, k, dense.init_state, dense.rewind_state, inputs.generator,
                                 extras={"previous_mask": previous_mask, "steps_per_epoch": steps_per_epoch})
            mask = mode.prepare(net, mask, ctx)
            mask.apply(net)
            module = Classifier(net, mode.optimizer(spec), mode.scheduler(spec, steps_per_epoch),
                                mask=mask if self.structure.enforce_mask else None, select=spec.train.select)
            if self.progress is not None:
                self.progress.start_level(k, epochs=mode.epochs(spec), steps_per_epoch=steps_per_epoch)
            loggers = self._loggers(k)
            try:
                with seeding.scoped(spec.seed, "train", k), self._retrain_batches():
                    callbacks = ([gradual] if gradual else []) + self.structure.training_callbacks(k)
                    result = fit(module, self.dm, spec.trainer, epochs=mode.epochs(spec),
                                 max_steps=spec.retrain.max_steps, callbacks=callbacks or None, loggers=loggers, progress=self.progress)
            except BaseException:
                from prunebench.loggers import finish

                finish(loggers, "failed")
                raise
            net = module.net
            if gradual is not None:
                if not gradual.finished:
                    raise RuntimeError(f"level {k}: gradual pruning stopped before its last step ({gradual.history[-1:]})")
                mask = module.mask
            if self.structure.moves_mask:  # dynamic sparse training: the fit's last mask
                mask = module.mask
            val_acc, val_loss = evaluate(net, self.dm.val_dataloader(), self.device)
            test_acc, test_loss = evaluate(net, self.dm.test_dataloader(), self.device)
            # An empty validation split (data.val_size=0, train.select=last) has a NaN val_loss.
            if not math.isfinite(test_loss) or (not math.isfinite(val_loss) and self.dm.sizes["val"] > 0):
                raise DivergedError(f"level {k}: evaluation loss is {test_loss}")
            row = self._base_row(k, target) | self._cost_row(net, mask, example) | {
                "val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc, "test_loss": test_loss,
                "acc_pruned": acc_pruned, "acc_pruned_val": acc_pruned_val,
                **self._task_columns(val_loss, test_loss, loss_pruned), **eval_columns(self.dm, net, self.device),
                "train_seconds": time.perf_counter() - start, "epochs_finetune": result.epochs,
            }
            row |= early_stop_columns(result.history, steps_per_epoch) | self.structure.level_columns()
            if gradual is not None:
                row |= {"gradual_end_step": gradual.plan.end, "gradual_prune_steps": len(gradual.history)}
            write_table(ld / "epochs.csv", result.history or [{"epoch": 0}])
            self.structure.save(ld, net, mask)
            self._append_row(row)
            self._log_level(k, row, loggers)
            self._finish_level(k, row)
        return "ok"

    def _loggers(self, level: int) -> list[Any]:
        if self.spec.logger.get("name", "none") == "none":
            return []
        from prunebench.loggers import build_loggers

        default_dir = Path(self.spec.root) / "logs" / str(self.spec.logger["name"])
        return build_loggers(self.spec.logger, self.spec.run_id, level, self.spec.seed, default_dir,
                             parent=self.mlflow_parent)

    def _log_level(self, k: int, row: dict[str, Any], loggers: list[Any] | None = None) -> None:
        """One summary per level to the experiment loggers (level 0: the dense model)."""
        if loggers is None:
            loggers = self._loggers(k)
        if loggers:
            from prunebench.loggers import finish, log_level_summary

            log_level_summary(loggers, row)
            finish(loggers)

    def _task_columns(self, val_loss: float, test_loss: float, loss_pruned: float) -> dict[str, Any]:
        """Language models: ``*_acc`` are next-token accuracies; perplexities beside the losses."""
        task = task_of(self.dm)
        if task != "language_modeling":
            return {"task": task}
        return {"task": task, "val_ppl": perplexity(val_loss), "test_ppl": perplexity(test_loss),
                "ppl_pruned": perplexity(loss_pruned)}

    def _finish_level(self, k: int, row: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.end_level(row)
        self.log(self._progress(k, row))
        if self.on_level:
            self.on_level(k, row)

    def _save_dense_level(self, net: nn.Module, mask: Mask, dense: DenseModel) -> None:
        # Level 0 is the dense model: saved like an unstructured level for every structure. Its
        # weights are the dense cache's: linked, not copied (a 135M model is 540 MB a copy).
        from prunebench.engine.dense import same_state

        final = dense.path / "final.pt"
        linked = final if final.exists() and same_state(net.state_dict(), dense.state) else None
        Structure(self.spec).save(level_dir(self.path, 0), net, mask, state_from=linked)

    def _calibration(self) -> list[Any]:
        n = self.spec.pruning.calibration_batches
        return self.dm.calibration_batches(n) if n else []

    def _gradual(self, net: nn.Module, inputs: LevelInputs) -> Any:
        """The in-training pruning callback of a gradual level."""
        from prunebench.engine.gradual import GradualPruning
        from prunebench.pruning.criteria import get_criterion

        spec = self.spec
        crit = get_criterion(spec.pruning.method)
        # The level's own model (not a freshly built copy: no second initialisation per level).
        targets = [t for t in prunable_weights(net, prune_output=spec.pruning.prune_output,
                                                prune_first=spec.pruning.prune_first, prune_bias=spec.pruning.prune_bias)
                   if t.param_name in self.targets]
        learner = crit.learner(targets) if crit.learner is not None else None
        batches = self._calibration() if crit.needs_data and learner is None else None
        fixed = LevelInputs(inputs.level, inputs.generator, lambda: batches or [], inputs.round_rate)

        def prune(net: nn.Module, mask: Mask, target: float, learned: dict[str, torch.Tensor] | None) -> Mask:
            return self.structure.prune(net, mask, target, fixed, learned)[1]

        return GradualPruning(self._gradual_plan(), prune, learner)

    # ---- rows and metrics -----------------------------------------------------------------
    def _example_batch(self) -> torch.Tensor:
        x, _ = next(iter(self.dm.test_dataloader()))
        return x[: self.spec.metrics.latency_batch].to(self.device)

    def _large_batch(self) -> torch.Tensor:
        n = self.spec.metrics.latency_batch_large
        xs, total = [], 0
        for x, _ in self.dm.test_dataloader():
            xs.append(x)
            total += x.shape[0]
            if total >= n:
                break
        x = torch.cat(xs)[:n]
        if x.shape[0] < n:  # a tiny test split: repeat it to reach the batch size
            x = x.repeat((n + x.shape[0] - 1) // x.shape[0], *([1] * (x.dim() - 1)))[:n]
        return x.to(self.device)

    def _large_latency(self, net: nn.Module) -> float:
        m = self.spec.metrics
        return metrics.measure_latency(net, self._large_batch(), warmup=m.latency_warmup, repeats=m.latency_repeats)

    def _cost(self, net: nn.Module, mask: Mask | None, example: torch.Tensor) -> dict[str, Any]:
        densities = None
        if mask is not None:
            modules = {t.param_name: t.module_name for t in prunable_weights(net)}
            densities = {modules[n]: 1.0 - s for n, s in mask.layer_sparsity().items() if n in modules}
        flops, flops_dense = metrics.effective_flops(net, example, densities)
        m = self.spec.metrics
        out: dict[str, Any] = {"flops": flops, "flops_structural": flops_dense, "latency_ms": math.nan,
                               "latency_mode": m.latency_mode if m.latency else None}
        if not m.latency:
            return out
        if m.latency_mode == "eager":
            out["latency_ms"] = metrics.measure_latency(net, example, warmup=m.latency_warmup, repeats=m.latency_repeats)
            return out
        # Deploy mode: dense and pruned prepared the same way and timed in interleaved rounds.
        if mask is None:
            import copy

            self._dense_ref = copy.deepcopy(net).eval()
            models = {"dense": net}
        else:
            models = {"dense": self._dense_ref, "pruned": net}
        times, mode = metrics.latency_in_mode(models, example, "deploy", compile=m.latency_compile,
                                              onnxruntime=m.latency_onnxruntime, rounds=3, repeats=m.latency_repeats,
                                              warmup=m.latency_warmup)
        out["latency_mode"] = mode
        out["latency_ms"] = times["pruned" if mask is not None else "dense"]
        if mask is not None:
            out["latency_ms_dense"] = times["dense"]
        return out

    def _cost_row(self, net: nn.Module, mask: Mask, example: torch.Tensor, dense_level: bool = False) -> dict[str, Any]:
        # Level 0 IS the dense reference: reuse its measurement, so its speedup is exactly 1
        # (timing the same model twice gives two slightly different medians).
        cost = dict(self._dense_cost) if dense_level else self._cost(net, mask, example)
        params = dict(net.named_parameters())
        prunable_numel = sum(params[n].numel() for n in mask)
        prunable_nonzero = sum(int(torch.count_nonzero(params[n].detach())) for n in mask)
        dense = self._dense_cost
        n_params, n_nonzero = metrics.count_params(net), metrics.count_nonzero(net)
        row = self.structure.cost_columns(net, self._large_latency)
        m = self.spec.metrics
        if m.sparse_kernels and self.structure.enforce_mask:
            from prunebench.sparse_kernels import measure_sparse_speedup

            row |= measure_sparse_speedup(net, self._large_batch(), rounds=3, repeats=m.latency_repeats,
                                          warmup=m.latency_warmup)
            row["latency_batch_large"] = m.latency_batch_large
        dense_ms = cost.get("latency_ms_dense", dense["latency_ms"])
        return row | {
            # Fraction of the DENSE model's prunable weights removed (channel surgery shrinks
            # the tensors themselves, so the current tensor sizes are not the denominator).
            "sparsity": 1.0 - prunable_nonzero / self._dense_prunable,
            "prunable_params": prunable_numel,
            "prunable_nonzero": prunable_nonzero,
            "params": n_params,
            "params_nonzero": n_nonzero,
            "compression": n_params / max(n_nonzero, 1),
            "flops": cost["flops"],
            "flops_dense": dense["flops_structural"],
            "speedup_theoretical": dense["flops_structural"] / cost["flops"] if cost["flops"] else math.nan,
            "latency_ms": cost["latency_ms"],
            "latency_ms_dense": dense_ms,
            "speedup_measured": dense_ms / cost["latency_ms"] if cost["latency_ms"] else math.nan,
            "latency_mode": cost.get("latency_mode"),
            "latency_batch": self.spec.metrics.latency_batch,
            "device": str(self.device.type),
        }

    def _base_row(self, level: int, target: float) -> dict[str, Any]:
        spec = self.spec
        return {
            "run_id": spec.run_id, "seed": spec.seed, "level": level,
            "dataset": display_name("data", spec.data.name, spec.data.kwargs),
            "preprocessing": describe_preprocessing(preprocessing_of(self.dm)),
            "model": display_name("model", spec.model.name, spec.model.kwargs), "method": spec.pruning.method,
            "scope": spec.pruning.scope, "structure": spec.pruning.structure, "schedule": spec.schedule.name,
            "retrain": spec.retrain.name, "target_sparsity": target,
            "lr_finetune": self._lr_used(),
            "batch_size_finetune": (spec.retrain.batch_size or self.dm.batch_size) if self.mode.trains else None,
            "epochs_finetune": self.mode.epochs(spec), "iterations": spec.schedule.iterations,
            "precision": spec.trainer.precision,
            "status": "ok", "label": spec.curve_label(), "experiment": spec.experiment,
            "trial": spec.trial, "study": spec.study,
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def _lr_used(self) -> float | None:
        """The learning rate retraining actually starts from (not a key the mode ignores)."""
        spec = self.spec
        if not self.mode.trains:
            return None
        lr = spec.retrain.lr if spec.retrain.lr is not None and not getattr(self.mode, "dense_schedule", False) else None
        return lr if lr is not None else spec.train.optimizer.kwargs.get("lr")

    def _append_row(self, row: dict[str, Any]) -> None:
        rows = read_rows(self.path)
        rows = rows[rows["level"] != row["level"]] if len(rows) else rows
        new = schema.coerce(pd.DataFrame([row]))
        table = pd.concat([rows, new], ignore_index=True) if len(rows) else new
        write_table(self.path / "rows.csv", table.sort_values("level"))

    def _progress(self, k: int, row: dict[str, Any]) -> str:
        n = len(self.spec.schedule.levels())
        return (f"  [{self.spec.run_id}] level {k}/{n} sparsity {row['sparsity']:.3f} "
                f"(target {row['target_sparsity']:.3f}): pruned acc {row['acc_pruned']:.3f} -> "
                f"val {row['val_acc']:.3f} test {row['test_acc']:.3f}")


def early_stop_columns(history: list[dict[str, Any]], steps_per_epoch: int) -> dict[str, Any]:
    """The early-stopping point of a level's retraining: the epoch of minimum validation loss.

    Frankle & Carbin plot this iteration per level (Figure 3 left); prunebench validates once
    per epoch, so the iteration is counted at epoch ends (epoch x optimizer steps per epoch).
    """
    vals = [h for h in history if "val_loss" in h and math.isfinite(h["val_loss"])]
    if not vals:
        return {}
    best = min(vals, key=lambda h: h["val_loss"])  # the first minimum
    epoch = int(best["epoch"]) + 1
    return {"early_stop_epoch": epoch, "early_stop_iteration": epoch * steps_per_epoch,
            "early_stop_val_loss": float(best["val_loss"])}


def check_task_fits(spec: RunSpec, dm: Any) -> None:
    """A language model takes token ids: refuse it on a data set of another task (float inputs,
    class labels) naming both, before the first batch fails inside an embedding."""
    from prunebench.models import model_task

    task = model_task(spec.model.name)
    data_task = getattr(dm, "task", "classification")
    if task == "language_modeling" and data_task != "language_modeling":
        x = dm.train_dataloader().__iter__().__next__()[0] if hasattr(dm, "train_dataloader") else None
        what = f"{x.dtype} inputs of shape {tuple(x.shape[1:])}" if x is not None else "its inputs"
        raise ConfigError(f"model={spec.model.name!r} is a language model (token ids in, next-token logits out), but "
                          f"data={spec.data.name!r} is a {data_task} data set ({what}); use a language data set "
                          f"(data=shakespeare) or a classification model")


def check_layer_sizes(spec: RunSpec, net: nn.Module) -> None:
    """Every Conv/Linear layer has a weight with elements: a zero-width layer is a config error
    (it would divide by zero in the cost code, or train nothing)."""
    for name, module in net.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and isinstance(weight, torch.Tensor) \
                and weight.numel() == 0:
            raise ConfigError(f"model={spec.model.name!r}: layer {name!r} has a weight of shape {tuple(weight.shape)} "
                              f"(zero width); check the model's width options ({dict(spec.model.kwargs)})")


def check_levels_prune(spec: RunSpec, prunable: int) -> None:
    """Each level of an iterative schedule removes at least one of the ``prunable`` weights; else
    say how many iterations would (schedule.iterations is checked against the model here,
    in the preflight, since it takes the model's prunable count)."""
    s = spec.schedule
    if s.iterations <= 1 or spec.pruning.structure != "unstructured" or s.name != "iterative":
        return

    def smallest_step(n: int) -> float:  # weights removed by the level that removes the fewest
        if s.mode == "linear":
            return prunable * s.target_sparsity / n
        keep = 1.0 - s.target_sparsity
        return prunable * (keep ** ((n - 1) / n) - keep)  # geometric: the last level removes the fewest

    if smallest_step(s.iterations) >= 1.0:
        return
    lo, hi = 0, s.iterations  # the largest n whose every level removes at least one weight
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if smallest_step(mid) >= 1.0:
            lo = mid
        else:
            hi = mid - 1
    fix = f"at most {lo} iterations remove at least one per level" if lo >= 1 else \
        "raise schedule.target_sparsity or use schedule=one_shot"
    raise ConfigError(f"schedule.iterations={s.iterations} with schedule.target_sparsity={s.target_sparsity:g} "
                      f"({s.mode}) removes fewer than one of the model's {prunable} prunable weights per level; "
                      f"{fix}")


def _ok_levels(rows: pd.DataFrame) -> set[int]:
    """Levels finished successfully (a failed level's row is redone on resume)."""
    if not len(rows):
        return set()
    ok = rows[rows["status"].fillna("ok") == "ok"] if "status" in rows else rows
    return set(int(v) for v in ok["level"].dropna())


def run(spec: RunSpec, log: Logger = default_log, on_level: LevelHook | None = None) -> RunOutcome:
    """Prepare (validate) and execute one run; skipped if already finished."""
    r = Run(spec, log, on_level)
    if is_finished(r.path):
        return RunOutcome(spec.run_id, r.path, read_rows(r.path), True, "ok")
    r.prepare()
    return r.execute()
