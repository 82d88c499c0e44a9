"""The datasets by name, for configs and the command line (Python code imports the classes).

``open_dataset("probav", root, split="train", n_images=9)`` is
``PROBAVDataset(root, split="train", n_images=9)``, with its options checked by name first (a
config's typo is a one-line error listing what the dataset takes). S2-NAIP's ``split`` is one
of the splits in its ``zoomsr_splits.json`` (``zoomsr data build`` writes it).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from zoomsr.data.oli2msi import OLI2MSIDataset
from zoomsr.data.probav import PROBAVDataset
from zoomsr.data.s2naip import S2NAIPDataset
from zoomsr.data.worldstrat import WorldStratDataset
from zoomsr.errors import ConfigError, DataError

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
                 **options: Any) -> Dataset:
    """Dataset ``name`` at ``root``: its ``split`` (None: S2-NAIP's every pair, the others'
    own default) with ``options`` (as its class takes them, checked by name).

    Raises:
        ConfigError: an unknown dataset or option, an unknown split.
        DataError: the dataset's own errors (a missing folder, unreadable files...).
    """
    check_dataset_options(name, options)
    cls = dataset_class(name)
    kwargs = dict(options)
    if split is not None:
        if cls is S2NAIPDataset:
            if "pairs" in kwargs:
                raise ConfigError("give S2-NAIP a split or pairs, not both")
            from zoomsr.data.builder.splits import load_split

            kwargs["pairs"] = load_split(root, split)
        else:
            kwargs["split"] = split
    return cls(root, **kwargs)


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

    A split that cannot be opened at all (a missing folder) is one problem of its own.
    ``progress(done, total)`` after each item of a split. S2-NAIP has its own, finer check
    (:func:`zoomsr.data.check.check_dataset`).
    """
    if dataset_class(name) is S2NAIPDataset:
        raise ConfigError("S2-NAIP is checked by zoomsr.data.check.check_dataset "
                          "(`zoomsr data check ROOT`)")
    check_dataset_options(name, options)
    reserved = {"n_images", "train", "split"} & set(options)
    if reserved:
        raise ConfigError(f"{', '.join(sorted(reserved))}: set by the check")
    results = []
    for split in splits or dataset_splits(name):
        try:
            ds = open_dataset(name, root, split, **options,
                              n_images=CHECK_FRAMES[name.lower()])
        except DataError as exc:
            results.append(SplitCheck(split, 0, [str(exc)]))
            continue
        found = SplitCheck(split, len(ds))  # type: ignore[arg-type]
        for i in range(found.items):
            try:
                ds[i]
            except DataError as exc:
                found.problems.append(str(exc))
            if progress is not None:
                progress(i + 1, found.items)
        results.append(found)
    return results
