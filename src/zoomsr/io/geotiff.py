"""The output GeoTIFF: tiled, compressed, masked, written strip by strip from a raw raster.

:func:`write_geotiff` makes the same bytes whether it runs after the last row or beside the
rows being computed (:mod:`zoomsr.io.geotiff_stream`), and renames the file into place only
once it is complete and reads back.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import RasterBlockError
from rasterio.windows import Window

from zoomsr.io.atomic import atomic_path
from zoomsr.io.deflate import DEFLATE_LEVEL, DEFLATE_LEVELS, check_deflate_level
from zoomsr.io.gdal_errors import fsync_file, start_writeback, write_errors_raised
from zoomsr.io.gdal_lib import dataset_flusher, gdal_library
from zoomsr.io.raw_raster import RawRaster

log = logging.getLogger(__name__)

#: The output's tile side (px).
BLOCK = 256
#: Rows of one strip written at a time (px, a multiple of ``BLOCK``). Each strip costs the
#: writer a few calls that give up the interpreter lock and wait to take it back from the row
#: threads: beside a busy Python thread (2-core CPU, uncompressed) 512 rows wrote 1.33x as fast
#: as 256, but held 34 MB more at a 3856 px scene's width (the strip read, GDAL's dirty
#: tiles), more than at 1936 px: against the memory target. Whether a GPU run gains from 512 is
#: the GPU suite's step 4.
STRIP = 256


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



def _profile(width: int, height: int, count: int, crs, transform,
             level: int = DEFLATE_LEVEL) -> dict[str, Any]:
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
        "zlevel": level,
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


def _bands_and_mask(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[h, w, C + 1]`` uint8 rows (bands, then the mask) -> views of the bands ``[C, h, w]``
    and of the mask ``[h, w]``, no copies: rasterio hands GDAL the views' strides, and GDAL
    copies pixel-interleaved rows into its pixel-interleaved tiles as fast as from a
    band-sequential array.

    The rows are as :func:`zoomsr.inference.assemble.with_mask` makes them (0 in every band
    where the mask is 0, the mask 0 or 255), so nothing is masked here: on a GPU this thread
    is what the run waits for at the end, and each NumPy pass over a strip released and took
    back the interpreter lock the row threads hold (``benchmarks/writer_throughput.py
    --busy-threads 1``)."""
    return np.moveaxis(block[:, :, :-1], -1, 0), block[:, :, -1]


def tiles_with_data(mask: np.ndarray, rows: int = BLOCK, cols: int = BLOCK) -> np.ndarray:
    """``[ceil(h / rows), ceil(w / cols)]`` bool: which ``rows`` x ``cols`` px tiles of
    ``mask`` ``[h, w]`` hold a valid (non-zero) pixel, in two NumPy calls (one call per tile
    took the interpreter lock back once per tile, 60 times a strip of a 15424 px wide
    output)."""
    by_row = np.maximum.reduceat(mask, np.arange(0, mask.shape[0], rows), axis=0)
    return np.maximum.reduceat(by_row, np.arange(0, mask.shape[1], cols), axis=1) > 0


def _check_tiles(dst: Any, window: Window, tiles: np.ndarray) -> None:
    """Raise ``OSError`` when a tile of ``window`` (flushed or closed since) that holds valid
    pixels (``tiles``, :func:`tiles_with_data` of its mask) has no bytes in ``dst``.

    GDAL reports a tile it could not write (a full disk) through its error handler, which
    reaches Python only in the thread that installed it: from the writer thread it went to
    stderr, and a file with missing tiles and no readable directory was renamed into place
    with exit 0. Tiles without a valid pixel may be left out (a file reopened per strip is
    sparse: ``SPARSE_OK``). Checked after the strip's flush, or, for a file reopened per
    strip, in its next opening (each opening gives up the interpreter lock a few times).
    """
    rows, cols = dst.block_shapes[0]
    if (window.row_off % rows, window.col_off % cols) != (0, 0):
        raise ValueError(f"strip {window} is not aligned on the {rows} x {cols} tiles")
    i0, j0 = window.row_off // rows, window.col_off // cols
    for i, j in zip(*np.nonzero(tiles), strict=True):
        try:
            size = dst.block_size(1, i0 + int(i), j0 + int(j))
        except RasterBlockError:  # rasterio's answer for a tile that is not in the file
            size = 0
        if size == 0:
            raise OSError(errno.EIO, f"GDAL did not write its tile ({i0 + i}, {j0 + j})")


