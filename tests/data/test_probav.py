"""PROBAVDataset over a tiny fake copy of the challenge data in its real layout
(tests/data/probav_fixture.py); the real data is not on this machine."""

import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from probav_fixture import DEFAULT_SETS, FakeSet, lr_image, write_probav, write_u16
from torch.utils.data import DataLoader

from zoomsr.data.probav import (
    PROBAVDataset,
    clearest_frames,
    read_norm_csv,
    scan_probav,
)
from zoomsr.errors import ConfigError, DataError
from zoomsr.layout import to_layout


@pytest.fixture(scope="module")
def probav_root(tmp_path_factory):
    return write_probav(tmp_path_factory.mktemp("probav") / "probav_data")


@pytest.fixture
def probav_copy(probav_root, tmp_path):
    """A writable copy, for tests that break files."""
    return shutil.copytree(probav_root, tmp_path / "probav_data")


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def index_of(ds, name):
    return [s.name for s in ds.imgsets].index(name)


# --- items ---------------------------------------------------------------------------------

def test_train_items_shapes_dtypes_ranges_and_both_layouts(probav_root):
    ds = PROBAVDataset(probav_root, split="train", n_images=4, layout="stacked")
    assert len(ds) == 3 and ds.scale == 3 and ds.channels == 1 and ds.has_hr
    # bands in the order given (NIR first by default), image sets sorted within a band
    assert [(s.band, s.name) for s in ds.imgsets] == [
        ("NIR", "imgset0594"), ("RED", "imgset0000"), ("RED", "imgset0001")]
    s = ds[0]
    assert s["lr"].shape == (4, 128, 128) and s["lr"].dtype == torch.float32
    assert s["lr_valid"].shape == (4, 128, 128) and s["lr_valid"].dtype == torch.bool
    assert s["hr"].shape == (1, 384, 384) and s["hr"].dtype == torch.float32
    assert s["hr_valid"].shape == (384, 384) and s["hr_valid"].dtype == torch.bool
    assert s["frames"].dtype == torch.int64 and s["frames"].shape == (4,)
    assert (s["id"], s["band"], s["n_frames"]) == ("imgset0594", "NIR", 5)
    for key in ("lr", "hr"):
        assert 0 <= s[key].min() and s[key].max() <= 1
    frames = PROBAVDataset(probav_root, n_images=4, layout="frames")[0]
    assert frames["lr"].shape == (4, 1, 128, 128)
    assert torch.equal(to_layout(frames["lr"], "stacked"), s["lr"])
    assert torch.equal(frames["frames"], s["frames"])


def test_normalisation_on_known_pixels(probav_root):
    ds = PROBAVDataset(probav_root, n_images=3, layout="frames")
    s = ds[0]
    lr = s["lr"][:, 0]
    # frame marker 1000 + nnn, the 14-bit maximum and a brighter value, / 65535
    np.testing.assert_allclose(lr[:, 0, 0].numpy() * 65535, 1000 + s["frames"].numpy(), atol=1e-3)
    assert lr[0, 0, 1].item() == pytest.approx(16383 / 65535, abs=1e-7)
    assert lr[0, 0, 2].item() == pytest.approx(20000 / 65535, abs=1e-7)
    assert s["hr"][0, 0, 0].item() == pytest.approx(12345 / 65535, abs=1e-7)
    assert s["hr"][0, 0, 1].item() == pytest.approx(30000 / 65535, abs=1e-7)
    # the whole frame, against the file
    rec = ds.imgsets[0]
    k = rec.frames.index(int(s["frames"][0]))
    raw = np.asarray(Image.open(rec.lr_files[k]))
    np.testing.assert_allclose(lr[0].numpy(), raw / 65535.0, atol=1e-7)

    t = PROBAVDataset(probav_root, n_images=3, layout="frames", normalization="14bit")[0]
    assert t["lr"][0, 0, 0, 1].item() == 1.0  # 16383 / 16383
    assert t["lr"][0, 0, 0, 2].item() == 1.0  # 20000 clipped
    assert t["lr"][0, 0, 0, 0].item() == pytest.approx(float(1000 + s["frames"][0]) / 16383,
                                                       abs=1e-7)
    assert t["hr"][0, 0, 0].item() == pytest.approx(12345 / 16383, abs=1e-7)
    assert t["hr"][0, 0, 1].item() == 1.0
    assert t["hr"].max() <= 1.0 and t["lr"].max() <= 1.0


