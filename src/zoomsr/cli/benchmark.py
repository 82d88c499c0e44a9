"""``zoomsr benchmark``: every model of a YAML file scored on every dataset of it, with every
metric; resumable; a table, paired comparisons and a plot."""

from __future__ import annotations

from pathlib import Path

import typer

from zoomsr.cli.scoring_options import (
    BATCH_SIZE,
    DATASET_WORKERS,
    DEVICE,
    DTYPE,
    PROGRESS,
    check_device_options,
)


def benchmark_command(
    spec: Path = typer.Argument(
        ..., help="The benchmark file (YAML): models (weights or baseline: bicubic), datasets "
        "(dataset, data, split, options), metrics, metric_options, compare_to; or `sample`, "
        "the one zoomsr ships (`zoomsr configs show benchmarks/sample`). See docs/datasets.md.",
        metavar="SPEC"),
    out: Path = typer.Option(..., "--out", "-o", help="The benchmark's folder: cells/MODEL/"
                             "DATASET/ per cell, then the report files."),
    data: list[str] = typer.Option(
        [], "--data", help="NAME=FOLDER: dataset NAME's data folder instead of the file's (the "
        "same file on another machine; repeatable).", metavar="NAME=FOLDER"),
    models: str | None = typer.Option(
        None, "--models", help="Score only these models' cells (comma-separated names; e.g. "
        "one model per GPU into one --out); the others are reported as they are there."),
    datasets: str | None = typer.Option(
        None, "--datasets", help="Score only these datasets' cells (comma-separated names)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Score every cell again (default: cells an earlier run "
        "scored with the same settings are kept; other settings are refused)."),
    device: str = DEVICE,
    dtype: str | None = DTYPE,
    batch_size: int = BATCH_SIZE,
    workers: int = DATASET_WORKERS,
    progress: bool = PROGRESS,
) -> None:
    """Score models x datasets x metrics; write a table, paired comparisons and a plot."""
    from rich.console import Console

    from zoomsr.cli.interrupt import on_interrupt
    from zoomsr.errors import ConfigError, ZoomsrError
    from zoomsr.evaluation.benchmark import CELLS, Cell, run_benchmark, select_cells
    from zoomsr.evaluation.benchmark_report import (
        cell_tables,
        check_report_folder,
        comparison_table,
        item_notes,
        write_report,
    )
    from zoomsr.evaluation.benchmark_spec import load_spec, with_data
    from zoomsr.io.folders import require_writable_folder
    from zoomsr.progress import progress_callback

    check_device_options(device, dtype)
    parsed = load_spec(spec)
    folders = {}
    for item in data:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise ConfigError(f"--data {item!r}: expected NAME=FOLDER")
        folders[name.strip()] = Path(folder.strip()).expanduser()
    parsed = with_data(parsed, folders)
    require_writable_folder(out, f"--out {out}", create=True)
    check_report_folder(out, overwrite)
    on_interrupt(lambda: f"interrupted: the finished cells are in {out / CELLS}; run the same "
                 "command again to go on")
    def names(text: str | None) -> list[str] | None:
        return None if text is None else [n.strip() for n in text.split(",") if n.strip()]

    chosen_models, chosen_datasets = names(models), names(datasets)
    cells = select_cells(parsed, chosen_models, chosen_datasets)
    done = [0]

    def said(cell: Cell) -> None:
        done[0] += 1
        where = f"[{done[0]}/{len(cells)}] {cell.model} on {cell.dataset}"
        if cell.status == "failed":
            typer.echo(f"error: {where}: {cell.error}", err=True)
        elif cell.status == "kept":
            typer.echo(f"{where}: kept (scored by an earlier run)", err=True)
        else:
            typer.echo(f"{where}: {len(cell.rows)} items in {cell.seconds:.1f} s", err=True)

    result = run_benchmark(parsed, out, device=device, dtype=dtype, batch_size=batch_size,
                           workers=workers, overwrite=overwrite,
                           progress=lambda what: progress_callback(what, progress),
                           on_cell=said, models=chosen_models, datasets=chosen_datasets)
    paths = write_report(result, out)
    console = Console()
    for table in cell_tables(result):
        console.print(table)
    if len(parsed.models) > 1:
        console.print(comparison_table(result))
    for note in item_notes(result):
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")
    if result.failed:
        raise ZoomsrError(f"{len(result.failed)} of {len(cells)} cells failed (listed above "
                          f"and in {paths['summary']}); the others are in the report")
