"""How long ``zoomsr infer`` takes to decode one row of windows: its files one after the other
(the row thread alone) vs the read pool's threads at once (``reader.READ_THREADS``).

A row is what a row thread reads before its first model call: every date's pixels in a strip
of the window's height across the scene (``SceneReader.read_strip``). Measured on the scene
of ``infer_throughput.py`` (uint8 TCI GeoTIFFs, deflate, on the training grid), rows of
``--window`` LR px, the two ways alternating, ``--repeats`` times each; medians::

    python benchmarks/infer_read.py --size 3856 --images 8 --window 256 --repeats 5
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


def read_rows(paths: list[Path], window: int, rows: int) -> float:
    """Seconds to read ``rows`` rows of ``window`` px, a fresh reader (and cache) each."""
    import torch
    from rasterio.windows import Window

    from zoomsr.inference import discover_frames
    from zoomsr.inference.grid import plan_grid
    from zoomsr.inference.reader import SceneReader

    frames = discover_frames(paths).frames
    grid = plan_grid(frames, 4)
    reader = SceneReader(frames, grid)
    try:
        reader._open()  # opening is not reading
        start = time.perf_counter()
        for r in range(rows):
            reader.read_strip(Window(0, r * window, grid.width, window), torch.device("cpu"))
        return time.perf_counter() - start
    finally:
        reader.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1936, help="Scene side, LR px.")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--window", type=int, default=256, help="Row height, LR px.")
    p.add_argument("--rows", type=int, default=3, help="Rows read per timing.")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--scene-dir", type=Path, default=None)
    args = p.parse_args()

    from zoomsr.inference import reader

    pooled = reader.READ_THREADS
    with tempfile.TemporaryDirectory() as tmp:
        paths = infer_throughput.scene(args.scene_dir or Path(tmp), args.size, args.images)
        times: dict[int, list[float]] = {1: [], pooled: []}
        read_rows(paths, args.window, 1)  # warm: the files in the page cache
        for _ in range(args.repeats):
            for threads in (1, pooled):
                reader.READ_THREADS = threads
                times[threads].append(read_rows(paths, args.window, args.rows) / args.rows)
    n = min(reader.workers_available(), pooled)
    one, many = statistics.median(times[1]), statistics.median(times[pooled])
    print(f"{args.images} dates of {args.size} px, rows of {args.window} px, "
          f"{args.repeats} timings each (medians, s per row)")
    print(f"one file at a time      {one:.4f}  ({', '.join(f'{t:.4f}' for t in times[1])})")
    print(f"read pool ({n} threads)  {many:.4f}  "
          f"({', '.join(f'{t:.4f}' for t in times[pooled])})")
    print(f"speed-up {one / many:.2f}x")


if __name__ == "__main__":
    main()
