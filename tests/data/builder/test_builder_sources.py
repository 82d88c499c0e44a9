"""Finding inputs: SAFE folders, band files, manifests, dates, radiometry, bad files."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from builder_rasters import UTM, make_safe, utc, write_raster

from zoomsr.data.builder.sources import (
    band_of_file,
    date_from_name,
    default_dn_offset,
    discover_highres,
    discover_sentinel2,
    parse_datetime,
    read_manifest,
    stac_item_radiometry,
    write_manifest,
)
from zoomsr.data.builder.stac import s2_entry
from zoomsr.errors import DataError, InputError, ZoomsrWarning


@pytest.mark.parametrize(("name", "expected"), [
    ("T29RKH_20200219T112111_B08_10m.jp2", ("b08", "T29RKH_20200219T112111")),
    ("T29RKH_20200219T112111_TCI_10m.jp2", ("tci", "T29RKH_20200219T112111")),
    ("T29RKH_20200219T112111_SCL_20m.jp2", ("scl", "T29RKH_20200219T112111")),
    ("T33UUP_20190101T100000_B01.jp2", ("b01", "T33UUP_20190101T100000")),
    ("TCI.tif", ("tci", "")), ("B12.tif", ("b12", "")), ("scene-b5.tiff", ("b05", "scene")),
    ("nir.tif", ("b08", "")), ("visual.tif", ("tci", "")), ("swir16.tif", ("b11", "")),
    # Earth Search asset names starting with "b" (blue was refused as no band)
    ("blue.tif", ("b02", "")), ("BLUE.TIF", ("b02", "")), ("red.tif", ("b04", "")),
    ("B8A.tif", None), ("m_4709963_se_14_1_20190904.tif", None), ("notes.txt", None),
])
def test_band_of_file(name, expected):
    assert band_of_file(name) == expected


def test_dates_from_names_and_strings():
    assert date_from_name("m_4709963_se_14_1_20190904") == utc(2019, 9, 4).replace(hour=0)
    assert date_from_name("T29RKH_20200219T112111") == dt.datetime(
        2020, 2, 19, 11, 21, 11, tzinfo=dt.timezone.utc)
    assert date_from_name("m_4709963_se_14_1") is None
    assert date_from_name("x_20191399") is None  # not a real date
    assert parse_datetime("2020-02-19T11:34:25.405000Z").minute == 34
    assert parse_datetime("2019:09:04 10:00:00").day == 4
    with pytest.raises(InputError, match="not a date"):
        parse_datetime("yesterday", "--hr-date")


def test_dn_offset_rules():
    assert default_dn_offset("L2A", "02.14") == 0
    assert default_dn_offset("L2A", "04.00") == -1000
    assert default_dn_offset("L1C", "05.09") == -1000
    # ESA added the offset to L1C and L2A alike; an unknown baseline has no safe default
    assert default_dn_offset("unknown", "04.00") == -1000
    assert default_dn_offset("L2A", None) is None and default_dn_offset("L2A", "x") is None
    item = {"collection": "sentinel-2-l2a", "properties": {
        "s2:processing_baseline": "04.00", "datetime": "2022-03-01T10:00:00Z"},
        "assets": {"nir": {"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}}}
    assert stac_item_radiometry(item)["dn_offset"] == -1000
    item["assets"]["nir"]["raster:bands"][0]["offset"] = 0
    assert stac_item_radiometry(item)["dn_offset"] == 0
    del item["assets"]["nir"]
    item["properties"]["earthsearch:boa_offset_applied"] = True
    assert stac_item_radiometry(item) == {"level": "L2A", "baseline": "04.00", "dn_offset": 0,
                                          "datetime": utc(2022, 3, 1).replace(hour=10)}


def test_boa_offset_applied_wins_over_raster_bands_offset(builder_scene, tmp_path):
    """Earth Search items keep raster:bands offset -0.1 whether or not the offset was applied
    (earth-search issue #66): with earthsearch:boa_offset_applied true the DN are already
    harmonised (0), not -1000, which subtracted the offset a second time."""
    item = {"type": "Feature", "id": "S2B_15TVG_20220301_0_L2A",
            "collection": "sentinel-2-l2a",
            "properties": {"s2:processing_baseline": "04.00", "datetime": "2022-03-01T17:00:00Z",
                           "earthsearch:boa_offset_applied": True},
            "assets": {key: {"href": f"{key}.tif", "raster:bands": [
                {"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}]}
                for key in ("blue", "green", "red", "nir")}}
    assert stac_item_radiometry(item)["dn_offset"] == 0
    assert s2_entry(item)["dn_offset"] == 0  # what `zoomsr data search` writes
    item["properties"]["earthsearch:boa_offset_applied"] = False  # not applied: the bands say
    assert stac_item_radiometry(item)["dn_offset"] == -1000
    # the same from a folder of band files with the item beside them
    folder = tmp_path / item["id"]
    shutil.copytree(builder_scene.s2["clear"], folder,
                    ignore=shutil.ignore_patterns("*.json"))
    item["properties"]["earthsearch:boa_offset_applied"] = True
    (folder / "item.json").write_text(json.dumps(item))
    (scene,) = discover_sentinel2([folder])
    assert (scene.id, scene.processing_baseline, scene.dn_offset) == (item["id"], "04.00", 0)


def test_each_date_in_a_folder_of_several_takes_its_own_stac_item(builder_scene, tmp_path):
    """Band files of two dates and their two STAC items in one folder: every date took the
    folder's first item (its id, datetime, baseline: the other date's DN offset). The item
    naming a date's files is its own; an item naming none is nobody's where there are two."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    items = {}
    for key, stamp, baseline in (("clear", "20190801T170000", "02.13"),
                                 ("late", "20200301T170000", "04.00")):
        for f in builder_scene.s2[key].glob("*.tif"):
            shutil.copy(f, folder / f"T15TVG_{stamp}_{f.name}")
        items[key] = {
            "type": "Feature", "id": f"S2_{key}", "collection": "sentinel-2-l2a",
            "properties": {"datetime": f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T17:00:00Z",
                           "s2:processing_baseline": baseline},
            # a signed URL (Planetary Computer's): its query is not the file's name
            "assets": {"visual": {"href": f"https://x/T15TVG_{stamp}_TCI.tif?st=1&sig=a%2Fb"}}}
    for key, item in items.items():
        (folder / f"{key}.json").write_text(json.dumps(item))
    scenes = {s.id: s for s in discover_sentinel2([folder])}
    assert sorted(scenes) == ["S2_clear", "S2_late"]
    assert (scenes["S2_clear"].processing_baseline, scenes["S2_clear"].dn_offset) == ("02.13", 0)
    assert (scenes["S2_late"].processing_baseline, scenes["S2_late"].dn_offset) == ("04.00", -1000)
    assert scenes["S2_late"].datetime.date() == dt.date(2020, 3, 1)
    # the late item names no file now: it is nobody's (two items), the date from the names
    items["late"]["assets"] = {}
    (folder / "late.json").write_text(json.dumps(items["late"]))
    scenes = {s.id: s for s in discover_sentinel2([folder])}
    assert sorted(scenes) == ["S2_clear", "T15TVG_20200301T170000"]
    assert scenes["T15TVG_20200301T170000"].datetime.date() == dt.date(2020, 3, 1)


