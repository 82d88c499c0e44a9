"""Host memory of ``zoomsr infer``'s GPU path, measured without a GPU.

On a GPU the model, the frame choice and the blending run on the device; what stays on the
host is the reading (each row decoded into one buffer), the rows brought back (uint8 output
rows and the float sums the next row shares), the raw file, the GeoTIFF compressed while rows
are computed, GDAL's caches, and 3 row threads. This script runs that path with the model and
the blending on torch's ``meta`` device (tensors without memory or arithmetic) and the copies
back faked as writes of pages of the right size, so the peak RSS of each run is the host side
of a GPU run (less the CUDA context and torch's pinned pool). Each size runs in a fresh
process, ``--repeats`` times interleaved; medians are printed with the ratio of the largest
to the smallest::

    python benchmarks/infer_host_memory.py --sizes 976 1936 --repeats 3
    python benchmarks/infer_host_memory.py --sizes 1936 --cache min --blocks 1024

Each run also reports the CPU time spent decoding the rows' files (in the row threads or
the read pool): with ``--cache min`` GDAL's block cache is held at its minimum instead of
``read_cache_bytes``' size, so the two show what that cache saves in decoding; ``--blocks N``
re-tiles the scenes in N px blocks (ESA's COGs: 1024). ``--window``/``--overlap`` set the
tiling (512 px: the largest of the CLI's automatic choices on a GPU, the one large scenes get);
each run's line also gives its phases (``InferenceResult.phases``: first and last row, the
wait for the GeoTIFF at the end, what follows it), on this CPU::

    python benchmarks/infer_host_memory.py --sizes 3984 7952 --window 512 --overlap 16 \
        --batch 2 --repeats 3

The scenes are those of ``infer_throughput.py`` (uint8 TCI GeoTIFFs, 256 px deflate blocks,
on the training grid); ``--scene-dir`` keeps them for later runs. The fakes reach into
``zoomsr.inference`` (``pipeline.blend_device``, ``rows.to_host``, ``assemble.to_host``): a
benchmark of internals, to be kept in step with them.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import infer_throughput  # noqa: E402


def _scene(scene_dir: Path, size: int, blocks: int) -> list[Path]:
    """The benchmark's scene of ``size`` px (256 px blocks), re-tiled in ``blocks`` px."""
    paths = infer_throughput.scene(scene_dir, size, 8)
    if blocks == 256:
        return paths
    from rasterio.shutil import copy

    done = scene_dir / f"scene{size}x8_blocks{blocks}"
    if not done.is_dir():
        part = scene_dir / f".{done.name}.part"
        part.mkdir(parents=True, exist_ok=True)
        for p in paths:
            copy(p, part / p.name, driver="GTiff", tiled=True, blockxsize=blocks,
                 blockysize=blocks, compress="deflate")
        part.rename(done)
    return sorted(done.glob("frame*_TCI.tif"))


