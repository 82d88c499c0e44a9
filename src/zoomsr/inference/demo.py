"""The offline demo, in two parts.

(a) Real Sentinel-2 pixels super-resolved with the Real-ESRGAN default. The real pixels are the
300 x 300 px, 10 m Sentinel-2 sample that the ``spyndex`` package ships (bands B02, B03, B04,
B08 as reflectance x 10000), read straight from its JSON file so neither spyndex's optional
xarray dependency nor the network is needed. The sample carries no georeference, so this part
writes a PNG: LR (nearest x4) | super-resolved | bicubic x4.

(b) A generated, georeferenced Sentinel-2-like time series (8 TCI GeoTIFFs, UTM zone 15N,
10 m pixels, from :func:`zoomsr.data.synthetic.generate_pair`) super-resolved by the packaged
multi-image default ``zoomsr-multi8`` through the real scene pipeline
(:func:`zoomsr.inference.run_inference`) into one GeoTIFF on the native grid (2.5 m pixels).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoomsr.errors import DataError, InputError
from zoomsr.inference.in_memory import super_resolve_array
from zoomsr.inference.inputs import to_tci
from zoomsr.inference.model import InferenceModel
from zoomsr.inference.options import InferenceOptions
from zoomsr.inference.pipeline import run_inference
from zoomsr.inference.windows import Tiling
from zoomsr.io.atomic import refuse_existing
from zoomsr.io.folders import require_writable_folder

SPYNDEX_FILE = "data/S2_10m.json"
SPYNDEX_BANDS = ("B02", "B03", "B04", "B08")
#: Outputs of the demo, relative to its folder.
PNG_NAME = "sentinel2_realesrgan.png"
SERIES_DIR = "lr_series"
SERIES_TIF = "sentinel2_series_x4.tif"
#: The PNG preview that the scene pipeline writes beside :data:`SERIES_TIF`.
SERIES_PREVIEW = "sentinel2_series_x4.preview.png"
#: Allowed ranges (inclusive): the side of the real crop (the spyndex sample is 300 px), the
#: side of the generated series (10 m px) and its number of dates.
CROP_SIZES = (16, 300)
SERIES_SIZES = (16, 1024)
SERIES_FRAMES = (1, 32)
#: The generated series: UTM zone 15N (central Iowa, where ``zoomsr data sample`` puts its
#: tiles), top-left corner in metres, 10 m Sentinel-2 pixels, one date every 5 days.
SERIES_CRS = "EPSG:32615"
SERIES_ORIGIN = (446_000.0, 4_606_000.0)
SERIES_PIXEL = 10.0
SERIES_FIRST_DATE = "2024-06-01"
SERIES_DAYS_APART = 5


def spyndex_sample() -> np.ndarray:
    """The spyndex Sentinel-2 sample as ``[4, 300, 300]`` float64 DN (B02, B03, B04, B08)."""
    try:
        spec = importlib.util.find_spec("spyndex")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the demo's real Sentinel-2 sample comes with the spyndex package: pip install spyndex"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SPYNDEX_FILE
    try:
        data = np.asarray(json.loads(path.read_text(encoding="utf-8")), dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the spyndex sample ({exc})") from None
    if data.ndim != 3 or data.shape[0] != len(SPYNDEX_BANDS):
        raise DataError(f"{path}: expected 4 bands of 2-D data, got shape {data.shape}")
    return data


@dataclass
class DemoResult:
    png: Path
    lr_size: int
    seconds: float


def run_demo(out_dir: str | Path, model: InferenceModel, size: int = 64,
             overwrite: bool = False) -> DemoResult:
    """Super-resolve the centre ``size`` x ``size`` px of the spyndex sample; write the PNG."""
    import time

    from zoomsr.io.png import write_png

    if model.n_images != 1:
        raise InputError(f"the demo uses a single-image model; {model.label} takes "
                         f"{model.n_images} images")
    if not CROP_SIZES[0] <= size <= CROP_SIZES[1]:
        raise InputError(f"--size must be in {CROP_SIZES[0]}..{CROP_SIZES[1]} px, got {size}")
    out = Path(out_dir)
    png = out / PNG_NAME
    refuse_existing([png], overwrite)
    data = spyndex_sample()
    top = (data.shape[1] - size) // 2
    left = (data.shape[2] - size) // 2
    rgb = data[[2, 1, 0], top : top + size, left : left + size]  # B04, B03, B02
    lr = to_tci(rgb, "dn", 0.0)  # spyndex's sample: reflectance x 10000, no offset
    start = time.perf_counter()
    window = min(size, 128)  # one window up to 128 px: no overlap to recompute
    sr, _ = super_resolve_array(lr[None], model, Tiling(window, min(32, window // 2)))
    seconds = time.perf_counter() - start
    s = model.scale
    lr_t = torch.from_numpy(lr)[None]
    near = F.interpolate(lr_t, scale_factor=s, mode="nearest")[0].numpy()
    bicubic = F.interpolate(lr_t, scale_factor=s, mode="bicubic")[0].numpy()
    panels = [np.clip(p, 0, 1) for p in (near, sr, bicubic)]
    gap = np.ones((3, size * s, 4), dtype=np.float32)
    strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=2)
    out.mkdir(parents=True, exist_ok=True)
    write_png(png, np.round(np.moveaxis(strip, 0, -1) * 255).astype(np.uint8))
    return DemoResult(png, size, seconds)


@dataclass
class SeriesDemoResult:
    """Part (b): the LR GeoTIFFs written, the super-resolved GeoTIFF and its preview."""

    lr_files: list[Path]
    tif: Path
    preview: Path | None
    lr_size: int
    seconds: float


def series_dates(n_frames: int) -> list[dt.date]:
    """The dates of the generated series: from :data:`SERIES_FIRST_DATE`, every
    :data:`SERIES_DAYS_APART` days."""
    first = dt.date.fromisoformat(SERIES_FIRST_DATE)
    return [first + dt.timedelta(days=SERIES_DAYS_APART * t) for t in range(n_frames)]


def write_series(folder: str | Path, size: int = 256, n_frames: int = 8,
                 seed: int = 0) -> list[Path]:
    """Write a synthetic Sentinel-2 TCI time series as georeferenced GeoTIFFs.

    ``n_frames`` uint8 RGB GeoTIFFs of ``size`` x ``size`` px, 10 m pixels in
    :data:`SERIES_CRS`, nodata 0 (the generator's black swath-edge regions), named by date
    (``YYYYMMDD_TCI.tif``). Deterministic for a seed. Returns the paths in date order.
    """
    import rasterio

    from zoomsr.data.synthetic import DegradationConfig, generate_pair
    from zoomsr.io.atomic import atomic_path

    if not SERIES_SIZES[0] <= size <= SERIES_SIZES[1]:
        raise InputError(f"the series side must be in {SERIES_SIZES[0]}..{SERIES_SIZES[1]} px, "
                         f"got {size}")
    if not SERIES_FRAMES[0] <= n_frames <= SERIES_FRAMES[1]:
        raise InputError(f"the series must have {SERIES_FRAMES[0]}..{SERIES_FRAMES[1]} frames, "
                         f"got {n_frames}")
    scale = DegradationConfig().scale
    pair = generate_pair(np.random.default_rng(seed), n_frames=n_frames, hr_size=size * scale)
    tci = pair.frames["tci"]  # [T, size, size, 3] uint8
    # Affine directly: rasterio's from_origin warns (Affine `*` deprecation).
    transform = rasterio.Affine(SERIES_PIXEL, 0.0, SERIES_ORIGIN[0],
                                0.0, -SERIES_PIXEL, SERIES_ORIGIN[1])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, date in enumerate(series_dates(n_frames)):
        path = folder / f"{date:%Y%m%d}_TCI.tif"
        profile = {"driver": "GTiff", "width": size, "height": size, "count": 3,
                   "dtype": "uint8", "crs": SERIES_CRS, "transform": transform, "nodata": 0,
                   "photometric": "RGB", "compress": "deflate"}
        with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as ds:
            ds.write(np.moveaxis(tci[t], -1, 0))
            ds.update_tags(TIFFTAG_DATETIME=f"{date:%Y:%m:%d} 00:00:00",
                           zoomsr_note=SERIES_NOTE)
        paths.append(path)
    return paths


#: The tag of every frame the series demo writes.
SERIES_NOTE = "SYNTHETIC Sentinel-2-like TCI (zoomsr demo)"


def drop_other_demo_frames(folder: Path, keep: list[Path]) -> list[Path]:
    """Remove the frames an earlier series demo left in ``folder`` (tagged
    :data:`SERIES_NOTE`) that are not among ``keep``: with ``--overwrite`` and fewer frames,
    the folder README calls the series held the earlier run's too (of another size). Other
    files are left. Returns those removed."""
    import rasterio

    removed = []
    kept = {p.resolve() for p in keep}
    for path in sorted(folder.glob("*_TCI.tif")):
        if path.resolve() in kept:
            continue
        try:
            with rasterio.open(path) as ds:
                ours = ds.tags().get("zoomsr_note") == SERIES_NOTE
        except rasterio.errors.RasterioError:
            continue
        if ours:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def run_series_demo(out_dir: str | Path, model: InferenceModel, size: int = 256,
                    n_frames: int = 8, seed: int = 0, overwrite: bool = False,
                    progress: bool = False) -> SeriesDemoResult:
    """Part (b): write the series to ``OUT/lr_series/`` and super-resolve it with ``model``
    into ``OUT/sentinel2_series_x4.tif`` (native UTM grid, pixel 10 m / scale) + a PNG preview.
    """
    import time

    if model.n_images < 2:
        raise InputError(f"the series demo needs a multi-image model; {model.label} takes one "
                         "image")
    out = Path(out_dir)
    tif = out / SERIES_TIF
    refuse_existing(series_outputs(out, n_frames), overwrite)
    files = write_series(out / SERIES_DIR, size=size, n_frames=n_frames, seed=seed)
    if overwrite:
        drop_other_demo_frames(out / SERIES_DIR, files)
    options = InferenceOptions(native_grid=True, preview=True, overwrite=True,
                               progress=progress, seed=seed)
    start = time.perf_counter()
    result = run_inference(files, tif, model, options)
    return SeriesDemoResult(files, result.output, result.preview, size,
                            time.perf_counter() - start)


def series_outputs(out_dir: str | Path, n_frames: int = 8) -> list[Path]:
    """The files part (b) writes in ``out_dir``: the GeoTIFF, its preview and the LR frames."""
    out = Path(out_dir)
    return [out / SERIES_TIF, out / SERIES_PREVIEW,
            *(out / SERIES_DIR / f"{d:%Y%m%d}_TCI.tif" for d in series_dates(n_frames))]


def demo_outputs(out_dir: str | Path, n_frames: int = 8) -> list[Path]:
    """The files the demo writes in ``out_dir`` (the CLI checks them all before starting)."""
    return [Path(out_dir) / PNG_NAME, *series_outputs(out_dir, n_frames)]


def check_demo_dir(out_dir: str | Path, n_frames: int = 8, overwrite: bool = False) -> None:
    """Check, before any work and without writing anything, that the demo can write its
    outputs in ``out_dir``: a folder (or one that can be created), writable, and holding none
    of :func:`demo_outputs` unless ``overwrite`` (as ``zoomsr infer``)."""
    out = Path(out_dir)
    require_writable_folder(out, create=False)
    series_dir = out / SERIES_DIR
    if os.path.lexists(series_dir):
        require_writable_folder(series_dir, create=False)
    outputs = demo_outputs(out, n_frames)
    for p in outputs:
        if os.path.lexists(p) and not p.is_file():
            raise InputError(f"{p}: exists and is not a file")
    existing = [p for p in outputs if p.is_file()]
    if existing and not overwrite:
        names = ", ".join(str(p) for p in existing[:2])
        if len(existing) > 2:
            names += f" and {len(existing) - 2} more demo output(s)"
        them = "them" if len(existing) > 1 else "it"
        verb = "exist" if len(existing) > 1 else "exists"
        raise InputError(f"{names}: already {verb} (pass --overwrite to replace {them})")
