import numpy as np
from PIL import Image

from zoomsr.data.info import dataset_info, plot_montage, plot_tile_locations
from zoomsr.data.layout import scan_pairs
from zoomsr.grid import Tile


def test_info_counts_and_extent(tiny_dataset):
    info = dataset_info(tiny_dataset)
    assert (info.n_pairs, info.n_tiles, info.n_images) == (4, 4, 1)
    assert info.bands == {"tci": 4, "b08": 4}
    assert dict(info.series_lengths) == {6: 4}
    assert info.frames == 24 and info.invalid_frames == 3
    assert info.black_pixel_share == 3 / (24 * 32 * 32)
    w, s, e, n = info.extent
    assert (w, n) == (Tile(1000, 2000).lonlat_bounds.left, Tile(1000, 2000).lonlat_bounds.top)
    assert (e, s) == (Tile(1001, 2001).lonlat_bounds.right,
                      Tile(1001, 2001).lonlat_bounds.bottom)
    assert not info.synthetic
    sub = dataset_info(tiny_dataset, max_tiles=2)
    assert sub.tiles_examined == 2 and sub.frames == 12


def test_plots_are_real_pngs(tiny_dataset, tmp_path):
    pairs = scan_pairs(tiny_dataset)
    a = plot_tile_locations(pairs, tmp_path / "tiles.png")
    b = plot_montage(pairs, tmp_path / "montage.png", n_pairs=3, n_frames=4)
    for path in (a, b):
        img = np.asarray(Image.open(path).convert("RGB"))
        assert img.shape[0] > 100 and img.shape[1] > 100
        assert img.std() > 5  # not blank


def test_montage_has_no_empty_columns_for_short_series(tmp_path):
    """One time step: two columns (t0, NAIP), not four empty S2 columns."""
    from zoomsr.data.sample import write_sample

    root = write_sample(tmp_path / "one", pairs=2, n_frames=1, workers=1)
    pairs = scan_pairs(root)
    one = np.asarray(Image.open(plot_montage(pairs, tmp_path / "m1.png", n_pairs=2)))
    root = write_sample(tmp_path / "four", pairs=2, n_frames=4, workers=1)
    four = np.asarray(Image.open(plot_montage(scan_pairs(root), tmp_path / "m4.png",
                                              n_pairs=2)))
    assert one.shape[0] == four.shape[0] and one.shape[1] * 2 < four.shape[1]


def test_unreadable_naip_and_tci_are_counted_and_named(tiny_dataset):
    """3 truncated NAIP images and 4 truncated TCI series: 7 unreadable files, each named."""
    naip = tiny_dataset / "naip" / "img-a"
    s2 = tiny_dataset / "sentinel2"
    tiles = ["1000_2000", "1001_2000", "1000_2001", "1001_2001"]
    for tile in tiles[:3]:
        path = naip / tile / "rgb.png"
        path.write_bytes(path.read_bytes()[:200])
    for tile in tiles:
        path = s2 / tile / "tci.png"
        path.write_bytes(path.read_bytes()[:300])
    info = dataset_info(tiny_dataset)
    assert len(info.unreadable) == 7
    assert sorted(f for _, f, _ in info.unreadable_naip) == [
        f"naip/img-a/{t}/rgb.png" for t in sorted(tiles[:3])]
    assert sorted(f for _, f, _ in info.unreadable_tci) == [
        f"sentinel2/{t}/tci.png" for t in sorted(tiles)]
    assert all(str(tiny_dataset) in e for _, _, e in info.unreadable)  # the reason names it
    assert info.frames == 0  # unreadable series are left out of the statistics
    entries = info.to_dict()["unreadable_tiles"]
    assert len(entries) == 7 and {"tile", "file", "error"} <= set(entries[0])


def test_info_reads_naip_at_the_recorded_scale(tmp_path):
    """A dataset built with --scale 3 (96 px NAIP): no NAIP image is unreadable, the montage
    shows them."""
    from zoomsr.data.writer import S2NAIPWriter

    rng = np.random.default_rng(3)
    writer = S2NAIPWriter(tmp_path / "s3", scale=3)
    for tile in ("1000_2000", "1001_2000"):
        writer.write_pair(tile, "img", rng.integers(1, 256, (96, 96, 3), dtype=np.uint8),
                          {"tci": rng.integers(1, 256, (2, 32, 32, 3), dtype=np.uint8)})
    writer.write_metadata(synthetic=False, scale=3)
    info = dataset_info(tmp_path / "s3")
    assert info.scale == 3 and info.unreadable == [] and info.to_dict()["scale"] == 3
    assert dataset_info(tmp_path / "s3", scale=3).unreadable == []
    plot_montage(scan_pairs(tmp_path / "s3"), tmp_path / "m.png", scale=info.scale)


def test_the_montage_passes_over_unreadable_pairs(tiny_dataset, tmp_path):
    """One truncated tci.png stopped `data info --plot` after the statistics, with no figure."""
    import pytest

    from zoomsr.errors import DataError

    pairs = scan_pairs(tiny_dataset)
    tci = pairs[0].band_path("tci")
    tci.write_bytes(tci.read_bytes()[:300])
    path = plot_montage(pairs, tmp_path / "montage.png", n_pairs=2, n_frames=2)
    rows = np.asarray(Image.open(path).convert("RGB"))
    assert rows.shape[0] > 100 and rows.std() > 5
    for p in pairs:
        p.naip_path.write_bytes(b"")
    with pytest.raises(DataError, match=r"montage2.png: no readable pair to show \(4 tried\)"):
        plot_montage(pairs, tmp_path / "montage2.png")
