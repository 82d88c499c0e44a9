"""Synthetic S2-NAIP-like pairs: shapes, radiometry, nodata, determinism, scene semantics."""

from __future__ import annotations

import numpy as np
import pytest

from zoomsr.data import synthetic as syn
from zoomsr.data.synthetic import (
    CLASS_NAMES,
    S2_BANDS,
    SCENE_BANDS,
    SYNTHETIC_NOTE,
    DegradationConfig,
    SyntheticPair,
    generate_pair,
    generate_scene,
)
from zoomsr.errors import InputError

CLEAN = DegradationConfig(cloud_prob=0.0, black_prob=0.0)


def _pair(seed: int, **kw) -> SyntheticPair:
    return generate_pair(np.random.default_rng(seed), **kw)


def test_note_says_synthetic() -> None:
    assert "synthetic" in SYNTHETIC_NOTE.lower() and "not real" in SYNTHETIC_NOTE.lower()


@pytest.mark.parametrize(
    ("bands", "n_frames", "hr_size"),
    [
        (("tci",), 8, 128),
        (("tci", "b08"), 1, 128),
        (("b01", "b05", "b11"), 3, 128),
        (S2_BANDS, 4, 128),
        (("tci", "b12"), 2, 64),
    ],
)
def test_shapes_and_dtypes(bands: tuple[str, ...], n_frames: int, hr_size: int) -> None:
    p = _pair(1, n_frames=n_frames, bands=bands, hr_size=hr_size)
    m = hr_size // 4
    assert p.hr.shape == (hr_size, hr_size, 3) and p.hr.dtype == np.uint8
    assert list(p.frames) == list(bands)
    for b, arr in p.frames.items():
        if b == "tci":
            assert arr.shape == (n_frames, m, m, 3) and arr.dtype == np.uint8
        else:
            assert arr.shape == (n_frames, m, m, 1) and arr.dtype == np.uint16
        assert arr.flags.c_contiguous
    assert p.cloudy.shape == p.black.shape == (n_frames,)
    assert p.cloudy.dtype == p.black.dtype == np.bool_


def test_scale_option() -> None:
    p = _pair(2, n_frames=2, bands=("tci", "b08"), config=DegradationConfig(scale=2))
    assert p.frames["tci"].shape == (2, 64, 64, 3)


def test_deterministic_and_seed_dependent() -> None:
    kw = {"n_frames": 6, "bands": ("tci", "b08", "b11")}
    a, b, c = _pair(7, **kw), _pair(7, **kw), _pair(8, **kw)
    np.testing.assert_array_equal(a.hr, b.hr)
    for band in kw["bands"]:
        np.testing.assert_array_equal(a.frames[band], b.frames[band])
    np.testing.assert_array_equal(a.cloudy, b.cloudy)
    np.testing.assert_array_equal(a.black, b.black)
    assert not np.array_equal(a.hr, c.hr)
    assert not np.array_equal(a.frames["tci"], c.frames["tci"])


def test_scene_does_not_depend_on_bands() -> None:
    """The HR image comes from the same scene whatever bands are requested."""
    a = _pair(3, bands=("tci",))
    b = _pair(3, bands=("b08", "b01"))
    np.testing.assert_array_equal(a.hr, b.hr)


def test_black_frames_zero_in_all_bands() -> None:
    cfg = DegradationConfig(black_prob=1.0, cloud_prob=0.5)
    bands = ("tci", "b08", "b11")
    for seed in range(5):
        p = _pair(seed, n_frames=4, bands=bands, config=cfg)
        assert p.black.all()
        zero = (p.frames["tci"] == 0).all(-1)  # [T, m, m] all-zero TCI pixels
        assert zero.any(axis=(1, 2)).all()  # every frame has some
        assert (~zero).any(axis=(1, 2)).all()  # but is not entirely black
        for band in bands:
            arr = p.frames[band]
            np.testing.assert_array_equal((arr == 0).all(-1), zero)  # same pixels, all channels
            np.testing.assert_array_equal((arr == 0).any(-1), zero)  # and nowhere else


def test_non_black_frames_have_no_zero() -> None:
    cfg = DegradationConfig(black_prob=0.3, cloud_prob=0.3, haze=0.0, noise_std=0.03)
    for seed in range(8):
        p = _pair(seed, n_frames=8, bands=("tci", "b08", "b10"), config=cfg)
        clean = ~p.black
        has_zero = (p.frames["tci"] == 0).all(-1).any(axis=(1, 2))
        np.testing.assert_array_equal(has_zero, p.black)
        for band in ("tci", "b08", "b10"):
            assert p.frames[band][clean].min() >= 1


