"""The settings of a scene run and what it reports: :class:`InferenceOptions` (with what is
left to the device filled in by :func:`for_device`), :class:`InferenceResult`, and the
checks of a model and of ``--uncertainty`` that every entry point makes before any work."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoomsr.errors import ConfigError
from zoomsr.inference.grid import TargetGrid
from zoomsr.inference.inputs import Frame, check_dn_offset
from zoomsr.inference.model import InferenceModel
from zoomsr.inference.windows import AUTO_WINDOWS, GPU_AUTO_WINDOWS, Tiling, windows_holding
from zoomsr.io.deflate import DEFLATE_LEVEL, DEFLATE_LEVELS

#: ``on_row(done, total)``: called after each window row of a scene is safely saved.
RowCallback = Callable[[int, int], None]


@dataclass
class InferenceOptions:
    """Settings of one scene run (see ``zoomsr infer --help`` for each)."""

    native_grid: bool = False
    tiling: Tiling = field(default_factory=Tiling)
    #: Windows per model call; with an automatic window, counted in 128 px windows. None:
    #: the device's (:func:`for_device`: 8 on a CPU; on a GPU 32, with a fixed window as many
    #: as make 32 of 128 px).
    batch_size: int | None = None
    uncertainty: int = 0  # K frame subsets; 0 = off
    cog: bool = False
    save_lr: bool = False
    preview: bool = False
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    seed: int = 0
    radiometry: str = "auto"
    rgb_bands: tuple[int, int, int] | None = None
    dn_offset: float | None = None
    #: Rows of windows computed at once; None: 3 on a GPU (the CPU work of the next and the
    #: previous rows overlaps the model), 1 on a CPU (the model already uses every core).
    threads: int | None = None
    #: Wider scenes are processed in column strips of about this many LR px (0: never), so
    #: memory does not grow with the width either; the same pixels (the tiles are written
    #: strip by strip, so in another order in the file).
    column_width: int = 4096
    #: DEFLATE level of the GeoTIFFs written, 1 (fastest) to 12 (smallest); the pixels are
    #: the same (:data:`zoomsr.io.geotiff.DEFLATE_LEVEL`).
    deflate_level: int = DEFLATE_LEVEL

    def __post_init__(self) -> None:
        from zoomsr.inference.inputs.discover import parse_rgb_bands
        from zoomsr.inference.inputs.radiometry import RADIOMETRY_CHOICES
        from zoomsr.validate import check_choice, check_int

        if not isinstance(self.tiling, Tiling):  # a tuple failed deep inside, at run time
            raise ConfigError(f"tiling must be a Tiling(window, overlap, margin), got "
                              f"{self.tiling!r}")
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, minimum=1)
        check_int("column_width", self.column_width, minimum=0)
        # (GDAL would only warn of another level, and use its default)
        check_int("deflate_level", self.deflate_level, minimum=DEFLATE_LEVELS[0],
                  maximum=DEFLATE_LEVELS[-1])
        if self.threads is not None:
            check_int("threads", self.threads, minimum=1)
        check_int("uncertainty", self.uncertainty, minimum=0)
        if self.uncertainty == 1:
            raise ConfigError(f"uncertainty needs K >= 2 frame subsets, got {self.uncertainty}")
        # NumPy's generators take no negative seed (it failed with --uncertainty only)
        check_int("seed", self.seed, minimum=0)
        check_choice("radiometry", self.radiometry, RADIOMETRY_CHOICES)
        # as discover_frames takes them ("3,2,1", NumPy integers), kept as three ints
        self.rgb_bands = parse_rgb_bands(self.rgb_bands)
        check_dn_offset(self.dn_offset)


def on_accelerator(device: torch.device) -> bool:
    """Whether ``device`` is a GPU (CUDA or ROCm, Apple's MPS)."""
    return device.type in ("cuda", "mps")


def default_batch_size(device: torch.device) -> int:
    """``--batch-size`` when not given: 8 on a CPU; 32 on a GPU, where small calls leave it
    idle (on an H200, batches of 64 chunks of 32 px ran at 50-74 % of the rate of 512; 32
    counted in 128 px windows is the same 512 chunks' worth of pixels a call: 8 windows of
    256 px, 2 of 512 px)."""
    return 32 if on_accelerator(device) else 8


def for_device(options: InferenceOptions, device: torch.device) -> InferenceOptions:
    """``options`` with what was left to the device filled in: the batch size (on a GPU with
    a ``--window``, as many windows as make 32 of 128 px), and on a GPU the automatic
    window's choices (:data:`~zoomsr.inference.windows.GPU_AUTO_WINDOWS`)."""
    changes: dict[str, Any] = {}
    if options.batch_size is None:
        batch = default_batch_size(device)
        window = options.tiling.window
        if on_accelerator(device) and window is not None:
            # a --window given: still the pixels of 32 windows of 128 px a call (32 windows of
            # 512 px would be 16x the memory of the calls measured)
            batch = windows_holding(batch, window, window)
        changes["batch_size"] = batch
    if (options.tiling.window is None and on_accelerator(device)
            and options.tiling.choices == AUTO_WINDOWS):
        changes["tiling"] = dataclasses.replace(options.tiling, choices=GPU_AUTO_WINDOWS)
    return dataclasses.replace(options, **changes) if changes else options


def rows_device(row_source: Callable[..., Any]) -> torch.device | None:
    """The device a row source computes its rows on, where it says so (a ``device``
    attribute of it or of the object it is a method of: a
    :class:`~zoomsr.inference.distributed.RayPool`'s workers); None otherwise."""
    owner = getattr(row_source, "__self__", row_source)
    device = getattr(owner, "device", None)
    return device if isinstance(device, torch.device) else None


@dataclass
class InferenceResult:
    """What a run produced and how it went."""

    output: Path
    grid: TargetGrid
    frames: list[Frame] = field(repr=False)  # each with its CRS: pages of WKT in a notebook
    windows: int
    windows_computed: int
    rows_resumed: int
    few_frame_windows: int
    seconds: float
    model: dict[str, Any]
    lr_output: Path | None = None
    preview: Path | None = None
    ignored: list[str] = field(default_factory=list)
    covered_km2: float | None = None  # where not the grid's whole extent (S2-NAIP: the tiles)
    #: seconds from the run's start (after discovery) to the first and the last finished row
    #: (``first_row``, ``last_row``; absent when no row was left to compute), spent finishing
    #: the output GeoTIFF once every row was in (``output_finish``: on a GPU, the writer
    #: thread catching up), and after it (``after_output``: side outputs, the partial
    #: folder removed): where a run's time went, for benchmarks
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def area_km2(self) -> float:
        """Ground area of the output, km²: the grid's extent, or the part inputs cover where
        they are sparse (S2-NAIP tiles in their bounding box)."""
        return self.grid.area_km2 if self.covered_km2 is None else self.covered_km2

    @property
    def km2_per_s(self) -> float:
        """Output area per second of this run: a resumed run counts the share of windows it
        computed."""
        done = self.windows_computed / self.windows if self.windows else 1.0
        return self.area_km2 * done / self.seconds if self.seconds > 0 else float("nan")


def check_inference_model(model: object) -> None:
    """Refuse what is not an :class:`InferenceModel` (a module from ``create_model`` failed
    with an AttributeError deep inside)."""
    if not isinstance(model, InferenceModel):
        raise ConfigError(
            f"expected an InferenceModel, got {type(model).__name__}: wrap a model with "
            "zoomsr.inference.build_inference_model(weights=... or model=..., "
            "random_weights=True)")


def check_uncertainty(k: int, frames: int, empty: int, n_images: int,
                      example: object = None) -> None:
    """Refuse ``k`` frame subsets (``--uncertainty K``) that would all be the same input:
    ``frames`` dates, ``empty`` of them without a valid pixel, for a model of ``n_images``."""
    if k and frames <= n_images:
        raise ConfigError(
            f"--uncertainty (uncertainty={k}) needs more frames than the model takes "
            f"({n_images}); got {frames}: every subset would be the same")
    if k and frames - empty <= n_images:
        # the empty dates are gap-filled from the others: each subset the same input, and a
        # band of zeros that reads as "certain"
        where = f" (e.g. {example})" if example is not None else ""
        raise ConfigError(
            f"--uncertainty (uncertainty={k}) needs more dates with data than the model takes "
            f"({n_images}); {empty} of the {frames} dates hold no valid pixel{where}: every "
            "subset would be the same")
