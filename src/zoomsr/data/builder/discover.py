"""Finding the builder's inputs in files and folders: Sentinel-2 scenes (SAFE folders and
loose band files, grouped into scenes) and high-resolution images, each file opened and
checked once, and every file and id used once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from zoomsr.data.builder.dates import _date_from_tags, date_from_name
from zoomsr.data.builder.rasters import RASTER_SUFFIXES, is_remote, raster_footprint
from zoomsr.data.builder.s2_names import (
    _baseline_from_name,
    _level_from_name,
    _read_safe_metadata,
    _resolution_m,
    band_of_file,
    default_dn_offset,
    stac_item_for,
    stac_item_radiometry,
)
from zoomsr.data.builder.scenes import HRImage, S2Scene
from zoomsr.errors import DataError, ZoomsrWarning


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
        item = stac_item_for(list(files.values()))  # this date's, in a folder of several
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


__all__ = ["discover_highres", "discover_sentinel2", "unique_highres"]
