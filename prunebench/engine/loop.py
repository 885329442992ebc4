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
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from prunebench import metrics
from prunebench.data import build_datamodule
from prunebench.engine.dense import DenseModel, check_loadable, load_state, save_state, train_dense
from prunebench.engine.fit import device_of, fit
from prunebench.engine.module import Classifier, DivergedError, evaluate
from prunebench.engine.retrain import RETRAIN_MODES, RetrainContext
from prunebench.errors import ConfigError
from prunebench.models import build_model
from prunebench.pruning.allocation import allocate
from prunebench.pruning.criteria import ScoreContext, get_criterion
from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import prunable_weights
from prunebench.results import schema
from prunebench.results.store import DONE, atomic_write_text, level_dir, read_rows, run_dir, write_table
from prunebench.spec import RunSpec

Logger = Callable[[str], None]
#: Called after every finished level with (level, row); may raise to stop the run early
#: (an Optuna pruner raises optuna.TrialPruned, recorded as status "pruned").
LevelHook = Callable[[int, dict[str, Any]], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class RunOutcome:
    run_id: str
    path: Path
    rows: pd.DataFrame
    skipped: bool  # already finished: nothing was trained
    status: str


class Run:
    """One run: its spec, data, model and folder. ``prepare`` validates everything first."""

    def __init__(self, spec: RunSpec, log: Logger = _stderr, on_level: LevelHook | None = None) -> None:
        self.spec = spec
        self.log = log
        self.on_level = on_level
        self.path = run_dir(spec.root, spec.run_id)
        self.device = device_of(spec.trainer)
        self.dm: Any = None
        self.targets: list[str] = []

    # ---- preflight: everything that can fail on bad input, before any training ---------
    def prepare(self) -> None:
        spec = self.spec
        if spec.trainer.threads:
            torch.set_num_threads(spec.trainer.threads)
        self.dm = build_datamodule(spec.data.name, seed=spec.seed, root=spec.data.kwargs.get("root", spec.data_dir),
                                   **{k: v for k, v in spec.data.kwargs.items() if k != "root"})
        self.dm.prepare_data()
        self.dm.setup("fit")
        self.dm.to(self.device)
        net = self.build_net()
        targets = prunable_weights(net, prune_output=spec.pruning.prune_output, prune_first=spec.pruning.prune_first)
        if not targets:
            raise ConfigError(f"model={spec.model.name!r} has no prunable Conv/Linear weights with these pruning options")
        self.targets = [t.param_name for t in targets]
        if spec.pruning.structure == "channel":
            from prunebench.engine.structured import check_channel_spec

            check_channel_spec(spec)
        else:
            crit = get_criterion(spec.pruning.method)
            if crit.validate is not None:
                crit.validate(net, targets, spec, self._example_batch())
            self._check_methods(net, targets)
        # Existing artifacts must load: fail now, not after an hour of training.
        from prunebench.engine.dense import dense_dir

        for name in ("init.pt", "final.pt"):
            check_loadable(net, dense_dir(spec) / name, "dense checkpoint")
        if self.path.exists():
            read_rows(self.path)
            for k in range(1, len(spec.schedule.levels()) + 1):
                ld = level_dir(self.path, k)
                if (ld / "mask.pt").exists():
                    Mask.load(ld / "mask.pt", net)
                if spec.pruning.structure == "channel":
                    if (ld / "model.pt").exists():
                        from prunebench.engine.structured import load_model

                        load_model(ld / "model.pt", self.build_net)
                else:
                    check_loadable(net, ld / "state.pt", f"level {k} checkpoint")

    def _check_methods(self, net: nn.Module, targets: list[Any]) -> None:
        """Unstructured combinations that cannot work, rejected before training."""
        spec = self.spec
        if spec.pruning.structure == "nm":
            from prunebench.pruning.nm import check_nm_spec

            shapes = {n: p.shape for n, p in net.named_parameters()}
            check_nm_spec(spec, targets, shapes)
        out_rate = spec.pruning.options.get("output_rate")
        if out_rate is not None:
            if isinstance(out_rate, bool) or not isinstance(out_rate, (int, float)) or not 0 < out_rate < 1:
                raise ConfigError(f"pruning.output_rate={out_rate!r} is out of range; expected a per-round fraction "
                                  f"in (0, 1)")
            s = spec.schedule
            if spec.pruning.scope != "layer" or s.name != "iterative" or s.mode != "geometric" or spec.pruning.structure != "unstructured":
                raise ConfigError(f"pruning.output_rate={out_rate!r} (the output layer's own per-round rate) needs "
                                  f"pruning.scope=layer and schedule=iterative with schedule.mode=geometric, unstructured; "
                                  f"got scope={spec.pruning.scope!r}, schedule={s.name!r}, mode={s.mode!r}")
            if not spec.pruning.prune_output:
                raise ConfigError("pruning.output_rate is set but pruning.prune_output=false keeps the output layer dense")
        if getattr(RETRAIN_MODES.get(spec.retrain.name), "weights", None) == "rewind":
            from prunebench.engine.rewind import rewind_step

            rewind_step(spec)
        if spec.schedule.name == "gradual":
            mode = RETRAIN_MODES.get(spec.retrain.name)
            if getattr(mode, "random_mask", False):
                raise ConfigError("schedule=gradual with retrain=random_mask: the mask changes during training, "
                                  "so there is no fixed mask to randomise; use retrain=finetune or lr_rewind")
            plan = self._gradual_plan()  # needs a fine-tune long enough for one pruning step
            if get_criterion(spec.pruning.method).learner is not None and plan.initial > 0:
                raise ConfigError(f"schedule.initial_sparsity={plan.initial!r} with pruning.method="
                                  f"{spec.pruning.method!r}: learned scores start at zero, so the level cannot start "
                                  f"pruned; set schedule.initial_sparsity=0")
        elif get_criterion(spec.pruning.method).learner is not None:
            raise ConfigError(f"pruning.method={spec.pruning.method!r} learns its scores while training, so it needs "
                              f"schedule=gradual (got schedule={spec.schedule.name!r})")

    def _gradual_plan(self) -> Any:
        from prunebench.engine.gradual import make_plan

        mode = RETRAIN_MODES.get(self.spec.retrain.name)
        steps = mode.epochs(self.spec) * len(self.dm.train_dataloader())
        return make_plan(self.spec.schedule, steps)

    def build_net(self) -> nn.Module:
        torch.manual_seed(self.spec.seed)
        return build_model(self.spec.model.name, tuple(self.dm.input_shape), self.dm.num_classes, **self.spec.model.kwargs)

    # ---- execution ----------------------------------------------------------------------
    def execute(self) -> RunOutcome:
        spec = self.spec
        if (self.path / DONE).exists():
            rows = read_rows(self.path)
            return RunOutcome(spec.run_id, self.path, rows, True, "ok")
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.json", json.dumps(
            {"run_id": spec.run_id, "dense_id": spec.dense_id, "identity": spec.identity(),
             "label": spec.curve_label(), "describe": spec.describe(), "prunable": self.targets}, indent=2, default=str))
        rows = read_rows(self.path)
        done_levels = _ok_levels(rows)
        status = "ok"
        try:
            dense = train_dense(spec, self.dm, self.build_net, self.log)
            status = self._levels(dense, rows, done_levels)
        except DivergedError as exc:
            status = "diverged"
            self._record_failure(status, str(exc))
        rows = read_rows(self.path)
        atomic_write_text(self.path / DONE, dt.datetime.now(dt.timezone.utc).isoformat())
        return RunOutcome(spec.run_id, self.path, rows, False, status)

    def _record_failure(self, status: str, reason: str) -> None:
        done = _ok_levels(read_rows(self.path))
        levels = [0] + list(range(1, len(self.spec.schedule.levels()) + 1))
        pending = [k for k in levels if k not in done]
        if pending:
            k = pending[0]
            target = 0.0 if k == 0 else self.spec.schedule.levels()[k - 1]
            row = self._base_row(k, target) | {"status": status, "error": reason}
            self._append_row(row)
        self.log(f"run {self.spec.run_id} {status}: {reason}")

    def _levels(self, dense: DenseModel, rows: pd.DataFrame, done_levels: set[int]) -> str:
        spec = self.spec
        net = self.build_net().to(self.device)
        net.load_state_dict(dense.state)
        example = self._example_batch()
        self._dense_cost = self._cost(net, None, example)
        mask = Mask.ones_like(net, self.targets)
        self._dense_prunable = mask.numel
        self._level_info: dict[str, Any] = {}
        self._channel = None
        if spec.pruning.structure == "channel":
            from prunebench.engine.structured import ChannelPruner

            self._channel = ChannelPruner(spec, net, example)
        levels = spec.schedule.levels()
        if 0 not in done_levels:
            val_acc, val_loss = evaluate(net, self.dm.val_dataloader(), self.device)
            test_acc, test_loss = evaluate(net, self.dm.test_dataloader(), self.device)
            row = self._base_row(0, 0.0) | self._cost_row(net, mask, example, dense_level=True) | {
                "val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc, "test_loss": test_loss,
                "acc_pruned": test_acc, "acc_pruned_val": val_acc,
                "train_seconds": 0.0 if dense.meta.get("cached") else dense.meta.get("train_seconds"),
                "epochs_finetune": 0,
            }
            self._append_row(row)
            self._save_level(0, net, mask)
            self.log(self._progress(0, row))
            if self.on_level:
                self.on_level(0, row)
        mode = RETRAIN_MODES.get(spec.retrain.name)
        gen = torch.Generator().manual_seed(spec.seed)
        for k, target in enumerate(levels, start=1):
            ld = level_dir(self.path, k)
            if k in done_levels and self._channel is not None and (ld / "model.pt").exists():
                from prunebench.engine.structured import load_model

                net = load_model(ld / "model.pt", self.build_net).to(self.device)
                mask = Mask.ones_like(net, self._current_targets(net))
                continue
            if k in done_levels and (ld / "state.pt").exists() and (ld / "mask.pt").exists():
                net.load_state_dict(load_state(ld / "state.pt", f"level {k} checkpoint"))
                mask = Mask.load(ld / "mask.pt", net)
                continue
            torch.manual_seed(spec.seed * 1000 + k)
            start = time.perf_counter()
            previous_mask = mask
            gradual = self._gradual(net, gen) if spec.schedule.name == "gradual" else None
            # Gradual: the level starts at the plan's initial sparsity; the fine-tune raises it.
            net, mask = self._prune(net, mask, gradual.plan.initial if gradual else target, gen)
            acc_pruned_val, _ = evaluate(net, self.dm.val_dataloader(), self.device)
            acc_pruned, _ = evaluate(net, self.dm.test_dataloader(), self.device)
            steps_per_epoch = len(self.dm.train_dataloader())
            ctx = RetrainContext(spec, k, dense.init_state, dense.rewind_state, gen,
                                 extras={"previous_mask": previous_mask, "steps_per_epoch": steps_per_epoch})
            mask = mode.prepare(net, mask, ctx)
            mask.apply(net)
            # After channel surgery every remaining weight is live: no mask to enforce.
            module = Classifier(net, mode.optimizer(spec), mode.scheduler(spec, steps_per_epoch),
                                mask=None if self._channel is not None else mask)
            result = fit(module, self.dm, spec.trainer, epochs=mode.epochs(spec),
                         callbacks=[gradual] if gradual else None)
            net = module.net
            if gradual is not None:
                if not gradual.finished:
                    raise RuntimeError(f"level {k}: gradual pruning stopped before its last step ({gradual.history[-1:]})")
                mask = module.mask
            val_acc, val_loss = evaluate(net, self.dm.val_dataloader(), self.device)
            test_acc, test_loss = evaluate(net, self.dm.test_dataloader(), self.device)
            if not math.isfinite(test_loss) or not math.isfinite(val_loss):
                raise DivergedError(f"level {k}: evaluation loss is {test_loss}")
            row = self._base_row(k, target) | self._cost_row(net, mask, example) | {
                "val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc, "test_loss": test_loss,
                "acc_pruned": acc_pruned, "acc_pruned_val": acc_pruned_val,
                "train_seconds": time.perf_counter() - start, "epochs_finetune": result.epochs,
            }
            if gradual is not None:
                row |= {"gradual_end_step": gradual.plan.end, "gradual_prune_steps": len(gradual.history)}
            write_table(ld / "epochs.csv", result.history or [{"epoch": 0}])
            self._save_level(k, net, mask)
            self._append_row(row)
            self.log(self._progress(k, row))
            if self.on_level:
                self.on_level(k, row)
        return "ok"

    # ---- pruning step ---------------------------------------------------------------------
    def _current_targets(self, net: nn.Module) -> list[str]:
        spec = self.spec
        return [t.param_name for t in prunable_weights(net, prune_output=spec.pruning.prune_output,
                                                        prune_first=spec.pruning.prune_first)]

    def _prune(self, net: nn.Module, mask: Mask, target: float, gen: torch.Generator) -> tuple[nn.Module, Mask]:
        spec = self.spec
        if self._channel is not None:
            from prunebench.pruning.structured import get_channel_criterion

            needs = get_channel_criterion(spec.pruning.method).needs_data
            batches = self.dm.calibration_batches(spec.pruning.calibration_batches) if needs else []
            self._level_info = self._channel.prune(net, target, batches, gen)
            return net, Mask.ones_like(net, self._current_targets(net))
        new_mask = self._unstructured_mask(net, mask, target, gen)
        new_mask.apply(net)
        return net, new_mask

    def _unstructured_mask(self, net: nn.Module, mask: Mask, target: float, gen: torch.Generator,
                           learned: dict[str, torch.Tensor] | None = None,
                           batches: list[Any] | None = None) -> Mask:
        """The criterion's scores (or ``learned`` ones) allocated to ``target`` (or N:M)."""
        spec = self.spec
        if target <= mask.sparsity and spec.pruning.structure != "nm":
            return mask  # nothing to remove (gradual's initial step, s_i = 0)
        crit = get_criterion(spec.pruning.method)
        targets = [t for t in prunable_weights(net, prune_output=spec.pruning.prune_output,
                                                prune_first=spec.pruning.prune_first) if t.param_name in mask]
        nm = spec.pruning.structure == "nm"
        if learned is not None:
            scores = learned
        else:
            if batches is None:
                batches = self.dm.calibration_batches(spec.pruning.calibration_batches) if crit.needs_data else []
            ctx = ScoreContext(mask=mask, batches=batches, generator=gen, options=dict(spec.pruning.options),
                               target=None if nm else target, scope=spec.pruning.scope)
            scores = crit.fn(net, targets, ctx)
        if nm:
            from prunebench.pruning.nm import kept_per_group, nm_mask
            from prunebench.pruning.nm import options as nm_options

            _, m = nm_options(spec)
            return nm_mask(scores, mask, kept_per_group(target, m), m)
        out_rate = spec.pruning.options.get("output_rate")
        if out_rate is not None:
            from prunebench.pruning.allocation import allocate_split, output_rate_target
            from prunebench.pruning.schedules import per_round_rate
            from prunebench.pruning.targets import output_layer_name

            out_name = f"{output_layer_name(net)}.weight"
            rate = per_round_rate(spec.schedule.target_sparsity, spec.schedule.iterations)
            return allocate_split(scores, mask, {"": target, out_name: output_rate_target(target, rate, out_rate)},
                                  spec.pruning.scope)
        return allocate(scores, mask, target, spec.pruning.scope)

    def _gradual(self, net: nn.Module, gen: torch.Generator) -> Any:
        """The in-training pruning callback of a gradual level."""
        from prunebench.engine.gradual import GradualPruning

        spec = self.spec
        crit = get_criterion(spec.pruning.method)
        targets = [t for t in prunable_weights(net, prune_output=spec.pruning.prune_output,
                                                prune_first=spec.pruning.prune_first) if t.param_name in self.targets]
        learner = crit.learner(targets) if crit.learner is not None else None
        batches = (self.dm.calibration_batches(spec.pruning.calibration_batches)
                   if crit.needs_data and learner is None else None)

        def prune(net: nn.Module, mask: Mask, target: float, learned: dict[str, torch.Tensor] | None) -> Mask:
            return self._unstructured_mask(net, mask, target, gen, learned, batches)

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

    def _cost(self, net: nn.Module, mask: Mask | None, example: torch.Tensor) -> dict[str, float]:
        densities = None
        if mask is not None:
            modules = {t.param_name: t.module_name for t in prunable_weights(net)}
            densities = {modules[n]: 1.0 - s for n, s in mask.layer_sparsity().items() if n in modules}
        flops, flops_dense = metrics.effective_flops(net, example, densities)
        latency = math.nan
        if self.spec.metrics.latency:
            latency = metrics.measure_latency(net, example, warmup=self.spec.metrics.latency_warmup,
                                              repeats=self.spec.metrics.latency_repeats)
        return {"flops": flops, "flops_structural": flops_dense, "latency_ms": latency}

    def _cost_row(self, net: nn.Module, mask: Mask, example: torch.Tensor, dense_level: bool = False) -> dict[str, Any]:
        # Level 0 IS the dense reference: reuse its measurement, so its speedup is exactly 1
        # (timing the same model twice gives two slightly different medians).
        cost = dict(self._dense_cost) if dense_level else self._cost(net, mask, example)
        params = dict(net.named_parameters())
        prunable_numel = sum(params[n].numel() for n in mask)
        prunable_nonzero = sum(int(torch.count_nonzero(params[n].detach())) for n in mask)
        dense = self._dense_cost
        n_params, n_nonzero = metrics.count_params(net), metrics.count_nonzero(net)
        row: dict[str, Any] = {}
        if self._channel is not None:
            large = self.spec.metrics.latency_batch_large
            row = {"channel_ratio": self._level_info.get("channel_ratio", 0.0), "latency_batch_large": large}
            if self.spec.metrics.latency:
                xl = self._large_batch()
                row["latency_ms_large"] = metrics.measure_latency(
                    net, xl, warmup=self.spec.metrics.latency_warmup, repeats=self.spec.metrics.latency_repeats)
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
            "latency_ms_dense": dense["latency_ms"],
            "speedup_measured": dense["latency_ms"] / cost["latency_ms"] if cost["latency_ms"] else math.nan,
            "latency_batch": self.spec.metrics.latency_batch,
            "device": str(self.device.type),
        }

    def _base_row(self, level: int, target: float) -> dict[str, Any]:
        spec = self.spec
        return {
            "run_id": spec.run_id, "seed": spec.seed, "level": level,
            "dataset": spec.data.name, "model": spec.model.name, "method": spec.pruning.method,
            "scope": spec.pruning.scope, "structure": spec.pruning.structure, "schedule": spec.schedule.name,
            "retrain": spec.retrain.name, "target_sparsity": target,
            "lr_finetune": spec.retrain.lr if spec.retrain.lr is not None else spec.train.optimizer.kwargs.get("lr"),
            "epochs_finetune": spec.retrain.epochs, "iterations": spec.schedule.iterations,
            "status": "ok", "label": spec.curve_label(), "experiment": spec.experiment,
            "trial": spec.trial, "study": spec.study,
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def _append_row(self, row: dict[str, Any]) -> None:
        rows = read_rows(self.path)
        rows = rows[rows["level"] != row["level"]] if len(rows) else rows
        new = schema.coerce(pd.DataFrame([row]))
        table = pd.concat([rows, new], ignore_index=True) if len(rows) else new
        write_table(self.path / "rows.csv", table.sort_values("level"))

    def _save_level(self, k: int, net: nn.Module, mask: Mask) -> None:
        ld = level_dir(self.path, k)
        if self._channel is not None and k > 0:
            from prunebench.engine.structured import save_model
            from prunebench.pruning.structured import layer_channels

            save_model(net, ld / "model.pt")  # weights + architecture, weights_only loadable
            write_table(ld / "layers.csv", [{"layer": n, "channels": c} for n, c in layer_channels(net).items()])
            return
        mask.save(ld / "mask.pt")
        write_table(ld / "layers.csv", mask.report())
        save_state(ld / "state.pt", net.state_dict())

    def _progress(self, k: int, row: dict[str, Any]) -> str:
        n = len(self.spec.schedule.levels())
        return (f"  [{self.spec.run_id}] level {k}/{n} sparsity {row['sparsity']:.3f} "
                f"(target {row['target_sparsity']:.3f}): pruned acc {row['acc_pruned']:.3f} -> "
                f"val {row['val_acc']:.3f} test {row['test_acc']:.3f}")


def _ok_levels(rows: pd.DataFrame) -> set[int]:
    """Levels finished successfully (a failed level's row is redone on resume)."""
    if not len(rows):
        return set()
    ok = rows[rows["status"].fillna("ok") == "ok"] if "status" in rows else rows
    return set(int(v) for v in ok["level"].dropna())


def run(spec: RunSpec, log: Logger = _stderr, on_level: LevelHook | None = None) -> RunOutcome:
    """Prepare (validate) and execute one run; skipped if already finished."""
    r = Run(spec, log, on_level)
    if (r.path / DONE).exists():
        return RunOutcome(spec.run_id, r.path, read_rows(r.path), True, "ok")
    r.prepare()
    return r.execute()
