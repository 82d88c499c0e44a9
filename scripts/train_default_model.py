"""Reproduce the shipped multi-image default ``zoomsr-multi8`` from a fresh checkout.

Steps (each one skipped when its output is already there, so an interrupted run resumes):

1. the synthetic training sample: ``zoomsr data sample WORK/sample --pairs 1024 --seed 0``;
2. ``zoomsr train configs/default_multi.yaml --set data.root=WORK/sample --out WORK/run``
   (CPU, fixed seed, deterministic algorithms; resumes from ``WORK/run/checkpoints/last.ckpt``);
3. export of the EMA generator to ``.safetensors`` with its name, config and provenance;
4. evaluation on a held-out synthetic set generated with another seed (``--eval-seed``, default
   1; the training pairs come from seed 0), printed as a table of PSNR/SSIM.

Usage::

    python scripts/train_default_model.py        # WORK = /tmp/zoomsr-default
    python scripts/train_default_model.py --output \
        src/zoomsr/weights/data/zoomsr-multi8-synthetic.safetensors

The evaluation alone, for any checkpoint: ``--evaluate-only PATH``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoomsr.config_files import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]
CONFIG = CONFIG_DIR / "default_multi.yaml"
TRAIN_PAIRS = 1024
TRAIN_SEED = 0
EVAL_PAIRS = 128
EVAL_SEED = 1


def valid_mean(lr: torch.Tensor, n_images: int) -> torch.Tensor:
    """Mean of the valid frames (no black pixel) of a stacked batch ``[B, T*3, H, W]`` -> ``[B,
    3, H, W]``; all frames where none is valid."""
    frames = lr.unflatten(1, (n_images, 3))  # [B, T, 3, H, W]
    black = (frames == 0).all(dim=2)  # [B, T, H, W]
    valid = ~black.flatten(2).any(dim=2)  # [B, T]
    valid[valid.sum(dim=1) == 0] = True
    w = valid.to(frames.dtype)[:, :, None, None, None]
    return (frames * w).sum(dim=1) / w.sum(dim=1)


def first_valid(lr: torch.Tensor, n_images: int) -> torch.Tensor:
    """The first valid frame of each sample of ``[B, T*3, H, W]`` -> ``[B, 3, H, W]``."""
    frames = lr.unflatten(1, (n_images, 3))
    valid = ~(frames == 0).all(dim=2).flatten(2).any(dim=2)  # [B, T]
    idx = torch.where(valid.any(dim=1), valid.float().argmax(dim=1), 0)
    return frames[torch.arange(lr.shape[0]), idx]


def evaluate(weights: Path, root: Path, batch: int = 16) -> dict[str, dict[str, float]]:
    """PSNR/SSIM (border 4, [0, 1] RGB) of the model and of two bicubic baselines over every
    pair of the S2-NAIP dataset ``root`` (frames chosen with the evaluation seed 0)."""
    from zoomsr.data import S2NAIPDataset
    from zoomsr.metrics import psnr, ssim
    from zoomsr.models import from_checkpoint

    model = from_checkpoint(weights).eval()
    n = int(model.config["num_in_ch"]) // 3
    scale = int(model.config["scale"])
    data = S2NAIPDataset(root, n_images=n, train=False, seed=0)
    scores: dict[str, dict[str, list[torch.Tensor]]] = {}
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=False)
    with torch.no_grad():
        for item in loader:
            lr, hr = item["lr"], item["hr"]
            preds = {
                "model": model(lr).clamp(0, 1),
                "bicubic, mean of valid frames": F.interpolate(
                    valid_mean(lr, n), scale_factor=scale, mode="bicubic").clamp(0, 1),
                "bicubic, one frame": F.interpolate(
                    first_valid(lr, n), scale_factor=scale, mode="bicubic").clamp(0, 1),
            }
            for name, sr in preds.items():
                s = scores.setdefault(name, {"psnr": [], "ssim": []})
                s["psnr"].append(psnr(sr, hr))
                s["ssim"].append(ssim(sr, hr))
    return {name: {k: float(torch.cat(v).mean()) for k, v in s.items()} | {"pairs": len(data)}
            for name, s in scores.items()}


def canonicalize_safetensors(path: Path) -> None:
    """Rewrite ``path`` with its JSON header's keys sorted, in place and atomically.

    safetensors writes the header's ``__metadata__`` entries in hash-map order, which changes
    from process to process; sorting makes the bytes (and the SHA-256 in the registry) depend
    only on the weights and the metadata. Tensor offsets are relative to the end of the header,
    so the data block is kept as it is.
    """
    from zoomsr.io.atomic import atomic_path

    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])


def main() -> None:
    from zoomsr.data.sample import write_sample
    from zoomsr.io.hashing import sha256_file
    from zoomsr.models import from_checkpoint, save_checkpoint
    from zoomsr.training import load_config, train

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/zoomsr-default"),
                   help="folder for the sample, the run and the held-out set")
    p.add_argument("--output", type=Path, default=None,
                   help="exported .safetensors (default WORK/zoomsr-multi8-synthetic.safetensors)")
    p.add_argument("--eval-seed", type=int, default=EVAL_SEED)
    p.add_argument("--eval-pairs", type=int, default=EVAL_PAIRS)
    p.add_argument("--evaluate-only", type=Path, default=None, metavar="WEIGHTS")
    p.add_argument("--canonicalize", type=Path, default=None, metavar="SAFETENSORS",
                   help="only sort the header of an exported file (see canonicalize_safetensors)")
    args = p.parse_args()
    if args.canonicalize is not None:
        canonicalize_safetensors(args.canonicalize)
        print(f"{args.canonicalize}: sha256 {sha256_file(args.canonicalize)}")
        return
    if args.eval_seed == TRAIN_SEED:
        p.error(f"--eval-seed must differ from the training seed {TRAIN_SEED}")
    work: Path = args.work
    heldout = work / f"heldout-seed{args.eval_seed}"
    if not (heldout / "zoomsr_dataset.json").is_file():
        write_sample(heldout, pairs=args.eval_pairs, seed=args.eval_seed, overwrite=True)

    if args.evaluate_only is None:
        sample = work / "sample"
        if not (sample / "zoomsr_dataset.json").is_file():
            write_sample(sample, pairs=TRAIN_PAIRS, seed=TRAIN_SEED, overwrite=True,
                         progress=True)
        cfg = load_config(CONFIG, [f"data.root={sample}"])
        start = time.perf_counter()
        result = train(cfg, work / "run", resume="auto")
        minutes = (time.perf_counter() - start) / 60
        print(f"trained {result.global_step} steps in {minutes:.1f} min (this invocation)")
        if result.generator_path is None:
            raise SystemExit("no generator was exported")
        model = from_checkpoint(result.generator_path).eval()
        weights = args.output or work / "zoomsr-multi8-synthetic.safetensors"
        weights.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(
            model, weights,
            source="zoomsr scripts/train_default_model.py (configs/default_multi.yaml)",
            training_data=f"synthetic: zoomsr data sample --pairs {TRAIN_PAIRS} "
                          f"--seed {TRAIN_SEED}",
            steps=result.global_step,
            note="trained on synthetic data only; for real imagery use esrgan-8",
        )
        canonicalize_safetensors(weights)
    else:
        weights = args.evaluate_only
    table = evaluate(weights, heldout)
    print(f"held-out: {table['model']['pairs']} synthetic pairs, seed {args.eval_seed}, "
          "PSNR/SSIM border 4")
    for name, s in table.items():
        print(f"  {name:32s} PSNR {s['psnr']:6.2f} dB  SSIM {s['ssim']:.4f}")
    size = weights.stat().st_size
    print(f"{weights}: {size / 1e6:.2f} MB, sha256 {sha256_file(weights)}")
    (work / "evaluation.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
