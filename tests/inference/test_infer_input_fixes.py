"""Input fixes: a date given twice through manifests, the DN-offset refusal's wording, and
GDAL's own warnings kept off stderr."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from infer_helpers import damage_middle_tile, write_b08, write_frames
from rasterio.windows import Window

from zoomsr.errors import DataError
from zoomsr.inference import InferenceOptions, Tiling, discover_frames, run_inference

REAL_COG = "data/real/misc/s2-like-10m-cog.tif"


# --- a date given twice: in a manifest (relative paths with ..) and on the command line


def _manifest(path: Path, entries: list[str | dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(entries))
    else:
        path.write_text("".join(f"{e}\n" for e in entries))
    return path


@pytest.mark.parametrize("suffix", [".json", ".txt"])
def test_a_date_in_a_manifest_and_on_the_command_line_is_given_twice(tmp_path, suffix):
    paths = write_frames(tmp_path / "data" / "tci", n=2, size=(24, 24))
    man = _manifest(tmp_path / "man" / f"two{suffix}",
                    [f"../data/tci/{p.name}" for p in paths])
    # the manifest's paths as the command line's: absolute, normalised (the output's tags)
    assert [f.paths for f in discover_frames(man).frames] == [(p,) for p in paths]
    for items in ([man, paths[0]], [paths[1], man]):
        with pytest.raises(DataError, match=r"^/.*S2_2024010\d_TCI.tif: given twice$") as err:
            discover_frames(items)
        assert ".." not in str(err.value)
    # two manifests in different folders naming one file
    other = _manifest(tmp_path / "other" / "deep" / f"one{suffix}",
                      [f"../../data/tci/{paths[0].name}"])
    with pytest.raises(DataError, match=rf"{paths[0]}: given twice"):
        discover_frames([man, other])


def test_a_date_given_twice_fails_before_any_file_is_read(tmp_path, monkeypatch):
    """Not after every date's decimated look (seconds for a large scene): at once. Also for
    band files: the same B04/B03/B02 in a manifest line and a JSON band object."""
    from zoomsr.inference.inputs import rasters

    paths = write_frames(tmp_path / "data", n=3, size=(24, 24))

    def no_reads(*args, **kwargs):
        raise AssertionError("a file was read before the duplicate was found")

    monkeypatch.setattr(rasters, "look_ahead", no_reads)
    monkeypatch.setattr(rasters, "decimated_look", no_reads)
    man = _manifest(tmp_path / "man" / "all.txt", [f"../data/{p.name}" for p in paths])
    with pytest.raises(DataError, match=rf"^{paths[2]}: given twice$"):
        discover_frames([man, paths[2]])
    bands = [tmp_path / f"S2_20240105_{b}.tif" for b in ("B04", "B03", "B02")]
    for band in bands:  # there (a manifest's entries must be), never read
        band.touch()
    _manifest(tmp_path / "b.txt", [",".join(map(str, bands))])
    _manifest(tmp_path / "b.json", [{"red": bands[0].name, "green": bands[1].name,
                                     "blue": bands[2].name}])
    with pytest.raises(DataError, match=rf"^{bands[0]}: given twice$"):
        discover_frames([tmp_path / "b.txt", tmp_path / "b.json"])


def test_a_json_band_object_and_the_command_line_name_one_date_twice(tmp_path):
    (tci,) = write_frames(tmp_path / "data", n=1, size=(24, 24))
    man = _manifest(tmp_path / "man" / "bands.json", [{"tci": f"../data/{tci.name}"}])
    assert discover_frames(man).frames[0].paths == (tci,)
    with pytest.raises(DataError, match=rf"^{tci}: given twice$"):
        discover_frames([tci, man])


# --- the DN-offset refusal names the data type the values really have


def _bands(path: Path, data: np.ndarray, photometric: str = "MINISBLACK") -> Path:
    """``data`` ``[n, h, w]`` as a GeoTIFF (10 m UTM), with no metadata on its product."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n, h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=n,
                       dtype=data.dtype.name, crs="EPSG:32629", photometric=photometric,
                       transform=Affine(10, 0, 500000, 0, -10, 4100000)) as ds:
        ds.write(data)
    return path


