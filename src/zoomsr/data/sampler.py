"""Weighted sampling of S2-NAIP pairs from a tile-weights JSON.

The published weights give each tile the inverse frequency of the rarest OpenStreetMap
category it contains, so rare content (e.g. airports) is seen more often in training.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch.utils.data import WeightedRandomSampler

from zoomsr.data.layout import PairRecord
from zoomsr.errors import DataError


def load_tile_weights(path: str | os.PathLike[str]) -> dict[str, float]:
    """Read ``{"{col}_{row}": weight, ...}``; weights must be finite and >= 0."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p}: tile-weights file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: not a valid JSON tile-weights file ({exc})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{p}: expected a JSON object mapping tile ids to weights")
    weights: dict[str, float] = {}
    for tile, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataError(f"{p}: weight of tile {tile} is not a number: {value!r}")
        if not math.isfinite(value) or value < 0:
            raise DataError(f"{p}: weight of tile {tile} must be finite and >= 0, got {value}")
        weights[str(tile)] = float(value)
    return weights


def pair_weights(
    pairs: Sequence[PairRecord],
    tile_weights: Mapping[str, float],
    default: float | None = None,
    source: str = "tile weights",
) -> torch.Tensor:
    """Weight per pair (``[N]`` float64) from its tile. Tiles missing from ``tile_weights``
    get ``default``, or raise :class:`DataError` when ``default`` is None."""
    missing = [p.tile for p in pairs if p.tile not in tile_weights]
    if missing and default is None:
        raise DataError(
            f"{source}: {len(missing)} of {len(pairs)} tiles have no weight (e.g. {missing[0]}); "
            "pass a default weight to use for them"
        )
    fill = 0.0 if default is None else float(default)
    w = torch.tensor([tile_weights.get(p.tile, fill) for p in pairs], dtype=torch.float64)
    if not bool((w > 0).any()):
        raise DataError(f"{source}: every pair has weight 0")
    return w


def weighted_sampler(
    pairs: Sequence[PairRecord],
    tile_weights: Mapping[str, float] | str | os.PathLike[str],
    num_samples: int | None = None,
    default: float | None = None,
    generator: torch.Generator | None = None,
) -> WeightedRandomSampler:
    """A sampler drawing pairs (with replacement) in proportion to their tile's weight.

    Args:
        pairs: the dataset's pairs (``dataset.pairs``), in dataset order.
        tile_weights: mapping or path to the tile-weights JSON.
        num_samples: draws per epoch (default: number of pairs).
        default: weight for tiles absent from the file (None: that is an error).
        generator: for reproducible draws.
    """
    source = "tile weights"
    if not isinstance(tile_weights, Mapping):
        source = str(tile_weights)
        tile_weights = load_tile_weights(tile_weights)
    w = pair_weights(pairs, tile_weights, default, source)
    return WeightedRandomSampler(
        w, num_samples=num_samples or len(pairs), replacement=True, generator=generator
    )
