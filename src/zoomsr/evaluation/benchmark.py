"""Models x datasets x metrics: every model scored on every dataset, resumable, compared.

:func:`run_benchmark` scores each (model, dataset) cell of a
:class:`~zoomsr.evaluation.benchmark_spec.BenchmarkSpec` with
:func:`~zoomsr.evaluation.evaluate_model` and writes it to ``OUT/cells/MODEL/DATASET/``
(``per_image.csv`` and ``summary.json``, as ``zoomsr evaluate-model --out`` writes them, both
or neither). A cell already there from the same settings (its ``summary.json`` records them:
the model entry and its weights file's size and modification time, the dataset entry and its
splits file's digest, the metric options, zoomsr's version) is kept, not scored again, so an
interrupted benchmark goes on where it stopped; cells from other settings are refused, all
named, unless ``overwrite``. One model is loaded at a time. A cell that
fails (weights not downloaded, a model that cannot take a dataset's items, an unreadable
file) is reported and the others go on.

The report (:mod:`zoomsr.evaluation.benchmark_report`) tabulates each metric's mean and 95 %
interval per cell, and compares every model with one (``compare_to``, default the first) on
the items both scored: the mean of the per-item differences with its 95 % interval (the same
items, so a paired interval: narrower than the two means' intervals suggest where the
models err on the same items), and how many items each wins.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from zoomsr.devices import resolve_device
from zoomsr.errors import ConfigError, DataError, ZoomsrError
from zoomsr.evaluation.benchmark_spec import (
    BenchmarkSpec,
    DatasetEntry,
    ModelEntry,
    check_cell_files,
)
from zoomsr.evaluation.run import CSV_NAME, SUMMARY_NAME, json_safe, summarize
from zoomsr.io.hashing import sha256_file

#: Where a cell's files go, under the benchmark's folder.
CELLS = "cells"
#: The key of ``summary.json`` that records a cell's settings.
CELL_KEY = "benchmark_cell"
#: Where example images go: ``cells/MODEL/DATASET/examples/`` and ``examples/DATASET/``.
EXAMPLES = "examples"

ProgressFactory = Callable[[str], AbstractContextManager[Callable[[int, int], None] | None]]


@dataclass
class Cell:
    """One model on one dataset: scored now, kept from an earlier run, or failed."""

    model: str
    dataset: str
    status: str  # "scored", "kept" or "failed"
    rows: list[dict[str, Any]] = field(default_factory=list)  # per item: key + metric values
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)  # per metric
    error: str | None = None
    seconds: float = 0.0
    n_images: int | None = None


@dataclass
class BenchmarkResult:
    """Every cell, and what the report needs to read them."""

    spec: BenchmarkSpec
    cells: list[Cell]
    higher_is_better: dict[str, bool]  # metric -> direction

    def cell(self, model: str, dataset: str) -> Cell | None:
        return next((c for c in self.cells if c.model == model and c.dataset == dataset),
                    None)

    @property
    def failed(self) -> list[Cell]:
        return [c for c in self.cells if c.status == "failed"]


def cell_dir(out: Path, model: str, dataset: str) -> Path:
    """``OUT/cells/MODEL/DATASET``."""
    return out / CELLS / model / dataset


def weights_identity(weights: str) -> dict[str, Any]:
    """What tells one weights file from another: its resolved path and SHA-256 (a file copied
    over another with its time kept, ``cp -p`` or ``rsync -a``, is still told apart; one
    touched is still the same); a registry name's cached file, else its published checksum."""
    path = Path(weights)
    found: dict[str, Any] = {}
    if not path.is_file():
        from zoomsr.weights import fetch, registry

        if weights not in registry.REGISTRY:
            return {"weights": weights}
        entry = registry.get_entry(weights)
        found = {"registry": weights, "sha256": entry.sha256}
        path = fetch.weights_path(weights)
        if not path.is_file():
            return found
    st = path.resolve().stat()
    return {**found, "path": str(path.resolve()),
            "sha256": _weights_digest(str(path.resolve()), st.st_ino, st.st_size,
                                      st.st_mtime_ns, st.st_ctime_ns)}


