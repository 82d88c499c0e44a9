"""Input discovery, radiometry detection and refusals, on generated and real Sentinel-2 files."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from infer_helpers import REAL_S2, crop, read, write_b08, write_frames
from rasterio.windows import Window

from zoomsr.errors import ConfigError, DataError
from zoomsr.inference import InferenceOptions, Tiling, discover_frames, run_inference
from zoomsr.inference.inputs import to_tci


def test_real_folder_prefers_tci_and_reads_level(real_scene):
    found = discover_frames(real_scene)
    assert len(found.frames) == 1
    frame = found.frames[0]
    assert frame.label == "TCI.tif" and frame.radiometry == "tci" and frame.level == "L2A"
    assert frame.crs.to_epsg() == 32629
    ignored = " ".join(found.ignored)
    assert "B08.tif" in ignored and "B02.tif" in ignored  # B08: the default model is RGB
    assert frame.clouds is not None and frame.clouds.path.name == "SCL.tif"  # used to choose frames
    assert frame.extras == ()


def test_real_band_files_detected_as_dn_and_match_tci(shared_dir):
    """B04/B03/B02 DNs (baseline 02.14 from the STAC item: no offset) reproduce ESA's TCI."""
    src = shared_dir / REAL_S2
    frame = discover_frames([src / "B04.tif", src / "B03.tif", src / "B02.tif"]).frames[0]
    assert frame.radiometry == "dn" and frame.dn_offset == 0.0 and frame.level == "L2A"
    assert [p.name for p in frame.paths] == ["B04.tif", "B03.tif", "B02.tif"]
    window = Window(300, 300, 200, 200)
    bands = np.stack([rasterio.open(p).read(1, window=window) for p in frame.paths])
    tci = rasterio.open(src / "TCI.tif").read(window=window).astype(np.float32) / 255
    converted = to_tci(bands, "dn", frame.dn_offset)
    unsaturated = (tci < 250 / 255) & (tci > 0)
    assert unsaturated.mean() > 0.3
    assert np.abs(converted - tci)[unsaturated].mean() < 4 / 255


def test_real_scene_native_grid_and_reprojection(real_scene, tmp_path, tiny_model):
    opts = {"tiling": Tiling(32, 8), "progress": False}
    out = tmp_path / "native.tif"
    run_inference(real_scene, out, tiny_model(1), InferenceOptions(native_grid=True, **opts))
    data, mask, meta = read(out)
    with rasterio.open(real_scene / "TCI.tif") as src:
        assert meta["crs"] == src.crs
        assert np.allclose(tuple(meta["bounds"]), tuple(src.bounds))
    assert meta["transform"].a == pytest.approx(25.0) and data.shape == (3, 96, 96)
    # The file is decimated to 100 m: onto the training grid it would be blown up 10x a side
    with pytest.raises(DataError, match=r"TCI.tif: pixels of (99.8|100) m on the.*-native-grid"):
        run_inference(real_scene, tmp_path / "3857.tif", tiny_model(1),
                      InferenceOptions(**opts))
    # Its pixels as the 10 m they were: reprojected from UTM onto the training grid
    from affine import Affine

    for f in real_scene.glob("*.tif"):
        with rasterio.open(f, "r+") as ds:
            t = ds.transform
            ds.transform = Affine(t.a / 10, 0, t.c, 0, t.e / 10, t.f)
    out = tmp_path / "3857.tif"
    result = run_inference(real_scene, out, tiny_model(1), InferenceOptions(**opts))
    _, mask, meta = read(out)
    # 240 m at 29.7 N: 277 Web-Mercator m, 29 px of 9.555 m, more with the rotation
    assert meta["crs"].to_epsg() == 3857 and 29 <= result.grid.width <= 32
    assert 0.5 < (mask > 0).mean() < 1.0  # the UTM footprint, rotated into Web-Mercator


def test_real_float_reflectance_x10000_is_refused(shared_dir, tmp_path, tiny_model):
    path = shared_dir / "data/real/misc/s2-like-10m-cog.tif"
    with pytest.raises(DataError, match=r"float data with values up to \d+: .*--radiometry dn"):
        discover_frames(path, rgb_bands=(3, 2, 1))
    with pytest.raises(DataError, match="--dn-offset"):
        discover_frames(path, rgb_bands=(3, 2, 1), radiometry="dn")
    crop_path = crop(path, tmp_path / "s2like.tif", Window(100, 50, 48, 40))
    opts = InferenceOptions(radiometry="dn", dn_offset=0, rgb_bands=(3, 2, 1),
                            tiling=Tiling(32, 8), progress=False)
    result = run_inference(crop_path, tmp_path / "o.tif", tiny_model(1), opts)
    assert result.grid.crs.to_epsg() == 3857  # EPSG:4326 reprojected


def test_multiband_without_labels_needs_rgb_bands(shared_dir):
    with pytest.raises(DataError, match="--rgb-bands"):
        discover_frames(shared_dir / "data/real/misc/s2-like-10m-cog.tif", radiometry="dn")


