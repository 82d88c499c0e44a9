"""A raster of uint8 rows in a flat file: where a run's output rows go before the GeoTIFF.

Rows are written and read with ``pwrite``/``pread`` at their offsets, so threads (and other
processes: the GeoTIFF writer process) can write and read different rows at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoomsr.errors import DataError, WriteError


def _pwrite_all(fd: int, data: np.ndarray, offset: int) -> None:
    """Write ``data``'s bytes at ``offset`` of ``fd`` from its own memory (no copy when it is
    contiguous: rows of a wide scene are tens of MB), looping over short writes."""
    view = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:  # a write that makes no progress would loop forever
            raise OSError(f"wrote nothing at byte {offset} ({len(view)} bytes left)")
        view, offset = view[n:], offset + n


def _pread_all(fd: int, out: np.ndarray, offset: int, name: Path) -> None:
    """Fill contiguous ``out`` with the bytes at ``offset`` of ``fd`` (file ``name``), looping
    over short reads: :func:`_pwrite_all`'s twin."""
    view = memoryview(out.reshape(-1).view(np.uint8))  # type: ignore[arg-type]  # (numpy's stub)
    while view:
        n = os.preadv(fd, [view], offset)
        if n <= 0:
            raise OSError(f"{name}: short read at byte {offset}")
        view, offset = view[n:], offset + n


@dataclass
class RawRaster:
    """A ``height`` x ``width`` x ``bands`` uint8 raster stored row-major in a flat file."""

    path: Path
    width: int
    height: int
    bands: int

    @property
    def row_bytes(self) -> int:
        return self.width * self.bands

    def create(self) -> None:
        size = self.row_bytes * self.height
        try:
            with open(self.path, "wb") as f:
                f.truncate(size)  # sparse: no disk used until rows are written
        except OSError as exc:
            raise WriteError(f"{self.path}: cannot create the run's raw file of {size} bytes "
                              f"({exc.strerror or exc}; a file-size limit, `ulimit -f`?)"
                              ) from None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[int]:
        """A descriptor to write with; a failed write (disk full, a file-size limit) names
        the file (it was a bare "OSError: [Errno 27] File too large")."""
        try:
            fd = os.open(self.path, os.O_WRONLY)
            try:
                yield fd
            finally:
                os.close(fd)
        except OSError as exc:
            raise WriteError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def write_rows(self, row: int, data: np.ndarray) -> None:
        """Write ``[rows, width, bands]`` uint8 starting at ``row``."""
        if data.shape[1:] != (self.width, self.bands) or data.dtype != np.uint8:
            raise ValueError(f"bad raw block {data.shape} {data.dtype}")
        with self._writing() as fd:
            _pwrite_all(fd, data, row * self.row_bytes)

    def write_block(self, row: int, col: int, data: np.ndarray) -> None:
        """Write ``[rows, w, bands]`` uint8 at (``row``, ``col``): a column strip of rows."""
        if col == 0 and data.shape[1] == self.width:
            self.write_rows(row, data)
            return
        if data.shape[2] != self.bands or col + data.shape[1] > self.width:
            raise ValueError(f"bad raw block {data.shape} at column {col}")
        with self._writing() as fd:
            for i in range(data.shape[0]):
                _pwrite_all(fd, data[i], ((row + i) * self.width + col) * self.bands)

    def check_size(self) -> None:
        """Refuse a raw file of another size than its raster's (cut short: its rows would
        read as missing)."""
        size, expected = self.path.stat().st_size, self.row_bytes * self.height
        if size != expected:
            raise DataError(f"{self.path}: {size} bytes, not the {expected} of the run's raw "
                            "raster (damaged); pass --overwrite instead of --resume to start "
                            "again")

    def read_rows(self, row: int, count: int, cols: tuple[int, int] | None = None,
                  fd: int | None = None) -> np.ndarray:
        """``[count, w, bands]`` uint8 from ``row``: whole rows, or columns ``[c0, c1)``.
        ``fd``: a descriptor of the file open for reading, to read with (else it is opened).

        Whole rows are one read; columns, one read per row (reading whole rows and keeping
        the columns read a scene in n column strips n times over: from the disk where the
        raw file is larger than the page cache, the case column strips are for)."""
        c0, c1 = cols or (0, self.width)
        if not 0 <= c0 < c1 <= self.width:
            raise ValueError(f"bad raw columns [{c0}, {c1}) of {self.width}")
        out = np.empty((count, c1 - c0, self.bands), np.uint8)
        with contextlib.ExitStack() as opened:
            if fd is None:
                fd = os.open(self.path, os.O_RDONLY)
                opened.callback(os.close, fd)
            if (c0, c1) == (0, self.width):
                self._pread(fd, out, row * self.row_bytes)
                return out
            for i in range(count):
                self._pread(fd, out[i], ((row + i) * self.width + c0) * self.bands)
        return out

    def _pread(self, fd: int, out: np.ndarray, offset: int) -> None:
        try:
            _pread_all(fd, out, offset, self.path)
        except OSError:
            self.check_size()  # cut short since: not zeros for rows
            raise
