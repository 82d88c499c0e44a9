"""The datasets by name, for configs and the command line (Python code imports the classes).

``open_dataset("probav", root, split="train", n_images=9)`` is
``PROBAVDataset(root, split="train", n_images=9)``, with its options checked by name first (a
config's typo is a one-line error listing what the dataset takes). S2-NAIP's ``split`` is one
of the splits in its ``zoomsr_splits.json`` (``zoomsr data build`` writes it).
"""

from __future__ import annotations

import inspect
import operator
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset

from zoomsr.data.oli2msi import OLI2MSIDataset
from zoomsr.data.probav import PROBAVDataset
from zoomsr.data.s2naip import S2NAIPDataset
from zoomsr.data.worldstrat import WorldStratDataset
from zoomsr.errors import ConfigError, DataError, ZoomsrWarning, first_line
from zoomsr.io.json_files import read_json

#: Dataset name -> class: S2-NAIP (the paper's) and the other benchmark datasets.
DATASETS: dict[str, type[Dataset]] = {
    "s2naip": S2NAIPDataset,
    "probav": PROBAVDataset,
    "worldstrat": WorldStratDataset,
    "oli2msi": OLI2MSIDataset,
}


def dataset_class(name: str) -> type[Dataset]:
    """The class of dataset ``name`` (:data:`DATASETS`); :class:`ConfigError` listing the
    names for another."""
    try:
        return DATASETS[str(name).lower()]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r} (expected one of "
                          f"{', '.join(DATASETS)})") from None


def dataset_options(name: str) -> list[str]:
    """The keyword options dataset ``name``'s class takes (besides ``root``)."""
    params = inspect.signature(dataset_class(name).__init__).parameters
    return [p for p in params if p not in ("self", "root")]


def check_dataset_options(name: str, options: dict[str, Any], what: str = "option") -> None:
    """:class:`ConfigError` naming the keys of ``options`` that dataset ``name`` does not
    take, and listing those it does (``what``: how the message calls a key, e.g. a config's
    ``"config key 'data.options'"``)."""
    known = dataset_options(name)
    unknown = sorted(k for k in options if k not in known)
    if unknown:
        raise ConfigError(f"{what}: {', '.join(unknown)} not an option of the {name} dataset "
                          f"(it takes: {', '.join(known)})")


def open_dataset(name: str, root: str | os.PathLike[str], split: str | None = None,
                 *, splits_file: str | os.PathLike[str] | None = None,
                 **options: Any) -> Dataset:
    """Dataset ``name`` at ``root``: its ``split`` (None: S2-NAIP's every pair, the others'
    own default) with ``options`` (as its class takes them, checked by name).

    S2-NAIP's ``split`` is the pairs that ``ROOT/zoomsr_splits.json`` lists for it, or
    ``splits_file`` (e.g. the ``splits.json`` of a ``zoomsr train`` run folder); entries are
    tile ids or ``image_id/tile``. For the other datasets, ``splits_file`` is a training run's
    ``splits.json``: its ``split`` (``train`` or ``val``) items, by id, taken from the dataset
    split they came from (an :class:`ItemSubset`).

    Raises:
        ConfigError: an unknown dataset or option, an unknown split.
        DataError: the dataset's own errors (a missing folder, unreadable files...), a
            missing or malformed splits file, a split that lists no pair.
    """
    check_dataset_options(name, options)
    cls = dataset_class(name)
    kwargs = dict(options)
    if splits_file is not None and split is None:
        raise ConfigError("a splits file lists the items of each split: give the split to "
                          "take (e.g. val)")
    if splits_file is not None and cls is not S2NAIPDataset:
        return _run_split(name, cls, root, split, splits_file, kwargs)  # type: ignore[arg-type]
    if split is not None:
        if cls is S2NAIPDataset:
            if "pairs" in kwargs:
                raise ConfigError("give S2-NAIP a split or pairs, not both")
            kwargs["pairs"] = _s2naip_split(root, split, splits_file)
        else:
            kwargs["split"] = split
    return cls(root, **kwargs)  # type: ignore[call-arg]  # (torch's Dataset takes none)