@pytest.mark.parametrize("name", ["imgset0594", "imgset0000", "imgset0001"])  # I;16, L, 1-bit
def test_masks_read_from_qm_and_sm_in_every_png_kind(probav_root, name):
    ds = PROBAVDataset(probav_root, n_images=3)
    s = ds[index_of(ds, name)]
    spec = next(f for f in DEFAULT_SETS if f.name == name)
    for i, frame in enumerate(s["frames"].tolist()):
        expected = np.zeros(128 * 128, dtype=bool)
        expected[: spec.clear[frame]] = True
        assert np.array_equal(s["lr_valid"][i].numpy().ravel(), expected)
    assert not s["hr_valid"][0].any() and s["hr_valid"][1:].all()


# --- frame choice --------------------------------------------------------------------------

def test_clearest_frames_ties_by_index_and_cycles_when_short():
    assert clearest_frames(np.array([5, 9, 5, 7]), 3).tolist() == [1, 3, 0]
    assert clearest_frames(np.array([5, 9, 5, 7]), 4).tolist() == [1, 3, 0, 2]
    assert clearest_frames(np.array([3, 3, 3]), 2).tolist() == [0, 1]
    assert clearest_frames(np.array([1, 2]), 5).tolist() == [1, 0, 1, 0, 1]


def test_eval_chooses_the_clearest_frames_deterministically(probav_root):
    a = PROBAVDataset(probav_root, n_images=3, seed=0)
    b = PROBAVDataset(probav_root, n_images=3, seed=5)
    for i in range(len(a)):
        assert torch.equal(a[i]["frames"], b[i]["frames"])
        assert torch.equal(a[i]["lr"], b[i]["lr"])
    # clear counts [9830, 16000, 9830, 15000, 12000]: clearest first
    assert a[index_of(a, "imgset0594")]["frames"].tolist() == [1, 3, 4]
    # [16384, 9000, 12000, 9000]: the tie 1 vs 3 goes to the lower number
    assert a[index_of(a, "imgset0000")]["frames"].tolist() == [0, 2, 1]
    assert a[index_of(a, "imgset0001")]["frames"].tolist() == [0, 1, 2]  # all equal
    # more images than frames: the clearest-first order repeats
    many = PROBAVDataset(probav_root, n_images=7, layout="frames")
    s = many[index_of(many, "imgset0594")]
    assert s["frames"].tolist() == [1, 3, 4, 0, 2, 1, 3] and s["lr"].shape == (7, 1, 128, 128)
    assert torch.equal(s["lr"][0], s["lr"][5])


def test_frames_are_file_numbers_when_numbering_does_not_start_at_zero(tmp_path):
    root = write_probav(tmp_path / "d", sets=(
        FakeSet("train", "NIR", "imgset0700", [9000, 16000, 12000], first_frame=4),))
    s = PROBAVDataset(root, bands="NIR", n_images=2, layout="frames")[0]
    assert s["frames"].tolist() == [5, 6]
    np.testing.assert_allclose(s["lr"][:, 0, 0, 0].numpy() * 65535, [1005, 1006], atol=1e-3)


