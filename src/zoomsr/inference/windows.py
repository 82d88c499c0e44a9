"""Overlapping windows over a scene and the weights that blend their outputs without seams.

Windows are ``window`` LR pixels square and overlap by at least ``overlap`` pixels: as few as
steps of ``window - overlap`` need, spread evenly from the scene's first pixel to its last, so
every window has the same size (one batch shape) and none reaches past the scene. Each window's
output is weighted by a separable ramp: 0 within ``margin`` pixels of an edge that lies inside
the scene (where the model sees the artificial window border), rising linearly to 1 over the
rest of the overlap, and 1 up to an edge that is the scene's own edge. Outputs are summed with
their weights and divided by the summed weights (order-independent). If ``margin`` is at least
the model's receptive-field radius, each output pixel only takes values computed with the
model's full context, so the tiled result equals the whole-scene result up to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import cast

import numpy as np

from zoomsr.errors import ConfigError

#: The window sizes (LR px) that an automatic window is chosen from.
AUTO_WINDOWS = (128, 192, 256)

#: The same on a GPU, where larger windows cost about as much per pixel (on an H200, 512 px
#: windows ran 6 % slower per pixel than 256 px ones, 2026-11-26, one run each) and cover
#: less: with the default 32 px overlap a 3856 px scene's 256 px windows compute 43 % more
#: pixels than it holds, 512 px windows 13 %.
GPU_AUTO_WINDOWS = (128, 192, 256, 512)


def windows_per_call(batch_size: int, tiling: Tiling, grid: WindowGrid) -> int:
    """Windows per model call: ``batch_size``; with an automatic window (``tiling.window``
    None), ``batch_size`` counts 128 px windows, so larger ones go proportionally fewer at a
    time and the model's memory does not grow with the window chosen."""
    if tiling.window is not None:
        return batch_size
    return windows_holding(batch_size, grid.win_h, grid.win_w)


