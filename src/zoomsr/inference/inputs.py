"""Finding, grouping and validating the Sentinel-2 rasters of a scene, and their radiometry.

A *frame* is one date: either one multi-band RGB raster (ESA's 8-bit TCI, or a 3+ band
reflectance stack) or three single-band files (B04, B03, B02). Inputs may be files, folders
or manifests (``.txt``: one frame per line, band files of one frame separated by commas;
``.json``: a list of paths or of ``{"tci": path}`` / ``{"red": .., "green": .., "blue": ..}``).

Every frame is converted to the radiometry the published models were trained on: ESA's
8-bit true-colour image (TCI) divided by 255. Digital numbers (DN, reflectance x 10000) and
float reflectance are mapped with the TCI stretch measured on a real L2A scene
(TCI ~= 255 * reflectance / 0.25, clipped); anything else is refused with a message.

A frame may also carry, from files of the same date (same name but for the band token, or
``b08``/``scl``... keys in a JSON manifest, or labelled bands of a multi-band file):

- the extra bands a band-variant model takes (``b08``; the 20 m and 60 m bands), as in
  training: reflectance x 10000 / 8160, clipped to [0, 1];
- the scene classification layer (``SCL``, L2A), used to prefer cloud-free dates per window.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import threading
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from zoomsr.data.builder.sources import BAND_ALIASES
from zoomsr.errors import ConfigError, DataError, ZoomsrWarning, first_line
from zoomsr.inference.arrays import Array, float32, is_floating, xp

Radiometry = Literal["tci", "dn", "reflectance"]
RADIOMETRY_CHOICES = ("auto", "tci", "dn", "reflectance")
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
MANIFEST_SUFFIXES = (".txt", ".json")
#: Reflectance that maps to TCI 255 (measured on a real L2A scene: TCI ~= 1020 * reflectance).
TCI_SATURATION = 0.25
#: Sentinel-2 DN per unit reflectance (QUANTIFICATION_VALUE).
DN_SCALE = 10000.0
#: DN offset added from processing baseline 04.00 on (RADIO_ADD_OFFSET / BOA_ADD_OFFSET = -1000).
BASELINE_OFFSET = 1000
#: Largest plausible float reflectance; larger floats mean another scaling (e.g. x 10000).
MAX_FLOAT_REFLECTANCE = 2.0

_BAND_TOKENS = {
    "tci": "tci", "visual": "tci", "rgb": "tci",
    "b04": "red", "b4": "red", "red": "red",
    "b03": "green", "b3": "green", "green": "green",
    "b02": "blue", "b2": "blue", "blue": "blue",
}
# Other Sentinel-2 band names: recognised so that they are ignored with a note, not misread.
_OTHER_BANDS = {
    "b01", "b1", "b05", "b5", "b06", "b6", "b07", "b7", "b08", "b8", "b8a", "b09", "b9",
    "b10", "b11", "b12", "scl", "aot", "wvp", "nir", "nir08", "nir09", "swir16", "swir22",
    "coastal", "rededge1", "rededge2", "rededge3", "cld", "snw",
}
#: Names of the bands band-variant models take (besides TCI), as files may spell them: ESA's
#: B01..B12, and Earth Search's asset names (``nir`` is B08; ``nir08`` is B8A, not used).
EXTRA_BAND_TOKENS = {k: v for k, v in BAND_ALIASES.items()
                     if v not in ("tci", "b02", "b03", "b04", "scl")}
#: Extra bands, reflectance x 10000 divided by this and clipped to [0, 1] (the training scale).
BAND16_DIVISOR = 8160.0
#: Name tokens of quick-look images that products ship beside the bands (ESA's L2A_PVI).
_PREVIEW_TOKENS = {"pvi", "preview", "thumbnail", "quicklook"}
_RESOLUTION_RE = re.compile(r"r?\d{2,3}m", re.IGNORECASE)
_TOKEN_RE = re.compile(r"[A-Za-z0-9]+")
_BASELINE_RE = re.compile(r"_N(\d{2})(\d{2})(?:_|$)")
#: A date in a file name (YYYYMMDD, as in ESA's and most providers' names).
_DATE_RE = re.compile(r"(?<!\d)(20\d{2}[01]\d[0-3]\d)(?!\d)")


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
    """One more raster of a frame's date: an extra band (``b08``...) or the SCL.

    ``band`` is the 1-based band in ``path``. ``radiometry``: ``dn`` (reflectance x 10000 +
    ``dn_offset``), ``reflectance`` (float) or ``classes`` (SCL).
    """

    name: str
    path: Path
    band: int
    radiometry: str
    dn_offset: float

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
    scl: AuxBand | None = None  # scene classification (L2A), for choosing frames

    @property
    def aux(self) -> tuple[AuxBand, ...]:
        """The frame's other rasters: its extra bands, then its SCL if any."""
        return (*self.extras, *([self.scl] if self.scl is not None else []))

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file a reader opens for this frame, once each (a multi-band file may hold
        extras too)."""
        return tuple(dict.fromkeys([*self.paths, *(a.path for a in self.aux)]))

    @property
    def bounds(self) -> BoundingBox:
        t = self.transform
        left, top = t.c, t.f
        right = t.c + t.a * self.width + t.b * self.height
        bottom = t.f + t.d * self.width + t.e * self.height
        return BoundingBox(min(left, right), min(top, bottom), max(left, right), max(top, bottom))

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
            **({"scl": self.scl.describe()} if self.scl is not None else {}),
        }


@dataclass
class Discovery:
    """What :func:`discover_frames` found: the frames, and files it left out (with why)."""

    frames: list[Frame]
    ignored: list[str] = field(default_factory=list)


def to_tci(pixels: Array, radiometry: Radiometry, dn_offset: float = 0.0) -> Array:
    """Map ``[3, H, W]`` raw pixels to the models' input scale: TCI / 255, float32 in [0, 1].

    NumPy array or torch tensor (the result is of the same kind, on the same device).
    """
    x = float32(pixels)
    if radiometry == "tci":
        return x / 255.0
    if radiometry == "dn":
        x = (x - float(dn_offset)) / DN_SCALE
    return xp(x).clip(x / TCI_SATURATION, 0.0, 1.0)


def to_band16(pixels: Array, radiometry: str, dn_offset: float = 0.0) -> Array:
    """Map raw extra-band pixels to the models' scale: reflectance x 10000 / 8160, in [0, 1]."""
    x = float32(pixels)
    # DN: reflectance x 10000 + offset; otherwise float reflectance
    x = x - float(dn_offset) if radiometry == "dn" else x * DN_SCALE
    return xp(x).clip(x / BAND16_DIVISOR, 0.0, 1.0)


