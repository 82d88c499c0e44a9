"""Finding the builder's inputs: Sentinel-2 scenes and high-resolution images.

Sentinel-2 scenes come as SAFE folders (L1C or L2A), as loose band files (GeoTIFF, COG or JP2:
``TCI.tif``, ``B08.tif``, ``T29RKH_20200219T112111_B08_10m.jp2``, ``red.tif`` ...; files of one
folder sharing a name once the band token is removed form one scene), or as entries of a
manifest (``zoomsr data search``). High-resolution images are any georeferenced raster with
at least three bands (RGB first, e.g. NAIP's RGBN).

Acquisition dates come, in this order, from a STAC item JSON beside the files, the SAFE
metadata (``MTD_MSIL*.xml``), the file or folder name (``20200219`` or ``20200219T112111``),
the raster's tags (``TIFFTAG_DATETIME`` ...), or a date given by the caller.

Radiometry: every band other than TCI is stored by the builder as *harmonised digital
numbers*, ``DN + dn_offset`` (surface or top-of-atmosphere reflectance x 10000). From
processing baseline 04.00 (January 2022) ESA adds 1000 to every L1C and L2A band
(``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` = -1000 in the metadata), so ``dn_offset`` is -1000
for those products and 0 before, unless the distributor already removed it (Earth Search's
``earthsearch:boa_offset_applied``) or declares it as the STAC ``raster:bands`` ``offset``.

The names are defined in :mod:`~zoomsr.data.builder.scenes` (the dataclasses),
:mod:`~zoomsr.data.builder.dates`, :mod:`~zoomsr.data.builder.rasters`,
:mod:`~zoomsr.data.builder.s2_names` (Sentinel-2 file names and metadata),
:mod:`~zoomsr.data.builder.discover` and :mod:`~zoomsr.data.builder.manifest`; this module
gathers them.
"""

from __future__ import annotations

from zoomsr.data.builder.dates import date_from_name, parse_datetime
from zoomsr.data.builder.discover import discover_highres, discover_sentinel2, unique_highres
from zoomsr.data.builder.manifest import MANIFEST_FORMAT, read_manifest, write_manifest
from zoomsr.data.builder.rasters import (
    RASTER_ERRORS,
    RASTER_SUFFIXES,
    check_raster_data,
    gdal_reason,
    is_remote,
    raster_footprint,
)
from zoomsr.data.builder.s2_names import (
    BAND_ALIASES,
    SCENE_BANDS,
    band_of_file,
    default_dn_offset,
    stac_item_radiometry,
)
from zoomsr.data.builder.scenes import Footprint, HRImage, S2Scene, Sources

__all__ = [
    "BAND_ALIASES",
    "MANIFEST_FORMAT",
    "RASTER_ERRORS",
    "RASTER_SUFFIXES",
    "SCENE_BANDS",
    "Footprint",
    "HRImage",
    "S2Scene",
    "Sources",
    "band_of_file",
    "check_raster_data",
    "date_from_name",
    "default_dn_offset",
    "discover_highres",
    "discover_sentinel2",
    "gdal_reason",
    "is_remote",
    "parse_datetime",
    "raster_footprint",
    "read_manifest",
    "stac_item_radiometry",
    "unique_highres",
    "write_manifest",
]
