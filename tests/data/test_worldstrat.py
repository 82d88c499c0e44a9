"""WorldStratDataset over a tiny fake copy in the published layout (worldstrat_fixture.py)."""

from __future__ import annotations

import pickle
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch.utils.data import DataLoader
from worldstrat_fixture import FakeAOI, write_tiff, write_worldstrat

from zoomsr.data.s2naip import to_layout
from zoomsr.data.worldstrat import WorldStratDataset, WorldStratWarning, choose_frames
from zoomsr.errors import ConfigError, DataError

# Revisit n's CLM has clouds[n-1] cloudy pixels (of 64): the cleanest are n = 2, 4, 6.
AOIS = [
    FakeAOI("Landcover-773616", "train", revisits=6, clouds=(5, 0, 3, 0, 9, 1)),
    FakeAOI("Amnesty POI-1-1-1", "train", revisits=4),
    FakeAOI("UNHCR-GHAs003590", "val", revisits=4, cover=(50.0, 10.0, 30.0, 20.0)),
    FakeAOI("ASMSpotter-1-1-1", "test", revisits=3),
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_worldstrat(tmp_path / "worldstrat", AOIS)


def dataset(root: Path, **kw) -> WorldStratDataset:
    kw.setdefault("lr_size", 8)  # the fixture's native LR size: no resampling, exact values
    return WorldStratDataset(root, **kw)


def test_item_shapes_dtypes_ranges_and_both_layouts(root):
    ds = dataset(root, n_images=3)
    assert len(ds) == 2 and ds.scale == 4 and ds.channels == 3 and ds.hr_channels == 3
    s = ds[0]
    assert s["id"] == "Landcover-773616"
    assert s["lr"].shape == (9, 8, 8) and s["lr"].dtype == torch.float32
    assert s["hr"].shape == (3, 32, 32) and s["hr"].dtype == torch.float32
    assert s["lr_valid"].shape == (3, 8, 8) and s["lr_valid"].dtype == torch.bool
    assert s["hr_valid"].shape == (32, 32) and s["hr_valid"].dtype == torch.bool
    assert s["frames"].dtype == torch.int64 and s["frames"].shape == (3,)
    for key in ("lr", "hr"):
        assert 0 <= s[key].min() and s[key].max() <= 1
    frames = dataset(root, n_images=3, layout="frames")[0]
    assert frames["lr"].shape == (3, 3, 8, 8)
    assert torch.equal(to_layout(frames["lr"], "stacked"), s["lr"])
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["lr"].shape == (2, 9, 8, 8) and batch["id"] == [a.name for a in AOIS[:2]]


def test_pickles_and_loads_in_worker_processes_as_in_the_main_one(root):
    ds = dataset(root, n_images=2, layout="frames")
    assert pickle.loads(pickle.dumps(ds))[1]["id"] == ds[1]["id"]
    main = list(DataLoader(ds, batch_size=1))
    workers = list(DataLoader(ds, batch_size=1, num_workers=2))
    for a, b in zip(main, workers, strict=True):
        assert a["id"] == b["id"] and torch.equal(a["frames"], b["frames"])
        assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"])


def test_lr_normalisation_on_known_pixels(root):
    ds = dataset(root, n_images=6, lr_bands="B04,B02,b8a", layout="frames")
    s = ds[0]
    assert ds.lr_bands == ("B04", "B02", "B8A")
    n = s["frames"].numpy()
    assert n.tolist() == [1, 2, 3, 4, 5, 6]
    # B04 marks the revisit (n / 100): the channel order follows lr_bands
    np.testing.assert_allclose(s["lr"][:, 0, 0, 0].numpy(), n / 100, rtol=1e-6)
    assert (s["lr"][:, 1, 0, 1] == 1.0).all()  # 1.5 clipped
    assert torch.allclose(s["lr"][:, 2, 0, 2], torch.tensor(0.25))
    path = ds.revisit_path(0, 3)
    with rasterio.open(path) as src:
        raw = src.read([4, 2, 9])
    np.testing.assert_array_equal(s["lr"][2].numpy(), np.clip(raw, 0, 1))


def test_integer_sentinel2_files_are_digital_numbers_over_10000(root):
    ds = dataset(root, n_images=1)
    path = ds.revisit_path(0, 2)
    with rasterio.open(path) as src:
        data = src.read()
    write_tiff(path, np.round(data * 10000).astype(np.uint16))
    s = dataset(root, n_images=1, lr_bands=["B04"])[0]
    assert s["frames"].tolist() == [2]
    assert s["lr"][0, 0, 0].item() == pytest.approx(0.02, abs=1e-6)


def test_hr_products_and_normalisation(root):
    s = dataset(root, hr_bands=["R", "G", "B", "NIR"])[0]
    assert s["hr"].shape == (4, 32, 32)
    np.testing.assert_allclose(s["hr"][:, 0, 0].numpy(), [0.5, 1.0, 1.0, 0.25])  # 12000 clipped
    assert torch.allclose(dataset(root, hr_bands="NIR,R")[0]["hr"][:, 0, 0],
                          torch.tensor([0.25, 0.5]))
    pan = dataset(root, hr_kind="pan")[0]
    assert pan["hr"].shape == (1, 32, 32) and pan["hr"][0, 0, 0].item() == pytest.approx(0.75)
    rgb = dataset(root, hr_kind="rgb")[0]
    np.testing.assert_allclose(rgb["hr"][:, 0, 0].numpy(), [0.2, 0.4, 1.0], rtol=1e-6)
    rgbn = dataset(root, hr_kind="rgbn")[0]  # the native 6 m image (8 px) resized to 32
    assert rgbn["hr"].shape == (3, 32, 32) and 0 <= rgbn["hr"].min() <= rgbn["hr"].max() <= 1


def test_quality_masks(root):
    s = dataset(root, n_images=6, layout="frames")[0]
    valid = s["lr_valid"].numpy()
    for k, cloudy in enumerate(AOIS[0].clouds):
        flat = valid[k].reshape(-1)
        assert not flat[8:8 + cloudy].any()  # CLM clouds from pixel (1, 0)
        assert not valid[k, 7, 7]  # dataMask 0
        assert not valid[k, 7, 0]  # no data: every band 0
        assert valid[k, 0, 0] and valid[k].sum() == 64 - cloudy - 2
    hr_valid = s["hr_valid"].numpy()
    assert not hr_valid[31, 31] and hr_valid.sum() == 32 * 32 - 1


def test_resampling_to_lr_size_and_native_grids(tmp_path):
    root = write_worldstrat(tmp_path / "ws", [FakeAOI("A-1", "train", lr_shape=(6, 10)),
                                              FakeAOI("B-1", "train", lr_shape=(8, 8))])
    s = WorldStratDataset(root, n_images=2, lr_size=4, scale=3)[0]
    assert s["lr"].shape == (6, 4, 4) and s["hr"].shape == (3, 12, 12)
    assert s["lr_valid"].shape == (2, 4, 4) and s["hr_valid"].shape == (12, 12)
    # the no-data corners taint the resampled pixels they reach, and only those
    assert not s["lr_valid"][:, 3, 0].any() and s["lr_valid"][:, 0, 0].all()
    assert not s["hr_valid"][11, 11] and s["hr_valid"][0, 0]
    native = WorldStratDataset(root, n_images=2, lr_size=None, layout="frames")
    a, b = native[0], native[1]
    assert a["lr"].shape == (2, 3, 6, 10) and a["hr"].shape == (3, 24, 40)
    assert b["lr"].shape == (2, 3, 8, 8) and b["hr"].shape == (3, 32, 32)
    geo = native.georeference(0)
    assert geo["crs"] == rasterio.CRS.from_epsg(4326)
    assert geo["hr_transform"].a == pytest.approx(geo["lr_transform"].a / 4)
    resized = WorldStratDataset(root, n_images=2, lr_size=5).georeference(0)
    assert resized["lr_transform"].a == pytest.approx(geo["lr_transform"].a * 10 / 5)
    assert resized["lr_transform"].e == pytest.approx(geo["lr_transform"].e * 6 / 5)


def test_native_grid_refuses_revisits_of_different_sizes(tmp_path):
    root = write_worldstrat(tmp_path / "ws", [FakeAOI("A-1", "train", revisits=2)])
    path = root / "lr_dataset/A-1/L2A/A-1-2-L2A_data.tiff"
    write_tiff(path, np.full((12, 9, 8), 0.5, np.float32))
    (root / "lr_dataset/A-1/L2A/A-1-2-CLM.tiff").unlink()
    (root / "lr_dataset/A-1/L2A/A-1-2-dataMask.tiff").unlink()
    with pytest.raises(DataError, match=r"A-1-2-L2A_data\.tiff: 9x8 px.*pass lr_size"):
        WorldStratDataset(root, n_images=2, lr_size=None)[0]
    assert WorldStratDataset(root, n_images=2, lr_size=8)[0]["lr"].shape == (6, 8, 8)


def test_eval_prefers_the_cleanest_revisits_deterministically(root):
    for seed in range(4):
        s = dataset(root, n_images=3, seed=seed)[0]
        assert s["frames"].tolist() == [2, 4, 6]
    assert dataset(root, n_images=1)[0]["frames"].tolist() in ([2], [4])
    # ties (AOI 1 has no clouds) are broken by the seed: same seed, same frames
    a = [dataset(root, n_images=2, seed=s)[1]["frames"].tolist() for s in range(12)]
    b = [dataset(root, n_images=2, seed=s)[1]["frames"].tolist() for s in range(12)]
    assert a == b and len({tuple(x) for x in a}) > 1


def test_metadata_cloud_cover_breaks_ties(root):
    assert dataset(root, split="val", n_images=2)[0]["frames"].tolist() == [2, 4]
    seen = {tuple(dataset(root, split="val", n_images=2, use_metadata=False, seed=s)[0]
                  ["frames"].tolist()) for s in range(12)}
    assert len(seen) > 1


def test_metadata_with_an_unnamed_aoi_column(tmp_path):
    aois = [FakeAOI("X-1", "train", cover=(9.0, 1.0, 5.0, 7.0))]
    root = write_worldstrat(tmp_path / "ws", aois, metadata_aoi_column="")
    assert WorldStratDataset(root, n_images=1, lr_size=8)[0]["frames"].tolist() == [2]


def test_fewer_revisits_than_requested_repeats_evenly(root):
    for train in (False, True):
        s = dataset(root, split="test", n_images=7, train=train)[0]
        counts = Counter(s["frames"].tolist())
        assert set(counts) == {1, 2, 3} and max(counts.values()) - min(counts.values()) <= 1


def test_training_draws_are_random_seeded_by_torch_and_avoid_cloudy_revisits(root):
    ds = dataset(root, n_images=2, train=True, max_invalid=0.05)
    torch.manual_seed(3)
    first = [ds[0]["frames"].tolist() for _ in range(20)]
    torch.manual_seed(3)
    again = [ds[0]["frames"].tolist() for _ in range(20)]
    assert first == again and len({tuple(f) for f in first}) > 1
    # invalid fraction: (clouds + 2) / 64; only n = 2, 4, 6 are at most 5 % invalid
    assert {n for f in first for n in f} == {2, 4, 6}
    loose = dataset(root, n_images=2, train=True, max_invalid=1.0)
    torch.manual_seed(0)
    assert len({n for _ in range(40) for n in loose[0]["frames"].tolist()}) == 6
    # a sampler's (index, sample_seed) fixes the draw, whatever torch's global generator
    loose_draws = []
    for torch_seed in range(6):
        torch.manual_seed(torch_seed)
        loose_draws.append(loose[(0, 11)]["frames"].tolist())
    assert all(d == loose_draws[0] for d in loose_draws)
    assert len({tuple(loose[(0, s)]["frames"].tolist()) for s in range(10)}) > 1


def test_choose_frames_rules():
    rng = np.random.default_rng(0)
    invalid = np.array([0.5, 0.0, 0.2, 0.0])
    cloud = np.array([np.nan, 30.0, 1.0, np.nan])
    assert choose_frames(invalid, cloud, 2, rng, False, 0.1).tolist() == [1, 3]
    assert choose_frames(invalid, cloud, 3, rng, False, 0.1).tolist() == [1, 2, 3]
    for _ in range(10):  # the 3rd best has 20 % invalid: candidates 1, 2, 3
        assert set(choose_frames(invalid, cloud, 3, rng, True, 0.1).tolist()) == {1, 2, 3}
    with pytest.raises(ValueError):
        choose_frames(np.array([]), np.array([]), 1, rng, False, 0.1)


def test_splits_and_split_validation(root):
    assert [a.name for a in dataset(root, split="val").aois] == ["UNHCR-GHAs003590"]
    assert [a.name for a in dataset(root, split="test").aois] == ["ASMSpotter-1-1-1"]
    assert dataset(root, split="test").aois[0].revisits == (1, 2, 3)
    with pytest.raises(ConfigError, match="split must be one of train, val, test, got 'valid"):
        dataset(root, split="validation")
    moved = root / "pretrained_model"
    moved.mkdir()
    (root / "stratified_train_val_test_split.csv").rename(moved / "split.csv")
    assert len(dataset(root, split_file=moved / "split.csv")) == 2


def test_twelve_bit_folder_layout(tmp_path):
    root = write_worldstrat(tmp_path / "ws", AOIS[:1], twelve_bit_folder=True)
    assert (root / "hr_dataset/12bit/Landcover-773616/Landcover-773616_ps.tiff").is_file()
    # the same files without the 12bit/ level: the same items, value for value (the values
    # of that layout are checked above)
    flat = write_worldstrat(tmp_path / "flat", AOIS[:1])
    item, twin = dataset(root, n_images=2)[0], dataset(flat, n_images=2)[0]
    assert item["hr"].shape == (3, 32, 32)
    assert item.keys() == twin.keys()
    for key, value in item.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, twin[key]), key


