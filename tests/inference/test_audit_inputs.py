"""Audit of how inputs are read: masks GDAL keeps apart from the values."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.warp
from affine import Affine
from infer_helpers import read

from zoomsr import grid as tiles
from zoomsr.inference import InferenceOptions, Tiling, run_inference

_UTM = ("EPSG:32631", Affine(10, 0, 500000, 0, -10, 4100000))
_T = tiles.Tile(20000, 50000)
_LATTICE = ("EPSG:3857", Affine(tiles.LR_RESOLUTION, 0, _T.bounds.left, 0,
                                -tiles.LR_RESOLUTION, _T.bounds.top))


def _masked_tci(path, place, how):
    """A 64 px TCI whose left 16 columns are masked out by an alpha band or an internal mask,
    their values left as valid-looking colours (as JPEG-compressed masked files hold)."""
    crs, transform = place
    rgb = np.random.default_rng(0).integers(1, 250, (3, 64, 64)).astype(np.uint8)
    profile = {"driver": "GTiff", "width": 64, "height": 64, "dtype": "uint8", "crs": crs,
               "transform": transform, "photometric": "RGB"}
    mask = np.full((64, 64), 255, np.uint8)
    mask[:, :16] = 0
    if how == "alpha":
        with rasterio.open(path, "w", count=4, alpha="YES", **profile) as ds:
            ds.write(np.concatenate([rgb, mask[None]]))
    else:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), \
                rasterio.open(path, "w", count=3, **profile) as ds:
            ds.write(rgb)
            ds.write_mask(mask)
    return path


@pytest.mark.parametrize(("how", "place", "native"), [
    ("alpha", _UTM, True), ("alpha", _LATTICE, False), ("mask", _UTM, False),
    ("mask", _UTM, True), ("mask", _LATTICE, False),
])
def test_alpha_and_internal_masks_are_nodata(tmp_path, tiny_model, how, place, native):
    """An RGBA file's transparent pixels and an internal mask's masked ones came out valid
    where the file is read directly (--native-grid, or a file on the training lattice): the
    mask said data over the whole scene. (Warped: test_infer_masks.py.)"""
    src = _masked_tci(tmp_path / "S2_20240101_TCI.tif", place, how)
    out = tmp_path / "out.tif"
    run_inference(src, out, tiny_model(1), InferenceOptions(
        native_grid=native, tiling=Tiling(32, 8), progress=False))
    _, mask, meta = read(out)
    crs, transform = place
    edge = transform.c + 16 * transform.a  # the masked columns' right edge, in the file's CRS
    # the output's column centres along its middle row, in the file's CRS
    row = mask.shape[0] // 2
    xs, ys = zip(*(meta["transform"] @ (c + 0.5, row + 0.5) for c in range(mask.shape[1])),
                 strict=True)
    xs = np.array(rasterio.warp.transform(meta["crs"], crs, xs, ys)[0])
    assert xs.min() < edge
    assert not mask[row, xs < edge - transform.a].any()  # a pixel's margin: the bilinear warp
    right = transform.c + 64 * transform.a  # the file's right edge (the grid may go beyond)
    assert mask[row, (xs > edge + transform.a) & (xs < right - transform.a)].all()


def test_an_input_across_the_antimeridian_is_refused_on_the_training_grid(tmp_path, tiny_model):
    """Its box in Web Mercator spanned the world: a grid of 4194302 x 79 px, and a run that
    did not end. Refused, naming the file; --native-grid keeps its own grid."""
    from zoomsr.errors import DataError
    from zoomsr.inference import discover_frames
    from zoomsr.inference.grid import plan_grid

    path = tmp_path / "S2_20240101_TCI.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                       crs="EPSG:4326", photometric="RGB",
                       transform=Affine(0.0001, 0, 179.998, 0, -0.0001, -16.0)) as ds:
        ds.write(np.random.default_rng(0).integers(1, 250, (3, 64, 64)).astype(np.uint8))
    frames = discover_frames(path).frames
    with pytest.raises(DataError, match=rf"^{path}: crosses the antimeridian .*--native-grid"):
        plan_grid(frames, 4)
    grid = plan_grid(frames, 4, native=True)
    assert (grid.width, grid.height) == (64, 64)
