"""Time of ``discover_frames`` on a generated scene, its inputs without and with overviews.

Discovery takes a decimated look at every input (radiometry, valid pixels, damaged blocks);
a GeoTIFF without overviews is decoded whole for it, so its time grows with the scene, while
one with overviews (a COG, as the cloud archives' Sentinel-2 products are) is read from
them. The scene is ``infer_throughput.py``'s (``--images`` random uint8 TCI GeoTIFFs of
``--size`` px, made once in ``--scene-dir``, with ``--input-overviews`` another copy with
internal overviews); ``--repeats`` calls each, alternating, medians::

    python benchmarks/discovery_time.py --size 3984 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import infer_throughput  # noqa: E402  (the scenes of the throughput benchmark)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1936, help="Scene side, LR px.")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--scene-dir", default=None, metavar="DIR",
                   help="Keep the generated scenes here (default: a temporary folder).")
    args = p.parse_args()
    from zoomsr.inference import discover_frames

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.scene_dir or tmp)
        scenes = {ov: infer_throughput.scene(folder, args.size, args.images, ov)
                  for ov in (False, True)}
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for ov, paths in scenes.items():
                start = time.perf_counter()
                discover_frames(paths)
                times[ov].append(time.perf_counter() - start)
    for ov, ts in times.items():
        each = ", ".join(f"{t:.2f}" for t in ts)
        print(f"{args.size} px, {args.images} dates, {'with' if ov else 'without'} overviews: "
              f"median {statistics.median(ts):.3f} s (runs {each})")
    ratio = statistics.median(times[False]) / statistics.median(times[True])
    print(f"without / with overviews: {ratio:.1f}x")


if __name__ == "__main__":
    main()
