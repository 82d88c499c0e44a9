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

``--deflate-level L [L ...]`` compares DEFLATE levels (in turn, repeat by repeat; the
output's size is printed too), and ``--content RASTER`` fills the output with a real
raster's RGB instead of the ramp (the compressor's speed and ratio depend on the pixels).
The figures behind :data:`zoomsr.io.deflate.DEFLATE_LEVEL` used Real-ESRGAN's output of a
real Sentinel-2 crop (the shared sample beside the checkout, 100 m pixels)::

    rio clip ../shared/data/real/sentinel2-l2a-29RKH/TCI.tif crop.tif \
        --bounds "229980 2731620 268380 2770020"
    zoomsr infer crop.tif -o sr.tif --native-grid      # ~1.5 min on 2 CPU cores
    python benchmarks/writer_throughput.py --width 15424 --height 2048 --repeats 3 \
        --content sr.tif --deflate-level 6 4 1 [--busy-threads 1]
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


def make_raw(folder: Path, width: int, height: int, content: str | None = None):
    """A raw RGB + mask raster of ``width`` x ``height`` px (row strips of 256): a ramp with
    noise, 10 % masked, or ``content``'s first three bands repeated to fill it, all valid."""
    from zoomsr.io.raw_raster import RawRaster

    raw = RawRaster(folder / "sr.raw", width, height, 4)
    raw.create()
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, width, dtype=np.float32)
    tile = None
    if content is not None:
        import rasterio

        with rasterio.open(content) as src:
            if src.count < 3 or src.dtypes[0] != "uint8":
                raise SystemExit(f"{content}: --content needs an 8-bit RGB raster")
            tile = np.moveaxis(src.read([1, 2, 3]), 0, -1)
    for row in range(0, height, 256):
        n = min(256, height - row)
        block = np.empty((n, width, 4), np.uint8)
        if tile is not None:
            rows = np.arange(row, row + n) % tile.shape[0]  # repeated, a strip at a time
            block[..., :3] = tile[rows][:, np.arange(width) % tile.shape[1]]
            block[..., 3] = 255
        else:
            block[..., :3] = ramp[None, :, None] + rng.integers(0, 30, (n, width, 3))
            block[..., 3] = np.where(rng.random((n, width)) < 0.1, 0, 255)
            block[..., :3] *= block[..., 3:] > 0  # masked pixels are 0, as the pipeline's
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
    p.add_argument("--deflate-level", type=int, nargs="+", default=None, metavar="L",
                   help="DEFLATE level(s) (default: the module's, "
                   "zoomsr.io.deflate.DEFLATE_LEVEL); several are run in turn, repeat by "
                   "repeat, so that they share the machine's state.")
    p.add_argument("--content", default=None, metavar="RASTER",
                   help="An 8-bit RGB raster (e.g. a `zoomsr infer` output) repeated to fill "
                   "the output, instead of the noisy ramp: what the compressor sees in a run.")
    args = p.parse_args()
    if args.process and args.no_compress:
        p.error("--no-compress is for the writer in this process")

    from affine import Affine

    from zoomsr.io import geotiff as writer
    from zoomsr.io.deflate import DEFLATE_LEVEL, check_deflate_level
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
    levels = args.deflate_level or [DEFLATE_LEVEL]
    for level in levels:
        check_deflate_level(level)
    if args.no_compress and args.deflate_level:
        p.error("--deflate-level is for compressed writes")
    with tempfile.TemporaryDirectory() as tmp:
        raw = make_raw(Path(tmp), args.width, args.height, args.content)
        times: dict[int, list[float]] = {level: [] for level in levels}
        sizes: dict[int, int] = {}
        for i in range(args.repeats):
            for level in levels:  # in turn, so that the levels share the machine's state
                out = Path(tmp) / f"out{i}.tif"
                kw = {"crs": "EPSG:3857", "transform": Affine(0.6, 0, 0, 0, -0.6, 0),
                      "band_names": ["red", "green", "blue"], "deflate_level": level}
                if args.process:
                    stream = GeoTIFFProcess(raw, out, **kw)
                    stream.start()
                    time.sleep(1.0)  # started, its file made, waiting for the first strip
                    start = time.perf_counter()
                    stream.finish({})
                else:
                    start = time.perf_counter()
                    writer.write_geotiff(raw, out, tags={}, **kw)
                times[level].append(time.perf_counter() - start)
                sizes[level] = out.stat().st_size
                out.unlink()
    stop.set()
    mb = args.width * args.height * 3 / 1e6
    content = args.content or "noisy ramp, 10 % masked"
    for level in levels:
        med = statistics.median(times[level])
        kind = "uncompressed" if args.no_compress else f"deflate level {level}"
        print(f"{args.width} x {args.height} px ({mb:.0f} MB of RGB: {content}), {kind}, "
              f"{'own process' if args.process else 'this process'}, {args.busy_threads} busy "
              f"thread(s), switch interval {sys.getswitchinterval():g} s: median {med:.3f} s "
              f"(runs {', '.join(f'{t:.3f}' for t in times[level])}), {mb / med:.0f} MB/s, "
              f"file {sizes[level] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
