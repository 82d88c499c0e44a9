"""`zoomsr infer --weights` with checkpoints from elsewhere: a BasicSR or Lightning RRDBNet
needs neither --model nor its config (its tensors tell them), and a --model that contradicts
what zoomsr recorded in a file is named."""

from __future__ import annotations

import pytest
import torch

from zoomsr.errors import ConfigError, ZoomsrWarning
from zoomsr.inference import build_inference_model
from zoomsr.models import create_model, save_checkpoint


def _net(**config):
    torch.manual_seed(0)
    return create_model("rrdbnet", **{"num_in_ch": 12, "num_feat": 8, "num_block": 1,
                                      "num_grow_ch": 4, **config}).eval()


def test_a_basicsr_file_needs_no_model_or_config(tmp_path):
    net = _net()
    torch.save({"params_ema": net.state_dict()}, tmp_path / "net_g.pth")
    x = torch.rand(1, 12, 8, 8)
    for model in (None, "rrdbnet"):  # (with --model: it failed on 41 shape conflicts)
        with pytest.warns(ZoomsrWarning, match=r"net_g.pth records no model: read from its "
                                               r"tensors as rrdbnet num_in_ch=12 .*scale=4"):
            inf = build_inference_model(weights=tmp_path / "net_g.pth", model=model,
                                        device="cpu")
        assert inf.n_images == 4 and inf.module.config == net.config
        with torch.no_grad():
            torch.testing.assert_close(inf.module(x), net(x))
    # a config the tensors cannot tell (scale 2: the same tensors as 4) is given with -c;
    # -c scale=2 alone is enough (num_in_ch then a quarter of conv_first's input)
    two = _net(scale=2, num_in_ch=3)
    torch.save(two.state_dict(), tmp_path / "x2.pth")
    for given in ({"scale": 2, "num_in_ch": 3}, {"scale": 2}):
        inf = build_inference_model(weights=tmp_path / "x2.pth", model="rrdbnet",
                                    config=given, device="cpu")
        assert inf.module.config == two.config and inf.scale == 2
        x2 = torch.rand(1, 3, 8, 8)
        with torch.no_grad():
            torch.testing.assert_close(inf.module(x2), two(x2))


def test_a_model_other_than_the_recorded_one_is_named(tmp_path):
    path = save_checkpoint(_net(), tmp_path / "zoomsr.safetensors")
    with pytest.raises(ConfigError, match=r"--model srcnn: zoomsr.safetensors holds a rrdbnet "
                                          r"model \(zoomsr recorded it\); leave --model out"):
        build_inference_model(weights=path, model="srcnn", device="cpu")
