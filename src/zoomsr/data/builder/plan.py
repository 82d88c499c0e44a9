"""Planning a build: the checks of its sources (bands, cloud masks, DN offsets, footprints),
the warnings about inputs no pair can use, and :func:`plan_blocks`, which groups the
zoom-17 tiles the high-res images cover into blocks, each listing the high-res images and
Sentinel-2 scenes it needs (step 1 of :mod:`zoomsr.data.builder.build`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar, cast

from zoomsr.data.builder.config import BlockJob, BuildConfig
from zoomsr.data.builder.discover import unique_highres
from zoomsr.data.builder.rasters import raster_footprint
from zoomsr.data.builder.reproject import GridWindow
from zoomsr.data.builder.scenes import Footprint, HRImage, S2Scene, Sources
from zoomsr.errors import InputError, ZoomsrWarning
from zoomsr.grid import LR_PIXELS, ORIGIN_SHIFT, TILE_SIZE_M, Tile, tiles_for_bounds


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


__all__ = ["BASELINE_04_START", "plan_blocks", "with_dn_offsets"]
