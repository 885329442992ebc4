"""Statistics over seeds, done once: means, t and bootstrap intervals, paired differences.

Used by the report's summary tables, by the claim evaluator (:mod:`prunebench.claims`)
and by notebooks. Pure numpy/pandas/scipy: no torch import.

Small samples are handled honestly: with one value there is a mean but no interval (the
bounds are NaN), never a zero-width interval. Intervals are two-sided at ``confidence``
(default 0.95). The t interval is ``mean ± t_{n-1} · s/√n`` (s with ddof=1); the bootstrap
interval is the percentile interval of resampled means (seeded, so reports are stable).

Paired differences match two arms by seed: ``a − b`` per seed present in both, then a t
interval on those differences. Arms that share no seeds (or only one) fall back to Welch's
unpaired interval, and say so (``paired=False``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as _sps

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided interval over ``n`` values; bounds NaN when ``n < 2``."""

    mean: float
    low: float
    high: float
    n: int
    std: float = math.nan  # sample std (ddof=1) of the values (of the differences, if paired)
    method: str = "t"
    paired: bool | None = None  # for differences: matched by seed (True) or Welch (False)

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _values(values: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    a = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce").to_numpy(dtype="float64")
    return a[np.isfinite(a)]


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} must lie in (0, 1)")
    return float(confidence)


def t_quantile(confidence: float, df: float) -> float:
    """The two-sided t critical value: ``t_{df}`` at ``(1 + confidence) / 2``."""
    return float(_sps.t.ppf((1.0 + _check_confidence(confidence)) / 2.0, df))


def t_interval(values: Sequence[float] | np.ndarray | pd.Series, confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t interval of the finite ``values`` (NaNs dropped)."""
    a = _values(values)
    n = len(a)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(a.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    std = float(a.std(ddof=1))
    half = t_quantile(confidence, n - 1) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, std)


def bootstrap_interval(values: Sequence[float] | np.ndarray | pd.Series, confidence: float = CONFIDENCE,
                       n_boot: int = 10_000, seed: int = 0) -> Interval:
    """Mean and percentile-bootstrap interval of the finite ``values`` (seeded resampling).

    With very few values the bootstrap understates the spread (n=2 has three distinct
    resampled means); prefer :func:`t_interval` below ~10 seeds.
    """
    _check_confidence(confidence)
    a = _values(values)
    n = len(a)
    if n < 2:
        return Interval(float(a.mean()) if n else math.nan, math.nan, math.nan, n, method="bootstrap")
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(a.mean()), float(low), float(high), n, float(a.std(ddof=1)), method="bootstrap")


def interval(values: Sequence[float] | np.ndarray | pd.Series, confidence: float = CONFIDENCE,
             method: str = "t") -> Interval:
    """:func:`t_interval` (``method="t"``) or :func:`bootstrap_interval` (``"bootstrap"``)."""
    if method == "t":
        return t_interval(values, confidence)
    if method == "bootstrap":
        return bootstrap_interval(values, confidence)
    raise ValueError(f"method={method!r} is not a known interval; valid: t, bootstrap")


def welch_interval(a: Sequence[float] | np.ndarray | pd.Series, b: Sequence[float] | np.ndarray | pd.Series,
                   confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``a`` minus mean of ``b`` with Welch's unpaired t interval (NaN bounds if either n < 2)."""
    x, y = _values(a), _values(b)
    if not len(x) or not len(y):
        return Interval(math.nan, math.nan, math.nan, min(len(x), len(y)), paired=False)
    diff = float(x.mean() - y.mean())
    n = min(len(x), len(y))
    if len(x) < 2 or len(y) < 2:
        return Interval(diff, math.nan, math.nan, n, paired=False)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0.0:
        return Interval(diff, diff, diff, n, 0.0, paired=False)
    dof = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    half = t_quantile(confidence, dof) * se
    return Interval(diff, diff - half, diff + half, n, se, paired=False)


def paired_differences(a: pd.DataFrame, b: pd.DataFrame, value: str = "test_acc", on: str = "seed") -> pd.DataFrame:
    """Per-``on`` (seed) values of arms ``a`` and ``b`` and their difference ``a − b``.

    Each arm is first averaged per seed (several rows of one seed, e.g. two dense rows of
    a shared dense model, count once). Only seeds present in both arms are kept. Columns:
    ``on``, ``a``, ``b``, ``diff``, sorted by ``on``.
    """
    def per_seed(d: pd.DataFrame) -> pd.Series:
        v = pd.to_numeric(d[value], errors="coerce").astype("float64")
        keep = np.isfinite(v) & d[on].notna()
        return v[keep].groupby(d.loc[keep, on].astype("int64")).mean()

    sa, sb = per_seed(a), per_seed(b)
    both = sa.index.intersection(sb.index).sort_values()
    out = pd.DataFrame({on: both.to_numpy(dtype="int64"), "a": sa.loc[both].to_numpy(),
                        "b": sb.loc[both].to_numpy()})
    out["diff"] = out["a"] - out["b"]
    return out


def difference_interval(a: pd.DataFrame, b: pd.DataFrame, value: str = "test_acc", on: str = "seed",
                        confidence: float = CONFIDENCE) -> Interval:
    """``a − b`` with a paired t interval over shared seeds, else Welch's unpaired interval.

    Paired when at least two seeds are shared (the interval then uses only those seeds) or
    when both arms have the same single seed (a paired difference without interval);
    otherwise the arms' per-seed means are compared unpaired (``paired=False``).
    """
    pairs = paired_differences(a, b, value, on)
    single = len(pairs) == 1 and a[on].nunique() == 1 and b[on].nunique() == 1  # one seed, shared
    if len(pairs) >= 2 or single:
        iv = t_interval(pairs["diff"], confidence)
        return Interval(iv.mean, iv.low, iv.high, iv.n, iv.std, paired=True)

    def per_seed(d: pd.DataFrame) -> pd.Series:
        v = pd.to_numeric(d[value], errors="coerce").astype("float64")
        return v.groupby(d[on]).mean() if on in d.columns else v

    return welch_interval(per_seed(a), per_seed(b), confidence)


def group_intervals(df: pd.DataFrame, by: Sequence[str], value: str = "test_acc", confidence: float = CONFIDENCE,
                    method: str = "t", seed_col: str | None = "seed") -> pd.DataFrame:
    """Per group of ``by``: mean, std, n, ci_low, ci_high of ``value``.

    With ``seed_col`` present, rows are first averaged per seed within a group, so ``n``
    counts seeds, not rows. Groups with one seed have NaN bounds.
    """
    by = list(by)
    d = df.copy()
    d[value] = pd.to_numeric(d[value], errors="coerce").astype("float64")
    d = d[np.isfinite(d[value])]
    cols = [*by, "mean", "std", "n", "ci_low", "ci_high"]
    if not len(d):
        return pd.DataFrame(columns=cols)
    if seed_col and seed_col in d.columns:
        d = d.groupby([*by, seed_col], dropna=False, sort=True)[value].mean().reset_index()
    rows = []
    for key, g in d.groupby(by, dropna=False, sort=True):
        iv = interval(g[value], confidence, method)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "mean": iv.mean, "std": iv.std, "n": iv.n,
                     "ci_low": iv.low, "ci_high": iv.high})
    return pd.DataFrame(rows, columns=cols).astype({"n": "int64"})


