"""Published claims as data, evaluated against a results table with a verdict each.

An experiment config may declare the claims it reproduces (top-level ``claims:``)::

    claims:
      - id: ticket_vs_dense_92
        paper: Greydanus 2020, MNIST-1D lottery-tickets notebook
        where: cell 18 output, retrain #92 (sparsity 0.92)
        quantity: {arm: ticket, at_sparsity: 0.92, minus: dense, metric: test_acc}
        paper_value: 0.094
        rule: {direction: greater, margin: 0.0, min_effect: 0.05}

``quantity`` says what is measured, per seed:

- ``arm``: the rows of one curve: a label (string) or a mapping column → value
  (``{label: ticket}``, ``{retrain: weight_rewind, scope: layer}``).
- ``at_sparsity`` (nearest achieved ``sparsity`` per seed, within ``sparsity_tolerance``,
  default 0.02) or ``at_level`` (that level); one of the two.
- ``minus`` (optional): ``dense`` (level 0 of the arm's runs) or another arm (label or
  mapping), measured at ``minus_at_sparsity`` / ``minus_at_level`` (default: the arm's).
- ``metric``: a results column (default ``test_acc``). Values are as stored (fractions).

With ``minus``, the quantity is the difference, paired by seed when the arms share at
least two seeds (else Welch's unpaired interval). ``rule`` decides the verdict from the
mean and its 95% t interval (``confidence`` to change it):

- ``{tolerance: t}``: reproduced when the whole interval lies within ``paper_value ± t``;
  not reproduced when it lies wholly outside; else inconclusive.
- ``{direction: greater|less, margin: m, min_effect: e}``: for ``greater``, reproduced when
  the interval lies above ``m`` (default 0) and the mean reaches ``e`` (default ``m``); not
  reproduced when the interval's top is at or below ``m``, or below ``e``; else
  inconclusive. ``less`` mirrors it.

Fewer than ``min_seeds`` (default 2) values: inconclusive, whatever the mean says.

At report time the claims come from ``<root>/claims/<experiment>.json`` (written by
:func:`write_claims` when a study starts, so the verdict judges the claims the runs were
made for), else from the packaged ``conf/experiment/<experiment>.yaml``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prunebench import stats
from prunebench.errors import ConfigError

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)

_CLAIM_KEYS = {"id", "paper", "where", "quantity", "paper_value", "rule", "note"}
_QUANTITY_KEYS = {"arm", "at_sparsity", "at_level", "minus", "minus_at_sparsity", "minus_at_level", "metric",
                  "sparsity_tolerance"}
_RULE_KEYS = {"tolerance", "direction", "margin", "min_effect", "min_seeds", "confidence"}
DIRECTIONS = ("greater", "less")


@dataclass(frozen=True)
class Quantity:
    """What a claim measures: ``arm`` at a sparsity or level, optionally minus another arm or dense."""

    arm: Mapping[str, Any]
    at_sparsity: float | None = None
    at_level: int | None = None
    minus: Mapping[str, Any] | str | None = None  # "dense", an arm, or None
    minus_at_sparsity: float | None = None
    minus_at_level: int | None = None
    metric: str = "test_acc"
    sparsity_tolerance: float = 0.02

    def describe(self) -> str:
        def where(s: float | None, lvl: int | None) -> str:
            return f"@{100 * s:.1f}%" if s is not None else f"@level {lvl}"

        text = f"{self.metric}[{_arm_text(self.arm)} {where(self.at_sparsity, self.at_level)}]"
        if self.minus == "dense":
            text += " − dense"
        elif self.minus is not None:
            s, lvl = self.minus_point()
            text += f" − {self.metric}[{_arm_text(self.minus)} {where(s, lvl)}]"
        return text

    def minus_point(self) -> tuple[float | None, int | None]:
        """(sparsity, level) at which the ``minus`` arm is read: its own, else the arm's."""
        if self.minus_at_level is not None:
            return None, self.minus_at_level
        if self.minus_at_sparsity is not None:
            return self.minus_at_sparsity, None
        return self.at_sparsity, self.at_level


