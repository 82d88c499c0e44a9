"""Checkpoint formats, save/rebuild round trips and mismatch reporting."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from zoomsr.errors import CheckpointError, InputError, ZoomsrWarning
from zoomsr.models import (
    checkpoint_metadata,
    create_model,
    from_checkpoint,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from zoomsr.models.checkpoints import unnamed_model_error

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


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_the_same_checkpoint_saved_twice_has_the_same_bytes(tmp_path: Path, suffix: str) -> None:
    """Given a path, torch.save named the archive's folder after the temporary file's random
    name: the bytes (and any checksum users compare) changed from one save to the next."""
    model = _randomize(_rrdbnet())
    a = save_checkpoint(model, tmp_path / f"a{suffix}", epoch=1)
    b = save_checkpoint(model, tmp_path / "sub" / f"b{suffix}", epoch=1)
    assert a.read_bytes() == b.read_bytes()


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


def test_nan_weights_are_refused_naming_a_tensor(tmp_path: Path) -> None:
    """A diverged run's exported generator (NaN weights) was loaded, and `infer` wrote black
    images marked valid."""
    state = _randomize(_rrdbnet()).state_dict()
    state["conv_last.bias"][0] = float("nan")
    state["conv_first.weight"][0, 0, 0, 0] = float("inf")
    path = tmp_path / "diverged.pth"
    torch.save({"params_ema": state}, path)
    model = _rrdbnet()
    before = model.conv_first.weight.clone()
    with pytest.raises(CheckpointError, match=rf"^checkpoint {path}: conv_first.weight and 1 "
                                              r"other tensor\(s\) hold NaN or infinite values"):
        load_checkpoint(model, path)
    assert torch.equal(model.conv_first.weight, before)  # nothing loaded


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
    # an RRDBNet's tensors tell its config (test_rrdbnet_config_from_its_tensors); an SRCNN's
    # do not: the file must be said to be one
    torch.save(create_model("srcnn", **TINY["srcnn"]).state_dict(), tmp_path / "srcnn.pt")
    with pytest.raises(CheckpointError, match=r"does not name its model.*CLI: --model NAME"):
        from_checkpoint(tmp_path / "srcnn.pt")


@pytest.mark.parametrize("config", [
    {},  # the tiny test config, scale 4
    {"scale": 8, "num_block": 3, "num_in_ch": 12},
    {"scale": 3, "num_out_ch": 4, "num_grow_ch": 6},
    {"scale": 16, "num_block": 0},
])
def test_rrdbnet_config_from_its_tensors(tmp_path: Path, config: dict) -> None:
    """BasicSR's and Lightning's files record no model: the tensors tell an RRDBNet's config,
    so such a file loads with no architecture or config given."""
    from zoomsr.models import infer_config, infer_model

    source = _randomize(_rrdbnet(**config))
    # without a block no tensor holds the growth width; any loads (the default's is taken)
    expected = {**source.config, **({"num_grow_ch": 32} if not source.config["num_block"]
                                    else {})}
    state = source.state_dict()
    assert infer_config("rrdbnet", state) == expected
    assert infer_model(state) == ("rrdbnet", expected)
    torch.save({"params_ema": state, "params": state}, tmp_path / "basicsr.pth")
    lightning = {f"generator.{k}": v for k, v in state.items()}
    lightning |= {f"generator_ema.{k}": v for k, v in state.items()}
    lightning |= {"discriminator.conv0.weight": torch.zeros(4, 3, 3, 3)}
    torch.save({"state_dict": lightning}, tmp_path / "run.ckpt")
    x = torch.rand(1, expected["num_in_ch"], 8, 8)
    said = " ".join(f"{k}={v}" for k, v in expected.items())
    with torch.no_grad():
        want = source(x)
        for file in ("basicsr.pth", "run.ckpt"):
            # what was assumed is said (x4: that a scale 2 or 1 file looks the same)
            with pytest.warns(ZoomsrWarning, match=rf"{file} records no model: read from its "
                                                   rf"tensors as rrdbnet {said}") as seen:
                model = from_checkpoint(tmp_path / file)
            assert ("scale 2 or 1 model has the same tensors" in str(seen[0].message)) == (
                expected["scale"] == 4)
            assert model.config == expected
            torch.testing.assert_close(model(x), want)


def test_config_from_tensors_scale_two_reads_as_four_and_other_models_as_none() -> None:
    from zoomsr.models import infer_config, infer_model

    two = _rrdbnet(scale=2, num_in_ch=6).state_dict()  # input pixel-unshuffled: 24 channels
    assert infer_config("rrdbnet", two) == {**_rrdbnet(scale=2, num_in_ch=6).config,
                                            "scale": 4, "num_in_ch": 24}
    assert infer_model(create_model("srcnn", **TINY["srcnn"]).state_dict()) is None
    assert infer_config("srcnn", {}) is None
    broken = dict(_rrdbnet().state_dict())
    del broken["conv_hr.weight"]
    assert infer_model(broken) is None
    twice = {f"{p}.{k}": v for p in ("a", "b") for k, v in _rrdbnet().state_dict().items()}
    assert infer_model(twice) is None  # two copies, neither an EMA: not guessed


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
    with pytest.raises(CheckpointError, match=rf"{path} holds the model under several "
                       r"prefixes.*Python: pass prefix='a\.'.*the CLI cannot"):
        load_checkpoint(model, path)



def test_keys_beside_a_top_level_model_are_named_as_other_modules(tmp_path: Path) -> None:
    """A LightningModule that is the generator and holds the discriminator as an attribute:
    the generator's keys have no prefix. The refusal blamed "a different config"."""
    generator = _randomize(_rrdbnet())
    disc = create_model("unet_discriminator_sn", num_feat=4)
    state = {**generator.state_dict(), **{f"discriminator.{k}": v
                                          for k, v in disc.state_dict().items()}}
    path = tmp_path / "module.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_rrdbnet(), path)
    message = str(info.value)
    assert f"{path} holds the whole RRDBNet and, beside it at the top level" in message
    assert "discriminator.*" in message and "different config" not in message
    assert "strict=False" in message and len(message.splitlines()) == 1
    model = _rrdbnet()
    result = load_checkpoint(model, path, strict=False)  # the way out it gives
    assert not result.missing and torch.equal(model.conv_first.weight, generator.conv_first.weight)
    # Extra keys under the model's own names: another config, as before.
    deeper = save_checkpoint(_rrdbnet(num_block=2), tmp_path / "deeper.pth")
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): body\.1\..*different config"):
        load_checkpoint(_rrdbnet(), deeper)


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


