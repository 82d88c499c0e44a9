"""``zoomsr data``: make, check and describe S2-NAIP datasets."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from zoomsr.cli import data_build
from zoomsr.cli.interrupt import on_interrupt, sigterm_stops
from zoomsr.errors import InputError
from zoomsr.validate import check_int

app = typer.Typer(help="Make, check and describe S2-NAIP datasets; check the other benchmark "
                  "datasets (data check --dataset).", no_args_is_help=True)
app.command("build")(data_build.build)
app.command("search")(data_build.search)


@app.command("sample")
@sigterm_stops
def sample(
    out: Path = typer.Argument(..., help="Output folder (created; must be empty). Built in "
                               "a hidden folder and moved in when complete."),
    pairs: int = typer.Option(256, "--pairs", "-n", help="Number of pairs to generate."),
    frames: int = typer.Option(8, "--frames", help="Sentinel-2 time steps per pair."),
    bands: str = typer.Option("tci", "--bands", help="Comma-separated bands, tci first."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed (same seed, same data)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the dataset in a "
                                   "non-empty folder (other files there stay)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Generate a small SYNTHETIC dataset in the published S2-NAIP layout (demos, tests)."""
    from zoomsr.data.sample import write_sample

    on_interrupt(lambda: f"interrupted: nothing written to {out} (a sample is moved in whole "
                 "or not at all); run the same command again")
    root = write_sample(out, pairs=pairs, n_frames=frames, bands=bands, seed=seed,
                        overwrite=overwrite, progress=progress)
    typer.echo(f"wrote {_plural(pairs, 'synthetic pair')} ({_plural(frames, 'time step')}, "
               f"bands {bands}) to {root}")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@app.command("check")
