"""Which files make the frames: band tokens in names, dates, folders (SAFE products
too) and manifests."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from rasterio.enums import ColorInterp

from zoomsr.data.builder.sources import BAND_ALIASES
from zoomsr.errors import DataError
from zoomsr.inference.inputs.rasters import open_raster

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")


MANIFEST_SUFFIXES = (".txt", ".json")


RGB_BAND_TOKENS = {
    "tci": "tci", "visual": "tci", "rgb": "tci",
    "b04": "red", "b4": "red", "red": "red",
    "b03": "green", "b3": "green", "green": "green",
    "b02": "blue", "b2": "blue", "blue": "blue",
}


# Other Sentinel-2 band names: recognised so that they are ignored with a note, not misread.
_OTHER_BANDS = {
    "b01", "b1", "b05", "b5", "b06", "b6", "b07", "b7", "b08", "b8", "b8a", "b09", "b9",
    "b10", "b11", "b12", "scl", "aot", "wvp", "nir", "nir08", "nir09", "swir16", "swir22",
    "coastal", "rededge1", "rededge2", "rededge3", "cld", "snw", "msk", "classi", "b00",
}


#: Roles of the rasters that mark clouds per date, for the frame choice: L2A's scene
#: classification (SCL) and L1C's cloud mask (``MSK_CLASSI_B00``, processing baseline 04.00 on:
#: band 1 opaque clouds, band 2 cirrus, band 3 snow), found in a SAFE granule's ``QI_DATA``.
#: A date with both uses the SCL.
CLOUD_ROLES = ("scl", "msk_classi")


#: Names of the bands band-variant models take (besides TCI), as files may spell them: ESA's
#: B01..B12, and Earth Search's asset names (``nir`` is B08; ``nir08`` is B8A, not used).
EXTRA_BAND_TOKENS = {k: v for k, v in BAND_ALIASES.items()
                     if v not in ("tci", "b02", "b03", "b04", *CLOUD_ROLES)}


#: Name tokens of quick-look images that products ship beside the bands (ESA's L2A_PVI).
_PREVIEW_TOKENS = {"pvi", "preview", "thumbnail", "quicklook"}


_RESOLUTION_RE = re.compile(r"r?\d{2,3}m", re.IGNORECASE)


_TOKEN_RE = re.compile(r"[A-Za-z0-9]+")


def band_role(path: Path) -> str | None:
    """The band a file holds, from its name: ``tci`` / ``red`` / ``green`` / ``blue``, an
    extra band (``b08``...), ``scl``, ``msk_classi``, or ``other``; None if the name has no band
    token."""
    tokens = [t.lower() for t in _TOKEN_RE.findall(path.stem)]
    if "classi" in tokens:  # MSK_CLASSI_B00 (its B00 is no band)
        return "msk_classi"
    roles = [
        RGB_BAND_TOKENS.get(t) or EXTRA_BAND_TOKENS.get(t) or ("scl" if t == "scl" else None)
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
    return t in RGB_BAND_TOKENS or t in _OTHER_BANDS or t in EXTRA_BAND_TOKENS


def group_key(path: Path) -> str:
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


def is_s2naip_input(items: Sequence[str | os.PathLike[str]]) -> bool:
    """Whether ``items`` is one S2-NAIP dataset folder (chunk-layout input)."""
    # "" (an unset variable) is no folder, though Path("") is the current one
    return (len(items) == 1 and bool(str(items[0]).strip()) and Path(items[0]).is_dir()
            and is_s2naip_root(Path(items[0])))


def _read_manifest(path: Path) -> list[list[Path] | dict[str, Path]]:
    """The frames a manifest lists, its paths relative to its folder, each made absolute and
    normalised as :func:`expand` makes the command line's (``..`` removed, symlinks kept):
    the same file, reached through a manifest, the command line or another manifest, is then
    one path, which the "given twice" check and the output's tags rely on."""
    base = path.parent

    def entry(item: str, where: str) -> Path:
        # checked here, naming the manifest: a missing folder failed later as a bare
        # FileNotFoundError (listing the folder for the file's SCL and extra bands)
        found = Path(os.path.abspath(base / item))
        if not found.exists():
            raise DataError(f"{path}: {where}: {item}: not found (paths are relative to the "
                            "manifest's folder)")
        return found

    try:
        # utf-8-sig: a manifest saved by Windows' Notepad starts with a byte-order mark, which
        # became part of the first path
        text = path.read_text(encoding="utf-8-sig")
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
                entries.append([entry(item, f"frame {i}")])
            elif isinstance(item, dict) and item and all(isinstance(v, str) for v in item.values()):
                roles = {}
                for key, value in item.items():
                    k = key.lower()
                    role = RGB_BAND_TOKENS.get(k) or EXTRA_BAND_TOKENS.get(k) or (
                        k if k in CLOUD_ROLES else None)
                    if role is None:
                        raise DataError(
                            f"{path}: frame {i}: unknown band key {key!r} (use tci, or red/green/"
                            "blue or b04/b03/b02, and optionally b01..b12, scl and msk_classi)"
                        )
                    roles[role] = entry(value, f"frame {i}, {key}")
                entries.append(roles)
            else:
                raise DataError(f"{path}: frame {i} must be a path or an object of band paths")
    else:
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if line:
                files = [entry(p.strip(), f"line {number}") for p in line.split(",")
                         if p.strip()]
                if not files:
                    raise DataError(f"{path}: line {number} names no file ({line!r})")
                entries.append(files)
    if not entries:
        raise DataError(f"{path}: the manifest lists no file")
    return entries