@dataclass(frozen=True)
class Rule:
    """How the interval of the measured quantity becomes a verdict (see the module docstring)."""

    tolerance: float | None = None
    direction: str | None = None
    margin: float = 0.0
    min_effect: float | None = None
    min_seeds: int = 2
    confidence: float = stats.CONFIDENCE

    def describe(self) -> str:
        if self.tolerance is not None:
            return f"ours within paper ± {self.tolerance:g}"
        op = ">" if self.direction == "greater" else "<"
        text = f"CI {op} {self.margin:g}"
        if self.min_effect is not None:
            text += f", mean {op}= {self.min_effect:g}"
        return text


@dataclass(frozen=True)
class Claim:
    """One published claim: where it is from, what it measures, the paper's value, the rule."""

    id: str
    paper: str
    where: str
    quantity: Quantity
    paper_value: float | None
    rule: Rule
    note: str = ""


@dataclass
class Verdict:
    """A claim's outcome on a table."""

    claim: Claim
    experiment: str
    mean: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int = 0
    paired: bool | None = None
    verdict: str = INCONCLUSIVE
    reason: str = ""
    per_seed: dict[int, float] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """A flat row for claims.csv."""
        c = self.claim
        return {"experiment": self.experiment, "claim": c.id, "paper": c.paper, "where": c.where,
                "quantity": c.quantity.describe(), "metric": c.quantity.metric, "paper_value": c.paper_value,
                "ours_mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n,
                "paired": self.paired, "rule": c.rule.describe(), "verdict": self.verdict, "reason": self.reason}


# ---- parsing -------------------------------------------------------------------------


def _arm_text(arm: Mapping[str, Any] | str) -> str:
    if isinstance(arm, str):
        return arm
    if set(arm) == {"label"}:
        return str(arm["label"])
    return ",".join(f"{k}={v}" for k, v in arm.items())