def test_train_choice_is_random_and_seeded_by_torch(probav_root):
    ds = PROBAVDataset(probav_root, n_images=3, train=True)
    k = index_of(ds, "imgset0594")
    torch.manual_seed(0)
    first = [ds[k]["frames"].tolist() for _ in range(8)]
    torch.manual_seed(0)
    assert [ds[k]["frames"].tolist() for _ in range(8)] == first
    assert len({tuple(sorted(f)) for f in first}) > 1  # not always the same frames
    clear = dict(enumerate([9830, 16000, 9830, 15000, 12000]))
    for f in first:
        assert len(set(f)) == 3  # distinct
        assert [clear[x] for x in f] == sorted((clear[x] for x in f), reverse=True)
    # (index, sample_seed), as ResumableSampler yields: the seed alone decides, not torch's
    # global generator
    picks = []
    for torch_seed in range(6):
        torch.manual_seed(torch_seed)
        picks.append(ds[(k, 11)]["frames"].tolist())
    assert all(p == picks[0] for p in picks)
    seeded = {tuple(ds[(k, s)]["frames"].tolist()) for s in range(10)}
    assert len(seeded) > 1


def test_train_with_more_images_than_frames_repeats_evenly(probav_root):
    ds = PROBAVDataset(probav_root, n_images=8, train=True, bands="RED")
    torch.manual_seed(3)
    frames = ds[index_of(ds, "imgset0001")]["frames"].tolist()  # 3 frames
    counts = np.bincount(frames, minlength=3)
    assert counts.sum() == 8 and counts.max() - counts.min() <= 1


# --- splits, bands, subsets, batching ------------------------------------------------------

def test_test_split_items_have_no_hr_but_keep_the_status_map(probav_root):
    ds = PROBAVDataset(probav_root, split="test", n_images=2)
    assert not ds.has_hr and [s.name for s in ds.imgsets] == ["imgset1161", "imgset1160"]
    s = ds[1]
    assert "hr" not in s and s["hr_valid"].shape == (384, 384)
    assert s["frames"].tolist() == [1, 0]  # clear [11000, 16384, 10000]
    with pytest.raises(ConfigError, match="train=True needs HR"):
        PROBAVDataset(probav_root, split="test", train=True)


def test_split_and_argument_validation(probav_root):
    with pytest.raises(ConfigError) as e:
        PROBAVDataset(probav_root, split="val")
    assert "split must be one of train, test" in one_line(e)
    with pytest.raises(ConfigError, match="PROBA-V band must be one of NIR, RED"):
        PROBAVDataset(probav_root, bands="B08")
    with pytest.raises(ConfigError, match="given twice"):
        PROBAVDataset(probav_root, bands="nir,NIR")
    with pytest.raises(ConfigError, match="normalization must be one of challenge, 14bit"):
        PROBAVDataset(probav_root, normalization="255")
    with pytest.raises(ConfigError, match="layout"):
        PROBAVDataset(probav_root, layout="channels")
    with pytest.raises(ConfigError, match="n_images"):
        PROBAVDataset(probav_root, n_images=0)


def test_band_selection_and_image_set_subsets(probav_root):
    assert [s.name for s in PROBAVDataset(probav_root, bands="red").imgsets] == [
        "imgset0000", "imgset0001"]
    assert [s.band for s in PROBAVDataset(probav_root, bands=["NIR"]).imgsets] == ["NIR"]
    both = PROBAVDataset(probav_root, bands="RED,NIR")
    assert [s.band for s in both.imgsets] == ["RED", "RED", "NIR"]
    sub = PROBAVDataset(probav_root, imgsets=["imgset0001", "imgset0594"])
    assert [s.name for s in sub.imgsets] == ["imgset0001", "imgset0594"]
    with pytest.raises(DataError) as e:
        PROBAVDataset(probav_root, imgsets=["imgset0001", "imgset1160"])  # a test set
    assert "imgset1160" in one_line(e) and "train" in str(e.value)
    with pytest.raises(ConfigError, match="list"):
        PROBAVDataset(probav_root, imgsets="imgset0001")


