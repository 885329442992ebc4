"""Measurement and row assembly of a run's levels: what a results row says about a level.

:class:`LevelRows` measures cost (parameters, FLOPs, latency in the configured mode, sparse
kernels) and assembles the row of each level. :meth:`LevelRows.measure_dense` measures the
dense network once; every level's sparsity, speedup and latency are relative to those dense
references, which the object owns. The level loop (:mod:`prunebench.engine.loop`) only calls it.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from prunebench import metrics
from prunebench.data.base import describe_preprocessing, preprocessing_of
from prunebench.data.eval_texts import provenance as eval_provenance
from prunebench.engine.module import perplexity, task_of
from prunebench.engine.structures import Structure
from prunebench.export import net_record
from prunebench.identity import display_name
from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import prunable_weights
from prunebench.results import schema
from prunebench.results.store import read_rows, write_table
from prunebench.spec import RunSpec


class LevelRows:
    """The rows of one run: ``spec``, its data module ``dm`` on ``device``, the retrain ``mode``,
    the ``structure`` and the run folder ``path``. Call :meth:`measure_dense` once with the
    dense network before the first :meth:`cost_row`."""

    def __init__(self, spec: RunSpec, dm: Any, device: torch.device, mode: Any, structure: Structure,
                 path: Path) -> None:
        self.spec, self.dm, self.device, self.mode, self.structure, self.path = spec, dm, device, mode, structure, path
        self.dense_cost: dict[str, Any] = {}  # the dense network's cost (measure_dense)
        self.dense_prunable = 0  # its prunable weights: every level's sparsity is a fraction of these
        self.dense_ref: nn.Module | None = None  # its copy timed beside each level (latency_mode=deploy)

    def run_record(self, targets: list[str], ticket: RunSpec | None) -> dict[str, Any]:
        """The run's config.json: its identity, prunable weights, how to rebuild the network and the
        data (prunebench-export), what the model receives, and where calibration and evaluation
        texts came from."""
        spec = self.spec
        return {
            "run_id": spec.run_id, "dense_id": spec.dense_id, "identity": spec.identity(),
            "label": spec.curve_label(), "describe": spec.describe(), "prunable": targets,
            "ticket_run_id": ticket.run_id if ticket else None,
            "levels": len(spec.schedule.levels()),  # rows.csv holds levels 0..this (checked on read)
            # how to rebuild the dense network (prunebench-export)
            "net": net_record(spec.model.name, dict(spec.model.kwargs), self.dm.input_shape, self.dm.num_classes),
            # what the model receives and how to rebuild the data (prunebench-export measures the artifact)
            "preprocessing": preprocessing_of(self.dm),
            "data": {"name": spec.data.name,
                     "root": str(Path(spec.data.kwargs.get("root", spec.data_dir)).absolute()),
                     "kwargs": {k: v for k, v in spec.data.kwargs.items() if k != "root"},
                     "class_names": getattr(self.dm, "class_names", None)},
            **eval_provenance(self.dm),  # calibration and evaluation sources
        }

    def failure(self, status: str, reason: str) -> None:
        """Record a failed (or diverged) run: a row with ``status`` and ``reason`` at its first
        level without a finished row."""
        done = ok_levels(read_rows(self.path)) if self.path.exists() else set()
        levels = self.spec.schedule.levels()
        pending = [k for k in range(len(levels) + 1) if k not in done]
        if pending:
            k = pending[0]
            self.append_row(self.base_row(k, 0.0 if k == 0 else levels[k - 1]) | {"status": status, "error": reason})

    def measure_dense(self, net: nn.Module, mask: Mask, example: torch.Tensor) -> None:
        """Measure the dense network ``net`` (all of ``mask`` kept) once: the references."""
        self.dense_cost = self.cost(net, None, example)
        self.dense_prunable = mask.numel

    def task_columns(self, val_loss: float, test_loss: float, loss_pruned: float) -> dict[str, Any]:
        """Language models: ``*_acc`` are next-token accuracies; perplexities beside the losses."""
        task = task_of(self.dm)
        if task != "language_modeling":
            return {"task": task}
        return {"task": task, "val_ppl": perplexity(val_loss), "test_ppl": perplexity(test_loss),
                "ppl_pruned": perplexity(loss_pruned)}

    def example_batch(self) -> torch.Tensor:
        x, _ = next(iter(self.dm.test_dataloader()))
        return x[: self.spec.metrics.latency_batch].to(self.device)

    def large_batch(self) -> torch.Tensor:
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

    def large_latency(self, net: nn.Module) -> float:
        m = self.spec.metrics
        return metrics.measure_latency(net, self.large_batch(), warmup=m.latency_warmup, repeats=m.latency_repeats)

    def cost(self, net: nn.Module, mask: Mask | None, example: torch.Tensor) -> dict[str, Any]:
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
            self.dense_ref = copy.deepcopy(net).eval()
            models = {"dense": net}
        else:
            models = {"dense": self.dense_ref, "pruned": net}
        times, mode = metrics.latency_in_mode(models, example, "deploy", compile=m.latency_compile,
                                              onnxruntime=m.latency_onnxruntime, rounds=3, repeats=m.latency_repeats,
                                              warmup=m.latency_warmup)
        out["latency_mode"] = mode
        out["latency_ms"] = times["pruned" if mask is not None else "dense"]
        if mask is not None:
            out["latency_ms_dense"] = times["dense"]
        return out

    def cost_row(self, net: nn.Module, mask: Mask, example: torch.Tensor, dense_level: bool = False) -> dict[str, Any]:
        # Level 0 IS the dense reference: reuse its measurement, so its speedup is exactly 1
        # (timing the same model twice gives two slightly different medians).
        cost = dict(self.dense_cost) if dense_level else self.cost(net, mask, example)
        params = dict(net.named_parameters())
        prunable_numel = sum(params[n].numel() for n in mask)
        prunable_nonzero = sum(int(torch.count_nonzero(params[n].detach())) for n in mask)
        dense = self.dense_cost
        n_params, n_nonzero = metrics.count_params(net), metrics.count_nonzero(net)
        row = self.structure.cost_columns(net, self.large_latency)
        m = self.spec.metrics
        if m.sparse_kernels and self.structure.enforce_mask:
            from prunebench.sparse_kernels import measure_sparse_speedup

            row |= measure_sparse_speedup(net, self.large_batch(), rounds=3, repeats=m.latency_repeats,
                                          warmup=m.latency_warmup)
            row["latency_batch_large"] = m.latency_batch_large
        dense_ms = cost.get("latency_ms_dense", dense["latency_ms"])
        return row | {
            # Fraction of the DENSE model's prunable weights removed (channel surgery shrinks
            # the tensors themselves, so the current tensor sizes are not the denominator).
            "sparsity": 1.0 - prunable_nonzero / self.dense_prunable,
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

    def base_row(self, level: int, target: float) -> dict[str, Any]:
        spec = self.spec
        return {
            "run_id": spec.run_id, "seed": spec.seed, "level": level,
            "dataset": display_name("data", spec.data.name, spec.data.kwargs),
            "preprocessing": describe_preprocessing(preprocessing_of(self.dm)),
            "model": display_name("model", spec.model.name, spec.model.kwargs), "method": spec.pruning.method,
            "scope": spec.pruning.scope, "structure": spec.pruning.structure, "schedule": spec.schedule.name,
            "retrain": spec.retrain.name, "target_sparsity": target,
            "lr_finetune": self.lr_used(),
            "batch_size_finetune": (spec.retrain.batch_size or self.dm.batch_size) if self.mode.trains else None,
            "epochs_finetune": self.mode.epochs(spec), "iterations": spec.schedule.iterations,
            "precision": spec.trainer.precision,
            "status": "ok", "label": spec.curve_label(), "experiment": spec.experiment,
            "trial": spec.trial, "study": spec.study,
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def lr_used(self) -> float | None:
        """The learning rate retraining actually starts from (not a key the mode ignores)."""
        spec = self.spec
        if not self.mode.trains:
            return None
        lr = spec.retrain.lr if spec.retrain.lr is not None and not getattr(self.mode, "dense_schedule", False) else None
        return lr if lr is not None else spec.train.optimizer.kwargs.get("lr")

    def append_row(self, row: dict[str, Any]) -> None:
        rows = read_rows(self.path)
        rows = rows[rows["level"] != row["level"]] if len(rows) else rows
        new = schema.coerce(pd.DataFrame([row]))
        table = pd.concat([rows, new], ignore_index=True) if len(rows) else new
        write_table(self.path / "rows.csv", table.sort_values("level"))

    def progress_line(self, k: int, row: dict[str, Any]) -> str:
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


def ok_levels(rows: pd.DataFrame) -> set[int]:
    """Levels finished successfully (a failed level's row is redone on resume)."""
    if not len(rows):
        return set()
    ok = rows[rows["status"].fillna("ok") == "ok"] if "status" in rows else rows
    return set(int(v) for v in ok["level"].dropna())
