"""Weighted sampling of S2-NAIP pairs from a tile-weights JSON.

The published weights give each tile the inverse frequency of the rarest OpenStreetMap
category it contains, so rare content (e.g. airports) is seen more often in training.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler, WeightedRandomSampler

from zoomsr.data.layout import PairRecord
from zoomsr.errors import ConfigError, DataError
from zoomsr.io.json_files import read_json
from zoomsr.validate import check_int


def item_index(index: int | tuple[int, int], length: int,
               what: str = "item") -> tuple[int, int | None]:
    """A dataset's ``index`` argument as ``(index in 0..length-1, sample_seed or None)``.

    ``index`` is an int (NumPy ints and 0-d tensors too; negative counts from the end, as for
    a list) or ``(index, sample_seed)``, what :class:`ResumableSampler` yields. Raises
    ``TypeError`` / ``ValueError`` for another form or a negative seed, ``IndexError`` (``"WHAT
    i of n"``) out of range.
    """
    sample_seed: int | None = None
    if isinstance(index, tuple):
        if len(index) != 2:
            raise TypeError(f"index must be an int or (index, sample_seed), got {index!r}")
        pair = index
        index, sample_seed = operator.index(pair[0]), operator.index(pair[1])
        if sample_seed < 0:
            raise ValueError(f"sample_seed must be >= 0, got {sample_seed}")
    index = operator.index(index)  # ints, NumPy ints, 0-d tensors; not 1.7 or "2"
    if not -length <= index < length:
        raise IndexError(f"{what} {index} of {length}")
    return index % length, sample_seed


def load_tile_weights(path: str | os.PathLike[str]) -> dict[str, float]:
    """Read ``{"{col}_{row}": weight, ...}``; weights must be finite and >= 0."""
    p = Path(path)
    raw = read_json(p, "tile-weights file not found", "not a valid JSON tile-weights file")
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
    if default is not None and (isinstance(default, bool) or not isinstance(default, (int, float))
                                or not math.isfinite(default) or default < 0):
        # else torch's multinomial refused it at the first draw, naming no option
        raise ConfigError(f"default weight must be a finite number >= 0, got {default!r}")
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
    if num_samples is not None:  # 0 drew len(pairs) samples
        check_int("num_samples", num_samples, minimum=1)
    w = pair_weights(pairs, tile_weights, default, source)
    return WeightedRandomSampler(
        w,  # type: ignore[arg-type]  # (torch takes a tensor of weights too)
        num_samples=num_samples or len(pairs), replacement=True, generator=generator
    )


class ResumableSampler(DistributedSampler):
    """Training draws that repeat from ``(seed, epoch)``, shard over processes and resume
    mid-epoch, so a resumed training run sees the samples an uninterrupted one would.

    Each epoch's draws come from a generator seeded with ``(seed, epoch)``: a permutation of
    the pairs, or, with ``weights``, ``num_samples`` draws with replacement in proportion to
    them. Process ``rank`` of ``num_replicas`` takes every ``num_replicas``-th draw (the
    list wrapped round to a multiple of ``num_replicas``, as :class:`DistributedSampler`
    pads it). Each draw is yielded as ``(index, sample_seed)``: :class:`S2NAIPDataset` picks
    that sample's frames (and a replacement for an unusable pair) with ``sample_seed``, so
    what a sample holds depends neither on the worker process nor on earlier samples.

    It is a :class:`DistributedSampler` so that Lightning leaves it in place under DDP (it
    would wrap any other sampler in one that shards it itself). Lightning calls
    :meth:`set_epoch` before each epoch.

    Args:
        n: number of pairs.
        seed: the run's seed.
        weights: ``[n]`` non-negative draw weights (e.g. :func:`pair_weights`), or None for a
            permutation.
        num_samples: draws per epoch with ``weights`` (default ``n``).
        num_replicas, rank: processes sharing the draws, and this one's rank.
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        weights: Sequence[float] | torch.Tensor | None = None,
        num_samples: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        # DistributedSampler.__init__ would ask torch.distributed for the world size.
        self.n = check_int("n", n, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self.num_replicas = check_int("num_replicas", num_replicas, minimum=1)
        self.rank = check_int("rank", rank, choices=range(num_replicas))
        self.weights: np.ndarray | None = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.max() <= 0:
                raise DataError(f"sampler weights must be {n} finite values >= 0, not all 0")
            w = w / w.max()  # first: a sum of weights near 1e308 overflows
            self.weights = w / w.sum()
        draws = n if weights is None or num_samples is None else num_samples  # 0: refused
        self.total_draws = check_int("num_samples", draws, minimum=1)
        self.num_samples = -(-self.total_draws // self.num_replicas)  # this process's share
        self.total_size = self.num_samples * self.num_replicas
        self.shuffle = True
        self.drop_last = False
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, draws: int) -> None:
        """Go on from epoch ``epoch`` after this process's first ``draws`` draws of it (those a
        resumed run has already trained on): the next iteration starts there.

        The epoch is set here too: Lightning creates a resumed run's first iterator (whose
        DataLoader workers fetch their first draws at once) before it calls :meth:`set_epoch`.
        """
        self.epoch = epoch
        self._resume = (epoch, draws)

    def epoch_draws(self, epoch: int) -> list[tuple[int, int]]:
        """This process's ``(index, sample_seed)`` draws of ``epoch``, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.weights is None:
            order = rng.permutation(self.n)
        else:
            order = rng.choice(self.n, size=self.total_draws, replace=True, p=self.weights)
        seeds = rng.integers(0, 2**63 - 1, size=self.total_draws, dtype=np.int64)
        pad = self.total_size - self.total_draws
        index = np.concatenate([order, np.resize(order, pad)])
        seed = np.concatenate([seeds, np.resize(seeds, pad)])
        mine = slice(self.rank, self.total_size, self.num_replicas)
        return list(zip(index[mine].tolist(), seed[mine].tolist(), strict=True))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        draws = self.epoch_draws(self.epoch)
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = min(self._resume[1], len(draws))
        self._resume = None
        return iter(draws[start:])

    def __len__(self) -> int:
        return self.num_samples
