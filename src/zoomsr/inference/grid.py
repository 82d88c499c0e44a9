"""The target grid of a scene: where the LR mosaic and the super-resolved output live.

Default: the training grid, EPSG:3857 at 9.555 m (zoom-17 Web-Mercator tiles of 32 px), snapped
to the tile pixel lattice so outputs line up with S2-NAIP tiles. ``native=True``: the CRS,
pixel size and pixel lattice of the first input. The extent is the union of the inputs'
footprints; every input must overlap the others (an isolated input is an error naming it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from zoomsr import grid as tiles
from zoomsr.errors import DataError, InputError, ZoomsrWarning
from zoomsr.inference.inputs import Frame

#: Edges closer than this fraction of a pixel to a lattice line count as on it, and a raster
#: this close to the grid's lattice is read directly (not resampled): float noise, and grids
#: built from rounded constants (Web Mercator's half-extent as 20037508.343 m is up to 2e-5 px off
#: the exact lattice) stay on it; 1e-3 px is 1 cm at 9.555 m.
SNAP_TOL_PX = 1e-3
#: Coarsest input pixel (ground metres) resampled onto the training grid: Sentinel-2's RGB is
#: 10 m; 20 m products (an L2A's TCI_20m) still make sense, coarser ones mean another sensor
#: or a preview, and would be blown up into a job many times the area's worth.
MAX_INPUT_RESOLUTION_M = 25.0
#: Input pixels coarser than this (ground metres) are not the 10 m the models were trained
#: on (a 20 m product): resampled up to the training grid with a warning.
COARSE_INPUT_RESOLUTION_M = 12.5
#: Input pixels finer than this, in the training grid's Mercator metres (Sentinel-2's 10 m is
#: >= 10 of them anywhere), are not Sentinel-2 (aerial imagery, e.g. NAIP): they are
#: resampled down to the training grid with a warning.
MIN_INPUT_RESOLUTION_M = 7.5


@dataclass(frozen=True)
class TargetGrid:
    """An LR grid (``transform``, ``width`` x ``height`` px in ``crs``) and its HR twin."""

    crs: CRS
    transform: Affine
    width: int
    height: int
    scale: int

    @property
    def resolution(self) -> float:
        return abs(self.transform.a)

    @property
    def unit(self) -> str:
        """The CRS's unit of :attr:`resolution`: ``m``, ``deg`` (geographic) or its name."""
        if self.crs.is_geographic:
            return "deg"
        units = (self.crs.linear_units or "").lower()
        return "m" if units in ("metre", "meter", "m", "") else units

    @property
    def bounds(self) -> BoundingBox:
        t = self.transform
        left, top = t.c, t.f
        right, bottom = t.c + t.a * self.width, t.f + t.e * self.height
        return BoundingBox(left, bottom, right, top)

    @property
    def hr_transform(self) -> Affine:
        t, k = self.transform, 1.0 / self.scale
        return Affine(t.a * k, t.b * k, t.c, t.d * k, t.e * k, t.f)

    @property
    def hr_width(self) -> int:
        return self.width * self.scale

    @property
    def hr_height(self) -> int:
        return self.height * self.scale

    @property
    def area_km2(self) -> float:
        """Ground area covered, km².

        Projected metric CRSs: map area (UTM's scale error is < 0.1 %). Web-Mercator and
        geographic CRSs, whose map units are not ground units: the area of the extent in an
        equal-area cylindrical projection (EPSG:6933), exact for such lat/lon-aligned extents.
        """
        if self.crs.is_projected and self.crs.to_epsg() != 3857:
            return self.width * self.height * abs(self.transform.a * self.transform.e) / 1e6
        b = transform_bounds(self.crs, "EPSG:6933", *self.bounds, densify_pts=21)
        return (b[2] - b[0]) * (b[3] - b[1]) / 1e6

    def describe(self) -> dict:
        return {
            "crs": self.crs.to_string(),
            "transform": list(self.transform)[:6],
            "width": self.width,
            "height": self.height,
            "scale": self.scale,
        }


def _footprint(frame: Frame, crs: CRS) -> BoundingBox:
    b = frame.bounds
    if frame.crs == crs:
        return b
    try:
        return BoundingBox(*transform_bounds(frame.crs, crs, *b, densify_pts=21))
    except Exception as exc:  # noqa: BLE001 - PROJ raises several types
        raise DataError(f"{frame.paths[0]}: cannot transform its bounds to {crs}: {exc}") from None


