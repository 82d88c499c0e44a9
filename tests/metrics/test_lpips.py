"""LPIPS: the official example values with real weights, weight lookup, and metric properties."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from zoomsr.errors import CheckpointError, InputError
from zoomsr.metrics.base import WeightsNotFoundError
from zoomsr.metrics.lpips import (
    LPIPS,
    build_lpips_network,
    find_backbone_weights,
    find_linear_weights,
    min_input_size,
)

ALEX = "alexnet-features-from-lpips.pth"
VGG = "vgg16-features-from-lpips.pth"


@pytest.fixture
def lpips_package():
    """The installed lpips package's linear weights: skipped when absent, failed when CI=true."""
    try:
        return find_linear_weights("alex")
    except WeightsNotFoundError:
        if os.environ.get("CI") == "true":
            pytest.fail("the lpips package (LPIPS linear-layer weights) must be installed in CI")
        pytest.skip("the lpips package (linear-layer weights) is not installed")


def _load(path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None]


@pytest.fixture
def lpips_dir(shared_dir, lpips_package):
    return shared_dir / "weights" / "lpips"


def test_official_example_values_alexnet(lpips_dir):
    ref, p0, p1 = (_load(lpips_dir / f"ex_{n}.png") for n in ("ref", "p0", "p1"))
    metric = LPIPS("alex", backbone_weights=lpips_dir / ALEX, device="cpu")
    d = metric(torch.cat([p0, p1]), torch.cat([ref, ref]))  # uint8 input, converted
    assert [round(v, 3) for v in d.tolist()] == [0.722, 0.138]
    assert metric.higher_is_better is False
    assert float(metric(ref, ref)) == 0.0


def test_vgg_runs_from_a_weights_folder(lpips_dir):
    ref, p0, p1 = (_load(lpips_dir / f"ex_{n}.png") for n in ("ref", "p0", "p1"))
    metric = LPIPS("vgg", backbone_weights=lpips_dir, device="cpu")  # folder: finds vgg16*.pth
    d = metric(torch.cat([p0, p1]), torch.cat([ref, ref]))
    assert 0.0 < float(d[1]) < float(d[0]) < 1.0  # p1 is the closer one, as with AlexNet


@pytest.mark.parametrize(("net", "smallest"), [("alex", 31), ("vgg", 16)])
def test_smallest_side_with_real_weights_is_exact_and_refused_below(lpips_dir, net, smallest):
    """The user trial: 24x24 images with AlexNet gave torch's "Output size is too small"."""
    metric = LPIPS(net, backbone_weights=lpips_dir, device="cpu")
    assert metric.min_size == smallest
    g = torch.Generator().manual_seed(0)
    fits = torch.rand(2, 3, smallest, smallest + 7, generator=g)
    assert metric(fits, fits.flip(0)).shape == (2,)  # the smallest side works...
    small = fits[:, :, :-1]
    with torch.no_grad(), pytest.raises(RuntimeError):  # ...one pixel less breaks the network
        metric.network(small * 2 - 1, small * 2 - 1)
    sizes = [(smallest - 1, smallest + 7), (smallest + 7, smallest - 1)]
    for h, w in sizes + ([(24, 24)] if net == "alex" else []):  # the trial's images
        x = torch.rand(1, 3, h, w, generator=g)
        with pytest.raises(InputError) as info:
            metric(x, x)
        assert f"needs images of at least {smallest}x{smallest} px" in str(info.value)
        assert f"got {h}x{w}" in str(info.value)


def test_wrong_backbone_file_is_a_checkpoint_error(lpips_dir, tmp_path):
    with pytest.raises(CheckpointError, match=VGG):
        build_lpips_network("alex", backbone_weights=lpips_dir / VGG)
    # not a weights file: what it is, in one line (not torch's advice to load unsafely)
    text = tmp_path / "notes.pth"
    text.write_text("some notes\n")
    with pytest.raises(CheckpointError) as info:
        build_lpips_network("alex", backbone_weights=text)
    assert str(info.value) == f"{text}: cannot read weights (corrupt, truncated, or another format)"


def test_missing_backbone_names_the_cache_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFoundError) as info:
        find_backbone_weights("alex")
    msg = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth") in msg
    assert "--lpips-weights" in msg
    assert info.value.exit_code == 2 and isinstance(info.value, CheckpointError)
    with pytest.raises(WeightsNotFoundError, match="vgg16-397923af.pth"):
        LPIPS("vgg", device="cpu")
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        find_backbone_weights("alex", tmp_path / "nope.pth")


def test_backbone_found_in_the_torchvision_cache(tmp_path, monkeypatch):
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "alexnet-owt-7be5be79.pth").write_bytes(b"")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert find_backbone_weights("alex") == ckpt / "alexnet-owt-7be5be79.pth"