class _StripWriter:
    """The output file, written strip by strip, each strip's tiles in the file before the next
    strip is read: rasterio has no flush (rasterio#1281), and the internal mask goes through
    GDAL's block cache, which keeps it until the file is closed (memory growing with the area)
    or evicts it when other threads' reads fill the cache, so that the layout would depend on
    what else the process did. Written at each strip's end, the bytes depend only on the
    pixels (the tile offsets are rewritten in place).

    The dataset that created the file is kept open and flushed through GDAL's C API
    (:func:`~zoomsr.io.gdal_lib.dataset_flusher`): only that dataset compresses at the level
    it was created with. Where GDAL's handle cannot be reached, the file is closed after
    creation and reopened for each strip, at libtiff's default level (6), with a warning."""

    def __init__(self, target: Path, profile: dict[str, Any], threads: str,
                 band_names: list[str], level: int, warn: bool = True) -> None:
        self.target = target
        self.threads = threads
        self.written: tuple[Window, np.ndarray] | None = None  # strip not checked yet
        self.dst: Any = None
        self.flush: Callable[[], None] | None = None
        if gdal_library() is not None:
            self.dst = self._create(target, profile, threads, band_names, sparse=False)
            try:
                self.flush = dataset_flusher(self.dst)
                if self.flush is not None:
                    # the directory written now, at the file's start, before any tile: else
                    # where it lands depends on when GDAL's cache first evicts a block
                    self.flush()
            except BaseException:
                self.dst.close()
                raise
            if self.flush is None:  # (its handle not found: made again, sparse)
                self.dst.close()
                self.dst = None
        if self.dst is None:
            # closed empty and reopened per strip: SPARSE_OK, else GDAL writes an empty tile
            # for every tile at the close, left behind once the strips come
            self._create(target, profile, threads, band_names, sparse=True).close()
            if warn and level != LIBTIFF_DEFLATE_LEVEL:
                _warn_level_once(level)

    @staticmethod
    def _create(target: Path, profile: dict[str, Any], threads: str, band_names: list[str],
                sparse: bool) -> Any:
        """The file created (replacing any), its bands named; open for writing."""
        # Not sparse when kept open: a tile whose pixels are all 0 but valid (a model's black
        # output) would be left out of the file, and the tile check take it for a lost write
        dst = rasterio.open(target, "w", SPARSE_OK=sparse, NUM_THREADS=threads, **profile)
        try:
            count = len(band_names)
            interp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
            dst.colorinterp = (interp + [ColorInterp.undefined] * count)[:count]
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
        except BaseException:
            dst.close()
            raise
        return dst

    def __enter__(self) -> _StripWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.dst is not None:
            self.dst.close()
            self.dst = None

    def write(self, window: Window, bands: np.ndarray, mask: np.ndarray) -> None:
        """Write bands ``[C, h, w]`` and mask ``[h, w]`` at ``window`` (a strip of whole
        tiles), and check the previous strip's tiles (this one's, when flushed)."""
        if self.dst is not None:
            self.dst.write(bands, window=window)
            self.dst.write_mask(mask, window=window)
            self.flush()  # type: ignore[misc]
            # Not sparse: every tile of the strip must have bytes, those without valid pixels
            # too, so none needs finding (tiles_with_data took the writer thread 1 s of a 10 s
            # GPU run, the run waiting for that thread at its end; H200, 2026-11-28)
            every = np.ones((-(-int(window.height) // BLOCK), -(-int(window.width) // BLOCK)),
                            dtype=bool)
            _check_tiles(self.dst, window, every)
            return
        tiles = tiles_with_data(mask, BLOCK, BLOCK)  # a sparse file may leave the others out
        with rasterio.open(self.target, "r+", NUM_THREADS=self.threads) as dst:
            if self.written is not None:
                _check_tiles(dst, *self.written)
            dst.write(bands, window=window)
            dst.write_mask(mask, window=window)
        self.written = window, tiles

    def finish(self, tags: dict[str, str]) -> None:
        """Check the last strip, write ``tags`` and close the file."""
        dst = self.dst or rasterio.open(self.target, "r+")
        self.dst = None
        with dst:
            if self.written is not None:
                _check_tiles(dst, *self.written)
            dst.update_tags(**tags)
            if self.flush is not None:  # the directory too, its failure seen: the close
                self.flush()  # then has nothing left to write (its errors are only logged)


#: libtiff's DEFLATE level where none is set: what a GeoTIFF reopened for update gets.
LIBTIFF_DEFLATE_LEVEL = 6


@functools.cache
def _warn_level_once(level: int) -> None:
    log.warning("DEFLATE level %d not applied: GDAL's library could not be reached to flush the "
                "output as it is written, so it is compressed at libtiff's default, %d",
                level, LIBTIFF_DEFLATE_LEVEL)


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
    deflate_level: int = DEFLATE_LEVEL,
) -> None:
    """Write ``raw`` (bands ``[*band_names, mask]``) as a tiled, compressed GeoTIFF, atomically.

    The last raw band is the data mask (255 valid, 0 nodata), written as the GDAL internal
    mask; the raw rows are 0 in every band where it is 0 (as
    :func:`~zoomsr.inference.assemble.with_mask` makes them: not masked again here).
    ``cog=True`` converts to a Cloud-Optimized GeoTIFF (overviews, COG layout) before the
    rename. ``chunks`` (:func:`column_chunks`; default: the whole width) are written one after
    the other, each top to bottom in :data:`STRIP`-row strips, so a scene computed in column
    strips is written as each strip goes and no more than a chunk's width is held.
    ``wait_rows(n, k)``, if given, is called before rows below ``n`` of chunk ``k`` are read
    (it blocks until they are final, or raises to abandon the file); ``tags`` may be a
    callable, called once the pixels are written. ``deflate_level``: see
    :data:`DEFLATE_LEVEL`. The bytes depend only on the pixels, the chunks and the level (and
    on whether GDAL's library was reached: see :class:`_StripWriter`).
    """
    count = raw.bands - 1
    if count != len(band_names):
        raise ValueError("band names do not match the raw raster")
    if STRIP % BLOCK:
        raise ValueError(f"STRIP ({STRIP}) is not a multiple of the {BLOCK} px tiles")
    check_deflate_level(deflate_level)
    chunks = chunks or [(0, raw.width)]
    if (chunks[0][0], chunks[-1][1]) != (0, raw.width) or any(
            x0 % BLOCK or x1 < x0 or (k + 1 < len(chunks) and chunks[k + 1][0] != x1)
            for k, (x0, x1) in enumerate(chunks)):
        raise ValueError(f"chunks {chunks} do not cover [0, {raw.width}) in order, each "
                         f"starting on a {BLOCK} px tile edge (column_chunks makes them)")
    output.parent.mkdir(parents=True, exist_ok=True)
    # a COG's tiles are read back and compressed again: the first pass at the fastest level
    profile = _profile(raw.width, raw.height, count, crs, transform,
                       min(DEFLATE_LEVELS) if cog else deflate_level)
    threads = _compress_threads(count)
    with atomic_path(output, suffix=".tif") as final_tmp:
        target = final_tmp.with_name(final_tmp.name + ".gtiff.tif") if cog else final_tmp
        try:
            # a block that cannot be written (a full disk) is only logged when the file is
            # closed: the output would look complete and the run's rows be removed
            with write_errors_raised(output), rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), \
                    contextlib.ExitStack() as fds:
                raw_fd = os.open(raw.path, os.O_RDONLY)
                fds.callback(os.close, raw_fd)
                strips = fds.enter_context(
                    # (a COG's level is applied by its own pass: no warning for the first)
                    _StripWriter(target, profile, threads, band_names, deflate_level,
                                 warn=not cog))
                out_fd = None
                if not cog:  # the COG pass reads the tiles back: keep them cached
                    out_fd = os.open(target, os.O_RDONLY)
                    fds.callback(os.close, out_fd)
                for k, (x0, x1) in enumerate(chunks):
                    for row in range(0, raw.height if x1 > x0 else 0, STRIP):
                        n = min(STRIP, raw.height - row)
                        if wait_rows is not None:
                            wait_rows(row + n, k)
                        block = raw.read_rows(row, n, (x0, x1), fd=raw_fd)
                        strips.write(Window(x0, row, x1 - x0, n), *_bands_and_mask(block))
                        del block
                        if out_fd is not None:  # so that the flush before the rename,
                            start_writeback(out_fd)  # after the last row, is short
                strips.finish(tags() if callable(tags) else tags)
            if cog:
                from rasterio.shutil import copy as rio_copy

                with write_errors_raised(output), rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                    rio_copy(
                        target, final_tmp, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES",
                        LEVEL=str(deflate_level), BLOCKSIZE=str(BLOCK),
                        OVERVIEW_RESAMPLING="AVERAGE", BIGTIFF="IF_SAFER",
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
