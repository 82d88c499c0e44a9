"""A frame (one date of a scene) and the other rasters of its date."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import rasterio
from rasterio.coords import BoundingBox
from rasterio.crs import CRS

from zoomsr.inference.inputs.radiometry import Radiometry


def footprint(transform: rasterio.Affine, width: int, height: int) -> BoundingBox:
    """The box around a ``width`` x ``height`` raster's four corners in its CRS. With a
    rotated or sheared transform two corners are not enough: a third of a rotated scene's
    height was cut off the grid (rasterio's ``bounds`` takes two)."""
    xs, ys = zip(*(transform @ (c, r) for c in (0, width) for r in (0, height)), strict=True)
    return BoundingBox(min(xs), min(ys), max(xs), max(ys))


@dataclass(frozen=True, kw_only=True)
class _Grid:
    """Where a raster's pixels are and what they hold."""

    dtype: str
    crs: CRS
    transform: rasterio.Affine
    width: int
    height: int
    nodata: float | None


@dataclass(frozen=True, kw_only=True)
class AuxBand(_Grid):
    """One more raster of a frame's date: an extra band (``b08``...) or its cloud layer
    (``scl``, ``msk_classi``).

    ``band`` is the 1-based band in ``path`` (``msk_classi``: 1, opaque clouds; 2, cirrus, is
    read with it). ``radiometry``: ``dn`` (reflectance x 10000 + ``dn_offset``),
    ``reflectance`` (float) or ``classes`` (SCL, MSK_CLASSI).
    """

    name: str
    path: Path
    band: int
    radiometry: str
    dn_offset: float

    @property
    def read_bands(self) -> list[int]:
        """The bands of ``path`` read for it: MSK_CLASSI's opaque and cirrus bands."""
        return [1, 2] if self.name == "msk_classi" else [self.band]

    def describe(self) -> dict:
        return {"path": str(self.path), "band": self.band, "radiometry": self.radiometry,
                "dn_offset": self.dn_offset}


@dataclass(frozen=True, kw_only=True)
class Frame(_Grid):
    """One date of the scene: the files and bands that give its red, green and blue.

    ``paths`` holds one file (``bands`` = its 1-based R, G, B band indexes) or three
    single-band files in R, G, B order (``bands`` = ``(1, 1, 1)``). ``radiometry`` is what the
    pixels mean; ``dn_offset`` is subtracted from DNs before dividing by 10000.
    """

    label: str
    paths: tuple[Path, ...]
    bands: tuple[int, int, int]
    radiometry: Radiometry
    dn_offset: float
    level: str | None = None  # "L1C" / "L2A" when the metadata says so
    extras: tuple[AuxBand, ...] = ()  # the model's extra bands, in its order
    # for choosing frames: the scene classification (L2A's SCL) or the cloud mask (L1C's
    # MSK_CLASSI)
    clouds: AuxBand | None = None

    @property
    def aux(self) -> tuple[AuxBand, ...]:
        """The frame's other rasters: its extra bands, then its cloud layer if any."""
        return (*self.extras, *([self.clouds] if self.clouds is not None else []))

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file a reader opens for this frame, once each (a multi-band file may hold
        extras too)."""
        return tuple(dict.fromkeys([*self.paths, *(a.path for a in self.aux)]))

    @property
    def bounds(self) -> BoundingBox:
        return footprint(self.transform, self.width, self.height)

    @property
    def resolution(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    def describe(self) -> dict:
        """JSON-friendly summary (for tags, state fingerprints and reports)."""
        return {
            "label": self.label,
            "paths": [str(p) for p in self.paths],
            "bands": list(self.bands),
            "radiometry": self.radiometry,
            "dn_offset": self.dn_offset,
            "level": self.level,
            **({"extras": {a.name: a.describe() for a in self.extras}} if self.extras else {}),
            **({self.clouds.name: self.clouds.describe()} if self.clouds is not None else {}),
        }


@dataclass
class Discovery:
    """What :func:`discover_frames` found: the frames, and files it left out (with why)."""

    frames: list[Frame]
    ignored: list[str] = field(default_factory=list)
    #: frames (among ``frames``) whose decimated look held no valid pixel: dates that add
    #: nothing (warned about)
    empty: list[Frame] = field(default_factory=list)
