"""Scene inference: inputs -> target grid -> windows -> frame choice -> model -> blended GeoTIFF.

Data flow (rows of windows, so memory does not grow with the scene's height)::

    frames (files) --SceneReader--> file values of a strip, to the model's device
        --there: scale, validity, SCL--> strip [T, C, h, W]; fill gaps; window scores;
          each window's n best frames --> batches [B, n, C, h, w]
        --model--> [B, 3, h*s, w*s] * blend weights --> row accumulators (sum, weight)
        --rows no later window touches--> uint8 RGB + mask (from a GPU: one transfer per
          row, after its model calls) --> raw file (partial run)
    all rows done --> tiled, compressed GeoTIFF / COG, renamed onto the output

:func:`run_inference` is the entry point. A row of windows is the unit of work
(:func:`~zoomsr.inference.rows.compute_row`, which the Ray path,
:mod:`zoomsr.inference.distributed`, ships to workers). Locally, ``threads`` rows are computed
at once (:func:`~zoomsr.inference.rows.local_rows`): while one row is in the model, the next
is read and the previous finished, each row's thread writing its own finished rows (the main
thread saves the resume state in row order), so a fast GPU is not left waiting on the CPU.
Model calls are serialised, so the model's memory is needed once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from zoomsr import __version__
from zoomsr.errors import ConfigError, DataError, InputError
from zoomsr.inference.assemble import (
    DoneRow,
    ReadyRow,
    RowAssembler,
    RowChain,
    prepare_row,
)
from zoomsr.inference.grid import TargetGrid, plan_grid
from zoomsr.inference.inputs import (
    Frame,
    check_dn_offset,
    discover_frames,
    is_s2naip_root,
    made_by_zoomsr,
)
from zoomsr.inference.inputs.files import zoomsr_tags
from zoomsr.inference.inputs.rasters import read_cache
from zoomsr.inference.model import InferenceModel
from zoomsr.inference.preview import write_preview
from zoomsr.inference.reader import SceneReader, read_cache_bytes
from zoomsr.inference.rows import (
    ArrayReader,
    RowBlender,
    RowPart,
    RowResult,
    ScenePlan,
    blend_device,
    fit_open_files,
    local_rows,
    local_strips,
)
from zoomsr.inference.windows import (
    AUTO_WINDOWS,
    GPU_AUTO_WINDOWS,
    Tiling,
    WindowGrid,
    column_groups,
    group_read_width,
    group_span,
    windows_holding,
    windows_per_call,
)
from zoomsr.inference.writer import SAMPLING_OPTIONS, PartialRun, has_saved_state
from zoomsr.io.atomic import output_lock, refuse_existing, remove_stale_temps
from zoomsr.io.deflate import DEFLATE_LEVEL, DEFLATE_LEVELS
from zoomsr.io.folders import require_writable_folder
from zoomsr.io.geotiff import column_chunks, write_geotiff
from zoomsr.io.geotiff_stream import GeoTIFFProcess, GeoTIFFStream
from zoomsr.io.raw_raster import RawRaster
from zoomsr.stopping import interrupts_held

RowCallback = Callable[[int, int], None]


#: Row threads bring their rows' output to the host one at a time (a lock around the
#: transfer and the write). Off: on the CPU's fake of the GPU path (``meta`` device) the turns
#: cut the peak host memory of a 3856 px scene by 8 %, but on an H200 (2026-11-27, 3 runs each,
#: alternating) they cut it by 0.4 % and cost 3.4 % of the speed (a thread's transfer waits
#: for the model calls others queued). ``benchmarks/infer_throughput.py --turns`` turns them on.
ONE_ROW_ON_HOST = False

#: Where the output GeoTIFF is compressed while rows are computed: ``True`` in a child
#: process, ``False`` (default) in a thread of this one. The process shares no interpreter
#: lock with the row threads (beside one thread of pure Python it wrote 1.9x as fast as the
#: thread, 2-core CPU), but on an H200 (2026-11-27, 3856 px scene, alternating, 3 runs each)
#: runs with it made 95.5 km²/s against 109.3 with the thread, and 91.2 against 102.8 at the
#: CLI's defaults.
#: Same bytes either way; ``ZOOMSR_GEOTIFF_WRITER=process`` chooses it for a run.
WRITER_PROCESS = False


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


def super_resolve_array(
    pixels: np.ndarray,
    model: InferenceModel,
    tiling: Tiling | None = None,
    valid: np.ndarray | None = None,
    batch_size: int | None = None,
    uncertainty: int = 0,
    seed: int = 0,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Super-resolve in-memory frames with the scene pipeline's tiling, frame choice and blending.

    ``pixels`` ``[T, C, H, W]`` float in [0, 1]: TCI / 255, then the model's extra bands
    (reflectance x 10000 / 8160) if any; ``valid`` ``[T, H, W]`` (default: RGB not black).
    ``batch_size``: windows per model call (in 128 px windows when ``tiling`` has an
    automatic window, the default; None: the device's default, :func:`for_device`).
    Returns float32 ``[K, H*s, W*s]`` (K = 3, + 1 with uncertainty; not clamped; 0 where the
    mask is False) and the ``[H*s, W*s]`` data mask. Integer frames (an 8-bit TCI as read),
    values outside [0, 1], an empty stack and frames none of which has a valid pixel are
    refused (:class:`InputError`); NaN pixels are nodata.
    """
    check_inference_model(model)
    # the settings checked as a scene run's are (threads, batch, uncertainty, seed, tiling)
    options = for_device(
        InferenceOptions(tiling=tiling or Tiling(), batch_size=batch_size,
                         uncertainty=uncertainty, seed=seed, threads=threads, progress=False),
        model.device)
    tiling, batch_size = options.tiling, cast(int, options.batch_size)  # (set by for_device)
    given = np.asarray(pixels)
    if not np.issubdtype(given.dtype, np.floating):
        raise InputError(f"expected float frames in [0, 1], got {given.dtype}: divide an 8-bit "
                         "TCI by 255 (zoomsr.inference.inputs.to_tci maps 16-bit DN and "
                         "reflectance)")
    pixels = given.astype(np.float32)
    channels = getattr(model, "channels", 3)
    if pixels.ndim != 4 or pixels.shape[1] != channels:
        raise InputError(f"expected frames [T, {channels}, H, W] for {model.label} (bands "
                         f"{','.join(model.bands)}), got {list(pixels.shape)}")
    if 0 in pixels.shape:  # (it failed with a ZeroDivisionError)
        raise InputError(f"expected at least one frame of at least 1 x 1 px, got frames "
                         f"{list(pixels.shape)}")
    nan = np.isnan(pixels)
    if not nan.all():
        low, high = np.nanmin(pixels), np.nanmax(pixels)  # +-inf included: refused
        if not (0 <= low and high <= 1):
            raise InputError(f"frame values from {low:g} to {high:g}: expected [0, 1] (TCI / "
                             "255; extra bands reflectance x 10000 / 8160, clipped)")
    pixels[nan] = 0
    nodata = nan.any(1)  # [T, H, W]: a pixel with a NaN channel is nodata
    if valid is None:
        valid = np.any(pixels[:, :3] > 0, axis=1)
    valid = np.asarray(valid)
    if valid.shape != nodata.shape:
        raise InputError(f"valid must be [T, H, W] = {list(nodata.shape)} like the frames, got "
                         f"{list(valid.shape)}")
    valid = valid.astype(bool) & ~nodata
    if not valid.any():  # as a scene run refuses it: nothing to super-resolve
        raise InputError("no valid pixel in any frame (all NaN, black or not valid)")
    check_uncertainty(uncertainty, len(pixels), int((~valid.any(axis=(1, 2))).sum()),
                      model.n_images)
    height, width = pixels.shape[-2:]
    windows = WindowGrid(height, width, tiling, getattr(model, "size_multiple", 1))
    plan = ScenePlan(ArrayReader(pixels, valid), None, windows,
                     model.n_images, windows_per_call(batch_size, tiling, windows), uncertainty,
                     seed)
    s = model.scale
    channels = 3 + (1 if uncertainty else 0)
    blender = RowBlender(windows, s, channels, width * s)
    out = np.zeros((channels, height * s, width * s), np.float32)
    mask = np.zeros((height * s, width * s), bool)
    for res in local_rows(plan, model, range(windows.n_rows), threads):
        top, value, valid_hr = blender.add(res)
        out[:, top : top + value.shape[1]] = value
        mask[top : top + value.shape[1]] = valid_hr
    out[:, ~mask] = 0  # where no frame had data: 0, as a scene run writes (not model output)
    return out, mask


