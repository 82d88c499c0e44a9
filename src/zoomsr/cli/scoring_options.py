"""The options and checks every scoring command shares (``zoomsr evaluate``,
``evaluate-model``, ``benchmark``, ``metrics agreement``): the typer options of the metrics,
their collection into :class:`~zoomsr.metrics.factory.MetricOptions` and their checks before
any file is read, the device checks, and the notes on what was scored on part of its pixels
or not at all."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from zoomsr.cli.interrupt import on_interrupt

if TYPE_CHECKING:
    from zoomsr.metrics.factory import MetricOptions

# Options shared by `zoomsr evaluate` and `zoomsr metrics agreement`.
BORDER = typer.Option(4, "--border", help="Pixels cropped from each side (PSNR, SSIM, cPSNR).")
CPSNR_MODE = typer.Option(
    "challenge", "--cpsnr-mode",
    help="cPSNR definition: challenge (PROBA-V, all shifts) or reference (the paper's code).",
)
LPIPS_NET = typer.Option("alex", "--lpips-net", help="LPIPS network: alex or vgg.")
LPIPS_WEIGHTS = typer.Option(
    None, "--lpips-weights",
    help="LPIPS backbone weights (file or folder); default: torchvision's cache.",
)
LPIPS_LINEAR = typer.Option(
    None, "--lpips-linear-weights",
    help="LPIPS linear-layer weights; default: the files in the installed lpips package.",
)
CLIP_MODEL = typer.Option("ViT-B-16", "--clip-model", help="open_clip model name for CLIPScore.")
CLIP_PRETRAINED = typer.Option(
    "openai", "--clip-pretrained",
    help="CLIP weights: an open_clip tag, a local file, or TAG=PATH (a file of that tag).",
)
CLIP_MODE = typer.Option(
    "paper", "--clip-mode", help="CLIPScore preprocessing: paper (as the reference) or standard.",
)
CLIP_CACHE = typer.Option(
    None, "--clip-cache", help="Folder caching ground-truth CLIP embeddings across runs.",
)
ALLOW_DOWNLOAD = typer.Option(
    False, "--allow-download", help="Let open_clip download missing CLIP weights.",
)
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
DTYPE = typer.Option(None, "--dtype", help="float32 (default), or bfloat16/float16 on a GPU.")
BATCH_SIZE = typer.Option(16, "--batch-size", help="Images per batch.")
SEED = typer.Option(0, "--seed", min=0, help="Seed of the bootstrap intervals.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace existing output files.")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")
DATASET_WORKERS = typer.Option(0, "--workers", min=0,
                               help="DataLoader worker processes reading a dataset's items.")
NODATA = typer.Option(
    "exclude", "--nodata",
    help="Nodata pixels (a GeoTIFF's nodata value or mask, a PNG's alpha, float NaN): exclude "
    "(score the pixels valid in both files; LPIPS/CLIPScore: both images black outside them) "
    "or black (score them as black, with a warning: the behaviour before).",
)
PERCEPTUAL_MIN_VALID = typer.Option(
    0.5, "--perceptual-min-valid",
    help="LPIPS and CLIPScore score an image only when at least this share of it is valid in "
    "both files (0 to 1); below, its cell is empty (not scored).",
)
# Spelled out here (checked against METRIC_NAMES by a test): importing zoomsr.metrics loads torch.
METRICS_HELP = (
    "Comma-separated metrics: psnr, ssim, cpsnr, lpips, lpips_alex, lpips_vgg, clipscore."
)


#: The command-line flags of the metric options, as :func:`check_metric_options` names them.
CLI_NAMES = {"border": "--border", "cpsnr_mode": "--cpsnr-mode", "lpips_net": "--lpips-net",
             "clip_mode": "--clip-mode", "perceptual_min_valid": "--perceptual-min-valid",
             "batch_size": "--batch-size", "metrics": "--metrics"}


def metric_options(
    border: int, cpsnr_mode: str, lpips_net: str, lpips_weights: Path | None,
    lpips_linear_weights: Path | None, clip_model: str, clip_pretrained: str | None,
    clip_mode: str, clip_cache: Path | None, allow_download: bool, device: str,
    dtype: str | None, batch_size: int, perceptual_min_valid: float = 0.5,
) -> MetricOptions:
    """Collect the shared command-line options into :class:`MetricOptions`."""
    from zoomsr.metrics.factory import MetricOptions

    return MetricOptions(
        border=border, cpsnr_mode=cpsnr_mode, lpips_net=lpips_net, lpips_weights=lpips_weights,
        lpips_linear_weights=lpips_linear_weights, clip_model=clip_model,
        clip_pretrained=clip_pretrained, clip_mode=clip_mode, clip_cache_dir=clip_cache,
        allow_download=allow_download, device=device, dtype=dtype, batch_size=batch_size,
        perceptual_min_valid=perceptual_min_valid,
    )


def results_on_interrupt(out: Path) -> list[Path]:
    """Set the Ctrl-C line of a command whose result files go into ``out`` together at the
    end, or not at all; the caller appends ``out`` to the returned list once they are."""
    written: list[Path] = []
    on_interrupt(lambda: f"interrupted: the results are in {out}" if written else
                 f"interrupted: nothing written to {out}; run the same command again")
    return written


def check_metric_options(names: list[str], options: MetricOptions) -> None:
    """The metric options and weight files, checked before any file is read (one-line
    errors, exit 2), named by their flags (:func:`zoomsr.metrics.factory.check_options`),
    and the CLIP embedding cache's folder writable where CLIPScore will use it."""
    from zoomsr.io.folders import require_writable_folder
    from zoomsr.metrics.factory import check_options

    check_options(names, options, CLI_NAMES)
    cache = options.clip_cache_dir
    if cache is not None and "clipscore" in names:
        # written only after the model loads and the first batch is embedded: a bad path
        # failed there, as a raw OSError naming no option
        require_writable_folder(Path(cache).expanduser(), f"--clip-cache {cache}",
                                create=False)


