"""`zoomsr data build --max-cloud / --min-frames / --s2-date` from the command line: each option
is recorded in the index and changes what is selected or built (or gives its error)."""

from __future__ import annotations

import shutil

import pytest

from zoomsr.data.builder import load_index


def build_args(builder_scene, out, *names: str) -> list:
    args = ["data", "build", out, "--hr", builder_scene.hr_path, "--no-progress", "-j", "1"]
    for name in names:
        args += ["--s2", builder_scene.s2[name]]
    return args


def tile_record(out, tile) -> dict:
    return next(t for t in load_index(out)["tiles"] if t["tile"] == str(tile))


def frame_status(out, tile) -> dict[str, str]:
    """{date: status} of the frames of one tile."""
    return {f["datetime"][:10]: f["status"] for f in tile_record(out, tile)["frames"]}


def test_max_cloud_decides_which_frames_are_cloudy(cli, tmp_path, builder_scene):
    """The 2019-09-20 frame is > 90 % cloud over one tile: dropped there by the default 0.1,
    kept with `--max-cloud 1`."""
    cloudy = builder_scene.cloudy_tile
    default = tmp_path / "default"
    code, stdout, err = cli(*build_args(builder_scene, default, "clear", "cloudy"))
    assert code == 0, err
    assert load_index(default)["config"]["max_cloud"] == 0.1
    assert frame_status(default, cloudy) == {"2019-08-01": "kept", "2019-09-20": "cloudy"}
    assert "cloudy 1" in stdout

    loose = tmp_path / "loose"
    code, stdout, err = cli(*build_args(builder_scene, loose, "clear", "cloudy"),
                            "--max-cloud", "1")
    assert code == 0, err
    assert load_index(loose)["config"]["max_cloud"] == 1.0
    rec = tile_record(loose, cloudy)
    assert frame_status(loose, cloudy) == {"2019-08-01": "kept", "2019-09-20": "kept"}
    assert [f["stack_index"] for f in rec["frames"]] == [0, 1]
    assert "cloudy" not in stdout.split("frames:")[1] and "kept 18" in stdout

    # between the cloud fractions of the two frames (0 and > 0.9): the same as the default
    strict = tmp_path / "strict"
    code, _, err = cli(*build_args(builder_scene, strict, "clear", "cloudy"), "--max-cloud", "0")
    assert code == 0, err
    assert load_index(strict)["config"]["max_cloud"] == 0.0
    assert frame_status(strict, cloudy) == {"2019-08-01": "kept", "2019-09-20": "cloudy"}


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_max_cloud_out_of_range_is_refused(cli, tmp_path, builder_scene, value):
    out = tmp_path / "ds"
    code, stdout, err = cli(*build_args(builder_scene, out, "clear"), "--max-cloud", value)
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert "max_cloud must be in [0, 1]" in err and value in err
    assert not out.exists()


def test_min_frames_skips_tiles_with_too_few_frames(cli, tmp_path, builder_scene):
    """With the clear and the cloudy scene, the cloudy tile keeps one frame, the others two:
    `--min-frames 2` skips just that tile; `--max-cloud 1` gives it its second frame back."""
    cloudy = builder_scene.cloudy_tile
    out = tmp_path / "two"
    code, stdout, err = cli(*build_args(builder_scene, out, "clear", "cloudy"),
                            "--min-frames", "2")
    assert code == 0, err
    assert "8 pairs on 8 tiles" in stdout and "too_few_frames 1" in stdout
    index = load_index(out)
    assert index["config"]["min_frames"] == 2
    rec = tile_record(out, cloudy)
    assert rec["status"] == "skipped" and rec["reason"] == "too_few_frames"
    assert not (out / "sentinel2" / str(cloudy)).exists()
    written = [t for t in index["tiles"] if t["status"] == "written"]
    assert len(written) == 8 and str(cloudy) not in {t["tile"] for t in written}
    assert all(sum(f["status"] == "kept" for f in t["frames"]) == 2 for t in written)

    both = tmp_path / "both"
    code, stdout, err = cli(*build_args(builder_scene, both, "clear", "cloudy"),
                            "--min-frames", "2", "--max-cloud", "1")
    assert code == 0, err
    assert "9 pairs on 9 tiles" in stdout and tile_record(both, cloudy)["status"] == "written"

    # more frames than any tile has: no pair, an error naming the reason (exit 2); each
    # tile's reason is in the index
    three = tmp_path / "three"
    code, stdout, err = cli(*build_args(builder_scene, three, "clear", "cloudy"),
                            "--min-frames", "3")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no pair could be made" in err and "too_few_frames 9" in err
    index = load_index(three)
    assert index["config"]["min_frames"] == 3
    assert sum(t["reason"] == "too_few_frames" for t in index["tiles"]) == 9


