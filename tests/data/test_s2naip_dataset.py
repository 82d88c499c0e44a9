import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from zoomsr.data import DataWarning, S2NAIPDataset, to_layout
from zoomsr.data.bands import BAND16_DIVISOR
from zoomsr.errors import ConfigError, DataError
from zoomsr.io.png import read_png


def test_eval_dataset_drops_black_hr_and_returns_both_layouts(tiny_dataset):
    ds = S2NAIPDataset(tiny_dataset, bands="tci,b08", n_images=4, layout="stacked")
    assert len(ds) == 3 and [p.tile for p in ds.dropped_black_hr] == ["1001_2001"]
    s = ds[0]
    assert s["lr"].shape == (4 * 4, 32, 32) and s["lr"].dtype == torch.float32
    assert s["hr"].shape == (3, 128, 128)
    assert 0 <= s["lr"].min() and s["lr"].max() <= 1
    frames = S2NAIPDataset(tiny_dataset, bands="tci,b08", n_images=4, layout="frames")[0]
    assert frames["lr"].shape == (4, 4, 32, 32)
    # Same seed, same frames: the stacked layout is the frames layout flattened frame-major.
    assert torch.equal(to_layout(frames["lr"], "stacked"), s["lr"])


def test_normalisation_of_tci_and_16bit_bands(tiny_dataset):
    ds = S2NAIPDataset(tiny_dataset, bands=["tci", "b08"], n_images=6, layout="frames")
    s = ds[0]
    rec = ds.pairs[0]
    tci = read_png(rec.band_path("tci")).reshape(6, 32, 32, 3)
    b08 = read_png(rec.band_path("b08")).reshape(6, 32, 32)
    hr = read_png(rec.naip_path)
    idx = s["frames"].numpy()
    np.testing.assert_allclose(s["lr"][:, :3].numpy(),
                               tci[idx].transpose(0, 3, 1, 2) / 255.0, atol=1e-7)
    expected_b08 = np.minimum(b08[idx] / BAND16_DIVISOR, 1.0)
    np.testing.assert_allclose(s["lr"][:, 3].numpy(), expected_b08, atol=1e-7)
    assert (b08 > BAND16_DIVISOR).any() and s["lr"][:, 3].max() == 1.0  # clipped
    np.testing.assert_allclose(s["hr"].numpy(), hr.transpose(2, 0, 1) / 255.0, atol=1e-7)
    # The channel carrying the frame marker identifies which time step was read.
    np.testing.assert_allclose(s["lr"][:, 0, 0, 0].numpy() * 255, idx + 1, atol=1e-4)


def test_black_frames_are_avoided_and_used_only_as_fallback(tiny_dataset):
    ds = S2NAIPDataset(tiny_dataset, n_images=3, layout="frames")
    k = [p.tile for p in ds.pairs].index("1001_2000")  # frames 1, 3, 4 are black
    for seed in range(5):
        ds.seed = seed
        s = ds[k]
        assert set(s["frames"].tolist()) == {0, 2, 5} and s["n_valid"] == 3
    ds.n_images = 5
    chosen = set(ds[k]["frames"].tolist())
    assert {0, 2, 5} <= chosen and len(chosen) == 5


def test_eval_is_deterministic_and_train_is_random_but_seedable(tiny_dataset):
    a = S2NAIPDataset(tiny_dataset, n_images=2, seed=7)
    b = S2NAIPDataset(tiny_dataset, n_images=2, seed=7)
    assert all(torch.equal(a[i]["frames"], b[i]["frames"]) for i in range(len(a)))
    seeds = {tuple(S2NAIPDataset(tiny_dataset, n_images=2, seed=s)[0]["frames"].tolist())
             for s in range(10)}
    assert len(seeds) > 1
    tr = S2NAIPDataset(tiny_dataset, n_images=2, train=True)
    torch.manual_seed(0)
    first = [tuple(tr[0]["frames"].tolist()) for _ in range(12)]
    torch.manual_seed(0)
    again = [tuple(tr[0]["frames"].tolist()) for _ in range(12)]
    assert first == again and len(set(first)) > 1


