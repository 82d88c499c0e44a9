"""Strip preparation written once for NumPy and torch: scaling, validity, scores, gap filling.

Scene rows are prepared with torch on the model's device; S2-NAIP chunks with NumPy. Both must
agree, and the per-column window scores must equal per-window counts.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import rasterio
import torch
from infer_helpers import write_frames
from rasterio.windows import Window

from zoomsr.inference import discover_frames
from zoomsr.inference.arrays import to_tensor
from zoomsr.inference.assemble import to_uint8
from zoomsr.inference.frames import (
    count_clean,
    fill_gaps,
    frame_scores,
    unusable,
    window_scores,
)
from zoomsr.inference.grid import plan_grid
from zoomsr.inference.inputs import to_band16, to_tci, valid_pixels
from zoomsr.inference.reader import SceneReader

CPU = torch.device("cpu")


def _strip(seed: int = 0, t: int = 5, h: int = 12, w: int = 40):
    rng = np.random.default_rng(seed)
    pixels = rng.random((t, 4, h, w), dtype=np.float32)
    pixels[:, :3][rng.random((t, 3, h, w)) < 0.5] = 1.0  # some pixels saturate in all of RGB
    valid = rng.random((t, h, w)) > 0.15
    valid[1] = True  # a frame with no nodata at all
    pixels *= valid[:, None]
    cloudy = (rng.random((t, h, w)) < 0.1) & valid
    return pixels, valid, cloudy


@pytest.mark.parametrize("with_cloudy", [False, True])
def test_window_scores_equal_per_window_counts(with_cloudy):
    pixels, valid, cloudy = _strip()
    cloudy = cloudy if with_cloudy else None
    spans = [(0, 16), (12, 16), (24, 16), (5, 1), (0, 40)]  # overlapping, 1 px, the whole strip
    for as_array in (np.asarray, torch.from_numpy):
        scores, clean = window_scores(
            as_array(pixels), as_array(valid), None if cloudy is None else as_array(cloudy),
            spans)
        scores, clean = np.asarray(scores), np.asarray(clean)
        assert scores.shape == (len(spans), len(valid)) and clean.shape == (len(spans),)
        for j, (x, w) in enumerate(spans):
            c = slice(x, x + w)
            want = frame_scores(pixels[..., c], valid[..., c],
                                None if cloudy is None else cloudy[..., c])
            assert np.array_equal(scores[j], want)
            assert clean[j] == count_clean(valid[..., c])
    # saturated and cloudy pixels count once each, nodata once
    bad = unusable(pixels, valid, cloudy)
    assert bad.sum() == frame_scores(pixels, valid, cloudy).sum()
    assert clean[-1] == 1  # only frame 1 is free of nodata over the whole strip


def test_gap_filling_and_uint8_agree_between_numpy_and_torch():
    pixels, valid, _ = _strip(1)
    valid[:, 0, 0] = False  # no frame valid there: 0, and not in the data mask
    pixels *= valid[:, None]
    filled, any_valid, mean = fill_gaps(pixels, valid)
    filled_t, any_valid_t, mean_t = fill_gaps(torch.from_numpy(pixels), torch.from_numpy(valid))
    np.testing.assert_allclose(filled_t.numpy(), filled, rtol=0, atol=1e-7)
    np.testing.assert_allclose(mean_t.numpy(), mean, rtol=0, atol=1e-7)
    assert np.array_equal(any_valid_t.numpy(), any_valid) and not any_valid[0, 0]
    assert (filled[:, :, 0, 0] == 0).all()
    np.testing.assert_array_equal(filled[valid[:, None].repeat(4, 1)],
                                  pixels[valid[:, None].repeat(4, 1)])
    x = np.array([-0.2, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 1.7], np.float32)
    assert to_uint8(x).tolist() == to_uint8(torch.from_numpy(x)).tolist() == [
        0, 0, 0, 2, 128, 255, 255]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64"])
def test_scaling_and_validity_agree_between_numpy_and_torch(dtype):
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype) if dtype.startswith(("u", "i")) else None
    top = info.max if info else 1.5
    raw = (rng.random((3, 8, 9)) * top).astype(dtype)
    raw[:, 0, 0] = 0  # black: nodata
    raw[1, 0, 1] = 7  # the file's nodata value in one channel
    if info is None:
        raw[2, 0, 2], raw[0, 0, 3] = np.nan, np.inf
    t = to_tensor(raw, CPU)
    assert t.dtype != torch.int16 or dtype == "int16"  # uint16 comes back widened, not signed
    # float64 travels as float32 (Apple GPUs have none; scaling is float32 anyway)
    assert t.dtype == (torch.float32 if dtype == "float64" else t.dtype)
    assert np.array_equal(t.numpy(), raw.astype(t.numpy().dtype), equal_nan=True)
    ok = valid_pixels(raw, 7, None)
    assert np.array_equal(valid_pixels(t, 7, None).numpy(), ok)
    assert not ok[0, :2].any() and ok.sum() == 8 * 9 - (4 if info is None else 2)
    radiometries = {"uint8": ["tci"], "uint16": ["dn"], "int16": ["dn"],
                    "float32": ["reflectance"], "float64": ["reflectance"]}[dtype]
    for radiometry in radiometries:
        a = np.where(ok, to_tci(raw, radiometry, 1000.0), 0)
        b = torch.where(torch.from_numpy(ok), to_tci(t, radiometry, 1000.0), 0).numpy()
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-7)
        assert a.dtype == b.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
        if radiometry != "tci":
            a = np.where(ok, to_band16(raw, radiometry, 1000.0), 0)
            b = torch.where(torch.from_numpy(ok), to_band16(t, radiometry, 1000.0), 0).numpy()
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-7)


def test_read_only_arrays_convert_without_warning():
    import warnings

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    x.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert to_tensor(x, CPU).tolist() == x.tolist()


def test_uint16_above_int16_range_travels_intact():
    raw = np.array([[[0, 1, 32767, 32768, 40000, 65535]]], np.uint16)
    t = to_tensor(raw, CPU)
    assert t.tolist() == raw.tolist()
    scaled = to_tci(t, "dn", 1000.0).numpy()
    np.testing.assert_allclose(scaled, to_tci(raw, "dn", 1000.0), rtol=0, atol=1e-7)
    assert scaled[0, 0, -1] == 1.0 and scaled[0, 0, 2] == 1.0  # bright: clipped, not negative


def test_scene_reader_strip_scales_the_file_values(tmp_path):
    """``read_strip`` (tensors: what scene rows use) gives the file's DN scaled with NumPy's
    ``to_tci``, 0 and invalid at nodata, and ``read`` gives the same as NumPy arrays."""
    holes = {0: (slice(0, 10), slice(0, 20)), 2: (slice(20, 30), slice(5, 15))}
    paths = write_frames(tmp_path / "in", n=3, size=(32, 40), dtype="uint16", holes=holes)
    frames = discover_frames(paths, dn_offset=1000.0).frames
    grid = plan_grid(frames, 4)
    assert (grid.width, grid.height) == (40, 32)  # on the training lattice: read, not warped
    reader = SceneReader(frames, grid)
    try:
        window = Window(3, 2, 30, 25)
        pixels, valid, cloudy = reader.read_strip(window, CPU)
        a, v, c = reader.read(window)
    finally:
        reader.close()
    assert cloudy is None and c is None
    assert pixels.dtype == torch.float32 and valid.dtype == torch.bool
    assert np.array_equal(pixels.numpy(), a) and np.array_equal(valid.numpy(), v)
    for i, path in enumerate(paths):
        with rasterio.open(path) as ds:
            raw = ds.read(window=window)
        ok = raw.any(0)
        assert np.array_equal(v[i], ok)
        np.testing.assert_allclose(a[i], np.where(ok, to_tci(raw, "dn", 1000.0), 0),
                                   rtol=0, atol=1e-7)
    assert 0.05 < (~v).mean() < 0.6


def test_strip_preparation_stays_on_its_device(tmp_path):
    """Run on "meta" tensors, where (as on a GPU) mixing in a CPU tensor raises: reading,
    scaling, validity, SCL, gap filling, scores and the uint8 mosaic all stay on the device."""
    meta = torch.device("meta")
    with pytest.raises(RuntimeError, match="device"):  # the premise: mixing is refused
        torch.zeros(3, device=meta) + torch.ones(3)
    holes = {0: (slice(0, 10), slice(0, 20))}
    paths = write_frames(tmp_path / "in", n=3, size=(32, 40), crs="EPSG:32631",
                         dtype="uint16", holes=holes)
    frames = discover_frames(paths, dn_offset=1000.0).frames
    frames[1] = dataclasses.replace(frames[1], scl=_scl(tmp_path / "scl.tif", frames[1]))
    reader = SceneReader(frames, plan_grid(frames, 4))
    try:
        pixels, valid, cloudy = reader.read_strip(Window(0, 0, 30, 20), meta)
    finally:
        reader.close()
    filled, any_valid, mean = fill_gaps(pixels, valid)
    bad = unusable(pixels, valid, cloudy)
    outputs = (pixels, valid, cloudy, filled, any_valid, mean, to_uint8(mean), bad,
               to_tensor(np.arange(3), meta))
    assert all(t.device == meta for t in outputs)
    assert filled.shape == (3, 3, 20, 30) and bad.shape == (3, 20, 30)
    assert cloudy.dtype == torch.bool
    # window scores come back to the host in one transfer (which meta tensors cannot make)
    with pytest.raises(NotImplementedError, match="meta"):
        window_scores(pixels, valid, cloudy, [(0, 16), (14, 16)])


def _scl(path, frame):
    """An SCL file (classes, 8-bit) on ``frame``'s grid, as discovery describes one."""
    from zoomsr.inference.inputs import AuxBand

    classes = np.random.default_rng(0).integers(0, 12, (frame.height, frame.width), np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=frame.width, height=frame.height,
                       count=1, dtype="uint8", crs=frame.crs, transform=frame.transform) as ds:
        ds.write(classes, 1)
    return AuxBand(name="scl", path=path, band=1, radiometry="classes", dn_offset=0.0,
                   dtype="uint8", crs=frame.crs, transform=frame.transform, width=frame.width,
                   height=frame.height, nodata=None)
