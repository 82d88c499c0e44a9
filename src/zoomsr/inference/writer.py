"""Crash-safe, resumable output: a partial-run folder, then one atomic GeoTIFF/COG.

While a scene runs, finished output rows go to a raw file in a hidden folder beside the
output (``.NAME.zoomsr-partial/``), and after each row of windows the blending accumulators of
the rows still open are saved, with the number of finished window rows, in one atomically
replaced ``state.npz``. ``--resume`` reloads it and goes on from the next window row; rows are
recomputed at most once more (if the process died between the raw write and the state save),
with the same inputs, so they write the same bytes. When every row is done, the GeoTIFF is
written from the raw file in one deterministic pass to a temporary name and renamed onto the
output: an interrupted run never leaves a file under the output's name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from zoomsr.errors import DataError, InputError, WriteError, first_line
from zoomsr.io.atomic import atomic_path
from zoomsr.io.gdal_errors import fsync_file, write_errors_raised
from zoomsr.records import first_difference, shortened
from zoomsr.stopping import WorkerThread, join_despite_interrupts

STATE_FILE = "state.npz"
BLOCK = 256


def partial_dir(output: Path) -> Path:
    """The hidden folder holding an unfinished run of ``output``."""
    return output.with_name(f".{output.name}.zoomsr-partial")


def has_saved_state(output: Path) -> bool:
    """Whether an unfinished run of ``output`` saved rows to resume from (its partial folder
    without a state holds nothing: a run stopped before its first row, or a crash while the
    folder was removed)."""
    return (partial_dir(output) / STATE_FILE).is_file()


def _pwrite_all(fd: int, data: np.ndarray, offset: int) -> None:
    """Write ``data``'s bytes at ``offset`` of ``fd`` from its own memory (no copy when it is
    contiguous: rows of a wide scene are tens of MB), looping over short writes."""
    view = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:  # a write that makes no progress would loop forever
            raise OSError(f"wrote nothing at byte {offset} ({len(view)} bytes left)")
        view, offset = view[n:], offset + n


def _pread_all(fd: int, out: np.ndarray, offset: int, name: Path) -> None:
    """Fill contiguous ``out`` with the bytes at ``offset`` of ``fd`` (file ``name``), looping
    over short reads: :func:`_pwrite_all`'s twin."""
    view = memoryview(out.reshape(-1).view(np.uint8))
    while view:
        n = os.preadv(fd, [view], offset)
        if n <= 0:
            raise OSError(f"{name}: short read at byte {offset}")
        view, offset = view[n:], offset + n


@dataclass
class RawRaster:
    """A ``height`` x ``width`` x ``bands`` uint8 raster stored row-major in a flat file."""

    path: Path
    width: int
    height: int
    bands: int

    @property
    def row_bytes(self) -> int:
        return self.width * self.bands

    def create(self) -> None:
        size = self.row_bytes * self.height
        try:
            with open(self.path, "wb") as f:
                f.truncate(size)  # sparse: no disk used until rows are written
        except OSError as exc:
            raise WriteError(f"{self.path}: cannot create the run's raw file of {size} bytes "
                              f"({exc.strerror or exc}; a file-size limit, `ulimit -f`?)"
                              ) from None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[int]:
        """A descriptor to write with; a failed write (disk full, a file-size limit) names
        the file (it was a bare "OSError: [Errno 27] File too large")."""
        try:
            fd = os.open(self.path, os.O_WRONLY)
            try:
                yield fd
            finally:
                os.close(fd)
        except OSError as exc:
            raise WriteError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def write_rows(self, row: int, data: np.ndarray) -> None:
        """Write ``[rows, width, bands]`` uint8 starting at ``row``."""
        if data.shape[1:] != (self.width, self.bands) or data.dtype != np.uint8:
            raise ValueError(f"bad raw block {data.shape} {data.dtype}")
        with self._writing() as fd:
            _pwrite_all(fd, data, row * self.row_bytes)

    def write_block(self, row: int, col: int, data: np.ndarray) -> None:
        """Write ``[rows, w, bands]`` uint8 at (``row``, ``col``): a column strip of rows."""
        if col == 0 and data.shape[1] == self.width:
            self.write_rows(row, data)
            return
        if data.shape[2] != self.bands or col + data.shape[1] > self.width:
            raise ValueError(f"bad raw block {data.shape} at column {col}")
        with self._writing() as fd:
            for i in range(data.shape[0]):
                _pwrite_all(fd, data[i], ((row + i) * self.width + col) * self.bands)

    def check_size(self) -> None:
        """Refuse a raw file of another size than its raster's (cut short: its rows would
        read as missing)."""
        size, expected = self.path.stat().st_size, self.row_bytes * self.height
        if size != expected:
            raise DataError(f"{self.path}: {size} bytes, not the {expected} of the run's raw "
                            "raster (damaged); pass --overwrite instead of --resume to start "
                            "again")

    def read_rows(self, row: int, count: int, cols: tuple[int, int] | None = None) -> np.ndarray:
        """``[count, w, bands]`` uint8 from ``row``: whole rows, or columns ``[c0, c1)``."""
        c0, c1 = cols or (0, self.width)
        if (c0, c1) == (0, self.width):
            with open(self.path, "rb") as f:
                f.seek(row * self.row_bytes)
                buf = np.fromfile(f, dtype=np.uint8, count=count * self.row_bytes)
            if buf.size != count * self.row_bytes:  # cut short since: not zeros for rows
                self.check_size()
            return buf.reshape(count, self.width, self.bands)
        if not 0 <= c0 < c1 <= self.width:
            raise ValueError(f"bad raw columns [{c0}, {c1}) of {self.width}")
        out = np.empty((count, c1 - c0, self.bands), np.uint8)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for i in range(count):
                _pread_all(fd, out[i], ((row + i) * self.width + c0) * self.bands, self.path)
        finally:
            os.close(fd)
        return out


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