def test_a_high_res_file_given_twice_is_used_once(builder_scene, tmp_path):
    """--hr a.tif --hr a.tif --hr folder (or a symlink to it): one image, one warning (they
    were images m_..., m_...-1, m_...-2, every pair written three times)."""
    folder = tmp_path / "naip"
    folder.mkdir()
    hr = folder / builder_scene.hr_path.name
    shutil.copy(builder_scene.hr_path, hr)
    (tmp_path / "link.tif").symlink_to(hr)
    with pytest.warns(ZoomsrWarning) as caught:
        images = discover_highres([hr, hr, folder, tmp_path / "link.tif"])
    assert [(i.id, i.path) for i in images] == [(hr.stem, str(hr))]
    (w,) = caught  # paths given on the command line are resolved: the link is the file
    assert str(w.message) == f"{hr}: given 4 times as a high-res input; used once"
    # another file of the same name is another image, as before
    other = tmp_path / "other" / hr.name
    other.parent.mkdir()
    shutil.copy(hr, other)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [i.id for i in discover_highres([hr, other])] == [hr.stem, f"{hr.stem}-1"]
    # a manifest listing one href twice (as two spellings of one path)
    path = write_manifest(tmp_path / "m.json", [], [
        {"id": "a", "href": str(hr)}, {"id": "b", "href": f"{folder}/../naip/{hr.name}"}])
    with pytest.warns(ZoomsrWarning) as caught:
        assert [i.id for i in read_manifest(path).highres] == ["a"]
    assert [str(w.message) for w in caught] == [
        f"{hr}: given 2 times as a high-res input (also as {folder}/../naip/{hr.name}); used "
        "once"]