def _input_files(frames: Sequence[Frame]) -> list[list]:
    """``[path, size, mtime_ns]`` of every file the frames read: what tells that an input
    changed since a run (a partial one, or a finished output's tags)."""
    files = []
    for f in frames:
        for p in f.files:
            st = p.stat()
            files.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return files


def _fingerprint(plan: ScenePlan, model: InferenceModel, options: InferenceOptions,
                 groups: list[tuple[int, int]], device: torch.device | None = None) -> dict:
    """What a saved run was made with, to continue it only with the same (``device``: where
    the rows are computed, a Ray pool's workers; default the model's)."""
    reader, grid = cast(SceneReader, plan.reader), cast(TargetGrid, plan.grid)  # a scene's
    return {
        "zoomsr": __version__,
        "frames": [f.describe() for f in reader.frames],
        "files": _input_files(reader.frames),
        "grid": grid.describe(),
        "tiling": [plan.windows.tiling.window, plan.windows.tiling.overlap,
                   plan.windows.tiling.margin_px],
        "model": model.describe(),  # known by weights_sha256: PartialRun leaves the path out
        "device": (device or model.device).type,
        "autocast": model.autocast,
        "batch_size": plan.batch_size,
        "uncertainty": plan.uncertainty,
        "seed": plan.seed,
        "save_lr": options.save_lr,
        "column_width": options.column_width,
        # where the windows and strips lie: a run saved by a zoomsr that placed them otherwise
        # must not be continued (its carry would not fit, or fit and mix two layouts)
        "layout": {"ys": plan.windows.ys, "xs": plan.windows.xs, "strips": groups},
    }


def rate_text(per_s: float | None) -> str:
    """The progress bar's rate: windows a second, or seconds (minutes) a window when under
    0.1 a second (a slow model's 4 windows in 89 s showed "0.0 win/s")."""
    if per_s is None:
        return "  -- win/s"
    if per_s >= 0.1:
        return f"{per_s:6.1f} win/s"
    each = 1 / per_s
    return f"{each:6.1f} s/win" if each < 600 else f"{each / 60:4.0f} min/win"


def _progress(total: int, done: int, enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    # Rate and ETA from everything computed in this run over its whole time, not rich's
    # recent-samples estimate: Ray workers hand rows back in bursts, which that read as 30x
    # the real rate (and an ETA of seconds with minutes to go).
    def rate(task) -> float | None:
        new = task.completed - done
        return new / task.elapsed if task.elapsed and new > 0 else None

    class _Rate(ProgressColumn):
        def render(self, task):
            r = rate(task)
            return Text(rate_text(r))

    class _Eta(ProgressColumn):
        def render(self, task):
            r = rate(task)
            if task.finished or r is None:
                return Text("eta -:--:--" if not task.finished else "")
            left = int((task.total - task.completed) / r + 0.5)
            return Text(f"eta {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}")

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), _Rate(), TimeElapsedColumn(), _Eta(),
        console=Console(stderr=True),
    )