def test_mismatch_is_one_short_line_with_hints_for_cli_and_python(tmp_path: Path) -> None:
    """A config mismatch lists a few keys of each kind with counts, not hundreds of keys."""
    path = save_checkpoint(_rrdbnet(num_block=1), tmp_path / "small.pth")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(create_model("rrdbnet", num_in_ch=6), path)  # 23 blocks of 64 features
    message = str(info.value)
    assert "\n" not in message and len(message) < 900, message
    assert str(path) in message
    assert "660 missing key(s): body.1.rdb1.conv1.weight, body.1.rdb1.conv1.bias, " in message
    assert "(+657 more)" in message and "shape conflict(s): conv_first.weight" in message
    assert message.count("body.") <= 8  # three examples per kind
    assert "CLI: --model rrdbnet -c key=value" in message
    assert "Python: create_model('rrdbnet', **config)" in message
    assert "strict=False" in message  # Python only


def test_a_checkpoint_of_another_model_is_said_to_be_one(tmp_path: Path) -> None:
    """An SRCNN file loaded into HighRes-net (30 of their names are alike), or any file into
    RRDBNet: the message ended "Probably a different config: give the config the file was
    saved with", which no config could fix."""
    path = save_checkpoint(create_model("srcnn"), tmp_path / "srcnn.pth")
    for model, cls in ((create_model("highresnet"), "HighResNet"), (_rrdbnet(), "RRDBNet")):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(model, path)
        message = str(info.value)
        assert f"{path} does not look like a {cls} checkpoint: " in message
        assert "which no config changes: a checkpoint of another model?" in message
        assert "different config" not in message and "\n" not in message


def test_a_highresnet_checkpoint_is_not_taken_for_an_srcnn_config(tmp_path: Path) -> None:
    """A HighRes-net file holds every SRCNN name (the unused layers it inherits), so nothing
    was missing in SRCNN and the message said "Probably a different config", which no config
    could fix; extra upsample layers (conv_up3 of a x8 RRDBNet) are still a config."""
    path = save_checkpoint(create_model("highresnet", hidden_channels=16), tmp_path / "h.pth")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(create_model("srcnn", hidden_channels=16), path)
    message = str(info.value)
    assert f"{path} does not look like a SRCNN checkpoint: none of its 27 other" in message
    assert "fusion.fusion.0.fuse" in message and "different config" not in message

    x8 = save_checkpoint(_rrdbnet(scale=8), tmp_path / "x8.pth")
    with pytest.raises(CheckpointError, match=r"conv_up3") as info:
        load_checkpoint(_rrdbnet(), x8)
    assert "does not look like" not in str(info.value)


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



