"""Score paired images with several metrics; write a per-image CSV and a JSON summary.

The summary gives, per metric, the mean, sample standard deviation and a seeded 95 % percentile
bootstrap interval of the mean over the finite per-image values (``inf`` PSNR of identical images
is counted in ``n_nonfinite`` instead, NaN, an image a metric did not score, in ``n_unscored``).
With fewer than 2 finite values the std and the interval are undefined: NaN here, ``null`` in
``summary.json``, ``-`` in the table. Both files are written atomically.

Nodata (``nodata="exclude"``, the default): a pixel is valid where both files hold data (a
GeoTIFF's nodata value or mask, a PNG's alpha, a float image's NaN); the metrics score the valid
pixels only (see ``docs/metrics.md``), each row gives ``valid_fraction``, and a pair without a
valid pixel in common is left out (:class:`NoValidOverlap`). ``nodata="black"``: nodata pixels
are scored as black, with a warning (the behaviour before masks were honoured).
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from zoomsr.errors import ConfigError, DataError, InputError
from zoomsr.evaluation.images import (
    NoValidPixels,
    check_nodata_mode,
    check_same_place,
    read_rgb_masked,
    read_tile_of_mosaic_masked,
)
from zoomsr.evaluation.pairing import ImagePair, Pairing, pair_images
from zoomsr.io.atomic import atomic_write_all, refuse_existing
from zoomsr.io.tables import csv_text
from zoomsr.metrics.base import (
    Metric,
    black_outside,
    check_batch_size,
    check_images,
    metric_bounds,
)
from zoomsr.metrics.stats import SMALL_SAMPLE, bootstrap_ci, t_interval

#: ``progress(done, total)`` is called after each batch.
ProgressFn = Callable[[int, int], None]

CSV_NAME = "per_image.csv"
SUMMARY_NAME = "summary.json"
#: The per-image column (and row key) of the share of pixels valid in both files.
VALID_FRACTION = "valid_fraction"


class NoValidOverlap(DataError):
    """No pixel of a pair is valid in both files (``nodata="exclude"``)."""


def summarize(values: Sequence[float], seed: int = 0, n_boot: int = 2000,
              bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """``{mean, std, ci95_low, ci95_high, n, n_nonfinite, n_unscored}`` of the finite values
    (``n_nonfinite``: the infinite ones; ``n_unscored``: the NaN ones, images not scored).

    ``std`` (sample, ddof=1) and the interval are NaN below 2 values: one value says nothing
    about the spread (a bootstrap of it would give the zero-width interval ``[x, x]``). The
    95 % interval of the mean is Student's t below :data:`~zoomsr.metrics.stats.SMALL_SAMPLE`
    values (the percentile bootstrap covers far less than 95 % there), else the percentile
    bootstrap (``n_boot`` resamples, ``seed``). ``bounds``: the values a score can take
    (the metric's ``bounds``); the interval is clipped to them (a t interval of CLIPScores
    near 1 reached above 1).
    """
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    n = int(finite.size)
    if n < 2:
        lo, hi = math.nan, math.nan
    elif n < SMALL_SAMPLE:
        lo, hi = t_interval(finite)
    else:
        lo, hi = bootstrap_ci(finite, n_boot=n_boot, seed=seed)
    if bounds is not None and n >= 2:
        lo, hi = (float(np.clip(lo, *bounds)), float(np.clip(hi, *bounds)))
    return {
        "mean": float(finite.mean()) if n else math.nan,
        "std": float(finite.std(ddof=1)) if n > 1 else math.nan,
        "ci95_low": lo,
        "ci95_high": hi,
        "n": n,
        "n_nonfinite": int(np.isinf(v).sum()),
        "n_unscored": int(np.isnan(v).sum()),
    }


def _share(valid: torch.Tensor | None) -> float:
    return 1.0 if valid is None else float(valid.double().mean())


def load_pair(
    pair: ImagePair, nodata: str = "exclude"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Read and check one pair: two ``[3, H, W]`` of the same size, uint8 (8-bit files) or
    float32 in [0, 1], and ``[H, W]`` bool True where both files hold data (``None``: both
    everywhere); nodata pixels are black. Two georeferenced files must have the same CRS and
    bounds.

    Raises:
        DataError: naming the file that is unreadable, out of range, elsewhere on the ground or
            of a different size.
        NoValidOverlap: ``nodata="exclude"``, and no pixel is valid in both files.
        NoValidPixels: ``nodata="black"`` and a file without a valid pixel, or the tile of a
            mosaic prediction without one.
    """
    check_nodata_mode(nodata)
    images, georefs, masks = [], [], []
    for path in (pair.pred, pair.target):
        if pair.tile is not None and path == pair.pred:  # its tile's part of a mosaic
            img, valid = read_tile_of_mosaic_masked(path, pair.tile, nodata)
            geo = None
        else:
            img, valid, geo = read_rgb_masked(path, as_float=False, nodata=nodata)
        if img.dtype != torch.uint8:
            try:
                img = check_images(img[None], str(path))[0]
            except InputError as exc:
                raise DataError(str(exc)) from None
        images.append(img)
        georefs.append(geo)
        masks.append(valid)
    # the place before the size: a shifted or reprojected prediction is the real mistake
    check_same_place(pair.pred, georefs[0], pair.target, georefs[1])
    pred, target = images
    if pred.shape != target.shape:
        # no resampling here: it would change the scores, so predictions come at target size
        raise DataError(
            f"{pair.pred}: size {tuple(pred.shape[1:])} differs from its target {pair.target} "
            f"{tuple(target.shape[1:])}; resample or crop the prediction to the target's size"
        )
    vp, vt = masks
    both = vp if vt is None else vt if vp is None else vp & vt
    if nodata == "exclude" and both is not None and not bool(both.any()):
        raise NoValidOverlap(
            f"{pair.pred}: no pixel valid in both it and its target {pair.target} (nodata: "
            f"{100 * (1 - _share(vp)):.3g} % of it, {100 * (1 - _share(vt)):.3g} % of the "
            "target); nothing to score"
        )
    return pred, target, both


