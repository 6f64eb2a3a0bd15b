"""Bootstrap intervals of percentiles and of paired speed-up ratios (edgeft.bench.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeft.bench import stats


def _rounds(seed: int, centres: list[float], calls: int = 200) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(centre * (1 + 0.05 * rng.standard_normal(calls))) for centre in centres]


def test_percentile_is_pooled_and_inside_its_interval():
    rounds = _rounds(0, [1.0, 1.1, 0.9, 1.0, 1.05])
    result = stats.percentile_ci(rounds, 50)
    assert result["value"] == pytest.approx(np.median(np.concatenate(rounds)))
    assert result["ci"][0] < result["value"] < result["ci"][1]


def test_round_to_round_spread_widens_the_interval():
    # The same calls' noise, but rounds whose centres differ by ±30%: the interval must reflect the rounds.
    steady = stats.percentile_ci(_rounds(1, [1.0] * 5), 50)
    shifting = stats.percentile_ci(_rounds(1, [0.7, 1.3, 1.0, 0.8, 1.2]), 50)
    assert shifting["ci"][1] - shifting["ci"][0] > 5 * (steady["ci"][1] - steady["ci"][0])


def test_ratio_of_a_row_twice_as_slow_is_two_with_a_tight_interval():
    fast = _rounds(2, [1.0, 1.3, 0.8, 1.1, 0.9])
    slow = [[2 * value for value in values] for values in fast]  # paired: every round exactly 2x
    result = stats.ratio_ci(slow, fast)
    assert result["value"] == pytest.approx(2.0)
    assert result["ci"] == pytest.approx([2.0, 2.0], rel=0.02)
    assert result["per_round"] == pytest.approx([2.0] * 5)


def test_a_a_ratio_interval_contains_one():
    result = stats.ratio_ci(_rounds(3, [1.0, 1.2, 0.9, 1.0, 1.1]), _rounds(4, [1.0, 1.2, 0.9, 1.0, 1.1]))
    assert result["ci"][0] < 1.0 < result["ci"][1]


def test_unpaired_rounds_are_refused():
    with pytest.raises(ValueError, match="paired"):
        stats.ratio_ci([[1.0]], [[1.0], [2.0]])


def test_summary():
    assert stats.summary([3, 1, 2]) == {"n": 3, "min": 1.0, "p10": 1.2, "median": 2.0, "p90": 2.8, "max": 3.0,
                                        "mean": 2.0}
