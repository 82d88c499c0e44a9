"""LR consistency: an output averaged back to the input's pixels against the input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from zoomsr.errors import DataError, InputError
from zoomsr.metrics import lr_consistency, scene_consistency


def test_an_upsampling_that_keeps_block_means_agrees_exactly_and_an_offset_is_its_bias():
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(2, 3, 6, 5, generator=g) * 0.8
    sr = lr.repeat_interleave(4, -2).repeat_interleave(4, -1)
    same = lr_consistency(sr, lr)
    assert same.scale == 4 and same.pixels == 2 * 6 * 5
    assert all(b.bias == pytest.approx(0, abs=1e-7) and b.psnr > 100 for b in same.bands)
    shifted = sr.clone()
    shifted[:, 0] += 0.1  # red brighter by 0.1 everywhere
    shifted[:, 2, :, :4] -= 0.2  # blue darker in the first LR column
    result = lr_consistency(shifted, lr, 4, bands=["r", "g", "b"])
    red, green, blue = result.bands
    assert (red.band, red.bias, red.mae, red.rmse) == ("r", pytest.approx(0.1),
                                                       pytest.approx(0.1), pytest.approx(0.1))
    assert red.psnr == pytest.approx(20.0, abs=1e-4)  # peak 1, MSE 0.01
    assert green.mae == pytest.approx(0, abs=1e-7) and math.isinf(green.psnr) is False
    assert blue.bias == pytest.approx(-0.2 / 5) and blue.mae == pytest.approx(0.2 / 5)
    # pixels left out: only the valid ones count (the blue column masked: blue agrees)
    valid = torch.ones(2, 6, 5, dtype=torch.bool)
    valid[:, :, 0] = False
    masked = lr_consistency(shifted, lr, 4, valid)
    assert masked.pixels == 2 * 6 * 4 and masked.bands[2].mae == pytest.approx(0, abs=1e-7)


def test_bad_arrays_are_refused_naming_what_is_wrong():
    lr = torch.rand(1, 3, 4, 4)
    with pytest.raises(InputError, match=r"sr 15x16 is not lr 4x4 times 4"):
        lr_consistency(torch.rand(1, 3, 15, 16), lr, 4)
    with pytest.raises(InputError, match=r"differ in batch or channels"):
        lr_consistency(torch.rand(1, 4, 16, 16), lr)
    with pytest.raises(InputError, match=r"sr is torch.uint8; give floats"):
        lr_consistency(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), lr)
    with pytest.raises(InputError, match=r"no valid pixel"):
        lr_consistency(torch.rand(1, 3, 16, 16), lr, valid=torch.zeros(1, 4, 4, dtype=bool))
    bad = torch.rand(1, 3, 16, 16)
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(InputError, match=r"NaN or infinite values in valid pixels"):
        lr_consistency(bad, lr)
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 0, 0] = False  # NaN where not valid: nodata, left out
    assert lr_consistency(bad, lr, valid=valid).pixels == 15
    with pytest.raises(InputError, match=r"scale must be an integer, got 4.0"):
        lr_consistency(torch.rand(1, 3, 16, 16), lr, 4.0)  # type: ignore[arg-type]
    for integer in (np.int64(4), torch.tensor(4)):  # NumPy's and torch's integers are
        assert lr_consistency(torch.rand(1, 3, 16, 16), lr, integer).scale == 4


def _write(path: Path, data: np.ndarray, mask: np.ndarray, res: float) -> Path:
    """A uint8 RGB GeoTIFF with an internal mask, as `zoomsr infer` writes them."""
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=3, dtype="uint8", crs="EPSG:3857",
                       transform=from_origin(1000.0, 9000.0, res, res)) as dst:
        dst.write(data)
        dst.write_mask(mask.astype(np.uint8) * 255)
    return path


@pytest.fixture
def scene(tmp_path, monkeypatch):
    """An LR mosaic 350 x 300 px (2 x 2 windows of 256 px here), its output at x4 with
    red +8 levels, and a masked SR block (LR pixels not counted)."""
    import zoomsr.metrics.consistency as consistency

    monkeypatch.setattr(consistency, "WINDOW", 256)  # several windows on a small scene
    rng = np.random.default_rng(0)
    lr = rng.integers(10, 200, size=(3, 300, 350), dtype=np.uint8)
    lr_mask = np.ones((300, 350), bool)
    lr_mask[:10] = False  # no data in the mosaic's first rows
    sr = lr.repeat(4, 1).repeat(4, 2)
    sr[0] += 8
    sr_mask = np.ones((1200, 1400), bool)
    sr_mask[400:402, 400:403] = False  # one SR block partly masked: LR (100, 100) not counted
    _write(tmp_path / "out.lr.tif", lr, lr_mask, 40.0)
    _write(tmp_path / "out.tif", sr, sr_mask, 10.0)
    return tmp_path


def test_a_scene_and_its_lr_mosaic_in_windows_with_the_map(scene):
    calls = []
    result = scene_consistency(scene / "out.tif", map_path=scene / "map.tif",
                               progress=lambda done, total: calls.append((done, total)))
    assert result.scale == 4 and result.peak == 255.0
    assert result.pixels == 290 * 350 - 1
    red, green, blue = result.bands
    assert (red.band, red.bias, red.mae) == ("red", pytest.approx(8), pytest.approx(8))
    assert red.psnr == pytest.approx(10 * math.log10(255**2 / 64))
    assert green.mae == 0 and math.isinf(green.psnr)
    assert calls[-1] == (len(calls), len(calls)) and len(calls) == 4  # 2 x 2 windows
    with rasterio.open(scene / "map.tif") as m, rasterio.open(scene / "out.lr.tif") as lr:
        assert (m.crs, m.transform, m.shape) == (lr.crs, lr.transform, lr.shape)
        values = m.read(1)
    assert np.isnan(values[:10]).all() and np.isnan(values[100, 100])
    assert np.allclose(values[10:100], 8 / 3)
    assert not list(scene.glob("*.tmp*"))


def test_grids_that_do_not_match_and_missing_files_are_one_line(scene, tmp_path):
    with pytest.raises(DataError, match=r"nope.lr.tif: LR mosaic not found \(write it with "
                                        r"`zoomsr infer --save-lr`, or give --lr\)"):
        scene_consistency(_write(tmp_path / "nope.tif", np.zeros((3, 8, 8), np.uint8),
                                 np.ones((8, 8), bool), 10.0))
    other = _write(tmp_path / "other.tif", np.zeros((3, 100, 100), np.uint8),
                   np.ones((100, 100), bool), 12.0)
    with pytest.raises(DataError, match=r"is not .*out.lr.tif \(350x300 px of 40\) at an "
                                        r"integer scale over the same bounds"):
        scene_consistency(other, scene / "out.lr.tif")
    # the output as its own LR: scored as a perfect agreement, exit 0
    with pytest.raises(DataError, match=r"out.tif: at the pixel size of .*out.tif \(10\) \(the "
                                        r"same file\); the LR is the coarser input"):
        scene_consistency(scene / "out.tif", scene / "out.tif")
    # nothing valid in both: refused, and no map left behind
    with rasterio.open(scene / "out.tif", "r+") as dst:
        dst.write_mask(np.zeros((dst.height, dst.width), np.uint8))
    with pytest.raises(DataError, match=r"no LR pixel is valid in both"):
        scene_consistency(scene / "out.tif", map_path=tmp_path / "map.tif")
    assert not (tmp_path / "map.tif").exists() and not list(tmp_path.glob("*map*"))
    (tmp_path / "junk.tif").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"junk.tif: not a readable raster"):
        scene_consistency(tmp_path / "junk.tif", scene / "out.lr.tif")


def test_the_command_prints_the_table_and_writes_json_and_map(cli, scene):
    code, out, err = cli("metrics", "consistency", scene / "out.tif", "--json",
                         scene / "c.json", "--map", scene / "m.tif", "--no-progress")
    assert code == 0, err
    assert "red" in out and "+8.00" in out and "x4" in out
    doc = json.loads((scene / "c.json").read_text())
    assert doc["scale"] == 4 and doc["bands"][0]["bias"] == pytest.approx(8)
    assert doc["bands"][1]["psnr"] is None  # identical: infinite, null in JSON
    assert doc["lr"] == str((scene / "out.lr.tif").resolve())
    assert (scene / "m.tif").is_file()
    code, _, err = cli("metrics", "consistency", scene / "out.tif", "--json", scene / "c.json")
    assert code == 2 and "c.json: already exists" in err
    # --plot alone: the picture, the map it was drawn from not kept
    before = set(scene.iterdir())
    code, _, err = cli("metrics", "consistency", scene / "out.tif", "--plot", scene / "p.png",
                       "--no-progress")
    assert code == 0, err
    assert set(scene.iterdir()) - before == {scene / "p.png"}
    from PIL import Image

    with Image.open(scene / "p.png") as img:
        assert img.format == "PNG" and min(img.size) > 200
    code, _, err = cli("metrics", "consistency", scene / "none.tif")
    assert code == 2 and "none.tif: SR image not found" in err


def test_an_infer_output_and_the_lr_mosaic_it_wrote(cli, tmp_path):
    """The files `zoomsr infer --save-lr` writes are on matching grids: scale 4, every
    mosaic pixel counted (a random model: some disagreement)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
    from infer_helpers import write_frames

    write_frames(tmp_path / "in", n=2, size=(40, 48))
    out = tmp_path / "sr.tif"
    code, _, err = cli("infer", tmp_path / "in", "-o", out, "--model", "rrdbnet", "--config",
                       "num_in_ch=6,num_feat=8,num_block=1,num_grow_ch=4", "--random-weights",
                       "--window", "32", "--overlap", "8", "--save-lr", "--no-progress",
                       "--device", "cpu")
    assert code == 0, err
    result = scene_consistency(out)  # OUT.lr.tif found beside it
    assert result.scale == 4 and result.pixels == 40 * 48
    assert all(math.isfinite(b.mae) and b.mae > 0 for b in result.bands)  # random weights


