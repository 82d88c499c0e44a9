"""Output shapes, input checks and gradient flow of every model, at tiny sizes."""

from __future__ import annotations

import pytest
import torch

from zoomsr.errors import ConfigError, InputError
from zoomsr.models import MODELS, create_model, frames_to_channels

TINY = {
    "srcnn": {"hidden_channels": 16, "revisits": 3},
    "highresnet": {"hidden_channels": 16, "revisits": 4},
    "rrdbnet": {"num_in_ch": 6, "num_feat": 8, "num_block": 1, "num_grow_ch": 4},
    "unet_discriminator_sn": {"num_feat": 4},
    "sr3": {
        "in_channels": 6,
        "scale": 2,
        "base_channels": 8,
        "channel_mults": (1, 2),
        "num_res_blocks": 1,
        "attn_levels": (1,),
        "num_timesteps": 20,
    },
}


def test_tiny_configs_cover_every_model() -> None:
    assert sorted(TINY) == sorted(MODELS)


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize(("frames", "channels", "height", "width"), [(1, 3, 8, 12), (2, 4, 16, 8)])
def test_rrdbnet_shapes(scale: int, frames: int, channels: int, height: int, width: int) -> None:
    model = create_model(
        "rrdbnet",
        num_in_ch=frames * channels,
        num_out_ch=channels,
        scale=scale,
        num_feat=8,
        num_block=1,
        num_grow_ch=4,
    ).eval()
    x = torch.rand(2, frames, channels, height, width)
    with torch.no_grad():
        y = model(frames_to_channels(x))
    assert y.shape == (2, channels, height * scale, width * scale)


def test_rrdbnet_rejects_bad_input() -> None:
    model = create_model("rrdbnet", num_in_ch=6, scale=1, num_feat=8, num_block=1, num_grow_ch=4)
    with pytest.raises(InputError, match="6"):
        model(torch.rand(1, 3, 8, 8))
    with pytest.raises(InputError, match="divisible by 4"):
        model(torch.rand(1, 6, 10, 8))
    with pytest.raises(ConfigError, match="scale"):
        create_model("rrdbnet", scale=5)


def test_rrdbnet_x3_is_one_nearest_x3_upsample_named_as_published():
    """x3 (OLI2MSI, PROBA-V): conv_up1 after one nearest x3; its tensors are the x4 model's
    less conv_up2, so a x4 checkpoint's trunk warm-starts it by name."""
    kw = {"num_in_ch": 3, "num_feat": 8, "num_block": 1, "num_grow_ch": 4}
    x3, x4 = create_model("rrdbnet", scale=3, **kw), create_model("rrdbnet", scale=4, **kw)
    assert set(x4.state_dict()) - set(x3.state_dict()) == {"conv_up2.weight", "conv_up2.bias"}
    assert set(x3.state_dict()) < set(x4.state_dict())
    x = torch.rand(1, 3, 5, 7)
    feat = x3.conv_first(x)
    feat = feat + x3.conv_body(x3.body(feat))
    up = x3.lrelu(x3.conv_up1(torch.nn.functional.interpolate(feat, scale_factor=3)))
    want = x3.conv_last(x3.lrelu(x3.conv_hr(up)))
    with torch.no_grad():
        assert torch.equal(x3(x), want.detach())


@pytest.mark.parametrize("name", ["srcnn", "highresnet"])
@pytest.mark.parametrize(("channels", "height", "width", "zoom"), [(3, 8, 12, 4), (1, 10, 6, 2)])
def test_worldstrat_shapes(name: str, channels: int, height: int, width: int, zoom: int) -> None:
    frames = 3
    model = create_model(
        name,
        in_channels=channels,
        out_channels=channels,
        revisits=frames,
        hidden_channels=16,
        zoom_factor=zoom,
        output_size=None,
    ).eval()
    with torch.no_grad():
        y = model(torch.rand(2, frames, channels, height, width))
    assert y.shape == (2, 1, channels, height * zoom, width * zoom)