def model_tags(model: InferenceModel) -> dict[str, str]:
    """The output tags that say which zoomsr and which model made it (every output kind)."""
    return {
        "zoomsr_version": __version__,
        "zoomsr_model": model.label,
        "zoomsr_architecture": json.dumps({"name": model.describe()["architecture"],
                                           "config": model.config}),
        "zoomsr_weights": model.weights,
        "zoomsr_weights_sha256": model.weights_sha256,
        "zoomsr_n_images": str(model.n_images),
        "zoomsr_scale": str(model.scale),
        "zoomsr_precision": model.precision,  # as computed
        **({"zoomsr_sampling": json.dumps(model.describe()["sampling"])} if model.diffusion
           else {}),
    }


def _tags(plan: ScenePlan, model: InferenceModel, options: InferenceOptions, few: int,
          native: bool, files: list[list]) -> dict[str, str]:
    """The output's tags; ``files``: :func:`_input_files` as the run found them when it
    started (a file removed or rewritten since must neither fail the run at its end nor be
    recorded with its new content's size and time)."""
    grid = cast(TargetGrid, plan.grid)  # a scene's plan: its reader and grid
    tags = {
        **model_tags(model),
        "zoomsr_inputs": json.dumps([f.describe() for f in cast(SceneReader, plan.reader).frames]),
        # --resume of a finished output tells an input changed since (size, time) from it
        "zoomsr_input_files": json.dumps(files),
        "zoomsr_grid": ("native " if native else "training grid ")
        + f"{grid.crs.to_string()} {grid.resolution:.6g} {grid.unit} -> "
        f"{grid.resolution / grid.scale:.6g} {grid.unit}",
        # the windows' own size: the window clamped to a scene side smaller than it
        "zoomsr_tiling": json.dumps({"window": plan.windows.tiling.window,
                                     "overlap": plan.windows.tiling.overlap,
                                     "margin": plan.windows.tiling.margin_px,
                                     "window_used_px": [plan.windows.win_h,
                                                        plan.windows.win_w]}),
        "zoomsr_windows_with_too_few_frames": str(few),
        **side_outputs_tag(options),
    }
    if plan.uncertainty:
        tags["zoomsr_uncertainty"] = (
            f"band 4: per-pixel standard deviation x 255 of the outputs of {plan.uncertainty} "
            f"frame subsets (mean over RGB); 255 where fewer than {plan.n_images + 1} dates "
            "are usable (undetermined)"
        )
        tags["zoomsr_seed"] = str(plan.seed)  # draws the subsets
    return tags


def _other_sampling(tag: str | None, model: InferenceModel) -> str:
    """How a diffusion model's sampling now differs from a finished output's ``tag``, in the
    options' terms (``--sample-steps 6, it was 5``)."""
    now = model.describe()["sampling"]
    try:
        was = json.loads(tag) if tag else {}
    except ValueError:
        was = {}
    if not isinstance(was, dict) or not was:
        return "SR3 sampling, not recorded by the run that wrote it"
    diffs = [f"{SAMPLING_OPTIONS.get(k, k)} {now[k]}, it was {was.get(k)}" for k in now
             if was.get(k) != now[k]]
    return "; ".join(diffs) or "SR3 sampling"


def _other_options(tags: dict[str, str], layout: str | None, options: InferenceOptions,
                   chunks: bool = False, precision: str | None = None) -> list[str]:
    """What in ``options`` asks for another result than the finished output with ``tags``
    (and GDAL's ``layout``, ``COG`` for a COG) holds: one phrase per difference. ``chunks``:
    an S2-NAIP chunk output, which ignores the tiling options."""
    diffs = []
    if "zoomsr_grid" in tags and tags["zoomsr_grid"].startswith("native ") != options.native_grid:
        diffs.append("--native-grid " + ("given" if options.native_grid else "not given")
                     + ", it was " + ("not " if options.native_grid else "") + "used")
    found = re.search(r"outputs of (\d+) frame subsets", tags.get("zoomsr_uncertainty", ""))
    was = int(found.group(1)) if found else 0
    if was != options.uncertainty:
        diffs.append(f"--uncertainty {options.uncertainty}, it was {was}")
    elif was and tags.get("zoomsr_seed", str(options.seed)) != str(options.seed):
        diffs.append(f"--seed {options.seed}, it was {tags['zoomsr_seed']}")
    if precision is not None and tags.get("zoomsr_precision", precision) != precision:
        diffs.append(f"--precision {precision}, it was {tags['zoomsr_precision']}")
    if (layout == "COG") != options.cog:
        diffs.append("--cog " + ("given, it is not a COG" if options.cog else
                                 "not given, it is a COG"))
    if chunks:
        return diffs
    diffs += _other_radiometry(tags.get("zoomsr_inputs"), options)
    try:
        tiling = json.loads(tags["zoomsr_tiling"])
    except (KeyError, ValueError, TypeError):
        return diffs
    t = options.tiling
    asked = {"window": t.window, "overlap": t.overlap, "margin": t.margin}
    for key, value in asked.items():
        if value is not None and isinstance(tiling, dict) and key in tiling \
                and tiling[key] != value:
            diffs.append(f"--{key} {value}, it was {tiling[key]}")
    return diffs


