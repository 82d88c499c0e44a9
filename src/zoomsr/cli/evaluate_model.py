"""``zoomsr evaluate-model``: score a model's outputs on a dataset (S2-NAIP, PROBA-V,
WorldStrat, OLI2MSI) against its HR images, with no prediction files in between."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from zoomsr import __version__
from zoomsr.cli.scoring_options import (
    ALLOW_DOWNLOAD,
    BATCH_SIZE,
    BORDER,
    CLIP_CACHE,
    CLIP_MODE,
    CLIP_MODEL,
    CLIP_PRETRAINED,
    CPSNR_MODE,
    DATASET_WORKERS,
    DEVICE,
    DTYPE,
    LPIPS_LINEAR,
    LPIPS_NET,
    LPIPS_WEIGHTS,
    METRICS_HELP,
    OVERWRITE,
    PERCEPTUAL_MIN_VALID,
    PROGRESS,
    check_device_options,
    check_metric_options,
    metric_options,
    note_unscored,
    results_on_interrupt,
    valid_percent,
)


def parse_options(items: list[str], what: str = "--option") -> dict[str, Any]:
    """``key=value`` items as a dict, each value read as YAML (``9`` an int, ``0.3`` a float,
    ``true`` a bool, ``NIR,RED`` a string); one-line :class:`ConfigError` for another form or
    a key given twice."""
    import yaml

    from zoomsr.errors import ConfigError

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{what} {item!r}: expected key=value")
        if key in options:
            raise ConfigError(f"{what} {key}: given twice")
        try:
            options[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            options[key] = value
    return options


#: ``--examples``' figure, in ``--out``.
EXAMPLES_PNG = "examples.png"


def evaluate_model_command(
    weights: str = typer.Argument(
        ..., help="A checkpoint (a `zoomsr train` run's generator.pth, or another format with "
        "--model) or a name `zoomsr weights list` shows.", metavar="WEIGHTS"),
    dataset: str = typer.Option(..., "--dataset",
                                help="s2naip, probav, worldstrat or oli2msi."),
    data: Path = typer.Option(..., "--data", help="The dataset's folder (as unpacked)."),
    split: str | None = typer.Option(
        None, "--split", help="The dataset's split (PROBA-V: train, its test has no HR; "
        "WorldStrat: train, val, test; OLI2MSI: train, test; S2-NAIP: a split of its "
        "zoomsr_splits.json, or of --splits). Default: the loader's own (S2-NAIP: every "
        "pair)."),
    splits: Path | None = typer.Option(
        None, "--splits", help="The splits file --split is taken from: RUN/splits.json, the "
        "train/val items a `zoomsr train` run used (any dataset; S2-NAIP: instead of its "
        "zoomsr_splits.json)."),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="key=value passed to the dataset's loader (e.g. -o "
        "bands=NIR for PROBA-V, -o hr_kind=rgbn for WorldStrat; repeatable).",
        metavar="KEY=VALUE"),
    n_images: int | None = typer.Option(
        None, "--n-images", min=1, help="Input frames per item. Default: what the weights "
        "(or the registry) record, else a frames model's revisits, else a stacked model's "
        "input channels / the dataset's channels."),
    model: str | None = typer.Option(
        None, "--model", help="The architecture of weights that do not name theirs "
        "(`zoomsr models list`)."),
    config: list[str] = typer.Option(
        [], "--config", "-c", help="The model's key=value config for --model.",
        metavar="KEY=VALUE"),
    sample_steps: int | None = typer.Option(
        None, "--sample-steps", help="SR3 (diffusion) only: DDIM steps per item (default 50; "
        "each item's starting noise drawn from its id and --seed)."),
    masks: bool = typer.Option(
        True, "--masks/--no-masks", help="Score only the pixels the dataset's HR quality mask "
        "marks valid (hr_valid: PROBA-V's SM, WorldStrat's...)."),
    metrics: str = typer.Option("psnr,ssim,cpsnr", "--metrics", help=METRICS_HELP),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder for per_image.csv and summary.json (default: print "
        "only)."),
    examples: int = typer.Option(
        0, "--examples", min=0, help="With --out: also examples.png, this many items' LR, SR "
        "and HR side by side (chosen by a hash of their id and --seed)."),
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
    workers: int = DATASET_WORKERS,
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the bootstrap intervals, of "
                             "the --examples items chosen and of SR3's starting noise."),
    overwrite: bool = OVERWRITE,
    progress: bool = PROGRESS,
) -> None:
    """Score a model on a dataset: its outputs against the dataset's HR images (and masks)."""
    from rich.console import Console

    from zoomsr.data.datasets import check_dataset_options, dataset_class
    from zoomsr.errors import ConfigError
    from zoomsr.evaluation.model_eval import evaluate_model, load_scoring_model
    from zoomsr.evaluation.run import CSV_NAME, SUMMARY_NAME, summary_table, write_results
    from zoomsr.evaluation.run_splits import training_overlap
    from zoomsr.evaluation.scoring import check_loader_options, dataset_metrics, open_for_model
    from zoomsr.io.atomic import refuse_existing
    from zoomsr.io.folders import require_writable_folder
    from zoomsr.metrics.factory import parse_metric_names
    from zoomsr.models import parse_config
    from zoomsr.progress import progress_callback

    names = parse_metric_names(metrics)
    check_device_options(device, dtype)
    dataset_class(dataset)  # a known name, before anything else
    dataset = dataset.lower()
    options = parse_options(option)
    check_dataset_options(dataset, options, "--option")
    check_loader_options(options, "--option", {"split": "--split", "n_images": "--n-images"})
    if splits is not None and split is None:
        raise ConfigError("--splits gives the items of each split (e.g. a zoomsr train run's "
                          "RUN/splits.json); add --split val (or train)")
    if config and model is None:
        raise ConfigError("--config sets the architecture --model builds; add --model NAME")
    metric_opts = metric_options(
        border, cpsnr_mode, lpips_net, lpips_weights, lpips_linear_weights, clip_model,
        clip_pretrained, clip_mode, clip_cache, allow_download, device, dtype, batch_size,
        perceptual_min_valid,
    )
    check_metric_options(names, metric_opts)
    written: list[Path] = []
    if out is not None:
        require_writable_folder(out, f"--out {out}", create=False)
        refuse_existing([out / CSV_NAME, out / SUMMARY_NAME]
                        + ([out / EXAMPLES_PNG] if examples else []), overwrite)
        written = results_on_interrupt(out)
    scoring = load_scoring_model(weights, model,
                                 parse_config(model, config) if model is not None else None,
                                 sample_steps=sample_steps, sample_seed=seed)
    if scoring.dataset is not None and scoring.dataset != dataset:
        # possible (a transfer study), rarely meant: its frames and radiometry are another's
        typer.echo(f"warning: {scoring.label} was trained on the {scoring.dataset} dataset; "
                   f"scoring it on {dataset}", err=True)
    ds, options, frames = open_for_model(scoring, dataset, data, split, splits, options,
                                         n_images)
    built = dataset_metrics(names, metric_opts)
    with progress_callback("scoring", progress) as update:
        result = evaluate_model(scoring.module, ds, built, batch_size=batch_size, device=device,
                                num_workers=workers, progress=update, seed=seed, nodata=masks,
                                label=scoring.label,
                                examples=examples if out is not None else 0)
    result.options.update({
        **_weights_record(str(weights), scoring.path), "zoomsr_version": __version__,
        "architecture": scoring.name, "layout": scoring.layout,
        "dataset": dataset, "data": os.path.abspath(data),
        # the split scored: the loader's default when --split is left out
        "split": getattr(ds, "split", split),
        **({"splits": str(splits)} if splits is not None else {}),
        "options": options, "n_images": frames,
        **({"sample_steps": scoring.module.steps} if scoring.name == "sr3" else {}),
        "metrics": names, "border": border, "cpsnr_mode": cpsnr_mode,
        "lpips_net": lpips_net, "clip_model": clip_model, "clip_pretrained": clip_pretrained,
        "clip_mode": clip_mode, "perceptual_min_valid": perceptual_min_valid,
        "masks": masks, "seed": seed})
    overlap = training_overlap(scoring.path, dataset, (r["key"] for r in result.rows))
    if overlap is not None:
        result.options["training_items_scored"] = overlap.trained
    if overlap is not None and overlap.trained:
        typer.echo(f"warning: {overlap.trained} of the {overlap.scored} item(s) scored are "
                   f"ones the run that made {scoring.label} trained on ('train' in "
                   f"{overlap.splits}): their scores flatter it; score the run's held-out "
                   f"items with --split val --splits {overlap.splits}", err=True)
    partial = [r["valid_fraction"] for r in result.rows if r["valid_fraction"] < 1.0]
    if partial:
        typer.echo(f"note: {len(partial)} item(s) scored on the pixels their HR mask marks "
                   f"valid (down to {valid_percent(min(partial))} %; valid_fraction in "
                   f"{CSV_NAME})",
                   err=True)
    note_unscored(result.summary, perceptual_min_valid, "item(s)",
                  f" (an empty cell in {CSV_NAME})")
    Console().print(summary_table(result))
    if out is not None:
        paths = write_results(result, out, overwrite=overwrite)
        written.append(out)
        typer.echo(f"wrote {paths['csv']} and {paths['summary']}")
        if result.examples:
            from zoomsr.evaluation.examples import write_examples_png

            png = write_examples_png(result.examples, scoring.label, out / EXAMPLES_PNG)
            typer.echo(f"wrote {png}")


def _weights_record(weights: str, loaded: Path | None) -> dict[str, str]:
    """``weights`` as the summary records it: a file's absolute path (it was as typed,
    relative to wherever the command ran) or a registry name, and the SHA-256 of ``loaded``,
    the file scored, as `zoomsr infer` tags its outputs."""
    from zoomsr.io.hashing import sha256_file

    shown = os.path.abspath(weights) if Path(weights).is_file() else weights
    return {"weights": shown,
            **({"weights_sha256": sha256_file(loaded)} if loaded is not None else {})}
