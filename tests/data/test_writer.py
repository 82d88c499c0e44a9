import numpy as np
import pytest

from zoomsr.data.layout import read_band_series, read_hr, read_series, scan_pairs
from zoomsr.data.writer import S2NAIPWriter
from zoomsr.errors import DataError


def test_round_trip_every_band_and_layout(tmp_path):
    rng = np.random.default_rng(3)
    bands = ["tci", "b01", "b05", "b06", "b07", "b08", "b09", "b10", "b11", "b12"]
    frames = {b: (rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8) if b == "tci"
                  else rng.integers(0, 65536, (5, 32, 32), dtype=np.uint16)) for b in bands}
    hr = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    w = S2NAIPWriter(tmp_path)
    rec = w.write_pair("5_6", "imgX", hr, frames)
    assert rec.naip_path == tmp_path / "naip/imgX/5_6/rgb.png"
    assert (tmp_path / "sentinel2/5_6/tci.png").exists()
    # Published layout: the series is stacked vertically, [T*32, 32, C].
    from zoomsr.io.png import read_png

    assert read_png(tmp_path / "sentinel2/5_6/tci.png").shape == (160, 32, 3)
    assert read_png(tmp_path / "sentinel2/5_6/b08.png").dtype == np.uint16
    assert [(p.image_id, p.tile) for p in scan_pairs(tmp_path)] == [("imgX", "5_6")]
    np.testing.assert_array_equal(read_hr(rec.naip_path, 128), hr)
    back = read_series(rec, tuple(bands))
    for b in bands:
        np.testing.assert_array_equal(back[b].reshape(frames[b].shape), frames[b])
    np.testing.assert_array_equal(read_band_series(rec.band_path("tci"), "tci")[2],
                                  frames["tci"][2])


def test_refuses_bad_input_and_overwrite(tmp_path):
    w = S2NAIPWriter(tmp_path)
    hr = np.ones((128, 128, 3), np.uint8)
    tci = np.ones((2, 32, 32, 3), np.uint8)
    w.write_pair("1_1", "a", hr, {"tci": tci})
    assert w.has_pair("1_1", "a") and not w.has_pair("1_1", "b")
    with pytest.raises(DataError, match="already exists"):
        w.write_pair("1_1", "a", hr, {"tci": tci})
    w.write_pair("1_1", "b", hr, None)  # second NAIP image reuses the tile's series
    with pytest.raises(DataError, match="no existing Sentinel-2 series"):
        w.write_pair("2_2", "a", hr, None)
    with pytest.raises(DataError, match="uint8"):
        w.write_pair("3_3", "a", hr.astype(np.uint16), {"tci": tci})
    with pytest.raises(DataError, match=r"expected uint16"):
        w.write_pair("3_3", "a", hr, {"tci": tci, "b08": np.ones((2, 32, 32), np.uint8)})
    with pytest.raises(DataError, match="different time-series lengths"):
        w.write_pair("3_3", "a", hr, {"tci": tci, "b08": np.ones((3, 32, 32), np.uint16)})
    with pytest.raises(DataError, match=r"\[T, 32, 32, 3\]"):
        w.write_pair("3_3", "a", hr, {"tci": np.ones((2, 16, 16, 3), np.uint8)})
    with pytest.raises(ValueError, match="tile"):
        w.write_pair("3-3", "a", hr, {"tci": tci})
    # Nothing half-written is left behind by the refused pairs.
    assert not (tmp_path / "naip/a/3_3").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_the_writer_records_its_scale_for_the_readers(tmp_path):
    """A scale-2 writer's pairs (64 px NAIP) were read as 128 px ones, failing its own reader
    and `data check`; scale 0 wrote a Sentinel-2 file, then failed with a bare ValueError."""
    from zoomsr.data import S2NAIPDataset
    from zoomsr.data.check import check_dataset
    from zoomsr.errors import ConfigError

    rng = np.random.default_rng(0)
    w = S2NAIPWriter(tmp_path / "x2", scale=2)
    w.write_pair("1_1", "a", rng.integers(1, 256, (64, 64, 3), dtype=np.uint8),
                 {"tci": rng.integers(1, 256, (2, 32, 32, 3), dtype=np.uint8)})
    assert S2NAIPDataset(tmp_path / "x2", n_images=2)[0]["hr"].shape == (3, 64, 64)
    assert not check_dataset(tmp_path / "x2").errors
    w.write_metadata(note="kept")  # the scale stays in the metadata
    assert S2NAIPDataset(tmp_path / "x2", n_images=2).scale == 2
    with pytest.raises(DataError, match=r"records scale 2 \(NAIP images of 64 px\); cannot "
                                        r"add pairs of scale 4"):
        S2NAIPWriter(tmp_path / "x2")
    with pytest.raises(ConfigError, match="scale must be >= 1, got 0"):
        S2NAIPWriter(tmp_path / "x0", scale=0)
