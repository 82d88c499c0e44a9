"""Scene inference end to end on generated GeoTIFFs with a tiny random RRDBNet."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from infer_helpers import TINY, read, write_frames

from zoomsr import grid as tiles
from zoomsr.errors import DataError, InputError
from zoomsr.inference import InferenceOptions, Tiling, build_inference_model, run_inference
from zoomsr.inference.in_memory import super_resolve_array
from zoomsr.inference.writer import partial_dir

FAST = Tiling(window=32, overlap=8)


def _opts(**kw) -> InferenceOptions:
    return InferenceOptions(tiling=kw.pop("tiling", FAST), progress=False, **kw)


def test_georeference_3857_training_grid(frames_3857, tiny_model, tmp_path):
    out = tmp_path / "sr.tif"
    result = run_inference(frames_3857, out, tiny_model(2), _opts())
    data, mask, meta = read(out)
    with rasterio.open(frames_3857[0]) as src:
        bounds, res = src.bounds, src.res
    assert meta["crs"].to_epsg() == 3857
    assert np.allclose(tuple(meta["bounds"]), tuple(bounds), atol=1e-6)
    assert meta["transform"].a == pytest.approx(res[0] / 4)
    assert meta["transform"].e == pytest.approx(-res[1] / 4)
    assert data.shape == (3, 160, 224) and data.dtype == np.uint8
    assert mask.min() == 255
    prof = meta["profile"]
    assert prof["tiled"] and prof["compress"] == "deflate"
    tags = meta["tags"]
    assert tags["zoomsr_model"] == "rrdbnet" and len(tags["zoomsr_weights_sha256"]) == 64
    assert "S2_20240101_TCI.tif" in tags["zoomsr_inputs"] and tags["zoomsr_version"]
    assert result.windows == result.windows_computed > 1


def test_a_grid_from_rounded_mercator_constants_is_read_directly(tmp_path, tiny_model):
    """A raster on the training lattice built with Web Mercator's rounded extents
    (20037508.343 m, as often quoted) is ~5e-6 px off the exact lattice: it got an extra masked
    row and column and was resampled. It is on the lattice: read as it is, same size."""
    res = 40075016.686 / 2**17 / 32
    x0, y0 = -20037508.343 + 60000 * 32 * res, 20037508.343 - 51000 * 32 * res
    t = tiles.Tile(60000, 51000).bounds
    off = max(abs(x0 - t.left), abs(y0 - t.top)) / res
    assert 1e-6 < off < 1e-4  # off the exact lattice, by the constants' rounding
    paths = write_frames(tmp_path / "in", n=2, size=(40, 40),
                         transform=Affine(res, 0, x0, 0, -res, y0))
    out = tmp_path / "sr.tif"
    run_inference(paths, out, tiny_model(2), _opts(save_lr=True))
    data, mask, meta = read(out)
    assert data.shape == (3, 160, 160) and mask.min() == 255
    mean = np.mean([rasterio.open(p).read().astype(float) for p in paths], axis=0)
    with rasterio.open(out.with_name("sr.lr.tif")) as lr:  # the mean of the frames, as read
        assert np.abs(lr.read() - mean).max() <= 0.5 + 1e-9  # directly: not resampled
    assert np.allclose(tuple(meta["bounds"]), (t.left, t.top - 40 * res, t.left + 40 * res,
                                               t.top), atol=0.01)


def test_georeference_utm_native_grid(tmp_path, tiny_model):
    paths = write_frames(tmp_path / "utm", n=2, size=(36, 44), crs="EPSG:32631")
    out = tmp_path / "sr.tif"
    run_inference(paths, out, tiny_model(2), _opts(native_grid=True))
    data, _, meta = read(out)
    with rasterio.open(paths[0]) as src:
        bounds, crs = src.bounds, src.crs
    assert meta["crs"] == crs
    assert np.allclose(tuple(meta["bounds"]), tuple(bounds), atol=1e-6)
    assert meta["transform"].a == pytest.approx(2.5) and data.shape == (3, 144, 176)


def test_nearly_square_pixels_keep_the_inputs_bounds_on_the_native_grid(tmp_path,
                                                                         tiny_model):
    """Pixels of 300.038 x 300.042 m (a product's rounding): the square grid takes the x
    size, and 718 rows were 718.0096 of them, so a 719th row ran 297 m past the input."""
    from zoomsr.inference import discover_frames, plan_grid

    t = Affine(300.038, 0, 500000.0, 0, -300.042, 4100000.0)
    short = write_frames(tmp_path / "short", n=1, size=(20, 20), crs="EPSG:32631", transform=t)
    paths = write_frames(tmp_path / "in", n=2, size=(718, 20), crs="EPSG:32631", transform=t)
    for frames in ([*short, *paths], paths):  # the tolerance is the tallest frame's
        grid = plan_grid(discover_frames(frames).frames, 4, native=True)
        assert grid.height == 718
    with rasterio.open(paths[0]) as src:
        bounds = src.bounds
    assert grid.height == 718 and grid.width == 20
    assert abs(grid.bounds.bottom - bounds.bottom) < 300.038 / 2


def test_utm_input_reprojected_to_training_grid(tmp_path, tiny_model):
    paths = write_frames(tmp_path / "utm", n=2, size=(36, 44), crs="EPSG:32631")
    out = tmp_path / "sr.tif"
    result = run_inference(paths, out, tiny_model(2), _opts())
    _, mask, meta = read(out)
    assert meta["crs"].to_epsg() == 3857
    assert meta["transform"].a == pytest.approx(tiles.HR_RESOLUTION)
    # the output lattice is the zoom-17 tile lattice
    col = (meta["transform"].c + tiles.ORIGIN_SHIFT) / tiles.LR_RESOLUTION
    assert col == pytest.approx(round(col), abs=1e-6)
    # the rotated-in footprint is valid, the corners outside it are nodata
    assert mask.max() == 255 and mask.min() == 0
    assert result.grid.resolution == pytest.approx(tiles.LR_RESOLUTION)
    # corners outside every date are missing from all alike: no window lacks a clean date
    assert result.few_frame_windows == 0


def test_tiled_equals_untiled(tiny_model):
    """Receptive field of the tiny RRDBNet (1 block): 18.25 LR px; margin 20 makes it exact."""
    rng = np.random.default_rng(1)
    pixels = rng.random((3, 3, 80, 100), dtype=np.float32) * 0.9 + 0.05
    model = tiny_model(3)
    whole = model.forward(pixels[None])[0]
    tiled, mask = super_resolve_array(pixels, model, Tiling(window=64, overlap=42, margin=20))
    assert mask.all()
    assert np.abs(tiled - whole).max() < 1e-4
    # with a margin below the receptive field the seams do show: the test can fail
    rough, _ = super_resolve_array(pixels, model, Tiling(window=64, overlap=0, margin=0))
    assert np.abs(rough - whole).max() > 1e-3


def test_the_array_api_checks_what_a_scene_run_checks(tiny_model):
    """super_resolve_array returned an all-zero "uncertainty" band for as many frames as the
    model takes, took batch_size=-3 or threads=1.5, failed deep inside on a tuple tiling or a
    bare module; InferenceModel.forward made garbage of 0-255 data."""
    from zoomsr.errors import ConfigError
    from zoomsr.inference import InferenceOptions

    model = tiny_model(2)
    px = np.random.default_rng(0).random((2, 3, 24, 24)).astype(np.float32) * 0.8 + 0.1
    bad = [({"uncertainty": 2}, r"uncertainty=2\) needs more frames than the model takes \(2\)"),
           ({"uncertainty": 1}, "K >= 2"), ({"batch_size": -3}, "batch_size must be >= 1"),
           ({"threads": 1.5}, "threads must be an integer"), ({"seed": -1}, "seed must be >= 0"),
           ({"tiling": (32, 8)}, r"tiling must be a Tiling\(window, overlap, margin\)")]
    for kw, match in bad:
        with pytest.raises(ConfigError, match=match):
            super_resolve_array(px, model, **kw)
    with pytest.raises(ConfigError, match=r"expected an InferenceModel, got RRDBNet: wrap a "
                                          r"model with zoomsr.inference.build_inference_model"):
        super_resolve_array(px, model.module)
    with pytest.raises(ConfigError, match="radiometry"):
        InferenceOptions(radiometry="foo")
    with pytest.raises(InputError, match=r"input values from .* to .*: expected \[0, 1\]"):
        model.forward(px[None] * 255)
    with pytest.raises(InputError, match="expected float input in \\[0, 1\\], got uint8"):
        model((px[None] * 255).astype(np.uint8))  # callable, as a module is
    assert model(px[None]).shape == (1, 3, 96, 96)
    with pytest.raises(InputError, match="got torch.uint8"):  # the device path checks the type
        model.forward_device(torch.from_numpy((px[None] * 255).astype(np.uint8)))


def test_in_memory_frames_must_be_float_in_0_1_and_nan_is_nodata(tiny_model):
    rng = np.random.default_rng(2)
    tci = rng.integers(1, 256, (2, 3, 24, 24), dtype=np.uint8)  # an 8-bit TCI as read
    model = tiny_model(2)
    with pytest.raises(InputError, match=r"^expected float frames in \[0, 1\], got uint8: "
                                         r"divide an 8-bit TCI by 255"):
        super_resolve_array(tci, model, FAST)
    with pytest.raises(InputError, match=r"^frame values from 1 to 255: expected \[0, 1\]"):
        super_resolve_array(tci.astype(np.float32), model, FAST)
    pixels = tci / 255.0
    pixels[:, :, :8, :8] = np.nan  # both dates: nodata there
    pixels[0, 1, 16:, 16:] = np.nan  # one channel of one date: that date's pixels are nodata
    out, mask = super_resolve_array(pixels, model, FAST)
    assert np.isfinite(out).all()
    assert not mask[: 8 * 4, : 8 * 4].any() and mask[8 * 4 :, :].all()
    assert not out[:, ~mask].any()  # 0 where no frame had data, as a scene run writes
    # (it was the model's output there: a caller ignoring the mask took invented values)
    for empty in ((0, 3, 24, 24), (2, 3, 0, 24)):  # a ZeroDivisionError
        with pytest.raises(InputError, match=r"^expected at least one frame of at least 1 x 1"):
            super_resolve_array(np.zeros(empty, np.float32), model, FAST)
    with pytest.raises(InputError, match=r"^no valid pixel in any frame"):  # returned a
        super_resolve_array(np.full((2, 3, 24, 24), np.nan), model, FAST)  # mask all False
    same, _ = super_resolve_array(np.where(np.isnan(pixels), 0, pixels), model, FAST,
                                  valid=~np.isnan(pixels).any(1))
    assert np.array_equal(out, same)
    infinite = tci / 255.0
    infinite[1, 2, 3, 4] = np.inf
    with pytest.raises(InputError, match=r"^frame values from 0\.\d+ to inf: expected"):
        super_resolve_array(infinite, model, FAST)
    for shape in ((24, 24), (2, 1, 24, 24), (3, 24, 24)):
        with pytest.raises(InputError, match=rf"^valid must be \[T, H, W\] = \[2, 24, 24\] like "
                                             rf"the frames, got \{list(shape)}"):
            super_resolve_array(pixels, model, FAST, valid=np.ones(shape, bool))


def test_geotiff_matches_in_memory_result(frames_3857, tiny_model, tmp_path):
    model = tiny_model(3)
    out = tmp_path / "sr.tif"
    run_inference(frames_3857, out, model, _opts())
    pixels = np.stack([rasterio.open(p).read() for p in frames_3857]).astype(np.float32) / 255
    expected, _ = super_resolve_array(pixels, model, FAST)
    data, _, _ = read(out)
    ref = np.round(np.clip(expected, 0, 1) * 255)
    assert np.abs(data.astype(int) - ref).max() <= 1


def test_nodata_propagates(tmp_path, tiny_model):
    holes = {0: (slice(0, 12), slice(0, 16)), 1: (slice(0, 12), slice(0, 16)),
             2: (slice(20, 30), slice(30, 40))}
    paths = write_frames(tmp_path / "in", n=3, size=(40, 56), holes=holes)
    out = tmp_path / "sr.tif"
    result = run_inference(paths, out, tiny_model(2), _opts())
    data, mask, _ = read(out)
    # nodata in frames 0 and 1 only: frame 2 fills it -> valid
    assert mask[:48, :64].min() == 255
    assert result.few_frame_windows >= 1  # windows over the holes lack a second clean date
    paths = write_frames(tmp_path / "in2", n=2, size=(40, 56), holes={0: holes[0], 1: holes[0]})
    out2 = tmp_path / "sr2.tif"
    result = run_inference(paths, out2, tiny_model(2), _opts())
    data, mask, _ = read(out2)
    assert (mask[:48, :64] == 0).all() and (data[:, :48, :64] == 0).all()
    assert (mask[48:, :] == 255).all() and (mask[:, 64:] == 255).all()
    # a hole in every date is masked, not filled: no date would have been better there
    assert result.few_frame_windows == 0


def test_resume_is_byte_identical(tmp_path, tiny_model, monkeypatch):
    paths = write_frames(tmp_path / "in", n=3, size=(72, 40))
    model = tiny_model(2)
    clean = tmp_path / "clean.tif"
    run_inference(paths, clean, model, _opts(save_lr=True))

    out = tmp_path / "run.tif"

    def stop(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_inference(paths, out, model, _opts(save_lr=True), on_row=stop)
    assert not out.exists() and not out.with_name("run.lr.tif").exists()
    assert partial_dir(out).is_dir()
    monkeypatch.chdir(tmp_path / "in")  # the same files, spelled another way
    relative = [f"../in/{p.name}" for p in paths]
    result = run_inference(relative, out, model, _opts(save_lr=True, resume=True))
    assert result.rows_resumed == 2 and result.windows_computed < result.windows
    share = result.windows_computed / result.windows  # the rate counts this run's share
    assert result.km2_per_s == pytest.approx(result.grid.area_km2 * share / result.seconds)
    assert out.read_bytes() == clean.read_bytes()
    assert out.with_name("run.lr.tif").read_bytes() == clean.with_name("clean.lr.tif").read_bytes()
    assert not partial_dir(out).exists()


def test_an_output_that_cannot_be_written_keeps_the_rows(tmp_path, monkeypatch, cli):
    """A full disk while the GeoTIFF is finished: an error naming the output, no file under
    its name, and the rows kept, so --resume writes it once there is space (the run printed
    "wrote", renamed a corrupt file into place and removed the rows)."""
    import errno

    from zoomsr.io import geotiff as writer

    write_frames(tmp_path / "in", n=2, size=(72, 40))
    tiny = ["--model", "rrdbnet", "-c", "num_in_ch=6,num_feat=8,num_block=1,num_grow_ch=4",
            "--random-weights", "--window", "32", "--overlap", "8", "--no-progress",
            "--device", "cpu"]
    clean, out = tmp_path / "clean.tif", tmp_path / "run.tif"
    assert cli("infer", tmp_path / "in", "-o", clean, *tiny)[0] == 0
    flush = writer.fsync_file

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "fsync_file", full)
    for again in ([], ["--resume"]):
        code, _, err = cli("infer", tmp_path / "in", "-o", out, *tiny, *again)
        assert code != 0 and err.strip() == f"error: {out}: cannot write (No space left on device)"
        assert not out.exists() and partial_dir(out).is_dir()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["in", "clean.tif", partial_dir(out).name])  # no temporary file left
    monkeypatch.setattr(writer, "fsync_file", flush)
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *tiny, "--resume")
    assert code == 0, err
    assert out.read_bytes() == clean.read_bytes() and not partial_dir(out).exists()


def test_a_second_run_of_one_output_is_refused_and_dead_runs_temps_removed(tmp_path,
                                                                         tiny_model):
    """Two runs of one output: the second's --overwrite deleted the first's rows and the
    first then published a file of mixed rows. And the temporary files of runs killed
    outright (a COG's intermediate, a preview's) stayed forever."""
    from zoomsr.io.atomic import output_lock

    paths = write_frames(tmp_path / "in", n=2, size=(40, 40))
    out = tmp_path / "o.tif"
    with output_lock(out), pytest.raises(InputError, match=rf"^{out}: another zoomsr run is "
                                                           r"writing it \(it holds \.o\.tif"):
        run_inference(paths, out, tiny_model(2), _opts(overwrite=True))
    dead = [tmp_path / ".o.tif.abcd1234.tif.tmp", tmp_path / ".o.tif.abcd1234.tif.tmp.gtiff.tif",
            tmp_path / ".o.preview.png.abcd1234.png.tmp", tmp_path / ".o.lr.tif.abcd1234.tif.tmp"]
    for d in dead:
        d.write_bytes(b"killed")
    run_inference(paths, out, tiny_model(2), _opts())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "o.tif"]  # and no lock file
    # a .tiff output's temporary files end in .tif too (the writer's suffix): they stayed
    tiff = tmp_path / "t" / "o.tiff"
    tiff.parent.mkdir()
    for d in (".o.tiff.abcd1234.tif.tmp", ".o.tiff.abcd1234.tif.tmp.gtiff.tif"):
        (tiff.parent / d).write_bytes(b"killed")
    run_inference(paths, tiff, tiny_model(2), _opts())
    assert [p.name for p in tiff.parent.iterdir()] == ["o.tiff"]


def test_an_input_removed_during_the_run_does_not_fail_it_at_the_end(tmp_path, tiny_model):
    """The tag of the inputs' sizes and times was made when the output was written: a file
    removed meanwhile (its data still open) failed the run after its last row."""
    import json

    paths = write_frames(tmp_path / "in", n=2, size=(72, 40))
    out = tmp_path / "o.tif"
    size = paths[1].stat().st_size

    def remove(done, total):
        if done == 1:
            paths[1].unlink()

    run_inference(paths, out, tiny_model(2), _opts(), on_row=remove)
    with rasterio.open(out) as ds:
        files = json.loads(ds.tags()["zoomsr_input_files"])
    assert [f[1] for f in files] == [paths[0].stat().st_size, size]  # as the run found them


@pytest.mark.parametrize("damage", ["raw cut", "state empty", "state cut"])
def test_a_damaged_partial_run_is_refused_by_name(tmp_path, cli, damage):
    """A raw file cut short resumed into an output with its first rows blank (exit 0); an
    empty state.npz was reported as a Ctrl-C ("interrupted ... --resume to continue"), a cut
    one as a bare BadZipFile."""
    from zoomsr.inference.writer import STATE_FILE

    write_frames(tmp_path / "in", n=2, size=(72, 40))
    tiny = ["--model", "rrdbnet", "-c", "num_in_ch=6,num_feat=8,num_block=1,num_grow_ch=4",
            "--random-weights", "--window", "32", "--overlap", "8", "--no-progress",
            "--device", "cpu"]
    out = tmp_path / "o.tif"
    from zoomsr.inference import rows

    compute = rows.compute_row

    def stopped(plan, model, r, on=None, tick=None):
        if r >= 2:
            raise KeyboardInterrupt
        return compute(plan, model, r, on, tick)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rows, "compute_row", stopped)
        assert cli("infer", tmp_path / "in", "-o", out, *tiny)[0] == 130
    part = partial_dir(out)
    victim = part / ("sr.raw" if damage == "raw cut" else STATE_FILE)
    size = 0 if damage == "state empty" else 1000
    with open(victim, "r+b") as f:
        f.truncate(size)
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *tiny, "--resume")
    assert code == 2 and not out.exists(), err
    what = "bytes, not the" if damage == "raw cut" else "unreadable resume state"
    assert err.startswith(f"error: {victim}: ") and what in err and len(err.splitlines()) == 1
    assert err.rstrip().endswith("pass --overwrite instead of --resume to start again")


@pytest.mark.parametrize("threads", [1, 2])
def test_stopped_before_the_first_row_leaves_no_partial_folder(tmp_path, tiny_model,
                                                              monkeypatch, threads):
    """Nothing saved: nothing to resume, so no hidden folder the size of the output. Once a
    row is saved the folder is kept, also when a resumed run is stopped again."""
    from zoomsr.inference import rows

    paths = write_frames(tmp_path / "in", n=2, size=(72, 40))
    model = tiny_model(2)
    out = tmp_path / "o.tif"
    compute = rows.compute_row

    def interrupted(plan, model, r, on=None, tick=None):
        if r >= stop_at:
            raise KeyboardInterrupt
        return compute(plan, model, r, on, tick)

    monkeypatch.setattr(rows, "compute_row", interrupted)
    stop_at = 0
    with pytest.raises(KeyboardInterrupt):
        run_inference(paths, out, model, _opts(threads=threads))
    assert not partial_dir(out).exists() and not out.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "in"]
    stop_at = 2
    with pytest.raises(KeyboardInterrupt):
        run_inference(paths, out, model, _opts(threads=threads))
    assert partial_dir(out).is_dir()
    with pytest.raises(KeyboardInterrupt):  # resumed at row 2, stopped there again: kept
        run_inference(paths, out, model, _opts(threads=threads, resume=True))
    assert partial_dir(out).is_dir()
    stop_at = 99
    run_inference(paths, out, model, _opts(threads=threads, resume=True))
    assert out.is_file() and not partial_dir(out).exists()


def test_resume_after_a_stop_between_the_output_and_its_side_outputs(tmp_path, tiny_model,
                                                                     monkeypatch):
    """The output is renamed into place, then the side outputs are written, then the partial
    folder goes: a stop in between is continued by --resume (it said so), not refused for the
    output it wrote itself; a file zoomsr did not write there is still refused."""
    from zoomsr.inference import pipeline

    paths = write_frames(tmp_path / "in", n=2, size=(40, 40))
    model = tiny_model(2)
    clean = tmp_path / "clean.tif"
    run_inference(paths, clean, model, _opts(save_lr=True, preview=True))
    out = tmp_path / "o.tif"
    write_side_outputs = pipeline.write_side_outputs

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "write_side_outputs", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_inference(paths, out, model, _opts(save_lr=True, preview=True))
    assert out.is_file() and partial_dir(out).is_dir()
    monkeypatch.setattr(pipeline, "write_side_outputs", write_side_outputs)
    with pytest.raises(InputError, match="already exists"):  # without --resume: refused
        run_inference(paths, out, model, _opts(save_lr=True, preview=True))
    run_inference(paths, out, model, _opts(save_lr=True, preview=True, resume=True))
    assert not partial_dir(out).exists()
    for name in ("o.tif", "o.lr.tif", "o.preview.png"):
        assert (tmp_path / name).read_bytes() == (
            tmp_path / name.replace("o.", "clean.")).read_bytes(), name
    # an output slot holding a file zoomsr did not write is refused even with --resume
    other = tmp_path / "x.tif"
    monkeypatch.setattr(pipeline, "write_side_outputs", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_inference(paths, other, model, _opts())
    other.write_bytes(b"someone else's file")
    monkeypatch.setattr(pipeline, "write_side_outputs", write_side_outputs)
    with pytest.raises(InputError, match="already exists"):
        run_inference(paths, other, model, _opts(resume=True))
    assert other.read_bytes() == b"someone else's file"


def test_resume_refuses_other_settings(tmp_path, tiny_model):
    paths = write_frames(tmp_path / "in", n=3, size=(72, 40))
    out = tmp_path / "run.tif"

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_inference(paths, out, tiny_model(2), _opts(), on_row=stop)
    with pytest.raises(InputError, match=r"run.tif: the interrupted run .* settings \(model "
                                         r"\(config\.num_in_ch\): was 6, now 9\); to continue "
                                         r"it, give the inputs and options it had with --resume"):
        run_inference(paths, out, tiny_model(3), _opts(resume=True))
    # the message names what differs: the window (automatic: 256 px, cut to the scene) and
    # with it the windows per call (8 of 128 x 128 px make 45 of 72 x 40 px)
    with pytest.raises(InputError,
                       match=r"\(--window/--overlap/--margin: was 32/8/2 px, now 256/32/8 px\)"):
        run_inference(paths, out, tiny_model(2), _opts(resume=True, tiling=Tiling()))
    # without --resume the finished rows are not dropped silently: refused, naming both ways
    with pytest.raises(InputError, match=r"run.tif: an interrupted run.*--resume.*--overwrite"):
        run_inference(paths, out, tiny_model(3), _opts())
    assert partial_dir(out).is_dir()
    result = run_inference(paths, out, tiny_model(3), _opts(overwrite=True))  # start over
    assert result.rows_resumed == 0 and out.exists()


def test_resume_takes_a_seed_and_column_width_that_change_nothing(tmp_path, tiny_model):
    """Without --uncertainty the seed draws nothing, and on a scene narrower than both
    column widths the strips are the same: an interrupted run continues with them, to the
    bytes of a run that never stopped (both were refused)."""
    paths = write_frames(tmp_path / "in", n=3, size=(72, 40))
    clean = tmp_path / "clean.tif"
    run_inference(paths, clean, tiny_model(2), _opts())
    out = tmp_path / "run.tif"

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_inference(paths, out, tiny_model(2), _opts(), on_row=stop)
    result = run_inference(paths, out, tiny_model(2),
                           _opts(resume=True, seed=3, column_width=64))
    assert result.rows_resumed == 1
    assert out.read_bytes() == clean.read_bytes()


def test_existing_output_needs_overwrite(frames_3857, tiny_model, tmp_path):
    out = tmp_path / "sr.tif"
    out.write_bytes(b"x")
    with pytest.raises(InputError, match="--overwrite"):
        run_inference(frames_3857, out, tiny_model(2), _opts())
    run_inference(frames_3857, out, tiny_model(2), _opts(overwrite=True))
    assert out.stat().st_size > 1000


def test_overwrite_removes_the_side_outputs_it_does_not_write_again(frames_3857, tiny_model,
                                                                    tmp_path):
    """--overwrite without --save-lr/--preview left the earlier run's LR mosaic (of other
    weights) and preview (of another image) beside the new output. Without --overwrite
    (the output new, the side outputs another run's) they are named in a warning."""
    from zoomsr.errors import ZoomsrWarning

    out = tmp_path / "sr.tif"
    run_inference(frames_3857, out, tiny_model(2), _opts(save_lr=True, preview=True))
    lr, png = tmp_path / "sr.lr.tif", tmp_path / "sr.preview.png"
    assert lr.is_file() and png.is_file()
    run_inference(frames_3857, out, tiny_model(2), _opts(overwrite=True, preview=True))
    assert not lr.exists() and png.is_file()  # the new run's preview
    run_inference(frames_3857, out, tiny_model(2), _opts(overwrite=True))
    assert not png.exists()
    # an LR mosaic zoomsr did not write (a file of the user's under that name) is kept
    lr.write_bytes(b"mine")
    other = tmp_path / "other.tif"
    shutil.copy(lr, other.with_name("other.lr.tif"))
    with pytest.warns(ZoomsrWarning, match=r"other\.lr\.tif: not this run's \(it wrote no LR "
                                           r"mosaic; left by another run: remove it, or pass "
                                           r"--overwrite\)"):
        run_inference(frames_3857, other, tiny_model(2), _opts())
    with pytest.warns(ZoomsrWarning, match=r"sr\.lr\.tif: not this run's .*not an LR mosaic "
                                           r"zoomsr wrote, so --overwrite keeps it"):
        run_inference(frames_3857, out, tiny_model(2), _opts(overwrite=True))
    assert lr.read_bytes() == b"mine"
    # nor is another run's super-resolved output saved under that name (zoomsr's, no mosaic)
    run_inference(frames_3857, lr, tiny_model(2), _opts(overwrite=True))
    with pytest.warns(ZoomsrWarning, match=r"sr\.lr\.tif: not this run's"):
        run_inference(frames_3857, out, tiny_model(2), _opts(overwrite=True))
    assert lr.is_file()


def test_cog_lr_mosaic_and_preview(frames_3857, tiny_model, tmp_path):
    out = tmp_path / "sr.tif"
    result = run_inference(frames_3857, out, tiny_model(2),
                           _opts(cog=True, save_lr=True, preview=True))
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.tags()["zoomsr_model"] == "rrdbnet"
        assert ds.dataset_mask().min() == 255
    lr, _, meta = read(result.lr_output)
    with rasterio.open(frames_3857[0]) as src:
        assert meta["transform"] == src.transform
        frames = np.stack([rasterio.open(p).read() for p in frames_3857]).astype(float)
    assert np.abs(lr - frames.mean(0)).max() <= 1
    assert result.preview.is_file()


def test_model_with_too_many_images_reuses_frames(frames_3857, tmp_path):
    model = build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 3 * 5},
                                  random_weights=True, device="cpu")
    result = run_inference(frames_3857, tmp_path / "sr.tif", model, _opts())
    assert result.few_frame_windows == result.windows  # 3 frames for a 5-image model