#: What each entry of a run's fingerprint (``pipeline._fingerprint``) is, to the user.
_SETTINGS = {
    "zoomsr": "zoomsr version", "frames": "inputs", "grid": "target grid (--native-grid, "
    "or the inputs' extent)", "tiling": "--window/--overlap/--margin",
    "model": "model", "device": "--device",
    "autocast": "--precision", "batch_size": "--batch-size (windows per model call)",
    "uncertainty": "--uncertainty", "seed": "--seed", "save_lr": "--save-lr",
    "column_width": "--column-width", "layout": "window layout",
}

#: A diffusion model's sampling settings (``sampling`` in its record) -> the options that set
#: them.
SAMPLING_OPTIONS = {"steps": "--sample-steps", "seed": "--seed"}

#: The settings the window layout follows from: with these equal, a layout that differs was
#: placed by another version of zoomsr.
_LAYOUT_FROM = ("tiling", "grid", "column_width")


#: Fingerprint entries a run's record leaves out: the weights' path and file name (the
#: weights are known by their SHA-256, so the same file given as "w.pth" or "/abs/w.pth", or
#: moved, continues the run). Left out of records saved by an earlier zoomsr, which had them,
#: too, so such a run still continues.
_DROPPED = {"model": ("weights", "model")}


def _without_dropped(fingerprint: str) -> str:
    """``fingerprint`` (JSON) without the :data:`_DROPPED` entries."""
    try:
        fp = json.loads(fingerprint)
    except (TypeError, ValueError):
        return fingerprint
    if not isinstance(fp, dict):
        return fingerprint
    for key, gone in _DROPPED.items():
        if isinstance(fp.get(key), dict) and any(g in fp[key] for g in gone):
            fp[key] = {k: v for k, v in fp[key].items() if k not in gone}
            fingerprint = json.dumps(fp, sort_keys=True, default=str)
    return fingerprint


