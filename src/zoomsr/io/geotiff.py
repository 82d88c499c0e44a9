"""The output GeoTIFF: tiled, compressed, masked, written strip by strip from a raw raster.

:func:`write_geotiff` makes the same bytes whether it runs after the last row or beside the
rows being computed (:mod:`zoomsr.io.geotiff_stream`), and renames the file into place only
once it is complete and reads back.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from zoomsr.io.atomic import atomic_path
from zoomsr.io.gdal_errors import fsync_file, write_errors_raised
from zoomsr.io.raw_raster import RawRaster

#: The output's tile side, and the rows of one strip written at a time (px).
BLOCK = 256


def column_chunks(width: int, ends: list[int]) -> list[tuple[int, int]]:
    """The output columns ``[x0, x1)`` written after each column strip, ``width`` px wide in
    all: strip ``k`` makes the columns up to ``ends[k]`` final (``ends`` ascending, the last
    one ``width``), so its chunk runs up to the last block edge at or before that; the
    block straddling the boundary goes with the next strip. One strip: ``[(0, width)]``."""
    chunks, x0 = [], 0
    for k, end in enumerate(ends):
        x1 = width if k == len(ends) - 1 else max(x0, end // BLOCK * BLOCK)
        chunks.append((x0, x1))
        x0 = x1
    return chunks



def _profile(width: int, height: int, count: int, crs, transform) -> dict[str, Any]:
    return {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": "uint8",
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "predictor": 2,
        "interleave": "pixel",
        "photometric": "RGB",
        "BIGTIFF": "IF_SAFER",
    }


def _compress_threads(count: int) -> str:
    """GDAL's ``NUM_THREADS`` for writing ``count`` bands (an open option of each strip)."""
    # Compress blocks on every core: the byte stream is the same as with one thread, and on a
    # GPU machine this final pass would otherwise cost about as much as the model. Not for 4
    # bands (RGB + uncertainty): GDAL's compression jobs then print a spurious "Bad value 1
    # for ExtraSamples" error (the data are right, the message alarming).
    return "ALL_CPUS" if count == 3 else "1"


