"""The DEFLATE level of the GeoTIFFs zoomsr writes (no GDAL import: the CLI's options use it)."""

from __future__ import annotations

import numbers

#: DEFLATE level of the output (GDAL's ``ZLEVEL``; 1-12, libdeflate's range). GDAL's default,
#: 6, is where libdeflate's much harder search starts: on Real-ESRGAN output of a real
#: Sentinel-2 crop (the writer alone, 15424 x 2048 px, 2-core CPU, medians of 3:
#: ``benchmarks/writer_throughput.py --content``) level 6 took 3.3x as long as 4 (1.977 vs
#: 0.600 s) for a 7.1 % smaller file; level 1 was 1.6x faster than 4 for a 9.4 % larger one.
#: On a GPU the writer's compression is what a run waited for at its end.
DEFLATE_LEVEL = 4
#: Levels :func:`zoomsr.io.geotiff.write_geotiff` takes (``--deflate-level``).
DEFLATE_LEVELS = range(1, 13)


def check_deflate_level(level: int) -> None:
    """Raise ``ValueError`` unless ``level`` is one of :data:`DEFLATE_LEVELS` (GDAL ignores
    another with only a warning)."""
    if isinstance(level, bool) or not isinstance(level, numbers.Integral) \
            or level not in DEFLATE_LEVELS:
        raise ValueError(f"deflate level {level!r}: expected an integer from "
                         f"{DEFLATE_LEVELS[0]} (fastest) to {DEFLATE_LEVELS[-1]} (smallest)")
