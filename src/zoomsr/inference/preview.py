"""The PNG preview of an output GeoTIFF (``--preview``), made in bounded memory.

GDAL's own downsampled read of a GeoTIFF without overviews decodes the whole file, and its
block cache (5 % of the RAM by default) keeps the decoded blocks until the file is closed: a
preview of a 32768 px output held gigabytes. Here the file is read a block row at a time, a
few blocks wide, with GDAL's cache sized to that, and averaged into the preview as it goes.
A COG's overviews are read by GDAL (already small).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from zoomsr.inference.inputs.rasters import read_cache
from zoomsr.io.png import write_png

#: Columns of blocks read at a time (one block row tall).
BLOCKS_PER_READ = 8


def preview_factor(width: int, height: int, max_side: int) -> int:
    """Output pixels a side per preview pixel: the smallest integer that fits ``max_side``."""
    return max(1, math.ceil(max(width, height) / max_side))


def _group_sums(values: np.ndarray, start: int, factor: int, axis: int) -> tuple[np.ndarray,
                                                                                 int]:
    """Sums of ``values`` along ``axis`` over the preview's groups (``factor`` px each, counted
    from pixel 0 of the file) that the span from pixel ``start`` meets; and the first group's
    index. The first and last groups may be partial: their other pixels come from other reads.
    """
    n = values.shape[axis]
    head = min(n, -start % factor)  # the pixels of a group begun before this span
    body = (n - head) // factor * factor

    def span(a: int, b: int) -> np.ndarray:
        return values[(slice(None),) * axis + (slice(a, b),)]

    # whole groups summed as a reshaped axis (numpy's reduceat is ~5x slower along rows)
    inner = span(head, head + body)
    shape = inner.shape[:axis] + (body // factor, factor) + inner.shape[axis + 1:]
    parts = [inner.reshape(shape).sum(axis=axis + 1, dtype=np.uint32)]
    if head:
        parts.insert(0, span(0, head).sum(axis=axis, keepdims=True, dtype=np.uint32))
    if head + body < n:
        parts.append(span(head + body, n).sum(axis=axis, keepdims=True, dtype=np.uint32))
    return np.concatenate(parts, axis=axis), start // factor


def preview_rgb(src: rasterio.DatasetReader, max_side: int = 1024) -> np.ndarray:
    """``[h, w, 3]`` uint8: bands 1-3 of ``src`` (one band: grey) averaged over ``factor`` x
    ``factor`` px (:func:`preview_factor`; the last row and column of groups may be partial),
    over the valid pixels only (its mask band); a group with none is black. ``h, w`` = the
    size / factor, rounded up. A file with overviews is read through them by GDAL (average
    resampling: GDAL's overviews blend a few pixels across the mask's edge)."""
    factor = preview_factor(src.width, src.height, max_side)
    h, w = math.ceil(src.height / factor), math.ceil(src.width / factor)
    bands = [1, 2, 3] if src.count >= 3 else [1, 1, 1]  # one band: grey
    if src.overviews(1) or factor == 1:
        rgb = src.read(bands, out_shape=(3, h, w), resampling=Resampling.average)
        return np.ascontiguousarray(np.moveaxis(rgb, 0, -1))
    sums = np.zeros((3, h, w), np.uint32)
    counts = np.zeros((h, w), np.uint32)
    bh, bw = src.block_shapes[0]
    step = bw * BLOCKS_PER_READ
    # a read's blocks (every band and the mask) twice over: none decoded twice, none kept
    with read_cache(2 * bh * step * (src.count + 1)):
        for y in range(0, src.height, bh):
            for x in range(0, src.width, step):
                window = Window(x, y, min(step, src.width - x), min(bh, src.height - y))
                valid = (src.read_masks(1, window=window) > 0).astype(np.uint8)
                # masked pixels are 0 in zoomsr's outputs already; another file's need not be
                rgb = src.read(bands, window=window)
                rgb *= valid
                for values, total in ((rgb, sums), (valid[None], counts[None])):
                    rows, i0 = _group_sums(values, y, factor, axis=1)
                    cells, j0 = _group_sums(rows, x, factor, axis=2)
                    total[:, i0:i0 + cells.shape[1], j0:j0 + cells.shape[2]] += cells
    mean = (2 * sums + counts) // np.maximum(2 * counts, 1)  # rounded half up, as integers
    return np.ascontiguousarray(np.moveaxis(mean.astype(np.uint8), 0, -1))


def write_preview(tif: Path, png: Path, max_side: int = 1024) -> None:
    """A downsampled RGB PNG of an output GeoTIFF (nodata black), at most ``max_side`` px a
    side (:func:`preview_rgb`), written atomically."""
    with rasterio.open(tif) as src:
        write_png(png, preview_rgb(src, max_side))