def test_short_series_repeats_frames(tiny_dataset):
    s = S2NAIPDataset(tiny_dataset, n_images=8, layout="frames")[0]
    assert s["lr"].shape[0] == 8
    counts = np.bincount(s["frames"].numpy(), minlength=6)
    assert counts.sum() == 8 and counts.min() >= 1 and counts.max() <= 2


def test_train_skips_black_hr_and_bad_files_counts_and_warns_once(tiny_dataset):
    tci = tiny_dataset / "sentinel2" / "1000_2001" / "tci.png"
    tci.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ds = S2NAIPDataset(tiny_dataset, n_images=2, train=True)
    assert len(ds) == 4  # training does not pre-read NAIP
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiles = [ds[i]["tile"] for i in range(len(ds))]
        tiles += [ds[i]["tile"] for i in range(len(ds))]
    assert "1000_2001" not in tiles and "1001_2001" not in tiles
    assert ds.skipped == 2  # 2 bad pairs, each counted once (both met twice)
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(messages) == 1 and "tci.png" in messages[0]


def test_a_bad_pair_is_replaced_by_a_random_good_one_not_always_its_neighbour(tiny_dataset):
    """The next index as the replacement drew that pair twice as often as the others."""
    (tiny_dataset / "sentinel2" / "1000_2000" / "tci.png").write_bytes(b"not a png")
    ds = S2NAIPDataset(tiny_dataset, n_images=2, train=True)
    bad = [p.tile for p in ds.pairs].index("1000_2000")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        instead = [ds[bad]["tile"] for _ in range(40)]
    good = {p.tile for p in ds.pairs} - {"1000_2000", "1001_2001"}  # 1001_2001: black NAIP
    assert set(instead) == good  # every good pair, the black one and the bad one never
    assert ds.skipped == 2  # the bad pair, and the black one if drawn: each once


def test_eval_raises_clear_errors(tiny_dataset):
    (tiny_dataset / "sentinel2" / "1000_2000" / "b08.png").unlink()
    ds = S2NAIPDataset(tiny_dataset, bands="tci,b08")
    with pytest.raises(DataError, match=r"1000_2000/b08.png: band b08 missing"):
        ds[0]