def test_band_files_with_stac_item(builder_scene):
    scenes = discover_sentinel2([builder_scene.root / "s2"])
    by_id = {s.id: s for s in scenes}
    assert sorted(by_id) == sorted(p.name for p in builder_scene.s2.values())
    late = by_id["S2A_15TVG_20200301_0_L2A"]
    assert late.datetime == utc(2020, 3, 1)
    assert (late.level, late.processing_baseline, late.dn_offset) == ("L2A", "04.00", -1000)
    assert set(late.files) == {"tci", "b05", "b08", "scl"}
    assert late.footprint.crs == UTM


def test_esa_named_files_without_metadata(builder_scene, tmp_path):
    """Files named like ESA's: date and scene grouping from the names; L2A from the SCL."""
    for band in ("TCI", "B08", "SCL"):
        shutil.copy(builder_scene.s2["clear"] / f"{band}.tif",
                    tmp_path / f"T15TVG_20190801T170000_{band}_10m.tif")
    shutil.copy(builder_scene.s2["late"] / "TCI.tif", tmp_path / "T15TVG_20200301T170000_TCI.tif")
    scenes = discover_sentinel2([tmp_path])
    assert [(s.id, s.date, sorted(s.files)) for s in scenes] == [
        ("T15TVG_20190801T170000", dt.date(2019, 8, 1), ["b08", "scl", "tci"]),
        ("T15TVG_20200301T170000", dt.date(2020, 3, 1), ["tci"]),
    ]
    assert scenes[0].level == "L2A" and scenes[1].level == "unknown"


def test_safe_folder(builder_scene, tmp_path):
    # an L2A of baseline 04.00 carries MSK_CLASSI too: its SCL is the cloud layer, and the
    # mask stays out of the scene's files (builds begun before it was read keep resuming)
    with rasterio.open(builder_scene.s2["late"] / "SCL.tif") as scl:
        mask = np.zeros((3, scl.height, scl.width), np.uint8)
    safe = make_safe(tmp_path, builder_scene.s2["late"], utc(2020, 3, 1), cloud_mask=mask)
    assert list(safe.glob("GRANULE/*/QI_DATA/MSK_CLASSI_B00.jp2"))
    (scene,) = discover_sentinel2([tmp_path])  # found by recursing into the folder
    assert scene.datetime == utc(2020, 3, 1)
    assert (scene.level, scene.processing_baseline, scene.dn_offset) == ("L2A", "04.00", -1000)
    assert set(scene.files) == {"tci", "b05", "b08", "scl"}
    assert all(f.endswith(".jp2") and str(safe) in f for f in scene.files.values())



def test_a_folder_or_file_inside_a_safe_is_read_as_its_safe(builder_scene, tmp_path):
    """`--s2 .../GRANULE/x/IMG_DATA` (or R10m, or one band file) made one scene per resolution
    folder with no metadata: the SCL and the DN offset were lost."""
    safe = make_safe(tmp_path, builder_scene.s2["late"], utc(2020, 3, 1))
    img = next(safe.glob("GRANULE/*/IMG_DATA"))
    whole = discover_sentinel2([safe])
    for given in ([img], [img / "R10m"], [next((img / "R10m").glob("*B08*"))], [img, safe]):
        assert discover_sentinel2(given) == whole, given
    # ESA's copies of a band at several resolutions, loose in one folder: the finest wins
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in img.rglob("*.jp2"):
        shutil.copy(f, flat / f.name)
    shutil.copy(next(img.glob("R20m/*B05*")),
                flat / next(img.glob("R20m/*B05*")).name.replace("_20m", "_60m"))
    (scene,) = discover_sentinel2([flat])
    assert scene.files["b05"].endswith("_B05_20m.jp2")


