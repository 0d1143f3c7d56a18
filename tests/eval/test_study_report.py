"""The study report's precision projection (benchmarks/report_commonsense.py: seed_precision)."""

import math

import pytest

report = pytest.importorskip("report_commonsense")


def test_seeds_that_agree_leave_nothing_for_more_seeds_to_average():
    # every example's difference is the same under both seeds: all variance is shared, W = 0
    diffs = {"a": [[1, 1], [0, 0], [-1, -1], [0, 0]] * 25, "b": [[1, 1], [0, 0]] * 50}
    hw = report.seed_precision(diffs, (1, 2, 8, 0))
    var_a = sum(x * x for x in [1, 0, 1, 0]) / 4 * 100 / 99  # mean 0; sample variance
    var_b = (100 * 0.25) / 99  # values 1/0 half each: mean 0.5
    expected = 1.96 * math.sqrt(var_a / 100 + var_b / 100) / 2
    assert all(v == pytest.approx(expected) for v in hw.values())


def test_seeds_that_disagree_average_away():
    # each example's difference flips sign between the seeds: nothing is shared, V = 0, W = 2
    diffs = {"a": [[1, -1], [-1, 1]] * 50}
    hw = report.seed_precision(diffs, (1, 2, 4, 0))
    assert hw[0] == pytest.approx(0.0)
    assert hw[1] == pytest.approx(1.96 * math.sqrt(2 / 100))
    assert hw[4] == pytest.approx(hw[1] / 2)
    assert hw[2] == pytest.approx(hw[1] / math.sqrt(2))