def valid_pixels(pixels: Array, nodata: float | None, mask: Array | None) -> Array:
    """``[H, W]`` True where a ``[n, H, W]`` pixel holds data (NumPy array or torch tensor).

    Invalid: the GDAL mask says so, any channel equals ``nodata`` or is not finite, or all
    channels are 0 (black: Sentinel-2's nodata, the S2-NAIP rule).
    """
    valid = (pixels != 0).any(0)
    if is_floating(pixels):
        valid &= xp(pixels).isfinite(pixels).all(0)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        valid &= ~(pixels == nodata).any(0)
    if mask is not None:
        valid &= mask
    return valid


# --------------------------------------------------------------------------- discovery


def _band_role(path: Path) -> str | None:
    """The band a file holds, from its name: ``tci`` / ``red`` / ``green`` / ``blue``, an
    extra band (``b08``...), ``scl``, or ``other``; None if the name has no band token."""
    tokens = [t.lower() for t in _TOKEN_RE.findall(path.stem)]
    roles = [
        _BAND_TOKENS.get(t) or EXTRA_BAND_TOKENS.get(t) or ("scl" if t == "scl" else None)
        for t in tokens
    ]
    roles = [r for r in roles if r is not None]
    if roles:
        return roles[-1]  # the band token is usually last (T29RKH_20200219_B02)
    if any(t in _OTHER_BANDS for t in tokens):
        return "other"
    return None


def _is_band_token(token: str) -> bool:
    t = token.lower()
    return t in _BAND_TOKENS or t in _OTHER_BANDS or t in EXTRA_BAND_TOKENS


def _group_key(path: Path) -> str:
    """The file name without its band and resolution tokens: files of one date share it.

    A SAFE product's ``R10m``/``R20m``/``R60m`` folders count as one folder.
    """
    tokens = _TOKEN_RE.findall(path.stem)
    kept = [t for t in tokens if not _is_band_token(t) and not _RESOLUTION_RE.fullmatch(t)]
    parent = path.parent
    if _RESOLUTION_RE.fullmatch(parent.name):
        parent = parent.parent
    return str(parent / "_".join(kept))


def _resolution_m(path: Path) -> int:
    """The resolution a file name states (``_20m``, ``R20m/``), in metres; 0 if none."""
    for token in [*_TOKEN_RE.findall(path.stem), path.parent.name][::-1]:
        if _RESOLUTION_RE.fullmatch(token):
            return int(token.lower().lstrip("r").rstrip("m"))
    return 0


def is_s2naip_root(path: Path) -> bool:
    """Whether folder ``path`` holds an S2-NAIP dataset (``sentinel2/``)."""
    return (path / "sentinel2").is_dir()


def _read_manifest(path: Path) -> list[list[Path] | dict[str, Path]]:
    base = path.parent
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc})") from None
    entries: list[list[Path] | dict[str, Path]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, dict) and "frames" in data:
            data = data["frames"]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of frames (paths or band objects)")
        for i, item in enumerate(data):
            if isinstance(item, str):
                entries.append([base / item])
            elif isinstance(item, dict) and item and all(isinstance(v, str) for v in item.values()):
                roles = {}
                for key, value in item.items():
                    k = key.lower()
                    role = _BAND_TOKENS.get(k) or EXTRA_BAND_TOKENS.get(k) or (
                        "scl" if k == "scl" else None)
                    if role is None:
                        raise DataError(
                            f"{path}: frame {i}: unknown band key {key!r} (use tci, or red/green/"
                            "blue or b04/b03/b02, and optionally b01..b12 and scl)"
                        )
                    roles[role] = base / value
                entries.append(roles)
            else:
                raise DataError(f"{path}: frame {i} must be a path or an object of band paths")
    else:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                entries.append([base / p.strip() for p in line.split(",") if p.strip()])
    if not entries:
        raise DataError(f"{path}: the manifest lists no file")
    return entries


def _is_raster(path: Path) -> bool:
    return path.suffix.lower() in RASTER_SUFFIXES


def _folder_rasters(folder: Path) -> list[Path]:
    """The rasters of an input folder: its own; else its sub-folders' (one per date). A SAFE
    product (ESA's folder layout, here or as a sub-folder) gives the rasters of its granules'
    ``IMG_DATA`` (L2A: ``R10m``, ``R20m``, ``R60m``)."""

    def of(d: Path) -> list[Path]:
        if (d / "GRANULE").is_dir():  # a SAFE product
            return sorted(f for f in (d / "GRANULE").glob("*/IMG_DATA/**/*")
                          if _is_raster(f) and f.is_file())
        return sorted(filter(_is_raster, d.iterdir()))

    files = of(folder)
    if not files:
        files = [f for d in sorted(x for x in folder.iterdir() if x.is_dir()) for f in of(d)]
    return files