def test_dn_offset_from_baseline_in_name_and_tags(tmp_path):
    (p,) = write_frames(tmp_path / "a", n=1, dtype="uint16")
    named = p.with_name("S2B_MSIL2A_20230111T121649_N0509_R066_T27PTS_rgb.tif")
    p.rename(named)
    frame = discover_frames(named).frames[0]
    assert frame.dn_offset == 1000 and frame.level == "L2A"
    (q,) = write_frames(tmp_path / "b", n=1, dtype="uint16")
    with rasterio.open(q, "r+") as ds:
        ds.update_tags(BOA_ADD_OFFSET="-1000")
    assert discover_frames(q).frames[0].dn_offset == 1000
    with rasterio.open(q, "r+") as ds:
        ds.update_tags(BOA_ADD_OFFSET="0")
    zero = discover_frames(q).frames[0].dn_offset
    assert zero == 0 and str(zero) == "0.0"  # (a tag of 0 was recorded as -0.0)
    with rasterio.open(q, "r+") as ds:
        ds.update_tags(BOA_ADD_OFFSET="-1000")
    (r,) = write_frames(tmp_path / "c", n=1, dtype="uint16")
    with pytest.raises(DataError, match="--dn-offset 0 or --dn-offset 1000"):
        discover_frames(r)
    assert discover_frames(r, dn_offset=0).frames[0].radiometry == "dn"
    # --dn-offset is for the files whose metadata does not say: the others keep theirs, so a
    # series mixing baselines (one date named _N0301_, another without metadata) works
    old = r.with_name("S2B_MSIL2A_20200111T121649_N0301_R066_T27PTS_rgb.tif")
    (o,) = write_frames(tmp_path / "d", n=1, dtype="uint16", seed=1)
    o.rename(old)
    frames = discover_frames([old, r, q], dn_offset=1000).frames
    assert {f.paths[0]: f.dn_offset for f in frames} == {old: 0, r: 1000, q: 1000}
    # and extra bands too: a B08 tagged with its offset keeps it beside --dn-offset 0
    from zoomsr.inference.inputs.discover import _aux_band

    with rasterio.open(q) as ds:
        band = _aux_band("b08", q, ds, 1, 0.0, frames[0], "auto")
    assert band.dn_offset == 1000


@pytest.mark.parametrize("offset", [-1000, 500, 1])
def test_dn_offset_is_0_or_1000(tmp_path, offset):
    """ESA's metadata says BOA_ADD_OFFSET=-1000; users copying it get told the convention."""
    (p,) = write_frames(tmp_path, n=1, dtype="uint16")
    with pytest.raises(ConfigError, match=r"must be 0 or 1000.*BOA_ADD_OFFSET=-1000"):
        discover_frames(p, dn_offset=offset)
    with pytest.raises(ConfigError, match=r"must be 0 or 1000"):  # before any model is built
        InferenceOptions(dn_offset=offset)


def test_dn_offset_without_digital_numbers_is_noted(tmp_path):
    """Not an error: one --dn-offset may serve a --scenes job whose other scenes need it."""
    paths = write_frames(tmp_path, n=2)  # uint8 TCI
    found = discover_frames(paths, dn_offset=1000)
    assert found.ignored == ["--dn-offset 1000: no input holds 16-bit digital numbers (tci)"]


def test_zoomsr_outputs_are_not_taken_as_dates(frames_3857, tiny_model, tmp_path):
    """An earlier run's output (and LR mosaic) written into the input folder is left out with a
    note; named explicitly, it is refused."""
    folder = frames_3857[0].parent
    opts = InferenceOptions(tiling=Tiling(32, 8), progress=False, save_lr=True)
    run_inference(folder, folder / "sr.tif", tiny_model(2), opts)
    found = discover_frames(folder)
    assert [f.paths[0] for f in found.frames] == sorted(frames_3857)
    assert sum("a zoomsr output" in line for line in found.ignored) == 2
    with pytest.raises(DataError, match=r"sr.lr.tif: a zoomsr output"):
        discover_frames([*frames_3857, folder / "sr.lr.tif"])


def test_float_reflectance_accepted_and_wrong_scaling_refused(tmp_path):
    (p,) = write_frames(tmp_path / "a", n=1, dtype="float32")
    assert discover_frames(p).frames[0].radiometry == "reflectance"
    with rasterio.open(p, "r+") as ds:
        ds.write(ds.read() * 10000)
    with pytest.raises(DataError, match=f"{p.name}: float data with values up to"):
        discover_frames(p)