def test_missing_date_is_a_clear_error_unless_given(builder_scene, tmp_path):
    shutil.copy(builder_scene.s2["clear"] / "TCI.tif", tmp_path / "TCI.tif")
    with pytest.raises(DataError, match="no acquisition date.*--s2-date"):
        discover_sentinel2([tmp_path])
    (scene,) = discover_sentinel2([tmp_path], date=utc(2019, 8, 2))
    assert scene.date == dt.date(2019, 8, 2)
    hr = tmp_path / "hr" / "aerial.tif"
    hr.parent.mkdir()
    shutil.copy(builder_scene.hr_path, hr)
    with pytest.raises(DataError, match=r"aerial.tif: no acquisition date.*--hr-date"):
        discover_highres([hr])
    (img,) = discover_highres([hr], date=utc(2019, 9, 4))
    assert img.id == "aerial" and img.date == dt.date(2019, 9, 4)


def test_date_from_tags(builder_scene, tmp_path):
    data = np.full((3, 20, 20), 100, np.uint8)
    path = write_raster(tmp_path / "ortho.tif", data, "EPSG:3857",
                        Affine(2, 0, -10421000, 0, -2, 5100000),
                        tags={"TIFFTAG_DATETIME": "2019:09:05 12:00:00"})
    (img,) = discover_highres([path])
    assert img.date == dt.date(2019, 9, 5)


def test_unreadable_and_wrong_files(builder_scene, tmp_path):
    bad = tmp_path / "m_1_20190904.tif"
    bad.write_bytes(b"not a tiff at all")
    with pytest.raises(DataError, match=r"m_1_20190904.tif: cannot read raster"):
        discover_highres([bad])
    with pytest.raises(DataError, match="not found"):
        discover_highres([tmp_path / "missing.tif"])
    with pytest.raises(DataError, match="not a Sentinel-2 band file"):
        discover_sentinel2([builder_scene.hr_path])
    # Float reflectance instead of digital numbers: refused, naming the file.
    folder = tmp_path / "float_20190801"
    shutil.copytree(builder_scene.s2["clear"], folder)
    with rasterio.open(folder / "B08.tif") as src:
        arr, profile = src.read().astype("float32") / 10000, src.profile
    write_raster(folder / "B08.tif", arr, profile["crs"], profile["transform"])
    with pytest.raises(DataError, match=r"B08.tif: band b08 holds float32.*x 10000"):
        discover_sentinel2([folder])
    # 16-bit high-res image: refused with what to do.
    hr16 = write_raster(tmp_path / "m_2_20190904.tif", np.ones((3, 8, 8), np.uint16) * 900,
                        "EPSG:3857", Affine(2, 0, -10421000, 0, -2, 5100000))
    with pytest.raises(DataError, match="must be 8-bit RGB"):
        discover_highres([hr16])
    # Not georeferenced.
    plain = tmp_path / "m_3_20190904.tif"
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning), rasterio.open(
            plain, "w", driver="GTiff", width=4, height=4, count=3, dtype="uint8") as dst:
        dst.write(np.ones((3, 4, 4), np.uint8))
    with pytest.raises(DataError, match="not georeferenced"):
        discover_highres([plain])
    # metres labelled EPSG:4326: its footprint was [inf, inf, inf, inf], and the build said
    # "no overlap" naming no cause
    mislabelled = write_raster(tmp_path / "m_4_20190904.tif", np.ones((3, 8, 8), np.uint8),
                               "EPSG:4326", Affine(2, 0, 500000, 0, -2, 5200000))
    with pytest.raises(DataError, match=r"m_4_20190904.tif: its bounds \(500000.0, 5199984.0, "
                       r"500016.0, 5200000.0\) are out of range for its CRS EPSG:4326 \(a "
                       r"wrong CRS tag"):
        discover_highres([mislabelled])


