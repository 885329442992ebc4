"""Choosing a level from a results table (pandas only: the report uses it without torch)."""

from __future__ import annotations

import math

import pandas as pd

from prunebench.errors import ConfigError, check_range


def best_level(
    df: pd.DataFrame,
    *,
    max_drop: float | None = None,
    max_latency_ms: float | None = None,
    max_params: float | None = None,
    prefer: str = "auto",
) -> pd.Series:
    """The row of the level that is best under a budget (pure function of a results table).

    Rows considered: status ``ok`` (or missing) with a validation accuracy. A row is within
    budget when

    * ``max_drop``: ``val_acc >= dense val_acc - max_drop``, the dense model being level 0
      of the same run (accuracies are fractions: 0.01 is one point). Validation only:
      test accuracy is never used to select;
    * ``max_latency_ms``: ``latency_ms <= max_latency_ms`` (rows without a measured latency
      are out);
    * ``max_params``: ``params <= max_params``.

    Among the rows within budget, ``prefer="accuracy"`` takes the highest ``val_acc`` (ties:
    fewer params, then the later level); ``prefer="smallest"`` takes the fewest ``params``
    (ties: higher ``sparsity``, then higher ``val_acc``) — for masked levels, where ``params``
    does not shrink, ``sparsity`` decides. ``auto`` is ``smallest`` when the only budget is
    ``max_drop`` (the highest accuracy within a drop of the dense model is the dense model
    itself, which is not what anyone asks) and ``accuracy`` otherwise.

    Raises ConfigError naming the budget when no row fits, with the closest miss.
    """
    if prefer not in ("auto", "accuracy", "smallest"):
        raise ConfigError(f"prefer={prefer!r} is not a known choice; valid: accuracy, auto, smallest")
    for key, value in (("max_drop", max_drop), ("max_latency_ms", max_latency_ms), ("max_params", max_params)):
        if value is not None:
            check_range(f"--{key.replace('_', '-')}", float(value), 0.0, None)
    if max_drop is None and max_latency_ms is None and max_params is None:
        raise ConfigError("a budget is needed: give --max-drop, --max-latency-ms and/or --max-params")
    if prefer == "auto":
        prefer = "smallest" if max_latency_ms is None and max_params is None else "accuracy"

    rows = df.copy()
    status = rows["status"].astype("string").fillna("ok") if "status" in rows else pd.Series("ok", index=rows.index)
    rows = rows[(status == "ok") & rows["val_acc"].notna()]
    if not len(rows):
        raise ConfigError("no finished level with a validation accuracy in the results")
    keep = pd.Series(True, index=rows.index)
    if max_drop is not None:
        dense = rows[rows["level"] == 0].set_index("run_id")["val_acc"]
        ref = rows["run_id"].map(dense).astype("float64")
        drop = ref - rows["val_acc"].astype("float64")
        keep &= drop.notna() & (drop <= max_drop + 1e-12)
    if max_latency_ms is not None:
        lat = rows["latency_ms"].astype("float64") if "latency_ms" in rows else pd.Series(math.nan, index=rows.index)
        keep &= lat.notna() & (lat <= max_latency_ms)
    if max_params is not None:
        keep &= rows["params"].astype("float64") <= max_params
    fit = rows[keep]
    if not len(fit):
        budget = ", ".join(f"--{k}={v!r}" for k, v in (("max-drop", max_drop), ("max-latency-ms", max_latency_ms),
                                                        ("max-params", max_params)) if v is not None)
        raise ConfigError(f"no level is within the budget {budget} ({len(rows)} finished levels considered)")
    fit = fit.assign(_params=fit["params"].astype("float64"), _sparsity=fit["sparsity"].astype("float64").fillna(0),
                     _val=fit["val_acc"].astype("float64"), _level=fit["level"].astype("int64"))
    if prefer == "accuracy":
        order = fit.sort_values(["_val", "_params", "_level"], ascending=[False, True, False], kind="stable")
    else:
        order = fit.sort_values(["_params", "_sparsity", "_val"], ascending=[True, False, False], kind="stable")
    return df.loc[order.index[0]]
