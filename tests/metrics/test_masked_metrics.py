"""Metrics with a ``valid`` mask (nodata left out): PSNR/SSIM/cPSNR over the valid pixels only,
LPIPS/CLIPScore with both images black outside it; an all-True mask changes nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoomsr.errors import InputError
from zoomsr.losses.ssim import ssim_map
from zoomsr.metrics import CPSNR, PSNR, SSIM, cpsnr, psnr, ssim
from zoomsr.metrics.psnr_ssim import ssim_direct


def _pair(images, size: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    target = images.smooth(2, size, seed=seed).double()
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(seed + 1),
                        dtype=torch.float64)
    pred = (images.blur(target.float()).double() + 0.03 * noise).clamp(0, 1)
    return pred, target


def _mask(size: int = 40) -> torch.Tensor:
    """Image 0: its left 12 columns nodata; image 1: a 9x14 hole and the top 3 rows."""
    v = torch.ones(2, size, size, dtype=torch.bool)
    v[0, :, :12] = False
    v[1, 15:24, 18:32] = False
    v[1, :3] = False
    return v


def _garbage(x: torch.Tensor, where: torch.Tensor, seed: int) -> torch.Tensor:
    """``x`` with random values where ``where`` (``[B, H, W]``) is True."""
    g = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    return torch.where(where[:, None], g, x)


def _psnr_by_hand(p: np.ndarray, t: np.ndarray, v: np.ndarray, border: int) -> float:
    sl = np.s_[border: p.shape[-2] - border, border: p.shape[-1] - border]
    d = (p[:, sl[0], sl[1]] - t[:, sl[0], sl[1]])[:, v[sl]]  # [3, n valid]
    return 10 * math.log10(1 / np.mean(d**2))


def test_masked_psnr_is_the_psnr_of_the_valid_pixels(images):
    pred, target = _pair(images)
    valid = _mask()
    got = psnr(pred, target, valid=valid)
    for i in range(2):
        want = _psnr_by_hand(pred[i].numpy(), target[i].numpy(), valid[i].numpy(), 4)
        assert float(got[i]) == pytest.approx(want, abs=1e-10)
    # whatever the invalid pixels hold
    assert torch.equal(psnr(_garbage(pred, ~valid, 1), _garbage(target, ~valid, 2),
                            valid=valid), got)
    # an [B, 1, H, W] mask, a numpy mask, uint8 0/1 and the class say the same
    assert torch.equal(psnr(pred, target, valid=valid[:, None]), got)
    assert torch.equal(psnr(pred, target, valid=valid.numpy()), got)
    assert torch.equal(psnr(pred, target, valid=valid.to(torch.uint8)), got)
    assert torch.equal(psnr(pred, target, valid=valid[0])[0], got[0])  # [H, W]: every image
    assert torch.equal(PSNR()(pred, target, valid=valid), got)
    # far from the unmasked value with the nodata area black in the prediction
    black = torch.where(valid[:, None], pred, torch.zeros(()))
    assert float(psnr(black, target)[0]) < float(got[0]) - 5


def test_masked_ssim_ignores_the_invalid_pixels_and_the_windows_reaching_them(images):
    pred, target = _pair(images)
    valid = _mask()
    got = ssim(pred, target, valid=valid)
    b, k = 4, 11
    for i in range(2):
        x, y = (z[i: i + 1, :, b:-b, b:-b] for z in (pred, target))
        m = ssim_map(x, y, window=k)  # [1, 3, h', w'], float64, `valid` filtering
        vc = valid[i, b:-b, b:-b].numpy()
        whole = np.array([[vc[r: r + k, c: c + k].all() for c in range(m.shape[-1])]
                          for r in range(m.shape[-2])])
        want = float(m[0][:, torch.from_numpy(whole)].mean())
        assert float(got[i]) == pytest.approx(want, abs=1e-12)
        assert not whole.all() and whole.any()
    # the invalid pixels (seen only by windows of the eroded border) change nothing
    assert torch.equal(ssim(_garbage(pred, ~valid, 3), _garbage(target, ~valid, 4),
                            valid=valid), got)
    # valid pixels next to the hole still count (in the windows on their other side)
    near = torch.zeros_like(valid)
    near[0, 20, 12] = True
    assert not torch.equal(ssim(_garbage(pred, near, 5), target, valid=valid), got)
    assert torch.allclose(ssim_direct(pred, target, valid=valid), got, atol=1e-12, rtol=0)
    assert torch.equal(SSIM()(pred, target, valid=valid), got)


def test_nothing_left_to_score_is_nan(images):
    pred, target = _pair(images, size=24)
    valid = torch.zeros(2, 24, 24, dtype=torch.bool)
    valid[0, :4] = True  # only in the cropped border
    valid[1, 6:16, 6:16] = True  # 10x10: no whole 11x11 window
    assert torch.isnan(psnr(pred, target, valid=valid)[0])
    assert not torch.isnan(psnr(pred, target, valid=valid)[1])
    assert torch.isnan(ssim(pred, target, valid=valid)).all()
    assert torch.isnan(cpsnr(pred, target, valid=valid)).all()  # < 64 px at every shift


def _cpsnr_by_hand(p: np.ndarray, t: np.ndarray, v: np.ndarray, b: int) -> float:
    """The challenge definition over the prediction's pixels whose (2b+1)^2 neighbourhood is
    valid, the same pixels at every shift."""
    h, w = p.shape[-2] - 2 * b, p.shape[-1] - 2 * b
    sure = np.array([[v[r: r + 2 * b + 1, c: c + 2 * b + 1].all() for c in range(w)]
                     for r in range(h)])
    best = math.inf
    for dy in range(-b, b + 1):
        for dx in range(-b, b + 1):
            d = (p[:, b: b + h, b: b + w] - t[:, b + dy: b + dy + h, b + dx: b + dx + w])
            d = d[:, sure]
            d = d - d.mean(axis=1, keepdims=True)  # the bias per channel, valid pixels only
            best = min(best, float(np.mean(d**2)))
    return 10 * math.log10(1 / best)


def test_masked_cpsnr_challenge_by_hand_and_blind_to_the_invalid_area(images):
    pred, target = _pair(images)
    valid = _mask()
    got = cpsnr(pred, target, valid=valid)
    for i in range(2):
        want = _cpsnr_by_hand(pred[i].numpy(), target[i].numpy(), valid[i].numpy(), 4)
        assert float(got[i]) == pytest.approx(want, abs=1e-9)
    assert torch.equal(cpsnr(_garbage(pred, ~valid, 6), _garbage(target, ~valid, 7),
                             valid=valid), got)
    # the prediction's pixels within the border of the invalid area are not compared
    band = F.max_pool2d((~valid[:, None]).float(), 9, stride=1, padding=4)[:, 0] > 0
    assert torch.equal(cpsnr(_garbage(pred, band, 8), target, valid=valid), got)
    assert torch.equal(CPSNR()(pred, target, valid=valid), got)


def test_masked_cpsnr_finds_the_shift_and_bias_despite_garbage(images):
    """A prediction 1 px off its target, brighter, and with its nodata area full of garbage
    (black there in the target too: a brightness bias over the whole image would be wrong)."""
    big = images.smooth(1, 48, seed=9).double()
    target = big[..., 4:44, 4:44]
    pred = (big[..., 5:45, 3:43] + 0.05).clamp(0, 1)
    valid = torch.ones(1, 40, 40, dtype=torch.bool)
    valid[0, 25:, 25:] = False
    pred = _garbage(pred, ~valid, 10)
    target = torch.where(valid[:, None], target, torch.zeros(()))
    score, shift = cpsnr(pred, target, valid=valid, return_shift=True)
    assert float(score) > 100 and shift.tolist() == [[1, -1]]
    assert float(cpsnr(pred, target)) < 30


def test_masked_cpsnr_reference_mode(images):
    pred, target = _pair(images, size=48)
    valid = torch.ones(2, 48, 48, dtype=torch.bool)
    valid[:, 30:, :20] = False
    got = cpsnr(pred, target, mode="reference", valid=valid)
    assert torch.isfinite(got).all()
    assert torch.equal(cpsnr(_garbage(pred, ~valid, 11), _garbage(target, ~valid, 12),
                             mode="reference", valid=valid), got)
    assert not torch.equal(cpsnr(pred, target, mode="reference"), got)


def test_an_all_true_mask_changes_nothing_to_the_bit(images, tiny_lpips_network, tiny_clip):
    """Images without nodata score as they did before masks existed, in a batch with masked
    ones too."""
    from zoomsr.metrics.lpips import LPIPS

    pred, target = _pair(images)
    full = torch.ones(2, 40, 40, dtype=torch.bool)
    mixed = full.clone()
    mixed[1, :, :12] = False
    p32, t32 = pred.float(), target.float()
    metrics = [PSNR(), SSIM(), CPSNR(), CPSNR(mode="reference"),
               LPIPS(network=tiny_lpips_network, device="cpu"), tiny_clip()]
    for m in metrics:
        plain = m(p32, t32)
        assert torch.equal(m(p32, t32, valid=full), plain), m
        assert torch.equal(m(p32, t32, valid=mixed)[0], plain[0]), m


def test_lpips_scores_the_valid_area_only(images, tiny_lpips_network):
    from zoomsr.metrics.lpips import LPIPS

    metric = LPIPS(network=tiny_lpips_network, device="cpu")
    pred, target = (x.float() for x in _pair(images))
    valid = _mask()
    got = metric(pred, target, valid=valid)
    # nothing outside the mask counts: not the prediction's fill, not the target's content
    assert torch.equal(metric(_garbage(pred, ~valid, 13), _garbage(target, ~valid, 14),
                              valid=valid), got)
    # a prediction right on the valid pixels is a perfect match, whatever it holds elsewhere
    same = metric(_garbage(target, ~valid, 15), target, valid=valid)
    assert same.tolist() == [0.0, 0.0]
    # the rule by hand: both black outside, each stage's map averaged over the valid area
    v = valid[:, None].float()
    a, b = pred * v * 2 - 1, target * v * 2 - 1
    want = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for d in tiny_lpips_network.distance_maps(a, b):
            w = F.interpolate(v, size=d.shape[-2:], mode="area")
            want += ((d * w).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3))).double()
    assert torch.allclose(got, want, rtol=1e-5, atol=0)
    # not diluted by the masked area's zero distance (a plain mean over the whole image)
    diluted = metric(pred * v, target * v)
    assert (got > diluted * 1.1).all()


def test_perceptual_metrics_skip_images_mostly_nodata(images, tiny_lpips_network, tiny_clip):
    from zoomsr.metrics.lpips import LPIPS

    pred, target = (x.float() for x in _pair(images))
    valid = torch.ones(2, 40, 40, dtype=torch.bool)
    valid[1, :, :24] = False  # 40 % valid
    for make in (lambda **k: LPIPS(network=tiny_lpips_network, device="cpu", **k),
                 lambda **k: tiny_clip(**k)):
        scores = make()(pred, target, valid=valid)
        assert math.isfinite(scores[0]) and math.isnan(scores[1])
        assert torch.isfinite(make(min_valid=0.4)(pred, target, valid=valid)).all()
        with pytest.raises(InputError, match=r"min_valid must be a fraction in \[0, 1\]"):
            make(min_valid=1.5)


def test_clipscore_with_a_mask_sees_both_images_black_outside_it(images, tiny_clip):
    metric = tiny_clip()
    pred, target = (x.float() for x in _pair(images))
    valid = _mask()
    got = metric(pred, target, valid=valid)
    assert torch.equal(metric(_garbage(pred, ~valid, 16), _garbage(target, ~valid, 17),
                              valid=valid), got)
    v = valid[:, None].float()
    assert torch.allclose(got, metric(pred * v, target * v), atol=1e-6, rtol=0)
    same = metric(_garbage(target, ~valid, 18), target, valid=valid)
    assert torch.allclose(same, torch.ones(2, dtype=torch.float64), atol=1e-5)


def test_bad_masks_are_refused():
    from zoomsr.metrics.base import check_valid

    shape = (2, 3, 16, 16)
    with pytest.raises(InputError, match=r"valid: mask of shape \(2, 16, 15\)"):
        check_valid(torch.ones(2, 16, 15, dtype=torch.bool), shape)
    with pytest.raises(InputError, match="float32 mask; expected bool"):
        check_valid(torch.ones(2, 16, 16), shape)
    with pytest.raises(InputError, match="float64; expected a bool mask"):
        check_valid(np.ones((2, 16, 16)), shape)
    assert check_valid(None, shape) is None
    x = torch.rand(shape)
    with pytest.raises(InputError, match="valid: mask of shape"):
        psnr(x, x, valid=torch.ones(1, 16, 16, dtype=torch.bool))


def _challenge_scorer(sr: np.ndarray, hr: np.ndarray, sm: np.ndarray, border: int) -> float:
    """The PROBA-V challenge's masked cPSNR of one band, written out as its scorer computes
    it: the HR image and its status map cropped together at each shift."""
    n_h, n_w = hr.shape[0] - 2 * border, hr.shape[1] - 2 * border
    sr_c = sr[border: border + n_h, border: border + n_w]
    best = -np.inf
    for u in range(2 * border + 1):
        for v in range(2 * border + 1):
            clear = sm[u: u + n_h, v: v + n_w]
            d = (hr[u: u + n_h, v: v + n_w] - sr_c)[clear]
            best = max(best, -10 * np.log10(np.mean((d - d.mean()) ** 2)))
    return best


def test_cpsnr_with_the_targets_mask_is_the_probav_challenges_masked_cpsnr():
    rng = np.random.default_rng(3)
    hr = rng.random((40, 40))
    sr = np.roll(hr, (1, -2), axis=(0, 1)) * 0.9 + 0.03 + 0.01 * rng.random((40, 40))
    sm = np.ones((40, 40), bool)
    sm[5:15, 20:33] = False  # concealed (a cloud in the HR)
    hr_garbage = hr.copy()
    hr_garbage[~sm] = 1.0
    want = _challenge_scorer(sr, hr_garbage, sm, 3)
    rgb = [torch.from_numpy(np.repeat(a[None, None], 3, 1)) for a in (sr, hr_garbage)]
    got = cpsnr(*rgb, border=3, target_valid=torch.from_numpy(sm)[None])
    assert float(got[0]) == pytest.approx(want, rel=1e-12)
    assert float(CPSNR(3, valid_is="target")(*rgb, torch.from_numpy(sm)[None])[0]) == \
        pytest.approx(want, rel=1e-12)
    # the fixed (joint) mask compares other pixels: close, not the same
    fixed = float(cpsnr(*rgb, border=3, valid=torch.from_numpy(sm)[None])[0])
    assert fixed != pytest.approx(want, rel=1e-9) and abs(fixed - want) < 1.0
    with pytest.raises(InputError, match="not both"):
        cpsnr(*rgb, border=3, valid=torch.from_numpy(sm)[None],
              target_valid=torch.from_numpy(sm)[None])
    with pytest.raises(InputError, match="mode 'challenge'"):
        CPSNR(3, mode="reference", valid_is="target")
