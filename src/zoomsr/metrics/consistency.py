"""LR consistency: how well a super-resolved image, brought back to the input's resolution,
agrees with the input. It needs no ground truth, so it applies to any scene `zoomsr infer`
produced: a colour shift, a brightness drift between windows, or content the inputs do not
hold (a hallucinated building changes the LR pixels it falls in) shows up as disagreement.

The SR image is averaged over each ``scale x scale`` block (a box filter: the LR pixel as the
sum of the ground it covers) and compared with the LR image, band by band, over the pixels
both say are valid: the mean difference (``bias``: SR brighter when positive), the mean
absolute difference, the RMSE and the PSNR. Agreement is necessary, not sufficient: a blurry
upsampling agrees perfectly. Use it beside the reference metrics, not instead of them.

- :func:`lr_consistency`: arrays in memory (``[B, C, H, W]`` SR, ``[B, C, h, w]`` LR).
- :func:`scene_consistency`: a `zoomsr infer` output and the LR mosaic it wrote beside it
  (``--save-lr``: ``OUT.lr.tif``, the mean of the valid frames on the same grid), read in
  windows (memory does not grow with the scene), optionally writing a map of the
  disagreement on the LR grid.
"""

from __future__ import annotations

import contextlib
import json
import math
import operator
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias

from zoomsr.errors import DataError, InputError

#: LR pixels a side read at a time by :func:`scene_consistency` (x scale for the SR window).
WINDOW = 512


@dataclass(frozen=True)
class BandConsistency:
    """One band's agreement, in the images' own units (8-bit levels for `zoomsr infer`'s
    files, [0, 1] for :func:`lr_consistency`'s arrays); ``psnr`` in dB against ``peak``."""

    band: str
    bias: float
    mae: float
    rmse: float
    psnr: float


