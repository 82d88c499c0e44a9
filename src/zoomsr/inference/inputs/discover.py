"""Frames from the files found: each date's RGB (a TCI, a multi-band file or three band
files), its extra bands and SCL, checked; :func:`discover_frames` is the entry point."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags

from zoomsr.errors import ConfigError, DataError, ZoomsrWarning
from zoomsr.inference.inputs import rasters
from zoomsr.inference.inputs.files import (
    CLOUD_ROLES,
    EXTRA_BAND_TOKENS,
    RGB_BAND_TOKENS,
    band_role,
    expand,
    group_key,
)
from zoomsr.inference.inputs.frame import AuxBand, Discovery, Frame, footprint
from zoomsr.inference.inputs.metadata import NoOffsetError, dn_offset_of, product_metadata
from zoomsr.inference.inputs.radiometry import (
    check_dn_offset,
    check_values,
    radiometry_for,
    unsupported_dtype,
)
from zoomsr.inference.inputs.rasters import any_valid, check_readable, open_raster


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
        hits = [i + 1 for i, n in enumerate(names) if n and RGB_BAND_TOKENS.get(n) == role]
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
    dtype = np.dtype(ds.dtypes[0])
    if dtype.name not in ("uint16", "int16") and dtype.kind != "f":  # the first thing to fix
        raise unsupported_dtype(path, dtype.name)
    raise DataError(
        f"{path}: {ds.count} bands without red/green/blue labels; pass --rgb-bands R,G,B "
        "(1-based band numbers)"
    )


def _unused_labelled_bands(frames: Sequence[Frame], extra: Sequence[str]) -> list[str]:
    """One note per multi-band file holding labelled bands the model does not take (a B08
    in an RGB model's stack was left out silently, where a B08 file of its own is said)."""
    notes = []
    for f in frames:
        if len(f.paths) != 1:
            continue
        with open_raster(f.paths[0]) as ds:
            names = _labelled_bands(ds)
        unused = [f"{n.upper()} (band {i})" for i, n in enumerate(names, 1)
                  if n is not None and n not in extra and i not in f.bands]
        if unused:
            notes.append(f"{f.paths[0]}: {', '.join(unused)}, a band this model does not "
                         "take")
    return notes


def _labelled_bands(ds: rasterio.DatasetReader) -> list[str | None]:
    """The extra band each band of ``ds`` holds by its description (``B08``, ``nir``...), or
    None for the others."""
    return [EXTRA_BAND_TOKENS.get((d or "").lower()) for d in ds.descriptions]


def _not_found(path: Path) -> str:
    """Why the raster ``path`` cannot be read as one: a folder of that name, or nothing."""
    return "is a folder, not a raster file" if path.is_dir() else "file not found"


def _aux_band(name: str, path: Path, ds: rasterio.DatasetReader, band: int,
              dn_offset: float | None, frame: Frame, radiometry: str = "auto") -> AuxBand:
    """Describe band ``band`` of ``ds`` as the extra band or cloud layer ``name`` of
    ``frame``.

    ``radiometry``: the user's choice; ``dn`` and ``reflectance`` apply to extra bands too
    (``tci`` describes 8-bit RGB only, so extra bands are then detected).
    """
    if path != frame.paths[0]:  # a file of its own: the same granule as the frame's RGB
        tol = max(abs(ds.transform.a), abs(ds.transform.e), *map(abs, frame.resolution))
        box = footprint(ds.transform, ds.width, ds.height)
        off = max(abs(a - b) for a, b in zip(box, frame.bounds, strict=True))
        if ds.crs != frame.crs or off > tol:
            raise DataError(
                f"{path}: {name.upper()} does not cover the same area as {frame.paths[0].name} "
                f"({ds.crs} {tuple(round(v, 1) for v in box)} vs {frame.crs} "
                f"{tuple(round(v, 1) for v in frame.bounds)}); the bands of one date must come "
                "from one product"
            )
    dtype = ds.dtypes[band - 1]
    if name == "scl":
        if dtype != "uint8":
            raise DataError(f"{path}: SCL must be 8-bit scene classes, found {dtype}")
        radiometry, offset = "classes", 0.0
    elif name == "msk_classi":
        if dtype != "uint8" or ds.count < 2:
            raise DataError(
                f"{path}: MSK_CLASSI must be an 8-bit cloud mask with opaque and cirrus bands "
                f"(band 1, 2), found {ds.count} band(s) of {dtype}")
        radiometry, offset = "classes", 0.0
    else:
        if dtype == "uint8":
            raise DataError(
                f"{path}: band {name} is 8-bit; extra bands must be 16-bit digital numbers or "
                "float reflectance"
            )
        choice = radiometry if radiometry in ("dn", "reflectance") else "auto"
        radiometry = radiometry_for(path, dtype, choice, rasters.decimated_look(ds, band))
        offset = 0.0
        if radiometry == "dn":
            try:
                offset = dn_offset_of(path, ds.tags(), dn_offset, dtype, choice)[0]
            except NoOffsetError:
                if frame.radiometry != "dn":
                    raise
                offset = frame.dn_offset  # same product as the frame's own DN bands
    return AuxBand(name=name, path=path, band=band, radiometry=radiometry, dn_offset=offset,
                   dtype=dtype, crs=ds.crs, transform=ds.transform, width=ds.width,
                   height=ds.height, nodata=ds.nodata)


def _attach_aux(frame: Frame, aux: dict[str, Path], extra_bands: Sequence[str],
                dn_offset: float | None, radiometry: str = "auto") -> Frame:
    """``frame`` with its extra bands (every one of ``extra_bands``) and its cloud layer (SCL,
    else MSK_CLASSI), if any."""
    extras = []
    for name in extra_bands:
        if name in aux:
            path = aux[name]
            if not path.is_file():
                raise DataError(f"{path}: {_not_found(path)}")
            with open_raster(path) as ds:
                check_readable(ds, path)
                # its band 1 was taken, whatever the others were (an alpha band, gdalwarp
                # -dstalpha's, is the file's mask: not a band of values)
                values = [c for c in ds.colorinterp if c != ColorInterp.alpha]
                if len(values) != 1:
                    raise DataError(
                        f"{path}: {len(values)} bands in a {name.upper()} file; expected that one "
                        f"band (a stack of bands is given as the frame, each band labelled "
                        f"in its description, e.g. {name.upper()})")
                extras.append(_aux_band(name, path, ds, 1, dn_offset, frame, radiometry))
            continue
        if len(frame.paths) == 1:  # a multi-band file may hold it, labelled
            with open_raster(frame.paths[0]) as ds:
                names = _labelled_bands(ds)
                if name in names:
                    extras.append(_aux_band(name, frame.paths[0], ds, names.index(name) + 1,
                                            dn_offset, frame, radiometry))
                    continue
        date = Path(group_key(frame.paths[0])).name
        beside = f"{date}_{name.upper()}.tif" if date else f"{name.upper()}.tif"
        raise DataError(
            f"{frame.paths[0]}: no {name.upper()} for this date, which the model needs (bands "
            f"tci,{','.join(extra_bands)}); put it beside as e.g. {beside}, or "
            f'use a JSON manifest [{{"tci": ..., "{name}": ...}}, ...]'
        )
    clouds = None
    role = next((r for r in CLOUD_ROLES if r in aux), None)
    if role is not None:
        with open_raster(aux[role]) as ds:
            check_readable(ds, aux[role])
            # decodes it all (without overviews): a damaged tile fails now
            look = rasters.decimated_look(ds, 1)
            clouds = _aux_band(role, aux[role], ds, 1, None, frame)
            top = int(look.max()) if look.size else 0
            if role == "scl" and top > 11:  # else every pixel counted clear, silently
                raise DataError(f"{aux[role]}: values up to {top}: not an SCL (scene classes "
                                "0-11)")
    return dataclasses.replace(frame, extras=tuple(extras), clouds=clouds)


def _with_roles(candidate: list[Path] | dict[str, Path]) -> list[Path] | dict[str, Path]:
    """Several files of one date as a dict by band role (red, green, blue, tci, scl, b08...)
    when each has a distinct one; else as given."""
    if isinstance(candidate, list) and len(candidate) > 1:
        roles = [band_role(p) for p in candidate]
        if None not in roles and "other" not in roles and len(set(roles)) == len(roles):
            return dict(zip(roles, candidate, strict=True))  # type: ignore[arg-type]
    return candidate


def _sampled_files(candidate: list[Path] | dict[str, Path],
                   extra_bands: Sequence[str]) -> list[Path]:
    """The files of ``candidate`` that discovery takes a decimated look at: its TCI or red,
    green and blue files (as :func:`_rgb_frame` picks them), the extra bands the model takes
    and the cloud layers (not bands the model does not take)."""
    c = _with_roles(candidate)
    aux = [c[b] for b in (*extra_bands, *CLOUD_ROLES) if b in c] if isinstance(c, dict) else []
    return [*_rgb_files(c), *aux]


def _rgb_part(candidate: list[Path] | dict[str, Path]) -> list[Path] | dict[str, Path]:
    """The files :func:`_rgb_frame` reads: a TCI (it wins over band files), else the red,
    green and blue files (a list of three is taken in that order), else ``candidate``."""
    if isinstance(candidate, dict) and "tci" in candidate:
        return [candidate["tci"]]
    if isinstance(candidate, list) and len(candidate) == 3:
        return {"red": candidate[0], "green": candidate[1], "blue": candidate[2]}
    return candidate


def _rgb_files(candidate: list[Path] | dict[str, Path]) -> tuple[Path, ...]:
    """The files of ``candidate``'s RGB (its frame's ``paths``: a TCI, or red, green, blue;
    of a candidate without either, its files: it fails when its frame is made)."""
    rgb = _rgb_part(_with_roles(candidate))
    if not isinstance(rgb, dict):
        return tuple(rgb)
    return tuple(rgb[k] for k in ("red", "green", "blue") if k in rgb) or tuple(rgb.values())


def _make_frame(
    candidate: list[Path] | dict[str, Path],
    radiometry: str,
    rgb_bands: tuple[int, int, int] | None,
    dn_offset: float | None,
    extra_bands: Sequence[str] = (),
) -> tuple[Frame, bool]:
    """One frame: its RGB (or TCI) part, then its extra bands and cloud layer; and whether a
    decimated look at its RGB found valid pixels."""
    candidate = _with_roles(candidate)
    aux: dict[str, Path] = {}
    if isinstance(candidate, dict):
        aux = {k: v for k, v in candidate.items()
               if k in CLOUD_ROLES or k in EXTRA_BAND_TOKENS.values()}
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
            raise DataError(f"{path}: {_not_found(path)}")
        with open_raster(path) as ds:
            if ds.count < 3:
                raise DataError(
                    f"{path}: {ds.count} band(s); expected a 3-band RGB/TCI raster, or band "
                    "files named B04, B03, B02 (one date per set)"
                )
            check_readable(ds, path)
            bands = _rgb_indexes(ds, path, rgb_bands)
            dtype = ds.dtypes[bands[0] - 1]
            if len({ds.dtypes[b - 1] for b in bands}) != 1:
                raise DataError(f"{path}: red, green and blue bands have different data types")
            sample = rasters.decimated_look(ds, bands)
            rad = radiometry_for(path, dtype, radiometry, sample)
            has_data = check_values(path, sample, rad, radiometry, ds.nodata)
            tags = ds.tags()
            offset, level = (
                dn_offset_of(path, tags, dn_offset, dtype, radiometry) if rad == "dn"
                else (0.0, None)
            )
            if rad == "tci":
                level = product_metadata(path, tags).level
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
            raise DataError(f"{path}: {_not_found(path)}")
        with open_raster(path) as ds:
            check_readable(ds, path)
            infos.append((ds.crs, ds.transform, ds.width, ds.height, ds.dtypes[0], ds.nodata,
                          ds.tags(), rasters.decimated_look(ds, 1)))
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
    rad = radiometry_for(paths[0], dtype, radiometry, sample)
    if rad == "tci":
        raise DataError(
            f"{paths[0]}: 8-bit single-band files are not Sentinel-2 band data; pass the TCI "
            "file instead"
        )
    has_data = check_values(paths[0], sample, rad, radiometry, nodata, paths)
    offset, level = (dn_offset_of(paths[0], tags, dn_offset, dtype, radiometry) if rad == "dn"
                     else (0.0, None))
    label = "+".join(p.name for p in paths)
    return Frame(
        label=label, paths=paths, bands=(1, 1, 1), radiometry=rad, dn_offset=offset,
        dtype=dtype, crs=crs, transform=transform, width=width, height=height, nodata=nodata,
        level=level,
    ), has_data


def parse_rgb_bands(value: object) -> tuple[int, int, int] | None:
    """``rgb_bands`` (``--rgb-bands``) as three 1-based band numbers: ``"3,2,1"``, or three
    integers (NumPy's, or whole floats, too); None stays None."""
    if value is None:
        return None
    items: list[object] = []
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, Iterable):
        items = list(value)
    out: list[int] = []
    for v in items:
        try:
            number: Any = float(v) if isinstance(v, str) else v  # (TypeError: refused)
            if isinstance(number, bool) or float(number) != int(number):
                break
            out.append(int(number))
        except (TypeError, ValueError, OverflowError):
            break
    if len(out) != 3 or len(items) != 3 or min(out) < 1:
        raise ConfigError(f"rgb_bands (--rgb-bands) needs three band numbers >= 1 (R,G,B), "
                          f"got {value!r}")
    return out[0], out[1], out[2]


