"""Cross-field checks of a training config, once its keys and types are read.

:func:`validate_config` checks what one key alone cannot say (the model a task trains, ranges,
the losses a task takes, what must fit the HR images, Lightning's strategy names...) and fills
``model.config`` with the channel counts and scale derived from the data section, checking
any given against them; the benchmark datasets' data section is checked by
:mod:`.dataset_config`.
"""

from __future__ import annotations

from typing import Any

from zoomsr.data.bands import validate_bands
from zoomsr.errors import ConfigError, InputError
from zoomsr.models import config_fields, parse_config
from zoomsr.training.config import TASK_MODELS, VAL_METRICS, LossSection, TrainConfig
from zoomsr.training.config_types import _bad
from zoomsr.training.dataset_config import (
    _benchmark_names,
    _check_benchmark_data,
    _check_dataset_name,
    _hr_size,
)
from zoomsr.validate import check_config_values


def _derived_model_config(cfg: TrainConfig) -> dict[str, Any]:
    t, c, out = cfg.data.n_images, cfg.channels, cfg.hr_channels
    name = cfg.model.name
    if name == "rrdbnet":
        return {"num_in_ch": t * c, "num_out_ch": out, "scale": cfg.data.scale}
    if name == "sr3":
        return {"in_channels": t * c, "out_channels": out, "scale": cfg.data.scale}
    return {"in_channels": c, "revisits": t, "out_channels": out, "zoom_factor": cfg.data.scale}


def _data_words(cfg: TrainConfig) -> str:
    """Where the derived channel counts come from, for messages."""
    d = cfg.data
    if d.benchmark:
        return (f"data.n_images={d.n_images}, the {d.dataset} dataset's {cfg.channels} input "
                f"and {cfg.hr_channels} HR channel(s), data.scale={d.scale}")
    return f"data.n_images={d.n_images}, data.bands={','.join(d.bands)}, data.scale={d.scale}"


def _check_model_config(cfg: TrainConfig) -> None:
    fields = config_fields(cfg.model.name)
    checked = {}
    for key, value in cfg.model.config.items():
        full = f"model.config.{key}"
        if key not in fields:
            raise ConfigError(
                f"unknown config key {full!r}; valid keys for {cfg.model.name}: {', '.join(fields)}"
            )
        # The model factory's parser converts by the constructor's annotation (ints, floats,
        # bools, tuples of ints); YAML already typed the value, so check it round-trips.
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        annotation = fields[key].annotation
        try:
            parsed = parse_config(cfg.model.name, [f"{key}={text}"])[key]
        except ConfigError:
            raise _bad(full, annotation, value) from None
        if (annotation is int and isinstance(value, float)) or (
            annotation is bool and not isinstance(value, bool)
        ):
            raise _bad(full, annotation, value)
        check_config_values({key: parsed}, prefix="model.config.")  # the factory's own check
        checked[key] = parsed
    for key, value in _derived_model_config(cfg).items():
        if key in checked and checked[key] != value:
            raise ConfigError(
                f"model.config.{key}={checked[key]} disagrees with the data section "
                f"(expected {value} from {_data_words(cfg)}); "
                "leave it out to derive it"
            )
        checked.setdefault(key, value)
    cfg.model.config = checked


