"""S2-NAIP chunk layout in, one georeferenced GeoTIFF out (tile ids give the place)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from infer_helpers import TINY

from zoomsr import grid as tiles
from zoomsr.inference import InferenceOptions, run_inference


def test_chunk_layout_is_georeferenced(tiny_dataset, tiny_model, tmp_path):
    """tiny_dataset: tiles 1000_2000, 1001_2000, 1000_2001, 1001_2001 with 6 dates each."""
    out = tmp_path / "grid.tif"
    result = run_inference(tiny_dataset, out, tiny_model(2), InferenceOptions(progress=False))
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 3857 and ds.width == ds.height == 256
        left, top = tiles.Tile(1000, 2000).bounds.left, tiles.Tile(1000, 2000).bounds.top
        right, bottom = tiles.Tile(1001, 2001).bounds.right, tiles.Tile(1001, 2001).bounds.bottom
        assert np.allclose(tuple(ds.bounds), (left, bottom, right, top))
        assert ds.res[0] == pytest.approx(tiles.HR_RESOLUTION)
        data = ds.read()
        assert ds.dataset_mask().min() == 255
        tags = ds.tags()
        assert tags["zoomsr_scale"] == "4" and "rrdbnet" in tags["zoomsr_architecture"]
        assert '"window": 32' in tags["zoomsr_tiling"]
    # each tile is its own chunk: tile 1001_2000 equals the model on that tile alone
    from zoomsr.data.layout import read_band_series
    from zoomsr.inference.frames import choose_frames, fill_gaps, frame_scores

    series = read_band_series(tiny_dataset / "sentinel2/1001_2000/tci.png", "tci")
    pixels = np.moveaxis(series, -1, 1).astype(np.float32) / 255
    valid = series.any(-1)
    filled, _, _ = fill_gaps(pixels, valid)
    model = tiny_model(2)
    sr = model.forward(filled[choose_frames(frame_scores(pixels, valid), 2)][None])[0]
    expected = np.round(np.clip(sr, 0, 1) * 255)
    assert np.abs(data[:, :128, 128:].astype(int) - expected).max() <= 1
    assert result.windows == 4


def test_missing_tile_is_nodata(tiny_dataset, tiny_model, tmp_path):
    import shutil

    shutil.rmtree(tiny_dataset / "sentinel2" / "1001_2001")
    out = tmp_path / "grid.tif"
    run_inference(tiny_dataset, out, tiny_model(2), InferenceOptions(progress=False))
    with rasterio.open(out) as ds:
        mask = ds.dataset_mask()
    assert (mask[128:, 128:] == 0).all() and (mask[:128] == 255).all()


def test_chunk_layout_writes_the_lr_mosaic_and_preview(tiny_dataset, tiny_model, tmp_path):
    """--save-lr: the mean of each tile's valid frames, on the tiles' 9.555 m grid, the same
    bounds as the output; --preview: a PNG beside it."""
    from zoomsr.data.layout import read_band_series

    out = tmp_path / "grid.tif"
    result = run_inference(tiny_dataset, out, tiny_model(2),
                           InferenceOptions(progress=False, save_lr=True, preview=True))
    assert result.lr_output == tmp_path / "grid.lr.tif" and result.preview.is_file()
    with rasterio.open(out) as hr, rasterio.open(result.lr_output) as lr:
        assert lr.crs == hr.crs and lr.bounds == hr.bounds and lr.width * 4 == hr.width
        mosaic = lr.read()
        # LR -> output pixels, as a scene's: the mosaic's own tag said the output's 2.389 m
        assert "EPSG:3857 9.55463 m -> 2.38866 m," in lr.tags()["zoomsr_grid"]
    series = read_band_series(tiny_dataset / "sentinel2/1000_2001/tci.png", "tci")
    valid = series.any(-1)
    mean = (series * valid[..., None]).sum(0) / np.maximum(valid.sum(0), 1)[..., None]
    got = np.moveaxis(mosaic[:, 32:, :32], 0, -1).astype(int)
    assert np.abs(got - np.round(mean)).max() <= 1


def test_an_interrupted_chunk_run_resumes_and_a_finished_one_knows_its_dataset(
        tiny_dataset, tiny_model, tmp_path):
    """The chunk path's record held the weights' path: even the same command was refused on
    --resume ('model (model): was null, now ...'). A finished output of another dataset
    folder was reported as done on --resume."""
    import shutil

    from zoomsr.errors import InputError
    from zoomsr.inference.run_record import finished_same_run

    clean = tmp_path / "clean.tif"
    run_inference(tiny_dataset, clean, tiny_model(2), InferenceOptions(progress=False))
    out = tmp_path / "grid.tif"

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_inference(tiny_dataset, out, tiny_model(2), InferenceOptions(progress=False),
                      on_row=stop)
    result = run_inference(tiny_dataset, out, tiny_model(2),
                           InferenceOptions(progress=False, resume=True))
    assert out.read_bytes() == clean.read_bytes() and result.windows == 4
    opts = InferenceOptions(progress=False, resume=True)
    assert finished_same_run(out, [tiny_dataset], tiny_model(2), opts)
    other = tmp_path / "other"
    shutil.copytree(tiny_dataset, other)
    with pytest.raises(InputError, match=rf"finished by an earlier run of other inputs \(not "
                                         rf"the S2-NAIP chunks of {other}"):
        finished_same_run(out, [other], tiny_model(2), opts)
    # a tile rewritten, or added, since: not the finished result (it was reported as done)
    tci = next((tiny_dataset / "sentinel2").glob("*/tci.png"))
    tci.write_bytes(tci.read_bytes())
    import os

    st = tci.stat()
    os.utime(tci, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(InputError, match=r"finished by an earlier run, but the S2-NAIP tiles "
                                         r"of .* changed since \(tiles added or removed, or "
                                         r"files rewritten: 4 files then, 4 files now\)"):
        finished_same_run(out, [tiny_dataset], tiny_model(2), opts)


def test_a_chunk_run_resumed_in_another_precision_is_refused(tiny_dataset, tmp_path):
    """Its record lacked the precision: fp32 rows and bf16 rows were mixed in one output."""
    from zoomsr.errors import InputError
    from zoomsr.inference import build_inference_model

    def model(precision):
        return build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 6},
                                     random_weights=True, device="cpu", precision=precision)

    out = tmp_path / "grid.tif"

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_inference(tiny_dataset, out, model("fp32"), InferenceOptions(progress=False),
                      on_row=stop)
    with pytest.raises(InputError, match=r"precision: was \"fp32\", now \"bf16\""):
        run_inference(tiny_dataset, out, model("bf16"),
                      InferenceOptions(progress=False, resume=True))


def test_tiles_far_apart_are_refused_before_any_file(tiny_dataset, tiny_model, tmp_path):
    """One mosaic of the tiles' bounding box: two tiles 30000 tiles apart made a 59 TB raw
    file, stopped only by a file-size error (`ulimit -f`?)."""
    import shutil

    from zoomsr.errors import InputError

    for kind in ("naip/img-a", "sentinel2"):
        src = next(p for p in (tiny_dataset / kind).iterdir() if p.name == "1001_2001")
        shutil.move(src, src.with_name("31001_32001"))
    out = tmp_path / "far.tif"
    with pytest.raises(InputError, match=r"4 tiles lie far apart \(a box of 30002 x 30002 "
                                         r"tiles: .*GB before compression, mostly empty\)"):
        run_inference(tiny_dataset, out, tiny_model(2), InferenceOptions(progress=False))
    from zoomsr.inference.writer import partial_dir

    assert not out.exists() and not partial_dir(out).exists()


def test_odd_tile_folders_are_named_not_dropped(tiny_dataset, tiny_model, tmp_path):
    """A tile id outside the zoom-17 grid (a zoom-18 dataset) and a tile folder without
    tci.png were skipped without a word."""
    import shutil

    from zoomsr.errors import DataError, ZoomsrWarning

    s2 = tiny_dataset / "sentinel2"
    shutil.rmtree(s2 / "1001_2001")
    (s2 / "1001_2001").mkdir()  # its files lost
    (s2 / "notes").mkdir()  # not a tile folder (a misnamed one?): named too
    (s2 / ".ipynb_checkpoints").mkdir()  # hidden: nobody's tile, not named
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_inference(tiny_dataset, tmp_path / "a.tif", tiny_model(2),
                               InferenceOptions(progress=False))
    # each once (the run's digest of its inputs scanned the folders too, and said it again)
    said = [str(w.message) for w in caught if issubclass(w.category, ZoomsrWarning)]
    assert said == [f"{s2 / 'notes'}: not a tile folder (named {{col}}_{{row}}), so no "
                    "output from it", f"{s2 / '1001_2001'}: no tci.png, so no output there"]
    # the area (and km2/s) is that of the 3 tiles present, not of their 2 x 2 box
    assert result.area_km2 == pytest.approx(0.75 * result.grid.area_km2, rel=1e-3)
    zoom18 = s2 / "140000_97712"
    shutil.copytree(s2 / "1000_2000", zoom18)
    with pytest.raises(DataError, match=rf"{zoom18}: tile 140000_97712 is outside the zoom-17 "
                                        r"grid"):
        run_inference(tiny_dataset, tmp_path / "b.tif", tiny_model(2),
                      InferenceOptions(progress=False))


def test_on_a_gpu_chunk_input_takes_its_batch_and_reports_nothing_ignored(
        tiny_dataset, tiny_model, tmp_path, monkeypatch):
    """Left to the device, a chunk run on a GPU takes 32 chunks a call (8 on a CPU) and no
    tiling option was given, so none is reported ignored (the GPU's automatic windows made it
    report --window ignored); a --window given is reported ignored and does not shrink the
    batch (on the scene path a GPU's batch follows the window)."""
    import torch

    from zoomsr.inference import Tiling, options, s2naip

    model = tiny_model(2)
    batches: list[int] = []

    class OnGPU:
        device = torch.device("meta")

        def __getattr__(self, name):
            return getattr(model, name)

    monkeypatch.setattr(options, "on_accelerator", lambda device: True)
    chosen = s2naip.default_batch_size
    monkeypatch.setattr(s2naip, "default_batch_size",
                        lambda device: batches.append(chosen(device)) or batches[-1])
    result = run_inference(tiny_dataset, tmp_path / "a.tif", OnGPU(),
                           InferenceOptions(progress=False))
    assert result.ignored == [] and batches == [32]
    result = run_inference(tiny_dataset, tmp_path / "b.tif", OnGPU(),
                           InferenceOptions(progress=False, tiling=Tiling(512, 16)))
    assert len(result.ignored) == 1 and result.ignored[0].startswith("--window/--overlap/")
    assert batches == [32, 32]


def test_the_grid_tag_gives_the_resolution_of_the_models_scale(tiny_dataset, tmp_path):
    """A x2 model's mosaic is at 4.78 m, but its zoomsr_grid tag said 2.389 m."""
    from zoomsr.inference import build_inference_model

    model = build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 6, "scale": 2},
                                  random_weights=True, device="cpu")
    out = tmp_path / "x2.tif"
    run_inference(tiny_dataset, out, model, InferenceOptions(progress=False))
    with rasterio.open(out) as ds:
        assert ds.res[0] == pytest.approx(2 * tiles.HR_RESOLUTION)
        assert "EPSG:3857 9.55463 m -> 4.77731 m," in ds.tags()["zoomsr_grid"]


