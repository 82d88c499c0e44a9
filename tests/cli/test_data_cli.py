import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoomsr.data import S2NAIPDataset
from zoomsr.errors import DataError


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
    for name, seed in (("a", "0"), ("b", "0"), ("s", "3")):
        assert cli("data", "sample", tmp_path / name, "--pairs", 3, "--seed", seed,
                   "--no-progress")[0] == 0

    def files(name: str) -> dict[str, bytes]:
        folder = tmp_path / name
        return {str(f.relative_to(folder)): f.read_bytes()
                for f in sorted(folder.rglob("*")) if f.is_file()}

    a, b, s = files("a"), files("b"), files("s")
    assert sum(k.endswith(".png") for k in a) >= 6 and "zoomsr_dataset.json" in a
    assert a == b  # every file, the record too, byte for byte
    assert len(s) == len(a) and sorted(s.values()) != sorted(a.values())  # another seed
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


def test_check_takes_the_required_bands_in_any_order(cli, tiny_dataset):
    """`--bands b08` exited 2 with "'tci' must come first": a rule of model inputs, not of a
    check that every tile has the bands (tci it needs anyway)."""
    (tiny_dataset / "sentinel2" / "1000_2000" / "b08.png").unlink()
    for bands in ("b08", "b08,tci", "tci,b08"):
        code, out, _ = cli("data", "check", tiny_dataset, "--bands", bands, "--no-progress")
        assert code == 1 and "1000_2000/b08.png: band b08 missing" in out, (bands, out)
    code, _, err = cli("data", "check", tiny_dataset, "--bands", "b02", "--no-progress")
    assert code == 2 and "unknown band(s) b02" in err


def test_errors_on_empty_and_missing_folders(cli, tmp_path):
    code, _, err = cli("data", "info", tmp_path)
    assert code == 2 and "not an S2-NAIP dataset" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "naip").mkdir()
    (tmp_path / "sentinel2").mkdir()
    code, _, err = cli("data", "info", tmp_path)
    assert code == 2 and "no pairs found" in err


def _one_line_error(code: int, err: str, *words: str) -> bool:
    return code == 2 and len(err.strip().splitlines()) == 1 and all(w in err for w in words)


def test_info_rejects_bad_max_tiles_before_any_work(cli, tiny_dataset):
    for bad in ("-5", "0"):
        code, out, err = cli("data", "info", tiny_dataset, "--max-tiles", bad, "--no-progress")
        assert _one_line_error(code, err, "--max-tiles", ">= 1") and out == ""


def test_info_checks_plot_folder_before_any_work(cli, tiny_dataset, tmp_path):
    code, out, err = cli("data", "info", tiny_dataset, "--plot", "--out", "/proc/xx",
                         "--no-progress")
    assert _one_line_error(code, err, "--out", "/proc/xx") and out == ""
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, out, err = cli("data", "info", tiny_dataset, "--plot", "--out", afile, "--no-progress")
    assert _one_line_error(code, err, "--out", "not a folder") and out == ""
    # --out without --plot was ignored silently
    code, out, err = cli("data", "info", tiny_dataset, "--out", tmp_path / "figs",
                         "--no-progress")
    assert _one_line_error(code, err, "--out", "add --plot") and out == ""


def test_info_json_with_plots_keeps_stdout_json(cli, tiny_dataset, tmp_path):
    """"wrote tiles.png and montage.png" followed the JSON on stdout: json.load failed."""
    import json

    code, out, err = cli("data", "info", tiny_dataset, "--json", "--plot", "--out", tmp_path,
                         "--no-progress")
    assert code == 0, err
    assert json.loads(out)["tiles"] >= 1 and "wrote " in err


