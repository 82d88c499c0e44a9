"""CLIPScore on a tiny random open_clip ViT: properties, caching, weights resolution, modes."""

from __future__ import annotations

import gc
import os
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zoomsr.errors import CheckpointError, InputError
from zoomsr.metrics.base import WeightsNotFoundError

try:
    import open_clip
except ImportError:  # a declared dependency: only a local, partial install may lack it
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("open_clip is not installed", allow_module_level=True)

from zoomsr.metrics.clipscore import (  # noqa: E402 - after the importorskip
    CLIPScore,
    resolve_clip_weights,
)


def test_identity_symmetry_batch_invariance(tiny_clip, images):
    x, y = images.smooth(6, 40, seed=0), images.smooth(6, 40, seed=1)
    batched, single = tiny_clip(batch_size=6), tiny_clip(batch_size=1)
    torch.testing.assert_close(batched(x, x), torch.ones(6, dtype=torch.float64), atol=1e-5, rtol=0)
    s = batched(x, y)
    assert s.shape == (6,) and s.dtype == torch.float64
    assert (s < 1 - 1e-4).all()
    torch.testing.assert_close(s, batched(y, x), atol=1e-6, rtol=0)
    torch.testing.assert_close(s, single(x, y), atol=1e-5, rtol=0)
    torch.testing.assert_close(s[3:4], batched(x[3:4], y[3:4]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["paper", "standard"])
def test_blurred_scores_closer_than_unrelated(tiny_clip, images, mode):
    x, other = images.smooth(8, 64, seed=2), images.smooth(8, 64, seed=3)
    metric = tiny_clip(mode=mode)
    assert (metric(images.blur(x), x) > metric(other, x)).all()


def test_model_built_once_eval_no_grad_image_tower_only(tiny_clip, images):
    a, b = tiny_clip(), tiny_clip(mode="standard")
    assert a.encoder is b.encoder  # cached per (name, weights, device, dtype), not per mode
    assert not a.encoder.training
    assert not any(p.requires_grad for p in a.encoder.parameters())
    assert not hasattr(a.encoder.tower, "token_embedding")  # text tower dropped
    x = images.smooth(2, 32).requires_grad_(True)
    assert not a.embed(x).requires_grad


def test_paper_preprocessing_is_nearest_without_normalisation(tiny_clip, images):
    x = images.smooth(1, 50)
    paper = tiny_clip(mode="paper")
    torch.testing.assert_close(paper.preprocess(x), F.interpolate(x, size=(32, 32)))


def test_standard_preprocessing_normalises_with_the_weights_mean_std(tiny_clip):
    metric = tiny_clip(mode="standard")
    out = metric.preprocess(torch.full((1, 3, 64, 48), 0.5))
    assert out.shape == (1, 3, 32, 32)
    mean = torch.tensor(metric.weights.mean).view(1, 3, 1, 1)
    std = torch.tensor(metric.weights.std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, ((0.5 - mean) / std).expand(1, 3, 32, 32))


def test_random_weights_need_an_explicit_flag(tiny_clip_name):
    with pytest.raises(InputError, match="allow_random"):
        CLIPScore(tiny_clip_name, None, device="cpu")


def test_unknown_model_and_tag():
    with pytest.raises(InputError, match="unknown open_clip model"):
        resolve_clip_weights("ViT-Nope-99", "openai")
    with pytest.raises(InputError, match="known: .*openai"):
        resolve_clip_weights("ViT-B-16", "no-such-tag")
    with pytest.raises(InputError, match="mode"):
        CLIPScore("ViT-B-16", "openai", mode="fancy")


@pytest.mark.parametrize(
    ("name", "repo"),
    [
        ("clip-ViT-B/16", "timm/vit_base_patch16_clip_224.openai"),
        ("clipa-ViT-bigG-14", "UCSC-VLAA/ViT-bigG-14-CLIPA-336-datacomp1B"),
        ("siglip-ViT-SO400M-14", "timm/ViT-SO400M-14-SigLIP-384"),
    ],
)
def test_paper_backbones_offline_give_a_clear_error(name, repo, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(open_clip, "download_pretrained", no_network)
    with pytest.raises(WeightsNotFoundError) as info:
        CLIPScore(name, device="cpu", hub_dir=tmp_path)
    msg = str(info.value)
    # ViT-B-16 has many tags: its file is passed as openai=PATH (the hub's name for it,
    # open_clip_model.safetensors, does not say which)
    hint = "openai=PATH" if name == "clip-ViT-B/16" else "PATH"
    assert repo in msg and str(tmp_path) in msg and f"(--clip-pretrained {hint})" in msg
    assert info.value.exit_code == 2
    # where to get the file, and how the cache is laid out (a file put at the path the
    # message seemed to name was not found)
    assert f"https://huggingface.co/{repo}/resolve/main/" in msg
    assert "Hugging Face cache" in msg and "`hf download REPO FILE`" in msg


def test_openai_weights_given_as_a_file_get_quick_gelu(tmp_path):
    """ViT-B-16 has many tags: a file of it got no config, so OpenAI's weights (which need
    QuickGELU) were built with GELU, silently wrong embeddings."""
    import warnings

    named = tmp_path / "ViT-B-16.pt"  # the name OpenAI's URL gives it
    named.write_bytes(b"x")
    assert resolve_clip_weights("ViT-B-16", named).quick_gelu
    scripted = tmp_path / "my_copy.pt"  # OpenAI released CLIP as TorchScript archives
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(torch.nn.Linear(1, 1)), scripted)
    assert resolve_clip_weights("ViT-B-16", scripted).quick_gelu
    # the hub's files all have one name: the file the "not on this machine" message names
    # first (OpenAI's, from timm/vit_base_patch16_clip_224.openai) was built with GELU
    hub_name = tmp_path / "open_clip_model.safetensors"
    hub_name.write_bytes(b"x")
    other = tmp_path / "laion.safetensors"
    other.write_bytes(b"x")
    for unnamed in (hub_name, other):  # which tag it is cannot be told: asked, not guessed
        with pytest.raises(InputError, match=(
                rf"^{re.escape(str(unnamed))}: which of ViT-B-16's weights is it\? .*pass it "
                rf"as TAG=PATH \(e\.g\. --clip-pretrained openai={re.escape(str(unnamed))}\), "
                r"TAG one of openai, laion400m_e31, ")):
            resolve_clip_weights("ViT-B-16", unnamed)
    # ... said as TAG=PATH; or told by the hub's cache layout, or a folder named as the repo
    assert resolve_clip_weights("ViT-B-16", f"openai={hub_name}").quick_gelu
    laion = resolve_clip_weights("ViT-B-16", f"laion2b_s34b_b88k={other}")
    assert not laion.quick_gelu and laion.checkpoint == str(other)
    assert laion.identity != resolve_clip_weights("ViT-B-16", f"openai={other}").identity
    for folder in ("models--timm--vit_base_patch16_clip_224.openai/snapshots/abc",
                   "vit_base_patch16_clip_224.openai", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "open_clip_pytorch_model.bin").write_bytes(b"x")
        found = resolve_clip_weights("ViT-B-16", tmp_path / folder / "open_clip_pytorch_model.bin")
        assert found.quick_gelu == ("openai" in folder), folder
    with pytest.raises(WeightsNotFoundError, match=r"^CLIP weights file not found: /nowhere\.bin$"):
        resolve_clip_weights("ViT-B-16", "openai=/nowhere.bin")
    # a tag the model has not, before a file that exists: the tag is wrong, not the file
    with pytest.raises(InputError, match=r"^unknown pretrained tag 'laion2b' for ViT-B-16 in "):
        resolve_clip_weights("ViT-B-16", f"laion2b={other}")
    # a model of one tag, or whose tags build one network: no question
    assert not resolve_clip_weights("ViT-SO400M-14-SigLIP-384", other).quick_gelu


def test_paper_backbone_tags_resolve_from_the_hub_cache(tmp_path):
    # a file laid out like huggingface_hub's cache is found without any network access
    repo = tmp_path / "models--UCSC-VLAA--ViT-bigG-14-CLIPA-336-datacomp1B"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "open_clip_pytorch_model.bin").write_bytes(b"x")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    w = resolve_clip_weights("ViT-bigG-14-CLIPA-336", "datacomp1b", hub_dir=tmp_path)
    assert w.checkpoint == str(snap / "open_clip_pytorch_model.bin")
    assert w.mean == (0.485, 0.456, 0.406)  # CLIPA preprocessing travels with the tag
    assert w.resize_mode == "squash"


