"""``zoomsr metrics``: agreement with human judgment, simulated judgments, and an output's
consistency with its LR mosaic (the options shared with the other scoring commands:
:mod:`zoomsr.cli.scoring_options`)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import typer

from zoomsr.cli.interrupt import sigterm_stops
from zoomsr.cli.scoring_options import (
    ALLOW_DOWNLOAD,
    BATCH_SIZE,
    BORDER,
    CLIP_CACHE,
    CLIP_MODE,
    CLIP_MODEL,
    CLIP_PRETRAINED,
    CPSNR_MODE,
    DEVICE,
    DTYPE,
    LPIPS_LINEAR,
    LPIPS_NET,
    LPIPS_WEIGHTS,
    METRICS_HELP,
    OVERWRITE,
    PROGRESS,
    SEED,
    check_device_options,
    check_metric_options,
    metric_options,
    results_on_interrupt,
)

app = typer.Typer(help="Image-quality metrics and their agreement with human judgment.",
                  no_args_is_help=True)

@app.command("agreement")
@sigterm_stops
def agreement(
    judgments: Path = typer.Argument(..., help="CSV or JSONL: target, a, b, choice[, annotator]."),
    metrics: str = typer.Option("psnr,ssim,cpsnr", "--metrics", help=METRICS_HELP),
    out: Path = typer.Option(..., "--out", help="Output folder (table, JSON, bar chart)."),
    bootstrap: int = typer.Option(2000, "--bootstrap", help="Bootstrap resamples for the CI."),
    border: int = BORDER,
    cpsnr_mode: str = CPSNR_MODE,
    lpips_net: str = LPIPS_NET,
    lpips_weights: Path | None = LPIPS_WEIGHTS,
    lpips_linear_weights: Path | None = LPIPS_LINEAR,
    clip_model: str = CLIP_MODEL,
    clip_pretrained: str = CLIP_PRETRAINED,
    clip_mode: str = CLIP_MODE,
    clip_cache: Path | None = CLIP_CACHE,
    allow_download: bool = ALLOW_DOWNLOAD,
    device: str = DEVICE,
    dtype: str | None = DTYPE,
    batch_size: int = BATCH_SIZE,
    seed: int = SEED,
    overwrite: bool = OVERWRITE,
    progress: bool = PROGRESS,
) -> None:
    """How often each metric prefers the candidate humans preferred (with 95 % intervals)."""
    from rich.console import Console

    from zoomsr.errors import InputError
    from zoomsr.io.atomic import refuse_existing
    from zoomsr.io.folders import require_writable_folder
    from zoomsr.metrics.agreement import (
        AGREEMENT_FILES,
        agreement_table,
        analyze_agreement,
        load_judgments,
        write_agreement,
    )
    from zoomsr.metrics.factory import create_metrics, parse_metric_names
    from zoomsr.progress import progress_callback

    if bootstrap < 1:
        raise InputError(f"--bootstrap must be >= 1, got {bootstrap}")
    names = parse_metric_names(metrics)
    check_device_options(device, dtype)
    options = metric_options(
        border, cpsnr_mode, lpips_net, lpips_weights, lpips_linear_weights, clip_model,
        clip_pretrained, clip_mode, clip_cache, allow_download, device, dtype, batch_size,
    )
    check_metric_options(names, options)
    require_writable_folder(out, f"--out {out}", create=False)  # before any scoring
    refuse_existing([out / name for name in AGREEMENT_FILES.values()], overwrite)
    written = results_on_interrupt(out)
    items = load_judgments(judgments)
    built = create_metrics(names, options)
    with progress_callback("scoring", progress) as update:
        result = analyze_agreement(
            items, built, batch_size=batch_size, seed=seed, n_boot=bootstrap, progress=update
        )
    from zoomsr import __version__

    result.options = {  # (agreement.json recorded none of them)
        "judgments": str(Path(judgments).resolve()), "metrics": names, "border": border,
        "cpsnr_mode": cpsnr_mode, "lpips_net": lpips_net, "clip_model": clip_model,
        "clip_pretrained": clip_pretrained, "clip_mode": clip_mode, "bootstrap": bootstrap,
        "seed": seed, "device": device, "zoomsr_version": __version__}
    paths = write_agreement(result, out, overwrite=overwrite)
    written.append(out)
    Console().print(agreement_table(result))
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


@app.command("sample-judgments")
def sample_judgments(
    out: Path = typer.Argument(..., help="Folder to write judgments.csv, targets/ and "
                               "candidates/ into."),
    items: int = typer.Option(12, "--items", help="Targets (64 px crops; at most 16)."),
    annotators: int = typer.Option(3, "--annotators", help="Simulated judgments per pair."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the candidates and votes."),
    overwrite: bool = OVERWRITE,
) -> None:
    """A judgment file to try `zoomsr metrics agreement` offline: real Sentinel-2 crops, two
    blurred and noised candidates each, SIMULATED annotators (not human data)."""
    from zoomsr.metrics.sample_judgments import write_sample_judgments

    path = write_sample_judgments(out, items=items, annotators=annotators, seed=seed,
                                  overwrite=overwrite)
    typer.echo(str(path))
    typer.echo(f"simulated judgments, not human ones: try `zoomsr metrics agreement {path} "
               f"--metrics psnr,ssim --out DIR`", err=True)


@app.command("consistency")
@sigterm_stops
def consistency(
    sr: Path = typer.Argument(..., help="A `zoomsr infer` output GeoTIFF."),
    lr: Path | None = typer.Option(
        None, "--lr", help="Its LR mosaic (default: SR.lr.tif beside it, as `zoomsr infer "
        "--save-lr` writes it)."),
    map_path: Path | None = typer.Option(
        None, "--map", help="Also write the per-LR-pixel mean absolute difference (float32 "
        "GeoTIFF on the LR grid, 8-bit levels, NaN where not counted)."),
    json_path: Path | None = typer.Option(
        None, "--json", help="Also write the figures as JSON."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Also write a PNG of the disagreement map (a quick look)."),
    overwrite: bool = OVERWRITE,
    progress: bool = PROGRESS,
) -> None:
    """How well an output, averaged back to the input's pixels, agrees with the LR mosaic it
    was made from (no ground truth needed): bias, MAE, RMSE and PSNR per band, in 8-bit
    levels. A colour shift or content the inputs do not hold shows as disagreement; a blurry
    output agrees too, so read it beside the reference metrics."""
    from rich.console import Console
    from rich.table import Table

    from zoomsr import __version__
    from zoomsr.errors import InputError
    from zoomsr.io.atomic import atomic_write_text, refuse_existing
    from zoomsr.io.folders import require_writable_folder
    from zoomsr.metrics.consistency import scene_consistency, write_map_png
    from zoomsr.progress import progress_callback

    given = {"--map": map_path, "--json": json_path, "--plot": plot}
    outputs = {option: path for option, path in given.items() if path is not None}
    inputs = [sr, lr or sr.with_name(sr.stem + ".lr.tif")]
    for option, path in outputs.items():  # before any reading: a bad path is one line
        if any(_same_file(path, other) for other in inputs):
            raise InputError(f"{option} {path}: that is an input of the comparison")
        if sum(_same_file(path, other) for other in outputs.values()) > 1:
            raise InputError(f"{option} {path}: given for another output too")
        if path.is_dir():  # (--overwrite would not replace a folder: it failed there)
            raise InputError(f"{option} {path}: is a folder; give a file name")
        require_writable_folder(path.parent, f"{option} {path}", create=False)
    if plot is not None and plot.suffix.lower() != ".png":
        raise InputError(f"--plot {plot}: the plot is a PNG; name it .png")
    refuse_existing(list(outputs.values()), overwrite)
    with contextlib.ExitStack() as stack:
        # the map is made in a temporary folder beside it and put in place only once the
        # plot drawn from it is written: a failed plot leaves neither
        import tempfile

        drawn = None
        if map_path is not None or plot is not None:
            folder = (map_path or plot or sr).parent
            drawn = Path(stack.enter_context(tempfile.TemporaryDirectory(
                dir=folder, prefix=".zoomsr-consistency-"))) / "map.tif"
        with progress_callback("comparing", progress) as update:
            result = scene_consistency(sr, lr, map_path=drawn, progress=update)
        if plot is not None and drawn is not None:
            write_map_png(drawn, plot, result, label=sr.name)
        if map_path is not None and drawn is not None:
            os.replace(drawn, map_path)
    table = Table(title=f"{sr.name} against its LR mosaic: {result.pixels} LR pixels, "
                        f"x{result.scale} (8-bit levels)")
    for column in ("band", "bias", "MAE", "RMSE", "PSNR (dB)"):
        table.add_column(column, justify="left" if column == "band" else "right")
    for b in result.bands:
        table.add_row(b.band, f"{b.bias:+.2f}", f"{b.mae:.2f}", f"{b.rmse:.2f}",
                      f"{b.psnr:.2f}")
    Console().print(table)
    if json_path is not None:
        import json

        doc = {**result.to_dict(), "sr": str(sr.resolve()),
               "lr": str((lr or sr.with_name(sr.stem + ".lr.tif")).resolve()),
               "units": "8-bit levels", "zoomsr_version": __version__}
        from zoomsr.evaluation.run import json_safe

        # (an infinite PSNR, identical pixels, as null)
        atomic_write_text(json_path, json.dumps(json_safe(doc), indent=1) + "\n")
    for path in outputs.values():
        typer.echo(f"wrote {path}")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (as typed, or resolved: ``./x`` and ``x``)."""
    return a == b or a.resolve() == b.resolve()
