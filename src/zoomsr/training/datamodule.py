"""Lightning data modules: train/val split, loaders, resumable sampling.

:func:`build_datamodule` gives the one a config's ``data.dataset`` needs:
:class:`S2NAIPDataModule` (the paper's dataset, below) or :class:`BenchmarkDataModule` (PROBA-V,
WorldStrat, OLI2MSI, through :func:`zoomsr.data.datasets.open_dataset`; see its docstring).

S2-NAIP's split, in order of preference:

1. ``data.splits``: a JSON file ``{"train": [...], "val": [...], "test": [...]}`` whose
   entries are tile ids (``"{col}_{row}"``) or ``"{image_id}/{tile}"``;
2. ``ROOT/zoomsr_splits.json``, written by ``zoomsr data build`` (same format, plus metadata);
3. a seeded split by groups of ``split_group`` x ``split_group`` neighbouring tiles; train tiles
   that touch a val tile (even at a corner) are left out, so no two neighbours straddle the split.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from zoomsr.data import PairRecord, ResumableSampler, S2NAIPDataset, scan_pairs
from zoomsr.data.builder.splits import SPLITS_FILE
from zoomsr.data.datasets import ItemSubset, item_ids, stack_items
from zoomsr.data.layout import read_series, recorded_scale, require_dataset_root
from zoomsr.data.sampler import load_tile_weights, pair_weights
from zoomsr.errors import ConfigError, DataError, ZoomsrWarning, first_line
from zoomsr.grid import LR_PIXELS, Tile, iter_neighbourhood
from zoomsr.io.json_files import read_json
from zoomsr.training.config import DataSection, TrainConfig, dataset_channels


def _read_splits(path: Path) -> dict[str, list[str]]:
    raw = read_json(path, "splits file not found", "not a readable JSON splits file")
    # Only the split lists are checked: other keys are metadata (e.g. the builder's seed).
    split_keys = [k for k in ("train", "val", "test", "buffer") if k in raw] if isinstance(
        raw, dict) else []
    if not isinstance(raw, dict) or not all(
        isinstance(raw[k], list) and all(isinstance(x, str) for x in raw[k]) for k in split_keys
    ):
        raise DataError(f"{path}: expected {{\"train\": [tile, ...], \"val\": [...]}}")
    for key in ("train", "val"):
        if key not in raw:
            raise DataError(f"{path}: no {key!r} list")
    return raw


def _select(pairs: Sequence[PairRecord], entries: list[str]) -> list[PairRecord]:
    wanted = set(entries)
    return [p for p in pairs if p.tile in wanted or f"{p.image_id}/{p.tile}" in wanted]


def split_by_file(
    pairs: Sequence[PairRecord], path: str | os.PathLike[str]
) -> tuple[list[PairRecord], list[PairRecord]]:
    """(train, val) pairs listed in a splits JSON file (see the module docstring)."""
    path = Path(path)
    splits = _read_splits(path)
    train, val = _select(pairs, splits["train"]), _select(pairs, splits["val"])
    for name, chosen in (("train", train), ("val", val)):
        if not chosen:
            how = (f"the build put no whole --split-group block in {name} (a small area): "
                   "build it again with a smaller --split-group, or give data.splits (a JSON "
                   "file of train and val tiles)" if path.name == SPLITS_FILE else
                   f"list some of the dataset's tiles under {name!r} in it")
            raise DataError(f"{path}: no pair of the dataset is in the {name!r} split; {how}")
    overlap = {p.tile for p in train} & {p.tile for p in val}
    if overlap:
        raise DataError(
            f"{path}: {len(overlap)} tile(s) are in both train and val, e.g. {sorted(overlap)[0]}"
        )
    return train, val


def split_by_groups(
    pairs: Sequence[PairRecord], val_fraction: float, group: int, seed: int
) -> tuple[list[PairRecord], list[PairRecord]]:
    """Seeded (train, val) split of whole ``group`` x ``group`` tile blocks.

    Blocks are drawn in a seeded order into val until it holds ``val_fraction`` of the pairs
    (at least one block); at least one block stays in train. Raises :class:`DataError` when
    there is a single block, or when every train tile touches a val tile (small datasets).
    """
    blocks: dict[tuple[int, int], list[PairRecord]] = {}
    for p in pairs:
        tile = Tile.parse(p.tile)
        blocks.setdefault((tile.col // group, tile.row // group), []).append(p)
    keys = sorted(blocks)
    if len(keys) < 2:
        raise DataError(
            f"cannot split {len(pairs)} pairs into train and val: they all fall in one block of "
            f"{group}x{group} tiles; lower data.split_group or give data.splits"
        )
    order = np.random.default_rng(seed).permutation(len(keys))
    target = math.ceil(val_fraction * len(pairs))
    val_keys: set[tuple[int, int]] = set()
    count = 0
    for i in order[:-1]:  # the last block always stays in train
        if count >= target:
            break
        val_keys.add(keys[i])
        count += len(blocks[keys[i]])
    val = [p for k in keys if k in val_keys for p in blocks[k]]
    val_tiles = {p.tile for p in val}
    # Tiles of neighbouring blocks touch: a train tile next to a val tile would leak.
    train = [p for k in keys if k not in val_keys for p in blocks[k]
             if not any(str(t) in val_tiles for t in iter_neighbourhood(Tile.parse(p.tile)))]
    if not train:
        raise DataError(
            f"the train/val split left the training set empty: of the {len(pairs)} pairs, "
            f"{len(val)} went to val (whole blocks of {group}x{group} tiles: "
            f"data.split_group={group}, data.val_fraction={val_fraction}) and the other "
            f"{len(pairs) - len(val)} touch a val tile, so they are left out; lower "
            "data.split_group or data.val_fraction, add pairs, or give data.splits"
        )
    return sorted(train, key=_order), sorted(val, key=_order)


def _series_error(record: PairRecord, bands: tuple[str, ...]) -> DataError | None:
    """Why ``record``'s band files cannot be loaded (None: they can)."""
    try:
        read_series(record, bands)
    except DataError as exc:
        return exc
    return None