def _intersects(a: BoundingBox, b: BoundingBox) -> bool:
    return a.left < b.right and b.left < a.right and a.bottom < b.top and b.bottom < a.top


def check_overlap(frames: Sequence[Frame], footprints: Sequence[BoundingBox]) -> None:
    """Every frame must be connected to the first through overlapping footprints.

    Frames in one CRS are compared there: reprojected, the boxes of frames that only touch
    (one starting at the other's edge) overlap a little, so they passed on the training grid
    and were refused on their native one."""
    def overlap(i: int, j: int) -> bool:
        if frames[i].crs == frames[j].crs:
            return _intersects(frames[i].bounds, frames[j].bounds)
        return _intersects(footprints[i], footprints[j])

    reached = {0}
    todo = [0]
    while todo:
        i = todo.pop()
        for j in range(len(frames)):
            if j not in reached and overlap(i, j):
                reached.add(j)
                todo.append(j)
    apart = [str(frames[j].paths[0]) for j in range(len(frames)) if j not in reached]
    if apart:
        shown = ", ".join(apart[:3]) + (f" and {len(apart) - 3} more" if len(apart) > 3 else "")
        raise DataError(
            f"inputs do not overlap: {shown} {'does' if len(apart) == 1 else 'do'} not overlap "
            f"{frames[0].paths[0]}" + (" (or the inputs that overlap it)" if len(frames) > 2
                                       else "")
        )


def ground_resolution_m(frame: Frame) -> float:
    """The ground size of ``frame``'s pixels at its centre, metres: the finer of the two sides
    (square degrees are narrow east-west far from the equator), by great-circle distances, so
    any CRS works."""
    return min(ground_pixel_m(frame))


def ground_pixel_m(frame: Frame) -> tuple[float, float]:
    """The ground width and height of ``frame``'s pixel at its centre, metres (great-circle
    distances, any CRS)."""
    return tiles.ground_pixel_m(frame)


def pixel_size_in(frame: Frame, crs: CRS) -> float:
    """The size of ``frame``'s pixels at its centre in ``crs`` units (the finer side)."""
    return min(pixel_sides_in(frame, crs))


def pixel_sides_in(raster: Frame | Any, crs: CRS) -> tuple[float, float]:
    """The lengths in ``crs`` units of the centre pixel's sides (along its rows, along its
    columns) of ``raster`` (anything with ``crs``, ``transform``, ``width`` and ``height``:
    a frame or an open dataset)."""
    xs, ys = tiles.centre_pixel_in(raster, crs)
    return math.hypot(xs[1] - xs[0], ys[1] - ys[0]), math.hypot(xs[2] - xs[0], ys[2] - ys[0])


def _snap(value: float, origin: float, res: float, outward_down: bool,
          tol_px: float = SNAP_TOL_PX) -> float:
    k = (value - origin) / res
    if abs(k - round(k)) >= tol_px:  # else on a grid line, within rounding
        return origin + (math.floor(k) if outward_down else math.ceil(k)) * res
    return origin + round(k) * res


