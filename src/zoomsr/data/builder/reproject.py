"""Reprojecting rasters onto the zoom-17 Web-Mercator tile grid, one block of tiles at a time.

A :class:`GridWindow` is a rectangle of whole zoom-17 tiles rendered at ``pixels`` per tile
(32 for Sentinel-2: 9.555 m; 128 for NAIP: 2.389 m). Its affine transform is snapped to tile
edges, so every tile's chunk is a plain array slice of the block: each source is warped once
per block (GDAL's warper through :func:`rasterio.warp.reproject`, reading only the source
blocks it needs), never once per tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject

from zoomsr.data.builder.rasters import RASTER_ERRORS, gdal_reason, is_remote
from zoomsr.errors import DataError
from zoomsr.grid import CRS, ORIGIN_SHIFT, TILE_SIZE_M, Tile
from zoomsr.validate import check_choice

RESAMPLING = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear,
              "cubic": Resampling.cubic, "average": Resampling.average,
              "lanczos": Resampling.lanczos}


def resampling(name: str) -> Resampling:
    """The rasterio resampling method called ``name`` (nearest, bilinear, cubic, average...)."""
    return RESAMPLING[check_choice("resampling", name, RESAMPLING)]


@dataclass(frozen=True)
class GridWindow:
    """``cols`` x ``rows`` zoom-17 tiles from tile (``col0``, ``row0``), ``pixels`` px per tile."""

    col0: int
    row0: int
    cols: int
    rows: int
    pixels: int

    @classmethod
    def around(cls, tiles: Sequence[Tile], pixels: int) -> GridWindow:
        """The smallest window holding every tile in ``tiles``."""
        if not tiles:
            raise ValueError("no tiles")
        cols = [t.col for t in tiles]
        rows = [t.row for t in tiles]
        return cls(min(cols), min(rows), max(cols) - min(cols) + 1, max(rows) - min(rows) + 1,
                   pixels)

    @property
    def resolution(self) -> float:
        """Pixel size in EPSG:3857 metres."""
        return TILE_SIZE_M / self.pixels

    @property
    def transform(self) -> Affine:
        """EPSG:3857 affine transform; its origin is the top-left corner of tile (col0, row0)."""
        left = -ORIGIN_SHIFT + self.col0 * TILE_SIZE_M
        top = ORIGIN_SHIFT - self.row0 * TILE_SIZE_M
        return Affine(self.resolution, 0.0, left, 0.0, -self.resolution, top)

    @property
    def width(self) -> int:
        return self.cols * self.pixels

    @property
    def height(self) -> int:
        return self.rows * self.pixels

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in EPSG:3857 metres."""
        t = self.transform
        return t.c, t.f - self.rows * TILE_SIZE_M, t.c + self.cols * TILE_SIZE_M, t.f

    def contains(self, tile: Tile) -> bool:
        return (self.col0 <= tile.col < self.col0 + self.cols
                and self.row0 <= tile.row < self.row0 + self.rows)

    def slices(self, tile: Tile) -> tuple[slice, slice]:
        """(row slice, column slice) of ``tile``'s chunk in a block array ``[..., H, W]``."""
        if not self.contains(tile):
            raise ValueError(f"tile {tile} is outside {self}")
        r = (tile.row - self.row0) * self.pixels
        c = (tile.col - self.col0) * self.pixels
        return slice(r, r + self.pixels), slice(c, c + self.pixels)

    def chunk(self, array: np.ndarray, tile: Tile) -> np.ndarray:
        """``tile``'s ``[..., pixels, pixels]`` chunk of a block array ``[..., H, W]`` (a view)."""
        rows, cols = self.slices(tile)
        return array[..., rows, cols]


