"""Score a model on a dataset directly: its outputs against the dataset's HR images, no files.

:func:`evaluate_model` runs a model over any dataset with zoomsr's item contract
(:class:`~zoomsr.data.S2NAIPDataset`, :class:`~zoomsr.data.PROBAVDataset`,
:class:`~zoomsr.data.WorldStratDataset`, :class:`~zoomsr.data.OLI2MSIDataset`: items with
``lr``, ``hr`` and optionally ``hr_valid``) and scores each output with the metrics, as
``zoomsr evaluate`` scores files: the same per-image rows (key = the item's ``id``, or
``image_id/tile`` for S2-NAIP), the same summary with 95 % intervals, and the same nodata rule
(the HR's quality mask, ``hr_valid``, is the ``valid`` mask: PSNR/SSIM/cPSNR over its pixels).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from zoomsr.devices import resolve_device
from zoomsr.errors import ConfigError, DataError, InputError
from zoomsr.evaluation.run import (
    VALID_FRACTION,
    EvaluationResult,
    ProgressFn,
    _takes_valid,
    as_metrics,
    summarize,
)
from zoomsr.metrics.base import Metric, black_outside, check_batch_size
from zoomsr.validate import check_int


def _key(item: Mapping[str, Any]) -> str:
    if "id" in item:
        return str(item["id"])
    if "image_id" in item and "tile" in item:  # S2-NAIP
        return f"{item['image_id']}/{item['tile']}"
    raise DataError("a dataset item has no 'id' (nor S2-NAIP's image_id and tile): cannot "
                    "name its row")


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Only what scoring needs (items also carry strings, None baselines, ragged extras)."""
    if any("hr" not in it for it in items):
        raise DataError("the dataset's items have no 'hr' (a split without ground truth, e.g. "
                        "PROBA-V's test split): nothing to score against")
    batch: dict[str, Any] = {
        "lr": torch.stack([it["lr"] for it in items]),
        "hr": torch.stack([it["hr"] for it in items]),
        "key": [_key(it) for it in items],
    }
    if any("hr_valid" in it for it in items):
        batch["hr_valid"] = torch.stack([
            torch.as_tensor(it["hr_valid"], dtype=torch.bool) if "hr_valid" in it
            else torch.ones(it["hr"].shape[-2:], dtype=torch.bool) for it in items])
    return batch