def plan_grid(frames: Sequence[Frame], scale: int, native: bool = False) -> TargetGrid:
    """The LR target grid for ``frames`` (see module docstring); HR pixels are ``res / scale``."""
    if not frames:
        raise DataError("no input frames")
    if scale < 1:
        raise InputError(f"scale must be >= 1, got {scale}")
    first = frames[0]
    if native:
        crs = first.crs
        if crs is None:
            raise DataError(f"{first.paths[0]}: has no CRS; cannot keep its grid")
        t = first.transform
        if t.b != 0 or t.d != 0:
            raise DataError(f"{first.paths[0]}: rotated grids are not supported")
        res_x, res_y = abs(t.a), abs(t.e)
        # Sides within 0.1 % (rounding in a product's transform, e.g. 300.038 x 300.042 m)
        # count as square: the grid takes the x size, and the frames are warped onto it.
        if not math.isclose(res_x, res_y, rel_tol=1e-3):
            raise DataError(
                f"{first.paths[0]}: non-square pixels ({res_x:g} x {res_y:g}); use the default "
                "grid (EPSG:3857) instead of --native-grid"
            )
        res, ox, oy = res_x, t.c, t.f
        # measured in x-sized pixels, the y extent is off by up to this many (718 rows of
        # 300.042 m are 718.0096 of 300.038 m): a bottom row past the input's edge otherwise
        row_tol = SNAP_TOL_PX + max(f.height for f in frames) * abs(res_y - res_x) / res_x
        if crs.is_geographic:
            gx, gy = ground_pixel_m(first)
            if max(gx, gy) > 1.2 * min(gx, gy):
                warnings.warn(
                    f"{first.paths[0]}: its square {res:.3g} deg pixels are {gx:.3g} x "
                    f"{gy:.3g} m on the ground here ({max(gx, gy) / min(gx, gy):.2g}:1); the "
                    "output keeps that grid (--native-grid), the default grid's pixels are "
                    "square on the ground", ZoomsrWarning, stacklevel=2)
    else:
        crs = CRS.from_string(tiles.CRS)
        res, ox, oy = tiles.LR_RESOLUTION, -tiles.ORIGIN_SHIFT, tiles.ORIGIN_SHIFT
        row_tol = SNAP_TOL_PX
    coarse: list[tuple[Frame, float]] = []
    for f in frames:
        if f.crs is None:
            raise DataError(f"{f.paths[0]}: has no CRS (georeferenced inputs are required)")
        if not native and (res_m := ground_resolution_m(f)) > MAX_INPUT_RESOLUTION_M:
            raise DataError(
                f"{f.paths[0]}: pixels of {res_m:.3g} m on the ground; the models take "
                f"Sentinel-2's 10 m, and the training grid (9.555 m) would resample it "
                f"{res_m / 10:.3g}x finer a side; give 10 m data, or pass --native-grid "
                "(InferenceOptions(native_grid=True)) to keep its pixels"
            )
        if not native and res_m > COARSE_INPUT_RESOLUTION_M:
            coarse.append((f, res_m))
        # in the grid's own (Mercator) metres: Sentinel-2's 10 m is >= 10 of them anywhere
        if not native and pixel_size_in(f, crs) < MIN_INPUT_RESOLUTION_M:
            warnings.warn(
                f"{f.paths[0]}: pixels of {ground_resolution_m(f):.3g} m on the ground, finer "
                "than Sentinel-2's 10 m (aerial imagery?): resampled down to the training grid "
                "(bilinear); the models were trained on Sentinel-2", ZoomsrWarning,
                stacklevel=2)
    if coarse:  # once a run, not once a date
        (f, res_m), more = coarse[0], len(coarse) - 1
        others = f" (and {more} other date(s))" if more else ""
        warnings.warn(
            f"{f.paths[0]}{others}: pixels of {res_m:.3g} m on the ground, coarser than "
            "Sentinel-2's 10 m RGB (a 20 m product?): resampled up to the training grid "
            "(bilinear); the models were trained on 10 m inputs, and the output holds no more "
            "detail than these", ZoomsrWarning, stacklevel=2)
    footprints = [_footprint(f, crs) for f in frames]
    for f, b in zip(frames, footprints, strict=True):
        # across the antimeridian, the box in Web Mercator spans the world (a grid of
        # 4 million columns, which ran for ever)
        if not native and b.right - b.left > tiles.ORIGIN_SHIFT:
            raise DataError(
                f"{f.paths[0]}: crosses the antimeridian (180 deg), which the training grid "
                "(EPSG:3857) cannot hold in one piece; pass --native-grid "
                "(InferenceOptions(native_grid=True)), or split the input at 180 deg"
            )
    check_overlap(frames, footprints)
    left = _snap(min(b.left for b in footprints), ox, res, True)
    right = _snap(max(b.right for b in footprints), ox, res, False)
    # rows grow downwards: snap the top up and the bottom down, measured from the origin row
    top = oy - _snap(oy - max(b.top for b in footprints), 0.0, res, True, row_tol)
    bottom = oy - _snap(oy - min(b.bottom for b in footprints), 0.0, res, False, row_tol)
    width = round((right - left) / res)
    height = round((top - bottom) / res)
    if width < 1 or height < 1:
        raise DataError("the inputs cover less than one pixel of the target grid")
    return TargetGrid(crs, Affine(res, 0.0, left, 0.0, -res, top), width, height, scale)