def test_wrong_band_count(tmp_path):
    path = tmp_path / "gray.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8",
                       crs="EPSG:3857", transform=rasterio.Affine(10, 0, 0, 0, -10, 0)) as ds:
        ds.write(np.ones((1, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"gray.tif: 1 band\(s\); expected a 3-band"):
        discover_frames(path)


def test_corrupt_and_missing_files(tmp_path):
    (p,) = write_frames(tmp_path / "a", n=1, size=(64, 64))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=str(p.name)):
        discover_frames(p)
    with pytest.raises(DataError, match="input not found"):
        discover_frames(tmp_path / "missing.tif")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no raster found"):
        discover_frames(empty)
    with pytest.raises(DataError, match="no input"):
        discover_frames([])


def test_manifests(tmp_path):
    paths = write_frames(tmp_path / "a", n=2)
    txt = tmp_path / "list.txt"
    txt.write_text(f"# two dates\n{paths[0]}\n{paths[1].relative_to(tmp_path)}\n")
    assert [f.label for f in discover_frames(txt).frames] == [p.name for p in paths]
    bands = write_frames(tmp_path / "b", n=3, dtype="uint16")
    for b in bands:  # turn each into a single-band file
        with rasterio.open(b) as ds:
            prof, arr = ds.profile | {"count": 1}, ds.read(1)
        prof.pop("photometric", None)
        with rasterio.open(b, "w", **prof) as ds:
            ds.write(arr, 1)
    js = tmp_path / "frames.json"
    js.write_text(json.dumps([{"red": str(bands[0]), "green": str(bands[1]),
                               "blue": str(bands[2])}, str(paths[0])]))
    frames = discover_frames(js, dn_offset=0).frames
    assert frames[0].radiometry == "dn" and len(frames[0].paths) == 3
    assert frames[1].radiometry == "tci"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"b8a": str(bands[0])}]))
    with pytest.raises(DataError, match="unknown band key 'b8a'"):
        discover_frames(bad)
    bad.write_text(json.dumps([{"nir": str(bands[0])}]))  # B08 alone is no frame
    with pytest.raises(DataError, match="red, green, blue missing"):
        discover_frames(bad)
    with pytest.raises(DataError, match="given twice"):
        discover_frames([paths[0], paths[0]])
    extra = tmp_path / "extra.json"  # a B08 for a TCI-only model: left out with a note
    extra.write_text(json.dumps([{"tci": str(paths[0]), "b08": str(bands[0])}]))
    found = discover_frames(extra)
    assert found.frames[0].extras == ()
    assert found.ignored == [f"{bands[0]}: B08, a band this model does not take"]


def test_band_files_of_one_date_are_grouped(tmp_path):
    bands = write_frames(tmp_path / "b", n=3, dtype="uint16")
    folder = tmp_path / "scene"
    folder.mkdir()
    for src, name in zip(bands, ("B04", "B03", "B02"), strict=True):
        with rasterio.open(src) as ds:
            prof, arr = ds.profile | {"count": 1}, ds.read(1)
        prof.pop("photometric", None)
        with rasterio.open(folder / f"T31_20240101_{name}.tif", "w", **prof) as ds:
            ds.write(arr, 1)
    frames = discover_frames(folder, dn_offset=0).frames
    assert len(frames) == 1 and [p.name[-7:-4] for p in frames[0].paths] == ["B04", "B03", "B02"]
    (folder / "T31_20240101_B03.tif").unlink()
    with pytest.raises(DataError, match="lack green"):
        discover_frames(folder, dn_offset=0)


def test_stac_item_chosen_per_date_in_a_flat_folder(tmp_path):
    """Two dates' band files and STAC items in one folder: each file gets its own item's
    processing baseline (02.14: no offset; 05.09: +1000)."""
    for date, baseline in (("20200219", "02.14"), ("20230111", "05.09")):
        paths = write_frames(tmp_path / date, n=1, dtype="uint16")
        names = {}
        for band in ("B04", "B03", "B02"):
            target = tmp_path / f"T31UDQ_{date}_{band}.tif"
            with rasterio.open(paths[0]) as src:
                profile = src.profile | {"count": 1}
                data = src.read(1)
            with rasterio.open(target, "w", **profile) as dst:
                dst.write(data, 1)
            names[band] = target.name
        item = {"type": "Feature", "id": date,
                "properties": {"s2:processing_baseline": baseline},
                "assets": {b.lower(): {"href": f"./{n}"} for b, n in names.items()}}
        (tmp_path / f"item_{date}.json").write_text(json.dumps(item))
    frames = discover_frames(sorted(tmp_path.glob("T31UDQ_*.tif"))).frames
    offsets = {f.paths[0].name.split("_")[1]: f.dn_offset for f in frames}
    assert offsets == {"20200219": 0.0, "20230111": 1000.0}
    # With only the 2020 item left, that item does not speak for the 2023 files: the folder's
    # only item applies to files its assets name, or whose names hold its date or none.
    (tmp_path / "item_20230111.json").unlink()
    item = json.loads((tmp_path / "item_20200219.json").read_text())
    item["assets"] = {"b04": {"href": "./elsewhere.tif"}}  # names none of the files
    item["properties"]["datetime"] = "2020-02-19T10:00:00Z"
    (tmp_path / "item_20200219.json").write_text(json.dumps(item))
    with pytest.raises(DataError, match=r"20230111_B04.tif: 16-bit.*no metadata"):
        discover_frames(sorted(tmp_path.glob("T31UDQ_20230111_*.tif")))
    frame = discover_frames(sorted(tmp_path.glob("T31UDQ_20200219_*.tif"))).frames[0]
    assert frame.dn_offset == 0.0  # dated like the item


