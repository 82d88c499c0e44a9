"""Building pairs from generated rasters with known geometry: alignment, dates, clouds,
nodata, index, dataset compatibility, resume and bad inputs."""

from __future__ import annotations

import datetime as dt
import filecmp
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from builder_rasters import P_LONLAT, make_safe, to_crs, utc
from rasterio.enums import Resampling
from rasterio.warp import reproject

from zoomsr.data import S2NAIPDataset
from zoomsr.data.builder import (
    BuildConfig,
    Sources,
    SplitConfig,
    build_dataset,
    discover_highres,
    discover_sentinel2,
    load_index,
    load_split,
)
from zoomsr.data.builder.reproject import GridWindow
from zoomsr.data.check import check_dataset
from zoomsr.data.layout import read_band_series, scan_pairs
from zoomsr.errors import ConfigError, DataError, InputError, ZoomsrWarning
from zoomsr.grid import HR_PIXELS, LR_PIXELS, TILE_SIZE_M, Tile
from zoomsr.io.png import read_png

IMAGE = "m_4109363_ne_15_1_20190904"
CONFIG = BuildConfig(bands=("tci", "b08"), splits=SplitConfig(group_tiles=2, seed=1))


def interrupted_build(*args, after: int = 1, build=build_dataset, **kwargs) -> None:
    """``build(*args, **kwargs)`` stopped (RuntimeError) in each block after ``after`` pairs:
    an interruption at a known point (the builder's testing hook)."""
    from zoomsr.data.builder import build as build_module

    build_module._FAIL_AFTER = after
    try:
        with pytest.raises(RuntimeError, match="simulated failure"):
            build(*args, **kwargs)
    finally:
        build_module._FAIL_AFTER = None


def sources_of(scene) -> Sources:
    return Sources(discover_sentinel2([scene.root / "s2"]),
                   discover_highres([scene.hr_path]))


