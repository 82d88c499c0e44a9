"""Uncertainty from frame subsets: how much the output depends on which dates were used.

With ``--uncertainty K`` each window is also super-resolved from ``K`` other subsets of its
frames; the per-pixel standard deviation of those ``K`` outputs (mean over RGB) is blended like
the image and written as an extra band. Content that appears in some dates only (vessels, cars,
clouds the frame choice missed) or that the model invents differently from each subset shows up
as a high spread.

Subsets are drawn without replacement, seeded by (seed, window row, window column), from the
frames with no unusable pixel in the window where another frame's is usable, or, when fewer
than ``n + 1`` are clean, from the ``2 n`` best-ranked frames, so the result is reproducible
run to run; a window's subsets are distinct.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def subset_frames(
    scores: np.ndarray, n: int, k: int, key: tuple[int, ...], clean: np.ndarray | None = None
) -> list[np.ndarray]:
    """``k`` sorted index arrays of ``n`` frames each (empty list for ``k = 0``).

    ``scores`` ``[T]``: unusable pixels per frame (:func:`~zoomsr.inference.frames.frame_scores`).
    ``clean`` ``[T]`` (default ``scores``): a frame's unusable pixels where another frame's are
    usable (:func:`~zoomsr.inference.frames.clean_scores`); the frames at 0 are the pool (a
    pixel no date covers made every frame unclean at a scene's edges).
    """
    if k <= 0:
        return []
    order = np.lexsort((np.arange(len(scores)), scores))
    unclean = scores if clean is None else np.asarray(clean)
    clean_frames = order[unclean[order] == 0]
    pool = (clean_frames if len(clean_frames) >= n + 1
            else order[: min(len(order), max(2 * n, n + 1))])
    rng = np.random.default_rng(list(key))
    if len(pool) < n:
        pool = np.resize(pool, n)
        return [np.sort(pool) for _ in range(k)]
    # Distinct subsets: drawn independently, two could be the same dates (with 2 dates and a
    # 1-image model, half the windows), and the band read 0, "certain", there.
    total = math.comb(len(pool), n)
    if total <= _ENUMERATED:  # all of them in a seeded order; repeated only past the last
        combos = list(itertools.combinations(np.sort(pool).tolist(), n))
        order = rng.permutation(total)
        return [np.array(combos[order[i % total]], dtype=np.int64) for i in range(k)]
    chosen: list[np.ndarray] = []
    seen: set[tuple[int, ...]] = set()
    while len(chosen) < k:  # duplicates are rare among so many: a few draws at most
        if len(seen) == total:  # each once, then again (a K past them all never ended)
            seen.clear()
        subset = np.sort(rng.choice(pool, size=n, replace=False))
        if (t := tuple(subset.tolist())) not in seen:
            seen.add(t)
            chosen.append(subset)
    return chosen


#: Up to this many possible subsets, they are enumerated (and drawn without repeats).
_ENUMERATED = 4096
