"""Typed configs: every shipped YAML loads, unknown/ill-typed keys name the key, overrides."""

from __future__ import annotations

import pytest
import yaml

from zoomsr.config_files import CONFIG_DIR
from zoomsr.errors import ConfigError
from zoomsr.training.config import (
    TrainConfig,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
)

CONFIGS = CONFIG_DIR
PAPER = ["srcnn", "highresnet", "esrgan_1img", "esrgan_2img", "esrgan_4img", "esrgan_8img",
         "esrgan_16img", "esrgan_clip", "sr3"]


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_loads(name):
    cfg = load_config(CONFIGS / f"{name}.yaml", ["data.root=/data"])
    assert cfg.name == name
    assert cfg.data.root == "/data"


def test_paper_configs_follow_the_reference_recipe():
    for n in (1, 2, 4, 8, 16):
        cfg = load_config(CONFIGS / f"esrgan_{n}img.yaml")
        assert cfg.model.config["num_in_ch"] == 3 * n  # derived from data.n_images
        assert (cfg.optim.lr, cfg.optim.betas, cfg.optim.ema_decay) == (1e-4, [0.9, 0.99], 0.999)
        assert (cfg.losses.pixel.weight, cfg.losses.perceptual.weight) == (1.0, 1.0)
        assert (cfg.losses.gan.type, cfg.losses.gan.weight) == ("vanilla", 0.1)
        assert cfg.losses.perceptual.layer_weights["conv1_2"] == 0.1
        assert cfg.data.batch_size == 256 and cfg.optim.milestones == [400000]
    clip = load_config(CONFIGS / "esrgan_clip.yaml")
    assert (clip.losses.clip.model, clip.losses.clip.weight) == ("ViT-B-16-SigLIP-256", 1.0)
    assert (clip.losses.ssim.window, clip.losses.ssim.weight) == (5, 0.01)
    x3 = load_config(CONFIGS / "oli2msi_esrgan.yaml")  # RRDBNet x3 (one nearest x3)
    assert (x3.model.config["scale"], x3.model.config["num_in_ch"]) == (3, 3)
    for name in ("srcnn", "highresnet"):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert cfg.losses.pixel.type == "worldstrat" and cfg.layout == "frames"
        assert cfg.model.config["revisits"] == 8


