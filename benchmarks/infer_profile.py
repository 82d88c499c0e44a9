"""Where ``zoomsr infer``'s time goes: cProfile of one pipeline run on a generated scene.

Uses the scene and model of ``infer_throughput.py`` (random RRDBNet weights) and prints the
functions with the most own time, e.g. to see what is left besides the model on a GPU::

    python benchmarks/infer_profile.py --device cuda --size 976
    python benchmarks/infer_profile.py --device cpu --config num_feat=8,num_block=1,num_grow_ch=8
    python benchmarks/infer_profile.py --device cuda --zero-cost   # all but the model
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import infer_throughput  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    infer_throughput.add_model_options(p)
    infer_throughput.add_pipeline_options(p, size=976, pipeline_batch=8)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()

    from zoomsr.inference import run_inference

    model = infer_throughput._model(args)
    with tempfile.TemporaryDirectory() as tmp:
        paths = infer_throughput.make_scene(Path(tmp) / "in", args.size, args.images)
        infer_throughput.warm_up(model, args)
        opts = infer_throughput.options(args)
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        result = run_inference(paths, Path(tmp) / "out.tif", model, opts)
        prof.disable()
        elapsed = time.perf_counter() - start
    print(f"{args.size}x{args.size} LR px, {result.windows} windows on {model.device}: "
          f"{elapsed:.2f} s, {result.grid.area_km2 / elapsed:.3f} km2/s")
    pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
