"""Train/val splits and the S2-NAIP data module."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from zoomsr.data import ResumableSampler, scan_pairs
from zoomsr.errors import ConfigError, DataError
from zoomsr.grid import Tile, iter_neighbourhood
from zoomsr.io.png import read_png, write_png
from zoomsr.training.datamodule import S2NAIPDataModule, split_by_groups, split_pairs


def _blocks(pairs, group):
    return {(Tile.parse(p.tile).col // group, Tile.parse(p.tile).row // group) for p in pairs}


def test_group_split_is_seeded_disjoint_and_keeps_blocks_whole(sample_root):
    pairs = scan_pairs(sample_root)
    train, val = split_by_groups(pairs, 0.25, group=2, seed=0)
    assert len(train) + len(val) <= len(pairs)
    assert len(val) >= 0.25 * len(pairs) and train
    assert not _blocks(train, 2) & _blocks(val, 2)
    # No train tile touches a val tile, not even at a corner (the rest of its block stays).
    val_tiles = {p.tile for p in val}
    for p in train:
        assert not {str(t) for t in iter_neighbourhood(Tile.parse(p.tile))} & val_tiles
    assert split_by_groups(pairs, 0.25, 2, 0) == (train, val)
    other = split_by_groups(pairs, 0.25, 2, 1)
    assert other[1] != val
    with pytest.raises(DataError, match="one block of 64x64 tiles"):
        split_by_groups(pairs, 0.25, group=64, seed=0)


def test_splits_file_in_root_or_config(sample_root, tmp_path, tiny_config):
    pairs = scan_pairs(sample_root)
    tiles = [p.tile for p in pairs]
    path = tmp_path / "splits.json"
    val_entries = [f"{pairs[0].image_id}/{pairs[0].tile}", tiles[1]]
    path.write_text(json.dumps({"train": tiles[2:], "val": val_entries, "test": []}))
    cfg = tiny_config("tiny", f"data.splits={path}").data
    train, val = split_pairs(sample_root, cfg)
    assert [p.tile for p in val] == tiles[:2] and len(train) == len(tiles) - 2
    path.write_text(json.dumps({"train": tiles, "val": tiles[:1]}))
    with pytest.raises(DataError, match="in both train and val"):
        split_pairs(sample_root, cfg)
    path.write_text(json.dumps({"train": tiles}))
    with pytest.raises(DataError, match="no 'val' list"):
        split_pairs(sample_root, cfg)
    path.write_text(json.dumps({"train": tiles, "val": ["1_1"]}))
    with pytest.raises(DataError, match="no pair of the dataset is in the 'val' split; list "
                                        "some of the dataset's tiles under 'val' in it"):
        split_pairs(sample_root, cfg)
    # the build's own file: how to get a val split (it said only that there is none)
    built = sample_root / "zoomsr_splits.json"  # the session's sample: removed again
    built.write_text(json.dumps({"train": tiles, "val": []}))
    try:
        with pytest.raises(DataError, match=r"no pair of the dataset is in the 'val' split; "
                                            r"the build put no whole --split-group block in "
                                            r"val .*smaller --split-group, or give data.splits"):
            split_pairs(sample_root, tiny_config("tiny").data)
    finally:
        built.unlink()
    missing = tiny_config("tiny", f"data.splits={tmp_path / 'none.json'}").data
    with pytest.raises(DataError, match="splits file not found"):
        split_pairs(sample_root, missing)


def test_builder_splits_file_in_root_is_used(sample_root, tmp_path, tiny_config):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(sample_root, root)
    tiles = [p.tile for p in scan_pairs(root)]
    # The format `zoomsr data build` writes: split lists plus metadata keys.
    (root / "zoomsr_splits.json").write_text(json.dumps({
        "group_tiles": 16, "fractions": [0.8, 0.1, 0.1], "seed": 0,
        "train": tiles[3:], "val": tiles[:2], "test": [], "buffer": tiles[2:3],
    }))
    train, val = split_pairs(root, tiny_config("tiny").data)
    assert [p.tile for p in val] == tiles[:2] and [p.tile for p in train] == tiles[3:]


def test_datamodule_batches_in_both_layouts(tiny_config):
    cfg = tiny_config("tiny")
    dm = S2NAIPDataModule(cfg.data, cfg.layout, cfg.seed)
    dm.setup("fit")
    assert len(dm.val_set) <= cfg.data.max_val_pairs
    assert not {p.tile for p in dm.train_set.pairs} & {p.tile for p in dm.val_set.pairs}
    batch = next(iter(dm.train_dataloader()))
    assert batch["lr"].shape == (4, 12, 32, 32) and batch["hr"].shape == (4, 3, 128, 128)
    # Validation frames are seeded: two passes give the same tensors.
    first = next(iter(dm.val_dataloader()))
    again = next(iter(dm.val_dataloader()))
    assert torch.equal(first["lr"], again["lr"])

    frames = tiny_config("tiny_regression")
    dm = S2NAIPDataModule(frames.data, frames.layout)
    assert next(iter(dm.train_dataloader()))["lr"].shape == (4, 4, 3, 32, 32)


def test_tile_weights_drive_a_weighted_sampler(tiny_config, sample_root, tmp_path):
    weights = {p.tile: 1.0 for p in scan_pairs(sample_root)[:4]}
    path = tmp_path / "tile_weights.json"
    path.write_text(json.dumps(weights))
    cfg = tiny_config("tiny", f"data.tile_weights={path}", "data.tile_weight_default=0.0")
    loader = S2NAIPDataModule(cfg.data, cfg.layout).train_dataloader()
    assert isinstance(loader.sampler, ResumableSampler)
    drawn = {loader.dataset.pairs[i].tile for i, _ in loader.sampler}
    assert drawn <= set(weights) and len(drawn) > 1


def test_missing_dataset_is_a_data_error(tiny_config, tmp_path):
    cfg = tiny_config("tiny", f"data.root={tmp_path / 'nowhere'}")
    with pytest.raises(DataError, match="nowhere: dataset folder not found"):
        S2NAIPDataModule(cfg.data, cfg.layout)
    cfg = tiny_config("tiny", "data.root=null")
    with pytest.raises(ConfigError, match="data.root' is not set"):
        S2NAIPDataModule(cfg.data, cfg.layout)


def _no_model(monkeypatch):
    """Make building a model fail loudly: the checks under test must come before it."""
    import zoomsr.training.run as run

    def refuse(cfg):
        raise AssertionError("the model was built before the data section was checked")

    monkeypatch.setattr(run, "build_module", refuse)
    return run


def test_missing_band_is_a_config_error_before_the_model(tiny_config, monkeypatch, tmp_path):
    run = _no_model(monkeypatch)
    cfg = tiny_config("tiny", "data.bands=[tci, b05]")
    with pytest.raises(ConfigError, match=r"config key 'data\.bands': band b05 is not in the "
                                          r"dataset .*b05\.png is missing") as info:
        run.train(cfg, tmp_path / "out")
    assert len(str(info.value).splitlines()) == 1


def test_band_missing_for_a_val_tile_is_a_config_error(sample_root, tiny_config, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(sample_root, root)
    cfg = tiny_config("tiny", f"data.root={root}", "data.bands=[tci, b08]")
    dm = S2NAIPDataModule(cfg.data, cfg.layout)
    train, val = split_pairs(root, cfg.data)
    for p in train:
        p.band_path("b08").touch()  # only existence is checked up front for training tiles
    for p in val:  # validation tiles' files are read up front
        steps = read_png(p.band_path("tci")).shape[0]
        write_png(p.band_path("b08"), np.zeros((steps, 32), np.uint16))
    dm.check()
    val[0].band_path("b08").unlink()
    with pytest.raises(ConfigError, match=rf"'data\.bands': band b08 is missing for 1 of "
                                          rf"\d+ validation tiles \(e\.g\. .*{val[0].tile}"):
        S2NAIPDataModule(cfg.data, cfg.layout).check()


def test_bad_tile_weights_are_a_config_error_before_the_model(tiny_config, monkeypatch,
                                                              tmp_path):
    run = _no_model(monkeypatch)
    missing = tmp_path / "no_weights.json"
    cfg = tiny_config("tiny", f"data.tile_weights={missing}")
    with pytest.raises(ConfigError, match=r"config key 'data\.tile_weights': .*no_weights\.json: "
                                          r"tile-weights file not found"):
        run.train(cfg, tmp_path / "out")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"1_1": 1.0}))
    cfg = tiny_config("tiny", f"data.tile_weights={partial}")
    with pytest.raises(ConfigError, match=r"'data\.tile_weights': .*tiles have no weight"):
        run.train(cfg, tmp_path / "out")


def test_empty_val_split_is_reported_before_the_model(sample_root, tiny_config, monkeypatch,
                                                      tmp_path):
    run = _no_model(monkeypatch)
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"train": [p.tile for p in scan_pairs(sample_root)], "val": []}))
    cfg = tiny_config("tiny", f"data.splits={path}")
    with pytest.raises(DataError, match="no pair of the dataset is in the 'val' split"):
        run.train(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_each_process_gets_a_batch_when_its_share_is_below_one(tiny_config):
    """Full batches only, but under DDP a process sees 1/world size of the split: when that
    share is below one batch, dropping the last batch would leave it none."""
    from types import SimpleNamespace

    cfg = tiny_config("tiny")
    dm = S2NAIPDataModule(cfg.data, cfg.layout, cfg.seed)
    dm.setup("fit")
    n = len(dm.train_set)
    assert n >= cfg.data.batch_size and dm.train_dataloader().drop_last
    dm.trainer = SimpleNamespace(world_size=-(-n // (cfg.data.batch_size - 1)))
    assert not dm.train_dataloader().drop_last  # each share is below one batch
    dm.trainer = SimpleNamespace(world_size=1)
    assert dm.train_dataloader().drop_last


def test_a_dataset_of_another_scale_is_a_config_error_before_the_model(sample_root, tiny_config,
                                                                       monkeypatch, tmp_path):
    """A dataset built with ``data build --scale 3`` records it: training at data.scale=4 would
    find every NAIP image the wrong size, so it stops before the model, naming the key."""
    import json

    from zoomsr.data.layout import METADATA_FILE, recorded_scale

    run = _no_model(monkeypatch)
    root = tmp_path / "ds"
    shutil.copytree(sample_root, root)
    assert recorded_scale(root) == 4
    S2NAIPDataModule(tiny_config("tiny", f"data.root={root}").data, "stacked").check()
    meta = json.loads((root / METADATA_FILE).read_text())
    (root / METADATA_FILE).write_text(json.dumps({**meta, "scale": 3}))
    cfg = tiny_config("tiny", f"data.root={root}")
    with pytest.raises(ConfigError, match=r"'data\.scale' is 4, but the dataset .* records scale "
                                          r"3 \(NAIP images of 96 px.*set data\.scale=3") as info:
        run.train(cfg, tmp_path / "out")
    assert len(str(info.value).splitlines()) == 1 and not (tmp_path / "out").exists()


def test_more_images_than_the_series_hold_is_warned_about(sample_root, tiny_config):
    """data.n_images=100 on 4-step series trained with every step repeated 25x, silently."""
    import warnings

    from zoomsr.errors import ZoomsrWarning

    cfg = tiny_config("tiny", "data.n_images=100")
    with pytest.warns(ZoomsrWarning, match=r"config key 'data.n_images' is 100, but the series "
                                           r"of .* have at most 4 time steps .* \(about 25x\)"):
        S2NAIPDataModule(cfg.data, cfg.layout, cfg.seed).check()
    fits = tiny_config("tiny", "data.n_images=4")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZoomsrWarning)
        S2NAIPDataModule(fits.data, fits.layout, fits.seed).check()


def test_an_unreadable_validation_file_is_found_before_any_work(sample_root, tiny_config,
                                                                 monkeypatch, tmp_path):
    """A corrupt Sentinel-2 PNG of a validation tile was found only at the first validation
    (hours into a paper config's run), and again at every resume; training tiles' files are
    skipped when drawn, validation stops at them."""
    run = _no_model(monkeypatch)
    root = tmp_path / "ds"
    shutil.copytree(sample_root, root)
    cfg = tiny_config("tiny", f"data.root={root}", "data.max_val_pairs=3")
    train, val = split_pairs(root, cfg.data)
    assert len(val) == 3
    S2NAIPDataModule(cfg.data, cfg.layout).check()
    # garbage, and a PNG whose header (and size) is right but whose data are cut off
    bad = val[1].band_path("tci")
    good = bad.read_bytes()
    for broken, why in ((b"garbage\n", "not a readable image"),
                        (good[: len(good) // 2], "corrupt or truncated image")):
        bad.write_bytes(broken)
        with pytest.raises(DataError, match=rf"^{bad}: {why}.*validation tile "
                                            rf".*{val[1].tile}") as info:
            run.train(cfg, tmp_path / "out")
        assert len(str(info.value).splitlines()) == 1 and not (tmp_path / "out").exists()
    # what validation does not read is not checked: the validation pairs past
    # data.max_val_pairs, those past trainer.limit_val_batches, training pairs
    bad.write_bytes(good)
    split_pairs(root, tiny_config("tiny", f"data.root={root}", "data.max_val_pairs=null")
                .data)[1][3].band_path("tci").write_bytes(b"garbage")
    train[0].band_path("tci").write_bytes(b"garbage")
    S2NAIPDataModule(cfg.data, cfg.layout).check()
    bad.write_bytes(b"garbage")
    S2NAIPDataModule(cfg.data, cfg.layout).check(val_limit=1)
    with pytest.raises(DataError, match=rf"^{bad}: "):
        S2NAIPDataModule(cfg.data, cfg.layout).check(val_limit=2)