def made_by_zoomsr(path: Path) -> bool:
    """Whether ``path`` is a raster zoomsr wrote (its tags name the zoomsr version)."""
    try:
        with _open(path) as ds:  # without rasterio's warning for a file with no georeference
            return "zoomsr_version" in ds.tags()
    except DataError:
        return False  # unreadable: reported with the reason when the frame is opened


def _expand(
    items: Sequence[str | os.PathLike[str]], extra_bands: Sequence[str] = ()
) -> tuple[list[list[Path] | dict], list[str]]:
    """Turn the user's paths into frame candidates (lists of files, or band dicts).

    Loose files are grouped by date (:func:`_group_key`); of two files of one band and date,
    the finer resolution is kept (a SAFE product has B04 at 10, 20 and 60 m). Extra bands
    the model does not take are left out with a note.
    """
    if not items:
        raise DataError("no input given (pass raster files, folders or a manifest)")
    candidates: list[list[Path] | dict] = []
    ignored: list[str] = []
    loose: list[Path] = []
    found_in_folder: set[Path] = set()
    for item in items:
        # absolute and normalised (symlinks kept): the tags and --resume's record then name a
        # file the same way whichever folder the command ran from, and however it was spelled
        p = Path(os.path.abspath(item))
        if not p.exists():
            raise DataError(f"{item}: input not found")
        if p.is_dir():
            if is_s2naip_root(p):
                raise DataError(
                    f"{p}: is an S2-NAIP chunk dataset; pass it alone (chunk layout input)"
                )
            files = _folder_rasters(p)
            if not files:
                raise DataError(
                    f"{p}: no raster found (looked for {', '.join(RASTER_SUFFIXES)} in the "
                    "folder, its sub-folders and the IMG_DATA of SAFE products)"
                )
            loose.extend(files)
            found_in_folder.update(files)
        elif p.suffix.lower() in MANIFEST_SUFFIXES:
            candidates.extend(_read_manifest(p))
        else:
            loose.append(p)
    seen: set[Path] = set()
    for f in loose:
        if f.resolve() in seen:
            raise DataError(f"{f}: given twice")
        seen.add(f.resolve())
    groups: dict[str, dict[str, Path]] = {}
    for f in loose:
        if _PREVIEW_TOKENS & {t.lower() for t in _TOKEN_RE.findall(f.stem)}:
            ignored.append(f"{f}: a preview image, not a date")
            continue
        role = _band_role(f)
        # An RGB raster zoomsr wrote (an earlier run's output or LR mosaic, e.g. written into
        # the input folder) is no date. Only files that would be RGB frames are opened here.
        if role in (None, "tci") and made_by_zoomsr(f):
            if f not in found_in_folder:
                raise DataError(f"{f}: a zoomsr output (super-resolved or LR mosaic), not a "
                                "Sentinel-2 date")
            ignored.append(f"{f}: a zoomsr output, not a date")
            continue
        if role is None:
            candidates.append([f])
            continue
        if role == "other" or (role in EXTRA_BAND_TOKENS.values() and role not in extra_bands):
            what = "a band this model takes" if role != "other" else "a red/green/blue/TCI band"
            ignored.append(f"{f}: not {what}")
            continue
        slot = groups.setdefault(_group_key(f), {})
        if role in slot:
            a, b = _resolution_m(f), _resolution_m(slot[role])
            if a == b:
                raise DataError(f"{f}: two {role} files for the same date (also {slot[role]})")
            keep, drop = (f, slot[role]) if a < b else (slot[role], f)
            ignored.append(f"{drop}: {role} also at a finer resolution ({keep.name}), used")
            f = keep
        slot[role] = f
    aux = {"scl", *extra_bands}
    for key, slot in groups.items():
        if any(f not in found_in_folder for f in slot.values()):
            _add_siblings(key, slot, aux)  # named files: their date's other bands beside them
        extras = {r: f for r, f in slot.items() if r in aux}
        if "tci" in slot:
            for role, f in slot.items():
                if role in ("red", "green", "blue"):
                    ignored.append(f"{f}: same date as {slot['tci'].name}, which is used")
            candidates.append({"tci": slot["tci"], **extras})
        elif {"red", "green", "blue"} <= set(slot):
            candidates.append(slot)
        elif set(slot) <= aux:
            names = ", ".join(sorted(f.name for f in slot.values()))
            raise DataError(
                f"{key}*: {names} without a TCI or B04/B03/B02 file of the same date (files of "
                "one date must share their name but for the band token)"
            )
        else:
            missing = sorted({"red", "green", "blue"} - set(slot))
            raise DataError(
                f"{key}*: band files of one date lack {', '.join(missing)} (need B04, B03, B02 "
                "or a TCI file)"
            )
    return candidates, ignored


def _add_siblings(key: str, slot: dict[str, Path], roles: set[str]) -> None:
    """Add to ``slot`` (the files of date ``key``) the files of ``roles`` (SCL, extra bands)
    that lie beside them with the same date name, as a folder input would have found them;
    of one band at several resolutions, the finest."""
    folders = {f.parent for f in slot.values()}
    for d in list(folders):
        if _RESOLUTION_RE.fullmatch(d.name):  # a SAFE granule's R10m: its R20m, R60m too
            folders |= {x for x in d.parent.iterdir()
                        if x.is_dir() and _RESOLUTION_RE.fullmatch(x.name)}
    found: dict[str, Path] = {}
    for d in sorted(folders):
        for f in sorted(filter(_is_raster, d.iterdir())):
            role = _band_role(f)
            if role in roles and role not in slot and _group_key(f) == key and (
                    role not in found or _resolution_m(f) < _resolution_m(found[role])):
                found[role] = f
    slot.update(found)


# --------------------------------------------------------------------------- metadata