@pytest.mark.parametrize("how", ["torch.save", "torch.jit.save"])
def test_a_whole_saved_model_loads_as_the_refusal_advises(tmp_path: Path, how: str,
                                                          recwarn) -> None:
    """torch.save(model) and TorchScript files: the advice (weights_only=False) led to a
    second refusal ("holds a RRDBNet, not a dict of tensors"), and torch's warnings leaked."""
    model = _randomize(_rrdbnet())
    path = tmp_path / "whole.pt"
    if how == "torch.save":
        torch.save(model, path)
    else:
        torch.jit.save(torch.jit.trace(model, torch.rand(1, 6, 8, 8)), path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_rrdbnet(), path)
    message = str(info.value)
    assert "\n" not in message and "Python: load it with weights_only=False" in message
    if how == "torch.jit.save":
        assert f"{path} is a TorchScript archive" in message
    recwarn.clear()
    copy = _rrdbnet()
    assert load_checkpoint(copy, path, weights_only=False).complete
    assert torch.equal(copy.conv_first.weight, model.conv_first.weight)
    assert not [w for w in recwarn if "torch" in str(w.message).lower()]

@pytest.mark.parametrize("zipped", [True, False])
def test_unsafe_pickles_need_an_explicit_opt_in(tmp_path: Path, zipped: bool) -> None:
    model = _randomize(_rrdbnet())
    path = tmp_path / "hparams.ckpt"
    torch.save(
        {"state_dict": model.state_dict(), "hparams": argparse.Namespace(lr=1)},
        path,
        _use_new_zipfile_serialization=zipped,
    )
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_rrdbnet(), path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "pickled Python objects (argparse.Namespace)" in message
    assert "Python: load it with weights_only=False" in message and "CLI:" in message
    assert load_checkpoint(_rrdbnet(), path, weights_only=False).complete


def _torch_bytes(tmp_path: Path, zipped: bool = True) -> bytes:
    torch.save(
        _rrdbnet().state_dict(), tmp_path / "good.pth", _use_new_zipfile_serialization=zipped
    )
    return (tmp_path / "good.pth").read_bytes()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: random.Random(0).randbytes(5000), "(corrupt, truncated, or another format)"),
        (lambda d: b"definitely not a checkpoint", "(corrupt, truncated, or another format)"),
        (lambda d: b"", "(an empty file)"),
        (lambda d: b"<!DOCTYPE html><html>403 Forbidden</html>", "HTML/XML page"),
        (lambda d: b"version https://git-lfs.github.com/spec/v1\noid sha256:0", "Git LFS pointer"),
        (lambda d: _torch_bytes(d)[:3000], "damaged or truncated zip archive"),
        (lambda d: _torch_bytes(d, zipped=False)[:3000], "damaged or truncated torch.save file"),
    ],
    ids=["random", "text", "empty", "html", "lfs", "cut-zip", "cut-legacy"],
)
def test_garbage_is_reported_as_corrupt_not_as_python_objects(tmp_path: Path, make, reason) -> None:
    """Random bytes are not "Python objects needing weights_only=False": they are corrupt."""
    path = tmp_path / "bad.pth"
    path.write_bytes(make(tmp_path))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_rrdbnet(), path)
    message = str(info.value)
    assert "\n" not in message
    assert f"{path} is not a readable PyTorch checkpoint" in message and reason in message
    assert "weights_only" not in message and "Python objects" not in message


