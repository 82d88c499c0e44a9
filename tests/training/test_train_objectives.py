"""The weighted content loss and the validation image grid."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoomsr.losses import usm_sharp
from zoomsr.training.base import lr_sr_hr_grid
from zoomsr.training.config import LossSection, PixelTerm, SSIMTerm
from zoomsr.training.objectives import ContentLoss


def _images(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(2, 3, 8, 8, generator=g)
    return F.interpolate(low, size=(64, 64), mode="bilinear").clamp(0, 1)


def test_content_loss_weights_terms_and_sharpens_per_term():
    hr, sr = _images(0), _images(1)
    cfg = LossSection(pixel=PixelTerm("l1", 2.0), ssim=SSIMTerm(weight=0.5, window=5))
    loss = ContentLoss(cfg)
    total, parts = loss(sr, hr)
    assert set(parts) == {"pixel", "ssim"}
    assert total.item() == pytest.approx(2.0 * parts["pixel"].item() + 0.5 * parts["ssim"].item())
    assert parts["pixel"].item() == pytest.approx(F.l1_loss(sr, hr).item())

    # With usm on the pixel term, the USM-sharpened ground truth is the target.
    sharp = ContentLoss(LossSection(pixel=PixelTerm("l1", 1.0, usm=True)))
    assert sharp(usm_sharp(hr), hr)[0].item() == pytest.approx(0.0, abs=1e-7)
    assert sharp(hr, hr)[0].item() > 1e-4
    assert set(ContentLoss(LossSection(pixel=PixelTerm(weight=0.0))).terms) == set()


def test_validation_grid_rows_are_lr_sr_hr():
    lr = torch.rand(2, 4 * 3, 32, 32)
    sr, hr = torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128)
    grid = lr_sr_hr_grid(lr, sr, hr)
    assert grid.dtype.name == "uint8" and grid.shape == (2 + 2 * 130, 2 + 3 * 130, 3)
    frames = lr.reshape(2, 4, 3, 32, 32)
    assert (lr_sr_hr_grid(frames, sr, hr) == grid).all()
    # The first cell is the first LR time step, nearest-upsampled x4.
    expected = (lr[0, :3, 0, 0] * 255 + 0.5).floor()
    assert torch.equal(torch.from_numpy(grid[2:6, 2:6][0, 0]).float(), expected)
