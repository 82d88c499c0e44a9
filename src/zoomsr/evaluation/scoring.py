"""A model named by its weights, scored on a dataset named by its loader: what ``zoomsr
evaluate-model`` runs once and ``zoomsr benchmark`` runs for every model and dataset.

:func:`open_for_model` opens the dataset the way the model takes it (its layout, frames and
S2-NAIP bands, from what the weights record); :func:`dataset_metrics` builds the metrics with
cPSNR scored against the items' own HR masks, as the PROBA-V challenge scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from zoomsr.errors import ConfigError
from zoomsr.evaluation.model_eval import ScoringModel
from zoomsr.metrics.base import Metric
from zoomsr.metrics.factory import MetricOptions

#: Loader options a scoring run sets itself, and where a user gives the first two instead.
SET_BY_RUN = {"split": "split", "n_images": "n_images", "train": None, "layout": None}


def check_loader_options(options: Mapping[str, Any], where: str,
                         names: Mapping[str, str] | None = None) -> None:
    """:class:`ConfigError` for a loader option the run sets (``split``, ``n_images``: given
    as ``names[key]`` instead; ``train``, ``layout``: evaluation, the model's layout).
    ``where`` names the options in the message (``--option``, ``datasets[0].options``)."""
    names = names or {}
    for key, instead in SET_BY_RUN.items():
        if key not in options:
            continue
        if instead is not None:
            raise ConfigError(f"{where} {key}: give it as {names.get(key, instead)}")
        raise ConfigError(f"{where} {key}: set by the run (evaluation, the model's layout)")


def frames_per_item(dataset: str, root: Path, split: str | None, options: Mapping[str, Any],
                    splits_file: Path | None = None) -> int:
    """Input channels per frame of the dataset's ``split`` as ``options`` open it."""
    from zoomsr.data.bands import band_channels, validate_bands
    from zoomsr.data.datasets import dataset_class, open_dataset

    if dataset == "s2naip":  # without opening it (its evaluation set reads every NAIP image)
        return sum(band_channels(b) for b in validate_bands(options.get("bands", ("tci",))))
    fixed = getattr(dataset_class(dataset), "channels", None)
    if isinstance(fixed, int):  # PROBA-V's one band, OLI2MSI's RGB
        return fixed
    # the split scored, not the loader's default (which may not be there)
    opened: Any = open_dataset(dataset, root, split, splits_file=splits_file,
                               **{**options, "n_images": 1})
    return int(opened.channels)


def open_for_model(scoring: ScoringModel, dataset: str, root: Path, split: str | None = None,
                   splits_file: Path | None = None, options: Mapping[str, Any] | None = None,
                   n_images: int | None = None, n_images_name: str = "--n-images"
                   ) -> tuple[Dataset, dict[str, Any], int]:
    """``dataset`` (a name of :data:`~zoomsr.data.datasets.DATASETS`) at ``root`` opened in
    evaluation mode for ``scoring``'s model: its layout; ``n_images`` frames, else what the
    weights record (:attr:`ScoringModel.known_frames`), else a stacked model's input channels
    / the dataset's channels per frame; for S2-NAIP without ``bands`` in ``options``, the
    bands the weights record.

    Returns:
        The dataset, the loader options used (``bands`` added), and the frames per item.

    Raises:
        ConfigError: a frames model whose weights give no frame count and no ``n_images``
            (named ``n_images_name`` in the message); a bad option (the loader's).
    """
    from zoomsr.data.datasets import open_dataset
    from zoomsr.inference.model import check_recorded_bands

    used = dict(options or {})
    if dataset == "s2naip" and "bands" not in used and scoring.bands:
        used["bands"] = scoring.bands  # what it was trained on
    elif dataset == "s2naip" and "bands" in used:  # (TCI with B08 to an RGB model too)
        check_recorded_bands(scoring.label, used["bands"], scoring.bands,
                             recorded_by="its weights record them",
                             fix="leave the bands option out to take them")
    frames = n_images or scoring.known_frames
    if frames is None:
        frames = scoring.frames_for(frames_per_item(dataset, root, split, used, splits_file))
    if frames is None:
        raise ConfigError(f"{scoring.label}: its weights do not say how many frames it takes "
                          f"(a frames model); give {n_images_name}")
    ds = open_dataset(dataset, root, split, splits_file=splits_file, **used, n_images=frames,
                      layout=scoring.layout, train=False)
    return ds, used, frames


def dataset_metrics(names: Sequence[str], options: MetricOptions) -> dict[str, Metric]:
    """The metrics ``names`` built with ``options``; cPSNR in ``challenge`` mode takes the
    items' masks as the HR's own (``valid_is="target"``: PROBA-V's SM moving with the HR crop
    at each shift, as the challenge's scorer has it)."""
    from zoomsr.metrics import CPSNR
    from zoomsr.metrics.factory import create_metrics

    built = create_metrics(list(names), options)
    if "cpsnr" in built and options.cpsnr_mode == "challenge":
        built["cpsnr"] = CPSNR(options.border, options.cpsnr_mode, valid_is="target")
    return built


__all__ = ["check_loader_options", "dataset_metrics", "frames_per_item", "open_for_model"]
