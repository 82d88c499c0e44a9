"""zoomsr evaluate-model: a checkpoint scored on a dataset, as zoomsr evaluate writes scores."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from zoomsr.data import PROBAVDataset, S2NAIPDataset, write_sample
from zoomsr.evaluation import evaluate_model
from zoomsr.models import create_model, save_checkpoint

TESTS = Path(__file__).resolve().parents[1]


def _probav(root: Path) -> Path:
    if "probav_fixture" not in sys.modules:
        spec = importlib.util.spec_from_file_location("probav_fixture",
                                                      TESTS / "data" / "probav_fixture.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["probav_fixture"] = module  # (its dataclasses look their module up)
        spec.loader.exec_module(module)
    return sys.modules["probav_fixture"].write_probav(root)


@pytest.fixture
def probav_highresnet(tmp_path):
    """A fake PROBA-V copy and a tiny 1-band HighRes-net x3 saved as zoomsr saves one."""
    root = _probav(tmp_path / "probav")
    torch.manual_seed(0)
    model = create_model("highresnet", in_channels=1, out_channels=1, zoom_factor=3,
                         revisits=4, hidden_channels=9)
    weights = save_checkpoint(model, tmp_path / "generator.pth", n_images=4)
    return root, weights, model


def test_a_checkpoint_scored_on_probav_equals_evaluate_model(cli, probav_highresnet, tmp_path):
    root, weights, model = probav_highresnet
    out = tmp_path / "scores"
    code, stdout, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                               "--split", "train", "-o", "bands=NIR,RED", "--metrics",
                               "psnr,cpsnr", "--border", "3", "--out", out, "--no-progress",
                               "--device", "cpu")
    assert code == 0, stderr
    assert "3 image pairs" in stdout and "note: " in stderr  # the SM masks
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    ds = PROBAVDataset(root, split="train", n_images=4, layout="frames")
    want = evaluate_model(model, ds, "psnr,cpsnr", device="cpu")  # (border 4 there)
    assert [r["key"] for r in rows] == [r["key"] for r in want.rows]
    assert rows[0]["pred"] == "generator.pth" and rows[0]["target"] == "PROBAVDataset"
    from zoomsr.metrics import CPSNR, PSNR

    # the HR's mask moves with its crop in cPSNR's shifts: the challenge's scorer
    exact = evaluate_model(model, ds, {"psnr": PSNR(3), "cpsnr": CPSNR(3, valid_is="target")},
                           device="cpu")
    fixed = evaluate_model(model, ds, {"cpsnr": CPSNR(3)}, device="cpu")
    assert any(f["cpsnr"] != pytest.approx(w["cpsnr"], rel=1e-9)
               for f, w in zip(fixed.rows, exact.rows, strict=True))
    for row, w in zip(rows, exact.rows, strict=True):
        assert float(row["psnr"]) == pytest.approx(w["psnr"], rel=1e-9)
        assert float(row["cpsnr"]) == pytest.approx(w["cpsnr"], rel=1e-9)
        assert float(row["valid_fraction"]) == pytest.approx(w["valid_fraction"])
    doc = json.loads((out / "summary.json").read_text())
    assert doc["options"]["n_images"] == 4 and doc["options"]["dataset"] == "probav"
    assert doc["options"]["options"] == {"bands": "NIR,RED"}


def test_s2naip_frames_come_from_a_stacked_models_input_channels(cli, tmp_path):
    root = write_sample(tmp_path / "s", pairs=2, n_frames=3, seed=0)
    torch.manual_seed(0)
    model = create_model("rrdbnet", num_in_ch=6, num_feat=8, num_block=1, num_grow_ch=4)
    weights = save_checkpoint(model, tmp_path / "esrgan2.pth")  # no n_images recorded
    code, stdout, stderr = cli("evaluate-model", weights, "--dataset", "s2naip", "--data", root,
                               "-o", "skip_black_hr=false", "--metrics", "psnr",
                               "--out", tmp_path / "out", "--no-progress", "--device", "cpu")
    assert code == 0, stderr
    ds = S2NAIPDataset(root, n_images=2, layout="stacked", skip_black_hr=False)
    want = evaluate_model(model, ds, "psnr", device="cpu")
    assert f"{len(want.rows)} image pairs" in stdout
    rows = list(csv.DictReader((tmp_path / "out" / "per_image.csv").open()))
    assert [(r["key"], float(r["psnr"])) for r in rows] == [
        (w["key"], pytest.approx(w["psnr"], rel=1e-9)) for w in want.rows]
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert doc["options"]["n_images"] == 2 and doc["options"]["options"] == {"skip_black_hr": False}
    # weights that record their frames and bands (zoomsr train's generator.pth) give both
    recorded = save_checkpoint(model, tmp_path / "generator.pth", n_images=2, bands=["tci"])
    code, _, stderr = cli("evaluate-model", recorded, "--dataset", "s2naip", "--data", root,
                          "-o", "skip_black_hr=false", "--metrics", "psnr", "--out",
                          tmp_path / "out2", "--no-progress", "--device", "cpu")
    assert code == 0, stderr
    doc = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert doc["options"]["options"] == {"skip_black_hr": False, "bands": ["tci"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--dataset", "sen2venus"), "unknown dataset 'sen2venus'"),
        (("--dataset", "probav", "-o", "band=NIR"), "--option: band not an option of the "
                                                    "probav dataset"),
        (("--dataset", "probav", "-o", "n_images=3"), "--option n_images: give it as "
                                                      "--n-images"),
        (("--dataset", "probav", "-o", "bands"), "--option 'bands': expected key=value"),
        (("--dataset", "probav", "--config", "zoom_factor=3"), "add --model NAME"),
        (("--dataset", "probav", "--split", "test"), "no 'hr'"),
        (("--dataset", "probav", "--split", "val"), "split"),
        (("--dataset", "probav", "--metrics", "psnr,niqe"), "unknown metric 'niqe'"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, probav_highresnet, args, message):
    root, weights, _ = probav_highresnet
    code, _, stderr = cli("evaluate-model", weights, "--data", root, *args, "--no-progress",
                          "--device", "cpu")
    assert code == 2, stderr
    err = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0], stderr


def test_weights_that_are_neither_a_file_nor_a_registry_name(cli, probav_highresnet, tmp_path):
    root, _, _ = probav_highresnet
    code, _, stderr = cli("evaluate-model", tmp_path / "nope.pth", "--dataset", "probav",
                          "--data", root, "--no-progress")
    assert code == 2 and "no such checkpoint file" in stderr


def test_a_diffusion_model_is_refused_with_what_to_do_instead(cli, probav_highresnet, tmp_path):
    root, _, _ = probav_highresnet
    torch.manual_seed(0)
    sr3 = create_model("sr3", in_channels=3, base_channels=8, channel_mults=(1,),
                       num_res_blocks=1, attn_levels=(), num_timesteps=4)
    weights = save_checkpoint(sr3, tmp_path / "sr3.pth")
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                          "--no-progress")
    assert code == 2 and "SR3 is sampled" in stderr and "zoomsr infer" in stderr
