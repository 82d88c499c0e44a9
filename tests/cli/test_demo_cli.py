"""``zoomsr demo``: (a) real Sentinel-2 pixels (spyndex) through Real-ESRGAN x4plus, (b) a
generated georeferenced series through the packaged multi-image default, offline."""

from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio

from zoomsr.errors import ConfigError, InputError
from zoomsr.io.png import read_png
from zoomsr_needs import require_package, require_realesrgan_ncnn


@pytest.mark.slow
def test_demo_writes_lr_sr_bicubic_png(cli, tmp_path, monkeypatch):
    require_realesrgan_ncnn()
    require_package("spyndex")
    monkeypatch.setenv("ZOOMSR_CACHE", str(tmp_path / "cache"))
    code, stdout, err = cli("demo", tmp_path / "demo", "--size", "16", "--series-size", "32",
                            "--device", "cpu")
    assert code == 0, err
    assert "(a) wrote" in stdout and "(b) wrote" in stdout and "zoomsr-multi8" in stdout
    with rasterio.open(tmp_path / "demo" / "sentinel2_series_x4.tif") as ds:
        assert ds.crs.to_epsg() == 32615 and ds.shape == (128, 128)
    png = read_png(tmp_path / "demo" / "sentinel2_realesrgan.png")
    assert png.shape == (64, 3 * 64 + 2 * 4, 3)
    sr, bic = png[:, 68:132], png[:, 136:]
    assert sr.std() > 5  # an image, not a flat fill
    assert abs(float(sr.mean()) - float(bic.mean())) < 20  # same scene and brightness
    assert (sr != bic).mean() > 0.5
    code, _, err = cli("demo", tmp_path / "demo", "--size", "16", "--device", "cpu")
    assert code == 2 and "--overwrite" in err


def test_spyndex_sample_is_real_s2():
    require_package("spyndex")
    from zoomsr.inference.demo import spyndex_sample

    data = spyndex_sample()
    assert data.shape == (4, 300, 300)
    # reflectance x 10000: NIR (B08) brighter than red over this vegetated scene
    assert 0 < data.min() and data.max() < 10000 and data[3].mean() > data[2].mean()


@pytest.fixture(scope="module")
def multi8():
    from zoomsr.inference import build_inference_model
    from zoomsr.weights import fetch, registry

    entry = registry.get_entry(registry.MULTI_DEFAULT_WEIGHTS)
    return build_inference_model(weights=fetch.resolve(entry.name), model=entry.model,
                                 config=entry.config, device="cpu", label=entry.name)


def test_demo_series_is_a_georeferenced_x4_geotiff(multi8, tmp_path):
    from zoomsr.inference.demo import run_series_demo

    result = run_series_demo(tmp_path / "demo", multi8, size=48, n_frames=8)
    assert len(result.lr_files) == 8
    with rasterio.open(result.lr_files[0]) as lr:
        assert lr.crs.to_epsg() == 32615 and lr.res == (10.0, 10.0) and lr.count == 3
        lr_bounds, lr_shape = lr.bounds, lr.shape
    assert lr_shape == (48, 48)
    with rasterio.open(result.tif) as ds:
        assert ds.crs.to_epsg() == 32615
        assert ds.res == (2.5, 2.5)  # LR pixel / 4
        assert ds.bounds == lr_bounds
        assert ds.shape == (192, 192) and ds.count == 3
        assert ds.dtypes == ("uint8", "uint8", "uint8")
        sr = ds.read()
    assert sr.std() > 5  # an image, not a flat fill
    assert result.preview is not None and result.preview.is_file()
    with pytest.raises(InputError, match="--overwrite"):
        run_series_demo(tmp_path / "demo", multi8, size=48)
    # --overwrite with fewer frames: the earlier run's other frames (of another size) were
    # left in the series folder; a file of the user's there is kept
    mine = tmp_path / "demo" / "lr_series" / "19990101_TCI.tif"
    shutil.copy(result.tif, mine)
    again = run_series_demo(tmp_path / "demo", multi8, size=16, n_frames=3, overwrite=True)
    assert sorted((tmp_path / "demo" / "lr_series").iterdir()) == sorted([*again.lr_files, mine])


def test_demo_series_is_deterministic(tmp_path):
    from zoomsr.inference.demo import write_series

    first = write_series(tmp_path / "a", size=24, n_frames=3, seed=0)
    again = write_series(tmp_path / "b", size=24, n_frames=3, seed=0)
    other = write_series(tmp_path / "c", size=24, n_frames=3, seed=1)
    assert [p.name for p in first] == ["20240601_TCI.tif", "20240606_TCI.tif", "20240611_TCI.tif"]

    def read(paths):
        arrays = []
        for p in paths:
            with rasterio.open(p) as ds:
                arrays.append(ds.read())
        return np.stack(arrays)

    assert np.array_equal(read(first), read(again))
    assert not np.array_equal(read(first), read(other))


# --- Everything is checked before any work: one line, exit 2, nothing loaded or written. ---

MODEL_REACHED = "model loading reached"


