"""The results table: one row per (run, level); level 0 is the dense model.

This module is the single source of truth for column names and dtypes. Writers build
rows as dicts keyed by these names (never positionally); readers (``load``/``collect``)
coerce to these dtypes so notebooks and plots see the same table every time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Required columns (DESIGN.md) in display order, with pandas dtypes.
REQUIRED: dict[str, str] = {
    # identity
    "run_id": "string",
    "seed": "Int64",
    "level": "Int64",
    # what was run
    "dataset": "string",
    "model": "string",
    "method": "string",  # criterion: magnitude, random, snip, ...
    "scope": "string",  # global / layer / erk
    "structure": "string",  # unstructured / channel / nm
    "schedule": "string",  # one_shot / iterative / gradual ...
    "retrain": "string",  # finetune / none / lr_rewind / weight_rewind / reinit ...
    # sparsity
    "target_sparsity": "float64",
    "sparsity": "float64",  # achieved fraction of prunable weights removed
    "params": "Int64",
    "params_nonzero": "Int64",
    "compression": "float64",  # params / params_nonzero
    # cost
    "flops": "float64",  # per-sample forward FLOPs after pruning (effective)
    "flops_dense": "float64",
    "speedup_theoretical": "float64",
    "latency_ms": "float64",  # median measured inference latency
    "latency_batch": "Int64",
    "device": "string",
    # accuracy
    "val_acc": "float64",
    "test_acc": "float64",
    "test_loss": "float64",
    "acc_pruned": "float64",  # test accuracy right after pruning, before retraining
    # retraining settings
    "lr_finetune": "float64",
    "epochs_finetune": "Int64",
    "iterations": "Int64",
    "train_seconds": "float64",
    "status": "string",  # ok / failed / diverged
}

#: Optional columns written when known.
OPTIONAL: dict[str, str] = {
    "label": "string",  # curve label: "<method>/<schedule>/<retrain>[/<structure>]"
    # classification | language_modeling; for language models *_acc are next-token
    # accuracies and *_loss mean token cross-entropies, with perplexities exp(loss) beside them
    "task": "string",
    "val_ppl": "float64",
    "test_ppl": "float64",
    "ppl_pruned": "float64",
    "precision": "string",  # trainer.precision the run trained with
    # the retraining's epoch of minimum validation loss (Frankle & Carbin's early-stopping
    # iteration, counted at epoch ends: epoch x optimizer steps per epoch)
    "early_stop_epoch": "Int64",
    "early_stop_iteration": "Int64",
    "early_stop_val_loss": "float64",
    "experiment": "string",
    "preprocessing": "string",
    "batch_size_finetune": "Int64",  # retrain.batch_size, or data.batch_size when unset  # what the model receives: data.normalize and its numbers (data.base)
    "val_loss": "float64",
    "acc_pruned_val": "float64",
    "prunable_params": "Int64",
    "prunable_nonzero": "Int64",
    "latency_ms_dense": "float64",
    "speedup_measured": "float64",  # latency_ms_dense / latency_ms, same process
    "latency_ms_large": "float64",  # latency at a large batch (structured runs)
    "latency_mode": "string",  # eager, or deploy:<what was applied> (metrics.latency_in_mode)
    "speedup_measured_sparse": "float64",  # dense kernels ms / sparse-format ms (sparse_kernels)
    "sparse_format": "string",  # csr:<layers replaced>/<Linear layers> (+2:4:<k>/<n> on a GPU), or dense when none gained
    "latency_ms_sparse": "float64",
    "latency_batch_large": "Int64",
    "channel_ratio": "float64",  # structured runs: requested fraction of channels removed
    "trial": "Int64",  # Optuna trial number, when the run came from a study
    "study": "string",
    "error": "string",  # reason for status failed/diverged
    "finished_at": "string",
}

COLUMNS: dict[str, str] = {**REQUIRED, **OPTIONAL}

STATUSES = ("ok", "failed", "diverged", "pruned")


def coerce(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with every known column present (missing → NA) and typed."""
    df = df.copy()
    for col, dtype in COLUMNS.items():
        if col not in df.columns:
            # pandas 3 refuses pd.NA in a float64 Series: missing floats are NaN.
            df[col] = pd.Series(np.nan if dtype == "float64" else pd.NA, index=df.index, dtype=dtype)
        else:
            df[col] = df[col].astype(dtype)
    known = list(COLUMNS)
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[known + extra]


def empty() -> pd.DataFrame:
    """An empty table with the documented columns and dtypes."""
    return coerce(pd.DataFrame())