def test_reader_releases_what_it_opened_when_a_file_is_gone(tmp_path):
    from zoomsr.inference.grid import plan_grid
    from zoomsr.inference.reader import SceneReader

    paths = write_frames(tmp_path / "in", n=3, size=(24, 24))
    frames = discover_frames(paths).frames
    paths[2].unlink()
    reader = SceneReader(frames, plan_grid(frames, 4))
    with pytest.raises(DataError, match="S2_20240103_TCI.tif: cannot open"):
        reader.read(Window(0, 0, 24, 24))
    assert reader._sources is None


def _safe(root, date: str, baseline: str, source):
    """An L2A SAFE product (ESA's layout) of one date: B02-B04 at 10 m, B04 and SCL at 20 m,
    a cloud mask in QI_DATA; bands cut from ``source`` (a 3-band uint16 file)."""
    safe = root / f"S2B_MSIL2A_{date}T121649_{baseline}_R066_T27PTS_{date}T141239.SAFE"
    granule = safe / "GRANULE" / f"L2A_T27PTS_A030591_{date}T121649"
    with rasterio.open(source) as src:
        profile = src.profile | {"count": 1, "photometric": "MINISBLACK"}
        data = src.read()
    files = {"R10m": [("B04", 0), ("B03", 1), ("B02", 2)], "R20m": [("B04", 0), ("SCL", 0)]}
    for folder, bands in files.items():
        (granule / "IMG_DATA" / folder).mkdir(parents=True)
        for band, i in bands:
            name = f"T27PTS_{date}T121649_{band}_{folder[1:]}.tif"
            scl = band == "SCL"  # 8-bit classes
            with rasterio.open(granule / "IMG_DATA" / folder / name, "w",
                               **profile | ({"dtype": "uint8"} if scl else {})) as dst:
                dst.write((data[i] % 12).astype(np.uint8) if scl else data[i], 1)
    (granule / "QI_DATA").mkdir()
    with rasterio.open(granule / "QI_DATA" / "MSK_CLDPRB_20m.tif", "w", **profile) as dst:
        dst.write(data[0], 1)
    return safe


def test_safe_products_are_read_from_their_img_data(tmp_path):
    """A .SAFE folder, or a folder of them (one per date): the bands in GRANULE/*/IMG_DATA, the
    10 m ones kept, QI_DATA left alone, each date's offset from its baseline in the name."""
    (source,) = write_frames(tmp_path / "src", n=1, dtype="uint16")
    new = _safe(tmp_path / "products", "20230111", "N0509", source)
    _safe(tmp_path / "products", "20200219", "N0214", source)
    found = discover_frames(new)
    (frame,) = found.frames
    assert [p.parent.name for p in frame.paths] == ["R10m"] * 3
    assert frame.dn_offset == 1000 and frame.clouds is not None
    assert any("B04_20m.tif: red also at a finer resolution" in line for line in found.ignored)
    frames = discover_frames(tmp_path / "products").frames
    assert sorted((f.paths[0].name[7:15], f.dn_offset) for f in frames) == [
        ("20200219", 0.0), ("20230111", 1000.0)]


def test_coarse_inputs_are_refused_on_the_training_grid(shared_dir, frames_3857, tiny_model,
                                                         tmp_path):
    """A 300 m Landsat image would become a 31x larger job on the 9.555 m training grid: refused
    with the way out; kept on its own grid with --native-grid."""
    from zoomsr.inference.grid import ground_resolution_m, plan_grid

    landsat = shared_dir / "data/real/misc/RGB.byte.tif"
    (frame,) = discover_frames(landsat).frames
    assert ground_resolution_m(frame) == pytest.approx(300, rel=0.01)
    with pytest.raises(DataError, match=r"byte.tif: pixels of (299|300) m on the.*-native-grid"):
        plan_grid([frame], 4)
    assert plan_grid([frame], 4, native=True).resolution == pytest.approx(300, rel=1e-3)
    # Web-Mercator metres are ground metres x 1 / cos(latitude)
    (f3857,) = discover_frames(frames_3857[0]).frames
    with rasterio.open(frames_3857[0]) as ds:
        lat = rasterio.warp.transform(ds.crs, "EPSG:4326", [ds.transform.c], [ds.transform.f])[1][0]
    assert ground_resolution_m(f3857) == pytest.approx(
        f3857.resolution[0] * np.cos(np.radians(lat)), rel=0.01)
    # A 20 m product in square degrees at 70 N (GDAL's default when warping to EPSG:4326):
    # 14.8 m east-west, 43 m north-south; the finer side counts, so it is accepted
    from affine import Affine

    (polar,) = write_frames(tmp_path / "polar", n=1, size=(20, 20), crs="EPSG:4326",
                            transform=Affine(0.00039, 0, 20.0, 0, -0.00039, 70.0))
    (fp,) = discover_frames(polar).frames
    assert ground_resolution_m(fp) == pytest.approx(14.8, abs=0.2)
    assert plan_grid([fp], 4).width > 20


