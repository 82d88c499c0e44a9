"""Typed training configs loaded from YAML, with ``key.path=value`` overrides.

A config is a :class:`TrainConfig` of nested dataclasses. Loading checks every key and type
before any work starts: an unknown key or a value of the wrong type raises
:class:`~zoomsr.errors.ConfigError` naming the key (``trainer.max_steps``) and what it expects.
``model.config`` holds the model's constructor arguments, checked against
:func:`zoomsr.models.config_fields`; its channel counts and scale are derived from ``data``
when left out (``num_in_ch = n_images * channels`` for RRDBNet, ``revisits = n_images`` for
SRCNN/HighRes-net, output channels = the HR images'...), and checked against it when given.
``data.dataset`` chooses S2-NAIP or a benchmark dataset (PROBA-V, WorldStrat, OLI2MSI), whose
``data.options`` are checked by name here, before any data are read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import yaml

from zoomsr.data.bands import band_channels, validate_bands
from zoomsr.errors import ConfigError, InputError, first_line
from zoomsr.models import config_fields, parse_config
from zoomsr.validate import check_config_values

Task = Literal["regression", "esrgan", "sr3"]


def _esrgan_layer_weights() -> dict[str, float]:
    """ESRGAN's perceptual layer weights (imported when a config is made: the losses package
    loads torchvision, 1.4 s, which reading a config does not need)."""
    from zoomsr.losses.perceptual import ESRGAN_LAYER_WEIGHTS

    return dict(ESRGAN_LAYER_WEIGHTS)


#: ``data.dataset`` of the paper's own dataset; the others are the benchmark datasets.
S2NAIP = "s2naip"
#: Which generators each task trains.
TASK_MODELS: dict[str, tuple[str, ...]] = {
    "regression": ("srcnn", "highresnet", "rrdbnet"),
    "esrgan": ("rrdbnet",),
    "sr3": ("sr3",),
}
#: Input layout of each generator (see :mod:`zoomsr.layout`).
MODEL_LAYOUTS = {"srcnn": "frames", "highresnet": "frames", "rrdbnet": "stacked", "sr3": "stacked"}
VAL_METRICS = ("psnr", "ssim", "lpips", "clipscore")


@dataclass
class ModelSection:
    """The generator: a name of :data:`zoomsr.models.MODELS` and its constructor arguments."""

    name: str = "rrdbnet"
    config: dict[str, Any] = field(default_factory=dict)
    #: Warm start: weights to load before training (e.g. a PSNR-trained RRDBNet), any format
    #: :func:`zoomsr.models.load_checkpoint` reads.
    init_weights: str | None = None


@dataclass
class DiscriminatorSection:
    """ESRGAN's U-Net discriminator (input channels are derived: 3, or 3 + T*C with feed_lr)."""

    num_feat: int = 64
    skip_connection: bool = True
    init_weights: str | None = None


@dataclass
class DataSection:
    """The dataset (S2-NAIP, or a benchmark dataset by name), its train/val split and the
    loaders.

    ``dataset`` is S2-NAIP (``s2naip``, the default) or one of the other benchmark datasets of
    :data:`zoomsr.data.DATASETS` (``probav``, ``worldstrat``, ``oli2msi``), read by its loader
    with ``options`` (its keyword arguments, checked by name at load). For those, the keys
    below marked S2-NAIP only must keep their defaults, the input channels come from the
    dataset, ``scale`` must be the dataset's (PROBA-V and OLI2MSI: 3; WorldStrat: it is passed
    to the loader as its ``scale``), and the validation set is the dataset's own ``val`` split
    (WorldStrat) or ``val_fraction`` of its train split held out by ``split_seed`` (PROBA-V
    image sets, OLI2MSI pairs).
    """

    dataset: str = "s2naip"
    root: str | None = None
    #: keyword options of a benchmark dataset's loader (e.g. PROBA-V ``bands: NIR``,
    #: OLI2MSI ``crop: 40``, WorldStrat ``hr_kind: rgb``); S2-NAIP takes none
    options: dict[str, Any] = field(default_factory=dict)
    bands: list[str] = field(default_factory=lambda: ["tci"])
    n_images: int = 8
    scale: int = 4
    batch_size: int = 16
    val_batch_size: int | None = None  # default: batch_size
    num_workers: int = 4
    #: ``{"train": [...], "val": [...]}`` of tiles or image_id/tile; default ROOT/zoomsr_splits.json
    #: when it exists, else a seeded split by groups of neighbouring tiles.
    splits: str | None = None
    val_fraction: float = 0.05
    split_group: int = 16  # tiles per side of a split group (neighbours stay in one split)
    split_seed: int = 0
    val_seed: int = 0  # frame choice of validation samples
    max_val_pairs: int | None = 256
    tile_weights: str | None = None  # JSON {tile: weight} for the weighted sampler
    tile_weight_default: float | None = None  # weight of tiles absent from that file

    @property
    def benchmark(self) -> bool:
        """Whether the dataset is one of the other benchmark datasets (not S2-NAIP)."""
        return self.dataset != S2NAIP


