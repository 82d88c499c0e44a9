"""Reading and writing datasets as a demanding user would: the writer's refusals and
overwrites, tile ids out of the grid, bad sampler arguments."""

import numpy as np
import pytest

from zoomsr.data import S2NAIPDataset, scan_pairs, weighted_sampler
from zoomsr.data.check import check_dataset
from zoomsr.data.layout import read_series
from zoomsr.data.sampler import ResumableSampler
from zoomsr.data.writer import S2NAIPWriter
from zoomsr.errors import ConfigError, DataError


def _pair(rng, t=3):
    hr = rng.integers(1, 256, (128, 128, 3), dtype=np.uint8)
    tci = rng.integers(1, 256, (t, 32, 32, 3), dtype=np.uint8)
    b08 = rng.integers(0, 9000, (t, 32, 32), dtype=np.uint16)
    return hr, tci, b08


def test_the_writer_takes_the_bands_in_any_key_order(tmp_path):
    """{"b08": ..., "tci": ...} raised "'tci' must come first": a dict's key order says
    nothing about the files written."""
    hr, tci, b08 = _pair(np.random.default_rng(0))
    rec = S2NAIPWriter(tmp_path).write_pair("5_6", "a", hr, {"b08": b08, "tci": tci})
    back = read_series(rec, ("tci", "b08"))
    np.testing.assert_array_equal(back["tci"], tci)
    np.testing.assert_array_equal(back["b08"][..., 0], b08)
    with pytest.raises(DataError, match=r"5_7: frames need a 'tci' series"):
        S2NAIPWriter(tmp_path).write_pair("5_7", "a", hr, {"b08": b08})


def test_a_refused_pair_writes_nothing_and_its_retry_succeeds(tmp_path):
    """A bad older NAIP image was refused after the Sentinel-2 series had been written: the
    corrected retry then failed with 'tci.png: already exists'."""
    hr, tci, _ = _pair(np.random.default_rng(1))
    w = S2NAIPWriter(tmp_path)
    with pytest.raises(DataError, match="old NAIP image 1 of 5_6: expected uint8"):
        w.write_pair("5_6", "a", hr, {"tci": tci}, old_hr=[hr, hr[:64]])
    assert not (tmp_path / "sentinel2" / "5_6").exists()
    assert not (tmp_path / "old_naip").exists()
    w.write_pair("5_6", "a", hr, {"tci": tci}, old_hr=[hr, hr])
    assert S2NAIPDataset(tmp_path, n_images=2, old_naip=2)[0]["old_hr"].shape == (2, 3, 128, 128)
    # A second image of the tile with a series of its own: refused before anything changes.
    before = (tmp_path / "sentinel2/5_6/tci.png").read_bytes()
    with pytest.raises(DataError, match=r"sentinel2/5_6/tci.png: already exists"):
        w.write_pair("5_6", "b", hr, {"tci": tci[:1]})
    assert (tmp_path / "sentinel2/5_6/tci.png").read_bytes() == before
    assert not (tmp_path / "naip/b").exists()


def test_overwriting_a_series_leaves_no_band_of_the_old_one(tmp_path):
    """An overwrite with fewer bands kept the old b08.png: read with the new TCI, its time
    steps silently paired with other dates."""
    rng = np.random.default_rng(2)
    hr, tci, b08 = _pair(rng)
    w = S2NAIPWriter(tmp_path, overwrite=True)
    w.write_pair("5_6", "a", hr, {"tci": tci, "b08": b08})
    hr2, tci2, _ = _pair(rng)
    rec = w.write_pair("5_6", "a", hr2, {"tci": tci2})
    assert sorted(p.name for p in rec.s2_dir.iterdir()) == ["tci.png"]
    with pytest.raises(DataError, match="band b08 missing"):
        S2NAIPDataset(tmp_path, bands="tci,b08", n_images=2)[0]
    np.testing.assert_array_equal(read_series(rec, ("tci",))["tci"], tci2)
    # None keeps the series whole, every band of it.
    w.write_pair("5_6", "a", hr, {"tci": tci, "b08": b08})
    w.write_pair("5_6", "b", hr, None)
    assert sorted(p.name for p in rec.s2_dir.iterdir()) == ["b08.png", "tci.png"]