@pytest.mark.parametrize("frames", [1, 2, 3, 5, 8, 11])
def test_highresnet_takes_any_number_of_frames(frames: int) -> None:
    model = create_model("highresnet", revisits=8, hidden_channels=16, output_size=None).eval()
    with torch.no_grad():
        y = model(torch.rand(1, frames, 3, 8, 8))
    assert y.shape == (1, 1, 3, 32, 32)


def test_srcnn_output_size_resizes_like_the_reference() -> None:
    model = create_model("srcnn", revisits=2, hidden_channels=16, output_size=20).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 2, 3, 8, 8)).shape == (1, 1, 3, 20, 20)
        # Short side to output_size, aspect ratio kept.
        assert model(torch.rand(1, 2, 3, 8, 16)).shape == (1, 1, 3, 20, 40)
        # Same size: untouched.
        assert model(torch.rand(1, 2, 3, 5, 5)).shape == (1, 1, 3, 20, 20)


@pytest.mark.parametrize("autocast", [True, False])
def test_srcnn_output_size_resizes_in_bfloat16(autocast: bool) -> None:
    """The published config (output_size=128) on any other input size failed under bf16
    autocast, or with bf16 weights, on CPU: torch's antialiased resize has no bf16 kernel."""
    model = create_model("srcnn", revisits=2, hidden_channels=16, output_size=20).eval()
    x = torch.rand(1, 2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = model(x)
        else:
            y = model.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert y.shape == (1, 1, 3, 20, 20) and y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), expected, atol=0.05, rtol=0)


def test_srcnn_rejects_other_frame_counts_and_channels() -> None:
    model = create_model("srcnn", revisits=3, hidden_channels=16)
    with pytest.raises(InputError, match="revisits=3"):
        model(torch.rand(1, 4, 3, 8, 8))
    with pytest.raises(InputError, match=r"\[B, 3, 3, H, W\]"):
        model(torch.rand(1, 3, 4, 8, 8))
    with pytest.raises(ConfigError, match="hidden_channels"):
        create_model("srcnn", hidden_channels=20, zoom_factor=4)


def test_layout_mixups_name_what_was_expected() -> None:
    """[B, T*C, H, W] given to a frames model, [B, T, C, H, W] to RRDBNet: the error named
    neither SRCNN's number of frames nor the function that converts the layout."""
    x = torch.rand(1, 3, 3, 8, 8)
    with pytest.raises(InputError, match=r"expects \[B, 3, 3, H, W\].*channels_to_frames\(x, 3\)"):
        create_model("srcnn", revisits=3, hidden_channels=16)(frames_to_channels(x))
    with pytest.raises(InputError, match=r"expects \[B, T, 3, H, W\].*channels_to_frames"):
        create_model("highresnet", revisits=4, hidden_channels=16)(frames_to_channels(x))
    rrdbnet = create_model("rrdbnet", num_in_ch=9, num_feat=8, num_block=1, num_grow_ch=4)
    with pytest.raises(InputError, match=r"expects \[B, 9, H, W\].*frames_to_channels\(x\)"):
        rrdbnet(x)
    with pytest.raises(InputError, match=r"images x bands\), got \[1, 6, 8, 8\]$"):
        rrdbnet(torch.rand(1, 6, 8, 8))  # two images where three were expected


@pytest.mark.parametrize("name", ["srcnn", "highresnet"])
def test_worldstrat_models_name_their_smallest_input(name: str) -> None:
    """A 1 px input failed inside torch's reflection padding."""
    model = create_model(name, revisits=2, hidden_channels=16)
    with pytest.raises(InputError, match=r"needs inputs of at least 2 x 2 px, got 1 x 5"):
        model(torch.rand(1, 2, 3, 1, 5))
    assert model(torch.rand(1, 2, 3, 2, 2)).shape[-2:] == (8, 8)


def test_srcnn_reference_frame_doubles_encoder_input() -> None:
    model = create_model(
        "srcnn", revisits=4, hidden_channels=16, use_reference_frame=True, output_size=None
    ).eval()
    assert model.encoder.doubleconv2d[0].in_channels == 6
    with torch.no_grad():
        assert model(torch.rand(1, 4, 3, 8, 8)).shape == (1, 1, 3, 32, 32)


