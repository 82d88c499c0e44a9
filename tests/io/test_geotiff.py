"""The output GeoTIFF writer: its bytes depend on the pixels only, not on GDAL's cache;
its write errors are errors."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from zoomsr.io.geotiff import write_geotiff
from zoomsr.io.raw_raster import RawRaster


def _raw(tmp_path, size: int, bands: int) -> RawRaster:
    """A ``size`` px raw raster of ``bands`` bands + mask, with nodata holes (0 in every
    band, as the pipeline's rows are)."""
    raw = RawRaster(tmp_path / "sr.raw", size, size, bands + 1)
    raw.create()
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    for row in range(0, size, 256):
        n = min(256, size - row)
        block = np.empty((n, size, bands + 1), np.uint8)
        block[..., :bands] = (ramp[None, :, None] + rng.integers(0, 40, (n, size, bands)))
        block[..., -1] = 255
        block[: n // 3, row // 4 : row // 4 + 300] = 0
        raw.write_rows(row, block)
    return raw


@pytest.mark.parametrize("bands", [3, 4])
def test_bytes_do_not_depend_on_gdal_cache(tmp_path, bands):
    # The mask is 2.25 MB: with a 1 MB block cache GDAL must evict mask blocks while the file
    # is written (as when other threads' reads fill the cache). Before the file was reopened
    # per strip, the tiles were then laid out in another order.
    raw = _raw(tmp_path, 1536, bands)
    names = ["red", "green", "blue", "uncertainty"][:bands]
    outs = []
    for i, env in enumerate([{}, {"GDAL_CACHEMAX": 2**20}]):
        out = tmp_path / f"out{i}.tif"
        with rasterio.Env(**env):
            write_geotiff(raw, out, crs="EPSG:3857", transform=Affine(2.4, 0, 0, 0, -2.4, 0),
                          band_names=names, tags={"zoomsr_model": "test"})
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    expected = raw.read_rows(0, raw.height)
    with rasterio.open(outs[0]) as ds:
        assert ds.descriptions == tuple(names) and ds.tags()["zoomsr_model"] == "test"
        assert ds.compression.name == "deflate" and ds.block_shapes[0] == (256, 256)
        mask = ds.dataset_mask()
        data = np.moveaxis(ds.read(), 0, -1)
    assert (mask == expected[..., -1]).all()
    assert (data == expected[..., :-1]).all()


def test_no_bytes_left_behind_by_the_reopening(tmp_path):
    """The file is no larger than one written in a single pass: closing the empty file first
    must not leave an empty tile per tile behind."""
    from zoomsr.io.geotiff import _profile

    raw = RawRaster(tmp_path / "flat.raw", 1024, 1024, 4)
    raw.create()
    block = np.full((256, 1024, 4), 255, np.uint8)
    block[..., :3] = np.linspace(0, 255, 1024, dtype=np.uint8)[None, :, None]
    for row in range(0, 1024, 256):
        raw.write_rows(row, block)
    transform = Affine(2.4, 0, 0, 0, -2.4, 0)
    ours = tmp_path / "ours.tif"
    write_geotiff(raw, ours, crs="EPSG:3857", transform=transform,
                  band_names=["red", "green", "blue"], tags={})
    one_pass = tmp_path / "one_pass.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(
            one_pass, "w", **_profile(1024, 1024, 3, "EPSG:3857", transform)) as dst:
        data = raw.read_rows(0, 1024)
        dst.write(np.moveaxis(data[..., :3], -1, 0))
        dst.write_mask(data[..., 3])
    assert ours.stat().st_size <= one_pass.stat().st_size * 1.01 + 2048


def test_strips_reach_gdal_as_views_of_the_raw_rows(tmp_path):
    """The writer hands GDAL the bands and the mask as views of the rows read (no NumPy pass
    over a strip), and GDAL writes the same bytes as from contiguous arrays."""
    from zoomsr.io.geotiff import _bands_and_mask, _profile

    rng = np.random.default_rng(3)
    block = rng.integers(0, 256, (256, 512, 4), dtype=np.uint8)
    block[..., -1] = np.where(rng.random((256, 512)) < 0.2, 0, 255)
    block[..., :-1] *= block[..., -1:] > 0
    bands, mask = _bands_and_mask(block)
    assert np.shares_memory(bands, block) and np.shares_memory(mask, block)
    assert np.array_equal(np.moveaxis(bands, 0, -1), block[..., :-1])
    outs = []
    for name, (b, m) in {"views": (bands, mask),
                         "copies": (np.ascontiguousarray(bands), mask.copy())}.items():
        out = tmp_path / f"{name}.tif"
        profile = _profile(512, 256, 3, "EPSG:3857", Affine(2.4, 0, 0, 0, -2.4, 0))
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(out, "w", **profile) as dst:
            dst.write(b)
            dst.write_mask(m)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("shape", [(256, 512), (300, 700), (1, 1), (511, 257)])
def test_tiles_with_data_is_the_per_tile_test(shape):
    from zoomsr.io.geotiff import tiles_with_data

    rng = np.random.default_rng(sum(shape))
    mask = np.zeros((shape[0], shape[1], 4), np.uint8)[..., 3]  # strided, as the writer's
    mask[rng.random(shape) < 1e-5] = 255  # a few pixels: some tiles hold none
    mask[-1, -1] = 255  # the last, partial tile
    expected = np.array([[mask[r:r + 256, c:c + 256].any() for c in range(0, shape[1], 256)]
                         for r in range(0, shape[0], 256)])
    assert np.array_equal(tiles_with_data(mask), expected)
    assert np.array_equal(tiles_with_data(mask, 128, 64), np.array(
        [[mask[r:r + 128, c:c + 64].any() for c in range(0, shape[1], 64)]
         for r in range(0, shape[0], 128)]))


def test_a_tile_with_data_and_no_bytes_is_an_error(tmp_path):
    """The writer's check of a strip (in the file's next opening): a tile that should hold
    valid pixels but has no bytes in the file (GDAL failed to write it: a full disk) raises,
    naming the tile; tiles without data are legitimately absent."""
    from zoomsr.io.geotiff import _check_tiles, _profile

    out = tmp_path / "t.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(
            out, "w", SPARSE_OK=True, **_profile(512, 512, 3, "EPSG:3857",
                                                 Affine(2.4, 0, 0, 0, -2.4, 0))) as dst:
        dst.write(np.full((3, 256, 256), 7, np.uint8), window=Window(0, 256, 256, 256))
    strip = Window(0, 256, 512, 256)
    with rasterio.open(out) as dst:
        _check_tiles(dst, strip, np.array([[True, False]]))  # tile (1, 0) was written
        with pytest.raises(OSError, match=r"GDAL did not write its tile \(1, 1\)"):
            _check_tiles(dst, strip, np.array([[True, True]]))
        with pytest.raises(ValueError, match="not aligned"):
            _check_tiles(dst, Window(0, 100, 512, 256), np.array([[True, False]]))