def test_safetensors_under_a_torch_suffix_is_named(tmp_path: Path) -> None:
    path = save_checkpoint(_rrdbnet(), tmp_path / "w.safetensors").rename(tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=r"safetensors file .*rename it to \.safetensors"):
        read_checkpoint(path)
    path.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_checkpoint(path.rename(tmp_path / "x.safetensors"))
    # the other way round: a torch.save file named .safetensors ("header too large")
    torch.save(_rrdbnet().state_dict(), tmp_path / "t.safetensors")
    with pytest.raises(CheckpointError, match=r"t.safetensors is a torch.save file, not "
                                              r"safetensors: rename it to \.pth"):
        read_checkpoint(tmp_path / "t.safetensors")
    (tmp_path / "e.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"e.safetensors is an empty file"):
        read_checkpoint(tmp_path / "e.safetensors")


def test_unnamed_model_error_gives_cli_and_python_hints(tmp_path: Path) -> None:
    error = unnamed_model_error(tmp_path / "net_g.pth")
    message = str(error)
    assert isinstance(error, CheckpointError) and "\n" not in message
    assert str(tmp_path / "net_g.pth") in message and "does not name its model" in message
    assert "CLI: --model NAME [-c key=value]" in message
    assert "Python: model = create_model(NAME, **config)" in message


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


@pytest.mark.parametrize("name", ["srcnn", "highresnet", "rrdbnet"])
def test_match_state_dict_checks_shapes_against_a_meta_model(name: str) -> None:
    """What `zoomsr weights` checks before trusting a file: the published architecture built
    on the meta device, compared with a real state dict (shared modules stored once too)."""
    from zoomsr.models import first_mismatch, match_state_dict

    source = create_model(name, **TINY[name])
    state = source.state_dict()
    if name == "srcnn":  # fusion.0 is doubleconv2d: stored under one name only
        state = {k: v for k, v in state.items() if not k.startswith("fusion.")}
    with torch.device("meta"):
        model = create_model(name, **TINY[name])
    result, _ = match_state_dict(model, {"module." + k: v for k, v in state.items()})
    assert result.complete and result.prefix == "module." and first_mismatch(result) is None
    assert all(t.device.type == "meta" for t in model.state_dict().values())  # nothing loaded
    # a layout of names and shapes alone (meta tensors, every name of a shared module given):
    # the values of a shared module's two names cannot be compared (it raised NotImplementedError)
    layout = {k: torch.empty(v.shape, device="meta") for k, v in source.state_dict().items()}
    result, _ = match_state_dict(model, layout)
    assert result.complete and first_mismatch(result) is None


def test_first_mismatch_names_one_difference() -> None:
    from zoomsr.models import first_mismatch, match_state_dict

    state = _rrdbnet(num_feat=8).state_dict()
    with torch.device("meta"):
        model = create_model("rrdbnet", **{**TINY["rrdbnet"], "num_feat": 16})
    result, _ = match_state_dict(model, state)
    assert first_mismatch(result) == (
        "conv_first.weight is [8, 6, 3, 3] in the file, [16, 6, 3, 3] in the model")
    with torch.device("meta"):
        model = create_model("rrdbnet", **TINY["rrdbnet"])
    missing = {k: v for k, v in state.items() if k != "conv_last.bias"}
    assert first_mismatch(match_state_dict(model, missing)[0]) == (
        "conv_last.bias is missing from the file")
    extra = {**state, "head.weight": torch.zeros(1)}
    assert first_mismatch(match_state_dict(model, extra)[0]) == (
        "the file has head.weight, which the model has not")


def test_a_folder_or_a_missing_file_is_named(tmp_path: Path) -> None:
    from zoomsr.models import read_checkpoint

    with pytest.raises(CheckpointError, match=rf"^checkpoint not found: {tmp_path / 'x.pth'}$"):
        read_checkpoint(tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=rf"^{tmp_path}: is a folder; give a checkpoint "
                                              "file$"):
        read_checkpoint(tmp_path)
    (tmp_path / "net_g.pth").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r": is a folder; give a checkpoint file \(it "
                                              r"holds net_g\.pth\)$"):
        read_checkpoint(tmp_path)


def test_shared_modules_stored_twice_must_agree(tmp_path: Path) -> None:
    """One of two different tensors under a shared module's names silently won."""
    state = _randomize(create_model("srcnn", **TINY["srcnn"])).state_dict()
    key = "fusion.0.doubleconv2d.0.weight"
    state = {k: v.clone() for k, v in state.items()}
    state[key] += 1
    torch.save(state, tmp_path / "variant.pth")
    with pytest.raises(CheckpointError, match=r"variant.pth: .* and .* differ, but SRCNN shares "
                                              "one module under both names"):
        load_checkpoint(create_model("srcnn", **TINY["srcnn"]), tmp_path / "variant.pth")


