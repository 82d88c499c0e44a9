import warnings

import numpy as np
import pytest

from zoomsr.data.check import check_dataset
from zoomsr.errors import DataError
from zoomsr.io.png import write_png


def messages(report):
    return {(p.severity, p.path.split("/ds/")[-1], p.message) for p in report.problems}


def test_clean_dataset_has_only_the_black_hr_warning(tiny_dataset):
    report = check_dataset(tiny_dataset, bands=("tci", "b08"))
    assert report.n_pairs == 4 and report.n_tiles == 4 and not report.errors
    assert messages(report) == {
        ("warning", "naip/img-a/1001_2001/rgb.png", "has black pixels (readers skip this pair)")
    }


def test_every_kind_of_problem_is_listed(tiny_dataset):
    s2, naip = tiny_dataset / "sentinel2", tiny_dataset / "naip" / "img-a"
    (s2 / "1000_2000" / "tci.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    write_png(s2 / "1001_2000" / "tci.png", np.ones((40, 32, 3), np.uint8))  # 40 % 32 != 0
    write_png(s2 / "1001_2000" / "b08.png", np.ones((64, 32, 3), np.uint8))  # 3 channels
    write_png(s2 / "1000_2001" / "b08.png", np.ones((96, 32), np.uint16))  # 3 steps vs 6
    (s2 / "1001_2001" / "tci.png").unlink()
    write_png(naip / "1000_2001" / "rgb.png", np.ones((64, 64, 3), np.uint8))
    (naip / "not_a_tile").mkdir()
    (naip / "0012_0034").mkdir()
    (naip / "7_7").mkdir()
    (s2 / "9_9").mkdir()
    write_png(s2 / "9_9" / "tci.png", np.ones((32, 32, 3), np.uint8))
    write_png(s2 / "1000_2000" / "b02.png", np.ones((32, 32), np.uint16))
    report = check_dataset(tiny_dataset, bands=("tci", "b08"))
    got = messages(report)
    expected_errors = {
        "sentinel2/1000_2000/tci.png": "not a readable image",
        "sentinel2/1001_2000/tci.png": "height 40 px is not a positive multiple of 32",
        "sentinel2/1001_2000/b08.png": "must have 1 channel(s) per pixel, found 3",
        "sentinel2/1000_2001": "different numbers of time steps (b08=3, tci=6)",
        "sentinel2/1001_2001/tci.png": "band tci missing",
        "naip/img-a/1000_2001/rgb.png": "is 64x64 px, expected 128x128",
        "naip/img-a/not_a_tile": "not a tile id",
        "naip/img-a/0012_0034": "no leading zeros",  # would pair with no '12_34'
        "naip/img-a/7_7/rgb.png": "missing",
    }
    for path, text in expected_errors.items():
        assert any(s == "error" and p == path and text in m for s, p, m in got), (path, got)
    assert ("warning", "sentinel2/9_9", "Sentinel-2 series with no NAIP image") in got
    assert any(s == "warning" and p.endswith("b02.png") and "unknown band" in m
               for s, p, m in got)
    assert len(report.errors) == len(expected_errors)


def test_wrong_radiometry_is_an_error(tiny_dataset):
    s2 = tiny_dataset / "sentinel2" / "1000_2000"
    write_png(s2 / "b08.png", np.ones((6 * 32, 32), np.uint8))  # 8-bit where 16-bit expected
    report = check_dataset(tiny_dataset)
    assert any("must be a 16-bit PNG" in p.message for p in report.errors)


def test_not_a_dataset(tmp_path):
    with pytest.raises(DataError, match="not found"):
        check_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="missing naip/ and sentinel2/"):
        check_dataset(tmp_path)
    (tmp_path / "naip").mkdir()
    (tmp_path / "sentinel2").mkdir()
    report = check_dataset(tmp_path)
    assert report.n_pairs == 0 and any("no pairs" in p.message for p in report.errors)


def scale3_dataset(root, record: bool = True):
    """2 pairs at scale 3 (96 px NAIP), with zoomsr_dataset.json recording it (as `data build
    --scale 3` does) or without any metadata."""
    from zoomsr.data.writer import S2NAIPWriter

    rng = np.random.default_rng(3)
    writer = S2NAIPWriter(root, scale=3)
    for tile in ("1000_2000", "1001_2000"):
        hr = rng.integers(1, 256, (96, 96, 3), dtype=np.uint8)
        tci = rng.integers(1, 256, (2, 32, 32, 3), dtype=np.uint8)
        writer.write_pair(tile, "img", hr, {"tci": tci})
    if record:
        writer.write_metadata(synthetic=False, scale=3)
    else:  # as written by other tools (the writer records its scale)
        (root / "zoomsr_dataset.json").unlink()
    return root


