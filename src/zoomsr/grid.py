"""The zoom-17 Web-Mercator tile grid of the S2-NAIP dataset.

A tile ``{col}_{row}`` is one cell of the 2^17 x 2^17 XYZ grid (origin top-left, rows grow
southwards). Each tile is 305.75 m wide in EPSG:3857 and holds a 32 px Sentinel-2 chunk
(9.555 m pixels) and a 128 px NAIP chunk (2.389 m pixels). Tile maths is delegated to mercantile.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import mercantile
from affine import Affine
from rasterio.coords import BoundingBox

from zoomsr.errors import InputError

ZOOM = 17
N_TILES = 2**ZOOM
#: Half the width of the Web-Mercator world in metres (WGS84 semi-major axis * pi).
ORIGIN_SHIFT = math.pi * 6378137.0
#: Width of one zoom-17 tile in EPSG:3857 metres (~305.75 m).
TILE_SIZE_M = 2 * ORIGIN_SHIFT / N_TILES
LR_PIXELS = 32
HR_PIXELS = 128
#: Sentinel-2 pixel size on the training grid, EPSG:3857 metres (~9.555 m).
LR_RESOLUTION = TILE_SIZE_M / LR_PIXELS
#: NAIP pixel size on the training grid, EPSG:3857 metres (~2.389 m).
HR_RESOLUTION = TILE_SIZE_M / HR_PIXELS
CRS = "EPSG:3857"

_TILE_RE = re.compile(r"^(\d+)_(\d+)$")


@dataclass(frozen=True, order=True)
class Tile:
    """A zoom-17 tile, named ``{col}_{row}`` in the dataset's folder names."""

    col: int
    row: int

    def __post_init__(self) -> None:
        if not (0 <= self.col < N_TILES and 0 <= self.row < N_TILES):
            raise InputError(
                f"tile {self.col}_{self.row} is outside the zoom-{ZOOM} grid "
                f"(col and row must be in 0..{N_TILES - 1})"
            )

    @classmethod
    def parse(cls, name: str) -> Tile:
        """Parse ``"12345_67890"``; raises :class:`InputError` on anything else, leading
        zeros included (``"0012_0034"`` would not pair with the dataset's ``12_34``)."""
        match = _TILE_RE.match(name.strip())
        if match is None:
            raise InputError(
                f"not a tile id: {name!r} (expected '{{col}}_{{row}}', e.g. '12345_67890')"
            )
        tile = cls(int(match.group(1)), int(match.group(2)))
        if str(tile) != name.strip():
            raise InputError(f"not a tile id: {name!r} (no leading zeros: the dataset names "
                             f"that tile '{tile}')")
        return tile

    def __str__(self) -> str:
        return f"{self.col}_{self.row}"

    @property
    def _mercantile(self) -> mercantile.Tile:
        return mercantile.Tile(self.col, self.row, ZOOM)

    @property
    def bounds(self) -> BoundingBox:
        """Bounds in EPSG:3857 metres (left, bottom, right, top)."""
        b = mercantile.xy_bounds(self._mercantile)
        return BoundingBox(b.left, b.bottom, b.right, b.top)

    @property
    def lonlat_bounds(self) -> BoundingBox:
        """Bounds in degrees (west, south, east, north), EPSG:4326."""
        b = mercantile.bounds(self._mercantile)
        return BoundingBox(b.west, b.south, b.east, b.north)

    @property
    def center_lonlat(self) -> tuple[float, float]:
        """Centre (lon, lat) in degrees, computed in projected space so it is the pixel centre."""
        b = self.bounds
        return mercantile.lnglat((b.left + b.right) / 2, (b.bottom + b.top) / 2)

    def transform(self, pixels: int) -> Affine:
        """Affine transform (EPSG:3857) of this tile rendered at ``pixels`` x ``pixels``."""
        if pixels <= 0:
            raise InputError(f"pixels must be positive, got {pixels}")
        b = self.bounds
        res = (b.right - b.left) / pixels
        return Affine(res, 0.0, b.left, 0.0, -res, b.top)

    @property
    def lr_transform(self) -> Affine:
        """Transform of the 32 px Sentinel-2 chunk (9.555 m pixels)."""
        return self.transform(LR_PIXELS)

    @property
    def hr_transform(self) -> Affine:
        """Transform of the 128 px NAIP chunk (2.389 m pixels)."""
        return self.transform(HR_PIXELS)


