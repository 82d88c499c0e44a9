"""``zoomsr evaluate``: score a folder of predictions against a folder of targets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

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
    NODATA,
    OVERWRITE,
    PERCEPTUAL_MIN_VALID,
    PROGRESS,
    SEED,
    check_device_options,
    check_metric_options,
    metric_options,
    note_unscored,
    results_on_interrupt,
    valid_percent,
)

if TYPE_CHECKING:
    from zoomsr.evaluation.run import EvaluationResult

_MAX_LISTED = 20


def _warn_not_scored(what: str, lines: list[str], in_summary: bool) -> None:
    """``warning: not scored: WHAT`` on stderr, then the first :data:`_MAX_LISTED` lines."""
    typer.echo(f"warning: not scored: {what}", err=True)
    for line in lines[:_MAX_LISTED]:
        typer.echo(f"  {line}", err=True)
    if len(lines) > _MAX_LISTED:
        more = " (all listed in summary.json)" if in_summary else ""
        typer.echo(f"  ... and {len(lines) - _MAX_LISTED} more{more}", err=True)


def _note_nodata(result: EvaluationResult, min_valid: float) -> None:
    """One ``note:`` line for the pairs scored on part of their pixels, and one per metric
    that left pairs unscored (too few valid pixels)."""
    from zoomsr.evaluation.run import CSV_NAME, VALID_FRACTION

    partial = [r[VALID_FRACTION] for r in result.rows if r[VALID_FRACTION] < 1.0]
    if partial and result.nodata == "exclude":
        typer.echo(f"note: {len(partial)} pair(s) with nodata pixels (down to "
                   f"{valid_percent(min(partial))} % valid) scored on the pixels valid in both "
                   f"files ({VALID_FRACTION} in {CSV_NAME})", err=True)
    note_unscored(result.summary, min_valid, "pair(s)")


def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Folder of predicted images; or the GeoTIFF "
                              "mosaic `zoomsr infer` wrote for an S2-NAIP dataset (--target), "
                              "scored tile by tile."),
    target: Path = typer.Option(
        ..., "--target",
        help="Folder of targets: any layout, an S2-NAIP dataset root (its "
        "naip/{uuid}/{tile}/rgb.png are the targets) or its naip/ folder.",
    ),
    metrics: str = typer.Option("psnr,ssim,cpsnr", "--metrics", help=METRICS_HELP),
    out: Path | None = typer.Option(
        None, "--out",
        help="Output folder for per_image.csv and summary.json (default: print only).",
    ),
    split: str | None = typer.Option(
        None, "--split",
        help="Score only the tiles of this split (train, val, test or buffer) listed in the "
        "dataset's zoomsr_splits.json (--target: the dataset root or its naip/ folder), or "
        "in --splits.",
    ),
    splits: Path | None = typer.Option(
        None, "--splits",
        help="The splits file for --split instead of the dataset's: e.g. RUN/splits.json, the "
        "train/val split a `zoomsr train` run used.",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Fail when a file has no partner (or a pair no pixel valid in "
        "both files) instead of listing it."
    ),
    nodata: str = NODATA,
    perceptual_min_valid: float = PERCEPTUAL_MIN_VALID,
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
    """Score predicted images against targets (paired by relative path or S2-NAIP tile id)."""
    from rich.console import Console

    from zoomsr.errors import ConfigError, DataError
    from zoomsr.evaluation.images import NODATA_MODES
    from zoomsr.evaluation.pairing import check_split, pair_images
    from zoomsr.evaluation.run import (
        CSV_NAME,
        SUMMARY_NAME,
        evaluate_pairing,
        summary_table,
        write_results,
    )
    from zoomsr.io.atomic import refuse_existing
    from zoomsr.io.folders import require_writable_folder
    from zoomsr.metrics.factory import create_metrics, parse_metric_names
    from zoomsr.progress import progress_callback
    from zoomsr.validate import check_choice

    names = parse_metric_names(metrics)
    check_choice("--nodata", nodata, NODATA_MODES)
    check_device_options(device, dtype)
    check_split(split)
    if splits is not None and split is None:
        raise ConfigError("--splits gives the file of --split's tiles; add --split val (or "
                          "train, test, buffer)")
    options = metric_options(
        border, cpsnr_mode, lpips_net, lpips_weights, lpips_linear_weights, clip_model,
        clip_pretrained, clip_mode, clip_cache, allow_download, device, dtype, batch_size,
        perceptual_min_valid,
    )
    check_metric_options(names, options)  # option values, weight files, the CLIP cache
    written: list[Path] = []
    if out is not None:
        require_writable_folder(out, f"--out {out}", create=False)
        refuse_existing([out / CSV_NAME, out / SUMMARY_NAME], overwrite)
        written = results_on_interrupt(out)
    pairing = pair_images(pred, target, split, splits)
    problems = pairing.problems()
    if problems and strict:
        raise DataError(f"{len(problems)} file(s) unpaired or ambiguous "
                        f"({pairing.problem_counts()}), e.g. {problems[0]}")
    # the weight files' contents are checked as the metrics are built: before the pairing's
    # notes, so a bad file is the one line printed
    built = create_metrics(names, options)
    if pairing.outside_split:
        typer.echo(f"note: {len(pairing.outside_split)} prediction(s) of tiles outside the "
                   f"{split!r} split not scored", err=True)
    if problems:
        _warn_not_scored(pairing.problem_counts(), problems, out is not None)
    missing_before = set(pairing.missing_pred)
    with progress_callback("evaluating", progress) as update:
        result = evaluate_pairing(
            pairing, built, batch_size=batch_size, progress=update, seed=seed,
            options={"pred": str(pred), "target": str(target), "split": split,
                     **({"splits": str(splits)} if splits is not None else {}),
                     "metrics": names,
                     "border": border, "cpsnr_mode": cpsnr_mode, "lpips_net": lpips_net,
                     "clip_model": clip_model, "clip_pretrained": clip_pretrained,
                     "clip_mode": clip_mode, "seed": seed, "nodata": nodata,
                     "perceptual_min_valid": perceptual_min_valid},
            nodata=nodata,
        )
    # a mosaic's tiles without a valid pixel are found as they are read: missing too
    no_data = [p for p in pairing.missing_pred if p not in missing_before]
    if no_data:
        if strict:
            raise DataError(f"{len(no_data)} tile(s) where {pred} has no valid pixel, e.g. "
                            f"target {no_data[0]}")
        _warn_not_scored(f"{len(no_data)} tile(s) where {pred} has no valid pixel (missing "
                         "predictions)", [f"no prediction for target {p}" for p in no_data],
                         out is not None)
    if result.no_overlap:
        if strict:
            raise DataError(f"{len(result.no_overlap)} pair(s) without a pixel valid in both "
                            f"files, e.g. {result.no_overlap[0][1]}")
        _warn_not_scored(f"{len(result.no_overlap)} pair(s) without a pixel valid in both files",
                         [why for _, why in result.no_overlap], out is not None)
    _note_nodata(result, perceptual_min_valid)
    Console().print(summary_table(result))
    if out is not None:
        paths = write_results(result, out, overwrite=overwrite)
        written.append(out)
        typer.echo(f"wrote {paths['csv']} and {paths['summary']}")
