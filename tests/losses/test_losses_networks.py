"""GAN, VGG19 perceptual and CLIP losses, and the Frozen wrapper."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from zoomsr.errors import InputError
from zoomsr.losses import CLIPLoss, Frozen, GANLoss, PerceptualLoss, VGG19Features
from zoomsr.metrics import WeightsNotFoundError


def images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g)
    return F.interpolate(low, size=(size, size), mode="bilinear").clamp(0, 1)


def test_vanilla_and_hinge_gan_losses():
    zero = torch.zeros(2, 1, 8, 8)
    vanilla = GANLoss("vanilla")
    assert vanilla(zero, real=True).item() == pytest.approx(math.log(2))
    assert vanilla(torch.full_like(zero, 10.0), real=True).item() < 1e-4
    assert vanilla(torch.full_like(zero, 10.0), real=False).item() > 9
    hinge = GANLoss("hinge")
    logits = torch.tensor([2.0, 0.5, -3.0])
    assert hinge(logits, real=True).item() == pytest.approx((0 + 0.5 + 4) / 3)
    assert hinge(logits, real=False).item() == pytest.approx((3 + 1.5 + 0) / 3)
    assert hinge(logits, real=True, for_discriminator=False).item() == pytest.approx(0.5 / 3)
    # The generator term pushes fake logits up.
    fake = torch.zeros(4, requires_grad=True)
    hinge(fake, real=True, for_discriminator=False).backward()
    assert (fake.grad < 0).all()
    with pytest.raises(InputError, match="unknown GAN loss 'wgan'"):
        GANLoss("wgan")


def test_perceptual_loss_with_random_vgg_is_frozen_and_differentiable():
    torch.manual_seed(0)
    loss = PerceptualLoss({"conv1_2": 0.1, "conv2_2": 1.0}, allow_random=True)
    hr = images(2, seed=1)
    assert loss(hr, hr).item() == pytest.approx(0.0, abs=1e-7)
    sr = images(2, seed=2).requires_grad_()
    value = loss(sr, hr)
    value.backward()
    assert value.item() > 0 and sr.grad.abs().sum() > 0
    # The VGG is neither trained nor saved, and stays in eval mode.
    assert list(loss.parameters()) == [] and loss.state_dict() == {}
    loss.train()
    assert not loss.vgg.net.training
    # Truncated after the deepest layer; features taken before the ReLU (can be negative).
    vgg = loss.vgg.net
    assert vgg.names[-1] == "conv2_2"
    assert vgg(hr)["conv1_2"].min() < 0


def test_perceptual_loss_loads_weights_from_a_file(tmp_path):
    torch.manual_seed(1)
    features = make_layers(cfgs["E"])
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    by_file = VGG19Features(["conv3_4"], weights=path)
    by_dir = VGG19Features(["conv3_4"], weights=tmp_path)
    x = images(1, seed=3)
    expected = features[:17]((x - by_file.mean) / by_file.std)  # up to conv3_4
    assert torch.allclose(by_file(x)["conv3_4"], expected, atol=1e-5)
    assert torch.equal(by_file(x)["conv3_4"], by_dir(x)["conv3_4"])


def test_missing_vgg_weights_give_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFoundError) as info:
        PerceptualLoss()
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    with pytest.raises(WeightsNotFoundError, match="nowhere.pth"):
        PerceptualLoss(weights=tmp_path / "nowhere.pth")
    with pytest.raises(InputError, match="unknown VGG19 layer 'conv9_1'"):
        PerceptualLoss({"conv9_1": 1.0}, allow_random=True)


def test_clip_loss_with_a_tiny_random_backbone(tiny_clip_model):
    torch.manual_seed(0)
    loss = CLIPLoss(tiny_clip_model, None, allow_random=True)
    hr = images(2, size=48, seed=4)
    assert loss(hr, hr).item() == pytest.approx(0.0, abs=1e-6)
    sr = images(2, size=48, seed=5).requires_grad_()
    value = loss(sr, hr)
    value.backward()
    assert value.item() > 0 and sr.grad.abs().sum() > 0
    assert list(loss.parameters()) == [] and not loss.encoder.net.training
    # Resized to the backbone's size, normalised with its own mean/std.
    x = loss.preprocess(torch.full((1, 3, 48, 48), 0.5))
    assert x.shape[-2:] == (32, 32)
    expected = (0.5 - torch.tensor(loss.weights.mean)) / torch.tensor(loss.weights.std)
    assert torch.allclose(x[0, :, 0, 0], expected, atol=1e-5)
    cosine = CLIPLoss(tiny_clip_model, None, "cosine", allow_random=True)
    assert 0 < cosine(sr, hr).item() <= 2


def test_clip_loss_refuses_random_weights_unless_asked(tiny_clip_model):
    with pytest.raises(InputError, match="allow_random"):
        CLIPLoss(tiny_clip_model, None)
    with pytest.raises(InputError, match="criterion"):
        CLIPLoss(tiny_clip_model, None, "l2", allow_random=True)


def test_frozen_wrapper_follows_device_and_dtype_moves():
    inner = nn.Linear(2, 2)
    outer = nn.Sequential(Frozen(inner))
    outer.to(torch.float64)
    assert inner.weight.dtype == torch.float64
    assert not inner.weight.requires_grad and not inner.training
    assert outer.state_dict() == {} and list(outer.parameters()) == []


def test_perceptual_loss_refuses_an_empty_layer_mapping():
    with pytest.raises(InputError, match="perceptual layer_weights is empty"):
        PerceptualLoss({}, allow_random=True)


def test_images_too_small_for_the_deepest_vgg_layer_are_named():
    """ESRGAN's layers reach conv5_4, behind 4 max-pools: 16 px a side at least (torch said
    "Output size is too small" from inside the network)."""
    loss = PerceptualLoss(allow_random=True)
    with pytest.raises(InputError, match=r"^images of 8 x 24 px are too small .* up to "
                                         r"conv5_4 \(at least 16 px a side\)"):
        loss(torch.rand(1, 3, 8, 24), torch.rand(1, 3, 8, 24))
    assert loss(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)).isfinite()
    shallow = PerceptualLoss({"conv2_2": 1.0}, allow_random=True)  # one pool before it
    assert shallow(torch.rand(1, 3, 2, 2), torch.rand(1, 3, 2, 2)).isfinite()
    with pytest.raises(InputError, match="at least 2 px"):
        shallow(torch.rand(1, 3, 1, 4), torch.rand(1, 3, 1, 4))


def test_perceptual_loss_refuses_images_that_are_not_rgb():
    """One band broadcast silently against the RGB mean/std (a [B, 1] image became three
    channels); RGB + NIR failed with torch's broadcasting message."""
    loss = PerceptualLoss({"conv1_2": 1.0}, allow_random=True)
    for channels in (1, 4):
        x = torch.rand(1, channels, 8, 8)
        with pytest.raises(InputError, match=rf"expects \[B, 3, H, W\] RGB, got \[1, {channels}"):
            loss(x, x)


