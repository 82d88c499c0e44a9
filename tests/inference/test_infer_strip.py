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

from zoomsr.inference import arrays, assemble, discover_frames, rows
from zoomsr.inference.arrays import pack, to_host, to_tensor, unpack
from zoomsr.inference.assemble import to_uint8
from zoomsr.inference.frames import (
    choose_frames,
    count_clean,
    fill_gaps,
    frame_scores,
    unusable,
    window_scores,
)
from zoomsr.inference.grid import plan_grid
from zoomsr.inference.inputs import to_band16, to_tci, valid_pixels
from zoomsr.inference.reader import SceneReader
from zoomsr.inference.rows import ScenePlan, compute_row
from zoomsr.inference.windows import Tiling, WindowGrid

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
        # the caller's unusable pixels (compute_row shares them) give the same counts
        bad = unusable(*(as_array(a) for a in (pixels, valid)),
                       None if cloudy is None else as_array(cloudy))
        given = window_scores(as_array(pixels), as_array(valid), None, spans, bad)
        assert np.array_equal(np.asarray(given[0]), scores)
        assert np.array_equal(np.asarray(given[1]), clean)
    # saturated and cloudy pixels count once each, nodata once
    bad = unusable(pixels, valid, cloudy)
    assert bad.sum() == frame_scores(pixels, valid, cloudy).sum()
    assert clean[-1] == 1  # only frame 1 is free of nodata over the whole strip


def test_pixels_no_frame_covers_make_no_frame_unclean():
    """Outside every date's footprint (a reprojected scene's corners) all dates miss the
    same pixels: that is no reason to count a window as short of clean dates."""
    valid = np.ones((3, 8, 24), bool)
    valid[:, :, :6] = False  # no frame covers columns 0-5
    valid[2, 0, 10] = False  # frame 2 misses a pixel the others have
    pixels = np.where(valid[:, None], 0.5, 0.0).astype(np.float32)
    spans = [(0, 8), (4, 8), (8, 8), (0, 24)]
    for as_array in (np.asarray, torch.from_numpy):
        _, clean = window_scores(as_array(pixels), as_array(valid), None, spans)
        assert np.asarray(clean).tolist() == [3, 2, 2, 2]
    assert [count_clean(valid[..., x:x + w]) for x, w in spans] == [3, 2, 2, 2]


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
    frames[1] = dataclasses.replace(frames[1], clouds=_scl(tmp_path / "scl.tif", frames[1]))
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
    scores, clean = window_scores(pixels, valid, cloudy, [(0, 16), (14, 16)])
    best = choose_frames(scores, 2)
    assert all(t.device == meta for t in (scores, clean, best)) and best.shape == (2, 2)
    with pytest.raises(NotImplementedError, match="meta"):  # no data can come back from meta
        to_host(scores)


