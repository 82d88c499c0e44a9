"""``zoomsr data build``: raw Sentinel-2 scenes + high-resolution images -> S2-NAIP pairs.

Pipeline (see ``docs/data_build.md``):

1. *Plan*: the zoom-17 tiles each high-res image covers (optionally clipped to a lon/lat box)
   are grouped into square blocks of ``block_tiles`` x ``block_tiles`` tiles. A block lists the
   high-res images and the Sentinel-2 scenes (footprint overlaps and date within
   ``window_days`` of one of its high-res captures) that it needs.
2. *Blocks* (in parallel processes): every source is warped once onto the block's grid
   (EPSG:3857, snapped to tile edges: 32 px/tile for Sentinel-2, ``32*scale`` for high-res),
   then cut into per-tile chunks by slicing. A high-res chunk must be fully inside its image
   and free of nodata; a Sentinel-2 frame must be free of nodata and at most ``max_cloud``
   cloudy. Per tile, the newest high-res capture with at least ``min_frames`` frames in its
   window gets the series; other captures of the tile whose window holds every frame of it
   share it. Pairs go through :class:`~zoomsr.data.writer.S2NAIPWriter` (atomic files,
   ``rgb.png`` last); the block's records are then saved as ``.zoomsr_build/blocks/*.json``.
3. *Index*: block records are merged into ``zoomsr_index.json`` (per tile: split, status,
   high-res captures, every candidate frame with dates, files, cloud and nodata fractions and
   why it was kept or dropped), ``zoomsr_splits.json`` and ``zoomsr_dataset.json``.

A re-run with the same inputs and settings skips finished blocks and, inside an interrupted
block, every pair whose ``rgb.png`` exists, so finished tiles are never rewritten.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast, overload

import numpy as np
import rasterio

from zoomsr import __version__
from zoomsr.data.bands import validate_bands
from zoomsr.data.builder.cloud import (
    DEFAULT_BRIGHTNESS_THRESHOLD,
    DEFAULT_CLOUD_CLASSES,
    brightness_cloud_mask,
    classi_cloud_mask,
    cloud_fraction,
    resolve_method,
    scl_cloud_mask,
)
from zoomsr.data.builder.reproject import GridWindow, resampling, warp
from zoomsr.data.builder.sources import (
    Footprint,
    HRImage,
    S2Scene,
    Sources,
    is_remote,
    raster_footprint,
    unique_highres,
)
from zoomsr.data.builder.splits import SplitConfig, tile_split, write_splits
from zoomsr.data.layout import (
    BUILD_STATE_DIR,
    DATASET_ENTRIES,
    INDEX_FILE,
    NAIP_DIR,
    OLD_NAIP_DIR,
    S2_DIR,
)
from zoomsr.data.writer import S2NAIPWriter
from zoomsr.errors import ConfigError, DataError, InputError, ZoomsrWarning
from zoomsr.grid import LR_PIXELS, ORIGIN_SHIFT, TILE_SIZE_M, Tile, tiles_for_bounds
from zoomsr.io.atomic import atomic_path, atomic_write_text
from zoomsr.progress import track
from zoomsr.records import first_difference, shortened
from zoomsr.stopping import (
    ignore_interrupts_in_worker,
    interrupts_held,
    sigterm_as_interrupt,
    stop_workers,
)

STATE_DIR = BUILD_STATE_DIR
#: DN that saturate ESA's TCI (255): 3558 for L1C (ESA's product definition); 2500 for L2A
#: (measured on the real L2A scene in the test data: TCI = DN * 255 / 2500 within 1 count).
TCI_SATURATION = {"L1C": 3558, "L2A": 2500, "unknown": 3558}


@dataclass(frozen=True)
class BuildConfig:
    """Settings of a build (all recorded in the index; changing one needs ``--overwrite``).

    Args:
        bands: layout bands to write, ``tci`` first (e.g. ``("tci", "b08")``).
        scale: high-res chunk is ``32*scale`` px per tile (4: 2.389 m, the paper's NAIP).
        window_days: keep Sentinel-2 frames within this many days of the high-res capture.
        cloud_method: ``auto`` (SCL when the scene has it, else the L1C cloud mask
            MSK_CLASSI, else brightness), ``scl``, ``msk_classi``, ``brightness`` or ``none``.
        max_cloud: drop a frame from a tile when more than this share of its pixels is cloud.
        cloud_classes: SCL codes counted as cloud (default shadows, clouds, cirrus).
        brightness_threshold: brightness test: cloud where min(R, G, B) of TCI >= this.
        min_frames: tiles with fewer kept frames are skipped.
        max_frames: keep at most this many frames per tile (least cloudy, then closest in time).
        s2_resampling / hr_resampling: GDAL resampling onto the grid (paper: bilinear).
        block_tiles: block side in tiles (memory per block ~ (block_tiles*32*scale)^2 * 4 B
            per high-res image).
        splits: split settings (:class:`~zoomsr.data.builder.splits.SplitConfig`).
        bbox: optional (west, south, east, north) in degrees limiting the tiles built.
        dn_offset: DN offset subtracted from the 16-bit bands of scenes whose metadata gives
            none (0 or 1000, as ``zoomsr infer --dn-offset``); ``None`` refuses such scenes
            when their 16-bit bands are read.
    """

    bands: tuple[str, ...] = ("tci",)
    scale: int = 4
    window_days: int = 90
    cloud_method: str = "auto"
    max_cloud: float = 0.1
    cloud_classes: tuple[int, ...] = DEFAULT_CLOUD_CLASSES
    brightness_threshold: int = DEFAULT_BRIGHTNESS_THRESHOLD
    min_frames: int = 1
    max_frames: int | None = None
    s2_resampling: str = "bilinear"
    hr_resampling: str = "bilinear"
    block_tiles: int = 16
    splits: SplitConfig = field(default_factory=SplitConfig)
    bbox: tuple[float, float, float, float] | None = None
    dn_offset: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", validate_bands(self.bands))
        resolve_method(self.cloud_method, True)
        resampling(self.s2_resampling)
        resampling(self.hr_resampling)
        checks = [
            (self.scale >= 1, f"scale must be >= 1, got {self.scale}"),
            (self.window_days >= 0, f"window_days must be >= 0, got {self.window_days}"),
            (0.0 <= self.max_cloud <= 1.0, f"max_cloud must be in [0, 1], got {self.max_cloud}"),
            (self.min_frames >= 1, f"min_frames must be >= 1, got {self.min_frames}"),
            (self.max_frames is None or self.max_frames >= self.min_frames,
             f"max_frames ({self.max_frames}) must be >= min_frames ({self.min_frames})"),
            (self.block_tiles >= 1, f"block_tiles must be >= 1, got {self.block_tiles}"),
            (self.dn_offset in (None, 0, 1000),
             f"dn_offset must be 0 or 1000 (subtracted from ESA's digital numbers), got "
             f"{self.dn_offset}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not (w < e and s < n):
                raise ConfigError(f"bbox must be west,south,east,north with west<east and "
                                  f"south<north, got {self.bbox}")

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["bands"] = list(self.bands)
        out["cloud_classes"] = list(self.cloud_classes)
        out["bbox"] = list(self.bbox) if self.bbox else None
        out["splits"] = {**dataclasses.asdict(self.splits),
                         "fractions": list(self.splits.fractions)}
        return out


@dataclass
class BuildResult:
    """What a build did: ``counts`` (tiles, pairs, skips by reason, frames by status)."""

    root: Path
    counts: dict
    blocks_total: int
    blocks_run: int
    tiles_run: int
    seconds: float
    index_path: Path
    splits: SplitConfig = field(default_factory=SplitConfig)

    @property
    def tiles_per_second(self) -> float:
        return self.tiles_run / self.seconds if self.seconds > 0 else 0.0

    @property
    def empty_splits(self) -> list[str]:
        """One line per split with a share of the groups but no tile (e.g. a small area in
        one or two split groups: no validation tiles, which ``zoomsr train`` needs)."""
        written = self.counts.get("tiles_written", 0)
        if not written:
            return []
        n = self.splits.group_tiles
        return [
            f"no {name} tiles: the {written} tiles written fall in too few split groups "
            f"({n} x {n} tiles each) for the {name} share {share:g}; build a larger area or "
            f"use smaller groups (--split-group)"
            for name, share in zip(("train", "val", "test"), self.splits.fractions, strict=True)
            if share > 0 and not self.counts.get(f"tiles_{name}", 0)
        ]


@dataclass(frozen=True)
class BlockJob:
    key: str
    root: str
    tiles: tuple[str, ...]
    tile_images: dict[str, tuple[str, ...]]  # tile -> ids of high-res images covering it
    highres: tuple[HRImage, ...]
    sentinel2: tuple[S2Scene, ...]
    config: BuildConfig
    fail_after: int | None = None  # testing hook: raise after this many pairs were written
    # input files changed since the build started: the pairs this (unfinished) block wrote
    # before an interruption are written again, not kept
    changed: frozenset[str] = frozenset()


# ----------------------------------------------------------------------------- planning


def _days(a: dt.date, b: dt.date) -> int:
    return abs((a - b).days)


def _bbox_3857(bbox: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    from rasterio.warp import transform_bounds

    return transform_bounds("EPSG:4326", "EPSG:3857", *bbox, densify_pts=21)


#: ESA's processing baseline 04.00, whose digital numbers carry +1000, began on this date.
BASELINE_04_START = dt.date(2022, 1, 25)


def _sixteen_bit_bands(scene: S2Scene, config: BuildConfig) -> list[str]:
    """The scene's bands a build reads as digital numbers (B02-B04 make a missing TCI)."""
    made = [] if "tci" in scene.files else ["b04", "b03", "b02"]
    return [*made, *config.bands[1:]]


def with_dn_offsets(sources: Sources, config: BuildConfig) -> Sources:
    """``sources`` with ``config.dn_offset`` given to the scenes whose metadata gives none.

    Raises:
        InputError: a scene with no known offset whose 16-bit bands are read, and no
            ``config.dn_offset``: a guess would shift every value by 0.1 reflectance.
    """
    scenes = []
    for scene in sources.sentinel2:
        read = [b for b in _sixteen_bit_bands(scene, config) if b in scene.files]
        if scene.dn_offset is None and read:
            if config.dn_offset is None:
                when = (f", and this scene is from {scene.date}" if scene.date >= BASELINE_04_START
                        else "")
                raise InputError(
                    f"{scene.files[read[0]]}: no metadata gives the processing baseline of "
                    f"Sentinel-2 scene {scene.id}, so the offset of its digital numbers is "
                    "unknown: ESA's carry +1000 from baseline 04.00 (sensed from "
                    f"{BASELINE_04_START:%d %B %Y}, or reprocessed){when}; pass --dn-offset "
                    "1000 for ESA's values, --dn-offset 0 for older baselines or values "
                    "already harmonised (e.g. Earth Search's), or give its SAFE folder, STAC "
                    "item or a manifest dn_offset")
            scene = dataclasses.replace(scene, dn_offset=-config.dn_offset)
        scenes.append(scene)
    return Sources(scenes, list(sources.highres))


def _warn_coarse_highres(images: Iterable[HRImage], scale: int) -> None:
    """A ``ZoomsrWarning`` per high-res image coarser than 1.5x the targets' pixels: they
    would be upsampled, blurrier than real high-res imagery (the build goes on)."""
    for img in images:
        if img.pixel_m is None or img.footprint is None:
            continue
        centre_y = (img.footprint.bottom + img.footprint.top) / 2
        lat = math.atan(math.sinh(centre_y * math.pi / ORIGIN_SHIFT))  # Web Mercator y -> lat
        target_m = TILE_SIZE_M / (LR_PIXELS * scale) * math.cos(lat)
        if img.pixel_m > 1.5 * target_m:
            than_s2 = ", and than Sentinel-2's 10 m itself" if img.pixel_m > 10.5 else ""
            warnings.warn(
                f"{img.path}: pixels of {img.pixel_m:.3g} m on the ground, coarser than the "
                f"{target_m:.2g} m of the high-res targets here (--scale {scale}){than_s2}: "
                "the targets are upsampled, blurrier than real high-res imagery",
                ZoomsrWarning, stacklevel=3)


def _check_sources(sources: Sources, config: BuildConfig) -> Sources:
    """Refuse sources a build cannot use; return them with their DN offsets
    (:func:`with_dn_offsets`)."""
    if not sources.sentinel2:
        raise InputError("no Sentinel-2 scenes given (use --s2 or --manifest)")
    if not sources.highres:
        raise InputError("no high-resolution images given (use --hr or --manifest)")
    for scene in sources.sentinel2:
        missing = [b for b in config.bands[1:] if b not in scene.files]
        if missing:
            raise InputError(
                f"Sentinel-2 scene {scene.id}: no file for band(s) {', '.join(missing)} "
                f"(has {', '.join(sorted(scene.files))}); drop them from --bands"
            )
        if config.cloud_method == "scl" and "scl" not in scene.files:
            raise InputError(f"Sentinel-2 scene {scene.id}: --cloud scl needs an SCL file "
                             "(L2A); use --cloud auto or brightness")
        if config.cloud_method == "msk_classi" and "msk_classi" not in scene.files:
            raise InputError(f"Sentinel-2 scene {scene.id}: --cloud msk_classi needs its L1C "
                             "cloud mask (MSK_CLASSI_B00, processing baseline 04.00 on); use "
                             "--cloud auto or brightness")
    # each high-res file once, however often it was given (manifest and --hr, say)
    sources = Sources(_with_footprints(sources.sentinel2),
                      _with_footprints(unique_highres(sources.highres)))
    return with_dn_offsets(sources, config)  # after: it names one of the bands checked above


_Source = TypeVar("_Source", S2Scene, HRImage)


def _with_footprints(items: list[_Source]) -> list[_Source]:
    """``items`` with the footprints (and high-res pixel sizes) that discovery and manifests
    give them read from their files where they lack one: ``S2Scene``/``HRImage`` built by
    hand in Python, or a scene whose files are none of TCI, B04, B08."""
    out = []
    for item in items:
        if isinstance(item, S2Scene):
            if item.footprint is None:
                if not item.files:
                    raise InputError(f"Sentinel-2 scene {item.id}: no files")
                path = next((item.files[b] for b in ("tci", "b04", "b08") if b in item.files),
                            sorted(item.files.values())[0])
                item = dataclasses.replace(item, footprint=raster_footprint(path)[0])
        elif item.footprint is None or item.pixel_m is None:
            footprint, info = raster_footprint(item.path)
            item = dataclasses.replace(item, footprint=item.footprint or footprint,
                                       pixel_m=item.pixel_m or info["pixel_m"])
        out.append(item)
    return out


def _warn_unused_scenes(sources: Sources, overlapping: list[tuple[HRImage, S2Scene]],
                        window: int) -> None:
    """One ``ZoomsrWarning`` naming the Sentinel-2 scenes no pair can use: outside
    ``window`` days of every high-res capture they cover, or covering none. They were left
    out without a trace (in no tile's record: such a scene is not even read)."""
    days: dict[str, list[int]] = {}
    for img, scene in overlapping:
        days.setdefault(scene.id, []).append(_days(scene.date, img.date))
    far = {s.id: min(days[s.id]) for s in sources.sentinel2
           if s.id in days and min(days[s.id]) > window}
    apart = [s.id for s in sources.sentinel2 if s.id not in days]
    parts = []
    if far:
        first = min(far, key=lambda i: (far[i], i))
        parts.append(f"{len(far)} outside {window} days of every high-res capture it covers "
                     f"(e.g. {first}: {far[first]} days from the nearest; --window-days)")
    if apart:
        parts.append(f"{len(apart)} covering no high-res image (e.g. {apart[0]})")
    if parts:
        warnings.warn(f"{len(far) + len(apart)} Sentinel-2 scene(s) used by no pair: "
                      + "; ".join(parts), ZoomsrWarning, stacklevel=3)


def plan_blocks(root: Path, sources: Sources, config: BuildConfig) -> list[BlockJob]:
    """Split the work into blocks of tiles; raise :class:`InputError` when nothing can pair."""
    sources = _check_sources(sources, config)  # (footprints filled, DN offsets)
    clip = _bbox_3857(config.bbox) if config.bbox else None
    window = config.window_days

    overlapping = [(img, s) for img in sources.highres for s in sources.sentinel2
                   if cast(Footprint, s.footprint).intersects(_fp_tuple(img))]
    if not overlapping:
        raise InputError(
            "no overlap: no Sentinel-2 scene covers any high-res image ("
            + "; ".join(f"{i.id}: {_fmt_bounds(_fp_tuple(i))}" for i in sources.highres[:3])
            + " vs " + "; ".join(f"{s.id}: {_fmt_bounds(_fp_tuple(s))}"
                                 for s in sources.sentinel2[:3])
            + ", EPSG:3857 metres)"
        )
    if not any(_days(s.date, img.date) <= window for img, s in overlapping):
        raise InputError(
            f"no Sentinel-2 scene within {window} days of an overlapping high-res capture "
            f"(high-res: {', '.join(sorted({str(i.date) for i, _ in overlapping}))}; "
            f"Sentinel-2: {', '.join(sorted({str(s.date) for _, s in overlapping}))}); "
            "widen --window-days or add scenes"
        )
    _warn_unused_scenes(sources, overlapping, window)

    tile_images: dict[Tile, list[str]] = {}
    for img in sources.highres:
        box = _fp_tuple(img)
        if clip is not None:
            box = (max(box[0], clip[0]), max(box[1], clip[1]),
                   min(box[2], clip[2]), min(box[3], clip[3]))
            if not (box[0] < box[2] and box[1] < box[3]):
                continue
        for tile in tiles_for_bounds(*box):
            tile_images.setdefault(tile, []).append(img.id)
    if not tile_images:
        raise InputError(f"no high-res image intersects --bbox {config.bbox}")

    images = {img.id: img for img in sources.highres}
    blocks: dict[tuple[int, int], list[Tile]] = {}
    for tile in sorted(tile_images, key=lambda t: (t.row, t.col)):
        blocks.setdefault((tile.col // config.block_tiles, tile.row // config.block_tiles),
                          []).append(tile)
    jobs = []
    for (bc, br), tiles in sorted(blocks.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        grid = GridWindow.around(tiles, LR_PIXELS)
        ids = sorted({i for t in tiles for i in tile_images[t]})
        hr = tuple(images[i] for i in ids)
        scenes = tuple(sorted(
            (s for s in sources.sentinel2 if cast(Footprint, s.footprint).intersects(grid.bounds)
             and any(_days(s.date, img.date) <= window for img in hr)),
            key=lambda s: (s.datetime, s.id)))
        jobs.append(BlockJob(
            key=f"{bc}_{br}", root=str(root), tiles=tuple(str(t) for t in tiles),
            tile_images={str(t): tuple(sorted(tile_images[t])) for t in tiles},
            highres=hr, sentinel2=scenes, config=config))
    return jobs


def _fp_tuple(item: HRImage | S2Scene) -> tuple[float, float, float, float]:
    fp = cast(Footprint, item.footprint)  # discovered sources have one
    return fp.left, fp.bottom, fp.right, fp.top


def _fmt_bounds(b: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in b) + "]"


# ------------------------------------------------------------------------ block worker


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


# --------------------------------------------------------------------------- the build


def _fingerprint(sources: Sources, config: BuildConfig) -> dict:
    # Round-tripped through JSON so that it compares equal to the copy saved on disk.
    return json.loads(json.dumps({"config": config.to_json(),
            "sentinel2": [s.to_json() for s in sorted(sources.sentinel2, key=lambda s: s.id)],
            "highres": [h.to_json() for h in sorted(sources.highres, key=lambda h: h.id)],
            "file_stats": _file_stats(sources)}))


def _local_inputs(sources: Sources) -> list[str]:
    """The input files a build reads that are on this machine (not URLs or GDAL virtual
    paths)."""
    paths = [*(f for scene in sources.sentinel2 for f in scene.files.values()),
             *(h.path for h in sources.highres)]
    return [p for p in paths if not is_remote(p)]


def _file_stats(sources: Sources) -> dict[str, list[int]]:
    """``path -> [size, mtime_ns]`` of the local input files: a resumed build must not mix
    pairs of a file's old content with pairs of its new one."""
    stats = {}
    for path in _local_inputs(sources):
        try:
            st = os.stat(path)
        except OSError:
            continue  # reported where it is read
        stats[str(path)] = [st.st_size, st.st_mtime_ns]
    return dict(sorted(stats.items()))


def _changed_files(previous: dict, now: dict) -> list[str]:
    """The input files whose size or time differ between two fingerprints' ``file_stats``."""
    was, is_ = previous.get("file_stats") or {}, now.get("file_stats") or {}
    return [p for p in sorted(was) if p in is_ and was[p] != is_[p]]


def _files_in_finished_blocks(root: Path) -> set[str]:
    """Every input file the finished blocks' records name (high-res sources, Sentinel-2 band
    files): their pairs may hold its content."""
    used: set[str] = set()
    for path in (root / STATE_DIR / "blocks").glob("*.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a damaged record: that block is redone
        for tile in record.get("tiles", []):
            used.update(str(img.get("source")) for img in tile.get("images", []))
            for frame in tile.get("frames", []):
                used.update(str(f) for f in (frame.get("files") or {}).values())
    return used


@overload
def _comparable(fingerprint: dict) -> dict: ...


@overload
def _comparable(fingerprint: object) -> object: ...


def _comparable(fingerprint: object) -> object:
    """``fingerprint`` as compared on resume: a build started before ``dn_offset`` could be
    unknown recorded no ``config.dn_offset`` and 0 for a scene whose offset it did not read
    (TCI only), so these forms are taken as equal."""
    if not isinstance(fingerprint, dict):
        return fingerprint
    out = json.loads(json.dumps(fingerprint))
    if isinstance(out.get("config"), dict) and out["config"].get("dn_offset") is None:
        out["config"].pop("dn_offset", None)
    for scene in out.get("sentinel2") or []:
        if isinstance(scene, dict) and scene.get("dn_offset") is None:
            scene["dn_offset"] = 0
    return out


def _input_in_output(root: Path, sources: Sources) -> tuple[str, Path] | None:
    """An input file lying in one of the entries a build writes (and ``--overwrite`` deletes)
    under ``root``, with that entry; URLs and GDAL virtual paths are never there."""
    entries = [(root / name).resolve() for name in DATASET_ENTRIES]
    for path in _local_inputs(sources):
        resolved = Path(path).resolve()
        for entry in entries:
            if resolved == entry or entry in resolved.parents:
                return path, entry
    return None


#: build.json's list of the input files changed since the build started (kept until it ends).
CHANGED_KEY = "changed_since_start"


def _prepare_root(root: Path, fingerprint: dict, overwrite: bool,
                  sources: Sources) -> list[str]:
    """Make ``root`` ready for the build (module docstring: resume, refusals, overwrite);
    return the input files changed since a resumed build started (none of them used by a
    finished block)."""
    state = root / STATE_DIR / "build.json"
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: exists and is not a folder")
    inside = _input_in_output(root, sources)
    if inside is not None:
        # The build writes there, and --overwrite would delete the inputs themselves.
        path, entry = inside
        raise InputError(f"{path}: an input of this build lies in {entry}, where the build "
                         "writes its pairs (and which --overwrite deletes); build into another "
                         "folder")
    if root.exists() and any(root.iterdir()):
        previous = None
        if state.exists():
            try:
                previous = json.loads(state.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                previous = None
        now, was = _comparable(fingerprint), _comparable(previous)
        changed: list[str] = []
        if isinstance(previous, dict) and "file_stats" not in previous:
            now.pop("file_stats", None)  # started by a zoomsr that did not record them
        elif isinstance(was, dict) and not overwrite:
            previous = cast(dict, previous)  # a dict, as was is
            changed = _changed_files(previous, fingerprint)
            in_blocks = _files_in_finished_blocks(root) if changed else set()
            used = [c for c in changed if c in in_blocks]
            if used:
                raise InputError(
                    f"{root}: {used[0]} changed since this build started (size or time); "
                    "pairs made so far hold its old content: use --overwrite to rebuild "
                    "from scratch, or another folder")
            # no finished pair holds them (a damaged file replaced by a good copy): go on
            was["file_stats"] = now.get("file_stats")
            # changed at an earlier resume: the blocks unfinished then may still hold pairs of
            # the old content (another interruption came before they were made again)
            changed = sorted({*changed, *(previous.get(CHANGED_KEY) or [])})
            was.pop(CHANGED_KEY, None)
        if was == now and not overwrite:
            _remove_stray_temp_files(root)
            if changed:  # the new files' record, and which changed, for the next resume
                atomic_write_text(state, json.dumps({**fingerprint, CHANGED_KEY: changed},
                                                    indent=1) + "\n")
            return changed  # resume
        if not overwrite:
            reason = "is not empty"
            if previous is not None:
                reason = "was built with other inputs or settings"
                diff = first_difference(was, now)
                if diff is not None:  # the first, as the user can find it in build.json
                    where, old, new = diff
                    reason += f" ({where}: was {shortened(old)}, now {shortened(new)})"
            raise InputError(f"{root}: output folder {reason}; use --overwrite to rebuild it "
                             "from scratch, or another folder")
        for name in DATASET_ENTRIES:
            if (root / name).is_dir() and not (root / name).is_symlink():
                shutil.rmtree(root / name, ignore_errors=True)
            else:
                (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(state, json.dumps(fingerprint, indent=1) + "\n")
    return []


def _remove_stray_temp_files(root: Path) -> int:
    """Delete hidden ``.*.tmp`` files left by a killed writer (see zoomsr.io.atomic)."""
    n = 0
    for folder in (NAIP_DIR, S2_DIR, OLD_NAIP_DIR, STATE_DIR):
        for path in (root / folder).rglob(".*.tmp"):
            path.unlink(missing_ok=True)
            n += 1
    return n


def _load_done(root: Path, key: str) -> dict | None:
    path = root / STATE_DIR / "blocks" / f"{key}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a damaged record: redo the block (finished pairs are still kept)


def _run_jobs(jobs: Sequence[BlockJob], workers: int, progress: bool,
              on_done: Callable[[dict], None]) -> None:
    if workers <= 1 or len(jobs) <= 1:
        for job in track(jobs, "building blocks", enabled=progress):
            on_done(run_block(job))
        return
    # fork: workers inherit the imported modules (spawn would re-import torch per worker).
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    _load_prctl()
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(os.getpid(),)) as pool:
        with interrupts_held():  # forks the workers (see stopping.ignore_interrupts_in_worker)
            futures = [pool.submit(run_block, job) for job in jobs]
        try:
            for future in track(_as_completed(futures), "building blocks", total=len(jobs),
                                enabled=progress):
                on_done(future.result())
        except BaseException:
            # Ctrl-C, SIGTERM (see sigterm_as_interrupt) or a failed block: stop the workers
            # now rather than wait for their blocks. Finished blocks and pairs are on disk
            # (atomic files), and a re-run resumes from them.
            stop_workers(pool, futures)
            raise


#: libc's ``prctl``, loaded in the parent before it forks: a dlopen in a child forked from a
#: multi-threaded parent may deadlock on the loader's lock.
_LIBC: dict[str, Callable[..., int] | None] = {}


def _load_prctl() -> None:
    if sys.platform == "linux" and "prctl" not in _LIBC:
        try:
            import ctypes

            _LIBC["prctl"] = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _LIBC["prctl"] = None


def _worker_init(parent_pid: int) -> None:
    """Runs first in every worker: do not outlive the parent, even when it is killed (-9)."""
    ignore_interrupts_in_worker()
    # The fork copied the parent's SIGTERM handler (sigterm_as_interrupt): a worker just dies.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    prctl = _LIBC.get("prctl")
    if prctl is not None:
        prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG: SIGTERM when the parent dies
    else:
        _start_parent_watch(parent_pid)
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)


def _start_parent_watch(parent_pid: int, interval: float = 1.0) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="zoomsr-parent-watch", daemon=True).start()


def _as_completed(futures: list) -> Iterable:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
        yield from sorted(done, key=futures.index)


def _count(records: Iterable[dict], counts: Counter) -> None:
    for rec in records:
        counts["tiles_candidate"] += 1
        if rec["status"] == "written":
            counts["tiles_written"] += 1
            counts[f"tiles_{rec['split']}"] += 1
        else:
            counts[f"skipped_{rec['reason']}"] += 1
        for img in rec["images"]:
            if img.get("written"):
                counts["pairs"] += 1
                counts[f"pairs_{img['written']}"] += 1
        for f in rec["frames"]:
            counts[f"frames_{f['status']}"] += 1


#: Testing hook: each block of a build raises ``RuntimeError`` after writing this many pairs
#: (an interruption at a known point; tests set it, and reset it to None).
_FAIL_AFTER: int | None = None


def build_dataset(
    out: str | os.PathLike[str],
    sources: Sources,
    config: BuildConfig | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> BuildResult:
    """Build (or resume building) an S2-NAIP dataset under ``out`` from ``sources``.

    Args:
        out: output folder; a folder holding an unfinished build with the same inputs and
            settings is resumed, anything else non-empty needs ``overwrite``.
        sources: scenes and images (:mod:`zoomsr.data.builder.sources`).
        config: :class:`BuildConfig`.
        workers: processes (default: CPUs, at most 8); blocks run in parallel.
        overwrite: delete a previous build's output in ``out`` first.
        progress: show a progress bar.

    Raises :class:`InputError` for inputs that cannot pair (no overlap, no date in window)
    and :class:`~zoomsr.errors.DataError` naming an unreadable file.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    config = config or BuildConfig()
    root = Path(out)
    t0 = time.perf_counter()
    sources = _check_sources(sources, config)  # missing bands named before the DN offset
    jobs = plan_blocks(root, sources, config)
    _warn_coarse_highres(sources.highres, config.scale)
    fingerprint = _fingerprint(sources, config)
    changed = frozenset(_prepare_root(root, fingerprint, overwrite, sources))
    S2NAIPWriter(root, scale=config.scale)  # creates naip/ and sentinel2/
    results: dict[str, dict] = {}
    todo = []
    for job in jobs:
        done = _load_done(root, job.key)
        if done is not None:
            for img in (i for rec in done["tiles"] for i in rec["images"] if i.get("written")):
                img["written"] = "existing"  # counts and the index describe this run
            results[job.key] = done
        else:
            todo.append(dataclasses.replace(job, fail_after=_FAIL_AFTER, changed=changed))
    workers = max(1, min(workers or os.cpu_count() or 1, 8, len(todo) or 1))
    _run_jobs(todo, workers, progress, lambda r: results.__setitem__(r["block"], r))
    seconds = time.perf_counter() - t0

    ordered = [results[job.key] for job in jobs]
    tally: Counter = Counter()
    _count((rec for block in ordered for rec in block["tiles"]), tally)
    counts = dict(sorted(tally.items()))
    index_path = root / INDEX_FILE
    _write_index(index_path, ordered, fingerprint, counts)
    if not counts.get("pairs"):
        # no dataset: its metadata and splits would make the folder look like one (readers
        # and `data check` then found "no pairs"); the index says why, tile by tile
        why = ", ".join(f"{k[len('skipped_'):]} {v}" for k, v in counts.items()
                        if k.startswith("skipped_")) or "no tile planned"
        raise DataError(f"{root}: no pair could be made (tiles skipped: {why}); each tile's "
                        f"reason is in {index_path.name}")
    write_splits(root, ((r["tile"], r["split"]) for b in ordered for r in b["tiles"]
                        if r["status"] == "written"), config.splits)
    S2NAIPWriter(root, scale=config.scale, overwrite=True).write_metadata(
        synthetic=False, generator=f"zoomsr {__version__} data build", index=INDEX_FILE,
        splits="zoomsr_splits.json", bands=list(config.bands), scale=config.scale,
        config=config.to_json(), counts=counts,
        sentinel2_scenes=len(sources.sentinel2), highres_images=len(sources.highres))
    tiles_run = sum(len(job.tiles) for job in todo)
    return BuildResult(root, counts, len(jobs), len(todo), tiles_run, seconds, index_path,
                       config.splits)


def _write_index(path: Path, blocks: list[dict], fingerprint: dict, counts: dict) -> None:
    """Write the index one tile per line, so memory does not grow with its size."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"format": "zoomsr-build-index", "version": 1,\n')
        fh.write(f' "generator": "zoomsr {__version__} data build",\n')
        for key in ("config", "sentinel2", "highres"):
            fh.write(f' "{key}": {json.dumps(fingerprint[key])},\n')
        fh.write(f' "counts": {json.dumps(counts)},\n "tiles": [\n')
        first = True
        for block in blocks:
            for rec in block["tiles"]:
                fh.write(("" if first else ",\n") + json.dumps(rec, separators=(",", ":")))
                first = False
        fh.write("\n]}\n")


def load_index(root: str | os.PathLike[str]) -> dict:
    """The build index of a dataset made by ``zoomsr data build``."""
    from zoomsr.errors import DataError

    path = Path(root) / INDEX_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found (made by `zoomsr data build`)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable index ({exc})") from None


__all__ = [
    "INDEX_FILE",
    "TCI_SATURATION",
    "BuildConfig",
    "BuildResult",
    "build_dataset",
    "load_index",
    "plan_blocks",
    "run_block",
    "sigterm_as_interrupt",
]
