"""``zoomsr data build`` and ``zoomsr data search``: argument parsing only; the work is in
:mod:`zoomsr.data.builder`."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import typer

from zoomsr.cli.interrupt import on_interrupt


def build(
    out: Path = typer.Argument(..., help="Output dataset folder (created)."),
    s2: list[Path] = typer.Option(
        [], "--s2", help="Sentinel-2 input: SAFE folder, band file (TCI/B08/SCL .tif/.jp2) or "
        "folder of them. Repeatable."),
    hr: list[Path] = typer.Option(
        [], "--hr", help="High-res input (NAIP or any 8-bit RGB GeoTIFF) or folder. Repeatable."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="Manifest JSON (from `zoomsr data search` or hand-written)."),
    s2_date: str | None = typer.Option(
        None, "--s2-date", help="Date for Sentinel-2 scenes whose date cannot be found."),
    hr_date: str | None = typer.Option(
        None, "--hr-date", help="Date for high-res images whose date cannot be found."),
    bands: str = typer.Option("tci", "--bands", help="Bands to write, tci first, e.g. tci,b08."),
    scale: int = typer.Option(4, "--scale", help="High-res chunk = 32*scale px per tile."),
    window_days: int = typer.Option(
        90, "--window-days", help="Keep Sentinel-2 within this many days of the high-res date."),
    cloud: str = typer.Option(
        "auto", "--cloud", help="Cloud test: auto (SCL if present, else the L1C cloud "
        "mask MSK_CLASSI_B00, else brightness), scl, msk_classi, brightness, none."),
    max_cloud: float = typer.Option(
        0.1, "--max-cloud", help="Drop a frame from a tile above this cloudy share (0-1)."),
    min_frames: int = typer.Option(1, "--min-frames", help="Skip tiles with fewer frames."),
    max_frames: int | None = typer.Option(
        None, "--max-frames", help="Keep at most this many frames per tile (least cloudy)."),
    bbox: str | None = typer.Option(
        None, "--bbox", help="Only tiles in west,south,east,north (degrees)."),
    dn_offset: int | None = typer.Option(
        None, "--dn-offset", help="DN offset to subtract, 0 or 1000 (1000 from processing "
        "baseline 04.00), for scenes whose metadata (SAFE, STAC item, manifest, product "
        "name) does not give it; default: refused when their 16-bit bands are read."),
    split_group: int = typer.Option(
        16, "--split-group", help="Split groups are N x N tiles (16 ~ 4.9 km)."),
    split_fractions: str = typer.Option(
        "0.8,0.1,0.1", "--split-fractions", help="train,val,test shares of groups."),
    seed: int = typer.Option(0, "--seed", min=0, help="Split seed."),
    block_tiles: int = typer.Option(
        16, "--block-tiles", help="Tiles per block side (memory per worker grows with it)."),
    workers: int | None = typer.Option(
        None, "--workers", "-j", help="Worker processes (default: CPUs, at most 8)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Rebuild from scratch into a non-empty folder."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Make S2-NAIP pairs from raw Sentinel-2 scenes and high-res images (resumable)."""
    from zoomsr.errors import InputError

    if workers is not None and workers < 1:  # checked before reading any input
        raise InputError(f"--workers must be >= 1, got {workers}")
    from zoomsr.data.builder.build import BuildConfig, build_dataset, sigterm_as_interrupt
    from zoomsr.data.builder.sources import (
        Sources,
        discover_highres,
        discover_sentinel2,
        parse_datetime,
        read_manifest,
    )
    from zoomsr.data.builder.splits import SplitConfig, parse_fractions
    from zoomsr.data.builder.stac import parse_bbox
    from zoomsr.io.folders import require_writable_folder

    config = BuildConfig(
        # (BuildConfig parses "tci,b08" into its tuple)
        bands=cast("tuple[str, ...]", bands), scale=scale, window_days=window_days,
        cloud_method=cloud,
        max_cloud=max_cloud, min_frames=min_frames, max_frames=max_frames,
        block_tiles=block_tiles, bbox=parse_bbox(bbox) if bbox else None,
        dn_offset=dn_offset,
        splits=SplitConfig(split_group, parse_fractions(split_fractions), seed))
    if not (s2 or hr or manifest):
        raise InputError("no inputs: give --s2 and --hr paths, or --manifest")
    require_writable_folder(out, f"OUT {out}", create=False)  # before reading any input
    on_interrupt(lambda: _kept_pairs(Path(out)))
    with sigterm_as_interrupt():  # SIGTERM (timeout, SLURM) stops the build as Ctrl-C does
        sources = read_manifest(manifest) if manifest else Sources()
        if s2:
            sources.sentinel2 += discover_sentinel2(
                s2, parse_datetime(s2_date, "--s2-date") if s2_date else None)
        if hr:
            sources.highres += discover_highres(
                hr, parse_datetime(hr_date, "--hr-date") if hr_date else None)
        result = build_dataset(out, sources, config, workers=workers, overwrite=overwrite,
                               progress=progress)
    c = result.counts
    skipped = ", ".join(f"{k[len('skipped_'):]} {v}" for k, v in c.items()
                        if k.startswith("skipped_")) or "none"
    frames = ", ".join(f"{k[len('frames_'):]} {v}" for k, v in c.items()
                       if k.startswith("frames_"))
    typer.echo(
        f"{result.root}: {c.get('pairs', 0)} pairs on {c.get('tiles_written', 0)} tiles "
        f"(train {c.get('tiles_train', 0)}, val {c.get('tiles_val', 0)}, "
        f"test {c.get('tiles_test', 0)}, buffer {c.get('tiles_buffer', 0)}); "
        f"{c.get('pairs_now', 0)} written now, {c.get('pairs_existing', 0)} already there")
    typer.echo(f"skipped tiles: {skipped}; frames: {frames or 'none'}")
    typer.echo(f"{result.blocks_run}/{result.blocks_total} blocks run, "
               f"{result.tiles_per_second:.1f} tiles/s; index: {result.index_path}")
    for line in result.empty_splits:
        typer.echo(f"warning: {line}", err=True)


