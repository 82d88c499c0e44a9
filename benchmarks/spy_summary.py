"""Where each thread of a ``zoomsr infer`` run spent its CPU time, from py-spy's raw stacks.

Reads the output of ``py-spy record --threads -f raw`` (samples taken while a thread is on a
CPU; without ``--idle``, waits are not sampled) and prints, per part of the run (row
threads together, the GeoTIFF writer, the main thread, discovery's look-ahead: told from the
stacks), the seconds on a CPU and the zoomsr functions they were spent in (the innermost
zoomsr frame of each sample: time in GDAL, NumPy or torch counts for the zoomsr function that
called it)::

    py-spy record -r 200 --threads -f raw -o spy.txt -- python benchmarks/infer_throughput.py \
        --_child --size 976 --device cuda --scene-dir /tmp/scenes
    python benchmarks/spy_summary.py spy.txt --rate 200
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path


def summarise(path: Path, rate: float) -> dict[str, collections.Counter]:
    """``thread -> Counter(function -> seconds)``, the pipeline's samples only."""
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        main = "MainThread" in frames[0] or frames[1:2] and frames[1].startswith("<module> ")
        if main and not any(f.startswith("run_inference ") for f in frames):
            continue  # imports, making the scene, the model's warm-up
        thread = _role(frames)
        where = "(outside zoomsr)"
        for f in reversed(frames[1:]):
            if "zoomsr/" in f:
                where = f.split(" (")[0]
                break
        out[thread][where] += int(count) / rate
    return out


def _role(frames: list[str]) -> str:
    """The thread's part in the run, from its stack (py-spy may label a thread with the name
    of an earlier thread that had the same OS id, so names alone mislead)."""
    roles = (("_RowThreads._work", "row threads"), ("GeoTIFFStream", "GeoTIFF writer"),
             ("write_geotiff", "GeoTIFF writer"), ("look_ahead", "discovery look-ahead"),
             ("run_inference", "main thread"))
    for marker, role in roles:
        if any(f.startswith(marker) or f".{marker}" in f.split(" (")[0] for f in frames):
            return role
    name = re.sub(r"^thread \(\d+\):? ?", "", frames[0]) or "(unnamed)"
    return re.sub(r"-\d+$", "-*", name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("raw", type=Path, help="py-spy record --threads -f raw output")
    p.add_argument("--rate", type=float, default=200, help="py-spy's -r (samples/s)")
    p.add_argument("--top", type=int, default=8, help="Functions shown per thread.")
    args = p.parse_args()
    threads = summarise(args.raw, args.rate)
    for name, funcs in sorted(threads.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(funcs.values())
        print(f"{name}: {total:.2f} s on a CPU")
        for func, sec in funcs.most_common(args.top):
            print(f"  {sec:7.2f} s  {100 * sec / total:5.1f} %  {func}")


if __name__ == "__main__":
    main()
