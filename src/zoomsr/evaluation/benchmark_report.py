"""A benchmark's report: ``results.csv`` (per cell and metric), ``comparisons.csv`` (paired
differences against one model), ``results.md`` (a table to paste), ``benchmark.json`` (the
cells, their state and errors), ``benchmark.png`` (one panel per metric: a bar per model
and dataset with its 95 % interval) and ``examples_DATASET.png`` (a few items' LR, every
model's SR and the HR side by side), written together, all or none.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

from zoomsr.evaluation.benchmark import EXAMPLES, BenchmarkResult, cell_dir, compare
from zoomsr.evaluation.run import json_safe

REPORT_FILES = {"results": "results.csv", "comparisons": "comparisons.csv",
                "table": "results.md", "summary": "benchmark.json", "plot": "benchmark.png"}

_STAT_KEYS = ("mean", "std", "ci95_low", "ci95_high", "n", "n_nonfinite", "n_unscored")


def result_rows(result: BenchmarkResult) -> list[dict[str, Any]]:
    """One row per scored (or kept) cell and metric: model, dataset, metric, the summary's
    statistics, higher_is_better."""
    rows = []
    for c in result.cells:
        if c.status == "failed":
            continue
        for metric, higher in result.higher_is_better.items():
            s = c.summary.get(metric, {})
            rows.append({"model": c.model, "dataset": c.dataset, "metric": metric,
                         **{k: s.get(k) for k in _STAT_KEYS}, "higher_is_better": higher})
    return rows


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def _run_datasets(result: BenchmarkResult) -> list[str]:
    """The datasets some model was run on (in the spec's order)."""
    names = {c.dataset for c in result.cells}
    return [d.name for d in result.spec.datasets if d.name in names]


def _run_models(result: BenchmarkResult) -> list[str]:
    """The models run on some dataset, scored, kept or failed (in the spec's order): a
    ``--models`` run leaves the others out (they took a legend entry, a colour and a gap in
    every group of the plot, and an empty row in the table)."""
    names = {c.model for c in result.cells}
    return [m.name for m in result.spec.models if m.name in names]


def item_notes(result: BenchmarkResult) -> list[str]:
    """One line per dataset whose cells were scored on different items (a failed item, a
    cell kept from before its splits changed): their means do not compare as they are."""
    notes = []
    for d in _run_datasets(result):
        sets = {c.model: frozenset(r["key"] for r in c.rows) for c in result.cells
                if c.dataset == d and c.status != "failed"}
        if len(set(sets.values())) > 1:
            counts = ", ".join(f"{m} {len(k)}" for m, k in sets.items())
            common = len(frozenset.intersection(*sets.values()))
            notes.append(f"{d}: the models were scored on different items ({counts}; "
                         f"{common} in common): compare them in comparisons.csv, over the "
                         "items both scored")
    return notes


def _best(result: BenchmarkResult, dataset: str, metric: str) -> float | None:
    """The best finite mean of ``metric`` among the cells of ``dataset`` that did not fail."""
    means = [c.summary.get(metric, {}).get("mean") for c in result.cells
             if c.dataset == dataset and c.status != "failed"]
    finite = [v for v in means if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if result.higher_is_better[metric] else min(finite)


def _mean_text(summary: dict[str, Any]) -> str:
    """``mean ± half the 95 % interval`` (the mean alone where it has no interval)."""
    mean, lo, hi = summary.get("mean"), summary.get("ci95_low"), summary.get("ci95_high")
    text = _number(mean)
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        text += f" ± {_number((hi - lo) / 2, 2)}"
    return text


def markdown_table(result: BenchmarkResult) -> str:
    """Rows: models; columns: dataset / metric; cells: ``mean ± half the 95 % interval``,
    the best of each column in bold (``-``: no value; ``failed``)."""
    columns = [(d, m) for d in _run_datasets(result) for m in result.higher_is_better]
    best = {(d, metric): _best(result, d, metric) for d, metric in columns}
    arrows = {m: "↑" if h else "↓" for m, h in result.higher_is_better.items()}
    head = "| model | " + " | ".join(f"{d} {m} {arrows[m]}" for d, m in columns) + " |"
    lines = [head, "|---|" + "---|" * len(columns)]
    for name in _run_models(result):
        cells = []
        for d, metric in columns:
            c = result.cell(name, d)
            if c is None:
                cells.append("")
                continue
            if c.status == "failed":
                cells.append("failed")
                continue
            s = c.summary.get(metric, {})
            text = _mean_text(s)
            if s.get("mean") is not None and best[(d, metric)] == s["mean"]:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    n_items = {d: max((len(c.rows) for c in result.cells if c.dataset == d), default=0)
               for d in _run_datasets(result)}
    lines.append("")
    lines.append("Mean ± half the 95 % interval of the mean; items: " + ", ".join(
        f"{d} {n}" for d, n in n_items.items()) + ".")
    lines.extend(f"Note: {n}." for n in item_notes(result))
    return "\n".join(lines) + "\n"


def plot_benchmark(result: BenchmarkResult) -> Any:
    """A matplotlib ``Figure``: one panel per metric; datasets along x, a bar per model with
    its 95 % interval (none where a cell failed or has one value)."""
    import numpy as np
    from matplotlib.figure import Figure

    metrics = list(result.higher_is_better)
    datasets = _run_datasets(result)
    models = _run_models(result)
    cols = min(3, max(1, len(metrics)))
    rows = math.ceil(len(metrics) / cols)
    width = max(3.2, 0.5 * len(datasets) * len(models) + 1.5)
    fig = Figure(figsize=(cols * width, rows * 3.2), layout="constrained")
    bar = 0.8 / max(1, len(models))
    colors = [f"C{i % 10}" for i in range(len(models))]
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, k + 1)
        x = np.arange(len(datasets))
        for j, model in enumerate(models):
            at = x + (j - (len(models) - 1) / 2) * bar
            shown: list[int] = []
            means: list[float] = []
            errs: list[list[float]] = [[], []]
            for i, d in enumerate(datasets):
                c = result.cell(model, d)
                if c is not None and c.status == "failed":
                    ax.text(at[i], 0, "failed", rotation=90, ha="center", va="bottom",
                            fontsize=7, color=colors[j])
                s = c.summary.get(metric, {}) if c is not None and c.status != "failed" else {}
                mean, lo, hi = s.get("mean"), s.get("ci95_low"), s.get("ci95_high")
                if mean is None or not math.isfinite(mean):
                    continue  # no bar: failed, not run on it, or nothing scored
                shown.append(i)
                means.append(mean)
                has_ci = lo is not None and hi is not None and math.isfinite(lo) \
                    and math.isfinite(hi)
                errs[0].append(max(0.0, mean - lo) if has_ci else np.nan)
                errs[1].append(max(0.0, hi - mean) if has_ci else np.nan)
            ax.bar(at[shown], means, bar, yerr=np.array(errs).reshape(2, -1), capsize=3,
                   color=colors[j], label=model)
        ax.set_xticks(x, datasets, rotation=20 if len(datasets) > 3 else 0)
        higher = result.higher_is_better[metric]
        ax.set_title(f"{metric} ({'higher' if higher else 'lower'} is better)")
    if metrics:
        fig.axes[0].legend(fontsize=8)
    return fig


def example_figures(result: BenchmarkResult, out: Path) -> dict[str, Any]:
    """Per dataset with example images (``examples/DATASET/``), a figure of them: LR, each
    model's SR, HR (:func:`~zoomsr.evaluation.examples.plot_examples`); at most
    ``spec.examples`` rows."""
    from zoomsr.evaluation.benchmark import chosen_examples
    from zoomsr.evaluation.examples import file_stem, plot_examples, read_image

    figures = {}
    models = [m.name for m in result.spec.models]
    for d in _run_datasets(result):
        shared = out / EXAMPLES / d
        rows = []
        # the items the keepers chose: of the cells' items, the first by rank (this seed)
        for key in chosen_examples(result.spec, result.cells, d):
            stem = file_stem(key)
            hr = read_image(shared / f"{stem}.hr.npy")
            if hr is None:
                continue
            srs: list[Any] = []
            for m in models:
                c = result.cell(m, d)
                if c is None or c.status == "failed":
                    srs.append("not run" if c is None else "failed")
                    continue
                srs.append(read_image(cell_dir(out, m, d) / EXAMPLES / f"{stem}.npy"))
            rows.append((key, read_image(shared / f"{stem}.lr.npy"), srs, hr))
        if rows:
            figures[d] = plot_examples(rows, models, f"{d}: the same items for every model "
                                                     "(each row stretched by its HR)")
    return figures


def benchmark_doc(result: BenchmarkResult) -> dict[str, Any]:
    """``benchmark.json``: the spec's models, datasets and metrics, and every cell's state,
    time and error."""
    spec = result.spec
    return json_safe({
        "spec": str(spec.path) if spec.path is not None else None,
        "models": [m.name for m in spec.models],
        "datasets": [d.name for d in spec.datasets],
        "metrics": {m: {"higher_is_better": h} for m, h in result.higher_is_better.items()},
        "compare_to": spec.baseline,
        "cells": [{"model": c.model, "dataset": c.dataset, "status": c.status,
                   "n_items": len(c.rows), "n_images": c.n_images,
                   "seconds": round(c.seconds, 3), "error": c.error} for c in result.cells],
        "n_failed": len(result.failed),
        "notes": item_notes(result),
    })


def check_report_folder(out: str | os.PathLike[str], overwrite: bool = False) -> None:
    """:class:`~zoomsr.errors.InputError` where ``out`` holds a report file that no benchmark
    wrote (no ``benchmark.json`` beside it: a user's file of that name), unless ``overwrite``.
    An earlier benchmark's report is replaced (it is made from every cell again)."""
    from zoomsr.errors import InputError

    folder = Path(out)
    if overwrite or (folder / REPORT_FILES["summary"]).is_file():
        return
    there = [folder / name for name in REPORT_FILES.values() if (folder / name).exists()]
    there += sorted(folder.glob("examples_*.png")) if folder.is_dir() else []
    if there:
        raise InputError(f"{there[0]}: already exists, and {folder} holds no benchmark.json "
                         "(not a benchmark's report); write to another folder, or use "
                         "--overwrite")


def write_report(result: BenchmarkResult, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the report files (module docstring) into ``out``, all or none; they are made
    from every cell, so they replace an earlier run's (:func:`check_report_folder` first)."""
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from zoomsr.io.atomic import atomic_write_all
    from zoomsr.io.tables import csv_text

    folder = Path(out)
    paths = {k: folder / v for k, v in REPORT_FILES.items()}
    rows = result_rows(result)
    comparisons = compare(result, seed=result.spec.seed)
    fig = plot_benchmark(result)
    FigureCanvasAgg(fig)
    png = io.BytesIO()
    with warnings.catch_warnings():  # an empty panel (every cell failed) cannot be laid out
        warnings.simplefilter("ignore", UserWarning)
        fig.savefig(png, format="png", dpi=120)
    pictures: dict[Path, bytes | str] = {}
    for d, figure in example_figures(result, folder).items():
        FigureCanvasAgg(figure)
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            figure.savefig(buf, format="png", dpi=110)
        pictures[folder / f"examples_{d}.png"] = buf.getvalue()
        paths[f"examples_{d}"] = folder / f"examples_{d}.png"
    fields = ["model", "dataset", "metric", *_STAT_KEYS, "higher_is_better"]
    comparison_fields = ["dataset", "metric", "model", "baseline", "n_items", "mean_diff",
                         "ci95_low", "ci95_high", "better", "worse", "same",
                         "higher_is_better", "note"]
    drawn = set(pictures)
    atomic_write_all({
        paths["results"]: csv_text(json_safe(rows), fields),
        paths["comparisons"]: csv_text(json_safe(comparisons), comparison_fields),
        paths["table"]: markdown_table(result),
        paths["summary"]: json.dumps(benchmark_doc(result), indent=2) + "\n",
        paths["plot"]: png.getvalue(),
        **pictures,
    })
    for stale in folder.glob("examples_*.png"):  # a dataset dropped, examples: 0
        if stale not in drawn:
            stale.unlink(missing_ok=True)
    return paths


def cell_tables(result: BenchmarkResult) -> list[Any]:
    """One ``rich`` table per dataset: a row per model, a column per metric (``mean ± half
    the 95 % interval``, the best in bold)."""
    from rich.table import Table

    tables = []
    for d in result.spec.datasets:
        if d.name not in _run_datasets(result):
            continue
        cells = [result.cell(m.name, d.name) for m in result.spec.models]
        items = max((len(c.rows) for c in cells if c is not None), default=0)
        table = Table(title=f"{d.name} ({d.dataset}, {items} items)")
        table.add_column("model")
        for metric, higher in result.higher_is_better.items():
            table.add_column(f"{metric} {'↑' if higher else '↓'}", justify="right")
        best = {metric: _best(result, d.name, metric) for metric in result.higher_is_better}
        for m, c in zip(result.spec.models, cells, strict=True):
            if c is None:
                continue
            if c.status == "failed":
                table.add_row(m.name, *["failed"] * len(result.higher_is_better))
                continue
            row = []
            for metric in result.higher_is_better:
                s = c.summary.get(metric, {})
                text = _mean_text(s)
                row.append(f"[bold]{text}[/bold]" if s.get("mean") is not None
                           and best[metric] == s["mean"] else text)
            table.add_row(m.name, *row)
        tables.append(table)
    return tables


def comparison_table(result: BenchmarkResult) -> Any:
    """A ``rich`` table of the paired differences against ``compare_to``."""
    from rich.table import Table

    table = Table(title=f"paired differences against {result.spec.baseline} "
                        "(model - baseline; items where the model is better / worse)")
    for name in ("dataset", "metric", "model", "n", "mean diff", "95% CI", "won/lost"):
        left = name in ("dataset", "metric", "model")
        table.add_column(name, justify="left" if left else "right",
                         no_wrap=name in ("95% CI", "won/lost", "mean diff"),
                         overflow="fold")
    notes = []
    for r in compare(result, seed=result.spec.seed):
        if "mean_diff" not in r:  # no comparison there: said once per model and dataset
            line = f"{r['model']} on {r['dataset']}: {r['note']}"
            if line not in notes:
                notes.append(line)
            continue
        ci = (f"[{_number(r['ci95_low'], 3)}, {_number(r['ci95_high'], 3)}]"
              if r["ci95_low"] is not None and math.isfinite(r["ci95_low"]) else "-")
        table.add_row(r["dataset"], r["metric"], r["model"], str(r["n_items"]),
                      _number(r["mean_diff"]), ci, f"{r['better']} / {r['worse']}")
    if notes:
        table.caption = "; ".join(notes)
    return table


__all__ = ["REPORT_FILES", "benchmark_doc", "cell_tables", "check_report_folder",
           "comparison_table", "item_notes", "markdown_table",
           "plot_benchmark", "result_rows", "write_report"]
