"""``zoomsr weights``: list, download, path, import-ncnn."""

from __future__ import annotations

import io
import urllib.error
import urllib.request

import pytest
import torch

from zoomsr_needs import require_realesrgan_ncnn

#: esrgan-8 narrowed to a tiny RRDBNet in the tests that save its file by hand (``tiny``).
TINY = {"num_feat": 4, "num_block": 1, "num_grow_ch": 2}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOMSR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


@pytest.fixture
def tiny(monkeypatch):
    """esrgan-8 expects the tiny RRDBNet that :func:`_checkpoint` saves."""
    import dataclasses

    from zoomsr.weights import registry

    entry = registry.get_entry("esrgan-8")
    monkeypatch.setitem(registry.REGISTRY, "esrgan-8", dataclasses.replace(
        entry, config={**entry.config, **TINY}))


def _checkpoint(tag: int, num_in_ch: int = 24, **config: int) -> bytes:
    """A BasicSR-style ``torch.save`` file of a tiny RRDBNet (seeded by ``tag``): a checkpoint
    saved by hand."""
    from zoomsr.models import create_model

    torch.manual_seed(tag)
    model = create_model("rrdbnet", num_in_ch=num_in_ch, **{**TINY, **config})
    buffer = io.BytesIO()
    torch.save({"params_ema": model.state_dict()}, buffer)
    return buffer.getvalue()


def _need_ncnn():
    require_realesrgan_ncnn()


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
    assert cache.is_dir()  # where the message says to save the file: it can be saved there


