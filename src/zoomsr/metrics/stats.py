"""Small statistics helpers shared by the evaluation and the agreement analysis."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` (default: the mean) of ``values``.

    ``statistic`` maps ``[n_boot, n]`` resamples to ``[n_boot]``. Seeded: same input, same
    interval. Returns ``(nan, nan)`` for no values.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n_boot, 500):  # bounded memory for large n
        idx = rng.integers(0, v.size, size=(min(500, n_boot - start), v.size))
        sample = v[idx]
        stats.append(sample.mean(axis=1) if statistic is None else statistic(sample))
    s = np.concatenate(stats)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(s, alpha)), float(np.quantile(s, 1.0 - alpha))


#: Below this many values, intervals are exact-form (Student t for a mean, Wilson for a
#: proportion): the percentile bootstrap covers far less than it claims on few values (about
#: 85 % for a nominal 95 % at n = 5, and [min, max] at n = 2).
SMALL_SAMPLE = 30

# Student t 0.975 quantiles for 1..29 degrees of freedom (larger: Cornish-Fisher).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045)
_Z975 = 1.959964


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def t_interval(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """95 % Student t interval of the mean of ``values``; ``(nan, nan)`` below 2 values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return math.nan, math.nan
    half = t975(v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return float(v.mean()) - half, float(v.mean()) + half


def wilson_interval(successes: float, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (``successes`` may count halves, for ties);
    ``(nan, nan)`` for no trials."""
    if n < 1:
        return math.nan, math.nan
    z, p = _Z975, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # exact at the ends (rounding gave 0.9999999999999999 for n of n, 3e-17 for 0 of n)
    return (0.0 if p <= 0.0 else max(0.0, centre - half),
            1.0 if p >= 1.0 else min(1.0, centre + half))
