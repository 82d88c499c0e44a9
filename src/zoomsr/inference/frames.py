"""Choosing, per window, which frames (dates) feed the model, and filling their gaps.

A frame's score in a window is its number of unusable pixels: nodata/black, plus saturated
ones (every RGB channel at 255: clouds, glint), plus, where the frame has an SCL, cloud,
cloud-shadow and cirrus pixels. The ``n`` frames with the lowest scores are taken,
ties broken by input order, so the choice is deterministic. A window where fewer than ``n``
frames are free of nodata is counted and reported. Gaps in the chosen frames are filled with
the per-pixel mean of all frames valid there, so the model never sees black holes.
"""

from __future__ import annotations

import numpy as np

#: Channel value (TCI / 255) at or above which a pixel counts as saturated.
SATURATED = 254.5 / 255.0


def frame_scores(
    pixels: np.ndarray, valid: np.ndarray, cloudy: np.ndarray | None = None
) -> np.ndarray:
    """``[T]`` unusable pixels per frame.

    ``pixels`` ``[T, C, h, w]`` (RGB first), ``valid`` ``[T, h, w]``; ``cloudy`` ``[T, h, w]``
    (from the SCL, valid pixels only) adds cloud, cloud-shadow and cirrus pixels.
    """
    saturated = np.all(pixels[:, :3] >= SATURATED, axis=1) & valid
    if cloudy is not None:
        saturated |= cloudy
    return (~valid).reshape(len(valid), -1).sum(1) + saturated.reshape(len(valid), -1).sum(1)


def choose_frames(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` best frames (lowest score, then lowest index), in input order.

    With fewer than ``n`` frames, the ranked frames are repeated cyclically.
    """
    order = np.lexsort((np.arange(len(scores)), scores))
    chosen = order[:n] if len(order) >= n else np.resize(order, n)
    return np.sort(chosen)


def count_clean(valid: np.ndarray) -> int:
    """Number of frames with no nodata pixel in the window (``valid`` ``[T, h, w]``)."""
    return int(valid.reshape(len(valid), -1).all(1).sum())


def fill_gaps(pixels: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill invalid pixels with the mean of the frames valid there.

    Returns the filled ``[T, C, h, w]`` frames and ``[h, w]`` "any frame valid" (the output's
    data mask; where it is False the filled value is 0).
    """
    count = valid.sum(0)
    any_valid = count > 0
    mean = (pixels * valid[:, None]).sum(0) / np.maximum(count, 1)[None].astype(np.float32)
    filled = np.where(valid[:, None], pixels, mean[None])
    return filled.astype(np.float32, copy=False), any_valid