def _other_radiometry(record: str | None, options: InferenceOptions) -> list[str]:
    """The radiometry options given now (``--radiometry``, ``--dn-offset``,
    ``--rgb-bands``) that the frames of a finished output's ``zoomsr_inputs`` tag were not
    read with: one phrase per option (a partial run's state compares them frame by frame; a
    finished one's was reported done with the old reading)."""
    try:
        frames = [f for f in json.loads(record or "[]") if isinstance(f, dict)]
    except ValueError:
        return []  # not written by this zoomsr
    diffs = []
    kinds = sorted({str(f.get("radiometry")) for f in frames})
    if options.radiometry != "auto" and kinds and kinds != [options.radiometry]:
        diffs.append(f"--radiometry {options.radiometry}, it was {', '.join(kinds)}")
    # the frames' own and their extra bands' (tci,b08: B08's offset with a TCI frame)
    read = [*frames, *(e for f in frames for e in (f.get("extras") or {}).values()
                       if isinstance(e, dict))]
    offsets = sorted({f.get("dn_offset") for f in read if f.get("radiometry") == "dn"},
                     key=str)
    if options.dn_offset is not None and offsets and offsets != [options.dn_offset]:
        shown = ", ".join(f"{o:g}" if isinstance(o, (int, float)) else str(o) for o in offsets)
        diffs.append(f"--dn-offset {options.dn_offset:g}, it was {shown}")
    orders = {tuple(f.get("bands") or ()) for f in frames if len(f.get("paths") or []) == 1}
    if options.rgb_bands is not None and orders and orders != {tuple(options.rgb_bands)}:
        was = "; ".join(",".join(map(str, o)) for o in sorted(orders))
        diffs.append(f"--rgb-bands {','.join(map(str, options.rgb_bands))}, it was {was}")
    return diffs


def side_outputs(out: Path, save_lr: bool, preview: bool) -> dict[str, Path]:
    """The files written beside ``out``: the LR mosaic and the PNG preview, when asked for."""
    paths = {}
    if save_lr:
        paths["lr"] = out.with_name(out.stem + ".lr.tif")
    if preview:
        paths["preview"] = out.with_name(out.stem + ".preview.png")
    return paths


def write_side_outputs(out: Path, options: InferenceOptions, lr: RawRaster | None,
                       grid: TargetGrid, tags: dict[str, str], content: str
                       ) -> tuple[Path | None, Path | None]:
    """Write, beside the finished ``out``, the LR mosaic ``lr`` (when saved; tagged with
    ``content``) and the PNG preview (when asked for); return their paths (or None)."""
    sides = side_outputs(out, options.save_lr, options.preview)
    if lr is not None:
        write_geotiff(lr, sides["lr"], crs=grid.crs, transform=grid.transform,
                      band_names=["red", "green", "blue"],
                      tags={**tags, "zoomsr_content": content}, cog=options.cog,
                      deflate_level=options.deflate_level)
    if options.preview:
        write_preview(out, sides["preview"])
    _drop_other_side_outputs(out, sides, options.overwrite)
    return sides.get("lr"), sides.get("preview")


def _an_lr_mosaic(path: Path) -> bool:
    """Whether ``path`` is an LR mosaic zoomsr wrote (its ``zoomsr_content`` tag), not
    another run's super-resolved output saved under that name."""
    tags = zoomsr_tags(path) or {}
    return "LR mosaic" in tags.get("zoomsr_content", "")  # (scenes' and S2-NAIP chunks')


def _drop_other_side_outputs(out: Path, written: dict[str, Path], overwrite: bool) -> None:
    """The side outputs this run did not write, left beside ``out`` by an earlier run (an
    LR mosaic of other weights, a preview of another image): removed with ``overwrite``
    (an LR mosaic only if zoomsr wrote it as one), else named in a warning."""
    for key, path in side_outputs(out, True, True).items():
        if key in written or not path.is_file():
            continue
        if overwrite and (key == "preview" or _an_lr_mosaic(path)):
            path.unlink(missing_ok=True)
            continue
        import warnings

        from zoomsr.errors import ZoomsrWarning

        what = "LR mosaic" if key == "lr" else "preview"
        article = "an" if key == "lr" else "a"
        why = (f"not {article} {what} zoomsr wrote, so --overwrite keeps it" if overwrite else
               "left by another run: remove it, or pass --overwrite")
        warnings.warn(f"{path}: not this run's (it wrote no {what}; {why})", ZoomsrWarning,
                      stacklevel=2)


def side_outputs_tag(options: InferenceOptions) -> dict[str, str]:
    """The output's ``zoomsr_side_outputs`` tag: which side outputs its run wrote (``lr``,
    ``preview``), so that a file of another run under such a name is not taken for its own."""
    return {"zoomsr_side_outputs": json.dumps(
        sorted(side_outputs(Path("x.tif"), options.save_lr, options.preview)))}


def finished_before(output: str | os.PathLike[str], save_lr: bool = False,
                    preview: bool = False) -> bool:
    """Whether ``output`` is the finished output of an earlier zoomsr run (no partial run
    beside it) with every side output asked for now: ``--resume`` then has nothing to do (a
    requeued job's command succeeds). :class:`InputError` when it is finished but lacks a side
    output asked for now (``--resume`` cannot add one): the file is missing, or its run did
    not write it (its ``zoomsr_side_outputs`` tag; a file of that name left by another run)."""
    out = Path(output)
    tags = None if not out.is_file() or has_saved_state(out) else zoomsr_tags(out)
    if tags is None:
        return False
    written = tags.get("zoomsr_side_outputs")
    try:
        own = set(json.loads(written)) if written else None
    except (ValueError, TypeError):
        own = None
    flags = {"lr": "--save-lr", "preview": "--preview"}
    for key, path in side_outputs(out, save_lr, preview).items():
        if not path.is_file() or (own is not None and key not in own):
            why = "is missing" if not path.is_file() else "is another run's"
            raise InputError(
                f"{out}: finished by an earlier run without {flags[key]} ({path.name} {why}); "
                f"--resume cannot add it: pass --overwrite to compute it again "
                f"with {flags[key]}")
    return True


