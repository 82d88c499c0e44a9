"""When each thread of one ``zoomsr infer`` run did what: a timeline from py-spy.

``spy_summary.py`` says where each thread's CPU time went; this says *when*, which is what
start-up and tail questions need (how long before the first model call, what the GPU waited
for at the end). Record with idle samples kept and timestamps (py-spy's Chrome trace format)::

    py-spy record --idle -r 200 -f chrometrace -o trace.json -- \\
        python benchmarks/infer_throughput.py --_child --device cuda --size 3856 ...
    python benchmarks/spy_timeline.py trace.json

Prints, from the moment ``run_inference`` starts: when the first and last model call (a
``forward`` of the model class, ``--model``) began and ended, the gaps longer than ``--gap``
ms with no thread in a model call (on a GPU: launching kernels, which blocks once the queue
is full, so a gap is time the GPU may run dry), and for each thread what it was doing during
the first and last ``--edge`` seconds (spells shorter than ``--min-ms`` left out). A spell is
named by the innermost zoomsr function and, if the innermost frame is elsewhere, that one.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

Stack = tuple[tuple[str, str], ...]


def spells(events: list[dict]) -> dict[int, list[tuple[float, float, Stack]]]:
    """Per thread id: ``(start s, end s, stack)`` with the stack outermost first, each frame
    ``(function, file)``."""
    by_tid: dict[int, list[dict]] = defaultdict(list)
    for e in events:
        if e.get("ph") in ("B", "E"):
            by_tid[e["tid"]].append(e)
    out = {}
    for tid, evs in by_tid.items():
        stack: list[tuple[str, str]] = []
        last = None
        runs = []
        for e in evs:  # in time order, as py-spy writes them
            t = e["ts"] / 1e6
            if last is not None and t > last and stack:
                runs.append((last, t, tuple(stack)))
            frame = (e["name"], e.get("args", {}).get("filename", ""))
            if e["ph"] == "B":
                stack.append(frame)
            elif stack:
                stack.pop()
            last = t
        out[tid] = runs
    return out


def label(stack: Stack) -> str:
    ours = [f for f, file in stack if "zoomsr" in file]
    leaf = stack[-1][0] if stack else "?"
    if not ours:
        return leaf
    return ours[-1] if ours[-1] == leaf else f"{ours[-1]} > {leaf}"


def role(runs) -> str:
    """The thread's most frequent outermost zoomsr function (by time)."""
    seen: Counter[str] = Counter()
    for t0, t1, stack in runs:
        ours = [f for f, file in stack if "zoomsr" in file]
        seen[ours[0] if ours else "(outside zoomsr)"] += t1 - t0
    return seen.most_common(1)[0][0] if seen else "?"


def merged(runs, t_from: float, t_to: float, min_s: float) -> list[tuple[float, float, str]]:
    out: list[list] = []
    for t0, t1, stack in runs:
        if t1 <= t_from or t0 >= t_to:
            continue
        name = label(stack)
        if out and out[-1][2] == name and t0 - out[-1][1] < 1e-3:
            out[-1][1] = t1
        else:
            out.append([t0, t1, name])
    return [(a, b, n) for a, b, n in out if b - a >= min_s]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trace", type=Path)
    p.add_argument("--model", default="RRDBNet.forward", help="The model call's frame name.")
    p.add_argument("--edge", type=float, default=2.0, help="Seconds shown at each end.")
    p.add_argument("--min-ms", type=float, default=20.0)
    p.add_argument("--gap", type=float, default=50.0, help="Model-free gaps listed (ms).")
    args = p.parse_args()

    threads = spells(json.loads(args.trace.read_text()))
    every = [r for runs in threads.values() for r in runs]
    run = [(t0, t1) for t0, t1, s in every if any(f == "run_inference" for f, _ in s)]
    start = min(r[0] for r in run or every)
    end = max(r[1] for r in run or every)
    model = sorted((t0, t1) for t0, t1, s in every
                   if start <= t0 < end and any(f == args.model for f, _ in s))
    print(f"run_inference: {end - start:.3f} s")
    if model:
        last = max(t1 for _, t1 in model)  # the latest end (not the last call to start)
        print(f"first model call at +{model[0][0] - start:.3f} s; the last one ends at "
              f"+{last - start:.3f} s ({end - last:.3f} s before the end)")
        gaps, reach = [], model[0][1]
        for t0, t1 in model[1:]:
            if t0 - reach > args.gap / 1e3:
                gaps.append((reach, t0))
            reach = max(reach, t1)
        total = sum(b - a for a, b in gaps)
        print(f"{len(gaps)} gaps over {args.gap:.0f} ms with no thread in a model call, "
              f"{total:.3f} s in all" + (":" if gaps else ""))
        for a, b in gaps:
            print(f"  +{a - start:7.3f} .. +{b - start:7.3f} s ({(b - a) * 1e3:.0f} ms)")
    for tid, runs in sorted(threads.items(), key=lambda kv: kv[1][0][0] if kv[1] else 0):
        if not runs or runs[-1][1] < start:
            continue
        print(f"\n--- thread {tid}: {role(runs)}")
        for which, t_from, t_to in (("first", start, start + args.edge),
                                    ("last", end - args.edge, end)):
            print(f"  {which} {args.edge:g} s:")
            for a, b, name in merged(runs, t_from, t_to, args.min_ms / 1e3):
                print(f"    +{max(a, t_from) - start:7.3f} .. +{min(b, t_to) - start:7.3f}  {name}")


if __name__ == "__main__":
    main()
