"""zoomsr evaluate-model: a checkpoint scored on a dataset, as zoomsr evaluate writes scores."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from dataset_fixtures import fixture_module
from zoomsr.data import PROBAVDataset, S2NAIPDataset, write_sample
from zoomsr.evaluation import evaluate_model
from zoomsr.evaluation.model_eval import load_scoring_model
from zoomsr.models import create_model, save_checkpoint


def _probav(root: Path) -> Path:
    return fixture_module("probav_fixture").write_probav(root)


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
    # provenance as `zoomsr infer` tags it: the file scored, absolute, and its hash
    from zoomsr import __version__
    from zoomsr.io.hashing import sha256_file

    assert doc["options"]["weights"] == str(Path(weights).resolve())
    assert doc["options"]["weights_sha256"] == sha256_file(weights)
    assert doc["options"]["zoomsr_version"] == __version__
    assert Path(doc["options"]["data"]).is_absolute()


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


def test_bands_other_than_the_weights_record_are_refused(cli, tmp_path):
    """-o bands=tci,b05 for weights trained on tci,b08 was scored (B05 fed as B08), and the
    frame-count hint for an RGB model given TCI + B08 frames was to open 6 "frames" of them
    (24 channels / 4), which scored garbage with exit 0."""
    root = write_sample(tmp_path / "s", pairs=2, n_frames=2, bands="tci,b05,b08", seed=0)
    torch.manual_seed(0)
    model = create_model("rrdbnet", num_in_ch=8, num_feat=8, num_block=1, num_grow_ch=4)
    weights = save_checkpoint(model, tmp_path / "g.pth", n_images=2, bands=["tci", "b08"])
    for bands in ("tci,b05", "tci"):
        code, _, stderr = cli("evaluate-model", weights, "--dataset", "s2naip", "--data", root,
                              "-o", f"bands={bands}", "--no-progress", "--device", "cpu")
        assert code == 2, stderr
        assert stderr.strip().splitlines()[-1] == (
            f"error: bands {bands}: g.pth was trained on bands tci,b08 (its weights record "
            "them), in that order; leave the bands option out to take them")
    # weights that record nothing: 24 channels (8 TCI frames) given 8 frames of TCI + B08
    rgb = create_model("rrdbnet", num_in_ch=24, num_feat=8, num_block=1, num_grow_ch=4)
    plain = tmp_path / "net_g.pth"
    torch.save(rgb.state_dict(), plain)
    code, _, stderr = cli("evaluate-model", plain, "--dataset", "s2naip", "--data", root,
                          "-o", "bands=tci,b08", "--n-images", "8", "--no-progress",
                          "--device", "cpu")
    assert code == 2, stderr
    assert ("open it with n_images=6 (--n-images 6) if it was trained on these bands; if on "
            "TCI only (8 frames), open it with bands=tci (command line: -o bands=tci)") in stderr


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


def test_a_diffusion_model_is_sampled_with_noise_of_each_item(cli, probav_highresnet, tmp_path):
    """SR3 is scored by DDIM from each item's own starting noise (its id and --seed): the same
    scores in batches of 1 and of 3; another seed gives others; --sample-steps is checked."""
    import json

    root, hrn_weights, _ = probav_highresnet
    torch.manual_seed(0)
    # three downsamplings: the middle attention over 48 x 48 of PROBA-V's 384 px, not 384 x 384
    sr3 = create_model("sr3", in_channels=2, out_channels=1, scale=3, base_channels=4,
                       channel_mults=(1, 1, 1, 1), num_res_blocks=1, attn_levels=(),
                       num_timesteps=8)
    weights = save_checkpoint(sr3, tmp_path / "sr3.pth", n_images=2)
    rows = {}
    for batch, seed in ((1, 0), (3, 0), (3, 1)):
        out = tmp_path / f"s{batch}{seed}"
        code, _, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                              "--split", "train", "--metrics", "psnr", "--sample-steps", "2",
                              "--batch-size", str(batch), "--seed", str(seed), "--out", out,
                              "--no-progress", "--device", "cpu")
        assert code == 0, stderr
        rows[(batch, seed)] = [r["psnr"] for r in csv.DictReader((out / "per_image.csv").open())]
        assert json.loads((out / "summary.json").read_text())["options"]["sample_steps"] == 2
    # (the same noise; convolutions of another batch size round differently)
    assert [float(v) for v in rows[(1, 0)]] == pytest.approx([float(v) for v in rows[(3, 0)]],
                                                             rel=1e-6)
    assert len(rows[(1, 0)]) == 3
    assert rows[(3, 1)] != rows[(3, 0)]
    for args, message in (((weights, "--sample-steps", "9"), "sample steps 9: sr3.pth takes 1 "
                                                              "to 8 (its timesteps)"),
                          ((hrn_weights, "--sample-steps", "4"),
                           "apply to diffusion models (sr3), not to generator.pth")):
        code, _, stderr = cli("evaluate-model", *args, "--dataset", "probav", "--data", root,
                              "--split", "train", "--no-progress", "--device", "cpu")
        assert code == 2 and message in stderr, stderr


def _tiny_rrdbnet(num_in_ch: int, num_out_ch: int = 3):
    torch.manual_seed(0)
    return create_model("rrdbnet", num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=8,
                        num_block=1, num_grow_ch=4)


def test_frames_are_counted_on_the_split_scored_not_the_loaders_default(cli, tmp_path):
    # the channels per frame were read from the loader's default split (train), which this
    # copy does not have: the command failed before reading the split asked for
    fx = fixture_module("worldstrat_fixture")
    root = fx.write_worldstrat(tmp_path / "ws", [fx.FakeAOI("T1", "test"),
                                                 fx.FakeAOI("T2", "test")])
    weights = save_checkpoint(_tiny_rrdbnet(6), tmp_path / "esrgan.pth")  # 2 RGB frames
    out = tmp_path / "scores"
    code, stdout, stderr = cli("evaluate-model", weights, "--dataset", "worldstrat", "--data",
                               root, "--split", "test", "-o", "lr_size=8", "--metrics", "psnr",
                               "--out", out, "--no-progress", "--device", "cpu")
    assert code == 0, stderr
    doc = json.loads((out / "summary.json").read_text())
    assert doc["options"]["n_images"] == 2 and doc["options"]["split"] == "test"


def test_worldstrat_four_band_hr_and_lr_through_the_command(cli, tmp_path):
    fx = fixture_module("worldstrat_fixture")
    root = fx.write_worldstrat(tmp_path / "ws", [fx.FakeAOI("A1", "train"),
                                                 fx.FakeAOI("A2", "train", revisits=2)])
    model = _tiny_rrdbnet(8, num_out_ch=4)  # 2 frames of B04,B03,B02,B08 -> R,G,B,NIR
    weights = save_checkpoint(model, tmp_path / "rgbn.pth")
    out = tmp_path / "scores"
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "worldstrat", "--data", root,
                          "-o", "hr_kind=rgbn", "-o", "hr_bands=R,G,B,NIR", "-o",
                          "lr_bands=B04,B03,B02,B08", "-o", "lr_size=8", "--metrics", "psnr",
                          "--out", out, "--no-progress", "--device", "cpu", "--batch-size", "3")
    assert code == 0, stderr
    from zoomsr.data import WorldStratDataset

    ds = WorldStratDataset(root, hr_kind="rgbn", hr_bands="R,G,B,NIR",
                           lr_bands="B04,B03,B02,B08", lr_size=8, n_images=2)
    assert ds[0]["hr"].shape[0] == 4
    want = evaluate_model(model, ds, "psnr", device="cpu")  # scored on the RGB
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert [float(r["psnr"]) for r in rows] == [pytest.approx(w["psnr"], rel=1e-9)
                                                for w in want.rows]
    doc = json.loads((out / "summary.json").read_text())
    assert doc["options"]["n_images"] == 2 and doc["options"]["split"] == "train"
    # a model of the wrong input channels: named, both counts, before it runs
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "worldstrat", "--data", root,
                          "-o", "lr_size=8", "--n-images", "2", "--no-progress", "--device",
                          "cpu")
    assert code == 2
    assert stderr.strip() == (
        "error: rgbn.pth takes 8 input channels (frames x channels); WorldStratDataset items "
        "have 6 (2 frame(s) x 3 channel(s)): 8 is no multiple of 3: open it with the lr_bands "
        "the model was trained on (8 channel(s); command line: -o lr_bands=...)")


def test_a_frames_model_takes_its_revisits_when_the_weights_record_no_count(cli, tmp_path):
    root = _probav(tmp_path / "probav")
    torch.manual_seed(0)
    srcnn = create_model("srcnn", in_channels=1, out_channels=1, zoom_factor=3, revisits=2,
                         hidden_channels=9)
    weights = save_checkpoint(srcnn, tmp_path / "srcnn.pth")  # no n_images
    out = tmp_path / "scores"
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                          "--metrics", "psnr", "--out", out, "--no-progress", "--device", "cpu")
    assert code == 0, stderr  # was: "its weights do not say how many frames it takes"
    doc = json.loads((out / "summary.json").read_text())
    assert doc["options"]["n_images"] == 2 and doc["options"]["architecture"] == "srcnn"
    # a frames model of other input channels: the error names both counts
    oli = tmp_path / "oli"
    fixture_module("oli2msi_fixture").write_oli2msi(oli, "train", n=2)
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "oli2msi", "--data", oli,
                          "-o", "lr_size=8", "--no-progress", "--device", "cpu")
    assert code == 2 and stderr.count("\n") == 1
    assert ("srcnn.pth takes 1 input channel(s) per frame; OLI2MSIDataset items have 3 per "
            "frame: the model is not one for OLI2MSIDataset") in stderr


def test_an_unreadable_file_read_by_a_worker_is_one_line(cli, probav_highresnet):
    root, weights, _ = probav_highresnet
    bad = root / "train" / "NIR" / "imgset0594" / "LR001.png"  # its clearest frame
    bad.write_bytes(b"\x89PNG\r\n\x1a\n-truncated")
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                          "--workers", "2", "--no-progress", "--device", "cpu")
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith(f"error: {bad}: "), stderr


def test_summary_options_name_the_split_scored_and_the_metric_options(cli, probav_highresnet,
                                                                       tmp_path):
    root, weights, _ = probav_highresnet
    out = tmp_path / "scores"
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                          "--metrics", "psnr", "--out", out, "--no-progress", "--device", "cpu")
    assert code == 0, stderr
    options = json.loads((out / "summary.json").read_text())["options"]
    assert options["split"] == "train"  # the loader's default (was null)
    assert {"lpips_net", "clip_model", "clip_pretrained", "clip_mode",
            "perceptual_min_valid"} <= set(options)  # as zoomsr evaluate records them
    assert options["architecture"] == "highresnet" and options["layout"] == "frames"
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                          "--metrics", "psnr", "--out", out, "--no-progress", "--device", "cpu")
    assert code == 2 and "--overwrite" in stderr


def test_an_item_without_a_valid_hr_pixel_is_noted_as_not_scored(cli, probav_highresnet,
                                                                 tmp_path):
    root, weights, _ = probav_highresnet
    fx = fixture_module("probav_fixture")
    import numpy as np

    sm = root / "train" / "RED" / "imgset0000" / "SM.png"
    fx.write_mask(sm, np.zeros((384, 384), dtype=bool), "L")
    out = tmp_path / "scores"
    code, stdout, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                               "--metrics", "psnr", "--out", out, "--no-progress", "--device",
                               "cpu")
    assert code == 0, stderr
    assert "note: psnr not scored for 1 item(s)" in stderr
    rows = {r["key"]: r for r in csv.DictReader((out / "per_image.csv").open())}
    assert rows["imgset0000"]["psnr"] == "" and rows["imgset0000"]["valid_fraction"] == "0.0"
    # --no-masks: every pixel scored, as the Python API's nodata=False; recorded
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                          "--metrics", "psnr", "--out", tmp_path / "all", "--no-masks",
                          "--no-progress", "--device", "cpu")
    assert code == 0, stderr
    assert "not scored" not in stderr
    every = {r["key"]: r for r in csv.DictReader((tmp_path / "all" / "per_image.csv").open())}
    ds = PROBAVDataset(root, split="train", n_images=4, layout="frames")
    want = {r["key"]: r for r in evaluate_model(load_scoring_model(weights).module, ds, "psnr",
                                                device="cpu", nodata=False).rows}
    assert every.keys() == want.keys() and every["imgset0000"]["psnr"] != ""
    for key, row in every.items():
        assert float(row["psnr"]) == pytest.approx(want[key]["psnr"], rel=1e-9)
    options = json.loads((tmp_path / "all" / "summary.json").read_text())["options"]
    assert options["masks"] is False


def test_a_zoomsr_checkpoint_with_its_own_model_name(cli, probav_highresnet, tmp_path):
    root, weights, _ = probav_highresnet
    # --model naming the checkpoint's own architecture: its config, not the defaults
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                          "--model", "highresnet", "--metrics", "psnr", "--no-progress",
                          "--device", "cpu")
    assert code == 0, stderr
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                          "--model", "rrdbnet", "--no-progress", "--device", "cpu")
    assert code == 2 and "holds a highresnet model (zoomsr recorded it); leave --model out" \
        in stderr
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                          "--model", "highresnet", "-c", "hidden_channels=18", "--no-progress",
                          "--device", "cpu")
    assert code == 2 and "saved with hidden_channels=9; leave it out" in stderr


def test_an_s2naip_split_of_a_training_runs_splits_file(cli, tmp_path):
    root = write_sample(tmp_path / "s", pairs=4, n_frames=2, seed=0)
    pairs = S2NAIPDataset(root, n_images=2, skip_black_hr=False).pairs
    run_splits = tmp_path / "run" / "splits.json"
    run_splits.parent.mkdir()
    val = sorted(f"{p.image_id}/{p.tile}" for p in pairs[:2])  # as zoomsr train writes them
    run_splits.write_text(json.dumps({"train": sorted(f"{p.image_id}/{p.tile}"
                                                      for p in pairs[2:]), "val": val}))
    weights = save_checkpoint(_tiny_rrdbnet(6), tmp_path / "esrgan2.pth")
    out = tmp_path / "out"
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "s2naip", "--data", root,
                          "--split", "val", "--splits", run_splits, "-o", "skip_black_hr=false",
                          "--metrics", "psnr", "--out", out, "--no-progress", "--device", "cpu")
    assert code == 0, stderr
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert sorted(r["key"] for r in rows) == val
    doc = json.loads((out / "summary.json").read_text())
    assert doc["options"]["split"] == "val" and doc["options"]["splits"] == str(run_splits)
    for args, message in [
        (("--splits", run_splits), "--splits gives the items of each split"),
        (("--split", "val"), "zoomsr_splits.json: not found; an S2-NAIP split is one of"),
    ]:
        code, _, stderr = cli("evaluate-model", weights, "--dataset", "s2naip", "--data", root,
                              *args, "--no-progress", "--device", "cpu")
        assert code == 2 and message in stderr and stderr.count("\n") == 1, stderr


def test_scoring_a_runs_weights_on_its_training_items_is_said(cli, tmp_path):
    """A run's generator.pth (or checkpoint) scored on items of its 'train' split: a warning
    with how many, and the count in summary.json; its held-out items: no warning, 0."""
    root = write_sample(tmp_path / "s", pairs=4, n_frames=2, seed=0)
    pairs = S2NAIPDataset(root, n_images=2, skip_black_hr=False).pairs
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: run\n")
    train = sorted(f"{p.image_id}/{p.tile}" for p in pairs[1:])
    (run / "splits.json").write_text(json.dumps(
        {"train": train, "val": [f"{pairs[0].image_id}/{pairs[0].tile}"]}))
    model = _tiny_rrdbnet(6)
    common = ["--dataset", "s2naip", "--data", root, "-o", "skip_black_hr=false", "--metrics",
              "psnr", "--no-progress", "--device", "cpu"]
    for weights in (save_checkpoint(model, run / "generator.pth"),
                    save_checkpoint(model, run / "checkpoints" / "step=3.pth")):
        out = tmp_path / f"all-{weights.stem}"
        code, _, stderr = cli("evaluate-model", weights, *common, "--out", out)
        assert code == 0, stderr
        assert (f"warning: 3 of the 4 item(s) scored are ones the run that made {weights.name} "
                f"trained on ('train' in {run / 'splits.json'})") in stderr
        assert f"--split val --splits {run / 'splits.json'}" in stderr
        doc = json.loads((out / "summary.json").read_text())
        assert doc["options"]["training_items_scored"] == 3
    out = tmp_path / "val"
    code, _, stderr = cli("evaluate-model", run / "generator.pth", *common, "--split", "val",
                          "--splits", run / "splits.json", "--out", out)
    assert code == 0, stderr
    assert "warning" not in stderr
    assert json.loads((out / "summary.json").read_text())["options"][
        "training_items_scored"] == 0
    # the same weights outside a run folder: nothing to say, nothing recorded
    alone = save_checkpoint(model, tmp_path / "alone.pth")
    code, _, stderr = cli("evaluate-model", alone, *common, "--out", tmp_path / "alone")
    assert code == 0 and "warning" not in stderr, stderr
    assert "training_items_scored" not in json.loads(
        (tmp_path / "alone" / "summary.json").read_text())["options"]


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty weights cache, and no network: any download attempt fails the test."""
    monkeypatch.setenv("ZOOMSR_CACHE", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise AssertionError("evaluate-model must not download")

    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path / "cache"


def test_a_registry_name_not_in_the_cache_says_how_to_get_it(cli, probav_highresnet,
                                                              offline_cache):
    root, _, _ = probav_highresnet
    code, _, stderr = cli("evaluate-model", "esrgan-8", "--dataset", "probav", "--data", root,
                          "--no-progress", "--device", "cpu")
    assert code == 1 and stderr.count("\n") == 1, stderr
    assert stderr.startswith("error: weights esrgan-8 are not in the cache: run `zoomsr "
                             "weights download esrgan-8`")


def test_a_registry_name_takes_the_registrys_frames_and_bands(cli, tmp_path, offline_cache,
                                                              monkeypatch):
    # the registry's published files are plain state dicts that record neither: the command
    # took the tci bands and failed ("32 input channels cannot be frames of 3 channel(s)")
    from zoomsr.evaluation.model_eval import load_scoring_model
    from zoomsr.weights import fetch, registry

    model = _tiny_rrdbnet(8)  # 2 frames of tci + b08
    plain = tmp_path / "esrgan_tiny.pth"
    torch.save(model.state_dict(), plain)
    entry = registry.WeightsEntry(
        name="esrgan-tiny", description="test", model="rrdbnet",
        config={"num_in_ch": 8, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 1,
                "num_grow_ch": 4}, filename="esrgan_tiny.pth", url="https://example.invalid/x",
        n_images=2, bands=("tci", "b08"))
    monkeypatch.setitem(registry.REGISTRY, entry.name, entry)
    monkeypatch.setattr(fetch, "resolve", lambda name: plain)
    scoring = load_scoring_model("esrgan-tiny")
    assert (scoring.n_images, scoring.bands, scoring.label) == (2, ["tci", "b08"], "esrgan-tiny")
    root = write_sample(tmp_path / "s", pairs=2, n_frames=2, bands="tci,b08", seed=0)
    out = tmp_path / "out"
    code, _, stderr = cli("evaluate-model", "esrgan-tiny", "--dataset", "s2naip", "--data", root,
                          "-o", "skip_black_hr=false", "--metrics", "psnr", "--out", out,
                          "--no-progress", "--device", "cpu")
    assert code == 0, stderr
    doc = json.loads((out / "summary.json").read_text())
    assert doc["options"]["n_images"] == 2
    assert doc["options"]["options"]["bands"] == ["tci", "b08"]


def test_weights_trained_on_another_dataset_are_scored_with_a_warning(cli, tmp_path):
    """A model recording its dataset (zoomsr train's generator.pth) scored on another one: a
    transfer study is possible, but rarely meant."""
    root = tmp_path / "oli"
    fixture_module("oli2msi_fixture").write_oli2msi(root, "train", n=2, lr_size=8)
    torch.manual_seed(0)
    model = create_model("rrdbnet", num_in_ch=3, scale=3, num_feat=8, num_block=1,
                         num_grow_ch=4)
    weights = save_checkpoint(model, tmp_path / "g.pth", n_images=1, dataset="worldstrat",
                              dataset_options={})
    args = ("evaluate-model", weights, "--dataset", "oli2msi", "--data", root, "-o",
            "lr_size=8", "--metrics", "psnr", "--no-progress", "--device", "cpu")
    code, _, stderr = cli(*args)
    assert code == 0, stderr
    assert "warning: g.pth was trained on the worldstrat dataset; scoring it on oli2msi" in stderr
    same = save_checkpoint(model, tmp_path / "g.pth", n_images=1, dataset="oli2msi",
                           dataset_options={})
    code, _, stderr = cli(args[0], same, *args[2:])
    assert code == 0 and "warning" not in stderr, stderr


def test_examples_png_shows_a_few_items(cli, probav_highresnet, tmp_path):
    from PIL import Image

    root, weights, _ = probav_highresnet
    out = tmp_path / "scores"
    code, stdout, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                               "--split", "train", "-o", "bands=NIR,RED", "--metrics", "psnr",
                               "--examples", "2", "--out", out, "--no-progress", "--device",
                               "cpu")
    assert code == 0, stderr
    assert f"wrote {out / 'examples.png'}" in stdout
    with Image.open(out / "examples.png") as png:
        assert png.size[1] > 300  # two rows
    code, _, stderr = cli("evaluate-model", weights, "--dataset", "probav", "--data", root,
                          "--split", "train", "--examples", "2", "--out", out,
                          "--no-progress", "--device", "cpu")
    assert code == 2 and "already exists" in stderr