def _positive(key: str, value: float | int | None, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise ConfigError(f"config key {key!r} must be {'>= 0' if allow_zero else '> 0'}, "
                          f"got {value}")


def validate_config(cfg: TrainConfig) -> None:
    """Cross-field checks; fills ``model.config`` with values derived from ``data``."""
    if cfg.model.name not in TASK_MODELS[cfg.task]:
        raise ConfigError(
            f"config key 'model.name': task {cfg.task} trains "
            f"{', '.join(TASK_MODELS[cfg.task])}, got {cfg.model.name!r}"
        )
    _check_dataset_name(cfg.data)
    if cfg.data.benchmark:
        _check_benchmark_data(cfg)  # before the bands: they must be left out
    try:
        cfg.data.bands = list(validate_bands(cfg.data.bands))
    except InputError as exc:
        raise ConfigError(f"config key 'data.bands': {exc}") from None
    if not cfg.data.benchmark and cfg.data.options:
        raise ConfigError("config key 'data.options' applies to the benchmark datasets "
                          f"(data.dataset: {', '.join(_benchmark_names())}); S2-NAIP is read "
                          "as the data section's own keys say: remove it")
    d, t, o = cfg.data, cfg.trainer, cfg.optim
    for key, value in [
        ("data.n_images", d.n_images), ("data.scale", d.scale),
        ("data.batch_size", d.batch_size), ("data.val_batch_size", d.val_batch_size),
        ("data.split_group", d.split_group), ("data.max_val_pairs", d.max_val_pairs),
        ("trainer.max_steps", t.max_steps), ("trainer.val_every_n_steps", t.val_every_n_steps),
        ("trainer.checkpoint_every_n_steps", t.checkpoint_every_n_steps),
        ("trainer.devices", t.devices), ("trainer.num_nodes", t.num_nodes),
        ("trainer.log_every_n_steps", t.log_every_n_steps),
        ("trainer.limit_val_batches", t.limit_val_batches),
        ("optim.lr", o.lr), ("optim.disc_lr", o.disc_lr), ("optim.gamma", o.gamma),
        ("val.sample_steps", cfg.val.sample_steps),
        ("discriminator.num_feat", cfg.discriminator.num_feat),
    ]:
        _positive(key, value)
    for key, value in [
        # seeds: NumPy's and the dataset's refused a negative one as a raw ValueError, or
        # under another name, after the run folder was written
        ("data.split_seed", d.split_seed), ("data.val_seed", d.val_seed),
        ("data.num_workers", d.num_workers), ("trainer.sanity_val_steps", t.sanity_val_steps),
        ("optim.weight_decay", o.weight_decay), ("val.border", cfg.val.border),
        ("val.grid_images", cfg.val.grid_images),
        ("data.tile_weight_default", d.tile_weight_default),
    ]:
        _positive(key, value, allow_zero=True)
    if not cfg.losses.perceptual.layer_weights and cfg.losses.perceptual.weight:
        # the loss took an empty mapping for its default (ESRGAN's five layers) while the
        # saved config said {}
        raise ConfigError("config key 'losses.perceptual.layer_weights' is empty; give "
                          "{layer: weight} (ESRGAN's: conv1_2: 0.1, conv2_2: 0.1, conv3_4: 1, "
                          "conv4_4: 1, conv5_4: 1), or set losses.perceptual.weight to 0")
    elif cfg.losses.perceptual.layer_weights:
        from zoomsr.losses.perceptual import vgg19_layer_names

        names = vgg19_layer_names()
        for layer, weight in cfg.losses.perceptual.layer_weights.items():
            if layer not in names:
                shown = ", ".join(n for n in names if not n.startswith("pool"))
                raise ConfigError(f"config key 'losses.perceptual.layer_weights.{layer}': no "
                                  f"VGG19 layer {layer!r}; choose from {shown}")
            _positive(f"losses.perceptual.layer_weights.{layer}", weight, allow_zero=True)
    if not 0.0 < d.val_fraction < 1.0:
        raise ConfigError(f"config key 'data.val_fraction' must be in (0, 1), got {d.val_fraction}")
    if len(o.betas) != 2 or not all(0.0 <= b < 1.0 for b in o.betas):
        raise ConfigError(f"config key 'optim.betas' must be two numbers in [0, 1), got {o.betas}")
    _check_milestones(o.milestones)
    if o.ema_decay is not None and not 0.0 < o.ema_decay < 1.0:
        raise ConfigError(f"config key 'optim.ema_decay' must be in (0, 1), got {o.ema_decay}")
    if t.keep_checkpoints == 0 or t.keep_checkpoints < -1:
        raise ConfigError("config key 'trainer.keep_checkpoints' must be -1 (all) or >= 1, "
                          f"got {t.keep_checkpoints}")
    if t.accelerator not in ("auto", "cpu", "gpu", "cuda", "mps"):
        raise ConfigError(f"config key 'trainer.accelerator' must be auto, cpu or gpu, "
                          f"got {t.accelerator!r}")
    for metric in cfg.val.metrics:
        if metric not in VAL_METRICS:
            raise ConfigError(f"config key 'val.metrics': unknown metric {metric!r} "
                              f"(choose from {', '.join(VAL_METRICS)})")
    losses = cfg.losses
    for name in ("pixel", "ssim", "perceptual", "gan", "clip"):
        _positive(f"losses.{name}.weight", getattr(losses, name).weight, allow_zero=True)
    for key, window in (("ssim.window", losses.ssim.window),
                        ("pixel.ssim_window", losses.pixel.ssim_window)):
        if window < 1 or window % 2 == 0:
            raise ConfigError(f"config key 'losses.{key}' must be odd and >= 1, got {window}")
    if cfg.task == "sr3":
        if losses != LossSection():
            raise ConfigError(
                "the losses section does not apply to task sr3 (it trains on noise "
                "prediction; choose l1 or l2 with model.config.loss_type): remove it"
            )
    else:
        if cfg.task == "esrgan" and losses.gan.weight <= 0:
            raise ConfigError("task esrgan needs losses.gan.weight > 0 (a generator trained "
                              "without a discriminator is task regression)")
        if cfg.task == "regression" and losses.gan.weight > 0:
            raise ConfigError("losses.gan applies to task esrgan only; set its weight to 0")
        total = sum(getattr(losses, n).weight for n in ("pixel", "ssim", "perceptual", "clip"))
        if cfg.task == "regression" and total <= 0:
            raise ConfigError("every loss weight is 0: set losses.pixel.weight (or another)")
    _check_sizes(cfg)
    if not 0 <= cfg.seed < 2**32:  # NumPy's range: it failed as a raw ValueError, exit 1
        raise ConfigError(f"config key 'seed' must be in 0..{2**32 - 1}, got {cfg.seed}")
    if t.strategy != "auto":
        from lightning.pytorch.strategies import StrategyRegistry

        known = StrategyRegistry.available_strategies()
        if t.strategy not in known:
            listed = sorted(k for k in known if "find_unused" not in k)
            raise ConfigError(f"config key 'trainer.strategy': unknown strategy "
                              f"{t.strategy!r} (auto, or one of Lightning's: "
                              f"{', '.join(listed)})")
    _check_model_config(cfg)


def _check_milestones(milestones: list[int]) -> None:
    """Each step of ``optim.milestones`` must be one the scheduler reaches (>= 1: it steps after
    each iteration, so 0 or less never fired). One past ``trainer.max_steps`` is allowed (a
    run extended later reaches it): training warns of it."""
    for i, step in enumerate(milestones):
        if step < 1:
            raise ConfigError(f"config key 'optim.milestones[{i}]' must be a step >= 1 (the "
                              f"learning rate is multiplied by optim.gamma there), got {step}")


def _check_sizes(cfg: TrainConfig) -> None:
    """What must fit the HR images (S2-NAIP: the NAIP images, 32 * data.scale px a side),
    checked before any work: a too wide val.border failed at the first validation, a too wide
    SSIM loss window at the first step (hours in, with the paper configs' 5000-step
    validations)."""
    from zoomsr.metrics.psnr_ssim import SSIM_WINDOW

    hr, what, images = _hr_size(cfg)
    if hr is None:
        return  # native sizes (lr_size: null): known once read
    border = cfg.val.border
    need = SSIM_WINDOW if "ssim" in cfg.val.metrics else 1
    if hr - 2 * border < need:
        raise ConfigError(f"config key 'val.border': {border} px leaves less than {need} px of "
                          f"the {hr} x {hr} px {what}; use at most {(hr - need) // 2}")
    pixel = cfg.losses.pixel
    for key, window, used in (
            ("ssim.window", cfg.losses.ssim.window, cfg.losses.ssim.weight > 0),
            ("pixel.ssim_window", pixel.ssim_window,
             pixel.weight > 0 and pixel.type in ("ssim", "worldstrat"))):
        if cfg.task != "sr3" and used and window > hr:
            raise ConfigError(f"config key 'losses.{key}': {window} px is larger than the "
                              f"{hr} x {hr} px {images}; use at most {hr - 1 + hr % 2}")
