"""What holds a run's memory at its peak, by zoomsr function: reads a ``memray`` capture.

Each allocation live at the high-water mark is counted under the innermost zoomsr (or
benchmark) frame of its stack, so GDAL's block cache shows under the reader call that filled
it and the rows brought back under the function that copied them. Example, the GPU path's
host side (``infer_host_memory.py``) at 1936 px::

    memray run -o peak.bin benchmarks/infer_host_memory.py --_child 1936 --scene-dir DIR
    python benchmarks/memray_peak.py peak.bin

(``DIR`` must hold the scene: run ``infer_host_memory.py --sizes 1936 --scene-dir DIR`` once.)
memray comes with ``pip install -e ".[profile]"``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def by_function(path: Path, depth: int = 16) -> tuple[int, Counter]:
    """(peak bytes, bytes live at the peak per ``function file:line``)."""
    from memray import FileReader

    reader = FileReader(str(path))
    sizes: Counter = Counter()
    for record in reader.get_high_watermark_allocation_records(merge_threads=True):
        stack = record.stack_trace(max_stacks=depth)
        ours = next(((fn, f, line) for fn, f, line in stack
                     if "zoomsr" in f or "benchmarks" in f), None)
        where = ours or (stack[0] if stack else ("?", "?", 0))
        sizes[f"{where[0]} {Path(where[1]).name}:{where[2]}"] += record.size
    return reader.metadata.peak_memory, sizes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("capture", type=Path, help="memray run -o output")
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()
    peak, sizes = by_function(args.capture)
    print(f"peak {peak / 2**20:.1f} MB traced; live at the peak, by function:")
    for where, size in sizes.most_common(args.top):
        print(f"{size / 2**20:9.1f} MB  {where}")


if __name__ == "__main__":
    main()
