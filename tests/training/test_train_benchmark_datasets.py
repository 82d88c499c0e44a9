"""``zoomsr train`` on the other benchmark datasets (PROBA-V, OLI2MSI, WorldStrat): tiny runs on
fake copies in the published layouts, the held-out validation split, resume, config errors and
the masked content loss."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from zoomsr.config_files import CONFIG_DIR
from zoomsr.errors import ConfigError, DataError
from zoomsr.training.config import LossSection, load_config
from zoomsr.training.datamodule import (
    BenchmarkDataModule,
    ItemSubset,
    build_datamodule,
    held_out_split,
)
from zoomsr.training.objectives import ContentLoss
from zoomsr.training.run import train

TESTS = Path(__file__).resolve().parents[1]
CONFIGS = CONFIG_DIR


def _fixture(name: str):
    """A fixture writer of tests/data, imported from its path (its dataclasses look their
    module up in sys.modules)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / "data" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def write_probav(root: Path, n: int = 6) -> Path:
    """``n`` train image sets (RED and NIR, 3 frames each) and the challenge's test sets."""
    pf = _fixture("probav_fixture")
    sets = tuple(pf.FakeSet("train", "NIR" if k % 2 else "RED", f"imgset{k:04d}",
                            [16384, 12000, 9000]) for k in range(n))
    test = tuple(s for s in pf.DEFAULT_SETS if s.split == "test")
    return pf.write_probav(root, sets + test)


@pytest.fixture(scope="module")
def probav_root(tmp_path_factory) -> Path:
    return write_probav(tmp_path_factory.mktemp("probav") / "probav")


@pytest.fixture(scope="module")
def oli2msi_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("oli2msi") / "oli2msi"
    of = _fixture("oli2msi_fixture")
    of.write_oli2msi(root, "train", n=8, lr_size=8)
    of.write_oli2msi(root, "test", n=2, lr_size=8, start=100)
    return root


@pytest.fixture(scope="module")
def worldstrat_root(tmp_path_factory) -> Path:
    wf = _fixture("worldstrat_fixture")
    splits = ["train"] * 4 + ["val"] * 2 + ["test"]
    aois = [wf.FakeAOI(f"Landcover-{k}", split, clouds=(0, 3, 0, 9))
            for k, split in enumerate(splits)]
    return wf.write_worldstrat(tmp_path_factory.mktemp("worldstrat") / "ws", aois)


def probav_config(root: Path, *overrides: str):
    return load_config(CONFIGS / "tiny_probav.yaml",
                       [f"data.root={root}", "trainer.progress_bar=false", *overrides])


def oli2msi_config(root: Path, *overrides: str):
    """tiny_probav's HighRes-net on OLI2MSI's RGB pairs (8 px LR, one image)."""
    return probav_config(root, "data.dataset=oli2msi", "data.options={lr_size: 8}",
                         "data.n_images=1", *overrides)


def _metrics(out: Path) -> list[dict[str, str]]:
    import csv

    rows = []
    for path in sorted((out / "csv").glob("version_*/metrics.csv")):
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def _logged(out: Path, key: str) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r[key])) for r in _metrics(out) if r.get(key)]


# ---------------------------------------------------------------------------------------------
# Runs


def test_probav_trains_one_band_x3_with_masks_and_logs_finite_metrics(probav_root, tmp_path):
    """One band in and out, x3, SM.png's concealed row masking loss and metrics: the run ends,
    every validation metric is finite and logged at its step, and splits.json records the
    held-out image sets."""
    cfg = probav_config(probav_root)
    assert cfg.channels == cfg.hr_channels == 1
    assert cfg.model.config["in_channels"] == cfg.model.config["out_channels"] == 1
    assert cfg.model.config["zoom_factor"] == 3
    out = tmp_path / "run"
    result = train(cfg, out, resume="never")
    assert result.global_step == 4
    for key in ("val/l1", "val/psnr", "val/ssim"):
        logged = _logged(out, key)
        assert [s for s, _ in logged] == [2, 4], key
        assert all(math.isfinite(v) for _, v in logged), (key, logged)
    assert math.isfinite(result.metrics["train/loss"])
    splits = json.loads((out / "splits.json").read_text())
    assert splits["dataset"] == "probav" and splits["source_split"] == "train"
    assert not set(splits["train"]) & set(splits["val"])
    assert sorted(splits["train"] + splits["val"]) == [f"imgset{k:04d}" for k in range(6)]
    assert len(splits["val"]) == 2  # ceil(0.25 * 6)
    from zoomsr.models import from_checkpoint

    model = from_checkpoint(out / "generator.pth")
    with torch.no_grad():
        sr = model(torch.rand(1, 4, 1, 128, 128))
    assert sr.shape[-3:] == (1, 384, 384)
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "val_step0000002.png", "val_step0000004.png"]
    _the_generator_records_its_dataset(cfg, probav_root, out)