def test_default_collate_batches_items(probav_root):
    ds = PROBAVDataset(probav_root, bands="RED", n_images=3, layout="frames")
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["lr"].shape == (2, 3, 1, 128, 128) and batch["hr"].shape == (2, 1, 384, 384)
    assert batch["hr_valid"].shape == (2, 384, 384) and batch["id"] == ["imgset0000", "imgset0001"]
    assert batch["baseline_cpsnr"].dtype == torch.float64


def test_pickles_and_loads_in_worker_processes_as_in_the_main_one(probav_root):
    ds = PROBAVDataset(probav_root, n_images=3, layout="frames")
    assert pickle.loads(pickle.dumps(ds))[1]["id"] == ds[1]["id"]
    main = list(DataLoader(ds, batch_size=2))
    workers = list(DataLoader(ds, batch_size=2, num_workers=2))
    for a, b in zip(main, workers, strict=True):
        assert a["id"] == b["id"] and torch.equal(a["frames"], b["frames"])
        assert torch.equal(a["lr"], b["lr"])


# --- norm.csv baselines --------------------------------------------------------------------

def test_baselines_from_norm_csv(probav_root):
    ds = PROBAVDataset(probav_root, bands="RED")
    s = ds[0]
    assert s["baseline_cpsnr"] == 52.352172662454414 == ds.baseline_cpsnr("imgset0000")
    assert ds.challenge_score("imgset0000", 52.352172662454414 * 2) == pytest.approx(0.5)
    test = PROBAVDataset(probav_root, split="test")
    assert test.baseline_cpsnr("imgset1161") == 39.5  # norm.csv covers the test sets too
    with pytest.raises(ValueError):
        ds.challenge_score("imgset0000", 0.0)


def test_challenge_score_takes_what_cpsnr_returns(probav_root):
    # zoomsr.metrics.cpsnr gives a float64 tensor per image: one of its elements (a 0-d
    # tensor), a NumPy scalar or a Python float all score
    ds = PROBAVDataset(probav_root, bands="RED")
    half = 52.352172662454414 * 2
    for value in (torch.tensor([half], dtype=torch.float64)[0], np.float32(half), half):
        assert ds.challenge_score("imgset0000", value) == pytest.approx(0.5, rel=1e-6)
    assert ds.challenge_score("imgset0000", torch.tensor(float("inf"))) == 0.0  # exact SR
    for bad in (torch.tensor(float("nan")), torch.tensor([1.0, 2.0]), -3.0, True, "45"):
        with pytest.raises(ValueError, match="cpsnr_db must be a positive number"):
            ds.challenge_score("imgset0000", bad)


def test_without_norm_csv_items_have_no_baseline(tmp_path):
    root = write_probav(tmp_path / "d", sets=DEFAULT_SETS[:1], norm_csv=False)
    ds = PROBAVDataset(root, bands="RED", n_images=2)
    assert ds.baselines is None and "baseline_cpsnr" not in ds[0]
    with pytest.raises(DataError, match="norm.csv"):
        ds.baseline_cpsnr("imgset0000")
    with pytest.raises(DataError) as e:
        PROBAVDataset(root, bands="RED", norm_csv=tmp_path / "elsewhere.csv")
    assert "elsewhere.csv: baseline file not found" in one_line(e)


