"""Throughput of the output GeoTIFF writer (``zoomsr.io.geotiff.write_geotiff``).

On a GPU, ``zoomsr infer`` compresses the output in one writer thread while rows are computed
(the deflate itself on every core, through GDAL's ``NUM_THREADS``), and on an H200 the run
waited for that thread at its end (2026-11-27). This measures it alone, on this machine: a raw
raster of ``--width`` x ``--height`` output px (RGB + mask: a smooth ramp with noise, 10 %
masked, as model output with nodata looks to the compressor) written ``--repeats`` times,
medians::

    python benchmarks/writer_throughput.py --width 15424 --height 2048 --repeats 5
    python benchmarks/writer_throughput.py --no-compress   # the thread's own work alone

Without compression what is left is the writer thread's own work (reading the raw rows,
GDAL copying them into its tiles, the mask, the check that every tile was written): that
part does not spread over cores. (The raw rows are 0 under the mask, as the pipeline's are.)

During a GPU run the row threads spend their time in Python launching the model's kernels,
holding the interpreter's lock (GIL) the writer also needs between GDAL calls.
``--busy-threads N`` runs N threads of pure Python meanwhile (keep N below the free cores, so
that what shows is the lock, not a shortage of CPU); ``--switch-interval S`` sets
``sys.setswitchinterval`` (default 0.005 s)::

    python benchmarks/writer_throughput.py --no-compress --busy-threads 1

``--process`` writes through :class:`zoomsr.io.geotiff_stream.GeoTIFFProcess`, the writer in
a process of its own (``ZOOMSR_GEOTIFF_WRITER=process``; it lost to the thread on an H200):
timed from the rows handed over
to the file renamed into place, the child started and waiting beforehand (its start, 0.2 s,
overlaps the first rows' computation in a run). Compressed only (the switch to an
uncompressed profile is made in this process)::

    python benchmarks/writer_throughput.py --busy-threads 1 [--process]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def make_raw(folder: Path, width: int, height: int):
    """A raw RGB + mask raster of ``width`` x ``height`` px (row strips of 256)."""
    from zoomsr.io.raw_raster import RawRaster

    raw = RawRaster(folder / "sr.raw", width, height, 4)
    raw.create()
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, width, dtype=np.float32)
    for row in range(0, height, 256):
        n = min(256, height - row)
        block = np.empty((n, width, 4), np.uint8)
        block[..., :3] = ramp[None, :, None] + rng.integers(0, 30, (n, width, 3))
        block[..., 3] = np.where(rng.random((n, width)) < 0.1, 0, 255)
        block[..., :3] *= block[..., 3:] > 0  # masked pixels are 0, as the pipeline's rows
        raw.write_rows(row, block)
    return raw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=15424, help="Output px (a 3856 LR px scene).")
    p.add_argument("--height", type=int, default=2048, help="Output px.")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--busy-threads", type=int, default=0,
                   help="Threads running pure Python meanwhile (holding the GIL).")
    p.add_argument("--switch-interval", type=float, default=None,
                   help="sys.setswitchinterval for the run (s).")
    p.add_argument("--no-compress", action="store_true",
                   help="Write uncompressed: the writer thread's own work alone.")
    p.add_argument("--process", action="store_true",
                   help="Write in a process of its own (GeoTIFFProcess).")
    args = p.parse_args()
    if args.process and args.no_compress:
        p.error("--no-compress is for the writer in this process")

    from affine import Affine

    from zoomsr.io import geotiff as writer
    from zoomsr.io.geotiff_stream import GeoTIFFProcess

    if args.no_compress:
        profile = writer._profile

        def uncompressed(*a, **k):  # noqa: ANN002, ANN003
            out = profile(*a, **k)
            out.pop("predictor")
            return out | {"compress": None}

        writer._profile = uncompressed
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    stop = threading.Event()

    def busy() -> None:  # as a row thread launching kernels: Python, the GIL held
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i

    for _ in range(args.busy_threads):
        threading.Thread(target=busy, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        raw = make_raw(Path(tmp), args.width, args.height)
        times = []
        for i in range(args.repeats):
            out = Path(tmp) / f"out{i}.tif"
            kw = {"crs": "EPSG:3857", "transform": Affine(0.6, 0, 0, 0, -0.6, 0),
                  "band_names": ["red", "green", "blue"]}
            if args.process:
                stream = GeoTIFFProcess(raw, out, **kw)
                stream.start()
                time.sleep(1.0)  # started, its file made, waiting for the first strip
                start = time.perf_counter()
                stream.finish({})
            else:
                start = time.perf_counter()
                writer.write_geotiff(raw, out, tags={}, **kw)
            times.append(time.perf_counter() - start)
            out.unlink()
    stop.set()
    mb = args.width * args.height * 3 / 1e6
    med = statistics.median(times)
    print(f"{args.width} x {args.height} px ({mb:.0f} MB of RGB), "
          f"{'uncompressed' if args.no_compress else 'deflate'}, "
          f"{'own process' if args.process else 'this process'}, {args.busy_threads} busy "
          f"thread(s), switch interval {sys.getswitchinterval():g} s: median {med:.3f} s "
          f"(runs {', '.join(f'{t:.3f}' for t in times)}), {mb / med:.0f} MB/s")


if __name__ == "__main__":
    main()