def test_hr_has_no_zero_pixel() -> None:
    for seed in range(10):
        assert _pair(seed, n_frames=1).hr.min() >= 1


def test_flags_follow_probabilities() -> None:
    none = _pair(0, n_frames=16, config=CLEAN)
    assert not none.cloudy.any() and not none.black.any()
    always = _pair(0, n_frames=16, config=DegradationConfig(cloud_prob=1.0, black_prob=1.0))
    assert always.cloudy.all() and always.black.all()


def test_clouds_brighten_frames() -> None:
    cfg = DegradationConfig(cloud_prob=1.0, black_prob=0.0)
    brighter = 0
    for seed in range(6):
        cloudy = _pair(seed, n_frames=4, config=cfg).frames["tci"].astype(float).max()
        clear = _pair(seed, n_frames=4, config=CLEAN).frames["tci"].astype(float).max()
        brighter += cloudy >= clear
    assert brighter >= 5


def test_lr_matches_downsampled_hr() -> None:
    for seed in range(4):
        p = _pair(seed, bands=("tci",), config=CLEAN)
        hr = p.hr.astype(np.float64).mean(-1).reshape(32, 4, 32, 4).mean(axis=(1, 3))
        lr = p.frames["tci"].astype(np.float64).mean(axis=(0, 3))
        assert np.corrcoef(hr.ravel(), lr.ravel())[0, 1] > 0.8


def test_band_radiometry_plausible() -> None:
    """Median pixels read back as reflectance (/8160 bands, /255 TCI) stay within [0, 1]."""
    p = _pair(5, bands=("tci", "b08", "b12"), config=CLEAN)
    for band in ("b08", "b12"):
        med = np.median(p.frames[band]) / 8160
        assert 0.01 < med < 0.8
    assert 10 < np.median(p.frames["tci"]) < 200


def test_scene_and_labels() -> None:
    scene, labels = generate_scene(np.random.default_rng(0), size=96, return_labels=True)
    assert scene.shape == (96, 96, len(SCENE_BANDS)) and scene.dtype == np.float32
    assert labels.shape == (96, 96) and labels.dtype == np.uint8
    assert 0 < scene.min() and scene.max() <= 1
    assert labels.max() < len(CLASS_NAMES)
    only = generate_scene(np.random.default_rng(0), size=96)
    np.testing.assert_array_equal(only, scene)


def test_water_darker_than_trees_in_nir() -> None:
    nir, swir = SCENE_BANDS.index("b08"), SCENE_BANDS.index("b11")
    water_i, trees_i = CLASS_NAMES.index("water"), CLASS_NAMES.index("trees")
    checked = 0
    for seed in range(30):
        scene, labels = generate_scene(np.random.default_rng(seed), return_labels=True)
        water, trees = labels == water_i, labels == trees_i
        if water.sum() < 50 or trees.sum() < 50:
            continue
        checked += 1
        assert scene[..., nir][water].mean() < 0.5 * scene[..., nir][trees].mean()
        assert scene[..., swir][water].mean() < scene[..., swir][trees].mean()
    assert checked >= 3


def test_kernels_exact_box_and_shift() -> None:
    box = syn._kernels(np.zeros(1), pad=3, s=4, sigma=0.0)[0]
    np.testing.assert_allclose(box, [0, 0, 0, 0.25, 0.25, 0.25, 0.25, 0, 0, 0], atol=1e-7)
    k = syn._kernels(np.array([0.0, 1.5]), pad=8, s=4, sigma=1.2)
    np.testing.assert_allclose(k.sum(1), 1.0, rtol=1e-6)
    centre = (k * np.arange(k.shape[1])).sum(1)
    np.testing.assert_allclose(centre, [8 + 1.5, 8 + 1.5 + 1.5], atol=1e-3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bands": ("tci", "b02")},
        {"bands": ()},
        {"bands": ("tci", "tci")},
        {"n_frames": 0},
        {"hr_size": 130},
        {"config": DegradationConfig(blur_sigma=-1.0)},
    ],
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(InputError):
        generate_pair(np.random.default_rng(0), **kwargs)


def test_many_pairs() -> None:
    rng = np.random.default_rng(123)
    for _ in range(256):
        p = generate_pair(rng, n_frames=8, bands=("tci", "b08"))
        assert p.frames["tci"].shape == (8, 32, 32, 3)
        assert p.frames["b08"].shape == (8, 32, 32, 1)