def test_outputs_that_are_inputs_or_each_other_and_a_failed_plot_leave_nothing(cli, scene):
    for args, message in (
            (("--map", scene / "out.lr.tif", "--overwrite"),
             f"--map {scene / 'out.lr.tif'}: that is an input of the comparison"),
            (("--map", scene / "x.tif", "--plot", scene / "x.tif"),
             f"--map {scene / 'x.tif'}: given for another output too"),
            (("--plot", scene / "p.jpg"), f"--plot {scene / 'p.jpg'}: the plot is a PNG"),
            # a folder: "pass --overwrite", then with it an IsADirectoryError after the table
            (("--json", scene, "--overwrite"), f"--json {scene}: is a folder; give a file name"),
            (("--map", scene), f"--map {scene}: is a folder; give a file name")):
        code, _, err = cli("metrics", "consistency", scene / "out.tif", *args, "--no-progress")
        assert code == 2 and message in err, err
    # a plot that cannot be written (its folder is a file): no map put in place either
    (scene / "afile").write_text("")
    code, _, err = cli("metrics", "consistency", scene / "out.tif", "--map", scene / "m.tif",
                       "--plot", scene / "afile" / "p.png", "--no-progress")
    assert code == 2 and "--plot" in err
    assert not (scene / "m.tif").exists() and not list(scene.glob(".zoomsr-consistency-*"))


