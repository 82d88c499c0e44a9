import json

from PIL import Image

from zoomsr.data import S2NAIPDataset


def test_sample_check_info_plot(cli, tmp_path):
    root = tmp_path / "s"
    code, out, _ = cli("data", "sample", root, "--pairs", 12, "--frames", 5, "--bands", "tci,b08",
                       "--seed", 3, "--no-progress")
    assert code == 0 and "12 synthetic pairs" in out
    meta = json.loads((root / "zoomsr_dataset.json").read_text())
    assert meta["synthetic"] is True and "synthetic" in meta["note"].lower()
    code, out, _ = cli("data", "check", root, "--bands", "tci,b08", "--no-progress")
    assert code == 0 and "12 pairs, 12 tiles, 0 error(s)" in out
    code, out, _ = cli("data", "info", root, "--json", "--no-progress")
    info = json.loads(out)
    assert info["pairs"] == 12 and info["synthetic"] is True
    assert info["bands"] == {"tci": 12, "b08": 12} and info["series_lengths"] == {"5": 12}
    code, out, _ = cli("data", "info", root, "--plot", "--out", tmp_path / "plots", "--no-progress")
    assert code == 0 and "SYNTHETIC" in out
    for name in ("tiles.png", "montage.png"):
        assert Image.open(tmp_path / "plots" / name).size[0] > 100
    ds = S2NAIPDataset(root, bands="tci,b08", n_images=4)
    assert ds[0]["lr"].shape == (16, 32, 32)


def test_sample_is_deterministic_and_refuses_non_empty(cli, tmp_path):
    for name in ("a", "b"):
        assert cli("data", "sample", tmp_path / name, "--pairs", 3, "--no-progress")[0] == 0
    for f in sorted((tmp_path / "a").rglob("*.png")):
        twin = tmp_path / "b" / f.relative_to(tmp_path / "a")
        assert f.read_bytes() == twin.read_bytes()
    code, _, err = cli("data", "sample", tmp_path / "a", "--pairs", 3, "--no-progress")
    assert code == 2 and "not empty" in err
    code, _, err = cli("data", "sample", tmp_path / "c", "--pairs", 0)
    assert code == 2 and "pairs must be >= 1" in err
    code, _, err = cli("data", "sample", tmp_path / "c", "--bands", "tci,b99")
    assert code == 2 and "unknown band" in err


def test_check_fails_on_problems(cli, tiny_dataset):
    code, out, _ = cli("data", "check", tiny_dataset, "--no-progress")
    assert code == 0 and "1 warning(s)" in out
    assert cli("data", "check", tiny_dataset, "--strict", "--no-progress")[0] == 1
    (tiny_dataset / "sentinel2" / "1000_2000" / "tci.png").write_bytes(b"junk")
    code, out, _ = cli("data", "check", tiny_dataset, "--no-progress")
    assert code == 1
    assert "error: " in out and "1000_2000/tci.png: not a readable image" in out


def test_errors_on_empty_and_missing_folders(cli, tmp_path):
    code, _, err = cli("data", "info", tmp_path)
    assert code == 2 and "not an S2-NAIP dataset" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "naip").mkdir()
    (tmp_path / "sentinel2").mkdir()
    code, _, err = cli("data", "info", tmp_path)
    assert code == 2 and "no pairs found" in err