def test_check_uses_the_recorded_scale(tmp_path):
    from zoomsr.errors import ConfigError, ZoomsrWarning

    root = scale3_dataset(tmp_path / "ds")
    report = check_dataset(root)
    assert report.errors == [] and report.scale == 3
    assert check_dataset(root, scale=3).errors == []
    # A scale that contradicts the recorded one is used, with a warning naming both, in the
    # report (counted, and --strict fails on it; it was printed beside a "0 warning(s)" count)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZoomsrWarning)
        report = check_dataset(root, scale=4)
    assert [w.message for w in report.warnings if "scale 4 given" in w.message] == [
        report.warnings[0].message] and "records scale 3" in report.warnings[0].message
    assert report.warnings[0].path.endswith("zoomsr_dataset.json")
    assert len(report.errors) == 2 and "expected 128x128" in report.errors[0].message
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="scale must be an integer >= 1"):
            check_dataset(root, scale=bad)
    # Without metadata: the published scale, 4, unless given.
    plain = scale3_dataset(tmp_path / "plain", record=False)
    assert len(check_dataset(plain).errors) == 2
    assert check_dataset(plain, scale=3).errors == []


def test_an_unfinished_build_is_an_error(tiny_dataset):
    (tiny_dataset / ".zoomsr_build").mkdir()
    report = check_dataset(tiny_dataset)
    assert [p.message for p in report.errors] == [
        "unfinished `zoomsr data build` (.zoomsr_build/ but no zoomsr_index.json): run the "
        "same build command again to finish it"]
    (tiny_dataset / "zoomsr_index.json").write_text("{}")
    assert check_dataset(tiny_dataset).errors == []


def test_old_naip_images_and_stray_files_in_pair_folders_are_checked(tiny_dataset):
    """`data check` never looked in old_naip/: a reader asking for older images failed on
    files the check had passed."""
    old = tiny_dataset / "old_naip"
    write_png(old / "1000_2000" / "a.png", np.ones((128, 128, 3), np.uint8))  # good
    write_png(old / "1000_2000" / "b.png", np.ones((64, 64, 3), np.uint8))
    (old / "1000_2000" / "c.png").write_bytes(b"garbage")
    (old / "notatile").mkdir()
    write_png(old / "5_5" / "a.png", np.ones((128, 128, 3), np.uint8))
    write_png(tiny_dataset / "naip" / "img-a" / "1000_2000" / "extra.png",
              np.ones((8, 8, 3), np.uint8))
    found = messages(check_dataset(tiny_dataset))
    assert ("error", "old_naip/1000_2000/b.png", "NAIP image is 64x64 px, expected 128x128"
            ) in {(s, p, m.split(" (")[0]) for s, p, m in found}
    paths = {(s, p) for s, p, _ in found}
    assert {("error", "old_naip/1000_2000/c.png"), ("error", "old_naip/notatile"),
            ("warning", "old_naip/5_5"), ("warning", "naip/img-a/1000_2000/extra.png")} <= paths
    assert not any(p == "old_naip/1000_2000/a.png" for _, p in paths)


def test_a_sixteen_bit_band_with_several_channels_is_named_as_such(tiny_dataset):
    """A 16-bit grey+alpha b08.png got the PNG reader's advice for TCI ("16-bit colour PNG ...
    save it as 8-bit RGB"): wrong for a 16-bit band."""
    import struct
    import zlib

    s2 = tiny_dataset / "sentinel2" / "1000_2000"
    values = np.full((6 * 32, 32, 2), 1000, ">u2")  # grey + alpha, 16 bits each
    raw = b"".join(b"\x00" + row.tobytes() for row in values)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    (s2 / "b08.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 6 * 32, 16, 4, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    report = check_dataset(tiny_dataset, bands=("tci", "b08"))
    (problem,) = [p for p in report.errors if p.path.endswith("b08.png")]
    assert problem.message == ("band b08 is a 16-bit grey+alpha PNG; expected 16-bit grey "
                               "(1 channel of digital numbers)")