def tile_for_lonlat(lon: float, lat: float) -> Tile:
    """The tile containing a point given in degrees."""
    t = mercantile.tile(lon, lat, ZOOM)
    return Tile(t.x, t.y)


def tile_for_xy(x: float, y: float) -> Tile:
    """The tile containing a point given in EPSG:3857 metres."""
    col = math.floor((x + ORIGIN_SHIFT) / TILE_SIZE_M)
    row = math.floor((ORIGIN_SHIFT - y) / TILE_SIZE_M)
    return Tile(min(max(col, 0), N_TILES - 1), min(max(row, 0), N_TILES - 1))


def tiles_for_lonlat_bounds(west: float, south: float, east: float, north: float) -> list[Tile]:
    """All tiles intersecting a lon/lat box (degrees), in row-major order."""
    if not (west < east and south < north):
        raise InputError(f"empty or inverted bounding box: {(west, south, east, north)}")
    return sorted(
        (Tile(t.x, t.y) for t in mercantile.tiles(west, south, east, north, zooms=ZOOM)),
        key=lambda t: (t.row, t.col),
    )


def tiles_for_bounds(left: float, bottom: float, right: float, top: float) -> list[Tile]:
    """All tiles intersecting a box in EPSG:3857 metres, in row-major order.

    A box edge that falls exactly on a tile edge does not pull in the neighbouring tile.
    """
    if not (left < right and bottom < top):
        raise InputError(f"empty or inverted bounding box: {(left, bottom, right, top)}")
    # Edges within a micrometre of a tile edge count as on it (floating-point noise).
    eps = 1e-6 * TILE_SIZE_M
    first = tile_for_xy(left + eps, top - eps)
    last = tile_for_xy(right - eps, bottom + eps)
    rows = range(first.row, last.row + 1)
    cols = range(first.col, last.col + 1)
    return [Tile(c, r) for r in rows for c in cols]


def iter_neighbourhood(tile: Tile, radius: int = 1) -> Iterator[Tile]:
    """Tiles within ``radius`` tiles (Chebyshev distance) of ``tile``, the tile itself included."""
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            c, r = tile.col + dc, tile.row + dr
            if 0 <= c < N_TILES and 0 <= r < N_TILES:
                yield Tile(c, r)


#: Mean Earth radius (IUGG), metres: ground distances by the haversine formula.
EARTH_RADIUS_M = 6371008.8


def centre_pixel_in(raster: object, crs: object) -> tuple[list[float], list[float]]:
    """x and y in ``crs`` of the centre of ``raster`` (anything with ``crs``, ``transform``,
    ``width`` and ``height``: an open rasterio dataset, a frame) and of one pixel east and one
    south of it."""
    from rasterio.warp import transform

    t = raster.transform  # type: ignore[attr-defined]
    cx, cy = raster.width / 2, raster.height / 2  # type: ignore[attr-defined]
    pts = [t @ (cx, cy), t @ (cx + 1, cy), t @ (cx, cy + 1)]
    return transform(raster.crs, crs, [p[0] for p in pts],  # type: ignore[attr-defined]
                     [p[1] for p in pts])


def ground_pixel_m(raster: object) -> tuple[float, float]:
    """The ground width and height, metres, of the centre pixel of ``raster`` (as for
    :func:`centre_pixel_in`), by great-circle distances, so any CRS works (degrees too)."""
    lons, lats = centre_pixel_in(raster, "EPSG:4326")

    def metres(i: int) -> float:
        p1, p2 = math.radians(lats[0]), math.radians(lats[i])
        dl = math.radians(lons[i] - lons[0])
        h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(h, 1.0)))

    return metres(1), metres(2)
