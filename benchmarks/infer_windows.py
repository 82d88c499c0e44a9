"""Window size vs ``zoomsr infer`` time: fixed 128/192/256 px windows and the automatic choice.

Runs the whole pipeline on one generated scene (``infer_throughput.make_scene``) with each
window size in turn, ``--repeats`` rounds (interleaved, so a machine whose speed drifts
affects every size alike), and prints the median seconds, the area the windows cover
relative to the scene's, and the speed relative to 128 px windows (the default before the
automatic choice). Weights are random. Example (a small RRDBNet, so a CPU run takes minutes)::

    python benchmarks/infer_windows.py --size 500 --config num_feat=32,num_block=2 --device cpu
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import infer_throughput  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    infer_throughput.add_model_options(p, config="num_feat=32,num_block=2")
    p.add_argument("--size", type=int, default=500, help="Scene side, LR px.")
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    args.zero_cost = False

    from zoomsr.inference import InferenceOptions, Tiling, run_inference
    from zoomsr.inference.options import for_device
    from zoomsr.inference.windows import WindowGrid

    model = infer_throughput._model(args)
    sizes: list[int | None] = [128, 192, 256, None]
    times: dict[int | None, list[float]] = {w: [] for w in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        paths = infer_throughput.scene(Path(tmp), args.size, args.images)
        for i in range(args.repeats + 1):  # round 0 warms up (kernels, file cache)
            for w in sizes:
                opts = InferenceOptions(tiling=Tiling(w, args.overlap), progress=False,
                                        batch_size=args.batch_size)
                start = time.perf_counter()
                run_inference(paths, Path(tmp) / f"out{i}_{w}.tif", model, opts)
                if i:
                    times[w].append(time.perf_counter() - start)
    base = statistics.median(times[128])
    print(f"{args.size}x{args.size} LR px scene, overlap {args.overlap}, model "
          f"{args.config or 'full ESRGAN'} on {model.device}; medians of {args.repeats}")
    for w in sizes:
        # the tiling as the run resolved it on this device (a GPU's automatic window may be
        # 512 px)
        tiling = for_device(InferenceOptions(tiling=Tiling(w, args.overlap)), model.device).tiling
        grid = WindowGrid(args.size, args.size, tiling)
        area = grid.covered_area / args.size**2
        t = statistics.median(times[w])
        label = f"auto ({grid.tiling.window})" if w is None else str(w)
        print(f"window {label:<11} {len(grid):4d} windows, area x{area:.2f}: {t:7.2f} s  "
              f"({base / t:.2f}x the speed of 128)")


if __name__ == "__main__":
    main()
