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
