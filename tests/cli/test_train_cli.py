"""``zoomsr train``: exit codes and one-line errors, and a short run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoomsr.config_files import CONFIG_DIR
from zoomsr.data import scan_pairs
from zoomsr.models import HighResNet, from_checkpoint

CONFIGS = CONFIG_DIR
TINY = str(CONFIGS / "tiny.yaml")


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    from zoomsr.data.sample import write_sample

    return write_sample(tmp_path_factory.mktemp("cli-train") / "ds", pairs=16, n_frames=4,
                        workers=1)


def test_unknown_key_exits_2_naming_it(cli):
    code, _, err = cli("train", TINY, "--set", "trainer.max_step=20")
    assert code == 2
    assert "unknown config key 'trainer.max_step'" in err and len(err.strip().splitlines()) == 1


def test_bad_type_exits_2_naming_key_and_type(cli):
    code, _, err = cli("train", TINY, "--set", "trainer.max_steps=many")
    assert code == 2
    assert "'trainer.max_steps' must be an integer, got 'many'" in err


def test_missing_dataset_exits_2_naming_the_path(cli, tmp_path):
    missing = tmp_path / "no-such-dataset"
    code, _, err = cli("train", TINY, "--set", f"data.root={missing}", "--out", tmp_path / "o")
    assert code == 2
    assert f"{missing}: dataset folder not found" in err
    assert not (tmp_path / "o").exists()


def test_other_bad_input_exits_2(cli, tmp_path, sample):
    code, _, err = cli("train", tmp_path / "none.yaml")
    assert code == 2 and "config file not found" in err
    code, _, err = cli("train", TINY, "--accelerator", "tpu")
    assert code == 2 and "--accelerator must be cpu, gpu or auto" in err
    code, _, err = cli("train", TINY, "--set", f"data.root={sample}", "--resume",
                       tmp_path / "missing.ckpt", "--out", tmp_path / "o")
    assert code == 2 and "missing.ckpt" in err


def test_short_run_then_resume_auto(cli, tmp_path, sample):
    out = tmp_path / "run"
    args = ["train", str(CONFIGS / "tiny_regression.yaml"), "--set", f"data.root={sample}",
            "--set", "trainer.max_steps=2", "--set", "trainer.val_every_n_steps=2",
            "--set", "trainer.checkpoint_every_n_steps=2", "--out", str(out), "--no-progress"]
    code, stdout, err = cli(*args)
    assert code == 0, err
    assert "trained tiny_regression to step 2" in stdout
    assert "val/psnr=" in stdout
    assert isinstance(from_checkpoint(out / "generator.pth"), HighResNet)
    # the tiles it trained and validated on, for `evaluate --splits` (they were nowhere)
    import json

    splits = json.loads((out / "splits.json").read_text())
    assert splits["train"] and splits["val"] and not set(splits["train"]) & set(splits["val"])
    # and the run says how many (nothing did)
    assert (f"splits:     {len(splits['train'])} train, {len(splits['val'])} val items "
            f"({out / 'splits.json'})") in stdout
    # The same command with a longer budget continues from the last checkpoint; with the
    # progress bar, on stderr (it went to stdout, into the run's report)
    progress = [a for a in args if a != "--no-progress"]
    code, stdout, err = cli(*progress, "--set", "trainer.max_steps=5")
    assert code == 0, err
    assert "to step 5, resumed from" in stdout and "last.ckpt" in stdout
    assert "Training to step 5" in err and "Training to step" not in stdout
    # The bar counts the run's steps across epochs (this split leaves fewer than 5 batches
    # per epoch), not the batches of the current epoch.
    assert "5/5" in err, err
    # the same command again (a requeued job): said, nothing written
    code, stdout, err = cli(*args, "--set", "trainer.max_steps=5")
    assert code == 0, err
    assert stdout.startswith("tiny_regression: already at step 5 (trainer.max_steps), nothing "
                             "to do (raise trainer.max_steps to train on)")
    # A budget below the checkpoint's step is refused before anything is rewritten.
    config = (out / "config.yaml").read_text()
    code, stdout, err = cli(*args, "--set", "trainer.max_steps=1")
    assert code == 2 and not stdout and len(err.strip().splitlines()) == 1
    assert f"{out / 'checkpoints' / 'last.ckpt'} is at step 5, past trainer.max_steps=1" in err
    assert (out / "config.yaml").read_text() == config
    # Starting afresh there is refused (one line, exit 2), unless --overwrite.
    code, _, err = cli(*args, "--resume", "never")
    assert code == 2 and "holds checkpoints of an earlier run" in err and "--overwrite" in err
    code, _, err = cli(*args, "--overwrite")  # would drop what --resume auto continues
    assert code == 2 and "pass --resume never with --overwrite" in err
    code, stdout, err = cli(*args, "--resume", "never", "--overwrite")
    assert code == 0, err
    assert "trained tiny_regression to step 2" in stdout and "resumed" not in stdout


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("losses.pixel.weight=.nan", "losses.pixel.weight"),
        ("optim.lr=nan", "optim.lr"),
        ("optim.weight_decay=.nan", "optim.weight_decay"),
        ("optim.gamma=.inf", "optim.gamma"),
    ],
)
def test_non_finite_values_exit_2_naming_the_key(cli, tmp_path, sample, override, key):
    code, _, err = cli("train", TINY, "--set", f"data.root={sample}", "--set", override,
                       "--set", "trainer.max_steps=1", "--out", tmp_path / "o", "--no-progress")
    assert code == 2, err
    assert f"config key {key!r} must be a finite number" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_empty_config_file_exits_2_naming_it(cli, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    code, _, err = cli("train", empty)
    assert code == 2
    assert f"{empty}: the config file is empty" in err and "gan" not in err
    assert len(err.strip().splitlines()) == 1


def test_data_problems_exit_2_before_the_model_is_built(cli, tmp_path, sample):
    base = ["train", TINY, "--set", f"data.root={sample}", "--out", tmp_path / "o",
            "--no-progress"]
    code, out, err = cli(*base, "--set", "data.bands=[tci,b05]")
    assert code == 2
    assert "config key 'data.bands': band b05 is not in the dataset" in err
    assert len(err.strip().splitlines()) == 1 and "Params" not in out + err  # no model summary
    code, out, err = cli(*base, "--set", f"data.tile_weights={tmp_path / 'w.json'}")
    assert code == 2
    assert "config key 'data.tile_weights'" in err and "w.json: tile-weights file not found" in err
    assert len(err.strip().splitlines()) == 1 and "Params" not in out + err
    splits = tmp_path / "splits.json"
    tiles = sorted({r.tile for r in scan_pairs(sample)})
    splits.write_text(json.dumps({"train": tiles, "val": []}))
    code, out, err = cli(*base, "--set", f"data.splits={splits}")
    assert code == 2
    assert "no pair of the dataset is in the 'val' split" in err and "Params" not in out + err
    assert not (tmp_path / "o").exists()


def test_ctrl_c_exits_130_saying_how_to_go_on(cli, tmp_path, sample, monkeypatch):
    import zoomsr.training.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what train() raises for Lightning's Ctrl-C exit

    monkeypatch.setattr(zoomsr.training.run, "train", interrupted)
    out = tmp_path / "o"
    args = ["train", TINY, "--set", f"data.root={sample}", "--out", out]
    # before the first checkpoint: there is nothing to continue from
    code, _, err = cli(*args)
    assert code == 130
    assert err.strip() == ("interrupted before the first checkpoint was written: the same "
                           "command starts over")
    elsewhere = tmp_path / "step=5.ckpt"  # --resume PATH: the same command resumes from it
    code, _, err = cli(*args, "--resume", elsewhere)
    assert code == 130
    assert err.strip() == ("interrupted before the first checkpoint was written: the same "
                           f"command resumes from {elsewhere} again")
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"")
    code, _, err = cli(*args)
    assert code == 130
    assert err.strip() == ("interrupted: the same command continues from the last checkpoint "
                           f"({out / 'checkpoints' / 'last.ckpt'}; --resume auto, the default)")
    # DDP: Lightning starts the other ranks as this command again (LOCAL_RANK set); Ctrl-C
    # reaches them all, and one line per machine is enough
    monkeypatch.setenv("LOCAL_RANK", "1")
    code, _, err = cli(*args)
    assert code == 130 and err == ""


def test_a_missing_gpu_exits_2_naming_the_setting(cli, tmp_path, sample):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = cli("train", TINY, "--set", f"data.root={sample}", "--set",
                       "trainer.accelerator=gpu", "--out", tmp_path / "o", "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: trainer settings (accelerator=gpu")


def test_a_split_leaving_no_training_pair_exits_2_before_any_run(cli, tmp_path):
    from zoomsr.data.sample import write_sample

    small = write_sample(tmp_path / "small", pairs=8, n_frames=3, workers=1)
    out = tmp_path / "o"
    code, stdout, err = cli("train", TINY, "--set", f"data.root={small}", "--out", out,
                            "--no-progress")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Params" not in stdout + err
    assert "the train/val split left the training set empty: of the 8 pairs" in err
    assert "data.split_group=2, data.val_fraction=0.25" in err
    assert "lower data.split_group or data.val_fraction" in err
    assert not out.exists()


def test_missing_lpips_weights_exit_2_naming_the_key_before_training(cli, tmp_path, sample,
                                                                     monkeypatch):
    import torch

    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))  # no AlexNet cached there
    out = tmp_path / "o"
    args = ["train", TINY, "--set", f"data.root={sample}", "--set", "val.metrics=[psnr,lpips]",
            "--out", out, "--no-progress"]
    code, stdout, err = cli(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Params" not in stdout + err
    assert err.startswith("error: config key 'val.lpips_weights': LPIPS alex backbone weights")
    assert str(hub / "checkpoints" / "alexnet-owt-7be5be79.pth") in err
    assert "(val.lpips_weights: PATH)" in err and "--lpips-weights" not in err
    assert not out.exists()
    backbone = tmp_path / "alexnet.pth"
    backbone.write_bytes(b"")  # found (not read yet): the linear layers are looked for next
    code, _, err = cli(*args, "--set", f"val.lpips_weights={backbone}",
                       "--set", f"val.lpips_linear_weights={tmp_path / 'lin.pth'}")
    assert code == 2
    assert ("config key 'val.lpips_linear_weights': LPIPS alex linear-layer weights not found: "
            f"{tmp_path / 'lin.pth'}") in err
    assert not out.exists()


def test_an_unreadable_validation_png_exits_2_before_any_work(cli, tmp_path, sample):
    """It was found only at the first validation (val_every_n_steps: 5000 in the paper's
    configs), after config.yaml and the logs were written, and again at every resume."""
    import shutil

    from zoomsr.training.config import load_config
    from zoomsr.training.datamodule import split_pairs

    root = tmp_path / "ds"
    shutil.copytree(sample, root)
    val = split_pairs(root, load_config(TINY, [f"data.root={root}"]).data)[1]
    bad = val[-1].band_path("tci")
    bad.write_text("garbage\n")
    out = tmp_path / "o"
    code, stdout, err = cli("train", TINY, "--set", f"data.root={root}", "--set",
                            "trainer.val_every_n_steps=3", "--out", out, "--no-progress")
    assert code == 2, err
    assert not out.exists() and "Params" not in stdout + err  # before the model and OUT
    assert err.startswith(f"error: {bad}: not a readable image") and "validation tile" in err
    assert len(err.strip().splitlines()) == 1


def test_a_second_run_of_a_folder_in_use_exits_2_in_one_line(cli, tmp_path, sample):
    from zoomsr.io.atomic import output_lock

    out = tmp_path / "o"
    with output_lock(out / "generator.pth"):  # what a live `zoomsr train --out o` holds
        code, stdout, err = cli("train", TINY, "--set", f"data.root={sample}", "--set",
                                "trainer.max_steps=1", "--out", out, "--no-progress")
    assert code == 2, err
    assert err.strip() == (f"error: {out}: another zoomsr train run is using this run folder "
                           f"(it holds {out / '.generator.pth.zoomsr-lock'}); wait for it to "
                           "end or stop it, or choose another --out")
    assert sorted(p.name for p in out.iterdir()) == []


def test_settings_fixed_on_resume_exit_2_before_out_is_touched(cli, tmp_path, sample):
    """A new losses.gan.feed_lr crashed with a raw size-mismatch RuntimeError (exit 1) after
    config.yaml was rewritten and csv/version_1 added; a new seed or split went silently."""
    out = tmp_path / "o"
    args = ["train", TINY, "--set", f"data.root={sample}", "--set", "trainer.max_steps=1",
            "--set", "data.max_val_pairs=2", "--out", out, "--no-progress"]
    code, _, err = cli(*args)
    assert code == 0, err
    config = (out / "config.yaml").read_bytes()
    for sets, said in ((["losses.gan.feed_lr=true"], "losses.gan.feed_lr: was False, now True"),
                       (["data.split_seed=5"], "data.split_seed: was 0, now 5")):
        code, stdout, err = cli(*args, "--set", "trainer.max_steps=2",
                                *(a for s in sets for a in ("--set", s)))
        assert code == 2, err
        assert said in err and "another --out" in err and len(err.strip().splitlines()) == 1
        assert (out / "config.yaml").read_bytes() == config
        assert sorted(p.name for p in (out / "csv").iterdir()) == ["version_0"]


def test_a_missing_clip_loss_file_names_the_loss_keys(cli, tmp_path, sample, monkeypatch):
    """The CLIP loss said what the CLIPScore metric's CLI takes (--clip-pretrained PATH,
    --allow-download), flags `zoomsr train` does not have, and no config key."""
    import zoomsr.metrics.clipscore as clipscore

    monkeypatch.setattr(clipscore, "_find_cached", lambda cfg, hub: (None, ["nowhere"]))
    out = tmp_path / "o"
    code, stdout, err = cli("train", TINY, "--set", f"data.root={sample}", "--set",
                            "losses.clip.weight=1", "--out", out, "--no-progress")
    assert code == 2, err
    assert err.startswith("error: config key 'losses.clip.pretrained': CLIP weights "
                          "ViT-B-16-SigLIP-256/webli are not on this machine")
    assert "(losses.clip.pretrained: PATH)" in err
    assert "(losses.clip.allow_download: true)" in err
    assert "--clip-pretrained" not in err and "--allow-download" not in err
    assert len(err.strip().splitlines()) == 1 and "Params" not in stdout + err
    assert not out.exists()


@pytest.mark.parametrize(("config", "sets", "said"), [
    (TINY, ["discriminator.num_feat=0"], "config key 'discriminator.num_feat' must be > 0"),
    (str(CONFIGS / "srcnn.yaml"), ["model.config={hidden_channels: 8}", "data.n_images=4",
                                   "data.split_group=2", "data.val_fraction=0.25"],
     "config key 'model.config': hidden_channels (8) must be divisible by zoom_factor**2 (16)"),
    (TINY, ["data.split_seed=-1"], "config key 'data.split_seed' must be >= 0, got -1"),
    (TINY, ["data.val_seed=-1"], "config key 'data.val_seed' must be >= 0, got -1"),
    (TINY, ["optim.milestones=[0]"], "config key 'optim.milestones[0]' must be a step >= 1"),
])
def test_values_refused_late_or_unnamed_exit_2_naming_the_key(cli, tmp_path, sample, config,
                                                              sets, said):
    """A raw ValueError (exit 1), a model constructor's message without the key, a seed
    refused under another name after OUT was written, a milestone that never fires."""
    out = tmp_path / "o"
    args = [a for s in sets for a in ("--set", s)]
    code, stdout, err = cli("train", config, "--set", f"data.root={sample}", *args, "--out",
                            out, "--no-progress")
    assert code == 2, err
    assert said in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_trainer_options_reach_the_config(cli, tmp_path, sample, monkeypatch):
    """--devices, --num-nodes, --accelerator and --no-progress are the config's trainer keys
    (over the file's and --set's), checked as they are."""
    import zoomsr.training.run as run

    seen = []

    class Result:  # as a non-zero DDP rank's: nothing to report
        generator_path = None

    def fake_train(cfg, run_dir, **kwargs):  # noqa: ANN001, ANN003
        seen.append((cfg, run_dir))
        return Result()

    monkeypatch.setattr(run, "train", fake_train)
    code, _, err = cli("train", TINY, "--set", f"data.root={sample}", "--set",
                       "trainer.num_nodes=5", "--devices", "2", "--num-nodes", "3",
                       "--accelerator", "cpu", "--no-progress", "--out", tmp_path / "o")
    assert code == 0, err
    (cfg, run_dir), = seen
    t = cfg.trainer
    assert (t.devices, t.num_nodes, t.accelerator, t.progress_bar) == (2, 3, "cpu", False)
    assert run_dir == tmp_path / "o"
    for bad, message in ((["--num-nodes", "0"], "--num-nodes"),
                         (["--accelerator", "tpu"], "--accelerator must be cpu, gpu or auto")):
        code, _, err = cli("train", TINY, "--set", f"data.root={sample}", *bad)
        assert code == 2 and message in err, err
    assert len(seen) == 1