def _the_generator_records_its_dataset(cfg, root: Path, out: Path) -> None:
    """generator.pth says which dataset (not S2-NAIP bands): evaluate-model takes its frame
    count from it, infer refuses it (it feeds Sentinel-2 TCI), and a resume on other data
    is refused."""
    from zoomsr.cli.main import main
    from zoomsr.inference import build_inference_model
    from zoomsr.models.checkpoints import read_checkpoint

    extra = read_checkpoint(out / "generator.pth").extra
    assert extra["dataset"] == "probav" and "bands" not in extra
    assert extra["n_images"] == cfg.data.n_images
    assert main(["evaluate-model", str(out / "generator.pth"), "--dataset", "probav", "--data",
                 str(root), "--split", "train", "--metrics", "psnr", "--no-progress",
                 "--device", "cpu", "--out", str(out / "scores")]) == 0
    summary = json.loads((out / "scores" / "summary.json").read_text())
    assert summary["options"]["n_images"] == cfg.data.n_images
    # the run's own validation items, from its splits.json (held out of PROBA-V's train split)
    assert main(["evaluate-model", str(out / "generator.pth"), "--dataset", "probav", "--data",
                 str(root), "--split", "val", "--splits", str(out / "splits.json"),
                 "--metrics", "psnr", "--no-progress", "--device", "cpu", "--out",
                 str(out / "val_scores")]) == 0
    import csv

    rows = list(csv.DictReader((out / "val_scores" / "per_image.csv").open()))
    val_ids = json.loads((out / "splits.json").read_text())["val"]
    assert sorted(r["key"] for r in rows) == sorted(val_ids) and len(rows) == len(val_ids)
    for weights in (out / "generator.pth", out / "checkpoints" / "last.ckpt"):
        # (the run's Lightning checkpoint says it in its run config)
        with pytest.raises(ConfigError, match="trained on the probav dataset, not on Sentin"):
            build_inference_model(weights=weights, device="cpu")
    other = probav_config(root, "data.options={bands: [NIR], normalization: 14bit}",
                          "trainer.max_steps=6")
    with pytest.raises(ConfigError, match=r"data\.options.*it chooses the data the run "
                                          r"trains on"):
        train(other, out, resume="auto")


def test_worldstrat_esrgan_trains_on_rgb_nir_and_validates_on_its_val_split(worldstrat_root,
                                                                             tmp_path):
    """ESRGAN (x4) on WorldStrat with a 4-band (RGB + NIR) HR: the discriminator takes 4
    channels (+ the LR stack with feed_lr), the VGG19 loss and the metrics its R, G, B; the
    validation set is WorldStrat's own val split."""
    cfg = load_config(CONFIGS / "tiny_worldstrat.yaml", [
        f"data.root={worldstrat_root}", "trainer.progress_bar=false",
        "data.options.hr_bands=[R, G, B, NIR]"])
    assert cfg.hr_channels == 4 and cfg.model.config["num_out_ch"] == 4
    from zoomsr.training.base import discriminator_config

    assert discriminator_config(cfg)["num_in_ch"] == 4 + 2 * 3
    out = tmp_path / "run"
    result = train(cfg, out, resume="never")
    assert result.global_step == 4
    for key in ("val/l1", "val/psnr", "val/ssim"):
        assert [s for s, _ in _logged(out, key)] == [2, 4], key
        assert all(math.isfinite(v) for _, v in _logged(out, key)), key
    assert all(math.isfinite(v) for _, v in _logged(out, "train/perceptual"))
    splits = json.loads((out / "splits.json").read_text())
    assert splits["train"] == [f"Landcover-{k}" for k in range(4)]
    assert splits["val"] == ["Landcover-4", "Landcover-5"]
    assert splits["source_split"] == "val"


def test_oli2msi_held_out_split_is_seeded_disjoint_and_recorded(oli2msi_root, tmp_path):
    """OLI2MSI has no val split: data.val_fraction of the train pairs is held out, the same
    for the same data.split_seed, another for another, never overlapping training."""
    def split(seed: int) -> tuple[list[str], list[str]]:
        cfg = oli2msi_config(oli2msi_root, f"data.split_seed={seed}", "data.val_fraction=0.25")
        dm = build_datamodule(cfg)
        assert isinstance(dm, BenchmarkDataModule)
        train_set, val_set = dm._datasets()
        return train_set.ids, val_set.ids

    train_ids, val_ids = split(0)
    assert split(0) == (train_ids, val_ids)
    assert len(val_ids) == 2 and len(train_ids) == 6 and not set(train_ids) & set(val_ids)
    others = {tuple(split(seed)[1]) for seed in range(1, 6)}
    assert others - {tuple(val_ids)}  # another seed, other pairs
    # whatever order the dataset lists them in
    listed = train_ids + val_ids
    a = held_out_split(listed, 0.25, 7)
    b = held_out_split(listed[::-1], 0.25, 7)
    assert {listed[i] for i in a[1]} == {listed[::-1][i] for i in b[1]}
    with pytest.raises(DataError, match="at least 2"):
        held_out_split(["only"], 0.5, 0)