def test_perceptual_loss_equals_a_plain_esrgan_reference(tmp_path):
    """BasicSR's PerceptualLoss: ImageNet-normalised [0, 1] RGB, features before the ReLU,
    sum of layer weight x mean L1 (or MSE); no gradient reaches the VGG."""
    torch.manual_seed(2)
    features = make_layers(cfgs["E"])
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()},
               tmp_path / "vgg19-dcbb9e9d.pth")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    at = {2: 0.1, 7: 0.1, 16: 1.0, 25: 1.0, 34: 1.0}  # conv1_2 ... conv5_4 in torchvision

    def reference(x, y, distance):
        fx, fy, total = (x - mean) / std, (y - mean) / std, 0.0
        for i, module in enumerate(features[:35]):
            module = nn.ReLU() if isinstance(module, nn.ReLU) else module
            fx, fy = module(fx), module(fy)
            total = total + at.get(i, 0.0) * distance(fx, fy)
        return total

    sr, hr = images(1, size=16, seed=6).requires_grad_(), images(1, size=16, seed=7)
    for criterion, distance in (("l1", F.l1_loss), ("mse", F.mse_loss)):
        loss = PerceptualLoss(criterion=criterion, weights=tmp_path)
        with torch.no_grad():
            expected = reference(sr, hr, distance)
        assert torch.allclose(loss(sr, hr), expected, rtol=1e-5)
    loss(sr, hr).backward()
    assert sr.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.vgg.net.parameters())


def test_gan_losses_equal_basicsr_formulas_in_float32_under_autocast():
    """BasicSR: vanilla = BCE-with-logits against 1 (real) / 0 (fake), also for the generator;
    hinge = relu(1 - x) / relu(1 + x) for the discriminator, -mean(x) for the generator."""
    logits = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    half = logits.bfloat16()
    x = half.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vanilla, hinge = GANLoss("vanilla"), GANLoss("hinge")
        got = {
            "v_real": vanilla(half, real=True), "v_fake": vanilla(half, real=False),
            "v_gen": vanilla(half, real=True, for_discriminator=False),
            "h_real": hinge(half, real=True), "h_fake": hinge(half, real=False),
            "h_gen": hinge(half, real=True, for_discriminator=False),
        }
    expected = {
        "v_real": F.softplus(-x).mean(), "v_fake": F.softplus(x).mean(),
        "v_gen": F.softplus(-x).mean(), "h_real": (1 - x).clamp(min=0).mean(),
        "h_fake": (1 + x).clamp(min=0).mean(), "h_gen": -x.mean(),
    }
    for key, value in got.items():
        assert value.dtype == torch.float32 and value.shape == ()
        assert torch.allclose(value, expected[key], atol=1e-6), key


def test_frozen_network_stays_frozen_inside_a_training_parent():
    inner = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    parent = nn.ModuleDict({"loss": nn.ModuleDict({"frozen": Frozen(inner)})})
    parent.train()
    parent.requires_grad_(True)
    assert not inner.training and not any(m.training for m in inner.modules())
    assert not any(p.requires_grad for p in inner.parameters())
    assert [name for name, _ in parent.named_modules()] == ["", "loss", "loss.frozen"]
    x = torch.ones(3, 2)
    assert torch.equal(parent["loss"]["frozen"](x), parent["loss"]["frozen"](x))  # no dropout
