"""``zoomsr demo``: the main job on a fresh machine, offline."""

from __future__ import annotations

from pathlib import Path

import typer

from zoomsr.errors import InputError


def _in_range(option: str, value: int, bounds: tuple[int, int], unit: str = "") -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise InputError(f"{option} must be in {lo}..{hi}{unit}, got {value}")


def check_options(out: Path, size: int, series_size: int, frames: int, device: str,
                  overwrite: bool) -> None:
    """Every option and OUT, checked before any work (one-line errors, exit 2): nothing is
    loaded or written when one is wrong."""
    from zoomsr.devices import resolve_device
    from zoomsr.inference.demo import (
        CROP_SIZES,
        SERIES_FRAMES,
        SERIES_SIZES,
        check_demo_dir,
    )

    _in_range("--size", size, CROP_SIZES, " px (the real sample is 300 x 300 px)")
    _in_range("--series-size", series_size, SERIES_SIZES, " px")
    _in_range("--frames", frames, SERIES_FRAMES)
    resolve_device(device, option="--device")  # unknown names, or a device that is not there
    check_demo_dir(out, frames, overwrite)


def demo(
    out: Path = typer.Argument(..., help="Folder for the demo outputs (created if missing)."),
    size: int = typer.Option(
        64, "--size", help="Side of the real Sentinel-2 crop, 10 m pixels (16..300)."),
    series_size: int = typer.Option(
        256, "--series-size",
        help="Side of the generated georeferenced series, 10 m pixels (16..1024)."),
    frames: int = typer.Option(
        8, "--frames", help="Dates in the generated series (1..32; zoomsr-multi8 takes 8, "
        "fewer are repeated)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N, mps."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace the outputs of an earlier demo in OUT (without it, "
        "the demo refuses to start when any exists)."),
) -> None:
    """Run both demos, offline.

    (a) Real Sentinel-2 pixels (spyndex's 10 m sample) through Real-ESRGAN x4plus:
    OUT/sentinel2_realesrgan.png, LR (nearest x4) | super-resolved | bicubic x4.

    (b) A generated, georeferenced Sentinel-2-like time series (OUT/lr_series/, --frames TCI
    GeoTIFFs, UTM 15N, 10 m) through the packaged multi-image default zoomsr-multi8 (trained
    on synthetic data only): OUT/sentinel2_series_x4.tif (2.5 m) and its .preview.png.

    All options and OUT are checked before anything runs; existing demo outputs in OUT are
    refused unless --overwrite, as in `zoomsr infer`.
    """
    check_options(out, size, series_size, frames, device, overwrite)

    from zoomsr.cli.infer import load_model
    from zoomsr.inference.demo import run_demo, run_series_demo
    from zoomsr.weights.registry import MULTI_DEFAULT_WEIGHTS

    # both models before any output, so that neither part fails after the other wrote files
    model = load_model(None, None, [], False, device, "auto")
    multi = load_model(MULTI_DEFAULT_WEIGHTS, None, [], False, device, "auto")
    result = run_demo(out, model, size=size, overwrite=overwrite)
    typer.echo(f"(a) wrote {result.png}: LR | {model.label} | bicubic, {result.lr_size} px of "
               f"real 10 m Sentinel-2 (spyndex sample) -> x{model.scale} in "
               f"{result.seconds:.1f} s")
    series = run_series_demo(out, multi, size=series_size, n_frames=frames,
                             overwrite=overwrite)
    typer.echo(f"(b) wrote {len(series.lr_files)} synthetic georeferenced Sentinel-2 TCI frames "
               f"({series.lr_size} px, 10 m, EPSG:32615) to {series.lr_files[0].parent}")
    typer.echo(f"    wrote {series.tif} (x{multi.scale}, 2.5 m, {multi.label}: trained on "
               f"synthetic data only) in {series.seconds:.1f} s"
               + (f", preview {series.preview}" if series.preview else ""))
    if frames < multi.n_images:
        typer.echo(f"note: {frames} date(s) for {multi.label}, which takes {multi.n_images}: "
                   "dates were repeated to fill its input")