def _differences(before: str, now: str, width: int = 60) -> str:
    """Which settings of two run fingerprints (JSON) differ, in the user's terms: for each
    setting, the first differing entry with its old and new value (shortened); an input file
    by name when it changed since."""
    try:
        a, b = json.loads(before), json.loads(now)
    except (TypeError, ValueError):
        a = b = None
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return "its record is unreadable"

    parts = []
    for key in sorted(a.keys() | b.keys()):
        if key == "batch_size" and a.get("tiling") != b.get("tiling"):
            continue  # follows from an automatic window: the window says it
        if key == "files" and isinstance(a.get(key), list) and isinstance(b.get(key), list):
            old = {str(f[0]): f for f in a[key] if isinstance(f, list) and f}
            new = {str(f[0]): f for f in b[key] if isinstance(f, list) and f}
            changed = [p for p in new if p in old and old[p] != new[p]]
            if changed:
                parts.append(f"{changed[0]} changed since"
                             + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""))
            if set(old) != set(new):
                gone, added = sorted(set(old) - set(new)), sorted(set(new) - set(old))
                parts.append("inputs: " + "; ".join(
                    [f"{p} no longer given" for p in gone[:2]]
                    + [f"{p} added" for p in added[:2]]))
            continue
        if key == "frames" and isinstance(a.get(key), list) and isinstance(b.get(key), list) \
                and len(a[key]) != len(b[key]):  # whole lists, shortened, would say nothing
            parts.append(f"{_SETTINGS[key]}: was {len(a[key])} date(s), now {len(b[key])}")
            continue
        if key == "layout" and a.get(key) != b.get(key):
            if _placed_otherwise(a, b):  # else the tiling, grid or column width says it
                parts.append(f"{_SETTINGS[key]}: " + (
                    "not recorded by the older zoomsr that saved it" if key not in a else
                    "another version of zoomsr placed the windows or column strips otherwise"))
            continue
        if key == "tiling" and a.get(key) != b.get(key):
            def px(t: Any) -> str:
                return "/".join(map(str, t)) + " px" if isinstance(t, list) else shortened(t, width)

            parts.append(f"{_SETTINGS[key]}: was {px(a.get(key))}, now {px(b.get(key))}")
            continue
        found = first_difference(a.get(key), b.get(key), key)
        if found:
            path, x, y = found
            label = _SETTINGS.get(key, key)
            detail = path[len(key):].lstrip(".")
            setting = detail.removeprefix("sampling.")
            if key == "model" and setting != detail and setting in SAMPLING_OPTIONS:
                label, detail = SAMPLING_OPTIONS[setting], ""  # named as on the command line
            if key == "autocast":  # the option's own values, not the flag it sets
                parts.append(f"{label}: was {'bf16' if x else 'fp32'}, now "
                             f"{'bf16' if y else 'fp32'}")
                continue
            parts.append(f"{label}{f' ({detail})' if detail else ''}: was {shortened(x, width)}, "
                         f"now {shortened(y, width)}")
    # once each (--seed is in the model's sampling record and the run's own)
    return "; ".join(dict.fromkeys(parts)) or "its record differs"


