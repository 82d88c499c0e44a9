"""Manifests: the JSON lists of Sentinel-2 scenes and high-res images that
``zoomsr data search`` writes (:func:`write_manifest`) and ``zoomsr data build
--manifest`` reads (:func:`read_manifest`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, overload

from zoomsr.data.builder.dates import parse_datetime
from zoomsr.data.builder.discover import (
    _hr_image,
    _safe_image_id,
    _scene_from_files,
    _unique_ids,
    _validate_scene_files,
    unique_highres,
)
from zoomsr.data.builder.rasters import is_remote
from zoomsr.data.builder.s2_names import BAND_ALIASES
from zoomsr.data.builder.scenes import Sources
from zoomsr.errors import DataError

MANIFEST_FORMAT = "zoomsr-manifest"


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


def read_manifest(path: str | os.PathLike[str]) -> Sources:
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


__all__ = ["MANIFEST_FORMAT", "read_manifest", "write_manifest"]
