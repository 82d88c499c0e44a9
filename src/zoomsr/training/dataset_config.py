"""The data section of a training config for the benchmark datasets (PROBA-V, WorldStrat,
OLI2MSI), read without reading any data.

The dataset's name, its loader's options (by name; those training sets itself refused), the
S2-NAIP-only keys a benchmark dataset refuses, its scale, and the losses and model its
channels allow (:func:`_check_benchmark_data`); its LR and HR channel counts
(:func:`dataset_channels`, which :class:`~zoomsr.training.config.TrainConfig`'s ``channels``
and ``hr_channels`` give), where R, G and B are among the HR channels
(:func:`hr_rgb_channels`), and the side of the HR images training sees (:func:`_hr_size`,
S2-NAIP's too).
"""

from __future__ import annotations

import math
from typing import Any

from zoomsr.errors import ConfigError, first_line
from zoomsr.training.config import S2NAIP, DataSection, TrainConfig

#: Loader options that training sets itself, and what to do instead ("{split}": how the
#: dataset's validation split is made).
_TRAINING_SETS = {
    "root": "use data.root",
    "split": "remove it ({split})",
    "train": "remove it (training draws random frames and crops, validation the loader's own)",
    "seed": "use data.val_seed (validation's frames and crops)",
    "layout": "remove it (model.name sets the generator's input layout)",
    "n_images": "use data.n_images",
    "scale": "use data.scale",
    "pairs": "remove it (the held-out split, data.val_fraction and data.split_seed, chooses "
             "the pairs)",
}

#: S2-NAIP's keys that mean nothing for a benchmark dataset (they must keep their defaults),
#: and why, with what to use instead.
_S2NAIP_ONLY = {
    "bands": "it names S2-NAIP's Sentinel-2 bands; {bands}",
    "splits": "{split}",
    "split_group": "it groups S2-NAIP's neighbouring tiles; {split}",
    "tile_weights": "it weights S2-NAIP's tiles",
    "tile_weight_default": "it weights S2-NAIP's tiles",
}

_BANDS_INSTEAD = {
    "probav": "choose PROBA-V's band with data.options.bands (NIR, RED or both)",
    "worldstrat": "choose WorldStrat's with data.options.lr_bands (and hr_kind, hr_bands)",
    "oli2msi": "OLI2MSI is RGB only",
}


def _benchmark_names() -> list[str]:
    from zoomsr.data.datasets import DATASETS

    return [name for name in DATASETS if name != S2NAIP]


def _check_dataset_name(d: DataSection) -> None:
    from zoomsr.data.datasets import DATASETS

    name = str(d.dataset).lower()
    if name not in DATASETS:
        raise ConfigError(f"config key 'data.dataset': unknown dataset {d.dataset!r} (expected "
                          f"one of {', '.join(DATASETS)})")
    d.dataset = name


def _split_words(name: str) -> str:
    if name == "worldstrat":
        return "the worldstrat dataset validates on its own val split"
    return (f"the {name} dataset validates on data.val_fraction of its train split, held out "
            "by data.split_seed")


def dataset_channels(d: DataSection) -> tuple[int, int]:
    """(LR channels per frame, HR channels) of benchmark dataset ``d.dataset`` under
    ``d.options``, without reading it; :class:`ConfigError` naming ``data.options.KEY`` for a
    band option the loader would refuse."""
    if d.dataset == "probav":
        return 1, 1
    if d.dataset == "oli2msi":
        from zoomsr.data.oli2msi import CHANNELS

        return CHANNELS, CHANNELS
    from zoomsr.data import worldstrat as ws

    o = d.options
    level, kind = o.get("level", "L2A"), o.get("hr_kind", "ps")
    for key, value, choices in (("level", level, ws.LEVEL_BANDS), ("hr_kind", kind, ws.HR_KINDS)):
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(f"config key 'data.options.{key}' must be one of "
                              f"{', '.join(choices)}, got {value!r}")
    parsed = []
    for key, parse, value in (
            ("lr_bands", ws._parse_lr_bands, (o.get("lr_bands", ("B04", "B03", "B02")), level)),
            ("hr_bands", ws._parse_hr_bands, (o.get("hr_bands"), kind))):
        bands = value[0]
        if bands is not None and not isinstance(bands, (str, list, tuple)):
            raise ConfigError(f"config key 'data.options.{key}' must be a list of band names "
                              f"or one comma-separated string, got {bands!r}")
        try:
            parsed.append(parse(*value))
        except (ConfigError, TypeError, AttributeError) as exc:
            text = first_line(exc).removeprefix(f"{key}: ")
            raise ConfigError(f"config key 'data.options.{key}': {text}") from None
    return len(parsed[0]), len(parsed[1])