@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_oli2msi_run_resumes_to_the_same_weights(oli2msi_root, tmp_path, workers):
    """A run killed after step 3 and resumed ends where an uninterrupted one does (the held-out
    subset forwards the sampler's (index, sample_seed) draws, so each sample's crop follows
    from its seed), and splits.json records the pairs."""
    from lightning.pytorch.callbacks import Callback

    class Crash(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step == 3:
                raise RuntimeError("simulated crash")

    cfg = oli2msi_config(oli2msi_root, "data.options={lr_size: 8, crop: 6}",
                         "trainer.max_steps=5", "trainer.checkpoint_every_n_steps=2",
                         "trainer.val_every_n_steps=5", f"data.num_workers={workers}")
    whole = train(cfg, tmp_path / "whole", resume="never")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "split", resume="auto", callbacks=[Crash()])
    ckpt = torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and "BenchmarkDataModule" in ckpt
    resumed = train(cfg, tmp_path / "split", resume="auto")
    assert resumed.resumed_from is not None and resumed.global_step == whole.global_step == 5
    a = torch.load(tmp_path / "whole" / "generator.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "split" / "generator.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    splits = json.loads((tmp_path / "split" / "splits.json").read_text())
    assert splits == json.loads((tmp_path / "whole" / "splits.json").read_text())
    assert len(splits["train"]) == 6 and len(splits["val"]) == 2  # ceil(0.25 * 8)


def test_the_subset_forwards_sample_seeds(oli2msi_root):
    """torch's Subset cannot take the sampler's (index, sample_seed): ItemSubset passes it on,
    so a training sample's crop depends on its seed alone."""
    from zoomsr.data import OLI2MSIDataset

    ds = OLI2MSIDataset(oli2msi_root, lr_size=8, crop=4, train=True)
    sub = ItemSubset(ds, [5, 2], [p.id for p in ds.pairs])
    assert sub.ids == [ds.pairs[5].id, ds.pairs[2].id] and len(sub) == 2
    assert sub.scale == 3 and sub.channels == 3
    a, b = sub[(1, 123)], ds[(2, 123)]
    assert a["id"] == b["id"] and torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"])
    crops = {sub[(0, seed)]["lr"].sum().item() for seed in range(8)}
    assert len(crops) > 1  # the seed chooses the crop
    assert sub[-1]["id"] == ds.pairs[2].id


# ---------------------------------------------------------------------------------------------
# Errors before any work


@pytest.mark.parametrize("overrides,match", [
    (["data.options.normalisation=challenge"],
     r"config key 'data\.options\.normalisation': normalisation not an option of the probav "
     r"dataset \(it takes: .*normalization"),
    (["data.options.n_images=9"], r"'data\.options\.n_images' is set by training: use "
                                  r"data\.n_images"),
    (["data.tile_weights=weights.json"],
     r"'data\.tile_weights' applies to S2-NAIP only, not to the probav dataset"),
    (["data.bands=[tci, b08]"], r"'data\.bands' applies to S2-NAIP only.*data\.options\.bands"),
    (["data.split_group=4"], r"'data\.split_group' applies to S2-NAIP only"),
    (["losses.perceptual.weight=1.0", "losses.perceptual.allow_random=true"],
     r"'losses\.perceptual\.weight': the VGG19 perceptual loss compares RGB images, but the "
     r"probav dataset's HR images have 1 channel: set it to 0"),
    (["losses.clip.weight=1.0"], r"'losses\.clip\.weight': the CLIP loss compares RGB"),
    (["data.scale=4"], r"'data\.scale' is 4, but the probav dataset's HR images are 3 times "
                       r"its LR size: set data\.scale: 3"),
    (["data.dataset=sentinel"], r"'data\.dataset': unknown dataset 'sentinel' \(expected one "
                                r"of s2naip, probav, worldstrat, oli2msi\)"),
    (["model.config.out_channels=3"], r"model\.config\.out_channels=3 disagrees with the data "
                                      r"section \(expected 1 from .*probav dataset's 1 input"),
    (["data.dataset=worldstrat", "data.options={}", "data.scale=4", "model.config={}"],
     r"'data\.val_fraction' does not apply to the worldstrat dataset \(it validates on its "
     r"own val split\)"),
    (["data.dataset=worldstrat", "data.options={hr_bands: [R, G]}", "data.scale=4",
      "data.val_fraction=0.05", "model.config={}"],
     r"'data\.options\.hr_bands': R, G hold no R, G and B, which validation scores"),
    (["data.dataset=worldstrat", "data.options={hr_bands: [NIR, R, G]}", "data.scale=4",
      "data.val_fraction=0.05", "model.config={}"],
     r"'data\.options\.hr_bands': NIR, R, G hold no R, G and B"),
    (["data.dataset=s2naip", "model.config={}", "data.scale=4"],
     r"'data\.options' applies to the benchmark datasets"),
])
def test_bad_benchmark_configs_are_one_line_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        probav_config("/nowhere", *overrides)
    assert "\n" not in str(info.value)


def test_a_broken_folder_or_refused_option_stops_before_the_model(tmp_path, monkeypatch):
    """The data module builds both sets and reads the first validation item before the model
    is built: a missing HR file is a one-line DataError naming it, an option value the loader
    refuses a ConfigError naming data.options; nothing is written to the run folder."""
    import zoomsr.training.run as run

    def no_model(cfg):  # pragma: no cover - reached only if the check failed to stop the run
        raise AssertionError("the model was built")

    monkeypatch.setattr(run, "build_module", no_model)
    root = write_probav(tmp_path / "probav")
    cfg = probav_config(root)
    first_val = build_datamodule(cfg)._datasets()[1].ids[0]
    hr = next(root.glob(f"train/*/{first_val}")) / "HR.png"
    hr.unlink()
    out = tmp_path / "run"
    with pytest.raises(DataError) as info:
        train(cfg, out, resume="never")
    assert "HR.png" in str(info.value) and first_val in str(info.value)
    assert "\n" not in str(info.value)
    assert not (out / "config.yaml").exists()

    with pytest.raises(ConfigError, match=r"config key 'data\.options' \(probav dataset\): "
                                          r".*normalization") as info:
        train(probav_config(root, "data.options.normalization=16bit"), out, resume="never")
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="not found"):
        train(probav_config(tmp_path / "missing"), out, resume="never")


