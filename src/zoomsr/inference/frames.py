"""Choosing, per window, which frames (dates) feed the model, and filling their gaps.

A frame's score in a window is its number of unusable pixels: nodata/black, plus saturated
ones (every RGB channel at 255: clouds, glint), plus, where the frame has a cloud layer, its
cloudy pixels (SCL: cloud, cloud-shadow, cirrus; MSK_CLASSI: opaque cloud, cirrus). The ``n``
frames with the lowest scores are taken,
ties broken by input order, so the choice is deterministic. A window where fewer than ``n``
frames are free of nodata is counted and reported; pixels that no frame covers (outside
every date's footprint: a reprojected scene's corners, the scene's edge) count against none.
Gaps in the chosen frames are filled with the per-pixel mean of all frames valid there, so the
model never sees black holes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from zoomsr.inference.arrays import Array, float32, to_tensor, xp

#: Channel value (TCI / 255) at or above which a pixel counts as saturated.
SATURATED = 254.5 / 255.0


def unusable(pixels: Array, valid: Array, cloudy: Array | None = None) -> Array:
    """``[T, h, w]`` True where a frame's pixel is of no use: nodata, saturated, or cloudy.

    ``pixels`` ``[T, C, h, w]`` (RGB first), ``valid`` ``[T, h, w]``; ``cloudy`` ``[T, h, w]``
    (from the SCL or MSK_CLASSI, valid pixels only) adds its cloudy pixels. NumPy arrays or
    torch tensors.
    """
    bad = ~valid | ((pixels[:, :3] >= SATURATED).all(1) & valid)
    return bad if cloudy is None else bad | cloudy


def frame_scores(pixels: Array, valid: Array, cloudy: Array | None = None) -> Array:
    """``[T]`` unusable pixels per frame (:func:`unusable`)."""
    return unusable(pixels, valid, cloudy).reshape(len(valid), -1).sum(1)


def _window_sums(per_col: Array, spans: Sequence[tuple[int, int]]) -> Array:
    """``[..., n]``: per-column counts ``[..., W]`` summed over each window's ``spans``
    (``(first column, width)``), from their cumulative sums (a few passes however many
    windows a strip has). Tensors stay on their device."""
    m = xp(per_col)
    cums = m.concatenate([m.zeros_like(per_col[..., :1]), m.cumsum(per_col, -1)], -1)
    first: list[int] | torch.Tensor = [x for x, _ in spans]
    last: list[int] | torch.Tensor = [x + w for x, w in spans]
    if isinstance(cums, torch.Tensor):  # as tensors sent asynchronously (a blocking copy or
        # list indexing would wait for the device's queue)
        first, last = (to_tensor(np.array(v, dtype=np.int64), cums.device) for v in (first, last))
    return cums[..., last] - cums[..., first]


def window_scores(pixels: Array, valid: Array, cloudy: Array | None,
                  spans: Sequence[tuple[int, int]],
                  bad: Array | None = None) -> tuple[Array, Array]:
    """Frame scores and clean-frame counts of windows side by side in one strip.

    ``spans``: each window's ``(first column, width)`` in the strip ``[T, C, h, W]``. Returns
    ``[n, T]`` unusable pixels per window and frame (as :func:`frame_scores`) and ``[n]``
    clean frames per window (as :func:`count_clean`), from per-column counts. ``bad``: the
    strip's :func:`unusable` pixels ``[T, h, W]`` when the caller has them already.
    """
    if bad is None:
        bad = unusable(pixels, valid, cloudy)
    gaps = ~valid & valid.any(0)  # nodata where another frame has data
    per_col = xp(valid).stack([bad.sum(1), gaps.sum(1)])  # [2, T, W]
    scores, nodata = _window_sums(per_col, spans)  # [T, n] each
    return scores.T, (nodata == 0).sum(0)


def clean_scores(pixels: Array, valid: Array, cloudy: Array | None,
                 spans: Sequence[tuple[int, int]], bad: Array | None = None) -> Array:
    """``[n, T]`` per window (``spans`` as in :func:`window_scores`) and frame: its unusable
    pixels where another frame's pixel is usable. A pixel no date can use (a scene's corner on
    the training grid, a cloud in every date) counts for none, so a frame is clean in a window
    at 0 whatever the other frames share (the uncertainty subsets' pool). ``bad`` as in
    :func:`window_scores`."""
    if bad is None:
        bad = unusable(pixels, valid, cloudy)
    return _window_sums((bad & (~bad).any(0)).sum(1), spans).T  # [T, W] -> [n, T]


def choose_frames(scores: Array, n: int) -> Array:
    """Indices of the ``n`` best frames (lowest score, then lowest index), in input order.

    ``scores`` ``[..., T]`` (NumPy, or a tensor: chosen on its device, with no transfer);
    returns ``[..., n]``. With fewer than ``n`` frames, the ranked frames are repeated
    cyclically.
    """
    if isinstance(scores, torch.Tensor):
        order: Array = torch.sort(scores, dim=-1, stable=True).indices
        cycle = torch.arange(n, device=scores.device) % scores.shape[-1]
        return torch.sort(order[..., cycle], dim=-1).values
    order = np.argsort(scores, axis=-1, kind="stable")
    return np.sort(order[..., np.arange(n) % scores.shape[-1]], axis=-1)


def count_clean(valid: np.ndarray) -> int:
    """Number of frames with no nodata pixel in the window (``valid`` ``[T, h, w]``) where
    another frame has data: a pixel no frame covers is missing from every date alike."""
    covered = valid | ~valid.any(0)
    return int(covered.reshape(len(valid), -1).all(1).sum())


def fill_gaps(pixels: Array, valid: Array) -> tuple[Array, Array, Array]:
    """Fill invalid pixels with the mean of the frames valid there (NumPy or torch).

    ``pixels`` ``[T, C, h, w]`` (0 where invalid), ``valid`` ``[T, h, w]``. Returns the
    filled frames, ``[h, w]`` "any frame valid" (the output's data mask; where it is False the
    filled value is 0) and the ``[C, h, w]`` mean of the valid frames (the LR mosaic).
    """
    m = xp(pixels)
    count = valid.sum(0)
    mean = (pixels * valid[:, None]).sum(0) / float32(m.clip(count, 1, None))[None]
    filled = m.where(valid[:, None], pixels, mean[None])
    return float32(filled), count > 0, mean