def test_read_cache_holds_the_block_rows_a_window_row_spans_per_reader(tmp_path,
                                                                       monkeypatch):
    """Per file: (window rows / block rows, rounded up, + 1) block rows x the strip's blocks x
    bands x bytes, in the file's pixels (its own pixel size, not the grid's extent over its
    own); warped files also the WarpedVRT's blocks; times the readers (each row thread reads
    through its own datasets, and GDAL keeps decoded blocks per dataset, so overlapping rows
    in different threads share none); plus the output strip; clamped."""
    from affine import Affine
    from rasterio.shutil import copy as rio_copy
    from rasterio.warp import transform_bounds

    from zoomsr.inference import reader
    from zoomsr.inference.grid import pixel_sides_in, plan_grid
    from zoomsr.inference.reader import MAX_CACHE_BYTES, MIN_CACHE_BYTES, read_cache_bytes

    paths = []
    for p in write_frames(tmp_path / "strips", n=2, size=(1100, 900)):
        paths.append(tmp_path / p.name)
        rio_copy(p, paths[-1], driver="GTiff", tiled=True, blockxsize=256, blockysize=256)
        with rasterio.open(paths[-1]) as ds:
            assert ds.block_shapes[0] == (256, 256)
            assert (ds.height, ds.width) == (1100, 900)
    frames = discover_frames(paths).frames
    grid = plan_grid(frames, 4)
    assert read_cache_bytes(frames, grid, 300, 200, 1) == MIN_CACHE_BYTES  # 2 small files
    assert read_cache_bytes(frames, grid, 300, 200, 10**4) == MAX_CACHE_BYTES
    monkeypatch.setattr(reader, "MIN_CACHE_BYTES", 0)
    per_file = (2 + 1) * 256 * (1 + 1) * 256 * 3  # 300 rows: 2 block rows; 200 cols: 1
    assert read_cache_bytes(frames, grid, 300, 200, 3, out_row_bytes=1000) == (
        3 * 2 * per_file + 1000 * 256)
    assert read_cache_bytes(frames, grid, 300, 200, 0, out_row_bytes=1000) == 1000 * 256
    # whole width and more rows than the file: the file's size, not more
    assert read_cache_bytes(frames, grid, 2000, 900, 1) == 2 * 1100 * 900 * 3

    # two aligned dates that cover different rows of the grid: each file's own pixels
    base = frames[0].transform
    shifted = write_frames(tmp_path / "shifted", n=1, size=(1100, 900), seed=3,
                           transform=base @ Affine.translation(0, 500))
    moved = tmp_path / "moved.tif"
    rio_copy(shifted[0], moved, driver="GTiff", tiled=True, blockxsize=256, blockysize=256)
    both = discover_frames([paths[0], moved]).frames
    grid2 = plan_grid(both, 4)
    assert grid2.height == 1600
    assert read_cache_bytes(both, grid2, 300, 200, 1) == 2 * per_file

    # warped (UTM onto the training grid): the file's pixels in grid units, plus the VRT's
    utm = write_frames(tmp_path / "utm", n=1, size=(600, 600), crs="EPSG:32631")
    frames = discover_frames(utm).frames
    grid = plan_grid(frames, 4)
    w = grid.width
    with rasterio.open(utm[0]) as ds:
        bh, bw = ds.block_shapes[0]  # strips: one row or a few, the whole width
        px_x, px_y = pixel_sides_in(ds, grid.crs)
        left, bottom, right, top = transform_bounds(ds.crs, grid.crs, *ds.bounds)
    # a 10 m UTM pixel at 37 N spans ~12.5 Mercator metres: fewer file rows than grid rows
    assert 12 < px_y < 13
    assert px_y == pytest.approx((top - bottom) / 600, rel=1e-3)  # the centre's, near the mean
    assert px_x == pytest.approx((right - left) / 600, rel=1e-3)
    got = read_cache_bytes(frames, grid, 256, w, 2)
    rows = min(600, (math.ceil(256 * abs(grid.transform.e) / px_y / bh) + 1) * bh)
    cols = min(600, (math.ceil(w * grid.transform.a / px_x / bw) + 1) * bw)
    vrt = (math.ceil(256 / 128) + 1) * 128 * min(w, (math.ceil(w / 512) + 1) * 512) * 3
    assert got == 2 * (rows * cols * 3 + vrt)

    # several readers: block rows shorter than two strides (the next row a reader reads lies
    # past them) count one block row, of the largest such file; taller ones as above
    vcols = min(w, (math.ceil(w / 512) + 1) * 512)
    assert read_cache_bytes(frames, grid, 256, w, 2, stride=240) == 2 * (
        min(600, bh) * cols * 3 + 128 * vcols * 3)
    assert read_cache_bytes(frames, grid, 256, w, 1, stride=240) == got // 2  # one reader
    frames = discover_frames(paths).frames  # 256-row blocks, aligned: 2 files
    grid = plan_grid(frames, 4)
    one_row = 256 * (1 + 1) * 256 * 3
    assert read_cache_bytes(frames, grid, 300, 200, 3, 1000, stride=240) == (
        3 * one_row + 1000 * 256)  # the files are read one at a time: one block row each
    assert read_cache_bytes(frames, grid, 300, 200, 3, 1000, stride=128) == (
        3 * 2 * per_file + 1000 * 256)  # 256 >= 2 x 128: read again by the next rows


