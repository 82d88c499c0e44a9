"""CLIPScore throughput: zoomsr's cached, batched path vs the naive per-pair path (pairs/s).

Scores 256 SR/ground-truth pairs (128x128, the S2-NAIP HR size) with a small randomly
initialised open_clip ViT (no downloads) in ``paper`` preprocessing, two ways:

- naive (as the reference): for every pair, build the CLIP model anew, resize both images
  (nearest) and embed them one at a time, then take the cosine similarity;
- zoomsr: ``CLIPScore`` built once (model cache), ``eval()``, ``inference_mode``, batched.

Prints pairs/s (= SR images scored per second) for both, medians over repeats, the ratio, and
the machine it ran on.

    python benchmarks/clipscore_throughput.py [--pairs 256] [--repeats 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from zoomsr.metrics.clipscore import CLIPScore, clear_model_cache, register_model_config

#: A small CLIP, random weights: a 2.7 M-parameter ViT image tower (64 px, patch 8) and a
#: scaled-down text tower with CLIP's real tokenizer size (49408 tokens, context 77), which the
#: naive path builds every time, as the reference's full-model reload does (18.6 M in all;
#: OpenAI ViT-B/16 has 150 M, so real backbones widen the gap).
SMALL_VIT = "zoomsr-bench-small-vit"
SMALL_VIT_CONFIG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "layers": 6, "width": 192, "patch_size": 8,
                   "head_width": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 256, "heads": 4,
                 "layers": 4},
}


def naive_scores(sr: torch.Tensor, hr: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rebuild the model for each pair and score it alone (the reference's approach)."""
    import open_clip

    size = SMALL_VIT_CONFIG["vision_cfg"]["image_size"]
    out = []
    for a, b in zip(sr, hr, strict=True):
        model = open_clip.create_model(SMALL_VIT, device=device)
        fa = model.encode_image(F.interpolate(a[None].to(device), size=(size, size)))
        fb = model.encode_image(F.interpolate(b[None].to(device), size=(size, size)))
        out.append(F.cosine_similarity(fa, fb).detach().item())
    return torch.tensor(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    logging.disable(logging.WARNING)  # open_clip warns about random weights on every build

    register_model_config(SMALL_VIT, SMALL_VIT_CONFIG)
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(args.pairs, 3, 128, 128, generator=g)
    sr = (hr + 0.1 * torch.randn(hr.shape, generator=g)).clamp(0, 1)

    naive, cold, warm = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        naive_scores(sr, hr, device)
        naive.append(args.pairs / (time.perf_counter() - t0))

        clear_model_cache()
        t0 = time.perf_counter()  # cold: includes building the model once
        metric = CLIPScore(SMALL_VIT, None, device=device, batch_size=args.batch_size,
                           allow_random=True)
        metric(sr, hr)
        cold.append(args.pairs / (time.perf_counter() - t0))
        t0 = time.perf_counter()  # warm: the model comes from the cache
        metric = CLIPScore(SMALL_VIT, None, device=device, batch_size=args.batch_size,
                           allow_random=True)
        metric(sr, hr)
        warm.append(args.pairs / (time.perf_counter() - t0))

    import open_clip

    n_params = sum(p.numel() for p in metric.encoder.parameters())
    n_all = sum(p.numel() for p in open_clip.create_model(SMALL_VIT).parameters())
    med = statistics.median
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs "
          f"({torch.get_num_threads()} torch threads), python {platform.python_version()}, "
          f"torch {torch.__version__}, device {device}")
    print(f"model: small open_clip CLIP ({n_all / 1e6:.1f} M parameters, image tower "
          f"{n_params / 1e6:.1f} M), "
          f"{SMALL_VIT_CONFIG['vision_cfg']['image_size']} px, random weights; "
          f"{args.pairs} pairs of 128x128, paper preprocessing, batch {args.batch_size}, "
          f"median of {args.repeats} repeats")
    print(f"naive (model rebuilt per pair, one pair at a time): {med(naive):8.1f} pairs/s")
    print(f"zoomsr cached + batched, cold (one build):          {med(cold):8.1f} pairs/s")
    print(f"zoomsr cached + batched, warm (model in cache):     {med(warm):8.1f} pairs/s")
    print(f"speed-up: {med(cold) / med(naive):.1f}x cold, {med(warm) / med(naive):.1f}x warm")


if __name__ == "__main__":
    main()
