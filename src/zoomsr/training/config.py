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

This module holds the dataclasses themselves; reading them from a dict or YAML and writing
them back is :mod:`.config_io` (the annotation type checks: :mod:`.config_types`), the
cross-field checks :mod:`.config_checks`, the benchmark datasets' data section
:mod:`.dataset_config`. Their public names are importable from here too.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from zoomsr.data.bands import band_channels

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


# The public names of the modules split from this one, importable from here as before. Imported
# last: they import the dataclasses above (a module importing one of them first still loads
# this one first, through the package's __init__).
from zoomsr.training.config_checks import validate_config  # noqa: E402
from zoomsr.training.config_io import (  # noqa: E402
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
    parse_override,
)
from zoomsr.training.dataset_config import dataset_channels  # noqa: E402

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
