"""libtiff's errors are logged while zoomsr writes, not printed by libtiff's default handler."""

from __future__ import annotations

import ctypes
import logging
import sys

import pytest

from zoomsr.io import gdal_errors

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="libtiff is found through /proc/self/maps (Linux)")


def _lib() -> ctypes.CDLL:
    import rasterio  # noqa: F401 - maps GDAL and its libtiff

    lib = gdal_errors._gdal_libtiff()
    assert lib is not None, "no libtiff beside rasterio's GDAL"
    return lib


def _current(lib: ctypes.CDLL) -> int | None:
    previous = lib.TIFFSetErrorHandler(None)
    lib.TIFFSetErrorHandler(previous)
    return previous


def test_libtiff_errors_are_logged_inside_and_the_handler_restored_after(caplog):
    """Nested blocks share one installation; a libtiff error (formatted from its va_list)
    reaches the ``zoomsr.libtiff`` logger, and the handler before is back at the end."""
    lib = _lib()
    before = _current(lib)
    ours = ctypes.cast(gdal_errors._libtiff_handler, ctypes.c_void_p).value
    assert before != ours
    lib.TIFFErrorExt.restype = None
    caplog.set_level(logging.DEBUG, logger="zoomsr.libtiff")
    with gdal_errors.libtiff_errors_logged():
        assert _current(lib) == ours
        with gdal_errors.libtiff_errors_logged():
            assert _current(lib) == ours
        assert _current(lib) == ours  # the outer block still holds it
        lib.TIFFErrorExt(None, b"_tiffWriteProc", b"%s (%d bytes)", b"File too large",
                         ctypes.c_int(4096))
    assert _current(lib) == before
    assert [r.getMessage() for r in caplog.records if r.name == "zoomsr.libtiff"] == [
        "_tiffWriteProc: File too large (4096 bytes)"]
