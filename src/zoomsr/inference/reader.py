"""Windowed reads of every frame on the target grid (reprojected on the fly, bilinear).

A raster already on the target lattice (same CRS, pixel size and integer pixel offset) is read
directly; any other (e.g. a 20 m band) is read through a GDAL ``WarpedVRT`` (bilinear; the
SCL's classes nearest). Only the requested window is read,
so memory does not grow with the scene. Datasets are opened lazily, once per process, which
also makes a reader cheap to send to Ray workers. The file values go to the model's device in
their own dtype and are scaled there (:meth:`SceneReader.read_strip`), so on a GPU the CPU
only decodes and warps.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import torch
from rasterio.dtypes import _gdal_typename
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from zoomsr.errors import DataError, first_line
from zoomsr.inference.arrays import (
    byte_offsets,
    from_bytes,
    send,
    staging_buffer,
    travel_dtype,
)
from zoomsr.inference.grid import SNAP_TOL_PX, TargetGrid, pixel_sides_in
from zoomsr.inference.inputs import Frame, to_band16, to_tci, valid_pixels
from zoomsr.inference.inputs.files import CLOUD_ROLES
from zoomsr.inference.inputs.radiometry import (
    Radiometry,
    can_hold_fills,
    check_values,
    holds_fill_values,
)
from zoomsr.inference.inputs.rasters import (
    gdal_messages_logged,
    own_mask,
    workers_available,
)
from zoomsr.io import geotiff
from zoomsr.stopping import wait_through_interrupts

#: Bounds of GDAL's block cache during a scene (bytes): see :func:`read_cache_bytes`.
MIN_CACHE_BYTES = 16 * 2**20
MAX_CACHE_BYTES = 2 * 2**30


#: SCL classes that make a pixel a poor choice: saturated/defective (1), cloud shadow (3),
#: cloud medium and high probability (8, 9), thin cirrus (10).
SCL_CLOUDY = (1, 3, 8, 9, 10)


def aligned_offsets(grid: TargetGrid, crs, t) -> tuple[int, int] | None:  # noqa: ANN001
    """(row, col) of ``grid``'s origin in a raster of ``crs`` and transform ``t`` when that
    raster is on the grid's lattice (same CRS and pixel size, whole-pixel offset): it is then
    read directly; else None (read through a WarpedVRT)."""
    g = grid.transform
    if crs != grid.crs or t.b or t.d:
        return None
    if not (math.isclose(t.a, g.a, rel_tol=1e-9) and math.isclose(t.e, g.e, rel_tol=1e-9)):
        return None
    col = (g.c - t.c) / t.a
    row = (g.f - t.f) / t.e
    if abs(col - round(col)) > SNAP_TOL_PX or abs(row - round(row)) > SNAP_TOL_PX:
        return None
    return round(row), round(col)


#: The files of a row are decoded by up to this many threads at once (GDAL decodes without
#: Python's lock): a row's 8 dates were decoded one after the other by its row thread, which
#: is what the first model call of a GPU run waited for.
READ_THREADS = 16

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _enter_gdal_env() -> None:
    # each pool thread keeps one environment for its life: GDAL's messages logged, as in
    # the row threads (gdal_messages_logged), without an Env made per read
    gdal_messages_logged().__enter__()


def read_pool() -> ThreadPoolExecutor | None:
    """The process's pool of threads decoding a row's files (None with one CPU)."""
    global _pool
    n = min(workers_available(), READ_THREADS)
    if n < 2:
        return None
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(n, thread_name_prefix="zoomsr-read",
                                       initializer=_enter_gdal_env)
        return _pool


def _forget_pool() -> None:  # a forked child has the pool's object, not its threads
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


@dataclass
class _Source:
    datasets: list  # one per file (DatasetReader or WarpedVRT)
    bands: list[list[int]]  # per dataset, the 1-based bands to read
    offsets: tuple[int, int] | None  # (row, col) of the target origin in the file when aligned
    width: int
    height: int
    dtype: str
    path: Path
    # per dataset: whether an internal mask or alpha band (GDAL's per-dataset mask) says
    # which pixels hold data; read with the values where the file is read directly (a warped
    # file is read through :func:`_masked_vrt`)
    masked: list[bool] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # per dataset, the file it reads


def _masked_vrt(ds, path: Path, bands: list[int], nodata: float | None) -> str:  # noqa: ANN001
    """A VRT (its XML, which GDAL opens as a dataset) of ``ds``'s ``bands`` in which the
    pixels its mask (internal mask or alpha band) masks out hold nodata: ``nodata``, else 0.

    What the warper is given for such a file: it is then warped as a file holding nodata
    there (its masked values neither read as data nor blended into their neighbours). GDAL's
    warper itself drops a per-dataset mask wherever the source window also holds a nodata
    pixel (a black swath edge), and a band subset (``vrt://...?bands=``) drops the alpha.
    Each band's source writes only where its mask is not 0 (``UseMaskBand``), as the
    aligned read zeroes where ``read_masks`` is 0.
    """
    w, h = ds.width, ds.height
    rect = f'xOff="0" yOff="0" xSize="{w}" ySize="{h}"'
    parts = [f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">']
    if ds.crs is not None:
        parts.append(f"<SRS>{escape(ds.crs.to_wkt())}</SRS>")
    parts.append(f"<GeoTransform>{', '.join(map(repr, ds.transform.to_gdal()))}</GeoTransform>")
    for i, b in enumerate(bands, 1):
        parts.append(f'<VRTRasterBand dataType="{_gdal_typename(ds.dtypes[b - 1])}" band="{i}">')
        if nodata is not None:  # what a masked pixel holds: the band's initial value
            parts.append(f"<NoDataValue>{float(nodata)!r}</NoDataValue>")
        parts.append(f'<ComplexSource><SourceFilename relativeToVRT="0">{escape(str(path))}'
                     f"</SourceFilename><SourceBand>{b}</SourceBand><SrcRect {rect}/>"
                     f"<DstRect {rect}/><UseMaskBand>true</UseMaskBand></ComplexSource>"
                     "</VRTRasterBand>")
    parts.append("</VRTDataset>")
    return "".join(parts)


def _close(src: _Source) -> None:
    """Close a source's datasets (and the files under warped ones)."""
    for ds in src.datasets:
        inner = getattr(ds, "src_dataset", None)
        ds.close()
        if inner is not None:
            inner.close()
    src.datasets.clear()


@dataclass
class SceneReader:
    """Reads frames on the target grid: ``[T, C, h, w]`` float32 model inputs (TCI / 255, then
    any extra bands / 8160), ``[T, h, w]`` validity and, where frames have an SCL, ``[T, h, w]``
    cloudy pixels."""

    frames: Sequence[Frame]
    grid: TargetGrid
    _sources: list[list[_Source]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        names = {tuple(a.name for a in f.extras) for f in self.frames}
        if len(names) > 1:
            raise DataError(f"frames carry different extra bands: {sorted(names)}")

    @property
    def channels(self) -> int:
        return 3 + (len(self.frames[0].extras) if self.frames else 0)

    def __getstate__(self) -> dict:
        return {"frames": list(self.frames), "grid": self.grid}

    def __setstate__(self, state: dict) -> None:
        self.frames = state["frames"]
        self.grid = state["grid"]
        self._sources = None

    def clone(self) -> SceneReader:
        """A reader of the same frames with its own datasets (one per thread)."""
        return SceneReader(list(self.frames), self.grid)

    def _source(self, paths: Sequence[Path], bands: list[list[int]], crs, transform, width: int,
                height: int, dtype: str, nodata: float | None,
                resampling: Resampling) -> _Source:
        offsets = aligned_offsets(self.grid, crs, transform)
        source = _Source([], [list(b) for b in bands], offsets, width, height, dtype,
                         Path(paths[0]))
        try:
            for k, path in enumerate(paths):
                try:
                    ds = rasterio.open(path)
                except rasterio.errors.RasterioIOError as exc:
                    raise DataError(f"{path}: cannot open ({exc})") from None
                with gdal_messages_logged():  # (the mask's flags may reload the directory)
                    source.masked.append(own_mask(ds, bands[k][0]))
                source.datasets.append(ds)
                source.files.append(Path(path))
                if offsets is None and source.masked[-1]:
                    # Warped with its mask: masked pixels hold nodata in what is warped (the
                    # bands read only, as below)
                    xml = _masked_vrt(ds, Path(path), bands[k], nodata)
                    ds.close()
                    try:
                        ds = rasterio.open(xml)
                    except rasterio.errors.RasterioIOError as exc:
                        raise DataError(f"{path}: cannot read with its mask "
                                        f"({first_line(exc)})") from None
                    source.datasets[-1] = ds
                    source.bands[k] = list(range(1, len(bands[k]) + 1))
                elif offsets is None and len(paths) == 1 and ds.count > len(bands[0]) \
                        and "?" not in str(path):
                    # Warp only the bands read: GDAL takes a 4th band of 8-bit data (NIR)
                    # for alpha, and the warper then blends by it (a black RGB edge with NIR
                    # came out 1..8).
                    ds.close()
                    ds = rasterio.open(f"vrt://{path}?bands={','.join(map(str, bands[0]))}")
                    source.datasets[-1] = ds
                    source.bands = [list(range(1, len(bands[0]) + 1))]
                if offsets is None:
                    # Without a declared nodata, black (every band 0) is nodata, as in
                    # valid_pixels: GDAL would otherwise blend it into its neighbours and
                    # nudge the 0s it keeps to 1 (the destination's nodata), making valid
                    # data of a swath edge (SAFE JP2s declare none). UNIFIED: a pixel is
                    # nodata only where all its bands are; per band for a file whose name
                    # kept it from the band subset above (its other bands would decide).
                    unified = ({"UNIFIED_SRC_NODATA": "YES"}
                               if nodata is None and ds.count <= 3 else {})
                    with gdal_messages_logged():  # not printed raw, as in _read_raw
                        source.datasets[-1] = WarpedVRT(
                            ds, crs=self.grid.crs, transform=self.grid.transform,
                            width=self.grid.width, height=self.grid.height,
                            resampling=resampling, nodata=0,
                            src_nodata=0 if nodata is None else nodata, **unified,
                        )
        except BaseException:
            _close(source)
            raise
        return source

    def _open(self) -> list[list[_Source]]:
        """Per frame: the RGB source, one per extra band, then the SCL's if any."""
        if self._sources is None:
            self._sources = sources = []  # filled as opened, so close() releases a partial set
            try:
                for f in self.frames:
                    bands = [list(f.bands)] if len(f.paths) == 1 else [[1]] * len(f.paths)
                    srcs = [self._source(f.paths, bands, f.crs, f.transform, f.width,
                                         f.height, f.dtype, f.nodata, Resampling.bilinear)]
                    sources.append(srcs)
                    for a in f.aux:
                        kind = (Resampling.nearest if a.name in CLOUD_ROLES
                                else Resampling.bilinear)
                        srcs.append(self._source([a.path], [a.read_bands], a.crs, a.transform,
                                                 a.width, a.height, a.dtype, a.nodata, kind))
            except BaseException:
                self.close()
                raise
        return self._sources

    def close(self) -> None:
        if self._sources is not None:
            for srcs in self._sources:
                for src in srcs:
                    _close(src)
            self._sources = None

    @staticmethod
    def _read_into(src: _Source, window: Window, out: np.ndarray) -> None:
        """``src``'s bands in ``window`` into ``out`` ``[n, h, w]`` (0 outside the file),
        decoded straight into it (no copy), converted when ``out``'s dtype differs."""

        def read(ds, bands: list[int], win: Window, into: np.ndarray) -> None:  # noqa: ANN001
            if into.dtype == np.dtype(ds.dtypes[bands[0] - 1]):
                ds.read(bands, window=win, out=into)
            else:  # float64, uint32, uint64: converted on the host (arrays.travel_dtype)
                into[...] = ds.read(bands, window=win)

        h, w = int(window.height), int(window.width)
        try:
            k = 0
            if src.offsets is None:
                # Warped: in column chunks on a fixed grid of the scene, each read whole. GDAL
                # warps a request with a transformer approximated over the request's extent,
                # so a pixel's value depended on the columns read with it: a scene run in
                # column strips differed from one run whole (tens of counts after the model,
                # and the nodata edge). The same chunks give the same pixels.
                c0 = int(window.col_off)
                step = _WARP_BLOCK[0]
                end = min(c0 + w, src.datasets[0].width)
                if end < c0 + w:  # beyond the grid (never asked by the pipeline): no data
                    out[:, :, max(end - c0, 0) :] = 0
                for a in range(c0 - c0 % step, end, step):
                    b = min(a + step, src.datasets[0].width)
                    lo, hi = max(a, c0), min(b, end)
                    chunk = Window(a, window.row_off, b - a, h)
                    k = 0
                    for ds, bands in zip(src.datasets, src.bands, strict=True):
                        part = np.empty((len(bands), h, b - a), dtype=out.dtype)
                        read(ds, bands, chunk, part)
                        out[k : k + len(bands), :, lo - c0 : hi - c0] = part[:, :, lo - a : hi - a]
                        k += len(bands)
                if len(src.datasets) > 1 and any(src.masked):
                    # A band file's masked pixels come out of the warp as its nodata (0) in
                    # its own channel only; black in every channel, as the direct read has
                    # them (the others' values would make the pixel data)
                    k = 0
                    for bands, masked in zip(src.bands, src.masked, strict=True):
                        if masked:
                            out[:, (out[k : k + len(bands)] == 0).all(0)] = 0
                        k += len(bands)
                return
            # Aligned: read the part inside the file, zeros (nodata) elsewhere.
            r0 = int(window.row_off) + src.offsets[0]
            c0 = int(window.col_off) + src.offsets[1]
            rr0, cc0 = max(r0, 0), max(c0, 0)
            rr1, cc1 = min(r0 + h, src.height), min(c0 + w, src.width)
            if (rr0, cc0, rr1, cc1) != (r0, c0, r0 + h, c0 + w):
                out[...] = 0
            if rr1 > rr0 and cc1 > cc0:
                inner = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
                region = out[:, rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0]
                for ds, b in zip(src.datasets, src.bands, strict=True):
                    read(ds, b, inner, region[k : k + len(b)])
                    k += len(b)
                for ds, b, masked in zip(src.datasets, src.bands, src.masked, strict=True):
                    if masked:  # masked out: black in every channel, so nodata
                        region[:, ds.read_masks(b[0], window=inner) == 0] = 0
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(f"{src.path}: read failed ({first_line(exc)})") from None

    def _read_raw(self, window: Window, device: torch.device) -> list[list[torch.Tensor]]:
        """Per frame, per source (RGB, extra bands, SCL): the raw values ``[n, h, w]`` in
        ``window``, on ``device``.

        Every file of the row is decoded into one host buffer, which goes to the device in
        one copy (pinned, asynchronous, for a GPU): no per-file copies or allocations.
        """
        h, w = int(window.height), int(window.width)
        sources = self._open()
        files = [src for srcs in sources for src in srcs]
        dtypes = [travel_dtype(src.dtype) for src in files]
        shapes = [(sum(len(b) for b in src.bands), h, w) for src in files]
        sizes = [math.prod(shape) * d.itemsize for shape, d in zip(shapes, dtypes, strict=True)]
        offsets, total = byte_offsets(sizes)
        host = staging_buffer(total, device)
        raw = host.numpy()
        jobs = [(src, raw[offset : offset + n].view(dtype).reshape(shape))
                for src, offset, n, dtype, shape in zip(files, offsets, sizes, dtypes, shapes,
                                                        strict=True)]
        pool = read_pool() if len(jobs) > 1 else None
        if pool is None:
            # in an Env: a dataset's first read may have GDAL say things again (a TIFF's
            # directory reloaded), logged then instead of printed raw (gdal_messages_logged)
            with gdal_messages_logged():
                for src, into in jobs:
                    self._read_into(src, window, into)
        else:
            # each file decoded into its own part of the buffer, by the pool's threads (each
            # dataset is this reader's: used by one thread at a time); every read ends before
            # the buffer is let go or an error raised, the first file's error first
            futures: list[Future] = []
            try:
                for src, into in jobs:  # one at a time: a submit that fails keeps the rest
                    futures.append(pool.submit(self._read_into, src, window, into))
                wait(futures)
            except BaseException:  # a Ctrl-C (or two) in this thread: none writes after
                for f in futures:
                    f.cancel()
                # the caller closes the datasets and lets the buffer go: the reads end first
                wait_through_interrupts(lambda: wait(futures))
                raise
            for f in futures:
                f.result()
        del raw, jobs  # nothing holds the host buffer but ``host``: reusable once copied
        there = send(host, device)
        views = iter([from_bytes(there, offset, dtype, shape)
                      for offset, dtype, shape in zip(offsets, dtypes, shapes, strict=True)])
        return [[next(views) for _ in srcs] for srcs in sources]

    def read_strip(self, window: Window, device: torch.device | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Frames ``[T, C, h, w]`` float32, validity ``[T, h, w]`` and cloudy ``[T, h, w]``, as
        tensors on ``device`` (default CPU).

        The file values travel to ``device`` in their own dtype (uint8 TCI: a quarter of the
        bytes of float32), all in one copy, and are scaled and checked there. A pixel is valid
        where the RGB and every extra band hold data. Cloudy (SCL classes :data:`SCL_CLOUDY`,
        or MSK_CLASSI's opaque and cirrus flags) is None when no frame has a cloud layer.
        """
        device = device or torch.device("cpu")
        h, w = int(window.height), int(window.width)
        n = len(self.frames)
        pixels = torch.zeros((n, self.channels, h, w), dtype=torch.float32, device=device)
        valid = torch.zeros((n, h, w), dtype=torch.bool, device=device)
        with_clouds = any(f.clouds is not None for f in self.frames)
        cloudy = torch.zeros((n, h, w), dtype=torch.bool, device=device) if with_clouds else None
        # Undeclared fill values (see check_values), looked for as the windows are read:
        # in the values read when the file is on the grid (a 0-d flag each, one sync a
        # strip), else in the file's own pixels under the window (a warped read blends a
        # fill with its neighbours: -9999 came out -7136, and -1.0 above the floor)
        fills: list[tuple] = []
        from_files: list[tuple] = []

        def watch(src: _Source, values: torch.Tensor, ok: torch.Tensor, radiometry: str,
                  nodata: float | None, dtype: str, band_paths: Sequence[Path]) -> None:
            if not can_hold_fills(radiometry, dtype):
                return
            if src.offsets is None:
                from_files.append((src, radiometry, nodata))
            else:
                fills.append((holds_fill_values(values, ok, radiometry), values, ok,
                              radiometry, nodata, band_paths, src.path))

        sources = self._open()
        for i, (frame, values) in enumerate(zip(self.frames, self._read_raw(window, device),
                                                strict=True)):
            raw = values[0]
            ok = valid_pixels(raw, frame.nodata, None)
            watch(sources[i][0], raw, ok, frame.radiometry, frame.nodata, frame.dtype,
                  frame.paths if len(frame.paths) == 3 else ())
            pixels[i, :3] = to_tci(raw, frame.radiometry, frame.dn_offset)
            for j, aux in enumerate(frame.extras):
                band = values[1 + j]
                band_ok = valid_pixels(band, aux.nodata, None)
                watch(sources[i][1 + j], band, band_ok, aux.radiometry, aux.nodata, aux.dtype,
                      ())
                ok &= band_ok
                pixels[i, 3 + j] = to_band16(band[0], aux.radiometry, aux.dn_offset)
            pixels[i] = torch.where(ok, pixels[i], 0.0)  # NaN-safe (float inputs)
            valid[i] = ok
            if frame.clouds is not None and cloudy is not None:
                layer = values[-1]
                if frame.clouds.name == "scl":
                    for c in SCL_CLOUDY:
                        cloudy[i] |= layer[0] == c
                else:  # MSK_CLASSI: opaque or cirrus flagged
                    cloudy[i] |= (layer != 0).any(0)
                cloudy[i] &= ok
        if fills and bool(torch.stack([f[0] for f in fills]).any()):  # one sync a strip
            for hit, raw, ok, radiometry, nodata, band_paths, path in fills:
                if bool(hit):  # the values discovery's preview did not sample: refused alike
                    sample = raw.cpu().numpy()
                    sample = np.where(ok.cpu().numpy()[None], sample, 0)  # black: not looked at
                    check_values(path, sample, radiometry, radiometry, nodata, band_paths)
        for src, radiometry, nodata in from_files:
            _check_file_values(src, window, self.grid, radiometry, nodata)
        return pixels, valid, cloudy

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`read_strip` on the CPU, as NumPy arrays."""
        pixels, valid, cloudy = self.read_strip(window)
        return pixels.numpy(), valid.numpy(), None if cloudy is None else cloudy.numpy()


#: GDAL's default WarpedVRT block (columns, rows): a warped read caches whole such blocks.
_WARP_BLOCK = (512, 128)


def _check_file_values(src: _Source, window: Window, grid: TargetGrid, radiometry: Radiometry,
                       nodata: float | None) -> None:
    """:func:`check_values` on the pixels of each of ``src``'s files under the grid's
    ``window`` (with a pixel's margin for the bilinear warp), read as they are stored."""
    from rasterio.warp import transform_bounds
    from rasterio.windows import from_bounds

    t = grid.transform  # a north-up grid
    box = (t.c + window.col_off * t.a, t.f + (window.row_off + window.height) * t.e,
           t.c + (window.col_off + window.width) * t.a, t.f + window.row_off * t.e)
    for k, (ds, bands) in enumerate(zip(src.datasets, src.bands, strict=True)):
        file = getattr(ds, "src_dataset", ds)
        left, bottom, right, top = transform_bounds(grid.crs, file.crs, *box, densify_pts=21)
        w = from_bounds(left, bottom, right, top, transform=file.transform)
        col0, row0 = max(0, math.floor(w.col_off) - 1), max(0, math.floor(w.row_off) - 1)
        col1 = min(file.width, math.ceil(w.col_off + w.width) + 1)
        row1 = min(file.height, math.ceil(w.row_off + w.height) + 1)
        if col1 <= col0 or row1 <= row0:
            continue  # the window is beyond this file
        sample = file.read(bands, window=Window(col0, row0, col1 - col0, row1 - row0))
        # a band subset (vrt://PATH?bands=...) or a masked file's VRT is named by its file
        name = src.path if len(src.datasets) == 1 else src.files[k]
        check_values(name, sample, radiometry, radiometry, nodata)


def _grid_px_per_file_px(ds, grid: TargetGrid) -> tuple[float, float]:  # noqa: ANN001
    """File pixels per grid pixel (rows, columns), from the file's centre pixel in the grid's
    CRS."""
    along_row, along_col = pixel_sides_in(ds, grid.crs)
    return abs(grid.transform.e) / along_col, abs(grid.transform.a) / along_row


def read_cache_bytes(frames: Sequence[Frame], grid: TargetGrid, window: int, strip: int,
                     readers: int, out_row_bytes: int = 0, stride: int | None = None) -> int:
    """A GDAL block-cache size (bytes) that holds what the rows in flight read again, and no
    more.

    Per input file: the block rows that ``window`` grid rows span, plus one (a window row
    rarely starts on a block boundary, and the next one reads the last of them again), across
    the blocks of ``strip`` grid columns (the columns a row of windows reads), every band; per
    file read through a WarpedVRT, also the VRT's own blocks over the window. Times
    ``readers``, the readers reading at once (each row thread opens its own datasets, and GDAL
    keeps decoded blocks per dataset: rows in flight in different threads share none, even
    where they overlap; 0 when nothing is read here).

    With several readers and the rows' ``stride`` (grid px) given, a file counts so only where
    its block rows are at least two strides tall (e.g. a COG's 1024-row blocks at 256 px
    windows): row threads take rows in turn, so a reader's next row mostly starts ``readers``
    strides further down, past a shorter block row, and keeping those blocks would only
    make memory grow with the width (measured with ``benchmarks/infer_host_memory.py``: 256-row
    blocks decode in the same CPU time with GDAL's minimum cache). Such files count one block
    row (and one VRT block row) across the strip, for the file each reader is reading: what
    one read walks across (a warped read visits a source block row for each VRT block row).

    Plus ``out_row_bytes`` x :data:`zoomsr.io.geotiff.STRIP` for the output strip being
    compressed; clamped to [:data:`MIN_CACHE_BYTES`, :data:`MAX_CACHE_BYTES`]. A smaller
    cache decodes blocks again for each window row (a COG's 1024-row blocks up to 4 times at
    256 px windows); a larger one only holds blocks no row needs again, so peak memory would
    grow with the scene.
    """
    kept = 0  # per reader: files whose blocks a later row of the same reader reads again
    passing = 0  # per reader: the largest one-block-row working set of the other files
    for frame in frames if readers > 0 else ():
        for path in frame.files:
            try:
                ds = rasterio.open(path)
            except rasterio.errors.RasterioIOError as exc:
                raise DataError(f"{path}: cannot open ({first_line(exc)})") from None
            with ds:
                bh, bw = ds.block_shapes[0]
                size = ds.count * np.dtype(ds.dtypes[0]).itemsize
                fy, fx = _grid_px_per_file_px(ds, grid)
                warped = aligned_offsets(grid, ds.crs, ds.transform) is None
                cols = min(ds.width, (math.ceil(strip * fx / bw) + 1) * bw)
                vw, vh = _WARP_BLOCK
                vcols = min(grid.width, (math.ceil(strip / vw) + 1) * vw)
                if readers > 1 and stride is not None and bh / fy < 2 * stride:
                    passing = max(passing, (min(ds.height, bh) * cols
                                            + (vh * vcols if warped else 0)) * size)
                    continue
                rows = min(ds.height, (math.ceil(window * fy / bh) + 1) * bh)
                kept += rows * cols * size
                if warped:
                    kept += (math.ceil(window / vh) + 1) * vh * vcols * size
    total = (kept + passing) * readers + out_row_bytes * geotiff.STRIP
    return int(min(max(total, MIN_CACHE_BYTES), MAX_CACHE_BYTES))