def check(
    root: Path = typer.Argument(..., help="Dataset folder (S2-NAIP: holds naip/ and "
                                "sentinel2/; --dataset NAME: as unpacked)."),
    bands: str = typer.Option("", "--bands", help="Bands every tile must have besides tci, "
                              "in any order, e.g. b08,b11."),
    scale: int | None = typer.Option(
        None, "--scale", help="NAIP chunk = 32*scale px (default: the scale recorded in "
        "zoomsr_dataset.json, else 4; another value is used with a warning)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on warnings too."),
    dataset: str = typer.Option(
        "s2naip", "--dataset", help="s2naip, or a benchmark dataset as unpacked (probav, "
        "worldstrat, oli2msi): then every item of every split (or --split) is read."),
    split: list[str] = typer.Option(
        [], "--split", help="With a benchmark --dataset: only this split (repeatable)."),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="With a benchmark --dataset: key=value for its loader "
        "(e.g. -o bands=NIR).", metavar="KEY=VALUE"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """List every problem in a dataset; exit 1 if there is any error (or warning with --strict)."""
    from zoomsr.data.bands import validate_bands
    from zoomsr.data.check import check_dataset
    from zoomsr.data.datasets import dataset_class

    dataset_class(dataset)  # a known name
    if dataset.lower() != "s2naip":
        if bands or scale is not None:
            raise InputError("--bands and --scale check S2-NAIP datasets; give a benchmark "
                             "dataset's options with -o key=value")
        _check_benchmark(root, dataset.lower(), split, option, progress)
        return
    if split or option:
        raise InputError("--split and --option apply to a benchmark --dataset (probav, "
                         "worldstrat, oli2msi)")
    _check_scale(scale)
    # every tile needs tci anyway; the order that matters for model inputs means nothing here
    names = [b.strip().lower() for b in bands.split(",") if b.strip()]
    wanted = validate_bands(["tci", *(b for b in names if b != "tci")]) if names else None
    report = check_dataset(root, bands=wanted, scale=scale, progress=progress)
    for problem in report.problems:
        typer.echo(str(problem))
    n_err, n_warn = len(report.errors), len(report.warnings)
    typer.echo(f"{report.root}: {report.n_pairs} pairs, {report.n_tiles} tiles, "
               f"{n_err} error(s), {n_warn} warning(s)")
    if n_err or (strict and n_warn):
        raise typer.Exit(1)


def _check_benchmark(root: Path, dataset: str, splits: list[str], option: list[str],
                     progress: bool) -> None:
    """``zoomsr data check --dataset NAME``: every item of each split read, each problem one
    line; exit 1 if any."""
    from zoomsr.cli.evaluate_model import parse_options
    from zoomsr.data.datasets import check_items
    from zoomsr.progress import progress_callback

    options = parse_options(option)
    with progress_callback(f"checking {dataset}", progress) as update:
        results = check_items(dataset, root, splits or None, progress=update, **options)
    n_problems = 0
    for found in results:
        for problem in found.problems:
            typer.echo(f"error: {problem}")
        n_problems += len(found.problems)
    counts = ", ".join(f"{r.split} {r.items} item(s)" for r in results)
    typer.echo(f"{root}: {dataset}: {counts}, {n_problems} error(s)")
    if n_problems:
        raise typer.Exit(1)


@app.command("info")
def info(
    root: Path = typer.Argument(..., help="Dataset folder (holds naip/ and sentinel2/)."),
    plot: bool = typer.Option(False, "--plot", help="Also write tile-map and montage PNGs."),
    out: Path | None = typer.Option(None, "--out", help="Folder for plots (default: ROOT)."),
    max_tiles: int | None = typer.Option(
        None, "--max-tiles", help="Read at most this many (random, seeded) series for stats."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    scale: int | None = typer.Option(
        None, "--scale", help="NAIP chunk = 32*scale px (default: the scale recorded in "
        "zoomsr_dataset.json, else 4)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Pairs, bands, time-series lengths, black/invalid time steps and geographic extent."""
    from zoomsr.data.info import dataset_info, plot_montage, plot_tile_locations
    from zoomsr.data.layout import require_dataset_root, scan_pairs
    from zoomsr.io.folders import require_writable_folder

    if max_tiles is not None and max_tiles < 1:
        raise InputError(f"--max-tiles must be >= 1, got {max_tiles}")
    _check_scale(scale)
    if out is not None and not plot:
        raise InputError("--out is the folder of the --plot figures; add --plot (or drop --out)")
    require_dataset_root(root)
    if plot:
        folder = out or Path(root)
        require_writable_folder(folder, f"{'--out' if out else 'ROOT'} {folder}")
    summary = dataset_info(root, max_tiles=max_tiles, progress=progress, scale=scale)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        if summary.unreadable:
            typer.echo(f"warning: {_unreadable_note(summary)}", err=True)
    else:
        _print_info(summary)
    if summary.unfinished:  # the figures are those of the pairs written so far
        typer.echo(f"warning: {summary.root}: {summary.unfinished}", err=True)
    if plot:
        folder = out or Path(root)
        pairs = scan_pairs(root, unfinished_ok=True)
        label = " (SYNTHETIC)" if summary.synthetic else ""
        tiles_png = plot_tile_locations(pairs, folder / "tiles.png",
                                        title=f"{summary.n_tiles} tiles{label}")
        montage_png = plot_montage(pairs, folder / "montage.png", scale=summary.scale,
                                   title=f"LR time steps | NAIP{label}")
        # on stderr with --json: stdout holds the JSON alone, for a parser
        typer.echo(f"wrote {tiles_png} and {montage_png}", err=as_json)


def _check_scale(scale: int | None) -> None:
    if scale is not None:  # before reading anything; the library's check names no option
        check_int("--scale", scale, minimum=1)


def _names(items: list[tuple[str, str, str]], key: int) -> str:
    names = ", ".join(item[key] for item in items[:3])
    return names + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def _unreadable_note(s) -> str:
    # "unusable": unreadable, or read but not of the layout's size (a valid 100 x 100 PNG
    # was called unreadable, sending the user after a file that opens fine)
    parts = []
    if s.unreadable_tci:
        parts.append(f"{len(s.unreadable_tci)} tile(s) with an unusable TCI series left out "
                     f"of the statistics ({_names(s.unreadable_tci, 0)})")
    if s.unreadable_naip:
        parts.append(f"{len(s.unreadable_naip)} unusable NAIP image(s) "
                     f"({_names(s.unreadable_naip, 1)})")
    return (f"{'; '.join(parts)} (unreadable, or not of the layout's size); run `zoomsr data "
            f"check {s.root}` for each file's problem")


def _print_info(s) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{s.root}" + ("  [SYNTHETIC]" if s.synthetic else ""), show_header=False)
    table.add_row("pairs", str(s.n_pairs) + (" (so far: unfinished build)" if s.unfinished
                                             else ""))
    table.add_row("tiles", str(s.n_tiles))
    table.add_row("NAIP images", str(s.n_images))
    table.add_row("bands (tiles)", ", ".join(f"{b} ({n})" for b, n in s.bands.items()))
    lengths = ", ".join(f"{t}: {n}" for t, n in sorted(s.series_lengths.items()))
    table.add_row("time steps: tiles", lengths or "-")
    table.add_row("invalid time steps", f"{100 * s.invalid_share:.1f} % of {s.frames}")
    table.add_row("black TCI pixels", f"{100 * s.black_pixel_share:.2f} %")
    w, so, e, n = s.extent
    table.add_row("extent (lon/lat)", f"W {w:.5f}  S {so:.5f}  E {e:.5f}  N {n:.5f}")
    if s.tiles_examined < s.n_tiles:
        table.add_row("note", f"statistics from {s.tiles_examined} random tiles")
    if s.unreadable:
        table.add_row("unusable tiles", f"{len(s.unreadable)} ({len(s.unreadable_tci)} TCI "
                      f"series, {len(s.unreadable_naip)} NAIP images)")
    Console().print(table)
    if s.unreadable:
        typer.echo(f"warning: {_unreadable_note(s)}", err=True)
