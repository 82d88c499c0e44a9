"""``zoomsr demo``: the main job on a fresh machine, offline."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Argument(..., help="Folder for the demo outputs."),
    size: int = typer.Option(64, "--size", help="Side of the Sentinel-2 crop, 10 m pixels."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Super-resolve real Sentinel-2 pixels (spyndex's 10 m sample) with Real-ESRGAN x4plus.

    Writes OUT/sentinel2_realesrgan.png: LR (nearest x4) | super-resolved | bicubic x4.
    """
    from zoomsr.cli.infer import load_model
    from zoomsr.inference.demo import run_demo

    model = load_model(None, None, [], False, device, "auto")
    result = run_demo(out, model, size=size, overwrite=overwrite)
    typer.echo(f"wrote {result.png}: LR | {model.label} | bicubic, {result.lr_size} px of real "
               f"10 m Sentinel-2 (spyndex sample) -> x{model.scale} in {result.seconds:.1f} s")