def windows_holding(units: int, height: int, width: int) -> int:
    """How many ``height`` x ``width`` px windows hold the pixels of ``units`` 128 px windows
    (the unit ``--batch-size`` counts in): at least one."""
    return max(1, units * min(AUTO_WINDOWS) ** 2 // (height * width))


@dataclass(frozen=True)
class Tiling:
    """Window size, overlap and edge margin, all in LR pixels.

    ``window`` None (the default): chosen per scene by :meth:`for_scene` among ``choices``.
    """

    window: int | None = None
    overlap: int = 32
    margin: int | None = None  # default: overlap // 4
    choices: tuple[int, ...] = AUTO_WINDOWS

    def __post_init__(self) -> None:
        if not self.choices or any(not isinstance(c, int) or c < 1 for c in self.choices):
            raise ConfigError(f"automatic window choices must be sizes >= 1 LR px, got "
                              f"{self.choices!r}")
        window = min(self.choices) if self.window is None else self.window
        if window < 1:
            raise ConfigError(f"window must be >= 1 LR pixel, got {self.window}")
        if not 0 <= self.overlap < window:
            if self.window is None:
                raise ConfigError(f"overlap must be in 0..{window - 1} (below the smallest "
                                  f"automatic window, {window}; or set --window), got "
                                  f"{self.overlap}")
            raise ConfigError(
                f"overlap must be in 0..window-1 ({window - 1}), got {self.overlap}")
        if self.window is not None and 8 * (window - self.overlap) < window:
            # every pixel computed (window / stride)^2 times: 4096 times for 64 px windows
            # overlapping by 63. Up to 64 times is allowed: the tiled == whole-image property
            # needs overlaps well above half a window
            most = window - -(-window // 8)
            raise ConfigError(
                f"overlap {self.overlap} leaves a step of {window - self.overlap} px between "
                f"windows of {window} px: each pixel would be computed about "
                f"{(window / (window - self.overlap)) ** 2:.0f} times; use an overlap of at "
                f"most {most}")
        if self.margin_px < 0 or 2 * self.margin_px > self.overlap:
            raise ConfigError(
                f"margin must be in 0..overlap/2 ({self.overlap // 2}), got {self.margin_px}"
            )

    @property
    def margin_px(self) -> int:
        return self.overlap // 4 if self.margin is None else self.margin

    @property
    def stride(self) -> int:
        if self.window is None:
            raise ConfigError("an automatic window has no stride before for_scene()")
        return self.window - self.overlap

    def for_scene(self, height: int, width: int, multiple: int = 1) -> Tiling:
        """This tiling with its window fixed for a ``height`` x ``width`` LR px scene.

        An automatic window is the size in ``choices`` (:data:`AUTO_WINDOWS`, on a GPU
        :data:`GPU_AUTO_WINDOWS`) whose windows cover the least
        area in all (ties: the larger, for fewer model calls), among those whose windows (a
        window is cut to the scene when larger) have sides divisible by ``multiple`` (the
        model's :attr:`~zoomsr.inference.model.InferenceModel.size_multiple`; when none has,
        any: the model pads its input up to one). Windows overlap,
        and a scene side is rarely a whole number of steps, so more than the scene's area is
        computed (e.g. 1.64x with 128 px windows on a 500 px scene, 1.33x with 192 px);
        run time follows that area (``benchmarks/infer_windows.py``), so the least area is
        about the fastest run.
        """
        if self.window is not None:
            return self

        def area(window: int) -> int:
            return WindowGrid(height, width, replace(self, window=window)).covered_area

        fits = [w for w in self.choices
                if min(w, height) % multiple == 0 and min(w, width) % multiple == 0]
        # none fits (a scene side below every window, not a multiple): the model pads them
        return replace(self, window=min(fits or self.choices, key=lambda w: (area(w), -w)))


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of ``window`` px, at most ``stride`` apart, covering ``size``
    px.

    As few windows as steps of ``stride`` need, spread evenly from 0 to the edge (steps differ
    by at most 1 px), so every overlap is at least ``window - stride``. Not ``stride`` apart with
    the last one moved back onto the edge: that last overlap could be almost a whole window,
    and the rows a window row shares with the next are carried as float sums (an 8192 px
    scene's second-to-last row carried 240 of 256 rows: 4x the host memory of a row). A scene
    smaller than a window gets one window at 0.
    """
    if size <= window:
        return [0]
    steps = -(-(size - window) // stride)  # ceil
    return [i * (size - window) // steps for i in range(steps + 1)]


@dataclass(frozen=True)
class Win:
    """One window: its grid position and LR pixel offsets/size."""

    row: int
    col: int
    y: int
    x: int
    h: int
    w: int


@dataclass(frozen=True)
class WindowGrid:
    """All windows of a ``height`` x ``width`` LR scene, grouped in rows (an automatic
    window is fixed for this scene: ``tiling.window`` is then the size chosen)."""

    height: int
    width: int
    tiling: Tiling
    multiple: int = 1  # window sides an automatic window must divide by (the model's)

    def __post_init__(self) -> None:
        if self.tiling.window is None:
            object.__setattr__(self, "tiling",
                               self.tiling.for_scene(self.height, self.width, self.multiple))

    # (tiling.window is a size here: __post_init__ chose it where it was None)

    @property
    def ys(self) -> list[int]:
        return window_starts(self.height, cast(int, self.tiling.window), self.tiling.stride)

    @property
    def xs(self) -> list[int]:
        return window_starts(self.width, cast(int, self.tiling.window), self.tiling.stride)

    @property
    def win_h(self) -> int:
        return min(cast(int, self.tiling.window), self.height)

    @property
    def win_w(self) -> int:
        return min(cast(int, self.tiling.window), self.width)

    @property
    def covered_area(self) -> int:
        """LR px² the windows cover in all (the scene's area, plus every overlap)."""
        return len(self.ys) * self.win_h * len(self.xs) * self.win_w

    @property
    def n_rows(self) -> int:
        return len(self.ys)

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def row(self, r: int) -> list[Win]:
        """The windows of row ``r``, left to right."""
        y = self.ys[r]
        return [Win(r, c, y, x, self.win_h, self.win_w) for c, x in enumerate(self.xs)]

    def __iter__(self) -> Iterator[Win]:
        for r in range(self.n_rows):
            yield from self.row(r)

    def final_until(self, r: int) -> int:
        """LR rows ``< final_until(r)`` get no contribution from window rows after ``r``."""
        return self.ys[r + 1] if r + 1 < self.n_rows else self.height


def ramp_1d(length: int, scale: int, tiling: Tiling, at_start: bool, at_end: bool) -> np.ndarray:
    """Blend weights ``[length * scale]`` along one axis of a window (float32, in [0, 1]).

    ``at_start`` / ``at_end``: that edge of the window is the scene's edge (no taper there).
    """
    n = length * scale
    margin = tiling.margin_px * scale
    ramp = (tiling.overlap - 2 * tiling.margin_px) * scale
    d = np.arange(n, dtype=np.float64)

    def taper(dist: np.ndarray) -> np.ndarray:
        if ramp <= 0:
            return (dist >= margin).astype(np.float64)
        return np.clip((dist - margin + 0.5) / ramp, 0.0, 1.0)

    w = np.ones(n, dtype=np.float64)
    if not at_start:
        w = np.minimum(w, taper(d))
    if not at_end:
        w = np.minimum(w, taper(n - 1 - d))
    return w.astype(np.float32)


def blend_weights(win: Win, grid: WindowGrid, scale: int) -> np.ndarray:
    """``[h * scale, w * scale]`` weights of one window's output (outer product of ramps)."""
    wy = ramp_1d(win.h, scale, grid.tiling, win.y == 0, win.y + win.h >= grid.height)
    wx = ramp_1d(win.w, scale, grid.tiling, win.x == 0, win.x + win.w >= grid.width)
    return np.outer(wy, wx)


def column_groups(grid: WindowGrid, max_width: int) -> list[tuple[int, int]]:
    """Window-column ranges ``[c0, c1)`` whose owned LR columns are at most about ``max_width``
    wide (``max_width`` <= 0: one group): as few groups as that allows, of even sizes.

    Group ``[c0, c1)`` owns LR columns ``[xs[c0], xs[c1])`` (the last one: to the edge) and
    computes every window that covers them (:func:`group_span`), so a scene is processed in
    strips of bounded width, each pixel from the same windows, in the same order, as without
    groups.
    """
    n = len(grid.xs)
    per = n if max_width <= 0 else max(1, max_width // grid.tiling.stride)
    # as few groups, of even sizes: not a last group of one column (which computes two)
    k = -(-n // per)
    bounds = [g * n // k for g in range(k + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def group_span(grid: WindowGrid, group: tuple[int, int]) -> tuple[int, int, list[int]]:
    """``(A, B, cols)``: the LR columns ``[A, B)`` that ``group`` owns and the window columns
    that cover any of them."""
    xs, n = grid.xs, len(grid.xs)
    c0, c1 = group
    a = xs[c0]
    b = xs[c1] if c1 < n else grid.width
    cols = [c for c in range(n) if xs[c] + grid.win_w > a and xs[c] < b]
    return a, b, cols


def group_read_width(grid: WindowGrid, group: tuple[int, int]) -> int:
    """The LR columns a row of ``group``'s windows reads: its owned columns ``[A, B)`` widened
    by the windows that reach past them (one stride left, one overlap right), ``(B - A) +
    window`` at most, and no more than the scene."""
    a, b, _ = group_span(grid, group)
    return min(grid.width, b - a + grid.win_w)