def test_read_cache_is_shared_by_concurrent_runs_and_left_as_found():
    """GDAL's one cache: the sum of the runs in progress, the size found put back after the
    last, whichever thread each ends in, and inside a caller's own rasterio environment."""
    import threading

    from rasterio.env import get_gdal_config

    from zoomsr.inference.inputs.rasters import read_cache

    mb = 2**20
    before = get_gdal_config("GDAL_CACHEMAX")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with read_cache(100 * mb):
            assert get_gdal_config("GDAL_CACHEMAX") == 100 * mb
            other = read_cache(50 * mb)
            started, release, seen = threading.Event(), threading.Event(), []

            def run() -> None:
                with other:
                    seen.append(get_gdal_config("GDAL_CACHEMAX"))
                    started.set()
                    release.wait(10)

            t = threading.Thread(target=run)
            t.start()
            started.wait(10)
            assert seen == [150 * mb]
        assert get_gdal_config("GDAL_CACHEMAX") == 50 * mb  # the other run goes on
        release.set()
        t.join()
        assert get_gdal_config("GDAL_CACHEMAX") == before
    assert get_gdal_config("GDAL_CACHEMAX") == before


def test_decimated_looks_made_ahead_in_threads_equal_the_ordered_reads(tmp_path, monkeypatch):
    """discover_frames decodes the files' decimated looks in threads first (a whole file when
    it has no overviews); each look equals the read it replaces, and the frames are the same."""
    from zoomsr.inference.inputs import rasters

    paths = write_frames(tmp_path / "in", n=3, size=(700, 530))
    ahead = rasters.look_ahead(paths, workers=2)
    assert sorted(ahead) == sorted(str(p) for p in paths)
    for p in paths:
        with rasterio.open(p) as ds:
            shape = rasters.sample_shape(ds)
            assert ahead[str(p)].shape == (3, *shape) and shape == (350, 265)
            for b in (1, 2, 3):
                assert np.array_equal(ahead[str(p)][b - 1], ds.read(b, out_shape=shape))

    made: list[dict] = []
    look_ahead = rasters.look_ahead

    def spy(files):
        made.append(look_ahead(files))
        return made[-1]

    monkeypatch.setattr(rasters, "workers_available", lambda: 2)  # threads even on a 1-CPU runner
    monkeypatch.setattr(rasters, "look_ahead", spy)
    with_looks = discover_frames(paths).frames
    assert sorted(made[0]) == sorted(str(p) for p in paths)
    monkeypatch.setattr(rasters, "look_ahead", lambda files: {})
    assert discover_frames(paths).frames == with_looks
    assert getattr(rasters.looked, "samples", {}) == {}  # not kept after discovery


def test_with_more_threads_than_files_each_file_is_looked_at_by_several(tmp_path,
                                                                       monkeypatch):
    """8 dates on 16 CPUs: each file decoded by two threads, each its own block rows; the
    looks are the same as one thread a file, and a file with a part failed is left out (looked
    at again in order)."""
    from zoomsr.inference.inputs import rasters

    paths = write_frames(tmp_path / "in", n=2, size=(700, 530))
    one_each = rasters.look_ahead(paths, workers=2)
    parts = []
    read = rasters.decimated_read

    def spy(ds, bands, shape, part=(0, 1)):
        parts.append(part)
        return read(ds, bands, shape, part)

    monkeypatch.setattr(rasters, "decimated_read", spy)
    shared = rasters.look_ahead(paths, workers=5)
    assert sorted(parts) == [(0, 2), (0, 2), (1, 2), (1, 2)]
    assert sorted(shared) == sorted(one_each) == sorted(str(p) for p in paths)
    for name, look in one_each.items():
        assert np.array_equal(shared[name], look)

    def failing(ds, bands, shape, part=(0, 1)):
        if part[0] == 1 and ds.name == str(paths[0]):
            raise OSError("damaged block")
        return read(ds, bands, shape, part)

    monkeypatch.setattr(rasters, "decimated_read", failing)
    assert sorted(rasters.look_ahead(paths, workers=4)) == [str(paths[1])]


