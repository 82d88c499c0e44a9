"""Whether a model is being scored on items it was trained on: a ``zoomsr train`` run keeps
the items of its splits beside its weights (``RUN/splits.json``), so scoring its
``generator.pth`` or a checkpoint of ``RUN/checkpoints/`` on a dataset can say how many of the
items scored were training items (their scores flatter the model)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: What a training run writes beside its weights (:mod:`zoomsr.training.run`).
RUN_SPLITS = "splits.json"
RUN_CONFIG = "config.yaml"


@dataclass(frozen=True)
class TrainingOverlap:
    """``trained`` of the ``scored`` items were in the ``train`` list of the run's ``splits``."""

    splits: Path
    trained: int
    scored: int


def run_folder(weights: Path) -> Path | None:
    """The ``zoomsr train`` run folder ``weights`` belongs to (``RUN/generator.pth``,
    ``RUN/checkpoints/*.ckpt``), None when it is not in one."""
    for folder in (weights.parent, weights.parent.parent):
        if (folder / RUN_SPLITS).is_file() and (folder / RUN_CONFIG).is_file():
            return folder
    return None


def training_overlap(weights: Path | None, dataset: str,
                     keys: Iterable[str]) -> TrainingOverlap | None:
    """How many of the items scored (``keys``: S2-NAIP's ``image_id/tile``, other datasets'
    ids, as :func:`~zoomsr.evaluation.evaluate_model` keys its rows) the run that wrote
    ``weights`` trained on; None when ``weights`` is not a run's, its splits file cannot be
    read, or it is of another dataset."""
    folder = run_folder(Path(weights).resolve()) if weights is not None else None
    if folder is None:
        return None
    try:
        doc = json.loads((folder / RUN_SPLITS).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("train"), list):
        return None
    if str(doc.get("dataset", "s2naip")).lower() != dataset.lower():
        return None
    train = {str(k) for k in doc["train"]}
    scored = list(keys)
    return TrainingOverlap(folder / RUN_SPLITS, sum(k in train for k in scored), len(scored))
