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


def _child(size: int, scene_dir: Path, threads: int, batch: int) -> dict:
    """One run on the meta device (in its own process: its peak RSS is its own)."""
    import torch

    from zoomsr.inference import InferenceOptions, Tiling, assemble, pipeline, rows, run_inference
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
    rows.to_host = assemble.to_host = to_host
    model = InferenceModel(Nearest(), "zero-cost on meta", 8, "stacked", 4, "none", "", meta,
                           config={})
    paths = infer_throughput.scene(scene_dir, size, 8)
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        opts = InferenceOptions(tiling=Tiling(256, 16), batch_size=batch, progress=False,
                                threads=threads)
        start = time.perf_counter()
        run_inference(paths, Path(tmp) / "out.tif", model, opts)
        seconds = time.perf_counter() - start
    return {"size": size, "seconds": seconds, "rss_before_mb": before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[976, 1936],
                   help="Scene sides, LR px (each ~4x the area of the one before: 2x).")
    p.add_argument("--threads", type=int, default=3, help="Row threads (the GPU default: 3).")
    p.add_argument("--batch", type=int, default=8, help="Windows per model call.")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scene-dir", default=None, metavar="DIR",
                   help="Keep the generated scenes in DIR (default: a temporary folder).")
    p.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child is not None:
        print(json.dumps(_child(args._child, Path(args.scene_dir), args.threads, args.batch)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        scene_dir = Path(args.scene_dir or tmp)
        for size in args.sizes:  # made once, before any run is measured
            infer_throughput.scene(scene_dir, size, 8)
        runs: dict[int, list[dict]] = {s: [] for s in args.sizes}
        for _ in range(args.repeats):
            for size in args.sizes:
                cmd = [sys.executable, __file__, "--_child", str(size), "--scene-dir",
                       str(scene_dir), "--threads", str(args.threads), "--batch",
                       str(args.batch)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    sys.stderr.write(out.stderr[-5000:])
                    raise SystemExit(f"run of {size} px failed (exit {out.returncode})")
                runs[size].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"GPU path's host side on the meta device, {args.threads} row threads, "
          f"{args.batch} windows per call; medians of {args.repeats}")
    peaks = {}
    for size, rs in runs.items():
        peaks[size] = statistics.median(r["peak_rss_mb"] for r in rs)
        each = ", ".join(f"{r['peak_rss_mb']:.0f}" for r in rs)
        print(f"{size:5d} px: peak RSS {peaks[size]:7.0f} MB (runs {each}), after setup "
              f"{statistics.median(r['rss_before_mb'] for r in rs):.0f} MB, "
              f"{statistics.median(r['seconds'] for r in rs):.1f} s")
    lo, hi = min(args.sizes), max(args.sizes)
    print(f"peak RSS {hi} / {lo} px: x{peaks[hi] / peaks[lo]:.3f}")


if __name__ == "__main__":
    main()
