"""prunebench.claims: parsing errors, and verdicts on hand-made tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from prunebench import claims as C
from prunebench.errors import ConfigError


def _table() -> pd.DataFrame:
    """Three seeds; per seed a ticket run and a reinit run (each with its level-0 dense row)."""
    dense = [0.65, 0.66, 0.64]
    ticket = [0.75, 0.77, 0.74]  # minus dense: 0.10, 0.11, 0.10
    reinit = [0.60, 0.62, 0.58]  # minus dense: -0.05, -0.04, -0.06
    rows = []
    for s in range(3):
        for label, acc in (("ticket", ticket[s]), ("reinit", reinit[s])):
            rid = f"{label}{s}"
            base = {"run_id": rid, "seed": s, "label": label, "experiment": "exp", "status": "ok"}
            rows.append({**base, "level": 0, "sparsity": 0.0, "test_acc": dense[s]})
            rows.append({**base, "level": 1, "sparsity": 0.5, "test_acc": dense[s]})
            rows.append({**base, "level": 2, "sparsity": 0.918 + 0.001 * s, "test_acc": acc})
    return pd.DataFrame(rows)


def _claim(**over: object) -> C.Claim:
    raw = {"id": "c", "paper": "P", "where": "Fig. 1",
           "quantity": {"arm": "ticket", "at_sparsity": 0.92, "minus": "dense"},
           "paper_value": 0.094, "rule": {"direction": "greater", "min_effect": 0.05}}
    raw.update(over)
    return C.parse_claim(raw)


def test_direction_claim_reproduced_with_paired_interval() -> None:
    v = C.evaluate_claim(_claim(), _table(), "exp")
    assert v.verdict == C.REPRODUCED
    assert v.paired is True and v.n == 3
    assert v.mean == pytest.approx(0.1033333, abs=1e-6)
    assert v.ci_low == pytest.approx(0.1033333 - 0.0143422, abs=1e-6)
    assert v.per_seed == pytest.approx({0: 0.10, 1: 0.11, 2: 0.10})


def test_direction_claim_not_reproduced() -> None:
    v = C.evaluate_claim(_claim(quantity={"arm": "reinit", "at_sparsity": 0.92, "minus": "dense"}), _table())
    assert v.verdict == C.NOT_REPRODUCED
    assert v.ci_high < 0


def test_effect_size_missed_is_not_reproduced_even_if_positive() -> None:
    v = C.evaluate_claim(_claim(rule={"direction": "greater", "min_effect": 0.2}), _table())
    assert v.verdict == C.NOT_REPRODUCED and "short of the effect" in v.reason


def test_tolerance_reproduced_and_inconclusive() -> None:
    assert C.evaluate_claim(_claim(rule={"tolerance": 0.03}), _table()).verdict == C.REPRODUCED
    # 0.094 ± 0.01 = [0.084, 0.104]; ours [0.0890, 0.1177] straddles the top edge.
    v = C.evaluate_claim(_claim(rule={"tolerance": 0.01}), _table())
    assert v.verdict == C.INCONCLUSIVE and "straddles" in v.reason
    # Dense alone: 0.65 ± 0.0248 against 0.80 ± 0.01: wholly outside.
    far = _claim(quantity={"arm": "ticket", "at_level": 0}, paper_value=0.80, rule={"tolerance": 0.01})
    assert C.evaluate_claim(far, _table()).verdict == C.NOT_REPRODUCED


def test_arm_minus_arm_is_paired_by_seed() -> None:
    c = _claim(quantity={"arm": {"label": "ticket"}, "minus": "reinit", "at_sparsity": 0.92},
               rule={"direction": "greater"})
    v = C.evaluate_claim(c, _table())
    assert v.paired is True and v.verdict == C.REPRODUCED
    assert v.mean == pytest.approx(0.1533333, abs=1e-6)


def test_one_seed_is_inconclusive() -> None:
    df = _table()
    v = C.evaluate_claim(_claim(), df[df["seed"] == 0])
    assert v.verdict == C.INCONCLUSIVE and v.n == 1 and "fewer than 2" in v.reason


def test_missing_arm_or_point_is_inconclusive_with_reason() -> None:
    v = C.evaluate_claim(_claim(quantity={"arm": "nope", "at_sparsity": 0.92}), _table())
    assert v.verdict == C.INCONCLUSIVE and "no rows for arm nope" in v.reason
    v = C.evaluate_claim(_claim(quantity={"arm": "ticket", "at_sparsity": 0.99}), _table())
    assert v.verdict == C.INCONCLUSIVE and "no level near" in v.reason


def test_failed_rows_do_not_count() -> None:
    df = _table()
    df.loc[(df["seed"] == 2) & (df["level"] == 2) & (df["label"] == "ticket"), "status"] = "diverged"
    assert C.evaluate_claim(_claim(), df).n == 2


@pytest.mark.parametrize("raw, match", [
    ({"id": "x", "paper": "P", "where": "W", "quantity": {"arm": "t", "at_sparsity": 0.9},
      "rule": {"direction": "up"}}, "claim 'x': rule.direction='up' is not valid; valid: greater, less"),
    ({"id": "x", "paper": "P", "where": "W", "quantity": {"arm": "t"}, "rule": {"direction": "greater"}},
     "claim 'x': quantity needs exactly one of at_sparsity, at_level"),
    ({"id": "x", "paper": "P", "where": "W", "quantity": {"arm": "t", "at_sparsity": 1.5},
      "rule": {"direction": "greater"}}, r"claim 'x': quantity.at_sparsity=1.5 must lie in \[0.0, 1.0\]"),
    ({"id": "x", "paper": "P", "where": "W", "quantity": {"arm": "t", "at_level": 2}, "rule": {"tolerance": 0.1}},
     "claim 'x': rule.tolerance needs a paper_value"),
    ({"id": "x", "paper": "", "where": "W", "quantity": {"arm": "t", "at_level": 2}, "rule": {"tolerance": 0.1}},
     "claim 'x': paper='' must be a non-empty string"),
    ({"id": "x", "paper": "P", "where": "W", "quantity": {"arm": "t", "at_level": 2, "bogus": 1},
      "rule": {"direction": "less"}}, "claim 'x' quantity: unknown key\\(s\\) bogus"),
    ({"paper": "P"}, r"claims\[0\]: id=None"),
])
def test_parse_errors_name_claim_and_key(raw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        C.parse_claims([raw])


def test_duplicate_ids_rejected() -> None:
    raw = {"id": "x", "paper": "P", "where": "W", "quantity": {"arm": "t", "at_level": 1},
           "rule": {"direction": "greater"}}
    with pytest.raises(ConfigError, match="id used twice"):
        C.parse_claims([raw, raw])


def test_snapshot_then_config_fallback_and_rendering(tmp_path: Path) -> None:
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "exp.yaml").write_text(
        "claims:\n  - {id: from_yaml, paper: P, where: W, quantity: {arm: ticket, at_sparsity: 0.92, minus: dense},"
        " rule: {direction: greater}}\n")
    root = tmp_path / "root"
    verdicts, sources = C.evaluate_root(_table(), root, tmp_path / "conf")
    assert [v.claim.id for v in verdicts] == ["from_yaml"] and sources["exp"].endswith("exp.yaml")
    raw = [{"id": "snap", "paper": "P", "where": "W", "quantity": {"arm": "ticket", "at_sparsity": 0.92,
            "minus": "dense"}, "paper_value": 0.094, "rule": {"tolerance": 0.03}}]
    path = C.write_claims(root, "exp", raw)
    assert path == root / "claims" / "exp.json" and json.loads(path.read_text()) == raw
    verdicts, _ = C.evaluate_root(_table(), root, tmp_path / "conf")
    assert [(v.claim.id, v.verdict) for v in verdicts] == [("snap", C.REPRODUCED)]
    md = C.render_markdown(verdicts)
    assert "| exp | snap | P (W) |" in md and "+9.40 pp" in md and "+10.33 pp [+8.90 pp, +11.77 pp] paired" in md
    table = C.verdict_table(verdicts)
    assert list(table["verdict"]) == [C.REPRODUCED] and table["n"].iloc[0] == 3


def test_no_claims_no_experiment_column() -> None:
    assert C.evaluate_root(_table().drop(columns="experiment"), "nowhere") == ([], {})


def test_minus_arm_at_its_own_level() -> None:
    c = _claim(quantity={"arm": "ticket", "at_sparsity": 0.92, "minus": "reinit", "minus_at_level": 0},
               rule={"direction": "greater"})
    assert c.quantity.describe() == "test_acc[ticket @92.0%] − test_acc[reinit @level 0]"
    v = C.evaluate_claim(c, _table())
    assert v.mean == pytest.approx(0.1033333, abs=1e-6)  # reinit's level 0 is the dense row