def test_cli_refuses_an_unknown_dataset_option_in_one_line(cli, tmp_path):
    code, _, err = cli("train", CONFIGS / "tiny_probav.yaml", "--set",
                       f"data.root={tmp_path}", "--set", "data.options.band=NIR",
                       "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "config key 'data.options.band': band not an option of the probav dataset" in err


# ---------------------------------------------------------------------------------------------
# The masked content loss


def test_masked_l1_ignores_concealed_pixels():
    """Pixels where hr_valid is False count neither in the L1 loss nor in its gradient; a mask
    that is all True is the same as none, to the bit."""
    losses = LossSection()
    losses.pixel.type = "l1"
    content = ContentLoss(losses)
    torch.manual_seed(0)
    sr = torch.rand(2, 1, 12, 12, requires_grad=True)
    hr = torch.rand(2, 1, 12, 12)
    valid = torch.ones(2, 12, 12, dtype=torch.bool)
    valid[:, 0] = False  # a concealed row, as the fixture's SM.png
    valid[1, :, :3] = False
    loss, parts = content(sr, hr, valid=valid)
    expected = (sr - hr).abs()[valid[:, None]].mean()
    assert torch.allclose(loss, expected) and torch.allclose(parts["pixel"], expected)
    # changing the concealed pixels changes nothing
    other = torch.where(valid[:, None], hr, torch.full_like(hr, 5.0))
    assert torch.equal(content(sr, other, valid=valid)[0], loss)
    loss.backward()
    assert torch.all(sr.grad[~valid[:, None]] == 0) and torch.all(sr.grad[valid[:, None]] != 0)
    # all valid: exactly the unmasked loss
    plain = content(sr, hr)[0]
    assert torch.equal(content(sr, hr, valid=torch.ones(2, 12, 12, dtype=torch.bool))[0], plain)
    assert torch.allclose(plain, (sr - hr).abs().mean())


# ---------------------------------------------------------------------------------------------
# Review fixes: the shipped configs against the reference, the held-out split, resume on
# changed data, USM with masks, refused combinations, splits.json, sample grids

#: The paper's reference runs (allenai/satlas-super-resolution, ssr/options/experiments/
#: *.yml): Adam 1e-4 (0.9, 0.99), MultiStepLR [400000] x0.5 everywhere; per run the batch,
#: frames, scale, and the ESRGAN runs' USM ground truth (l1_gt_usm, percep_gt_usm), LR fed to
#: the discriminator (feed_disc_lr), EMA 0.999, VGG19 1.0 and GAN 0.1.
REFERENCE = {
    "probav_highresnet": {"batch": 64, "frames": 9, "scale": 3, "esrgan": False},
    "oli2msi_highresnet": {"batch": 2, "frames": 1, "scale": 3, "esrgan": False},
    "worldstrat_highresnet": {"batch": 2, "frames": 8, "scale": 4, "esrgan": False},
    # oli2msi_esrgan.yml: batch_size_per_gpu 4 at b4cc3d9 (8 at 01de805)
    "oli2msi_esrgan": {"batch": 4, "frames": 1, "scale": 3, "esrgan": True},
    "worldstrat_esrgan": {"batch": 2, "frames": 8, "scale": 4, "esrgan": True},
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_shipped_configs_have_the_reference_training_settings(name):
    ref = REFERENCE[name]
    cfg = load_config(CONFIGS / f"{name}.yaml", ["data.root=/nowhere"])
    o, d, losses = cfg.optim, cfg.data, cfg.losses
    assert (o.lr, o.betas, o.milestones, o.gamma) == (1e-4, [0.9, 0.99], [400000], 0.5)
    assert (d.batch_size, d.n_images, d.scale) == (ref["batch"], ref["frames"], ref["scale"])
    assert (losses.pixel.type, losses.pixel.weight) == ("l1", 1.0)
    assert (cfg.val.metrics, cfg.val.border) == (["psnr", "ssim"], 4)
    if name.startswith("oli2msi"):
        assert d.options["crop"] == 40  # the reference's 40 px LR chunks
    if not ref["esrgan"]:
        assert cfg.task == "regression" and losses.perceptual.weight == 0
        return
    assert cfg.task == "esrgan" and o.ema_decay == 0.999
    assert cfg.model.config["num_feat"] == 64 and cfg.model.config["num_block"] == 23
    assert losses.pixel.usm and losses.perceptual.usm and not losses.gan.usm
    assert losses.perceptual.weight == 1.0 and losses.perceptual.criterion == "l1"
    assert losses.perceptual.layer_weights == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0,
                                               "conv4_4": 1.0, "conv5_4": 1.0}
    assert (losses.gan.type, losses.gan.weight, losses.gan.feed_lr) == ("vanilla", 0.1, True)


def test_held_out_share_is_rounded_before_its_ceiling():
    """0.07 * 100 is 7.000000000000001 in floating point: 7 items, not 8."""
    ids = [f"item{k:03d}" for k in range(100)]
    assert len(held_out_split(ids, 0.07, 0)[1]) == 7
    assert len(held_out_split(ids, 0.05, 0)[1]) == 5
    assert len(held_out_split(ids[:21], 0.05, 0)[1]) == 2  # ceil(1.05)
    assert len(held_out_split(ids[:2], 0.99, 0)[1]) == 1  # never all
    assert len(held_out_split(ids[:3], 0.01, 0)[1]) == 1  # at least one


def test_held_out_items_stay_when_the_split_gains_or_loses_training_items():
    """Items are ranked by a hash of (seed, id), not drawn by a permutation of all of them:
    another train item (a download completed later) or one fewer moves no training item into
    validation but at the boundary."""
    ids = [f"item{k:03d}" for k in range(100)]
    train, val = held_out_split(ids, 0.05, 3)
    val_ids = {ids[i] for i in val}
    fewer = [ids[i] for i in train[1:]] + sorted(val_ids)
    assert {fewer[i] for i in held_out_split(fewer, 0.05, 3)[1]} == val_ids
    more = ids + ["item100", "item101", "item102", "item103"]  # 5 val items still (ceil 5.2 = 6)
    grown = {more[i] for i in held_out_split(more, 0.05, 3)[1]}
    assert len(grown) == 6 and len(grown - val_ids - {"item100", "item101", "item102",
                                                      "item103"}) <= 1


def test_a_resume_on_a_dataset_whose_items_changed_is_refused(tmp_path):
    """The checkpoint records which items the split held: a train folder that gained a pair
    (another held-out split) is refused on resume, in one line, instead of validating on
    pairs the run trained on."""
    from lightning.pytorch.callbacks import Callback

    class Crash(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step == 3:
                raise RuntimeError("simulated crash")

    root = tmp_path / "oli2msi"
    of = _fixture("oli2msi_fixture")
    of.write_oli2msi(root, "train", n=8, lr_size=8)
    cfg = oli2msi_config(root, "data.options={lr_size: 8, crop: 6}", "trainer.max_steps=5",
                         "trainer.checkpoint_every_n_steps=2", "trainer.val_every_n_steps=5",
                         "data.val_fraction=0.25")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "run", resume="auto", callbacks=[Crash()])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["BenchmarkDataModule"]["split"]["train"] == 6
    assert ckpt["BenchmarkDataModule"]["split"]["val"] == 2
    of.write_oli2msi(root, "train", n=1, lr_size=8, start=50)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    with pytest.raises(DataError, match=r"train/val items are not those the checkpoint's run "
                                        r"used \(6 train / 2 validation items then, 6 / 3 now"
                       ) as info:
        train(cfg, tmp_path / "run", resume="auto")
    assert "\n" not in str(info.value)
    # refused before the run folder is touched (config.yaml, splits.json as they were)
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert after == before and "splits.json" in before


def test_masked_usm_ground_truth_ignores_concealed_pixels():
    """The USM-sharpened target of a masked loss is sharpened from the valid pixels alone: the
    concealed pixels' values (a black no-data wedge, a cloud) change neither the loss nor its
    gradient; an all-True mask is the same as none, to the bit."""
    from zoomsr.losses import usm_sharp
    from zoomsr.training.objectives import usm_within

    losses = LossSection()
    losses.pixel.usm = True
    content = ContentLoss(losses)
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 40, 40)
    sr = torch.rand(2, 3, 40, 40, requires_grad=True)
    valid = torch.ones(2, 40, 40, dtype=torch.bool)
    valid[:, :, :10] = False  # a no-data band along one edge
    black = torch.where(valid[:, None], hr, torch.zeros_like(hr))
    bright = torch.where(valid[:, None], hr, torch.ones_like(hr))
    a = content(sr, black, valid=valid)[0]
    b = content(sr, bright, valid=valid)[0]
    assert torch.equal(a, b)
    sharp = usm_within(content.usm, black, valid)
    assert torch.equal(sharp[~valid[:, None].expand_as(sharp)],
                       black[~valid[:, None].expand_as(black)])
    every = torch.ones(2, 40, 40, dtype=torch.bool)
    assert torch.equal(content(sr, hr, valid=every)[0], content(sr, hr)[0])
    assert torch.equal(content.sharpen(hr, every), usm_sharp(hr))
    # away from the mask (beyond twice the kernel's reach: the residual's, then its soft
    # mask's blur), the same as the plain USM
    wide = torch.rand(1, 3, 40, 96)
    keep = torch.ones(1, 40, 96, dtype=torch.bool)
    keep[..., :10] = False
    far = usm_within(content.usm, wide, keep)[..., 62:]
    assert torch.allclose(far, usm_sharp(wide)[..., 62:], atol=1e-5)


