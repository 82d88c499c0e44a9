"""Windowed reads of every frame on the target grid (reprojected on the fly, bilinear).

A frame already on the target lattice (same CRS, pixel size and integer pixel offset) is read
directly; any other is read through a GDAL ``WarpedVRT``. Only the requested window is read,
so memory does not grow with the scene. Datasets are opened lazily, once per process, which
also makes a reader cheap to send to Ray workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from zoomsr.errors import DataError
from zoomsr.inference.grid import TargetGrid
from zoomsr.inference.inputs import Frame, to_tci, valid_pixels

#: GDAL block cache for reads (MB): bounded so memory does not grow with the scene.
GDAL_CACHE_MB = 64


@dataclass
class _Source:
    datasets: list  # one per file of the frame (DatasetReader or WarpedVRT)
    offsets: tuple[int, int] | None  # (row, col) of the target origin in the file when aligned


@dataclass
class SceneReader:
    """Reads ``[T, 3, h, w]`` float32 frames (TCI / 255) and ``[T, h, w]`` validity."""

    frames: Sequence[Frame]
    grid: TargetGrid
    _sources: list[_Source] | None = field(default=None, repr=False)
    _env: rasterio.Env | None = field(default=None, repr=False)

    def __getstate__(self) -> dict:
        return {"frames": list(self.frames), "grid": self.grid}

    def __setstate__(self, state: dict) -> None:
        self.frames = state["frames"]
        self.grid = state["grid"]
        self._sources = None
        self._env = None

    def clone(self) -> SceneReader:
        """A reader of the same frames with its own datasets (one per thread)."""
        return SceneReader(list(self.frames), self.grid)

    def _aligned(self, frame: Frame) -> tuple[int, int] | None:
        g, t = self.grid.transform, frame.transform
        if frame.crs != self.grid.crs or t.b or t.d:
            return None
        if not (math.isclose(t.a, g.a, rel_tol=1e-9) and math.isclose(t.e, g.e, rel_tol=1e-9)):
            return None
        col = (g.c - t.c) / t.a
        row = (g.f - t.f) / t.e
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            return None
        return round(row), round(col)

    def _open(self) -> list[_Source]:
        if self._sources is None:
            self._env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)
            self._env.__enter__()
            sources = []
            for frame in self.frames:
                offsets = self._aligned(frame)
                datasets = []
                for path in frame.paths:
                    try:
                        ds = rasterio.open(path)
                    except rasterio.errors.RasterioIOError as exc:
                        raise DataError(f"{path}: cannot open ({exc})") from None
                    if offsets is None:
                        ds = WarpedVRT(
                            ds,
                            crs=self.grid.crs,
                            transform=self.grid.transform,
                            width=self.grid.width,
                            height=self.grid.height,
                            resampling=Resampling.bilinear,
                            src_nodata=frame.nodata,
                            nodata=0,
                        )
                    datasets.append(ds)
                sources.append(_Source(datasets, offsets))
            self._sources = sources
        return self._sources

    def close(self) -> None:
        if self._sources is not None:
            for src in self._sources:
                for ds in src.datasets:
                    inner = getattr(ds, "src_dataset", None)
                    ds.close()
                    if inner is not None:
                        inner.close()
            self._sources = None
        if self._env is not None:
            self._env.__exit__(None, None, None)
            self._env = None

    def _read_raw(self, index: int, window: Window) -> np.ndarray:
        frame = self.frames[index]
        src = self._open()[index]
        h, w = int(window.height), int(window.width)
        bands = frame.bands if len(frame.paths) == 1 else (1,)
        try:
            if src.offsets is None:
                parts = [
                    ds.read(list(bands) if len(frame.paths) == 1 else 1, window=window)
                    for ds in src.datasets
                ]
                return parts[0] if len(frame.paths) == 1 else np.stack(parts)
            # Aligned: read the part inside the file, zeros (nodata) elsewhere.
            r0 = int(window.row_off) + src.offsets[0]
            c0 = int(window.col_off) + src.offsets[1]
            out = np.zeros((3, h, w), dtype=frame.dtype)
            rr0, cc0 = max(r0, 0), max(c0, 0)
            rr1, cc1 = min(r0 + h, frame.height), min(c0 + w, frame.width)
            if rr1 > rr0 and cc1 > cc0:
                inner = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
                if len(frame.paths) == 1:
                    data = src.datasets[0].read(list(bands), window=inner)
                else:
                    data = np.stack([ds.read(1, window=inner) for ds in src.datasets])
                out[:, rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = data
            return out
        except rasterio.errors.RasterioIOError as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{frame.paths[0]}: read failed ({msg})") from None

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``[T, 3, h, w]`` float32 (TCI / 255) and validity ``[T, h, w]`` bool."""
        h, w = int(window.height), int(window.width)
        n = len(self.frames)
        pixels = np.zeros((n, 3, h, w), dtype=np.float32)
        valid = np.zeros((n, h, w), dtype=bool)
        for i, frame in enumerate(self.frames):
            raw = self._read_raw(i, window)
            valid[i] = valid_pixels(raw, frame.nodata, None)
            pixels[i] = np.where(valid[i], to_tci(raw, frame.radiometry, frame.dn_offset), 0.0)
        return pixels, valid