@functools.lru_cache(maxsize=64)
def _weights_digest(path: str, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    """SHA-256 of a weights file, read once for all its cells; the rest of the key makes a
    file rewritten since (even with its old time put back: the change time moves) read again."""
    return sha256_file(path)


def _file_digest(path: Path) -> str | None:
    """SHA-256 of a small file (a splits file), None where it cannot be read."""
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def predictions_identity(path: Path) -> dict[str, Any]:
    """What tells one set of prediction files from another without reading them (a mosaic
    or thousands of tiles: gigabytes): a file's size and modification time; a folder's image
    files' count, total size and newest time; for both, a digest of every file's name, size,
    modification and change time (a file replaced with its old size and time kept, ``cp -p``
    or ``rsync -a``, still has a new change time, which no tool sets back)."""
    import hashlib

    if path.is_file():
        st = path.stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "stat_sha256": hashlib.sha256(f"{st.st_size},{st.st_mtime_ns},"
                                              f"{st.st_ctime_ns}".encode()).hexdigest()}
    if not path.is_dir():
        return {"missing": str(path)}
    files = sorted((p.relative_to(path).as_posix(), p.stat()) for p in path.rglob("*")
                   if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif",
                                                           ".tiff"))
    digest = hashlib.sha256()
    for name, st in files:
        digest.update(f"{name},{st.st_size},{st.st_mtime_ns},{st.st_ctime_ns}\n".encode())
    return {"files": len(files), "bytes": sum(st.st_size for _, st in files),
            "newest_ns": max((st.st_mtime_ns for _, st in files), default=0),
            "stat_sha256": digest.hexdigest()}


def _tile_key(target: str) -> str | None:
    """``image_id/tile`` of an S2-NAIP target ``.../naip/IMAGE_ID/TILE/rgb.png`` (as
    :func:`~zoomsr.evaluation.evaluate_model` keys S2-NAIP items), else None."""
    parts = Path(target).parts
    return f"{parts[-3]}/{parts[-2]}" if len(parts) >= 3 and parts[-1] == "rgb.png" else None


def open_predictions(m: ModelEntry, d: DatasetEntry) -> tuple[Any, Any]:
    """``(model, dataset)``: a ``predictions`` entry's files on benchmark dataset ``d``
    (PROBA-V, WorldStrat, OLI2MSI) as a model for
    :func:`~zoomsr.evaluation.evaluate_model` (:class:`~zoomsr.evaluation.prediction_files.
    PredictionFiles`: each item's file by its id), and the dataset's items it is scored on."""
    from zoomsr.data.datasets import open_dataset
    from zoomsr.evaluation.prediction_files import PredictionFiles, prediction_files

    if m.predictions is None:
        raise ConfigError(f"{m.name}: no predictions")
    # one frame each: the LR is only shown in the examples, never fed to the files
    ds = open_dataset(d.dataset, d.data, d.split, splits_file=d.splits,
                      **{**d.options, "n_images": 1})
    return PredictionFiles(prediction_files(m.predictions, _dataset_keys(ds)), ds), ds


def score_files(m: ModelEntry, d: DatasetEntry, metrics: dict[str, Any], spec: BenchmarkSpec,
                batch_size: int, update: Any, device: str = "auto") -> Any:
    """A ``predictions`` entry's files scored against dataset ``d``, rows keyed as the models'
    cells are (so that they pair in the comparisons): on S2-NAIP as ``zoomsr evaluate``
    scores them (paired by tile; a mosaic GeoTIFF cut by the tiles); on a benchmark dataset
    each item's file by its id, read as the dataset reads its HR (:func:`open_predictions`),
    scored with the items' HR masks as a model's outputs are."""
    from zoomsr.data.datasets import open_dataset
    from zoomsr.evaluation.model_eval import evaluate_model
    from zoomsr.evaluation.pairing import pair_images
    from zoomsr.evaluation.run import evaluate_pairing

    if m.predictions is None:
        raise ConfigError(f"{m.name}: no predictions")
    if d.dataset != "s2naip":
        files, ds = open_predictions(m, d)
        return evaluate_model(files, ds, metrics, batch_size=batch_size, device=device,
                              progress=update, seed=spec.seed, nodata=spec.masks,
                              label=m.name, examples=spec.examples)
    pairing = pair_images(m.predictions, d.data, d.split, d.splits)
    # the items the models are scored on (the loader's options, e.g. skip_black_hr, drop some)
    items = open_dataset("s2naip", d.data, d.split, splits_file=d.splits,
                         **{**d.options, "n_images": 1})
    keys = {f"{p.image_id}/{p.tile}" for p in items.pairs}  # type: ignore[attr-defined]
    kept = [p for p in pairing.pairs if _tile_key(str(p.target)) in keys]
    left_out = len(pairing.pairs) - len(kept)
    pairing.pairs = kept
    if not kept:
        raise DataError(f"{m.predictions}: none of its {left_out} prediction(s) is of an item "
                        f"the models are scored on in {d.name}")
    result = evaluate_pairing(pairing, metrics, batch_size, update, spec.seed,
                              {"not_items": left_out},
                              "exclude" if spec.masks else "black")
    for row in result.rows:
        row["key"] = _tile_key(row["target"]) or row["key"]
    return result


