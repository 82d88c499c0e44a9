"""Throughput of reading the S2-NAIP layout through a DataLoader (samples/s).

Generates the 256-pair synthetic sample (unless --root is given), then reads it for several
epochs with ESRGAN-style settings (8 images, stacked layout, training mode) and prints the
median samples/s over epochs, with the machine it ran on.

    python benchmarks/dataloader_throughput.py [--root DIR] [--workers 2] [--epochs 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch
from torch.utils.data import DataLoader

from zoomsr.data import S2NAIPDataset
from zoomsr.data.sample import write_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="existing dataset (default: generate the 256-pair sample)")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-images", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            t0 = time.perf_counter()
            root = write_sample(os.path.join(tmp, "sample"), pairs=args.pairs)
            print(f"generated {args.pairs} synthetic pairs in {time.perf_counter() - t0:.2f} s")
        torch.manual_seed(0)
        ds = S2NAIPDataset(root, n_images=args.n_images, layout="stacked", train=True)
        loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True,
                            num_workers=args.workers, persistent_workers=args.workers > 0)
        rates = []
        for _ in range(args.epochs + 1):  # the first epoch warms up the workers and is dropped
            t0 = time.perf_counter()
            n = sum(batch["lr"].shape[0] for batch in loader)
            rates.append(n / (time.perf_counter() - t0))
        rates = rates[1:]
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
              f"python {platform.python_version()}, torch {torch.__version__}")
        print(f"{len(ds)} pairs, n_images={args.n_images}, batch={args.batch_size}, "
              f"workers={args.workers}, epochs={args.epochs}")
        print(f"samples/s: median {statistics.median(rates):.0f} "
              f"(min {min(rates):.0f}, max {max(rates):.0f})")


if __name__ == "__main__":
    main()