def _is_raster(path: Path) -> bool:
    # Hidden files are no dates: a killed run's temporaries (.out.tif.XXXX.tif.tmp.gtiff.tif)
    # and macOS's AppleDouble files (._T30_TCI.tif) were read as inputs.
    return path.suffix.lower() in RASTER_SUFFIXES and not path.name.startswith(".")


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
        files = [f for d in sorted(x for x in folder.iterdir()
                                   if x.is_dir() and not x.name.startswith("."))
                 for f in of(d)]  # not .Trashes/ and the like
    return files


def zoomsr_tags(path: Path) -> dict[str, str] | None:
    """The tags of ``path`` if it is a raster zoomsr wrote (its tags name the zoomsr
    version), else None."""
    try:
        with open_raster(path) as ds:  # without rasterio's warning for a file with no georeference
            tags = ds.tags()
    except DataError:
        return None  # unreadable: reported with the reason when the frame is opened
    return tags if "zoomsr_version" in tags else None


def made_by_zoomsr(path: Path) -> bool:
    """Whether ``path`` is a raster zoomsr wrote (its tags name the zoomsr version)."""
    return zoomsr_tags(path) is not None


def _holds_a_frame(path: Path) -> bool:
    """Whether ``path`` holds 3 or more data bands (alpha not counted): such a file is a frame
    of its own whatever its name says (a labelled stack named ``stack_blue.tif``), while a
    band file with an alpha band (``gdalwarp -dstalpha``) stays a band file."""
    try:
        with open_raster(path) as ds:
            return sum(ci != ColorInterp.alpha for ci in ds.colorinterp) >= 3
    except DataError:
        return False  # unreadable: reported with the reason when its frame is opened