def as_rgb(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` as the metrics' ``[B, 3, H, W]``: one band repeated (PROBA-V's NIR or
    RED), the first three channels of RGB(+NIR) (WorldStrat's rgbn, S2-NAIP's RGB)."""
    c = x.shape[1]
    if c == 1:
        return x.expand(-1, 3, -1, -1)
    if c >= 3:
        return x[:, :3]
    raise InputError(f"images of {c} channels: the metrics score 1 band (repeated) or the "
                     "first 3 (RGB)")


@torch.inference_mode()
def evaluate_model(
    model: torch.nn.Module,
    dataset: Dataset,
    metrics: Mapping[str, Metric] | Metric | str | Sequence[str] = "psnr,ssim,cpsnr",
    *,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    progress: ProgressFn | None = None,
    seed: int = 0,
    nodata: bool = True,
    label: str | None = None,
) -> EvaluationResult:
    """Super-resolve every item of ``dataset`` with ``model`` and score it against its HR.

    Args:
        model: takes ``lr`` batched as the dataset gives it (``[B, T*C, h, w]`` stacked or
            ``[B, T, C, h, w]`` frames: build the dataset with the model's layout) and returns
            ``[B, C, H, W]`` (or SRCNN / HighRes-net's ``[B, 1, C, H, W]``) of the HR's size;
            outputs are clipped to [0, 1]. Run in eval mode
            on ``device``, under ``torch.inference_mode``.
        dataset: a dataset of zoomsr's item contract (see the module docstring), in
            evaluation mode (``train=False``: its frames are the same run to run).
        metrics: as :func:`~zoomsr.evaluation.evaluate` takes them. One band is repeated to
            3 channels, more than 3 are scored on the first 3 (:func:`as_rgb`).
        batch_size: items per model call.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        num_workers: DataLoader worker processes.
        progress: ``progress(done, total)`` after each batch.
        seed: of the summary's bootstrap intervals.
        nodata: score only the pixels the items' ``hr_valid`` marks valid (the metrics'
            ``valid`` mask); False scores every pixel.
        label: the ``pred`` column (default: the model's class name).

    Returns:
        An :class:`~zoomsr.evaluation.EvaluationResult` (``write_results`` writes it as
        ``zoomsr evaluate`` does), one row per item in dataset order.

    Raises:
        DataError: an item without HR or id, an output of the wrong shape, a dataset item
            that cannot be read (the dataset's own error).
    """
    check_batch_size(batch_size)
    check_int("num_workers", num_workers, minimum=0)
    chosen = as_metrics(list(metrics) if isinstance(metrics, tuple) else metrics)
    if VALID_FRACTION in chosen:
        raise InputError(f"a metric named {VALID_FRACTION!r}: the name of the column of the "
                         "valid share; rename it")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError(f"{type(dataset).__name__}: no items to score")
    dev = resolve_device(device)
    was_training = model.training
    model.eval().to(dev)
    takes_valid = {name: _takes_valid(m) for name, m in chosen.items()}
    pred_label = label or type(model).__name__
    target_label = type(dataset).__name__
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate)
    rows: list[dict[str, Any]] = []
    total, done = len(dataset), 0  # type: ignore[arg-type]
    try:
        for batch in loader:
            hr = batch["hr"].float()
            out = model(batch["lr"].to(dev))
            if out.ndim == 5 and out.shape[1] == 1:  # SRCNN / HighRes-net: [B, 1, C, H, W]
                out = out[:, 0]
            out = out.float().clamp_(0, 1).cpu()
            if out.shape != hr.shape:
                raise DataError(
                    f"{target_label} item {batch['key'][0]}: the model's output "
                    f"{list(out.shape)} does not match its HR {list(hr.shape)} (check the "
                    "model's scale and channels, and the dataset's layout and sizes)")
            pred, target = as_rgb(out), as_rgb(hr)
            valid = batch.get("hr_valid") if nodata else None
            if valid is not None and bool(valid.all()):
                valid = None  # scored as without a mask (the same values, to the bit)
            scores: dict[str, torch.Tensor] = {}
            for name, metric in chosen.items():
                try:
                    if valid is None:
                        scores[name] = metric(pred, target)
                    elif takes_valid[name]:
                        scores[name] = metric(pred, target, valid=valid)
                    else:  # a user's metric: both images black outside the valid area
                        scores[name] = metric(*black_outside(pred, target, valid[:, None]))
                except InputError as exc:  # e.g. images too small for a network metric
                    raise DataError(f"{target_label} item {batch['key'][0]}: {name}: "
                                    f"{exc}") from None
            for j, key in enumerate(batch["key"]):
                share = 1.0 if valid is None else float(valid[j].float().mean())
                rows.append({"key": key, "pred": pred_label, "target": target_label,
                             **{n: float(v[j]) for n, v in scores.items()},
                             VALID_FRACTION: share})
            done += len(batch["key"])
            if progress is not None:
                progress(done, total)
    finally:
        model.train(was_training)
    for metric in chosen.values():  # CLIPScore's target embeddings, for the next run
        save = getattr(metric, "save_cache", None)
        if callable(save):
            save()
    summary = {n: summarize([r[n] for r in rows], seed=seed) for n in chosen}
    return EvaluationResult(
        {n: bool(m.higher_is_better) for n, m in chosen.items()}, rows, summary, None,
        {"model": pred_label, "dataset": target_label, "items": len(rows)},
        "exclude" if nodata else "ignored")


@dataclass(frozen=True)
class ScoringModel:
    """A model loaded to be scored on a dataset, and what feeding it takes."""

    module: torch.nn.Module
    name: str  # the architecture (rrdbnet, srcnn, ...)
    layout: str  # "stacked" or "frames"
    label: str  # what the rows' ``pred`` column calls it
    n_images: int | None  # as recorded with the weights (``zoomsr train``), if they say
    bands: list[str] | None  # S2-NAIP bands it was trained on, if the weights say

    def frames_for(self, channels: int) -> int | None:
        """Input frames for a dataset of ``channels`` per frame: the recorded count, else a
        stacked model's input channels / ``channels`` (None: not told by the weights)."""
        if self.n_images is not None:
            return self.n_images
        cfg = getattr(self.module, "config", {}) or {}
        in_ch = cfg.get("num_in_ch", cfg.get("in_channels")) if self.layout == "stacked" else None
        if in_ch is None:
            return None
        if int(in_ch) % channels:
            raise ConfigError(f"{self.label}: {in_ch} input channels cannot be frames of "
                              f"{channels} channel(s) (the dataset's)")
        return int(in_ch) // channels


def load_scoring_model(weights: str | os.PathLike[str], model: str | None = None,
                       config: Mapping[str, Any] | None = None) -> ScoringModel:
    """The model in ``weights`` for :func:`evaluate_model`: a checkpoint file (a zoomsr
    checkpoint rebuilds itself, e.g. a ``zoomsr train`` run's ``generator.pth``; another
    format needs ``model`` and ``config``), or a registry name (``zoomsr weights list``;
    downloaded into the cache by ``zoomsr weights download NAME``).

    Raises:
        ConfigError: a diffusion model (SR3 is sampled, not run once: score it with
            ``zoomsr infer`` then ``zoomsr evaluate``), a model name for weights that give
            their own.
        CheckpointError: the file cannot be read or does not fit the model.
    """
    from zoomsr.models import create_model, load_checkpoint, model_class
    from zoomsr.models.checkpoints import read_checkpoint, unnamed_model_error
    from zoomsr.models.factory import from_checkpoint

    label = Path(weights).name
    path = Path(weights)
    if not path.is_file():
        from zoomsr.weights import fetch, registry

        if str(weights) in registry.REGISTRY:
            entry = registry.get_entry(str(weights))
            if model is not None and model != entry.model:
                raise ConfigError(f"--model {model}: {entry.name} is a {entry.model} "
                                  "checkpoint; leave --model out (the registry gives it)")
            path, model, label = fetch.resolve(entry.name), entry.model, entry.name
            config = {**entry.config, **(config or {})}
        else:
            raise DataError(f"{weights}: no such checkpoint file, nor a name that "
                            "`zoomsr weights list` shows")
    checkpoint = read_checkpoint(path)
    if model is not None:
        module = create_model(model, **dict(config or {}))
        load_checkpoint(module, path)
    elif checkpoint.model_name is not None:
        if config:
            raise ConfigError(f"{path}: a zoomsr checkpoint gives its own config; leave "
                              "--config out")
        module = from_checkpoint(path)
    else:
        raise unnamed_model_error(checkpoint.path)
    name = getattr(module, "name", type(module).__name__)
    if name == "sr3":
        raise ConfigError(f"{label}: SR3 is sampled, not run once; score it with `zoomsr "
                          "infer` (S2-NAIP chunks) and then `zoomsr evaluate`")
    layout = "frames" if "T, C" in model_class(name).input_layout else "stacked"
    n = checkpoint.extra.get("n_images")
    bands = checkpoint.extra.get("bands")
    return ScoringModel(module.eval(), name, layout, label,
                        int(n) if n is not None else None,
                        list(bands) if bands else None)