def _stac_properties(path: Path) -> dict:
    """Properties of the STAC item JSON beside ``path`` that describes it, if any.

    In a folder of several dates' items, the item whose assets name the file wins; else, the
    folder's only item (a per-date folder of band COGs, as Earth Search serves them), unless
    the file's name holds a date (YYYYMMDD) and not the item's.
    """
    items = []
    for candidate in sorted(path.parent.glob("*.json")):
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("type") == "Feature":
            props = data.get("properties")
            if isinstance(props, dict):
                items.append(data)
    for item in items:
        assets = item.get("assets")
        hrefs = [a.get("href", "") for a in assets.values() if isinstance(a, dict)] \
            if isinstance(assets, dict) else []
        if any(str(h).rsplit("/", 1)[-1] == path.name for h in hrefs):
            return item["properties"]
    if len(items) != 1:
        return {}
    # The only item, unless the file's name dates it to another day (another date's files
    # in the same folder must not take this item's processing baseline).
    day = re.sub(r"\D", "", str(items[0]["properties"].get("datetime", "")))[:8]
    dates = set(_DATE_RE.findall(path.stem))
    return items[0]["properties"] if not dates or not day or day in dates else {}


@dataclass(frozen=True)
class _Meta:
    level: str | None  # "L1C" / "L2A"
    baseline: float | None  # processing baseline, e.g. 4.0
    offset_removed: bool | None  # a provider already subtracted the offset
    tag_offset: float | None  # offset given by a BOA/RADIO_ADD_OFFSET tag (as a DN to remove)


def _metadata(path: Path, tags: dict) -> _Meta:
    """What the file name, its folders' names (a SAFE product's), GDAL tags and a STAC item
    beside the file say about the product."""
    names = [path.stem, *(p.name for p in list(path.parents)[:5])]
    text = " ".join([*names, *(f"{k}={v}" for k, v in tags.items())]).upper()
    level = next((name for name in ("L2A", "L1C") if name in text), None)
    baseline: float | None = None
    m = next(filter(None, (_BASELINE_RE.search(n) for n in names)), None)
    if m:
        baseline = float(f"{m.group(1)}.{m.group(2)}")
    for key in ("PROCESSING_BASELINE", "s2:processing_baseline"):
        if key in tags:
            with contextlib.suppress(ValueError):
                baseline = float(tags[key])
    tag_offset: float | None = None
    for key in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET"):
        if key in tags:
            with contextlib.suppress(ValueError):
                tag_offset = -float(tags[key])  # ESA stores -1000: reflectance = (DN - 1000) / Q
    removed: bool | None = None
    props = _stac_properties(path)
    if props:
        product = str(props.get("s2:product_type", ""))
        if level is None and "2A" in product:
            level = "L2A"
        elif level is None and "1C" in product:
            level = "L1C"
        if "s2:processing_baseline" in props:
            with contextlib.suppress(TypeError, ValueError):
                baseline = float(props["s2:processing_baseline"])
        if "earthsearch:boa_offset_applied" in props:
            removed = bool(props["earthsearch:boa_offset_applied"])
    return _Meta(level, baseline, removed, tag_offset)


class NoOffsetError(DataError):
    """No metadata gives a file's DN offset, and ``--dn-offset`` was not given."""


def _dn_offset(path: Path, tags: dict, offset_option: float | None) -> tuple[float, str | None]:
    """The DN offset to subtract (0 or 1000) and the product level: from the file's metadata,
    else ``offset_option`` (``--dn-offset``), else refused (a wrong guess shifts every pixel
    by 0.1 reflectance)."""
    meta = _metadata(path, tags)
    if meta.tag_offset is not None:
        return meta.tag_offset, meta.level
    if meta.offset_removed:  # e.g. Earth Search's harmonised COGs
        return 0.0, meta.level
    if meta.baseline is not None:
        return (float(BASELINE_OFFSET) if meta.baseline >= 4.0 else 0.0), meta.level
    if offset_option is not None:
        return offset_option, meta.level
    raise NoOffsetError(
        f"{path}: 16-bit Sentinel-2 digital numbers, but no metadata gives the processing "
        "baseline (from baseline 04.00 the values carry a +1000 offset); pass --dn-offset 0 "
        "or --dn-offset 1000"
    )


# --------------------------------------------------------------------------- opening


#: Held while this module changes the process's warning filters (catch_warnings).
_WARNINGS_LOCK = threading.RLock()


def _open(path: Path) -> rasterio.DatasetReader:
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            # a file without georeference is refused by name later ("has no CRS"); rasterio's
            # own two-line warning would only come first
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise DataError(f"{path}: not a readable raster (corrupt or wrong format: "
                        f"{first_line(exc)})") from None


def _check_readable(ds: rasterio.DatasetReader, path: Path) -> None:
    """Decode a block from the corners so a truncated file fails here, not mid-run."""
    from rasterio.windows import Window

    try:
        for row, col in ((0, 0), (ds.height - 1, ds.width - 1)):
            ds.read(1, window=Window(col, row, 1, 1))
    except Exception as exc:  # noqa: BLE001 - GDAL raises several types for damaged data
        raise DataError(f"{path}: corrupt raster data ({first_line(exc)})") from None


