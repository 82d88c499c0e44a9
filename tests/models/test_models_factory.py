"""create_model, config parsing and model_info."""

from __future__ import annotations

import pytest

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