def _run_split(name: str, cls: type[Dataset], root: str | os.PathLike[str], split: str,
               splits_file: str | os.PathLike[str], kwargs: dict[str, Any]) -> Dataset:
    """The items a ``zoomsr train`` run's ``splits.json`` lists for ``split`` (its ``train``
    or ``val``) of benchmark dataset ``name``: taken from the dataset split they came from
    (the file's ``sources``: a held-out share of ``train``, WorldStrat's ``val``), in dataset
    order, as an :class:`ItemSubset`."""
    path = Path(splits_file)
    doc = _splits_doc(path)
    if doc.get("dataset", "s2naip") != name:
        raise DataError(f"{path}: the splits of a run on the {doc.get('dataset', 's2naip')} "
                        f"dataset, not on {name}")
    ids = doc.get(split)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not ids:
        raise DataError(f"{path}: no list of items for the {split!r} split (it has "
                        f"{', '.join(k for k, v in doc.items() if isinstance(v, list))})")
    sources = cast(dict, doc.get("sources")) if isinstance(doc.get("sources"), dict) else {}
    source = (sources.get(split) or (doc.get("source_split") if split == "val" else None)
              or (split if split in dataset_splits(name) else "train"))  # (a held-out share)
    ds = cls(root, split=source, **kwargs)  # type: ignore[call-arg]  # (as above)
    index = {item: i for i, item in enumerate(item_ids(ds))}
    missing = [i for i in ids if i not in index]
    if missing:
        used = doc.get("options") or {}
        hint = (f"; the run opened it with options {used}: pass them with -o key=value"
                if used and used != kwargs else "")
        raise DataError(f"{path}: {len(missing)} of its {split!r} items are not in the "
                        f"{source} split of {root} (e.g. {missing[0]}){hint}")
    chosen = sorted(index[i] for i in set(ids))
    return ItemSubset(ds, chosen, item_ids(ds))


def _splits_doc(path: Path) -> dict[str, Any]:
    """A splits file's JSON object; :class:`DataError` naming it when missing or unreadable."""
    doc = read_json(path, "splits file not found", "unreadable splits file")
    if not isinstance(doc, dict):
        raise DataError(f"{path}: not a splits file (a JSON object of lists)")
    return doc


def _s2naip_split(root: str | os.PathLike[str], split: str,
                  splits_file: str | os.PathLike[str] | None) -> list[Any]:
    """The pairs of S2-NAIP ``split`` (see :func:`open_dataset`)."""
    from zoomsr.data.builder.splits import SPLIT_NAMES
    from zoomsr.data.layout import SPLITS_FILE, scan_pairs
    from zoomsr.validate import check_choice

    check_choice("split", split, SPLIT_NAMES)
    path = Path(splits_file) if splits_file is not None else Path(root) / SPLITS_FILE
    if not path.is_file():
        if splits_file is not None:
            raise DataError(f"{path}: splits file not found")
        if not Path(root).is_dir():
            raise DataError(f"{root}: S2-NAIP dataset folder not found")
        raise DataError(f"{path}: not found; an S2-NAIP split is one of the splits `zoomsr "
                        "data build` writes there (or a training run's: its splits.json): "
                        "leave the split out to take every pair")
    doc = _splits_doc(path)
    if doc.get("dataset", "s2naip") != "s2naip":  # (a run on a benchmark dataset: its ids)
        raise DataError(f"{path}: the splits of a run on the {doc['dataset']} dataset, not on "
                        "s2naip")
    entries = doc.get(split)
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise DataError(f"{path}: no list of tiles for the {split!r} split")
    wanted = set(entries)
    pairs = [p for p in scan_pairs(root)
             if p.tile in wanted or f"{p.image_id}/{p.tile}" in wanted]
    if not pairs:
        raise DataError(f"{path}: its {split!r} split lists no pair of {root}; choose another "
                        "split")
    return pairs


#: Frames asked of each item by :func:`check_items`: as many as the dataset has per sample
#: at most (PROBA-V's image sets hold 9 to 35, WorldStrat's areas up to 16 revisits, OLI2MSI
#: one image), so every frame file is read (the loaders repeat the ranked frames when asked
#: for more than a sample has).
CHECK_FRAMES = {"probav": 35, "worldstrat": 16, "oli2msi": 1}


@dataclass
class SplitCheck:
    """What :func:`check_items` found in one split."""

    split: str
    items: int
    problems: list[str] = field(default_factory=list)  # one line each, naming the file


def dataset_splits(name: str) -> tuple[str, ...]:
    """The splits of benchmark dataset ``name`` (its module's ``SPLITS``)."""
    import sys

    return tuple(getattr(sys.modules[dataset_class(name).__module__], "SPLITS", ()))


