"""SSIM time per batch: the old 11x11 grouped conv2d (2-D window) vs ``zoomsr.metrics.ssim``.

Both compute float64 SSIM with the same window, constants and ``valid`` region; the script
checks they agree (max difference printed) and prints the median wall, user and system
seconds per batch, rounds interleaved so drifting machine speed affects both alike.
Example (the ``zoomsr evaluate`` batch shape: 16 images of 128 px)::

    python benchmarks/ssim_speed.py --batch 16 --size 128 --repeats 7
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch


def _timed(fn, *args) -> tuple[float, float, float]:
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fn(*args)
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    return t1 - t0, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from zoomsr.metrics import ssim
    from zoomsr.metrics.psnr_ssim import ssim_direct

    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    diff = float((ssim(x, y) - ssim_direct(x, y)).abs().max())
    print(f"batch {args.batch}x3x{args.size}x{args.size}, torch threads "
          f"{torch.get_num_threads()}, max |new - old| = {diff:.1e}")
    runs: dict[str, list[tuple[float, float, float]]] = {"old 2-D conv": [], "new": []}
    for _ in range(args.repeats):
        runs["old 2-D conv"].append(_timed(ssim_direct, x, y))
        runs["new"].append(_timed(ssim, x, y))
    medians = {}
    for name, times in runs.items():
        wall, user, sys_ = (statistics.median(col) for col in zip(*times, strict=True))
        medians[name] = wall
        print(f"{name:13s} median per batch: wall {wall:7.3f} s  user {user:6.3f} s  "
              f"sys {sys_:6.3f} s")
    print(f"speed-up (median wall): {medians['old 2-D conv'] / medians['new']:.1f}x")


if __name__ == "__main__":
    main()