def test_missing_linear_weights_name_the_file(tmp_path, monkeypatch):
    import zoomsr.metrics.lpips as mod

    monkeypatch.setattr(mod, "_lpips_package_dir", lambda: tmp_path / "lpips")
    with pytest.raises(WeightsNotFoundError) as info:
        find_linear_weights("alex")
    assert str(tmp_path / "lpips" / "weights" / "v0.1" / "alex.pth") in str(info.value)
    assert "pip install lpips" in str(info.value)
    monkeypatch.setattr(mod, "_lpips_package_dir", lambda: None)
    with pytest.raises(WeightsNotFoundError, match="lpips/weights/v0.1/vgg.pth"):
        find_linear_weights("vgg")


@pytest.mark.parametrize(("net", "smallest"), [("alex", 31), ("vgg", 16)])
def test_smallest_side_of_the_backbones_is_computed(net, smallest):
    """Computed from the layers on the meta device (no weights needed), and exact: the
    untrained backbone runs at ``smallest`` and fails one pixel below."""
    from zoomsr.metrics.lpips import _STAGES, CHANNELS, LPIPSNetwork, backbone_features

    torch.manual_seed(0)
    features = backbone_features(net)
    network = LPIPSNetwork([features[a:b] for a, b in _STAGES[net]], CHANNELS[net]).eval()
    assert min_input_size(network) == smallest
    assert min_input_size(net) == smallest  # by name, as docs/metrics.md shows it
    with torch.no_grad():
        x = torch.rand(1, 3, smallest, smallest)
        network(x, x)
        with pytest.raises(RuntimeError):
            network(x[..., 1:, 1:], x[..., 1:, 1:])


def test_small_images_refused_before_the_network_runs(tiny_lpips_network, monkeypatch):
    metric = LPIPS(network=tiny_lpips_network, device="cpu")
    assert metric.min_size == 4  # two 2x2 max-poolings
    calls = []
    monkeypatch.setattr(metric, "network", lambda a, b: calls.append(1))
    with pytest.raises(InputError, match=r"at least 4x4 px .*got 3x8"):
        metric(torch.zeros(1, 3, 3, 8), torch.zeros(1, 3, 3, 8))
    assert calls == []


def test_unknown_network():
    with pytest.raises(InputError, match="squeeze"):
        LPIPS("squeeze", device="cpu")


# ---- properties on a tiny random backbone -------------------------------------------------


def test_inputs_are_scaled_to_minus_one_one(tiny_lpips_network, images):
    x, y = images.smooth(2, 32, seed=0), images.smooth(2, 32, seed=1)
    metric = LPIPS(network=tiny_lpips_network, device="cpu")
    with torch.no_grad():
        direct = tiny_lpips_network(x * 2 - 1, y * 2 - 1).double()
        unscaled = tiny_lpips_network(x, y).double()
    torch.testing.assert_close(metric(x, y), direct)
    assert not torch.allclose(metric(x, y), unscaled)


def test_identity_symmetry_and_batch_invariance(tiny_lpips_network, images):
    x, y = images.smooth(5, 32, seed=2), images.smooth(5, 32, seed=3)
    batched = LPIPS(network=tiny_lpips_network, device="cpu", batch_size=5)
    single = LPIPS(network=tiny_lpips_network, device="cpu", batch_size=1)
    assert batched(x, x).abs().max() == 0.0
    d = batched(x, y)
    assert (d > 0).all()
    torch.testing.assert_close(d, batched(y, x))
    torch.testing.assert_close(d, single(x, y), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(d[2:3], batched(x[2:3], y[2:3]), rtol=1e-5, atol=1e-7)


def test_blurred_is_closer_than_unrelated(tiny_lpips_network, images):
    x, other = images.smooth(6, 48, seed=4), images.smooth(6, 48, seed=5)
    metric = LPIPS(network=tiny_lpips_network, device="cpu")
    assert (metric(images.blur(x), x) < metric(other, x)).all()


def test_float64_input_is_scored_as_float32(tiny_lpips_network, images):
    """float64 images met the float32 network: "Input type (double) and bias type (float)
    should be the same"; every other metric takes them."""
    x, y = images.smooth(2, 32, seed=6), images.smooth(2, 32, seed=7)
    metric = LPIPS(network=tiny_lpips_network, device="cpu")
    torch.testing.assert_close(metric(x.double(), y.double()), metric(x, y))
    torch.testing.assert_close(metric(x.double().numpy(), y.numpy()), metric(x, y))


def test_lpips_of_another_backbone_is_named_by_it(lpips_dir):
    """--metrics lpips --lpips-net vgg wrote VGG distances in a column named "lpips", as
    AlexNet's are."""
    from zoomsr.errors import ConfigError
    from zoomsr.metrics import MetricOptions, create_metrics

    vgg = MetricOptions(lpips_net="vgg", lpips_weights=lpips_dir, device="cpu")
    assert list(create_metrics("psnr,lpips", vgg)) == ["psnr", "lpips_vgg"]
    alex = MetricOptions(lpips_weights=lpips_dir, device="cpu")
    assert list(create_metrics("lpips", alex)) == ["lpips"]
    with pytest.raises(ConfigError, match="a metric is listed twice: lpips_vgg"):
        create_metrics("lpips,lpips_vgg", vgg)