def test_lr_bands_none_is_the_default(root):
    assert dataset(root, lr_bands=None).lr_bands == ("B04", "B03", "B02")


def test_options_are_validated(root):
    with pytest.raises(ConfigError, match="B10.*not a WorldStrat L2A band"):
        dataset(root, lr_bands="B04,B10")
    with pytest.raises(ConfigError, match="hr_bands: 'NIR' is not a band of hr_kind 'rgb'"):
        dataset(root, hr_kind="rgb", hr_bands="R,NIR")
    with pytest.raises(ConfigError, match="hr_kind must be one of ps, rgbn, pan, rgb"):
        dataset(root, hr_kind="ms")
    with pytest.raises(ConfigError, match="layout must be one of"):
        dataset(root, layout="planar")
    with pytest.raises(ConfigError, match="n_images"):
        dataset(root, n_images=0)
    with pytest.raises(ConfigError, match="lr_bands names a band twice"):
        dataset(root, lr_bands="B04,B4")


# --- errors: one line naming the file or folder ------------------------------------------


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_missing_root_and_folders(tmp_path, root):
    with pytest.raises(DataError, match="dataset folder not found; download WorldStrat") as e:
        WorldStratDataset(tmp_path / "nowhere")
    assert "nowhere" in one_line(e)
    (root / "lr_dataset").rename(root / "lr")
    with pytest.raises(DataError, match=r"lr_dataset: folder not found; download WorldStrat"):
        dataset(root)