def test_info_names_unreadable_tiles(cli, tiny_dataset):
    (tiny_dataset / "sentinel2" / "1000_2000" / "tci.png").write_bytes(b"junk")
    (tiny_dataset / "sentinel2" / "1001_2001" / "tci.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    code, out, err = cli("data", "info", tiny_dataset, "--no-progress")
    assert code == 0 and "unusable tiles" in out
    assert "2 tile(s) with an unusable TCI series" in err
    assert "1000_2000" in err and "1001_2001" in err and "zoomsr data check" in err
    code, out, err = cli("data", "info", tiny_dataset, "--json", "--no-progress")
    info = json.loads(out)
    assert [u["tile"] for u in info["unreadable_tiles"]] == ["1000_2000", "1001_2001"]
    assert "2 tile(s)" in err


def test_info_counts_and_names_unreadable_naip_images(cli, tiny_dataset):
    """3 damaged NAIP images and 4 damaged TCI series: 7, the NAIP ones named too."""
    tiles = ["1000_2000", "1001_2000", "1000_2001", "1001_2001"]
    for tile in tiles[:2]:
        path = tiny_dataset / "naip" / "img-a" / tile / "rgb.png"
        path.write_bytes(path.read_bytes()[:200])
    # the third readable, but not of the layout's size: called "unreadable" too, so the
    # wording covers both now
    Image.new("RGB", (100, 100)).save(tiny_dataset / "naip" / "img-a" / tiles[2] / "rgb.png")
    for tile in tiles:
        path = tiny_dataset / "sentinel2" / tile / "tci.png"
        path.write_bytes(path.read_bytes()[:300])
    code, out, err = cli("data", "info", tiny_dataset, "--no-progress")
    assert code == 0
    assert re.search(r"unusable tiles\s*│\s*7 \(4 TCI series, 3 NAIP images\)", out), out
    assert "4 tile(s) with an unusable TCI series" in err
    assert "3 unusable NAIP image(s) (naip/img-a/1000_2000/rgb.png, " in err
    assert "(unreadable, or not of the layout's size)" in err
    assert len(err.strip().splitlines()) == 1
    code, out, _ = cli("data", "info", tiny_dataset, "--json", "--no-progress")
    files = sorted(u["file"] for u in json.loads(out)["unreadable_tiles"])
    assert len(files) == 7 and files[:3] == [f"naip/img-a/{t}/rgb.png" for t in sorted(tiles[:3])]


def test_check_and_info_use_the_recorded_scale(cli, tmp_path):
    """A dataset recording scale 3 (as `data build --scale 3` writes it): check passes without
    --scale; a contradicting --scale is used with a warning; --scale < 1 is a usage error."""
    from zoomsr.data.writer import S2NAIPWriter

    rng = np.random.default_rng(3)
    root = tmp_path / "bD"
    writer = S2NAIPWriter(root, scale=3)
    for tile in ("1000_2000", "1001_2000"):
        writer.write_pair(tile, "img", rng.integers(1, 256, (96, 96, 3), dtype=np.uint8),
                          {"tci": rng.integers(1, 256, (2, 32, 32, 3), dtype=np.uint8)})
    writer.write_metadata(synthetic=False, scale=3)
    code, out, err = cli("data", "check", root, "--no-progress")
    assert code == 0 and "2 pairs, 2 tiles, 0 error(s), 0 warning(s)" in out and err == ""
    code, out, err = cli("data", "check", root, "--scale", 4, "--no-progress")
    assert code == 1 and "expected 128x128" in out
    # in the report and its count (it was printed beside "0 warning(s)")
    assert "scale 4 given" in out and "records scale 3" in out and "1 warning(s)" in out
    assert "scale 4 given" not in err
    for bad in ("0", "-1"):
        code, out, err = cli("data", "check", root, "--scale", bad, "--no-progress")
        assert _one_line_error(code, err, "--scale", ">= 1") and out == "", (bad, out)
        code, out, err = cli("data", "info", root, "--scale", bad, "--no-progress")
        assert _one_line_error(code, err, "--scale", ">= 1") and out == ""
    code, out, err = cli("data", "info", root, "--json", "--plot", "--out", tmp_path,
                         "--no-progress")
    assert code == 0 and '"scale": 3' in out and "unreadable" not in err


def test_sample_pluralises(cli, tmp_path):
    code, out, _ = cli("data", "sample", tmp_path / "one", "--pairs", 1, "--frames", 1,
                       "--no-progress")
    assert code == 0 and "wrote 1 synthetic pair (1 time step, bands tci)" in out
    code, out, _ = cli("data", "sample", tmp_path / "two", "--pairs", 2, "--frames", 3,
                       "--no-progress")
    assert code == 0 and "wrote 2 synthetic pairs (3 time steps, bands tci)" in out


def test_sample_into_a_file_is_a_clear_error(cli, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = cli("data", "sample", afile, "--pairs", 2, "--no-progress")
    assert _one_line_error(code, err, "afile", "not a folder")
    assert afile.read_text() == "x"


def test_sample_overwrite_replaces_the_dataset_and_keeps_other_files(cli, tmp_path):
    out = tmp_path / "s"
    assert cli("data", "sample", out, "--pairs", 6, "--frames", 4, "--bands", "tci,b08",
               "--no-progress")[0] == 0
    (out / "notes.txt").write_text("mine")
    code, _, err = cli("data", "sample", out, "--pairs", 2, "--frames", 2, "--seed", 1,
                       "--overwrite", "--no-progress")
    assert code == 0, err
    assert len(list((out / "sentinel2").iterdir())) == 2
    assert not list(out.rglob("b08.png"))  # nothing of the earlier dataset is mixed in
    assert json.loads((out / "zoomsr_dataset.json").read_text())["pairs"] == 2
    assert (out / "notes.txt").read_text() == "mine"
    assert cli("data", "check", out, "--strict", "--no-progress")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no build folder left


def test_sample_into_a_symlinked_folder_on_another_file_system(cli, tmp_path):
    """OUT a mount or a link elsewhere (/dev/shm: tmpfs): built inside it, so renames stay on
    its file system, and the earlier dataset is replaced, not lost."""
    import os
    import shutil
    import tempfile

    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    target = Path(tempfile.mkdtemp(dir=base))
    try:
        out = tmp_path / "out"
        out.symlink_to(target)
        assert cli("data", "sample", out, "--pairs", 3, "--no-progress")[0] == 0
        code, _, err = cli("data", "sample", out, "--pairs", 2, "--frames", 2, "--overwrite",
                           "--no-progress")
        assert code == 0, err
        assert sorted(p.name for p in target.iterdir()) == ["naip", "sentinel2",
                                                            "zoomsr_dataset.json"]
        assert len(list((target / "sentinel2").iterdir())) == 2
    finally:
        shutil.rmtree(target)


def test_an_interrupted_sample_leaves_nothing_that_looks_like_a_dataset(cli, tmp_path,
                                                                        monkeypatch):
    import zoomsr.data.sample

    written = []
    real = zoomsr.data.sample._write_one

    def then_interrupt(job):
        real(job)
        written.append(job)
        if len(written) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(zoomsr.data.sample, "_write_one", then_interrupt)
    code, _, err = cli("data", "sample", tmp_path / "s", "--pairs", 8, "--no-progress")
    assert code == 130 and err.strip() == (f"interrupted: nothing written to {tmp_path / 's'} "
                                           "(a sample is moved in whole or not at all); run "
                                           "the same command again")
    assert list(tmp_path.iterdir()) == []  # nor the hidden folder it was made in
    monkeypatch.setattr(zoomsr.data.sample, "_write_one", real)
    assert cli("data", "sample", tmp_path / "s", "--pairs", 8, "--no-progress")[0] == 0
    assert len(list((tmp_path / "s" / "naip").rglob("rgb.png"))) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # the partial one is gone


def test_ctrl_c_twice_stops_the_sample_workers_quietly(tmp_path):
    """A real Ctrl-C, pressed twice, reaches the whole process group while workers write
    pairs: the command ends (killed by SIGINT, after cleaning up) with one line, no worker
    traceback ("Process ForkProcess-2:"), no "Exception ignored" from the pool at exit, no
    process and no folder left behind."""
    import os
    import signal
    import sys
    import time

    from process_groups import own_group

    script = (
        "import os, sys, time\n"
        "import zoomsr.data.sample as sample\n"
        "from zoomsr.cli.main import run\n"
        "def slow(job):\n"
        "    os.write(1, b'writing\\n')  # one write: the workers' lines do not mix\n"
        "    time.sleep(30)\n"
        "sample._write_one = slow\n"
        "os.cpu_count = lambda: 2  # two worker processes\n"
        "sys.argv = ['zoomsr', 'data', 'sample', sys.argv[1], '--pairs', '64', '--no-progress']\n"
        "run()\n"
    )
    with own_group([sys.executable, "-c", script, str(tmp_path / "s")]) as proc:
        assert proc.stdout.readline().startswith("writing")  # a worker is on a pair
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGINT, err  # as a shell loop needs (cli.exiting)
    assert err.strip().splitlines() == [
        f"interrupted: nothing written to {tmp_path / 's'} (a sample is moved in whole or not "
        "at all); run the same command again"], err
    assert list(tmp_path.iterdir()) == []


def test_sample_where_nothing_can_be_written(cli, tmp_path, monkeypatch):
    import zoomsr.io.folders

    def refused(dir):  # noqa: A002  (the tests may run as root, who can write anywhere)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(zoomsr.io.folders.tempfile, "TemporaryFile", refused)
    code, _, err = cli("data", "sample", tmp_path / "s", "--pairs", 2, "--no-progress")
    assert _one_line_error(code, err, str(tmp_path / "s"), "cannot write in")


def test_build_rejects_bad_workers_before_any_work(cli, tmp_path):
    for bad in ("-3", "0"):
        code, _, err = cli("data", "build", tmp_path / "out", "--s2", tmp_path / "nope",
                           "--hr", tmp_path / "nope", "-j", bad, "--no-progress")
        assert _one_line_error(code, err, "--workers", ">= 1"), err
    assert not (tmp_path / "out").exists()


def test_build_names_an_empty_s2_folder(cli, tmp_path):
    s2, hr = tmp_path / "s2empty", tmp_path / "hrempty"
    s2.mkdir()
    hr.mkdir()
    (s2 / "notes.txt").write_text("x")
    code, _, err = cli("data", "build", tmp_path / "out", "--s2", s2, "--hr", hr,
                       "--no-progress")
    assert _one_line_error(code, err, "s2empty", "no Sentinel-2 scenes in folder"), err
    (s2 / "preview.tif").write_bytes(b"x")  # a raster that is no band file
    code, _, err = cli("data", "build", tmp_path / "out", "--s2", s2, "--hr", hr,
                       "--no-progress")
    assert _one_line_error(code, err, "s2empty", "no Sentinel-2 scenes in folder"), err


def test_an_unfinished_build_is_reported_by_info_and_refused_by_readers(cli, tiny_dataset):
    """An interrupted `data build` (state folder, no index) holds a part of its pairs: `info`
    says so beside the counts so far; the dataset (and so training) refuses it."""
    (tiny_dataset / ".zoomsr_build").mkdir()
    code, out, err = cli("data", "info", tiny_dataset, "--no-progress")
    assert code == 0 and "4 (so far: unfinished build)" in out
    assert err.strip() == (f"warning: {tiny_dataset}: unfinished `zoomsr data build` "
                           "(.zoomsr_build/ but no zoomsr_index.json): run the same build "
                           "command again to finish it")
    code, out, _ = cli("data", "info", tiny_dataset, "--json", "--no-progress")
    assert json.loads(out)["unfinished"].startswith("unfinished `zoomsr data build`")
    with pytest.raises(DataError, match=r"unfinished `zoomsr data build`.*run the same build"):
        S2NAIPDataset(tiny_dataset, n_images=2, train=True)
    (tiny_dataset / "zoomsr_index.json").write_text("{}")
    assert len(S2NAIPDataset(tiny_dataset, n_images=2, train=True)) == 4
    code, out, err = cli("data", "info", tiny_dataset, "--no-progress")
    assert code == 0 and "so far" not in out and err == ""


def test_an_unfinished_build_with_no_pair_yet_says_so(cli, tmp_path):
    """Stopped before its first pair: "no pairs found" did not say that the build only has to
    be run again."""
    root = tmp_path / "ds"
    for folder in ("naip", "sentinel2", ".zoomsr_build"):
        (root / folder).mkdir(parents=True)
    code, _, err = cli("data", "info", root, "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{root}: no pairs yet, unfinished `zoomsr data build`" in err
    assert "run the same build command again" in err