def test_weights_from_a_local_file(tiny_clip_name, tmp_path, images):
    torch.manual_seed(5)
    model = open_clip.create_model(tiny_clip_name).eval()
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    metric = CLIPScore(tiny_clip_name, str(path), device="cpu")
    x = images.smooth(3, 32, seed=6)
    with torch.no_grad():
        expected = F.normalize(model.encode_image(x), dim=-1)  # 32 px: paper resize is a no-op
    torch.testing.assert_close(metric.embed(x), expected, atol=1e-5, rtol=0)
    from safetensors.torch import save_file

    st = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    from_st = CLIPScore(tiny_clip_name, str(st), device="cpu")
    torch.testing.assert_close(from_st.embed(x), expected, atol=1e-5, rtol=0)
    bad = tmp_path / "bad.pt"
    torch.save({"visual.nothing": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="bad.pt"):
        CLIPScore(tiny_clip_name, str(bad), device="cpu")
    with pytest.raises(WeightsNotFoundError, match="missing.pt"):
        CLIPScore(tiny_clip_name, str(tmp_path / "missing.pt"), device="cpu")
    # not a weights file at all: what it is, in one line (not torch's advice to load unsafely)
    text = tmp_path / "notes.pt"
    text.write_text("some notes\n")
    with pytest.raises(CheckpointError) as info:
        CLIPScore(tiny_clip_name, str(text), device="cpu")
    assert str(info.value) == (f"{text}: cannot load as {tiny_clip_name} weights (corrupt, "
                               "truncated, or another format)")
    cut = tmp_path / "cut.safetensors"  # its header, then too few bytes
    cut.write_bytes(st.read_bytes()[:-16])
    with pytest.raises(CheckpointError, match=rf"cut.safetensors: cannot load as "
                                              rf"{tiny_clip_name} weights \(a damaged or "
                                              r"truncated safetensors file: "):
        CLIPScore(tiny_clip_name, str(cut), device="cpu")


def test_ground_truth_embedding_cache(tiny_clip, images, tmp_path, monkeypatch):
    x, t = images.smooth(4, 40, seed=7), images.smooth(4, 40, seed=8)
    plain = tiny_clip()(x, t)
    first = tiny_clip(cache_dir=tmp_path)
    torch.testing.assert_close(first(x, t), plain)
    assert not list(tmp_path.glob("clipscore-*.safetensors"))  # 4 new: not written yet...
    first.save_cache()  # ... but at the end
    files = list(tmp_path.glob("clipscore-*.safetensors"))
    assert len(files) == 1 and len(first.cache) == 4

    second = tiny_clip(cache_dir=tmp_path)  # a new run: reads the file
    calls = []
    real = second._embed_checked
    monkeypatch.setattr(second, "_embed_checked",
                        lambda imgs: calls.append(len(imgs)) or real(imgs))
    torch.testing.assert_close(second(x, t), plain)
    assert calls == [4]  # predictions only; all 4 targets came from the cache
    second(x[:2], images.smooth(2, 40, seed=9))
    assert calls == [4, 2, 2] and len(second.cache) == 6

    second.save_cache()
    third = tiny_clip(cache_dir=tmp_path)
    assert len(third.cache) == 6
    tiny_clip(mode="standard", cache_dir=tmp_path)(x, t)  # other preprocessing: other file,
    gc.collect()  # written when the metric is let go
    assert len(list(tmp_path.glob("clipscore-*.safetensors"))) == 2


def test_the_embedding_cache_is_not_rewritten_after_every_batch(tmp_path, monkeypatch):
    """The whole file was written after each batch: 4000 targets in batches of 16 took 19 s
    of writes (250 of a file growing to 8.7 MB), 20k about 8 min. Now a write at least
    doubles the file: 1000 entries in batches of 16, MIN_NEW 16, are 6 writes, not 63; and
    the last entries are written at the end."""
    from zoomsr.metrics import clipscore

    writes = []
    real = clipscore.atomic_path
    monkeypatch.setattr(clipscore, "atomic_path", lambda p: writes.append(p) or real(p))
    monkeypatch.setattr(clipscore.EmbeddingCache, "MIN_NEW", 16)
    cache = clipscore.EmbeddingCache(tmp_path, "m")
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(1000, 8, generator=gen)
    for start in range(0, 1000, 16):
        for i in range(start, min(start + 16, 1000)):
            cache.put(f"d{i}", rows[i])
        cache.flush_some()
    assert len(writes) == 6  # at 16, 32, 64, 128, 256, 512 entries
    cache.flush()
    again = clipscore.EmbeddingCache(tmp_path, "m")
    assert len(again) == 1000 and torch.equal(again.get("d999"), rows[999])
    # a file read back counts: its 1000 are not rewritten for the next 16
    again.put("new", rows[0])
    again.flush_some()
    assert len(writes) == 7


def test_weights_of_another_architecture_say_what_differs(tiny_clip_name, tmp_path):
    """torch's message begins "Error(s) in loading state_dict for CLIP:", the one line kept:
    the error said nothing of what differs."""
    from zoomsr.metrics.clipscore import register_model_config

    tiny = open_clip.get_model_config(tiny_clip_name)
    other = "zoomsr-test-tiny-vit-patch4"
    register_model_config(other, {**tiny, "vision_cfg": {**tiny["vision_cfg"], "patch_size": 4}})
    torch.manual_seed(0)
    weights = open_clip.create_model(other).state_dict()
    path = tmp_path / "patch4.pt"
    torch.save(weights, path)
    with pytest.raises(CheckpointError, match=(
            rf"^{re.escape(str(path))}: cannot load as {tiny_clip_name} weights \(1 shape\(s\) "
            r"differ, e\.g\. visual\.conv1\.weight: \[\d+, 3, 4, 4\] in the file, "
            r"\[\d+, 3, \d+, \d+\] in the model\)$")):
        CLIPScore(tiny_clip_name, str(path), device="cpu")
    weights = open_clip.create_model(tiny_clip_name).state_dict()
    weights.pop("visual.proj")
    weights["extra.w"] = torch.zeros(1)
    torch.save(weights, path)
    with pytest.raises(CheckpointError, match=(
            r"\(1 key\(s\) missing from the file, e\.g\. visual\.proj; 1 key\(s\) not in "
            r"the model, e\.g\. extra\.w\)$")):
        CLIPScore(tiny_clip_name, str(path), device="cpu")


def test_half_precision_refused_on_cpu(tiny_clip_name):
    with pytest.raises(InputError, match="GPU"):
        CLIPScore(tiny_clip_name, None, device="cpu", dtype="float16", allow_random=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_gpu_matches_cpu(tiny_clip, images, dtype):
    x, y = images.smooth(4, 40, seed=10), images.smooth(4, 40, seed=11)
    ref = tiny_clip(device="cpu")(x, y)  # same seed, same random weights
    metric = tiny_clip(device="cuda", dtype=dtype)
    assert next(metric.encoder.parameters()).is_cuda
    tol = 1e-4 if dtype == "float32" else 2e-2
    torch.testing.assert_close(metric(x, y), ref, atol=tol, rtol=0)


def test_a_cache_that_cannot_be_written_is_a_warning_not_the_end_of_scoring(tiny_clip, images,
                                                                             tmp_path):
    """The write at the end of scoring raised (a full disk, the folder removed): every pair
    scored was lost for a cache that only saves time. One warning, and no cache after it."""
    from zoomsr.errors import ZoomsrWarning

    x, t = images.smooth(4, 40, seed=7), images.smooth(4, 40, seed=8)
    folder = tmp_path / "cache"
    metric = tiny_clip(cache_dir=folder)
    plain = metric(x, t)
    assert not folder.exists()  # 4 embeddings: not written yet
    folder.write_text("not a folder")  # a file where the cache's folder goes
    with pytest.warns(ZoomsrWarning, match=r"CLIP target embeddings not cached .*scoring goes "
                                           r"on without the cache"):
        metric.save_cache()
    assert metric.cache is None
    torch.testing.assert_close(metric(x, t), plain)  # still scores
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del metric
        gc.collect()  # and the finalizer does not try (and warn) again


def test_paths_starting_with_a_tilde_are_the_home_folders(tiny_clip, tiny_clip_name, images,
                                                          tmp_path, monkeypatch):
    # a config file or a quoted option leaves "~" to us: it made a folder named "~" here
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(5)
    model = open_clip.create_model(tiny_clip_name).eval()
    (tmp_path / "home" / "w").mkdir(parents=True)
    torch.save(model.state_dict(), tmp_path / "home" / "w" / "tiny.pt")
    metric = CLIPScore(tiny_clip_name, "~/w/tiny.pt", device="cpu")
    assert metric.embed(images.smooth(1, 32, seed=1)).shape[0] == 1
    cached = tiny_clip(cache_dir="~/clipcache")
    x = images.smooth(2, 32, seed=2)
    cached(x, x)
    cached.save_cache()
    assert list((tmp_path / "home" / "clipcache").glob("clipscore-*.safetensors"))
    assert not (tmp_path / "~").exists()
    # a tag's file in a hub folder given with "~"
    repo = tmp_path / "home" / "hub" / "models--UCSC-VLAA--ViT-bigG-14-CLIPA-336-datacomp1B"
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "snapshots" / "abc" / "open_clip_pytorch_model.bin").write_bytes(b"x")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    w = resolve_clip_weights("ViT-bigG-14-CLIPA-336", "datacomp1b", hub_dir="~/hub")
    assert w.checkpoint == str(repo / "snapshots" / "abc" / "open_clip_pytorch_model.bin")


def test_a_tags_download_is_found_in_open_clips_folder_when_a_hub_folder_is_given(
        tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = open_clip.get_pretrained_cfg("RN50", "openai")
    if not cfg.get("url"):
        pytest.skip("this open_clip gives RN50/openai no download URL")
    clip_dir = tmp_path / "home" / ".cache" / "clip"
    clip_dir.mkdir(parents=True)
    (clip_dir / Path(cfg["url"]).name).write_bytes(b"x")
    from zoomsr.metrics.clipscore import _find_cached

    path, looked = _find_cached({"url": cfg["url"]}, tmp_path / "hub")
    assert path == str(clip_dir / Path(cfg["url"]).name)
    assert str(tmp_path / "hub") in looked[0]


def test_a_folder_given_as_weights_is_called_a_folder(tiny_clip_name, tmp_path):
    (tmp_path / "clipw").mkdir()  # it was "unknown pretrained tag 'clipw'"
    with pytest.raises(InputError, match=r"clipw: a folder; pass the weights file in it"):
        CLIPScore(tiny_clip_name, str(tmp_path / "clipw"), device="cpu")
