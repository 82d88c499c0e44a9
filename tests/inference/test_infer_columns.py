"""Wide scenes in column strips: the same pixels as one pass, resumable, bounded width."""

from __future__ import annotations

import json

import numpy as np
import pytest
from infer_helpers import read, write_frames
from test_infer_threads import _AsIfOnGPU

from zoomsr.inference import InferenceOptions, Tiling, run_inference
from zoomsr.inference.windows import WindowGrid, column_groups, group_span
from zoomsr.inference.writer import partial_dir
from zoomsr.io.geotiff import column_chunks


def _opts(**kw) -> InferenceOptions:
    return InferenceOptions(tiling=kw.pop("tiling", Tiling(32, 8)), progress=False, **kw)


def test_groups_cover_each_column_once():
    grid = WindowGrid(50, 130, Tiling(32, 8))
    assert grid.xs == [0, 19, 39, 58, 78, 98]  # 5 steps of at most 24, spread evenly
    groups = column_groups(grid, 48)
    assert groups == [(0, 2), (2, 4), (4, 6)]
    spans = [group_span(grid, g) for g in groups]
    assert [(a, b) for a, b, _ in spans] == [(0, 39), (39, 78), (78, 130)]
    assert spans[1][2] == [1, 2, 3]  # window 1 (19..51) covers columns 39..50
    assert column_groups(grid, 0) == [(0, 6)]
    # 7 columns of at most 2: 4 groups of even sizes, not 2, 2, 2, 1 (a last group of one
    # column computes two)
    assert column_groups(WindowGrid(50, 170, Tiling(32, 8)), 48) == [(0, 1), (1, 3), (3, 5),
                                                                     (5, 7)]


@pytest.mark.parametrize(
    ("size", "tiling", "width", "extra"),
    [
        ((48, 130), Tiling(32, 8), 48, {}),
        ((40, 101), Tiling(32, 24), 10, {"uncertainty": 2, "save_lr": True}),  # heavy overlap
        ((60, 90), Tiling(16, 4), 24, {"threads": 3, "cog": True}),
        ((30, 70), Tiling(32, 8), 1, {"save_lr": True}),  # one window per group
        ((40, 300), Tiling(32, 8), 100, {}),  # chunks of 256, 256, 256 and 432 output px
    ],
)
def test_column_strips_write_the_same_pixels(tmp_path, tiny_model, size, tiling, width, extra):
    # nodata in 3 of 4 frames: some windows have fewer clean frames than the model takes,
    # and each group must count only the windows it owns
    holes = {0: (slice(5, 30), slice(20, 60)), 1: (slice(0, 20), slice(10, 50)),
             2: (slice(10, 40), slice(30, 70))}
    paths = write_frames(tmp_path / "in", n=4, size=size, holes=holes)
    model = tiny_model(2)
    whole = run_inference(paths, tmp_path / "whole.tif", model,
                          _opts(tiling=tiling, column_width=0, **extra))
    strips = run_inference(paths, tmp_path / "strips.tif", model,
                           _opts(tiling=tiling, column_width=width, **extra))
    # the same tiles, written strip by strip (so in another order in the file)
    a, b = read(tmp_path / "whole.tif"), read(tmp_path / "strips.tif")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    if extra.get("save_lr"):
        assert ((tmp_path / "whole.lr.tif").read_bytes()
                == (tmp_path / "strips.lr.tif").read_bytes())
    assert strips.windows_computed == whole.windows_computed == whole.windows
    assert strips.few_frame_windows == whole.few_frame_windows
    assert whole.few_frame_windows > 0
    # compressed while the strips are computed (the GPU path): the bytes of the end pass
    run_inference(paths, tmp_path / "live.tif", _AsIfOnGPU(model),
                  _opts(tiling=tiling, column_width=width, **extra))
    assert (tmp_path / "live.tif").read_bytes() == (tmp_path / "strips.tif").read_bytes()



def test_column_strips_of_a_warped_scene_write_the_same_pixels(tmp_path, tiny_model):
    """UTM frames warped onto the training grid: GDAL approximates the transform over each
    read's extent, so reads of other widths gave other values (masks and tens of counts after
    the model differed). Reads in fixed column chunks give the same pixels."""
    paths = write_frames(tmp_path / "in", n=3, size=(20, 640), crs="EPSG:32615",
                         holes={0: (slice(0, 12), slice(100, 400))})
    model = tiny_model(2)
    outs = []
    for width in (0, 300, 530):
        out = tmp_path / f"w{width}.tif"
        run_inference(paths, out, model, _opts(column_width=width, save_lr=True))
        outs.append((read(out), out.with_name(out.stem + ".lr.tif").read_bytes()))
    (a, lr_a), *others = outs
    assert a[2]["profile"]["width"] > 512 * 4  # the strips cross a chunk edge
    for b, lr_b in others:
        assert lr_a == lr_b  # what the windows were fed: the same bytes
        assert np.array_equal(a[1], b[1])
        # the model's batches differ between the strips: float rounding, a count at most
        assert np.abs(a[0].astype(int) - b[0].astype(int)).max() <= 1