def _number(where: str, key: str, value: Any, *, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ConfigError(f"{where}: {key}={value!r} must be a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{where}: {key}={value!r} must lie in [{low}, {high}]")
    return float(value)


def _level(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: {key}={value!r} must be a non-negative integer (a level)")
    return int(value)


def _arm(where: str, key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str) and value:
        return {"label": value}
    if isinstance(value, Mapping) and value and all(isinstance(k, str) for k in value):
        return {str(k): v for k, v in value.items()}
    raise ConfigError(f"{where}: {key}={value!r} must be a label (string) or a mapping column -> value")


def _unknown(where: str, node: Mapping[str, Any], known: set[str]) -> None:
    extra = sorted(set(node) - known)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}; valid: {', '.join(sorted(known))}")


def parse_claim(raw: Mapping[str, Any], index: int = 0) -> Claim:
    """Validate one claim mapping; ConfigError names the claim (id or position) and the key."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"claims[{index}] must be a mapping, got {type(raw).__name__}")
    cid = raw.get("id")
    if not isinstance(cid, str) or not cid:
        raise ConfigError(f"claims[{index}]: id={cid!r} must be a non-empty string")
    where = f"claim {cid!r}"
    _unknown(where, raw, _CLAIM_KEYS)
    for key in ("paper", "where"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            raise ConfigError(f"{where}: {key}={raw.get(key)!r} must be a non-empty string (cite the source)")

    q = raw.get("quantity")
    if not isinstance(q, Mapping):
        raise ConfigError(f"{where}: quantity={q!r} must be a mapping with keys {', '.join(sorted(_QUANTITY_KEYS))}")
    _unknown(f"{where} quantity", q, _QUANTITY_KEYS)
    if "arm" not in q:
        raise ConfigError(f"{where}: quantity.arm is required (a label or a mapping column -> value)")
    arm = _arm(where, "quantity.arm", q["arm"])
    if ("at_sparsity" in q) == ("at_level" in q):
        raise ConfigError(f"{where}: quantity needs exactly one of at_sparsity, at_level")
    at_s = _number(where, "quantity.at_sparsity", q["at_sparsity"], low=0.0, high=1.0) if "at_sparsity" in q else None
    at_l = _level(where, "quantity.at_level", q["at_level"]) if "at_level" in q else None
    minus: Mapping[str, Any] | str | None = None
    if q.get("minus") is not None:
        minus = "dense" if q["minus"] == "dense" else _arm(where, "quantity.minus", q["minus"])
    m_s = (_number(where, "quantity.minus_at_sparsity", q["minus_at_sparsity"], low=0.0, high=1.0)
           if q.get("minus_at_sparsity") is not None else None)
    m_l = _level(where, "quantity.minus_at_level", q["minus_at_level"]) if q.get("minus_at_level") is not None else None
    if (m_s is not None or m_l is not None) and (minus is None or minus == "dense"):
        raise ConfigError(f"{where}: quantity.minus_at_* needs quantity.minus to name an arm")
    metric = q.get("metric", "test_acc")
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"{where}: quantity.metric={metric!r} must be a column name")
    tol = _number(where, "quantity.sparsity_tolerance", q.get("sparsity_tolerance", 0.02), low=0.0, high=1.0)
    quantity = Quantity(arm, at_s, at_l, minus, m_s, m_l, metric, tol)

    pv = raw.get("paper_value")
    paper_value = None if pv is None else _number(where, "paper_value", pv)

    r = raw.get("rule")
    if not isinstance(r, Mapping):
        raise ConfigError(f"{where}: rule={r!r} must be a mapping: {{tolerance: t}} or {{direction: greater|less}}")
    _unknown(f"{where} rule", r, _RULE_KEYS)
    if ("tolerance" in r) == ("direction" in r):
        raise ConfigError(f"{where}: rule needs exactly one of tolerance, direction")
    tolerance = direction = None
    if "tolerance" in r:
        tolerance = _number(where, "rule.tolerance", r["tolerance"], low=0.0)
        if paper_value is None:
            raise ConfigError(f"{where}: rule.tolerance needs a paper_value to compare with")
    else:
        direction = r["direction"]
        if direction not in DIRECTIONS:
            raise ConfigError(f"{where}: rule.direction={direction!r} is not valid; valid: {', '.join(DIRECTIONS)}")
    margin = _number(where, "rule.margin", r.get("margin", 0.0))
    min_effect = _number(where, "rule.min_effect", r["min_effect"]) if r.get("min_effect") is not None else None
    min_seeds = r.get("min_seeds", 2)
    if isinstance(min_seeds, bool) or not isinstance(min_seeds, int) or min_seeds < 2:
        raise ConfigError(f"{where}: rule.min_seeds={min_seeds!r} must be an integer >= 2 (one seed has no interval)")
    confidence = _number(where, "rule.confidence", r.get("confidence", stats.CONFIDENCE), low=0.5, high=0.999)
    rule = Rule(tolerance, direction, margin, min_effect, min_seeds, confidence)
    note = raw.get("note", "")
    return Claim(cid, raw["paper"], raw["where"], quantity, paper_value, rule, str(note or ""))


def parse_claims(raw: Any) -> list[Claim]:
    """Validate the ``claims:`` list of an experiment config (None → no claims)."""
    if raw is None:
        return []
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise ConfigError(f"claims={raw!r} must be a list of claim mappings")
    claims = [parse_claim(c, i) for i, c in enumerate(raw)]
    seen: set[str] = set()
    for c in claims:
        if c.id in seen:
            raise ConfigError(f"claim {c.id!r}: id used twice; claim ids must be unique within an experiment")
        seen.add(c.id)
    return claims


# ---- evaluation ----------------------------------------------------------------------


def _ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    if "status" in df.columns:
        df = df[df["status"].isna() | (df["status"] == "ok")]
    return df


def _select(df: pd.DataFrame, arm: Mapping[str, Any]) -> pd.DataFrame:
    keep = pd.Series(True, index=df.index)
    for col, val in arm.items():
        if col == "label":
            keep &= stats.curve_labels(df).astype("string") == str(val)
        elif col not in df.columns:
            return df.iloc[:0]
        else:
            s = df[col]
            keep &= (s.astype("string") == str(val)) if not isinstance(val, (int, float)) or isinstance(val, bool) \
                else (pd.to_numeric(s, errors="coerce") == float(val))
    return df[keep.fillna(False).astype(bool)]


def _at(rows: pd.DataFrame, sparsity: float | None, level: int | None, tolerance: float) -> pd.DataFrame:
    lv = rows["level"].astype("Int64").fillna(-1)
    if level is not None:
        return rows[lv == level]
    # Pruned levels only: a dense row at sparsity 0 is never "the arm at 0% sparsity".
    return stats.nearest_per_seed(rows[lv >= 1], float(sparsity), "sparsity", tolerance)


def _dense_rows(arm_rows: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Level-0 rows of the arm's own runs; else level 0 of the same data set and model."""
    level0 = df[df["level"].astype("Int64").fillna(-1) == 0]
    own = level0[level0["run_id"].isin(arm_rows["run_id"])] if "run_id" in df.columns else level0.iloc[:0]
    if len(own):
        return own
    for col in ("dataset", "model"):
        if col in df.columns and len(arm_rows):
            level0 = level0[level0[col].isin(arm_rows[col].dropna().unique())]
    return level0


def evaluate_claim(claim: Claim, df: pd.DataFrame, experiment: str = "") -> Verdict:
    """Measure ``claim.quantity`` on ``df`` (rows of one experiment) and decide the verdict."""
    q, rule = claim.quantity, claim.rule
    v = Verdict(claim, experiment)
    if q.metric not in df.columns:
        v.reason = f"no column {q.metric!r} in the table"
        return v
    d = _ok_rows(df)
    arm_all = _select(d, q.arm)
    if not len(arm_all):
        v.reason = f"no rows for arm {_arm_text(q.arm)}"
        return v
    a = _at(arm_all, q.at_sparsity, q.at_level, q.sparsity_tolerance)
    if not len(a):
        v.reason = f"arm {_arm_text(q.arm)} has no level near the requested point"
        return v
    if q.minus is None:
        iv = stats.t_interval(a.groupby("seed")[q.metric].mean(), rule.confidence)
        per_seed = a.groupby("seed")[q.metric].mean()
    else:
        if q.minus == "dense":
            b = _dense_rows(arm_all, d)
        else:
            b_all = _select(d, q.minus)
            s, lvl = q.minus_point()
            b = _at(b_all, s, lvl, q.sparsity_tolerance) if len(b_all) else b_all
        if not len(b):
            v.reason = f"no rows for {'dense (level 0)' if q.minus == 'dense' else _arm_text(q.minus)}"
            return v
        iv = stats.difference_interval(a, b, q.metric, "seed", rule.confidence)
        pairs = stats.paired_differences(a, b, q.metric)
        per_seed = pairs.set_index("seed")["diff"] if iv.paired else pd.Series(dtype="float64")
        v.paired = iv.paired
    v.mean, v.ci_low, v.ci_high, v.n = iv.mean, iv.low, iv.high, iv.n
    v.per_seed = {int(k): float(x) for k, x in per_seed.items()}
    v.verdict, v.reason = decide(claim, iv)
    return v


def decide(claim: Claim, iv: stats.Interval) -> tuple[str, str]:
    """The verdict and its reason from the quantity's interval, by ``claim.rule``."""
    rule = claim.rule
    if iv.n < rule.min_seeds or not iv.has_interval:
        return INCONCLUSIVE, f"n={iv.n} seed(s): fewer than {rule.min_seeds}, no interval to judge"
    lo, hi, mean = iv.low, iv.high, iv.mean
    if rule.tolerance is not None:
        p, t = float(claim.paper_value), rule.tolerance  # type: ignore[arg-type]
        if p - t <= lo and hi <= p + t:
            return REPRODUCED, f"interval [{lo:.4g}, {hi:.4g}] within {p:g} ± {t:g}"
        if hi < p - t or lo > p + t:
            return NOT_REPRODUCED, f"interval [{lo:.4g}, {hi:.4g}] outside {p:g} ± {t:g}"
        return INCONCLUSIVE, f"interval [{lo:.4g}, {hi:.4g}] straddles the edge of {p:g} ± {t:g}"
    sign = 1.0 if rule.direction == "greater" else -1.0
    m = rule.margin
    e = rule.min_effect if rule.min_effect is not None else m
    # Mirror "less" onto "greater": compare sign * values.
    slo, shi = (lo, hi) if sign > 0 else (-hi, -lo)
    smean, sm, se = sign * mean, sign * m, sign * e
    op = ">" if sign > 0 else "<"
    if slo > sm and smean >= se:
        return REPRODUCED, f"interval [{lo:.4g}, {hi:.4g}] {op} {m:g} and mean {mean:.4g} reaches {e:g}"
    if shi <= sm:
        return NOT_REPRODUCED, f"interval [{lo:.4g}, {hi:.4g}] not {op} {m:g}"
    if shi < se:
        return NOT_REPRODUCED, f"interval [{lo:.4g}, {hi:.4g}] falls short of the effect {e:g}"
    if slo <= sm:
        return INCONCLUSIVE, f"interval [{lo:.4g}, {hi:.4g}] straddles {m:g}"
    return INCONCLUSIVE, f"interval [{lo:.4g}, {hi:.4g}] {op} {m:g} but the mean {mean:.4g} misses {e:g}"


def evaluate(claims: Iterable[Claim], df: pd.DataFrame, experiment: str = "") -> list[Verdict]:
    """Verdicts of every claim on ``df`` (rows of ``experiment`` only, when the column exists)."""
    if experiment and "experiment" in df.columns:
        df = df[df["experiment"].astype("string") == experiment]
    return [evaluate_claim(c, df, experiment) for c in claims]


# ---- where claims live at report time ------------------------------------------------


def claims_dir(root: str | os.PathLike[str]) -> Path:
    return Path(root) / "claims"


def write_claims(root: str | os.PathLike[str], experiment: str, raw: Any) -> Path | None:
    """Snapshot an experiment's ``claims:`` (validated) into ``<root>/claims/<experiment>.json``.

    Called when a study starts, so the report judges the claims its runs were made for,
    even after the packaged config changes. No claims → nothing written (returns None).
    """
    from prunebench.results.store import atomic_write_text

    from prunebench.results.names import check_file_name

    check_file_name(experiment, "experiment_name")  # never a path out of ROOT/claims
    claims = parse_claims(_plain(raw))
    if not claims:
        return None
    path = claims_dir(root) / f"{experiment}.json"
    atomic_write_text(path, json.dumps(_plain(raw), indent=2, sort_keys=True) + "\n")
    return path


def _plain(raw: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(raw, (DictConfig, ListConfig)):
            return OmegaConf.to_container(raw, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        pass
    return raw


def packaged_conf_dir() -> Path:
    """The ``conf/`` folder the CLI composes from (``PRUNEBENCH_CONF`` overrides it)."""
    return Path(os.environ.get("PRUNEBENCH_CONF", str(Path(__file__).resolve().parent.parent / "conf")))


def load_claims(root: str | os.PathLike[str], experiment: str, conf_dir: str | os.PathLike[str] | None = None) \
        -> tuple[list[Claim], str]:
    """The claims of ``experiment`` and where they came from ("" when none).

    ``<root>/claims/<experiment>.json`` first (the study's snapshot), else
    ``<conf_dir>/experiment/<experiment>.yaml`` (the packaged config's ``claims:`` key).
    """
    snap = claims_dir(root) / f"{experiment}.json"
    if snap.exists():
        try:
            raw = json.loads(snap.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"claims file {snap} is unreadable ({exc}); delete it to fall back to the config")
        return parse_claims(raw), str(snap)
    path = Path(conf_dir or packaged_conf_dir()) / "experiment" / f"{experiment}.yaml"
    if not path.exists():
        return [], ""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    raw = cfg.get("claims") if hasattr(cfg, "get") else None
    return parse_claims(_plain(raw)), (str(path) if raw is not None else "")


def evaluate_root(df: pd.DataFrame, root: str | os.PathLike[str],
                  conf_dir: str | os.PathLike[str] | None = None) -> tuple[list[Verdict], dict[str, str]]:
    """Verdicts of every claim of every ``experiment`` value in ``df``; and experiment → claim source."""
    if "experiment" not in df.columns:
        return [], {}
    verdicts: list[Verdict] = []
    sources: dict[str, str] = {}
    for exp in sorted(df["experiment"].dropna().astype(str).unique()):
        claims, source = load_claims(root, exp, conf_dir)
        if claims:
            sources[exp] = source
            verdicts += evaluate(claims, df, exp)
    return verdicts, sources


# ---- rendering -----------------------------------------------------------------------


def _is_acc(metric: str) -> bool:
    return metric.endswith("acc")


def _fmt(value: float | None, metric: str, diff: bool) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    if _is_acc(metric):
        return f"{100 * float(value):+.2f} pp" if diff else f"{100 * float(value):.2f}%"
    return f"{float(value):+.4g}" if diff else f"{float(value):.4g}"


def verdict_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """claims.csv: one row per claim (values as stored: fractions)."""
    cols = list(Verdict(Claim("", "", "", Quantity({}), None, Rule()), "").row())
    return pd.DataFrame([v.row() for v in verdicts], columns=cols)


def render_markdown(verdicts: Sequence[Verdict], sources: Mapping[str, str] | None = None) -> str:
    """claims.md: one line per claim with the paper's value, ours (mean, 95% CI), n, verdict."""
    lines = ["# Claims: published results against ours", "",
             "Ours: mean over seeds with its t interval; differences are paired by seed where the arms share "
             "seeds (else Welch). A verdict needs at least two seeds: with fewer it is *inconclusive*.", ""]
    if not verdicts:
        return "\n".join(lines + ["No claims declared by the experiments under this root.", ""])
    head = "| experiment | claim | paper (where) | quantity | paper value | ours (95% CI) | n | rule | verdict |"
    lines += [head, "|" + "---|" * 9]
    for v in verdicts:
        c, q = v.claim, v.claim.quantity
        diff = q.minus is not None
        ours = _fmt(v.mean, q.metric, diff)
        if v.n >= 2 and math.isfinite(v.ci_low):
            ours += f" [{_fmt(v.ci_low, q.metric, diff)}, {_fmt(v.ci_high, q.metric, diff)}]"
        if v.paired is not None:
            ours += " paired" if v.paired else " unpaired"
        cells = [v.experiment, c.id, f"{c.paper} ({c.where})", q.describe(), _fmt(c.paper_value, q.metric, diff),
                 ours, str(v.n), c.rule.describe(), f"**{v.verdict}**"]
        lines.append("| " + " | ".join(x.replace("|", "/") for x in cells) + " |")
    lines += ["", "## Reasons", ""]
    lines += [f"- `{v.experiment}/{v.claim.id}`: {v.verdict}: {v.reason}" + (f" ({v.claim.note})" if v.claim.note
                                                                            else "") for v in verdicts]
    if sources:
        lines += ["", "Claims read from: " + "; ".join(f"{k}: {s}" for k, s in sorted(sources.items()))]
    return "\n".join(lines) + "\n"


def as_dicts(verdicts: Sequence[Verdict]) -> list[dict[str, Any]]:
    """JSON-friendly rows (NaN → None)."""
    out = []
    for v in verdicts:
        row = v.row()
        out.append({k: (None if isinstance(x, float) and not np.isfinite(x) else x) for k, x in row.items()})
    return out


__all__ = ["Claim", "Quantity", "Rule", "Verdict", "VERDICTS", "REPRODUCED", "NOT_REPRODUCED", "INCONCLUSIVE",
           "parse_claim", "parse_claims", "evaluate", "evaluate_claim", "decide", "write_claims", "load_claims",
           "evaluate_root", "verdict_table", "render_markdown"]