def valid_percent(fraction: float) -> str:
    """``fraction`` (< 1) in % with the digits it takes to stay below 100 (one NaN pixel of
    a 256 x 256 pair is 99.998 %: it was shown as "100 % valid")."""
    for digits in range(3, 12):
        text = f"{100 * fraction:.{digits}g}"
        if float(text) < 100:
            return text
    return "<100"


def check_device_options(device: str, dtype: str | None) -> None:
    """``--device`` and ``--dtype``, checked before any file is read (one-line errors, exit 2),
    whichever metrics are asked for."""
    from zoomsr.devices import resolve_device
    from zoomsr.errors import InputError
    from zoomsr.metrics.base import resolve_dtype

    # a CPU or CUDA GPU (MPS has no float64) that is there
    dev = resolve_device(device, mps=False, option="--device")
    try:
        resolve_dtype(dtype, dev)
    except InputError as exc:
        raise InputError(f"--dtype {dtype}: {exc}") from None


def note_unscored(summary: Mapping[str, Mapping[str, Any]], min_valid: float, what: str,
                  where: str = "") -> None:
    """One ``note:`` line per metric that left ``what`` (pairs, items) unscored: LPIPS and
    CLIPScore below ``min_valid`` valid (``--perceptual-min-valid``), the others for too
    few pixels after the border crop; ``where`` ends each line (e.g. the CSV's empty cell)."""
    for name, s in summary.items():
        if not s.get("n_unscored"):
            continue
        if name.startswith("lpips") or name == "clipscore":
            why = f"less than {100 * min_valid:.3g} % valid (--perceptual-min-valid)"
        else:
            why = ("too few valid pixels left by the border crop (SSIM: its window; cPSNR: "
                   "shifts), or none")
        typer.echo(f"note: {name} not scored for {s['n_unscored']} {what}: {why}{where}",
                   err=True)