def cell_settings(spec: BenchmarkSpec, m: ModelEntry, d: DatasetEntry,
                  dtype: str | None = None) -> dict[str, Any]:
    """The settings a cell's scores follow from, as JSON gives them back: the model entry
    (and its weights file's identity), the dataset entry (and its splits file's digest: a
    retrained run rewrites it), the metric options, masks, seed, the metrics' ``dtype`` and
    zoomsr's version (a metric's fix changes scores). The metric names are compared apart
    (:func:`kept_cell`)."""
    from zoomsr import __version__

    model = {k: v for k, v in asdict(m).items() if k not in ("name", "datasets")}
    if m.baseline is not None and model["n_images"] is None:
        model["n_images"] = 1  # its default, written or not
    if m.weights is not None:
        model["file"] = weights_identity(m.weights)
    if m.predictions is not None:
        model["files"] = predictions_identity(m.predictions)
    dataset = {k: v for k, v in asdict(d).items() if k != "name"}
    if d.splits is not None:
        dataset["splits_sha256"] = _file_digest(d.splits)
    settings = {"model": model, "dataset": dataset, "metric_options": spec.metric_options,
                "masks": spec.masks, "seed": spec.seed, "dtype": dtype,
                "zoomsr": __version__}
    return json.loads(json.dumps(json_safe(settings), default=str))


#: Settings that are paths: the same file however it was written (cells of earlier versions
#: recorded them as typed, relative to the folder the command ran in).
_PATH_SETTINGS = {"data", "splits", "weights", "predictions", "path"}


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two settings documents differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    leaf = prefix.rstrip(".").rsplit(".", 1)[-1]
    if leaf in _PATH_SETTINGS and isinstance(old, str) and isinstance(new, str):
        return [] if os.path.abspath(old) == os.path.abspath(new) else [prefix.rstrip(".")]
    return [] if old == new else [prefix.rstrip(".") or "(all)"]


