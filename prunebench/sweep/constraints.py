"""Constraints, the ``auto`` sampler rule and hypervolume for Optuna pruning studies.

* ``sweep.constraints: ['latency_ms<=2.0', 'params<=1e5']`` — a budget is a constraint,
  not an objective. Each is ``<column><=<number>`` or ``<column>>=<number>`` over a
  validation/cost column of the final level's row. The job sets Optuna 5's per-trial
  constraint values (``Trial.set_constraint``: value - bound for ``<=``, bound - value for
  ``>=``; feasible when every one is <= 0), which TPE, GP and NSGA-II read when they
  sample (Optuna 5 deprecates the sampler's ``constraints_func`` for this). The trial's
  user attributes carry ``feasible`` and ``constraints`` ({expression: violation}) for the
  report, the Pareto plot and optuna-dashboard.
* ``sweep.sampler=auto``: see :func:`auto_sampler`.
* ``sweep.reference_point``: one value per objective, in the objective's own units,
  worse than anything that counts (e.g. ``[0.0, 0.0]`` for val_acc ↑ vs sparsity ↑);
  :func:`hypervolume_history` gives the hypervolume of the feasible complete trials
  after each trial.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prunebench.errors import ConfigError
from prunebench.stats import feasible_flags, pareto_mask  # noqa: F401  (feasible_flags re-exported)

#: Validation/cost columns of the results table that may be objectives, with the direction
#: that is "better". Test columns (test_acc, test_loss, acc_pruned) are never objectives:
#: selection uses validation only.
OBJECTIVES: dict[str, str] = {
    "val_acc": "maximize",
    "val_loss": "minimize",
    "acc_pruned_val": "maximize",
    "sparsity": "maximize",
    "compression": "maximize",
    "params": "minimize",
    "params_nonzero": "minimize",
    "prunable_nonzero": "minimize",
    "flops": "minimize",
    "speedup_theoretical": "maximize",
    "latency_ms": "minimize",
    "latency_ms_large": "minimize",
    "speedup_measured": "maximize",
    "train_seconds": "minimize",
}
TEST_COLUMNS = ("test_acc", "test_loss", "acc_pruned")

#: Above this many trials ``sampler=auto`` picks NSGA-II (multi-objective): a GP's cost
#: grows with the cube of the trials it has seen, and NSGA-II's default population of 50
#: then has at least 4 generations to evolve.
LARGE_BUDGET = 200
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``column <= bound`` or ``column >= bound`` on the final level's row."""

    column: str
    op: str
    bound: float

    @property
    def expression(self) -> str:
        return f"{self.column}{self.op}{self.bound:g}"

    def violation(self, value: float) -> float:
        """<= 0 when satisfied; how far past the bound otherwise."""
        return float(value) - self.bound if self.op == "<=" else self.bound - float(value)


def parse_constraints(items: Any) -> tuple[Constraint, ...]:
    """Parse ``sweep.constraints`` strictly; ConfigError names the key and the value."""
    if items is None:
        return ()
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"sweep.constraints={items!r}: expected a list such as ['latency_ms<=2.0', 'params<=1e5']")
    out: list[Constraint] = []
    for item in items:
        m = _CONSTRAINT.match(item) if isinstance(item, str) else None
        if m is None:
            raise ConfigError(f"sweep.constraints: {item!r} is not '<column><=<number>' or '<column>>=<number>' "
                              f"(e.g. 'latency_ms<=2.0', 'params<=1e5', 'val_acc>=0.6')")
        column, op, bound = m.group(1), m.group(2), float(m.group(3))
        if column in TEST_COLUMNS:
            raise ConfigError(f"sweep.constraints: {item!r} constrains a test metric; constraints, like objectives, "
                              f"use validation or cost columns only. Valid: {', '.join(OBJECTIVES)}")
        if column not in OBJECTIVES:
            raise ConfigError(f"sweep.constraints: {item!r}: {column!r} is not a constrainable column; "
                              f"valid: {', '.join(OBJECTIVES)}")
        if not math.isfinite(bound):
            raise ConfigError(f"sweep.constraints: {item!r}: the bound must be finite")
        out.append(Constraint(column, op, bound))
    names = [c.expression for c in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"sweep.constraints={list(items)}: repeated constraint")
    return tuple(out)