@pytest.mark.parametrize("overrides,match", [
    (["data.dataset=worldstrat", "data.options={lr_size: null}", "data.scale=4",
      "data.val_fraction=0.05", "model.config={}"],
     r"'data\.options\.lr_size' is null .*data\.batch_size=2 and data\.val_batch_size=2: areas "
     r"of different sizes cannot share a batch; set lr_size"),
    (["data.dataset=oli2msi", "data.options={crop: 30}", "data.n_images=1", "task=esrgan",
      "model.name=rrdbnet", "model.config={}", "losses.gan.weight=0.1"],
     r"'data\.options\.crop': 30 px LR gives 90 px HR images, but ESRGAN's U-Net discriminator "
     r"needs HR sides divisible by 8: set data\.options\.crop to a multiple of 8 \(e\.g\. 32\)"),
    (["data.dataset=worldstrat", "data.options={lr_size: 9}", "data.scale=4",
      "data.val_fraction=0.05", "task=esrgan", "model.name=rrdbnet", "model.config={}",
      "losses.gan.weight=0.1"],
     r"'data\.options\.lr_size': 9 px LR gives 36 px HR.*multiple of 2 \(e\.g\. 8\)"),
    (["data.options.split=train"],
     r"'data\.options\.split' is set by training: remove it \(the probav dataset validates on "
     r"data\.val_fraction of its train split, held out by data\.split_seed\)"),
    (["data.options.layout=frames"],
     r"'data\.options\.layout' is set by training: remove it \(model\.name sets"),
])
def test_more_refused_benchmark_configs_are_one_line_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        probav_config("/nowhere", *overrides)
    assert "\n" not in str(info.value)