def test_a_warped_read_is_the_same_in_any_window_and_empty_past_the_grid(tmp_path):
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import calculate_default_transform
    from rasterio.windows import Window

    from zoomsr.inference.reader import SceneReader, _Source

    (path,) = write_frames(tmp_path / "in", n=1, size=(64, 1300), crs="EPSG:32615")
    with rasterio.open(path) as ds:
        t, w, h = calculate_default_transform(ds.crs, "EPSG:3857", ds.width, ds.height,
                                              *ds.bounds)
        vrt = WarpedVRT(ds, crs="EPSG:3857", transform=t, width=w, height=h,
                        resampling=Resampling.bilinear, nodata=0)
        src = _Source([vrt], [[1, 2, 3]], None, ds.width, ds.height, "uint8", path)
        whole = np.empty((3, 16, w), np.uint8)
        SceneReader._read_into(src, Window(0, 8, w, 16), whole)
        part = np.empty((3, 16, 300), np.uint8)
        assert w > 1200
        SceneReader._read_into(src, Window(900, 8, 300, 16), part)  # across a chunk edge
        assert np.array_equal(part, whole[:, :, 900:1200])
        past = np.full((3, 16, 200), 77, np.uint8)  # a reused buffer: nothing stale is left
        SceneReader._read_into(src, Window(w - 100, 8, 200, 16), past)
        assert np.array_equal(past[:, :, :100], whole[:, :, w - 100 :])
        assert not past[:, :, 100:].any()

def test_each_strip_is_compressed_as_it_goes_and_no_wider(tmp_path, tiny_model, monkeypatch):
    from zoomsr.inference import pipeline
    from zoomsr.io import geotiff_stream, raw_raster

    monkeypatch.setattr(pipeline, "WRITER_PROCESS", False)  # its reads seen from here
    marks, reads = [], []
    rows_done, read_rows = geotiff_stream.GeoTIFFStream.rows_done, raw_raster.RawRaster.read_rows

    def mark(self, rows, chunk=0):
        marks.append((chunk, rows))
        rows_done(self, rows, chunk)

    def spy(self, row, count, cols=None, fd=None):
        if self.bands == 4:  # the output raster (RGB + mask), not the LR mosaic
            reads.append(cols)
        return read_rows(self, row, count, cols, fd)

    monkeypatch.setattr(geotiff_stream.GeoTIFFStream, "rows_done", mark)
    monkeypatch.setattr(raw_raster.RawRaster, "read_rows", spy)
    paths = write_frames(tmp_path / "in", n=2, size=(70, 300))
    run_inference(paths, tmp_path / "o.tif", _AsIfOnGPU(tiny_model(2)), _opts(column_width=100))
    # strips owning LR columns 0-67, -134, -201, -300: each one's rows handed to the writer
    # in order, top to bottom; it writes output columns up to the last 256 px block edge
    assert [c for c, _ in marks] == sorted(c for c, _ in marks)
    assert {c for c, _ in marks} == {0, 1, 2, 3}
    assert [r for c, r in marks if c == 0] == [76, 152, 280]  # window rows at 0, 19, 38
    assert set(reads) == {(0, 256), (256, 512), (512, 768), (768, 1200)}
    assert sum(1 for r in reads if r == (256, 512)) == 2  # two 256-row strips of 280 rows


def test_column_chunks():
    assert column_chunks(1200, [384, 768, 1152, 1200]) == [
        (0, 256), (256, 768), (768, 1024), (1024, 1200)]
    assert column_chunks(400, [192, 400]) == [(0, 0), (0, 400)]  # a strip narrower than a block
    assert column_chunks(300, [300]) == [(0, 300)]


