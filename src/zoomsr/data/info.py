"""``zoomsr data info``: statistics and pictures of an S2-NAIP dataset."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoomsr.data.bands import BANDS
from zoomsr.data.layout import (
    S2_DIR,
    PairRecord,
    dataset_scale,
    read_band_series,
    read_hr,
    read_metadata,
    scan_pairs,
    unfinished_build,
)
from zoomsr.data.selection import black_pixel_mask
from zoomsr.errors import ConfigError, DataError
from zoomsr.grid import LR_PIXELS, Tile
from zoomsr.progress import track


@dataclass
class DatasetInfo:
    """Summary of a dataset (see :func:`dataset_info`)."""

    root: Path
    n_pairs: int
    n_tiles: int
    n_images: int
    bands: dict[str, int]  # band -> number of tiles holding it
    series_lengths: Counter  # time steps -> number of tiles
    frames: int  # time steps examined
    invalid_frames: int  # time steps with at least one black TCI pixel
    black_pixel_share: float  # share of black TCI pixels over all examined time steps
    extent: tuple[float, float, float, float]  # west, south, east, north (degrees)
    tiles_examined: int
    synthetic: bool
    metadata: dict = field(default_factory=dict)
    #: unreadable files of the examined tiles, (tile, file relative to the root, reason): TCI
    #: series (left out of the statistics) and NAIP images
    unreadable: list[tuple[str, str, str]] = field(default_factory=list)
    scale: int = 4  # NAIP images are 32*scale px
    #: why the dataset is not whole yet (an interrupted ``zoomsr data build``), else None
    unfinished: str | None = None

    @property
    def unreadable_tci(self) -> list[tuple[str, str, str]]:
        return [u for u in self.unreadable if u[1].startswith(S2_DIR + "/")]

    @property
    def unreadable_naip(self) -> list[tuple[str, str, str]]:
        return [u for u in self.unreadable if not u[1].startswith(S2_DIR + "/")]

    @property
    def invalid_share(self) -> float:
        return self.invalid_frames / self.frames if self.frames else 0.0

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "pairs": self.n_pairs,
            "tiles": self.n_tiles,
            "naip_images": self.n_images,
            "bands": self.bands,
            "series_lengths": {str(k): v for k, v in sorted(self.series_lengths.items())},
            "time_steps_examined": self.frames,
            "invalid_time_step_share": round(self.invalid_share, 6),
            "black_pixel_share": round(self.black_pixel_share, 6),
            "extent_lonlat": list(self.extent),
            "tiles_examined": self.tiles_examined,
            "synthetic": self.synthetic,
            "scale": self.scale,
            "unfinished": self.unfinished,
            "unreadable_tiles": [{"tile": t, "file": f, "error": e}
                                 for t, f, e in self.unreadable],
        }


def dataset_info(
    root: str | os.PathLike[str],
    max_tiles: int | None = None,
    seed: int = 0,
    progress: bool = False,
    scale: int | None = None,
) -> DatasetInfo:
    """Count pairs, tiles, bands and time-series lengths; measure black/invalid time steps.

    Per-tile statistics read every TCI series and NAIP image, or those of a seeded random
    ``max_tiles`` tiles for very large datasets. Unreadable files are not fatal: they are
    listed in ``unreadable`` (an unreadable TCI series is left out of the statistics; ``data
    check`` lists every problem). NAIP images must be ``32*scale`` px, ``scale`` defaulting to
    the one the dataset records (:func:`~zoomsr.data.layout.dataset_scale`).
    """
    if max_tiles is not None and max_tiles < 1:
        raise ConfigError(f"max_tiles must be >= 1, got {max_tiles}")
    pairs = scan_pairs(root, unfinished_ok=True)  # reported, as the counts so far
    r = Path(root)
    scale = dataset_scale(r, scale)
    naip_of: dict[str, list[PairRecord]] = {}
    for pair in pairs:
        naip_of.setdefault(pair.tile, []).append(pair)
    tiles = sorted({p.tile for p in pairs})
    band_counts: Counter = Counter()
    for tile in tiles:
        folder = r / S2_DIR / tile
        if folder.is_dir():
            band_counts.update(p.stem for p in folder.glob("*.png") if p.stem in BANDS)
    examined = tiles
    if max_tiles is not None and len(tiles) > max_tiles:
        rng = np.random.default_rng(seed)
        examined = sorted(rng.choice(tiles, size=max_tiles, replace=False).tolist())
    lengths: Counter = Counter()
    frames = invalid = 0
    black_px = total_px = 0
    unreadable: list[tuple[str, str, str]] = []
    for tile in track(examined, "reading series", enabled=progress):
        for pair in naip_of[tile]:
            try:
                read_hr(pair.naip_path, LR_PIXELS * scale)
            except DataError as exc:
                unreadable.append((tile, pair.naip_path.relative_to(r).as_posix(), str(exc)))
        try:
            tci = read_band_series(r / S2_DIR / tile / "tci.png", "tci")
        except DataError as exc:
            unreadable.append((tile, f"{S2_DIR}/{tile}/tci.png", str(exc)))
            continue
        mask = black_pixel_mask(tci)
        lengths[tci.shape[0]] += 1
        frames += tci.shape[0]
        invalid += int(mask.reshape(tci.shape[0], -1).any(axis=1).sum())
        black_px += int(mask.sum())
        total_px += mask.size
    parsed = [Tile.parse(t) for t in tiles]
    west = min(t.lonlat_bounds.left for t in parsed)
    east = max(t.lonlat_bounds.right for t in parsed)
    south = min(t.lonlat_bounds.bottom for t in parsed)
    north = max(t.lonlat_bounds.top for t in parsed)
    meta = read_metadata(r)
    return DatasetInfo(
        root=r,
        n_pairs=len(pairs),
        n_tiles=len(tiles),
        n_images=len({p.image_id for p in pairs}),
        bands={b: band_counts[b] for b in BANDS if band_counts[b]},
        series_lengths=lengths,
        frames=frames,
        invalid_frames=invalid,
        black_pixel_share=black_px / total_px if total_px else 0.0,
        extent=(west, south, east, north),
        tiles_examined=len(examined),
        synthetic=bool(meta.get("synthetic", False)),
        metadata=meta,
        unreadable=unreadable,
        scale=scale,
        unfinished=unfinished_build(r),
    )


def plot_tile_locations(pairs: list[PairRecord], path: str | os.PathLike[str],
                        title: str = "") -> Path:
    """Write a PNG map (lon/lat) of the dataset's tiles, one marker per tile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoomsr.io.atomic import atomic_path

    tiles = sorted({p.tile for p in pairs})
    centres = np.array([Tile.parse(t).center_lonlat for t in tiles])
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    ax.scatter(centres[:, 0], centres[:, 1], s=8, marker="s", color="tab:blue")
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(title or f"{len(tiles)} tiles (zoom 17)")
    lat0 = float(np.mean(centres[:, 1]))
    ax.set_aspect(1.0 / max(np.cos(np.radians(lat0)), 1e-3))  # metres-true at mid latitude
    ax.grid(alpha=0.3)
    ax.ticklabel_format(useOffset=False)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def plot_montage(
    pairs: list[PairRecord],
    path: str | os.PathLike[str],
    n_pairs: int = 4,
    n_frames: int = 4,
    scale: int = 4,
    title: str = "",
) -> Path:
    """Write a PNG montage: one row per pair, its first ``n_frames`` TCI frames then the NAIP
    image. Time steps with black pixels are outlined in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoomsr.io.atomic import atomic_path

    # spread over the dataset; an unreadable pair (counted and named by the statistics) is
    # passed over for the next one, not the end of the figure
    step = max(1, len(pairs) // n_pairs)
    order = [*pairs[::step], *(p for k, p in enumerate(pairs) if k % step)]
    chosen, series, hrs = [], [], []
    for record in order:
        try:
            tci = read_band_series(record.band_path("tci"), "tci")
            hr = read_hr(record.naip_path, LR_PIXELS * scale)
        except DataError:
            continue
        chosen.append(record)
        series.append(tci)
        hrs.append(hr)
        if len(chosen) == n_pairs:
            break
    if not chosen:
        raise DataError(f"{path}: no readable pair to show ({len(pairs)} tried)")
    # no empty columns when the series are shorter than n_frames (e.g. one time step)
    n_frames = max(1, min(n_frames, max(t.shape[0] for t in series)))
    fig, axes = plt.subplots(
        len(chosen), n_frames + 1, figsize=(1.6 * (n_frames + 1), 1.7 * len(chosen)), dpi=120,
        squeeze=False,
    )
    for row, record, tci, hr in zip(axes, chosen, series, hrs, strict=True):
        for k, ax in enumerate(row[:-1]):
            ax.set_xticks([])
            ax.set_yticks([])
            if k < tci.shape[0]:
                ax.imshow(tci[k], interpolation="nearest")
                if (~tci[k].any(axis=-1)).any():
                    for spine in ax.spines.values():
                        spine.set_edgecolor("red")
                        spine.set_linewidth(2)
            else:
                ax.axis("off")
            if row is axes[0]:
                ax.set_title(f"S2 t{k}", fontsize=8)
        row[0].set_ylabel(record.tile, fontsize=7)
        row[-1].imshow(hr)
        row[-1].set_xticks([])
        row[-1].set_yticks([])
        if row is axes[0]:
            row[-1].set_title("NAIP", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