def test_splits_json_says_where_each_list_comes_from(probav_root, worldstrat_root):
    """splits.json records the dataset, its options and the split each list was drawn from:
    enough to open the run's validation items again (here PROBA-V's by imgsets=)."""
    from zoomsr.data import PROBAVDataset

    doc = build_datamodule(probav_config(probav_root)).splits_doc()
    assert doc["dataset"] == "probav" and doc["options"] == {"bands": ["NIR", "RED"]}
    assert doc["sources"] == {"train": "train", "val": "train"}
    val = PROBAVDataset(probav_root, doc["sources"]["val"], imgsets=doc["val"],
                        **doc["options"])
    assert sorted(s.name for s in val.imgsets) == doc["val"]
    ws = load_config(CONFIGS / "tiny_worldstrat.yaml", [f"data.root={worldstrat_root}"])
    doc = build_datamodule(ws).splits_doc()
    assert doc["sources"] == {"train": "train", "val": "val"} and doc["source_split"] == "val"


def test_sample_grid_shows_worldstrat_blue_first_bands_as_rgb():
    """The reference's WorldStrat bands are B02, B03, B04 (blue first): the grid's LR column
    shows B04, B03, B02 as R, G, B; the TCI's and one band's as before."""
    from zoomsr.training.base import lr_display_channels, lr_sr_hr_grid

    cfg = load_config(CONFIGS / "worldstrat_esrgan.yaml", ["data.root=/nowhere"])
    assert lr_display_channels(cfg) == (2, 1, 0)
    assert lr_display_channels(probav_config("/nowhere")) is None
    lr = torch.zeros(1, 2 * 3, 4, 4)
    lr[:, 2] = 1.0  # B04 (red) of the first frame
    sr = hr = torch.zeros(1, 3, 16, 16)
    grid = lr_sr_hr_grid(lr, sr, hr, channels=3, lr_rgb=lr_display_channels(cfg))
    assert tuple(grid[2 + 8, 2 + 8]) == (255, 0, 0)
    one = lr_sr_hr_grid(torch.full((1, 4, 4, 4), 0.5), torch.zeros(1, 1, 12, 12),
                        torch.zeros(1, 1, 12, 12), channels=1)
    assert tuple(one[2 + 6, 2 + 6]) == (128, 128, 128)  # one band in grey


