"""Statistics for benchmark accuracies: Wilson intervals and paired comparisons of two runs on the same examples.

    >>> wilson_interval(45, 50)                      # 95% CI of an accuracy of 45/50
    (0.7864..., 0.9565...)
    >>> mcnemar_exact(b=3, c=12)                     # b: only run A right, c: only run B right
    0.0351...
    >>> paired_bootstrap([1, 0, 1], [1, 1, 1], n_boot=10_000, seed=0)   # CI of mean(B) - mean(A)

Pure Python and numpy; no scipy needed at run time (tests check against scipy where it is installed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054
"""Two-sided 95% standard normal quantile."""


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``correct / n``; (nan, nan) when n == 0."""
    if n < 0 or correct < 0 or correct > n:
        raise ValueError(f"need 0 <= correct <= n, got correct={correct}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy(flags: Sequence[bool | int]) -> dict[str, float]:
    """``{"acc", "ci_low", "ci_high", "n", "correct"}`` of a list of per-example 0/1 outcomes (Wilson 95% CI)."""
    n, k = len(flags), int(sum(bool(f) for f in flags))
    low, high = wilson_interval(k, n)
    return {"acc": k / n if n else math.nan, "ci_low": low, "ci_high": high, "n": n, "correct": k}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of ``b`` vs ``c`` discordant pairs at p = 1/2.

    ``b`` counts examples only run A got right, ``c`` those only run B got right. Returns 1.0 when b + c == 0.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap(
    a: Sequence[bool | int] | Sequence[Sequence[bool | int]],
    b: Sequence[bool | int] | Sequence[Sequence[bool | int]],
    *,
    n_boot: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the accuracy difference B - A over paired examples.

    ``a`` and ``b`` are per-example 0/1 outcomes on the same examples in the same order; or lists of such lists,
    one per task, in which case examples are resampled within each task and the statistic is the difference of
    the unweighted mean of the task accuracies (the benchmark's "average" column).
    """
    groups_a, groups_b = _groups(a), _groups(b)
    if len(groups_a) != len(groups_b) or any(len(x) != len(y) for x, y in zip(groups_a, groups_b)):
        raise ValueError("paired bootstrap needs both runs on the same examples (lengths differ)")
    if any(len(x) == 0 for x in groups_a):
        raise ValueError("paired bootstrap needs at least one example per group")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    stats = np.zeros(n_boot)
    for x, y in zip(groups_a, groups_b):
        diff = np.asarray(y, dtype=float) - np.asarray(x, dtype=float)
        picks = rng.integers(0, len(diff), size=(n_boot, len(diff)))
        stats += diff[picks].mean(axis=1)
    stats /= len(groups_a)
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return (float(low), float(high))


def _groups(values) -> list[list[float]]:
    values = list(values)
    if values and isinstance(values[0], (list, tuple, np.ndarray)):
        return [list(v) for v in values]
    return [values]


def paired_comparison(a: Sequence[bool | int], b: Sequence[bool | int], *, n_boot: int = 10_000,
                      seed: int = 0) -> dict[str, float]:
    """Compare two runs' 0/1 outcomes on the same examples: accuracies, difference B - A, its bootstrap 95% CI,
    discordant counts (``a_only``: A right and B wrong; ``b_only``) and the exact McNemar p-value."""
    if len(a) != len(b):
        raise ValueError(f"runs cover different numbers of examples: {len(a)} vs {len(b)}")
    if not a:
        raise ValueError("no examples to compare")
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    low, high = paired_bootstrap(a, b, n_boot=n_boot, seed=seed)
    acc_a, acc_b = sum(map(bool, a)) / len(a), sum(map(bool, b)) / len(b)
    return {"n": len(a), "acc_a": acc_a, "acc_b": acc_b, "diff": acc_b - acc_a, "ci_low": low, "ci_high": high,
            "a_only": a_only, "b_only": b_only, "p_mcnemar": mcnemar_exact(a_only, b_only)}
