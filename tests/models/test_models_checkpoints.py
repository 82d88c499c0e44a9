"""Checkpoint formats, save/rebuild round trips and mismatch reporting."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from zoomsr.errors import CheckpointError, InputError
from zoomsr.models import (
    checkpoint_metadata,
    create_model,
    from_checkpoint,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)

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
INPUTS = {
    "srcnn": lambda: (torch.rand(1, 3, 3, 8, 8),),
    "highresnet": lambda: (torch.rand(1, 3, 3, 8, 8),),
    "rrdbnet": lambda: (torch.rand(1, 6, 8, 8),),
    "unet_discriminator_sn": lambda: (torch.rand(1, 3, 16, 16),),
    "sr3": lambda: (torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 6, 8, 8), torch.rand(1)),
}


def _rrdbnet(**overrides: int) -> torch.nn.Module:
    return create_model("rrdbnet", **{**TINY["rrdbnet"], **overrides}).eval()


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    # Fresh random values everywhere (PReLU slopes, biases...), so a skipped tensor shows.
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("name", sorted(TINY))
def test_save_and_rebuild_gives_identical_outputs(tmp_path: Path, name: str, suffix: str) -> None:
    model = _randomize(create_model(name, **TINY[name])).eval()
    path = save_checkpoint(model, tmp_path / f"model{suffix}", epoch=3)
    rebuilt = from_checkpoint(path)
    assert type(rebuilt) is type(model) and not rebuilt.training
    assert rebuilt.config == model.config
    inputs = INPUTS[name]()
    with torch.no_grad():
        assert torch.equal(rebuilt(*inputs), model(*inputs))
    assert read_checkpoint(path).extra["epoch"] == 3


def test_sr3_sampling_identical_after_rebuild(tmp_path: Path) -> None:
    model = create_model("sr3", **TINY["sr3"]).eval()
    rebuilt = from_checkpoint(save_checkpoint(model, tmp_path / "sr3.safetensors"))
    lr = torch.rand(1, 6, 4, 4)
    assert torch.equal(model.sample(lr, steps=3, seed=0), rebuilt.sample(lr, steps=3, seed=0))


def test_basicsr_params_ema_is_preferred(tmp_path: Path) -> None:
    plain, ema = _randomize(_rrdbnet()), _randomize(_rrdbnet())
    path = tmp_path / "net_g.pth"
    torch.save({"params": plain.state_dict(), "params_ema": ema.state_dict()}, path)

    model = _rrdbnet()
    assert load_checkpoint(model, path).source == "params_ema"
    assert torch.equal(model.conv_first.weight, ema.conv_first.weight)
    load_checkpoint(model, path, key="params")
    assert torch.equal(model.conv_first.weight, plain.conv_first.weight)

    torch.save({"params": plain.state_dict()}, path)
    assert load_checkpoint(_rrdbnet(), path).source == "params"


def test_plain_state_dict_and_safetensors(tmp_path: Path) -> None:
    source = _randomize(_rrdbnet())
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    save_file(
        {k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "w.safetensors"
    )
    for file in ("plain.pt", "w.safetensors"):
        model = _rrdbnet()
        assert load_checkpoint(model, tmp_path / file).complete
        assert torch.equal(model.conv_last.bias, source.conv_last.bias)
    with pytest.raises(CheckpointError, match="does not name its model"):
        from_checkpoint(tmp_path / "plain.pt")


def test_training_checkpoint_prefix_is_stripped(tmp_path: Path) -> None:
    generator, ema = _randomize(_rrdbnet()), _randomize(_rrdbnet())
    disc = create_model("unet_discriminator_sn", num_feat=4)
    state = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    state |= {f"discriminator.{k}": v for k, v in disc.state_dict().items()}
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "epoch": 1, "zoomsr": checkpoint_metadata(generator)}, path)

    model = _rrdbnet()
    result = load_checkpoint(model, path)
    assert result.prefix == "generator." and result.complete
    assert torch.equal(model.conv_first.weight, generator.conv_first.weight)
    assert torch.equal(from_checkpoint(path).conv_hr.bias, generator.conv_hr.bias)
    disc_copy = create_model("unet_discriminator_sn", num_feat=4)
    assert load_checkpoint(disc_copy, path).prefix == "discriminator."

    # Both an EMA and a raw copy: the EMA one wins, as with BasicSR's params_ema.
    state |= {f"generator_ema.{k}": v for k, v in ema.state_dict().items()}
    torch.save({"state_dict": state}, path)
    load_checkpoint(model, path)
    assert torch.equal(model.conv_first.weight, ema.conv_first.weight)
    load_checkpoint(model, path, prefix="generator.")
    assert torch.equal(model.conv_first.weight, generator.conv_first.weight)

    torch.save(
        {
            "state_dict": {
                f"{p}.{k}": v for p in ("a", "b") for k, v in generator.state_dict().items()
            }
        },
        path,
    )
    with pytest.raises(CheckpointError, match="prefix="):
        load_checkpoint(model, path)


def test_mismatch_names_missing_unexpected_and_shapes(tmp_path: Path) -> None:
    path = save_checkpoint(_rrdbnet(num_block=2, num_in_ch=3), tmp_path / "two.pth")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_rrdbnet(num_block=3), path)
    message = str(info.value)
    assert str(path) in message
    assert "missing key(s): body.2.rdb1.conv1.weight" in message
    assert "conv_first.weight (checkpoint [8, 3, 3, 3], model [8, 6, 3, 3])" in message
    assert "strict=False" in message

    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): body.1.rdb1.conv1.weight"):
        load_checkpoint(_rrdbnet(num_block=1, num_in_ch=3), path)


def test_strict_false_loads_what_matches(tmp_path: Path) -> None:
    source = _randomize(_rrdbnet(num_block=2, num_in_ch=3))
    path = save_checkpoint(source, tmp_path / "two.safetensors")
    model = _rrdbnet(num_block=1)
    before = model.conv_first.weight.clone()
    result = load_checkpoint(model, path, strict=False)
    assert not result.complete and not result.missing
    assert [k for k, _, _ in result.shape_mismatch] == ["conv_first.weight"]
    assert all(k.startswith("body.1.") for k in result.unexpected)
    assert torch.equal(model.conv_first.weight, before)  # conflicting shape: left alone
    assert torch.equal(model.conv_first.bias, source.conv_first.bias)
    assert torch.equal(model.body[0].rdb2.conv3.weight, source.body[0].rdb2.conv3.weight)


@pytest.mark.parametrize("suffix", [".pth", ".ckpt", ".safetensors"])
def test_corrupt_or_missing_file_names_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="broken"):
        load_checkpoint(_rrdbnet(), path)
    with pytest.raises(CheckpointError, match="not found.*absent"):
        load_checkpoint(_rrdbnet(), tmp_path / f"absent{suffix}")


def test_unsafe_pickles_need_an_explicit_opt_in(tmp_path: Path) -> None:
    model = _randomize(_rrdbnet())
    path = tmp_path / "hparams.ckpt"
    torch.save({"state_dict": model.state_dict(), "hparams": argparse.Namespace(lr=1)}, path)
    with pytest.raises(CheckpointError, match="weights_only=False"):
        load_checkpoint(_rrdbnet(), path)
    assert load_checkpoint(_rrdbnet(), path, weights_only=False).complete


def test_no_state_dict_and_wrong_metadata(tmp_path: Path) -> None:
    path = tmp_path / "odd.pth"
    torch.save({"epoch": 3, "notes": "hello"}, path)
    with pytest.raises(CheckpointError, match="no state dict.*epoch"):
        load_checkpoint(_rrdbnet(), path)
    torch.save({"zoomsr": {"model": "nope", "config": {}}, "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="unknown model 'nope'"):
        from_checkpoint(path)


def test_shared_modules_stored_once_still_load(tmp_path: Path) -> None:
    # SRCNN's fusion.0 is its doubleconv2d: a file holding only one of the two names loads.
    source = _randomize(create_model("srcnn", **TINY["srcnn"]))
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("fusion.")}
    torch.save(state, tmp_path / "dedup.pth")
    model = create_model("srcnn", **TINY["srcnn"])
    assert load_checkpoint(model, tmp_path / "dedup.pth").complete
    assert torch.equal(
        model.fusion[0].doubleconv2d[0].weight, source.doubleconv2d.doubleconv2d[0].weight
    )


def test_save_rejects_bad_names_and_models(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="safetensors"):
        save_checkpoint(_rrdbnet(), tmp_path / "model.onnx")
    with pytest.raises(InputError, match="state_dict"):
        save_checkpoint(_rrdbnet(), tmp_path / "model.pth", state_dict={})
    with pytest.raises(InputError, match="not a zoomsr model"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "model.pth")
    assert not list(tmp_path.iterdir())
