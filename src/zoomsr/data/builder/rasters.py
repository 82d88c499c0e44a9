"""Opening the builder's raster files: the file extensions read as rasters, the errors
reading can raise and their telling line, a raster's footprint, and the cheap check that
a local file's pixel data is not cut short.
"""

from __future__ import annotations

import math
import os
import warnings

import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from zoomsr.data.builder.scenes import Footprint
from zoomsr.errors import DataError, first_line
from zoomsr.grid import ground_pixel_m

try:  # GDAL's own errors: rasterio raises them directly or as the cause of its own
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - a rasterio without this private module
    CPLE_BaseError = RasterioError
#: What reading a raster can raise (rasterio's errors and GDAL's).
RASTER_ERRORS: tuple[type[Exception], ...] = (RasterioError, CPLE_BaseError)

#: File extensions read as rasters.
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")


def is_remote(path: str) -> bool:
    return "://" in path or path.startswith("/vsi")


def raster_footprint(path: str, check_data: bool = False) -> tuple[Footprint, dict]:
    """Open ``path`` (header only): its EPSG:3857 footprint and a small profile summary.

    With ``check_data``, also check cheaply that the file's pixel data is all there
    (:func:`check_raster_data`: a truncated or damaged file fails here, not halfway through a
    build). Raises :class:`DataError` naming the file when it cannot be read, is truncated or
    is not georeferenced.
    """
    try:
        with warnings.catch_warnings():
            # Not being georeferenced is reported below as an error naming the file.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
        with src:
            if src.crs is None:
                raise DataError(f"{path}: raster has no CRS (not georeferenced)")
            if src.transform.is_identity:
                raise DataError(f"{path}: raster has no geotransform (not georeferenced)")
            bounds = transform_bounds(src.crs, "EPSG:3857", *src.bounds, densify_pts=21)
            if not all(math.isfinite(b) for b in bounds):
                # (it became "no overlap ... [inf, inf, inf, inf]", naming no cause)
                raise DataError(
                    f"{path}: its bounds {tuple(round(b, 3) for b in src.bounds)} are out of "
                    f"range for its CRS {src.crs.to_string()} (a wrong CRS tag, e.g. EPSG:4326 "
                    "on coordinates in metres?)")
            info = {"count": src.count, "dtype": src.dtypes[0], "tags": src.tags(),
                    "res": src.res, "crs": src.crs.to_string(),
                    "pixel_m": max(ground_pixel_m(src))}
            if check_data:
                check_raster_data(src, path)
    except RASTER_ERRORS as exc:
        raise DataError(f"{path}: cannot read raster ({gdal_reason(exc)})") from None
    return Footprint(*bounds, crs=info["crs"]), info  # type: ignore[misc]  # (4 bounds)


def gdal_reason(exc: BaseException) -> str:
    """The most telling line of a rasterio/GDAL error: the first GDAL message in the chain
    (rasterio's own, e.g. "Chunk and warp failed", says nothing about the file)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, CPLE_BaseError) and str(seen).strip():
            return str(seen).strip().splitlines()[0]
        seen = seen.__cause__ or seen.__context__
    return first_line(exc)


def check_raster_data(src: rasterio.DatasetReader, path: str) -> None:
    """Raise :class:`DataError` when the pixel data of an open local raster is cut short.

    GeoTIFF/COG: every tile or strip of every band and overview must end within the file
    (its offset + byte count, from the header; no pixel is decoded), which catches a truncated
    download or copy wherever the cut falls. Other formats (JP2, VRT ...): the last pixel of
    every band is read (JPEG 2000 keeps the last tile at the end of the file). Remote files
    (URLs, ``/vsi...``) are not checked here; a read failure during the build names them.
    """
    if is_remote(path) or not os.path.isfile(path):
        return
    if src.driver != "GTiff":
        if src.width and src.height:
            try:
                src.read(window=Window(src.width - 1, src.height - 1, 1, 1))
            except RASTER_ERRORS as exc:
                # a VRT's own file is text: what fails is a file it points to (named by GDAL)
                what = ("unreadable" if src.driver == "VRT"
                        else "unreadable, the file is truncated or damaged")
                raise DataError(f"{path}: {what}: its last pixel cannot be read "
                                f"({gdal_reason(exc)})") from None
        return
    size = os.path.getsize(path)
    _check_tiff_blocks(src, path, size, "")
    if any(str(f).lower().endswith(".ovr") for f in src.files):
        return  # external overviews: their blocks are in the .ovr file
    for k in range(len(src.overviews(1)) if src.count else 0):
        with rasterio.open(path, overview_level=k) as ovr:  # its own block size
            _check_tiff_blocks(ovr, path, size, f" of overview {k + 1}")


def _check_tiff_blocks(src: rasterio.DatasetReader, path: str, size: int, where: str) -> None:
    interleave = (src.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE") or "").upper()
    # Pixel-interleaved files share one set of blocks between bands.
    for bidx in range(1, src.count + 1) if interleave == "BAND" else (1,):
        block_h, block_w = src.block_shapes[bidx - 1]
        for y in range(-(-src.height // block_h)):
            for x in range(-(-src.width // block_w)):
                offset = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=bidx)
                if offset is None:
                    continue  # a sparse block: never written, read as nodata
                nbytes = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=bidx)
                end = int(offset) + int(nbytes or 0)
                if end > size:
                    raise DataError(
                        f"{path}: unreadable, the file is truncated or damaged: block {x},{y} "
                        f"of band {bidx}{where} ends at byte {end} but the file has {size} "
                        "bytes; download or copy it again")


__all__ = ["RASTER_ERRORS", "RASTER_SUFFIXES", "check_raster_data", "gdal_reason",
           "is_remote", "raster_footprint"]