def expand(
    items: Sequence[str | os.PathLike[str]], extra_bands: Sequence[str] = ()
) -> tuple[list[list[Path] | dict], list[str]]:
    """Turn the user's paths into frame candidates (lists of files, or band dicts), in the
    order the inputs came (a date of band files where its first file came: ``--native-grid``
    takes the first frame's grid).

    Loose files are grouped by date (:func:`group_key`); of two files of one band and date,
    the finer resolution is kept (a SAFE product has B04 at 10, 20 and 60 m). Extra bands
    the model does not take are left out with a note. A manifest's line of one file is taken
    as that file named on the command line (its SCL and extra bands found beside it); a line
    of several files, or a JSON object of bands, is a frame as listed.
    """
    if not items:
        raise DataError("no input given (pass raster files, folders or a manifest)")
    for item in items:
        if isinstance(item, str) and not item.strip():
            # an unset shell variable ("$DIR"): as a path it is the current folder, scanned
            raise DataError(f"an empty input path ({item!r}): an unset variable? pass raster "
                            "files, folders or a manifest (. for the current folder)")
    placed: list[tuple[int, list[Path] | dict]] = []  # (place among the inputs, candidate)
    ignored: list[str] = []
    loose: list[Path] = []
    place: dict[Path, int] = {}  # each loose file's place among the inputs
    found_in_folder: set[Path] = set()

    def add_loose(f: Path) -> None:
        place.setdefault(f, len(place) + len(placed))
        loose.append(f)

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
            for f in files:
                add_loose(f)
            found_in_folder.update(files)
        elif p.suffix.lower() in MANIFEST_SUFFIXES:
            for entry in _read_manifest(p):
                if isinstance(entry, list) and len(entry) == 1:
                    add_loose(entry[0])  # as if named here
                else:
                    placed.append((len(place) + len(placed), entry))
        else:
            add_loose(p)
    seen: set[Path] = set()
    for f in loose:
        if f.resolve() in seen:
            raise DataError(f"{f}: given twice")
        seen.add(f.resolve())
    groups: dict[str, dict[str, Path]] = {}
    first: dict[str, int] = {}  # each date's first file's place
    for f in loose:
        if _PREVIEW_TOKENS & {t.lower() for t in _TOKEN_RE.findall(f.stem)}:
            ignored.append(f"{f}: a preview image, not a date")
            continue
        role = band_role(f)
        if role == "other" or (role in EXTRA_BAND_TOKENS.values() and role not in extra_bands):
            what = "a band this model takes" if role != "other" else "a red/green/blue/TCI band"
            ignored.append(f"{f}: not {what}")
            continue
        if role not in (None, "tci", "msk_classi") and _holds_a_frame(f):  # (used files only)
            role = None  # a multi-band file: a frame of its own, whatever its name says
        # An RGB raster zoomsr wrote (an earlier run's output or LR mosaic, e.g. written into
        # the input folder) is no date. Only files that would be RGB frames are opened here.
        if role in (None, "tci") and made_by_zoomsr(f):
            if f not in found_in_folder:
                raise DataError(f"{f}: a zoomsr output (super-resolved or LR mosaic), not a "
                                "Sentinel-2 date")
            ignored.append(f"{f}: a zoomsr output, not a date")
            continue
        if role is None:
            placed.append((place[f], [f]))
            continue
        first[group_key(f)] = min(first.get(group_key(f), place[f]), place[f])
        slot = groups.setdefault(group_key(f), {})
        if role in slot:
            a, b = _resolution_m(f), _resolution_m(slot[role])
            if a == b:
                raise DataError(f"{f}: two {role} files for the same date (also {slot[role]})")
            keep, drop = (f, slot[role]) if a < b else (slot[role], f)
            ignored.append(f"{drop}: {role} also at a finer resolution ({keep.name}), used")
            f = keep
        slot[role] = f
    aux = {*CLOUD_ROLES, *extra_bands}
    for key, slot in groups.items():
        if any(f not in found_in_folder for f in slot.values()):
            _add_siblings(key, slot, aux)  # named files: their date's other bands beside them
        if not set(CLOUD_ROLES) & set(slot):
            _add_granule_mask(slot)
        extras = {r: f for r, f in slot.items() if r in aux}
        if "tci" in slot:
            for role, f in slot.items():
                if role in ("red", "green", "blue"):
                    ignored.append(f"{f}: same date as {slot['tci'].name}, which is used")
            placed.append((first[key], {"tci": slot["tci"], **extras}))
        elif {"red", "green", "blue"} <= set(slot):
            placed.append((first[key], slot))
        elif set(slot) <= aux:
            raise DataError(
                f"{_listed(slot)}: without a TCI or B04/B03/B02 file of the same date (files "
                "of one date must share their name but for the band token)"
            )
        else:
            missing = sorted({"red", "green", "blue"} - set(slot))
            raise DataError(
                f"{_listed(slot)}: band files of one date lack {', '.join(missing)} (need B04, "
                "B03, B02 or a TCI file)"
            )
    placed.sort(key=lambda x: x[0])  # (stable: a date's files keep their order)
    return [c for _, c in placed], ignored


def _listed(slot: dict[str, Path]) -> str:
    """The files of one date, for a message: real paths (the date's name, its group key,
    names no file)."""
    return ", ".join(map(str, sorted(slot.values())))


def _add_granule_mask(slot: dict[str, Path]) -> None:
    """Add to ``slot`` (the files of one date) the cloud mask of their SAFE granule
    (``GRANULE/<granule>/QI_DATA/MSK_CLASSI_B00.jp2``), if it has one."""
    for f in slot.values():
        for d in (f.parent, f.parent.parent):  # IMG_DATA/ (L1C) or IMG_DATA/R10m/ (L2A)
            if d.name == "IMG_DATA":
                masks = sorted(x for x in (d.parent / "QI_DATA").glob("*")
                               if _is_raster(x) and band_role(x) == "msk_classi")
                if masks:
                    slot["msk_classi"] = masks[0]
                return


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
            role = band_role(f)
            if role in roles and role not in slot and group_key(f) == key and (
                    role not in found or _resolution_m(f) < _resolution_m(found[role])) and (
                    role == "msk_classi" or not _holds_a_frame(f)):  # the mask has 3 bands
                found[role] = f
    slot.update(found)