@pytest.fixture(scope="module")
def built(builder_scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "ds"
    result = build_dataset(out, sources_of(builder_scene), CONFIG, workers=1)
    return out, result


def series(out: Path, tile: Tile, band: str = "tci") -> np.ndarray:
    return read_band_series(out / "sentinel2" / str(tile) / f"{band}.png", band)


def frames_of(out: Path, tile: Tile) -> list[dict]:
    rec = next(t for t in load_index(out)["tiles"] if t["tile"] == str(tile))
    return rec["frames"]


def test_grid_window_is_snapped_to_tile_edges():
    tiles = [Tile(31449, 48856), Tile(31451, 48857)]
    for pixels in (LR_PIXELS, HR_PIXELS):
        grid = GridWindow.around(tiles, pixels)
        assert (grid.cols, grid.rows, grid.width) == (3, 2, 3 * pixels)
        for tile in (Tile(31449, 48856), Tile(31450, 48857), Tile(31451, 48857)):
            rows, cols = grid.slices(tile)
            # The chunk's corner, through the block transform, is the tile's exact corner.
            left, top = grid.transform @ (cols.start, rows.start)
            right, bottom = grid.transform @ (cols.stop, rows.stop)
            b = tile.bounds
            assert max(abs(left - b.left), abs(top - b.top), abs(right - b.right),
                       abs(bottom - b.bottom)) < 1e-6
            assert grid.transform.a == pytest.approx(TILE_SIZE_M / pixels, abs=1e-12)
    with pytest.raises(ValueError, match="outside"):
        grid.slices(Tile(31448, 48856))


def test_output_passes_check_and_loads(built):
    out, result = built
    report = check_dataset(out, bands=("tci", "b08"))
    assert report.errors == [] and report.n_pairs == 9
    assert [str(p) for p in report.warnings] == []
    ds = S2NAIPDataset(out, bands=("tci", "b08"), n_images=2, layout="frames")
    sample = ds[0]
    assert sample["lr"].shape == (2, 4, 32, 32) and sample["hr"].shape == (3, 128, 128)
    assert 0 < float(sample["lr"].mean()) < 1
    meta = json.loads((out / "zoomsr_dataset.json").read_text())
    assert meta["synthetic"] is False and meta["bands"] == ["tci", "b08"]


def test_partial_tiles_skipped_and_counted(built, builder_scene):
    out, result = built
    written = {p.tile for p in scan_pairs(out)}
    assert written == {str(t) for t in builder_scene.full_tiles}
    c = result.counts
    assert c["tiles_candidate"] == 25 and c["tiles_written"] == 9
    assert c["skipped_highres_partly_outside_or_nodata"] == 16
    assert c["pairs"] == c["pairs_now"] == 9


def test_known_point_lands_in_the_right_pixel(built, builder_scene):
    """The bright spot at P is where P's EPSG:3857 coordinates say, within half a pixel."""
    out, _ = built
    tile = builder_scene.tile_p
    x, y = to_crs(*P_LONLAT, "EPSG:3857")
    b = tile.bounds
    clear = next(f for f in frames_of(out, tile) if f["scene"].startswith("S2A_15TVG_20190801"))
    lr = series(out, tile)[clear["stack_index"], :, :, 0].astype(float) - 90.0  # background 90
    hr = read_png(out / "naip" / IMAGE / str(tile) / "rgb.png")[:, :, 0].astype(float) - 100.0
    for image, pixels in ((lr, LR_PIXELS), (hr, HR_PIXELS)):
        res = TILE_SIZE_M / pixels
        expected = ((x - b.left) / res, (b.top - y) / res)  # (column, row), continuous
        r0, c0 = np.unravel_index(image.argmax(), image.shape)
        w = 4 if pixels == LR_PIXELS else 12
        win = np.clip(image[r0 - w:r0 + w + 1, c0 - w:c0 + w + 1] - 1, 0, None)
        rows, cols = np.mgrid[r0 - w:r0 + w + 1, c0 - w:c0 + w + 1] + 0.5  # pixel centres
        found = ((win * cols).sum() / win.sum(), (win * rows).sum() / win.sum())
        assert abs(found[0] - expected[0]) < 0.5 and abs(found[1] - expected[1]) < 0.5


def test_chunks_equal_a_direct_per_tile_warp(built, builder_scene):
    """Block warping + slicing == warping the source straight onto one tile's transform."""
    out, _ = built
    tile = builder_scene.full_tiles[4]
    frames = frames_of(out, tile)
    clear = next(f for f in frames if f["scene"].startswith("S2A_15TVG_20190801"))
    with rasterio.open(builder_scene.s2["clear"] / "B08.tif") as src:
        direct = np.zeros((32, 32), np.uint16)
        reproject(rasterio.band(src, 1), direct, dst_transform=tile.lr_transform,
                  dst_crs="EPSG:3857", resampling=Resampling.bilinear)
    ours = series(out, tile, "b08")[clear["stack_index"], :, :, 0]
    assert np.abs(ours.astype(int) - direct.astype(int)).max() <= 1
    with rasterio.open(builder_scene.hr_path) as src:
        direct = np.zeros((3, 128, 128), np.uint8)
        reproject(rasterio.band(src, [1, 2, 3]), direct, dst_transform=tile.hr_transform,
                  dst_crs="EPSG:3857", resampling=Resampling.bilinear)
    ours = read_png(out / "naip" / IMAGE / str(tile) / "rgb.png").transpose(2, 0, 1)
    assert np.abs(ours.astype(int) - direct.astype(int)).max() <= 1


def test_date_window_clouds_and_nodata(built, builder_scene):
    out, result = built
    cloudy, tile_p = builder_scene.cloudy_tile, builder_scene.tile_p
    dates = {t: [f["datetime"][:10] for f in frames_of(out, t) if f["status"] == "kept"]
             for t in builder_scene.full_tiles}
    # The 2020-03-01 scene is 179 days from the 2019-09-04 capture: never used.
    assert not any("2020-03-01" in d for d in dates.values())
    # The 2019-09-20 frame is cloudy only over one tile (SCL), so dropped only there.
    assert dates[cloudy] == ["2019-07-10", "2019-08-01"]
    status = {f["scene"][:18]: f for f in frames_of(out, cloudy)}
    assert status["S2B_15TVG_20190920"]["status"] == "cloudy"
    assert status["S2B_15TVG_20190920"]["cloud_fraction"] > 0.9
    assert status["S2B_15TVG_20190920"]["cloud_method"] == "scl"
    # Half of P's tile lies in the 2019-07-10 scene's nodata: that frame is dropped there.
    assert dates[tile_p] == ["2019-08-01", "2019-09-20"]
    nod = next(f for f in frames_of(out, tile_p) if f["scene"].startswith("S2A_15TVG_20190710"))
    assert nod["status"] == "nodata" and 0.3 < nod["nodata_fraction"] < 0.7
    other = builder_scene.full_tiles[-1]
    assert dates[other] == ["2019-07-10", "2019-08-01", "2019-09-20"]
    # Stacks hold the kept frames in date order: T matches the index, no black pixels.
    for tile, kept in dates.items():
        s = series(out, tile)
        assert s.shape[0] == len(kept) and s.any(axis=-1).all()
    assert result.counts["frames_cloudy"] == 1 and result.counts["frames_nodata"] == 3


def test_index_records_sources_and_statistics(built, builder_scene):
    out, _ = built
    index = load_index(out)
    assert index["config"]["bands"] == ["tci", "b08"] and index["config"]["window_days"] == 90
    assert {s["id"] for s in index["sentinel2"]} >= {"S2A_15TVG_20190801_0_L2A"}
    rec = next(t for t in index["tiles"] if t["tile"] == str(builder_scene.tile_p))
    assert rec["status"] == "written" and rec["split"] in ("train", "val", "test", "buffer")
    (img,) = rec["images"]
    assert img["image_id"] == IMAGE and img["status"] == "primary" and img["written"] == "now"
    assert img["datetime"].startswith("2019-09-04")
    f = rec["frames"][0]
    assert set(f) >= {"scene", "datetime", "days_from_highres", "cloud_fraction",
                      "nodata_fraction", "status", "stack_index", "files", "tci_mean"}
    assert f["files"]["b08"].endswith("B08.tif")
    assert {f["days_from_highres"] for f in rec["frames"]} == {-56, -34, 16}


def test_splits_written_and_disjoint(built):
    out, _ = built
    doc = json.loads((out / "zoomsr_splits.json").read_text())
    tiles = [t for s in ("train", "val", "test", "buffer") for t in doc[s]]
    assert len(tiles) == len(set(tiles)) == 9
    from zoomsr.data.builder.splits import touching_pairs

    assert touching_pairs(doc) == []
    for split in ("train", "val", "test", "buffer"):
        assert sorted(p.tile for p in load_split(out, split)) == sorted(doc[split])


def test_harmonised_dn_from_safe_with_offset(builder_scene, tmp_path):
    """A baseline-04.00 SAFE (DN + 1000, BOA_ADD_OFFSET -1000) and the same scene as plain
    baseline-02.13 files give identical 16-bit outputs."""
    plain = tmp_path / "plain"
    shutil.copytree(builder_scene.s2["clear"], plain / "S2A_15TVG_20190801_0_L2A")
    make_safe(tmp_path / "safe", builder_scene.s2["late"], utc(2019, 8, 1))
    shifted = discover_sentinel2([tmp_path / "safe"])
    assert shifted[0].dn_offset == -1000
    hr = discover_highres([builder_scene.hr_path])
    config = BuildConfig(bands=("tci", "b08"), bbox=builder_scene.tile_p.lonlat_bounds)
    a = build_dataset(tmp_path / "a", Sources(discover_sentinel2([plain]), hr), config)
    b = build_dataset(tmp_path / "b", Sources(shifted, hr), config)
    assert a.counts["pairs"] == b.counts["pairs"] == 1  # --bbox limited it to one tile
    tile = builder_scene.tile_p
    np.testing.assert_array_equal(series(a.root, tile, "b08"), series(b.root, tile, "b08"))
    assert series(a.root, tile, "b08").max() > 4000  # the spot, not clipped


def test_tci_made_from_bands_when_missing(builder_scene, tmp_path):
    folder = tmp_path / "S2A_15TVG_20190801_0_L2A"
    shutil.copytree(builder_scene.s2["clear"], folder)
    for band in ("B04", "B03", "B02"):  # B02-B04 standing in: DN = TCI * 2500 / 255
        with rasterio.open(folder / "TCI.tif") as src:
            k = {"B04": 1, "B03": 2, "B02": 3}[band]
            data = (src.read(k).astype(np.float64) * 2500 / 255).round().astype(np.uint16)
            profile = src.profile | {"count": 1, "dtype": "uint16"}
        with rasterio.open(folder / f"{band}.tif", "w", **profile) as dst:
            dst.write(data, 1)
    (folder / "TCI.tif").unlink()
    (scene,) = discover_sentinel2([folder])
    assert "tci" not in scene.files
    config = BuildConfig(bbox=builder_scene.tile_p.lonlat_bounds)
    made = build_dataset(tmp_path / "made", Sources([scene], discover_highres(
        [builder_scene.hr_path])), config)
    ref = build_dataset(tmp_path / "ref", Sources(discover_sentinel2(
        [builder_scene.s2["clear"]]), discover_highres([builder_scene.hr_path])), config)
    tile = builder_scene.tile_p
    diff = series(made.root, tile).astype(int) - series(ref.root, tile).astype(int)
    assert made.counts["pairs"] == 1 and np.abs(diff).max() <= 1


def test_second_image_shares_the_series_or_not(builder_scene, tmp_path):
    """A 2019-10-01 capture of the same place shares the tile's series (all frames within 90
    days of it); a 2020-06-01 capture gets none (its window holds no frame)."""
    for name in ("m_4109363_ne_15_1_20191001.tif", "m_4109363_ne_15_1_20200601.tif"):
        shutil.copy(builder_scene.hr_path, tmp_path / name)
    hr = discover_highres([builder_scene.hr_path, tmp_path])
    config = BuildConfig(bbox=builder_scene.full_tiles[-1].lonlat_bounds)
    result = build_dataset(tmp_path / "out", Sources(discover_sentinel2(
        [builder_scene.root / "s2"]), hr), config)
    tile = str(builder_scene.full_tiles[-1])
    rec = next(t for t in load_index(result.root)["tiles"] if t["tile"] == tile)
    status = {i["image_id"][-8:]: i["status"] for i in rec["images"]}
    assert status == {"20200601": "series_outside_window", "20191001": "primary",
                      "20190904": "paired"}
    assert {p.image_id[-8:] for p in scan_pairs(result.root)} == {"20191001", "20190904"}
    # The newest usable capture defines the series: 2019-07-10 is 83 days before 2019-10-01.
    kept = [f["datetime"][:10] for f in rec["frames"] if f["status"] == "kept"]
    assert kept == ["2019-07-10", "2019-08-01", "2019-09-20"]
    assert check_dataset(result.root).errors == []


def test_resume_after_interruption(builder_scene, tmp_path):
    sources = sources_of(builder_scene)
    config = dataclass_replace(CONFIG, block_tiles=2)  # several blocks
    ref = build_dataset(tmp_path / "ref", sources, config, workers=1)
    out = tmp_path / "out"
    interrupted_build(out, sources, config, workers=1)
    first = sorted(out.glob("naip/*/*/rgb.png"))
    assert 1 <= len(first) < 9
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert mtimes
    # A killed writer's leftovers: a temporary file and a series without its rgb.png.
    done = {p.parent.name for p in first}
    todo = next(str(t) for t in builder_scene.full_tiles if str(t) not in done)
    tile_dir = out / "sentinel2" / todo
    tile_dir.mkdir(parents=True, exist_ok=True)
    (tile_dir / ".tci.png.abc123.png.tmp").write_bytes(b"partial")
    shutil.copy(ref.root / "sentinel2" / str(first[0].parent.name) / "tci.png",
                tile_dir / "tci.png")  # wrong content: must be replaced
    resumed = build_dataset(out, sources, config, workers=1)
    assert resumed.blocks_run < resumed.blocks_total  # finished blocks were not redone
    assert resumed.counts["pairs"] == 9
    assert not list(out.rglob("*.tmp"))
    for path, mtime in mtimes.items():
        if path.name == "rgb.png" or any(
                path.parent.name == p.parent.name for p in first):
            assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten"
    _assert_same_tree(ref.root, out)
    again = build_dataset(out, sources, config, workers=1)
    assert again.blocks_run == 0 and again.counts["pairs"] == 9
    assert again.counts["pairs_existing"] == 9 and "pairs_now" not in again.counts


def test_a_resume_after_an_input_changed_is_refused_naming_it(builder_scene, tmp_path):
    """The resume kept the pairs made from the old content and added pairs of the new: a
    silent mix."""
    import os

    hr = tmp_path / "naip" / builder_scene.hr_path.name
    hr.parent.mkdir()
    shutil.copy(builder_scene.hr_path, hr)
    sources = Sources(discover_sentinel2([builder_scene.root / "s2"]), discover_highres([hr]))
    config = dataclass_replace(CONFIG, block_tiles=2)
    out = tmp_path / "out"
    interrupted_build(out, sources, config, workers=1)
    st = hr.stat()
    os.utime(hr, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rewritten since
    sources = Sources(discover_sentinel2([builder_scene.root / "s2"]), discover_highres([hr]))
    with pytest.raises(InputError, match=rf"^{out}: {hr} changed since this build started "
                                         r"\(size or time\); pairs made so far hold its old "
                                         r"content: use --overwrite"):
        build_dataset(out, sources, config, workers=1)
    assert build_dataset(out, sources, config, workers=1, overwrite=True).counts["pairs"] == 9


def test_pairs_of_an_unfinished_block_are_made_again_from_a_changed_input(builder_scene,
                                                                          tmp_path):
    """With no finished block using it, a changed input was accepted, but the pairs the
    interrupted block had written from its old content were kept: a silent mix."""
    hr = tmp_path / "naip" / builder_scene.hr_path.name
    hr.parent.mkdir()
    shutil.copy(builder_scene.hr_path, hr)
    config = dataclass_replace(CONFIG, block_tiles=100)  # one block
    out = tmp_path / "out"
    sources = Sources(discover_sentinel2([builder_scene.root / "s2"]), discover_highres([hr]))
    interrupted_build(out, sources, config, workers=1, after=2)
    assert len(list(out.glob("naip/*/*/rgb.png"))) == 2
    with rasterio.open(hr, "r+") as ds:  # brighter, in place
        ds.write(np.clip(ds.read().astype(np.int32) + 40, 0, 255).astype(np.uint8))
    sources = Sources(discover_sentinel2([builder_scene.root / "s2"]), discover_highres([hr]))
    # interrupted once more before the old pairs were all made again: the next resume must
    # still know that the input changed (its record was updated at the first resume)
    interrupted_build(out, sources, config, workers=1, after=1)
    resumed = build_dataset(out, sources, config, workers=1)
    assert resumed.counts["pairs"] == 9 and "pairs_existing" not in resumed.counts
    _assert_same_tree(build_dataset(tmp_path / "ref", sources, config, workers=1).root, out)


def test_a_build_that_makes_no_pair_fails_and_is_no_dataset(cli, builder_scene, tmp_path):
    """An all-black high-res image: "0 pairs", exit 0, and the dataset's metadata and splits
    written, so the folder looked like a (broken) dataset."""
    with rasterio.open(builder_scene.hr_path) as src:
        profile = src.profile
    black = tmp_path / "naip" / builder_scene.hr_path.name
    black.parent.mkdir()
    with rasterio.open(black, "w", **profile) as dst:
        dst.write(np.zeros((profile["count"], profile["height"], profile["width"]), np.uint8))
    out = tmp_path / "out"
    code, stdout, err = cli("data", "build", out, "--s2", builder_scene.root / "s2", "--hr",
                            black, "--bands", "tci,b08", "--no-progress", "-j", "1")
    assert code == 2 and not stdout
    # (the fixture's "late" scene is outside every capture's window: said first)
    assert [line.split(":")[0] for line in err.strip().splitlines()] == ["warning", "error"]
    err = err.strip().splitlines()[-1]
    assert err.startswith(f"error: {out}: no pair could be made (tiles skipped: ")
    assert "highres_partly_outside_or_nodata" in err and err.strip().endswith("zoomsr_index.json")
    assert (out / "zoomsr_index.json").is_file()  # each tile's reason
    assert not (out / "zoomsr_dataset.json").exists() and not (out / "zoomsr_splits.json").exists()


def test_parallel_build_matches_serial(builder_scene, tmp_path):
    sources = sources_of(builder_scene)
    config = dataclass_replace(CONFIG, block_tiles=2)
    serial = build_dataset(tmp_path / "serial", sources, config, workers=1)
    parallel = build_dataset(tmp_path / "parallel", sources, config, workers=2)
    assert parallel.counts == serial.counts
    _assert_same_tree(serial.root, parallel.root)


def test_output_folder_rules(builder_scene, tmp_path):
    sources = sources_of(builder_scene)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty.*--overwrite"):
        build_dataset(busy, sources, CONFIG)
    out = tmp_path / "out"
    build_dataset(out, sources, CONFIG)
    other = dataclass_replace(CONFIG, max_cloud=0.5)
    # which setting, as build.json records it (an L1C build begun before the cloud mask was
    # read said only "other inputs or settings")
    with pytest.raises(InputError, match=r"other inputs or settings \(config.max_cloud: was "
                                         r"0.1, now 0.5\); use --overwrite"):
        build_dataset(out, sources, other)
    result = build_dataset(out, sources, other, overwrite=True)
    assert result.blocks_run == result.blocks_total
    assert load_index(out)["config"]["max_cloud"] == 0.5



def test_inputs_inside_the_output_are_refused_not_deleted(builder_scene, tmp_path):
    # Raw inputs kept as project/naip and project/sentinel2, built into project/: the build
    # writes there and --overwrite deletes those folders, the inputs with them.
    project = tmp_path / "project"
    hr = project / "naip" / builder_scene.hr_path.name
    hr.parent.mkdir(parents=True)
    shutil.copy(builder_scene.hr_path, hr)
    sources = Sources(discover_sentinel2([builder_scene.root / "s2"]), discover_highres([hr]))
    for overwrite in (False, True):
        with pytest.raises(InputError, match=rf"{hr}: an input of this build lies in "
                                             rf"{project.resolve() / 'naip'}.*another folder"):
            build_dataset(project, sources, CONFIG, overwrite=overwrite)
    assert hr.exists() and sorted(p.name for p in project.iterdir()) == ["naip"]


def test_an_unknown_dn_offset_is_asked_for_not_guessed(cli, builder_scene, tmp_path):
    """Band files with no metadata (ESA names, no SAFE, no STAC item): 0 was assumed, which
    leaves every 16-bit value of a product from 2022 on 0.1 reflectance too bright."""
    from zoomsr.data.builder import with_dn_offsets

    folder = tmp_path / "s2"
    folder.mkdir()
    for band in ("TCI", "B08"):
        shutil.copy(builder_scene.s2["clear"] / f"{band}.tif",
                    folder / f"T15TVG_20230801T170000_{band}_10m.tif")
    scenes = discover_sentinel2([folder])
    assert [s.dn_offset for s in scenes] == [None]
    sources = Sources(scenes, discover_highres([builder_scene.hr_path]))
    b08 = dataclass_replace(CONFIG, bands=("tci", "b08"))
    with pytest.raises(InputError, match=r"_B08_10m.tif: no metadata gives the processing "
                       r"baseline.*sensed from 25 January 2022, or reprocessed\), and this "
                       r"scene is from 2023-08-01; pass --dn-offset 1000.*--dn-offset 0"):
        build_dataset(tmp_path / "out", sources, b08)
    assert not (tmp_path / "out").exists()
    given = with_dn_offsets(sources, dataclass_replace(b08, dn_offset=1000))
    assert given.sentinel2[0].dn_offset == -1000  # added to DN: ESA's BOA_ADD_OFFSET
    # TCI alone has no offset: nothing to ask
    assert with_dn_offsets(sources, dataclass_replace(CONFIG, bands=("tci",))) \
        .sentinel2[0].dn_offset is None
    with pytest.raises(ConfigError, match="dn_offset must be 0 or 1000"):
        BuildConfig(dn_offset=-1000)
    # a band missing from the scene is named as such (the offset question raised KeyError)
    (folder / "T15TVG_20230801T170000_B08_10m.tif").unlink()
    no_b08 = Sources(discover_sentinel2([folder]), sources.highres)
    with pytest.raises(InputError, match=r"no file for band\(s\) b08 \(has tci\)"):
        build_dataset(tmp_path / "out", no_b08, b08)
    shutil.copy(builder_scene.s2["clear"] / "B08.tif",
                folder / "T15TVG_20230801T170000_B08_10m.tif")
    # The CLI: one line and exit 2, then --dn-offset, recorded in the index.
    args = ["data", "build", tmp_path / "cli", "--s2", folder, "--hr", builder_scene.hr_path,
            "--bands", "tci,b08", "--window-days", "1500", "--no-progress", "-j", "1"]
    code, _, err = cli(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--dn-offset 1000" in err
    code, _, err = cli(*args, "--dn-offset", "1000")
    assert code == 0, err
    index = load_index(tmp_path / "cli")
    assert index["config"]["dn_offset"] == 1000
    assert [s["dn_offset"] for s in index["sentinel2"]] == [-1000]


def test_frame_reasons_of_a_failed_tile_are_those_of_its_nearest_capture(builder_scene,
                                                                         tmp_path):
    """A newer capture with no Sentinel-2 near it: the reasons of a tile that got too few
    frames were measured from it, so its cloudy frames read "outside_window"."""
    newer = tmp_path / builder_scene.hr_path.name.replace("20190904", "20210601")
    shutil.copy(builder_scene.hr_path, newer)
    config = dataclass_replace(CONFIG, min_frames=3)
    tile = builder_scene.cloudy_tile
    reasons = {}
    for name, hr in (("one", [builder_scene.hr_path]), ("two", [builder_scene.hr_path, newer])):
        sources = Sources(discover_sentinel2([builder_scene.root / "s2"]), discover_highres(hr))
        out = build_dataset(tmp_path / name, sources, config, workers=1).root
        rec = next(t for t in load_index(out)["tiles"] if t["tile"] == str(tile))
        assert rec["reason"] == "too_few_frames"
        reasons[name] = {f["datetime"][:10]: f["status"] for f in rec["frames"]}
    assert reasons["one"]["2019-09-20"] == "cloudy"
    assert reasons["two"] == reasons["one"]


def test_a_coarse_high_res_image_is_warned_about(builder_scene, tmp_path):
    """A "high-res" image coarser than Sentinel-2 (30 Web Mercator m, 22 m on the ground
    here) was built into blurry targets without a word."""
    coarse = tmp_path / builder_scene.hr_path.name
    with rasterio.open(builder_scene.hr_path) as src:
        factor = 30 / src.res[0]
        shape = (src.count, round(src.height / factor), round(src.width / factor))
        data = src.read(out_shape=shape, resampling=Resampling.average)
        profile = src.profile | {"height": shape[1], "width": shape[2],
                                 "transform": src.transform @ src.transform.scale(factor)}
    with rasterio.open(coarse, "w", **profile) as dst:
        dst.write(data)
    sources = Sources(discover_sentinel2([builder_scene.root / "s2"]), discover_highres([coarse]))
    with pytest.warns(ZoomsrWarning, match=rf"{coarse}: pixels of 22.4 m on the ground, coarser "
                      r"than the .* m of the high-res targets here \(--scale 4\), and than "
                      r"Sentinel-2's 10 m itself"):
        build_dataset(tmp_path / "out", sources, CONFIG)
    # the real-size image of the other tests is not warned about (the "late" scene is)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ZoomsrWarning)
        build_dataset(tmp_path / "fine", sources_of(builder_scene), CONFIG)
    assert [str(w.message).split(":")[0] for w in caught] == [
        "1 Sentinel-2 scene(s) used by no pair"]


def test_a_build_started_before_unknown_dn_offsets_resumes(builder_scene, tmp_path):
    """An unfinished build whose state was written before offsets could be unknown (no
    config.dn_offset; 0 for scenes it read no 16-bit band of) is resumed, not refused as
    "built with other inputs or settings"."""
    from zoomsr.data.builder.build import _fingerprint, _prepare_root
    from zoomsr.data.layout import BUILD_STATE_DIR

    folder = tmp_path / "s2"
    folder.mkdir()
    shutil.copy(builder_scene.s2["clear"] / "TCI.tif", folder / "T15TVG_20190801T170000_TCI.tif")
    sources = Sources(discover_sentinel2([folder]), discover_highres([builder_scene.hr_path]))
    config = dataclass_replace(CONFIG, bands=("tci",))
    now = _fingerprint(sources, config)
    assert now["sentinel2"][0]["dn_offset"] is None
    old = json.loads(json.dumps(now))
    del old["config"]["dn_offset"]
    old["sentinel2"][0]["dn_offset"] = 0
    root = tmp_path / "out"
    (root / BUILD_STATE_DIR).mkdir(parents=True)
    (root / BUILD_STATE_DIR / "build.json").write_text(json.dumps(old))
    (root / "naip").mkdir()
    _prepare_root(root, now, False, sources)  # resumed: no error
    other = json.loads(json.dumps(old))
    other["config"]["max_cloud"] = 0.9
    (root / BUILD_STATE_DIR / "build.json").write_text(json.dumps(other))
    with pytest.raises(InputError, match="other inputs or settings"):
        _prepare_root(root, now, False, sources)

def test_bad_inputs_are_clear(builder_scene, tmp_path):
    s2 = discover_sentinel2([builder_scene.root / "s2"])
    hr = discover_highres([builder_scene.hr_path])
    # No overlap: a high-res image elsewhere.
    far = tmp_path / "m_far_20190904.tif"
    with rasterio.open(builder_scene.hr_path) as src:
        profile = src.profile | {"transform": src.transform @ src.transform.translation(
            20000, 0)}
        data = src.read()
    with rasterio.open(far, "w", **profile) as dst:
        dst.write(data)
    with pytest.raises(InputError, match="no overlap"):
        build_dataset(tmp_path / "a", Sources(s2, discover_highres([far])), CONFIG)
    # Overlap but no date within the window.
    late = [s for s in s2 if s.date == dt.date(2020, 3, 1)]
    with pytest.raises(InputError, match="no Sentinel-2 scene within 90 days.*2019-09-04"):
        build_dataset(tmp_path / "b", Sources(late, hr), CONFIG)
    with pytest.raises(InputError, match="no file for band.*b11"):
        build_dataset(tmp_path / "c", Sources(s2, hr), BuildConfig(bands=("tci", "b11")))
    with pytest.raises(InputError, match="no Sentinel-2 scenes"):
        build_dataset(tmp_path / "d", Sources([], hr), CONFIG)
    with pytest.raises(ConfigError, match="tci"):
        BuildConfig(bands=("b08",))
    with pytest.raises(ConfigError, match="max_cloud"):
        BuildConfig(max_cloud=2)
    # A file that became unreadable after discovery: the error names it.
    broken = tmp_path / "m_broken_20190904.tif"
    shutil.copy(builder_scene.hr_path, broken)
    (img,) = discover_highres([broken])
    broken.write_bytes(b"garbage")
    with pytest.raises(DataError, match="m_broken_20190904.tif: cannot read"):
        build_dataset(tmp_path / "e", Sources(s2, [img]), CONFIG)


def dataclass_replace(config: BuildConfig, **changes) -> BuildConfig:
    import dataclasses

    return dataclasses.replace(config, **changes)


def _assert_same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    files_b = sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert files_a == files_b and files_a
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(p) for p in files_a], shallow=False)
    assert mismatch == [] and errors == []
    assert (json.loads((a / "zoomsr_splits.json").read_text())
            == json.loads((b / "zoomsr_splits.json").read_text()))


def test_brightness_test_without_scl(builder_scene, tmp_path):
    """L1C-like scenes (no SCL): the brightness test finds the bright cloud over one tile."""
    for name in ("clear", "cloudy"):
        src = builder_scene.s2[name]
        dst = tmp_path / "s2" / src.name.replace("L2A", "L1C")
        dst.mkdir(parents=True)
        for band in ("TCI", "B08"):
            shutil.copy(src / f"{band}.tif", dst / f"{band}.tif")
    scenes = discover_sentinel2([tmp_path / "s2"])
    assert {s.level for s in scenes} == {"L1C"} and all("scl" not in s.files for s in scenes)
    # copied without their STAC items: their B08's offset is the user's to give
    result = build_dataset(tmp_path / "out", Sources(scenes, discover_highres(
        [builder_scene.hr_path])), dataclass_replace(CONFIG, dn_offset=0))
    cloudy = [f for f in frames_of(result.root, builder_scene.cloudy_tile)
              if f["datetime"].startswith("2019-09-20")]
    assert cloudy[0]["cloud_method"] == "brightness" and cloudy[0]["status"] == "cloudy"
    assert result.counts["frames_cloudy"] == 1 and result.counts["frames_kept"] == 17
    with pytest.raises(InputError, match="--cloud scl needs an SCL"):
        build_dataset(tmp_path / "x", Sources(scenes, discover_highres([builder_scene.hr_path])),
                      BuildConfig(cloud_method="scl"))


def test_l1c_cloud_mask_marks_clouds_the_brightness_test_cannot_see(builder_scene, tmp_path):
    """L1C SAFE products from baseline 04.00 carry MSK_CLASSI: `--cloud auto` uses it. Both
    dates here have the clear date's TCI (nothing bright), and the second's mask flags the
    cloud over one tile as opaque (and the snow band everywhere, which is not cloud)."""
    with rasterio.open(builder_scene.s2["cloudy"] / "SCL.tif") as ds:
        scl = ds.read(1)
    mask = np.stack([np.isin(scl, (8, 9)), scl == 10, np.ones_like(scl, bool)]).astype(np.uint8)
    assert mask[0].any()
    clear_mask = np.zeros_like(mask)
    clear_mask[2] = 1  # snow only
    scenes_dir = tmp_path / "s2"
    make_safe(scenes_dir, builder_scene.s2["clear"], utc(2019, 8, 1), level="L1C",
              cloud_mask=clear_mask)
    make_safe(scenes_dir, builder_scene.s2["clear"], utc(2019, 9, 20), level="L1C",
              cloud_mask=mask)
    scenes = discover_sentinel2([scenes_dir])
    assert [(s.level, "msk_classi" in s.files, "scl" in s.files) for s in scenes] == [
        ("L1C", True, False)] * 2
    hr = discover_highres([builder_scene.hr_path])
    result = build_dataset(tmp_path / "out", Sources(scenes, hr), CONFIG)
    frames = frames_of(result.root, builder_scene.cloudy_tile)
    cloudy = [f for f in frames if f["datetime"].startswith("2019-09-20")]
    assert cloudy[0]["cloud_method"] == "msk_classi" and cloudy[0]["status"] == "cloudy"
    assert result.counts["frames_cloudy"] == 1
    # the brightness test, forced, sees nothing there: the mask was what found the cloud
    seen = build_dataset(tmp_path / "bright", Sources(scenes, hr),
                         dataclass_replace(CONFIG, cloud_method="brightness"))
    assert seen.counts.get("frames_cloudy", 0) == 0
    bare = tmp_path / "bare"
    make_safe(bare, builder_scene.s2["clear"], utc(2019, 8, 1), level="L1C")
    with pytest.raises(InputError, match="--cloud msk_classi needs its L1C cloud mask"):
        build_dataset(tmp_path / "x", Sources(discover_sentinel2([bare]), hr),
                      dataclass_replace(CONFIG, cloud_method="msk_classi"))


def test_an_interrupted_build_says_what_it_kept_and_how_to_go_on(cli, builder_scene, tmp_path,
                                                                 monkeypatch):
    """Ctrl-C during `data build`: one line with the pairs kept and the command to go on (it
    said only "interrupted"); the same command then finishes the build."""
    from zoomsr.data.builder import build as build_module

    real = build_module.build_dataset

    def interrupted(*args, **kwargs):
        interrupted_build(*args, build=real, **kwargs)  # one block done, then stopped
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "build_dataset", interrupted)
    out = tmp_path / "out"
    argv = ("data", "build", out, "--s2", builder_scene.root / "s2", "--hr",
            builder_scene.hr_path, "--block-tiles", "2", "-j", "1", "--no-progress")
    code, _, err = cli(*argv)
    kept = len(list(out.glob("naip/*/*/rgb.png")))
    assert code == 130 and 1 <= kept < 9
    assert err.strip().splitlines()[-1:] == [  # (after the "late" scene's warning)
        f"interrupted: {kept} finished pair(s) kept in {out}; the same command finishes the "
        "build without redoing them"]
    monkeypatch.setattr(build_module, "build_dataset", real)
    code, stdout, _ = cli(*argv)
    assert code == 0 and f"{kept} already there" in stdout


