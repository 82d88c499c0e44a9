"""The packaged multi-image default ``zoomsr-multi8``: file, registry, quality on held-out data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoomsr.io.hashing import sha256_file
from zoomsr.weights import cache, fetch, registry

NAME = registry.MULTI_DEFAULT_WEIGHTS


@pytest.fixture(scope="module")
def multi8():
    from zoomsr.models import from_checkpoint

    return from_checkpoint(fetch.resolve(NAME)).eval()


def test_packaged_file_matches_registry(multi8):
    entry = registry.get_entry(NAME)
    path = fetch.resolve(NAME)
    assert entry.source == "package" and path.parent == cache.PACKAGE_DATA
    assert sha256_file(path) == entry.sha256
    assert path.stat().st_size < 3_000_000  # small enough to ship
    assert multi8.name == entry.model and multi8.config == entry.config
    assert fetch.download(NAME) == (path, entry.sha256)  # nothing to fetch: verified in place
    assert cache.is_cached(NAME)


def test_tampered_package_file_is_refused(tmp_path, monkeypatch):
    from zoomsr.errors import CheckpointError

    entry = registry.get_entry(NAME)
    (tmp_path / entry.filename).write_bytes(b"not the shipped weights")
    monkeypatch.setattr(cache, "PACKAGE_DATA", tmp_path)
    with pytest.raises(CheckpointError, match="SHA-256"):
        fetch.resolve(NAME)
    (tmp_path / entry.filename).unlink()
    with pytest.raises(fetch.WeightsNotAvailableError, match="missing"):
        fetch.resolve(NAME)


def _valid_mean(lr: torch.Tensor) -> torch.Tensor:
    """Mean of the frames without black pixels, ``[B, T*3, H, W] -> [B, 3, H, W]``."""
    frames = lr.unflatten(1, (-1, 3))
    valid = ~(frames == 0).all(dim=2).flatten(2).any(dim=2)  # [B, T]
    valid[valid.sum(dim=1) == 0] = True
    w = valid.to(frames.dtype)[:, :, None, None, None]
    return (frames * w).sum(dim=1) / w.sum(dim=1)


def test_beats_bicubic_of_valid_mean_on_held_out_pairs(multi8, tmp_path):
    """Pairs of seed 7: the shipped model was trained on `zoomsr data sample --seed 0`."""
    from zoomsr.data import S2NAIPDataset
    from zoomsr.data.sample import write_sample
    from zoomsr.metrics import psnr

    root = write_sample(tmp_path / "heldout", pairs=6, seed=7, workers=1)
    data = S2NAIPDataset(root, n_images=8, train=False, seed=0)
    batch = torch.utils.data.default_collate([data[i] for i in range(len(data))])
    lr, hr = batch["lr"], batch["hr"]
    with torch.no_grad():
        sr = multi8(lr).clamp(0, 1)
    bicubic = F.interpolate(_valid_mean(lr), scale_factor=4, mode="bicubic").clamp(0, 1)
    model_db, bicubic_db = psnr(sr, hr).numpy(), psnr(bicubic, hr).numpy()
    assert np.mean(model_db) > np.mean(bicubic_db) + 1.0, (model_db, bicubic_db)
    assert (model_db > bicubic_db).sum() >= 5


def test_weights_list_and_path_show_the_packaged_default(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOMSR_CACHE", str(tmp_path / "cache"))
    code, out, err = cli("weights", "list")
    assert code == 0, err
    line = next(row for row in out.splitlines() if row.startswith(NAME))
    assert "rrdbnet" in line and " 8 " in line and "synthetic" in line.lower()
    code, out, err = cli("weights", "path", NAME)
    assert code == 0, err
    assert out.strip() == str(cache.PACKAGE_DATA / registry.get_entry(NAME).filename)


def test_python_api_takes_a_registry_name_as_the_cli_does():
    from zoomsr.errors import ConfigError
    from zoomsr.inference import build_inference_model

    net = build_inference_model(weights="zoomsr-multi8", device="cpu")
    assert net.label == "zoomsr-multi8" and net.n_images == 8
    assert net.weights_sha256 == sha256_file(fetch.resolve("zoomsr-multi8"))
    with pytest.raises(ConfigError, match=r"--bands tci,b08: zoomsr-multi8 takes bands tci"):
        build_inference_model(weights="zoomsr-multi8", device="cpu", bands="tci,b08")
    # --model that is not the entry's architecture was silently replaced by it
    with pytest.raises(ConfigError, match=r"--model srcnn: zoomsr-multi8 is a rrdbnet "
                                          r"checkpoint; leave --model out"):
        build_inference_model(weights="zoomsr-multi8", model="srcnn", device="cpu")
    same = build_inference_model(weights="zoomsr-multi8", model="rrdbnet", device="cpu")
    assert same.n_images == 8
    # -c against the entry's own config was merged, then failed to load with advice to give
    # the config
    with pytest.raises(ConfigError, match=r"-c num_feat=16: zoomsr-multi8 is a rrdbnet with "
                                          r"num_feat=32; leave it out"):
        build_inference_model(weights="zoomsr-multi8", config={"num_feat": 16}, device="cpu")
