"""Write errors that GDAL reports without rasterio raising them.

rasterio logs GDAL's errors (logger ``rasterio._env``) and raises only where a call's status says
it failed. A GeoTIFF's blocks are flushed when the dataset is closed, and a failure there (a full
disk: libtiff's "No space left on device") is only logged: the file then looks complete and is
not. :func:`write_errors_raised` turns both into one :class:`~zoomsr.errors.WriteError` that
names the file.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import shutil
import threading
from collections.abc import Iterator

from rasterio.errors import RasterioError

from zoomsr.errors import WriteError, first_line
from zoomsr.io.gdal_lib import mapped_libraries

try:  # rasterio's GDAL error classes (CPLE_*), raised by some calls
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - rasterio always has it
    CPLE_BaseError = RasterioError


class _ThreadErrors(logging.Handler):
    """Collects the ERROR records that one thread logs."""

    def __init__(self, thread: int) -> None:
        super().__init__(logging.ERROR)
        self.thread = thread
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


#: libtiff's errors that reach no GDAL handler (its I/O callbacks' "_tiffWriteProc: File too
#: large."), logged here at DEBUG instead of printed on stderr.
LIBTIFF_LOGGER = logging.getLogger("zoomsr.libtiff")

# void (*TIFFErrorHandler)(const char *module, const char *fmt, va_list ap): a va_list
# arrives as a pointer on every ABI Python runs on (x86-64 and AArch64 SysV pass theirs by
# reference, the others are a char *), and goes on to vsnprintf as it came
_TIFF_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)


def _log_libtiff_error(module: bytes | None, fmt: bytes | None, args: int | None) -> None:
    try:  # an exception escaping a ctypes callback would be printed on stderr
        buf = ctypes.create_string_buffer(1024)
        _vsnprintf(buf, len(buf), fmt, args)
        text = buf.value.decode(errors="replace")
        LIBTIFF_LOGGER.debug("%s: %s", (module or b"libtiff").decode(errors="replace"), text)
    except Exception:  # noqa: BLE001, S110 - nothing may escape into C
        pass


_libtiff_handler = _TIFF_HANDLER(_log_libtiff_error)  # kept alive: C holds its address
_libtiff_lock = threading.Lock()
_libtiff_users = 0
_libtiff_previous: int | None = None


@functools.cache  # found once, on the first write
def _gdal_libtiff() -> ctypes.CDLL | None:
    """The libtiff that the process's GDAL (rasterio's) writes with, found among the mapped
    libraries beside libgdal (a wheel's ``rasterio.libs``, a system's lib folder), or the
    only one mapped; None where that cannot be told (no ``/proc``: macOS, Windows)."""
    paths = mapped_libraries()
    if paths is None:
        return None
    tiffs = sorted(p for p in paths if os.path.basename(p).startswith("libtiff"))
    gdal_dirs = {os.path.dirname(p) for p in paths if os.path.basename(p).startswith("libgdal")}
    beside = [p for p in tiffs if os.path.dirname(p) in gdal_dirs]
    chosen = beside or (tiffs if len(tiffs) == 1 else [])
    if len(chosen) != 1:
        return None
    try:
        lib = ctypes.CDLL(chosen[0])
        lib.TIFFSetErrorHandler.restype = ctypes.c_void_p
        lib.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return lib


def _libc_vsnprintf():  # noqa: ANN202
    try:
        fn = ctypes.CDLL(None).vsnprintf
    except (OSError, AttributeError, TypeError):  # pragma: no cover - no C library by name
        return None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_vsnprintf = _libc_vsnprintf()


@contextlib.contextmanager
def libtiff_errors_logged() -> Iterator[None]:
    """While the block runs, libtiff's global error handler logs to :data:`LIBTIFF_LOGGER`
    (DEBUG) instead of printing: its I/O callbacks report a failed write ("_tiffWriteProc:
    File too large.") there, where no GDAL handler sees it, and the one-line
    :class:`WriteError` already says why. Nested and concurrent blocks share one
    installation; the previous handler is back once the last ends. Where libtiff cannot be
    found (not Linux) nothing changes."""
    global _libtiff_users, _libtiff_previous
    with _libtiff_lock:
        lib = _gdal_libtiff() if _vsnprintf is not None else None
        if lib is not None:
            if _libtiff_users == 0:
                _libtiff_previous = lib.TIFFSetErrorHandler(
                    ctypes.cast(_libtiff_handler, ctypes.c_void_p))
            _libtiff_users += 1
    try:
        yield
    finally:
        if lib is not None:
            with _libtiff_lock:
                _libtiff_users -= 1
                if _libtiff_users == 0:
                    lib.TIFFSetErrorHandler(_libtiff_previous)


@contextlib.contextmanager
def write_errors_raised(path: str | os.PathLike[str]) -> Iterator[None]:
    """Raise :class:`WriteError` ``"PATH: cannot write (REASON)"`` when GDAL reported an error in
    this thread while the block ran (errors are logged inside a ``rasterio.Env``, which
    ``rasterio.open`` enters), or when rasterio raised one, or an ``OSError`` came. libtiff's
    own lines for the failure are logged, not printed (:func:`libtiff_errors_logged`)."""
    logger = logging.getLogger("rasterio._env")
    handler = _ThreadErrors(threading.get_ident())
    logger.addHandler(handler)
    try:
        with libtiff_errors_logged():
            yield
    except OSError as exc:
        raise WriteError(f"{path}: cannot write ({_reason(path, exc.strerror or first_line(exc))})"
                         ) from None
    except (RasterioError, CPLE_BaseError) as exc:
        reason = handler.messages[0] if handler.messages else first_line(exc)
        raise WriteError(f"{path}: cannot write ({_reason(path, f'GDAL: {reason}')})") from None
    except Exception as exc:
        # after a failed write, reopening the cut file fails in other ways (rasterio raised a
        # TypeError "not recognized as being in a supported file format" naming the temporary
        # file): the write's failure is the reason, when GDAL reported one or the disk is full
        if not handler.messages and not _disk_full(path):
            raise
        reason = f"GDAL: {handler.messages[0]}" if handler.messages else first_line(exc)
        raise WriteError(f"{path}: cannot write ({_reason(path, reason)})") from None
    finally:
        logger.removeHandler(handler)
    if handler.messages:
        raise WriteError(f"{path}: cannot write ({_reason(path, f'GDAL: {handler.messages[0]}')})")


#: Free space below this (bytes) on a write's device reads as a full disk.
FULL_DISK_BYTES = 1 << 20


def _disk_full(path: str | os.PathLike[str]) -> bool:
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < FULL_DISK_BYTES
    except OSError:
        return False


def _size_limit() -> int | None:
    """This process's file-size limit (bytes, ``ulimit -f``), if it has one."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _reason(path: str | os.PathLike[str], reason: str) -> str:
    """``reason``, said as a full disk when the device has (almost) no free space left, or
    with the process's file-size limit when it has one (libtiff's own "File too large" is only
    logged)."""
    if _disk_full(path) and "space" not in reason.lower():
        return f"no space left on its device; {reason}"
    limit = _size_limit()
    if limit is not None:
        return f"{reason}; files may not grow past {limit} bytes here (ulimit -f)"
    return reason


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush ``path``'s data to the disk, before it is renamed into place: a power cut then
    leaves the old file or the whole new one, and a write that fails only now (a filesystem
    that allocates late, a network one) raises ``OSError`` here."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def start_writeback(fd: int) -> None:
    """Have the kernel start writing the file ``fd``'s dirty pages to the disk, without
    waiting: what the :func:`fsync_file` before the rename then waits for was mostly written
    while the rest of the file was made. On Linux ``POSIX_FADV_DONTNEED`` starts that
    writeback (and drops only pages already clean), as PostgreSQL's ``pg_flush_data`` uses it;
    where there is no ``posix_fadvise`` (macOS) the data are flushed now (``fsync``)."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    else:
        os.fsync(fd)
