"""Read an RGB image file (PNG, JPEG, GeoTIFF) as a ``[3, H, W]`` float32 tensor in [0, 1].

:func:`read_rgb_georef` also returns where a GeoTIFF lies (:class:`Georef`), so that a pair can
be checked to cover the same ground (:func:`check_same_place`) before it is scored.
:func:`read_rgb_masked` also returns which pixels hold data (a GeoTIFF's nodata value or mask, a
PNG's alpha; with ``nodata="exclude"`` also a float image's NaN/inf), for the metrics to score
the valid pixels only.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoomsr.errors import DataError, InputError, ZoomsrWarning, first_line

#: File extensions the evaluation reads (lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_TIFF = (".tif", ".tiff")
#: How nodata pixels are scored: ``exclude`` (only pixels valid in both images count; see
#: ``docs/metrics.md``) or ``black`` (scored as black, with a warning: the behaviour before).
NODATA_MODES = ("exclude", "black")


def check_nodata_mode(nodata: str, name: str = "nodata") -> str:
    """Return ``nodata`` if it is one of :data:`NODATA_MODES`, else raise ``InputError``."""
    if nodata not in NODATA_MODES:
        raise InputError(f"{name} must be one of {', '.join(NODATA_MODES)}, got {nodata!r}")
    return nodata


@dataclass(frozen=True)
class Georef:
    """Where a georeferenced raster lies: its CRS, ``(left, bottom, right, top)`` bounds in CRS
    units, and pixel size ``(x, y)`` (positive)."""

    crs: Any  # rasterio.crs.CRS (rasterio is imported lazily)
    bounds: tuple[float, float, float, float]
    res: tuple[float, float]


def _read_tiff(path: Path, tile: str | None = None
               ) -> tuple[np.ndarray, np.ndarray | None, Georef | None]:
    """``[3, H, W]`` in the file's type, ``[H, W]`` True where it has data (``None``: no
    nodata value or mask), and its :class:`Georef`; with ``tile`` (a zoom-17 tile id), the
    part of the mosaic on it (errors name the file and the tile)."""
    import rasterio
    from rasterio.enums import MaskFlags
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    where = path if tile is None else Path(f"{path} (tile {tile})")
    try:
        with warnings.catch_warnings():
            # plain TIFFs are valid inputs here; rasterio's two-line warning would break the
            # one-line-per-problem output of `zoomsr evaluate`
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.count < 3:
                    raise DataError(
                        f"{path}: {src.count} band(s); expected RGB (3 or more bands)"
                    )
                window = None
                if tile is not None:
                    window = tile_window(src.transform, src.width, src.height, tile)
                    if window is None:
                        raise DataError(f"{where}: the tile is not wholly inside the mosaic")
                arr = src.read((1, 2, 3), window=window)
                # a nodata value or a mask (`zoomsr infer` outputs carry one); not an alpha
                # band: GDAL takes a 4th band of 8-bit data for one, often NIR here
                flags = src.mask_flag_enums[0]
                valid = None
                if MaskFlags.all_valid not in flags and MaskFlags.alpha not in flags:
                    valid = _rgb_valid(src, window)
                geo = None
                if src.crs is not None and not src.transform.is_identity:
                    geo = Georef(src.crs, tuple(src.bounds),
                                 (abs(src.res[0]), abs(src.res[1])))
    except RasterioError as exc:
        # GDAL's own reason: rasterio's says "See previous exception", which is not shown
        raise DataError(f"{where}: not a readable GeoTIFF ({first_line(exc)})") from None
    return arr, valid, geo


def _rgb_valid(src: Any, window: Any = None) -> np.ndarray:
    """``[H, W]`` True where the open raster ``src`` has data (in ``window``): a pixel is
    nodata where R, G and B all are (GDAL's rule), so a nodata value of 0 does not make a
    valid pixel of red 0 nodata."""
    return np.maximum.reduce([src.read_masks(b, window=window) for b in (1, 2, 3)]) > 0


def _unsupported(where: Path, dtype: Any) -> DataError:
    return DataError(f"{where}: {dtype} pixels; expected 8-bit RGB or float in [0, 1] (scale "
                     "16-bit data to one of those first)")


class NoValidPixels(DataError):
    """Every pixel of an image (or of a mosaic's tile) is nodata."""


def _apply_nodata(
    where: Path, arr: np.ndarray, valid: np.ndarray | None, nodata: str
) -> np.ndarray | None:
    """Set the nodata pixels of ``arr`` (``[3, H, W]``) to 0 (black) in place; return where it
    has data (``None``: everywhere).

    ``black``: as :func:`_black_where_nodata` (a warning; an image without a valid pixel
    refused). ``exclude``: silently (the metrics leave those pixels out), a float image's
    NaN/inf pixels are nodata too, and an image without a valid pixel is returned as such.
    """
    if nodata == "exclude" and arr.dtype.kind == "f":
        finite = np.isfinite(arr).all(axis=0)
        if not finite.all():
            valid = finite if valid is None else valid & finite
    if valid is None or valid.all():
        return None
    if nodata == "black":
        _black_where_nodata(where, arr, valid)
    else:
        arr[:, ~valid] = 0
    return valid


def _black_where_nodata(path: Path, arr: np.ndarray, valid: np.ndarray) -> None:
    """Refuse an image ``arr`` (``[3, H, W]``) without a valid pixel; set the nodata pixels of
    one partly nodata to 0 (black) in place, and warn. Their stored value (a fill such as
    -9999, NaN or 255) is no colour: scored as it was, it was refused as out of range, or
    scored as white."""
    if valid.all():
        return
    if not valid.any():
        raise NoValidPixels(f"{path}: every pixel is nodata (masked); nothing to score")
    arr[:, ~valid] = 0
    share = 100.0 * (1.0 - float(valid.mean()))
    warnings.warn(f"{path}: {share:.3g} % of its pixels are nodata (masked), scored as black "
                  "there; crop the pair to the valid area for a fair score",
                  ZoomsrWarning, stacklevel=4)


def tile_window(transform: Any, width: int, height: int, tile: str) -> Any:
    """The pixel window (rasterio ``Window``) of zoom-17 ``tile`` in a raster of ``width`` x
    ``height`` px with ``transform`` (EPSG:3857), its edges at the nearest pixel edges; None
    when it is not wholly inside the raster."""
    from rasterio.windows import Window, from_bounds

    from zoomsr.grid import Tile

    b = Tile.parse(tile).bounds
    w = from_bounds(b.left, b.bottom, b.right, b.top, transform=transform)
    # to the nearest edge: rasterio's round_offsets floors, which read a mosaic 0.3 px off
    # the tiles' grid 0.7 px away
    col, row = round(w.col_off), round(w.row_off)
    cols, rows = round(w.col_off + w.width) - col, round(w.row_off + w.height) - row
    if col < 0 or row < 0 or col + cols > width or row + rows > height or not cols or not rows:
        return None
    return Window(col, row, cols, rows)


def read_tile_of_mosaic_masked(
    path: str | os.PathLike[str], tile: str, nodata: str = "exclude"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The part of the georeferenced RGB GeoTIFF ``path`` (EPSG:3857) on zoom-17 ``tile``, as
    ``[3, H, W]`` in its own type (uint8 or float32), and ``[H, W]`` bool True where it has
    data (``None``: everywhere). ``nodata="exclude"``: nodata pixels black without a warning
    (see :func:`read_rgb_masked`); ``"black"``: black with a warning, as whole files are. A
    part without a valid pixel raises :class:`NoValidPixels` (no prediction there)."""
    check_nodata_mode(nodata)
    p = Path(path)
    where = Path(f"{p} (tile {tile})")
    arr, valid, _ = _read_tiff(p, tile)
    valid = _apply_nodata(where, arr, valid, nodata)
    if valid is not None and not valid.any():
        raise NoValidPixels(f"{where}: every pixel is nodata (masked); nothing to score")
    if arr.dtype != np.uint8 and arr.dtype.kind != "f":
        raise _unsupported(where, arr.dtype)
    return (torch.from_numpy(np.ascontiguousarray(arr)),
            None if valid is None else torch.from_numpy(valid))


def _crs_name(crs: Any) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg is not None else crs.to_string()


def check_same_place(
    pred: Path, pred_geo: Georef | None, target: Path, target_geo: Georef | None
) -> None:
    """Refuse a pair of georeferenced files that do not cover the same ground.

    Nothing is checked unless both are georeferenced. Bounds may differ by up to half a target
    pixel (round-off of the writer); the pixel size is not compared here, so a finer prediction
    over the same bounds passes (the pair is then refused or not by its pixel size alone).

    Raises:
        DataError: naming both files, when the CRS or the bounds differ.
    """
    if pred_geo is None or target_geo is None:
        return
    if pred_geo.crs != target_geo.crs:
        raise DataError(
            f"{pred}: CRS {_crs_name(pred_geo.crs)} differs from its target {target} "
            f"({_crs_name(target_geo.crs)}); reproject the prediction onto the target's grid"
        )
    tol_x, tol_y = target_geo.res[0] / 2, target_geo.res[1] / 2
    off = [abs(a - b) for a, b in zip(pred_geo.bounds, target_geo.bounds, strict=True)]
    if max(off[0], off[2]) > tol_x or max(off[1], off[3]) > tol_y:
        raise DataError(
            f"{pred}: bounds {_fmt_bounds(pred_geo.bounds)} differ from its target {target} "
            f"{_fmt_bounds(target_geo.bounds)} by up to {max(off):.6g} (more than half a target "
            "pixel); crop or resample the prediction onto the target's grid"
        )


def _fmt_bounds(b: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{v:.10g}" for v in b) + ")"


def read_rgb(path: str | os.PathLike[str], as_float: bool = True) -> torch.Tensor:
    """Read an RGB image as ``[3, H, W]`` float32 in [0, 1].

    8-bit files are divided by 255 (with ``as_float=False`` they stay uint8, which the metrics
    accept and convert at their own precision); float GeoTIFFs are taken as already in [0, 1]
    (checked by the metrics). The first three bands of a GeoTIFF are R, G, B (a 4th, e.g. NIR,
    is ignored); an alpha channel of a PNG is dropped.

    Raises:
        DataError: naming the file when it is missing, corrupt, grey, or not 8-bit/float.
    """
    return read_rgb_georef(path, as_float)[0]


def read_rgb_georef(
    path: str | os.PathLike[str], as_float: bool = True
) -> tuple[torch.Tensor, Georef | None]:
    """:func:`read_rgb` and the file's :class:`Georef` (``None`` unless a GeoTIFF with a CRS and
    a geotransform)."""
    img, _, geo = read_rgb_masked(path, as_float, nodata="black")
    return img, geo


def read_rgb_masked(
    path: str | os.PathLike[str], as_float: bool = True, nodata: str = "exclude"
) -> tuple[torch.Tensor, torch.Tensor | None, Georef | None]:
    """:func:`read_rgb_georef`, and ``[H, W]`` bool True where the image has data (``None``:
    everywhere): a GeoTIFF's nodata value or mask (a pixel is nodata where R, G and B all
    are), a PNG's alpha 0, and with ``nodata="exclude"`` a float pixel with a NaN/inf band.

    Nodata pixels are set to 0 (black) either way. ``nodata="black"`` (as :func:`read_rgb`):
    with a warning giving their share, and an image without a valid pixel raises
    :class:`NoValidPixels`. ``nodata="exclude"``: silently (the metrics are to leave them out),
    and an image without a valid pixel is returned with an all-False mask.
    """
    check_nodata_mode(nodata)
    p = Path(path)
    geo = None
    if p.suffix.lower() in _TIFF:
        chw, valid, geo = _read_tiff(p)
        valid = _apply_nodata(p, chw, valid, nodata)
        arr = np.moveaxis(chw, 0, -1)
    else:
        from zoomsr.io.png import read_png

        arr = read_png(p)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 2):
            raise DataError(f"{p}: grey image; expected RGB")
        valid = arr[:, :, 3] > 0 if arr.shape[2] == 4 else None  # alpha 0: no data there
        arr = arr[:, :, :3]
        if valid is not None:
            chw = np.ascontiguousarray(np.moveaxis(arr, -1, 0))
            valid = _apply_nodata(p, chw, valid, nodata)
            arr = np.moveaxis(chw, 0, -1)
    if arr.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        if as_float:
            t = t.float() / 255.0
    elif arr.dtype.kind == "f":
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)
    else:
        raise _unsupported(p, arr.dtype)
    return t.contiguous(), None if valid is None else torch.from_numpy(valid), geo