@dataclass
class PixelTerm:
    type: Literal["l1", "mse", "ssim", "worldstrat"] = "l1"
    weight: float = 1.0
    usm: bool = False  # compare with the USM-sharpened ground truth
    ssim_window: int = 11  # Gaussian window (px, odd) of types ssim and worldstrat


@dataclass
class SSIMTerm:
    weight: float = 0.0
    window: int = 11
    usm: bool = False


@dataclass
class PerceptualTerm:
    weight: float = 0.0
    layer_weights: dict[str, float] = field(default_factory=_esrgan_layer_weights)
    criterion: Literal["l1", "mse"] = "l1"
    weights: str | None = None  # VGG19 file; default torchvision's cache
    allow_random: bool = False  # random VGG19 (smoke runs only)
    usm: bool = False


@dataclass
class GANTerm:
    weight: float = 0.0
    type: Literal["vanilla", "hinge"] = "vanilla"
    feed_lr: bool = False  # concatenate the nearest-upsampled LR stack to the D input
    usm: bool = False  # the discriminator's "real" images are USM-sharpened


@dataclass
class CLIPTerm:
    weight: float = 0.0
    model: str = "ViT-B-16-SigLIP-256"
    pretrained: str | None = "webli"
    criterion: Literal["l1", "cosine"] = "l1"
    allow_download: bool = False
    allow_random: bool = False  # random backbone (tests only)
    usm: bool = False


@dataclass
class LossSection:
    """Weighted loss terms of the generator (regression and ESRGAN; SR3 has its own)."""

    pixel: PixelTerm = field(default_factory=PixelTerm)
    ssim: SSIMTerm = field(default_factory=SSIMTerm)
    perceptual: PerceptualTerm = field(default_factory=PerceptualTerm)
    gan: GANTerm = field(default_factory=GANTerm)
    clip: CLIPTerm = field(default_factory=CLIPTerm)


@dataclass
class OptimSection:
    """Adam for the generator (and discriminator), MultiStepLR, generator EMA."""

    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    disc_lr: float | None = None  # default: lr
    milestones: list[int] = field(default_factory=list)  # steps where the lr is multiplied
    gamma: float = 0.5
    ema_decay: float | None = None  # e.g. 0.999; validation and export then use the EMA copy


@dataclass
class ValSection:
    """Validation metrics, image grid and SR3 sampling."""

    metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim"])
    border: int = 4
    grid_images: int = 4  # LR / SR / HR rows written to OUT/samples/ and TensorBoard
    clip_model: str = "ViT-B-16"
    clip_pretrained: str | None = "openai"
    clip_mode: Literal["paper", "standard"] = "paper"
    clip_allow_random: bool = False
    allow_download: bool = False
    lpips_net: Literal["alex", "vgg"] = "alex"
    lpips_weights: str | None = None
    lpips_linear_weights: str | None = None
    sample_steps: int = 50  # SR3: DDIM steps per validation sample
    sample_seed: int = 0


