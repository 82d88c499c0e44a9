"""Write errors that GDAL reports without rasterio raising them.

rasterio logs GDAL's errors (logger ``rasterio._env``) and raises only where a call's status says
it failed. A GeoTIFF's blocks are flushed when the dataset is closed, and a failure there (a full
disk: libtiff's "No space left on device") is only logged: the file then looks complete and is
not. :func:`write_errors_raised` turns both into one :class:`~zoomsr.errors.DataError` that
names the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

from rasterio.errors import RasterioError

from zoomsr.errors import DataError, first_line

try:  # rasterio's GDAL error classes (CPLE_*), raised by some calls
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - rasterio always has it
    CPLE_BaseError = RasterioError  # type: ignore[misc,assignment]


class _ThreadErrors(logging.Handler):
    """Collects the ERROR records that one thread logs."""

    def __init__(self, thread: int) -> None:
        super().__init__(logging.ERROR)
        self.thread = thread
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def write_errors_raised(path: str | os.PathLike[str]) -> Iterator[None]:
    """Raise :class:`DataError` ``"PATH: cannot write (REASON)"`` when GDAL reported an error in
    this thread while the block ran (errors are logged inside a ``rasterio.Env``, which
    ``rasterio.open`` enters), or when rasterio raised one, or an ``OSError`` came."""
    logger = logging.getLogger("rasterio._env")
    handler = _ThreadErrors(threading.get_ident())
    logger.addHandler(handler)
    try:
        yield
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror or first_line(exc)})") from None
    except (RasterioError, CPLE_BaseError) as exc:
        reason = handler.messages[0] if handler.messages else first_line(exc)
        raise DataError(f"{path}: cannot write (GDAL: {reason}); check the free space "
                        "there") from None
    finally:
        logger.removeHandler(handler)
    if handler.messages:
        # libtiff's own reason ("No space left on device") goes to stderr, not to the log
        raise DataError(f"{path}: cannot write (GDAL: {handler.messages[0]}); check the free "
                        "space there")


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush ``path``'s data to the disk, before it is renamed into place: a power cut then
    leaves the old file or the whole new one, and a write that fails only now (a filesystem
    that allocates late, a network one) raises ``OSError`` here."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