def test_missing_split_file_and_bad_columns(root):
    split_csv = root / "stratified_train_val_test_split.csv"
    split_csv.write_text("tile,fold\nA,train\n")
    with pytest.raises(DataError, match="expected columns 'tile' and 'split'"):
        dataset(root)
    split_csv.unlink()
    with pytest.raises(DataError, match="val_test_split.csv: split file not found; download"):
        dataset(root)


def test_missing_aoi_folder_raises_or_is_skipped_with_a_warning(root):
    (root / "lr_dataset/Amnesty POI-1-1-1/L2A").rename(root / "lr_dataset/Amnesty POI-1-1-1/X")
    with pytest.raises(DataError, match=r"Amnesty POI-1-1-1/L2A: folder not found") as e:
        dataset(root)
    assert "skip_missing=True" in one_line(e)
    with pytest.warns(WorldStratWarning, match="left out 1 AOI"):
        ds = dataset(root, skip_missing=True)
    assert [a.name for a in ds.aois] == ["Landcover-773616"] and len(ds.missing) == 1


def test_missing_hr_file(root):
    (root / "hr_dataset/Amnesty POI-1-1-1/Amnesty POI-1-1-1_pan.tiff").unlink()
    with pytest.raises(DataError, match=r"Amnesty POI-1-1-1_pan\.tiff: file not found"):
        dataset(root, hr_kind="pan")


