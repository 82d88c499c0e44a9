"""create_model, config parsing and model_info."""

from __future__ import annotations

import pytest
import torch

from zoomsr.errors import ConfigError, InputError
from zoomsr.models import (
    MODELS,
    HighResNet,
    RRDBNet,
    config_fields,
    create_model,
    default_config,
    model_info,
    parse_config,
)


def test_create_model_by_name() -> None:
    model = create_model("rrdbnet", num_in_ch=6, num_feat=8, num_block=1, num_grow_ch=4)
    assert isinstance(model, RRDBNet) and model.config["num_in_ch"] == 6
    assert model.name == "rrdbnet"
    for name, cls in MODELS.items():
        assert cls.name == name
        assert cls.description and cls.input_layout and cls.output_layout


def test_unknown_model_lists_the_names() -> None:
    with pytest.raises(InputError, match="unknown model 'esrgan'.*rrdbnet.*sr3"):
        create_model("esrgan")


def test_unknown_key_and_bad_value_name_the_key() -> None:
    with pytest.raises(ConfigError, match="'num_feats'.*num_feat"):
        create_model("rrdbnet", num_feats=64)
    with pytest.raises(ConfigError, match="num_feat must be an integer"):
        create_model("rrdbnet", num_feat="64")
    with pytest.raises(ConfigError, match="skip_connection"):
        create_model("unet_discriminator_sn", skip_connection=1)
    with pytest.raises(ConfigError, match="attn_levels"):
        create_model("sr3", channel_mults=(1, 2), attn_levels=(2,))


def test_numpy_numbers_in_a_config_are_python_numbers(tmp_path) -> None:
    """A config value computed from an array (3 * n_images, n_images from NumPy) was
    refused as "must be an integer, got np.int64(24)"."""
    import numpy as np

    from zoomsr.models import RRDBNet, from_checkpoint, save_checkpoint

    model = create_model("rrdbnet", num_in_ch=3 * np.int64(2), num_feat=np.int32(8),
                         num_block=1, num_grow_ch=4)
    assert model.conv_first.in_channels == 6
    assert from_checkpoint(save_checkpoint(model, tmp_path / "m.safetensors")).num_in_ch == 6
    with pytest.raises(ConfigError, match=r"got np.int64\(6\) \(a NumPy integer: pass int"):
        RRDBNet(num_in_ch=np.int64(6))


def test_highresnet_and_srcnn_share_their_config_keys() -> None:
    assert config_fields("highresnet") == config_fields("srcnn")
    assert isinstance(create_model("highresnet", hidden_channels=16), HighResNet)


def test_parse_config_types() -> None:
    assert parse_config("rrdbnet", ["num_in_ch=24", "scale=2,num_feat=32"]) == {
        "num_in_ch": 24,
        "scale": 2,
        "num_feat": 32,
    }
    assert parse_config("sr3", ["channel_mults=1,2,4,attn_levels=2", "dropout=0.1"]) == {
        "channel_mults": (1, 2, 4),
        "attn_levels": (2,),
        "dropout": 0.1,
    }
    assert parse_config("srcnn", ["output_size=none,use_reference_frame=true"]) == {
        "output_size": None,
        "use_reference_frame": True,
    }
    assert parse_config("sr3", ["schedule=cosine"]) == {"schedule": "cosine"}


@pytest.mark.parametrize(
    ("items", "pattern"),
    [
        (["bogus=1"], "unknown config key 'bogus'"),
        (["num_feat=abc"], "'num_feat'.*not a valid int"),
        (["num_feat=1.5"], "'num_feat'"),
        (["num_feat"], "expected key=value"),
        # a separate -c item is its own key, not the previous value's next element
        (["num_feat=8", "bad"], "expected key=value, got 'bad'"),
    ],
)
def test_parse_config_errors(items: list[str], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        parse_config("rrdbnet", items)


def test_parse_config_bool_error() -> None:
    with pytest.raises(ConfigError, match="'skip_connection'"):
        parse_config("unet_discriminator_sn", ["skip_connection=maybe"])


def test_default_configs_build_on_meta() -> None:
    import torch

    for name in MODELS:
        with torch.device("meta"):
            assert create_model(name).config == default_config(name)


def test_rrdbnet_8_images_matches_the_published_cost() -> None:
    info = model_info("rrdbnet", num_in_ch=24)
    # Reference: 16.7 M parameters, about 36.7 GFLOPs per 32x32 chunk (FLOPs = 2 x MACs).
    assert round(info.parameters / 1e6, 1) == 16.7
    assert info.gflops == pytest.approx(36.7, abs=0.05)
    assert info.input_shapes == [[1, 24, 32, 32]]
    assert info.output_shape == [1, 3, 128, 128]
    assert info.parameters_used == info.parameters


def test_model_info_counts_the_parameters_the_forward_pass_uses() -> None:
    """HighRes-net keeps its parent's fusion layers for the checkpoint layout; counting them
    made it look twice SRCNN's size (3.2 M) when the network that runs has 1.6 M."""
    info = model_info("highresnet")
    assert info.parameters == 3_249_019 and info.parameters_used == 1_626_474
    with torch.device("meta"):
        model = create_model("highresnet")
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert info.parameters - info.parameters_used == frozen  # exactly the unused, frozen ones


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_info_small_configs(name: str) -> None:
    small = {
        "srcnn": {"hidden_channels": 16},
        "highresnet": {"hidden_channels": 16},
        "rrdbnet": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4},
        "unet_discriminator_sn": {"num_feat": 4},
        "sr3": {"base_channels": 8, "channel_mults": (1, 2), "attn_levels": (1,)},
    }[name]
    info = model_info(name, lr_size=16, **small)
    assert info.parameters > 0 and info.gflops > 0
    assert info.output_shape[-1] in (64, 16 * 4)


