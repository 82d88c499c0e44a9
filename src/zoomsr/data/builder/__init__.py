"""Dataset builder: raw Sentinel-2 scenes and high-resolution rasters -> S2-NAIP pairs.

- :mod:`~zoomsr.data.builder.sources`: finding scenes/images (SAFE, band files, manifests), dates
- :mod:`~zoomsr.data.builder.reproject`: warping onto the zoom-17 tile grid, block by block
- :mod:`~zoomsr.data.builder.cloud`: per-tile cloud fraction (SCL, MSK_CLASSI or brightness test)
- :mod:`~zoomsr.data.builder.splits`: spatially disjoint train/val/test splits
- :mod:`~zoomsr.data.builder.build`: the parallel, resumable build and its index
- :mod:`~zoomsr.data.builder.stac`: STAC search writing a manifest (needs pystac-client)
"""

from zoomsr.data.builder.build import (
    BuildConfig,
    BuildResult,
    build_dataset,
    load_index,
    with_dn_offsets,
)
from zoomsr.data.builder.sources import (
    HRImage,
    S2Scene,
    Sources,
    discover_highres,
    discover_sentinel2,
    read_manifest,
)
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
