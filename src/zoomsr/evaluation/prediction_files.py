"""Another method's outputs, saved as files, scored on a benchmark dataset (PROBA-V, WorldStrat,
OLI2MSI) as a model is: each item's file found by the item's id (``imgset0594.png``, the
PROBA-V challenge's submission layout; ``Landcover-773616.tif``; an OLI2MSI pair's name),
read by the dataset as it reads its own HR images (:meth:`read_prediction`: the same scale,
bands and clipping), and fed to :func:`~zoomsr.evaluation.evaluate_model` in place of a
model's output, so masks, metrics and rows are those of the models' cells."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from zoomsr.errors import DataError

#: Files taken as predictions (others in the folder, e.g. a README or a log, are ignored).
PREDICTION_SUFFIXES = (".png", ".tif", ".tiff")


def prediction_files(folder: str | os.PathLike[str], ids: Sequence[str]) -> dict[str, Path]:
    """``{id: file}`` of the items ``ids``: the file named ``ID.png``, ``ID.tif`` or
    ``ID.tiff`` anywhere under ``folder`` (one per id).

    Raises:
        DataError: no such folder; items without a file (how many, an example, where it was
            looked for); an id with two files.
    """
    root = Path(folder)
    if root.is_file():
        raise DataError(f"{root}: a file; predictions on a benchmark dataset are a folder of "
                        "one file per item, named by its id (ID.png or ID.tif)")
    if not root.is_dir():
        raise DataError(f"{root}: predictions folder not found")
    wanted = set(ids)
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in PREDICTION_SUFFIXES and path.stem in wanted \
                and path.is_file():
            found.setdefault(path.stem, []).append(path)
    twice = sorted(i for i, paths in found.items() if len(paths) > 1)
    if twice:
        paths = ", ".join(str(p) for p in found[twice[0]])
        raise DataError(f"{root}: {len(twice)} item(s) have two prediction files (e.g. "
                        f"{twice[0]}: {paths}); keep one")
    missing = [i for i in ids if i not in found]
    if missing:
        raise DataError(f"{root}: no prediction file for {len(missing)} of the {len(ids)} "
                        f"item(s) scored (e.g. {missing[0]}: looked for {missing[0]}.png, "
                        f".tif or .tiff under it)")
    return {i: found[i][0] for i in ids}


class PredictionFiles(nn.Module):
    """The files of :func:`prediction_files` as a model for
    :func:`~zoomsr.evaluation.evaluate_model`: ``forward(lr, keys)`` -> ``[B, C, H, W]``
    float32, each key's file read by ``dataset.read_prediction(path, (H, W))``, ``H, W`` the
    items' HR size (the LR's times the dataset's scale; the LR is not used otherwise)."""

    takes_keys = True

    def __init__(self, files: dict[str, Path], dataset: Dataset) -> None:
        super().__init__()
        if not hasattr(dataset, "read_prediction"):
            raise DataError(f"{type(dataset).__name__}: cannot read prediction files (no "
                            "read_prediction)")
        self.files = files
        self.dataset = dataset

    def forward(self, lr: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        read = self.dataset.read_prediction
        scale = int(getattr(self.dataset, "scale", 1))
        shape = (lr.shape[-2] * scale, lr.shape[-1] * scale)
        return torch.stack([torch.from_numpy(read(self.files[str(k)], shape))
                            for k in keys]).to(lr.device)


__all__ = ["PREDICTION_SUFFIXES", "PredictionFiles", "prediction_files"]