def test_hr_bands_in_any_order_give_validation_losses_and_grid_their_r_g_b():
    """WorldStrat hr_bands NIR, B, G, R: the VGG19 / CLIP losses, validation's metrics and the
    sample grid take channels 3, 2, 1 (they took the first three, NIR, B, G; the config had
    refused the losses for such an order)."""
    from zoomsr.training.base import lr_sr_hr_grid
    from zoomsr.training.dataset_config import hr_rgb_channels
    from zoomsr.training.objectives import ContentLoss

    cfg = load_config(CONFIGS / "worldstrat_esrgan.yaml", [
        "data.root=/nowhere", "data.options.hr_kind=rgbn", "data.options.hr_bands=[NIR, B, G, R]",
        "losses.perceptual.weight=1.0", "losses.perceptual.allow_random=true"])
    assert hr_rgb_channels(cfg.data) == (3, 2, 1)
    assert hr_rgb_channels(probav_config("/nowhere").data) is None
    torch.manual_seed(0)
    sr, hr = torch.rand(2, 4, 32, 32), torch.rand(2, 4, 32, 32)
    torch.manual_seed(1)  # the same random VGG19 in both (its weights are not in state_dict)
    turned = ContentLoss(cfg.losses, hr_rgb_channels(cfg.data))
    torch.manual_seed(1)
    straight = ContentLoss(cfg.losses)  # the same terms on R, G, B, NIR
    _, parts = turned(sr, hr)
    _, want = straight(sr[:, [3, 2, 1, 0]], hr[:, [3, 2, 1, 0]])
    assert torch.allclose(parts["perceptual"], want["perceptual"])
    _, first3 = straight(sr, hr)  # NIR, B, G taken as RGB: the test can tell
    assert not torch.allclose(first3["perceptual"], want["perceptual"])
    hr = torch.zeros(1, 4, 16, 16)
    hr[:, 3] = 1.0  # R, last
    grid = lr_sr_hr_grid(torch.zeros(1, 6, 4, 4), hr, hr, channels=3, hr_rgb=(3, 2, 1))
    assert tuple(grid[2 + 8, 2 * 2 + 16 + 8]) == (255, 0, 0)  # the SR tile: red
    assert tuple(grid[2 + 8, 3 * 2 + 32 + 8]) == (255, 0, 0)  # the HR tile


def test_max_val_pairs_takes_a_seeded_sample_of_worldstrat_val_split(worldstrat_root):
    """data.max_val_pairs keeps the validation items that rank first by their hash, a sample of
    the whole split, not the first rows of WorldStrat's CSV (whatever order it is in)."""
    from zoomsr.training.datamodule import _rank

    cfg = load_config(CONFIGS / "tiny_worldstrat.yaml", [f"data.root={worldstrat_root}",
                                                         "data.max_val_pairs=1"])
    _, val_set = build_datamodule(cfg)._datasets()
    expected = min(["Landcover-4", "Landcover-5"], key=lambda i: _rank(0, i))
    assert val_set.ids == [expected] == ["Landcover-5"]  # the CSV lists Landcover-4 first


def test_a_damaged_training_item_is_replaced_not_fatal(tmp_path):
    """A training pair whose file cannot be read is replaced by another drawn from the same
    sample seed, with one warning (as S2-NAIP's training skips unusable pairs): the run ends,
    instead of stopping at the step that draws it (and again at every resume); the
    replacement follows from the seed, so a draw gives the same sample every time."""
    from zoomsr.errors import ZoomsrWarning

    root = tmp_path / "oli2msi"
    _fixture("oli2msi_fixture").write_oli2msi(root, "train", n=8, lr_size=8)
    cfg = oli2msi_config(root, "data.options={lr_size: 8, crop: 6}", "trainer.max_steps=6",
                         "trainer.val_every_n_steps=6", "data.val_fraction=0.25")
    train_set, _ = build_datamodule(cfg)._datasets()
    broken = train_set.ids[0]
    (root / "train_hr" / f"{broken}.TIF").write_bytes(b"not a TIFF")
    dm = build_datamodule(cfg)
    train_set, _ = dm._datasets()
    with pytest.warns(ZoomsrWarning, match="skipping unusable training items"):
        a = train_set[(0, 1234)]
    assert a["id"] != broken and torch.equal(train_set[(0, 1234)]["lr"], a["lr"])
    fresh = build_datamodule(cfg)._datasets()[0]  # another process: the same replacement
    with pytest.warns(ZoomsrWarning):
        assert torch.equal(fresh[(0, 1234)]["lr"], a["lr"])
    assert torch.equal(train_set[(1, 99)]["lr"], fresh[(1, 99)]["lr"])  # others as before
    with pytest.raises(DataError, match=rf"{broken}"):
        train_set[0]  # a plain index (validation) raises
    with pytest.warns(ZoomsrWarning, match="skipping unusable training items"):
        result = train(cfg, tmp_path / "run", resume="never")
    assert result.global_step == 6


