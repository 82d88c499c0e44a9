"""Where each thread of a ``zoomsr infer`` run spent its CPU time, from py-spy's raw stacks.

Reads the output of ``py-spy record --threads -f raw`` (samples taken while a thread is on a
CPU; without ``--idle``, waits are not sampled) and prints, per thread (row threads
together), the seconds on a CPU and the zoomsr functions they were spent in (the innermost
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
        thread = re.sub(r"^thread \(\d+\):? ?", "", frames[0]) or "(unnamed)"
        thread = re.sub(r"-\d+$", "-*", thread)  # zoomsr-row-0, -1, ... together
        main = thread == "MainThread" or frames[1:2] and frames[1].startswith("<module> ")
        if main and not any(f.startswith("run_inference ") for f in frames):
            continue  # imports, making the scene, the model's warm-up
        where = "(outside zoomsr)"
        for f in reversed(frames[1:]):
            if "zoomsr/" in f:
                where = f.split(" (")[0]
                break
        out[thread][where] += int(count) / rate
    return out


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
