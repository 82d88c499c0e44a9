"""``zoomsr models list`` and ``zoomsr models info``."""

from __future__ import annotations

import json

import pytest

from zoomsr.cli.main import main
from zoomsr.models import MODELS


def test_list_shows_every_model_with_its_layout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(MODELS)
    assert "[B, T*C, H, W]" in next(line for line in lines if line.startswith("rrdbnet"))
    assert "[B, T, C, H, W]" in next(line for line in lines if line.startswith("srcnn"))


def test_info_rrdbnet_8_images(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "info", "rrdbnet", "--config", "num_in_ch=24"]) == 0
    out = capsys.readouterr().out
    assert "16.7 M" in out
    assert "36.7" in out and "32x32" in out
    assert "[B, T*C, H, W]" in out and "[1, 24, 32, 32]" in out and "[1, 3, 128, 128]" in out
    assert "used by the forward pass" not in out  # every parameter runs


def test_info_highresnet_says_which_parameters_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "info", "highresnet"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("parameters"))
    assert "3,249,019 (3.2 M); 1,626,474 (1.6 M) used by the forward pass" in line


def test_info_config_repeated_and_comma_separated(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["models", "info", "srcnn", "-c", "revisits=4,hidden_channels=32", "-c", "zoom_factor=2"]
    assert main([*args, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["revisits"] == 4 and info["config"]["zoom_factor"] == 2
    assert info["input_shapes"] == [[1, 4, 3, 32, 32]] and info["output_shape"][-1] == 64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "info", "esrgan"], "unknown model 'esrgan'"),
        (["models", "info", "rrdbnet", "--config", "bogus=1"], "bogus"),
        (["models", "info", "rrdbnet", "--config", "num_feat=abc"], "num_feat"),
        (["models", "info", "rrdbnet", "--config", "scale=5"], "scale"),
    ],
)
def test_info_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_info_gflops_of_a_huge_input_is_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "info", "highresnet", "--lr-size", "100000"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("GFLOPs"))
    assert line.split()[1] == "230,612,480.0"


def test_info_on_an_input_too_small_for_the_model_is_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    """HighRes-net's reflection padding on a 1 px input was a bare RuntimeError."""
    assert main(["models", "info", "highresnet", "--lr-size", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: lr_size 1: highresnet cannot run on a 1x1 input (")
    assert err.endswith("); use a larger size") and len(err.splitlines()) == 1


def test_info_on_an_input_size_the_model_cannot_divide(
        capsys: pytest.CaptureFixture[str]) -> None:
    """RRDBNet x1 pixel-unshuffles by 4: a 30 px input is refused, and the advice was "use a
    larger size" (31 fails as well)."""
    assert main(["models", "info", "rrdbnet", "-c", "scale=1", "--lr-size", "30"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs H and W divisible by 4, got 30x30" in err
    assert err.endswith("; use a divisible size") and "larger" not in err


def test_info_of_a_checkpoint_or_registry_weights(capsys: pytest.CaptureFixture[str],
                                                  tmp_path) -> None:
    """`zoomsr models info runs/x/generator.pth` (or esrgan-8) said "unknown model"."""
    from zoomsr.models import create_model, save_checkpoint

    cfg = {"num_in_ch": 6, "num_feat": 8, "num_block": 1, "num_grow_ch": 4}
    path = save_checkpoint(create_model("rrdbnet", **cfg), tmp_path / "generator.pth",
                           global_step=20, n_images=2, bands=["tci"])
    assert main(["models", "info", str(path), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["name"] == "rrdbnet" and described["config"]["num_feat"] == 8
    # what the file records of itself is shown (it was left out)
    assert described["recorded"] == {"global_step": 20, "n_images": 2, "bands": "tci"}
    assert main(["models", "info", str(path)]) == 0
    assert "recorded    global_step=20, n_images=2, bands=tci" in capsys.readouterr().out
    assert main(["models", "info", "esrgan-8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["num_in_ch"] == 24
    assert main(["models", "info", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    # a BasicSR file records no model: an RRDBNet's tensors tell it ("records no model")
    import torch

    torch.save({"params_ema": create_model("rrdbnet", **cfg).state_dict()},
               tmp_path / "net_g.pth")
    assert main(["models", "info", str(tmp_path / "net_g.pth")]) == 0
    out = capsys.readouterr().out
    assert "rrdbnet" in out and "0.0 M" not in out and " M)" in out  # (a tiny model's count)


def test_info_of_a_missing_file_or_a_bad_recorded_config_names_the_file(
        capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    """A mistyped path said "unknown model"; a bad config in a file did not name the file."""
    import torch

    from zoomsr.models import checkpoint_metadata, create_model

    assert main(["models", "info", str(tmp_path / "nope.pth")]) == 2
    assert f"checkpoint not found: {tmp_path / 'nope.pth'}" in capsys.readouterr().err
    (tmp_path / "run.pth").mkdir()
    assert main(["models", "info", str(tmp_path / "run.pth")]) == 2
    assert "run.pth: is a folder" in capsys.readouterr().err
    net = create_model("rrdbnet", num_in_ch=6, num_feat=8, num_block=1, num_grow_ch=4)
    meta = checkpoint_metadata(net)
    meta["config"]["num_feat"] = 0
    torch.save({"zoomsr": meta, "state_dict": net.state_dict()}, tmp_path / "bad.pth")
    assert main(["models", "info", str(tmp_path / "bad.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'bad.pth'}: its recorded rrdbnet config is "
                          "refused: num_feat must be >= 1") and len(err.splitlines()) == 1
    # an option's fault is the option's, not the file's
    assert main(["models", "info", "srcnn-8", "-c", "hidden_channels=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "hidden_channels" in err and "recorded" not in err
    assert main(["models", "info", "srcnn-8", "--lr-size", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: lr_size 1: srcnn cannot run on a 1x1 input")