@dataclass
class TrainerSection:
    """The Lightning loop: length, intervals, hardware, precision."""

    max_steps: int = 100_000  # training iterations (one generator update each)
    val_every_n_steps: int = 5000
    checkpoint_every_n_steps: int = 5000
    keep_checkpoints: int = 3  # newest step checkpoints kept, besides last.ckpt (-1: all)
    limit_val_batches: int | None = None
    sanity_val_steps: int = 2
    accelerator: str = "auto"  # cpu, gpu, auto
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto: DDP when devices * num_nodes > 1
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true"
    log_every_n_steps: int = 50
    progress_bar: bool = True
    deterministic: bool = False


@dataclass
class TrainConfig:
    """A whole training run."""

    name: str = "run"
    task: Task = "esrgan"
    seed: int = 0
    model: ModelSection = field(default_factory=ModelSection)
    discriminator: DiscriminatorSection = field(default_factory=DiscriminatorSection)
    data: DataSection = field(default_factory=DataSection)
    losses: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    val: ValSection = field(default_factory=ValSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)

    @property
    def layout(self) -> str:
        """Input layout of the generator: ``stacked`` or ``frames``."""
        return MODEL_LAYOUTS[self.model.name]

    @property
    def channels(self) -> int:
        """Channels per input frame: per Sentinel-2 time step of S2-NAIP (3 for tci, +1 per
        extra band), or the benchmark dataset's (its loader's ``channels``)."""
        if self.data.benchmark:
            return dataset_channels(self.data)[0]
        return sum(band_channels(b) for b in self.data.bands)

    @property
    def hr_channels(self) -> int:
        """Channels of the HR images (the model's output): 3 (RGB) for S2-NAIP and OLI2MSI,
        1 for PROBA-V, WorldStrat's HR bands (3 for RGB, 4 for RGB+NIR, 1 for PAN)."""
        if self.data.benchmark:
            return dataset_channels(self.data)[1]
        return 3

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready dict (round-trips through :func:`config_from_dict`)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists


# ---------------------------------------------------------------------------------------------
# Type checking


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(parts) + " or null"
    plural = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}
    if origin is list:
        item = typing.get_args(annotation)[0]
        return f"a list of {plural.get(item, _type_name(item))}"
    if origin is dict:
        item = typing.get_args(annotation)[1]
        if item is Any:
            return "a mapping of names to values"
        return f"a mapping to {plural.get(item, _type_name(item))}"
    if dataclasses.is_dataclass(annotation):
        return "a mapping"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


class _NotFinite(ConfigError):
    """A number that is NaN or infinite (kept, not retried, by ``X | None`` fields)."""


def _check_finite(key: str, value: Any) -> None:
    # NaN slips through every range check (all comparisons are false) and inf is never a
    # meaningful weight, rate or factor: every number of a config must be finite.
    if isinstance(value, float) and not math.isfinite(value):
        raise _NotFinite(f"config key {key!r} must be a finite number, got {value}")