@pytest.mark.parametrize("uncertainty", [0, 2])
def test_a_scene_row_makes_one_transfer_after_its_model_calls(tmp_path, monkeypatch, tiny_model,
                                                              uncertainty):
    """A transfer from a GPU waits for every model call queued before it, other rows' too, so
    a row must not make one before its own calls are queued. On "meta" tensors any hidden
    transfer back (``.cpu()``, ``.item()``, ``bool()``) raises; the explicit ones
    (:func:`to_host`) are recorded and faked. Read, prepare, choose frames, run the model,
    blend and finish: one transfer at the end (plus the scores first with uncertainty, whose
    subsets are drawn on the host). Blocking copies *to* the device are caught on a GPU only
    (``test_infer_gpu.py``, with CUDA's sync debug mode)."""
    meta = torch.device("meta")
    paths = write_frames(tmp_path / "in", n=4, size=(40, 56), dtype="uint16",
                         holes={0: (slice(0, 10), slice(0, 20))})
    frames = discover_frames(paths, dn_offset=1000.0).frames
    frames[1] = dataclasses.replace(frames[1], clouds=_scl(tmp_path / "scl.tif", frames[1]))
    grid = plan_grid(frames, 4)
    windows = WindowGrid(grid.height, grid.width, Tiling(window=24, overlap=8))
    model = tiny_model(2)
    model = dataclasses.replace(model, module=model.module.to(meta), device=meta)
    plan = ScenePlan(SceneReader(frames, grid), grid, windows, 2, 2, uncertainty, 0)
    events: list[str] = []
    forward = model.forward_device

    def counted_forward(x):
        events.append("model")
        return forward(x)

    def fake_to_host(*xs):
        events.append("transfer")
        return [np.zeros(tuple(x.shape), torch.empty(0, dtype=x.dtype).numpy().dtype)
                if isinstance(x, torch.Tensor) else np.array(x) for x in xs]

    object.__setattr__(model, "forward_device", counted_forward)
    monkeypatch.setattr(rows, "to_host", fake_to_host)
    monkeypatch.setattr(assemble, "to_host", fake_to_host)
    channels = 3 + (1 if uncertainty else 0)
    calls = -(-len(windows.xs) * (1 + uncertainty) // 2)
    first = ["transfer"] if uncertainty else []
    try:
        for r in range(windows.n_rows):  # as a Ray worker finishes a row
            events.clear()
            res = compute_row(plan, model, r, meta)
            assert res.sums.device == meta and res.valid.device == meta
            ready = assemble.prepare_row(res, windows, 4, with_lr=True)
            assert events == first + ["model"] * calls + ["transfer"]
            assert ready.interior.dtype == np.uint8 and isinstance(ready.few_frames, int)
        # the local path: linked in order (from row 1, resumed: the carry a state saved is
        # uploaded in link), then finished on the device
        chain = assemble.RowChain(windows, 4, channels, grid.hr_width)
        c = assemble.carried_rows(windows, 1) * 4
        chain.sums = np.zeros((channels, c, grid.hr_width), np.float32)
        chain.weights = np.zeros((c, grid.hr_width), np.float32)
        for r in range(1, windows.n_rows):
            events.clear()
            res = compute_row(plan, model, r, meta)
            chain.link(res)
            assert isinstance(chain.sums, torch.Tensor) and chain.sums.device == meta
            block, _, few, sums, weights = chain.finish(res, with_lr=True)
            assert events == first + ["model"] * calls + ["transfer"]
            assert block.dtype == np.uint8 and isinstance(few, int)
            assert sums.shape[:2] == (channels, weights.shape[0])
    finally:
        plan.reader.close()


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


def test_frames_chosen_with_torch_equal_numpy_per_window():
    """Ranking by score then input order, cyclic with fewer frames than the model takes: the
    batched torch choice equals NumPy's, window by window."""
    rng = np.random.default_rng(4)
    # CPU sorts of up to 16 values are stable anyway; CUDA's of up to 32 are not, unless asked
    for t, n in [(6, 3), (5, 5), (3, 4), (1, 2), (8, 1), (20, 8), (33, 8), (64, 16)]:
        scores = rng.integers(0, 3, (7, t))  # many ties
        batched = choose_frames(torch.from_numpy(scores), n)
        assert batched.shape == (7, n)
        for j in range(7):
            order = sorted(range(t), key=lambda i, j=j: (scores[j, i], i))
            want = sorted((order * n)[:n])
            assert choose_frames(scores[j], n).tolist() == want
            assert batched[j].tolist() == want


def test_to_host_packs_tensors_into_one_buffer_and_back():
    """What :func:`to_host` brings back from a GPU in one transfer: tensors of any dtype,
    shape and layout packed as bytes (8-byte aligned), unpacked into equal NumPy arrays."""
    xs = [torch.arange(24.0).reshape(4, 6)[:, 1:4],  # not contiguous
          torch.tensor([True, False, True]), torch.tensor(7), torch.arange(5, dtype=torch.uint8),
          torch.zeros((0, 2)), torch.arange(6, dtype=torch.int16).reshape(2, 3)]
    buffer, offsets = pack(xs)
    assert buffer.dtype == torch.uint8 and all(o % 8 == 0 for o in offsets)
    for x, a in zip(xs, unpack(buffer.numpy(), offsets, xs), strict=True):
        assert a.dtype == x.numpy().dtype and a.shape == tuple(x.shape) and a.flags.aligned
        assert np.array_equal(a, x.numpy())
    mixed = to_host(xs[0], np.ones(2), 3, xs[1])  # CPU tensors, arrays and numbers: copies
    assert np.array_equal(mixed[0], xs[0].numpy()) and mixed[2] == 3
    mixed[0][0, 0] = -1
    assert xs[0][0, 0] == 1


def test_to_host_brings_tensors_off_the_cpu_back_in_one_transfer_in_order(monkeypatch):
    """The packing path, taken here by CPU tensors posing as a GPU's: one ``.cpu()`` of one
    buffer, every array back in its place among the others."""
    monkeypatch.setattr(arrays, "_far", lambda x: isinstance(x, torch.Tensor))
    copies = []
    real_cpu = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self: copies.append(1) or real_cpu(self))
    xs = [torch.arange(12.0).reshape(3, 4), np.arange(3), torch.tensor([True, False]), 7,
          torch.arange(5, dtype=torch.uint8), torch.tensor(9)]
    out = arrays.to_host(*xs)
    assert len(copies) == 1
    for x, a in zip(xs, out, strict=True):
        want = x.numpy() if isinstance(x, torch.Tensor) else np.array(x)
        assert a.dtype == want.dtype and np.array_equal(a, want)