def test_chunks_off_the_tile_edges_are_refused_before_anything_is_written(tmp_path):
    from zoomsr.io.geotiff import column_chunks

    raw = _raw(tmp_path, 600, 3)
    kwargs = {"crs": "EPSG:3857", "transform": Affine(2.4, 0, 0, 0, -2.4, 0),
              "band_names": ["red", "green", "blue"], "tags": {}}
    for chunks in ([(0, 100), (100, 600)], [(0, 256), (300, 600)], [(0, 512)],
                   [(256, 600)], [(0, 512), (512, 256), (256, 600)]):
        with pytest.raises(ValueError, match="tile edge"):
            write_geotiff(raw, tmp_path / "o.tif", chunks=chunks, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sr.raw"]
    for ends in ([600], [300, 600], [100, 200, 600], [512, 520, 600]):  # empty chunks too
        write_geotiff(raw, tmp_path / "o.tif", chunks=column_chunks(600, ends), **kwargs)
        (tmp_path / "o.tif").unlink()


_FULL_DISK = r'''
import os, resource, signal, sys, threading
from pathlib import Path
import numpy as np
from affine import Affine
from zoomsr.errors import WriteError
from zoomsr.io.geotiff import write_geotiff
from zoomsr.io.raw_raster import RawRaster

tmp, cog, mode, limit = Path(sys.argv[1]), sys.argv[2] == "cog", sys.argv[3], int(sys.argv[4])
if len(sys.argv) > 5:  # libtiff's lines, logged (not printed by libtiff), to stdout
    import logging
    logging.basicConfig(stream=sys.stdout, format="LOG %(name)s %(message)s")
    logging.getLogger("zoomsr.libtiff").setLevel(logging.DEBUG)
side = int(os.environ.get("SIDE", "512"))
raw = RawRaster(tmp / "sr.raw", side, side, 4)
raw.create()
ramp = np.linspace(0, 200, side, dtype=np.float32)
pixels = (ramp[None, :, None] + np.random.default_rng(0).integers(0, 40, (side, side, 4)))
pixels = pixels.astype(np.uint8)
pixels[..., -1] = 255
if os.environ.get("HOLE"):  # nodata in the top-left corner: the mask has tiles of both kinds
    pixels[:300, :300] = 0
raw.write_rows(0, pixels)
if limit:  # files may not grow past it from here: writes fail with EFBIG as on a full disk
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def write():
    try:
        write_geotiff(raw, tmp / "out.tif", crs="EPSG:3857",
                      transform=Affine(2.4, 0, 0, 0, -2.4, 0),
                      band_names=["red", "green", "blue"], tags={"a": "b"}, cog=cog)
        print("wrote", os.path.getsize(tmp / "out.tif"))
    except WriteError as exc:
        print("WriteError:", exc)


def write_in_process():  # as the pipeline's writer process (it inherits the limit)
    from zoomsr.io.geotiff_stream import GeoTIFFProcess

    stream = GeoTIFFProcess(raw, tmp / "out.tif", crs="EPSG:3857",
                            transform=Affine(2.4, 0, 0, 0, -2.4, 0),
                            band_names=["red", "green", "blue"], cog=cog)
    try:
        stream.start()
        stream.finish({"a": "b"})
        print("wrote", os.path.getsize(tmp / "out.tif"))
    except WriteError as exc:
        stream.abandon()
        print("WriteError:", exc)


if mode == "thread":  # as GeoTIFFStream runs it
    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
elif mode == "process":
    write_in_process()
else:
    write()
'''


@pytest.mark.parametrize(("cog", "mode"), [(False, "thread"), (True, "thread"),
                                           (False, "process")])
def test_a_write_that_fails_is_an_error_and_leaves_no_output(tmp_path, cog, mode):
    """libtiff's write errors (a full disk) came out only as GDAL log lines when the file was
    closed: the run printed "wrote", a corrupt file was renamed into place and the rows
    removed. A failure at the last writes (the file's directory) went to stderr only, and
    the same happened. Files limited in size here (RLIMIT_FSIZE) fail as a full disk does:
    to 100 KB, and to 3 KB less than the whole file. In the writer process, the error comes
    back to the parent as the same one line. libtiff's own lines ("_tiffWriteProc: File too
    large.", printed by its default handler, from its I/O callbacks, before that line)
    go to the log (DEBUG), not to stderr."""
    import subprocess
    import sys

    def run(limit: int, *log: str) -> str:
        done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path),
                               "cog" if cog else "plain", mode, str(limit), *log],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "_tiff" not in done.stderr and "File too large" not in done.stderr, done.stderr
        return done.stdout.strip()

    whole = int(run(0).split()[-1])
    (tmp_path / "out.tif").unlink()
    for limit in (100_000, whole - 3000):
        lines = run(limit).splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"WriteError: {tmp_path / 'out.tif'}: cannot write ("), (limit, lines)
        assert lines[0].endswith(f"; files may not grow past {limit} bytes here (ulimit -f))")
    if mode == "thread":  # (the writer process is another interpreter, its own log)
        logged = run(100_000, "log").splitlines()
        assert "LOG zoomsr.libtiff _tiffWriteProc: File too large" in logged, logged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sr.raw"]  # no output, no temp