def test_check_says_a_tile_id_is_outside_the_grid(tiny_dataset):
    """131072_5 was reported as 'not a tile id (whole numbers, no leading zeros)', which it
    is: its column is past the zoom-17 grid's last, 131071."""
    naip, s2 = tiny_dataset / "naip" / "img-a", tiny_dataset / "sentinel2"
    (naip / "1000_2000").rename(naip / "131072_5")
    (s2 / "1000_2000").rename(s2 / "131072_5")
    report = check_dataset(tiny_dataset)
    got = {p.path.split("/ds/")[-1]: p.message for p in report.errors}
    for path in ("naip/img-a/131072_5", "sentinel2/131072_5"):
        assert "outside the zoom-17 grid (col and row must be in 0..131071)" in got[path], got
    assert [p.tile for p in scan_pairs(tiny_dataset)] == ["1000_2001", "1001_2000",
                                                          "1001_2001"]


@pytest.mark.parametrize("default", [-1.0, float("nan"), float("inf"), "1"])
def test_a_bad_default_weight_is_refused_at_once(tiny_dataset, default):
    """A negative or NaN default weight made a sampler whose first draw raised torch's
    'invalid multinomial distribution'."""
    pairs = scan_pairs(tiny_dataset)
    with pytest.raises(ConfigError, match="default weight must be a finite number >= 0"):
        weighted_sampler(pairs, {"1000_2000": 1.0}, default=default)


def test_zero_draws_are_refused_not_replaced_by_one_per_pair(tiny_dataset):
    pairs = scan_pairs(tiny_dataset)
    with pytest.raises(ConfigError, match="num_samples must be >= 1, got 0"):
        weighted_sampler(pairs, {}, default=1.0, num_samples=0)
    with pytest.raises(ConfigError, match="num_samples must be >= 1, got 0"):
        ResumableSampler(len(pairs), weights=[1.0] * len(pairs), num_samples=0)
    assert len(list(ResumableSampler(4, weights=[1.0] * 4, num_samples=7))) == 7
    with pytest.raises(ConfigError, match="max_consecutive_skips must be >= 1"):
        S2NAIPDataset(tiny_dataset, train=True, max_consecutive_skips=0)


def test_a_broken_link_or_a_folder_is_named_so_not_missing(tiny_dataset):
    """A dataset of symbolic links whose targets moved: check called tci.png both an
    'unexpected file' and 'missing', and the reader 'band tci missing'."""
    s2, naip = tiny_dataset / "sentinel2", tiny_dataset / "naip" / "img-a"
    tci = s2 / "1000_2000" / "tci.png"
    tci.unlink()
    tci.symlink_to(tiny_dataset / "moved" / "tci.png")
    (naip / "1001_2000" / "rgb.png").unlink()
    (naip / "1001_2000" / "rgb.png").symlink_to(tiny_dataset / "moved" / "rgb.png")
    (s2 / "1000_2001" / "b08.png").unlink()
    (s2 / "1000_2001" / "b08.png").mkdir()
    report = check_dataset(tiny_dataset, bands=("tci", "b08"))
    got = {(p.severity, p.path.split("/ds/")[-1], p.message) for p in report.problems}
    link = "broken symbolic link (its target {} does not exist)"
    assert {
        ("error", "sentinel2/1000_2000/tci.png", link.format(tiny_dataset / "moved/tci.png")),
        ("error", "naip/img-a/1001_2000/rgb.png", link.format(tiny_dataset / "moved/rgb.png")),
        ("error", "sentinel2/1000_2001/b08.png", "is a folder, expected a PNG file"),
    } <= got
    assert len(report.errors) == 3, got  # no "missing", no "unexpected file" beside them
    assert not [p for p in report.warnings if "unexpected" in p.message], got
    ds = S2NAIPDataset(tiny_dataset, n_images=2)
    k = [p.tile for p in ds.pairs].index("1000_2000")
    with pytest.raises(DataError, match=r"1000_2000/tci.png: broken symbolic link \(its target "
                                        r".*moved/tci.png does not exist\)$"):
        ds[k]


def test_the_writer_refuses_another_scale_beside_pairs_of_the_default_one(tiny_dataset):
    """The published layout records no scale (it is 4): a scale-2 writer recorded 2 there,
    and every reader then took the existing 128 px NAIP images for the wrong size."""
    (tiny_dataset / "zoomsr_dataset.json").unlink()
    with pytest.raises(DataError, match=r"rgb.png: NAIP image of 128 px, and zoomsr_dataset."
                                        r"json records no scale; cannot add pairs of scale 2 "
                                        r"\(64 px\) beside it"):
        S2NAIPWriter(tiny_dataset, scale=2)
    assert not (tiny_dataset / "zoomsr_dataset.json").exists()
    assert not check_dataset(tiny_dataset).errors
    S2NAIPWriter(tiny_dataset)  # the default scale: recorded, as before
    assert S2NAIPDataset(tiny_dataset, n_images=2).scale == 4