def search(
    out: Path = typer.Option(..., "--out", "-o", help="Manifest JSON to write."),
    bbox: str = typer.Option(..., "--bbox", help="west,south,east,north in degrees."),
    start: str = typer.Option(..., "--start", help="First high-res capture date (YYYY-MM-DD)."),
    end: str = typer.Option(..., "--end", help="Last high-res capture date (YYYY-MM-DD)."),
    provider: str = typer.Option(
        "earth-search", "--provider", help="earth-search or planetary-computer."),
    url: str | None = typer.Option(None, "--url", help="STAC API URL (overrides the provider)."),
    s2_collection: str | None = typer.Option(
        None, "--s2-collection", help="Sentinel-2 collection (default sentinel-2-l2a)."),
    hr_collection: str | None = typer.Option(
        None, "--hr-collection", help="High-res collection (default naip)."),
    window_days: int = typer.Option(
        90, "--window-days", help="Search Sentinel-2 this many days around start..end."),
    max_items: int = typer.Option(1000, "--max-items", help="At most this many per collection."),
    max_scene_cloud: float | None = typer.Option(
        None, "--max-scene-cloud", help="Drop Sentinel-2 items above this eo:cloud_cover (%)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing manifest."),
) -> None:
    """Find Sentinel-2 and NAIP items in a STAC API; write a manifest for `data build`."""
    from zoomsr.data.builder.stac import parse_bbox, search_stac

    path, n_s2, n_hr = search_stac(
        out, parse_bbox(bbox), start, end, provider=provider, url=url,
        s2_collection=s2_collection, hr_collection=hr_collection, window_days=window_days,
        max_items=max_items, max_scene_cloud=max_scene_cloud, overwrite=overwrite)
    typer.echo(f"wrote {path}: {n_s2} Sentinel-2 and {n_hr} high-res items")


def _kept_pairs(out: Path) -> str:
    """What an interrupted build kept in ``out``, and how to go on."""
    from zoomsr.data.layout import BUILD_STATE_DIR, scan_pairs
    from zoomsr.errors import DataError

    if not (out / BUILD_STATE_DIR).is_dir():
        return "interrupted before anything was built"
    try:
        pairs = len(scan_pairs(out, unfinished_ok=True))
    except DataError:
        pairs = 0
    return (f"interrupted: {pairs} finished pair(s) kept in {out}; the same command finishes "
            "the build without redoing them")