def test_a_plot_failing_once_the_map_is_made_leaves_neither(cli, scene, monkeypatch):
    import zoomsr.metrics.consistency as consistency

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError("No space left on device")

    monkeypatch.setattr(consistency, "write_map_png", broken)
    code, _, err = cli("metrics", "consistency", scene / "out.tif", "--map", scene / "m.tif",
                       "--plot", scene / "p.png", "--no-progress")
    assert code != 0 and "No space left on device" in err
    assert not (scene / "m.tif").exists() and not (scene / "p.png").exists()
    assert not list(scene.glob(".zoomsr-consistency-*"))


def test_the_plot_of_a_long_thin_map_stays_small_and_shows_a_thin_seam(scene, tmp_path):
    from PIL import Image

    from zoomsr.metrics.consistency import write_map_png

    thin = tmp_path / "thin.tif"
    values = np.ones((1, 3000), np.float32)
    values[0, 1500] = 60.0  # one pixel: kept by the max-pooling down to 1024 columns
    with rasterio.open(thin, "w", driver="GTiff", width=3000, height=1, count=1,
                       dtype="float32", nodata=float("nan")) as dst:
        dst.write(values, 1)
    write_map_png(thin, tmp_path / "thin.png")
    with Image.open(tmp_path / "thin.png") as img:
        assert max(img.size) < 2000  # (it was 770 x 770088 px)
    from zoomsr.metrics.consistency import _max_pooled

    pooled = _max_pooled(thin, 1024)
    assert pooled.shape == (1, 1000) and pooled.max() == 60.0