def finished_same_run(output: str | os.PathLike[str],
                      inputs: Sequence[str | os.PathLike[str]], model: InferenceModel,
                      options: InferenceOptions, any_precision: bool = False) -> bool:
    """:func:`finished_before`, and the earlier run made it with these weights (by SHA-256)
    from these input files (its tags): ``--resume`` of a requeued job has nothing to do.
    :class:`InputError` when the tags name other weights or inputs (the job now asks for
    another result: the finished one was reported as done). ``any_precision``: the precision
    it was computed in is not compared (``--precision auto`` on Ray: the workers' device
    decides, and it is not known before Ray is up)."""
    out = Path(output)
    if not finished_before(out, options.save_lr, options.preview):
        return False
    from zoomsr.inference.inputs.rasters import open_raster

    with open_raster(out) as ds:
        tags = ds.tags()
        layout = ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
    redo = "--resume continues only that run: pass --overwrite to compute it again"
    chunks = is_s2naip_input(list(inputs))
    mine = model_tags(model)  # what this run would tag
    precision = None if any_precision else model.precision
    if "zoomsr_version" in tags and (diffs := _other_options(tags, layout, options, chunks,
                                                             precision)):
        # a requeued job whose command changed asks for another result: it was reported done
        raise InputError(f"{out}: finished by an earlier run with other options "
                         f"({'; '.join(diffs)}); {redo}")
    old = tags.get("zoomsr_weights_sha256")
    if old and old != model.weights_sha256:
        raise InputError(f"{out}: finished by an earlier run with other weights (SHA-256 "
                         f"{old[:12]}..., now {model.weights_sha256[:12]}... of "
                         f"{model.label}); {redo}")
    if model.diffusion and tags.get("zoomsr_sampling") != mine["zoomsr_sampling"]:
        raise InputError(f"{out}: finished by an earlier run with other options "
                         f"({_other_sampling(tags.get('zoomsr_sampling'), model)}); {redo}")
    if "zoomsr_inputs" not in tags:
        return True  # tags not written by this zoomsr: nothing to compare
    if chunks:  # chunk outputs name their dataset folder
        root = os.path.abspath(inputs[0])
        if not tags["zoomsr_inputs"].startswith(f"S2-NAIP chunks {root} ("):
            raise InputError(f"{out}: finished by an earlier run of other inputs (not the "
                             f"S2-NAIP chunks of {root}: {tags['zoomsr_inputs']}); {redo}")
        from zoomsr.inference.s2naip import inputs_digest

        digest = tags.get("zoomsr_input_digest")
        if digest is not None and (digest_now := inputs_digest(root, model.bands)) != digest:
            raise InputError(f"{out}: finished by an earlier run, but the S2-NAIP tiles of "
                             f"{root} changed since (tiles added or removed, or files "
                             f"rewritten: {digest.split(',')[0]} then, "
                             f"{digest_now.split(',')[0]} now); "
                             f"{redo}")
        return True
    try:
        was = {str(p) for f in json.loads(tags["zoomsr_inputs"]) for p in f.get("paths", [])}
    except (ValueError, TypeError, AttributeError):
        return True  # tags not written by this zoomsr: nothing to compare
    now = _rgb_files(inputs, [out, *side_outputs(out, options.save_lr,
                                                 options.preview).values()])
    if now is not None and was != now:
        gone, new = sorted(was - now), sorted(now - was)
        parts = ([f"{len(gone)} of its files not among them now, e.g. {gone[0]}"] if gone
                 else []) + ([f"{len(new)} new, e.g. {new[0]}"] if new else [])
        raise InputError(f"{out}: finished by an earlier run of other inputs "
                         f"({'; '.join(parts)}); {redo}")
    changed = _changed_since(tags.get("zoomsr_input_files"))
    if changed:
        raise InputError(f"{out}: finished by an earlier run, but {changed} changed since "
                         f"(size or time); {redo}")
    return True


def _changed_since(record: str | None) -> str | None:
    """The first input file of a finished output's ``zoomsr_input_files`` tag whose size or
    modification time is not the recorded one (None: all the same, gone, or no record)."""
    try:
        files = json.loads(record) if record else []
        for path, size, mtime in files:
            try:
                st = os.stat(path)
            except OSError:
                continue  # staged for the job and removed since: nothing to compare
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                return str(path)
    except (ValueError, TypeError):
        return None  # not written by this zoomsr
    return None


def _rgb_files(inputs: Sequence[str | os.PathLike[str]], outputs: Sequence[Path]
               ) -> set[str] | None:
    """The RGB files (TCI, or B04/B03/B02) that ``inputs`` name, as the frames' paths are
    tagged, from the names alone (no raster decoded); the run's own ``outputs`` left out (a
    glob of the input folder may hold them). None when they cannot be listed, e.g. inputs
    staged for the job and removed once it finished: nothing to compare."""
    from zoomsr.inference.inputs.files import band_role, expand

    mine = {os.path.abspath(p) for p in outputs}
    items = [i for i in inputs if os.path.abspath(i) not in mine]
    try:
        candidates, _ = expand(items)
    except (DataError, OSError):
        return None
    rgb = {None, "tci", "red", "green", "blue"}
    files: set[str] = set()
    for c in candidates:
        paths = ([c[k] for k in ("tci", "red", "green", "blue") if k in c]
                 if isinstance(c, dict) else [p for p in c if band_role(p) in rgb])
        files |= {str(p) for p in paths}
    return files


def check_output(output: str | os.PathLike[str], overwrite: bool, *, save_lr: bool = False,
                 preview: bool = False, inputs: Iterable[str | os.PathLike[str]] = (),
                 resume: bool = False) -> Path:
    """The output path, checked before any work: a GeoTIFF name, not a folder, none of the
    ``inputs``, in a folder that can be written, and new with its side outputs (unless
    ``overwrite``; or ``resume`` where a run left its saved state beside them: that run
    renames the output into place before it writes the side outputs and removes its folder,
    so a stop in between leaves outputs it wrote, which the resumed run writes again)."""
    out = Path(output)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"{out}: the output must be a GeoTIFF (.tif or .tiff)")
    paths = [out, *side_outputs(out, save_lr, preview).values()]
    for p in paths:
        if p.is_dir():
            raise InputError(f"{p}: is a folder; give the output a file name")
    taken = {Path(p).resolve() for p in inputs}
    for p in paths:
        if p.resolve() in taken:
            raise InputError(f"{p}: is one of the inputs; write the output elsewhere")
    if resume and has_saved_state(out):
        # only outputs zoomsr wrote (the PNG preview carries no tags) are the run's own
        paths = [p for p in paths
                 if not (p.is_file() and (p.suffix.lower() == ".png" or made_by_zoomsr(p)))]
    refuse_existing(paths, overwrite)
    require_writable_folder(out.parent, str(out))
    return out