def _rgb_indexes(ds: rasterio.DatasetReader, path: Path, rgb_bands: tuple[int, int, int] | None):
    if rgb_bands is not None:
        bad = [b for b in rgb_bands if not 1 <= b <= ds.count]
        if bad:
            raise DataError(f"{path}: --rgb-bands {bad} out of range (the file has {ds.count})")
        return tuple(rgb_bands)
    interp = list(ds.colorinterp)
    wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in interp for c in wanted):
        return tuple(interp.index(c) + 1 for c in wanted)
    names = [(d or "").lower() for d in ds.descriptions]
    found = []
    for role in ("red", "green", "blue"):
        hits = [i + 1 for i, n in enumerate(names) if n and _BAND_TOKENS.get(n) == role]
        found.append(hits[0] if hits else None)
    if all(found):
        return tuple(found)
    alpha = ds.count == 4 and (interp[3] == ColorInterp.alpha
                               or MaskFlags.alpha in ds.mask_flag_enums[0])
    if ds.dtypes[0] == "uint8" and ds.count == 4 and not alpha:
        warnings.warn(
            f"{path}: 4 bands without red/green/blue labels, and band 4 is not alpha (RGB + "
            "near-infrared, as NAIP?): bands 1, 2, 3 read as red, green, blue (--rgb-bands "
            "R,G,B to choose)", ZoomsrWarning, stacklevel=2)
    if ds.dtypes[0] == "uint8" and ds.count in (3, 4):
        return (1, 2, 3)  # 8-bit RGB(A), or RGB + NIR: ESA's TCI order
    raise DataError(
        f"{path}: {ds.count} bands without red/green/blue labels; pass --rgb-bands R,G,B "
        "(1-based band numbers)"
    )


def _radiometry_for(
    path: Path, dtype: str, choice: str, sample: np.ndarray
) -> Radiometry:
    """Decide what the pixel values mean, refusing values the models cannot take."""
    if choice not in RADIOMETRY_CHOICES:
        raise ConfigError(f"radiometry must be one of {', '.join(RADIOMETRY_CHOICES)}")
    floating = np.issubdtype(np.dtype(dtype), np.floating)
    finite = sample[np.isfinite(sample)] if floating else sample
    top = float(finite.max()) if finite.size else 0.0
    if choice == "auto":
        if dtype == "uint8":
            return "tci"
        if dtype in ("uint16", "int16"):
            return "dn"
        if floating:
            if top > MAX_FLOAT_REFLECTANCE:
                raise DataError(
                    f"{path}: float data with values up to {top:g}: not reflectance in [0, 1] "
                    "(looks scaled, e.g. x 10000); rescale it, or pass --radiometry dn if the "
                    "values are Sentinel-2 digital numbers"
                )
            return "reflectance"
        raise DataError(
            f"{path}: unsupported data type {dtype} (expected uint8 TCI, uint16 digital "
            "numbers or float reflectance)"
        )
    if choice == "tci" and dtype != "uint8":
        raise DataError(f"{path}: --radiometry tci needs 8-bit data, found {dtype}")
    if choice == "reflectance" and not floating:
        raise DataError(f"{path}: --radiometry reflectance needs float data, found {dtype}")
    if choice == "reflectance" and top > MAX_FLOAT_REFLECTANCE:
        raise DataError(f"{path}: values up to {top:g} are not reflectance in [0, 1]")
    if choice == "dn" and dtype == "uint8":
        raise DataError(f"{path}: --radiometry dn needs 16-bit or float data, found uint8")
    return choice  # type: ignore[return-value]


