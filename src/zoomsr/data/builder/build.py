"""``zoomsr data build``: raw Sentinel-2 scenes + high-resolution images -> S2-NAIP pairs.

Pipeline (see ``docs/data_build.md``):

1. *Plan*: the zoom-17 tiles each high-res image covers (optionally clipped to a lon/lat box)
   are grouped into square blocks of ``block_tiles`` x ``block_tiles`` tiles. A block lists the
   high-res images and the Sentinel-2 scenes (footprint overlaps and date within
   ``window_days`` of one of its high-res captures) that it needs.
2. *Blocks* (in parallel processes): every source is warped once onto the block's grid
   (EPSG:3857, snapped to tile edges: 32 px/tile for Sentinel-2, ``32*scale`` for high-res),
   then cut into per-tile chunks by slicing. A high-res chunk must be fully inside its image
   and free of nodata; a Sentinel-2 frame must be free of nodata and at most ``max_cloud``
   cloudy. Per tile, the newest high-res capture with at least ``min_frames`` frames in its
   window gets the series; other captures of the tile whose window holds every frame of it
   share it. Pairs go through :class:`~zoomsr.data.writer.S2NAIPWriter` (atomic files,
   ``rgb.png`` last); the block's records are then saved as ``.zoomsr_build/blocks/*.json``.
3. *Index*: block records are merged into ``zoomsr_index.json`` (per tile: split, status,
   high-res captures, every candidate frame with dates, files, cloud and nodata fractions and
   why it was kept or dropped), ``zoomsr_splits.json`` and ``zoomsr_dataset.json``.

A re-run with the same inputs and settings skips finished blocks and, inside an interrupted
block, every pair whose ``rgb.png`` exists, so finished tiles are never rewritten.

This module holds :func:`build_dataset`, which runs these steps; their parts are in
:mod:`~zoomsr.data.builder.config` (settings, result, block jobs),
:mod:`~zoomsr.data.builder.plan` (1), :mod:`~zoomsr.data.builder.block` (2, in the
processes of :mod:`~zoomsr.data.builder.workers`), :mod:`~zoomsr.data.builder.state`
(resuming) and :mod:`~zoomsr.data.builder.index` (3). Their public names are imported here too.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from zoomsr import __version__
from zoomsr.data.builder.block import TCI_SATURATION, run_block
from zoomsr.data.builder.config import BlockJob, BuildConfig, BuildResult
from zoomsr.data.builder.index import _write_index, load_index
from zoomsr.data.builder.plan import _check_sources, _warn_coarse_highres, plan_blocks
from zoomsr.data.builder.plan import with_dn_offsets as with_dn_offsets
from zoomsr.data.builder.scenes import Sources
from zoomsr.data.builder.splits import write_splits
from zoomsr.data.builder.state import _fingerprint, _load_done, _prepare_root
from zoomsr.data.builder.workers import run_jobs
from zoomsr.data.layout import INDEX_FILE
from zoomsr.data.writer import S2NAIPWriter
from zoomsr.errors import ConfigError, DataError
from zoomsr.stopping import sigterm_as_interrupt


def _run_jobs(jobs: Sequence[BlockJob], workers: int, progress: bool,
              on_done: Callable[[dict], None]) -> None:
    """:func:`run_block` of this module (looked up at each call) on every job, in ``workers``
    processes (:func:`~zoomsr.data.builder.workers.run_jobs`)."""
    run_jobs(run_block, jobs, workers, progress, on_done)


def _count(records: Iterable[dict], counts: Counter) -> None:
    for rec in records:
        counts["tiles_candidate"] += 1
        if rec["status"] == "written":
            counts["tiles_written"] += 1
            counts[f"tiles_{rec['split']}"] += 1
        else:
            counts[f"skipped_{rec['reason']}"] += 1
        for img in rec["images"]:
            if img.get("written"):
                counts["pairs"] += 1
                counts[f"pairs_{img['written']}"] += 1
        for f in rec["frames"]:
            counts[f"frames_{f['status']}"] += 1


#: Testing hook: each block of a build raises ``RuntimeError`` after writing this many pairs
#: (an interruption at a known point; tests set it, and reset it to None).
_FAIL_AFTER: int | None = None


def build_dataset(
    out: str | os.PathLike[str],
    sources: Sources,
    config: BuildConfig | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> BuildResult:
    """Build (or resume building) an S2-NAIP dataset under ``out`` from ``sources``.

    Args:
        out: output folder; a folder holding an unfinished build with the same inputs and
            settings is resumed, anything else non-empty needs ``overwrite``.
        sources: scenes and images (:mod:`zoomsr.data.builder.sources`).
        config: :class:`BuildConfig`.
        workers: processes (default: CPUs, at most 8); blocks run in parallel.
        overwrite: delete a previous build's output in ``out`` first.
        progress: show a progress bar.

    Raises :class:`InputError` for inputs that cannot pair (no overlap, no date in window)
    and :class:`~zoomsr.errors.DataError` naming an unreadable file.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    config = config or BuildConfig()
    root = Path(out)
    t0 = time.perf_counter()
    sources = _check_sources(sources, config)  # missing bands named before the DN offset
    jobs = plan_blocks(root, sources, config)
    _warn_coarse_highres(sources.highres, config.scale)
    fingerprint = _fingerprint(sources, config)
    changed = frozenset(_prepare_root(root, fingerprint, overwrite, sources))
    S2NAIPWriter(root, scale=config.scale)  # creates naip/ and sentinel2/
    results: dict[str, dict] = {}
    todo = []
    for job in jobs:
        done = _load_done(root, job.key)
        if done is not None:
            for img in (i for rec in done["tiles"] for i in rec["images"] if i.get("written")):
                img["written"] = "existing"  # counts and the index describe this run
            results[job.key] = done
        else:
            todo.append(dataclasses.replace(job, fail_after=_FAIL_AFTER, changed=changed))
    workers = max(1, min(workers or os.cpu_count() or 1, 8, len(todo) or 1))
    _run_jobs(todo, workers, progress, lambda r: results.__setitem__(r["block"], r))
    seconds = time.perf_counter() - t0

    ordered = [results[job.key] for job in jobs]
    tally: Counter = Counter()
    _count((rec for block in ordered for rec in block["tiles"]), tally)
    counts = dict(sorted(tally.items()))
    index_path = root / INDEX_FILE
    _write_index(index_path, ordered, fingerprint, counts)
    if not counts.get("pairs"):
        # no dataset: its metadata and splits would make the folder look like one (readers
        # and `data check` then found "no pairs"); the index says why, tile by tile
        why = ", ".join(f"{k[len('skipped_'):]} {v}" for k, v in counts.items()
                        if k.startswith("skipped_")) or "no tile planned"
        raise DataError(f"{root}: no pair could be made (tiles skipped: {why}); each tile's "
                        f"reason is in {index_path.name}")
    write_splits(root, ((r["tile"], r["split"]) for b in ordered for r in b["tiles"]
                        if r["status"] == "written"), config.splits)
    S2NAIPWriter(root, scale=config.scale, overwrite=True).write_metadata(
        synthetic=False, generator=f"zoomsr {__version__} data build", index=INDEX_FILE,
        splits="zoomsr_splits.json", bands=list(config.bands), scale=config.scale,
        config=config.to_json(), counts=counts,
        sentinel2_scenes=len(sources.sentinel2), highres_images=len(sources.highres))
    tiles_run = sum(len(job.tiles) for job in todo)
    return BuildResult(root, counts, len(jobs), len(todo), tiles_run, seconds, index_path,
                       config.splits)


__all__ = [
    "INDEX_FILE",
    "TCI_SATURATION",
    "BuildConfig",
    "BuildResult",
    "build_dataset",
    "load_index",
    "plan_blocks",
    "run_block",
    "sigterm_as_interrupt",
]