def hr_rgb_channels(d: DataSection) -> tuple[int, int, int] | None:
    """The positions of R, G, B among the HR channels of ``d``'s dataset (what validation's
    metrics and the VGG19 / CLIP losses take), or None where they are not all there (one band:
    scored repeated)."""
    if d.dataset == "worldstrat":  # its hr_bands option decides
        from zoomsr.data.worldstrat import hr_rgb

        return hr_rgb(_hr_bands(d))
    from zoomsr.data.datasets import dataset_class

    # the loaders' own (S2-NAIP's NAIP RGB, OLI2MSI's MSI B04, B03, B02, PROBA-V's one band)
    return dataset_class(d.dataset).hr_rgb  # type: ignore[attr-defined]


def _hr_bands(d: DataSection) -> tuple[str, ...]:
    """WorldStrat's HR bands under ``d.options`` (checked by :func:`dataset_channels`)."""
    from zoomsr.data import worldstrat as ws

    o = d.options
    return ws._parse_hr_bands(o.get("hr_bands"), o.get("hr_kind", "ps"))


def _lr_side_key(cfg: TrainConfig) -> tuple[str, int, int]:
    """The option setting the LR side of a benchmark dataset's items (OLI2MSI's ``crop`` or
    ``lr_size``, WorldStrat's ``lr_size``), its value, and the step of the LR sides that give
    HR sides divisible by 8."""
    from zoomsr.data.oli2msi import LR_SIZE

    opts, scale, oli2msi = cfg.data.options, cfg.data.scale, cfg.data.dataset == "oli2msi"
    key = "crop" if oli2msi and opts.get("crop") is not None else "lr_size"
    default = LR_SIZE if oli2msi else 160
    return key, int(opts.get(key, default)), 8 // math.gcd(8, scale)


