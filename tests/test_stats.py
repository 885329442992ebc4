"""prunebench.stats: intervals and paired differences against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from prunebench import stats


def test_t_interval_matches_hand_computation() -> None:
    # [1, 2, 3, 4]: mean 2.5, s = sqrt(5/3) = 1.290994, se = 0.645497, t_{0.975, 3} = 3.182446
    iv = stats.t_interval([1.0, 2.0, 3.0, 4.0])
    assert iv.n == 4
    assert iv.mean == pytest.approx(2.5)
    assert iv.std == pytest.approx(math.sqrt(5 / 3))
    assert iv.low == pytest.approx(2.5 - 3.182446 * 0.645497, abs=1e-5)
    assert iv.high == pytest.approx(4.554260, abs=1e-5)


def test_t_quantiles_are_the_table_values() -> None:
    assert stats.t_quantile(0.95, 1) == pytest.approx(12.7062, abs=1e-4)
    assert stats.t_quantile(0.95, 2) == pytest.approx(4.3027, abs=1e-4)
    assert stats.t_quantile(0.90, 4) == pytest.approx(2.1318, abs=1e-4)


def test_one_value_has_a_mean_and_no_interval() -> None:
    iv = stats.t_interval([0.7])
    assert iv.mean == 0.7 and iv.n == 1
    assert math.isnan(iv.low) and math.isnan(iv.high) and not iv.has_interval
    assert stats.t_interval([]).n == 0 and math.isnan(stats.t_interval([]).mean)
    assert not stats.bootstrap_interval([0.7]).has_interval


def test_nans_are_dropped_not_counted() -> None:
    iv = stats.t_interval([1.0, float("nan"), 3.0])
    assert iv.n == 2 and iv.mean == 2.0


def test_bootstrap_interval_is_seeded_and_inside_the_range() -> None:
    vals = [0.60, 0.62, 0.65, 0.61, 0.70]
    a, b = stats.bootstrap_interval(vals, seed=3), stats.bootstrap_interval(vals, seed=3)
    assert a == b
    assert 0.60 <= a.low < a.mean < a.high <= 0.70
    assert a.method == "bootstrap"
    # Two values: the resampled means are 1, 1.5, 2 -> the 95% percentile interval is [1, 2].
    two = stats.bootstrap_interval([1.0, 2.0])
    assert (two.low, two.high) == (1.0, 2.0)


def test_bad_confidence_and_method_raise() -> None:
    with pytest.raises(ValueError, match="confidence"):
        stats.t_interval([1, 2], confidence=1.5)
    with pytest.raises(ValueError, match="bootstrap"):
        stats.interval([1, 2], method="jackknife")


def _arm(seeds: list[int], values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"seed": seeds, "test_acc": values})


def test_paired_differences_match_by_seed_and_average_duplicates() -> None:
    a = _arm([0, 1, 2, 2], [0.75, 0.77, 0.70, 0.72])  # seed 2 twice: counts once, mean 0.71
    b = _arm([2, 1, 0, 5], [0.61, 0.66, 0.65, 0.99])  # seed 5 has no partner
    pairs = stats.paired_differences(a, b)
    assert list(pairs["seed"]) == [0, 1, 2]
    assert pairs["diff"].to_numpy() == pytest.approx([0.10, 0.11, 0.10])
    iv = stats.difference_interval(a, b)
    # diffs 0.10, 0.11, 0.10: mean 0.103333, s 0.0057735, half-width 4.302653 * 0.0057735 / sqrt(3)
    assert iv.paired is True and iv.n == 3
    assert iv.mean == pytest.approx(0.1033333, abs=1e-6)
    assert iv.high - iv.mean == pytest.approx(4.302653 * 0.0057735 / math.sqrt(3), abs=1e-6)


def test_difference_falls_back_to_welch_without_shared_seeds() -> None:
    a, b = _arm([0, 1], [1.0, 3.0]), _arm([2, 3], [0.0, 0.0 + 2.0])
    iv = stats.difference_interval(a, b)
    assert iv.paired is False
    assert iv.mean == pytest.approx(1.0)
    # Welch: var_a/n = var_b/n = 1, se = sqrt(2), dof = 2 -> half = 4.302653 * 1.414214
    assert iv.high - iv.mean == pytest.approx(4.302653 * math.sqrt(2), abs=1e-5)
    one = stats.difference_interval(_arm([0], [1.0]), _arm([1], [0.5]))
    assert one.mean == pytest.approx(0.5) and not one.has_interval


def test_group_intervals_count_seeds_not_rows() -> None:
    df = pd.DataFrame({"label": ["x", "x", "x", "y"], "seed": [0, 0, 1, 0], "test_acc": [0.5, 0.7, 0.8, 0.9]})
    g = stats.group_intervals(df, ["label"])
    x = g[g["label"] == "x"].iloc[0]
    assert x["n"] == 2 and x["mean"] == pytest.approx(0.7)  # seed 0 -> 0.6, seed 1 -> 0.8
    y = g[g["label"] == "y"].iloc[0]
    assert y["n"] == 1 and np.isnan(y["ci_low"])


def test_nearest_per_seed_within_tolerance() -> None:
    df = pd.DataFrame({"seed": [0, 0, 1, 1, 2], "sparsity": [0.89, 0.93, 0.918, 0.95, 0.80],
                       "test_acc": [0.1, 0.2, 0.3, 0.4, 0.5]})
    got = stats.nearest_per_seed(df, 0.92, tolerance=0.02)
    assert sorted(zip(got["seed"], got["test_acc"])) == [(0, 0.2), (1, 0.3)]  # seed 2 too far


def test_one_shared_seed_is_a_paired_difference_without_interval() -> None:
    iv = stats.difference_interval(_arm([4], [0.7]), _arm([4], [0.6]))
    assert iv.paired is True and iv.n == 1 and iv.mean == pytest.approx(0.1) and not iv.has_interval