def test_a_write_failing_in_its_last_bytes_is_an_error(tmp_path):
    """Flushed per strip, the file's last mask tile still went out only at the close, after
    the directory: a full disk in the last few bytes left a file without its mask (nodata
    read as valid black) renamed into place, exit 0. Limits just under the whole file's
    size, with a nodata corner."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HOLE": "1", "SIDE": "768"}

    def run(limit: int) -> str:
        done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path), "plain",
                               "thread", str(limit)], capture_output=True, text=True,
                              timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    whole = int(run(0).split()[-1])
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert (ds.dataset_mask() == 0).sum() == 300 * 300
    (tmp_path / "out.tif").unlink()
    for limit in (whole - 1, whole - 9, whole - 20, whole - 33):
        out = run(limit)
        assert out.startswith("WriteError:"), (whole, limit, out)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["sr.raw"]


def _smooth_raw(tmp_path, size: int) -> RawRaster:
    """Smooth content with a little noise (as model output): DEFLATE's levels differ on it."""
    raw = RawRaster(tmp_path / "smooth.raw", size, size, 4)
    raw.create()
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    rng = np.random.default_rng(1)
    block = np.empty((size, size, 4), np.uint8)
    for c in range(3):
        block[..., c] = (120 + 60 * np.sin(x / (17 + 5 * c)) * np.cos(y / 23)
                         + rng.integers(0, 4, (size, size)))
    block[..., 3] = 255
    raw.write_rows(0, block)
    return raw