@dataclass(frozen=True)
class Consistency:
    """Every band's :class:`BandConsistency`, over ``pixels`` LR pixels valid in both."""

    scale: int
    pixels: int
    peak: float
    bands: list[BandConsistency]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def downsample(sr: torch.Tensor, scale: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, C, H / scale, W / scale]``: the mean of each block."""
    return F.avg_pool2d(sr, scale)


def lr_consistency(sr: torch.Tensor | np.ndarray, lr: torch.Tensor | np.ndarray,
                   scale: int | None = None, valid: torch.Tensor | np.ndarray | None = None,
                   *, peak: float = 1.0, bands: list[str] | None = None) -> Consistency:
    """Agreement of ``sr`` ``[B, C, H, W]`` with ``lr`` ``[B, C, h, w]`` (same units, e.g.
    both in [0, 1]); ``scale`` = H / h (inferred when None); ``valid`` ``[B, h, w]`` bool:
    the LR pixels to count (default: all). ``bands``: names for the rows (default
    ``band1``...).

    Raises:
        InputError: ranks, channels or sizes that do not fit, a non-integer scale, NaN, or
            no valid pixel.
    """
    s = _as_tensor(sr, "sr")
    low = _as_tensor(lr, "lr")
    if s.ndim != 4 or low.ndim != 4:
        raise InputError(f"consistency: sr and lr must be [B, C, H, W], got {list(s.shape)} "
                         f"and {list(low.shape)}")
    if s.shape[:2] != low.shape[:2]:
        raise InputError(f"consistency: sr {list(s.shape)} and lr {list(low.shape)} differ in "
                         "batch or channels")
    if scale is None:
        scale = s.shape[-1] // max(1, low.shape[-1])
    try:
        if isinstance(scale, bool):
            raise TypeError
        scale = operator.index(scale)  # (NumPy's and torch's integers too)
    except TypeError:
        raise InputError(f"consistency: scale must be an integer, got {scale!r}") from None
    if scale < 1 or tuple(s.shape[-2:]) != (low.shape[-2] * scale, low.shape[-1] * scale):
        raise InputError(f"consistency: sr {s.shape[-2]}x{s.shape[-1]} is not lr "
                         f"{low.shape[-2]}x{low.shape[-1]} times {scale}")
    mask = torch.ones(low.shape[0], *low.shape[-2:], dtype=torch.bool) if valid is None \
        else torch.as_tensor(valid).bool()
    mask = mask.to(low.device)
    if tuple(mask.shape) != (low.shape[0], *low.shape[-2:]):
        raise InputError(f"consistency: valid {list(mask.shape)} is not [B, h, w] = "
                         f"{[low.shape[0], *low.shape[-2:]]}")
    acc = _Accumulator(s.shape[1])
    acc.add(downsample(s, scale) - low, mask)
    return acc.result(scale, peak, bands)


def scene_consistency(
    sr_path: str | os.PathLike[str],
    lr_path: str | os.PathLike[str] | None = None,
    *,
    map_path: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Consistency:
    """Agreement of a `zoomsr infer` output ``sr_path`` (its RGB bands and mask) with the LR
    mosaic ``lr_path`` (default: ``OUT.lr.tif`` beside it, as ``--save-lr`` writes it), in
    8-bit levels, over the LR pixels valid in both (an LR pixel counts when its block of SR
    pixels is all valid). ``map_path``: also write the mean absolute difference over the
    bands per LR pixel (float32 levels, NaN where not counted), georeferenced as the LR,
    written to a temporary file and renamed when complete. ``progress(done, total)``: windows.

    Raises:
        DataError: a missing or unreadable file; grids that are not the same place at an
            integer scale; fewer than 3 bands; no LR pixel valid in both.
    """
    import rasterio
    from rasterio.windows import Window

    from zoomsr.io.atomic import atomic_path

    sr_file = Path(sr_path)
    lr_file = Path(lr_path) if lr_path is not None else sr_file.with_name(
        sr_file.stem + ".lr.tif")
    for path, what in ((sr_file, "SR image"), (lr_file, "LR mosaic")):
        if not path.is_file():
            hint = (" (write it with `zoomsr infer --save-lr`, or give --lr)"
                    if what == "LR mosaic" and lr_path is None else "")
            raise DataError(f"{path}: {what} not found{hint}")
    from zoomsr.inference.inputs.rasters import open_raster

    with open_raster(sr_file) as sr, open_raster(lr_file) as lr, \
            contextlib.ExitStack() as stack:
        scale = _check_grids(sr, lr, sr_file, lr_file)
        acc = _Accumulator(3)
        windows = list(_windows(lr.width, lr.height))
        dst = None
        if map_path is not None:  # written window by window, renamed into place when whole
            tmp = stack.enter_context(atomic_path(Path(map_path)))
            dst = stack.enter_context(rasterio.open(
                tmp, "w", driver="GTiff", width=lr.width, height=lr.height, count=1,
                dtype="float32", crs=lr.crs, transform=lr.transform, nodata=float("nan"),
                tiled=True, blockxsize=256, blockysize=256, compress="deflate", predictor=3))
            dst.update_tags(zoomsr_consistency=json.dumps(
                {"sr": str(sr_file.resolve()), "lr": str(lr_file.resolve()), "scale": scale,
                 "units": "mean absolute difference over red, green, blue (8-bit levels)"}))
        for done, (row, col, h, w) in enumerate(windows, 1):
            low = lr.read([1, 2, 3], window=Window(col, row, w, h)).astype(np.float32)
            low_ok = lr.dataset_mask(window=Window(col, row, w, h)) > 0
            big = Window(col * scale, row * scale, w * scale, h * scale)
            high = sr.read([1, 2, 3], window=big).astype(np.float32)
            high_ok = sr.dataset_mask(window=big) > 0
            ok = low_ok & high_ok.reshape(h, scale, w, scale).all(axis=(1, 3))
            diff = downsample(torch.from_numpy(high)[None], scale)[0] - torch.from_numpy(low)
            try:
                acc.add(diff[None], torch.from_numpy(ok)[None])
            except InputError:
                raise DataError(f"{sr_file} or {lr_file}: NaN or infinite values in valid "
                                "pixels (a float raster without a nodata value?)") from None
            if dst is not None:
                mean_abs = diff.abs().mean(0).numpy()
                dst.write(np.where(ok, mean_abs, np.nan).astype(np.float32), 1,
                          window=Window(col, row, w, h))
            if progress is not None:
                progress(done, len(windows))
        # before the map is renamed into place: no map of a comparison that failed
        return acc.result(scale, 255.0, ["red", "green", "blue"], DataError(
            f"{sr_file} and {lr_file}: no LR pixel is valid in both"))


def write_map_png(map_path: str | os.PathLike[str], png_path: str | os.PathLike[str],
                  result: Consistency | None = None, max_side: int = 1024,
                  label: str | None = None) -> Path:
    """A quick look at a :func:`scene_consistency` map: brought down to at most ``max_side``
    px a side, each pixel the largest value of the block it covers (a one-pixel seam or
    vessel stays visible), coloured from 0 to the 99.9th percentile (brighter: more
    disagreement; above it, the top colour: the colour bar's arrow), not-counted pixels grey,
    the map's largest value and, from ``result``, each band's MAE in the title (``label``:
    what it is of, default the map's name); a PNG written atomically. A long thin map is
    drawn no taller than 1.5 times its width (nor flatter than 1/4)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from zoomsr.io.atomic import atomic_write_all

    values = _max_pooled(Path(map_path), max_side)
    shape = values.shape
    finite = values[np.isfinite(values)]
    top = float(np.percentile(finite, 99.9)) if finite.size else 1.0
    highest = float(finite.max()) if finite.size else math.nan
    aspect = min(max(shape[0] / shape[1], 0.25), 1.5)  # (a 3000 x 1 map: a 593 Mpx PNG)
    fig = Figure(figsize=(7, 7 * aspect + 1.0), layout="constrained")
    ax = fig.add_subplot()
    cmap = _cmap()
    shown = ax.imshow(values, cmap=cmap, vmin=0, vmax=max(top, 1e-6), interpolation="nearest",
                      aspect="auto")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(shown, ax=ax, shrink=0.8, extend="max" if highest > top else "neither",
                 label="|output averaged to LR - LR mosaic|, mean of the bands (8-bit levels)")
    title = (f"LR consistency: {label or Path(map_path).name} (largest {highest:.1f} levels; "
             f"brightest: {top:.1f} and over)")
    if result is not None:
        maes = ", ".join(f"{b.band} {b.mae:.2f}" for b in result.bands)
        title += f"\nMAE {maes} (x{result.scale}, {result.pixels} LR px)"
    ax.set_title(title, fontsize=9)
    target = Path(png_path)
    if target.suffix.lower() != ".png":
        raise InputError(f"{target}: the plot is a PNG; name it .png")
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_all({target: buf.getvalue()})
    return target


def _max_pooled(path: Path, max_side: int) -> np.ndarray:
    """The map at ``path`` brought down to at most ``max_side`` px a side, each pixel the
    largest (non-NaN) value of its block; read in strips (the map may be a scene's)."""
    from rasterio.windows import Window

    from zoomsr.inference.inputs.rasters import open_raster

    with open_raster(path) as src:
        ky = math.ceil(src.height / max_side)
        kx = math.ceil(src.width / max_side)
        strip = ky * max(1, 1024 // ky)
        parts = []
        for row in range(0, src.height, strip):
            block = src.read(1, window=Window(0, row, src.width, min(strip, src.height - row)),
                             masked=True).filled(np.nan)
            with warnings.catch_warnings():  # (an all-NaN block stays NaN, not counted)
                warnings.simplefilter("ignore", RuntimeWarning)
                pooled = np.fmax.reduceat(block, np.arange(0, block.shape[0], ky), axis=0)
                parts.append(np.fmax.reduceat(pooled, np.arange(0, src.width, kx), axis=1))
    return np.vstack(parts)


def _cmap() -> Any:
    """magma with its bad (NaN: not counted) pixels grey."""
    from matplotlib import colormaps

    cmap = colormaps["magma"].copy()
    cmap.set_bad("0.6")
    return cmap


class _Accumulator:
    """Per-band sums of differences (float64: a scene has billions of pixels)."""

    def __init__(self, channels: int) -> None:
        self.sum = np.zeros(channels)
        self.abs = np.zeros(channels)
        self.sq = np.zeros(channels)
        self.n = 0

    def add(self, diff: torch.Tensor, valid: torch.Tensor) -> None:
        """``diff`` ``[B, C, h, w]``, ``valid`` ``[B, h, w]`` bool (on any device; the sums
        are kept on the CPU). Non-finite values count as an error where valid only (NaN is
        nodata elsewhere)."""
        d = diff.permute(1, 0, 2, 3)[:, valid].double().cpu()  # [C, n]
        if not torch.isfinite(d).all():
            raise InputError("consistency: NaN or infinite values in valid pixels")
        self.sum += d.sum(1).numpy()
        self.abs += d.abs().sum(1).numpy()
        self.sq += (d * d).sum(1).numpy()
        self.n += int(valid.sum())

    def result(self, scale: int, peak: float, bands: list[str] | None,
               empty: Exception | None = None) -> Consistency:
        if self.n == 0:
            raise empty or InputError("consistency: no valid pixel")
        names = bands or [f"band{i + 1}" for i in range(len(self.sum))]
        rows = []
        for name, total, absolute, squared in zip(names, self.sum, self.abs, self.sq,
                                                  strict=True):
            mse = squared / self.n
            rows.append(BandConsistency(
                name, float(total / self.n), float(absolute / self.n), math.sqrt(mse),
                math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)))
        return Consistency(scale, self.n, peak, rows)


def _as_tensor(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if not t.is_floating_point():
        raise InputError(f"consistency: {name} is {t.dtype}; give floats (e.g. uint8 / 255)")
    return t.float()


def _windows(width: int, height: int) -> Iterator[tuple[int, int, int, int]]:
    for row in range(0, height, WINDOW):
        for col in range(0, width, WINDOW):
            yield row, col, min(WINDOW, height - row), min(WINDOW, width - col)


def _check_grids(sr: Any, lr: Any, sr_file: Path, lr_file: Path) -> int:
    """The integer scale from ``lr``'s grid to ``sr``'s; :class:`DataError` unless both have
    3 or more bands and cover the same place on aligned grids."""
    for ds, path in ((sr, sr_file), (lr, lr_file)):
        if ds.count < 3:
            raise DataError(f"{path}: {ds.count} band(s); expected RGB (a `zoomsr infer` "
                            "output or its LR mosaic)")
    if sr.crs != lr.crs:
        raise DataError(f"{sr_file} ({sr.crs}) and {lr_file} ({lr.crs}) are in different "
                        "CRSs: give the LR mosaic written beside the output (--save-lr)")
    ratio = lr.res[0] / sr.res[0]
    scale = round(ratio)
    if scale < 1 or abs(ratio - scale) > 1e-6 * scale \
            or (sr.width, sr.height) != (lr.width * scale, lr.height * scale) \
            or not np.allclose(tuple(sr.bounds), tuple(lr.bounds),
                               atol=1e-6 * max(1.0, abs(lr.res[0]))):
        raise DataError(f"{sr_file} ({sr.width}x{sr.height} px of {sr.res[0]:g}) is not "
                        f"{lr_file} ({lr.width}x{lr.height} px of {lr.res[0]:g}) at an integer "
                        "scale over the same bounds: give the LR mosaic written beside the "
                        "output (--save-lr)")
    if scale == 1:  # averaged over 1 x 1 blocks: the image against itself, "perfect"
        same = " (the same file)" if sr_file.resolve() == lr_file.resolve() else ""
        raise DataError(f"{lr_file}: at the pixel size of {sr_file} ({sr.res[0]:g}){same}; "
                        "the LR is the coarser input: give the LR mosaic written beside the "
                        "output (--save-lr)")
    return scale


__all__ = ["BandConsistency", "Consistency", "downsample", "lr_consistency",
           "scene_consistency", "write_map_png"]