def test_files_looked_at_ahead_are_the_files_discovery_samples(tmp_path, monkeypatch):
    """RGB, extra bands the model takes and the SCL; not a band the model does not take (each
    look a whole-file decode)."""
    from affine import Affine

    from zoomsr.inference.inputs import rasters

    t = Affine(10, 0, 500000, 0, -10, 4100000)
    rng = np.random.default_rng(0)

    def band(name: str, dtype: str = "uint16") -> Path:
        p = tmp_path / name
        with rasterio.open(p, "w", driver="GTiff", width=64, height=64, count=1, dtype=dtype,
                           crs="EPSG:32631", transform=t) as ds:
            ds.write(rng.integers(1200 if dtype == "uint16" else 0,
                                  4000 if dtype == "uint16" else 11, (1, 64, 64)).astype(dtype))
        return p

    lines, records = [], []
    for d in ("20240101", "20240102"):
        rgb = [band(f"S2_{d}_{b}.tif") for b in ("B04", "B03", "B02")]
        band(f"S2_{d}_B08.tif")
        lines.append(",".join(map(str, [*rgb, band(f"S2_{d}_SCL.tif", "uint8")])))
        records.append({"red": f"S2_{d}_B04.tif", "green": f"S2_{d}_B03.tif",
                        "blue": f"S2_{d}_B02.tif", "b08": f"S2_{d}_B08.tif"})
    (tmp_path / "frames.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "frames.json").write_text(json.dumps(records))
    looked, sampled = set(), set()
    look_ahead, sample = rasters.look_ahead, rasters.decimated_look
    monkeypatch.setattr(rasters, "look_ahead",
                        lambda files: looked.update(Path(f).name for f in files)
                        or look_ahead(files, workers=2))
    monkeypatch.setattr(rasters, "decimated_look",
                        lambda ds, b: sampled.add(Path(ds.name).name) or sample(ds, b))
    for manifest, extra, n in (("frames.txt", (), 8), ("frames.json", (), 6),
                               ("frames.json", ("b08",), 8)):
        looked.clear()
        sampled.clear()
        discover_frames(tmp_path / manifest, dn_offset=0, extra_bands=extra)
        assert looked == sampled and len(looked) == n


def _stack(path: Path, count: int = 4, descriptions: tuple[str, ...] = ()) -> Path:
    """A ``count``-band uint16 (DN) GeoTIFF, its bands labelled ``descriptions``."""
    from affine import Affine

    data = np.random.default_rng(0).integers(1200, 4500, (count, 24, 24)).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=24, height=24, count=count,
                       dtype="uint16", crs="EPSG:32633", photometric="MINISBLACK",
                       transform=Affine(10, 0, 500000, 0, -10, 4100000)) as ds:
        ds.write(data)
        for i, d in enumerate(descriptions, 1):
            ds.set_band_description(i, d)
    return path


def test_a_multi_band_file_named_like_a_band_is_a_frame(tmp_path):
    """Name-based grouping is for single-band files: a labelled 4-band stack named
    ``stack_blue.tif`` is read like ``stackdesc.tif``, from a folder or by name."""
    labels = ("blue", "green", "red", "nir")
    stack = _stack(tmp_path / "in" / "stack_blue.tif", descriptions=labels)
    for item in (stack, stack.parent):
        frame = discover_frames(item, dn_offset=0).frames[0]
        assert frame.paths == (stack,) and frame.bands == (3, 2, 1)
    # a single-band file of that name is still a band file, and the error about its date's
    # missing bands names the real files (not "<folder>/stack*")
    one = _stack(tmp_path / "one" / "stack_blue.tif", count=1)
    with pytest.raises(DataError) as err:
        discover_frames(one, dn_offset=0)
    assert str(err.value).startswith(f"{one}: band files of one date lack green, red")
    scl = one.with_name("stack_SCL.tif")
    one.rename(scl)
    with pytest.raises(DataError, match=rf"^{scl}: without a TCI or B04/B03/B02"):
        discover_frames(scl)


def test_band_files_with_an_alpha_band_are_still_band_files(tmp_path):
    """What `gdalwarp -dstalpha` writes: data + alpha. Only 3 or more data bands make a
    file named like a band a frame of its own."""
    from affine import Affine
    from rasterio.enums import ColorInterp

    paths = []
    for k, name in enumerate(("B04", "B03", "B02")):
        path = tmp_path / f"T33_20240101_{name}.tif"
        data = np.random.default_rng(k).integers(1200, 4500, (2, 24, 24)).astype(np.uint16)
        data[1] = 65535
        with rasterio.open(path, "w", driver="GTiff", width=24, height=24, count=2,
                           dtype="uint16", crs="EPSG:32633", photometric="MINISBLACK",
                           transform=Affine(10, 0, 500000, 0, -10, 4100000)) as ds:
            ds.write(data)
            ds.colorinterp = [ColorInterp.gray, ColorInterp.alpha]
        paths.append(path)
    for items in (paths, tmp_path):
        (frame,) = discover_frames(items, dn_offset=0).frames
        assert frame.paths == tuple(paths) and frame.bands == (1, 1, 1)


@pytest.mark.parametrize("items", ["", [""], ["a.tif", " "]])
def test_an_empty_input_path_is_refused(tmp_path, monkeypatch, items, tiny_model):
    """As from an unset shell variable: not the current folder, scanned."""
    write_frames(tmp_path, n=2)  # what "" would have found
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"^an empty input path \('\s*'\): [^\n]+$"):
        discover_frames(items)
    with pytest.raises(DataError, match=r"^an empty input path"):
        run_inference(items, tmp_path / "o.tif", tiny_model(1))
    assert not (tmp_path / "o.tif").exists()