def test_a_strip_is_decoded_into_one_buffer_sent_once(tmp_path, monkeypatch):
    """Every file of a row (three dates, one shifted half off the window, one with an SCL) is
    decoded straight into one host buffer that goes to the device in one copy; what comes out
    equals each file read on its own, and no byte of the buffer is left unwritten (it starts
    as garbage: 0xFF), the parts of the window outside a file included (0: nodata)."""
    from affine import Affine

    from zoomsr.inference import reader as reader_mod

    paths = write_frames(tmp_path / "in", n=2, size=(32, 40), dtype="uint16")
    frames = discover_frames(paths, dn_offset=1000.0).frames
    moved = write_frames(tmp_path / "moved", n=1, size=(32, 40), dtype="uint16", seed=5,
                         transform=frames[0].transform @ Affine.translation(20, 6))
    frames = discover_frames(paths + moved, dn_offset=1000.0).frames
    frames[1] = dataclasses.replace(frames[1], clouds=_scl(tmp_path / "scl.tif", frames[1]))
    grid = plan_grid(frames, 4)
    assert (grid.width, grid.height) == (60, 38)
    sent = []
    real_send = reader_mod.send

    def send(buffer, device):
        sent.append(buffer.numel())
        return real_send(buffer, device)

    monkeypatch.setattr(reader_mod, "staging_buffer",
                        lambda n, device: torch.full((n,), 255, dtype=torch.uint8))
    monkeypatch.setattr(reader_mod, "send", send)
    window = Window(10, 4, 45, 30)  # crosses the edges of every file
    reader = SceneReader(frames, grid)
    try:
        values = reader._read_raw(window, CPU)
        pixels, valid, cloudy = reader.read_strip(window, CPU)
    finally:
        reader.close()
    per_file = -(-3 * 30 * 45 * 2 // 8) * 8  # 3 bands of uint16, padded to 8 bytes
    scl = -(-30 * 45 // 8) * 8  # uint8
    assert sent == [3 * per_file + scl] * 2  # one copy per strip, every file in it
    files = [paths[0], paths[1], moved[0]]
    offsets = [(0, 0), (0, 0), (6, 20)]  # each file's (row, col) on the grid
    for i, (path, (dr, dc)) in enumerate(zip(files, offsets, strict=True)):
        with rasterio.open(path) as ds:
            data = ds.read()
        expected = np.zeros((3, 30, 45), np.uint16)
        rows = slice(max(4, dr), min(34, dr + 32))
        cols = slice(max(10, dc), min(55, dc + 40))
        expected[:, rows.start - 4 : rows.stop - 4, cols.start - 10 : cols.stop - 10] = (
            data[:, rows.start - dr : rows.stop - dr, cols.start - dc : cols.stop - dc])
        assert values[i][0].dtype == torch.int32  # uint16: widened, not signed
        assert np.array_equal(values[i][0].numpy(), expected)
        ok = expected.any(0)
        assert np.array_equal(valid[i].numpy(), ok)
        np.testing.assert_allclose(pixels[i].numpy(),
                                   np.where(ok, to_tci(expected, "dn", 1000.0), 0),
                                   rtol=0, atol=1e-7)
    assert len(values[1]) == 2 and len(values[0]) == len(values[2]) == 1
    classes = np.zeros((30, 45), np.uint8)  # the SCL covers rows 4-31, columns 10-39
    with rasterio.open(tmp_path / "scl.tif") as ds:
        classes[:28, :30] = ds.read(1)[4:, 10:]
    assert np.array_equal(values[1][1][0].numpy(), classes)
    assert cloudy is not None and not cloudy[0].any()
    assert np.array_equal(cloudy[1].numpy(), np.isin(classes, (1, 3, 8, 9, 10)) & valid[1].numpy())


def test_float64_files_are_read_as_float32(tmp_path):
    """float64 (and uint32, uint64) values are converted on the host while decoded into the
    row's buffer (the devices lack them, or torch does)."""
    from zoomsr.inference.arrays import from_bytes, travel_dtype

    assert travel_dtype("float64") == np.float32 and travel_dtype("uint32") == np.int64
    assert travel_dtype("uint16") == np.uint16
    paths = write_frames(tmp_path / "in", n=1, size=(16, 24), dtype="float64")
    frames = discover_frames(paths).frames
    reader = SceneReader(frames, plan_grid(frames, 4))
    try:
        (raw,), = reader._read_raw(Window(0, 0, 24, 16), CPU)
    finally:
        reader.close()
    with rasterio.open(paths[0]) as ds:
        data = ds.read()
    assert raw.dtype == torch.float32
    assert np.array_equal(raw.numpy(), data.astype(np.float32))
    buf = torch.from_numpy(np.array([1, 2, 32768, 65535], np.uint16).view(np.uint8).copy())
    assert from_bytes(buf, 0, np.uint16, (2, 2)).tolist() == [[1, 2], [32768, 65535]]


def test_a_rows_files_are_decoded_by_the_read_pool_with_the_same_values(tmp_path,
                                                                        monkeypatch):
    """A row's dates were decoded one after the other by its row thread (what a GPU run's
    first model call waited for): they are decoded by the pool's threads at once now, each
    into its own part of the row's buffer, aligned and warped files alike; the same values
    as one at a time, and a damaged file is still named (the first in order)."""
    import threading

    from zoomsr.inference import reader as reader_module

    aligned = write_frames(tmp_path / "a", n=3, size=(32, 40), dtype="uint16", seed=1)
    from affine import Affine

    with rasterio.open(aligned[0]) as ds:
        t = ds.transform
    off = Affine(t.a, 0, t.c + 0.4 * t.a, 0, t.e, t.f + 0.3 * t.e)  # off the lattice: warped
    warped = write_frames(tmp_path / "w", n=2, size=(32, 40), dtype="uint16", seed=2,
                          transform=off)
    frames = discover_frames([*aligned, *warped], dn_offset=1000.0).frames
    grid = plan_grid(frames, 4)
    window = Window(0, 3, grid.width, 20)
    threads = []
    read_into = reader_module.SceneReader._read_into

    def recorded(src, win, out):  # noqa: ANN001
        threads.append(threading.current_thread().name)
        read_into(src, win, out)

    monkeypatch.setattr(reader_module.SceneReader, "_read_into", staticmethod(recorded))
    monkeypatch.setattr(reader_module, "workers_available", lambda: 2)
    results = []
    for pool in (True, False):
        if not pool:
            monkeypatch.setattr(reader_module, "read_pool", lambda: None)
        threads.clear()
        scene = SceneReader(frames, grid)
        try:
            results.append(scene.read_strip(window, CPU))
            assert [srcs[0].offsets is None for srcs in scene._open()] == [False] * 3 + [True] * 2
        finally:
            scene.close()
        if pool:
            assert len(threads) == 5 and all(t.startswith("zoomsr-read") for t in threads)
        else:
            assert threads == [threading.current_thread().name] * 5
    for a, b in zip(*results, strict=True):
        if a is not None:
            assert torch.equal(a, b)
    assert results[0][1].any()  # (valid pixels: not a comparison of empty rows)


def test_a_rows_read_ends_its_pool_reads_before_an_error_leaves(tmp_path, monkeypatch):
    """The first file's error in order is raised, after every read; a submit cut short (a
    Ctrl-C in the loop) left the reads submitted before it writing into the row's buffer
    while the pipeline closed their datasets."""
    import threading
    import time

    from zoomsr.errors import DataError
    from zoomsr.inference import reader as reader_module

    paths = write_frames(tmp_path / "a", n=4, size=(32, 40), dtype="uint16", seed=3)
    frames = discover_frames(paths, dn_offset=1000.0).frames
    grid = plan_grid(frames, 4)
    window = Window(0, 0, grid.width, 16)
    monkeypatch.setattr(reader_module, "workers_available", lambda: 4)
    read_into = reader_module.SceneReader._read_into
    ended: list[float] = []
    lock = threading.Lock()

    started = threading.Event()

    def slow(src, win, out):  # noqa: ANN001
        started.set()
        try:
            time.sleep(0.2 if src.path.name != paths[0].name else 0.05)
            if src.path.name in (paths[1].name, paths[3].name):
                raise DataError(f"{src.path.name}: damaged")
            read_into(src, win, out)
        finally:
            with lock:
                ended.append(time.perf_counter())

    monkeypatch.setattr(reader_module.SceneReader, "_read_into", staticmethod(slow))
    scene = SceneReader(frames, grid)
    try:
        with pytest.raises(DataError, match=rf"^{paths[1].name}: damaged$"):
            scene.read_strip(window, CPU)
    finally:
        scene.close()
    assert len(ended) == 4  # every read ended (the good ones and the failed ones)

    pool = reader_module.read_pool()
    submitted = []

    class Cut:  # the second submit interrupted
        def submit(self, *args):  # noqa: ANN002
            if submitted:
                # the first read has started (it cannot be cancelled), however slowly the
                # pool's thread took it up
                assert started.wait(30)
                raise KeyboardInterrupt
            submitted.append(pool.submit(*args))
            return submitted[-1]

    monkeypatch.setattr(reader_module, "read_pool", lambda: Cut())
    ended.clear()
    started.clear()
    scene = SceneReader(frames, grid)
    try:
        with pytest.raises(KeyboardInterrupt):
            scene.read_strip(window, CPU)
        left_at = time.perf_counter()
        # the one submitted ended before it raised: none left running
        assert len(submitted) == 1 and submitted[0].done()
    finally:
        scene.close()
    assert len(ended) == 1 and ended[0] <= left_at