def check_items(name: str, root: str | os.PathLike[str],
                splits: Sequence[str] | None = None,
                progress: Callable[[int, int], None] | None = None,
                **options: Any) -> list[SplitCheck]:
    """Read every item (every frame file, HR and mask) of benchmark dataset ``name`` in
    ``splits`` (default: all of its splits) and collect what cannot be read, one line each.

    The loaders stop at the first missing or stray file of a split; the check lists each
    (WorldStrat's missing areas, OLI2MSI's unpaired files, PROBA-V's incomplete image sets)
    and reads the rest of the split where the loader can open it without them (WorldStrat's
    other areas, OLI2MSI's paired files, PROBA-V's bands without a problem). A split that
    cannot be opened at all (a missing folder) is one problem of its own.
    ``progress(done, total)`` after each item, over all the splits.
    S2-NAIP has its own, finer check (:func:`zoomsr.data.check.check_dataset`).
    """
    if dataset_class(name) is S2NAIPDataset:
        raise ConfigError("S2-NAIP is checked by zoomsr.data.check.check_dataset "
                          "(`zoomsr data check ROOT`)")
    name = name.lower()
    check_dataset_options(name, options)
    reserved = {"n_images", "train", "split"} & set(options)
    if reserved:
        raise ConfigError(f"{', '.join(sorted(reserved))}: set by the check")
    opened = []
    for split in splits or dataset_splits(name):
        datasets, problems = _open_for_check(name, root, split, options)
        opened.append((SplitCheck(split, 0, problems), datasets))
    total = sum(len(ds) for _, datasets in opened for ds in datasets)  # type: ignore[arg-type, misc]
    done = 0
    for found, datasets in opened:
        for ds in datasets:
            for i in range(len(ds)):  # type: ignore[arg-type]
                try:
                    ds[i]
                except DataError as exc:
                    found.problems.append(str(exc))
                found.items += 1
                done += 1
                if progress is not None:
                    progress(done, total)
    return [found for found, _ in opened]


def _open_for_check(name: str, root: str | os.PathLike[str], split: str,
                    options: dict[str, Any]) -> tuple[list[Dataset], list[str]]:
    """The parts of ``split`` that can be opened, each with every frame asked for, and the
    problems that kept the rest out, one line each."""
    kwargs = {**options, "n_images": CHECK_FRAMES[name]}
    if name == "worldstrat":  # every missing area listed (dataset.missing), the others read
        from zoomsr.data.worldstrat import DOWNLOAD_HINT, WorldStratWarning

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", WorldStratWarning)
                ds = open_dataset(name, root, split, **{**kwargs, "skip_missing": True})
        except DataError as exc:
            return [], [str(exc)]
        return [ds], [f"{problem}; {DOWNLOAD_HINT}"
                      for problem in cast(WorldStratDataset, ds).missing]
    try:
        return [open_dataset(name, root, split, **kwargs)], []
    except DataError as exc:
        first = str(exc)
    try:
        if name == "oli2msi":
            datasets, problems = _oli2msi_parts(root, split, kwargs)
        else:
            datasets, problems = _probav_parts(root, split, kwargs)
    except DataError:  # another problem of the same split: the loader's first is the one
        return [], [first]
    return (datasets, problems) if problems else ([], [first])


def _oli2msi_parts(root: str | os.PathLike[str], split: str,
                   kwargs: dict[str, Any]) -> tuple[list[Dataset], list[str]]:
    """Each OLI2MSI file of ``split`` without its partner, and the pairs that have one."""
    from zoomsr.data.oli2msi import OLI2MSIPair, tiff_files

    folders = {side: Path(root) / f"{split}_{side}" for side in ("lr", "hr")}
    if not all(folder.is_dir() for folder in folders.values()) or "pairs" in kwargs:
        return [], []
    files = {side: tiff_files(folder) for side, folder in folders.items()}
    problems = []
    for side, other in (("lr", "hr"), ("hr", "lr")):
        for file in sorted(set(files[side]) - set(files[other])):
            problems.append(f"{files[side][file]}: no {other.upper()} file of the same name in "
                            f"{folders[other]}; OLI2MSI pairs LR and HR files by name "
                            "(download the missing one again, or remove the stray file)")
    paired = sorted(set(files["lr"]) & set(files["hr"]))
    pairs = [OLI2MSIPair(Path(file).stem, files["lr"][file], files["hr"][file])
             for file in paired]
    datasets = [open_dataset("oli2msi", root, split, **kwargs, pairs=pairs)] if pairs else []
    return datasets, problems


def _probav_parts(root: str | os.PathLike[str], split: str,
                  kwargs: dict[str, Any]) -> tuple[list[Dataset], list[str]]:
    """Each incomplete PROBA-V image set of ``split`` (a missing LR, QM, HR or SM file), and
    each band's complete ones, opened (by name: the loader does not look into the others)."""
    from zoomsr.data.probav import (
        BANDS,
        imageset_folders,
        scan_imageset,
        scan_probav,
        validate_probav_bands,
    )

    if not (Path(root) / split).is_dir() or "imgsets" in kwargs:
        return [], []
    datasets, problems = [], []
    for band in validate_probav_bands(kwargs.get("bands", BANDS)):
        band_dir = Path(root) / split / band
        found, complete = [], []
        if not band_dir.is_dir():
            try:
                scan_probav(root, split, (band,))
            except DataError as exc:
                found.append(str(exc))
        else:
            for folder in imageset_folders(band_dir):
                try:
                    scan_imageset(folder, band, needs_hr=split == "train")
                    complete.append(folder.name)
                except DataError as exc:
                    found.append(str(exc))
        problems.extend(found)
        if complete:  # their files are read too, whatever the band's damaged sets
            datasets.append(open_dataset("probav", root, split, **{**kwargs, "bands": band},
                                         imgsets=complete))
    return datasets, problems


