"""The builder's inputs as data: a raster's :class:`Footprint`, a Sentinel-2 scene
(:class:`S2Scene`), a high-resolution image (:class:`HRImage`) and the :class:`Sources`
of a build.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from zoomsr.data.builder.dates import _iso


@dataclass(frozen=True)
class Footprint:
    """Bounds of a raster in EPSG:3857 metres (left, bottom, right, top) and its native CRS."""

    left: float
    bottom: float
    right: float
    top: float
    crs: str

    def intersects(self, other: tuple[float, float, float, float]) -> bool:
        left, bottom, right, top = other
        return self.left < right and left < self.right and self.bottom < top and bottom < self.top


@dataclass(frozen=True)
class S2Scene:
    """One Sentinel-2 acquisition: its band files and how to read their numbers.

    ``files`` maps band names (``tci``, ``b01`` ... ``b12``, ``scl``) to paths or URLs.
    ``dn_offset`` is added to every band but TCI and SCL to get reflectance x 10000; ``None``
    when no metadata gives it (a build then needs ``BuildConfig.dn_offset`` if it reads the
    scene's 16-bit bands).
    """

    id: str
    datetime: dt.datetime
    files: Mapping[str, str]
    level: str = "unknown"  # "L1C", "L2A" or "unknown"
    processing_baseline: str | None = None
    dn_offset: int | None = 0
    footprint: Footprint | None = None

    @property
    def date(self) -> dt.date:
        return self.datetime.date()

    def to_json(self) -> dict:
        return {
            "id": self.id, "datetime": _iso(self.datetime), "level": self.level,
            "processing_baseline": self.processing_baseline, "dn_offset": self.dn_offset,
            "files": dict(sorted(self.files.items())),
            "crs": self.footprint.crs if self.footprint else None,
        }


@dataclass(frozen=True)
class HRImage:
    """One high-resolution image (NAIP or any aerial raster); bands 1-3 are R, G, B."""

    id: str
    datetime: dt.datetime
    path: str
    footprint: Footprint | None = None
    pixel_m: float | None = None  # ground size of its pixels (the coarser side), metres

    @property
    def date(self) -> dt.date:
        return self.datetime.date()

    def to_json(self) -> dict:
        return {"id": self.id, "datetime": _iso(self.datetime), "path": self.path,
                "crs": self.footprint.crs if self.footprint else None}


@dataclass
class Sources:
    """Everything a build reads."""

    sentinel2: list[S2Scene] = field(default_factory=list)
    highres: list[HRImage] = field(default_factory=list)


__all__ = ["Footprint", "HRImage", "S2Scene", "Sources"]