def _read_rows(path: Path, metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """A cell's ``per_image.csv`` back as rows (an empty cell: NaN, not scored)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = []
        for r in csv.DictReader(f):
            row: dict[str, Any] = {"key": r["key"]}
            for name in metrics:
                text = r.get(name, "")
                row[name] = float(text) if text not in ("", None) else math.nan
            rows.append(row)
    return rows


@dataclass
class _Stale:
    """A finished cell that other settings made: where, and what differs."""

    folder: Path
    what: list[str]


def kept_cell(out: Path, spec: BenchmarkSpec, m: ModelEntry, d: DatasetEntry,
              overwrite: bool, settings: dict[str, Any]) -> Cell | _Stale | None:
    """The cell an earlier run wrote with ``settings`` (:func:`cell_settings`; None: none, or
    ``overwrite``; :class:`_Stale`: one from other settings, or with fewer metrics than asked
    for).

    Raises:
        ConfigError: a cell folder whose files cannot be read as a benchmark's.
    """
    folder = cell_dir(out, m.name, d.name)
    summary, table = folder / SUMMARY_NAME, folder / CSV_NAME
    if overwrite or not summary.is_file():
        return None
    try:
        doc = json.loads(summary.read_text(encoding="utf-8"))
        recorded = doc["options"][CELL_KEY] if isinstance(doc.get("options"), dict) else None
        rows = _read_rows(table, spec.metrics) if recorded is not None else []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{folder}: an earlier cell that cannot be read ({exc}); remove it, "
                          "or run with --overwrite") from None
    if not isinstance(recorded, dict):
        raise ConfigError(f"{folder}: not a cell of a zoomsr benchmark (its {SUMMARY_NAME} "
                          "records no benchmark settings); remove it, or write to another "
                          "output folder")
    changed = _differences({k: v for k, v in recorded.items() if k != "metrics"}, settings)
    scored = set(doc.get("metrics", {}))
    missing = [n for n in spec.metrics if n not in scored]
    if missing:
        changed.append(f"metrics (+{', '.join(missing)})")
    if changed:
        return _Stale(folder, changed)
    summary_doc = {n: doc["metrics"][n] for n in spec.metrics}
    seconds = doc["options"].get("seconds")  # the run that scored it (0 before it was kept)
    return Cell(m.name, d.name, "kept", rows, summary_doc,
                n_images=doc["options"].get("n_images"),
                seconds=float(seconds) if isinstance(seconds, (int, float)) else 0.0)


def _refuse_stale(stale: list[_Stale], out: Path) -> None:
    """One line naming the finished cells that other settings made, and what to do."""
    shown = "; ".join(f"{s.folder.relative_to(out).as_posix()} ({', '.join(s.what[:3])}"
                      f"{' ...' if len(s.what) > 3 else ''})" for s in stale[:4])
    more = f" and {len(stale) - 4} more" if len(stale) > 4 else ""
    if any(w.endswith("stat_sha256") for s in stale for w in s.what):
        more += (" (stat_sha256: prediction files replaced, added, renamed, or their "
                 "permissions or links changed)")
    raise ConfigError(f"{len(stale)} finished cell(s) in {out} were scored with other settings:"
                      f" {shown}{more}; remove those cell folders to score them again, run "
                      "with --overwrite to score every cell again, or use another output "
                      "folder")


def _free(scoring: Any) -> None:
    """Move a model off the accelerator once its last cell is done."""
    module = getattr(scoring, "module", None)
    if module is None:
        return
    module.cpu()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _failure(exc: BaseException) -> str:
    """A cell's error in one line: a zoomsr error's message, another's type and first line."""
    from zoomsr.errors import first_line

    if isinstance(exc, ZoomsrError):
        # the command-line hints of evaluate-model's checks, as a benchmark file says them
        text = re.sub(r"\(--n-images (\d+)\)", r"(n_images: \1 in the model's entry)", str(exc))
        return text.replace("command line: -o ", "the dataset's options: ")
    return f"{type(exc).__name__}: {first_line(exc)}"


def run_benchmark(
    spec: BenchmarkSpec,
    out: str | os.PathLike[str],
    *,
    device: str = "auto",
    dtype: str | None = None,
    batch_size: int = 8,
    workers: int = 0,
    overwrite: bool = False,
    progress: ProgressFactory | None = None,
    on_cell: Callable[[Cell], None] | None = None,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> BenchmarkResult:
    """Score every cell of ``spec`` into ``out`` (module docstring) and return them all.

    Args:
        spec: the models, datasets and metrics.
        out: the benchmark's folder (created).
        device, dtype: where the models and the network metrics run (``dtype``: the
            metrics' half precision on a GPU).
        batch_size: items per step, and per model call.
        workers: DataLoader worker processes reading each dataset.
        overwrite: score every cell again (else cells from the same settings are kept, and
            cells from other settings refused).
        progress: ``progress(description)`` gives a context whose value is an
            ``update(done, total)`` for that cell (e.g. ``zoomsr.progress.progress_callback``).
        on_cell: called with each cell when it is done (scored, kept or failed).
        models, datasets: score only the cells of these models and datasets (names of the
            spec; e.g. one model per GPU or machine into one shared ``out``); the others are
            taken as they are there (finished with the same settings: kept; else left out
            of the result, neither scored nor refused).

    A cell's error, whatever it is (out of memory included), fails that cell alone; Ctrl-C
    stops the run (the finished cells stay).

    Raises:
        ConfigError: bad metric options or missing metric weights; earlier cells from other
            settings (all named, before any cell is scored).
    """
    from zoomsr.evaluation.baselines import for_dataset
    from zoomsr.evaluation.model_eval import evaluate_model
    from zoomsr.evaluation.run import write_results
    from zoomsr.evaluation.scoring import dataset_metrics, open_for_model
    from zoomsr.metrics.factory import MetricOptions

    folder = Path(out)
    options = MetricOptions(**spec.metric_options, device=device, dtype=dtype,
                            batch_size=batch_size)
    check_benchmark_metrics(spec, options)
    selected = select_cells(spec, models, datasets)
    # every earlier cell checked before any work: changed settings are all found at once
    # each cell's settings, found once (a predictions folder's identity walks its files)
    settings = {(m.name, d.name): cell_settings(spec, m, d, dtype) for m, d in spec.cells()}
    found = {(m.name, d.name): kept_cell(folder, spec, m, d,
                                         overwrite and (m, d) in selected,
                                         settings[(m.name, d.name)])
             for m, d in spec.cells()}
    stale = [c for (m, d), c in zip(spec.cells(), found.values(), strict=True)
             if isinstance(c, _Stale) and (m, d) in selected]
    if stale:
        _refuse_stale(stale, folder)
    kept = {k: c for k, c in found.items() if isinstance(c, Cell)}
    check_cell_files(spec, [(m, d) for m, d in spec.cells()
                            if (m, d) in selected and (m.name, d.name) not in kept])
    # built once for every cell (CLIP's target cache too); their weights' errors stop the run
    metrics = (dataset_metrics(spec.metrics, options)
               if any((m.name, d.name) not in kept for m, d in selected) else None)
    current: tuple[str, Any] | None = None  # the model loaded: one at a time
    cells: list[Cell] = []
    for m, d in spec.cells():
        if (m, d) not in selected:  # another run's: as it is there, or left out
            if (m.name, d.name) in kept:
                cells.append(kept[(m.name, d.name)])
            continue
        cell = kept.get((m.name, d.name))
        if cell is None:
            started = time.perf_counter()
            try:
                context = (progress(f"{m.name} on {d.name}") if progress is not None
                           else nullcontext(None))
                # (built above: None only when every cell is kept, and none is scored)
                metrics = cast("dict[str, Any]", metrics)
                if m.predictions is not None:  # files: paired with the dataset's items
                    with context as update:
                        result = score_files(m, d, metrics, spec, batch_size, update, device)
                    frames, split, used = None, d.split, dict(d.options)
                    if d.dataset != "s2naip":
                        write_examples(folder, m.name, d.name, result.examples)
                else:
                    if current is None or current[0] != m.name:
                        if current is not None:
                            _free(current[1])
                        try:
                            loaded: Any = load_entry(m, spec.seed)
                        except ZoomsrError as exc:
                            loaded = exc
                        current = (m.name, loaded)
                    scoring = current[1]
                    if isinstance(scoring, ZoomsrError):
                        raise scoring
                    ds, used, frames = open_for_model(
                        scoring, d.dataset, d.data, d.split, d.splits, d.options, m.n_images,
                        n_images_name=f"n_images for model {m.name}")
                    scoring = for_dataset(scoring, ds)
                    # a splits file's subset: the split named, not the one it was drawn from
                    split = d.split if d.splits is not None else getattr(ds, "split", d.split)
                    with context as update:
                        result = evaluate_model(
                            scoring.module, ds, metrics, batch_size=batch_size, device=device,
                            num_workers=workers, progress=update, seed=spec.seed,
                            nodata=spec.masks, label=m.name, examples=spec.examples)
                    write_examples(folder, m.name, d.name, result.examples)
                result.options.update({
                    "model": m.name, "dataset": d.name, "n_images": frames,
                    "split": split,
                    # as the loader opened it: with the S2-NAIP bands the weights record
                    "loader_options": used,
                    # the device it ran on ("auto" said nothing)
                    "device": str(resolve_device(device)), "metrics_dtype": dtype,
                    "seconds": round(time.perf_counter() - started, 3),  # (kept cells say it)
                    CELL_KEY: {**settings[(m.name, d.name)],
                               "metrics": list(spec.metrics)}})
                write_results(result, cell_dir(folder, m.name, d.name), overwrite=True)
                cell = Cell(m.name, d.name, "scored",
                            [{"key": r["key"], **{n: r[n] for n in result.metrics}}
                             for r in result.rows],
                            {n: {**result.summary[n],
                                 "higher_is_better": result.metrics[n]}
                             for n in result.metrics},
                            seconds=time.perf_counter() - started, n_images=frames)
            except Exception as exc:  # noqa: BLE001 - one cell's failure, whatever it is
                if "out of memory" in str(exc).lower() and current is not None:
                    _free(current[1])
                    current = None
                cell = Cell(m.name, d.name, "failed", error=_failure(exc),
                            seconds=time.perf_counter() - started)
        cells.append(cell)
        if on_cell is not None:
            on_cell(cell)
    if current is not None:
        _free(current[1])
    if spec.examples:
        fill_examples(spec, folder, cells, device=device, batch_size=batch_size,
                      only={(m.name, d.name) for m, d in selected})
    directions = {n: bool(m.higher_is_better) for n, m in (metrics or {}).items()}
    if not directions:  # nothing scored now: the kept cells say
        for c in cells:
            for n, s in c.summary.items():
                directions.setdefault(n, bool(s.get("higher_is_better", True)))
    return BenchmarkResult(spec, cells, directions)


def select_cells(spec: BenchmarkSpec, models: Sequence[str] | None = None,
                 datasets: Sequence[str] | None = None) -> list[tuple[ModelEntry, DatasetEntry]]:
    """The cells of ``models`` and ``datasets`` (all where None); :class:`ConfigError` for a
    name the spec does not have."""
    for what, names, entries in (("model", models, spec.models),
                                 ("dataset", datasets, spec.datasets)):
        known = [e.name for e in entries]
        unknown = [n for n in (names or ()) if n not in known]
        if unknown:
            raise ConfigError(f"{unknown[0]}: not a {what} of {spec.path or 'the benchmark'} "
                              f"(its {what}s: {', '.join(known)})")
    return [(m, d) for m, d in spec.cells() if (models is None or m.name in models)
            and (datasets is None or d.name in datasets)]


def load_entry(m: ModelEntry, seed: int) -> Any:
    """A model entry's :class:`~zoomsr.evaluation.model_eval.ScoringModel` (a baseline, or
    its weights loaded)."""
    from zoomsr.evaluation.baselines import baseline_model
    from zoomsr.evaluation.model_eval import load_scoring_model

    if m.baseline is not None:
        return baseline_model(m.baseline, m.n_images)
    return load_scoring_model(m.weights or "", m.model, m.config or None, m.sample_steps, seed)


def _dataset_keys(ds: Any) -> list[str]:
    """The keys of a dataset's items as scoring rows name them, without reading any."""
    from zoomsr.data import S2NAIPDataset
    from zoomsr.data.datasets import ItemSubset, item_ids

    if isinstance(ds, ItemSubset):
        return list(ds.ids)
    if isinstance(ds, S2NAIPDataset):
        return [f"{p.image_id}/{p.tile}" for p in ds.pairs]
    return item_ids(ds)


def chosen_examples(spec: BenchmarkSpec, cells: list[Cell], dataset: str) -> list[str]:
    """The items a dataset's figure shows: of its cells' items, the first ``spec.examples``
    by :func:`~zoomsr.evaluation.examples.example_rank` (what every keeper kept)."""
    from zoomsr.evaluation.examples import example_rank

    keys = {r["key"] for c in cells if c.dataset == dataset and c.status != "failed"
            for r in c.rows}
    return sorted(keys, key=lambda k: example_rank(k, spec.seed))[: spec.examples]


def fill_examples(spec: BenchmarkSpec, out: Path, cells: list[Cell], *, device: str = "auto",
                  batch_size: int = 8, only: set[tuple[str, str]] | None = None) -> None:
    """Example images of the chosen items (:func:`chosen_examples`) that kept cells lack (an
    earlier run kept fewer or other ones): their model run on those items alone, the scores
    kept as they were. A cell whose model cannot be loaded now keeps its gaps."""
    from zoomsr.data.datasets import ItemSubset
    from zoomsr.evaluation.baselines import for_dataset
    from zoomsr.evaluation.examples import file_stem
    from zoomsr.evaluation.model_eval import evaluate_model
    from zoomsr.evaluation.scoring import dataset_metrics, open_for_model
    from zoomsr.metrics.factory import MetricOptions

    entries = {m.name: m for m in spec.models}
    datasets = {d.name: d for d in spec.datasets}
    chosen = {d: chosen_examples(spec, cells, d) for d in datasets}
    psnr = None
    current: tuple[str, Any] | None = None  # the model loaded (cells come model by model)
    for c in cells:
        m, d = entries[c.model], datasets[c.dataset]
        if c.status == "failed" or (c.status != "kept" and m.predictions is None) or (
                only is not None and (c.model, c.dataset) not in only):
            continue
        missing = [k for k in chosen[d.name]
                   if not (cell_dir(out, m.name, d.name) / EXAMPLES
                           / f"{file_stem(k)}.npy").is_file()]
        if not missing:
            continue
        if m.predictions is not None and d.dataset == "s2naip":
            _file_examples(out, m, d, missing, spec)
            continue
        try:
            if m.predictions is not None:
                module, ds = open_predictions(m, d)
            else:
                if current is None or current[0] != m.name:
                    if current is not None:
                        _free(current[1])
                    current = (m.name, load_entry(m, spec.seed))
                ds, _, _ = open_for_model(current[1], d.dataset, d.data, d.split, d.splits,
                                          d.options, m.n_images)
                module = for_dataset(current[1], ds).module
            keys = _dataset_keys(ds)
            at = {k: i for i, k in enumerate(keys)}
            wanted = [k for k in missing if k in at]
            if not wanted:
                continue
            psnr = psnr or dataset_metrics(["psnr"], MetricOptions(border=0))
            subset = ItemSubset(ds, [at[k] for k in wanted], keys)
            result = evaluate_model(module, subset, psnr, batch_size=batch_size,
                                    device=device, seed=spec.seed, nodata=spec.masks,
                                    label=m.name, examples=len(wanted))
            write_examples(out, m.name, d.name, result.examples, replace=False)
        except ZoomsrError:
            continue  # its tiles stay blank ("-")
    if current is not None:
        _free(current[1])


def _file_examples(out: Path, m: ModelEntry, d: DatasetEntry, keys: list[str],
                   spec: BenchmarkSpec) -> None:
    """A ``predictions`` entry's example images: its files of ``keys``, as read to be scored
    (8-bit RGB / 255, nodata black)."""
    import numpy as np
    import torch

    from zoomsr.evaluation.examples import file_stem, npy_bytes
    from zoomsr.evaluation.pairing import pair_images
    from zoomsr.evaluation.run import load_pair
    from zoomsr.io.atomic import atomic_write_all

    if m.predictions is None:
        return
    wanted = set(keys)
    files: dict[Path, bytes | str] = {}
    try:
        pairs = pair_images(m.predictions, d.data, d.split, d.splits).pairs
    except ZoomsrError:
        return  # its tiles stay blank ("-")
    for pair in pairs:
        key = _tile_key(str(pair.target))
        if key not in wanted:
            continue
        try:
            pred, _, _ = load_pair(pair, "exclude" if spec.masks else "black")
        except ZoomsrError:
            continue
        image = pred.float() / (255.0 if pred.dtype == torch.uint8 else 1.0)
        path = cell_dir(out, m.name, d.name) / EXAMPLES / f"{file_stem(key)}.npy"
        files[path] = npy_bytes(image.permute(1, 2, 0).numpy().astype(np.float16))
    if files:
        next(iter(files)).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_all(files)


def write_examples(out: Path, model: str, dataset: str,
                   examples: dict[str, dict[str, Any]], replace: bool = True) -> None:
    """A cell's example images: its SR in ``cells/MODEL/DATASET/examples/``, the items' LR
    and HR in ``examples/DATASET/`` (the same for every model), all or none; ``replace``:
    the cell's earlier images removed first (a rescore)."""
    import shutil

    from zoomsr.evaluation.examples import file_stem, npy_bytes
    from zoomsr.io.atomic import atomic_write_all

    own = cell_dir(out, model, dataset) / EXAMPLES
    if replace:
        shutil.rmtree(own, ignore_errors=True)  # an earlier run's (another seed, other items)
    if not examples:
        return
    files: dict[Path, bytes | str] = {}
    shared = out / EXAMPLES / dataset
    for key, images in examples.items():
        stem = file_stem(key)
        files[cell_dir(out, model, dataset) / EXAMPLES / f"{stem}.npy"] = npy_bytes(images["sr"])
        for part in ("lr", "hr"):
            files[shared / f"{stem}.{part}.npy"] = npy_bytes(images[part])
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_all(files)


def check_benchmark_metrics(spec: BenchmarkSpec, options: Any) -> None:
    """The metric options' values and the weight files the metrics need, checked before any
    cell (as ``zoomsr evaluate`` checks its flags), named as the file's keys."""
    from zoomsr.evaluation.benchmark_spec import METRIC_OPTION_KEYS
    from zoomsr.metrics.factory import check_options

    called = {k: f"metric_options.{k}" for k in METRIC_OPTION_KEYS}
    called.update({"metrics": "metrics", "batch_size": "--batch-size"})
    try:
        check_options(spec.metrics, options, called)
    except ZoomsrError as exc:  # bad values, weight files not found
        where = f"{spec.path}: " if spec.path is not None else ""
        raise ConfigError(f"{where}{exc}") from None


def compare(result: BenchmarkResult, seed: int = 0) -> list[dict[str, Any]]:
    """Each model against ``spec.baseline`` on each dataset and metric, over the items both
    scored with a finite value: ``mean_diff`` (model - baseline) with its 95 % interval
    (:func:`~zoomsr.evaluation.run.summarize` of the per-item differences: a paired
    interval), and how many items the model scores better, worse, the same."""
    base = result.spec.baseline
    rows: list[dict[str, Any]] = []
    for d in result.spec.datasets:
        ref = result.cell(base, d.name)
        others = [c for c in result.cells
                  if c.dataset == d.name and c.model != base and c.status != "failed"]
        if (ref is None or ref.status == "failed") and others:
            why = "not run on it" if ref is None else "failed on it"
            rows.extend({"dataset": d.name, "metric": metric, "model": c.model,
                         "baseline": base, "n_items": 0,
                         "note": f"no comparison: {base} {why}"}
                        for c in others for metric in result.higher_is_better)
            continue
        if ref is None or ref.status == "failed":
            continue
        ref_by_key = {r["key"]: r for r in ref.rows}
        for m in result.spec.models:
            cell = result.cell(m.name, d.name)
            if m.name == base or cell is None or cell.status == "failed":
                continue
            for metric, higher in result.higher_is_better.items():
                diffs = []
                for r in cell.rows:
                    other = ref_by_key.get(r["key"])
                    if other is None:
                        continue
                    a, b = r.get(metric, math.nan), other.get(metric, math.nan)
                    if math.isfinite(a) and math.isfinite(b):
                        diffs.append(a - b)
                s = summarize(diffs, seed=seed)
                sign = 1 if higher else -1
                rows.append({
                    "dataset": d.name, "metric": metric, "model": m.name, "baseline": base,
                    "n_items": len(diffs), "mean_diff": s["mean"], "ci95_low": s["ci95_low"],
                    "ci95_high": s["ci95_high"],
                    "better": sum(sign * x > 0 for x in diffs),
                    "worse": sum(sign * x < 0 for x in diffs),
                    "same": sum(x == 0 for x in diffs),
                    "higher_is_better": higher,
                    "note": "" if len(diffs) == len(cell.rows) == len(ref.rows) else
                    f"{len(diffs)} items in common ({len(cell.rows)} and {len(ref.rows)} "
                    "scored)"})
    return rows


__all__ = ["CELLS", "BenchmarkResult", "Cell", "cell_dir", "cell_settings", "compare",
           "kept_cell", "run_benchmark", "weights_identity"]
