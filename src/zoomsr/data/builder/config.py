"""A build's settings (:class:`BuildConfig`), what it did (:class:`BuildResult`) and the
work of one block of tiles handed to a worker process (:class:`BlockJob`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from zoomsr.data.bands import validate_bands
from zoomsr.data.builder.cloud import (
    DEFAULT_BRIGHTNESS_THRESHOLD,
    DEFAULT_CLOUD_CLASSES,
    resolve_method,
)
from zoomsr.data.builder.reproject import resampling
from zoomsr.data.builder.scenes import HRImage, S2Scene
from zoomsr.data.builder.splits import SplitConfig
from zoomsr.errors import ConfigError


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


__all__ = ["BlockJob", "BuildConfig", "BuildResult"]