def test_unknown_keys_are_errors_naming_the_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'trainer\.max_step'"):
        load_config(CONFIGS / "tiny.yaml", ["trainer.max_step=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'colour'"):
        config_from_dict({"colour": "red"})
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.config\.num_fet'"):
        load_config(CONFIGS / "tiny.yaml", ["model.config.num_fet=8"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_steps=abc", r"'trainer\.max_steps' must be an integer, got 'abc'"),
        ("trainer.max_steps=2.5", r"'trainer\.max_steps' must be an integer"),
        ("trainer.progress_bar=maybe", r"'trainer\.progress_bar' must be true or false"),
        ("trainer.precision=64", r"'trainer\.precision' must be one of"),
        ("optim.lr=fast", r"'optim\.lr' must be a number"),
        ("data.bands=tci", r"'data\.bands' must be a list of strings"),
        ("model.config.num_feat=wide", r"'model\.config\.num_feat' must be an integer"),
        ("trainer=3", r"'trainer' must be a mapping"),
    ],
)
def test_ill_typed_values_name_the_key_and_the_type(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(CONFIGS / "tiny.yaml", [override])
    assert str(info.value).startswith(f"--set {override}: ")  # the value's origin


def test_overrides_are_read_as_yaml():
    cfg = load_config(CONFIGS / "tiny.yaml", [
        "optim.lr=1e-4",  # YAML 1.1 reads this as a string; a float field accepts it
        "optim.milestones=[10, 20]",
        "data.max_val_pairs=null",
        "val.metrics=[psnr]",
        "losses.perceptual.layer_weights={conv1_1: 1.0, relu2_1: 0.5}",
    ])
    assert cfg.optim.lr == 1e-4 and cfg.optim.milestones == [10, 20]
    assert cfg.data.max_val_pairs is None and cfg.val.metrics == ["psnr"]
    assert cfg.losses.perceptual.layer_weights == {"conv1_1": 1.0, "relu2_1": 0.5}
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_a_bad_value_given_with_set_is_named_as_given(tmp_path):
    """It was blamed on the YAML file ("tiny.yaml: config key 'optim.lr' must be > 0"),
    where the user looked for -1 in vain."""
    with pytest.raises(ConfigError, match=r"^--set optim\.lr=-1: config key 'optim\.lr' must "
                                         r"be > 0, got -1\.0$"):
        load_config(CONFIGS / "tiny.yaml", ["trainer.max_steps=5", "optim.lr=-1"])
    with pytest.raises(ConfigError, match=r"^--set model\.config\.foo=1: unknown config key"):
        load_config(CONFIGS / "tiny.yaml", ["model.config.foo=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "tiny.yaml").read_text().replace("lr: 2.0e-3", "lr: -1.0"))
    assert "lr: -1.0" in bad.read_text()
    with pytest.raises(ConfigError, match=rf"^{bad}: config key 'optim\.lr' must be > 0"):
        load_config(bad, ["trainer.max_steps=5"])  # the file's own: named by the file


def test_cross_field_checks():
    tiny = CONFIGS / "tiny.yaml"
    with pytest.raises(ConfigError, match="disagrees with the data section"):
        load_config(tiny, ["model.config.num_in_ch=3"])
    with pytest.raises(ConfigError, match="task esrgan trains rrdbnet"):
        load_config(tiny, ["model.name=srcnn"])
    with pytest.raises(ConfigError, match=r"losses\.gan\.weight > 0"):
        load_config(tiny, ["losses.gan.weight=0"])
    with pytest.raises(ConfigError, match="does not apply to task sr3"):
        load_config(CONFIGS / "tiny_sr3.yaml", ["losses.pixel.type=mse"])
    with pytest.raises(ConfigError, match="gan applies to task esrgan only"):
        load_config(CONFIGS / "tiny_regression.yaml", ["losses.gan.weight=0.1"])
    with pytest.raises(ConfigError, match=r"'val\.metrics': unknown metric 'fid'"):
        load_config(tiny, ["val.metrics=[fid]"])
    with pytest.raises(ConfigError, match=r"'data\.bands'"):
        load_config(tiny, ["data.bands=[b08]"])
    # Channel counts follow the data section when left out.
    cfg = load_config(tiny, ["data.n_images=2", "data.bands=[tci, b08]"])
    assert cfg.model.config["num_in_ch"] == 2 * 4 and cfg.channels == 4


def test_dumped_config_round_trips(tmp_path):
    cfg = load_config(CONFIGS / "tiny_sr3.yaml", ["data.root=/x"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(cfg))
    again = load_config(path)
    assert again == cfg
    assert isinstance(yaml.safe_load(dump_config(cfg)), dict)
    assert config_from_dict(cfg.to_dict()) == cfg
    assert TrainConfig().task == "esrgan"


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: is a folder; give a YAML config file"):
        load_config(tmp_path)  # it said "config file not found"
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [1, 2\n")
    with pytest.raises(ConfigError, match="not a readable YAML file"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(bad)


def test_a_key_given_twice_is_refused_naming_its_line(tmp_path):
    text = (CONFIGS / "tiny.yaml").read_text()
    assert "optim:\n" in text
    twice = tmp_path / "twice.yaml"
    twice.write_text(text.replace("optim:\n", "optim:\n  lr: 0.5\n  lr: 0.1\n", 1))
    line = twice.read_text().splitlines().index("  lr: 0.1") + 1
    with pytest.raises(ConfigError, match=rf"^.*twice.yaml: line {line}: key 'lr' given twice "):
        load_config(twice)
    # the same key in different sections is fine
    assert load_config(CONFIGS / "tiny.yaml").optim.lr > 0


def test_an_unknown_vgg_layer_names_the_key():
    with pytest.raises(ConfigError, match=r"^--set losses.perceptual.layer_weights=\{conv1_x: "
                                          r"0.1\}: config key 'losses.perceptual.layer_"
                                          r"weights.conv1_x': no VGG19 layer 'conv1_x'; choose "
                                          r"from conv1_1, relu1_1"):
        load_config(CONFIGS / "tiny.yaml", ["losses.perceptual.layer_weights={conv1_x: 0.1}"])
    # empty: the loss silently trained on ESRGAN's five layers while config.yaml said {}
    with pytest.raises(ConfigError, match=r"'losses.perceptual.layer_weights' is empty"):
        load_config(CONFIGS / "tiny.yaml", ["losses.perceptual.layer_weights={}"])
    off = load_config(CONFIGS / "tiny.yaml", ["losses.perceptual.weight=0",
                                              "losses.perceptual.layer_weights={}"])
    assert off.losses.perceptual.layer_weights == {}  # the loss is off: nothing to refuse


@pytest.mark.parametrize(
    ("override", "key", "shown"),
    [
        ("losses.pixel.weight=.nan", "losses.pixel.weight", "nan"),
        ("optim.lr=nan", "optim.lr", "nan"),
        ("optim.weight_decay=.nan", "optim.weight_decay", "nan"),
        ("optim.gamma=.inf", "optim.gamma", "inf"),
        ("optim.lr=-.inf", "optim.lr", "-inf"),
        ("optim.ema_decay=.nan", "optim.ema_decay", "nan"),
        ("data.val_fraction=.nan", "data.val_fraction", "nan"),
        ("optim.betas=[0.9, .inf]", "optim.betas[1]", "inf"),
        ("losses.perceptual.layer_weights={conv1_1: .nan}",
         "losses.perceptual.layer_weights.conv1_1", "nan"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_key(override, key, shown):
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "tiny.yaml", [override])
    assert f"config key {key!r} must be a finite number, got {shown}" in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_non_finite_model_config_and_negative_weights_are_refused():
    with pytest.raises(ConfigError, match=r"'model\.config\.beta_end' must be a finite number"):
        load_config(CONFIGS / "tiny_sr3.yaml", ["model.config.beta_end=.inf"])
    with pytest.raises(ConfigError, match=r"'data\.tile_weight_default' must be >= 0"):
        load_config(CONFIGS / "tiny.yaml", ["data.tile_weight_default=-1"])
    with pytest.raises(ConfigError, match=r"'losses\.perceptual\.layer_weights\.conv1_1' must"):
        load_config(CONFIGS / "tiny.yaml", ["losses.perceptual.layer_weights={conv1_1: -1}"])


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "{}\n"])
def test_empty_config_file_says_so(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: the config file is empty"):
        load_config(path, ["task=regression"])


def test_a_missing_clip_file_stops_training_before_it_starts_even_with_downloads(tmp_path):
    """val.allow_download lets the metric fetch a tag's weights when built; a mistyped file
    path is never fetched, so it is refused up front, naming the key."""
    from zoomsr.errors import ConfigError
    from zoomsr.training.base import check_val_weights
    from zoomsr.training.config import ValSection

    missing = str(tmp_path / "clip.pt")
    for allow in (False, True):
        with pytest.raises(ConfigError, match=r"val\.clip_pretrained.*clip\.pt"):
            check_val_weights(ValSection(metrics=["clipscore"], clip_model="ViT-B-32",
                                         clip_pretrained=missing, allow_download=allow))


@pytest.mark.parametrize(("sets", "message"), [
    (["seed=-1"], r"config key 'seed' must be in 0\.\.4294967295, got -1"),
    (["seed=4294967296"], r"config key 'seed' must be in 0\.\.4294967295"),
    (["trainer.strategy=bogus"], r"config key 'trainer.strategy': unknown strategy 'bogus' "
                                 r"\(auto, or one of Lightning's: .*ddp"),
    (["val.border=59"], r"config key 'val.border': 59 px leaves less than 11 px of the 128 x "
                        r"128 px NAIP images \(data.scale 4\); use at most 58"),
    (["losses.ssim.weight=1", "losses.ssim.window=301"],
     r"config key 'losses.ssim.window': 301 px is larger than the 128 x 128 px NAIP images"),
    (["losses.pixel.type=worldstrat", "losses.pixel.ssim_window=129"],
     r"config key 'losses.pixel.ssim_window': 129 px is larger than the 128 x 128 px NAIP"),
    (["losses.pixel.ssim_window=4"], r"config key 'losses.pixel.ssim_window' must be odd and "
                                     r">= 1, got 4"),
    # a raw ValueError (exit 1); "seed must be >= 0", the dataset's name for it, after the
    # run folder was written
    (["data.split_seed=-1"], r"^config key 'data.split_seed' must be >= 0, got -1$"),
    (["data.val_seed=-1"], r"^config key 'data.val_seed' must be >= 0, got -1$"),
    # accepted, and never fired (the scheduler steps after each iteration)
    (["optim.milestones=[0]"], r"config key 'optim.milestones\[0\]' must be a step >= 1 .*got 0"),
    (["optim.milestones=[10, -5]"], r"'optim.milestones\[1\]' must be a step >= 1 .*got -5"),
    # the discriminator's constructor said "num_feat must be >= 1, got 0" when the model was
    # built
    (["discriminator.num_feat=0"], r"^config key 'discriminator.num_feat' must be > 0, got 0$"),
])
def test_values_that_failed_late_or_as_raw_errors_are_config_errors(sets, message):
    """These failed as a raw ValueError (exit 1), or only at the first validation or training
    step (hours into a paper config)."""
    with pytest.raises(ConfigError, match=message):
        config_from_dict(apply_overrides(yaml.safe_load((CONFIGS / "tiny.yaml").read_text()),
                                         sets))
    load_config(CONFIGS / "tiny.yaml", ["val.border=58", "trainer.strategy=ddp"])


def test_one_override_given_as_a_string():
    """load_config(path, "trainer.max_steps=5") took the string as a list of characters."""
    cfg = load_config(CONFIGS / "srcnn.yaml", "trainer.max_steps=5")
    assert cfg.trainer.max_steps == 5


def test_the_pixel_loss_ssim_window_is_a_setting():
    """Types ssim and worldstrat of the pixel loss took a fixed 11 px window; the window is
    now losses.pixel.ssim_window (a small window suits the 4x images' fine detail)."""
    import torch

    from zoomsr.losses.pixel import ssim_loss
    from zoomsr.training.objectives import ContentLoss

    cfg = load_config(CONFIGS / "tiny.yaml", ["losses.pixel.type=ssim",
                                              "losses.pixel.ssim_window=5"])
    assert cfg.losses.pixel.ssim_window == 5
    objective = ContentLoss(cfg.losses)
    g = torch.Generator().manual_seed(0)
    sr, hr = torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 3, 24, 24, generator=g)
    _, terms = objective(sr, hr)
    assert torch.allclose(terms["pixel"], ssim_loss(sr, hr, window=5))
    assert not torch.allclose(terms["pixel"], ssim_loss(sr, hr, window=11))
    # images of the paper's configs (128 px) take up to 127 px; a loss unused is not checked
    load_config(CONFIGS / "tiny.yaml", ["losses.pixel.ssim_window=201"])


def test_model_constructor_errors_name_the_config_key():
    """A constructor's own checks said "num_feat must be >= 1, got 0" or "hidden_channels (8)
    must be divisible by zoom_factor**2 (16)", naming no config key."""
    from zoomsr.training.run import build_module

    srcnn = load_config(CONFIGS / "srcnn.yaml", ["model.config={hidden_channels: 8}"])
    with pytest.raises(ConfigError, match=r"^config key 'model.config': hidden_channels \(8\) "
                                          r"must be divisible by zoom_factor\*\*2 \(16\)"):
        build_module(srcnn)
    tiny = load_config(CONFIGS / "tiny.yaml")
    tiny.discriminator.num_feat = 0  # past validate_config: the constructor's check
    with pytest.raises(ConfigError, match=r"^config key 'discriminator.num_feat': num_feat must "
                                          r"be >= 1, got 0$"):
        build_module(tiny)
    # a check of one value: named with its key
    tiny = load_config(CONFIGS / "tiny.yaml", ["model.config.num_grow_ch=0"])
    with pytest.raises(ConfigError, match=r"^config key 'model.config.num_grow_ch': num_grow_ch "
                                          r"must be >= 1, got 0$"):
        build_module(tiny)


def test_a_missing_clip_loss_file_names_the_loss_keys(monkeypatch):
    """The CLIP loss's error was the CLIPScore metric's: "(--clip-pretrained PATH)",
    "(allow_download=True, CLI --allow-download)", options `zoomsr train` does not have."""
    import zoomsr.metrics.clipscore as clipscore
    from zoomsr.training.base import check_loss_weights
    from zoomsr.training.objectives import ContentLoss

    monkeypatch.setattr(clipscore, "_find_cached", lambda cfg, hub: (None, ["nowhere"]))
    cfg = load_config(CONFIGS / "tiny.yaml", ["losses.clip.weight=1"])
    for check in (check_loss_weights, ContentLoss):  # up front, and where the loss is built
        with pytest.raises(ConfigError) as info:
            check(cfg.losses)
        text = str(info.value)
        assert text.startswith("config key 'losses.clip.pretrained': CLIP weights "
                               "ViT-B-16-SigLIP-256/webli are not on this machine (looked for "
                               "nowhere)")
        assert "(losses.clip.pretrained: PATH)" in text
        assert "(losses.clip.allow_download: true)" in text
        assert "--clip-pretrained" not in text and "--allow-download" not in text
    # downloads allowed: a tag's file is fetched when the loss is built, not refused here
    check_loss_weights(load_config(CONFIGS / "tiny.yaml", [
        "losses.clip.weight=1", "losses.clip.allow_download=true"]).losses)
    for sets, key, said in (
            (["losses.clip.pretrained=null"], "losses.clip.pretrained",
             "random weights need losses.clip.allow_random: true"),
            (["losses.clip.model=no-such-model"], "losses.clip.model", "unknown open_clip model")):
        losses = load_config(CONFIGS / "tiny.yaml", ["losses.clip.weight=1", *sets]).losses
        with pytest.raises(ConfigError, match=rf"^config key '{key}': .*{said}"):
            check_loss_weights(losses)


def test_the_progress_bar_into_a_file_keeps_its_final_state_on_one_line(monkeypatch):
    """Under nohup or SLURM rich's 80 columns wrapped the final losses over six lines."""
    import io

    from zoomsr.training import callbacks

    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    bar = callbacks._progress_bar()
    assert bar._console_kwargs == {"stderr": True, "width": callbacks.LOG_WIDTH}
