"""Training throughput of ESRGAN through ``zoomsr.training`` (iterations/s), with the machine.

- ``--mode cpu`` (default without a GPU): the tiny config (``configs/tiny.yaml``) on CPU, fp32.
- ``--mode gpu`` (default with a GPU): the paper's ESRGAN with 8 images at full size
  (``configs/esrgan_8img.yaml``: RRDBNet 64/23/32, U-Net discriminator, VGG19 perceptual,
  GAN, EMA) in bf16 mixed precision on one GPU. The VGG19 is randomly initialised here (its
  weights do not change the speed, and the benchmark must not need a download).

Data: the synthetic 256-pair sample (generated into a temporary folder unless --root is
given). One iteration = one generator and one discriminator update. Steps after the first
``--warmup`` are timed, excluding validation; the median and total rate are printed.

    python benchmarks/train_throughput.py [--mode cpu|gpu] [--steps 30] [--batch-size N]
                                          [--root DIR] [--show-steps]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from zoomsr.config_files import CONFIG_DIR
from zoomsr.training.config import load_config
from zoomsr.training.run import train

CONFIGS = CONFIG_DIR


class StepTimer(Callback):
    """Wall time of each training iteration (CUDA-synchronised), validation excluded."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, *args: object) -> None:
        self._sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: object) -> None:
        self._sync()
        self.times.append(time.perf_counter() - self._start)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("cpu", "gpu"),
                        default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--root", help="existing dataset (default: generate the 256-pair sample)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, help="default: 4 (cpu), 32 (gpu)")
    parser.add_argument("--workers", type=int,
                        default=min(8, os.cpu_count() or 1) if torch.cuda.is_available() else 0)
    parser.add_argument("--show-steps", action="store_true", help="print every step's time")
    args = parser.parse_args()
    gpu = args.mode == "gpu"
    batch = args.batch_size or (32 if gpu else 4)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            t0 = time.perf_counter()
            root = os.path.join(tmp, "sample")
            # In a child process: right after the sample writer's process pool, this process
            # ran its first training steps ~15x slower, which would skew the figure.
            subprocess.run([sys.executable, "-m", "zoomsr", "data", "sample", root,
                            "--pairs", "256"], check=True, stdout=subprocess.DEVNULL)
            print(f"generated 256 synthetic pairs in {time.perf_counter() - t0:.1f} s")
        overrides = [
            f"data.root={root}", f"data.batch_size={batch}", f"data.num_workers={args.workers}",
            f"trainer.max_steps={args.steps}", f"trainer.val_every_n_steps={args.steps}",
            f"trainer.checkpoint_every_n_steps={args.steps}", "trainer.sanity_val_steps=0",
            "trainer.progress_bar=false", "data.max_val_pairs=8", "data.val_batch_size=8",
        ]
        if gpu:
            name = "esrgan_8img"
            overrides += ["trainer.accelerator=gpu", "trainer.precision=bf16-mixed",
                          "losses.perceptual.allow_random=true"]
        else:
            name = "tiny"
            overrides += ["trainer.accelerator=cpu"]
        cfg = load_config(CONFIGS / f"{name}.yaml", overrides)
        timer = StepTimer()
        train(cfg, os.path.join(tmp, "run"), resume="never", callbacks=[timer])

    timed = timer.times[args.warmup:]
    if args.show_steps:
        print("step times (s):", " ".join(f"{t:.2f}" for t in timer.times))
    if not timed:
        raise SystemExit(f"no timed steps: --steps must exceed --warmup ({args.warmup})")
    print(f"machine: {machine()}")
    print(f"config: {name} ({cfg.model.name} {cfg.model.config}), n_images={cfg.data.n_images}, "
          f"batch={batch}, precision={cfg.trainer.precision}, device={args.mode}")
    print(f"iterations/s: median {1 / statistics.median(timed):.2f}, "
          f"overall {len(timed) / sum(timed):.2f} over {len(timed)} steps after "
          f"{args.warmup} warm-up steps; {batch * len(timed) / sum(timed):.1f} samples/s")


if __name__ == "__main__":
    main()