def test_weights_checkpoint_roundtrip(frames_3857, tmp_path, tiny_model):
    from zoomsr.models import save_checkpoint

    model = tiny_model(2)
    ckpt = save_checkpoint(model.module, tmp_path / "m.pth")
    loaded = build_inference_model(weights=ckpt, device="cpu")
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    run_inference(frames_3857, a, model, _opts())
    run_inference(frames_3857, b, loaded, _opts())
    assert read(a)[0].tobytes() == read(b)[0].tobytes()
    assert read(b)[2]["tags"]["zoomsr_weights_sha256"] != model.weights_sha256



@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_precision_checkpoint_runs_in_fp32(tmp_path, tiny_model, dtype):
    """A zoomsr checkpoint saved in fp16/bf16 kept that dtype through the fast rebuild (load
    with assign): an fp32 input then met fp16 weights, a torch error."""
    import torch

    from zoomsr.models import save_checkpoint

    model = tiny_model(2)
    ckpt = save_checkpoint(model.module.to(getattr(torch, dtype)),
                           tmp_path / "half.safetensors")
    loaded = build_inference_model(weights=ckpt, device="cpu", precision="fp32")
    assert {p.dtype for p in loaded.module.parameters()} == {torch.float32}
    saved = model.module.state_dict()  # the file's weights, not a fresh initialisation
    for key, value in loaded.module.state_dict().items():
        assert torch.equal(value, saved[key].float()), key
    out = loaded.module(torch.rand(1, 2 * 3, 8, 8))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_a_checkpoint_whose_config_does_not_fit_names_the_file(tmp_path, tiny_model):
    """A hand-made `zoomsr` entry that misses a config key: the same key names, other shapes.
    The fast rebuild let torch's multi-line size-mismatch error out (exit 1)."""
    import torch

    from zoomsr.errors import CheckpointError

    model = tiny_model(2)
    path = tmp_path / "hand.pth"
    forgot = {"num_block": 1, "num_grow_ch": 4, "num_in_ch": 6}  # num_feat: 64, not 8
    torch.save({"zoomsr": {"model": "rrdbnet", "config": forgot, "format_version": 1},
                "state_dict": model.module.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"hand.pth does not match .*shape conflict"):
        build_inference_model(weights=path, device="cpu")

def test_non_overlapping_inputs_are_named(tmp_path, tiny_model):
    a = write_frames(tmp_path / "a", n=1, size=(20, 20))
    far = Affine(tiles.LR_RESOLUTION, 0, 0.0, 0, -tiles.LR_RESOLUTION, 0.0)
    b = write_frames(tmp_path / "b", n=1, size=(20, 20), transform=far)
    # same file names in two folders: full paths tell them apart
    with pytest.raises(DataError, match=rf"^inputs do not overlap: {b[0]} does not overlap "
                                        rf"{a[0]}$"):
        run_inference([a[0], b[0]], tmp_path / "o.tif", tiny_model(1), _opts())


@pytest.mark.parametrize("native", [False, True])
def test_inputs_that_only_touch_do_not_overlap_on_either_grid(tmp_path, tiny_model, native):
    """Two UTM frames, the second starting at the first's right edge: reprojected, their
    boxes overlapped a little, so the training grid took them (the native grid did not)."""
    a = write_frames(tmp_path / "a", n=1, size=(20, 20), crs="EPSG:32615",
                     transform=Affine(10, 0, 500000.0, 0, -10, 4100000.0))
    b = write_frames(tmp_path / "b", n=1, size=(20, 20), crs="EPSG:32615",
                     transform=Affine(10, 0, 500200.0, 0, -10, 4100000.0))
    with pytest.raises(DataError, match=r"^inputs do not overlap"):
        run_inference([a[0], b[0]], tmp_path / "o.tif", tiny_model(1),
                      _opts(native_grid=native))


def test_output_must_be_tif(frames_3857, tiny_model, tmp_path):
    with pytest.raises(InputError, match="GeoTIFF"):
        run_inference(frames_3857, tmp_path / "o.png", tiny_model(2), _opts())


def test_outputs_are_checked_before_any_work(frames_3857, tiny_model, tmp_path):
    """An input is never replaced (not even with --overwrite); a folder, an existing side
    output or an unwritable place is refused up front, naming the path."""
    model = tiny_model(2)
    before = frames_3857[0].read_bytes()
    with pytest.raises(InputError, match=r"S2_20240101_TCI.tif: is one of the inputs"):
        run_inference(frames_3857, frames_3857[0], model, _opts(overwrite=True))
    assert frames_3857[0].read_bytes() == before
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(InputError, match=r"dir.tif: is a folder"):
        run_inference(frames_3857, tmp_path / "dir.tif", model, _opts(overwrite=True))
    (tmp_path / "sr.lr.tif").write_bytes(b"earlier")
    (tmp_path / "sr.preview.png").write_bytes(b"earlier")
    with pytest.raises(InputError, match=r"sr.lr.tif, .*sr.preview.png: already exists"):
        run_inference(frames_3857, tmp_path / "sr.tif", model, _opts(save_lr=True, preview=True))
    assert (tmp_path / "sr.lr.tif").read_bytes() == b"earlier"
    assert not (tmp_path / "sr.tif").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match=r"file/o.tif: .*/file exists and is not a folder$"):
        run_inference(frames_3857, tmp_path / "file" / "o.tif", model, _opts())
    result = run_inference(frames_3857, tmp_path / "new" / "o.tif", model, _opts())
    assert result.output.is_file()  # a missing folder is made


