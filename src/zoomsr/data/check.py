"""``zoomsr data check``: find every problem in an S2-NAIP dataset folder."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from zoomsr.data.bands import BANDS, normalize_band
from zoomsr.data.layout import (
    HR_FILE,
    METADATA_FILE,
    NAIP_DIR,
    OLD_NAIP_DIR,
    S2_DIR,
    PairRecord,
    dataset_scale,
    not_a_file,
    read_band_series,
    read_hr,
    require_dataset_root,
    unfinished_build,
)
from zoomsr.data.selection import valid_frames
from zoomsr.errors import DataError, ZoomsrWarning
from zoomsr.grid import LR_PIXELS, Tile
from zoomsr.progress import track

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding: the file or folder concerned and what is wrong with it."""

    path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`."""

    root: Path
    n_pairs: int = 0
    n_tiles: int = 0
    problems: list[Problem] = field(default_factory=list)
    scale: int = 4  # the scale the NAIP images were checked against

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def _tile_problem(name: str) -> str | None:
    """Why folder ``name`` is not a tile id (not ``{col}_{row}``, leading zeros, outside the
    zoom-17 grid), or None when it is one."""
    try:
        Tile.parse(name)
    except ValueError as exc:
        return f"folder name: {exc}"
    return None


def _problem_from(exc: DataError, fallback: Path) -> Problem:
    # DataError messages start with the path; keep them whole but avoid printing it twice.
    text = str(exc)
    prefix = f"{fallback}: "
    return Problem(str(fallback), text[len(prefix):] if text.startswith(prefix) else text)


def check_dataset(
    root: str | os.PathLike[str],
    bands: tuple[str, ...] | None = None,
    scale: int | None = None,
    progress: bool = False,
) -> CheckReport:
    """Check every pair and Sentinel-2 series under ``root``; collect, never stop at, problems.

    NAIP images must be ``32*scale`` px; ``scale`` defaults to the one the dataset records in
    ``zoomsr_dataset.json`` (``data build --scale``), else 4; a given ``scale`` that differs
    from the recorded one is used, with a warning (:func:`~zoomsr.data.layout.dataset_scale`).

    Errors: unreadable/corrupt files, wrong shapes, dtypes or channel counts, missing
    ``rgb.png`` or ``tci.png``, missing requested ``bands``, time-series lengths that differ
    between bands, folder names that are not tile ids, an unfinished ``zoomsr data build``
    (its state folder without its index), unreadable or wrongly sized older NAIP images in
    ``old_naip/{tile}/``. Warnings: NAIP images with black pixels (readers skip them), series
    with no valid time step, unknown files (a pair's folder holds only ``rgb.png``),
    Sentinel-2 tiles and older NAIP images with no pair. Raises :class:`DataError` only if
    ``root`` is not a dataset at all, and :class:`~zoomsr.errors.ConfigError` for a
    ``scale`` < 1.
    """
    r = require_dataset_root(root)
    with warnings.catch_warnings(record=True) as said:  # a scale other than the recorded one
        warnings.simplefilter("always", ZoomsrWarning)
        scale = dataset_scale(r, scale)
    report = CheckReport(r, scale=scale)
    add = report.problems.append
    for w in said:  # in the report (counted; --strict fails on it), not beside it
        if issubclass(w.category, ZoomsrWarning):
            add(Problem(str(r / METADATA_FILE), str(w.message), "warning"))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    hr_size = LR_PIXELS * scale
    unfinished = unfinished_build(r)
    if unfinished:  # pairs may be missing and series half-written
        add(Problem(str(r), unfinished))

    # NAIP side: naip/{image_id}/{tile}/rgb.png
    pair_tiles: set[str] = set()
    hr_files: list[tuple[Path, str, str]] = []
    for image in sorted((r / NAIP_DIR).iterdir()):
        if not image.is_dir():
            add(Problem(str(image), "unexpected file in naip/ (expected image-id folders)",
                        "warning"))
            continue
        for tile_dir in sorted(image.iterdir()):
            if not tile_dir.is_dir():
                add(Problem(str(tile_dir), "unexpected file (expected tile folders)", "warning"))
            elif why := _tile_problem(tile_dir.name):
                add(Problem(str(tile_dir), why))
            elif not (tile_dir / HR_FILE).is_file():
                add(Problem(str(tile_dir / HR_FILE), not_a_file(tile_dir / HR_FILE)))
            else:
                hr_files.append((tile_dir / HR_FILE, image.name, tile_dir.name))
                pair_tiles.add(tile_dir.name)
            if tile_dir.is_dir():
                for other in sorted(p for p in tile_dir.iterdir() if p.name != HR_FILE):
                    add(Problem(str(other), f"unexpected in a pair's folder (expected only "
                                            f"{HR_FILE})", "warning"))
    report.n_pairs = len(hr_files)
    if not hr_files:
        add(Problem(str(r / NAIP_DIR), f"no pairs (no {{image_id}}/{{tile}}/{HR_FILE} files)"))

    for path, _, _ in track(hr_files, "checking NAIP", enabled=progress):
        try:
            hr = read_hr(path, hr_size)
        except DataError as exc:
            add(_problem_from(exc, path))
            continue
        if (~hr.any(axis=-1)).any():
            add(Problem(str(path), "has black pixels (readers skip this pair)", "warning"))

    # Sentinel-2 side: sentinel2/{tile}/{band}.png
    s2_root = r / S2_DIR
    s2_tiles = {d.name for d in s2_root.iterdir() if d.is_dir()}
    for extra in sorted(p for p in s2_root.iterdir() if not p.is_dir()):
        add(Problem(str(extra), "unexpected file in sentinel2/ (expected tile folders)",
                    "warning"))
    for name in sorted(s2_tiles - pair_tiles):
        if why := _tile_problem(name):
            add(Problem(str(s2_root / name), why))
        else:
            add(Problem(str(s2_root / name), "Sentinel-2 series with no NAIP image", "warning"))
    report.n_tiles = len(pair_tiles)
    for tile in track(sorted(pair_tiles), "checking Sentinel-2", enabled=progress):
        _check_series(PairRecord(r, "", tile), bands, add)
    _check_old_naip(r / OLD_NAIP_DIR, pair_tiles, hr_size, add)
    return report


def _check_old_naip(folder: Path, pair_tiles: set[str], hr_size: int, add) -> None:
    """``old_naip/{tile}/*.png`` (optional): older NAIP images, each like ``rgb.png``."""
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir():
            add(Problem(str(entry), "unexpected file in old_naip/ (expected tile folders)",
                        "warning"))
            continue
        if why := _tile_problem(entry.name):
            add(Problem(str(entry), why))
            continue
        if entry.name not in pair_tiles:
            add(Problem(str(entry), "older NAIP images of a tile with no pair", "warning"))
        for path in sorted(entry.iterdir()):
            if not path.is_file() or path.suffix != ".png":
                add(Problem(str(path), "unexpected (expected older NAIP images, *.png)",
                            "warning"))
                continue
            try:
                read_hr(path, hr_size)
            except DataError as exc:
                add(_problem_from(exc, path))


def _check_series(record: PairRecord, bands: tuple[str, ...] | None, add) -> None:
    folder = record.s2_dir
    if not folder.is_dir():
        add(Problem(str(folder), f"missing: no Sentinel-2 series for tile {record.tile}"))
        return
    entries = sorted(folder.iterdir())
    files = {p.stem: p for p in entries if p.is_file() and p.suffix == ".png"}
    for other in (p for p in entries if p not in files.values()):
        if other.suffix == ".png" and other.stem in BANDS:  # a band's name, but no file
            add(Problem(str(other), not_a_file(other)))
        else:
            add(Problem(str(other), "unexpected file (expected {band}.png)", "warning"))
    required = ("tci",) + tuple(b for b in (bands or ()) if b != "tci")
    for band in required:
        if not os.path.lexists(record.band_path(band)):  # else reported above
            add(Problem(str(record.band_path(band)), f"band {band} missing"))
    lengths: dict[str, int] = {}
    for band, path in sorted(files.items()):
        if band not in BANDS:
            add(Problem(str(path), f"unknown band name (known: {', '.join(BANDS)})", "warning"))
            continue
        try:
            series = read_band_series(path, band)
            normalize_band(series[:1], band, path)  # dtype check
        except DataError as exc:
            add(_problem_from(exc, path))
            continue
        lengths[band] = series.shape[0]
        if band == "tci" and not valid_frames(series).any():
            add(Problem(str(path), "every time step has black pixels (no valid input)",
                        "warning"))
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{b}={t}" for b, t in sorted(lengths.items()))
        add(Problem(str(folder), f"bands have different numbers of time steps ({detail})"))


__all__ = ["CheckReport", "Problem", "check_dataset"]