@pytest.fixture
def no_model(monkeypatch):
    """Fail fast, with a known message, if the demo gets as far as loading a model."""
    import zoomsr.cli.infer

    def load_model(*args, **kwargs):
        raise ConfigError(MODEL_REACHED)

    monkeypatch.setattr(zoomsr.cli.infer, "load_model", load_model)


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize(("args", "message"), [
    (["--frames", "0"], "--frames must be in 1..32, got 0"),
    (["--frames", "33"], "--frames must be in 1..32, got 33"),
    (["--series-size", "0"], "--series-size must be in 16..1024 px, got 0"),
    (["--series-size", "1025"], "--series-size must be in 16..1024 px, got 1025"),
    (["--size", "15"], "--size must be in 16..300 px"),
    (["--size", "301"], "--size must be in 16..300 px"),
    (["--device", "gpu"], "--device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
])
def test_demo_bad_option_fails_before_any_work(cli, tmp_path, no_model, args, message):
    code, stdout, err = cli("demo", tmp_path / "out", *args)
    assert code == 2, err
    assert message in err and MODEL_REACHED not in err
    assert len(err.strip().splitlines()) == 1 and stdout == ""
    assert files_under(tmp_path) == []


def test_demo_out_is_a_file(cli, tmp_path, no_model):
    out = tmp_path / "out.png"
    out.write_bytes(b"mine")
    code, _, err = cli("demo", out)
    assert code == 2 and err.strip() == f"error: {out}: exists and is not a folder"
    assert out.read_bytes() == b"mine" and files_under(tmp_path) == ["out.png"]
    code, _, err = cli("demo", out / "sub")
    assert code == 2 and f"{out / 'sub'}: cannot be created: {out} is not a folder" in err
    assert files_under(tmp_path) == ["out.png"]


def test_demo_out_not_writable(cli, tmp_path, no_model, monkeypatch):
    import zoomsr.io.folders

    def refused(dir):  # noqa: A002  (the tests may run as root, who can write anywhere)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(zoomsr.io.folders.tempfile, "TemporaryFile", refused)
    code, _, err = cli("demo", tmp_path / "a" / "out")
    assert code == 2 and f"cannot write in {tmp_path} (Permission denied)" in err
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("earlier", ["sentinel2_realesrgan.png", "sentinel2_series_x4.tif",
                                     "sentinel2_series_x4.preview.png",
                                     "lr_series/20240606_TCI.tif"])
def test_demo_refuses_earlier_outputs_unless_overwrite(cli, tmp_path, no_model, earlier):
    out = tmp_path / "out"
    (out / "lr_series").mkdir(parents=True)
    (out / earlier).write_bytes(b"earlier")
    code, _, err = cli("demo", out)
    assert code == 2 and MODEL_REACHED not in err
    assert f"{out / earlier}: already exists (pass --overwrite to replace it)" in err
    assert (out / earlier).read_bytes() == b"earlier"
    assert files_under(tmp_path) == sorted(["out", "out/lr_series", f"out/{earlier}"])
    code, _, err = cli("demo", out, "--overwrite")  # accepted: gets as far as the model
    assert code == 2 and MODEL_REACHED in err


def test_demo_refuses_many_outputs_in_one_line(cli, tmp_path, no_model):
    out = tmp_path / "out"
    (out / "lr_series").mkdir(parents=True)
    for name in ("sentinel2_realesrgan.png", "sentinel2_series_x4.tif",
                 "lr_series/20240601_TCI.tif", "lr_series/20240606_TCI.tif"):
        (out / name).write_bytes(b"earlier")
    code, _, err = cli("demo", out)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "and 2 more demo output(s): already exist (pass --overwrite to replace them)" in err
    # a frame the run would not write (a later date than --frames gives) is not in the way
    code, _, err = cli("demo", out, "--frames", "1")
    assert code == 2 and "and 1 more demo output(s)" in err


def test_demo_output_name_taken_by_a_folder(cli, tmp_path, no_model):
    out = tmp_path / "out"
    (out / "sentinel2_series_x4.tif").mkdir(parents=True)
    code, _, err = cli("demo", out, "--overwrite")
    assert code == 2 and f"{out / 'sentinel2_series_x4.tif'}: exists and is not a file" in err
    (out / "sentinel2_series_x4.tif").rmdir()
    (out / "lr_series").write_bytes(b"x")
    code, _, err = cli("demo", out, "--overwrite")
    assert code == 2 and f"{out / 'lr_series'}: exists and is not a folder" in err


def test_demo_outputs_list_every_file():
    from zoomsr.inference.demo import demo_outputs

    names = [str(p).replace(os.sep, "/") for p in demo_outputs("d", n_frames=2)]
    assert names == ["d/sentinel2_realesrgan.png", "d/sentinel2_series_x4.tif",
                     "d/sentinel2_series_x4.preview.png", "d/lr_series/20240601_TCI.tif",
                     "d/lr_series/20240606_TCI.tif"]


def test_series_demo_refuses_existing_frames(tmp_path):
    from zoomsr.inference.demo import run_series_demo

    frame = tmp_path / "lr_series" / "20240601_TCI.tif"
    frame.parent.mkdir()
    frame.write_bytes(b"earlier")
    fake = SimpleNamespace(n_images=8, label="fake")  # refused before the model is used
    with pytest.raises(InputError, match="--overwrite"):
        run_series_demo(tmp_path, fake, size=16, n_frames=1)
    assert frame.read_bytes() == b"earlier"
