"""What Sentinel-2 file names and metadata say: the band a file holds (band tokens and
aliases), the resolution in ESA's names, the product level and processing baseline, the
SAFE metadata and STAC item beside the files, and the DN offset they imply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from zoomsr.data.builder.dates import parse_datetime
from zoomsr.data.builder.rasters import RASTER_SUFFIXES
from zoomsr.errors import DataError

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
_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})(?=[_.]|$)")
_LEVEL_IN_NAME = re.compile(r"(?:MSI)?(L1C|L2A)", re.IGNORECASE)


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


#: A date in a file name (YYYYMMDD, as in ESA's and most providers' names).
_DATE_IN_NAME = re.compile(r"(?<!\d)(20\d{2}[01]\d[0-3]\d)(?!\d)")


def stac_item_for(paths: Sequence[str | Path]) -> dict | None:
    """The STAC item (a ``type: Feature`` JSON) beside ``paths`` (files of one date in one
    folder) that describes them, or None.

    In a folder of several dates' items, the item whose assets name one of the files wins;
    else the folder's only item (a per-date folder of band COGs, as Earth Search serves
    them), unless the files' names hold a date (YYYYMMDD) and not the item's: another date's
    files in the same folder must not take its datetime, processing baseline and DN offset.
    """
    files = [Path(p) for p in paths]
    if not files:
        return None
    items = []
    for candidate in sorted(files[0].parent.glob("*.json")):
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if (isinstance(data, dict) and data.get("type") == "Feature"
                and isinstance(data.get("properties"), dict)):
            items.append(data)
    names = {f.name for f in files}
    for item in items:
        assets = item.get("assets")
        hrefs = [a.get("href", "") for a in assets.values() if isinstance(a, dict)] \
            if isinstance(assets, dict) else []
        # (a signed URL's query, Planetary Computer's ?st=...&sig=..., is not its name)
        if any(urlsplit(str(h)).path.rsplit("/", 1)[-1] in names for h in hrefs):
            return item
    if len(items) != 1:
        return None
    day = re.sub(r"\D", "", str(items[0]["properties"].get("datetime", "")))[:8]
    dates = {d for f in files for d in _DATE_IN_NAME.findall(f.stem)}
    return items[0] if not dates or not day or day in dates else None


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


def _resolution_m(name: str) -> int | None:
    """The pixel size in ESA's band file names (``..._B02_20m.jp2`` -> 20)."""
    found = re.search(r"_(10|20|60)m\.[A-Za-z0-9]+$", name)
    return int(found.group(1)) if found else None


__all__ = ["BAND_ALIASES", "SCENE_BANDS", "band_of_file", "default_dn_offset",
           "stac_item_for", "stac_item_radiometry"]
