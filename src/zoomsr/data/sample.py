"""``zoomsr data sample``: write a small synthetic dataset in the published S2-NAIP layout."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zoomsr import __version__
from zoomsr.data.bands import validate_bands
from zoomsr.data.layout import DATASET_ENTRIES
from zoomsr.data.synthetic import SYNTHETIC_NOTE, DegradationConfig, generate_pair
from zoomsr.data.writer import S2NAIPWriter
from zoomsr.errors import ConfigError, DataError
from zoomsr.grid import Tile, tile_for_lonlat
from zoomsr.io.atomic import output_lock
from zoomsr.io.folders import require_writable_folder
from zoomsr.progress import track
from zoomsr.stopping import interrupts_held, stop_workers, worker_pool

#: Where synthetic tiles are placed (central Iowa); any valid location would do.
SAMPLE_ORIGIN_LONLAT = (-93.62, 41.59)
#: The hidden folder a sample is built in (inside OUT, or beside it as ``.OUT`` + this).
TMP_DIR = ".zoomsr-sample"
#: Tiles per synthetic "NAIP image" (one image id covers a block of tiles, as in real data).
TILES_PER_IMAGE = 64


def sample_tiles(n: int, origin: tuple[float, float] = SAMPLE_ORIGIN_LONLAT) -> list[Tile]:
    """``n`` adjacent tiles in a near-square block, row-major, starting at ``origin``."""
    start = tile_for_lonlat(*origin)
    width = math.ceil(math.sqrt(n))
    return [Tile(start.col + k % width, start.row + k // width) for k in range(n)]


def write_sample(
    out: str | os.PathLike[str],
    pairs: int = 256,
    n_frames: int = 8,
    bands: Sequence[str] | str = ("tci",),
    seed: int = 0,
    overwrite: bool = False,
    config: DegradationConfig | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> Path:
    """Generate ``pairs`` synthetic pairs under ``out``; returns the dataset root.

    Every pair is derived from ``(seed, pair index)``, so the output is identical for a seed
    whatever else changes (including ``workers``, the number of processes; default: one per
    CPU, up to 8). The dataset's ``zoomsr_dataset.json`` labels it synthetic.
    """
    if pairs < 1:
        raise ConfigError(f"pairs must be >= 1, got {pairs}")
    if n_frames < 1:
        raise ConfigError(f"n_frames (--frames) must be >= 1, got {n_frames}")
    bands = validate_bands(bands)
    root = Path(out)
    # a second run into the same OUT is refused: both built in one hidden folder, and one
    # reported a dataset of the other's half-removed pairs as written
    with output_lock(root):
        return _write_sample(root, pairs, n_frames, bands, seed, overwrite, config, progress,
                             workers)


def _write_sample(root: Path, pairs: int, n_frames: int, bands: tuple[str, ...], seed: int,
                  overwrite: bool, config: DegradationConfig | None, progress: bool,
                  workers: int | None) -> Path:
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder (give a new or empty folder)")
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise DataError(f"{root}: folder is not empty (use --overwrite, in Python "
                        "overwrite=True, to replace the dataset in it)")
    # Built in a hidden folder and moved in when complete: an interrupted sample never looks
    # like a dataset, and --overwrite replaces the earlier one instead of mixing with it. The
    # folder is inside an existing OUT (same file system: OUT may be a mount or a symlink
    # elsewhere, and its parent read-only), else beside the OUT to be made.
    if root.is_dir():
        require_writable_folder(root)
        tmp = root / TMP_DIR
    else:
        require_writable_folder(root.parent, str(root))
        tmp = root.parent / f".{root.name}{TMP_DIR}"
    shutil.rmtree(tmp, ignore_errors=True)  # what a crashed earlier run left
    config = config or DegradationConfig()
    try:
        _write_pairs(tmp, pairs, seed, n_frames, bands, config, progress, workers)
        S2NAIPWriter(tmp, scale=config.scale).write_metadata(
            synthetic=True,
            note=SYNTHETIC_NOTE,
            generator=f"zoomsr {__version__} data sample",
            seed=seed,
            pairs=pairs,
            frames=n_frames,
            bands=list(bands),
            scale=config.scale,
            degradation=dataclasses.asdict(config),
        )
    except BaseException:  # Ctrl-C or a failure: a sample is quick to make again
        with interrupts_held():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    with interrupts_held():  # a few renames: not cut between the old dataset and the new
        _move_into(tmp, root)
    return root


def _move_into(tmp: Path, root: Path) -> None:
    """Put the finished dataset in ``tmp`` at ``root``, replacing a dataset already there
    (:data:`~zoomsr.data.layout.DATASET_ENTRIES`; anything else in it stays). The earlier
    entries are moved aside before the new ones go in and only deleted then, so no step
    leaves OUT without one or the other."""
    if not root.exists():
        os.replace(tmp, root)
        return
    aside = root / f"{TMP_DIR}-old"
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    for name in DATASET_ENTRIES:
        if os.path.lexists(root / name):
            os.replace(root / name, aside / name)
        if os.path.lexists(tmp / name):
            os.replace(tmp / name, root / name)
    shutil.rmtree(tmp)
    shutil.rmtree(aside)


def _write_pairs(tmp: Path, pairs: int, seed: int, n_frames: int, bands: tuple[str, ...],
                 config: DegradationConfig, progress: bool, workers: int | None) -> None:
    tiles = sample_tiles(pairs)
    jobs = [(str(tmp), seed, k, str(tile), n_frames, bands, config)
            for k, tile in enumerate(tiles)]
    workers = min(workers or os.cpu_count() or 1, 8, max(1, pairs // 16))
    if workers == 1:
        for job in track(jobs, "writing sample", enabled=progress):
            _write_one(job)
        return
    with worker_pool(workers) as pool:
        try:
            with interrupts_held():  # forks the workers (see stopping.ignore_interrupts_in_worker)
                done = pool.map(_write_one, jobs, chunksize=8)
            for _ in track(done, "writing sample", total=len(jobs), enabled=progress):
                pass
        except BaseException:  # Ctrl-C or a failed pair: the workers stop now
            stop_workers(pool)
            raise


def _write_one(job: tuple) -> None:
    root, seed, k, tile, n_frames, bands, config = job
    pair = generate_pair(np.random.default_rng((seed, k)), n_frames=n_frames, bands=bands,
                         config=config)
    writer = S2NAIPWriter(root, scale=config.scale)
    writer.write_pair(tile, f"synthetic-{seed}-{k // TILES_PER_IMAGE:03d}", pair.hr, pair.frames)