@pytest.mark.parametrize(("channels", "height", "width"), [(3, 16, 24), (27, 32, 8)])
def test_discriminator_shapes(channels: int, height: int, width: int) -> None:
    model = create_model("unet_discriminator_sn", num_in_ch=channels, num_feat=4).eval()
    with torch.no_grad():
        assert model(torch.rand(2, channels, height, width)).shape == (2, 1, height, width)
    with pytest.raises(InputError, match="divisible by 8"):
        model(torch.rand(1, channels, 12, 16))


def test_discriminator_without_skips_differs() -> None:
    with_skip = create_model("unet_discriminator_sn", num_feat=4).eval()
    without = create_model("unet_discriminator_sn", num_feat=4, skip_connection=False).eval()
    without.load_state_dict(with_skip.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(with_skip(x), without(x))


def _forward_loss(name: str, model: torch.nn.Module) -> torch.Tensor:
    if name in ("srcnn", "highresnet"):
        return model(torch.rand(2, 3, 3, 8, 8)).mean()
    if name == "rrdbnet":
        return model(torch.rand(2, 6, 8, 8)).mean()
    if name == "unet_discriminator_sn":
        return model(torch.rand(2, 3, 16, 16)).mean()
    return model.loss(torch.rand(2, 3, 16, 16), torch.rand(2, 6, 8, 8))


@pytest.mark.parametrize("name", sorted(TINY))
def test_gradients_flow(name: str) -> None:
    config = dict(TINY[name])
    if name in ("srcnn", "highresnet"):
        config["revisits"] = 3
    model = create_model(name, **config).train()
    _forward_loss(name, model).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for param_name, param in trainable:
        assert param.grad is not None, f"no gradient for {param_name}"
        assert torch.isfinite(param.grad).all(), param_name
    assert any(p.grad.abs().sum() > 0 for _, p in trainable)


def test_unused_reference_modules_are_frozen() -> None:
    model = create_model("highresnet", hidden_channels=16)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(
        n.startswith(("mask_encoder.", "doubleconv2d.", "residualblocks.")) for n in frozen
    )


@pytest.mark.parametrize("name", sorted(TINY))
def test_config_round_trip(name: str) -> None:
    model = create_model(name, **TINY[name])
    assert create_model(name, **model.config).config == model.config


def test_integer_input_is_refused_with_the_conversion() -> None:
    """A uint8 TCI stack gave torch's "Input type (unsigned char) and bias type (float)"."""
    rrdb = create_model("rrdbnet", **TINY["rrdbnet"]).eval()
    with pytest.raises(InputError, match=r"RRDBNet takes floats in \[0, 1\], got uint8 values "
                                         r"\(8-bit TCI: x.float\(\) / 255\)"):
        rrdb(torch.zeros(1, 6, 8, 8, dtype=torch.uint8))
    for name, shape in (("srcnn", (1, 3, 3, 8, 8)), ("highresnet", (1, 4, 3, 8, 8))):
        with pytest.raises(InputError, match=r"takes floats in \[0, 1\], got int64 values$"):
            create_model(name, **TINY[name])(torch.zeros(shape, dtype=torch.int64))
    sr3 = create_model("sr3", **TINY["sr3"]).eval()
    with pytest.raises(InputError, match=r"SR3 takes floats"):
        sr3.sample(torch.zeros(1, 6, 8, 8, dtype=torch.uint8), steps=2)


def test_srcnn_says_once_when_output_size_changes_the_scale() -> None:
    """The published output_size=128 makes a 64 px input's output 128 px (x2, not x4),
    silently; said once for each input size, and not where the resize is a no-op."""
    import warnings

    from zoomsr.errors import ZoomsrWarning

    net = create_model("srcnn", **TINY["srcnn"], output_size=128).eval()
    with torch.no_grad(), pytest.warns(ZoomsrWarning, match=r"SRCNN: output resized from "
                                                             r"256x256 to 128x128 px \(output_"
                                                             r"size=128.*not x4 of this input"):
        assert net(torch.rand(1, 3, 3, 64, 64)).shape[-2:] == (128, 128)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            net(torch.rand(1, 3, 3, 64, 64))  # said once for this size
            net(torch.rand(1, 3, 3, 32, 32))  # 32 x 4 = 128: no resize, nothing said
