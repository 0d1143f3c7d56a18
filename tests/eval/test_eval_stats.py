"""Statistics against known values: Wilson intervals from Newcombe (1998, Table I), exact McNemar by hand and
against scipy's binomial test, the paired bootstrap against the normal approximation; run folders compared end to
end. CPU only, no network, no model."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from segmask.eval.run import compare_runs, format_comparison, format_picks, format_summary, summarize, write_run
from segmask.eval.stats import accuracy, mcnemar_exact, paired_bootstrap, paired_comparison, wilson_interval


@pytest.mark.parametrize(
    "k, n, low, high",
    [  # Newcombe, "Two-sided confidence intervals for the single proportion", Stat. Med. 1998, method 3
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe(k, n, low, high):
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=6e-5)


def test_wilson_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(45, 50), (3, 7), (500, 1000), (10, 10)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_wilson_edge_cases():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="correct=5, n=3"):
        wilson_interval(5, 3)
    acc = accuracy([1, 0, 1, 1])
    assert acc["acc"] == 0.75 and acc["n"] == 4 and acc["correct"] == 3
    assert acc["ci_low"] < 0.75 < acc["ci_high"]


def test_mcnemar_by_hand():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # both tails of Binomial(5, 1/2) at 0 and 5
    assert mcnemar_exact(4, 4) == 1.0
    # b=3, c=12: 2 * P(X <= 3), X ~ Binomial(15, 1/2) = 2 * (1 + 15 + 105 + 455) / 2**15
    assert mcnemar_exact(3, 12) == pytest.approx(2 * 576 / 2**15)
    assert mcnemar_exact(12, 3) == mcnemar_exact(3, 12)


def test_mcnemar_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(1, 9), (10, 21), (50, 40), (7, 7), (0, 30)]:
        assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_bootstrap_degenerate_cases():
    assert paired_bootstrap([1, 0, 1], [1, 0, 1], n_boot=500) == (0.0, 0.0)
    assert paired_bootstrap([0, 0, 0], [1, 1, 1], n_boot=500) == (1.0, 1.0)
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap([1, 0], [1, 0, 1])


def test_bootstrap_matches_normal_approximation():
    rng = random.Random(0)
    n = 600
    a = [int(rng.random() < 0.55) for _ in range(n)]
    b = [x if rng.random() < 0.8 else 1 - x for x in a]
    d = np.array(b, float) - np.array(a, float)
    se = d.std() / math.sqrt(n)
    low, high = paired_bootstrap(a, b, n_boot=20_000, seed=1)
    assert low == pytest.approx(d.mean() - 1.96 * se, abs=0.006)
    assert high == pytest.approx(d.mean() + 1.96 * se, abs=0.006)
    assert paired_bootstrap(a, b, n_boot=2000, seed=5) == paired_bootstrap(a, b, n_boot=2000, seed=5)


def test_stratified_bootstrap_is_the_mean_of_task_differences():
    a = [[0] * 10, [1] * 30]
    b = [[1] * 10, [1] * 30]  # task 1 gains 1.0, task 2 gains 0: the task mean gains 0.5 whatever the sizes
    assert paired_bootstrap(a, b, n_boot=200) == (0.5, 0.5)


def test_paired_comparison_counts():
    a = [1, 1, 0, 0, 1, 0]
    b = [1, 0, 1, 1, 1, 0]
    cmp = paired_comparison(a, b, n_boot=1000)
    assert (cmp["a_only"], cmp["b_only"], cmp["n"]) == (1, 2, 6)
    assert cmp["diff"] == pytest.approx(1 / 6)
    assert cmp["p_mcnemar"] == pytest.approx(1.0)
    assert cmp["ci_low"] <= cmp["diff"] <= cmp["ci_high"]


def _run(tmp_path, name, outcomes: dict[str, list[int]]):
    rows = [{"task": t, "index": i, "answer": "x", "prediction": "x" if c else "y", "correct": c,
             "prediction_norm": "x" if c else "y", "correct_norm": c}
            for t, flags in outcomes.items() for i, c in enumerate(flags)]
    summary = summarize(rows, list(outcomes), "loglik")
    write_run(tmp_path / name, summary, rows)
    return summary


def test_compare_run_folders(tmp_path):
    summary = _run(tmp_path, "a", {"boolq": [1, 0, 0, 1], "piqa": [0, 0, 1, 1, 1, 1]})
    _run(tmp_path, "b", {"boolq": [1, 1, 1, 1], "piqa": [0, 1, 1, 1, 1, 0]})
    assert summary["mean"]["acc"] == pytest.approx((0.5 + 4 / 6) / 2)
    cmp = compare_runs(tmp_path / "a", tmp_path / "b", n_boot=500)
    assert cmp["tasks"]["boolq"]["diff"] == pytest.approx(0.5)
    assert cmp["tasks"]["piqa"]["diff"] == pytest.approx(0.0)
    assert cmp["mean"]["diff"] == pytest.approx(0.25)
    assert (cmp["mean"]["a_only"], cmp["mean"]["b_only"]) == (1, 3)
    assert cmp["mean"]["p_mcnemar"] == pytest.approx(mcnemar_exact(1, 3))
    table = format_comparison(cmp)
    assert "boolq" in table and "mean" in table and "+0.250" in table
    assert "acc_norm" in format_summary(summary)
    _run(tmp_path, "c", {"boolq": [1, 1, 1]})
    with pytest.raises(ValueError, match="different examples"):
        compare_runs(tmp_path / "a", tmp_path / "c")
    with pytest.raises(ValueError, match="not an eval run folder"):
        compare_runs(tmp_path / "a", tmp_path / "missing")


def test_pick_histograms_read_the_answers_not_only_the_totals():
    rows = [{"task": "boolq", "index": i, "answer": a, "prediction": p, "correct": int(a == p)}
            for i, (a, p) in enumerate([("true", "true"), ("false", "true"), ("false", None), ("true", "true")])]
    entry = summarize(rows, ["boolq"], "generate")["tasks"]["boolq"]
    assert entry["answers"] == {"true": 2, "false": 2}
    assert entry["picks"] == {"true": 3, "none": 1} and "picks_norm" not in entry
    summary = summarize(rows, ["boolq"], "generate")
    assert format_picks(summary).splitlines()[1].split() == ["boolq", "true", "3", "(2)", "false", "0", "(2)",
                                                              "none", "1", "(0)"]
    with pytest.raises(ValueError, match="acc_norm: loglik and choice only"):
        format_picks(summary, "acc_norm")
