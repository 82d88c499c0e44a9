"""``zoomsr demo``: the main job on a fresh machine, offline."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Argument(..., help="Folder for the demo outputs."),
    size: int = typer.Option(64, "--size", help="Side of the real Sentinel-2 crop, 10 m pixels."),
    series_size: int = typer.Option(
        256, "--series-size", help="Side of the generated georeferenced series, 10 m pixels."),
    frames: int = typer.Option(8, "--frames", help="Dates in the generated series."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Run both demos, offline.

    (a) Real Sentinel-2 pixels (spyndex's 10 m sample) through Real-ESRGAN x4plus:
    OUT/sentinel2_realesrgan.png, LR (nearest x4) | super-resolved | bicubic x4.

    (b) A generated, georeferenced Sentinel-2-like time series (OUT/lr_series/, 8 TCI GeoTIFFs,
    UTM 15N, 10 m) through the packaged multi-image default zoomsr-multi8 (trained on synthetic
    data only): OUT/sentinel2_series_x4.tif (2.5 m) and its .preview.png.
    """
    from zoomsr.cli.infer import load_model
    from zoomsr.inference.demo import demo_outputs, run_demo, run_series_demo
    from zoomsr.io.atomic import refuse_existing
    from zoomsr.weights.registry import MULTI_DEFAULT_WEIGHTS

    refuse_existing(demo_outputs(out), overwrite)
    model = load_model(None, None, [], False, device, "auto")
    result = run_demo(out, model, size=size, overwrite=overwrite)
    typer.echo(f"(a) wrote {result.png}: LR | {model.label} | bicubic, {result.lr_size} px of "
               f"real 10 m Sentinel-2 (spyndex sample) -> x{model.scale} in "
               f"{result.seconds:.1f} s")
    multi = load_model(MULTI_DEFAULT_WEIGHTS, None, [], False, device, "auto")
    series = run_series_demo(out, multi, size=series_size, n_frames=frames,
                             overwrite=overwrite)
    typer.echo(f"(b) wrote {len(series.lr_files)} synthetic georeferenced Sentinel-2 TCI frames "
               f"({series.lr_size} px, 10 m, EPSG:32615) to {series.lr_files[0].parent}")
    typer.echo(f"    wrote {series.tif} (x{multi.scale}, 2.5 m, {multi.label}: trained on "
               f"synthetic data only) in {series.seconds:.1f} s"
               + (f", preview {series.preview}" if series.preview else ""))