def test_dataloader_with_workers_counts_skips_across_processes(tiny_dataset):
    (tiny_dataset / "sentinel2" / "1000_2001" / "tci.png").write_bytes(b"not a png")
    ds = S2NAIPDataset(tiny_dataset, n_images=2, train=True)
    loader = DataLoader(ds, batch_size=2, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(loader)
    assert sum(len(b["tile"]) for b in batches) == 4
    assert batches[0]["lr"].shape == (2, 6, 32, 32)
    assert ds.skipped == 2  # one corrupt + one black-NAIP, each met once


def test_config_errors(tiny_dataset):
    with pytest.raises(ConfigError, match="tci"):
        S2NAIPDataset(tiny_dataset, bands="b08")
    with pytest.raises(ConfigError, match="unknown band"):
        S2NAIPDataset(tiny_dataset, bands="tci,b02")
    with pytest.raises(ConfigError, match="n_images"):
        S2NAIPDataset(tiny_dataset, n_images=0)
    with pytest.raises(ConfigError, match="layout"):
        S2NAIPDataset(tiny_dataset, layout="3d")


def test_old_naip_images(tiny_dataset):
    from zoomsr.data.writer import S2NAIPWriter

    rng = np.random.default_rng(1)
    w = S2NAIPWriter(tiny_dataset, overwrite=True)
    olds = [rng.integers(1, 255, (128, 128, 3), dtype=np.uint8) for _ in range(3)]
    for tile in ["1000_2000", "1001_2000", "1000_2001"]:
        w.write_pair(tile, "img-a", read_png(tiny_dataset / "naip/img-a" / tile / "rgb.png"),
                     None, old_hr=olds)
    s = S2NAIPDataset(tiny_dataset, old_naip=2)[0]
    assert s["old_hr"].shape == (2, 3, 128, 128)
    stored = {o.tobytes() for o in olds}
    for img in s["old_hr"]:
        assert (img * 255).round().byte().permute(1, 2, 0).numpy().tobytes() in stored
    with pytest.raises(DataError, match="old NAIP"):
        S2NAIPDataset(tiny_dataset, old_naip=4)[0]


def test_scale_defaults_to_the_one_the_dataset_records(tmp_path):
    from tests.data.test_check import scale3_dataset

    from zoomsr.errors import ZoomsrWarning

    root = scale3_dataset(tmp_path / "ds")  # records scale 3: 96 px NAIP
    ds = S2NAIPDataset(root, n_images=2)
    assert ds.scale == 3 and ds[0]["hr"].shape == (3, 96, 96)
    with pytest.warns(ZoomsrWarning, match=r"scale 4 given.*records scale 3"):
        assert S2NAIPDataset(root, n_images=2, scale=4, train=True).scale == 4
    with pytest.raises(ConfigError, match="scale must be an integer >= 1"):
        S2NAIPDataset(root, n_images=2, scale=0)
    assert S2NAIPDataset(root, n_images=2, scale=np.int64(3)).scale == 3
    # Without metadata: the published scale, 4.
    plain = scale3_dataset(tmp_path / "plain", record=False)
    assert S2NAIPDataset(plain, n_images=2, skip_black_hr=False, train=True).scale == 4


def test_indexing_and_argument_types_as_python_users_expect(tiny_dataset):
    """dataset[-1] raised NumPy's 'expected non-negative integer' in evaluation mode;
    n_images="8" or 8.0 raw TypeErrors."""
    ds = S2NAIPDataset(tiny_dataset)
    assert ds[-1]["tile"] == ds[len(ds) - 1]["tile"]
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert ds[np.int64(1)]["tile"] == ds[1]["tile"]
    for bad in (1.7, "2"):  # not coerced to a pair
        with pytest.raises(TypeError):
            ds[bad]
    for bad in ("8", 8.0, 0):
        with pytest.raises(ConfigError, match="n_images must be"):
            S2NAIPDataset(tiny_dataset, n_images=bad)


def test_a_sample_seed_fixes_the_frames_and_the_replacement_of_a_bad_pair(tiny_dataset):
    """``ds[(index, seed)]``, as ResumableSampler draws: the same seed gives the same sample
    whatever ran before, also for a bad pair (tried and failed, or already known unusable)."""
    (tiny_dataset / "sentinel2" / "1000_2000" / "tci.png").write_bytes(b"not a png")
    bad = [p.tile for p in S2NAIPDataset(tiny_dataset).pairs].index("1000_2000")

    def draws(ds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [(ds[(i, s)]["tile"], ds[(i, s)]["frames"].tolist())
                    for i in range(len(ds)) for s in (1, 2, 3)]

    fresh = S2NAIPDataset(tiny_dataset, n_images=2, train=True)
    torch.manual_seed(0)
    first = draws(fresh)
    torch.manual_seed(1)  # torch's generator plays no part
    assert draws(fresh) == first  # now the bad pair is known unusable: same replacements
    assert draws(S2NAIPDataset(tiny_dataset, n_images=2, train=True)) == first
    assert len({tuple(f) for _, f in first}) > 1  # the seeds do choose
    assert {t for t, _ in first[3 * bad: 3 * bad + 3]} <= {
        p.tile for p in fresh.pairs} - {"1000_2000", "1001_2001"}
    ev = S2NAIPDataset(tiny_dataset, n_images=2)
    good = [p.tile for p in ev.pairs].index("1001_2000")
    assert len({tuple(ev[(good, s)]["frames"].tolist()) for s in range(8)}) > 1
    assert ev[(good, 5)]["frames"].tolist() == ev[(good, 5)]["frames"].tolist()
    with pytest.raises(TypeError, match=r"\(index, sample_seed\)"):
        ev[(0, 1, 2)]
    with pytest.raises(ValueError, match="sample_seed must be >= 0, got -1"):
        fresh[(0, -1)]