def _one_pass(tmp_path, raw: RawRaster, level: int) -> int:
    """The size of the file rasterio writes in one pass at DEFLATE ``level``."""
    from zoomsr.io.geotiff import _profile

    out = tmp_path / f"one_pass{level}.tif"
    data = raw.read_rows(0, raw.height)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(out, "w", **_profile(
            raw.width, raw.height, 3, "EPSG:3857", Affine(2.4, 0, 0, 0, -2.4, 0),
            level)) as dst:
        dst.write(np.moveaxis(data[..., :3], -1, 0))
        dst.write_mask(data[..., 3])
    return out.stat().st_size


@pytest.mark.parametrize("cog", [False, True])
def test_the_deflate_level_asked_for_is_the_files(tmp_path, cog):
    """A GeoTIFF reopened for update compresses at libtiff's default (6) whatever it was
    created with: when each strip reopened the file, every level gave the same bytes. The
    file at each level is as large as rasterio's own one-pass file at that level, and the
    pixels are the same."""
    raw = _smooth_raw(tmp_path, 768)
    sizes = {}
    for level in (1, 6, 12):
        out = tmp_path / f"l{level}.tif"
        write_geotiff(raw, out, crs="EPSG:3857", transform=Affine(2.4, 0, 0, 0, -2.4, 0),
                      band_names=["red", "green", "blue"], tags={}, cog=cog,
                      deflate_level=level)
        sizes[level] = out.stat().st_size
        if not cog:  # (a COG adds overviews)
            assert abs(sizes[level] - _one_pass(tmp_path, raw, level)) < 2048
        with rasterio.open(out) as ds:
            assert np.array_equal(np.moveaxis(ds.read(), 0, -1), raw.read_rows(0, 768)[..., :3])
    assert sizes[1] > sizes[6] > sizes[12]


@pytest.mark.parametrize("level", [0, 13, 4.0, True, "4"])
def test_a_deflate_level_out_of_range_is_refused(tmp_path, level):
    raw = _smooth_raw(tmp_path, 256)
    with pytest.raises(ValueError, match=r"deflate level .*from 1 \(fastest\) to 12"):
        write_geotiff(raw, tmp_path / "o.tif", crs="EPSG:3857",
                      transform=Affine(2.4, 0, 0, 0, -2.4, 0),
                      band_names=["red", "green", "blue"], tags={}, deflate_level=level)
    assert not (tmp_path / "o.tif").exists()


