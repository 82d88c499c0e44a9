"""Dataset builder: raw Sentinel-2 scenes and high-resolution rasters -> S2-NAIP pairs.

- :mod:`~zoomsr.data.builder.sources`: finding scenes/images (SAFE, band files, manifests), dates
  (its names gathered from :mod:`~zoomsr.data.builder.scenes`,
  :mod:`~zoomsr.data.builder.dates`, :mod:`~zoomsr.data.builder.rasters`,
  :mod:`~zoomsr.data.builder.s2_names`, :mod:`~zoomsr.data.builder.discover` and
  :mod:`~zoomsr.data.builder.manifest`)
- :mod:`~zoomsr.data.builder.reproject`: warping onto the zoom-17 tile grid, block by block
- :mod:`~zoomsr.data.builder.cloud`: per-tile cloud fraction (SCL, MSK_CLASSI or brightness test)
- :mod:`~zoomsr.data.builder.splits`: spatially disjoint train/val/test splits
- :mod:`~zoomsr.data.builder.build`: the parallel, resumable build (its settings in
  :mod:`~zoomsr.data.builder.config`, planning in :mod:`~zoomsr.data.builder.plan`, one block's
  work in :mod:`~zoomsr.data.builder.block`, the process pool in
  :mod:`~zoomsr.data.builder.workers`, resuming in :mod:`~zoomsr.data.builder.state`, the
  index in :mod:`~zoomsr.data.builder.index`)
- :mod:`~zoomsr.data.builder.stac`: STAC search writing a manifest (needs pystac-client)
"""

from zoomsr.data.builder.build import build_dataset
from zoomsr.data.builder.config import BuildConfig, BuildResult
from zoomsr.data.builder.discover import discover_highres, discover_sentinel2
from zoomsr.data.builder.index import load_index
from zoomsr.data.builder.manifest import read_manifest
from zoomsr.data.builder.plan import with_dn_offsets
from zoomsr.data.builder.scenes import HRImage, S2Scene, Sources
from zoomsr.data.builder.splits import SplitConfig, load_split

__all__ = [
    "BuildConfig",
    "BuildResult",
    "HRImage",
    "S2Scene",
    "Sources",
    "SplitConfig",
    "build_dataset",
    "discover_highres",
    "discover_sentinel2",
    "load_index",
    "load_split",
    "read_manifest",
    "with_dn_offsets",
]