@contextlib.contextmanager
def writing(output: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``output`` for one run: its lock (:func:`~zoomsr.io.atomic.output_lock`: a second
    run of it is refused), and the temporary files that earlier runs killed outright (SIGKILL,
    the OOM killer) left beside it and its side outputs removed, none being another live
    run's."""
    out = Path(output)
    sides = side_outputs(out, True, True)
    with contextlib.ExitStack() as stack:
        # the side outputs' names too: another run's output may be named so
        for path in (out, *sides.values()):
            stack.enter_context(output_lock(path))
        # the GeoTIFF writer's temporary files end in .tif, whatever the output's suffix
        for path, suffix in ((out, ".tif"), (sides["lr"], ".tif"), (sides["preview"], ".png")):
            remove_stale_temps(path, suffix=suffix)
        yield


def run_scene(
    frames: Sequence[Frame],
    output: str | os.PathLike[str],
    model: InferenceModel,
    options: InferenceOptions | None = None,
    *,
    row_source: Callable[[ScenePlan, InferenceModel, Sequence[int]], Iterator[RowResult]]
    | None = None,
    on_row: RowCallback | None = None,
    ignored: Sequence[str] = (),
    empty: Sequence[Frame] = (),
) -> InferenceResult:
    """Super-resolve one scene of ``frames`` into ``output`` (see module docstring).

    ``row_source`` computes rows (default :func:`~zoomsr.inference.rows.local_rows` with
    ``options.threads``; the Ray path passes its own).
    ``on_row(done, total)`` is called after each window row is safely saved; an exception from
    it (e.g. ``KeyboardInterrupt``) stops the run, which ``options.resume`` can continue.
    ``empty``: frames seen to hold no valid pixel (``Discovery.empty``).
    """
    with writing(output):
        return _run_scene(frames, output, model, options, row_source=row_source,
                          on_row=on_row, ignored=ignored, empty=empty)


def _run_scene(
    frames: Sequence[Frame],
    output: str | os.PathLike[str],
    model: InferenceModel,
    options: InferenceOptions | None,
    *,
    row_source: Callable[[ScenePlan, InferenceModel, Sequence[int]], Iterator[RowResult]]
    | None,
    on_row: RowCallback | None,
    ignored: Sequence[str],
    empty: Sequence[Frame],
) -> InferenceResult:
    options = options or InferenceOptions()
    out = check_output(output, options.overwrite, save_lr=options.save_lr,
                       preview=options.preview, inputs=[p for f in frames for p in f.files],
                       resume=options.resume)
    # the device the rows are computed on (a Ray pool's workers: asking may start Ray, so
    # after the output's checks), else this model's: its defaults (GPU workers behind a CPU
    # head took the CPU's batch and windows), and whether the GeoTIFF is written meanwhile
    device = (row_source is not None and rows_device(row_source)) or model.device
    options = for_device(options, device)
    check_uncertainty(options.uncertainty, len(frames), len(empty), model.n_images,
                      empty[0].paths[0] if empty else None)
    extra = tuple(model.bands[1:])
    for f in frames:
        if tuple(a.name for a in f.extras) != extra:
            have = ",".join(("tci", *(a.name for a in f.extras)))
            raise InputError(f"{f.paths[0]}: frame of bands {have}, but {model.label} takes "
                             f"{','.join(model.bands)}")
    start = time.perf_counter()
    rows_at = [0.0, 0.0]  # when the first and the last row reached this thread
    grid = plan_grid(frames, model.scale, native=options.native_grid)
    windows = WindowGrid(grid.height, grid.width, options.tiling,
                         getattr(model, "size_multiple", 1))
    plan = ScenePlan(SceneReader(list(frames), grid), grid, windows, model.n_images,
                     windows_per_call(cast(int, options.batch_size), options.tiling, windows),
                     options.uncertainty, options.seed)
    s = model.scale
    k = options.uncertainty
    groups = column_groups(windows, options.column_width)
    fingerprint = _fingerprint(plan, model, options, groups, device)
    run = PartialRun(out, fingerprint)
    hr = run.raw("sr", grid.hr_width, grid.hr_height, 3 + (1 if k else 0) + 1)
    lr = run.raw("lr", grid.width, grid.height, 4) if options.save_lr else None
    rasters = [hr] + ([lr] if lr is not None else [])

    def prepare(res: RowResult) -> ReadyRow:
        return prepare_row(res, windows, s, with_lr=lr is not None)

    def finish_and_write(p: ScenePlan, chain: RowChain) -> Callable[[RowResult], DoneRow]:
        # A row's output rows are finished where it was blended and written from its thread,
        # so a row waiting for the consumer holds only its carry: on a GPU, up to --threads
        # rows of output were held, and the carried rows came back as floats twice.
        col = group_span(windows, p.columns or (0, len(windows.xs)))[0]

        def run(res: RowResult) -> DoneRow:
            # Finished where it was blended (on a GPU: queued now, behind this row's own model
            # calls, not behind rows queued while it waits), then one row's output on the
            # host at a time: the transfers of the rows in flight were the width-proportional
            # part of a GPU run's host memory (memray, 3856 px: 215 of 444 MB).
            row = chain.finished(res, with_lr=lr is not None)
            with one_on_host:
                block, lr_rows, few, sums, weights = chain.bring_back(row)
                del row
                hr.write_block(windows.ys[res.row] * s, col * s, block)
                if lr is not None:
                    lr.write_block(windows.ys[res.row], col,
                                   cast(np.ndarray, lr_rows))  # (made with_lr)
                del block, lr_rows
                # from a GPU the carry is a view of the row's one transfer: own it, not the
                # buffer
                return DoneRow(res.row, _owned(sums), _owned(weights), few, res.windows)

        return run

    one_on_host: Any = threading.Lock() if ONE_ROW_ON_HOST else contextlib.nullcontext()

    threads = 1  # rows read at once in this process (the Ray path reads in its workers)
    if row_source is None:
        threads = options.threads or (1 if model.device.type == "cpu" else 3)
        threads = fit_open_files(threads, sum(len(f.files) for f in frames))
    widest = max(group_read_width(windows, g) for g in groups)
    # one reader per row thread (its own datasets: GDAL keeps decoded blocks per dataset)
    cache = read_cache_bytes(frames, grid, windows.win_h, widest,
                             threads if row_source is None else 0, hr.row_bytes,
                             stride=windows.tiling.stride)
    state = run.start(rasters, options.resume, options.overwrite)
    first_group, first_row, few = 0, 0, 0
    carry: tuple[np.ndarray, np.ndarray] | None = None
    if state is not None:
        first_group = int(state.get("group", 0))
        first_row, few = int(state["rows_done"]), int(state["few_frames"])
        carry = state["arrays"]["sums"], state["arrays"]["weights"]
        if first_row == windows.n_rows and first_group + 1 < len(groups):
            first_group, first_row, carry = first_group + 1, 0, None  # that group was done
    per_row = len(windows.xs)
    c0, c1 = groups[first_group]  # windows done: whole earlier groups, then rows of this one
    done_before = groups[first_group][0] * windows.n_rows + (c1 - c0) * first_row
    computed = 0
    # GDAL's cache for this run, then as it was; a run stopped before its first row is
    # saved leaves no partial folder (nothing in it to resume)
    with run.removed_unless_saved(), read_cache(cache):
        names = ["red", "green", "blue"] + (["uncertainty"] if k else [])
        # each column strip's output columns are compressed as that strip goes (so no more
        # than a strip's width of output is held), the block it shares with the next after it
        chunks = column_chunks(hr.width, [group_span(windows, g)[1] * s for g in groups])
        # Compress while computing only when the model is elsewhere: on a CPU the writer
        # would take cores from the model (measured ~10 % slower on 2 cores). Same bytes.
        live = device.type != "cpu"
        in_process = _writer_in_process(WRITER_PROCESS)
        # a child needs an interpreter to start and a pipe to hand over (not on Windows)
        in_process = in_process and os.name == "posix" and bool(sys.executable)
        stream = (GeoTIFFProcess if in_process else GeoTIFFStream)(
            hr, out, crs=grid.crs, transform=grid.hr_transform, band_names=names,
            cog=options.cog, chunks=chunks, deflate_level=options.deflate_level)
        items: Iterator[Any] | None = None
        try:  # the writer starts inside: a Ctrl-C from its start on stops it
            stream.start()
            if (first_group or first_row) and live:  # what a resumed run finished before
                final = windows.final_until(first_row - 1) * s if first_row else 0
                stream.rows_done(final, chunk=first_group)
            with _progress(len(windows), done_before, options.progress) as bar:
                task = None
                if bar is not None:
                    task = bar.add_task("super-resolving", total=len(windows),
                                        completed=done_before)
                # Local rows move the bar window by window (a row of a slow model, SR3 on
                # a CPU, takes minutes); the rest of a row's count when it is done.
                ticked: dict[tuple[int, int], int] = {}  # (strip, window row): windows
                ticks = threading.Lock()

                def tick(key: tuple[int, int]) -> None:
                    with ticks:
                        ticked[key] = ticked.get(key, 0) + 1
                    bar.advance(task, 1)

                todo = list(range(first_group, len(groups)))  # the strips with rows left

                def strip(g: int) -> tuple[ScenePlan, range, Any]:
                    """Strip ``g``'s plan, rows left and carry (a resumed run's, or none)."""
                    rows = range(first_row if g == first_group else 0, windows.n_rows)
                    g_carry = carry if g == first_group else None
                    return (dataclasses.replace(plan, columns=groups[g]), rows,
                            g_carry or (None, None))

                if row_source is None:
                    parts = []
                    for g in todo:
                        g_plan, rows, g_carry = strip(g)
                        a, b, _ = group_span(windows, groups[g])
                        chain = RowChain(windows, s, hr.bands - 1, (b - a) * s, *g_carry)
                        parts.append(RowPart(
                            g_plan, rows, finish_and_write(g_plan, chain), chain.link,
                            None if bar is None else functools.partial(_keyed, tick, g)))
                    # rows blended on the GPU if there is one, finished in their threads; the
                    # threads go on from a strip's last rows to the next one's first
                    items = local_strips(parts, model, threads, blend_device(model))
                else:
                    items = _strips_assembled(todo, strip, row_source, model, windows, s, hr,
                                              lr, prepare)
                for i, done in items:
                    rows_at[0] = rows_at[0] or time.perf_counter()
                    rows_at[1] = time.perf_counter()
                    g = todo[i]
                    few += done.few_frames
                    computed += done.windows
                    run.save({"group": g, "rows_done": done.row + 1, "few_frames": few},
                             {"sums": done.carry_sums, "weights": done.carry_weights})
                    if live:
                        stream.rows_done(windows.final_until(done.row) * s, chunk=g)
                    if bar is not None:
                        with ticks:
                            rest = done.windows - ticked.pop((g, done.row), 0)
                        bar.update(task, advance=rest)
                    if on_row is not None:
                        on_row(done.row + 1, windows.n_rows)
                    del done  # its carry is not kept while the next row is computed
            # inside the try: Ctrl-C while the last strips are compressed removes the temp file
            tags = _tags(plan, model, options, few, options.native_grid, fingerprint["files"])
            finishing = time.perf_counter()
            stream.finish(tags)
            finished = time.perf_counter()
        except BaseException:
            stream.abandon()
            raise
        finally:
            if items is not None and hasattr(items, "close"):
                items.close()  # stops row threads now, not when the generator is collected
            plan.reader.close()
    lr_path, preview = write_side_outputs(out, options, lr, grid, tags,
                                          "resampled LR mosaic (mean of valid frames)")
    with interrupts_held():  # not cut halfway: an empty partial folder made --resume refuse
        run.remove()
    end = time.perf_counter()
    phases = {"first_row": rows_at[0] - start, "last_row": rows_at[1] - start} if rows_at[0] else {}
    phases |= {"output_finish": finished - finishing, "after_output": end - finished}
    return InferenceResult(
        output=out, grid=grid, frames=list(frames), windows=len(windows),
        windows_computed=computed, rows_resumed=done_before // max(per_row, 1),
        few_frame_windows=few,
        seconds=end - start, model=model.describe(), lr_output=lr_path,
        preview=preview, ignored=list(ignored), phases=phases,
    )


#: ``ZOOMSR_GEOTIFF_WRITER=thread`` (or ``process``) overrides where the output GeoTIFF is
#: written while rows are computed (:data:`WRITER_PROCESS`): a way back to the thread where a
#: child process misbehaves (a sandbox that forbids them).
WRITER_ENV = "ZOOMSR_GEOTIFF_WRITER"


def _writer_in_process(default: bool) -> bool:
    """Whether this run's GeoTIFF writer is a child process: ``default``, unless
    :data:`WRITER_ENV` says otherwise (an unknown value is refused, naming it)."""
    choice = os.environ.get(WRITER_ENV, "").strip().lower()
    if choice not in ("", "thread", "process"):
        raise ConfigError(f"{WRITER_ENV}={os.environ[WRITER_ENV]}: expected thread or process")
    return default if not choice else choice == "process"


def _keyed(tick: Callable[[tuple[int, int]], None], g: int, r: int) -> None:
    """``tick((g, r))``: a window of strip ``g``'s window row ``r`` blended."""
    tick((g, r))


def _strips_assembled(todo: list[int], strip: Callable[[int], tuple[ScenePlan, range, Any]],
                      row_source: Callable[..., Iterator[RowResult]], model: InferenceModel,
                      windows: WindowGrid, s: int, hr: RawRaster, lr: RawRaster | None,
                      prepare: Callable[[RowResult], ReadyRow]
                      ) -> Generator[tuple[int, DoneRow], None, None]:
    """The rows of a row source (Ray), strip after strip, assembled and written here: ``(k,
    row)`` for each row of strip ``todo[k]``."""
    for k, g in enumerate(todo):
        g_plan, rows, g_carry = strip(g)
        a, b, _ = group_span(windows, g_plan.columns)  # type: ignore[arg-type]
        assembler = RowAssembler(windows, s, hr.bands - 1, (b - a) * s, *g_carry)
        inner = _assembled(row_source(g_plan, model, rows), assembler, prepare, hr, lr, a, s)
        try:
            for done in inner:
                yield k, done
                del done
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()  # stops the strip's row source now


def _owned(a: np.ndarray) -> np.ndarray:
    return a if a.base is None else a.copy()


def _assembled(items: Iterable[Any], assembler: RowAssembler,
               prepare: Callable[[RowResult], ReadyRow], hr: RawRaster, lr: RawRaster | None,
               col: int, scale: int) -> Iterator[DoneRow]:
    """Rows from a row source that does not have the carry (Ray workers: :class:`ReadyRow`
    or :class:`RowResult`), put together here in order and written."""
    try:
        for item in items:
            ready = item if isinstance(item, ReadyRow) else prepare(item)
            del item
            top, block = assembler.add(ready)
            hr.write_block(top, col * scale, block)
            if lr is not None and ready.lr is not None:
                lr.write_block(assembler.windows.ys[ready.row], col, ready.lr)
            done = DoneRow(ready.row, assembler.sums, assembler.weights, ready.few_frames,
                           ready.windows)
            del ready, block  # not kept while the next row is computed
            yield done
    finally:
        if hasattr(items, "close"):
            items.close()


def is_s2naip_input(items: Sequence[str | os.PathLike[str]]) -> bool:
    """Whether ``items`` is one S2-NAIP dataset folder (chunk-layout input)."""
    # "" (an unset variable) is no folder, though Path("") is the current one
    return (len(items) == 1 and bool(str(items[0]).strip()) and Path(items[0]).is_dir()
            and is_s2naip_root(Path(items[0])))


def run_inference(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    output: str | os.PathLike[str],
    model: InferenceModel,
    options: InferenceOptions | None = None,
    **kwargs: Any,
) -> InferenceResult:
    """Discover the frames in ``inputs`` (files, folders, manifests) and run :func:`run_scene`."""
    options = options or InferenceOptions()
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if is_s2naip_input(items):
        from zoomsr.inference.s2naip import run_s2naip

        if kwargs.pop("row_source", None) is not None:
            raise InputError("S2-NAIP chunk input runs locally (no --ray)")
        return run_s2naip(items[0], output, model, options, **kwargs)
    found = discover_frames(inputs, radiometry=options.radiometry, rgb_bands=options.rgb_bands,
                            dn_offset=options.dn_offset, extra_bands=model.bands[1:])
    return run_scene(found.frames, output, model, options, ignored=found.ignored,
                     empty=found.empty, **kwargs)
