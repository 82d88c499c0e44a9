"""Inference on the S2-NAIP chunk layout (``ROOT/sentinel2/{tile}/tci.png``), georeferenced.

Each tile id ``{col}_{row}`` is a zoom-17 Web-Mercator tile, which gives the chunk's place: the
output is one GeoTIFF in EPSG:3857 at 2.389 m (a x4 model's) covering the tiles' bounding box
(tiles that are absent are nodata). Each tile holds its own time series, whose dates differ from its
neighbours', so tiles are super-resolved independently, 32 x 32 px chunks as the model was
trained on (the reference's ``infer`` / ``infer_grid``), with the frames chosen per tile as in
the scene pipeline. Rows of tiles are written as they finish; ``resume`` works as for scenes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

import numpy as np
from rasterio.crs import CRS

from zoomsr import grid as tiles
from zoomsr.data.bands import normalize_band
from zoomsr.data.layout import S2_DIR, read_band_series
from zoomsr.errors import DataError, InputError, ZoomsrWarning
from zoomsr.inference.assemble import to_uint8, upsample_mask, with_mask
from zoomsr.inference.frames import choose_frames, count_clean, fill_gaps, frame_scores
from zoomsr.inference.grid import TargetGrid
from zoomsr.inference.model import InferenceModel
from zoomsr.inference.options import (
    InferenceOptions,
    InferenceResult,
    RowCallback,
    default_batch_size,
)
from zoomsr.inference.pipeline import check_output, writing
from zoomsr.inference.progress import progress_bar
from zoomsr.inference.run_record import model_tags
from zoomsr.inference.side_outputs import side_outputs_tag, write_side_outputs
from zoomsr.inference.writer import PartialRun
from zoomsr.io.geotiff import write_geotiff


def scan_tiles(root: Path, warn: bool = True) -> dict[tiles.Tile, Path]:
    """``tile -> sentinel2/{tile}/tci.png`` for every tile folder with a TCI series; with
    ``warn``, the folders left out are named in a warning (once a run: the run's digest of
    its inputs scans them too)."""
    found: dict[tiles.Tile, Path] = {}
    without: list[Path] = []
    others: list[Path] = []
    for folder in sorted((root / S2_DIR).iterdir()):
        if not folder.is_dir() or not re.fullmatch(r"\d+_\d+", folder.name):
            if folder.is_dir() and not folder.name.startswith("."):
                others.append(folder)  # (a misnamed tile: `zoomsr data check` lists them)
            continue
        try:
            tile = tiles.Tile.parse(folder.name)
        except InputError as exc:  # e.g. a zoom-18 id: the dataset is not at zoom 17
            raise DataError(f"{folder}: {exc}") from None
        if (folder / "tci.png").is_file():
            found[tile] = folder / "tci.png"
        else:
            without.append(folder)
    if others and warn:
        warnings.warn(f"{others[0]}: not a tile folder (named {{col}}_{{row}}), so no output "
                      "from it" + (f" (nor from {len(others) - 1} other folder(s))"
                                   if len(others) > 1 else ""), ZoomsrWarning, stacklevel=2)
    if without and warn:
        warnings.warn(f"{without[0]}: no tci.png, so no output there"
                      + (f" (nor in {len(without) - 1} other tile folder(s))"
                         if len(without) > 1 else ""), ZoomsrWarning, stacklevel=2)
    if not found:
        raise DataError(f"{root}: no sentinel2/{{col}}_{{row}}/tci.png found")
    return found


def _tile_pixels(tci_path: Path, tci: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    """``[T, C, 32, 32]`` model inputs of one tile: TCI / 255, then each extra band's series
    (``{band}.png`` beside ``tci.png``) / 8160, as in training."""
    parts = [normalize_band(tci, "tci", tci_path)]
    for band in bands[1:]:
        path = tci_path.with_name(f"{band}.png")
        if not path.is_file():  # (removed since the run's check)
            raise _missing_band(path, bands)
        series = read_band_series(path, band)
        if series.shape[0] != tci.shape[0]:
            raise DataError(f"{path}: {series.shape[0]} time steps, tci.png has {tci.shape[0]}")
        parts.append(normalize_band(series, band, path))
    return np.moveaxis(np.concatenate(parts, axis=-1), -1, 1)


#: A chunk mosaic's raw file above this (bytes) is refused when the tiles cover under a
#: quarter of their bounding box.
MAX_SPARSE_BYTES = 16 * 2**30


def inputs_digest(root: str | os.PathLike[str], bands: Sequence[str]) -> str:
    """``"N files, sha256 ..."`` of the path, size and modification time of every
    ``sentinel2/{tile}/{band}.png`` a run of ``bands`` reads under ``root``: the
    ``zoomsr_input_digest`` tag, by which ``--resume`` tells tiles changed, added or removed
    since a finished run."""
    base = Path(os.path.abspath(root))
    digest = hashlib.sha256()
    n = 0
    for _, tci in sorted(scan_tiles(base, warn=False).items(), key=lambda item: str(item[0])):
        for band in bands:
            path = tci.with_name(f"{band}.png")
            try:
                st = path.stat()
            except OSError:
                continue  # a band a tile lacks: reported where it is read
            digest.update(f"{path.relative_to(base)}\0{st.st_size}\0{st.st_mtime_ns}\n"
                          .encode())
            n += 1
    return f"{n} files, sha256 {digest.hexdigest()}"


def run_s2naip(
    root: str | os.PathLike[str],
    output: str | os.PathLike[str],
    model: InferenceModel,
    options: InferenceOptions | None = None,
    *,
    on_row: RowCallback | None = None,
) -> InferenceResult:
    """Super-resolve every tile of an S2-NAIP dataset into one georeferenced GeoTIFF."""
    with writing(output):
        return _run_s2naip(root, output, model, options, on_row)


def _run_s2naip(root: str | os.PathLike[str], output: str | os.PathLike[str],
                model: InferenceModel, options: InferenceOptions | None,
                on_row: RowCallback | None) -> InferenceResult:
    options = options or InferenceOptions()
    if options.batch_size is None:  # chunks a call; the tiling options do not apply here
        options = dataclasses.replace(options, batch_size=default_batch_size(model.device))
    root = Path(os.path.abspath(root))  # the tag names it the same from any folder
    out = check_output(output, options.overwrite, save_lr=options.save_lr,
                       preview=options.preview, resume=options.resume)
    if options.native_grid:
        raise InputError(f"{root}: --native-grid: S2-NAIP chunks are on the training grid "
                         "already (EPSG:3857 tiles); drop the option")
    if options.uncertainty:
        raise InputError(f"{root}: --uncertainty: not available for S2-NAIP chunk input (each "
                         "tile is super-resolved once from its best time steps); drop the "
                         "option, or give the Sentinel-2 rasters themselves")
    start = time.perf_counter()
    digest = inputs_digest(root, model.bands)  # as the run starts: files rewritten later too
    found = scan_tiles(root)
    _check_band_files(found, model.bands)
    cols = [t.col for t in found]
    rows = [t.row for t in found]
    c0, r0 = min(cols), min(rows)
    n_cols, n_rows = max(cols) - c0 + 1, max(rows) - r0 + 1
    size = tiles.LR_PIXELS
    s = model.scale
    grid = TargetGrid(CRS.from_string(tiles.CRS), tiles.Tile(c0, r0).lr_transform,
                      n_cols * size, n_rows * size, s)
    raw_bytes = grid.hr_width * grid.hr_height * 4
    if raw_bytes > MAX_SPARSE_BYTES and n_cols * n_rows > 4 * len(found):
        # one mosaic of the tiles' bounding box: tiles far apart make it mostly empty (a
        # whole-country dataset: terabytes), which only a file-size error stopped
        raise InputError(
            f"{root}: its {len(found)} tiles lie far apart (a box of {n_cols} x {n_rows} tiles: "
            f"a {grid.hr_width} x {grid.hr_height} px mosaic, {raw_bytes / 1e9:.0f} GB "
            "before compression, mostly empty); super-resolve each area on its own (a "
            "dataset folder of its tiles), or give the Sentinel-2 rasters themselves")
    fingerprint = {
        "s2naip": str(root.resolve()),
        "tiles": {str(t): _identity(p) for t, p in found.items()},
        "model": model.describe(), "device": model.device.type, "batch": options.batch_size,
        "save_lr": options.save_lr,
        # rows computed in another precision or from other band files are not mixed in
        "precision": model.precision,
    }
    if len(model.bands) > 1:
        fingerprint["band_files"] = {
            str(t): [_identity(p.with_name(f"{b}.png")) for b in model.bands[1:]]
            for t, p in found.items()}
    run = PartialRun(out, fingerprint)
    hr = run.raw("sr", grid.hr_width, grid.hr_height, 4)
    lr = run.raw("lr", grid.width, grid.height, 4) if options.save_lr else None
    state = run.start([hr] + ([lr] if lr is not None else []), options.resume,
                      options.overwrite)
    first = int(state["rows_done"]) if state is not None else 0
    few = int(state["few_frames"]) if state is not None else 0
    computed = 0
    before = sum(1 for t in found if t.row - r0 < first)  # tiles of the rows resumed
    with run.removed_unless_saved(), progress_bar(len(found), before, options.progress) as bar:
        task = None if bar is None else bar.add_task("super-resolving tiles", total=len(found),
                                                     completed=before)
        for r in range(first, n_rows):
            present = [t for t in (tiles.Tile(c0 + c, r0 + r) for c in range(n_cols))
                       if t in found]
            block = np.zeros((size * s, grid.hr_width, 4), dtype=np.uint8)
            lr_block = np.zeros((size, grid.width, 4), dtype=np.uint8)
            # read, computed and placed a batch at a time: a row of thousands of tiles held
            # every tile's inputs and float outputs at once (memory growing with the row)
            step = cast(int, options.batch_size)  # (set above where None)
            for i in range(0, len(present), step):
                batch = present[i : i + step]
                inputs, valids = [], []
                for t in batch:
                    series = read_band_series(found[t], "tci")  # [T, 32, 32, 3] uint8
                    valid = cast(np.ndarray, series.any(axis=-1))  # [T, 32, 32]
                    pixels = _tile_pixels(found[t], series, model.bands)
                    filled, any_valid, mean = fill_gaps(pixels, valid)
                    if count_clean(valid) < model.n_images:
                        few += 1
                    inputs.append(
                        filled[choose_frames(frame_scores(pixels, valid), model.n_images)])
                    valids.append(any_valid)
                    x = (t.col - c0) * size
                    lr_block[:, x : x + size] = with_mask(
                        np.moveaxis(to_uint8(mean[:3]), 0, -1), any_valid)
                outputs = model.forward(np.stack(inputs))
                for t, sr, valid in zip(batch, outputs, valids, strict=True):
                    x = (t.col - c0) * size
                    block[:, x * s : (x + size) * s] = with_mask(
                        np.moveaxis(to_uint8(sr), 0, -1), upsample_mask(valid, s))
                if bar is not None:  # per model call: a diffusion model takes long per tile
                    bar.advance(task, len(batch))
            hr.write_rows(r * size * s, block)
            if lr is not None:
                lr.write_rows(r * size, lr_block)
            computed += len(present)
            run.save({"rows_done": r + 1, "few_frames": few}, {})
            if on_row is not None:
                on_row(r + 1, n_rows)
    tags = {
        **model_tags(model),
        "zoomsr_tiling": json.dumps({"window": size, "overlap": 0, "margin": 0,
                                     "note": "S2-NAIP tiles, each its own chunk"}),
        "zoomsr_inputs": f"S2-NAIP chunks {root} ({len(found)} tiles, sentinel2/*/"
        f"{{{','.join(model.bands)}}}.png)",
        # the model's scale, not NAIP's 2.389 m: a x2 model's mosaic is at 4.777 m
        # LR -> output pixels, as a scene's tag: the LR mosaic carries these tags too (it
        # said the output's 2.389 m on its 9.555 m pixels)
        "zoomsr_grid": f"zoom-17 tiles, EPSG:3857 {grid.resolution:.6g} m -> "
        f"{grid.resolution / s:.6g} m, tiles super-resolved independently",
        "zoomsr_windows_with_too_few_frames": str(few),
        "zoomsr_input_digest": digest,
        **side_outputs_tag(options),
    }
    write_geotiff(hr, out, crs=grid.crs, transform=grid.hr_transform,
                  band_names=["red", "green", "blue"], tags=tags, cog=options.cog,
                  deflate_level=options.deflate_level)
    lr_path, preview = write_side_outputs(out, options, lr, grid, tags,
                                          "LR mosaic (mean of valid frames)")
    run.remove()
    return InferenceResult(
        output=out, grid=grid, frames=[], windows=len(found), windows_computed=computed,
        rows_resumed=first, few_frame_windows=few, seconds=time.perf_counter() - start,
        model=model.describe(), lr_output=lr_path, preview=preview,
        ignored=ignored_options(options), covered_km2=tiles_km2(found),
    )


def _check_band_files(found: dict[tiles.Tile, Path], bands: Sequence[str]) -> None:
    """Refuse, before any tile is computed, a tile without a band file the model takes (it
    failed at that tile's row, after every row before it was computed)."""
    paths = (found[t].with_name(f"{b}.png") for t in sorted(found, key=lambda t: (t.row, t.col))
             for b in bands[1:])
    missing = [path for path in paths if not path.is_file()]
    if missing:
        others = len(missing) - 1
        raise _missing_band(missing[0], bands,
                            f" (and {others} other band file(s))" if others else "")


def _missing_band(path: Path, bands: Sequence[str], more: str = "") -> DataError:
    """The error for a tile's band file ``path`` that is not there (``more`` appended)."""
    return DataError(f"{path}: missing; the model takes bands {','.join(bands)}{more}")


def _identity(path: Path) -> list[int] | None:
    """Size and modification time of ``path`` (None if missing: reported when read)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def tiles_km2(found: Iterable[tiles.Tile]) -> float:
    """Ground area of zoom-17 tiles, km² (equal-area EPSG:6933; one computation per row of
    tiles, whose areas are equal)."""
    from rasterio.warp import transform_bounds

    rows: dict[int, int] = {}
    for tile in found:
        rows[tile.row] = rows.get(tile.row, 0) + 1
    total = 0.0
    for row, count in rows.items():
        b = transform_bounds("EPSG:3857", "EPSG:6933", *tiles.Tile(0, row).bounds)
        total += count * (b[2] - b[0]) * (b[3] - b[1]) / 1e6
    return total


def ignored_options(options: InferenceOptions) -> list[str]:
    """The scene options given that S2-NAIP chunk input has no use for, each with why."""
    default = InferenceOptions()
    why = {
        "tiling": ("--window/--overlap/--margin", "each 32 px tile is one chunk, as in "
                   "training (no windows, no overlap)"),
        "column_width": ("--column-width", "tiles are read one row of tiles at a time"),
        "threads": ("--threads", "tiles are computed in one thread"),
        "radiometry": ("--radiometry", "S2-NAIP PNGs are 8-bit TCI"),
        "rgb_bands": ("--rgb-bands", "S2-NAIP PNGs are RGB"),
        "dn_offset": ("--dn-offset", "S2-NAIP PNGs are 8-bit TCI"),
    }
    return [f"{flag}: {reason}" for key, (flag, reason) in why.items()
            if getattr(options, key) != getattr(default, key)]