def test_download_offline_is_one_line(cli, cache, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code, _, err = cli("weights", "download", "esrgan-8")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "https://" in lines[0] and str(cache) in lines[0]
    assert cache.is_dir()


def test_download_force_fetches_again_over_the_cached_file(cli, cache, monkeypatch, tiny):
    """Without --force a cached file is verified, not fetched; with it the file is fetched
    again, replaces the cached one and its SHA-256 is recorded anew (trust on first use)."""
    served = {"body": _checkpoint(1)}
    fetched = []

    def urlopen(url, timeout=None):  # noqa: ANN001
        fetched.append(url)
        return io.BytesIO(served["body"])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    path = cache / "esrgan_8S2.pth"
    code, out, err = cli("weights", "download", "esrgan-8")
    assert code == 0, err
    assert path.read_bytes() == served["body"] and len(fetched) == 1
    served["body"] = _checkpoint(2)  # the server's file changed
    code, _, err = cli("weights", "download", "esrgan-8")
    assert code == 0, err
    assert path.read_bytes() == _checkpoint(1) and len(fetched) == 1  # the cache's
    code, _, err = cli("weights", "download", "esrgan-8", "--force")
    assert code == 0, err
    assert path.read_bytes() == _checkpoint(2) and len(fetched) == 2
    code, out, err = cli("weights", "path", "esrgan-8")  # the new file is the one recorded
    assert code == 0 and out.strip() == str(path), err


def test_unknown_name(cli, cache, tmp_path):
    code, _, err = cli("weights", "download", "nope")
    assert code == 2 and "unknown weights" in err and "file path" not in err
    # a file given where a name is taken: said so (it was offered "or pass a file path")
    ckpt = tmp_path / "my.pth"
    ckpt.write_bytes(b"x")
    for command in ("path", "download", "forget"):
        code, _, err = cli("weights", command, ckpt)
        assert code == 2 and err.strip() == (
            f"error: {ckpt}: a file, not a registry name; this command takes a name of "
            "`zoomsr weights list` (a checkpoint file goes to --weights as it is)")


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


def test_import_ncnn_refuses_an_output_name_before_converting(cli, tmp_path, monkeypatch):
    """It read and converted the files (13 s) before saying the suffix would not do."""
    import zoomsr.weights.ncnn as ncnn

    def never(*args, **kwargs):
        raise AssertionError("the ncnn files were read")

    monkeypatch.setattr(ncnn, "read_ncnn", never)
    (tmp_path / "m.param").write_text("7767517\n")
    (tmp_path / "m.bin").write_bytes(b"")
    code, _, err = cli("weights", "import-ncnn", tmp_path / "m.param", tmp_path / "m.bin",
                       "-o", tmp_path / "x4.txt")
    assert code == 2 and "--output" in err and "x4.txt: use a .safetensors, .pth" in err


def test_import_ncnn_of_an_srvgg_model_says_it_is_not_an_rrdbnet(cli, tmp_path, cache):
    _need_ncnn()
    from zoomsr.weights.fetch import ncnn_model_dir

    folder = ncnn_model_dir()
    param = folder / "realesr-animevideov3-x4.param"
    code, _, err = cli("weights", "import-ncnn", param, folder / "realesr-animevideov3-x4.bin",
                       "-o", tmp_path / "anime.safetensors")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: {param}: not an RRDBNet (ESRGAN / Real-ESRGAN "
                               "x4plus-style) ncnn model")
    assert "not supported" not in err and not (tmp_path / "anime.safetensors").exists()


def test_hand_fixed_file_is_accepted_offline(cli, cache, monkeypatch, tiny):
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


def test_junk_file_in_the_cache_is_refused_not_recorded(cli, cache, tiny):
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
    listing = cli("weights", "list")[1]
    row = next(r for r in listing.splitlines() if r.startswith("esrgan-8 "))
    assert "recorded" not in row and " damaged " in row and "damaged = " in listing
    path.write_bytes(_checkpoint(1))  # the real file, saved over it by hand
    code, out, err = cli("weights", "path", "esrgan-8")
    assert code == 0 and out.strip() == str(path), err
    # "cached" says what was (not) checked: the layout, not the architecture or SHA-256
    listing = cli("weights", "list")[1]
    assert "state: cached = in the cache and laid out as a checkpoint" in listing
    assert "damaged = " not in listing


def test_path_help_tells_what_it_does(cli):
    code, out, _ = cli("weights", "path", "--help")
    text = " ".join(out.split())
    assert code == 0
    for said in ("never downloads", "exit 2", "exit 1", "realesrgan-x4plus", "first use"):
        assert said in text


def test_path_of_the_offline_default_converts_on_first_use(cli, cache, monkeypatch):
    """No error exit for the ncnn default: converted (here by a stand-in), with a note."""
    from safetensors.torch import save_file

    from zoomsr.weights import fetch, registry

    def convert(entry, target):
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file({"w": torch.zeros(2)}, str(target))
        return target

    monkeypatch.setattr(fetch, "_convert_ncnn", convert)
    target = cache / registry.get_entry("realesrgan-x4plus").filename
    code, out, err = cli("weights", "path", "realesrgan-x4plus")
    assert code == 0 and out.strip() == str(target)
    assert "converted" in err and "first use" in err
    code, out, err = cli("weights", "path", "realesrgan-x4plus")  # cached now: no note
    assert code == 0 and out.strip() == str(target) and err == ""
    # a damaged conversion (truncated) is listed as such and converted again, not refused
    target.write_bytes(target.read_bytes()[:-4])
    row = next(r for r in cli("weights", "list")[1].splitlines()
               if r.startswith("realesrgan-x4plus "))
    assert " damaged " in row
    from zoomsr.weights.checks import content_problem

    assert content_problem(target).startswith("a damaged or truncated safetensors file: ")
    for command in ("path", "download"):
        target.write_bytes(target.read_bytes()[:-4])
        code, out, err = cli("weights", command, "realesrgan-x4plus")
        assert code == 0 and out.strip() == str(target) and "converted" in err, err
        assert content_problem(target) is None
    row = next(r for r in cli("weights", "list")[1].splitlines()
               if r.startswith("realesrgan-x4plus "))
    assert " cached " in row


def test_file_of_another_architecture_is_refused_not_recorded(cli, cache):
    """The user trial: an 8-feature, 1-block RRDBNet of 24 input channels saved as esrgan-4
    (RRDBNet 64/23/32, 12 channels) was recorded as trusted."""
    path = cache / "esrgan_4S2.pth"
    cache.mkdir(parents=True)
    path.write_bytes(_checkpoint(0, num_feat=8))
    for command in ("download", "path"):
        code, out, err = cli("weights", command, "esrgan-4")
        lines = err.strip().splitlines()
        assert code == 2 and out == "" and len(lines) == 1, (command, err)
        assert lines[0].startswith(f"error: {path} is not a checkpoint of esrgan-4")
        assert "conv_first.weight is [8, 24, 3, 3] in the file, [64, 12, 3, 3] in the model" \
            in lines[0]
        assert "sha256" not in err and "nothing recorded" in lines[0]
    assert not (cache / "checksums.json").exists()


def test_cache_setting_that_is_a_file_is_one_line(cli, tmp_path, monkeypatch):
    setting = tmp_path / "some" / "file.json"
    setting.parent.mkdir()
    setting.write_text("{}")
    monkeypatch.setenv("ZOOMSR_CACHE", str(setting))
    for args in (("path", "realesrgan-x4plus"), ("download", "esrgan-8"), ("list",)):
        code, out, err = cli("weights", *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, (args, err)
        assert lines[0] == (f"error: ZOOMSR_CACHE={setting} points at a file, not a folder; "
                            "set it to a folder for the weights cache (created if missing)")