def _child(size: int, scene_dir: Path, threads: int, batch: int, cache: str,
           blocks: int, column_width: int, writer: str = "auto",
           tiling: tuple[int, int] = (256, 16)) -> dict:
    """One run on the meta device (in its own process: its peak RSS is its own, and its
    GeoTIFF writer's, when that is a process, is added)."""
    import threading

    import torch

    # torch's meta kernels import torch._dynamo on their first call (1.2 s on this CPU, in
    # the first row): a cost of the fake, not of a GPU run, so paid before the timing
    import torch._dynamo  # noqa: F401

    from zoomsr.inference import (
        InferenceOptions,
        Tiling,
        assemble,
        pipeline,
        reader,
        rows,
        run_inference,
    )
    from zoomsr.inference.model import InferenceModel

    meta = torch.device("meta")

    class Nearest(torch.nn.Module):
        name = "nearest"

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T*3, h, w]
            return torch.nn.functional.interpolate(x[:, :3], scale_factor=4, mode="nearest")

    def to_host(*xs: object) -> list[np.ndarray]:
        out = []
        for x in xs:
            if isinstance(x, torch.Tensor):
                a = np.empty(tuple(x.shape), torch.empty(0, dtype=x.dtype).numpy().dtype)
                a.fill(1)  # a copy from the device writes every page
                out.append(a)
            else:
                out.append(np.array(x))
        return out

    pipeline.blend_device = lambda model: meta
    peaks = infer_throughput.writer_peaks(writer)
    rows.to_host = assemble.to_host = to_host
    if cache == "min":
        pipeline.read_cache_bytes = lambda *args, **kwargs: reader.MIN_CACHE_BYTES
    read_cpu = [0.0]
    lock = threading.Lock()
    read_into = reader.SceneReader._read_into  # one file's decode, in whichever thread

    def timed(*args: object, **kwargs: object) -> object:
        start = time.thread_time()  # this thread's CPU: decoding, not waiting for a core
        try:
            return read_into(*args, **kwargs)
        finally:
            with lock:
                read_cpu[0] += time.thread_time() - start

    reader.SceneReader._read_into = staticmethod(timed)
    model = InferenceModel(Nearest(), "zero-cost on meta", 8, "stacked", 4, "none", "", meta,
                           config={})
    paths = _scene(scene_dir, size, blocks)
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        opts = InferenceOptions(tiling=Tiling(*tiling), batch_size=batch, progress=False,
                                threads=threads, column_width=column_width)
        start = time.perf_counter()
        result = run_inference(paths, Path(tmp) / "out.tif", model, opts)
        seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    writer_mb = max(peaks, default=0.0)  # its GeoTIFF writer process, if it had one
    # the two peaks added (an upper bound: they need not coincide)
    return {"size": size, "seconds": seconds, "rss_before_mb": before, "read_cpu_s": read_cpu[0],
            "own_rss_mb": own, "writer_rss_mb": writer_mb, "peak_rss_mb": own + writer_mb,
            "phases": result.phases}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[976, 1936],
                   help="Scene sides, LR px (each ~4x the area of the one before: 2x).")
    p.add_argument("--window", type=int, default=256, help="Window side, LR px.")
    p.add_argument("--overlap", type=int, default=16, help="Window overlap, LR px.")
    p.add_argument("--threads", type=int, default=3, help="Row threads (the GPU default: 3).")
    p.add_argument("--batch", type=int, default=8, help="Windows per model call.")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cache", choices=("sized", "min"), default="sized",
                   help="GDAL's block cache as read_cache_bytes sizes it, or its minimum.")
    p.add_argument("--blocks", type=int, default=256,
                   help="Block side of the scenes' GeoTIFFs, px (the benchmark's: 256).")
    p.add_argument("--column-width", type=int, default=4096,
                   help="Column strips of about this many LR px (the pipeline's default: "
                   "%(default)s; wider scenes are processed strip by strip).")
    p.add_argument("--scene-dir", default=None, metavar="DIR",
                   help="Keep the generated scenes in DIR (default: a temporary folder).")
    p.add_argument("--writer", choices=("auto", "thread", "process"), default="auto",
                   help="The GeoTIFF writer: the pipeline's default (auto: a thread of the "
                   "run's process), a thread, or a process of its own.")
    p.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child is not None:
        print(json.dumps(_child(args._child, Path(args.scene_dir), args.threads, args.batch,
                                args.cache, args.blocks, args.column_width, args.writer,
                                (args.window, args.overlap))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        scene_dir = Path(args.scene_dir or tmp)
        for size in args.sizes:  # made once, before any run is measured
            _scene(scene_dir, size, args.blocks)
        runs: dict[int, list[dict]] = {s: [] for s in args.sizes}
        for _ in range(args.repeats):
            for size in args.sizes:
                cmd = [sys.executable, __file__, "--_child", str(size), "--scene-dir",
                       str(scene_dir), "--threads", str(args.threads), "--batch",
                       str(args.batch), "--cache", args.cache, "--blocks", str(args.blocks),
                       "--column-width", str(args.column_width), "--writer", args.writer,
                       "--window", str(args.window), "--overlap", str(args.overlap)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    sys.stderr.write(out.stderr[-5000:])
                    raise SystemExit(f"run of {size} px failed (exit {out.returncode})")
                runs[size].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"GPU path's host side on the meta device, {args.window}/{args.overlap} px "
          f"windows, {args.threads} row threads, "
          f"{args.batch} windows per call, {args.blocks} px blocks, GDAL cache {args.cache}, "
          f"column strips of {args.column_width} px, writer {args.writer}; "
          f"medians of {args.repeats}")
    peaks = {}
    for size, rs in runs.items():
        peaks[size] = statistics.median(r["peak_rss_mb"] for r in rs)
        each = ", ".join(f"{r['peak_rss_mb']:.0f}" for r in rs)
        print(f"{size:5d} px: peak RSS {peaks[size]:7.0f} MB (runs {each}), after setup "
              f"{statistics.median(r['rss_before_mb'] for r in rs):.0f} MB, writer process "
              f"{statistics.median(r['writer_rss_mb'] for r in rs):.0f} MB of it, "
              f"{statistics.median(r['seconds'] for r in rs):.1f} s, reading "
              f"{statistics.median(r['read_cpu_s'] for r in rs):.2f} CPU s; phases (s) "
              + ", ".join(f"{k} {statistics.median(r['phases'][k] for r in rs):.2f}"
                          for k in rs[0]["phases"]))
    lo, hi = min(args.sizes), max(args.sizes)
    if hi != lo:
        print(f"peak RSS {hi} / {lo} px: x{peaks[hi] / peaks[lo]:.3f}")


if __name__ == "__main__":
    main()