def test_manifest_round_trip(builder_scene, tmp_path):
    clear = builder_scene.s2["clear"]
    path = write_manifest(
        tmp_path / "m.json",
        [{"id": "clear", "datetime": "2019-08-01T17:00:00Z", "level": "L2A",
          "processing_baseline": "02.13",
          "assets": {"visual": str(clear / "TCI.tif"), "nir": str(clear / "B08.tif"),
                     "scl": str(clear / "SCL.tif"), "thumbnail": "x.png"}}],
        [{"id": "naip1", "datetime": "2019-09-04", "href": str(builder_scene.hr_path)}],
        note="hand-written")
    sources = read_manifest(path)
    (s2,) = sources.sentinel2
    assert (s2.id, set(s2.files), s2.dn_offset) == ("clear", {"tci", "b08", "scl"}, 0)
    assert sources.highres[0].id == "naip1" and sources.highres[0].date == dt.date(2019, 9, 4)
    # Relative hrefs are relative to the manifest's folder.
    doc = json.loads(path.read_text())
    shutil.copy(builder_scene.hr_path, tmp_path / "hr.tif")
    doc["highres"][0]["href"] = "hr.tif"
    path.write_text(json.dumps(doc))
    assert read_manifest(path).highres[0].path == str(tmp_path / "hr.tif")
    # a file:// URL is a local file: checked before the build, watched on resume (it was
    # taken for a remote one: a truncated file failed half-way through the build)
    (tmp_path / "a b.tif").write_bytes((tmp_path / "hr.tif").read_bytes()[:5000])
    for href in ((tmp_path / "a b.tif").as_uri(), f"file://localhost{tmp_path}/a%20b.tif"):
        doc["highres"][0]["href"] = href
        path.write_text(json.dumps(doc))
        with pytest.raises(DataError, match=r"a b.tif: unreadable, the file is truncated"):
            read_manifest(path)
    doc["highres"][0]["href"] = "file://server/share/hr.tif"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"file:// URL of another host \(server\)"):
        read_manifest(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="unreadable manifest"):
        read_manifest(path)
    path.write_text(json.dumps({"format": "zoomsr-manifest", "sentinel2": [{"id": "a"}]}))
    with pytest.raises(DataError, match=r"sentinel2\[0\]: missing key"):
        read_manifest(path)


def test_manifest_entries_of_the_wrong_type_are_named(builder_scene, tmp_path):
    """Hand-written manifests: STAC-style asset objects are read; other wrong types give one
    line naming the entry (they gave "AttributeError: 'dict' object has no attribute..."
    and exit 1)."""
    clear = builder_scene.s2["clear"]
    scene = {"id": "clear", "datetime": "2019-08-01T17:00:00Z", "dn_offset": "0",
             "assets": {"visual": {"href": str(clear / "TCI.tif"), "type": "image/tiff"}}}
    path = tmp_path / "m.json"

    def manifest(sentinel2, highres=()):
        path.write_text(json.dumps({"format": "zoomsr-manifest", "sentinel2": sentinel2,
                                    "highres": list(highres)}))
        return path

    (s2,) = read_manifest(manifest([scene])).sentinel2
    assert s2.files == {"tci": str(clear / "TCI.tif")} and s2.dn_offset == 0
    bad = [
        ([str(clear / "TCI.tif")], r"sentinel2\[0\]: expected an object, got '/"),
        ({"id": "a"}, r"sentinel2: expected a list of objects, got dict"),
        ([{**scene, "assets": {"visual": {"size": 3}}}],
         r"sentinel2\[0\]\.assets\.visual: expected a path or URL string"),
        ([{**scene, "assets": ["TCI.tif"]}], r"sentinel2\[0\]\.assets: expected an object"),
        ([{**scene, "datetime": 20190801}], r"sentinel2\[0\]\.datetime: expected a string"),
        ([{**scene, "dn_offset": -1000.5}], r"sentinel2\[0\]\.dn_offset: expected 0 or -1000"),
        ([{**scene, "dn_offset": 1000}], r"sentinel2\[0\]\.dn_offset: expected 0 or -1000 "
                                         r"\(added.*got 1000 \(the manifest's value is added"),
        ([{**scene, "dn_offset": 12345}], r"sentinel2\[0\]\.dn_offset: expected 0 or -1000"),
        ([{**scene, "level": 2}], r"sentinel2\[0\]\.level: expected a string"),
        ([{**scene, "level": "L3"}], r"sentinel2\[0\]\.level: expected L1C or L2A, got 'L3'"),
    ]
    for sentinel2, message in bad:
        with pytest.raises(DataError, match=rf"^{path}: {message}"):
            read_manifest(manifest(sentinel2))
    path.write_text(json.dumps({"format": "zoomsr-manifest", "version": 2, "sentinel2": [scene],
                                "highres": []}))
    with pytest.raises(DataError, match=rf"^{path}: manifest version 2; this zoomsr reads "
                                        "version 1"):
        read_manifest(path)
    with pytest.raises(DataError, match=rf"^{path}: highres\[0\]\.href: expected a path"):
        read_manifest(manifest([scene], [{"href": 5}]))
