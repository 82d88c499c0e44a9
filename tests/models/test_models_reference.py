"""Models against the reference: golden outputs and published state-dict layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zoomsr.models import create_model, load_checkpoint

GOLDEN = [
    "rrdbnet_8img_small",
    "unet_discriminator_sn_small",
    "srcnn_8img_small",
    "highresnet_8img_small",
]
GOLDEN_MODELS = {
    "rrdbnet_8img_small": "rrdbnet",
    "unet_discriminator_sn_small": "unet_discriminator_sn",
    "srcnn_8img_small": "srcnn",
    "highresnet_8img_small": "highresnet",
}
LAYOUT_MODELS = {
    "esrgan_rrdbnet_1img": "rrdbnet",
    "esrgan_rrdbnet_8img": "rrdbnet",
    "esrgan_unet_discriminator_sn": "unet_discriminator_sn",
    "srcnn_8img": "srcnn",
    "highresnet_8img": "highresnet",
}


def _golden_readme(shared_dir: Path) -> dict:
    return json.loads((shared_dir / "reference" / "golden" / "README.json").read_text())


def test_every_golden_model_is_tested(shared_dir: Path) -> None:
    assert sorted(_golden_readme(shared_dir)) == sorted(GOLDEN_MODELS)


@pytest.mark.parametrize("golden", sorted(GOLDEN_MODELS))
def test_golden_output(shared_dir: Path, golden: str) -> None:
    entry = _golden_readme(shared_dir)[golden]
    path = shared_dir / "reference" / "golden" / f"{golden}.safetensors"
    tensors = load_file(path)
    state = {
        k.removeprefix("state_dict."): v for k, v in tensors.items() if k.startswith("state_dict.")
    }

    model = create_model(GOLDEN_MODELS[golden], **entry["config"]).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        output = model(tensors["input"])
    assert list(tensors["input"].shape) == entry["input_shape"]
    assert list(output.shape) == entry["output_shape"]
    torch.testing.assert_close(output, tensors["expected_output"], atol=1e-5, rtol=0)

    # The same file through load_checkpoint: the "state_dict." prefix is found and stripped,
    # the input/expected_output tensors are ignored.
    fresh = create_model(GOLDEN_MODELS[golden], **entry["config"]).eval()
    result = load_checkpoint(fresh, path)
    assert result.prefix == "state_dict." and result.complete
    with torch.no_grad():
        torch.testing.assert_close(fresh(tensors["input"]), output, atol=0, rtol=0)


@pytest.mark.parametrize("layout", sorted(LAYOUT_MODELS))
def test_published_layout(shared_dir: Path, layout: str) -> None:
    entry = json.loads((shared_dir / "reference" / "state_dict_layouts.json").read_text())[layout]
    with torch.device("meta"):  # published sizes, built without allocating memory
        model = create_model(LAYOUT_MODELS[layout], **entry["config"])
    expected = [(name, list(shape)) for name, shape in entry["params"].items()]
    actual = [(name, list(t.shape)) for name, t in model.state_dict().items()]
    assert actual == expected


def test_every_layout_is_tested(shared_dir: Path) -> None:
    layouts = json.loads((shared_dir / "reference" / "state_dict_layouts.json").read_text())
    assert sorted(layouts) == sorted(LAYOUT_MODELS)