def test_norm_csv_errors_name_the_file_and_line(probav_copy):
    csv = probav_copy / "norm.csv"
    csv.write_text("imgset0000 52.1\nimgset0001 46.5\nimgset0594\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        PROBAVDataset(probav_copy)
    assert f"{csv}: line 3 is not" in one_line(e)
    csv.write_text("imgset0000 52.1\nimgset0001 nan\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2: baseline cPSNR must be a positive number"):
        read_norm_csv(csv)
    csv.write_text("imgset0000 52.1\nimgset0001 46.5\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        PROBAVDataset(probav_copy)
    assert "no baseline for 1 image set(s), e.g. imgset0594" in one_line(e)
    csv.write_text("imgset0000,52.1\nimgset0001\t46.5\n\nimgset0594 44\n", encoding="utf-8")
    assert read_norm_csv(csv) == {"imgset0000": 52.1, "imgset0001": 46.5, "imgset0594": 44.0}


# --- folder errors -------------------------------------------------------------------------

def test_missing_root_split_and_band_folders(tmp_path, probav_copy):
    with pytest.raises(DataError) as e:
        PROBAVDataset(tmp_path / "nowhere")
    assert f"{tmp_path / 'nowhere'}: PROBA-V folder not found" in one_line(e)
    assert "kelvins.esa.int/proba-v-super-resolution" in str(e.value)
    shutil.rmtree(probav_copy / "test")
    with pytest.raises(DataError) as e:
        PROBAVDataset(probav_copy, split="test")
    assert f"{probav_copy / 'test'}: PROBA-V split folder not found" in one_line(e)
    shutil.rmtree(probav_copy / "train" / "NIR")
    with pytest.raises(DataError) as e:
        PROBAVDataset(probav_copy)
    assert f"{probav_copy / 'train' / 'NIR'}: PROBA-V band folder not found" in one_line(e)
    assert len(PROBAVDataset(probav_copy, bands="RED")) == 2


def test_empty_band_folder_and_empty_image_set(probav_copy):
    band = probav_copy / "train" / "RED"
    for p in band.iterdir():
        shutil.rmtree(p)
    with pytest.raises(DataError) as e:
        scan_probav(probav_copy, "train", "RED")
    assert f"{band}: no imgset* folders" in one_line(e)
    (band / "imgset0000").mkdir()
    with pytest.raises(DataError) as e:
        scan_probav(probav_copy, "train", "RED")
    assert f"{band / 'imgset0000'}: no LR*.png frames" in one_line(e)


@pytest.mark.parametrize(("remove", "expected"), [
    ("QM002.png", "QM002.png: quality map of LR002.png missing"),
    ("LR001.png", "QM001.png: quality map without its LR image LR001.png"),
    ("HR.png", "HR.png: missing from the image set"),
    ("SM.png", "SM.png: missing from the image set"),
])
def test_missing_files_in_an_image_set(probav_copy, remove, expected):
    folder = probav_copy / "train" / "RED" / "imgset0000"
    (folder / remove).unlink()
    with pytest.raises(DataError) as e:
        PROBAVDataset(probav_copy)
    assert f"{folder / expected.split(':')[0]}" in one_line(e) and expected in str(e.value)


def test_test_split_needs_no_hr_but_a_status_map(probav_copy):
    folder = probav_copy / "test" / "NIR" / "imgset1161"
    (folder / "SM.png").unlink()
    with pytest.raises(DataError, match="SM.png: missing from the image set"):
        PROBAVDataset(probav_copy, split="test")


# --- file errors (found when an item is read) ----------------------------------------------

def _item_error(root, name="imgset0000") -> str:
    ds = PROBAVDataset(root, n_images=4)
    with pytest.raises(DataError) as e:
        ds[index_of(ds, name)]
    return one_line(e)


def test_wrong_size_lr_hr_and_masks(probav_copy):
    folder = probav_copy / "train" / "RED" / "imgset0000"
    write_u16(folder / "LR002.png", np.zeros((100, 128), np.uint16))
    assert f"{folder / 'LR002.png'}: 128x100 px, expected 128x128" in _item_error(probav_copy)
    write_u16(folder / "LR002.png", lr_image(np.random.default_rng(0), 2))
    write_u16(folder / "HR.png", np.zeros((128, 128), np.uint16))
    assert f"{folder / 'HR.png'}: 128x128 px, expected 384x384" in _item_error(probav_copy)
    write_u16(folder / "HR.png", np.zeros((384, 384), np.uint16))
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / "QM003.png")
    assert f"{folder / 'QM003.png'}: 64x64 px, expected 128x128" in _item_error(probav_copy)
    Image.fromarray(np.ones((128, 128), np.uint8)).save(folder / "QM003.png")
    Image.fromarray(np.ones((128, 128), np.uint8)).save(folder / "SM.png")
    assert f"{folder / 'SM.png'}: 128x128 px, expected 384x384" in _item_error(probav_copy)


def test_wrong_bit_depth_and_band_count(probav_copy):
    folder = probav_copy / "train" / "RED" / "imgset0000"
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(folder / "LR000.png")
    msg = _item_error(probav_copy)
    assert f"{folder / 'LR000.png'}: 8-bit PNG; PROBA-V images are 16-bit grey" in msg
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(folder / "LR000.png")
    assert f"{folder / 'LR000.png'}: 3 bands" in _item_error(probav_copy)
    write_u16(folder / "LR000.png", lr_image(np.random.default_rng(0), 0))
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(folder / "QM001.png")
    assert f"{folder / 'QM001.png'}: 'RGB' image; a PROBA-V mask is one grey band" in (
        _item_error(probav_copy))
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(folder / "QM001.png", format="JPEG")
    assert f"{folder / 'QM001.png'}: a JPEG file" in _item_error(probav_copy)


def test_corrupt_files(probav_copy):
    folder = probav_copy / "train" / "RED" / "imgset0000"
    data = (folder / "LR001.png").read_bytes()
    (folder / "LR001.png").write_bytes(data[: len(data) // 2])
    assert f"{folder / 'LR001.png'}: corrupt or truncated image" in _item_error(probav_copy)
    (folder / "LR001.png").write_bytes(data)
    (folder / "QM002.png").write_bytes(b"not a png at all")
    assert f"{folder / 'QM002.png'}: not a readable image" in _item_error(probav_copy)
    sm = (folder / "SM.png").read_bytes()
    (folder / "QM002.png").write_bytes(sm[: len(sm) // 3])
    assert f"{folder / 'QM002.png'}" in _item_error(probav_copy)


def test_unreadable_files_say_what_to_do_and_name_proba_v(probav_copy):
    folder = probav_copy / "train" / "RED" / "imgset0000"
    lr = folder / "LR001.png"
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(lr, format="JPEG")
    msg = _item_error(probav_copy)
    assert msg.startswith(f"{lr}: a JPEG file") and "S2-NAIP" not in msg
    assert "kelvins.esa.int" in msg
    lr.write_bytes(b"not a png at all")
    msg = _item_error(probav_copy)
    assert msg.startswith(f"{lr}: not a readable image") and "kelvins.esa.int" in msg
    write_u16(lr, lr_image(np.random.default_rng(0), 1))
    qm = folder / "QM002.png"
    qm.write_bytes(qm.read_bytes()[:80])
    msg = _item_error(probav_copy)
    assert msg.startswith(f"{qm}: corrupt or truncated image") and "kelvins.esa.int" in msg
    qm.unlink()
    with pytest.raises(DataError) as e:
        PROBAVDataset(probav_copy)
    assert "kelvins.esa.int" in one_line(e)  # a file missing from a set: unpack it again


def test_eval_reads_every_quality_map_but_only_the_chosen_images(probav_copy):
    # frame 3 is not among the 3 clearest of imgset0000: a broken LR003 goes unread, a broken
    # QM003 is found (evaluation ranks every frame)
    folder = probav_copy / "train" / "RED" / "imgset0000"
    (folder / "LR003.png").write_bytes(b"broken")
    ds = PROBAVDataset(probav_copy, n_images=3)
    assert ds[index_of(ds, "imgset0000")]["frames"].tolist() == [0, 2, 1]
    (folder / "QM003.png").write_bytes(b"broken")
    with pytest.raises(DataError, match="QM003.png"):
        ds[index_of(ds, "imgset0000")]
