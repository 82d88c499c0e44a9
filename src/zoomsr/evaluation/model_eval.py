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
from typing import Any, cast

import torch
from torch.utils.data import DataLoader, Dataset

from zoomsr.data.datasets import stack_items
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
from zoomsr.metrics.base import Metric, black_outside, check_batch_size, metric_bounds
from zoomsr.validate import check_int


def _key(item: Mapping[str, Any]) -> str:
    if "id" in item:
        return str(item["id"])
    if "image_id" in item and "tile" in item:  # S2-NAIP
        return f"{item['image_id']}/{item['tile']}"
    raise DataError("a dataset item has no 'id' (nor S2-NAIP's image_id and tile): cannot "
                    "name its row")


class _Failed:
    """An error met while reading items (in a DataLoader worker, or not), carried to the main
    process as it was raised: torch re-raises a worker's error with its traceback in the
    message, which made the command's one-line errors dozens of lines."""

    def __init__(self, exc: Exception) -> None:
        import pickle

        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - whatever it is, its words still travel
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        self.exc = exc


class _Guarded(Dataset):
    """``dataset``'s items, or a :class:`_Failed` for an item that cannot be read."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except Exception as exc:  # noqa: BLE001 - re-raised in the main process
            return _Failed(exc)


def _collate(items: list[Any]) -> list[dict[str, Any]] | _Failed:
    """Only what scoring needs (items also carry strings, None baselines, ragged extras), as
    batches of items of the same LR and HR sizes (``position``: where each item is among
    ``items``; WorldStrat's native grids, ``lr_size=None``, differ between areas)."""
    for it in items:
        if isinstance(it, _Failed):
            return it
    try:
        return _group(items)
    except Exception as exc:  # noqa: BLE001 - re-raised in the main process
        return _Failed(exc)


def _group(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if any("hr" not in it for it in items):
        raise DataError(NO_HR)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault((tuple(it["lr"].shape), tuple(it["hr"].shape)), []).append(i)
    batches = []
    for positions in groups.values():
        chosen = [items[i] for i in positions]
        keys = [_key(it) for it in chosen]
        batches.append({"position": positions, **stack_items(chosen, keys), "key": keys})
    return batches


NO_HR = ("the dataset's items have no 'hr' (a split without ground truth, e.g. PROBA-V's test "
         "split): nothing to score against")


def as_rgb(x: torch.Tensor, rgb: Sequence[int] | None = (0, 1, 2)) -> torch.Tensor:
    """``[B, C, H, W]`` as the metrics' ``[B, 3, H, W]``: one band repeated (PROBA-V's NIR or
    RED), else channels ``rgb`` (the positions of R, G, B: a dataset's ``hr_rgb``; WorldStrat's
    ``hr_bands`` in any order, NIR left out). ``rgb=None`` (no R, G, B among the channels)
    and channels it does not hold are refused (:class:`InputError`)."""
    c = x.shape[1]
    if c == 1:
        return x.expand(-1, 3, -1, -1)
    if rgb is None or len(rgb) != 3 or max(rgb) >= c:
        raise InputError(f"images of {c} channels with no R, G, B among them: the metrics "
                         "score one band (repeated) or R, G and B")
    return x if c == 3 and tuple(rgb) == (0, 1, 2) else x[:, list(rgb)]


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
    examples: int = 0,
) -> EvaluationResult:
    """Super-resolve every item of ``dataset`` with ``model`` and score it against its HR.

    Args:
        model: takes ``lr`` batched as the dataset gives it (``[B, T*C, h, w]`` stacked or
            ``[B, T, C, h, w]`` frames: build the dataset with the model's layout) and returns
            ``[B, C, H, W]`` (or SRCNN / HighRes-net's ``[B, 1, C, H, W]``) of the HR's size;
            outputs are clipped to [0, 1]. Run in eval mode
            on ``device``, under ``torch.inference_mode``.
        dataset: a dataset of zoomsr's item contract (see the module docstring), in
            evaluation mode (``train=False``: its frames are the same run to run; a training
            one is refused). Items of different sizes (WorldStrat's ``lr_size=None``) are run
            in separate model calls.
        metrics: as :func:`~zoomsr.evaluation.evaluate` takes them. One band is repeated to
            3 channels; more are scored on R, G, B, at the dataset's ``hr_rgb`` positions
            (the first 3 where it has none; :func:`as_rgb`).
        batch_size: items read per step (and per model call, when they are of one size).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        num_workers: DataLoader worker processes.
        progress: ``progress(done, total)`` after each batch.
        seed: of the summary's bootstrap intervals.
        nodata: score only the pixels the items' ``hr_valid`` marks valid (the metrics'
            ``valid`` mask); False scores every pixel.
        label: the ``pred`` column (default: the model's class name).
        examples: keep this many items' LR, SR and HR images (``result.examples``), chosen
            by a hash of their key and ``seed``: the same items for every model
            (:class:`~zoomsr.evaluation.examples.ExampleKeeper`).

    Returns:
        An :class:`~zoomsr.evaluation.EvaluationResult` (``write_results`` writes it as
        ``zoomsr evaluate`` does), one row per item in dataset order.

    Raises:
        DataError: an item without HR or id, an output of the wrong shape, a dataset item
            that cannot be read (the dataset's own error, as it was raised, from a
            DataLoader worker too).
        ConfigError: a dataset in training mode; a zoomsr model that cannot take the items
            (:func:`check_model_fits`).
    """
    check_batch_size(batch_size)
    check_int("num_workers", num_workers, minimum=0)
    chosen = as_metrics(list(metrics) if isinstance(metrics, tuple) else metrics)
    if not chosen:
        raise InputError("no metrics to compute")
    if VALID_FRACTION in chosen:
        raise InputError(f"a metric named {VALID_FRACTION!r}: the name of the column of the "
                         "valid share; rename it")
    target_label = type(dataset).__name__
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError(f"{target_label}: no items to score")
    if getattr(dataset, "has_hr", True) is False:
        raise DataError(f"{target_label} ({getattr(dataset, 'split', '?')} split): {NO_HR}")
    if getattr(dataset, "train", False) is True:
        raise ConfigError(f"{target_label} is in training mode (random frames, crops, "
                          "replacements): build it with train=False to score a model on it")
    pred_label = label or type(model).__name__
    if getattr(model, "name", None) == "sr3" and not getattr(model, "takes_keys", False):
        raise ConfigError(f"{pred_label} is a diffusion model (SR3), sampled, not run once: "
                          "pass SampledSR3(model, steps) (load_scoring_model wraps it)")
    check_model_fits(model, dataset, pred_label)
    dev = resolve_device(device)
    was_training = model.training
    model.eval().to(dev)
    takes_valid = {name: _takes_valid(m) for name, m in chosen.items()}
    rgb = getattr(dataset, "hr_rgb", (0, 1, 2))
    if rgb is None and getattr(dataset, "hr_channels", 1) > 1:
        bands = ", ".join(getattr(dataset, "hr_bands", ()))
        raise ConfigError(f"{target_label}: its HR bands ({bands}) hold no R, G and B: the "
                          "metrics score one band (repeated) or R, G and B; choose hr_bands "
                          "with them")
    from zoomsr.evaluation.examples import ExampleKeeper

    keeper = ExampleKeeper(examples, seed, int(getattr(dataset, "channels", 3) or 3), rgb,
                           getattr(dataset, "lr_rgb", (0, 1, 2)))
    loader = DataLoader(_Guarded(dataset), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_collate)
    rows: list[dict[str, Any]] = []
    total, done = len(dataset), 0  # type: ignore[arg-type]
    try:
        for groups in loader:
            if isinstance(groups, _Failed):
                raise groups.exc
            placed: dict[int, dict[str, Any]] = {}
            for batch in groups:
                for position, row in zip(batch["position"], _score(
                        model, batch, dev, chosen, takes_valid, nodata, pred_label,
                        target_label, rgb, keeper if examples > 0 else None), strict=True):
                    placed[position] = row
            rows.extend(placed[i] for i in sorted(placed))
            done += len(placed)
            if progress is not None:
                progress(done, total)
    finally:
        model.train(was_training)
    for metric in chosen.values():  # CLIPScore's target embeddings, for the next run
        save = getattr(metric, "save_cache", None)
        if callable(save):
            save()
    summary = {n: summarize([r[n] for r in rows], seed=seed, bounds=metric_bounds(m))
               for n, m in chosen.items()}
    return EvaluationResult(
        {n: bool(m.higher_is_better) for n, m in chosen.items()}, rows, summary, None,
        {"model": pred_label, "dataset": target_label, "items": len(rows)},
        "exclude" if nodata else "ignored", examples=keeper.kept)


def _score(model: torch.nn.Module, batch: dict[str, Any], dev: torch.device,
           chosen: dict[str, Metric], takes_valid: dict[str, bool], nodata: bool,
           pred_label: str, target_label: str, rgb: Sequence[int] | None,
           keeper: Any = None) -> list[dict[str, Any]]:
    """The rows of one batch of same-size items: the model run once, each metric once."""
    hr = batch["hr"].float()
    lr = batch["lr"].to(dev)
    # a sampled model (SR3) draws each item's noise from its key
    out = model(lr, batch["key"]) if getattr(model, "takes_keys", False) else model(lr)
    if out.ndim == 5 and out.shape[1] == 1:  # SRCNN / HighRes-net: [B, 1, C, H, W]
        out = out[:, 0]
    out = out.float().clamp_(0, 1).cpu()
    first = batch["key"][0]
    if keeper is not None and out.shape == hr.shape:
        for j, key in enumerate(batch["key"]):
            keeper.offer(key, batch["lr"][j], out[j], hr[j])
    if out.shape != hr.shape:
        raise DataError(
            f"{target_label} item {first}: the model's output {list(out.shape)} does not "
            f"match its HR {list(hr.shape)} (check the model's scale and channels, and the "
            "dataset's layout and sizes)")
    try:
        pred, target = as_rgb(out, rgb), as_rgb(hr, rgb)
    except InputError as exc:
        raise DataError(f"{target_label} item {first}: {exc}; choose one HR band or R, G "
                        "and B (hr_bands)") from None
    valid = batch.get("hr_valid") if nodata else None
    if valid is not None and bool(valid.all()):
        valid = None  # scored as without a mask (the same values, to the bit)
    scores: dict[str, torch.Tensor] = {}
    for name, metric in chosen.items():
        try:
            if valid is None:
                scores[name] = metric(pred, target)
            elif takes_valid[name]:
                # (zoomsr's metrics take it: takes_valid; the protocol does not)
                scores[name] = metric(pred, target, valid=valid)  # type: ignore[call-arg]
            else:  # a user's metric: both images black outside the valid area
                scores[name] = metric(*black_outside(pred, target, valid[:, None]))
        except InputError as exc:  # e.g. images too small for a network metric
            raise DataError(f"{target_label} item {first}: {name}: {exc}") from None
    return [{"key": key, "pred": pred_label, "target": target_label,
             **{n: float(v[j]) for n, v in scores.items()},
             # in float64, as zoomsr evaluate's column
             VALID_FRACTION: 1.0 if valid is None else float(valid[j].double().mean())}
            for j, key in enumerate(batch["key"])]


def _channels_hint(dataset: Dataset, wanted: int, channels: int) -> str:
    """What to change in ``dataset`` for ``wanted`` channels per frame (``channels`` now)."""
    option = {"WorldStratDataset": "lr_bands", "S2NAIPDataset": "bands"}.get(
        type(dataset).__name__)
    if option is None:  # PROBA-V's one band, OLI2MSI's RGB
        return (f"the model is not one for {type(dataset).__name__} (a model for it takes "
                f"{channels} per frame)")
    return (f"open it with the {option} the model was trained on ({wanted} channel(s); "
            f"command line: -o {option}=...)")


def check_model_fits(model: torch.nn.Module, dataset: Dataset, label: str | None = None) -> None:
    """:class:`ConfigError` when a zoomsr model (its ``config`` and ``input_layout``) cannot
    take ``dataset``'s items: another layout, other input channels per frame, another
    number of frames (SRCNN, RRDBNet), naming both counts and what to change. Other models
    (and datasets that do not say their ``layout``, ``channels`` and ``n_images``) pass."""
    cfg = getattr(model, "config", None)
    model_layout = getattr(model, "input_layout", None)
    if not isinstance(cfg, Mapping) or not isinstance(model_layout, str):
        return
    label = label or type(model).__name__
    what = type(dataset).__name__
    frames_model = "T, C" in model_layout
    want = "frames" if frames_model else "stacked"
    layout = getattr(dataset, "layout", None)
    if layout is not None and layout != want:
        raise ConfigError(f"{label} takes {model_layout}; {what} gives layout={layout!r}: "
                          f"open it with layout={want!r}")
    channels, n = getattr(dataset, "channels", None), getattr(dataset, "n_images", None)
    if not isinstance(channels, int) or not isinstance(n, int):
        return
    if frames_model:
        in_ch = cfg.get("in_channels")
        if isinstance(in_ch, int) and in_ch != channels:
            raise ConfigError(f"{label} takes {in_ch} input channel(s) per frame; {what} "
                              f"items have {channels} per frame: "
                              f"{_channels_hint(dataset, in_ch, channels)}")
        revisits = cfg.get("revisits")
        if getattr(model, "name", None) == "srcnn" and isinstance(revisits, int) \
                and revisits != n:
            raise ConfigError(f"{label} takes {revisits} frames (SRCNN's revisits); {what} "
                              f"items have {n}: open it with n_images={revisits} "
                              f"(--n-images {revisits})")
        return
    in_ch = cfg.get("num_in_ch", cfg.get("in_channels"))
    if isinstance(in_ch, int) and in_ch != n * channels:
        if in_ch % channels == 0:
            fix = f"open it with n_images={in_ch // channels} (--n-images {in_ch // channels})"
            if channels != 3 and in_ch % 3 == 0 and hasattr(dataset, "bands"):
                # 24 channels divide by 4 (TCI + B08) as well as by 3: more likely 8 TCI
                # frames than 6 of bands it was not trained on
                fix += (f" if it was trained on these bands; if on TCI only ({in_ch // 3} "
                        "frames), open it with bands=tci (command line: -o bands=tci)")
        else:
            fix = (f"{in_ch} is no multiple of {channels}: "
                   f"{_channels_hint(dataset, in_ch, channels)}")
        raise ConfigError(f"{label} takes {in_ch} input channels (frames x channels); {what} "
                          f"items have {n * channels} ({n} frame(s) x {channels} "
                          f"channel(s)): {fix}")


@dataclass(frozen=True)
class ScoringModel:
    """A model loaded to be scored on a dataset, and what feeding it takes."""

    module: torch.nn.Module
    name: str  # the architecture (rrdbnet, srcnn, ...)
    layout: str  # "stacked" or "frames"
    label: str  # what the rows' ``pred`` column calls it
    n_images: int | None  # as recorded with the weights (``zoomsr train``, the registry)
    bands: list[str] | None  # S2-NAIP bands it was trained on, if the weights say
    dataset: str | None = None  # the dataset it was trained on, if the weights say
    path: Path | None = None  # the file its weights were read from (a registry name's too)

    @property
    def known_frames(self) -> int | None:
        """The input frames the weights give without looking at a dataset: the recorded
        count, else a frames model's ``revisits`` (SRCNN takes no other count; ``zoomsr
        train`` builds HighRes-net with ``revisits = n_images``)."""
        if self.n_images is not None:
            return self.n_images
        revisits = (getattr(self.module, "config", {}) or {}).get("revisits")
        if self.layout == "frames" and revisits is not None:
            return int(revisits)
        return None

    def frames_for(self, channels: int) -> int | None:
        """Input frames for a dataset of ``channels`` per frame: :attr:`known_frames`, else a
        stacked model's input channels / ``channels`` (None: not told by the weights)."""
        if self.known_frames is not None:
            return self.known_frames
        cfg = getattr(self.module, "config", {}) or {}
        in_ch = cfg.get("num_in_ch", cfg.get("in_channels")) if self.layout == "stacked" else None
        if in_ch is None:
            return None
        if int(in_ch) % channels:
            raise ConfigError(f"{self.label}: {in_ch} input channels cannot be frames of "
                              f"{channels} channel(s) (the dataset's)")
        return int(in_ch) // channels


class SampledSR3(torch.nn.Module):
    """An SR3 model scored as one call: DDIM (``eta`` = 0) with ``steps`` steps, from starting
    noise drawn for each item from its key and ``seed`` (on the CPU), so an item's output is
    the same whatever batch, batch size or device it runs in, run after run.

    ``forward(lr, keys)``: ``[B, T*C, h, w]`` and the items' keys -> ``[B, C_out, H, W]`` in
    [0, 1]. ``config``, ``name`` and ``input_layout`` are the SR3 model's (the checks of
    :func:`check_model_fits` apply).
    """

    takes_keys = True

    def __init__(self, sr3: torch.nn.Module, steps: int, seed: int = 0) -> None:
        super().__init__()
        self.sr3, self.steps, self.seed = sr3, int(steps), int(seed)
        self.name = "sr3"
        self.config = getattr(sr3, "config", {})
        self.input_layout = getattr(sr3, "input_layout", "[B, T*C, H, W]")

    def forward(self, lr: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        from zoomsr.models.sr3 import keyed_noise

        sr3 = cast(Any, self.sr3)  # (its attributes, not torch's Module.__getattr__ types)
        c, s = int(sr3.out_channels), int(sr3.scale)
        shape = (c, lr.shape[-2] * s, lr.shape[-1] * s)
        noise = keyed_noise(shape, self.seed, [str(k).encode() for k in keys])
        return sr3.sample(lr, self.steps, "ddim", noise=noise.to(lr.device, lr.dtype))


def load_scoring_model(weights: str | os.PathLike[str], model: str | None = None,
                       config: Mapping[str, Any] | None = None,
                       sample_steps: int | None = None, sample_seed: int = 0) -> ScoringModel:
    """The model in ``weights`` for :func:`evaluate_model`: a checkpoint file (a zoomsr
    checkpoint rebuilds itself, e.g. a ``zoomsr train`` run's ``generator.pth``, and so does
    an RRDBNet from BasicSR or Lightning, its config read from its tensors; another format
    needs ``model`` and ``config``: :func:`~zoomsr.models.factory.rebuild`), or a registry
    name (``zoomsr weights list``; downloaded into the cache by ``zoomsr weights download
    NAME``; never downloaded here).

    A diffusion model (SR3) is wrapped in :class:`SampledSR3`: DDIM with ``sample_steps``
    steps (default: the model's, 50), each item's starting noise drawn from its key and
    ``sample_seed``.

    Raises:
        ConfigError: ``sample_steps`` for a model that is not a diffusion model (or more than
            its timesteps), a model name for weights that give another, config values the
            weights give otherwise.
        CheckpointError: the file cannot be read or does not fit the model.
        WeightsNotAvailableError: a registry name whose file is not in the cache (saying
            how to get it).
    """
    from zoomsr.inference.model import checkpoint_bands
    from zoomsr.models import model_class
    from zoomsr.models.checkpoints import read_checkpoint
    from zoomsr.models.factory import ModelClassInfo, rebuild

    label = Path(weights).name
    path = Path(weights)
    given = dict(config or {})  # the caller's (-c), not the registry's
    recorded: dict[str, Any] = {}
    if not path.is_file():
        from zoomsr.weights import fetch, registry

        if str(weights) in registry.REGISTRY:
            entry = registry.get_entry(str(weights))
            registry.check_given(entry, model, given)
            path, model, label = fetch.resolve(entry.name), entry.model, entry.name
            config = {**entry.config, **(config or {})}
            # what the registry says it was trained on (its files do not all say)
            recorded = {"n_images": entry.n_images, "bands": list(entry.bands)}
        else:
            raise DataError(f"{weights}: no such checkpoint file, nor a name that "
                            "`zoomsr weights list` shows")
    checkpoint = read_checkpoint(path)
    # (the registry's config is its file's architecture; only the caller's -c is checked)
    module = rebuild(checkpoint, model, config if checkpoint.model_name is None else given,
                     stacklevel=3)
    name = getattr(module, "name", type(module).__name__)
    sr3 = cast(Any, module)  # (SR3's attributes, when it is one)
    if sample_steps is not None:
        if name != "sr3":
            raise ConfigError(f"sample steps ({sample_steps}) apply to diffusion models (sr3), "
                              f"not to {label} ({name})")
        if isinstance(sample_steps, bool) or not isinstance(sample_steps, int) \
                or not 1 <= sample_steps <= int(sr3.num_timesteps):
            raise ConfigError(f"sample steps {sample_steps!r}: {label} takes 1 to "
                              f"{int(sr3.num_timesteps)} (its timesteps)")
    if name == "sr3":
        module = SampledSR3(module.eval(), sample_steps or sr3.default_steps("ddim"),
                            sample_seed)
    info = cast(ModelClassInfo, model_class(name))
    layout = "frames" if "T, C" in info.input_layout else "stacked"
    n = checkpoint.extra.get("n_images")
    if n is None:  # a training run's Lightning checkpoint: its config's
        run_config = checkpoint.extra.get("zoomsr_config")
        data = run_config.get("data") if isinstance(run_config, dict) else None
        n = data.get("n_images") if isinstance(data, dict) else None
    if n is None:
        n = recorded.get("n_images")
    run_data = checkpoint.extra.get("zoomsr_config", {})
    run_data = run_data.get("data") if isinstance(run_data, dict) else None
    trained_on = checkpoint.extra.get("dataset") or (
        run_data.get("dataset", "s2naip") if isinstance(run_data, dict) else None)
    bands = (checkpoint_bands(checkpoint) or recorded.get("bands")
             if trained_on in (None, "s2naip") else None)
    if trained_on is None and bands:
        trained_on = "s2naip"  # the published checkpoints, a generator.pth recording bands
    return ScoringModel(module.eval(), name, layout, label,
                        int(n) if n is not None else None,
                        list(bands) if bands else None,
                        str(trained_on) if trained_on is not None else None, Path(path))