def parse_reference_point(value: Any, objectives: Sequence[str]) -> tuple[float, ...] | None:
    """``sweep.reference_point``: null or one finite number per objective."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != len(objectives) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ConfigError(f"sweep.reference_point={value!r}: expected one finite number per objective "
                          f"{list(objectives)} (e.g. [0.0, 0.0] for val_acc and sparsity), or null")
    return tuple(float(v) for v in value)


def evaluate(constraints: Sequence[Constraint], row: Mapping[str, Any]) -> dict[str, float]:
    """{expression: violation} for a results row; raises ValueError for a missing value."""
    out = {}
    for c in constraints:
        v = row.get(c.column)
        try:
            v = float(v)
        except (TypeError, ValueError):
            v = math.nan
        if not math.isfinite(v):
            raise ValueError(f"constraint {c.expression!r}: the final row has no finite {c.column!r}")
        out[c.expression] = c.violation(v)
    return out


# ---- sampler choice ----------------------------------------------------------------------------
def auto_sampler(space: Any, n_objectives: int, n_trials: int) -> tuple[str, str]:
    """The sampler ``sweep.sampler=auto`` picks, and why (one line, logged by the sweep).

    NSGA-II for large multi-objective budgets (n_trials >= LARGE_BUDGET); TPE when a
    categorical or conditional parameter is present (a parameter inside a config group
    that is itself searched, e.g. ``pruning.scope`` with ``pruning=choice(...)``), since a
    GP models numbers, not categories, and has no notion of a parameter that only matters
    for some choices; else GP (all-numeric spaces: the most sample-efficient at small budgets).
    """
    from optuna.distributions import CategoricalDistribution

    params = list(getattr(space, "params", ()) or ())
    if n_objectives > 1 and n_trials >= LARGE_BUDGET:
        return "nsga2", f"{n_trials} trials >= {LARGE_BUDGET}, {n_objectives} objectives"
    categorical = [p.name for p in params if isinstance(p.distribution, CategoricalDistribution)]
    names = {p.name for p in params}
    conditional = [n for n in names if any(n.startswith(f"{other}.") for other in names if other != n)]
    if categorical or conditional:
        why = ", ".join([*(f"{n} categorical" for n in categorical), *(f"{n} conditional" for n in conditional)])
        return "tpe", why
    if n_trials >= LARGE_BUDGET:
        return "tpe", f"{n_trials} trials >= {LARGE_BUDGET} (a GP's cost grows with the cube of the trials)"
    return "gp", "all parameters numeric"


# ---- hypervolume -------------------------------------------------------------------------------
def _losses(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return points * sign  # Optuna's hypervolume minimises every coordinate


def hypervolume(points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str],
                reference_point: Sequence[float]) -> float:
    """Hypervolume dominated by ``points`` (n × k, objective units) up to ``reference_point``.

    Points not strictly better than the reference in every objective add nothing.
    Uses Optuna's exact computation (the one behind ``optuna.visualization.plot_hypervolume_history``).
    """
    from optuna._hypervolume import compute_hypervolume

    p = np.asarray(points, dtype=float).reshape(-1, len(directions))
    ref = _losses(np.asarray(reference_point, dtype=float)[None, :], directions)[0]
    loss = _losses(p, directions)
    loss = loss[np.isfinite(loss).all(axis=1) & (loss < ref).all(axis=1)]
    if not len(loss):
        return 0.0
    return float(compute_hypervolume(loss, ref))


def default_reference_point(points: np.ndarray, directions: Sequence[str]) -> tuple[float, ...]:
    """Without ``sweep.reference_point``: the worst value seen per objective (not comparable across studies)."""
    p = np.asarray(points, dtype=float)
    worst = [np.nanmin(p[:, i]) if d == "maximize" else np.nanmax(p[:, i]) for i, d in enumerate(directions)]
    return tuple(float(w) for w in worst)


def hypervolume_history(trials: pd.DataFrame, objectives: Sequence[str], directions: Sequence[str],
                        reference_point: Sequence[float], feasible: str | None = "user_attrs_feasible") -> pd.DataFrame:
    """Hypervolume of the feasible complete trials after each trial, by trial number.

    ``trials``: ``Study.trials_dataframe()`` (or any frame with ``number``, ``state`` and the
    objective columns); trials without ``feasible`` (no constraints) count as feasible.
    Returns columns ``number`` and ``hypervolume`` (one row per trial, any state).
    """
    t = trials.sort_values("number", kind="stable")
    ok = np.ones(len(t), bool)
    if "state" in t.columns:
        ok &= t["state"].astype(str).str.upper().str.endswith("COMPLETE").to_numpy()
    if feasible:
        ok &= feasible_flags(t, feasible)
    pts = np.column_stack([pd.to_numeric(t[c], errors="coerce").to_numpy(float) for c in objectives])
    out, kept = [], []
    for i in range(len(t)):
        if ok[i] and np.isfinite(pts[i]).all():
            kept.append(pts[i])
        out.append(hypervolume(np.array(kept), directions, reference_point) if kept else 0.0)
    return pd.DataFrame({"number": t["number"].to_numpy(int), "hypervolume": out})


def is_feasible(trial: Any) -> bool:
    """A frozen trial is feasible when every constraint value is <= 0 (none: feasible)."""
    return all(v <= 0 for v in trial.constraints.values())


def best_feasible(trials: Sequence[Any], directions: Sequence[str]) -> list[Any]:
    """The best feasible complete trial (single objective, a one-item list) or the feasible Pareto front."""
    ok = [t for t in trials if t.state.name == "COMPLETE" and is_feasible(t)]
    if not ok:
        return []
    if len(directions) == 1:
        key = (lambda t: t.value) if directions[0] == "maximize" else (lambda t: -t.value)
        return [max(ok, key=key)]
    on = pareto_mask(np.array([t.values for t in ok], dtype=float), directions)
    return [t for t, keep in zip(ok, on) if keep]


def study_summary(study: Any) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """One report row for a stored study, and its hypervolume history (multi-objective only).

    Columns: study, objectives, trials, complete, feasible, constraints, reference_point,
    hypervolume (of the feasible complete trials), best (the best feasible trial or the
    feasible Pareto front, as trial numbers). The reference point is the study's
    ``reference_point`` attribute (``sweep.reference_point``), else the worst value seen.
    """
    trials = study.get_trials(deepcopy=False)
    directions = [d.name.lower() for d in study.directions]
    objectives = list(study.metric_names or [f"objective {i}" for i in range(len(directions))])
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = best_feasible(complete, directions)
    row: dict[str, Any] = {
        "study": study.study_name, "objectives": ", ".join(objectives), "trials": len(trials),
        "complete": len(complete), "feasible": sum(is_feasible(t) for t in complete),
        "constraints": ", ".join(study.user_attrs.get("constraints") or []),
        "reference_point": None, "hypervolume": math.nan,
        "best": " ".join(f"#{t.number}" for t in sorted(best, key=lambda t: t.number)),
    }
    if len(directions) < 2 or not complete:
        return row, None
    ref = study.user_attrs.get("reference_point")
    if ref is None:
        ref = default_reference_point(np.array([t.values for t in complete], dtype=float), directions)
    frame = pd.DataFrame({
        "number": [t.number for t in trials], "state": [t.state.name for t in trials],
        "feasible": [is_feasible(t) for t in trials],
        **{f"values_{i}": [t.values[i] if t.values else math.nan for t in trials] for i in range(len(directions))},
    })
    history = hypervolume_history(frame, [f"values_{i}" for i in range(len(directions))], directions, ref,
                                  feasible="feasible")
    row["reference_point"] = "(" + ", ".join(f"{v:g}" for v in ref) + ")"
    row["hypervolume"] = float(history["hypervolume"].iloc[-1]) if len(history) else 0.0
    return row, history
