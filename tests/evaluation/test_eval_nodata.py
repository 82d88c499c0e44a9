"""Evaluation of files with nodata (GeoTIFF masks and nodata values, PNG alpha, float NaN): by
default scored on the pixels valid in both files, with a valid_fraction per image."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from PIL import Image

from zoomsr.errors import DataError, InputError, ZoomsrWarning
from zoomsr.evaluation import evaluate, score_pairs, write_results
from zoomsr.evaluation.images import NoValidPixels
from zoomsr.evaluation.pairing import ImagePair
from zoomsr.evaluation.run import summarize
from zoomsr.metrics import PSNR, cpsnr, ssim

_GEO = {"crs": "EPSG:3857", "transform": Affine(2.39, 0, 0, 0, -2.39, 0)}


def _tif(path: Path, arr: np.ndarray, mask: np.ndarray | None = None,
         nodata: float | None = None) -> Path:
    """``arr`` ``[3, H, W]`` as a georeferenced GeoTIFF; with an internal ``mask`` (``[H, W]``
    True where valid, as `zoomsr infer` writes) or a nodata value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {} if nodata is None else {"nodata": nodata}
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                       count=3, dtype=arr.dtype, **_GEO, **extra) as dst:
        dst.write(arr)
        if mask is not None:
            dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    return path


