"""Spatially disjoint train/val/test splits by groups of tiles that never touch.

Tiles are grouped into squares of ``group_tiles`` x ``group_tiles`` zoom-17 tiles; each group
gets a split from a seeded hash of its position (so a tile's split depends only on the seed,
the group size and the fractions, never on which other tiles a build happens to hold, and
growing a dataset keeps existing assignments). Where groups of different splits meet, the tiles
of the lower-ranked split (train < val < test) that touch the other group, even at a corner,
become ``buffer``: no train tile touches a val or test tile and no val tile touches a test tile.
Buffer tiles are written but belong to no split.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from zoomsr.data.layout import SPLITS_FILE, PairRecord, scan_pairs
from zoomsr.errors import ConfigError
from zoomsr.grid import Tile, iter_neighbourhood
from zoomsr.io.atomic import atomic_write_text
from zoomsr.io.json_files import read_json
from zoomsr.validate import check_choice

SPLITS = ("train", "val", "test")
#: Every split name of a splits file: the three, and the tiles between them.
SPLIT_NAMES = (*SPLITS, "buffer")
_RANK = {name: k for k, name in enumerate(SPLITS)}


@dataclass(frozen=True)
class SplitConfig:
    """``group_tiles``: group side in tiles (16 tiles ~ 4.9 km at the equator);
    ``fractions``: expected shares of groups in train, val and test; ``seed``."""

    group_tiles: int = 16
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.group_tiles < 1:
            raise ConfigError(f"split group size must be >= 1 tile, got {self.group_tiles}")
        if len(self.fractions) == 3 and not all(math.isfinite(f) for f in self.fractions):
            # NaN passes every comparison below (NaN < 0 and |NaN - 1| > 1e-6 are False)
            raise ConfigError(f"split fractions must be finite numbers (train, val, test), "
                              f"got {self.fractions}")
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions):
            raise ConfigError(f"split fractions must be 3 non-negative numbers (train, val, "
                              f"test), got {self.fractions}")
        if abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ConfigError(f"split fractions must sum to 1, got {self.fractions}")


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> (0.8, 0.1, 0.1)."""
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(
            f"split fractions: expected 'train,val,test' numbers, got {text!r}"
        ) from None
    if len(parts) != 3:
        raise ConfigError(f"split fractions: expected 3 numbers (train,val,test), got {text!r}")
    return parts


def group_of(tile: Tile, group_tiles: int) -> tuple[int, int]:
    """(group column, group row) of a tile."""
    return tile.col // group_tiles, tile.row // group_tiles


def group_split(group: tuple[int, int], config: SplitConfig) -> str:
    """The split of a tile group: a seeded hash of its position against the fractions."""
    digest = hashlib.blake2b(f"{config.seed}:{group[0]}:{group[1]}".encode(), digest_size=8)
    u = int.from_bytes(digest.digest(), "big") / 2.0**64
    edge = 0.0
    for name, fraction in zip(SPLITS, config.fractions, strict=True):
        edge += fraction
        if u < edge:
            return name
    # u landed above the sum through rounding: the last split with a share takes it.
    return next(n for n, f in zip(SPLITS[::-1], config.fractions[::-1], strict=True) if f > 0)


def tile_split(tile: Tile, config: SplitConfig) -> str:
    """``train``, ``val``, ``test`` or ``buffer`` (touches a group of a higher-ranked split)."""
    own_group = group_of(tile, config.group_tiles)
    own = group_split(own_group, config)
    for other in iter_neighbourhood(tile):
        group = group_of(other, config.group_tiles)
        if group != own_group and _RANK[group_split(group, config)] > _RANK[own]:
            return "buffer"
    return own


def write_splits(
    root: str | os.PathLike[str], tile_splits: Iterable[tuple[str, str]], config: SplitConfig
) -> Path:
    """Write ``zoomsr_splits.json`` (split -> sorted tile ids) from ``(tile, split)`` pairs."""
    out: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    for tile, split in tile_splits:
        out[split].append(tile)
    doc = {"group_tiles": config.group_tiles, "fractions": list(config.fractions),
           "seed": config.seed, **{k: sorted(v) for k, v in out.items()}}
    path = Path(root) / SPLITS_FILE
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path


def load_split(root: str | os.PathLike[str], split: str) -> list[PairRecord]:
    """Pairs of one split of a built dataset (pass them to ``S2NAIPDataset(pairs=...)``)."""
    check_choice("split", split, SPLIT_NAMES)
    path = Path(root) / SPLITS_FILE
    doc = read_json(path, "not found (datasets made by `zoomsr data build` have it)",
                    "unreadable splits file")
    tiles = set(doc.get(split, []))
    return [p for p in scan_pairs(root) if p.tile in tiles]


def touching_pairs(splits: dict[str, Sequence[str]]) -> list[tuple[str, str]]:
    """Pairs of tiles in different splits (train/val/test) that touch; empty when leak-free."""
    where = {t: s for s, tiles in splits.items() if s in SPLITS for t in tiles}
    bad = []
    for name, split in where.items():
        for other in iter_neighbourhood(Tile.parse(name)):
            s = where.get(str(other))
            if s is not None and s != split:
                bad.append((name, str(other)))
    return bad


__all__ = [
    "SPLITS",
    "SPLITS_FILE",
    "SplitConfig",
    "group_of",
    "group_split",
    "load_split",
    "parse_fractions",
    "tile_split",
    "touching_pairs",
    "write_splits",
]