def item_ids(dataset: Dataset) -> list[str]:
    """The ``id`` of each item of a benchmark dataset, in dataset order, without reading any
    (PROBA-V image sets, OLI2MSI pairs, WorldStrat AOIs)."""
    for records, key in (("imgsets", "name"), ("pairs", "id"), ("aois", "name")):
        found = getattr(dataset, records, None)
        if found is not None:
            return [str(getattr(r, key)) for r in found]
    raise TypeError(f"{type(dataset).__name__}: not a benchmark dataset (no image sets, pairs "
                    "or AOIs)")


class ItemSubset(Dataset):
    """Items ``indices`` of ``dataset``, indexed as the loaders are: ``subset[i]`` or
    ``subset[(i, sample_seed)]`` (what :class:`~zoomsr.data.ResumableSampler` yields; torch's
    ``Subset`` cannot forward the tuple). ``ids`` are the items' names; ``scale`` and
    ``channels`` are the dataset's.

    ``skip_unusable`` (the training set): an item drawn with a ``sample_seed`` whose files
    cannot be read (:class:`DataError`) is replaced by another drawn from that seed, as
    S2-NAIP's training skips unusable pairs (one warning per process; at most
    ``max_consecutive_skips`` in a row), so a damaged file does not stop a run at the step that
    draws it, and again at every resume; the replacement follows from the seed alone, so a
    resumed run still trains on what an uninterrupted one would. Validation (a plain index)
    raises.
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int], ids: Sequence[str],
                 skip_unusable: bool = False, max_consecutive_skips: int = 64) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.ids = [str(ids[i]) for i in self.indices]
        self.skip_unusable = skip_unusable
        self.max_consecutive_skips = max_consecutive_skips
        self.unusable: set[int] = set()  # this process's finds (positions in the subset)

    def __getattr__(self, name: str) -> Any:
        # the dataset's other attributes (layout, n_images, train, split...); never during
        # unpickling, when the instance has no dataset yet
        if name.startswith("__") or name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    @property
    def scale(self) -> int:
        return int(self.dataset.scale)  # type: ignore[attr-defined]

    @property
    def channels(self) -> int:
        return int(self.dataset.channels)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        if not isinstance(index, tuple):
            return self.dataset[self.indices[operator.index(index)]]
        if len(index) != 2:
            raise TypeError(f"index must be an int or (index, sample_seed), got {index!r}")
        position, seed = operator.index(index[0]), int(index[1])
        if not self.skip_unusable:
            return self.dataset[(self.indices[position], seed)]
        first: DataError | None = None
        for attempt in range(self.max_consecutive_skips):
            # the draw's own seed first (the same sample as without skipping), then one per
            # attempt: what a draw gives follows from its seed, not from what failed before
            item_seed = seed if attempt == 0 else int(
                np.random.default_rng([seed, attempt]).integers(2**62))
            if position not in self.unusable:
                try:
                    return self.dataset[(self.indices[position], item_seed)]
                except DataError as exc:
                    first = first or exc
                    self._skip(position, exc)
            position = int(np.random.default_rng([seed, attempt, 1]).integers(len(self)))
        raise DataError(f"{self.max_consecutive_skips} training items in a row could not be "
                        f"read, e.g. {first_line(first) if first else self.ids[position]}; "
                        "run `zoomsr data check ROOT --dataset NAME` to list every problem")

    def _skip(self, position: int, exc: DataError) -> None:
        if not self.unusable:
            warnings.warn(f"skipping unusable training items (replaced by others drawn from "
                          f"the same seed); e.g. {first_line(exc)}", ZoomsrWarning,
                          stacklevel=3)
        self.unusable.add(position)


def stack_items(items: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """``lr`` and ``hr`` of same-size items stacked, and ``hr_valid`` where any item has one
    (all True for an item without); ``names`` (one per item) name an item whose mask is not of
    its HR's size."""
    batch: dict[str, Any] = {"lr": torch.stack([it["lr"] for it in items]),
                             "hr": torch.stack([it["hr"] for it in items])}
    if any("hr_valid" in it for it in items):
        masks = []
        for it, name in zip(items, names, strict=True):
            size = tuple(it["hr"].shape[-2:])
            mask = (torch.as_tensor(it["hr_valid"], dtype=torch.bool) if "hr_valid" in it
                    else torch.ones(size, dtype=torch.bool))
            if tuple(mask.shape) != size:
                raise DataError(f"item {name}: its hr_valid {list(mask.shape)} is not of "
                                f"its HR's size {list(size)}")
            masks.append(mask)
        batch["hr_valid"] = torch.stack(masks)
    return batch