def test_empty_revisit_folder(root):
    folder = root / "lr_dataset/Amnesty POI-1-1-1/L2A"
    for f in folder.iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"L2A: no Amnesty POI-1-1-1-<n>-L2A_data\.tiff file"):
        dataset(root)


def test_wrong_band_count_and_dtype(root):
    path = root / "lr_dataset/Landcover-773616/L2A/Landcover-773616-3-L2A_data.tiff"
    write_tiff(path, np.zeros((13, 8, 8), np.float32))
    ds = dataset(root)
    with pytest.raises(DataError, match=r"-3-L2A_data\.tiff: 13 band\(s\), expected 12") as e:
        ds[0]
    one_line(e)
    write_tiff(path, np.zeros((12, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"-3-L2A_data\.tiff: data type uint8, expected float32"):
        ds[0]
    ps = root / "hr_dataset/Amnesty POI-1-1-1/Amnesty POI-1-1-1_ps.tiff"
    write_tiff(ps, np.zeros((3, 32, 32), np.uint16), georeferenced=False)
    with pytest.raises(DataError, match=r"_ps\.tiff: 3 band\(s\), expected 4"):
        ds[1]
    write_tiff(ps, np.zeros((4, 32, 32), np.float32), georeferenced=False)
    with pytest.raises(DataError, match=r"_ps\.tiff: data type float32, expected uint16"):
        ds[1]


def test_corrupt_files(root):
    path = root / "lr_dataset/Landcover-773616/L2A/Landcover-773616-1-L2A_data.tiff"
    path.write_bytes(b"II*\x00" + b"\x00" * 40)
    with pytest.raises(DataError, match=r"-1-L2A_data\.tiff: not a readable GeoTIFF") as e:
        dataset(root)[0]
    assert "download it again" in one_line(e)
    png = root / "hr_dataset/Amnesty POI-1-1-1/Amnesty POI-1-1-1_rgb.png"
    png.write_bytes(png.read_bytes()[:60])
    with pytest.raises(DataError, match=r"_rgb\.png: "):
        dataset(root, hr_kind="rgb")[1]


def test_mask_of_the_wrong_size(root):
    clm = root / "lr_dataset/Landcover-773616/L2A/Landcover-773616-2-CLM.tiff"
    write_tiff(clm, np.zeros((1, 8, 7), np.float32))
    with pytest.raises(DataError, match=r"-2-CLM\.tiff: 8x7 px, its data file .*-2-L2A_data"):
        dataset(root)[0]


def test_bad_metadata_file(root):
    (root / "metadata.csv").write_text("tile,cloud\nLandcover-773616,3\n")
    with pytest.raises(DataError, match=r"metadata\.csv: no column n, cloud_cover"):
        dataset(root)
    assert len(dataset(root, use_metadata=False)) == 2
    (root / "metadata.csv").write_text("tile,n,cloud_cover\nLandcover-773616,two,3\n")
    with pytest.raises(DataError, match=r"metadata\.csv: line 2: n 'two'"):
        dataset(root)


def test_no_masks_falls_back_to_zero_pixels(tmp_path):
    root = write_worldstrat(tmp_path / "ws", [FakeAOI("A-1", "train", revisits=3)], masks=False,
                            metadata_aoi_column=None)
    path = root / "lr_dataset/A-1/L2A/A-1-2-L2A_data.tiff"
    with rasterio.open(path) as src:
        data = src.read()
    data[:, :4] = 0  # half the frame is no data
    write_tiff(path, data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about the missing masks or georeference
        s = WorldStratDataset(root, n_images=2, lr_size=8)[0]
    assert s["frames"].tolist() == [1, 3]
    assert s["lr_valid"].sum() == 2 * (64 - 1)


def test_masks_rank_the_revisits_and_only_the_chosen_data_files_are_read(root):
    # Every revisit has CLM and dataMask (as published): they rank the revisits, so the data
    # file of the cloudiest revisit (n = 5: 9 clouds) is never read when 3 of 6 are wanted.
    folder = root / "lr_dataset/Landcover-773616/L2A"
    (folder / "Landcover-773616-5-L2A_data.tiff").write_bytes(b"broken")
    assert dataset(root, n_images=3)[0]["frames"].tolist() == [2, 4, 6]
    torch.manual_seed(0)
    drawn = dataset(root, n_images=2, train=True, max_invalid=0.05)
    assert {n for _ in range(10) for n in drawn[0]["frames"].tolist()} <= {2, 4, 6}
    # a chosen revisit's data file is still read and checked
    (folder / "Landcover-773616-4-L2A_data.tiff").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"-4-L2A_data\.tiff: not a readable GeoTIFF"):
        dataset(root, n_images=3)[0]
    # without masks for every revisit, the data files rank them: all are read
    (folder / "Landcover-773616-1-CLM.tiff").unlink()
    (folder / "Landcover-773616-1-dataMask.tiff").unlink()
    with pytest.raises(DataError, match=r"-[45]-L2A_data\.tiff: not a readable GeoTIFF"):
        dataset(root, n_images=1)[0]


def test_a_chosen_revisits_mask_must_match_its_data_file(root):
    # one mask only (no dataMask), of the wrong size: found when the data file is read
    folder = root / "lr_dataset/Landcover-773616/L2A"
    (folder / "Landcover-773616-2-dataMask.tiff").unlink()
    write_tiff(folder / "Landcover-773616-2-CLM.tiff", np.zeros((1, 8, 7), np.float32))
    with pytest.raises(DataError, match=r"-2-CLM\.tiff: 8x7 px, its data file .*-2-L2A_data") as e:
        dataset(root, n_images=6)[0]
    one_line(e)