def _masked_bands(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[h, w, C + 1]`` uint8 rows (bands, then the mask) -> (bands ``[C, h, w]``, 0 where the
    mask is, and the mask ``[h, w]``, 0 or 255), both contiguous, as GDAL takes them.

    Masked in contiguous passes: with ``np.where`` over the interleaved rows' strided views,
    the writer thread's own work took twice as long (``benchmarks/writer_throughput.py
    --no-compress``), and on a GPU that thread runs at about the rate rows are made."""
    mask = np.where(block[:, :, -1] > 0, np.uint8(255), np.uint8(0))
    bands = np.ascontiguousarray(np.moveaxis(block[:, :, :-1], -1, 0))
    np.minimum(bands, mask, out=bands)  # 255 keeps a value, 0 clears it
    return bands, mask


def _check_strip(target: Path, window: Window, mask: np.ndarray) -> None:
    """Raise ``OSError`` when a tile of ``window`` that holds valid pixels (``mask`` > 0) has
    no bytes in the file written, or the file cannot be read back.

    GDAL reports a tile it could not write (a full disk) through its error handler, which
    reaches Python only in the thread that installed it: from the writer thread it went to
    stderr, and a file with missing tiles and no readable directory was renamed into place
    with exit 0. Tiles without a valid pixel are legitimately left out (``SPARSE_OK``).
    """
    with rasterio.open(target) as src:
        rows, cols = src.block_shapes[0]
        for r in range(0, window.height, rows):
            for c in range(0, window.width, cols):
                if not mask[r:r + rows, c:c + cols].any():
                    continue
                i, j = (window.row_off + r) // rows, (window.col_off + c) // cols
                if src.block_size(1, i, j) == 0:
                    raise OSError(errno.EIO, f"GDAL did not write its tile ({i}, {j})")


def write_geotiff(
    raw: RawRaster,
    output: Path,
    *,
    crs,
    transform,
    band_names: list[str],
    tags: dict[str, str] | Callable[[], dict[str, str]],
    cog: bool = False,
    chunks: list[tuple[int, int]] | None = None,
    wait_rows: Callable[[int, int], None] | None = None,
) -> None:
    """Write ``raw`` (bands ``[*band_names, mask]``) as a tiled, compressed GeoTIFF, atomically.

    The last raw band is the data mask (255 valid, 0 nodata), written as the GDAL internal
    mask; masked pixels are 0 in every band. ``cog=True`` converts to a Cloud-Optimized GeoTIFF
    (overviews, COG layout) before the rename. ``chunks`` (:func:`column_chunks`; default: the
    whole width) are written one after the other, each top to bottom in 256-row strips, so a
    scene computed in column strips is written as each strip goes and no more than a chunk's
    width is held. ``wait_rows(n, k)``, if given, is called before rows below ``n`` of chunk
    ``k`` are read (it blocks until they are final, or raises to abandon the file); ``tags``
    may be a callable, called once the pixels are written. The bytes depend only on the
    pixels and the chunks.
    """
    count = raw.bands - 1
    if count != len(band_names):
        raise ValueError("band names do not match the raw raster")
    output.parent.mkdir(parents=True, exist_ok=True)
    profile = _profile(raw.width, raw.height, count, crs, transform)
    threads = _compress_threads(count)
    with atomic_path(output, suffix=".tif") as final_tmp:
        target = final_tmp.with_name(final_tmp.name + ".gtiff.tif") if cog else final_tmp
        try:
            # a block that cannot be written (a full disk) is only logged when the file is
            # closed: the output would look complete and the run's rows be removed
            with write_errors_raised(output), rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                # SPARSE_OK: closed before any pixel is written, GDAL would otherwise write
                # an empty tile for every tile, left behind once the strips come
                with rasterio.open(target, "w", SPARSE_OK=True, **profile) as dst:
                    interp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
                    dst.colorinterp = (interp + [ColorInterp.undefined] * count)[:count]
                    for i, name in enumerate(band_names, start=1):
                        dst.set_band_description(i, name)
                # rasterio has no flush (rasterio#1281), so the file is reopened for each
                # strip: the 1-bit internal mask goes through GDAL's block cache, which keeps
                # it until the file is closed (memory growing with the area) or evicts it when
                # other threads' reads fill the cache, so that the layout would depend on what
                # else the process did. Closing writes the strip's mask blocks now: the bytes
                # depend only on the pixels (the tile offsets are rewritten in place).
                chunks = chunks or [(0, raw.width)]
                for k, (x0, x1) in enumerate(chunks):
                    for row in range(0, raw.height if x1 > x0 else 0, BLOCK):
                        n = min(BLOCK, raw.height - row)
                        if wait_rows is not None:
                            wait_rows(row + n, k)
                        block = raw.read_rows(row, n, (x0, x1))
                        bands, mask = _masked_bands(block)
                        del block
                        window = Window(x0, row, x1 - x0, n)
                        with rasterio.open(target, "r+", NUM_THREADS=threads) as dst:
                            dst.write(bands, window=window)
                            dst.write_mask(mask, window=window)
                        _check_strip(target, window, mask)
                        del bands, mask
                        if not cog:  # flushed as it goes, in this (writer) thread: the
                            # flush before the rename, after the last row, is then short
                            fsync_file(target)
                with rasterio.open(target, "r+") as dst:
                    dst.update_tags(**(tags() if callable(tags) else tags))
            if cog:
                from rasterio.shutil import copy as rio_copy

                with write_errors_raised(output), rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                    rio_copy(
                        target, final_tmp, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES",
                        BLOCKSIZE=str(BLOCK), OVERVIEW_RESAMPLING="AVERAGE", BIGTIFF="IF_SAFER",
                        NUM_THREADS="ALL_CPUS",
                    )
            if wait_rows is not None:  # a last chance to abandon the file before the rename
                wait_rows(raw.height, len(chunks) - 1)
            with write_errors_raised(output):
                fsync_file(final_tmp)
                with rasterio.open(final_tmp):  # its directory reads back (the COG's too)
                    pass
        finally:
            if cog:
                target.unlink(missing_ok=True)


def write_preview(tif: Path, png: Path, max_side: int = 1024) -> None:
    """A downsampled RGB PNG of an output GeoTIFF (nodata black)."""
    from rasterio.enums import Resampling

    from zoomsr.io.png import write_png

    with rasterio.open(tif) as src:
        factor = max(1, -(-max(src.width, src.height) // max_side))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        rgb = src.read([1, 2, 3], out_shape=(3, *shape), resampling=Resampling.average)
    write_png(png, np.moveaxis(rgb, 0, -1))