def _placed_otherwise(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two run fingerprints of the same tiling, grid and column width place the
    windows otherwise (a run saved by another zoomsr): no inputs or options continue it."""
    return a.get("layout") != b.get("layout") and all(a.get(k) == b.get(k)
                                                      for k in _LAYOUT_FROM)


def _layout_differs(before: str, now: str) -> bool:
    """:func:`_placed_otherwise` of two fingerprints as saved (JSON)."""
    try:
        a, b = json.loads(before), json.loads(now)
    except (TypeError, ValueError):
        return False
    return isinstance(a, dict) and isinstance(b, dict) and _placed_otherwise(a, b)


class PartialRun:
    """The partial-run folder of one output: raw rasters + ``state.npz``."""

    def __init__(self, output: Path, fingerprint: dict[str, Any]) -> None:
        self.output = output
        self.dir = partial_dir(output)
        self.fingerprint = _without_dropped(json.dumps(fingerprint, sort_keys=True,
                                                       default=str))

    def raw(self, name: str, width: int, height: int, bands: int) -> RawRaster:
        return RawRaster(self.dir / f"{name}.raw", width, height, bands)

    def start(self, rasters: list[RawRaster], resume: bool,
              overwrite: bool = False) -> dict[str, Any] | None:
        """Prepare the folder; return the saved state when resuming a matching run.

        An interrupted run's progress is never dropped silently: without ``resume`` it is
        refused unless ``overwrite``.
        """
        state_path = self.dir / STATE_FILE
        if resume and state_path.is_file():
            state = self.load()
            state["fingerprint"] = _without_dropped(state["fingerprint"])
            if state["fingerprint"] != self.fingerprint:
                why = _differences(state["fingerprint"], self.fingerprint)
                if _layout_differs(state["fingerprint"], self.fingerprint):
                    raise InputError(
                        f"{self.output}: the interrupted run (in {self.dir.name}) was saved by "
                        f"another version of zoomsr ({why}); it cannot be continued: pass "
                        "--overwrite instead of --resume to start again")
                raise InputError(
                    f"{self.output}: the interrupted run (in {self.dir.name}) used other "
                    f"inputs or settings ({why}"
                    "); to continue it, give the inputs and options it had with --resume; or "
                    "pass --overwrite instead of --resume to start again"
                )
            if all(r.path.is_file() for r in rasters):
                for r in rasters:
                    r.check_size()
                return state
        elif state_path.is_file() and not overwrite:
            raise InputError(
                f"{self.output}: an interrupted run left its progress (in {self.dir.name}); "
                "pass --resume to continue it, or --overwrite to start again"
            )
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        try:
            for r in rasters:
                r.create()
        except BaseException:  # nothing to resume in it: not left behind
            self.remove()
            raise
        return None

    def load(self) -> dict[str, Any]:
        path = self.dir / STATE_FILE
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(str(arrays.pop("meta")))
        # an empty or cut file: EOFError (which the CLI took for a Ctrl-C), BadZipFile...
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: unreadable resume state ({first_line(exc) or 'empty'}); "
                            "pass --overwrite instead of --resume to start again") from None
        if not isinstance(meta, dict) or "fingerprint" not in meta:
            raise DataError(f"{path}: unreadable resume state (no record of the run); pass "
                            "--overwrite instead of --resume to start again")
        return {**meta, "arrays": arrays}

    def save(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        payload = {"meta": np.array(json.dumps({**meta, "fingerprint": self.fingerprint}))}
        payload.update(arrays)
        path = self.dir / STATE_FILE
        try:
            with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
                np.savez(f, **payload)
        except OSError as exc:  # a full disk: named (it was a bare "OSError: [Errno 28] ...")
            raise WriteError(f"{path}: cannot write ({exc.strerror or exc})") from None

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    @contextlib.contextmanager
    def removed_unless_saved(self) -> Iterator[None]:
        """Remove the folder if what runs inside stops (an error, Ctrl-C) before a state was
        ever saved in it: nothing there to resume, and a hidden folder the size of the
        output (sparse) would be left behind."""
        try:
            yield
        except BaseException:
            if not (self.dir / STATE_FILE).is_file():
                self.remove()
            raise


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


class _Abandoned(Exception):
    """Raised in the writer thread when the run stops before the output is complete."""


class GeoTIFFStream:
    """Writes the output GeoTIFF in a thread while the rows are still being computed.

    :meth:`rows_done` says how many raw rows of which chunk (``chunks``, as
    :func:`write_geotiff` takes them) are final; the thread compresses and writes each 256-row
    strip as soon as it is, so on a fast GPU the final GeoTIFF costs little after the last
    row. :meth:`finish` supplies the tags and waits for the atomic rename; :meth:`abandon` (an
    error, Ctrl-C) stops the thread and removes its temporary file. The bytes are those of
    :func:`write_geotiff`: the same calls, in the same order.
    """

    def __init__(self, raw: RawRaster, output: Path, **kwargs: Any) -> None:
        self.raw = raw
        self._last = len(kwargs.get("chunks") or [None]) - 1  # index of the last chunk
        self._cond = threading.Condition()
        self._ready = (0, 0)  # (chunk, rows): every earlier chunk is final, and these rows
        self._stop = False
        self._tags: dict[str, str] | None = None
        self._error: BaseException | None = None
        self._thread = WorkerThread(self._run, "zoomsr-geotiff", args=(output, kwargs))

    def start(self) -> None:
        """Start the writer thread. Call it inside the ``try`` whose ``except`` calls
        :meth:`abandon`, so that a Ctrl-C landing anywhere after the start stops it."""
        self._thread.start()

    def _run(self, output: Path, kwargs: dict[str, Any]) -> None:
        try:
            write_geotiff(self.raw, output, tags=self._wait_tags, wait_rows=self._wait_rows,
                          **kwargs)
        except _Abandoned:
            pass
        except BaseException as exc:  # handed to finish()
            self._error = exc

    def _wait_rows(self, rows: int, chunk: int) -> None:
        with self._cond:
            while not self._stop and self._ready < (chunk, rows):
                self._cond.wait()
            if self._stop:
                raise _Abandoned

    def _wait_tags(self) -> dict[str, str]:
        with self._cond:
            while not self._stop and self._tags is None:
                self._cond.wait()
            if self._stop or self._tags is None:
                raise _Abandoned
            return self._tags

    def rows_done(self, rows: int, chunk: int = 0) -> None:
        """Raw rows ``[0, rows)`` of ``chunk`` are final, and every earlier chunk is. Raises
        the writer's error, if it had one (e.g. a full disk), now rather than after the last
        row."""
        if self._error is not None:
            raise self._error
        with self._cond:
            self._ready = max(self._ready, (chunk, rows))
            self._cond.notify_all()

    def finish(self, tags: dict[str, str]) -> None:
        """All rows are final: write the tags, wait for the file to be renamed into place."""
        with self._cond:
            self._ready = (self._last, self.raw.height)
            self._tags = tags
            self._cond.notify_all()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop without an output (the temporary file is removed). A strip being compressed
        (or a COG conversion) finishes first; the file is then removed, not renamed."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        join_despite_interrupts([self._thread])


def write_preview(tif: Path, png: Path, max_side: int = 1024) -> None:
    """A downsampled RGB PNG of an output GeoTIFF (nodata black)."""
    from rasterio.enums import Resampling

    from zoomsr.io.png import write_png

    with rasterio.open(tif) as src:
        factor = max(1, -(-max(src.width, src.height) // max_side))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        rgb = src.read([1, 2, 3], out_shape=(3, *shape), resampling=Resampling.average)
    write_png(png, np.moveaxis(rgb, 0, -1))
