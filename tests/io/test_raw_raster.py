"""The raw raster: rows written and read whole, at their offsets, despite short I/O."""

from __future__ import annotations

import numpy as np
import pytest

from zoomsr.io.raw_raster import RawRaster


def test_raw_rows_and_blocks_are_written_whole_from_their_own_memory(tmp_path, monkeypatch):
    """Rows go to the raw file from the array's memory (no bytes copy: a row of a wide scene
    is tens of MB), blocks from strided views, and a short write goes on where it stopped."""
    import os

    from zoomsr.io import raw_raster as writer

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

    from zoomsr.io import raw_raster as writer

    real = os.preadv

    def short(fd, buffers, offset):  # at most 5 bytes at a time, as a read may return
        return real(fd, [memoryview(buffers[0])[:5]], offset)

    raw = RawRaster(tmp_path / "c.raw", 300, 50, 4)
    raw.create()
    raw.write_rows(0, np.random.default_rng(0).integers(0, 256, (50, 300, 4), dtype=np.uint8))
    whole = raw.read_rows(10, 40)
    monkeypatch.setattr(writer.os, "preadv", short)
    assert np.array_equal(raw.read_rows(10, 40, (37, 290)), whole[:, 37:290])
    assert np.array_equal(raw.read_rows(10, 40, (0, 300)), whole)
    with pytest.raises(ValueError, match="bad raw columns"):
        raw.read_rows(0, 1, (5, 301))



def test_reads_go_through_the_descriptor_given_and_only_where_asked(tmp_path, monkeypatch):
    """The writer reads through its own descriptor (left open): whole rows in one read; a
    strip's columns one row at a time, no byte outside them (whole rows, cut, read a scene in
    n column strips n times over); a file cut short since is named as damaged."""
    import os

    from zoomsr.errors import DataError
    from zoomsr.io import raw_raster as writer

    raw = RawRaster(tmp_path / "g.raw", 300, 50, 4)
    raw.create()
    raw.write_rows(0, np.random.default_rng(1).integers(0, 256, (50, 300, 4), dtype=np.uint8))
    whole = raw.read_rows(0, 50)
    reads = []
    real = os.preadv

    def counted(fd, buffers, offset):
        reads.append(len(memoryview(buffers[0])))
        return real(fd, buffers, offset)

    monkeypatch.setattr(writer.os, "preadv", counted)
    fd = os.open(raw.path, os.O_RDONLY)
    try:
        assert np.array_equal(raw.read_rows(5, 40, (10, 250), fd=fd), whole[5:45, 10:250])
        assert reads == [240 * 4] * 40
        reads.clear()
        assert np.array_equal(raw.read_rows(5, 40, fd=fd), whole[5:45])
        assert reads == [40 * raw.row_bytes]
        os.fstat(fd)  # still open
    finally:
        os.close(fd)
    os.truncate(raw.path, 20 * raw.row_bytes)
    with pytest.raises(DataError, match="damaged"):
        raw.read_rows(10, 20)
    with pytest.raises(DataError, match="damaged"):
        raw.read_rows(10, 20, (3, 30))