def test_a_row_of_tiles_is_read_and_computed_batch_by_batch(tiny_dataset, tiny_model, tmp_path,
                                                             monkeypatch):
    """A row's tiles were all read, then all computed, then placed: a row of thousands of
    tiles held every input and float output at once (memory growing with the row's length).
    Now each batch is read, computed and placed before the next is read, with the same
    bytes."""
    from zoomsr.inference import s2naip

    whole = tmp_path / "whole.tif"
    run_inference(tiny_dataset, whole, tiny_model(2),
                  InferenceOptions(progress=False, batch_size=8, save_lr=True))
    events: list[str] = []
    read = s2naip.read_band_series
    monkeypatch.setattr(s2naip, "read_band_series",
                        lambda *a, **k: events.append("read") or read(*a, **k))
    model = tiny_model(2)
    forward = model.forward
    model.forward = lambda x, *a, **k: events.append(f"forward {len(x)}") or forward(x, *a, **k)
    out = tmp_path / "one.tif"
    run_inference(tiny_dataset, out, model,
                  InferenceOptions(progress=False, batch_size=1, save_lr=True))
    assert events == ["read", "forward 1"] * 4
    assert out.read_bytes() == whole.read_bytes()
    assert (tmp_path / "one.lr.tif").read_bytes() == (tmp_path / "whole.lr.tif").read_bytes()


def test_a_missing_band_file_is_refused_before_any_tile_is_computed(tiny_dataset, tmp_path):
    """A tile of the last row without b08.png failed the run at that row, after every row
    before it was computed (hours, on a large dataset)."""
    from zoomsr.errors import DataError
    from zoomsr.inference import build_inference_model

    model = build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 8},
                                  random_weights=True, device="cpu", bands="tci,b08")
    (tiny_dataset / "sentinel2" / "1001_2001" / "b08.png").unlink()
    (tiny_dataset / "sentinel2" / "1000_2001" / "b08.png").unlink()
    rows: list[int] = []
    out = tmp_path / "grid.tif"
    with pytest.raises(DataError, match=r"1000_2001/b08.png: missing; the model takes bands "
                                        r"tci,b08 \(and 1 other band file\(s\)\)$"):
        run_inference(tiny_dataset, out, model, InferenceOptions(progress=False),
                      on_row=lambda done, total: rows.append(done))
    from zoomsr.inference.writer import partial_dir

    assert rows == [] and not out.exists() and not partial_dir(out).exists()