def test_band_arguments_take_the_forms_the_rest_of_the_api_takes(tmp_path):
    """extra_bands="b08" was read as ['b', '0', '8'], ("B08",) refused, rgb_bands="1,2,3"
    a raw ValueError from int()."""
    from infer_helpers import write_b08

    paths = write_frames(tmp_path / "in", n=1, size=(24, 24))
    write_b08(paths, 2000)
    for extra in ("b08", "B08", ("B08",), ["b08"]):
        found = discover_frames(tmp_path / "in", extra_bands=extra, dn_offset=0)
        assert [a.name for a in found.frames[0].extras] == ["b08"]
    assert discover_frames(paths, rgb_bands="1,2,3").frames[0].bands == (1, 2, 3)
    for bad in ("a,b", (0, 1, 2), (1.5, 2, 3), 3, "1,2,3,4"):
        said = re.escape(repr(bad))
        with pytest.raises(ConfigError, match=r"rgb_bands \(--rgb-bands\) needs three band "
                                              rf"numbers >= 1 \(R,G,B\), got {said}"):
            discover_frames(paths, rgb_bands=bad)
    # the options take the same forms, kept as three ints
    from zoomsr.inference import InferenceOptions

    for given in ("3,2,1", (np.int64(3), 2, 1), (3.0, 2.0, 1.0), [3, 2, 1]):
        assert InferenceOptions(rgb_bands=given).rgb_bands == (3, 2, 1)
    with pytest.raises(ConfigError, match="needs three band numbers"):
        InferenceOptions(rgb_bands=3)


def test_hidden_files_in_an_input_folder_are_no_dates(tmp_path):
    """A killed --cog run's temporary (.out.tif.XXXX.tif.tmp.gtiff.tif) was read as a date
    (the native grid then took its 4x finer pixels), and macOS's ._*.tif files broke the
    discovery."""
    paths = write_frames(tmp_path / "in", n=2)
    shutil.copy(paths[0], tmp_path / "in" / ".out.tif.abcd1234.tif.tmp.gtiff.tif")
    (tmp_path / "in" / f"._{paths[1].name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    found = discover_frames([tmp_path / "in"])
    assert sorted(f.paths[0].name for f in found.frames) == sorted(p.name for p in paths)
    # hidden folders of a folder of dates (.Trashes/, .snapshot/) are no dates either
    dates = tmp_path / "dates"
    for k, path in enumerate(paths):
        (dates / f"d{k}").mkdir(parents=True)
        shutil.copy(path, dates / f"d{k}" / path.name)
    (dates / ".Trashes").mkdir()
    shutil.copy(paths[0], dates / ".Trashes" / "S2A_20230101_TCI.tif")
    assert len(discover_frames([dates]).frames) == 2


def test_frames_come_in_the_inputs_order_band_files_too(tmp_path):
    """Band files (B04/B03/B02 of a date) were put after every single-file frame and
    manifest entry, whatever the order given: --native-grid, which takes the first input's
    grid, took a later file's (a UTM date given first came out in EPSG:4326)."""
    bands = write_frames(tmp_path / "b", n=3, dtype="uint16", crs="EPSG:32631")
    dated = []
    for src, name in zip(bands, ("B04", "B03", "B02"), strict=True):
        with rasterio.open(src) as ds:
            prof, arr = ds.profile | {"count": 1}, ds.read(1)
        prof.pop("photometric", None)
        dated.append(tmp_path / f"T31_20240101_{name}.tif")
        with rasterio.open(dated[-1], "w", **prof) as ds:
            ds.write(arr, 1)
    tci = write_frames(tmp_path / "t", n=2, crs="EPSG:32631")
    found = discover_frames([*dated, tci[0]], dn_offset=0).frames
    assert [len(f.paths) for f in found] == [3, 1]  # the band files' date first, as given
    found = discover_frames([tci[0], *dated], dn_offset=0).frames
    assert [len(f.paths) for f in found] == [1, 3]
    listed = tmp_path / "list.txt"  # a manifest's place among the inputs counts too
    listed.write_text(f"{tci[1]}\n")
    found = discover_frames([*dated, listed], dn_offset=0).frames
    assert [f.paths[0] for f in found] == [dated[0], tci[1]]
    found = discover_frames([listed, *dated], dn_offset=0).frames
    assert [f.paths[0] for f in found] == [tci[1], dated[0]]


def test_a_manifests_file_finds_its_dates_other_bands_beside_it(tmp_path):
    """A B08 (or SCL) beside a TCI listed in a manifest was not found, and the error said
    "put it beside as e.g. ..._B08.tif": the file that was there. A line of one file is now
    that file named on the command line."""
    paths = write_frames(tmp_path / "a", n=2)
    b08 = write_b08(paths, 3000)
    listed = tmp_path / "list.txt"
    listed.write_text("".join(f"{p}\n" for p in paths))
    found = discover_frames(listed, extra_bands=("b08",), dn_offset=0).frames
    assert [[a.path for a in f.extras] for f in found] == [[b] for b in b08]
    js = tmp_path / "list.json"
    js.write_text(json.dumps([str(p) for p in paths]))
    found = discover_frames(js, extra_bands=("b08",), dn_offset=0).frames
    assert [[a.path for a in f.extras] for f in found] == [[b] for b in b08]
