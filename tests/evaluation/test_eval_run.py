"""The evaluation loop: reading images, batching, summaries, bootstrap intervals, outputs."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.errors
import torch
from affine import Affine
from PIL import Image

from zoomsr.errors import DataError, InputError
from zoomsr.evaluation import evaluate, read_rgb, score_pairs, write_results
from zoomsr.evaluation.pairing import ImagePair
from zoomsr.evaluation.run import summarize
from zoomsr.metrics import PSNR, SSIM
from zoomsr.metrics.stats import bootstrap_ci


def _save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _tif(
    path: Path, arr: np.ndarray, crs: str | None = "EPSG:3857",
    transform: Affine | None = Affine(2.39, 0, 0, 0, -2.39, 0),
) -> Path:
    """``arr`` is ``[bands, H, W]``; a real georeferenced GeoTIFF (EPSG:3857 by default), or a
    plain TIFF with ``crs=None, transform=None``."""
    geo = {"crs": crs, "transform": transform} if transform is not None else {}
    with warnings.catch_warnings():  # writing a plain TIFF warns; not what is tested
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
            count=arr.shape[0], dtype=arr.dtype, **geo,
        ) as dst:
            dst.write(arr)
    return path


@pytest.fixture
def folders(tmp_path):
    """targets a..e (32x32 uint8); pred = target + k (k = 1..5 grey levels): PSNR known."""
    rng = np.random.default_rng(0)
    pred, target = tmp_path / "pred", tmp_path / "target"
    for k, name in enumerate("abcde", start=1):
        t = rng.integers(20, 200, size=(32, 32, 3), dtype=np.uint8)
        _save(target / f"{name}.png", t)
        _save(pred / f"{name}.png", t + k)
    return pred, target


def test_known_psnr_per_image_and_summary(folders):
    pred, target = folders
    result = evaluate(pred, target, {"psnr": PSNR(), "ssim": SSIM()}, batch_size=2)
    psnrs = [r["psnr"] for r in result.rows]
    expected = [20 * math.log10(255 / k) for k in range(1, 6)]
    assert psnrs == pytest.approx(expected, abs=1e-9)
    assert [r["key"] for r in result.rows] == list("abcde")
    s = result.summary["psnr"]
    assert s["mean"] == pytest.approx(np.mean(expected))
    assert s["std"] == pytest.approx(np.std(expected, ddof=1))
    assert s["ci95_low"] < s["mean"] < s["ci95_high"]
    assert s["n"] == 5 and s["n_nonfinite"] == 0
    assert result.metrics == {"psnr": True, "ssim": True}


def test_batching_mixed_sizes_gives_the_same_scores(tmp_path, folders):
    pred, target = folders
    rng = np.random.default_rng(1)
    t = rng.integers(0, 255, size=(40, 24, 3), dtype=np.uint8)
    _save(target / "z.png", t)
    _save(pred / "z.png", 255 - t)
    pairs = evaluate(pred, target, {"psnr": PSNR()}).pairing.pairs
    calls = []
    big = score_pairs(pairs, {"psnr": PSNR(), "ssim": SSIM()}, batch_size=16,
                      progress=lambda d, n: calls.append((d, n)))
    one = score_pairs(pairs, {"psnr": PSNR(), "ssim": SSIM()}, batch_size=1)
    assert [r["key"] for r in big] == list("abcdez")
    for a, b in zip(big, one, strict=True):
        assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-9)
        assert a["ssim"] == pytest.approx(b["ssim"], abs=1e-9)
    assert calls == [(6, 6)]


def test_identical_images_give_inf_counted_apart(tmp_path):
    img = np.full((16, 16, 3), 100, dtype=np.uint8)
    _save(tmp_path / "p" / "a.png", img)
    _save(tmp_path / "t" / "a.png", img)
    _save(tmp_path / "p" / "b.png", img + 10)
    _save(tmp_path / "t" / "b.png", img)
    result = evaluate(tmp_path / "p", tmp_path / "t", {"psnr": PSNR()})
    s = result.summary["psnr"]
    assert s["n"] == 1 and s["n_nonfinite"] == 1
    assert s["mean"] == pytest.approx(20 * math.log10(25.5))
    out = write_results(result, tmp_path / "out")
    doc = json.loads(out["summary"].read_text())  # strict JSON: no Infinity
    assert doc["metrics"]["psnr"]["n_nonfinite"] == 1
    rows = list(csv.DictReader(out["csv"].read_text().splitlines()))
    assert rows[0]["psnr"] == "inf"


def test_outputs_are_complete_and_not_overwritten(folders, tmp_path):
    pred, target = folders
    (target / "f.png").write_bytes((target / "a.png").read_bytes())  # no prediction
    result = evaluate(pred, target, {"psnr": PSNR()}, options={"border": 4})
    paths = write_results(result, tmp_path / "out")
    rows = list(csv.DictReader(paths["csv"].read_text().splitlines()))
    assert [r["key"] for r in rows] == list("abcde")
    assert float(rows[0]["psnr"]) == pytest.approx(20 * math.log10(255), abs=1e-9)
    doc = json.loads(paths["summary"].read_text())
    assert doc["n_pairs"] == 5 and doc["missing_pred"] == [str(target / "f.png")]
    assert doc["metrics"]["psnr"]["higher_is_better"] is True
    assert doc["options"] == {"border": 4}
    assert not list((tmp_path / "out").glob(".*tmp"))  # no temporary files left
    with pytest.raises(InputError, match="--overwrite"):
        write_results(result, tmp_path / "out")
    write_results(result, tmp_path / "out", overwrite=True)


def test_size_mismatch_and_corrupt_files_name_the_file(tmp_path):
    _save(tmp_path / "p" / "a.png", np.zeros((16, 16, 3), np.uint8))
    _save(tmp_path / "t" / "a.png", np.zeros((20, 16, 3), np.uint8))
    with pytest.raises(DataError, match=r"a\.png: size \(16, 16\) differs"):
        evaluate(tmp_path / "p", tmp_path / "t", {"psnr": PSNR()})
    (tmp_path / "p" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DataError, match=str(tmp_path / "p" / "a.png")):
        evaluate(tmp_path / "p", tmp_path / "t", {"psnr": PSNR()})


def test_read_rgb_formats(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    expected = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(read_rgb(_save(tmp_path / "a.png", rgb)), expected)
    rgba = np.dstack([rgb, np.full((12, 10), 255, np.uint8)])
    torch.testing.assert_close(read_rgb(_save(tmp_path / "b.png", rgba)), expected)
    smooth = np.broadcast_to(np.linspace(40, 200, 10, dtype=np.uint8)[None, :, None], rgb.shape)
    jpg = read_rgb(_save(tmp_path / "c.jpg", np.ascontiguousarray(smooth)))
    assert jpg.shape == (3, 12, 10) and jpg.dtype == torch.float32
    assert (jpg - torch.from_numpy(smooth / 255).permute(2, 0, 1)).abs().max() < 0.05
    raw = read_rgb(tmp_path / "a.png", as_float=False)
    assert raw.dtype == torch.uint8 and torch.equal(raw, torch.from_numpy(rgb).permute(2, 0, 1))
    rgbn = np.concatenate([np.moveaxis(rgb, -1, 0), np.zeros((1, 12, 10), np.uint8)])
    torch.testing.assert_close(read_rgb(_tif(tmp_path / "d.tif", rgbn)), expected)
    floats = (np.moveaxis(rgb, -1, 0) / 255).astype(np.float32)
    torch.testing.assert_close(read_rgb(_tif(tmp_path / "e.tif", floats)), expected)
    with pytest.raises(DataError, match="grey"):
        read_rgb(_save(tmp_path / "g.png", rgb[..., 0]))
    with pytest.raises(DataError, match="uint16"):
        read_rgb(_tif(tmp_path / "h.tif", np.zeros((3, 4, 4), np.uint16)))
    with pytest.raises(DataError, match="1 band"):
        read_rgb(_tif(tmp_path / "i.tif", np.zeros((1, 4, 4), np.uint8)))
    (tmp_path / "j.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(DataError, match="j.tif"):
        read_rgb(tmp_path / "j.tif")


def test_float_tiff_out_of_range_is_refused_by_name(tmp_path):
    _tif(_mk(tmp_path / "p") / "a.tif", np.full((3, 16, 16), 1200.0, np.float32))
    _tif(_mk(tmp_path / "t") / "a.tif", np.full((3, 16, 16), 0.5, np.float32))
    with pytest.raises(DataError, match=r"a\.tif: values up to 1200"):
        evaluate(tmp_path / "p", tmp_path / "t", {"psnr": PSNR()})


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_bootstrap_is_seeded_and_summaries_handle_edge_cases():
    v = np.random.default_rng(3).normal(10, 2, size=50)
    a, b = bootstrap_ci(v, seed=1), bootstrap_ci(v, seed=1)
    assert a == b and a[0] < v.mean() < a[1]
    assert bootstrap_ci(v, seed=2) != a
    assert math.isnan(bootstrap_ci([])[0])
    # another statistic of the resamples: the median's interval, about the median
    skewed = np.concatenate([np.zeros(40), np.full(10, 100.0)])
    low, high = bootstrap_ci(skewed, seed=1, statistic=lambda s: np.median(s, axis=1))
    assert low == high == 0.0 and bootstrap_ci(skewed, seed=1)[0] > 5
    one = summarize([3.0, math.inf])  # one finite value: no spread, no interval
    assert one["mean"] == 3.0 and one["n"] == 1 and one["n_nonfinite"] == 1
    assert all(math.isnan(one[k]) for k in ("std", "ci95_low", "ci95_high"))
    two = summarize([3.0, 5.0])
    assert two["std"] == pytest.approx(math.sqrt(2)) and two["ci95_low"] < two["ci95_high"]
    none = summarize([math.inf])
    assert none["n"] == 0 and math.isnan(none["mean"])


def test_a_summary_interval_stays_within_the_metric_values():
    from zoomsr.metrics import CPSNR, PSNR, SSIM
    from zoomsr.metrics.base import metric_bounds

    near_one = [0.9999, 0.9998, 1.0]  # CLIPScores of 3 pairs: the t interval reached 1.0001
    assert summarize(near_one)["ci95_high"] > 1
    clipped = summarize(near_one, bounds=(-1.0, 1.0))
    assert clipped["ci95_high"] == 1.0 and clipped["ci95_low"] < clipped["mean"]
    assert summarize([0.01, 0.0, 0.002], bounds=(0.0, math.inf))["ci95_low"] == 0.0
    assert metric_bounds(SSIM()) == (-1.0, 1.0)
    assert metric_bounds(PSNR()) == metric_bounds(CPSNR()) == (0.0, math.inf)
    assert metric_bounds(object()) is None


def test_a_metric_of_ones_own_needs_no_bounds():
    """`bounds` is optional: put in the Metric protocol, it refused a metric without it."""
    from zoomsr.evaluation.run import as_metrics

    class MAE:
        name = "mae"
        higher_is_better = False

        def __call__(self, pred, target):
            return (pred - target).abs().mean(dim=(1, 2, 3)).double()

    mae = MAE()
    assert as_metrics(mae) == {"mae": mae}
    x = torch.rand(2, 3, 16, 16)
    rows = [{"mae": float(v)} for v in mae(x, x.flip(0))]
    assert summarize([r["mae"] for r in rows], bounds=None)["n"] == 2


def test_no_metrics_and_bad_batch_size():
    pair = [ImagePair("a", Path("p.png"), Path("t.png"))]
    with pytest.raises(InputError, match="no metrics"):
        score_pairs(pair, {})
    with pytest.raises(InputError, match="batch_size"):
        score_pairs(pair, {"psnr": PSNR()}, batch_size=0)


def _geo_pair(tmp_path: Path, transform: Affine, crs: str = "EPSG:3857", size: int = 16):
    """Target ``t/a.tif`` (16x16, 2.39 m pixels at the origin) and prediction ``p/a.tif``."""
    rng = np.random.default_rng(5)
    t = rng.integers(0, 256, size=(3, 16, 16), dtype=np.uint8)
    _tif(_mk(tmp_path / "t") / "a.tif", t)
    p = np.repeat(np.repeat(t, size // 16, axis=1), size // 16, axis=2)
    _tif(_mk(tmp_path / "p") / "a.tif", p, crs=crs, transform=transform)
    return tmp_path / "p", tmp_path / "t"


def test_georeferenced_pair_in_another_crs_is_refused(tmp_path):
    pred, target = _geo_pair(tmp_path, Affine(2.39, 0, 0, 0, -2.39, 0), crs="EPSG:32615")
    with pytest.raises(DataError) as err:
        evaluate(pred, target, {"psnr": PSNR()})
    msg = str(err.value)
    assert "\n" not in msg and str(pred / "a.tif") in msg and str(target / "a.tif") in msg
    assert "CRS EPSG:32615 differs" in msg and "(EPSG:3857)" in msg and "reproject" in msg


@pytest.mark.parametrize(
    "transform",
    [Affine(2.39, 0, 2.39, 0, -2.39, 0),  # origin one pixel east
     Affine(2.39, 0, 0, 0, -2.39, -1.5),  # 1.5 m south: more than half a pixel
     Affine(2.5, 0, 0, 0, -2.5, 0)],  # same origin, larger extent
)
def test_georeferenced_pair_elsewhere_is_refused(tmp_path, transform):
    pred, target = _geo_pair(tmp_path, transform)
    with pytest.raises(DataError, match=r"a\.tif: bounds \(.*\) differ from its target .*a\.tif "
                       r"\(0, -38\.24, 38\.24, 0\) by up to .*crop or resample"):
        evaluate(pred, target, {"psnr": PSNR()})


def test_georeferenced_pair_within_half_a_pixel_is_scored(tmp_path):
    pred, target = _geo_pair(tmp_path, Affine(2.39, 0, 1.0, 0, -2.39, 0.5))
    result = evaluate(pred, target, {"psnr": PSNR()})
    assert math.isinf(result.rows[0]["psnr"])  # same pixels


def test_finer_prediction_over_the_same_bounds_meets_the_size_check(tmp_path):
    """Same place at 4x the pixels: not a place error; refused by size like any other pair
    (the evaluation never resamples)."""
    pred, target = _geo_pair(tmp_path, Affine(2.39 / 4, 0, 0, 0, -2.39 / 4, 0), size=64)
    with pytest.raises(DataError, match=r"size \(64, 64\) differs .*resample or crop"):
        evaluate(pred, target, {"psnr": PSNR()})


@pytest.mark.parametrize("plain", ["pred", "target"])
def test_no_place_check_when_one_side_is_not_georeferenced(tmp_path, plain):
    arr = np.random.default_rng(6).integers(0, 256, size=(3, 16, 16), dtype=np.uint8)
    for side in ("pred", "target"):
        if side == plain:
            _tif(_mk(tmp_path / side) / "a.tif", arr, crs=None, transform=None)
        else:  # georeferenced anywhere: nothing to compare it with
            _tif(_mk(tmp_path / side) / "a.tif", arr, crs="EPSG:32615",
                 transform=Affine(10, 0, 500000, 0, -10, 4000000))
    result = evaluate(tmp_path / "pred", tmp_path / "target", {"psnr": PSNR()})
    assert math.isinf(result.rows[0]["psnr"])


def test_plain_tiffs_are_read_without_a_warning(tmp_path):
    arr = np.zeros((3, 8, 8), np.uint8)
    path = _tif(tmp_path / "plain.tif", arr, crs=None, transform=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        assert read_rgb(path).shape == (3, 8, 8)


def test_slightly_above_one_float_tiff_is_told_to_clip(tmp_path):
    _tif(_mk(tmp_path / "p") / "a.tif", np.full((3, 16, 16), 1.99996, np.float32))
    _tif(_mk(tmp_path / "t") / "a.tif", np.full((3, 16, 16), 0.5, np.float32))
    with pytest.raises(DataError, match=r"a\.tif: values up to 1\.99996: .*clip or rescale") as err:
        evaluate(tmp_path / "p", tmp_path / "t", {"psnr": PSNR()})
    assert "255" not in str(err.value)


def test_a_ctrl_c_while_writing_leaves_both_files_or_none(folders, tmp_path, monkeypatch):
    """Ctrl-C between per_image.csv and summary.json left one of them, and the re-run then
    refused it as existing."""
    import os
    import signal
    import types

    from zoomsr.io import atomic

    pred, target = folders
    result = evaluate(pred, target, {"psnr": PSNR()})

    def interrupted_after_the_first(src, dst):  # noqa: ANN001
        os.replace(src, dst)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between the two files

    proxy = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    proxy.replace = interrupted_after_the_first
    monkeypatch.setattr(atomic, "os", proxy)
    with pytest.raises(KeyboardInterrupt):
        write_results(result, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["per_image.csv",
                                                                    "summary.json"]


def test_a_truncated_geotiff_names_gdals_reason(tmp_path):
    """The line said "Read failed. See previous exception for details.", an exception it did
    not show."""
    import rasterio

    from zoomsr.evaluation.images import read_rgb_georef

    path = tmp_path / "cut.tif"
    data = np.random.default_rng(0).integers(0, 255, (3, 256, 256), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=3,
                       dtype="uint8", tiled=True, blockxsize=64, blockysize=64) as dst:
        dst.write(data)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError) as info:
        read_rgb_georef(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a readable GeoTIFF (")
    assert "previous exception" not in message and "\n" not in message


def test_nodata_predictions_are_refused_or_warned_about(tmp_path):
    """An all-nodata prediction (a failed `infer` area) was scored as a black image; a
    half-masked one without a word."""
    from zoomsr.errors import ZoomsrWarning
    from zoomsr.evaluation.images import read_rgb

    rgb = np.random.default_rng(0).integers(1, 256, (3, 16, 16), np.uint8)
    empty = _tif(tmp_path / "empty.tif", np.zeros((3, 16, 16), np.uint8))
    with rasterio.open(empty, "r+") as ds:
        ds.nodata = 0
    with pytest.raises(DataError, match=rf"^{empty}: every pixel is nodata \(masked\); "
                                        "nothing to score"):
        read_rgb(empty)
    half = _tif(tmp_path / "half.tif", rgb)
    with rasterio.open(half, "r+") as ds:  # an internal mask, as `zoomsr infer` writes
        mask = np.full((16, 16), 255, np.uint8)
        mask[:, :8] = 0
        ds.write_mask(mask)
    with pytest.warns(ZoomsrWarning, match=rf"^{half}: 50 % of its pixels are nodata"):
        read_rgb(half)
    # nodata 0 per band: a pixel is nodata where R, G and B all are, not where red alone is 0
    dark = rgb.copy()
    dark[0] = 0
    dark[:, 0, 0] = 0
    declared = _tif(tmp_path / "dark.tif", dark)
    with rasterio.open(declared, "r+") as ds:
        ds.nodata = 0
    with pytest.warns(ZoomsrWarning, match=rf"^{declared}: 0.391 % of its pixels are nodata"):
        read_rgb(declared)  # 1 of 256
    rgba = np.dstack([np.moveaxis(rgb, 0, -1), np.zeros((16, 16), np.uint8)])
    with pytest.raises(DataError, match="every pixel is nodata"):
        read_rgb(_save(tmp_path / "clear.png", rgba))  # alpha 0 everywhere


def test_metrics_given_by_name_or_alone(folders, monkeypatch):
    """`evaluate(pred, target, "psnr,ssim")` (as create_metrics takes names) failed with an
    AttributeError after reading every image."""
    from zoomsr.errors import ConfigError
    from zoomsr.evaluation import run as run_module

    pred, target = folders
    by_dict = evaluate(pred, target, {"psnr": PSNR(), "ssim": SSIM()})
    for given in ("psnr,ssim", ["psnr", "ssim"]):
        assert evaluate(pred, target, given).rows == by_dict.rows
    assert evaluate(pred, target, PSNR()).metrics == {"psnr": True}
    import types

    class Own:  # a user's metric: no name attribute, scored by its key
        higher_is_better = True

        def __call__(self, pred, target):  # noqa: ANN001, ANN204
            return PSNR()(pred, target)

    own = evaluate(pred, target, types.MappingProxyType({"mine": Own()}))
    assert [r["mine"] for r in own.rows] == [r["psnr"] for r in by_dict.rows]
    monkeypatch.setattr(run_module, "pair_images", lambda *a: pytest.fail("paired first"))
    with pytest.raises(ConfigError, match=r"metrics\['x'\]: int is no metric"):
        evaluate(pred, target, {"x": 3})
    with pytest.raises(ConfigError, match="metrics must be"):
        evaluate(pred, target, 3)
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate(pred, target, "psnr,nope")