def _scene(size: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth uint8 target ``[3, H, W]`` and a noisy prediction of it."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(30, 220, (3, size // 8, size // 8))
    t = np.kron(low, np.ones((8, 8))) + rng.normal(0, 6, (3, size, size))
    p = t + rng.normal(0, 8, (3, size, size))
    return (np.clip(t, 0, 255).astype(np.uint8), np.clip(p, 0, 255).astype(np.uint8))


def _psnr_by_hand(p: np.ndarray, t: np.ndarray, valid: np.ndarray, border: int = 4) -> float:
    c = np.s_[border:-border, border:-border]
    d = (p[:, c[0], c[1]].astype(np.float64) - t[:, c[0], c[1]]) / 255
    return 10 * math.log10(1 / np.mean(d[:, valid[c]] ** 2))


def test_a_masked_prediction_is_scored_on_its_valid_pixels(tmp_path):
    """Its masked pixels were scored as black: black-vs-content differences ruled PSNR."""
    t, p = _scene()
    valid = np.ones((40, 40), bool)
    valid[:, :10] = False  # a scene edge: no input there
    garbage = p.copy()
    garbage[:, ~valid] = 255  # what a writer may leave under the mask
    _tif(tmp_path / "t" / "a.tif", t)
    _tif(tmp_path / "p" / "a.tif", garbage, mask=valid)
    result = evaluate(tmp_path / "p", tmp_path / "t", "psnr,ssim,cpsnr")
    row = result.rows[0]
    assert row["psnr"] == pytest.approx(_psnr_by_hand(p, t, valid), abs=1e-9)
    pt, tt = torch.from_numpy(p)[None], torch.from_numpy(t)[None]
    v = torch.from_numpy(valid)[None]
    assert row["ssim"] == float(ssim(pt, tt, valid=v)[0])
    assert row["cpsnr"] == float(cpsnr(pt, tt, valid=v)[0])
    assert row["valid_fraction"] == 0.75
    doc = result.to_json()
    assert doc["nodata"] == "exclude" and doc["n_with_nodata"] == 1
    assert doc["min_valid_fraction"] == 0.75 and doc["n_no_valid_overlap"] == 0
    paths = write_results(result, tmp_path / "out")
    rows = list(csv.DictReader(paths["csv"].read_text().splitlines()))
    assert list(rows[0]) == ["key", "pred", "target", "psnr", "ssim", "cpsnr", "valid_fraction"]
    assert float(rows[0]["valid_fraction"]) == 0.75
    # the old way on request: black there, with the warning
    black = p.copy()
    black[:, ~valid] = 0
    with pytest.warns(ZoomsrWarning, match="25 % of its pixels are nodata"):
        old = evaluate(tmp_path / "p", tmp_path / "t", "psnr", nodata="black").rows[0]
    assert old["psnr"] == pytest.approx(_psnr_by_hand(black, t, np.ones_like(valid)), abs=1e-9)
    assert old["psnr"] < row["psnr"] - 5 and old["valid_fraction"] == 0.75
    with pytest.raises(InputError, match="nodata must be one of exclude, black, got 'drop'"):
        evaluate(tmp_path / "p", tmp_path / "t", "psnr", nodata="drop")


def test_nodata_of_the_target_and_of_the_prediction_combine(tmp_path):
    t, p = _scene(seed=1)
    vt = np.ones((40, 40), bool)
    vt[:6] = False
    t[:, :6] = 0  # the target's nodata value
    vp = np.ones((40, 40), bool)
    vp[:, 30:] = False
    _tif(tmp_path / "t" / "a.tif", t, nodata=0)
    _tif(tmp_path / "p" / "a.tif", p, mask=vp)
    (row,) = evaluate(tmp_path / "p", tmp_path / "t", "psnr").rows
    assert row["psnr"] == pytest.approx(_psnr_by_hand(p, t, vt & vp), abs=1e-9)
    assert row["valid_fraction"] == (vt & vp).mean()


def test_png_alpha_and_float_nan_are_nodata(tmp_path):
    t, p = _scene(seed=2)
    valid = np.ones((40, 40), bool)
    valid[20:, 20:] = False
    rgba = np.dstack([np.moveaxis(p, 0, -1), np.where(valid, 255, 0).astype(np.uint8)])
    (tmp_path / "p").mkdir()
    Image.fromarray(rgba).save(tmp_path / "p" / "a.png")
    Image.fromarray(np.moveaxis(t, 0, -1)).save(tmp_path / "t.png")
    (tmp_path / "t").mkdir()
    (tmp_path / "t.png").rename(tmp_path / "t" / "a.png")
    # a float prediction with NaN where it has no data, no nodata value declared
    f = (p / 255).astype(np.float32)
    f[:, ~valid] = np.nan
    _tif(tmp_path / "f" / "a.tif", f)
    _tif(tmp_path / "ft" / "a.tif", t)
    want = _psnr_by_hand(p, t, valid)
    assert evaluate(tmp_path / "p", tmp_path / "t", "psnr").rows[0]["psnr"] == pytest.approx(
        want, abs=1e-9)
    row = evaluate(tmp_path / "f", tmp_path / "ft", "psnr").rows[0]
    assert row["psnr"] == pytest.approx(want, abs=1e-5) and row["valid_fraction"] == 0.75
    with pytest.raises(DataError, match="NaN/inf value"):  # as before: NaN is no colour
        evaluate(tmp_path / "f", tmp_path / "ft", "psnr", nodata="black")


def test_pairs_without_a_valid_pixel_in_common_are_left_out_and_counted(tmp_path):
    t, p = _scene(seed=3)
    left = np.zeros((40, 40), bool)
    left[:, :20] = True
    _tif(tmp_path / "t" / "a.tif", t)
    _tif(tmp_path / "p" / "a.tif", p)
    _tif(tmp_path / "t" / "b.tif", t)
    _tif(tmp_path / "p" / "b.tif", p, mask=np.zeros((40, 40), bool))  # all nodata
    _tif(tmp_path / "t" / "c.tif", t, mask=~left)
    _tif(tmp_path / "p" / "c.tif", p, mask=left)  # valid where its target is not
    result = evaluate(tmp_path / "p", tmp_path / "t", {"psnr": PSNR()})
    assert [r["key"] for r in result.rows] == ["a"] and result.rows[0]["valid_fraction"] == 1.0
    assert [p.key for p, _ in result.no_overlap] == ["b", "c"]
    why = result.no_overlap[1][1]
    assert why == (f"{tmp_path / 'p' / 'c.tif'}: no pixel valid in both it and its target "
                   f"{tmp_path / 't' / 'c.tif'} (nodata: 50 % of it, 50 % of the target); "
                   "nothing to score")
    doc = json.loads(write_results(result, tmp_path / "out")["summary"].read_text())
    assert doc["n_no_valid_overlap"] == 2 and doc["n_pairs"] == 1
    assert doc["no_valid_overlap"] == [str(tmp_path / "p" / n) for n in ("b.tif", "c.tif")]
    # without a list to put them in: one line naming the file
    from zoomsr.evaluation import NoValidOverlap

    pair = ImagePair("c", tmp_path / "p" / "c.tif", tmp_path / "t" / "c.tif")
    with pytest.raises(NoValidOverlap) as info:
        score_pairs([pair], {"psnr": PSNR()})
    assert str(info.value) == why
    # the old way: an all-nodata file is refused, as before
    with pytest.raises(NoValidPixels, match="every pixel is nodata"):
        evaluate(tmp_path / "p", tmp_path / "t", "psnr", nodata="black")


def test_no_pair_left_to_score_is_one_line(tmp_path):
    t, p = _scene(seed=4)
    left = np.zeros((40, 40), bool)
    left[:, :20] = True
    _tif(tmp_path / "t" / "c.tif", t, mask=~left)
    _tif(tmp_path / "p" / "c.tif", p, mask=left)
    with pytest.raises(DataError, match=r"^no pair has a pixel valid in both files; e\.g\. .*"
                                        r"c\.tif: no pixel valid in both"):
        evaluate(tmp_path / "p", tmp_path / "t", "psnr")


def test_a_metric_without_a_valid_parameter_sees_both_images_black_outside(tmp_path):
    t, p = _scene(seed=5)
    valid = np.ones((40, 40), bool)
    valid[:8] = False
    _tif(tmp_path / "t" / "a.tif", t)
    _tif(tmp_path / "p" / "a.tif", p, mask=valid)
    _tif(tmp_path / "t" / "b.tif", t)
    _tif(tmp_path / "p" / "b.tif", p)
    seen = []

    class Own:  # a user's metric, from before masks
        higher_is_better = True

        def __call__(self, pred, target):  # noqa: ANN001, ANN204
            seen.append((pred.clone(), target.clone()))
            return PSNR()(pred, target)

    rows = evaluate(tmp_path / "p", tmp_path / "t", {"own": Own()}).rows
    pred, target = seen[0]
    assert (pred[0, :, :8] == 0).all() and (target[0, :, :8] == 0).all()
    assert torch.equal(target[0, :, 8:], torch.from_numpy(t)[:, 8:])
    assert torch.equal(pred[1], torch.from_numpy(p)) and torch.equal(target[1],
                                                                     torch.from_numpy(t))
    assert rows[1]["own"] == pytest.approx(_psnr_by_hand(p, t, np.ones_like(valid)), abs=1e-9)


def test_unscored_images_are_counted_apart_and_empty_in_the_csv(tmp_path):
    s = summarize([20.0, math.nan, 22.0, math.inf])
    assert s["n"] == 2 and s["n_unscored"] == 1 and s["n_nonfinite"] == 1
    assert s["mean"] == 21.0
    t, p = _scene(seed=6)
    valid = np.zeros((40, 40), bool)
    valid[:4] = True  # valid only in the cropped border: PSNR has nothing left
    _tif(tmp_path / "t" / "a.tif", t)
    _tif(tmp_path / "p" / "a.tif", p, mask=valid)
    _tif(tmp_path / "t" / "b.tif", t)
    _tif(tmp_path / "p" / "b.tif", p)
    result = evaluate(tmp_path / "p", tmp_path / "t", "psnr")
    assert math.isnan(result.rows[0]["psnr"])
    assert result.summary["psnr"]["n_unscored"] == 1 and result.summary["psnr"]["n"] == 1
    rows = list(csv.DictReader(write_results(result, tmp_path / "o")["csv"].read_text()
                               .splitlines()))
    assert rows[0]["psnr"] == "" and float(rows[1]["psnr"]) > 20
