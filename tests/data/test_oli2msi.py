"""OLI2MSIDataset on tiny fake copies of the published layout (real data is not on this
machine): items, normalisation, layouts, crops, masks, splits and every error path."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from oli2msi_fixture import (
    make_lr,
    pair_name,
    upsample,
    write_oli2msi,
    write_pair,
    write_tif,
)
from torch.utils.data import DataLoader

from zoomsr.data.oli2msi import OLI2MSIDataset, OLI2MSIWarning, scan_oli2msi, to_layout
from zoomsr.errors import ConfigError, DataError


@pytest.fixture
def root(tmp_path):
    """3 train pairs and 2 test pairs, LR 8x8 / HR 24x24."""
    write_oli2msi(tmp_path, "train", n=3, seed=1)
    write_oli2msi(tmp_path, "test", n=2, seed=2, start=10)
    return tmp_path


def tiny(root, **kw):
    return OLI2MSIDataset(root, lr_size=8, **kw)


def one_line_error(exc_info, *needles):
    text = str(exc_info.value)
    assert "\n" not in text
    for needle in needles:
        assert str(needle) in text, (needle, text)


# --- items -----------------------------------------------------------------------------------


def test_items_have_the_contract_shapes_types_ranges_and_ids(root):
    ds = tiny(root)
    assert len(ds) == 3 and ds.scale == 3 and ds.channels == 3
    assert OLI2MSIDataset.scale == 3 and OLI2MSIDataset.channels == 3
    s = ds[0]
    assert s["lr"].shape == (3, 8, 8) and s["lr"].dtype == torch.float32
    assert s["hr"].shape == (3, 24, 24) and s["hr"].dtype == torch.float32
    assert 0 <= s["lr"].min() and s["lr"].max() <= 1 and 0 <= s["hr"].min() and s["hr"].max() <= 1
    assert s["id"] == pair_name(0) and [p.id for p in ds.pairs] == [pair_name(k) for k in range(3)]
    assert s["lr_valid"].shape == (1, 8, 8) and s["lr_valid"].dtype == torch.bool
    assert s["hr_valid"].shape == (24, 24) and s["hr_valid"].dtype == torch.bool
    assert bool(s["lr_valid"].all()) and bool(s["hr_valid"].all())
    assert s["frames"].dtype == torch.int64 and s["frames"].tolist() == [0]
    assert ds[-1]["id"] == pair_name(2)
    with pytest.raises(IndexError):
        ds[3]


def test_published_sizes_are_read_by_default_and_other_sizes_refused(tmp_path):
    write_oli2msi(tmp_path, "test", n=1, lr_size=160)
    s = OLI2MSIDataset(tmp_path, "test")[0]
    assert s["lr"].shape == (3, 160, 160) and s["hr"].shape == (3, 480, 480)
    small = tmp_path / "small"
    write_oli2msi(small, "test", n=1)
    with pytest.raises(DataError) as exc:
        OLI2MSIDataset(small, "test")[0]
    one_line_error(exc, small / "test_lr" / f"{pair_name(0)}.TIF", "8x8", "160x160", "lr_size")
    assert OLI2MSIDataset(small, "test", lr_size=None)[0]["lr"].shape == (3, 8, 8)


def test_stored_reflectance_is_kept_and_only_the_overshoot_clipped(tmp_path):
    rng = np.random.default_rng(0)
    lr = make_lr(rng, 8)
    lr[:, 0, 0] = (0.1, 0.2, 0.3)
    lr[:, 1, 1] = (1.04, -0.03, 0.5)  # cubic-resampling overshoot, as the published data can have
    hr = upsample(lr)
    hr[:, 2, 2] = (0.25, 0.5, 0.75)
    write_pair(tmp_path, "train", pair_name(0), lr, hr)
    s = tiny(tmp_path)[0]
    np.testing.assert_array_equal(s["lr"][:, 0, 0].numpy(), np.float32([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(s["lr"][:, 1, 1].numpy(), np.float32([1.0, 0.0, 0.5]))
    np.testing.assert_array_equal(s["hr"][:, 2, 2].numpy(), np.float32([0.25, 0.5, 0.75]))
    # Everything else is the stored reflectance unchanged.
    np.testing.assert_array_equal(s["lr"].numpy(), np.clip(lr, 0, 1))
    # -0.03 is not 0: still a valid pixel (only exact 0, the source nodata, is not).
    assert bool(s["lr_valid"].all())


def test_max_reflectance_stretches_and_clips(tmp_path):
    rng = np.random.default_rng(0)
    lr = make_lr(rng, 8)
    lr[:, 0, 0] = (0.06, 0.15, 0.3)
    hr = upsample(lr)
    hr[:, 0, 0] = (0.03, 0.45, 0.9)
    write_pair(tmp_path, "train", pair_name(0), lr, hr)
    s = tiny(tmp_path, max_reflectance=0.3)[0]
    np.testing.assert_allclose(s["lr"][:, 0, 0].numpy(), [0.2, 0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(s["hr"][:, 0, 0].numpy(), [0.1, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(s["lr"].numpy(), np.clip(lr / 0.3, 0, 1), atol=1e-6)


def test_layouts_repeat_the_single_lr_image(root):
    stacked = tiny(root, n_images=4)[1]
    frames = tiny(root, n_images=4, layout="frames")[1]
    single = tiny(root)[1]
    assert stacked["lr"].shape == (12, 8, 8) and frames["lr"].shape == (4, 3, 8, 8)
    assert torch.equal(to_layout(frames["lr"], "stacked"), stacked["lr"])
    for t in range(4):
        assert torch.equal(frames["lr"][t], single["lr"])
    assert frames["frames"].tolist() == [0, 0, 0, 0] and frames["frames"].dtype == torch.int64
    assert frames["lr_valid"].shape == (4, 8, 8)
    assert torch.equal(frames["hr"], single["hr"])
    assert tiny(root, layout="frames")[0]["lr"].shape == (1, 3, 8, 8)


def test_valid_masks_mark_pixels_that_are_zero_in_any_band(tmp_path):
    rng = np.random.default_rng(3)
    lr = make_lr(rng, 8)
    lr[1, 2, 3] = 0.0
    hr = upsample(make_lr(rng, 8))
    hr[0, 5, 6] = 0.0
    write_pair(tmp_path, "train", pair_name(0), lr, hr)
    s = tiny(tmp_path, n_images=2)[0]
    expected_lr = np.ones((8, 8), bool)
    expected_lr[2, 3] = False
    expected_hr = np.ones((24, 24), bool)
    expected_hr[5, 6] = False
    assert np.array_equal(s["lr_valid"].numpy(), np.stack([expected_lr] * 2))
    assert np.array_equal(s["hr_valid"].numpy(), expected_hr)


def test_splits_and_split_validation(root):
    assert [p.id for p in tiny(root, split="test").pairs] == [pair_name(10), pair_name(11)]
    assert len(tiny(root, split="train")) == 3
    with pytest.raises(ConfigError) as exc:
        tiny(root, split="val")
    one_line_error(exc, "split", "train, test", "'val'")


def test_pairs_subset_and_lowercase_suffixes(root, tmp_path_factory):
    ds = tiny(root)
    held_out = tiny(root, pairs=ds.pairs[1:])
    assert [p.id for p in held_out.pairs] == [pair_name(1), pair_name(2)]
    other = tmp_path_factory.mktemp("lower")
    rng = np.random.default_rng(0)
    lr = make_lr(rng, 8)
    write_pair(other, "test", "x", lr, upsample(lr), suffix=".tif")
    assert tiny(other, split="test")[0]["id"] == "x"


def test_batches_collate_and_the_dataset_pickles_for_workers(root):
    ds = tiny(root, n_images=2, layout="frames")
    assert pickle.loads(pickle.dumps(ds))[2]["id"] == pair_name(2)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["lr"].shape == (2, 2, 3, 8, 8) and batch["hr"].shape == (2, 3, 24, 24)
    assert batch["id"] == [pair_name(0), pair_name(1)]
    assert batch["lr_valid"].shape == (2, 2, 8, 8) and batch["frames"].shape == (2, 2)


# --- crops: deterministic in evaluation, seeded by torch in training ----------------------------


def _crop_position(sample, full_lr):
    """(row, col) of the LR crop in ``full_lr``, found by matching values."""
    k = sample["lr"].shape[-1]
    for r in range(full_lr.shape[1] - k + 1):
        for c in range(full_lr.shape[2] - k + 1):
            if np.array_equal(full_lr[:, r:r + k, c:c + k], sample["lr"][:3].numpy()):
                return r, c
    raise AssertionError("crop not found in the LR image")


def test_eval_crops_are_aligned_and_repeat_with_the_seed(tmp_path):
    written = write_oli2msi(tmp_path, "test", n=3, lr_size=12, seed=5)
    full = [written[pair_name(k)][0] for k in range(3)]
    a = OLI2MSIDataset(tmp_path, "test", lr_size=12, crop=4, seed=7)
    b = OLI2MSIDataset(tmp_path, "test", lr_size=12, crop=4, seed=7)
    positions = []
    for i in range(3):
        sa, sb = a[i], b[i]
        assert sa["lr"].shape == (3, 4, 4) and sa["hr"].shape == (3, 12, 12)
        assert torch.equal(sa["lr"], sb["lr"]) and torch.equal(sa["hr"], sb["hr"])
        assert torch.equal(a[i]["lr"], sa["lr"])  # the same item twice: the same crop
        # HR crop covers exactly the LR crop (fake HR = LR repeated 3x3)
        assert np.array_equal(sa["hr"].numpy(), upsample(sa["lr"].numpy()))
        positions.append(_crop_position(sa, full[i]))
    others = [_crop_position(OLI2MSIDataset(tmp_path, "test", lr_size=12, crop=4, seed=s)[0],
                             full[0]) for s in range(8)]
    assert len(set(others)) > 1  # the seed moves the crop
    with pytest.raises(ConfigError) as exc:
        OLI2MSIDataset(tmp_path, "test", lr_size=12, crop=13)
    one_line_error(exc, "crop", "12")


def test_train_crops_are_random_and_seeded_by_torch(tmp_path):
    written = write_oli2msi(tmp_path, "train", n=1, lr_size=12, seed=5)
    full = written[pair_name(0)][0]
    ds = OLI2MSIDataset(tmp_path, lr_size=12, crop=4, train=True)
    torch.manual_seed(123)
    first = [_crop_position(ds[0], full) for _ in range(12)]
    torch.manual_seed(123)
    again = [_crop_position(ds[0], full) for _ in range(12)]
    assert first == again and len(set(first)) > 1
    # (index, sample_seed), as ResumableSampler yields: the seed alone decides the crop
    torch.manual_seed(1)
    x = ds[(0, 99)]
    torch.manual_seed(2)
    assert torch.equal(ds[(0, 99)]["lr"], x["lr"])
    with pytest.raises(ValueError):
        ds[(0, -1)]


# --- folder errors ---------------------------------------------------------------------------


def test_missing_root_and_root_that_is_a_file(tmp_path):
    with pytest.raises(DataError) as exc:
        OLI2MSIDataset(tmp_path / "nowhere")
    one_line_error(exc, tmp_path / "nowhere", "not found", "github.com/wjwjww/OLI2MSI")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError) as exc:
        OLI2MSIDataset(tmp_path / "file")
    one_line_error(exc, tmp_path / "file", "not a folder")


def test_missing_split_folder(root):
    for f in (root / "test_hr").iterdir():
        f.unlink()
    (root / "test_hr").rmdir()
    assert len(tiny(root, split="train")) == 3
    with pytest.raises(DataError) as exc:
        tiny(root, split="test")
    one_line_error(exc, root / "test_hr", "not found", "train_lr/")


def test_empty_folder(tmp_path):
    (tmp_path / "test_lr").mkdir()
    (tmp_path / "test_hr").mkdir()
    (tmp_path / "test_lr" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError) as exc:
        tiny(tmp_path, split="test")
    one_line_error(exc, tmp_path / "test_lr", "no GeoTIFF")


def test_unpaired_files_name_the_file(root):
    stray = root / "train_lr" / "L8_extra.TIF"
    stray.write_bytes((root / "train_lr" / f"{pair_name(0)}.TIF").read_bytes())
    with pytest.raises(DataError) as exc:
        tiny(root)
    one_line_error(exc, stray, "no HR file", root / "train_hr")
    stray.unlink()
    (root / "train_lr" / f"{pair_name(1)}.TIF").unlink()
    (root / "train_lr" / f"{pair_name(2)}.TIF").unlink()
    with pytest.raises(DataError) as exc:
        scan_oli2msi(root, "train")
    one_line_error(exc, root / "train_hr" / f"{pair_name(1)}.TIF", "no LR file",
                   "1 more unpaired file")


# --- file errors -----------------------------------------------------------------------------


def _first(root, side):
    return root / f"train_{side}" / f"{pair_name(0)}.TIF"


def test_wrong_band_count(root):
    rng = np.random.default_rng(0)
    write_tif(_first(root, "lr"), rng.uniform(0.1, 0.2, (4, 8, 8)).astype(np.float32),
              origin=(500010.0, 3999980.0), res=30.0)
    with pytest.raises(DataError) as exc:
        tiny(root)[0]
    one_line_error(exc, _first(root, "lr"), "4 band(s)", "3")


def test_wrong_dtype(root):
    dn = np.full((3, 24, 24), 1200, np.uint16)
    write_tif(_first(root, "hr"), dn, origin=(500000.0, 4000000.0), res=10.0)
    with pytest.raises(DataError) as exc:
        tiny(root)[0]
    one_line_error(exc, _first(root, "hr"), "uint16", "float32 TOA reflectance")


def test_wrong_hr_shape(root):
    write_tif(_first(root, "hr"), np.full((3, 25, 24), 0.2, np.float32),
              origin=(500000.0, 4000000.0), res=10.0)
    with pytest.raises(DataError) as exc:
        tiny(root)[0]
    one_line_error(exc, _first(root, "hr"), "25x24", "24x24", _first(root, "lr"))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file(root, damage):
    path = _first(root, "lr")
    data = path.read_bytes()
    path.write_bytes(b"not a tiff at all" * 10 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DataError) as exc:
        tiny(root)[0]
    one_line_error(exc, path, "not a readable GeoTIFF")
    assert tiny(root)[1]["id"] == pair_name(1)  # other pairs still load


def test_non_finite_and_non_reflectance_values(root):
    lr = np.full((3, 8, 8), 0.2, np.float32)
    lr[2, 4, 4] = np.nan
    write_tif(_first(root, "lr"), lr, origin=(500010.0, 3999980.0), res=30.0)
    with pytest.raises(DataError) as exc:
        tiny(root)[0]
    one_line_error(exc, _first(root, "lr"), "NaN")
    write_tif(_first(root, "lr"), np.full((3, 8, 8), 2500.0, np.float32),
              origin=(500010.0, 3999980.0), res=30.0)
    with pytest.raises(DataError) as exc:
        tiny(root)[0]
    one_line_error(exc, _first(root, "lr"), "2500", "not TOA reflectance", "10000")


# --- georeference ----------------------------------------------------------------------------


def _pair(tmp_path, **kw):
    rng = np.random.default_rng(0)
    lr = make_lr(rng, 8)
    write_pair(tmp_path, "test", pair_name(0), lr, upsample(lr), **kw)
    name = f"{pair_name(0)}.TIF"
    return tmp_path / "test_lr" / name, tmp_path / "test_hr" / name


def test_bounds_within_one_lr_pixel_are_accepted(tmp_path):
    # the fixture's LR origin is (10, -20) m off the HR's; another 15 m stays within 30 m
    _pair(tmp_path, hr_offset=(-15.0, 5.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tiny(tmp_path, split="test")[0]["id"] == pair_name(0)


def test_bounds_further_apart_than_one_lr_pixel_are_refused(tmp_path):
    lr_path, hr_path = _pair(tmp_path, hr_offset=(100.0, 0.0))
    with pytest.raises(DataError) as exc:
        tiny(tmp_path, split="test")[0]
    one_line_error(exc, hr_path, lr_path, "bounds", "90.0", "mixed-up")
    assert tiny(tmp_path, split="test", check_georeference=False)[0]["id"] == pair_name(0)


def test_different_crs_is_refused(tmp_path):
    lr_path, hr_path = _pair(tmp_path, hr_crs="EPSG:32647")
    with pytest.raises(DataError) as exc:
        tiny(tmp_path, split="test")[0]
    one_line_error(exc, hr_path, lr_path, "CRS", "32647")


def test_files_without_georeference_warn_once(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(2):
        lr = make_lr(rng, 8)
        write_pair(tmp_path, "test", pair_name(k), lr, upsample(lr), georef=False)
    ds = tiny(tmp_path, split="test")
    with pytest.warns(OLI2MSIWarning, match="no georeference") as record:
        ds[0]
        ds[1]
    assert len([w for w in record if issubclass(w.category, OLI2MSIWarning)]) == 1


# --- argument errors -------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "needle"), [
    ({"n_images": 0}, "n_images"),
    ({"layout": "planar"}, "layout"),
    ({"crop": 0}, "crop"),
    ({"crop": 9}, "crop"),
    ({"max_reflectance": 0.0}, "max_reflectance"),
    ({"max_reflectance": 1.5}, "max_reflectance"),
    ({"seed": -1}, "seed"),
    ({"train": "yes"}, "train"),
])
def test_bad_arguments(root, kw, needle):
    with pytest.raises(ConfigError) as exc:
        tiny(root, **kw)
    one_line_error(exc, needle)