def discover_frames(
    items: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    radiometry: str = "auto",
    rgb_bands: Iterable[int] | str | None = None,
    dn_offset: float | None = None,
    extra_bands: Sequence[str] | str = (),
) -> Discovery:
    """Find the frames (dates) among files, folders and manifests, and validate each.

    Args:
        items: raster files, folders of rasters (or of one sub-folder per date), manifests.
        radiometry: ``auto`` (from the data type and metadata), ``tci``, ``dn`` (16-bit
            digital numbers, reflectance x 10000) or ``reflectance`` (float in [0, 1]).
        rgb_bands: 1-based band numbers of red, green, blue in multi-band files (or
            ``"3,2,1"``).
        dn_offset: DN offset to remove (0 or 1000); ``None`` reads it from the metadata.
        extra_bands: bands besides TCI that the model takes (``("b08",)``, ``"b08,b05"``,
            any case), which every frame must have.

    Raises :class:`DataError` naming the file for a missing, corrupt or unusable input.
    """
    if isinstance(items, (str, os.PathLike)):
        items = [items]
    rgb = parse_rgb_bands(rgb_bands)
    check_dn_offset(dn_offset)
    # "b08", "B08,B05" or ("B08",), as the dataset and build_inference_model take bands
    parts = extra_bands.split(",") if isinstance(extra_bands, str) else list(extra_bands)
    extra = tuple(str(b).strip().lower() for b in parts if str(b).strip())
    unknown = [b for b in extra if b not in EXTRA_BAND_TOKENS.values()]
    if unknown:
        raise ConfigError(f"unknown extra band(s) {unknown}; known: b01, b05..b12")
    candidates, ignored = expand(list(items), extra)
    if not candidates:  # every file set aside: say why (the reasons were printed only after
        # a run, so the user saw a bare "no input frames")
        raise DataError("no Sentinel-2 date among the inputs: " + "; ".join(ignored[:2])
                        + (f" (and {len(ignored) - 2} more set aside)" if len(ignored) > 2
                           else ""))
    for c in candidates:  # a manifest's bands the model does not take: left out, said so
        if isinstance(c, dict):
            ignored += [f"{path}: {key.upper()}, a band this model does not take"
                        for key, path in c.items()
                        if key in EXTRA_BAND_TOKENS.values() and key not in extra]
    # Before any file is read: a date given twice fails at once, not after every date's
    # look. Paths are absolute and normalised (expand, manifests); resolved here too, as
    # expand's check of loose files does, so a date reached through a symlink is also caught.
    seen: set[tuple[Path, ...]] = set()
    for c in candidates:
        key = tuple(p.resolve() for p in _rgb_files(c))
        if key in seen:
            raise DataError(f"{_rgb_files(c)[0]}: given twice")
        seen.add(key)
    files = [p for c in candidates for p in _sampled_files(c, extra)]
    before = getattr(rasters.looked, "samples", {})
    rasters.looked.samples = rasters.look_ahead(list(dict.fromkeys(files)))
    try:
        made = [_make_frame(c, radiometry, rgb, dn_offset, extra)
                for c in candidates]
    finally:
        rasters.looked.samples = before
    frames = [f for f, _ in made]
    ignored += _unused_labelled_bands(frames, extra)
    empty = [f for f, has_data in made if not has_data]
    if empty and len(empty) == len(frames) and not any(map(any_valid, empty)):
        raise DataError(
            f"{', '.join(str(f.paths[0]) for f in empty[:3])}"
            + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
            + ": no valid pixels (all nodata, black or NaN): nothing to super-resolve"
        )
    for f in empty:
        warnings.warn(f"{f.paths[0]}: no valid pixels seen (all nodata, black or NaN in a "
                      "decimated look): this date adds nothing", ZoomsrWarning, stacklevel=2)
    if dn_offset is not None and not any(
            x.radiometry == "dn" for f in frames
            for x in cast("tuple[Frame | AuxBand, ...]", (f, *f.extras))):
        ignored.append(f"--dn-offset {dn_offset:g}: no input holds 16-bit digital numbers "
                       f"({', '.join(sorted({f.radiometry for f in frames}))})")
    return Discovery(frames, ignored, empty=list(empty))