def _takes_valid(metric: Metric) -> bool:
    """Whether ``metric`` takes a ``valid`` mask (zoomsr's metrics do)."""
    try:
        return "valid" in inspect.signature(metric).parameters
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return False


def score_pairs(
    pairs: Sequence[ImagePair],
    metrics: dict[str, Metric],
    batch_size: int = 16,
    progress: ProgressFn | None = None,
    no_data: list[ImagePair] | None = None,
    nodata: str = "exclude",
    no_overlap: list[tuple[ImagePair, str]] | None = None,
) -> list[dict[str, Any]]:
    """Score every pair with every metric, in batches of same-size images.

    Returns one row per pair: ``{"key", "pred", "target", <metric>: float, ...,
    "valid_fraction": float}`` in input order (``valid_fraction``: the share of pixels valid
    in both files, 1.0 without nodata).
    With ``no_data`` (a list), the pairs whose part of a mosaic prediction is all nodata (no
    valid frame there when it was made) are appended to it instead of stopping the run.

    ``nodata="exclude"``: the metrics get the ``valid`` mask (a metric without a ``valid``
    parameter gets both images black outside it instead); with ``no_overlap`` (a list), a pair
    without a pixel valid in both files is appended to it as ``(pair, one-line reason)``
    instead of stopping the run. ``nodata="black"``: nodata pixels are scored as black.

    Raises:
        DataError: a file cannot be read or scored (e.g. smaller than LPIPS's backbone takes),
            naming the prediction, the metric and the problem.
    """
    check_batch_size(batch_size)
    check_nodata_mode(nodata)
    if not metrics:
        raise InputError("no metrics to compute")
    if VALID_FRACTION in metrics:
        raise InputError(f"a metric named {VALID_FRACTION!r}: the name of the column of the "
                         "valid share; rename it")
    takes_valid = {name: _takes_valid(metric) for name, metric in metrics.items()}
    rows: list[dict[str, Any]] = []
    total = len(pairs)
    done = 0
    for start in range(0, total, batch_size):
        chunk, loaded = [], []
        for pair in pairs[start: start + batch_size]:
            try:
                loaded.append(load_pair(pair, nodata))
            except NoValidOverlap as exc:
                if no_overlap is None:
                    raise
                no_overlap.append((pair, str(exc)))
                continue
            except NoValidPixels:
                if no_data is None or pair.tile is None:
                    raise
                no_data.append(pair)
                continue
            chunk.append(pair)
        done += min(batch_size, total - start)
        scores: list[dict[str, float]] = [{} for _ in chunk]
        groups: dict[tuple[Any, ...], list[int]] = {}  # same size and dtypes: one batch
        for i, (pred, target, _) in enumerate(loaded):
            groups.setdefault((*pred.shape, pred.dtype, target.dtype), []).append(i)
        for idx in groups.values():
            pred = torch.stack([loaded[i][0] for i in idx])
            target = torch.stack([loaded[i][1] for i in idx])
            valid = None
            if nodata == "exclude" and any(loaded[i][2] is not None for i in idx):
                valid = torch.stack([
                    torch.ones(pred.shape[-2:], dtype=torch.bool) if loaded[i][2] is None
                    else cast(torch.Tensor, loaded[i][2]) for i in idx
                ])
            for name, metric in metrics.items():
                try:
                    if valid is None:  # called as before masks were honoured
                        values = metric(pred, target)
                    elif takes_valid[name]:
                        # (zoomsr's metrics take it: takes_valid; the protocol does not)
                        values = metric(pred, target, valid=valid)  # type: ignore[call-arg]
                    else:  # e.g. a user's metric: both images black outside the valid area
                        values = metric(*black_outside(pred, target, valid[:, None]))
                except InputError as exc:  # e.g. an image too small for a network metric
                    more = f" (and {len(idx) - 1} more of that size)" if len(idx) > 1 else ""
                    raise DataError(f"{chunk[idx[0]].pred}{more}: {name}: {exc}") from None
                for j, i in enumerate(idx):
                    scores[i][name] = float(values[j])
        for p, s, (*_, v) in zip(chunk, scores, loaded, strict=True):
            rows.append({"key": p.key, "pred": str(p.pred), "target": str(p.target), **s,
                         VALID_FRACTION: _share(v)})
        if progress is not None:
            progress(done, total)
    for metric in metrics.values():  # CLIPScore's target embeddings, for the next run
        save = getattr(metric, "save_cache", None)
        if callable(save):
            save()
    return rows


