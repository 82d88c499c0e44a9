"""Choosing which Sentinel-2 time steps feed a model.

A time step whose TCI chunk has any black pixel (all channels 0: nodata, swath edge) is invalid.
``n`` valid steps are picked; invalid ones are used only when too few valid ones exist.
"""

from __future__ import annotations

from typing import cast

import numpy as np


def black_pixel_mask(tci: np.ndarray) -> np.ndarray:
    """Per time step and pixel, True where every channel is 0. ``tci`` is ``[T, H, W, 3]``."""
    return cast(np.ndarray, ~tci.any(axis=-1))  # (an array: tci has a T axis)


def valid_frames(tci: np.ndarray) -> np.ndarray:
    """``[T]`` bool: True for time steps whose TCI chunk ``[T, H, W, 3]`` has no black pixel."""
    return cast(np.ndarray, ~black_pixel_mask(tci).reshape(tci.shape[0], -1).any(axis=1))


def select_frames(valid: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Pick ``n`` time-step indices, valid ones first, returned sorted.

    If fewer than ``n`` steps are valid, invalid ones fill the gap (chosen at random). If the
    series has fewer than ``n`` steps in all, steps are repeated (each at most once more than
    any other) so the model still gets ``n`` inputs.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    valid = np.asarray(valid, dtype=bool)
    total = valid.size
    if total == 0:
        raise ValueError("empty time series")
    good = np.flatnonzero(valid)
    bad = np.flatnonzero(~valid)
    if good.size >= n:
        chosen = rng.choice(good, size=n, replace=False)
    elif total >= n:
        chosen = np.concatenate([good, rng.choice(bad, size=n - good.size, replace=False)])
    else:
        # Short series: take every step (valid first), then cycle through a shuffled order.
        order = np.concatenate([rng.permutation(good), rng.permutation(bad)])
        chosen = np.resize(order, n)
    return np.sort(chosen)