def _order(p: PairRecord) -> tuple[str, str]:
    return (p.tile, p.image_id)


def split_pairs(
    root: str | os.PathLike[str], cfg: DataSection
) -> tuple[list[PairRecord], list[PairRecord]]:
    """The (train, val) pairs of the dataset at ``root`` under ``cfg`` (module docstring)."""
    pairs = scan_pairs(root)
    if cfg.splits is not None:
        train, val = split_by_file(pairs, cfg.splits)
    elif (Path(root) / SPLITS_FILE).is_file():
        train, val = split_by_file(pairs, Path(root) / SPLITS_FILE)
    else:
        train, val = split_by_groups(pairs, cfg.val_fraction, cfg.split_group, cfg.split_seed)
    if cfg.max_val_pairs is not None:
        val = val[: cfg.max_val_pairs]
    return train, val


class TrainValDataModule(L.LightningDataModule):
    """What the data modules share: the training loader drawn by a
    :class:`~zoomsr.data.sampler.ResumableSampler` (``(index, sample_seed)`` draws, so each
    sample's random choices follow from ``seed`` and the epoch), the module's state (saved in
    each checkpoint: how far the epoch got, so a resumed run trains on what an uninterrupted
    one would) and the validation loader. Subclasses build ``train_set`` and ``val_set``
    (:meth:`_datasets`)."""

    #: collate_fn of both loaders (None: torch's default)
    collate_fn: Any = None

    def __init__(self, cfg: DataSection, layout: str, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.layout = layout
        self.seed = seed
        self.train_set: Any = None
        self.val_set: Any = None
        self.train_sampler: ResumableSampler | None = None
        self._resume: tuple[int, int] | None = None  # from a checkpoint: (epoch, draws done)

    def _datasets(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def _train_weights(self, train_set: Any) -> torch.Tensor | None:
        """Sampling weight of each training item (None: uniform)."""
        return None

    def check(self, val_limit: int | None = None) -> None:
        raise NotImplementedError

    def splits_doc(self) -> dict[str, Any]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        self._datasets()

    def _world_size(self) -> int:
        """Processes sharing the training set (1 before a trainer is attached)."""
        trainer = getattr(self, "trainer", None)
        return max(1, int(getattr(trainer, "world_size", 1) or 1))

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.cfg.num_workers
        kwargs: dict[str, Any] = {
            "num_workers": workers,
            "persistent_workers": workers > 0,
            "pin_memory": torch.cuda.is_available(),
        }
        if self.collate_fn is not None:
            kwargs["collate_fn"] = self.collate_fn
        return kwargs

    def train_dataloader(self) -> DataLoader:
        train_set, _ = self._datasets()
        weights = self._train_weights(train_set)
        trainer = getattr(self, "trainer", None)
        rank = int(getattr(trainer, "global_rank", 0) or 0) if trainer is not None else 0
        self.train_sampler = ResumableSampler(
            len(train_set), self.seed, weights, num_replicas=self._world_size(), rank=rank)
        if self._resume is not None:
            self.train_sampler.resume_at(*self._resume)
            self._resume = None
        return DataLoader(
            train_set,
            batch_size=self.cfg.batch_size,
            sampler=self.train_sampler,
            # Full batches only, unless a process's share of the split (DDP: 1/world size) is
            # smaller than one batch (smoke runs): it would get no batch at all.
            drop_last=self.train_sampler.num_samples >= self.cfg.batch_size,
            **self._loader_kwargs(),
        )

    def state_dict(self) -> dict[str, Any]:
        """Where the training draws are (saved in each checkpoint): the epoch, and how many of
        its draws this process has trained on, so a resumed run goes on from the next one."""
        trainer = getattr(self, "trainer", None)
        sampler = getattr(self, "train_sampler", None)
        if trainer is None or sampler is None:
            return {}
        # Lightning's count of the epoch's batches trained on; the loader itself has already
        # fetched the next batch (and its workers more) by the time a checkpoint is written.
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return self.place(sampler.epoch, batches, batches >= trainer.num_training_batches)

    def place(self, epoch: int, batches: int, epoch_over: bool) -> dict[str, int]:
        """The state (:meth:`load_state_dict`) of a run ``batches`` batches into ``epoch``:
        the next epoch's start when that one is over."""
        if epoch_over:
            epoch, batches = epoch + 1, 0
        return {"epoch": epoch, "draws": batches * self.cfg.batch_size}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "epoch" in state_dict and "draws" in state_dict:
            self._resume = (int(state_dict["epoch"]), int(state_dict["draws"]))

    def val_dataloader(self) -> DataLoader:
        _, val_set = self._datasets()
        return DataLoader(
            val_set,
            batch_size=self.cfg.val_batch_size or self.cfg.batch_size,
            shuffle=False,
            **self._loader_kwargs(),
        )


class S2NAIPDataModule(TrainValDataModule):
    """Train and validation loaders for one config's ``data`` section.

    Training samples pick random valid time steps (``S2NAIPDataset(train=True)``) and may be
    drawn by tile weight; the draws and each sample's frames follow from ``seed`` and the
    epoch (:class:`~zoomsr.data.sampler.ResumableSampler`), and the module's state (saved in
    each checkpoint) says how far the epoch got, so a resumed run trains on what an
    uninterrupted one would. Validation samples are seeded (``val_seed``), so metrics repeat
    run to run. Batches are dicts with ``lr`` (``layout``), ``hr`` ``[B, 3, 128, 128]`` and
    ``tile``. Under DDP each process takes its share of the training draws, and Lightning
    shards the validation loader.
    """

    def __init__(self, cfg: DataSection, layout: str, seed: int = 0) -> None:
        if cfg.root is None:
            raise ConfigError("config key 'data.root' is not set (--set data.root=PATH)")
        super().__init__(cfg, layout, seed)
        self.root = require_dataset_root(cfg.root)
        self.train_set: S2NAIPDataset | None = None
        self.val_set: S2NAIPDataset | None = None
        self._pairs: tuple[list[PairRecord], list[PairRecord]] | None = None

    def check(self, val_limit: int | None = None) -> None:
        """Check the data section against the dataset before any work (model, trainer) starts.

        Raises :class:`DataError` for a split with no train or no val pair (as at setup), or
        naming a file of the validation pairs that cannot be read (each is decoded here:
        see :meth:`_check_val_files`; ``val_limit``: only the first that many are validated),
        and :class:`ConfigError` naming ``data.scale`` when the dataset records another scale
        (``data build --scale``), ``data.bands`` for a band that no tile (or some validation
        tile) holds, or ``data.tile_weights`` for an unreadable or unusable weights file.
        """
        recorded = recorded_scale(self.root)
        if recorded is not None and recorded != self.cfg.scale:
            # every NAIP image would be the wrong size for the model's output
            raise ConfigError(
                f"config key 'data.scale' is {self.cfg.scale}, but the dataset {self.root} "
                f"records scale {recorded} (NAIP images of {LR_PIXELS * recorded} px, in "
                f"zoomsr_dataset.json); set data.scale={recorded}"
            )
        train, val = self._split()
        self._check_bands(train, val)
        self._check_val_files(val_limit)
        self._check_series_length(train)
        if self.cfg.tile_weights is not None:
            try:
                pair_weights(train, load_tile_weights(self.cfg.tile_weights),
                             self.cfg.tile_weight_default, str(self.cfg.tile_weights))
            except DataError as exc:
                raise ConfigError(f"config key 'data.tile_weights': {exc}") from None

    def _check_val_files(self, limit: int | None = None) -> None:
        """Decode the validation pairs' files: validation stops at the first unusable one
        (training skips them), and otherwise finds it only at the first validation, hours
        into a run, and again at every resume.

        Builds the validation set (which reads the NAIP images, dropping black ones, as setup
        would: kept for it), then reads every band file of the pairs it keeps, the first
        ``limit`` only (those ``trainer.limit_val_batches`` lets validation see); the set is
        capped by ``data.max_val_pairs``. The files are read in threads (PNG decoding releases
        the GIL).
        """
        from concurrent.futures import ThreadPoolExecutor

        _, val_set = self._datasets()
        pairs = val_set.pairs if limit is None else val_set.pairs[:limit]
        bands = tuple(self.cfg.bands)
        pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
        try:
            # map yields in order: the first unusable pair of the list is the one reported
            for record, error in zip(pairs, pool.map(lambda r: _series_error(r, bands), pairs),
                                     strict=True):
                if error is not None:
                    raise DataError(f"{error} (validation tile {record.image_id}/{record.tile}: "
                                    f"replace the file, or run `zoomsr data check {self.root}`)")
        finally:
            pool.shutdown(cancel_futures=True)  # the rest is not read once one fails

    def _check_series_length(self, train: list[PairRecord], sample: int = 64) -> None:
        """Warn when the series (of up to ``sample`` training tiles: their PNG headers only)
        are all shorter than ``data.n_images``: every sample then repeats its steps."""
        from PIL import Image

        longest = 0
        for record in train[:: max(1, len(train) // sample)][:sample]:
            try:
                with Image.open(record.band_path("tci")) as im:
                    longest = max(longest, im.size[1] // LR_PIXELS)
            except OSError:
                return  # read (and reported) with its name when the sample is loaded
        if 0 < longest < self.cfg.n_images:
            warnings.warn(
                f"config key 'data.n_images' is {self.cfg.n_images}, but the series of "
                f"{self.root} have at most {longest} time steps (of the training tiles looked "
                f"at): every sample repeats its steps (about {self.cfg.n_images / longest:.2g}x); "
                f"set data.n_images to {longest} or fewer unless the model needs "
                f"{self.cfg.n_images}", ZoomsrWarning, stacklevel=2)

    def _check_bands(self, train: list[PairRecord], val: list[PairRecord]) -> None:
        # tci is the dataset's own band (a pair without it is a data problem); extra bands are
        # a choice of the config. Training skips a sample whose band is missing, validation
        # does not: a band must exist for some tile, and for every validation tile.
        tiles = {p.tile: p for p in [*train, *val]}
        val_tiles = {p.tile for p in val}
        for band in self.cfg.bands[1:]:
            missing = [t for t, p in tiles.items() if not p.band_path(band).is_file()]
            if len(missing) == len(tiles):
                example = tiles[missing[0]].band_path(band)
                raise ConfigError(
                    f"config key 'data.bands': band {band} is not in the dataset {self.root} "
                    f"(no tile has it, e.g. {example} is missing)"
                )
            missing_val = [t for t in missing if t in val_tiles]
            if missing_val:
                example = tiles[missing_val[0]].band_path(band)
                raise ConfigError(
                    f"config key 'data.bands': band {band} is missing for {len(missing_val)} "
                    f"of {len(val_tiles)} validation tiles (e.g. {example})"
                )

    def splits_doc(self) -> dict[str, list[str]]:
        """The run's train/val pairs as a splits file holds them (``image_id/tile`` entries;
        ``zoomsr evaluate --split val --splits RUN/splits.json`` scores the same tiles)."""
        train, val = self._split()
        return {"train": sorted(f"{p.image_id}/{p.tile}" for p in train),
                "val": sorted(f"{p.image_id}/{p.tile}" for p in val)}

    def _split(self) -> tuple[list[PairRecord], list[PairRecord]]:
        if self._pairs is None:
            self._pairs = split_pairs(self.root, self.cfg)
        return self._pairs

    def _datasets(self) -> tuple[S2NAIPDataset, S2NAIPDataset]:
        if self.train_set is not None and self.val_set is not None:
            return self.train_set, self.val_set
        c = self.cfg
        train, val = self._split()
        common: dict[str, Any] = {
            "bands": c.bands, "n_images": c.n_images, "layout": self.layout, "scale": c.scale,
        }
        self.train_set = S2NAIPDataset(self.root, train=True, pairs=train, **common)
        self.val_set = S2NAIPDataset(self.root, train=False, seed=c.val_seed, pairs=val, **common)
        return self.train_set, self.val_set

    def _train_weights(self, train_set: S2NAIPDataset) -> torch.Tensor | None:
        if self.cfg.tile_weights is None:
            return None
        return pair_weights(train_set.pairs, load_tile_weights(self.cfg.tile_weights),
                            self.cfg.tile_weight_default, str(self.cfg.tile_weights))


# ---------------------------------------------------------------------------------------------
# The benchmark datasets (PROBA-V, WorldStrat, OLI2MSI)


def _rank(seed: int, item: str) -> bytes:
    """Item ``item``'s place in the held-out draw of ``seed``: a hash of both (the same on
    every machine, Python and NumPy version)."""
    return hashlib.blake2b(f"{seed}\0{item}".encode(), digest_size=16).digest()


def held_out_split(ids: Sequence[str], val_fraction: float, seed: int,
                   what: str = "items") -> tuple[list[int], list[int]]:
    """(train, val) indices of ``ids``: ``ceil(val_fraction * n)`` items (at least one, and
    one fewer than all) held out for validation, those whose hash with ``seed`` ranks first
    (so the same items whatever the order they are listed in, and the same but for a few
    where items are added to or removed from the split: a train folder that gains items keeps
    its validation items, instead of being drawn again); both lists ascending. Raises
    :class:`DataError` for fewer than 2 items."""
    n = len(ids)
    if n < 2:
        raise DataError(f"cannot hold out validation {what} from {n} of them: the train split "
                        "needs at least 2 (one to train on, one to validate on)")
    order = sorted(range(n), key=lambda i: (_rank(seed, str(ids[i])), str(ids[i]), i))
    # val_fraction * n rounded first: 0.07 * 100 is 7.000000000000001, whose ceil is 8
    n_val = min(n - 1, max(1, math.ceil(round(val_fraction * n, 9))))
    return sorted(order[n_val:]), sorted(order[:n_val])


def _split_state(train: Sequence[str], val: Sequence[str]) -> dict[str, Any]:
    """The counts and a digest of a split's train and validation items (by id)."""
    h = hashlib.sha256()
    for part in (sorted(train), sorted(val)):
        h.update(json.dumps(part).encode())
    return {"train": len(train), "val": len(val), "digest": h.hexdigest()}


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of benchmark items: ``lr``, ``hr``, ``hr_valid`` (all True for an item without
    one) and ``id``; the items' other entries (names, frame numbers, baselines) are left out."""
    if any("hr" not in it for it in items):
        raise DataError("a dataset item has no 'hr' (a split without ground truth, e.g. "
                        "PROBA-V's test split): it cannot be trained or validated on")
    ids = [str(it.get("id")) for it in items]
    return {**stack_items(items, ids), "id": ids}


class BenchmarkDataModule(TrainValDataModule):
    """Train and validation loaders over a benchmark dataset (``data.dataset``: ``probav``,
    ``worldstrat``, ``oli2msi``), opened by name with ``data.options``.

    Validation set: the dataset's own ``val`` split (WorldStrat), else ``data.val_fraction`` of
    its ``train`` split held out by ``data.split_seed`` (:func:`held_out_split`: whole PROBA-V
    image sets, whole OLI2MSI pairs; deterministic, disjoint from training); at most
    ``data.max_val_pairs`` of it are validated on (those that rank first by the same hash).
    Training draws random frames (and crops) per sample from the sampler's
    ``(index, sample_seed)``; validation items are the
    loaders' evaluation choice (``train=False``, ``seed=data.val_seed``). Batches are dicts
    with ``lr`` (``layout``), ``hr`` ``[B, C_hr, H, W]``, ``hr_valid`` ``[B, H, W]`` (the
    dataset's HR quality mask) and ``id`` (:func:`collate_items`).
    """

    collate_fn = staticmethod(collate_items)

    def __init__(self, cfg: DataSection, layout: str, seed: int = 0) -> None:
        if cfg.root is None:
            raise ConfigError("config key 'data.root' is not set (--set data.root=PATH)")
        super().__init__(cfg, layout, seed)
        self.name: str = cfg.dataset  # (Lightning's attribute, None by default)
        self.root = Path(cfg.root)
        self.train_set: ItemSubset | None = None
        self.val_set: ItemSubset | None = None
        self.source_split = "train" if self.name != "worldstrat" else "val"
        self._split_state: dict[str, Any] | None = None  # see _split_state()

    def _open(self, split: str, train: bool) -> Dataset:
        from zoomsr.data.datasets import open_dataset

        c = self.cfg
        options = dict(c.options)
        if self.name == "worldstrat":
            options["scale"] = c.scale
        kwargs: dict[str, Any] = {"n_images": c.n_images, "layout": self.layout, "train": train}
        if not train:
            kwargs["seed"] = c.val_seed
        try:
            return open_dataset(self.name, self.root, split=split, **kwargs, **options)
        except ConfigError as exc:  # a value of data.options the loader refuses
            raise ConfigError(f"config key 'data.options' ({self.name} dataset): "
                              f"{first_line(exc)}") from None

    def _datasets(self) -> tuple[ItemSubset, ItemSubset]:
        if self.train_set is not None and self.val_set is not None:
            return self.train_set, self.val_set
        c = self.cfg
        train_full = self._open("train", train=True)
        val_full = self._open(self.source_split, train=False)
        train_ids, val_ids = item_ids(train_full), item_ids(val_full)
        if self.source_split == "train":
            if train_ids != val_ids:  # the folder changed between the two scans
                raise DataError(f"{self.root}: the {self.name} train split changed while it "
                                "was read; try again")
            what = {"probav": "image sets", "oli2msi": "pairs"}.get(self.name, "items")
            train_idx, val_idx = held_out_split(train_ids, c.val_fraction, c.split_seed, what)
        else:
            train_idx, val_idx = list(range(len(train_ids))), list(range(len(val_ids)))
        # the split itself, before data.max_val_pairs (which may change on resume)
        self._split_state = _split_state([train_ids[i] for i in train_idx],
                                         [val_ids[i] for i in val_idx])
        if c.max_val_pairs is not None and len(val_idx) > c.max_val_pairs:
            # those that rank first (as held out): a sample of the whole split, not the first
            # rows of WorldStrat's CSV (whatever they are sorted by)
            ranked = sorted(val_idx, key=lambda i: (_rank(c.split_seed, val_ids[i]), val_ids[i]))
            val_idx = sorted(ranked[: c.max_val_pairs])
        self.train_set = ItemSubset(train_full, train_idx, train_ids, skip_unusable=True)
        self.val_set = ItemSubset(val_full, val_idx, val_ids)
        return self.train_set, self.val_set

    def check(self, val_limit: int | None = None) -> None:
        """Build both sets (the dataset's folder and split files, the held-out split) and read
        the first validation item, before any work: a missing or broken folder is a
        :class:`DataError` naming the file, a value of ``data.options`` the loader refuses a
        :class:`ConfigError` naming ``data.options``, both one line. ``val_limit`` is accepted
        for the interface (only one item is read)."""
        _, val_set = self._datasets()
        first = val_set.ids[0]
        try:
            item = val_set[0]
        except DataError as exc:
            raise DataError(f"{first_line(exc)} (validation item {first} of the {self.name} "
                            f"dataset at {self.root})") from None
        except ConfigError as exc:  # e.g. an OLI2MSI crop larger than the files
            raise ConfigError(f"config key 'data.options' ({self.name} dataset, validation "
                              f"item {first}): {first_line(exc)}") from None
        if "hr" not in item:
            raise DataError(f"{self.root}: validation item {first} of the {self.name} "
                            f"dataset has no HR image: nothing to validate against")
        _, hr_channels = dataset_channels(self.cfg)
        if item["hr"].shape[0] != hr_channels:
            raise ConfigError(f"config key 'data.options': the {self.name} dataset's HR images "
                              f"have {item['hr'].shape[0]} channels, the model is built for "
                              f"{hr_channels}")

    def splits_doc(self) -> dict[str, Any]:
        """The run's train/val items by ``id`` (sorted), with what it takes to find them again:
        the dataset, its loader options (``"options"``: e.g. PROBA-V's bands, which choose the
        image sets) and the dataset split each list comes from (``"sources"``, e.g.
        ``{"train": "train", "val": "train"}`` for a held-out share; ``"source_split"``: the
        validation items')."""
        train_set, val_set = self._datasets()
        return {"dataset": self.name, "options": dict(self.cfg.options),
                "source_split": self.source_split,
                "sources": {"train": "train", "val": self.source_split},
                "train": sorted(train_set.ids), "val": sorted(val_set.ids)}

    def state_dict(self) -> dict[str, Any]:
        """The base's place in the training draws, and which items the split holds
        (``"split"``: their counts and a digest), so a resume on a dataset whose items changed
        is refused (:meth:`load_state_dict`)."""
        state = super().state_dict()
        if state and self._split_state is not None:
            state["split"] = dict(self._split_state)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume where the checkpoint's run was; :class:`DataError` where the dataset's items
        changed since (another held-out split would validate on items the run trained on)."""
        super().load_state_dict(state_dict)
        self.check_split_state(state_dict)

    def check_split_state(self, state_dict: dict[str, Any]) -> None:
        """:class:`DataError` where a checkpoint's state (:meth:`state_dict`) records other
        train/val items than this dataset now splits into (checked before a resumed run writes
        anything, and again as Lightning restores the state)."""
        saved = state_dict.get("split")
        if not isinstance(saved, dict):
            return  # a checkpoint that does not record it
        self._datasets()
        now = self._split_state or {}
        if saved.get("digest") != now.get("digest"):
            raise DataError(
                f"{self.root}: the {self.name} dataset's train/val items are not those the "
                f"checkpoint's run used ({saved.get('train')} train / {saved.get('val')} "
                f"validation items then, {now.get('train')} / {now.get('val')} now: its files "
                "changed), so validation could score items the run trained on; put the "
                "dataset back as it was, or start afresh (--resume never --overwrite, or "
                "another --out)")


def build_datamodule(cfg: TrainConfig) -> TrainValDataModule:
    """The data module of ``cfg.data.dataset``: S2-NAIP's, or a benchmark dataset's."""
    cls = BenchmarkDataModule if cfg.data.benchmark else S2NAIPDataModule
    return cls(cfg.data, cfg.layout, cfg.seed)


__all__ = ["SPLITS_FILE", "BenchmarkDataModule", "ItemSubset", "S2NAIPDataModule",
           "TrainValDataModule", "build_datamodule", "collate_items", "held_out_split",
           "item_ids", "split_by_file", "split_by_groups", "split_pairs"]