def test_peak_rows_do_not_depend_on_scene_height(tmp_path, tiny_model):
    """The carry never holds more than one window of HR rows, whatever the height."""
    from zoomsr.inference import pipeline

    paths = write_frames(tmp_path / "in", n=2, size=(120, 24))
    seen = []
    original = pipeline.RowChain.link

    def spy(self, res):
        original(self, res)
        seen.append(self.weights.shape[0])

    pipeline.RowChain.link = spy
    try:
        run_inference(paths, tmp_path / "o.tif", tiny_model(2), _opts())
    finally:
        pipeline.RowChain.link = original
    assert max(seen) <= FAST.window * 4 and len(seen) > 3


@pytest.mark.parametrize("threads", [1, 2])
def test_a_row_is_released_before_the_next_but_one_is_computed(tmp_path, tiny_model,
                                                               monkeypatch, threads):
    """A row's float sums (the largest arrays of a run) are not held while later rows are
    computed: a suspended generator, the consumer's loop variables or a row thread's locals
    kept the previous row alive, twice the memory."""
    import weakref

    from zoomsr.inference import pipeline
    from zoomsr.inference import rows as row_work

    paths = write_frames(tmp_path / "in", n=2, size=(120, 24))
    rows, done = {}, {}
    compute, done_row = row_work.compute_row, pipeline.DoneRow

    def spy_compute(plan, model, r, on=None, tick=None):
        # one thread: the previous row (and what it hands on) must be gone by now; with
        # threads, `threads` rows may be in flight and the one before them in the consumer
        gone = r - 1 if threads == 1 else r - threads - 1
        if gone in rows:
            assert rows[gone]() is None, f"row {gone} still held when row {r} starts"
            assert done[gone]() is None, f"finished row {gone} still held when row {r} starts"
        res = compute(plan, model, r, on, tick)
        rows[r] = weakref.ref(res.sums)
        return res

    def spy_done(row, *args):
        out = done_row(row, *args)
        done[row] = weakref.ref(out)
        return out

    monkeypatch.setattr(row_work, "compute_row", spy_compute)
    monkeypatch.setattr(pipeline, "DoneRow", spy_done)
    run_inference(paths, tmp_path / "o.tif", tiny_model(2), _opts(threads=threads))
    assert len(rows) > 4 and len(done) == len(rows)