# 4 strips of 2 window rows, output chunks of 0, 256, 256 and 288 px: stopped in the first
# strip, at its end, in the next, in the third
@pytest.mark.parametrize("stop_at", [1, 2, 3, 5])
def test_interrupted_strips_resume_byte_identical(tmp_path, tiny_model, stop_at):
    paths = write_frames(tmp_path / "in", n=3, size=(56, 200))
    model = tiny_model(2)
    clean = tmp_path / "clean.tif"
    run_inference(paths, clean, model, _opts(column_width=48))  # written at the end
    calls = []

    def stop(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == stop_at:
            raise KeyboardInterrupt

    out = tmp_path / "run.tif"
    with pytest.raises(KeyboardInterrupt):
        run_inference(paths, out, _AsIfOnGPU(model), _opts(column_width=48), on_row=stop)
    run_inference(paths, out, _AsIfOnGPU(model), _opts(column_width=48, resume=True))
    assert out.read_bytes() == clean.read_bytes()
    run_inference(paths, tmp_path / "whole.tif", model, _opts(column_width=0))
    a, b = read(out), read(tmp_path / "whole.tif")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


@pytest.mark.parametrize("strip", [0, 1, 2])
def test_a_crash_in_a_strips_last_row_after_the_next_strip_began_resumes_the_same(
        tmp_path, tiny_model, monkeypatch, strip):
    """Rows of two strips in flight at once (the row threads go on into the next strip): a
    crash while strip ``strip``'s last row is written, after the next strip's first row was
    written to the raw file. The state saved is the last row consumed; --resume computes the
    rest again and writes the clean bytes, with no thread left."""
    import threading

    from zoomsr.io import raw_raster

    paths = write_frames(tmp_path / "in", n=2, size=(56, 200))
    model = tiny_model(2)
    clean = tmp_path / "clean.tif"
    run_inference(paths, clean, model, _opts(column_width=48, save_lr=True))
    grid = WindowGrid(56, 200, Tiling(32, 8))
    groups = column_groups(grid, 48)
    s = 4
    here = group_span(grid, groups[strip])[0] * s
    after = group_span(grid, groups[strip + 1])[0] * s
    last_top = grid.ys[-1] * s
    began = threading.Event()
    write_block = raw_raster.RawRaster.write_block

    def crash(self, row, col, data):
        if self.width == 800 and (row, col) == (0, after):  # the next strip's first row
            write_block(self, row, col, data)
            began.set()
            return
        if self.width == 800 and (row, col) == (last_top, here):  # this strip's last row
            assert began.wait(10), "the next strip did not begin meanwhile"
            raise KeyboardInterrupt
        write_block(self, row, col, data)

    monkeypatch.setattr(raw_raster.RawRaster, "write_block", crash)
    out = tmp_path / "run.tif"
    before = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        run_inference(paths, out, _AsIfOnGPU(model), _opts(column_width=48, threads=3,
                                                          save_lr=True))
    assert threading.active_count() == before
    monkeypatch.setattr(raw_raster.RawRaster, "write_block", write_block)
    run_inference(paths, out, _AsIfOnGPU(model), _opts(column_width=48, threads=3,
                                                      save_lr=True, resume=True))
    assert out.read_bytes() == clean.read_bytes()


def test_accumulators_stay_within_a_strip(tmp_path, tiny_model, monkeypatch):
    from zoomsr.inference import pipeline

    widths = []
    original = pipeline.RowChain.__init__

    def spy(self, windows, scale, channels, hr_width, *args):
        widths.append(hr_width)
        original(self, windows, scale, channels, hr_width, *args)

    monkeypatch.setattr(pipeline.RowChain, "__init__", spy)
    paths = write_frames(tmp_path / "in", n=2, size=(40, 200))
    run_inference(paths, tmp_path / "o.tif", tiny_model(2), _opts(column_width=48))
    assert len(widths) == 4 and max(widths) <= 56 * 4  # about 48 LR px, not 200


def test_a_run_saved_with_another_window_layout_is_not_resumed(tmp_path, tiny_model,
                                                               monkeypatch):
    from zoomsr.errors import InputError
    from zoomsr.inference import windows as placing

    def stride_apart(size: int, window: int, stride: int) -> list[int]:
        # the layout before 2026-11-27: one stride apart, the last window moved onto the edge
        if size <= window:
            return [0]
        starts = list(range(0, size - window, stride))
        return starts if starts[-1] == size - window else [*starts, size - window]

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    paths = write_frames(tmp_path / "in", n=3, size=(70, 200))
    out = tmp_path / "o.tif"
    with monkeypatch.context() as m:
        m.setattr(placing, "window_starts", stride_apart)
        with pytest.raises(KeyboardInterrupt):
            run_inference(paths, out, tiny_model(2), _opts(column_width=48), on_row=stop)
    # its carry does not fit the rows now (or, where it does, would mix two layouts); the same
    # inputs and options cannot continue it, so only --overwrite is offered
    with pytest.raises(InputError, match=r"was saved by another version of zoomsr \(window "
                       r"layout: another version of zoomsr placed the windows or column strips "
                       r"otherwise\); it cannot be continued: pass --overwrite") as err:
        run_inference(paths, out, tiny_model(2), _opts(column_width=48, resume=True))
    assert "give the inputs" not in str(err.value)
    # saved before the layout was recorded
    state = np.load(partial_dir(out) / "state.npz")
    arrays = {k: state[k] for k in state.files}
    meta = json.loads(str(arrays["meta"]))
    fingerprint = json.loads(meta["fingerprint"])
    del fingerprint["layout"]
    meta["fingerprint"] = json.dumps(fingerprint, sort_keys=True)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(partial_dir(out) / "state.npz", **arrays)
    with pytest.raises(InputError, match=r"window layout: not recorded by the older zoomsr that "
                                         r"saved it\); it cannot be continued"):
        run_inference(paths, out, tiny_model(2), _opts(column_width=48, resume=True))
    # with another option changed too: both named, and still no way on but --overwrite
    # (not --seed: without --uncertainty it changes nothing, and is not named)
    with pytest.raises(InputError, match=r"\(--batch-size \(windows per model call\): was \d+, "
                                         r"now 3; window layout: not recorded by the older "
                                         r"zoomsr that saved it\); it cannot be continued"):
        run_inference(paths, out, tiny_model(2),
                      _opts(column_width=48, resume=True, seed=1, batch_size=3))
    run_inference(paths, out, tiny_model(2), _opts(column_width=48, overwrite=True))