def test_an_unfinished_build_is_read_at_its_own_scale(builder_scene, tmp_path):
    """The metadata (which records --scale) is written last: until then the build's settings
    say it (read at the default 4, every 64 px NAIP chip of a --scale 2 build was
    'unreadable')."""
    from zoomsr.data.info import dataset_info
    from zoomsr.data.layout import dataset_scale

    config = dataclass_replace(CONFIG, block_tiles=2, scale=2)
    out = tmp_path / "out"
    interrupted_build(out, sources_of(builder_scene), config, workers=1)
    assert dataset_scale(out) == 2
    info = dataset_info(out, progress=False)
    assert info.unfinished and info.scale == 2 and info.unreadable == [] and info.n_pairs >= 1


def test_sources_built_by_hand_without_footprints_build_as_discovered(builder_scene, tmp_path):
    """S2Scene / HRImage made in Python without a footprint (or pixel size): read from their
    files (plan_blocks raised AttributeError on None)."""
    found = Sources(discover_sentinel2([builder_scene.s2["clear"]]),
                    discover_highres([builder_scene.hr_path]))
    bare = Sources([dataclass_replace(s, footprint=None) for s in found.sentinel2],
                   [dataclass_replace(i, footprint=None, pixel_m=None) for i in found.highres])
    config = BuildConfig(bbox=builder_scene.tile_p.lonlat_bounds)
    ref = build_dataset(tmp_path / "ref", found, config)
    made = build_dataset(tmp_path / "made", bare, config)
    assert made.counts == ref.counts and made.counts["pairs"] == 1
    _assert_same_tree(ref.root, made.root)
    from zoomsr.data.builder.build import plan_blocks  # public too: the same plan

    assert [j.key for j in plan_blocks(tmp_path / "p", bare, config)] == [
        j.key for j in plan_blocks(tmp_path / "p", found, config)]
