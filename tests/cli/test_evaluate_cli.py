"""``zoomsr evaluate`` end to end, in-process, with exit codes and outputs."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture
def s2naip(tmp_path):
    """Targets in the S2-NAIP layout, predictions as {tile}.png (target + 5 grey levels);
    one tile without a prediction, one prediction without a target."""
    rng = np.random.default_rng(0)
    pred, target = tmp_path / "pred", tmp_path / "ds"
    for k, tile in enumerate(("100_200", "101_200", "102_200")):
        t = rng.integers(10, 240, size=(40, 40, 3), dtype=np.uint8)
        _save(target / "naip" / f"uuid{k}" / tile / "rgb.png", t)
        if tile != "102_200":
            _save(pred / f"{tile}.png", t + 5)
    _save(pred / "999_999.png", np.zeros((40, 40, 3), np.uint8))
    return pred, target


def test_evaluate_writes_csv_summary_and_table(cli, s2naip, tmp_path):
    pred, target = s2naip
    out = tmp_path / "out"
    code, stdout, stderr = cli("evaluate", "--pred", pred, "--target", target,
                               "--metrics", "psnr,ssim,cpsnr", "--out", out, "--no-progress")
    assert code == 0, stderr
    assert "psnr" in stdout and "2 image pairs" in stdout
    assert "no prediction for target" in stderr and "102_200" in stderr
    assert "no target for prediction" in stderr and "999_999.png" in stderr
    rows = list(csv.DictReader((out / "per_image.csv").read_text().splitlines()))
    assert [r["key"] for r in rows] == ["100_200", "101_200"]
    assert float(rows[0]["psnr"]) == pytest.approx(20 * math.log10(255 / 5), abs=1e-9)
    assert float(rows[0]["cpsnr"]) > 100  # a constant offset is a brightness bias
    doc = json.loads((out / "summary.json").read_text())
    assert doc["layout"] == "s2naip" and doc["n_pairs"] == 2
    assert set(doc["metrics"]) == {"psnr", "ssim", "cpsnr"}
    assert len(doc["missing_pred"]) == 1 and len(doc["unmatched_pred"]) == 1
    for key in ("mean", "std", "ci95_low", "ci95_high"):
        assert isinstance(doc["metrics"]["ssim"][key], float)

    code, _, stderr = cli("evaluate", "--pred", pred, "--target", target, "--out", out,
                          "--no-progress")
    assert code == 2 and "--overwrite" in stderr
    code, _, stderr = cli("evaluate", "--pred", pred, "--target", target, "--strict")
    assert code == 2 and "unpaired" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--pred", "{tmp}/nope", "--target", "{tmp}/ds"), "prediction folder not found"),
        (("--pred", "{tmp}/empty", "--target", "{tmp}/ds"), "holds no PNG"),
        (("--pred", "{tmp}/pred", "--target", "{tmp}/ds", "--metrics", "psnr,niqe"),
         "unknown metric 'niqe'"),
        (("--pred", "{tmp}/pred", "--target", "{tmp}/ds", "--border", "30"), "border 30"),
        (("--pred", "{tmp}/pred", "--target", "{tmp}/ds", "--cpsnr-mode", "x",
          "--metrics", "cpsnr"), "--cpsnr-mode must be one of challenge, reference, got 'x'"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, s2naip, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    code, stdout, stderr = cli("evaluate", *(a.format(tmp=tmp_path) for a in args),
                               "--no-progress")
    assert code == 2
    err = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0]


def test_corrupt_image_names_the_file(cli, s2naip):
    pred, target = s2naip
    (pred / "100_200.png").write_bytes(b"\x89PNG\r\n\x1a\n-truncated")
    code, _, stderr = cli("evaluate", "--pred", pred, "--target", target, "--no-progress")
    assert code == 2
    assert stderr.strip().splitlines()[-1].startswith("error: ")
    assert str(pred / "100_200.png") in stderr


def test_lpips_with_real_weights(cli, shared_dir, tmp_path):
    lp = shared_dir / "weights" / "lpips"
    _save(tmp_path / "p" / "x.png", np.array(Image.open(lp / "ex_p0.png").convert("RGB")))
    _save(tmp_path / "p" / "y.png", np.array(Image.open(lp / "ex_p1.png").convert("RGB")))
    ref = np.array(Image.open(lp / "ex_ref.png").convert("RGB"))
    _save(tmp_path / "t" / "x.png", ref)
    _save(tmp_path / "t" / "y.png", ref)
    code, stdout, stderr = cli("evaluate", "--pred", tmp_path / "p", "--target", tmp_path / "t",
                               "--metrics", "lpips", "--lpips-weights", lp, "--device", "cpu",
                               "--out", tmp_path / "o", "--no-progress")
    if code == 2 and "linear-layer" in stderr and os.environ.get("CI") != "true":
        pytest.skip("the lpips package (linear-layer weights) is not installed")
    assert code == 0, stderr
    rows = list(csv.DictReader((tmp_path / "o" / "per_image.csv").read_text().splitlines()))
    assert [round(float(r["lpips"]), 3) for r in rows] == [0.722, 0.138]


def test_wrong_lpips_weights_are_the_one_line_printed(cli, shared_dir, tmp_path):
    """Weights of another network: what differs, and no list of unpaired files before it
    (their contents are checked as the metrics are built, before the pairing's notes)."""
    alex = shared_dir / "weights" / "lpips" / "alexnet-features-from-lpips.pth"
    img = np.full((40, 40, 3), 100, np.uint8)
    for name in ("x.png", "unpaired.png"):
        _save(tmp_path / "p" / name, img)
    _save(tmp_path / "t" / "x.png", img)
    code, stdout, stderr = cli("evaluate", "--pred", tmp_path / "p", "--target", tmp_path / "t",
                               "--metrics", "lpips", "--lpips-net", "vgg", "--lpips-weights",
                               alex, "--device", "cpu", "--no-progress")
    if code == 2 and "linear-layer" in stderr and os.environ.get("CI") != "true":
        pytest.skip("the lpips package (linear-layer weights) is not installed")
    assert code == 2 and stdout == "" and stderr.strip().splitlines() == [
        f"error: {alex}: not vgg backbone weights (22 tensor(s) missing, e.g. 12.bias; 6 "
        "unexpected, e.g. 3.bias; 2 of another shape, e.g. 0.weight (64, 3, 11, 11) instead "
        "of (64, 3, 3, 3))"], stderr


def test_missing_lpips_weights_exit_2_naming_the_file(cli, s2naip, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    pred, target = s2naip
    code, _, stderr = cli("evaluate", "--pred", pred, "--target", target, "--metrics", "lpips",
                          "--no-progress")
    assert code == 2 and "alexnet-owt-7be5be79.pth" in stderr


def test_clipscore_from_a_local_checkpoint(cli, s2naip, tiny_clip, tmp_path, monkeypatch):
    name, ckpt = tiny_clip
    pred, target = s2naip
    args = ["evaluate", "--pred", pred, "--target", target, "--metrics", "psnr,clipscore",
            "--clip-model", name, "--clip-pretrained", ckpt, "--clip-cache", tmp_path / "cache",
            "--device", "cpu", "--no-progress"]
    code, stdout, stderr = cli(*args, "--out", tmp_path / "o1")
    assert code == 0, stderr
    assert len(list((tmp_path / "cache").glob("clipscore-*.safetensors"))) == 1
    code, _, stderr = cli(*args, "--out", tmp_path / "o2", "--clip-mode", "standard")
    assert code == 0, stderr
    first = list(csv.DictReader((tmp_path / "o1" / "per_image.csv").read_text().splitlines()))
    assert all(0.0 < float(r["clipscore"]) <= 1.0 + 1e-6 for r in first)
    # the standard preprocessing (resize + centre crop, not the paper's): recorded, and other
    # embeddings (the cached ones are the paper mode's: not reused)
    second = list(csv.DictReader((tmp_path / "o2" / "per_image.csv").read_text().splitlines()))
    assert [r["psnr"] for r in second] == [r["psnr"] for r in first]
    assert [r["clipscore"] for r in second] != [r["clipscore"] for r in first]
    for out, mode in (("o1", "paper"), ("o2", "standard")):
        summary = json.loads((tmp_path / out / "summary.json").read_text())
        assert summary["options"]["clip_mode"] == mode
    # no CLIP weights where it looks (empty caches; tests never download): a clear error
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # (open_clip's ~/.cache/clip)
    code, _, stderr = cli("evaluate", "--pred", pred, "--target", target, "--metrics",
                          "clipscore", "--clip-model", "ViT-B-16", "--clip-pretrained", "openai",
                          "--device", "cpu", "--no-progress")
    assert code == 2 and "--clip-pretrained openai=PATH" in stderr
    assert str(tmp_path / "hf") in stderr and str(tmp_path / "home") in stderr


def test_dataset_root_as_target_and_split(cli, s2naip, tmp_path):
    """A dataset root with sentinel2/ series and `data info --plot` PNGs works as --target."""
    pred, target = s2naip
    for tile in ("100_200", "101_200", "102_200"):
        _save(target / "sentinel2" / tile / "tci.png", np.zeros((64, 32, 3), np.uint8))
    _save(target / "montage.png", np.zeros((8, 8, 3), np.uint8))
    _save(target / "tiles.png", np.zeros((8, 8, 3), np.uint8))
    code, stdout, stderr = cli("evaluate", "--pred", pred, "--target", target, "--no-progress")
    assert code == 0, stderr
    assert "2 image pairs" in stdout and "montage" not in stderr and "sentinel2" not in stderr

    (target / "zoomsr_splits.json").write_text(json.dumps(
        {"seed": 0, "train": ["100_200", "102_200"], "val": ["101_200"], "test": [],
         "buffer": []}))
    out = tmp_path / "out"
    code, stdout, stderr = cli("evaluate", "--pred", pred, "--target", target, "--split", "val",
                               "--out", out, "--no-progress")
    assert code == 0, stderr
    assert "1 image pairs" in stdout
    assert "1 prediction(s) of tiles outside the 'val' split" in stderr
    doc = json.loads((out / "summary.json").read_text())
    assert doc["split"] == "val" and doc["n_pairs"] == 1 and doc["n_outside_split"] == 1
    assert doc["options"]["split"] == "val" and doc["missing_pred"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--dtype", "foo"), "--dtype foo: unknown dtype"),
        (("--dtype", "bf16", "--device", "cpu"), "--dtype bf16"),
        (("--device", "foo"), "--device must be auto, cpu, cuda or cuda:N, got 'foo'"),
        (("--device", "cuda"), "--device cuda: no CUDA GPU"),
        (("--device", "cuda:0"), "--device cuda:0: no CUDA GPU"),
        (("--split", "validation"), "--split must be one of train, val, test, buffer"),
        (("--split", "val"), "zoomsr_splits.json not found"),
    ],
)
def test_options_checked_up_front(cli, s2naip, tmp_path, monkeypatch, args, message):
    """Checked before any file is read, whatever the metrics (psnr needs no device)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pred, target = s2naip
    (pred / "100_200.png").write_bytes(b"corrupt")  # never read
    code, _, stderr = cli("evaluate", "--pred", pred, "--target", target, "--metrics", "psnr",
                          *args, "--no-progress")
    assert code == 2
    err = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0], stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--border", "-1"), "--border must be an integer >= 0, got -1"),
        (("--batch-size", "0"), "--batch-size must be an integer >= 1, got 0"),
        (("--metrics", "cpsnr", "--cpsnr-mode", "foo"), "--cpsnr-mode must be one of"),
        (("--metrics", "lpips", "--lpips-net", "squeeze"), "--lpips-net must be one of alex, vgg"),
        (("--metrics", "lpips_alex,lpips"), "--metrics lists lpips (with --lpips-net alex) and "
                                            "lpips_alex: the same metric twice"),
        (("--metrics", "lpips", "--lpips-weights", "{tmp}/none.pth"),
         "LPIPS alex backbone weights not found: {tmp}/none.pth"),
        (("--metrics", "lpips_vgg", "--lpips-linear-weights", "{tmp}/lin.pth"),
         "not found"),
        (("--metrics", "clipscore", "--clip-mode", "fancy"), "--clip-mode must be one of"),
    ],
)
def test_metric_options_and_weights_checked_before_pairing(cli, s2naip, tmp_path, args,
                                                           message):
    """The user trial: bad options and missing weights were reported only after pairing, below
    a list of unpaired files."""
    pred, target = s2naip
    for k in range(25):  # targets without a prediction: listed when the files are paired
        _save(target / "naip" / f"more{k}" / f"{500 + k}_300" / "rgb.png",
              np.zeros((40, 40, 3), np.uint8))
    (tmp_path / "hub").mkdir()
    code, stdout, stderr = cli("evaluate", "--pred", pred, "--target", target,
                               *(a.format(tmp=tmp_path) for a in args), "--no-progress")
    assert code == 2 and stdout == ""
    assert stderr.strip().splitlines() == [stderr.strip()], stderr  # the error line only
    assert stderr.startswith("error: ") and message.format(tmp=tmp_path) in stderr


def test_progress_leaves_a_final_line_when_stderr_is_not_a_terminal(cli, s2naip):
    """As the data commands do (nohup, SLURM logs): the bar's final state stays as a line."""
    pred, target = s2naip
    code, _, stderr = cli("evaluate", "--pred", pred, "--target", target, "--metrics", "psnr")
    assert code == 0, stderr
    bar = [line for line in stderr.splitlines() if line.startswith("evaluating")]
    assert len(bar) == 1 and "2/2" in bar[0]
    code, _, stderr = cli("evaluate", "--pred", pred, "--target", target, "--metrics", "psnr",
                          "--no-progress")
    assert code == 0 and "evaluating" not in stderr


def test_image_too_small_for_lpips_is_one_line_exit_2(cli, shared_dir, tmp_path):
    """The user trial: 24x24 images with the AlexNet LPIPS gave a raw torch error, exit 1."""
    from zoomsr.metrics.base import WeightsNotFoundError
    from zoomsr.metrics.lpips import find_linear_weights

    try:
        find_linear_weights("alex")
    except WeightsNotFoundError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("the lpips package (linear-layer weights) is not installed")
    rng = np.random.default_rng(3)
    _save(tmp_path / "p" / "a.png", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    _save(tmp_path / "t" / "a.png", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    code, _, stderr = cli("evaluate", "--pred", tmp_path / "p", "--target", tmp_path / "t",
                          "--metrics", "lpips", "--lpips-weights", shared_dir / "weights" /
                          "lpips", "--device", "cpu")
    assert code == 2
    assert stderr.strip().splitlines() == [stderr.strip()], stderr  # no bar left either
    assert stderr.startswith(f"error: {tmp_path / 'p' / 'a.png'}: lpips: ")
    assert "at least 31x31 px" in stderr and "got 24x24" in stderr


def test_no_prediction_in_the_split_is_said_so(cli, s2naip):
    pred, target = s2naip
    (target / "zoomsr_splits.json").write_text(json.dumps(
        {"seed": 0, "train": ["100_200"], "val": ["101_200"], "test": ["102_200"],
         "buffer": []}))
    code, _, stderr = cli("evaluate", "--pred", pred, "--target", target, "--split", "test",
                          "--no-progress")
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "none of the 3 predictions" in stderr and "'test' split" in stderr
    assert "(1 in train, 1 in val)" in stderr and "matches a target" not in stderr


def test_ambiguous_tiles_are_reported_before_long_lists(cli, s2naip):
    pred, target = s2naip
    for k in range(30):  # 30 more targets without a prediction
        _save(target / "naip" / f"more{k}" / f"{500 + k}_300" / "rgb.png",
              np.zeros((40, 40, 3), np.uint8))
    _save(pred / "101_200" / "sr.png", np.zeros((40, 40, 3), np.uint8))  # 2nd file for 101_200
    code, _, stderr = cli("evaluate", "--pred", pred, "--target", target, "--no-progress")
    assert code == 0, stderr
    lines = stderr.splitlines()
    assert lines[0] == ("warning: not scored: 1 id claimed by several files, 31 targets "
                        "without a prediction, 1 prediction without a target")
    assert "'101_200' matches several files" in lines[1]
    assert "... and 13 more" in stderr


def _tif(path: Path, arr: np.ndarray, **geo: object) -> None:
    """``arr`` ``[3, H, W]`` as a TIFF; georeferenced when ``crs``/``transform`` are given."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # writing a plain TIFF warns too; only reading is tested
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                           count=arr.shape[0], dtype=arr.dtype, **geo) as dst:
            dst.write(arr)


def test_one_image_has_no_std_or_interval(cli, tmp_path):
    rng = np.random.default_rng(1)
    t = rng.integers(10, 240, size=(32, 32, 3), dtype=np.uint8)
    _save(tmp_path / "t" / "a.png", t)
    _save(tmp_path / "p" / "a.png", t + 3)
    out = tmp_path / "out"
    code, stdout, stderr = cli("evaluate", "--pred", tmp_path / "p", "--target", tmp_path / "t",
                               "--metrics", "psnr", "--out", out, "--no-progress")
    assert code == 0, stderr
    doc = json.loads((out / "summary.json").read_text())["metrics"]["psnr"]
    assert doc["n"] == 1 and doc["mean"] == pytest.approx(20 * math.log10(255 / 3))
    assert doc["std"] is None and doc["ci95_low"] is None and doc["ci95_high"] is None
    row = next(line for line in stdout.splitlines() if "psnr" in line)
    assert "[-, -]" in row and "0.0000" not in row
    assert "n=1: no std or 95% CI" in stdout


def test_georeferenced_pair_elsewhere_is_one_line_exit_2(cli, tmp_path):
    from affine import Affine

    arr = np.random.default_rng(2).integers(0, 256, size=(3, 16, 16), dtype=np.uint8)
    _tif(tmp_path / "t" / "a.tif", arr, crs="EPSG:3857", transform=Affine(10, 0, 0, 0, -10, 0))
    _tif(tmp_path / "p" / "a.tif", arr, crs="EPSG:3857", transform=Affine(10, 0, 80, 0, -10, 0))
    code, _, stderr = cli("evaluate", "--pred", tmp_path / "p", "--target", tmp_path / "t",
                          "--metrics", "psnr", "--no-progress")
    assert code == 2
    assert stderr.strip().splitlines() == [stderr.strip()]
    assert str(tmp_path / "p" / "a.tif") in stderr and str(tmp_path / "t" / "a.tif") in stderr
    assert "bounds (80, -160, 240, 0) differ" in stderr and "(0, -160, 160, 0)" in stderr


def test_plain_tiffs_print_no_rasterio_warning(cli, tmp_path, recwarn):
    """Non-georeferenced TIFFs are fine to score: stderr keeps one line per problem."""
    from rasterio.errors import NotGeoreferencedWarning

    arr = np.full((3, 16, 16), 100, np.uint8)
    _tif(tmp_path / "t" / "a.tif", arr)
    _tif(tmp_path / "p" / "a.tif", arr + 2)
    _tif(tmp_path / "t" / "b.tif", arr)  # no prediction: the one line expected on stderr
    code, _, stderr = cli("evaluate", "--pred", tmp_path / "p", "--target", tmp_path / "t",
                          "--metrics", "psnr", "--no-progress")
    assert code == 0, stderr
    # pytest records warnings instead of printing them: look at the record as well
    assert not [w for w in recwarn if issubclass(w.category, NotGeoreferencedWarning)]
    assert "Georeferenced" not in stderr and "identity matrix" not in stderr
    assert stderr.splitlines() == ["warning: not scored: 1 target without a prediction",
                                   f"  no prediction for target {tmp_path / 't' / 'b.tif'}"]


def test_the_mosaic_infer_writes_for_a_dataset_is_scored_tile_by_tile(cli, tiny_dataset,
                                                                      tmp_path):
    """`zoomsr infer DATASET -o sr.tif` writes one mosaic; `evaluate` took only a folder of
    per-tile files, so the documented journey needed hand-written cropping."""
    import csv
    import json

    import rasterio

    from zoomsr.data import scan_pairs
    from zoomsr.evaluation.images import read_rgb
    from zoomsr.grid import Tile
    from zoomsr.metrics import psnr

    sr = tmp_path / "sr.tif"
    tiny = ["--model", "rrdbnet", "-c", "num_in_ch=6,num_feat=8,num_block=1,num_grow_ch=4",
            "--random-weights", "--no-progress", "--device", "cpu", "--save-lr"]
    assert cli("infer", tiny_dataset, "-o", sr, *tiny)[0] == 0
    out = tmp_path / "scores"
    code, stdout, err = cli("evaluate", "--pred", sr, "--target", tiny_dataset, "--metrics",
                            "psnr", "--out", out, "--no-progress")
    assert code == 0, err
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    pairs = scan_pairs(tiny_dataset)
    assert sorted(r["key"] for r in rows) == sorted(p.tile for p in pairs)
    with rasterio.open(sr) as ds:  # each row is its tile's crop, cut out here independently
        for r in rows:
            b = Tile.parse(r["key"]).bounds
            col, row = ~ds.transform @ (b.left, b.top)
            crop = ds.read((1, 2, 3), window=((round(row), round(row) + 128),
                                              (round(col), round(col) + 128)))
            target = read_rgb(r["target"], as_float=False)
            expected = psnr(crop[None], target[None].numpy())[0].item()
            assert abs(float(r["psnr"]) - expected) < 1e-9
    # a training run's own split: --splits (the sample writes no zoomsr_splits.json)
    tiles = sorted(f"{p.image_id}/{p.tile}" for p in pairs)
    run_splits = tmp_path / "splits.json"
    run_splits.write_text(json.dumps({"train": tiles[1:], "val": tiles[:1]}))
    code, _, err = cli("evaluate", "--pred", sr, "--target", tiny_dataset, "--metrics", "psnr",
                       "--split", "val", "--splits", run_splits, "--out", tmp_path / "val",
                       "--no-progress")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "val" / "per_image.csv").open()))
    assert [r["key"] for r in rows] == [tiles[0].split("/")[1]]
    code, _, err = cli("evaluate", "--pred", sr, "--target", tiny_dataset, "--metrics", "psnr",
                       "--splits", run_splits, "--no-progress")
    assert code == 2 and "add --split val" in err
    # a mosaic against targets that are no S2-NAIP dataset: said so
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.png").write_bytes((tiny_dataset / "naip").rglob("rgb.png").__next__().read_bytes())
    code, _, err = cli("evaluate", "--pred", sr, "--target", plain, "--metrics", "psnr",
                       "--out", tmp_path / "x", "--no-progress")
    assert code == 2 and "is scored against an S2-NAIP dataset's tiles" in err


def _mosaic_of_targets(root: Path, tiles: list[str], size: int = 40, shift_px: float = 0.0,
                       nodata: object = None, dtype: str = "uint8") -> tuple[Path, Path]:
    """S2-NAIP targets of ``size`` px for adjacent ``tiles`` (one row), and a GeoTIFF mosaic
    holding exactly their pixels, its origin moved by ``shift_px`` pixels to the east."""
    from affine import Affine

    from zoomsr.grid import Tile

    rng = np.random.default_rng(3)
    target = root / "ds"
    (target / "sentinel2").mkdir(parents=True)  # a dataset root: a mosaic is scored on it
    parts = []
    for k, tile in enumerate(tiles):
        t = rng.integers(10, 240, size=(size, size, 3), dtype=np.uint8)
        _save(target / "naip" / f"uuid{k}" / tile / "rgb.png", t)
        parts.append(np.moveaxis(t, -1, 0))
    b = Tile.parse(tiles[0]).bounds
    res = (b.right - b.left) / size
    arr = np.concatenate(parts, axis=2).astype(dtype)
    if dtype != "uint8":
        arr /= 255
    transform = Affine(res, 0, b.left + shift_px * res, 0, -res, b.top)
    geo: dict[str, object] = {"crs": "EPSG:3857", "transform": transform}
    if nodata is not None:
        geo["nodata"] = nodata
    mosaic = root / "sr.tif"
    _tif(mosaic, arr, **geo)
    return mosaic, target


@pytest.mark.parametrize("shift", [0.3, -0.3])
def test_a_mosaic_off_the_grid_is_read_at_the_nearest_pixel(cli, tmp_path, shift):
    """A mosaic 0.3 px east of the grid was read 0.7 px away (27.7 dB instead of a perfect
    match); a 0.25 px shift cut the edge tile short and stopped the run."""
    mosaic, target = _mosaic_of_targets(tmp_path, ["100_200", "101_200"], shift_px=shift)
    out = tmp_path / "out"
    code, _, err = cli("evaluate", "--pred", mosaic, "--target", target, "--metrics", "psnr",
                       "--out", out, "--no-progress")
    assert code == 0, err
    assert "0.3 px off the tiles' grid; each tile is read at the nearest pixel" in err
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    # each tile's pixels are the mosaic's nearest ones: its own
    assert [r["psnr"] for r in rows] == ["inf", "inf"] and "no prediction" not in err
    # 0.6 px: the nearest pixels are the neighbours; the edge tile runs off the mosaic
    mosaic, target = _mosaic_of_targets(tmp_path / "b", ["100_200", "101_200"],
                                        shift_px=2 * shift)
    code, _, err = cli("evaluate", "--pred", mosaic, "--target", target, "--metrics", "psnr",
                       "--out", tmp_path / "b_out", "--no-progress")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "b_out" / "per_image.csv").open()))
    assert len(rows) == 1 and float(rows[0]["psnr"]) < 20 and "no prediction for target" in err


def test_a_mosaics_nodata_tiles_are_missing_predictions(cli, tmp_path):
    """A tile without a valid pixel (no valid frame when infer made it) stopped the run."""
    import rasterio

    mosaic, target = _mosaic_of_targets(tmp_path, ["100_200", "101_200", "102_200"], nodata=0)
    with rasterio.open(mosaic, "r+") as ds:
        arr = ds.read()
        arr[:, :, 40:80] = 0  # the middle tile: all nodata
        arr[:, :4, 80:] = 0  # the last one: partly
        ds.write(arr)
    out = tmp_path / "out"
    code, _, err = cli("evaluate", "--pred", mosaic, "--target", target, "--metrics", "psnr",
                       "--out", out, "--no-progress")
    assert code == 0, err
    assert [r["key"] for r in csv.DictReader((out / "per_image.csv").open())] == [
        "100_200", "102_200"]
    doc = json.loads((out / "summary.json").read_text())
    assert [Path(p).parts[-2] for p in doc["missing_pred"]] == ["101_200"]
    # the partly nodata tile: scored on its valid pixels (its own there: a perfect match)
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert rows[1]["psnr"] == "inf" and float(rows[1]["valid_fraction"]) == 0.9
    assert "note: 1 pair(s) with nodata pixels (down to 90 % valid)" in err
    code, _, err = cli("evaluate", "--pred", mosaic, "--target", target, "--metrics", "psnr",
                       "--out", tmp_path / "black", "--no-progress", "--nodata", "black")
    assert code == 0, err
    assert "(tile 102_200): 10 % of its pixels are nodata (masked), scored as black" in err
    # said on stderr as the other unscored files are, and a failure with --strict
    assert "warning: not scored: 1 tile(s) where" in err and "101_200" in err
    code, _, err = cli("evaluate", "--pred", mosaic, "--target", target, "--metrics", "psnr",
                       "--no-progress", "--strict")
    assert code == 2 and "1 tile(s) where" in err and "has no valid pixel" in err


def test_a_mosaics_fourth_band_is_not_its_alpha(cli, tmp_path):
    """A 4-band 8-bit mosaic (RGB + NIR) had its NIR taken for alpha tile by tile: pixels
    where NIR is 0 were blacked out (whole files are read with the same rule as here)."""
    import rasterio

    mosaic, target = _mosaic_of_targets(tmp_path, ["100_200"])
    with rasterio.open(mosaic) as ds:
        profile, rgb = ds.profile, ds.read()
    nir = np.full((1, *rgb.shape[1:]), 200, np.uint8)
    nir[:, :, :10] = 0
    four = tmp_path / "four.tif"
    with rasterio.open(four, "w", **{**profile, "count": 4}) as dst:
        dst.write(np.concatenate([rgb, nir]))
    out = tmp_path / "out"
    code, _, err = cli("evaluate", "--pred", four, "--target", target, "--metrics", "psnr",
                       "--out", out, "--no-progress")
    assert code == 0 and "nodata" not in err, err
    assert [r["psnr"] for r in csv.DictReader((out / "per_image.csv").open())] == ["inf"]


def test_float_nodata_is_scored_as_black_not_as_its_fill_value(cli, tmp_path):
    """-9999 and NaN fills were refused as out of range; 255 was scored as white. (With
    ``--nodata black``; by default those pixels are left out, whatever their fill.)"""
    rng = np.random.default_rng(4)
    t = rng.integers(10, 240, size=(3, 40, 40)).astype(np.uint8)
    _tif(tmp_path / "tgt" / "a.tif", t)
    expected = t.copy()
    expected[:, :10] = 0  # black where the prediction has no data (inside the border)
    _tif(tmp_path / "black" / "a.tif", expected)
    def mean_psnr(pred: Path, *more: str) -> tuple[float, str]:
        out = tmp_path / f"{pred.name}_out{len(more)}"
        code, _, err = cli("evaluate", "--pred", pred, "--target", tmp_path / "tgt",
                           "--metrics", "psnr", "--no-progress", "--out", out, *more)
        assert code == 0, (pred, err)
        summary = json.loads((out / "summary.json").read_text())["metrics"]["psnr"]
        return summary["mean"] if summary["n"] else summary["n_nonfinite"] * math.inf, err

    ref, _ = mean_psnr(tmp_path / "black")
    for name, fill, dtype in (("nd9999", -9999.0, "float32"), ("nan", float("nan"), "float32"),
                              ("nd255", 255, "uint8")):
        pred = t.astype(dtype) / (255 if dtype == "float32" else 1)
        pred[:, :10] = fill
        _tif(tmp_path / name / "a.tif", pred.astype(dtype), nodata=fill)
        got, err = mean_psnr(tmp_path / name, "--nodata", "black")
        assert "25 % of its pixels are nodata (masked), scored as black" in err
        assert got == pytest.approx(ref, abs=0.05), name
        # by default: left out; the rest is the target's own pixels (float: within rounding)
        got, err = mean_psnr(tmp_path / name)
        assert "scored as black" not in err and got > 120, (name, got)


def test_mosaic_read_errors_are_one_line_naming_it(cli, tmp_path):
    mosaic, target = _mosaic_of_targets(tmp_path, ["100_200"])
    import rasterio

    with rasterio.open(mosaic) as ds:
        profile, band = ds.profile, ds.read(1)
    one = tmp_path / "one.tif"
    with rasterio.open(one, "w", **{**profile, "count": 1}) as dst:
        dst.write(band, 1)
    code, _, err = cli("evaluate", "--pred", one, "--target", target, "--no-progress")
    assert code == 2 and err.strip() == f"error: {one}: 1 band(s); expected RGB (3 or more bands)"
    cut = tmp_path / "cut.tif"
    cut.write_bytes(mosaic.read_bytes()[:-2000])
    code, _, err = cli("evaluate", "--pred", cut, "--target", target, "--no-progress")
    assert code == 2 and str(cut) in err and len(err.strip().splitlines()) == 1


def test_a_tile_captured_twice_pairs_by_its_image_id(cli, tmp_path):
    """Two captures of a tile (which `data build` writes) were ids claimed by several files."""
    rng = np.random.default_rng(5)
    pred, target = tmp_path / "pred", tmp_path / "ds"
    for image_id in ("u1", "u2"):
        t = rng.integers(10, 240, size=(40, 40, 3), dtype=np.uint8)
        _save(target / "naip" / image_id / "100_200" / "rgb.png", t)
        _save(pred / "naip" / image_id / "100_200" / "rgb.png", t + 5)
    t = rng.integers(10, 240, size=(40, 40, 3), dtype=np.uint8)
    _save(target / "naip" / "u3" / "101_200" / "rgb.png", t)
    _save(pred / "101_200.png", t)
    out = tmp_path / "out"
    code, _, err = cli("evaluate", "--pred", pred, "--target", target, "--metrics", "psnr",
                       "--out", out, "--no-progress", "--strict")
    assert code == 0, err
    rows = {r["key"]: r for r in csv.DictReader((out / "per_image.csv").open())}
    assert sorted(rows) == ["101_200", "u1/100_200", "u2/100_200"]
    assert "/u2/" in rows["u2/100_200"]["pred"] and "/u2/" in rows["u2/100_200"]["target"]
    # a prediction naming no capture of such a tile: which one? reported, not guessed
    _save(pred / "100_200.png", np.zeros((40, 40, 3), np.uint8))
    code, _, err = cli("evaluate", "--pred", pred, "--target", target, "--metrics", "psnr",
                       "--no-progress")
    assert code == 0 and "'100_200' matches several files" in err
    # against a mosaic, each capture is scored on the mosaic's part of the tile
    mosaic, _ = _mosaic_of_targets(tmp_path / "m", ["100_200", "101_200"])
    (target / "sentinel2").mkdir()
    code, _, err = cli("evaluate", "--pred", mosaic, "--target", target, "--metrics",
                       "psnr", "--out", tmp_path / "m_out", "--no-progress")
    assert code == 0, err
    keys = [r["key"] for r in csv.DictReader((tmp_path / "m_out" / "per_image.csv").open())]
    assert sorted(keys) == ["101_200", "u1/100_200", "u2/100_200"]


@pytest.mark.parametrize("cache", ["{tmp}/pred/100_200.png/sub", "{tmp}/pred/100_200.png"])
def test_a_bad_clip_cache_is_refused_up_front(cli, s2naip, tiny_clip, tmp_path, monkeypatch,
                                              cache):
    """A --clip-cache under a file failed after the model loaded and a batch was embedded:
    `error: NotADirectoryError: ...`, exit 1, not naming the option."""
    from zoomsr.metrics import factory

    name, ckpt = tiny_clip
    pred, target = s2naip
    cache = cache.format(tmp=tmp_path)
    def no_model(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the metrics were built before --clip-cache was checked")

    monkeypatch.setattr(factory, "create_metrics", no_model)
    code, stdout, stderr = cli("evaluate", "--pred", pred, "--target", target, "--metrics",
                               "psnr,clipscore", "--clip-model", name, "--clip-pretrained",
                               ckpt, "--clip-cache", cache, "--device", "cpu", "--no-progress")
    assert code == 2 and stdout == ""
    assert stderr.strip().splitlines() == [stderr.strip()], stderr
    assert stderr.startswith(f"error: --clip-cache {cache}: ")
    assert "not a folder" in stderr


def test_clip_cache_is_not_checked_without_clipscore(cli, s2naip):
    pred, target = s2naip
    code, _, stderr = cli("evaluate", "--pred", pred, "--target", target, "--metrics", "psnr",
                          "--clip-cache", pred / "100_200.png" / "sub", "--no-progress")
    assert code == 0, stderr


@pytest.mark.parametrize(("pred", "target"), [("ds/naip/uuid0", "ds"), ("ds", "ds/naip")])
def test_predictions_that_are_the_targets_are_one_line_exit_2(cli, s2naip, tmp_path, pred,
                                                             target):
    """--pred and --target mixed up: 4 pairs, PSNR inf, SSIM 1, exit 0."""
    code, stdout, stderr = cli("evaluate", "--pred", tmp_path / pred, "--target",
                               tmp_path / target, "--no-progress")
    assert code == 2 and stdout == ""
    assert stderr.strip().splitlines() == [stderr.strip()], stderr
    assert stderr.startswith(f"error: --pred {tmp_path / pred} and --target "
                             f"{tmp_path / target}: ")
    assert "--pred and --target are probably swapped or point at the same images" in stderr


def test_split_with_one_capture_of_a_tile_captured_twice(cli, tmp_path):
    """--split train failed ("1 id claimed by several files, e.g. '30000_50000'") and
    --split val scored 1 pair of 2: the captures were told apart only within the split."""
    rng = np.random.default_rng(6)
    ds, pred = tmp_path / "ds", tmp_path / "pred"
    for rel, flat in (("uuidA/30000_50000", False), ("uuidB/30000_50000", False),
                      ("uuidA/30000_50001", True), ("uuidC/30000_50002", True),
                      ("uuidC/30000_50003", True)):
        t = rng.integers(10, 240, size=(40, 40, 3), dtype=np.uint8)
        _save(ds / "naip" / rel / "rgb.png", t)
        _save(pred / (f"{rel.split('/')[1]}.png" if flat else f"{rel}.png"), t + 5)
    (ds / "zoomsr_splits.json").write_text(json.dumps(
        {"train": ["uuidB/30000_50000"], "val": ["uuidA/30000_50000", "30000_50001"],
         "test": [], "buffer": []}))
    code, stdout, stderr = cli("evaluate", "--pred", pred, "--target", ds, "--metrics", "psnr",
                               "--strict", "--no-progress")
    assert code == 0 and "5 image pairs" in stdout, stderr
    for split, keys, outside in (("train", ["uuidB/30000_50000"], 4),
                                 ("val", ["30000_50001", "uuidA/30000_50000"], 3)):
        out = tmp_path / split
        code, stdout, stderr = cli("evaluate", "--pred", pred, "--target", ds, "--metrics",
                                   "psnr", "--split", split, "--strict", "--out", out,
                                   "--no-progress")
        assert code == 0, stderr
        assert stderr.splitlines() == [f"note: {outside} prediction(s) of tiles outside the "
                                       f"{split!r} split not scored"]
        rows = list(csv.DictReader((out / "per_image.csv").open()))
        assert [r["key"] for r in rows] == keys
        assert all(Path(r["pred"]).stem == Path(r["target"]).parts[-2] for r in rows)
        assert all(float(r["psnr"]) == pytest.approx(20 * math.log10(255 / 5)) for r in rows)
        doc = json.loads((out / "summary.json").read_text())
        assert doc["n_outside_split"] == outside and doc["ambiguous"] == {}


def test_a_mosaic_is_scored_against_the_naip_folder(cli, tmp_path):
    """--help promises the dataset root "or its naip/ folder": a mosaic against DATASET/naip
    was refused ("ds/naip is not one") while a folder of predictions worked."""
    mosaic, target = _mosaic_of_targets(tmp_path, ["100_200", "101_200"])
    (target / "zoomsr_splits.json").write_text(json.dumps(
        {"train": ["100_200"], "val": ["uuid1/101_200"], "test": [], "buffer": []}))
    bare = tmp_path / "bare"  # a folder holding only naip/{uuid}/{tile}/rgb.png
    for png in (target / "naip").rglob("rgb.png"):
        copy = bare / png.relative_to(target)
        copy.parent.mkdir(parents=True)
        copy.write_bytes(png.read_bytes())
    for where, split, keys in ((target / "naip", None, ["100_200", "101_200"]),
                               (target / "naip", "val", ["101_200"]),
                               (bare, None, ["100_200", "101_200"])):
        out = tmp_path / f"out_{where.name}_{split}"
        code, _, err = cli("evaluate", "--pred", mosaic, "--target", where, "--metrics", "psnr",
                           "--out", out, "--no-progress", *(["--split", split] if split else []))
        assert code == 0, err
        rows = list(csv.DictReader((out / "per_image.csv").open()))
        assert [r["key"] for r in rows] == keys and all(r["psnr"] == "inf" for r in rows)


def _scene(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth uint8 target ``[3, H, W]`` and a noisy prediction of it."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(30, 220, (3, size // 8, size // 8))
    t = np.kron(low, np.ones((8, 8))) + rng.normal(0, 6, (3, size, size))
    p = t + rng.normal(0, 8, (3, size, size))
    return np.clip(t, 0, 255).astype(np.uint8), np.clip(p, 0, 255).astype(np.uint8)


def _masked_tif(path: Path, arr: np.ndarray, valid: np.ndarray | None = None) -> Path:
    """A georeferenced GeoTIFF with an internal mask (False: nodata), as `zoomsr infer`
    writes; garbage (255) under the mask."""
    import rasterio
    from affine import Affine

    if valid is not None:
        arr = arr.copy()
        arr[:, ~valid] = 255
    _tif(path, arr, crs="EPSG:3857", transform=Affine(2.39, 0, 0, 0, -2.39, 0))
    if valid is not None:
        with rasterio.open(path, "r+") as ds:
            ds.write_mask(np.where(valid, 255, 0).astype(np.uint8))
    return path


def test_a_prediction_with_a_nodata_mask_is_scored_on_its_valid_pixels(cli, shared_dir,
                                                                        tiny_clip, tmp_path):
    """`zoomsr infer` outputs are masked where no valid input existed: those pixels were scored
    as black, and black-vs-content differences ruled PSNR and SSIM."""
    from zoomsr.metrics import MetricOptions, cpsnr, create_metrics, psnr, ssim

    lp = shared_dir / "weights" / "lpips"
    name, ckpt = tiny_clip
    size = 64
    masks = {"a": np.ones((size, size), bool), "b": np.ones((size, size), bool), "d": None}
    masks["a"][:, :16] = False  # a scene edge: 75 % valid
    masks["b"][:, :38] = False  # 40.6 % valid: too little for LPIPS and CLIPScore
    scenes = {}
    for k, (key, valid) in enumerate(masks.items()):
        t, p = _scene(size, k)
        scenes[key] = (t, p)
        _masked_tif(tmp_path / "t" / f"{key}.tif", t)
        _masked_tif(tmp_path / "p" / f"{key}.tif", p, valid)
    args = ["evaluate", "--pred", tmp_path / "p", "--target", tmp_path / "t", "--metrics",
            "psnr,ssim,cpsnr,lpips,clipscore", "--lpips-weights", lp, "--clip-model", name,
            "--clip-pretrained", ckpt, "--device", "cpu", "--no-progress"]
    code, stdout, err = cli(*args, "--out", tmp_path / "out")
    if code == 2 and "linear-layer" in err and os.environ.get("CI") != "true":
        pytest.skip("the lpips package (linear-layer weights) is not installed")
    assert code == 0, err
    assert "scored as black" not in err
    assert "note: 2 pair(s) with nodata pixels (down to 40.6 % valid) scored on the pixels " \
           "valid in both files (valid_fraction in per_image.csv)" in err
    assert "note: lpips not scored for 1 pair(s): less than 50 % valid" in err
    assert "note: clipscore not scored for 1 pair(s)" in err
    rows = {r["key"]: r for r in csv.DictReader((tmp_path / "out" / "per_image.csv").open())}
    assert [float(rows[k]["valid_fraction"]) for k in "abd"] == [0.75, 26 / 64, 1.0]
    assert rows["b"]["lpips"] == rows["b"]["clipscore"] == ""
    built = create_metrics("lpips,clipscore", MetricOptions(
        lpips_weights=lp, clip_model=name, clip_pretrained=str(ckpt), device="cpu"))
    for key, valid in masks.items():
        t, p = scenes[key]
        pt, tt = torch.from_numpy(p)[None], torch.from_numpy(t)[None]
        v = None if valid is None else torch.from_numpy(valid)[None]
        row = rows[key]
        c = slice(4, -4)
        inside = np.ones((size, size), bool) if valid is None else valid
        d = (p[:, c, c].astype(np.float64) - t[:, c, c])[:, inside[c, c]] / 255
        assert float(row["psnr"]) == pytest.approx(10 * math.log10(1 / np.mean(d**2)), abs=1e-9)
        assert float(row["ssim"]) == float(ssim(pt, tt, valid=v)[0])
        assert float(row["cpsnr"]) == float(cpsnr(pt, tt, valid=v)[0])
        if key != "b":
            for metric in ("lpips", "clipscore"):
                want = float(built[metric](pt, tt, valid=v)[0])
                assert float(row[metric]) == pytest.approx(want, rel=1e-5, abs=1e-6), metric
    # unmasked: as without masks
    pt, tt = (torch.from_numpy(x)[None] for x in scenes["d"][::-1])
    assert float(rows["d"]["psnr"]) == float(psnr(pt, tt)[0])
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert doc["nodata"] == "exclude" and doc["n_with_nodata"] == 2
    assert doc["metrics"]["lpips"]["n"] == 2 and doc["metrics"]["lpips"]["n_unscored"] == 1
    assert doc["options"]["nodata"] == "exclude"
    # the old behaviour on request: black there, with a warning per file
    code, _, err = cli(*args, "--nodata", "black", "--out", tmp_path / "black")
    assert code == 0, err
    assert f"{tmp_path / 'p' / 'a.tif'}: 25 % of its pixels are nodata (masked), scored as " \
           "black" in err
    old = {r["key"]: r for r in csv.DictReader((tmp_path / "black" / "per_image.csv").open())}
    assert float(old["a"]["psnr"]) < float(rows["a"]["psnr"]) - 5
    assert old["d"] == rows["d"]
    # a lower bar for the perceptual metrics
    code, _, err = cli(*args, "--perceptual-min-valid", "0.4", "--out", tmp_path / "low")
    assert code == 0, err
    low = {r["key"]: r for r in csv.DictReader((tmp_path / "low" / "per_image.csv").open())}
    assert float(low["b"]["lpips"]) > 0 and "not scored" not in err


def test_a_pair_without_a_valid_pixel_in_common_is_listed_not_scored(cli, tmp_path):
    t, p = _scene(40, 7)
    left = np.zeros((40, 40), bool)
    left[:, :20] = True
    _masked_tif(tmp_path / "t" / "a.tif", t)
    _masked_tif(tmp_path / "p" / "a.tif", p)
    _masked_tif(tmp_path / "t" / "b.tif", t, ~left)
    _masked_tif(tmp_path / "p" / "b.tif", p, left)
    _masked_tif(tmp_path / "t" / "c.tif", t)
    _masked_tif(tmp_path / "p" / "c.tif", p, np.zeros((40, 40), bool))  # all nodata
    args = ["evaluate", "--pred", tmp_path / "p", "--target", tmp_path / "t", "--metrics", "psnr",
            "--no-progress"]
    code, stdout, err = cli(*args, "--out", tmp_path / "out")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert lines[0] == "warning: not scored: 2 pair(s) without a pixel valid in both files"
    assert lines[1] == (f"  {tmp_path / 'p' / 'b.tif'}: no pixel valid in both it and its target "
                        f"{tmp_path / 't' / 'b.tif'} (nodata: 50 % of it, 50 % of the target); "
                        "nothing to score")
    assert lines[2].startswith(f"  {tmp_path / 'p' / 'c.tif'}: no pixel valid") and \
           "(nodata: 100 % of it, 0 % of the target)" in lines[2]
    assert "1 image pairs" in stdout
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert doc["n_pairs"] == 1 and doc["n_no_valid_overlap"] == 2
    code, _, err = cli(*args, "--strict")
    assert code == 2 and err.strip().splitlines() == [
        f"error: 2 pair(s) without a pixel valid in both files, e.g. {lines[1].strip()}"]


@pytest.mark.parametrize(("args", "message"), [
    (("--nodata", "drop"), "--nodata must be one of exclude, black, got 'drop'"),
    (("--metrics", "lpips", "--perceptual-min-valid", "1.5"),
     "--perceptual-min-valid must be a fraction in [0, 1], got 1.5"),
    # without LPIPS or CLIPScore too (it passed, and was recorded)
    (("--metrics", "psnr", "--perceptual-min-valid", "nan"),
     "--perceptual-min-valid must be a fraction in [0, 1], got nan"),
])
def test_nodata_options_are_checked_up_front(cli, s2naip, args, message):
    pred, target = s2naip
    code, stdout, err = cli("evaluate", "--pred", pred, "--target", target, "--no-progress",
                            *args)
    assert code == 2 and stdout == "" and err.strip().splitlines() == [f"error: {message}"]


def test_a_share_of_valid_pixels_below_one_is_never_shown_as_100():
    """One NaN pixel of a 256 x 256 pair was noted as "down to 100 % valid"."""
    from zoomsr.cli.scoring_options import valid_percent

    assert valid_percent(1 - 1 / 65536) == "99.998"
    assert valid_percent(0.9) == "90" and valid_percent(0.40625) == "40.6"
    assert float(valid_percent(1 - 1e-9)) < 100