def test_progress_rate_and_eta_cover_the_whole_run():
    """Rows that arrive in bursts (Ray) must not read as a burst's rate: windows computed in
    this run (not resumed ones) over its whole time."""
    from types import SimpleNamespace

    from zoomsr.inference.progress import progress_bar

    bar = progress_bar(100, 10, True)  # 10 windows resumed
    rate, eta = bar.columns[3], bar.columns[5]
    task = SimpleNamespace(completed=30, elapsed=10.0, finished=False, total=100)
    assert str(rate.render(task)).strip() == "2.0 win/s"
    assert str(eta.render(task)) == "eta 0:00:35"
    fresh = SimpleNamespace(completed=10, elapsed=3.0, finished=False, total=100)
    assert "--" in str(rate.render(fresh)) and str(eta.render(fresh)) == "eta -:--:--"


def test_a_run_saved_with_the_weights_path_in_its_record_continues(tmp_path, tiny_model):
    """Runs saved before the weights were known by content alone recorded their path and
    file name too: such a run still continues (it was refused as 'model (model): was ...')."""
    import json

    from zoomsr.inference.writer import partial_dir

    paths = write_frames(tmp_path / "in", n=3, size=(72, 40))
    out = tmp_path / "run.tif"
    clean = tmp_path / "clean.tif"
    run_inference(paths, clean, tiny_model(2), _opts())

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_inference(paths, out, tiny_model(2), _opts(), on_row=stop)
    state = np.load(partial_dir(out) / "state.npz")
    arrays = {k: state[k] for k in state.files}
    meta = json.loads(str(arrays["meta"]))
    fingerprint = json.loads(meta["fingerprint"])
    assert "weights" not in fingerprint["model"] and "model" not in fingerprint["model"]
    fingerprint["model"].update(weights="net_g.pth", model="net_g.pth")  # the older record
    meta["fingerprint"] = json.dumps(fingerprint, sort_keys=True)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(partial_dir(out) / "state.npz", **arrays)
    result = run_inference(paths, out, tiny_model(2), _opts(resume=True))
    assert result.rows_resumed > 0 and out.read_bytes() == clean.read_bytes()


