"""Opening input rasters: readable, and cheap decimated looks at their values (made
ahead in threads)."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.env import get_gdal_config, hasenv, set_gdal_config
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.session import DummySession
from rasterio.windows import Window

from zoomsr.errors import DataError, first_line
from zoomsr.inference.inputs.frame import Frame
from zoomsr.inference.inputs.radiometry import valid_pixels

#: Held while this module changes the process's warning filters (catch_warnings).
WARNINGS_LOCK = threading.RLock()


def gdal_messages_logged() -> contextlib.AbstractContextManager[object]:
    """While it lasts, GDAL's messages in this thread go to rasterio's logger, as they do in
    ``rasterio.open`` and in ``with dataset:``; for reads of datasets held open (the reader's).

    Outside a ``rasterio.Env``, GDAL prints its warnings raw on stderr (``Warning 1: ...``),
    past the CLI's one-line ``warning: FILE: ...`` format, and a dataset's first read can emit
    some: of a 4-band GeoTIFF that lacks the ExtraSamples tag, libtiff says again, as the read
    reloads the file's directory, "Sum of Photometric type-related color channels and
    ExtraSamples doesn't match SamplesPerPixel": a note on the file's structure that GDAL
    recovers from (the bands read as they are) and the user can do nothing about. It is
    silent then, like the same note at the open (rasterio's logger, shown where the caller
    configured logging). Errors still raise: rasterio checks GDAL's error status whatever the
    handler.

    A plain Env (not rasterio.open's defaults: reads keep GDAL's own options), and none where
    this thread has one: leaving a nested Env sets the outer one's options again, which would
    undo the GDAL_CACHEMAX that ``read_cache`` set inside a caller's Env. A dummy
    session: local files, no cloud credentials looked up.
    """
    return contextlib.nullcontext() if hasenv() else rasterio.Env(session=DummySession())


def open_raster(path: Path) -> rasterio.DatasetReader:
    try:
        with WARNINGS_LOCK, warnings.catch_warnings():
            # a file without georeference is refused by name later ("has no CRS"); rasterio's
            # own two-line warning would only come first
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise DataError(f"{path}: not a readable raster (corrupt or wrong format: "
                        f"{first_line(exc)})") from None


def check_readable(ds: rasterio.DatasetReader, path: Path) -> None:
    """Decode a block from the corners so a truncated file fails here, not mid-run."""
    try:
        for row, col in ((0, 0), (ds.height - 1, ds.width - 1)):
            ds.read(1, window=Window(col, row, 1, 1))
    except Exception as exc:  # noqa: BLE001 - GDAL raises several types for damaged data
        raise DataError(f"{path}: corrupt raster data ({first_line(exc)})") from None


def own_mask(ds: rasterio.DatasetReader, band: int) -> bool:
    """Whether ``ds``'s ``band`` has a mask of its own: an internal mask or an alpha band
    (not only a nodata value, which :func:`valid_pixels` applies)."""
    flags = ds.mask_flag_enums[band - 1]
    return MaskFlags.per_dataset in flags or MaskFlags.alpha in flags


def block_row_bytes(ds: rasterio.DatasetReader) -> int:
    """Bytes of one row of ``ds``'s blocks, every band, decoded."""
    bh, bw = ds.block_shapes[0]
    return (math.ceil(ds.width / bw) * bw * min(bh, ds.height) * ds.count
            * np.dtype(ds.dtypes[0]).itemsize)


def sample_shape(ds: rasterio.DatasetReader) -> tuple[int, int]:
    factor = max(1, max(ds.width, ds.height) // 256)
    return max(1, ds.height // factor), max(1, ds.width // factor)


_cache_lock = threading.Lock()
_cache_runs: dict[int, int] = {}  # the runs in this process now, with the bytes each asked
_cache_found: int | None = None  # GDAL's cache size before the first of them


@contextlib.contextmanager
def read_cache(cache_bytes: int) -> Iterator[None]:
    """GDAL's block cache sized for one scene run while it lasts, then as it was found.

    Meanwhile the process's other GDAL work shares that cache, also inside a caller's
    ``rasterio.Env`` that set a larger one: a run's memory stays bounded by its own needs.

    GDAL has one cache per process, so runs at the same time (threads, Ray actors) share it:
    it is the sum of what they asked for, and the size found before the first is put back
    after the last, whichever threads they run in. Not a ``rasterio.Env``: rasterio passes an
    integer ``GDAL_CACHEMAX`` to GDAL as bytes, and its environments restore what each
    thread's outermost one found, so environments left in several threads (each row thread's
    reader once set ``GDAL_CACHEMAX=64``: a 64-byte cache, every read decoding its blocks
    again) left another thread's value behind, and a nested one leaves its size after the
    outer one ends.
    """
    global _cache_found
    key = object()
    with _cache_lock:
        if not _cache_runs:
            _cache_found = int(get_gdal_config("GDAL_CACHEMAX"))
        _cache_runs[id(key)] = int(cache_bytes)
        set_gdal_config("GDAL_CACHEMAX", sum(_cache_runs.values()))
    try:
        yield
    finally:
        with _cache_lock:
            del _cache_runs[id(key)]
            # (found when the first of the runs started)
            left = sum(_cache_runs.values()) if _cache_runs else cast(int, _cache_found)
            set_gdal_config("GDAL_CACHEMAX", int(left))


#: At most this many bytes of decimated looks are made ahead (the rest are read in order).
LOOK_AHEAD_BYTES = 64 * 2**20


#: Per thread: the decimated looks :func:`discover_frames` made ahead, by file name.
looked = threading.local()


def decimated_look(ds: rasterio.DatasetReader, band: int | Sequence[int]) -> np.ndarray:
    """A cheap look at the values: a decimated read (at most ~256 px a side) of ``band``
    (``[h, w]``) or of several bands (``[n, h, w]``).

    It decodes blocks all over the file, or its overviews where it has them, so damaged data
    inside a file without overviews (not only at the corners :func:`check_readable` reads)
    fails here, before any work; in a file with overviews, a damaged full-resolution block
    fails when the run reads it (named then, the finished rows kept for --resume). Taken from
    the look made ahead (:func:`look_ahead`) where there is one. Pixels that the file's own
    mask (internal mask, alpha band) masks out are 0 in every band (black: no data), as the
    run reads them (:func:`decimated_read`).
    """
    shape = sample_shape(ds)
    ahead = getattr(looked, "samples", {}).get(ds.name)
    if ahead is not None and ahead.shape == (ds.count, *shape):
        return ahead[band - 1] if isinstance(band, int) else ahead[[b - 1 for b in band]]
    try:
        if isinstance(band, int):
            return decimated_read(ds, [band], shape)[0]
        return decimated_read(ds, list(band), shape)
    except Exception as exc:  # noqa: BLE001 - GDAL raises several types for damaged data
        raise DataError(f"{ds.name}: corrupt raster data ({first_line(exc)})") from None


def _nearest(size: int, samples: int) -> np.ndarray:
    """The pixel GDAL's nearest-neighbour decimation takes for each of ``samples`` of
    ``size``: the one under each sample's centre (GDAL adds 1e-10, so that a centre landing
    on a pixel edge, e.g. 166.5 x 1000/333, takes the pixel after it whatever the rounding)."""
    at = (np.arange(samples) + 0.5) * (size / samples) + 1e-10
    return np.minimum(at.astype(np.int64), size - 1)


#: Compressions whose blocks GDAL decodes only at full resolution (JPEG's are decoded at a
#: reduced size for a decimated read: other pixel values).
_FULL_DECODE = {"none", "deflate", "adobe_deflate", "lzw", "zstd", "packbits", "lzma", "lerc",
                "lerc_deflate", "lerc_zstd"}


def _decimates_full_blocks(ds: rasterio.DatasetReader, band: int) -> bool:
    """Whether GDAL decimates ``ds`` from its full-resolution blocks, so that
    :func:`decimated_read` takes the same pixels: a GeoTIFF without overviews, compressed so
    that its blocks decode only at full size. Not a VRT (each source is resampled on its own
    grid: other pixels at the sources' edges)."""
    compression = getattr(ds.compression, "name", "none")
    return (ds.driver == "GTiff" and not ds.overviews(band)
            and str(compression).lower() in _FULL_DECODE)


def decimated_read(ds: rasterio.DatasetReader, bands: list[int], shape: tuple[int, int],
                   part: tuple[int, int] = (0, 1)) -> np.ndarray:
    """``ds.read(bands, out_shape=(len(bands), *shape))`` (nearest), ``[n, h, w]``, with no
    more than a block row of ``ds`` decoded at a time where GDAL would decode it all (a
    GeoTIFF without overviews: :func:`_decimates_full_blocks`; other files as GDAL reads them).

    GDAL decimates band after band, so it decodes such a file once per band unless its cache
    holds the whole file, and then it holds it until the file is closed: 8 dates of 8192 px
    looked at at once held 1.6 GB, a GPU run's peak. Read here row by row (each block decoded
    once, GDAL's cache holding a block row), keeping the rows and columns GDAL would.

    ``part=(k, p)``: only the ``k``-th of ``p`` runs of those rows, split on block-row edges
    (no block decoded by two parts), so that threads can decode one file together; the parts
    joined along the rows (axis 1) are the whole. A file GDAL reads itself is read whole by
    part 0 (the others: no rows).

    Where ``bands[0]`` has a mask of its own (:func:`own_mask`), the pixels it masks out are
    0 in every band: no data, as the run reads them (a masked-out date's values, often a
    valid-looking fill, were counted as data). Its mask is decimated alike (same pixels).
    """
    h, w = shape
    k, p = part
    masked = own_mask(ds, bands[0])
    if (h, w) == (ds.height, ds.width) or not _decimates_full_blocks(ds, bands[0]):
        if k:
            return np.empty((len(bands), 0, w), ds.dtypes[0])
        values = ds.read(bands, out_shape=(len(bands), h, w))
        if masked:
            values[:, ds.read_masks(bands[0], out_shape=(h, w)) == 0] = 0
        return values
    xs = _nearest(ds.width, w)
    rows = split_on_blocks(_nearest(ds.height, h), ds.block_shapes[bands[0] - 1][0], p)[k]
    if not len(rows):
        return np.empty((len(bands), 0, w), ds.dtypes[0])

    def row(y: int) -> np.ndarray:
        window = Window(0, y, ds.width, 1)
        values = ds.read(bands, window=window)[:, 0, xs]
        if masked:  # a row of the mask too (its own blocks, 1 byte a pixel)
            values[:, ds.read_masks(bands[0], window=window)[0, xs] == 0] = 0
        return values

    # row by row, down the file: the cache holds the block row being read (and the next),
    # and the mask's (a byte a pixel)
    pixels = block_row_bytes(ds) // (ds.count * np.dtype(ds.dtypes[0]).itemsize)
    with read_cache(2 * (block_row_bytes(ds) + (pixels if masked else 0))):
        return np.stack([row(y) for y in rows.tolist()], axis=1)


def split_on_blocks(rows: np.ndarray, block_rows: int, parts: int) -> list[np.ndarray]:
    """Ascending pixel ``rows`` cut into ``parts`` runs (some possibly empty) that each cover
    about as many of the file's block rows (``block_rows`` px tall), cut only between block
    rows: no block row's decoding is shared by two runs."""
    block = rows // block_rows
    blocks = np.unique(block)
    firsts = [blocks[i * len(blocks) // parts] for i in range(1, parts)]  # each later run's
    return np.split(rows, np.searchsorted(block, firsts))


def workers_available() -> int:
    """CPUs this process may run on (its affinity, where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def look_ahead(paths: Sequence[Path], workers: int | None = None) -> dict[str, np.ndarray]:
    """Decimated looks at every band of ``paths``, several files at once, by file name.

    A look decodes the whole file when it has no overviews (a large scene's 8 dates: about a
    second on one core, while the GPU waits), and GDAL decodes without Python's lock, so the
    files are read in ``workers`` threads (default: one per CPU, at most 16); with more
    threads than files, each file is read by several, each its own run of block rows (8 dates
    on 16 CPUs: two threads a file, the looks' time about halved). A file that fails is left
    out: read again in order, it fails there with its message, so errors come as without the
    look ahead; so is a file of more than 4 bands, and any once the looks held (every band, up
    to 511 px a side, until discovery ends) reach :data:`LOOK_AHEAD_BYTES`.
    """
    budget = [LOOK_AHEAD_BYTES]
    admitted: dict[str, bool] = {}  # per file, by the first of its parts to ask
    lock = threading.Lock()
    workers = min(workers or workers_available(), 16)
    if min(len(paths), workers) <= 1:
        return {}
    parts = max(1, workers // len(paths))

    def look(task: tuple[Path, int]) -> tuple[str, str | None, np.ndarray | None]:
        path, k = task
        try:
            with rasterio.open(path) as ds:
                shape = (ds.count, *sample_shape(ds))
                size = math.prod(shape) * np.dtype(ds.dtypes[0]).itemsize
                with lock:  # the whole file's look is charged once: its parts take it or none
                    if str(path) not in admitted:
                        admitted[str(path)] = ds.count <= 4 and size <= budget[0]
                        budget[0] -= size if admitted[str(path)] else 0
                    if not admitted[str(path)]:
                        return str(path), None, None
                return str(path), ds.name, decimated_read(
                    ds, list(range(1, ds.count + 1)), shape[1:], (k, parts))
        except Exception:  # noqa: BLE001 - reported by the ordered pass
            return str(path), None, None

    pool = ThreadPoolExecutor(min(len(paths) * parts, workers),
                              thread_name_prefix="zoomsr-look")
    try:
        # rasterio warns from the worker threads too (a file without georeference): filtered
        # here, as open_raster does, and told by the ordered pass. The filters are the process's, so
        # one thread at a time changes them.
        with WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            looks: dict[str, list[tuple[str | None, np.ndarray | None]]] = {}
            for path, name, piece in pool.map(look, [(p, k) for p in paths
                                                     for k in range(parts)]):
                looks.setdefault(path, []).append((name, piece))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: no file not yet started
    # by the name the ordered pass's datasets have; a file with a part missing (failed, or
    # over the budget) is looked at again in order. Joined file by file, each file's parts
    # let go as it is (all looks held twice at once would be twice the budget)
    joined: dict[str, np.ndarray] = {}
    while looks:
        pieces = looks.popitem()[1]
        if all(x is not None for _, x in pieces):
            parts_read = cast("list[np.ndarray]", [x for _, x in pieces])
            joined[cast(str, pieces[0][0])] = (parts_read[0] if len(parts_read) == 1
                                    else np.concatenate(parts_read, axis=1))
    return joined


def any_valid(frame: Frame) -> bool:
    """Whether any full-resolution pixel of ``frame``'s RGB is valid (read in strips, up to the
    first): what a decimated look found nothing in may still hold a narrow swath edge. A
    pixel that a file's own mask (internal mask, alpha band) masks out is not, as the run
    reads it."""

    # reads in an Env: GDAL's messages logged, not printed raw (gdal_messages_logged)
    with contextlib.ExitStack() as stack:
        stack.enter_context(gdal_messages_logged())
        datasets = [stack.enter_context(open_raster(p)) for p in frame.paths]
        if len(datasets) == 3:  # red, green, blue files
            bands = list(zip(datasets, frame.bands, strict=True))
        else:
            bands = [(datasets[0], b) for b in frame.bands]
        step = max(1, (1 << 24) // max(1, frame.width))  # ~16 M pixels a strip
        for row in range(0, frame.height, step):
            w = Window(0, row, frame.width, min(step, frame.height - row))
            try:
                strip = np.stack([ds.read(b, window=w) for ds, b in bands])
                # a file's mask masks every channel (the reader zeroes them all)
                masks = [ds.read_masks(b, window=w) != 0 for ds, b in bands if own_mask(ds, b)]
            except Exception as exc:  # noqa: BLE001 - GDAL raises several types
                raise DataError(f"{frame.paths[0]}: corrupt raster data "
                                f"({first_line(exc)})") from None
            mask = np.logical_and.reduce(masks) if masks else None
            if valid_pixels(strip, frame.nodata, mask).any():
                return True
        return False
