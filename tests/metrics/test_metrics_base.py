"""Input validation shared by every metric: shape, dtype, range, channel order."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from zoomsr.errors import InputError
from zoomsr.metrics.base import check_images, check_pair, resolve_dtype


def test_float_and_uint8_give_the_same_tensor():
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=g)
    out = check_images(u8)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, u8.float() / 255)
    torch.testing.assert_close(check_images(u8.numpy()), out)


def test_tiny_overshoot_is_clipped_without_touching_the_input():
    x = torch.full((1, 3, 4, 4), 0.5)
    x[0, 0, 0, 0] = 1.0005
    out = check_images(x)
    assert float(out.max()) == 1.0
    assert float(x[0, 0, 0, 0]) == pytest.approx(1.0005)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.full((1, 3, 8, 8), 200.0), "divide by 255"),
        (torch.full((1, 3, 8, 8), 2.5), "divide by 255"),
        (torch.full((1, 3, 8, 8), 1.99996), "values up to 1.99996: looks like unclipped"),
        (torch.full((1, 3, 8, 8), 1.02), "clip or rescale to [0, 1]"),
        (torch.full((1, 3, 8, 8), 4000.0), "reflectance"),
        (torch.full((1, 3, 8, 8), -0.5), "(x + 1) / 2"),
        (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
        (torch.rand(3, 8, 8), "x[None]"),
        (torch.rand(8, 8, 3), "permute(2, 0, 1)"),
        (torch.rand(1, 8, 8, 3), "channels-last"),
        (torch.rand(1, 1, 8, 8), "x.expand(-1, 3, -1, -1)"),
        (torch.rand(1, 4, 8, 8), "x[:, :3]"),
        (torch.rand(1, 2, 8, 8), "3 RGB channels"),
        (torch.zeros(0, 3, 8, 8), "empty"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.int16), "int16"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.bool), "bool"),
        (np.zeros((1, 3, 8, 8), dtype=np.uint16), "uint16"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_wrong_inputs_are_refused_with_a_hint(x, message):
    with pytest.raises(InputError, match=re.escape(message)):
        check_images(x)


def test_the_hinted_expansion_scores_one_band_exactly():
    from zoomsr.metrics import cpsnr, psnr, ssim

    g = torch.Generator().manual_seed(0)
    band = torch.rand(2, 1, 32, 32, generator=g, dtype=torch.float64)
    other = (band + 0.05 * torch.rand(2, 1, 32, 32, generator=g, dtype=torch.float64)).clamp(0, 1)
    three = band.expand(-1, 3, -1, -1), other.expand(-1, 3, -1, -1)
    mse = (band - other)[..., 4:-4, 4:-4].square().mean(dim=(1, 2, 3))
    assert torch.allclose(psnr(*three), -10 * torch.log10(mse))
    # SSIM is the mean of the channels' own: 3 equal channels give the band's
    pairs = [(torch.rand(2, 1, 32, 32, generator=g, dtype=torch.float64),) * 2 for _ in "uv"]
    pairs = [(a, (a + 0.1 * torch.rand(a.shape, generator=g, dtype=a.dtype)).clamp(0, 1))
             for a, _ in pairs]
    mixed = (torch.cat([band, *(a for a, _ in pairs)], 1),
             torch.cat([other, *(b for _, b in pairs)], 1))
    each = [ssim(*three)] + [ssim(a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1))
                             for a, b in pairs]
    assert torch.allclose(ssim(*mixed), sum(each) / 3)
    shifted = torch.roll(other, (1, 2), dims=(2, 3))  # cPSNR of the band: its shift found
    _, shift = cpsnr(band.expand(-1, 3, -1, -1), shifted.expand(-1, 3, -1, -1),
                     return_shift=True)
    assert shift.tolist() == [[1, 2]] * 2


def test_values_a_little_above_one_are_not_called_0_255_data():
    """Unclipped reflectance or SR overshoot (up to 2) is told to clip, not to divide by 255."""
    x = torch.full((1, 3, 8, 8), 0.5)
    x[0, 0, 0, 0] = 2.0
    with pytest.raises(InputError, match="clip or rescale") as err:
        check_images(x, "pred")
    assert "255" not in str(err.value)


def test_declared_bgr_is_refused():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(InputError, match="BGR"):
        check_images(x, channel_order="bgr")
    with pytest.raises(InputError, match="channel_order"):
        check_images(x, channel_order="rgba")
    assert check_images(x, channel_order="RGB").shape == x.shape


def test_pair_shapes_must_match():
    with pytest.raises(InputError, match="shapes differ"):
        check_pair(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))


def test_half_precision_needs_a_gpu():
    with pytest.raises(InputError, match="GPU"):
        resolve_dtype("bf16", torch.device("cpu"))
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    with pytest.raises(InputError, match="unknown dtype"):
        resolve_dtype("int8", torch.device("cpu"))


def _all_metrics(tiny_lpips_network, tiny_clip):
    from zoomsr.metrics import CPSNR, PSNR, SSIM
    from zoomsr.metrics.lpips import LPIPS

    return [
        PSNR(), SSIM(), CPSNR(), CPSNR(mode="reference"),
        LPIPS(network=tiny_lpips_network, device="cpu"), tiny_clip(),
    ]


def test_every_metric_refuses_bad_inputs(tiny_lpips_network, tiny_clip):
    good = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    bad_inputs = [good * 255, good.permute(0, 2, 3, 1), good * 2 - 1, good[:, :1]]
    for metric in _all_metrics(tiny_lpips_network, tiny_clip):
        scores = metric(good, good.flip(0))
        assert scores.shape == (2,) and scores.dtype == torch.float64, metric
        for bad in bad_inputs:
            with pytest.raises(InputError):
                metric(bad, good if bad.shape == good.shape else bad)
            with pytest.raises(InputError):
                metric(good, bad)


def test_big_endian_and_read_only_arrays_are_accepted(recwarn):
    """torch.from_numpy refused big-endian data (a ValueError traceback) and warned on
    read-only arrays (np.broadcast_to, memory maps)."""
    from zoomsr.metrics import psnr

    x = np.random.default_rng(0).random((1, 3, 16, 16))
    assert float(psnr(x.astype(">f8"), x)[0]) == math.inf
    assert check_images(x.astype(">f4")).dtype == torch.float32
    frozen = np.broadcast_to(x, (2, 3, 16, 16))
    assert psnr(frozen, frozen).tolist() == [math.inf, math.inf]
    assert not [w for w in recwarn if "not writable" in str(w.message)]
