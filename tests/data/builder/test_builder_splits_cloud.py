"""Splits (spatially disjoint, seeded) and per-tile cloud fractions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from zoomsr.data.builder.cloud import (
    brightness_cloud_mask,
    classi_cloud_mask,
    cloud_fraction,
    resolve_method,
    scl_cloud_mask,
)
from zoomsr.data.builder.splits import (
    SplitConfig,
    group_of,
    group_split,
    parse_fractions,
    tile_split,
    touching_pairs,
)
from zoomsr.errors import ConfigError
from zoomsr.grid import Tile, iter_neighbourhood

# A 60 x 60 block of tiles: 225 groups of 4 x 4.
TILES = [Tile(30000 + c, 48000 + r) for r in range(60) for c in range(60)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_splits_never_touch_and_follow_fractions(seed):
    config = SplitConfig(group_tiles=4, fractions=(0.6, 0.2, 0.2), seed=seed)
    splits = {str(t): tile_split(t, config) for t in TILES}
    by_split: dict[str, list[str]] = {}
    for tile, split in splits.items():
        by_split.setdefault(split, []).append(tile)
    assert touching_pairs(by_split) == []
    # Explicitly: no 8-neighbour of a non-buffer tile is in another non-buffer split.
    for tile in TILES:
        s = splits[str(tile)]
        if s == "buffer":
            continue
        for n in iter_neighbourhood(tile):
            assert splits.get(str(n), s) in (s, "buffer")
    groups = Counter(group_split(g, config) for g in {group_of(t, 4) for t in TILES})
    assert 0.45 < groups["train"] / 225 < 0.75 and groups["val"] > 20 and groups["test"] > 20
    # Tiles of one group share a split, except for the buffer ring.
    for tile in TILES:
        assert splits[str(tile)] in (group_split(group_of(tile, 4), config), "buffer")


def test_splits_are_seeded_and_local():
    config = SplitConfig(group_tiles=4, seed=7)
    first = [tile_split(t, config) for t in TILES]
    assert first == [tile_split(t, config) for t in TILES]
    assert first != [tile_split(t, SplitConfig(group_tiles=4, seed=8)) for t in TILES]
    only = [tile_split(t, SplitConfig(group_tiles=4, fractions=(0, 0, 1))) for t in TILES]
    assert set(only) == {"test"}


def test_split_config_validation():
    assert parse_fractions("0.7,0.2,0.1") == (0.7, 0.2, 0.1)
    for bad in ("0.5,0.5", "a,b,c"):
        with pytest.raises(ConfigError, match="split fractions"):
            parse_fractions(bad)
    with pytest.raises(ConfigError, match="sum to 1"):
        SplitConfig(fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ConfigError, match="group size"):
        SplitConfig(group_tiles=0)


@pytest.mark.parametrize("text", ["nan,0.5,0.5", "0.5,nan,0.5", "inf,0,0", "-inf,1,1",
                                  "1,0,nan"])
def test_split_fractions_must_be_finite(text):
    """NaN passed both checks (NaN < 0 and |NaN - 1| > 1e-6 are False): a build went on with
    "train 0, val 0, test 374"."""
    with pytest.raises(ConfigError, match="split fractions must be finite numbers"):
        SplitConfig(fractions=parse_fractions(text))


def test_scl_and_brightness_cloud():
    scl = np.array([[4, 8, 9, 10], [3, 5, 6, 11], [0, 0, 4, 4], [4, 4, 4, 4]], np.uint8)
    mask = scl_cloud_mask(scl)
    assert mask.sum() == 4  # 3 (shadow), 8, 9, 10
    valid = scl > 0
    assert cloud_fraction(mask, valid) == pytest.approx(4 / 14)
    assert cloud_fraction(scl_cloud_mask(scl, (9,)), valid) == pytest.approx(1 / 14)
    assert cloud_fraction(mask, np.zeros_like(valid)) == 0.0
    tci = np.full((3, 2, 2), 90, np.uint8)
    tci[:, 0, 0] = 240             # white: cloud
    tci[:, 0, 1] = (250, 240, 60)  # bright but yellow: not cloud
    assert brightness_cloud_mask(tci).tolist() == [[True, False], [False, False]]
    assert resolve_method("auto", True) == "scl" and resolve_method("auto", False) == "brightness"
    assert resolve_method("auto", True, True) == "scl"
    assert resolve_method("auto", False, True) == "msk_classi"
    classi = np.zeros((3, 2, 2), np.uint8)
    classi[0, 0, 0] = 1  # opaque
    classi[1, 1, 1] = 1  # cirrus
    classi[2] = 1  # snow everywhere: not cloud
    assert classi_cloud_mask(classi).tolist() == [[True, False], [False, True]]
    with pytest.raises(ConfigError, match="cloud method"):
        resolve_method("magic", True)


def test_empty_splits_are_named():
    from zoomsr.data.builder.build import BuildResult

    def result(counts: dict, config: SplitConfig) -> BuildResult:
        return BuildResult(Path("ds"), counts, 1, 1, 9, 1.0, Path("ds/index.json"), config)

    one_group = {"tiles_written": 9, "tiles_train": 9}
    lines = result(one_group, SplitConfig(group_tiles=16)).empty_splits
    assert [line.split(":")[0] for line in lines] == ["no val tiles", "no test tiles"]
    assert "9 tiles written" in lines[0] and "(16 x 16 tiles each)" in lines[0]
    assert "--split-group" in lines[0]
    assert result(one_group, SplitConfig(fractions=(1, 0, 0))).empty_splits == []
    assert result({"tiles_written": 0}, SplitConfig()).empty_splits == []
    full = {"tiles_written": 9, "tiles_train": 5, "tiles_val": 2, "tiles_test": 1}
    assert result(full, SplitConfig()).empty_splits == []