def nearest_per_seed(df: pd.DataFrame, at: float, x: str = "sparsity", tolerance: float = 0.02,
                     on: str = "seed") -> pd.DataFrame:
    """For each seed, the row whose ``x`` is nearest to ``at``, if within ``tolerance``.

    How two arms whose schedules differ are matched "at a sparsity": each seed contributes
    its own nearest level. Seeds with no level within ``tolerance`` drop out.
    """
    v = pd.to_numeric(df[x], errors="coerce").astype("float64")
    d = df.assign(_dist=(v - float(at)).abs())
    d = d[np.isfinite(d["_dist"]) & (d["_dist"] <= tolerance + 1e-12)]
    if not len(d):
        return df.iloc[:0]
    idx = d.groupby(on, sort=True)["_dist"].idxmin()
    return df.loc[idx.to_numpy()]


# ---- curves and fronts: shared by the plots, the report, the claims and the sweeps ----------


def curve_labels(df: pd.DataFrame) -> pd.Series:
    """The curve label of every row: ``label`` or "<method>/<schedule>/<retrain>[/<structure>]"."""
    def part(col: str) -> pd.Series:
        if col not in df.columns:
            return pd.Series("?", index=df.index, dtype="string")
        return df[col].astype("string").fillna("?")

    built = part("method") + "/" + part("schedule") + "/" + part("retrain")
    structure = part("structure")
    structured = ~structure.isin(["unstructured", "?"])
    built = built.where(~structured, built + "/" + structure)
    if "label" not in df.columns:
        return built
    return df["label"].astype("string").fillna(built)


def pareto_mask(points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``points`` (n × k) for the given directions.

    A point is dominated when another is at least as good in every objective and strictly
    better in one; equal points do not dominate each other. Rows with NaN are never on
    the front.
    """
    p = np.asarray(points, dtype=float)
    if p.ndim != 2 or p.shape[1] != len(directions):
        raise ValueError(f"points of shape {p.shape} do not match {len(directions)} direction(s)")
    bad = [d for d in directions if d not in ("maximize", "minimize")]
    if bad:
        raise ValueError(f"directions must be 'maximize' or 'minimize', got {bad}")
    sign = np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    q = p * sign  # now larger is better everywhere
    finite = np.isfinite(q).all(axis=1)
    mask = finite.copy()
    for i in np.flatnonzero(finite):
        others = q[finite]
        dominated = (others >= q[i]).all(axis=1) & (others > q[i]).any(axis=1)
        mask[i] = not dominated.any()
    return mask


def feasible_flags(trials: pd.DataFrame, column: str = "user_attrs_feasible") -> np.ndarray:
    """True for feasible (or unconstrained) rows of a trials frame."""
    if column not in trials.columns:
        return np.ones(len(trials), bool)
    return np.array([not (v is False or v is np.False_ or (isinstance(v, (int, float)) and v == 0 and v == v))
                     for v in trials[column]], bool)