def test_a_slow_models_rate_reads_in_seconds_a_window():
    """4 windows of Real-ESRGAN on 2 CPU cores took 89 s: the bar said "0.0 win/s"."""
    from types import SimpleNamespace

    from zoomsr.inference.progress import progress_bar, rate_text

    assert rate_text(4 / 89).strip() == "22.2 s/win"
    assert rate_text(0.1).strip() == "0.1 win/s" and rate_text(12.34).strip() == "12.3 win/s"
    assert rate_text(1 / 1800).strip() == "30 min/win"
    task = SimpleNamespace(completed=4, elapsed=89.0, finished=False, total=8)
    assert str(progress_bar(8, 0, True).columns[3].render(task)).strip() == "22.2 s/win"


@pytest.mark.parametrize("threads", [1, 2])
def test_a_run_says_where_its_time_went(frames_3857, tiny_model, tmp_path, threads):
    """phases: the first and the last row, then finishing the output and what follows, in
    that order, within the run's seconds."""
    res = run_inference(frames_3857, tmp_path / "o.tif", tiny_model(2),
                        InferenceOptions(tiling=Tiling(window=32, overlap=8), progress=False,
                                         threads=threads))
    ph = res.phases
    assert set(ph) == {"first_row", "last_row", "output_finish", "after_output"}
    assert 0 < ph["first_row"] <= ph["last_row"] < res.seconds
    assert ph["output_finish"] >= 0 and ph["after_output"] >= 0
    assert ph["last_row"] + ph["output_finish"] + ph["after_output"] <= res.seconds + 1e-6