def warp(
    path: str,
    grid: GridWindow,
    method: Resampling = Resampling.bilinear,
    indexes: Sequence[int] | None = None,
    src_nodata: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp bands of ``path`` onto ``grid``.

    Args:
        path: raster file or URL (any CRS).
        grid: target window of the tile grid (EPSG:3857).
        method: resampling (bilinear for imagery, nearest for class maps such as SCL).
        indexes: 1-based bands to read (default all).
        src_nodata: value marking invalid source pixels when the file declares none
            (the file's own nodata value wins; its mask and alpha band count as well).

    Returns:
        ``data`` ``[C, H, W]`` in the file's dtype (0 where invalid) and ``valid``
        ``[H, W]`` bool: inside the source and not nodata/masked there.

    Raises :class:`DataError` naming ``path`` when it cannot be opened or read.
    """
    try:
        with rasterio.open(path) as src:
            nodata = src.nodata if src.nodata is not None else src_nodata
            bands = list(indexes) if indexes is not None else list(range(1, src.count + 1))
            if max(bands) > src.count:
                raise DataError(f"{path}: needs band {max(bands)}, the file has {src.count}")
            # GDAL's alpha band marks exactly the target pixels that valid source data covers:
            # the source's own alpha if it has one (e.g. RGBA), else one the warper writes.
            alpha = [k + 1 for k, ci in enumerate(src.colorinterp) if ci == ColorInterp.alpha]
            if alpha:
                # nodata=None: the VRT's default, the source's nodata, would be the initial
                # value of every band, alpha included, where the warper finds no valid source
                # pixel (outside the image, or all nodata): with nodata 255, opaque there.
                with WarpedVRT(src, crs=CRS, transform=grid.transform, width=grid.width,
                               height=grid.height, resampling=method, src_nodata=nodata,
                               nodata=None, warp_mem_limit=256) as vrt:
                    data = vrt.read(bands + alpha[:1])
            else:
                # Warping only the wanted bands (not all of an RGBN file) saves ~40 %.
                data = np.zeros((len(bands) + 1, grid.height, grid.width), src.dtypes[0])
                reproject(rasterio.band(src, bands), data, src_nodata=nodata,
                          dst_transform=grid.transform, dst_crs=CRS, resampling=method,
                          dst_alpha=len(bands) + 1, init_dest_nodata=True, warp_mem_limit=256)
            masked = _warp_mask(src, grid, method) if _has_mask(src) else None
    except RASTER_ERRORS as exc:
        if not is_remote(str(path)) and not Path(path).exists():
            # read when the build was planned: moved or deleted since
            raise DataError(f"{path}: file not found (it was there when the build "
                            "started)") from None
        # Any GDAL read or warp failure (e.g. "Chunk and warp failed" on a damaged tile) names
        # the file and GDAL's own reason, not rasterio's.
        raise DataError(f"{path}: cannot read raster, the file may be damaged or truncated "
                        f"({gdal_reason(exc)})") from None
    valid = data[-1] > 0
    if masked is not None:
        valid &= masked
    data = data[:-1]
    data[:, ~valid] = 0
    return data, valid


def _has_mask(src: rasterio.DatasetReader) -> bool:
    """Whether ``src`` has a mask of its own (GDAL's internal or ``.msk`` mask, e.g. the collar
    of a JPEG-compressed COG), as opposed to one derived from nodata or an alpha band."""
    flags = src.mask_flag_enums[0] if src.count else []
    return MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags


def _warp_mask(src: rasterio.DatasetReader, grid: GridWindow, method: Resampling) -> np.ndarray:
    """Where ``src``'s own mask is valid on ``grid``: every source pixel a target pixel is
    interpolated from is unmasked.

    GDAL's warper ignores this mask once a nodata value or an alpha band is given, so the
    mask is warped on its own: a VRT band reading it (``mask,1``), resampled like the data.
    Only fully valid target pixels count (255), so that none mixes in masked values.
    """
    vrt = (f'<VRTDataset rasterXSize="{src.width}" rasterYSize="{src.height}">'
           f"<SRS>{escape(src.crs.to_wkt())}</SRS>"
           f"<GeoTransform>{', '.join(repr(v) for v in src.transform.to_gdal())}</GeoTransform>"
           '<VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
           f'<SourceFilename relativeToVRT="0">{escape(src.files[0] if src.files else src.name)}'
           "</SourceFilename><SourceBand>mask,1</SourceBand>"
           f'<SrcRect xOff="0" yOff="0" xSize="{src.width}" ySize="{src.height}"/>'
           f'<DstRect xOff="0" yOff="0" xSize="{src.width}" ySize="{src.height}"/>'
           "</SimpleSource></VRTRasterBand></VRTDataset>")
    out = np.zeros((2, grid.height, grid.width), np.uint8)
    with rasterio.open(vrt) as mask:
        reproject(rasterio.band(mask, 1), out, dst_nodata=0, dst_transform=grid.transform,
                  dst_crs=CRS, resampling=method, dst_alpha=2, init_dest_nodata=True,
                  warp_mem_limit=256)
    return (out[0] == 255) & (out[1] > 0)


__all__ = ["GridWindow", "RESAMPLING", "resampling", "warp"]