def _sample_shape(ds: rasterio.DatasetReader) -> tuple[int, int]:
    factor = max(1, max(ds.width, ds.height) // 256)
    return max(1, ds.height // factor), max(1, ds.width // factor)


#: At most this many bytes of decimated looks are made ahead (the rest are read in order).
LOOK_AHEAD_BYTES = 64 * 2**20

#: Per thread: the decimated looks :func:`discover_frames` made ahead, by file name.
_looked = threading.local()


def _sample(ds: rasterio.DatasetReader, band: int | Sequence[int]) -> np.ndarray:
    """A cheap look at the values: a decimated read (at most ~256 px a side) of ``band``
    (``[h, w]``) or of several bands (``[n, h, w]``).

    It decodes blocks all over the file, or its overviews where it has them, so damaged data
    inside a file without overviews (not only at the corners :func:`_check_readable` reads)
    fails here, before any work; in a file with overviews, a damaged full-resolution block
    fails when the run reads it (named then, the finished rows kept for --resume). Taken from
    the look made ahead (:func:`_look_ahead`) where there is one.
    """
    shape = _sample_shape(ds)
    ahead = getattr(_looked, "samples", {}).get(ds.name)
    if ahead is not None and ahead.shape == (ds.count, *shape):
        return ahead[band - 1] if isinstance(band, int) else ahead[[b - 1 for b in band]]
    try:
        if isinstance(band, int):
            return ds.read(band, out_shape=shape)
        return ds.read(list(band), out_shape=(len(band), *shape))
    except Exception as exc:  # noqa: BLE001 - GDAL raises several types for damaged data
        raise DataError(f"{ds.name}: corrupt raster data ({first_line(exc)})") from None


def _workers() -> int:
    """CPUs this process may run on (its affinity, where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _look_ahead(paths: Sequence[Path], workers: int | None = None) -> dict[str, np.ndarray]:
    """Decimated looks at every band of ``paths``, several files at once, by file name.

    A look decodes the whole file when it has no overviews (a large scene's 8 dates: about a
    second on one core, while the GPU waits), and GDAL decodes without Python's lock, so the
    files are read in ``workers`` threads (default: one per CPU, at most 16). A file that fails
    is left out: read again in order, it fails there with its message, so errors come as
    without the look ahead; so is a file of more than 4 bands, and any once the looks held
    (every band, up to 511 px a side, until discovery ends) reach :data:`LOOK_AHEAD_BYTES`.
    """
    budget = [LOOK_AHEAD_BYTES]
    lock = threading.Lock()

    def look(path: Path) -> tuple[str, np.ndarray] | None:
        try:
            with rasterio.open(path) as ds:
                shape = (ds.count, *_sample_shape(ds))
                size = math.prod(shape) * np.dtype(ds.dtypes[0]).itemsize
                with lock:
                    if ds.count > 4 or size > budget[0]:
                        return None
                    budget[0] -= size
                return ds.name, ds.read(out_shape=shape)
        except Exception:  # noqa: BLE001 - reported by the ordered pass
            return None

    workers = min(len(paths), workers or _workers(), 16)
    if workers <= 1:
        return {}
    pool = ThreadPoolExecutor(workers, thread_name_prefix="zoomsr-look")
    try:
        # rasterio warns from the worker threads too (a file without georeference): filtered
        # here, as _open does, and told by the ordered pass. The filters are the process's, so
        # one thread at a time changes them.
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return dict(r for r in pool.map(look, paths) if r is not None)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: no file not yet started


def _any_valid(frame: Frame) -> bool:
    """Whether any full-resolution pixel of ``frame``'s RGB is valid (read in strips, up to the
    first): what a decimated look found nothing in may still hold a narrow swath edge."""
    from rasterio.windows import Window

    datasets = [_open(p) for p in frame.paths]
    try:
        if len(datasets) == 3:  # red, green, blue files
            bands = list(zip(datasets, frame.bands, strict=True))
        else:
            bands = [(datasets[0], b) for b in frame.bands]
        step = max(1, (1 << 24) // max(1, frame.width))  # ~16 M pixels a strip
        for row in range(0, frame.height, step):
            w = Window(0, row, frame.width, min(step, frame.height - row))
            try:
                strip = np.stack([ds.read(b, window=w) for ds, b in bands])
            except Exception as exc:  # noqa: BLE001 - GDAL raises several types
                raise DataError(f"{frame.paths[0]}: corrupt raster data "
                                f"({first_line(exc)})") from None
            if valid_pixels(strip, frame.nodata, None).any():
                return True
        return False
    finally:
        for ds in datasets:
            ds.close()


def _check_values(path: Path, sample: np.ndarray, radiometry: Radiometry, choice: str,
                  nodata: float | None) -> bool:
    """Whether the ``[3, h, w]`` RGB ``sample`` holds valid pixels; with detected 16-bit DN,
    refuse values that no Sentinel-2 product holds (the float case: :func:`_radiometry_for`).
    """
    valid = valid_pixels(sample, nodata, None)
    if not valid.any():
        return False
    if radiometry != "dn" or choice != "auto" or np.issubdtype(sample.dtype, np.floating):
        return True
    values = sample[:, valid]
    low, top = int(values.min()), int(values.max())
    if low < -BASELINE_OFFSET:
        raise DataError(
            f"{path}: values down to {low}: Sentinel-2 digital numbers are never below "
            f"-{BASELINE_OFFSET}; if {low} marks missing data, declare it as the file's nodata "
            f"(gdal_edit.py -a_nodata {low} {path.name})"
        )
    if top <= 255:
        raise DataError(
            f"{path}: 16-bit values no higher than {top}: 8-bit data stored as 16 bits? "
            "Sentinel-2 digital numbers (reflectance x 10000) of a scene reach thousands; save "
            "8-bit data as uint8 (read as a TCI), or pass --radiometry dn if these are digital "
            "numbers"
        )
    return True


def _aux_band(name: str, path: Path, ds: rasterio.DatasetReader, band: int,
              dn_offset: float | None, frame: Frame, radiometry: str = "auto") -> AuxBand:
    """Describe band ``band`` of ``ds`` as the extra band or SCL ``name`` of ``frame``.

    ``radiometry``: the user's choice; ``dn`` and ``reflectance`` apply to extra bands too
    (``tci`` describes 8-bit RGB only, so extra bands are then detected).
    """
    if path != frame.paths[0]:  # a file of its own: the same granule as the frame's RGB
        tol = max(abs(ds.transform.a), abs(ds.transform.e), *map(abs, frame.resolution))
        off = max(abs(a - b) for a, b in zip(ds.bounds, frame.bounds, strict=True))
        if ds.crs != frame.crs or off > tol:
            raise DataError(
                f"{path}: {name.upper()} does not cover the same area as {frame.paths[0].name} "
                f"({ds.crs} {tuple(round(v, 1) for v in ds.bounds)} vs {frame.crs} "
                f"{tuple(round(v, 1) for v in frame.bounds)}); the bands of one date must come "
                "from one product"
            )
    dtype = ds.dtypes[band - 1]
    if name == "scl":
        if dtype != "uint8":
            raise DataError(f"{path}: SCL must be 8-bit scene classes, found {dtype}")
        radiometry, offset = "classes", 0.0
    else:
        if dtype == "uint8":
            raise DataError(
                f"{path}: band {name} is 8-bit; extra bands must be 16-bit digital numbers or "
                "float reflectance"
            )
        choice = radiometry if radiometry in ("dn", "reflectance") else "auto"
        radiometry = _radiometry_for(path, dtype, choice, _sample(ds, band))
        offset = 0.0
        if radiometry == "dn":
            try:
                offset = _dn_offset(path, ds.tags(), dn_offset)[0]
            except NoOffsetError:
                if frame.radiometry != "dn":
                    raise
                offset = frame.dn_offset  # same product as the frame's own DN bands
    return AuxBand(name=name, path=path, band=band, radiometry=radiometry, dn_offset=offset,
                   dtype=dtype, crs=ds.crs, transform=ds.transform, width=ds.width,
                   height=ds.height, nodata=ds.nodata)


def _attach_aux(frame: Frame, aux: dict[str, Path], extra_bands: Sequence[str],
                dn_offset: float | None, radiometry: str = "auto") -> Frame:
    """``frame`` with its extra bands (every one of ``extra_bands``) and SCL, if any."""
    extras = []
    for name in extra_bands:
        if name in aux:
            path = aux[name]
            if not path.is_file():
                raise DataError(f"{path}: file not found")
            with _open(path) as ds:
                _check_readable(ds, path)
                extras.append(_aux_band(name, path, ds, 1, dn_offset, frame, radiometry))
            continue
        if len(frame.paths) == 1:  # a multi-band file may hold it, labelled
            with _open(frame.paths[0]) as ds:
                names = [EXTRA_BAND_TOKENS.get((d or "").lower()) for d in ds.descriptions]
                if name in names:
                    extras.append(_aux_band(name, frame.paths[0], ds, names.index(name) + 1,
                                            dn_offset, frame, radiometry))
                    continue
        date = Path(_group_key(frame.paths[0])).name
        beside = f"{date}_{name.upper()}.tif" if date else f"{name.upper()}.tif"
        raise DataError(
            f"{frame.paths[0]}: no {name.upper()} for this date, which the model needs (bands "
            f"tci,{','.join(extra_bands)}); put it beside as e.g. {beside}, or "
            f'use a JSON manifest [{{"tci": ..., "{name}": ...}}, ...]'
        )
    scl = None
    if "scl" in aux:
        with _open(aux["scl"]) as ds:
            _check_readable(ds, aux["scl"])
            _sample(ds, 1)  # decodes it all (without overviews): a damaged tile fails now
            scl = _aux_band("scl", aux["scl"], ds, 1, None, frame)
    return dataclasses.replace(frame, extras=tuple(extras), scl=scl)


def _with_roles(candidate: list[Path] | dict[str, Path]) -> list[Path] | dict[str, Path]:
    """Several files of one date as a dict by band role (red, green, blue, tci, scl, b08...)
    when each has a distinct one; else as given."""
    if isinstance(candidate, list) and len(candidate) > 1:
        roles = [_band_role(p) for p in candidate]
        if None not in roles and "other" not in roles and len(set(roles)) == len(roles):
            return dict(zip(roles, candidate, strict=True))  # type: ignore[arg-type]
    return candidate


def _sampled_files(candidate: list[Path] | dict[str, Path],
                   extra_bands: Sequence[str]) -> list[Path]:
    """The files of ``candidate`` that discovery takes a decimated look at: its TCI or red,
    green and blue files (as :func:`_rgb_frame` picks them), the extra bands the model takes
    and the SCL (not bands the model does not take)."""
    c = _with_roles(candidate)
    if not isinstance(c, dict):
        return list(c)
    rgb = _rgb_part(c)
    files = rgb if isinstance(rgb, list) else [rgb[k] for k in ("red", "green", "blue") if k in rgb]
    return files + [c[b] for b in (*extra_bands, "scl") if b in c]


def _rgb_part(candidate: list[Path] | dict[str, Path]) -> list[Path] | dict[str, Path]:
    """The files :func:`_rgb_frame` reads: a TCI (it wins over band files), else the red,
    green and blue files (a list of three is taken in that order), else ``candidate``."""
    if isinstance(candidate, dict) and "tci" in candidate:
        return [candidate["tci"]]
    if isinstance(candidate, list) and len(candidate) == 3:
        return {"red": candidate[0], "green": candidate[1], "blue": candidate[2]}
    return candidate


def _make_frame(
    candidate: list[Path] | dict[str, Path],
    radiometry: str,
    rgb_bands: tuple[int, int, int] | None,
    dn_offset: float | None,
    extra_bands: Sequence[str] = (),
) -> tuple[Frame, bool]:
    """One frame: its RGB (or TCI) part, then its extra bands and SCL; and whether a
    decimated look at its RGB found valid pixels."""
    candidate = _with_roles(candidate)
    aux: dict[str, Path] = {}
    if isinstance(candidate, dict):
        aux = {k: v for k, v in candidate.items() if k == "scl" or k in EXTRA_BAND_TOKENS.values()}
        candidate = {k: v for k, v in candidate.items() if k not in aux}
    frame, has_data = _rgb_frame(candidate, radiometry, rgb_bands, dn_offset)
    if extra_bands or aux:
        frame = _attach_aux(frame, aux, extra_bands, dn_offset, radiometry)
    return frame, has_data


def _rgb_frame(
    candidate: list[Path] | dict[str, Path],
    radiometry: str,
    rgb_bands: tuple[int, int, int] | None,
    dn_offset: float | None,
) -> tuple[Frame, bool]:
    """The frame of ``candidate``'s RGB, and whether a decimated look found valid pixels."""
    candidate = _rgb_part(candidate)
    if isinstance(candidate, list):
        if len(candidate) != 1:
            raise DataError(
                f"{', '.join(map(str, candidate))}: a frame is one RGB file or three band files "
                f"(red, green, blue), got {len(candidate)} files"
            )
        path = candidate[0]
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        with _open(path) as ds:
            if ds.count < 3:
                raise DataError(
                    f"{path}: {ds.count} band(s); expected a 3-band RGB/TCI raster, or band "
                    "files named B04, B03, B02 (one date per set)"
                )
            _check_readable(ds, path)
            bands = _rgb_indexes(ds, path, rgb_bands)
            dtype = ds.dtypes[bands[0] - 1]
            if len({ds.dtypes[b - 1] for b in bands}) != 1:
                raise DataError(f"{path}: red, green and blue bands have different data types")
            sample = _sample(ds, bands)
            rad = _radiometry_for(path, dtype, radiometry, sample)
            has_data = _check_values(path, sample, rad, radiometry, ds.nodata)
            tags = ds.tags()
            offset, level = (
                _dn_offset(path, tags, dn_offset) if rad == "dn" else (0.0, None)
            )
            if rad == "tci":
                level = _metadata(path, tags).level
            return Frame(
                label=path.name, paths=(path,), bands=bands, radiometry=rad, dn_offset=offset,
                dtype=dtype, crs=ds.crs, transform=ds.transform, width=ds.width,
                height=ds.height, nodata=ds.nodata, level=level,
            ), has_data
    missing = [r for r in ("red", "green", "blue") if r not in candidate]
    if missing:
        raise DataError(
            f"{', '.join(map(str, candidate.values()))}: a frame needs a TCI file or red, green "
            f"and blue band files; {', '.join(missing)} missing"
        )
    paths = tuple(candidate[r] for r in ("red", "green", "blue"))
    infos = []
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        with _open(path) as ds:
            _check_readable(ds, path)
            infos.append((ds.crs, ds.transform, ds.width, ds.height, ds.dtypes[0], ds.nodata,
                          ds.tags(), _sample(ds, 1)))
    crs, transform, width, height, dtype, nodata, tags, _ = infos[0]
    for path, info in zip(paths[1:], infos[1:], strict=True):
        if (info[0], info[1], info[2], info[3]) != (crs, transform, width, height):
            raise DataError(
                f"{path}: not on the same grid as {paths[0]} (band files of one date must share "
                "CRS, transform and size)"
            )
        if info[4] != dtype:
            raise DataError(f"{path}: data type {info[4]} differs from {paths[0]} ({dtype})")
    sample = np.stack([i[7] for i in infos])
    rad = _radiometry_for(paths[0], dtype, radiometry, sample)
    if rad == "tci":
        raise DataError(
            f"{paths[0]}: 8-bit single-band files are not Sentinel-2 band data; pass the TCI "
            "file instead"
        )
    has_data = _check_values(paths[0], sample, rad, radiometry, nodata)
    offset, level = _dn_offset(paths[0], tags, dn_offset) if rad == "dn" else (0.0, None)
    label = "+".join(p.name for p in paths)
    return Frame(
        label=label, paths=paths, bands=(1, 1, 1), radiometry=rad, dn_offset=offset,
        dtype=dtype, crs=crs, transform=transform, width=width, height=height, nodata=nodata,
        level=level,
    ), has_data


def check_dn_offset(dn_offset: float | None) -> None:
    """``--dn-offset`` is None (from the metadata), 0 or 1000: the offset *subtracted*."""
    if dn_offset is not None and dn_offset not in (0, BASELINE_OFFSET):
        raise ConfigError(
            f"--dn-offset must be 0 or {BASELINE_OFFSET} (the DN offset to subtract: "
            f"{BASELINE_OFFSET} from processing baseline 04.00 on, where ESA's metadata says "
            f"BOA_ADD_OFFSET=-{BASELINE_OFFSET}), got {dn_offset:g}"
        )


def discover_frames(
    items: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    radiometry: str = "auto",
    rgb_bands: Iterable[int] | None = None,
    dn_offset: float | None = None,
    extra_bands: Sequence[str] = (),
) -> Discovery:
    """Find the frames (dates) among files, folders and manifests, and validate each.

    Args:
        items: raster files, folders of rasters (or of one sub-folder per date), manifests.
        radiometry: ``auto`` (from the data type and metadata), ``tci``, ``dn`` (16-bit
            digital numbers, reflectance x 10000) or ``reflectance`` (float in [0, 1]).
        rgb_bands: 1-based band numbers of red, green, blue in multi-band files.
        dn_offset: DN offset to remove (0 or 1000); ``None`` reads it from the metadata.
        extra_bands: bands besides TCI that the model takes (``("b08",)``...), which every
            frame must have.

    Raises :class:`DataError` naming the file for a missing, corrupt or unusable input.
    """
    if isinstance(items, (str, os.PathLike)):
        items = [items]
    rgb = None
    if rgb_bands is not None:
        rgb = tuple(int(b) for b in rgb_bands)
        if len(rgb) != 3:
            raise ConfigError(f"--rgb-bands needs three band numbers (R,G,B), got {list(rgb)}")
    check_dn_offset(dn_offset)
    extra = tuple(extra_bands)
    unknown = [b for b in extra if b not in EXTRA_BAND_TOKENS.values()]
    if unknown:
        raise ConfigError(f"unknown extra band(s) {unknown}; known: b01, b05..b12")
    candidates, ignored = _expand(list(items), extra)
    for c in candidates:  # a manifest's bands the model does not take: left out, said so
        if isinstance(c, dict):
            ignored += [f"{path}: {key.upper()}, a band this model does not take"
                        for key, path in c.items()
                        if key in EXTRA_BAND_TOKENS.values() and key not in extra]
    files = [p for c in candidates for p in _sampled_files(c, extra)]  # type: ignore[arg-type]
    before = getattr(_looked, "samples", {})
    _looked.samples = _look_ahead(list(dict.fromkeys(files)))
    try:
        made = [_make_frame(c, radiometry, rgb, dn_offset, extra)  # type: ignore[arg-type]
                for c in candidates]
    finally:
        _looked.samples = before
    frames = [f for f, _ in made]
    empty = [f for f, has_data in made if not has_data]
    if empty and len(empty) == len(frames) and not any(map(_any_valid, empty)):
        raise DataError(
            f"{', '.join(str(f.paths[0]) for f in empty[:3])}"
            + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
            + ": no valid pixels (all nodata, black or NaN): nothing to super-resolve"
        )
    for f in empty:
        warnings.warn(f"{f.paths[0]}: no valid pixels seen (all nodata, black or NaN in a "
                      "decimated look): this date adds nothing", ZoomsrWarning, stacklevel=2)
    seen: dict[tuple[Path, ...], str] = {}
    for f in frames:
        if f.paths in seen:
            raise DataError(f"{f.paths[0]}: given twice")
        seen[f.paths] = f.label
    if dn_offset is not None and not any(
            x.radiometry == "dn" for f in frames for x in (f, *f.extras)):
        ignored.append(f"--dn-offset {dn_offset:g}: no input holds 16-bit digital numbers "
                       f"({', '.join(sorted({f.radiometry for f in frames}))})")
    return Discovery(frames, ignored)