def _dn(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """Sentinel-2-like digital numbers (reflectance x 10000, a few hundred to thousands)."""
    return (np.random.default_rng(seed).random(shape) * 3000 + 300).astype(dtype)


def test_no_dn_offset_message_states_the_real_data_type(tmp_path):
    stack = _bands(tmp_path / "float" / "stack.tif", _dn((4, 24, 24), "float64"))
    with pytest.raises(DataError) as err:
        discover_frames(stack, rgb_bands=(3, 2, 1), radiometry="dn")
    assert str(err.value) == (
        f"{stack}: float64 values read as Sentinel-2 digital numbers (--radiometry dn), but no "
        "metadata gives the processing baseline (from baseline 04.00 the values carry a +1000 "
        "offset); pass --dn-offset 0 or --dn-offset 1000 (in Python dn_offset=0 or 1000)")
    # band files of one date (the other caller): their own type
    bands = [_bands(tmp_path / "f32" / f"b{i}.tif", _dn((1, 24, 24), "float32", i))
             for i in range(3)]
    man = _manifest(tmp_path / "f32" / "m.json",
                    [{"red": str(bands[0]), "green": str(bands[1]), "blue": str(bands[2])}])
    with pytest.raises(DataError, match=r"b0.tif: float32 values read as Sentinel-2 digital "
                                        r"numbers \(--radiometry dn\), but no metadata"):
        discover_frames(man, radiometry="dn")
    # 16-bit data is read as digital numbers without being told: no --radiometry in the message
    u16 = _bands(tmp_path / "u16" / "rgb.tif", _dn((3, 24, 24), "uint16"), "RGB")
    with pytest.raises(DataError, match=r"rgb.tif: 16-bit integers read as Sentinel-2 digital "
                                        r"numbers, but no metadata .*--dn-offset 1000 "
                                        r"\(in Python dn_offset=0 or 1000\)$"):
        discover_frames(u16)
    # an extra band without metadata beside a TCI (the third caller)
    tci = write_frames(tmp_path / "tci", n=1, size=(24, 24))
    write_b08(tci, 2000)
    with pytest.raises(DataError, match=r"_B08.tif: 16-bit integers read as Sentinel-2 digital "
                                        r"numbers, but no metadata"):
        discover_frames(tci, extra_bands=("b08",))


# --- GDAL's warnings are not printed raw on stderr


def _without_extrasamples(path: Path) -> Path:
    """A 4-band uint16 GeoTIFF whose ExtraSamples tag is gone, as in the real
    s2-like-10m-cog.tif: libtiff notes "Sum of Photometric type-related color channels and
    ExtraSamples doesn't match SamplesPerPixel" on opening, and again on the first read."""
    _bands(path, _dn((4, 32, 40), "uint16"))
    raw = bytearray(path.read_bytes())
    assert raw[:4] == b"II*\x00"  # classic little-endian TIFF, as GDAL writes a small file
    ifd = struct.unpack_from("<I", raw, 4)[0]
    count = struct.unpack_from("<H", raw, ifd)[0]
    entries = [ifd + 2 + 12 * i for i in range(count)]
    (extra,) = [e for e in entries if struct.unpack_from("<H", raw, e)[0] == 338]
    struct.pack_into("<H", raw, extra, 335)  # an unknown tag, between its neighbours 284, 339
    path.write_bytes(bytes(raw))
    return path


def _assert_no_raw_gdal_lines(err: str) -> None:
    raw = [line for line in err.splitlines()
           if line.startswith(("Warning ", "ERROR ")) or "TIFFReadDirectory" in line]
    assert raw == []


def _run_quietly(path: Path, out: Path, model, capfd, **opts) -> None:  # noqa: ANN001
    capfd.readouterr()
    found = discover_frames(path, rgb_bands=(3, 2, 1), radiometry="dn", dn_offset=0)
    assert len(found.frames) == 1
    _assert_no_raw_gdal_lines(capfd.readouterr().err)
    options = InferenceOptions(rgb_bands=(3, 2, 1), radiometry="dn", dn_offset=0,
                               tiling=Tiling(32, 8), progress=False, **opts)
    run_inference(path, out, model, options)
    _assert_no_raw_gdal_lines(capfd.readouterr().err)


@pytest.mark.filterwarnings("ignore::zoomsr.errors.ZoomsrWarning")
def test_gdal_tiff_structure_note_is_not_printed_raw(tmp_path, tiny_model, capfd, caplog):
    path = _without_extrasamples(tmp_path / "no_extrasamples.tif")
    with caplog.at_level(logging.WARNING, logger="rasterio"):
        model = tiny_model(1)
        _run_quietly(path, tmp_path / "native.tif", model, capfd, native_grid=True)
        # read through a WarpedVRT (reprojected onto the training grid)
        _run_quietly(path, tmp_path / "3857.tif", model, capfd)
    # not lost either: rasterio's logger has it, for whoever configured logging
    assert any("ExtraSamples" in r.getMessage() for r in caplog.records)


@pytest.mark.filterwarnings("ignore::zoomsr.errors.ZoomsrWarning")
def test_real_cog_gdal_note_is_not_printed_raw(shared_dir, tmp_path, tiny_model, capfd):
    """The real file whose note reached the CLI's stderr raw (343 x 206 px, read whole)."""
    path = shared_dir / REAL_COG
    _run_quietly(path, tmp_path / "o.tif", tiny_model(1), capfd, native_grid=True)


def test_read_errors_still_raise_without_raw_gdal_lines(tmp_path, capfd):
    """Reads in rasterio's environment: a damaged block is still a DataError naming the file,
    and GDAL's own error line goes to the log, not raw on stderr."""
    from zoomsr.inference.grid import plan_grid
    from zoomsr.inference.reader import SceneReader

    path = tmp_path / "S2_20240101_TCI.tif"
    data = np.random.default_rng(0).integers(1, 255, (3, 64, 64), np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                       crs="EPSG:32629", transform=Affine(10, 0, 500000, 0, -10, 4100000),
                       tiled=True, blockxsize=16, blockysize=16, compress="deflate") as ds:
        ds.write(data)
    frames = discover_frames(path).frames
    damage_middle_tile(path)
    reader = SceneReader(frames, plan_grid(frames, 4, native=True))
    capfd.readouterr()
    try:
        with pytest.raises(DataError, match=rf"^{path}: read failed \("):
            reader.read(Window(0, 0, 64, 64))
    finally:
        reader.close()
    _assert_no_raw_gdal_lines(capfd.readouterr().err)


def test_a_manifest_line_without_a_file_is_named(tmp_path):
    (tci,) = write_frames(tmp_path / "data", n=1, size=(24, 24))
    man = _manifest(tmp_path / "m.txt", [f"data/{tci.name}", " , ", ","])
    with pytest.raises(DataError, match=rf"^{man}: line 2 names no file \(','\)$"):
        discover_frames(man)


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:32615"])
def test_a_rotated_raster_is_covered_whole_on_the_default_grid(tmp_path, crs):
    """A rotated (sheared) transform: the grid covers all four corners (two were taken, and
    a third of the scene's height was cut off)."""
    from zoomsr.inference.grid import plan_grid
    from zoomsr.inference.inputs.frame import footprint

    origin = (-10_350_000.0, 4_445_000.0) if crs == "EPSG:3857" else (500_000.0, 4_100_000.0)
    t = Affine(10, 2, origin[0], 2, -10, origin[1])
    path = tmp_path / "rot_TCI.tif"
    data = np.random.default_rng(0).integers(1, 256, (3, 64, 64), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                       crs=crs, transform=t, nodata=0) as ds:
        ds.write(data)
    frame = discover_frames([path]).frames[0]
    corners = [t @ (c, r) for c in (0, 64) for r in (0, 64)]
    box = footprint(t, 64, 64)
    assert (box.left, box.right) == (min(x for x, _ in corners), max(x for x, _ in corners))
    assert (box.bottom, box.top) == (min(y for _, y in corners), max(y for _, y in corners))
    assert frame.bounds == box
    grid = plan_grid([frame], 4)
    g = grid.transform
    left, top = g.c, g.f
    right, bottom = left + g.a * grid.width, top + g.e * grid.height
    from rasterio.warp import transform as warp

    xs, ys = warp(crs, "EPSG:3857", [x for x, _ in corners], [y for _, y in corners])
    for x, y in zip(xs, ys, strict=True):  # every corner inside (it was cut at the two taken)
        assert left - 1e-6 <= x <= right + 1e-6 and bottom - 1e-6 <= y <= top + 1e-6


# --- a manifest's missing entries and byte-order mark; inputs that are all set aside


@pytest.mark.parametrize("suffix", [".txt", ".json"])
def test_a_manifest_entry_in_a_missing_folder_is_named(tmp_path, suffix):
    """A typo in an entry's folder failed as a bare FileNotFoundError (exit 1) from the look
    for its SCL beside it, naming neither the manifest nor the entry."""
    (tci,) = write_frames(tmp_path / "data", n=1, size=(24, 24))
    man = _manifest(tmp_path / f"m{suffix}",
                    [f"data/{tci.name}", "typo/T1_20200101_TCI.tif"])
    where = "line 2" if suffix == ".txt" else "frame 1"
    with pytest.raises(DataError, match=rf"^{man}: {where}: typo/T1_20200101_TCI.tif: not "
                       r"found \(paths are relative to the manifest's folder\)$"):
        discover_frames(man)
    band = _manifest(tmp_path / "bands.json", [{"tci": f"data/{tci.name}", "scl": "no/SCL.tif"}])
    with pytest.raises(DataError, match=rf"^{band}: frame 0, scl: no/SCL.tif: not found"):
        discover_frames(band)


@pytest.mark.parametrize("suffix", [".txt", ".json"])
def test_a_manifest_with_a_byte_order_mark_is_read(tmp_path, suffix):
    """Windows' Notepad saves UTF-8 with a byte-order mark: it became part of the first path
    (a .txt) or made the JSON invalid."""
    paths = write_frames(tmp_path / "data", n=2, size=(24, 24))
    man = _manifest(tmp_path / f"m{suffix}", [f"data/{p.name}" for p in paths])
    man.write_bytes(b"\xef\xbb\xbf" + man.read_bytes())
    found = discover_frames(man)
    assert [f.paths[0] for f in found.frames] == paths


def test_inputs_that_are_all_set_aside_say_why(tmp_path):
    """A folder of B08 files only, a B08 named alone, previews only: "no input frames" said
    nothing of why (the reasons were printed only after a run)."""
    (tci,) = write_frames(tmp_path / "src", n=1, size=(24, 24))
    (b08,) = write_b08([tci], 100)
    only = tmp_path / "only_b08"
    only.mkdir()
    moved = b08.rename(only / b08.name)
    with pytest.raises(DataError, match=rf"^no Sentinel-2 date among the inputs: {moved}: not "
                       r"a band this model takes$"):
        discover_frames(only)
    with pytest.raises(DataError, match=rf"{moved}: not a band this model takes"):
        discover_frames([moved])
    previews = tmp_path / "previews"
    previews.mkdir()
    for k in range(4):
        (previews / f"T1_2020010{k}_PVI.tif").write_bytes(tci.read_bytes())
    with pytest.raises(DataError, match=r"^no Sentinel-2 date among the inputs: .*_PVI.tif: a "
                       r"preview image, not a date; .*_PVI.tif: a preview image, not a date "
                       r"\(and 2 more set aside\)$"):
        discover_frames(previews)