def test_an_x3_rrdbnet_warm_starts_from_an_x4_checkpoint_but_its_second_upsample(
        oli2msi_root, tmp_path):
    """model.init_weights of an x3 RRDBNet (OLI2MSI, PROBA-V) may be an x4 checkpoint of the
    same input channels (the published ESRGAN's): every tensor loads but conv_up2, which x3
    has not; anything else that does not match is refused as before."""
    from zoomsr.errors import CheckpointError
    from zoomsr.models import create_model, save_checkpoint
    from zoomsr.training.run import build_module

    kw = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
    torch.manual_seed(0)
    x4 = create_model("rrdbnet", num_in_ch=3, scale=4, **kw)
    save_checkpoint(x4, tmp_path / "x4.pth")
    cfg = oli2msi_config(oli2msi_root, "model.name=rrdbnet",
                         "model.config={num_feat: 8, num_block: 1, num_grow_ch: 4}",
                         f"model.init_weights={tmp_path / 'x4.pth'}")
    generator = build_module(cfg).generator
    assert generator.scale == 3 and not hasattr(generator, "conv_up2")
    for name, tensor in generator.state_dict().items():
        assert torch.equal(tensor, x4.state_dict()[name]), name
    torch.manual_seed(1)
    save_checkpoint(create_model("rrdbnet", num_in_ch=6, scale=4, **kw), tmp_path / "x4b.pth")
    bad = oli2msi_config(oli2msi_root, "model.name=rrdbnet",
                         "model.config={num_feat: 8, num_block: 1, num_grow_ch: 4}",
                         f"model.init_weights={tmp_path / 'x4b.pth'}")
    with pytest.raises(CheckpointError, match="conv_first"):
        build_module(bad)


def test_the_discriminator_sees_the_hrs_pixels_where_the_hr_is_masked(tmp_path):
    """Real and fake images are the same at the HR's masked pixels (a cloud, no-data fill):
    the discriminator learns nothing there and gives the generator no gradient there (it saw
    the garbage as real, and the SR's pixels as fake)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from zoomsr.training.run import build_module

    cfg = load_config(CONFIGS / "tiny_worldstrat.yaml", ["data.root=/nowhere"])
    torch.manual_seed(0)
    module = build_module(cfg)
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(2, 6, 8, 8, generator=g)
    hr = torch.rand(2, 3, 32, 32, generator=g)
    valid = torch.ones(2, 32, 32, dtype=torch.bool)
    valid[0, 8:20, 4:30] = False
    hr[0, :, 8:20, 4:30] = 1.0  # a "cloud": what the discriminator must not learn as real
    seen: list[torch.Tensor] = []
    module.discriminator.register_forward_pre_hook(
        lambda _, args: seen.append(args[0][:, :3].detach().clone()))
    grads: list[torch.Tensor] = []

    def keep_grad(_module, _args, out):
        if out.requires_grad:
            out.register_hook(lambda grad: grads.append(grad.detach().clone()))
    module.generator.register_forward_hook(keep_grad)
    gan_only = module.content
    gan_only.weights = {name: 0.0 for name in gan_only.weights}  # the GAN term's gradient alone

    batch = {"lr": lr, "hr": hr, "hr_valid": valid}
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=DataLoader([batch], batch_size=None))
    fake_g, real_d, fake_d = seen  # the generator's step, then the discriminator's
    hole = ~valid[:, None].expand_as(hr)
    assert torch.equal(real_d[hole], hr[hole])
    assert torch.equal(fake_d[hole], real_d[hole]) and torch.equal(fake_g[hole], real_d[hole])
    assert not torch.equal(fake_d[~hole], real_d[~hole])  # elsewhere the SR itself
    assert grads and grads[0].abs()[hole].max() == 0 and grads[0].abs()[~hole].max() > 0


def test_worldstrat_lr_bands_null_is_its_default():
    """`lr_bands: null` (as `hr_bands: null`) is the default R, G, B: it was Python's
    "'NoneType' object is not iterable" inside the config error. The options pass; the
    next check (this config's val_fraction) is what stops it."""
    with pytest.raises(ConfigError, match=r"'data\.val_fraction' does not apply"):
        probav_config("/nowhere", "data.dataset=worldstrat", "data.options={lr_bands: null}",
                      "data.scale=4", "model.config={}")