def _hr_size(cfg: TrainConfig) -> tuple[int | None, str, str]:
    """The side (px) of the HR images training and validation see (None: not known before
    the data are read), and how messages call them (with and without the scale)."""
    d = cfg.data
    if not d.benchmark:
        from zoomsr.grid import LR_PIXELS

        return LR_PIXELS * d.scale, f"NAIP images (data.scale {d.scale})", "NAIP images"
    opts = d.options
    if d.dataset == "probav":
        from zoomsr.data.probav import HR_SIZE

        side: int | None = HR_SIZE
    elif d.dataset == "oli2msi":
        from zoomsr.data.oli2msi import LR_SIZE

        crop, lr_size = opts.get("crop"), opts.get("lr_size", LR_SIZE)
        lr_side = crop if crop is not None else lr_size
        side = 3 * lr_side if _is_positive_int(lr_side) else None
    else:  # worldstrat: LR frames resized to lr_size, HR to scale times that
        lr_size = opts.get("lr_size", 160)
        side = d.scale * lr_size if _is_positive_int(lr_size) else None
    what = f"HR images of the {d.dataset} dataset"
    return side, what, what


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_benchmark_data(cfg: TrainConfig) -> None:
    """The data section of a benchmark dataset: its options by name, no S2-NAIP-only key, its
    scale, and the losses and model its channels allow."""
    from zoomsr.data.datasets import check_dataset_options, dataset_options

    d = cfg.data
    name = d.dataset
    takes = dataset_options(name)
    for key in d.options:
        if key in _TRAINING_SETS and key in takes:
            how = _TRAINING_SETS[key].format(split=_split_words(name))
            raise ConfigError(f"config key 'data.options.{key}' is set by training: {how}")
        check_dataset_options(name, {key: d.options[key]}, f"config key 'data.options.{key}'")
    defaults = DataSection()
    for key, why in _S2NAIP_ONLY.items():
        if getattr(d, key) != getattr(defaults, key):
            text = why.format(bands=_BANDS_INSTEAD[name], split=_split_words(name))
            raise ConfigError(f"config key 'data.{key}' applies to S2-NAIP only, not to the "
                              f"{name} dataset ({text}): remove it")
    if name == "worldstrat":
        for key in ("val_fraction", "split_seed"):
            if getattr(d, key) != getattr(defaults, key):
                raise ConfigError(f"config key 'data.{key}' does not apply to the worldstrat "
                                  "dataset (it validates on its own val split): remove it")
    else:
        from zoomsr.data.datasets import dataset_class

        fixed = int(dataset_class(name).scale)  # type: ignore[attr-defined]
        if d.scale != fixed:
            raise ConfigError(f"config key 'data.scale' is {d.scale}, but the {name} dataset's "
                              f"HR images are {fixed} times its LR size: set data.scale: "
                              f"{fixed}")
    _, hr_channels = dataset_channels(d)
    if hr_channels > 1 and hr_rgb_channels(d) is None:
        raise ConfigError(f"config key 'data.options.hr_bands': {', '.join(_hr_bands(d))} "
                          "hold no R, G and B, which validation scores (one band is scored "
                          "repeated to RGB): choose one band, or R, G and B (NIR may be added)")
    losses = cfg.losses
    if cfg.task != "sr3":
        for key, weight, what in (
                ("perceptual", losses.perceptual.weight, "the VGG19 perceptual loss"),
                ("clip", losses.clip.weight, "the CLIP loss")):
            if weight > 0 and hr_channels < 3:
                raise ConfigError(
                    f"config key 'losses.{key}.weight': {what} compares RGB images, but the "
                    f"{name} dataset's HR images have {hr_channels} channel: set it to 0 "
                    "(the pixel, SSIM and GAN losses take any number of channels)")
    if name == "worldstrat" and "lr_size" in d.options and d.options["lr_size"] is None:
        batches = {"data.batch_size": d.batch_size,
                   "data.val_batch_size": d.val_batch_size or d.batch_size}
        wide = [f"{key}={value}" for key, value in batches.items() if value > 1]
        if wide:
            raise ConfigError(
                "config key 'data.options.lr_size' is null (each area at its own size), but "
                f"{' and '.join(wide)}: areas of different sizes cannot share a batch; set "
                "lr_size (the reference's 160), or data.batch_size and data.val_batch_size "
                "to 1")
        if cfg.task == "esrgan":
            raise ConfigError(
                "config key 'data.options.lr_size' is null (each area at its own size), but "
                "ESRGAN's U-Net discriminator needs HR sides divisible by 8: set lr_size "
                "(the reference's 160)")
    side, _, _ = _hr_size(cfg)
    if cfg.task == "esrgan" and side is not None and side % 8:
        key, lr_side, step = _lr_side_key(cfg)
        good = max(step, round(lr_side / step) * step)
        raise ConfigError(
            f"config key 'data.options.{key}': {lr_side} px LR gives {side} px HR images, but "
            "ESRGAN's U-Net discriminator needs HR sides divisible by 8: set "
            f"data.options.{key} to a multiple of {step} (e.g. {good})")
    if cfg.model.name == "rrdbnet":
        from zoomsr.models.rrdbnet import _SCALES as RRDBNET_SCALES

        if d.scale not in RRDBNET_SCALES:
            raise ConfigError(
                f"config key 'data.scale': rrdbnet upsamples x"
                f"{', x'.join(map(str, RRDBNET_SCALES))}, not x{d.scale} (the {name} "
                "dataset's scale): train srcnn or highresnet on it (task regression)")