@dataclass
class EvaluationResult:
    """Per-image scores, their summary, and how the files were paired."""

    metrics: dict[str, bool]  # name -> higher is better
    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]]
    pairing: Pairing | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: how nodata pixels were scored (``exclude`` or ``black``)
    nodata: str = "exclude"
    #: the pairs without a pixel valid in both files, not scored: ``(pair, reason)``
    no_overlap: list[tuple[ImagePair, str]] = field(default_factory=list)
    #: a few items' images kept to be looked at (``evaluate_model(examples=N)``):
    #: ``{key: {"lr", "sr", "hr"}}``, float16 ``[H, W, C]`` (:mod:`zoomsr.evaluation.examples`)
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The summary document written to ``summary.json``."""
        fractions = [float(r.get(VALID_FRACTION, 1.0)) for r in self.rows]
        doc: dict[str, Any] = {
            "n_pairs": len(self.rows),
            "metrics": {
                n: {**self.summary[n], "higher_is_better": hib} for n, hib in self.metrics.items()
            },
            "options": self.options,
            "nodata": self.nodata,
            "n_with_nodata": sum(f < 1.0 for f in fractions),
            "min_valid_fraction": min(fractions) if fractions else None,
            "n_no_valid_overlap": len(self.no_overlap),
            "no_valid_overlap": [str(p.pred) for p, _ in self.no_overlap],
        }
        if self.pairing is not None:
            doc["layout"] = self.pairing.layout
            doc["missing_pred"] = [str(p) for p in self.pairing.missing_pred]
            doc["unmatched_pred"] = [str(p) for p in self.pairing.unmatched_pred]
            doc["ambiguous"] = {k: [str(p) for p in v] for k, v in self.pairing.ambiguous.items()}
            if self.pairing.split is not None:
                doc["split"] = self.pairing.split
                doc["n_outside_split"] = len(self.pairing.outside_split)
        return json_safe(doc)


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats by ``None`` and paths by strings, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return str(obj)
    return obj


def evaluate_pairing(
    pairing: Pairing,
    metrics: dict[str, Metric],
    batch_size: int = 16,
    progress: ProgressFn | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    nodata: str = "exclude",
) -> EvaluationResult:
    """Score the pairs of ``pairing`` with every metric and summarise them (``nodata``: see
    :func:`score_pairs`; the pairs without a pixel valid in both files are listed in the
    result's ``no_overlap``).

    Raises:
        DataError: as :func:`score_pairs`, and when no pair is left to score.
    """
    no_data: list[ImagePair] = []
    no_overlap: list[tuple[ImagePair, str]] = []
    rows = score_pairs(pairing.pairs, metrics, batch_size, progress, no_data, nodata,
                       no_overlap)
    if no_data:
        # a mosaic's tiles without a valid pixel (no valid frame there): not predicted
        dropped = set(no_data)
        pairing.pairs = [p for p in pairing.pairs if p not in dropped]
        pairing.missing_pred = sorted([*pairing.missing_pred, *(p.target for p in no_data)])
    if not rows and no_data and not no_overlap:
        raise DataError(f"{no_data[0].pred}: every tile of it to score is nodata; nothing "
                        "to score")
    if not rows and no_overlap:
        raise DataError(f"no pair has a pixel valid in both files; e.g. {no_overlap[0][1]}")
    summary = {n: summarize([r[n] for r in rows], seed=seed, bounds=metric_bounds(m))
               for n, m in metrics.items()}
    return EvaluationResult(
        {n: bool(m.higher_is_better) for n, m in metrics.items()}, rows, summary, pairing,
        dict(options or {}), nodata, no_overlap,
    )


def evaluate(
    pred_dir: str | os.PathLike[str],
    target_dir: str | os.PathLike[str],
    metrics: Mapping[str, Metric] | Metric | str | list[str],
    batch_size: int = 16,
    progress: ProgressFn | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    split: str | None = None,
    splits_file: str | os.PathLike[str] | None = None,
    nodata: str = "exclude",
) -> EvaluationResult:
    """Pair the folders (:func:`pair_images`), score every pair and summarise.

    ``metrics``: ``{name: Metric}``, one :class:`Metric`, or names as
    :func:`~zoomsr.metrics.create_metrics` takes them (``"psnr,ssim"``, ``["psnr"]``); checked
    before any file is read. ``nodata``: ``"exclude"`` (score the pixels valid in both files)
    or ``"black"`` (see :func:`score_pairs`).
    """
    check_nodata_mode(nodata)
    chosen = as_metrics(metrics)
    return evaluate_pairing(pair_images(pred_dir, target_dir, split, splits_file), chosen,
                            batch_size, progress, seed, options, nodata)


def as_metrics(metrics: Mapping[str, Metric] | Metric | str | Sequence[str]
               ) -> dict[str, Metric]:
    """``metrics`` as ``{name: Metric}`` (see :func:`evaluate`)."""
    if isinstance(metrics, (str, list, tuple)):
        from zoomsr.metrics import create_metrics

        return create_metrics(list(metrics) if isinstance(metrics, tuple) else metrics)
    if isinstance(metrics, Metric):
        return {metrics.name: metrics}
    if not isinstance(metrics, Mapping):
        raise ConfigError(f"metrics must be {{name: Metric}}, a Metric or metric names "
                          f"('psnr,ssim'), got {type(metrics).__name__}")
    for name, metric in metrics.items():  # what scoring uses: a call, higher_is_better
        if not callable(metric) or not hasattr(metric, "higher_is_better"):
            raise ConfigError(f"metrics[{name!r}]: {type(metric).__name__} is no metric (a "
                              "callable with higher_is_better, as zoomsr.metrics' classes)")
    return dict(metrics)


def write_results(
    result: EvaluationResult, out_dir: str | os.PathLike[str], overwrite: bool = False
) -> dict[str, Path]:
    """Write ``per_image.csv`` and ``summary.json`` into ``out_dir`` (atomically). A metric's
    NaN (an image it did not score) is an empty cell.

    Raises:
        InputError: a file exists and ``overwrite`` is false.
    """
    out = Path(out_dir)
    paths = {"csv": out / CSV_NAME, "summary": out / SUMMARY_NAME}
    refuse_existing(paths.values(), overwrite)
    fields = ["key", "pred", "target", *result.metrics, VALID_FRACTION]
    # a metric's NaN (the image not scored, e.g. too little of it valid): an empty cell
    rows = [{k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
            for r in result.rows]
    # both or neither: a Ctrl-C or a full disk between them left one file, which the re-run
    # refused
    atomic_write_all({paths["csv"]: csv_text(rows, fields),
                      paths["summary"]: json.dumps(result.to_json(), indent=2) + "\n"})
    return paths


def summary_table(result: EvaluationResult) -> Any:
    """A ``rich`` table of the summary (metric, mean, std, 95 % CI, n)."""
    from rich.table import Table

    table = Table(title=f"{len(result.rows)} image pairs")
    captions = []
    if any(s["n"] == 1 for s in result.summary.values()):
        captions.append("n=1: no std or 95% CI (need 2 values)")
    if any(s.get("n_unscored") for s in result.summary.values()):
        captions.append("not scored: too few valid (not nodata) pixels")
    if captions:
        table.caption = "; ".join(captions)
    for col in ("metric", "mean", "std", "95% CI", "n"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for name, hib in result.metrics.items():
        s = result.summary[name]
        arrow = "↑" if hib else "↓"
        n = f"{s['n']}" + (f" (+{s['n_nonfinite']} inf)" if s["n_nonfinite"] else "")
        if s.get("n_unscored"):
            n += f" (+{s['n_unscored']} not scored)"
        table.add_row(
            f"{name} {arrow}", _fmt(s["mean"]), _fmt(s["std"]),
            f"[{_fmt(s['ci95_low'])}, {_fmt(s['ci95_high'])}]", n,
        )
    return table


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.4f}" if abs(x) < 10 else f"{x:.3f}"
