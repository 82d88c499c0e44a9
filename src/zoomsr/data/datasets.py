"""The datasets by name, for configs and the command line (Python code imports the classes).

``open_dataset("probav", root, split="train", n_images=9)`` is
``PROBAVDataset(root, split="train", n_images=9)``, with its options checked by name first (a
config's typo is a one-line error listing what the dataset takes). S2-NAIP's ``split`` is one
of the splits in its ``zoomsr_splits.json`` (``zoomsr data build`` writes it).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from torch.utils.data import Dataset

from zoomsr.data.oli2msi import OLI2MSIDataset
from zoomsr.data.probav import PROBAVDataset
from zoomsr.data.s2naip import S2NAIPDataset
from zoomsr.data.worldstrat import WorldStratDataset
from zoomsr.errors import ConfigError

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