def _bad(key: str, annotation: Any, value: Any) -> ConfigError:
    return ConfigError(f"config key {key!r} must be {_type_name(annotation)}, got {value!r}")


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        for option in options:
            try:
                return _coerce(key, value, option)
            except _NotFinite:
                raise
            except ConfigError:
                pass
        raise _bad(key, annotation, value)
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise _bad(key, annotation, value)
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise _bad(key, annotation, value)
        return _build(cast(type, annotation), value, key)  # (a dataclass type)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _bad(key, annotation, value)
        (item,) = typing.get_args(annotation)
        return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _bad(key, annotation, value)
        _, item = typing.get_args(annotation)
        return {str(k): _coerce(f"{key}.{k}", v, item) for k, v in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise _bad(key, annotation, value)
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(key, annotation, value)
        return value
    if annotation is float:
        if isinstance(value, bool):
            raise _bad(key, annotation, value)
        if not isinstance(value, (int, float, str)):
            raise _bad(key, annotation, value)
        # YAML 1.1 reads 1e-4 (no dot) as a string; accept it as the number it means.
        try:
            number = float(value)
        except ValueError:
            raise _bad(key, annotation, value) from None
        _check_finite(key, number)
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise _bad(key, annotation, value)
        return value
    raise TypeError(f"unsupported config annotation {annotation!r} for {key}")  # programming error


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            where = f" under {prefix!r}" if prefix else ""
            raise ConfigError(
                f"unknown config key {(prefix + '.' if prefix else '') + str(key)!r}; valid keys"
                f"{where}: {', '.join(names)}"
            )
    kwargs = {
        name: _coerce(f"{prefix}.{name}" if prefix else name, data[name], hints[name])
        for name in names
        if name in data
    }
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a plain dict (keys checked, types checked,
    then :func:`validate_config`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    cfg = _build(TrainConfig, data)
    validate_config(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------
# Overrides and loading


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"trainer.max_steps=20"`` -> (["trainer", "max_steps"], 20); the value is read as YAML."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"an override (--set) expects key.path=value, got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text  # not YAML: keep the text, the type check decides
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``key.path=value`` items into a copy of the nested dict ``data``."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"--set {item}: {'.'.join(path[: depth + 1])!r} is not a section"
                )
            node = child
        node[path[-1]] = value
    return out


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # PyYAML's own check names it
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_config(path: str | os.PathLike[str],
                overrides: list[str] | str | None = None) -> TrainConfig:
    """Read a YAML config, apply ``overrides`` (``["trainer.max_steps=5", ...]``, or one such
    string) and validate; errors name the file and the key."""
    if isinstance(overrides, str):  # one override: not a list of its characters
        overrides = [overrides]
    from zoomsr.config_files import known_configs_hint, resolve_config

    p = resolve_config(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder; give a YAML config file"
                          + known_configs_hint())
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found" + known_configs_hint())
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except _DuplicateKey as exc:
        raise ConfigError(f"{p}: line {exc.line}: key {exc.key!r} given twice (YAML would "
                          "keep the last silently); remove one") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: not a readable YAML file ({first_line(exc)})") from None
    if data is None or data == {}:
        # Without this, the defaults' first cross-field error would be reported instead.
        raise ConfigError(
            f"{p}: the config file is empty (expected a YAML mapping of sections, as "
            "`zoomsr configs show tiny` prints)"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config must be a YAML mapping of sections")
    data = apply_overrides(data, list(overrides or []))
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        # a value given with --set is named as given (blamed on the file, it was looked for
        # there in vain)
        named = re.findall(r"'([\w.]+)'", str(exc))  # the keys the message names
        for item in overrides or []:
            key = ".".join(parse_override(item)[0])
            if any(k == key or k.startswith(key + ".") for k in named):
                raise ConfigError(f"--set {item}: {exc}") from None
        raise ConfigError(f"{p}: {exc}") from None


def dump_config(cfg: TrainConfig) -> str:
    """The config as YAML text (loadable with :func:`load_config`)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Cross-field validation


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
        side = 3 * lr_side if _is_int(lr_side) else None
    else:  # worldstrat: LR frames resized to lr_size, HR to scale times that
        lr_size = opts.get("lr_size", 160)
        side = d.scale * lr_size if _is_int(lr_size) else None
    what = f"HR images of the {d.dataset} dataset"
    return side, what, what


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


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


# ---------------------------------------------------------------------------------------------
# The benchmark datasets (PROBA-V, WorldStrat, OLI2MSI)

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


__all__ = [
    "MODEL_LAYOUTS",
    "TASK_MODELS",
    "S2NAIP",
    "VAL_METRICS",
    "CLIPTerm",
    "DataSection",
    "DiscriminatorSection",
    "GANTerm",
    "LossSection",
    "ModelSection",
    "OptimSection",
    "PerceptualTerm",
    "PixelTerm",
    "SSIMTerm",
    "TrainConfig",
    "TrainerSection",
    "ValSection",
    "apply_overrides",
    "config_from_dict",
    "dataset_channels",
    "dump_config",
    "load_config",
    "parse_override",
    "validate_config",
]