def test_where_gdal_cannot_be_reached_the_file_is_reopened_per_strip(tmp_path, monkeypatch,
                                                                     caplog):
    """Without GDAL's handle (no /proc to find the library) the writer reopens the file for
    each strip: the same pixels, GDAL's cache still without effect on the bytes, and a
    warning that the level asked for (other than libtiff's 6) was not applied."""
    import zoomsr.io.geotiff as geotiff

    monkeypatch.setattr(geotiff, "dataset_flusher", lambda dataset: None)
    geotiff._warn_level_once.cache_clear()
    raw = _raw(tmp_path, 1536, 3)
    outs = []
    for i, env in enumerate([{}, {"GDAL_CACHEMAX": 2**20}]):
        out = tmp_path / f"out{i}.tif"
        with rasterio.Env(**env), caplog.at_level("WARNING", logger="zoomsr.io.geotiff"):
            write_geotiff(raw, out, crs="EPSG:3857", transform=Affine(2.4, 0, 0, 0, -2.4, 0),
                          band_names=["red", "green", "blue"], tags={"a": "b"},
                          deflate_level=6 if i == 0 else 2)
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()  # level 2 not applied: 6, as asked first
    assert [r.getMessage() for r in caplog.records] == [
        "DEFLATE level 2 not applied: GDAL's library could not be reached to flush the output "
        "as it is written, so it is compressed at libtiff's default, 6"]
    with rasterio.open(outs[0]) as ds:
        expected = raw.read_rows(0, raw.height)
        assert (ds.dataset_mask() == expected[..., -1]).all() and ds.tags()["a"] == "b"
        assert (np.moveaxis(ds.read(), 0, -1) == expected[..., :-1]).all()
    caplog.clear()  # a COG's level is applied by its own pass: nothing to warn of
    with caplog.at_level("WARNING", logger="zoomsr.io.geotiff"):
        write_geotiff(raw, tmp_path / "c.tif", crs="EPSG:3857", cog=True, deflate_level=3,
                      transform=Affine(2.4, 0, 0, 0, -2.4, 0),
                      band_names=["red", "green", "blue"], tags={})
    assert caplog.records == []


def test_a_valid_tile_of_black_pixels_is_written(tmp_path):
    """A model's all-black output where the inputs were valid: the tile's pixels are all 0,
    its mask 255. Kept open and sparse, GDAL left such a tile out and the tile check took it
    for a lost write (seen with a random model's black output)."""
    raw = RawRaster(tmp_path / "black.raw", 300, 300, 4)
    raw.create()
    block = np.zeros((300, 300, 4), np.uint8)
    block[..., 3] = 255
    block[256:, 256:, 3] = 0  # one tile, partial, masked out
    raw.write_rows(0, block)
    out = tmp_path / "black.tif"
    write_geotiff(raw, out, crs="EPSG:3857", transform=Affine(2.4, 0, 0, 0, -2.4, 0),
                  band_names=["red", "green", "blue"], tags={})
    with rasterio.open(out) as ds:
        assert not ds.read().any() and (ds.dataset_mask() == block[..., 3]).all()
        assert all(ds.block_size(1, i, j) > 0 for i in (0, 1) for j in (0, 1))


def test_a_kept_open_output_checks_every_tile_of_a_strip(tmp_path, monkeypatch):
    """Kept open, the output is not sparse: each strip's tiles all need bytes, those without a
    valid pixel too, so all are checked (none is looked for in the mask), whole and partial
    ones alike; every tile is then in the file."""
    from zoomsr.io import geotiff

    seen = []
    check = geotiff._check_tiles
    monkeypatch.setattr(geotiff, "_check_tiles",
                        lambda dst, window, tiles: seen.append(tiles.copy()) or check(
                            dst, window, tiles))
    monkeypatch.setattr(geotiff, "tiles_with_data", lambda *a: pytest.fail("not needed"))
    profile = geotiff._profile(600, 512, 3, "EPSG:3857", Affine(2.4, 0, 0, 0, -2.4, 0))
    block = np.zeros((256, 600, 4), np.uint8)
    block[:, 300:] = 255  # the left tiles hold no valid pixel
    out = tmp_path / "o.tif"
    with geotiff._StripWriter(out, profile, "1", ["r", "g", "b"], 4) as writer:
        if writer.dst is None:
            pytest.skip("GDAL's library not reachable here: the file is reopened per strip")
        for row in (0, 256):
            writer.write(Window(0, row, 600, 256), *geotiff._bands_and_mask(block))
        writer.finish({})
    assert [t.tolist() for t in seen] == [[[True, True, True]]] * 2
    with rasterio.open(out) as dst:
        assert all(dst.block_size(1, i, j) > 0 for i in range(2) for j in range(3))
