"""The output GeoTIFF writer: its bytes depend on the pixels only, not on GDAL's cache."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from zoomsr.inference.writer import RawRaster, write_geotiff


def _raw(tmp_path, size: int, bands: int) -> RawRaster:
    """A ``size`` px raw raster of ``bands`` bands + mask, with nodata holes."""
    raw = RawRaster(tmp_path / "sr.raw", size, size, bands + 1)
    raw.create()
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    for row in range(0, size, 256):
        n = min(256, size - row)
        block = np.empty((n, size, bands + 1), np.uint8)
        block[..., :bands] = (ramp[None, :, None] + rng.integers(0, 40, (n, size, bands)))
        block[..., -1] = 255
        block[: n // 3, row // 4 : row // 4 + 300, -1] = 0
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
    assert (data == np.where(mask[..., None] > 0, expected[..., :-1], 0)).all()


def test_no_bytes_left_behind_by_the_reopening(tmp_path):
    """The file is no larger than one written in a single pass: closing the empty file first
    must not leave an empty tile per tile behind."""
    from zoomsr.inference.writer import _profile

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


def test_raw_rows_and_blocks_are_written_whole_from_their_own_memory(tmp_path, monkeypatch):
    """Rows go to the raw file from the array's memory (no bytes copy: a row of a wide scene
    is tens of MB), blocks from strided views, and a short write goes on where it stopped."""
    import os

    from zoomsr.inference import writer

    writes = []
    real = os.pwrite

    def short(fd, data, offset):  # at most 7 bytes at a time, as a write may return
        writes.append(type(data))
        return real(fd, bytes(memoryview(data)[:7]), offset)

    monkeypatch.setattr(writer.os, "pwrite", short)
    raw = RawRaster(tmp_path / "r.raw", 6, 5, 3)
    raw.create()
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, (2, 6, 3), dtype=np.uint8)
    big = rng.integers(0, 256, (3, 8, 3), dtype=np.uint8)
    raw.write_rows(1, rows)
    raw.write_block(3, 2, big[:2, 1:5])  # a strided view: 2 rows of 4 columns at column 2
    assert bytes not in writes and memoryview in writes
    expected = np.zeros((5, 6, 3), np.uint8)
    expected[1:3] = rows
    expected[3:5, 2:6] = big[:2, 1:5]
    assert np.array_equal(raw.read_rows(0, 5), expected)


def test_raw_column_reads_go_on_after_short_reads(tmp_path, monkeypatch):
    """A column range of rows (what the writer reads for one strip's chunk) equals that slice
    of the whole rows, also when the system returns fewer bytes than asked for."""
    import os

    from zoomsr.inference import writer

    real = os.preadv

    def short(fd, buffers, offset):  # at most 5 bytes at a time, as a read may return
        return real(fd, [memoryview(buffers[0])[:5]], offset)

    raw = _raw(tmp_path, 300, 3)
    whole = raw.read_rows(10, 40)
    monkeypatch.setattr(writer.os, "preadv", short)
    assert np.array_equal(raw.read_rows(10, 40, (37, 290)), whole[:, 37:290])
    assert np.array_equal(raw.read_rows(10, 40, (0, 300)), whole)
    with pytest.raises(ValueError, match="bad raw columns"):
        raw.read_rows(0, 1, (5, 301))


def test_masked_bands_clear_every_masked_pixel():
    """The writer's contiguous masking gives what ``np.where`` over the interleaved rows gave:
    values where the mask is non-zero (any value: 1, 128, 255), 0 elsewhere; the mask 0/255."""
    from zoomsr.inference.writer import _masked_bands

    rng = np.random.default_rng(3)
    for bands in (3, 4):
        block = rng.integers(0, 256, (37, 53, bands + 1), dtype=np.uint8)
        block[..., -1] = rng.choice(np.array([0, 1, 128, 255], np.uint8), (37, 53))
        data, mask = _masked_bands(block)
        expected = np.where(block[..., -1:] > 0, block[..., :-1], 0)
        assert np.array_equal(data, np.moveaxis(expected, -1, 0))
        assert np.array_equal(mask, np.where(block[..., -1] > 0, 255, 0))
        assert data.flags.c_contiguous and mask.flags.c_contiguous


@pytest.mark.skipif(not hasattr(__import__("os"), "pwrite"), reason="POSIX only")
def test_a_raw_file_that_cannot_be_made_or_written_is_named_and_no_folder_is_left(tmp_path,
                                                                                  monkeypatch):
    """A file-size limit (`ulimit -f`, a FAT32 disk) or a full disk: one line naming the raw
    file (it was a bare "OSError: [Errno 27] File too large"), and no empty partial folder
    left beside the output (the docs say an error before the first row leaves none)."""
    import errno
    import os
    import resource

    from zoomsr.errors import ZoomsrError
    from zoomsr.inference.writer import PartialRun, partial_dir

    out = tmp_path / "o.tif"
    run = PartialRun(out, {"k": 1})
    raster = run.raw("sr", 4096, 4096, 4)  # 64 MiB, sparse
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, hard))  # Python ignores SIGXFSZ
    try:
        with pytest.raises(ZoomsrError) as info:
            run.start([raster], resume=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(info.value).startswith(f"{raster.path}: cannot create the run's raw file of "
                                      f"{4096 * 4096 * 4} bytes (File too large")
    assert not partial_dir(out).exists()

    small = RawRaster(tmp_path / "s.raw", 8, 2, 3)
    small.create()

    def full(fd, data, offset):  # noqa: ANN001
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    for write in (lambda: small.write_rows(0, np.zeros((1, 8, 3), np.uint8)),
                  lambda: small.write_block(0, 2, np.zeros((1, 4, 3), np.uint8))):
        with pytest.raises(ZoomsrError, match=f"{small.path}: cannot write "
                                              r"\(No space left on device\)"):
            write()


_FULL_DISK = r'''
import os, resource, signal, sys, threading
from pathlib import Path
import numpy as np
from affine import Affine
from zoomsr.errors import WriteError
from zoomsr.inference.writer import RawRaster, write_geotiff

tmp, cog, in_thread, limit = (Path(sys.argv[1]), sys.argv[2] == "cog", sys.argv[3] == "thread",
                              int(sys.argv[4]))
raw = RawRaster(tmp / "sr.raw", 512, 512, 4)
raw.create()
ramp = np.linspace(0, 200, 512, dtype=np.float32)
pixels = (ramp[None, :, None] + np.random.default_rng(0).integers(0, 40, (512, 512, 4)))
pixels = pixels.astype(np.uint8)
pixels[..., -1] = 255
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


if in_thread:  # as GeoTIFFWriter runs it
    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
else:
    write()
'''


@pytest.mark.parametrize("cog", [False, True])
def test_a_write_that_fails_is_an_error_and_leaves_no_output(tmp_path, cog):
    """libtiff's write errors (a full disk) came out only as GDAL log lines when the file was
    closed: the run printed "wrote", a corrupt file was renamed into place and the rows
    removed. A failure at the last writes (the file's directory) went to stderr only, and
    the same happened. Files limited in size here (RLIMIT_FSIZE) fail as a full disk does:
    to 100 KB, and to 3 KB less than the whole file."""
    import subprocess
    import sys

    def run(limit: int) -> str:
        done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path),
                               "cog" if cog else "plain", "thread", str(limit)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    whole = int(run(0).split()[-1])
    (tmp_path / "out.tif").unlink()
    for limit in (100_000, whole - 3000):
        lines = run(limit).splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"WriteError: {tmp_path / 'out.tif'}: cannot write ("), (limit, lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sr.raw"]  # no output, no temp
