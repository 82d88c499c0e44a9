"""Finding the builder's inputs: Sentinel-2 scenes and high-resolution images.

Sentinel-2 scenes come as SAFE folders (L1C or L2A), as loose band files (GeoTIFF, COG or JP2:
``TCI.tif``, ``B08.tif``, ``T29RKH_20200219T112111_B08_10m.jp2``, ``red.tif`` ...; files of one
folder sharing a name once the band token is removed form one scene), or as entries of a
manifest (``zoomsr data search``). High-resolution images are any georeferenced raster with
at least three bands (RGB first, e.g. NAIP's RGBN).

Acquisition dates come, in this order, from a STAC item JSON beside the files, the SAFE
metadata (``MTD_MSIL*.xml``), the file or folder name (``20200219`` or ``20200219T112111``),
the raster's tags (``TIFFTAG_DATETIME`` ...), or a date given by the caller.

Radiometry: every band other than TCI is stored by the builder as *harmonised digital
numbers*, ``DN + dn_offset`` (surface or top-of-atmosphere reflectance x 10000). From
processing baseline 04.00 (January 2022) ESA adds 1000 to every L1C and L2A band
(``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` = -1000 in the metadata), so ``dn_offset`` is -1000
for those products and 0 before, unless the distributor already removed it (Earth Search's
``earthsearch:boa_offset_applied``) or declares it as the STAC ``raster:bands`` ``offset``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from zoomsr.errors import DataError, InputError, ZoomsrWarning, first_line
from zoomsr.grid import ground_pixel_m

try:  # GDAL's own errors: rasterio raises them directly or as the cause of its own
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - a rasterio without this private module
    CPLE_BaseError = RasterioError
#: What reading a raster can raise (rasterio's errors and GDAL's).
RASTER_ERRORS: tuple[type[Exception], ...] = (RasterioError, CPLE_BaseError)

#: File extensions read as rasters.
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
#: Bands the builder reads from a scene: the layout's bands, B02-B04 (a TCI can be made from
#: them), the L2A scene classification layer and the L1C cloud mask (``MSK_CLASSI_B00``:
#: opaque clouds, cirrus, snow; processing baseline 04.00 on).
SCENE_BANDS = ("tci", "b01", "b02", "b03", "b04", "b05", "b06", "b07", "b08", "b09", "b10",
               "b11", "b12", "scl", "msk_classi")
#: Asset / file-name aliases (Earth Search v1 common names, ESA and Planetary Computer names).
BAND_ALIASES: dict[str, str] = {
    "tci": "tci", "visual": "tci",
    "b01": "b01", "b1": "b01", "coastal": "b01",
    "b02": "b02", "b2": "b02", "blue": "b02",
    "b03": "b03", "b3": "b03", "green": "b03",
    "b04": "b04", "b4": "b04", "red": "b04",
    "b05": "b05", "b5": "b05", "rededge1": "b05",
    "b06": "b06", "b6": "b06", "rededge2": "b06",
    "b07": "b07", "b7": "b07", "rededge3": "b07",
    "b08": "b08", "b8": "b08", "nir": "b08",
    "b09": "b09", "b9": "b09", "nir09": "b09",
    "b10": "b10", "cirrus": "b10",
    "b11": "b11", "swir16": "b11",
    "b12": "b12", "swir22": "b12",
    "scl": "scl", "msk_classi": "msk_classi",
}  # fmt: skip
#: ESA's name of the L1C cloud mask, in a SAFE granule's QI_DATA (or a file ending so).
_MASK_TOKEN = re.compile(r"(?:^|[_\-.])MSK_CLASSI(?:_B00)?$", re.IGNORECASE)

# A band token at the end of a file stem, optionally followed by ESA's resolution suffix.
_BAND_TOKEN = re.compile(
    r"(?:^|[_\-.])(TCI|SCL|B0?[1-9]|B1[0-2]|B8A)(?:_(?:10|20|60)m)?$", re.IGNORECASE
)
_DATETIME_IN_NAME = re.compile(r"(?<!\d)(\d{8})(?:T(\d{6}))?(?!\d)")
_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})(?=[_.]|$)")
_LEVEL_IN_NAME = re.compile(r"(?:MSI)?(L1C|L2A)", re.IGNORECASE)
_DATE_TAGS = ("ACQUISITION_DATE", "ACQUISITIONDATETIME", "DATATAKE_1_DATATAKE_SENSING_START",
              "PRODUCT_START_TIME", "SENSING_TIME", "DATETIME", "TIFFTAG_DATETIME")
MANIFEST_FORMAT = "zoomsr-manifest"


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


# --------------------------------------------------------------------------------- dates


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def parse_datetime(text: str, what: object = "") -> dt.datetime:
    """Parse ``YYYY-MM-DD``, ``YYYYMMDD``, ISO 8601 or ``YYYY:MM:DD HH:MM:SS`` into UTC."""
    s = str(text).strip()
    try:
        if re.fullmatch(r"\d{8}", s):
            value = dt.datetime.strptime(s, "%Y%m%d")
        elif re.fullmatch(r"\d{8}T\d{6}", s):
            value = dt.datetime.strptime(s, "%Y%m%dT%H%M%S")
        elif re.fullmatch(r"\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}", s):
            value = dt.datetime.strptime(s, "%Y:%m:%d %H:%M:%S")
        else:
            value = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{what}: not a date: {text!r} (expected YYYY-MM-DD)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def date_from_name(name: str) -> dt.datetime | None:
    """The first plausible ``YYYYMMDD[THHMMSS]`` in a file or folder name, else None."""
    for match in _DATETIME_IN_NAME.finditer(name):
        day, time = match.groups()
        try:
            value = dt.datetime.strptime(day + (time or "000000"), "%Y%m%d%H%M%S")
        except ValueError:
            continue
        if 1970 <= value.year <= 2100:
            return value.replace(tzinfo=dt.timezone.utc)
    return None


def _date_from_tags(tags: Mapping[str, str]) -> dt.datetime | None:
    upper = {k.upper(): v for k, v in tags.items()}
    for key in _DATE_TAGS:
        if key in upper:
            try:
                return parse_datetime(upper[key], key)
            except InputError:
                continue
    return None


# ------------------------------------------------------------------------------ rasters


def is_remote(path: str) -> bool:
    return "://" in path or path.startswith("/vsi")


def raster_footprint(path: str, check_data: bool = False) -> tuple[Footprint, dict]:
    """Open ``path`` (header only): its EPSG:3857 footprint and a small profile summary.

    With ``check_data``, also check cheaply that the file's pixel data is all there
    (:func:`check_raster_data`: a truncated or damaged file fails here, not halfway through a
    build). Raises :class:`DataError` naming the file when it cannot be read, is truncated or
    is not georeferenced.
    """
    try:
        with warnings.catch_warnings():
            # Not being georeferenced is reported below as an error naming the file.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
        with src:
            if src.crs is None:
                raise DataError(f"{path}: raster has no CRS (not georeferenced)")
            if src.transform.is_identity:
                raise DataError(f"{path}: raster has no geotransform (not georeferenced)")
            bounds = transform_bounds(src.crs, "EPSG:3857", *src.bounds, densify_pts=21)
            if not all(math.isfinite(b) for b in bounds):
                # (it became "no overlap ... [inf, inf, inf, inf]", naming no cause)
                raise DataError(
                    f"{path}: its bounds {tuple(round(b, 3) for b in src.bounds)} are out of "
                    f"range for its CRS {src.crs.to_string()} (a wrong CRS tag, e.g. EPSG:4326 "
                    "on coordinates in metres?)")
            info = {"count": src.count, "dtype": src.dtypes[0], "tags": src.tags(),
                    "res": src.res, "crs": src.crs.to_string(),
                    "pixel_m": max(ground_pixel_m(src))}
            if check_data:
                check_raster_data(src, path)
    except RASTER_ERRORS as exc:
        raise DataError(f"{path}: cannot read raster ({gdal_reason(exc)})") from None
    return Footprint(*bounds, crs=info["crs"]), info  # type: ignore[misc]  # (4 bounds)


def gdal_reason(exc: BaseException) -> str:
    """The most telling line of a rasterio/GDAL error: the first GDAL message in the chain
    (rasterio's own, e.g. "Chunk and warp failed", says nothing about the file)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, CPLE_BaseError) and str(seen).strip():
            return str(seen).strip().splitlines()[0]
        seen = seen.__cause__ or seen.__context__
    return first_line(exc)


def check_raster_data(src: rasterio.DatasetReader, path: str) -> None:
    """Raise :class:`DataError` when the pixel data of an open local raster is cut short.

    GeoTIFF/COG: every tile or strip of every band and overview must end within the file
    (its offset + byte count, from the header; no pixel is decoded), which catches a truncated
    download or copy wherever the cut falls. Other formats (JP2, VRT ...): the last pixel of
    every band is read (JPEG 2000 keeps the last tile at the end of the file). Remote files
    (URLs, ``/vsi...``) are not checked here; a read failure during the build names them.
    """
    if is_remote(path) or not os.path.isfile(path):
        return
    if src.driver != "GTiff":
        if src.width and src.height:
            try:
                src.read(window=Window(src.width - 1, src.height - 1, 1, 1))
            except RASTER_ERRORS as exc:
                # a VRT's own file is text: what fails is a file it points to (named by GDAL)
                what = ("unreadable" if src.driver == "VRT"
                        else "unreadable, the file is truncated or damaged")
                raise DataError(f"{path}: {what}: its last pixel cannot be read "
                                f"({gdal_reason(exc)})") from None
        return
    size = os.path.getsize(path)
    _check_tiff_blocks(src, path, size, "")
    if any(str(f).lower().endswith(".ovr") for f in src.files):
        return  # external overviews: their blocks are in the .ovr file
    for k in range(len(src.overviews(1)) if src.count else 0):
        with rasterio.open(path, overview_level=k) as ovr:  # its own block size
            _check_tiff_blocks(ovr, path, size, f" of overview {k + 1}")


def _check_tiff_blocks(src: rasterio.DatasetReader, path: str, size: int, where: str) -> None:
    interleave = (src.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE") or "").upper()
    # Pixel-interleaved files share one set of blocks between bands.
    for bidx in range(1, src.count + 1) if interleave == "BAND" else (1,):
        block_h, block_w = src.block_shapes[bidx - 1]
        for y in range(-(-src.height // block_h)):
            for x in range(-(-src.width // block_w)):
                offset = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=bidx)
                if offset is None:
                    continue  # a sparse block: never written, read as nodata
                nbytes = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=bidx)
                end = int(offset) + int(nbytes or 0)
                if end > size:
                    raise DataError(
                        f"{path}: unreadable, the file is truncated or damaged: block {x},{y} "
                        f"of band {bidx}{where} ends at byte {end} but the file has {size} "
                        "bytes; download or copy it again")


# ------------------------------------------------------------------------ Sentinel-2 files


def band_of_file(path: str | Path) -> tuple[str, str] | None:
    """``(band, scene key)`` of a Sentinel-2 band file name, or None if it names no band.

    ``T29RKH_20200219T112111_B08_10m.jp2`` -> ("b08", "T29RKH_20200219T112111");
    ``TCI.tif`` -> ("tci", ""); ``nir.tif`` -> ("b08", ""). B8A is not a layout band: None.
    """
    stem = Path(str(path)).name
    for suffix in RASTER_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        return None
    if stem.lower() in BAND_ALIASES:  # a whole name: TCI, B08, nir, blue (Earth Search)...
        return BAND_ALIASES[stem.lower()], ""
    mask = _MASK_TOKEN.search(stem)
    if mask is not None:
        return "msk_classi", stem[: mask.start()]
    match = _BAND_TOKEN.search(stem)
    if match is None:
        return None
    token = match.group(1).lower()
    if token == "b8a":
        return None
    band = BAND_ALIASES.get(token)
    if band is None:
        return None
    return band, stem[: match.start()]


def _baseline_from_name(name: str) -> str | None:
    match = _BASELINE_IN_NAME.search(name)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def _level_from_name(name: str) -> str | None:
    match = _LEVEL_IN_NAME.search(name)
    return match.group(1).upper() if match else None


def default_dn_offset(level: str, baseline: str | None) -> int | None:
    """ESA's additive offset for a product: -1000 from processing baseline 04.00 (L1C and
    L2A alike), 0 before; ``None`` when the baseline is unknown (any product sensed from 25
    January 2022, and older ones reprocessed, carry the offset: no safe default)."""
    if baseline is None:
        return None
    try:
        major = float(baseline)
    except ValueError:
        return None
    return -1000 if major >= 4.0 else 0


def _read_safe_metadata(safe: Path) -> dict:
    """Date, level, baseline and DN offset from a SAFE folder's ``MTD_MSIL*.xml``."""
    out: dict = {}
    for mtd in sorted(safe.glob("MTD_MSIL*.xml")):
        try:
            text = mtd.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise DataError(f"{mtd}: cannot read SAFE metadata ({exc})") from None
        out["level"] = "L2A" if "L2A" in mtd.name else "L1C"
        if m := re.search(r"<PRODUCT_START_TIME>([^<]+)</PRODUCT_START_TIME>", text):
            out["datetime"] = parse_datetime(m.group(1), mtd)
        if m := re.search(r"<PROCESSING_BASELINE>([^<]+)</PROCESSING_BASELINE>", text):
            out["baseline"] = m.group(1).strip()
        if m := re.search(r"<(?:BOA|RADIO)_ADD_OFFSET[^>]*>\s*(-?\d+)\s*<", text):
            out["dn_offset"] = int(m.group(1))
        break
    return out


def _stac_item_near(folder: Path) -> dict | None:
    """A STAC item JSON in ``folder`` (the first ``*.json`` with ``type: Feature``)."""
    for candidate in sorted(folder.glob("*.json")):
        try:
            item = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(item, dict) and item.get("type") == "Feature" and "properties" in item:
            return item
    return None


def stac_item_radiometry(item: Mapping) -> dict:
    """Level, baseline and DN offset declared by a Sentinel-2 STAC item (any may be absent)."""
    props = item.get("properties", {})
    out: dict = {}
    product = str(props.get("s2:product_type", "")) + " " + str(item.get("collection", ""))
    if "2A" in product.upper():
        out["level"] = "L2A"
    elif "1C" in product.upper():
        out["level"] = "L1C"
    if props.get("s2:processing_baseline"):
        out["baseline"] = str(props["s2:processing_baseline"])
    if props.get("earthsearch:boa_offset_applied") is True:
        # Earth Search removed the offset, but its items keep raster:bands offset -0.1 whether
        # or not it was applied (earth-search issue #66): this flag wins over them.
        out["dn_offset"] = 0
    else:
        # raster:bands offset/scale, when declared, says how DN map to reflectance.
        for key, asset in item.get("assets", {}).items():
            if BAND_ALIASES.get(key.lower()) in (None, "tci", "scl", "msk_classi"):
                continue
            bands = asset.get("raster:bands") or []
            if bands and "offset" in bands[0] and bands[0].get("scale"):
                out["dn_offset"] = int(round(float(bands[0]["offset"])
                                             / float(bands[0]["scale"])))
                break
    if props.get("datetime"):
        out["datetime"] = parse_datetime(props["datetime"], item.get("id", "STAC item"))
    return out


def _scene_from_files(
    scene_id: str, files: Mapping[str, str], meta: Mapping, given_date: dt.datetime | None,
    where: str,
) -> S2Scene:
    if "tci" not in files and not {"b02", "b03", "b04"} <= set(files):
        raise DataError(
            f"{where}: Sentinel-2 scene {scene_id!r} has no TCI file (and not B02+B03+B04 to "
            f"make one); found {', '.join(sorted(files)) or 'no band files'}"
        )
    when = meta.get("datetime") or given_date
    if when is None:
        raise DataError(
            f"{where}: no acquisition date for Sentinel-2 scene {scene_id!r} (none in a STAC item, "
            "SAFE metadata, the file names or tags); give one with --s2-date or a manifest"
        )
    level = meta.get("level") or ("L2A" if "scl" in files else "unknown")
    baseline = meta.get("baseline")
    offset = meta.get("dn_offset")
    if offset is None:
        offset = default_dn_offset(level, baseline)
    footprint = None
    for band in ("tci", "b04", "b08"):
        if band in files:
            footprint, _ = raster_footprint(files[band])
            break
    return S2Scene(scene_id, when, dict(files), level, baseline,
                   None if offset is None else int(offset), footprint)


def _validate_scene_files(scene: S2Scene) -> None:
    """Open every file of a scene once: readable (data not cut short), georeferenced, expected
    dtype/bands."""
    crs = scene.footprint.crs if scene.footprint else None
    for band, path in sorted(scene.files.items()):
        fp, info = raster_footprint(path, check_data=True)
        if crs is not None and fp.crs != crs:
            raise DataError(f"{path}: CRS {fp.crs} differs from the scene's other bands ({crs})")
        if band == "tci":
            if info["dtype"] != "uint8" or info["count"] < 3:
                raise DataError(
                    f"{path}: TCI must be 8-bit with 3 bands (ESA's true-colour image), found "
                    f"{info['count']} band(s) of {info['dtype']}"
                )
        elif band == "scl":
            if info["dtype"] != "uint8":
                raise DataError(f"{path}: SCL must be 8-bit class codes, found {info['dtype']}")
        elif band == "msk_classi":
            if info["dtype"] != "uint8" or info["count"] < 2:
                raise DataError(
                    f"{path}: MSK_CLASSI must be an 8-bit cloud mask with opaque and cirrus "
                    f"bands (band 1, 2), found {info['count']} band(s) of {info['dtype']}")
        elif info["dtype"] not in ("uint16", "int16", "uint32", "int32"):
            raise DataError(
                f"{path}: band {band} holds {info['dtype']} values; expected integer digital "
                "numbers (reflectance x 10000). Scale float reflectance by 10000 first"
            )


def _discover_safe(safe: Path, given_date: dt.datetime | None) -> S2Scene:
    meta = _read_safe_metadata(safe)
    name = safe.name
    meta.setdefault("level", _level_from_name(name))
    meta.setdefault("baseline", _baseline_from_name(name))
    if "datetime" not in meta and (when := date_from_name(name)):
        meta["datetime"] = when
    files: dict[str, tuple[int, str]] = {}
    for path in sorted(safe.glob("GRANULE/*/IMG_DATA/**/*.jp2")):
        found = band_of_file(path)
        if found is None:
            continue
        band = found[0]
        res = re.search(r"_(10|20|60)m\.jp2$", path.name)
        rank = int(res.group(1)) if res else 10  # L1C files have no suffix: native resolution
        if band not in files or rank < files[band][0]:
            files[band] = (rank, str(path))
    if not files:
        raise DataError(f"{safe}: SAFE folder without band files under GRANULE/*/IMG_DATA")
    if "scl" not in files:  # L1C; an L2A's SCL is used (builds begun before kept resuming)
        for path in sorted(safe.glob("GRANULE/*/QI_DATA/MSK_CLASSI_B00.jp2"))[:1]:
            files["msk_classi"] = (60, str(path))
    scene_id = name[:-5] if name.upper().endswith(".SAFE") else name
    return _scene_from_files(scene_id, {b: p for b, (_, p) in files.items()}, meta, given_date,
                             str(safe))


def _resolution_m(name: str) -> int | None:
    """The pixel size in ESA's band file names (``..._B02_20m.jp2`` -> 20)."""
    found = re.search(r"_(10|20|60)m\.[A-Za-z0-9]+$", name)
    return int(found.group(1)) if found else None


def _safe_around(path: Path) -> Path | None:
    """The SAFE folder that is ``path`` or holds it (e.g. its ``GRANULE/*/IMG_DATA/R10m``)."""
    for folder in (path, *path.parents):
        if folder.name.upper().endswith(".SAFE"):
            return folder
        if (folder == path or (folder / "GRANULE").is_dir()) and folder.is_dir() and any(
                folder.glob("MTD_MSIL*.xml")):
            return folder
    return None


def discover_sentinel2(
    paths: Sequence[str | os.PathLike[str]], date: dt.datetime | None = None
) -> list[S2Scene]:
    """Find Sentinel-2 scenes in files and folders (SAFE folders, band files, recursively).

    Every file is opened once (its header, and for local files a check that no data is cut
    short: :func:`check_raster_data`); unreadable, truncated or non-georeferenced files raise
    :class:`DataError` naming them. ``date`` is used for scenes whose date cannot be found.
    """
    groups: dict[tuple[str, str], dict[str, str]] = {}
    scenes: list[S2Scene] = []

    def add_file(path: Path, explicit: bool) -> None:
        found = band_of_file(path)
        if found is None:
            if explicit:
                raise DataError(
                    f"{path}: not a Sentinel-2 band file (expected a name ending in TCI, SCL or "
                    "B01..B12, e.g. T29RKH_20200219T112111_B08_10m.jp2 or TCI.tif)"
                )
            return
        band, key = found
        group = groups.setdefault((str(path.parent), key), {})
        if band in group and group[band] != str(path):
            # ESA's resampled copies of one band (B02_10m, B02_20m): the finest wins, as in
            # a SAFE folder
            ours, theirs = _resolution_m(path.name), _resolution_m(Path(group[band]).name)
            if ours is None or theirs is None or ours == theirs:
                raise DataError(f"{path}: band {band} given twice for one scene ({group[band]})")
            if ours > theirs:
                return
        group[band] = str(path)

    safes_given: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise DataError(f"{p}: not found")
        p = p.resolve()  # absolute paths in the index; resuming from another folder works
        safe = _safe_around(p)
        if safe is not None:  # a SAFE, or a folder or file in one (IMG_DATA, R10m...)
            # one scene with the SAFE's metadata (DN offset, SCL), however it is given
            if safe not in safes_given:
                safes_given.add(safe)
                scenes.append(_discover_safe(safe, date))
        elif p.is_dir():
            safes = sorted(d for d in p.rglob("*")
                           if d.is_dir() and d.name.upper().endswith(".SAFE"))
            scenes.extend(_discover_safe(d, date) for d in safes if d not in safes_given)
            safes_given.update(safes)
            n_groups = len(groups)
            bands_before = sum(len(g) for g in groups.values())
            for f in sorted(p.rglob("*")):
                if (f.is_file() and f.suffix.lower() in RASTER_SUFFIXES
                        and not any(s in f.parents for s in safes)):
                    add_file(f, explicit=False)
            if not safes and len(groups) == n_groups and (
                    sum(len(g) for g in groups.values()) == bands_before):
                raise DataError(
                    f"{p}: no Sentinel-2 scenes in folder (expected .SAFE folders or band "
                    "files named like T29RKH_20200219T112111_B08_10m.jp2 or TCI.tif)"
                )
        else:
            if p.suffix.lower() not in RASTER_SUFFIXES:
                raise DataError(f"{p}: not a raster file ({', '.join(RASTER_SUFFIXES)})")
            add_file(p, explicit=True)

    for (folder, key), files in sorted(groups.items()):
        folder_path = Path(folder)
        meta: dict = {}
        item = _stac_item_near(folder_path)
        if item is not None:
            meta.update(stac_item_radiometry(item))
        names = key + " " + folder_path.name + " " + " ".join(Path(f).name for f in files.values())
        meta.setdefault("level", _level_from_name(names))
        meta.setdefault("baseline", _baseline_from_name(names))
        if "datetime" not in meta:
            when = date_from_name(key) or date_from_name(folder_path.name)
            if when is None:
                when = _date_from_tags(raster_footprint(next(iter(files.values())))[1]["tags"])
            if when is not None:
                meta["datetime"] = when
        scene_id = (item or {}).get("id") or key.strip("_-.") or folder_path.name
        scenes.append(_scene_from_files(scene_id, files, meta, date, folder))
    for scene in scenes:
        _validate_scene_files(scene)
    return _unique_ids(scenes)


def _unique_ids(items: list) -> list:
    """``items`` with repeated ids suffixed ``-1``, ``-2`` ... (skipping ids already in use:
    lists from a manifest and ``--hr`` are joined)."""
    given = {item.id for item in items}
    used: set[str] = set()
    out = []
    for item in items:
        if item.id in used:
            n = 1
            while f"{item.id}-{n}" in used or f"{item.id}-{n}" in given:
                n += 1
            item = dataclasses.replace(item, id=f"{item.id}-{n}")
        used.add(item.id)
        out.append(item)
    return out


# ------------------------------------------------------------------------ high-res files


def _hr_image(path: str, image_id: str, when: dt.datetime | None,
              given_date: dt.datetime | None) -> HRImage:
    footprint, info = raster_footprint(path, check_data=True)
    if info["count"] < 3:
        raise DataError(f"{path}: high-res image needs at least 3 bands (RGB), found "
                        f"{info['count']}")
    if info["dtype"] != "uint8":
        raise DataError(f"{path}: high-res image must be 8-bit RGB(N) like NAIP, found "
                        f"{info['dtype']}; rescale it to 0-255 first (e.g. gdal_translate -scale)")
    if when is None:
        when = date_from_name(Path(path).name) or _date_from_tags(info["tags"]) or given_date
    if when is None:
        raise DataError(
            f"{path}: no acquisition date in the file name (e.g. m_..._20190904.tif) or tags; "
            "give one with --hr-date or a manifest"
        )
    return HRImage(image_id, when, path, footprint, info["pixel_m"])


def _file_identity(path: str) -> tuple:
    """What makes two paths one file: device and inode for a local file (symlinks, hard
    links, ``a/../a.tif``), else the path or URL itself."""
    if not is_remote(path):
        try:
            st = os.stat(path)
            return ("file", st.st_dev, st.st_ino)
        except OSError:
            pass  # reported where it is read
    return ("path", path)


def unique_highres(images: Iterable[HRImage]) -> list[HRImage]:
    """``images`` with each file once (the first entry kept), and every id unique.

    A file given twice (``--hr a.tif --hr a.tif``, its folder too, a manifest listing it
    twice, or a manifest and ``--hr``) would be written as separate images with the same
    pixels, every pair duplicated: the repeats are dropped with one :class:`ZoomsrWarning`
    per file.
    """
    return _unique_ids([group[0] for group in _once_per_file(images, lambda img: img.path)])


_T = TypeVar("_T")


def _once_per_file(items: Iterable[_T], path: Callable[[_T], str]) -> list[list[_T]]:
    """``items`` grouped by the file their ``path`` names (:func:`_file_identity`), in the
    order first given; one warning for each high-res file given more than once."""
    groups: dict[tuple, list[_T]] = {}
    for item in items:
        groups.setdefault(_file_identity(path(item)), []).append(item)
    for group in groups.values():
        if len(group) > 1:
            first, given = path(group[0]), [path(item) for item in group]
            others = sorted(set(given) - {first})
            also = f" (also as {', '.join(others)})" if others else ""
            warnings.warn(f"{first}: given {len(given)} times as a high-res input{also}; used "
                          "once", ZoomsrWarning, stacklevel=4)
    return list(groups.values())


def _safe_image_id(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).lstrip(".")
    return cleaned or "image"


def discover_highres(
    paths: Sequence[str | os.PathLike[str]], date: dt.datetime | None = None
) -> list[HRImage]:
    """Find high-resolution rasters in files and folders (recursively). The image id is the
    file stem; the date comes from the name (NAIP: ``m_..._20190904.tif``), tags or ``date``."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise DataError(f"{p}: not found")
        p = p.resolve()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*")
                           if f.is_file() and f.suffix.lower() in RASTER_SUFFIXES)
            if not found:
                raise DataError(f"{p}: no raster files ({', '.join(RASTER_SUFFIXES)}) in folder")
            files.extend(found)
        elif p.suffix.lower() not in RASTER_SUFFIXES:
            raise DataError(f"{p}: not a raster file ({', '.join(RASTER_SUFFIXES)})")
        else:
            files.append(p)
    # a file given twice (itself and its folder, say) is opened and used once
    images = [_hr_image(paths[0], _safe_image_id(Path(paths[0]).stem), None, date)
              for paths in _once_per_file(map(str, files), str)]
    return _unique_ids(images)


# ----------------------------------------------------------------------------- manifests


def _resolve_href(href: str, base: Path) -> str:
    """A manifest's href as a path (relative ones from ``base``), or the URL it is; a
    ``file://`` URL is a local file (checked before the build, and watched on resume)."""
    if href.startswith("file://"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        parsed = urlparse(href)
        if parsed.netloc not in ("", "localhost"):
            raise DataError(f"{href}: a file:// URL of another host ({parsed.netloc}); give "
                            "a path on this machine")
        href = url2pathname(parsed.path)  # %20 decoded; on Windows /C:/x -> C:\x
    elif is_remote(href):
        return href
    p = Path(href)
    return str(p if p.is_absolute() else (base / p))


def _entries(data: dict, key: str, path: Path) -> list[dict]:
    """``data[key]``: a list of objects, or the one-line error naming the manifest entry."""
    entries = data.get(key, [])
    if not isinstance(entries, list):
        raise DataError(f"{path}: {key}: expected a list of objects, got "
                        f"{type(entries).__name__}")
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{path}: {key}[{k}]: expected an object, got {entry!r:.60}")
    return entries


def _href(value: object, where: str) -> str:
    """A path or URL, also as a STAC asset object ``{"href": ...}``."""
    if isinstance(value, dict) and "href" in value:
        value = value["href"]
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: expected a path or URL string, got {value!r:.60}")
    return value


@overload
def _text(value: object, where: str, optional: Literal[False] = False) -> str: ...


@overload
def _text(value: object, where: str, optional: bool) -> str | None: ...


def _text(value: object, where: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise DataError(f"{where}: expected a string, got {value!r:.60}")
    return value


def read_manifest(path: str | os.PathLike[str], validate: bool = True) -> Sources:
    """Read a manifest (``zoomsr data search`` output or hand-written JSON).

    ::

        {"format": "zoomsr-manifest", "version": 1,
         "sentinel2": [{"id": ..., "datetime": "2019-08-01T17:00:00Z", "level": "L2A",
                        "processing_baseline": "02.13", "dn_offset": 0,
                        "assets": {"tci": HREF, "b08": HREF, "scl": HREF}}],
         "highres":   [{"id": ..., "datetime": "2019-09-04", "href": HREF}]}

    Relative hrefs are relative to the manifest's folder; URLs are read remotely by GDAL.
    ``dn_offset`` is optional (derived from level and baseline when absent).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p}: manifest not found") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format", MANIFEST_FORMAT) != MANIFEST_FORMAT:
        raise DataError(f"{p}: not a zoomsr manifest (expected format {MANIFEST_FORMAT!r})")
    if data.get("version", 1) != 1:  # a later layout: its keys may mean other things
        raise DataError(f"{p}: manifest version {data['version']!r}; this zoomsr reads "
                        "version 1 (a newer zoomsr wrote it?)")
    base = p.resolve().parent
    out = Sources()
    for k, entry in enumerate(_entries(data, "sentinel2", p)):
        where = f"{p}: sentinel2[{k}]"
        assets = entry.get("assets")
        if not isinstance(assets, dict):
            raise DataError(f"{where}: missing key 'assets'" if assets is None else
                            f"{where}.assets: expected an object {{band: path or URL}}")
        assets = {BAND_ALIASES[str(b).lower()]: _resolve_href(_href(h, f"{where}.assets.{b}"),
                                                              base)
                  for b, h in assets.items() if str(b).lower() in BAND_ALIASES}
        if "datetime" not in entry:
            raise DataError(f"{where}: missing key 'datetime'")
        when: dt.datetime | None = parse_datetime(_text(entry["datetime"], f"{where}.datetime"),
                                                  where)
        level = _text(entry.get("level"), f"{where}.level", optional=True)
        if level is not None and level not in ("L1C", "L2A"):
            # the level picks the DN offset and the TCI scaling: a typo must not pass
            raise DataError(f"{where}.level: expected L1C or L2A, got {level!r}")
        meta: dict[str, Any] = {
            "datetime": when,
            "level": level,
            "baseline": _text(entry.get("processing_baseline"),
                              f"{where}.processing_baseline", optional=True)}
        if entry.get("dn_offset") is not None:
            offset = entry["dn_offset"]
            if isinstance(offset, str) and offset.strip().lstrip("-").isdigit():
                offset = int(offset)
            if isinstance(offset, bool) or not isinstance(offset, (int, float)) \
                    or offset not in (0, -1000):
                sign = (" (the manifest's value is added: ESA's BOA_ADD_OFFSET, -1000; "
                        "--dn-offset 1000 is the value subtracted)" if offset == 1000 else "")
                raise DataError(f"{where}.dn_offset: expected 0 or -1000 (added to the digital "
                                f"numbers), got {offset!r}{sign}")
            meta["dn_offset"] = int(offset)
        scene = _scene_from_files(str(entry.get("id", f"scene{k}")), assets, meta, None, where)
        out.sentinel2.append(scene)
    for k, entry in enumerate(_entries(data, "highres", p)):
        where = f"{p}: highres[{k}]"
        if "href" not in entry:
            raise DataError(f"{where}: missing key 'href'")
        href = _resolve_href(_href(entry["href"], f"{where}.href"), base)
        when = (parse_datetime(_text(entry["datetime"], f"{where}.datetime"), where)
                if entry.get("datetime") else None)
        image_id = _safe_image_id(str(entry.get("id") or Path(href).stem))
        out.highres.append(_hr_image(href, image_id, when, None))
    if validate:
        for scene in out.sentinel2:
            _validate_scene_files(scene)
    out.sentinel2 = _unique_ids(out.sentinel2)
    out.highres = unique_highres(out.highres)
    return out


def write_manifest(
    path: str | os.PathLike[str], sentinel2: Iterable[Mapping], highres: Iterable[Mapping],
    **info: object,
) -> Path:
    """Write a manifest (see :func:`read_manifest`) atomically; extra ``info`` is kept as is."""
    from zoomsr.io.atomic import atomic_write_text

    doc = {"format": MANIFEST_FORMAT, "version": 1, **info,
           "sentinel2": list(sentinel2), "highres": list(highres)}
    target = Path(path)
    atomic_write_text(target, json.dumps(doc, indent=2, default=str) + "\n")
    return target


__all__ = [
    "BAND_ALIASES",
    "Footprint",
    "HRImage",
    "S2Scene",
    "Sources",
    "band_of_file",
    "date_from_name",
    "default_dn_offset",
    "discover_highres",
    "discover_sentinel2",
    "parse_datetime",
    "read_manifest",
    "stac_item_radiometry",
    "unique_highres",
    "write_manifest",
]