@pytest.mark.parametrize(
    ("name", "config", "pattern"),
    [
        ("sr3", {"dropout": float("nan")}, "'dropout' must be a finite number, got nan"),
        ("sr3", {"dropout": float("inf")}, "'dropout' must be a finite number"),
        ("sr3", {"dropout": float("-inf")}, "'dropout' must be a finite number"),
        ("sr3", {"beta_start": float("nan")}, "'beta_start' must be a finite number"),
        ("sr3", {"beta_end": float("inf")}, "'beta_end' must be a finite number"),
        ("sr3", {"dropout": 1.0}, r"'dropout' must be in \[0, 1\), got 1.0"),
        ("sr3", {"dropout": -0.1}, r"'dropout' must be in \[0, 1\)"),
        ("sr3", {"base_channels": -4}, "base_channels must be >= 2"),
        ("sr3", {"num_timesteps": 0}, "num_timesteps must be >= 1"),
        ("sr3", {"channel_mults": (1, -2)}, "channel_mults must be a list of integers >= 1"),
        ("rrdbnet", {"num_feat": -1}, "num_feat must be >= 1"),
        ("rrdbnet", {"num_block": -1}, "num_block must be >= 0"),
        ("srcnn", {"hidden_channels": -16}, "hidden_channels must be >= 1"),
        ("highresnet", {"output_size": -1}, "output_size must be >= 1"),
        ("unet_discriminator_sn", {"num_feat": 0}, "num_feat must be >= 1"),
    ],
)
def test_non_finite_and_out_of_range_values_name_the_key(
    name: str, config: dict, pattern: str
) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        create_model(name, **config)
    assert "\n" not in str(info.value)
    # model_info builds on the meta device through the same checks
    with pytest.raises(ConfigError, match=pattern):
        model_info(name, **config)


def test_dropout_range_is_half_open() -> None:
    with torch.device("meta"):
        assert create_model("sr3", dropout=0.0).config["dropout"] == 0.0
        assert create_model("sr3", dropout=0.999).config["dropout"] == 0.999


def test_check_float_rejects_non_finite_values_directly() -> None:
    from zoomsr.validate import check_float

    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ConfigError, match="eta must be a finite number"):
            check_float("eta", bad, minimum=0.0)
    with pytest.raises(ConfigError, match="p must be < 1"):
        check_float("p", 1.0, below=1.0)
    assert check_float("p", 0.5, minimum=0.0, below=1.0) == 0.5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nan", "'dropout' must be a finite number, got nan"),
        ("inf", "'dropout' must be a finite number, got inf"),
        ("1", "'dropout' must be in [0, 1), got 1.0"),
        ("-0.5", "'dropout' must be in [0, 1), got -0.5"),
    ],
)
def test_cli_models_info_bad_dropout_exits_2(
    capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    from zoomsr.cli.main import main

    assert main(["models", "info", "sr3", "-c", f"dropout={value}"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_count_flops_counts_two_per_multiply_add_and_agrees_with_model_info() -> None:
    from zoomsr.models import count_flops

    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    # 8 output channels x 16 x 16 pixels, each 3 x 3 x 3 multiply-adds
    assert count_flops(conv, (torch.rand(1, 3, 16, 16),)) == 2 * 8 * 16 * 16 * 27
    torch.manual_seed(0)
    net = create_model("srcnn", in_channels=6).eval()
    flops = count_flops(net, net.example_inputs(32))
    assert flops / 1e9 == pytest.approx(model_info("srcnn", 32, in_channels=6).gflops)


def test_apply_state_dict_strips_a_prefix_and_reports_what_did_not_fit() -> None:
    from zoomsr.errors import CheckpointError
    from zoomsr.models import apply_state_dict

    torch.manual_seed(0)
    source = create_model("srcnn", in_channels=6)
    state = {f"module.{k}": v.clone() for k, v in source.state_dict().items()}
    target = create_model("srcnn", in_channels=6)
    result = apply_state_dict(target, state)  # the prefix found by itself
    assert result.complete and result.prefix == "module."
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
    # a tensor short, one too many, one of another shape: refused naming them, or loaded
    # in part with strict=False and listed
    first, *_ = state
    broken = {**{k: v for k, v in state.items() if k != first}, "module.extra": torch.ones(1)}
    last = list(state)[-1]
    broken[last] = torch.ones(2, 2)
    with pytest.raises(CheckpointError, match=r"^test state does not look like a SRCNN checkpoint"):
        apply_state_dict(create_model("srcnn", in_channels=6), broken, origin="test state")
    result = apply_state_dict(create_model("srcnn", in_channels=6), broken, strict=False)
    assert result.missing == [first.removeprefix("module.")]
    assert result.unexpected == ["extra"]
    assert [m[0] for m in result.shape_mismatch] == [last.removeprefix("module.")]
    assert not result.complete