@pytest.mark.parametrize(("extra", "words"), [
    (["--min-frames", "0"], "min_frames must be >= 1, got 0"),
    (["--min-frames", "3", "--max-frames", "2"], "max_frames (2) must be >= min_frames (3)"),
])
def test_bad_min_frames_is_refused(cli, tmp_path, builder_scene, extra, words):
    out = tmp_path / "ds"
    code, stdout, err = cli(*build_args(builder_scene, out, "clear"), *extra)
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert words in err and not out.exists()


@pytest.fixture
def undated_scene(tmp_path, builder_scene):
    """The clear scene's TCI and SCL in a folder whose name, files and tags give no date, and
    without its STAC item."""
    folder = tmp_path / "undated"
    folder.mkdir()
    for name in ("TCI.tif", "SCL.tif"):
        shutil.copy(builder_scene.s2["clear"] / name, folder / name)
    return folder


def test_s2_date_dates_scenes_that_have_none(cli, tmp_path, builder_scene, undated_scene):
    base = ["data", "build", "--s2", undated_scene, "--hr", builder_scene.hr_path,
            "--no-progress", "-j", "1"]
    code, stdout, err = cli(*base[:2], tmp_path / "none", *base[2:])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no acquisition date" in err and "--s2-date" in err

    out = tmp_path / "dated"
    code, stdout, err = cli(*base[:2], out, *base[2:], "--s2-date", "2019-08-02")
    assert code == 0, err
    assert "9 pairs on 9 tiles" in stdout
    index = load_index(out)
    assert [s["datetime"][:10] for s in index["sentinel2"]] == ["2019-08-02"]
    rec = tile_record(out, builder_scene.tile_p)
    assert [(f["datetime"][:10], f["days_from_highres"], f["status"]) for f in rec["frames"]] \
        == [("2019-08-02", -33, "kept")]

    # the date decides the selection: 2020-06-01 is 271 days from the 2019-09-04 capture
    code, stdout, err = cli(*base[:2], tmp_path / "late", *base[2:], "--s2-date", "2020-06-01")
    assert code == 2 and "no Sentinel-2 scene within 90 days" in err, err

    code, stdout, err = cli(*base[:2], tmp_path / "bad", *base[2:], "--s2-date", "sometime")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--s2-date: not a date: 'sometime'" in err
    assert not (tmp_path / "bad").exists()


def test_s2_date_does_not_replace_a_scene_own_date(cli, tmp_path, builder_scene,
                                                   undated_scene):
    """Only scenes without a date of their own take `--s2-date`: the clear scene keeps its
    STAC item's 2019-08-01."""
    out = tmp_path / "ds"
    code, _, err = cli("data", "build", out, "--s2", undated_scene, "--s2",
                       builder_scene.s2["clear"], "--hr", builder_scene.hr_path,
                       "--s2-date", "2019-09-10", "--no-progress", "-j", "1")
    assert code == 0, err
    dates = {s["id"]: s["datetime"][:10] for s in load_index(out)["sentinel2"]}
    assert dates[builder_scene.s2["clear"].name] == "2019-08-01"
    assert sorted(dates.values()) == ["2019-08-01", "2019-09-10"]
    assert sorted(f["datetime"][:10] for f in tile_record(out, builder_scene.tile_p)["frames"]
                  if f["status"] == "kept") == ["2019-08-01", "2019-09-10"]
