"""Building one block of tiles, in a worker process (step 2 of
:mod:`zoomsr.data.builder.build`): :func:`run_block` warps every source once onto the
block's grid, cuts per-tile chunks, measures clouds and nodata, picks each tile's series
of Sentinel-2 frames, writes the pairs and saves the block's records.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio

from zoomsr.data.builder.cloud import (
    brightness_cloud_mask,
    classi_cloud_mask,
    cloud_fraction,
    resolve_method,
    scl_cloud_mask,
)
from zoomsr.data.builder.config import BlockJob, BuildConfig
from zoomsr.data.builder.plan import _days
from zoomsr.data.builder.reproject import GridWindow, resampling, warp
from zoomsr.data.builder.scenes import HRImage, S2Scene
from zoomsr.data.builder.splits import tile_split
from zoomsr.data.builder.state import STATE_DIR
from zoomsr.data.writer import S2NAIPWriter
from zoomsr.grid import LR_PIXELS, Tile
from zoomsr.io.atomic import atomic_write_text

#: DN that saturate ESA's TCI (255): 3558 for L1C (ESA's product definition); 2500 for L2A
#: (measured on the real L2A scene in the test data: TCI = DN * 255 / 2500 within 1 count).
TCI_SATURATION = {"L1C": 3558, "L2A": 2500, "unknown": 3558}


@dataclass
class _Frame:
    scene: S2Scene
    cloud: float
    nodata: float
    method: str
    chunks: dict[str, np.ndarray] | None  # band -> [32, 32, C]; None when unusable
    tci_mean: list[float]


def _harmonise(data: np.ndarray, valid: np.ndarray, offset: int) -> np.ndarray:
    """DN -> DN + offset as uint16, valid pixels clipped to [1, 65535] (0 stays nodata)."""
    out = np.clip(data.astype(np.int64) + offset, 1, 65535).astype(np.uint16)
    out[..., ~valid] = 0
    return out


def _read_scene(scene: S2Scene, grid: GridWindow, config: BuildConfig
                ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None, str]:
    """Warp one scene onto ``grid``: band arrays ``[C, H, W]``, validity, cloud mask, method."""
    method = resolve_method(config.cloud_method, "scl" in scene.files,
                            "msk_classi" in scene.files)
    interp = resampling(config.s2_resampling)
    arrays: dict[str, np.ndarray] = {}
    if "tci" in scene.files:
        tci, valid = warp(scene.files["tci"], grid, interp, [1, 2, 3], src_nodata=0)
        valid &= tci.any(axis=0)  # ESA's TCI is 1..255 where there is data
    else:  # make ESA's TCI from B04, B03, B02 (see TCI_SATURATION)
        rgb, valid = [], np.ones((grid.height, grid.width), bool)
        for band in ("b04", "b03", "b02"):
            data, ok = warp(scene.files[band], grid, interp, [1], src_nodata=0)
            rgb.append(_harmonise(data[0], ok & (data[0] > 0), cast(int, scene.dn_offset)))
            valid &= ok & (data[0] > 0)
        sat = TCI_SATURATION.get(scene.level, TCI_SATURATION["unknown"])
        tci = np.clip(np.rint(np.stack(rgb).astype(np.float32) * (255.0 / sat)), 1, 255)
        tci = tci.astype(np.uint8)
        tci[:, ~valid] = 0
    arrays["tci"] = tci
    for band in config.bands[1:]:
        data, ok = warp(scene.files[band], grid, interp, [1], src_nodata=0)
        ok &= data[0] > 0
        valid &= ok
        arrays[band] = _harmonise(data, ok, cast(int, scene.dn_offset))  # with_dn_offsets
    cloud = None
    if method == "scl":
        scl, ok = warp(scene.files["scl"], grid, resampling("nearest"), [1], src_nodata=0)
        valid &= ok & (scl[0] > 0)
        cloud = scl_cloud_mask(scl[0], config.cloud_classes)
    elif method == "msk_classi":
        # 0 is "clear", not nodata: the mask's own extent says where it has data
        mask, ok = warp(scene.files["msk_classi"], grid, resampling("nearest"), [1, 2])
        cloud = classi_cloud_mask(mask) & ok
    elif method == "brightness":
        cloud = brightness_cloud_mask(tci, config.brightness_threshold)
    return arrays, valid, cloud, method


def _hr_chunks(job: BlockJob, tiles: list[Tile], record: dict[str, dict]
               ) -> dict[str, list[tuple[HRImage, np.ndarray]]]:
    """Per tile, the usable high-res chunks ``[P, P, 3]`` uint8, newest capture first."""
    config = job.config
    grid = GridWindow.around(tiles, LR_PIXELS * config.scale)
    out: dict[str, list[tuple[HRImage, np.ndarray]]] = {str(t): [] for t in tiles}
    for img in sorted(job.highres, key=lambda i: (i.datetime, i.id), reverse=True):
        covered = [t for t in tiles if img.id in job.tile_images[str(t)]]
        data, valid = warp(img.path, grid, resampling(config.hr_resampling), [1, 2, 3])
        for tile in covered:
            v = grid.chunk(valid, tile)
            chunk = grid.chunk(data, tile)
            entry: dict[str, Any] = {"image_id": img.id, "datetime": img.datetime.isoformat(),
                     "source": img.path}
            if not v.all():
                entry["status"] = "partly_outside_or_nodata"
            elif not chunk.any(axis=0).all():
                entry["status"] = "black_pixels"
            else:
                entry["status"] = "usable"
                entry["mean_rgb"] = [round(float(x), 2) for x in chunk.mean(axis=(1, 2))]
                out[str(tile)].append((img, np.ascontiguousarray(chunk.transpose(1, 2, 0))))
            record[str(tile)]["images"].append(entry)
    return out


def _select(frames: list[_Frame], img: HRImage, config: BuildConfig
            ) -> tuple[list[_Frame], dict[str, str]]:
    """Frames of a tile usable with ``img`` (sorted by date) and why the others were dropped."""
    why: dict[str, str] = {}
    kept: dict[dt.date, _Frame] = {}
    for f in frames:
        sid = f.scene.id
        if _days(f.scene.date, img.date) > config.window_days:
            why[sid] = "outside_window"
        elif f.chunks is None:
            why[sid] = "nodata"
        elif f.cloud > config.max_cloud:
            why[sid] = "cloudy"
        else:
            day = f.scene.date  # two products of one acquisition (overlapping MGRS tiles)
            best = kept.get(day)
            if best is None or (f.cloud, f.scene.id) < (best.cloud, best.scene.id):
                if best is not None:
                    why[best.scene.id] = "duplicate_date"
                kept[day] = f
            else:
                why[sid] = "duplicate_date"
    chosen = list(kept.values())
    if config.max_frames is not None and len(chosen) > config.max_frames:
        chosen.sort(key=lambda f: (f.cloud, _days(f.scene.date, img.date), f.scene.id))
        for f in chosen[config.max_frames:]:
            why[f.scene.id] = "over_max_frames"
        chosen = chosen[: config.max_frames]
    chosen.sort(key=lambda f: (f.scene.datetime, f.scene.id))
    return chosen, why


def run_block(job: BlockJob) -> dict:
    """Build one block of tiles (in a worker process); returns and saves its records."""
    config = job.config
    tiles = [Tile.parse(t) for t in job.tiles]
    record: dict[str, dict] = {
        str(t): {"tile": str(t), "split": tile_split(t, config.splits), "status": "skipped",
                 "reason": None, "images": [], "frames": []} for t in tiles}
    # GDAL_CACHEMAX in bytes: rasterio hands an integer to GDAL as bytes, not MB
    with rasterio.Env(GDAL_CACHEMAX=256 * 2**20, GDAL_HTTP_MAX_RETRY=3,
                      GDAL_HTTP_RETRY_DELAY=1):
        hr = _hr_chunks(job, tiles, record)
        with_hr = [t for t in tiles if hr[str(t)]]
        frames: dict[str, list[_Frame]] = {str(t): [] for t in with_hr}
        lr_grid = GridWindow.around(tiles, LR_PIXELS)
        for scene in job.sentinel2:
            dates = {img.date for t in with_hr for img, _ in hr[str(t)]}
            if not any(_days(scene.date, d) <= config.window_days for d in dates):
                continue
            arrays, valid, cloud, method = _read_scene(scene, lr_grid, config)
            for tile in with_hr:
                v = lr_grid.chunk(valid, tile)
                if not v.any():
                    continue  # the scene does not reach this tile
                c = lr_grid.chunk(cloud, tile) if cloud is not None else None
                tci = lr_grid.chunk(arrays["tci"], tile)
                usable = bool(v.all())
                chunks = None
                if usable:
                    chunks = {b: np.ascontiguousarray(lr_grid.chunk(a, tile).transpose(1, 2, 0))
                              for b, a in arrays.items()}
                frames[str(tile)].append(_Frame(
                    scene=scene, cloud=cloud_fraction(c, v) if c is not None else 0.0,
                    nodata=round(1.0 - float(v.mean()), 4), method=method, chunks=chunks,
                    tci_mean=[round(float(x), 2) for x in tci.mean(axis=(1, 2))]))
    writer = S2NAIPWriter(job.root, scale=config.scale, overwrite=True)
    written = 0
    for tile in tiles:
        rec = record[str(tile)]
        images = hr[str(tile)]
        if not images:
            statuses = {e["status"] for e in rec["images"]}
            rec["reason"] = "highres_" + ("black_pixels" if statuses == {"black_pixels"}
                                          else "partly_outside_or_nodata")
            continue
        candidates = frames[str(tile)]
        series: list[_Frame] = []
        why: dict[str, str] = {}
        primary = None
        for img, _ in images:
            series, why = _select(candidates, img, config)
            if len(series) >= config.min_frames:
                primary = img
                break
        if primary is None:
            rec["reason"] = "no_sentinel2_coverage" if not candidates else "too_few_frames"
            # The frames' reasons are given for the capture with the most frames in its
            # window: measured from the newest, frames of an older capture's window read as
            # "outside_window" when clouds or nodata dropped them.
            nearest = max((img for img, _ in images), key=lambda img: sum(
                _days(f.scene.date, img.date) <= config.window_days for f in candidates))
            _, why = _select(candidates, nearest, config)
            _frame_records(rec, candidates, nearest, {}, why)
            continue
        _frame_records(rec, candidates, primary, {f.scene.id: k for k, f in enumerate(series)},
                       why)
        stacks = {b: np.stack([cast("dict[str, np.ndarray]", f.chunks)[b] for f in series])
                  for b in config.bands}  # (the series' frames are usable: chunks read)
        rec["status"] = "written"
        for img, chunk in images:
            entry = next(e for e in rec["images"] if e["image_id"] == img.id)
            if img is not primary and any(
                    _days(f.scene.date, img.date) > config.window_days for f in series):
                entry["status"] = "series_outside_window"
                continue
            entry["status"] = "primary" if img is primary else "paired"
            # With inputs changed since the build started, a pair this unfinished block wrote
            # before an interruption may hold their old content (also through a frame the new
            # content drops): written again
            if writer.has_pair(tile, img.id) and not job.changed:
                entry["written"] = "existing"
                continue
            if job.fail_after is not None and written >= job.fail_after:
                raise RuntimeError(f"simulated failure after {written} pairs (testing hook)")
            writer.write_pair(tile, img.id, chunk, stacks if img is primary else None)
            entry["written"] = "now"
            written += 1
    out = {"block": job.key, "tiles": [record[str(t)] for t in tiles]}
    state = Path(job.root) / STATE_DIR / "blocks" / f"{job.key}.json"
    atomic_write_text(state, json.dumps(out, separators=(",", ":")) + "\n")
    return out


def _frame_records(rec: dict, frames: list[_Frame], img: HRImage, index: dict[str, int],
                   why: dict[str, str]) -> None:
    for f in sorted(frames, key=lambda f: (f.scene.datetime, f.scene.id)):
        sid = f.scene.id
        rec["frames"].append({
            "scene": sid, "datetime": f.scene.datetime.isoformat(),
            "days_from_highres": (f.scene.date - img.date).days,
            "cloud_fraction": round(f.cloud, 4), "cloud_method": f.method,
            "nodata_fraction": f.nodata, "tci_mean": f.tci_mean,
            "status": "kept" if sid in index else why.get(sid, "unused"),
            "stack_index": index.get(sid),
            "files": {b: f.scene.files[b] for b in sorted(f.scene.files)},
        })


__all__ = ["TCI_SATURATION", "run_block"]