def test_extras_are_saved_as_a_weights_only_load_reads_them(tmp_path: Path) -> None:
    """NumPy scalars and paths were pickled: the file then failed in every zoomsr loader."""
    import numpy as np

    path = save_checkpoint(_rrdbnet(), tmp_path / "a.pth", epoch=np.int64(3),
                           src=tmp_path / "x", scores=[np.float32(0.5)], n={"k": np.bool_(True)})
    extra = read_checkpoint(path).extra
    assert extra["epoch"] == 3 and type(extra["epoch"]) is int
    assert extra["src"] == str(tmp_path / "x") and extra["scores"] == [0.5]
    assert extra["n"] == {"k": True}
    from collections import namedtuple

    pair = namedtuple("pair", "a b")
    assert read_checkpoint(save_checkpoint(_rrdbnet(), tmp_path / "c.pth", p=pair(1, 2))
                           ).extra["p"] == (1, 2)
    from_checkpoint(path)
    with pytest.raises(InputError, match=r"extra entry 'when' is a object: a checkpoint holds"):
        save_checkpoint(_rrdbnet(), tmp_path / "b.pth", when=object())
    assert not (tmp_path / "b.pth").exists()


def test_meta_models_load_their_weights_and_are_not_saved(tmp_path: Path) -> None:
    """On the meta device load_state_dict loaded nothing and said complete."""
    source = _randomize(_rrdbnet())
    path = save_checkpoint(source, tmp_path / "s.safetensors")
    with torch.device("meta"):
        empty = _rrdbnet()
    with pytest.raises(InputError, match="weights on the meta device"):
        save_checkpoint(empty, tmp_path / "meta.pth")
    assert load_checkpoint(empty, path).complete
    assert not any(t.is_meta for t in empty.state_dict().values())
    x = torch.rand(1, 6, 8, 8)
    assert torch.equal(empty(x), source(x))
    # SR3's schedule is computed when it is built, in no checkpoint: it stayed on meta
    path = save_checkpoint(create_model("sr3", **TINY["sr3"]), tmp_path / "sr3.safetensors")
    with torch.device("meta"):
        sr3 = create_model("sr3", **TINY["sr3"])
    with pytest.raises(CheckpointError, match="SR3 built on the meta device cannot be loaded: "
                                              "alpha_bar is computed when it is built"):
        load_checkpoint(sr3, path)


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.pth"
    meta = {**checkpoint_metadata(_rrdbnet()), "format_version": 99}
    torch.save({"zoomsr": meta, "state_dict": _rrdbnet().state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"new.pth: written in checkpoint format 99 by a "
                                              r"newer zoomsr \(this one reads format 1\)"):
        from_checkpoint(path)


def test_a_runs_text_file_given_as_weights_is_called_one(tmp_path: Path) -> None:
    """A run's config.yaml given as --weights got "download or save it again"."""
    for name in ("config.yaml", "splits.json"):
        (tmp_path / name).write_text("model:\n  name: rrdbnet\n")
        with pytest.raises(CheckpointError, match=rf"{name} is not a readable PyTorch "
                                                  r"checkpoint \(a text file \(a config, splits "
                                                  r"or log file\?\), not weights\); give the "
                                                  r"checkpoint itself \(a training run's "
                                                  r"generator.pth"):
            read_checkpoint(tmp_path / name)


def test_a_shared_modules_names_holding_different_tensors_are_refused_on_every_path(tmp_path):
    """The fast rebuild (tensors assigned to a model made on the meta device) took whichever
    of a shared module's names came last: a file of another variant loaded. Every loader
    refuses it, as the slow path always did."""
    from zoomsr.errors import CheckpointError
    from zoomsr.evaluation.model_eval import load_scoring_model
    from zoomsr.inference import build_inference_model

    model = create_model("srcnn", hidden_channels=16, revisits=3)
    saved = save_checkpoint(model, tmp_path / "srcnn.pth")
    doc = torch.load(saved, weights_only=True)
    doc["state_dict"] = {k: v.clone() for k, v in doc["state_dict"].items()}
    doc["state_dict"]["fusion.0.doubleconv2d.0.weight"] += 1
    torch.save(doc, tmp_path / "variant.pth")
    variant = tmp_path / "variant.pth"
    for load in (lambda: from_checkpoint(variant), lambda: load_scoring_model(variant),
                 lambda: build_inference_model(weights=variant, device="cpu"),
                 lambda: build_inference_model(weights=variant, model="srcnn", device="cpu")):
        with pytest.raises(CheckpointError, match=r"differ, but SRCNN shares one module"):
            load()
    rebuilt = from_checkpoint(saved)  # the file as saved: its shared module still shared
    assert rebuilt.fusion[0] is rebuilt.doubleconv2d
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
