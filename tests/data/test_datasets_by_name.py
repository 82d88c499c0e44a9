"""open_dataset: the datasets by name, their options checked before anything is read."""

from __future__ import annotations

import json

import pytest
from probav_fixture import write_probav

from zoomsr.data import PROBAVDataset, S2NAIPDataset, write_sample
from zoomsr.data.builder.splits import SPLITS_FILE
from zoomsr.data.datasets import DATASETS, dataset_options, open_dataset
from zoomsr.errors import ConfigError, DataError


def test_every_name_opens_its_class_with_the_split_and_options(tmp_path):
    root = write_probav(tmp_path / "probav")
    ds = open_dataset("PROBAV", root, split="train", bands="NIR", n_images=3)
    assert type(ds) is PROBAVDataset and len(ds) == 1 and ds.n_images == 3
    assert set(DATASETS) == {"s2naip", "probav", "worldstrat", "oli2msi"}
    for name in DATASETS:
        assert "root" not in dataset_options(name) and "n_images" in dataset_options(name)


def test_unknown_names_and_options_are_one_line_errors_listing_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'sen2venus' .*s2naip, probav"):
        open_dataset("sen2venus", tmp_path)
    # before the folder is looked at (it does not exist)
    with pytest.raises(ConfigError, match=r"n_image not an option of the probav dataset "
                                          r"\(it takes: split, bands, n_images"):
        open_dataset("probav", tmp_path / "missing", n_image=4)


def test_an_s2naip_split_is_the_pairs_its_splits_file_lists(tmp_path):
    root = write_sample(tmp_path / "s", pairs=6, n_frames=2, seed=0)
    all_pairs = S2NAIPDataset(root, n_images=2, skip_black_hr=False).pairs
    tiles = sorted(p.tile for p in all_pairs)
    (root / SPLITS_FILE).write_text(json.dumps({"train": tiles[:4], "val": tiles[4:], "test": []}))
    val = open_dataset("s2naip", root, split="val", n_images=2, skip_black_hr=False)
    assert sorted(p.tile for p in val.pairs) == tiles[4:]
    with pytest.raises(ConfigError, match="a split or pairs, not both"):
        open_dataset("s2naip", root, split="val", pairs=all_pairs)


def test_an_s2naip_split_without_splits_file_or_pairs_says_what_to_do(tmp_path):
    from zoomsr.errors import DataError

    root = write_sample(tmp_path / "s", pairs=2, n_frames=2, seed=0)
    with pytest.raises(DataError, match="zoomsr_splits.json: not found; .*leave the split out"):
        open_dataset("s2naip", root, split="val", n_images=2)
    (root / SPLITS_FILE).write_text(json.dumps({"train": ["1_1"], "val": []}))
    # was "no pairs to load", naming no split
    with pytest.raises(DataError, match="its 'val' split lists no pair"):
        open_dataset("s2naip", root, split="val", n_images=2)


def test_an_s2naip_split_from_a_training_runs_splits_file(tmp_path):
    from zoomsr.errors import DataError

    root = write_sample(tmp_path / "s", pairs=4, n_frames=2, seed=0)
    pairs = S2NAIPDataset(root, n_images=2, skip_black_hr=False).pairs
    run = tmp_path / "splits.json"  # zoomsr train writes image_id/tile entries
    run.write_text(json.dumps({"train": [f"{p.image_id}/{p.tile}" for p in pairs[1:]],
                               "val": [f"{pairs[0].image_id}/{pairs[0].tile}"]}))
    val = open_dataset("s2naip", root, split="val", splits_file=run, n_images=2,
                       skip_black_hr=False)
    assert val.pairs == [pairs[0]]
    with pytest.raises(DataError, match="a run on the s2naip dataset, not on probav"):
        open_dataset("probav", root, split="train", splits_file=run)
    with pytest.raises(DataError, match="splits file not found"):
        open_dataset("s2naip", root, split="val", splits_file=tmp_path / "nope.json")
    # a benchmark dataset run's file, whatever its lists hold
    other = tmp_path / "probav_run.json"
    other.write_text(json.dumps({"dataset": "probav", "train": [], "val": [
        f"{pairs[0].image_id}/{pairs[0].tile}"]}))
    with pytest.raises(DataError, match=r"probav_run.json: the splits of a run on the probav "
                                        r"dataset, not on s2naip"):
        open_dataset("s2naip", root, split="val", splits_file=other, n_images=2)


def test_a_training_runs_splits_file_picks_its_items_from_their_source_split(tmp_path):
    root = write_probav(tmp_path / "probav")
    ids = [s.name for s in PROBAVDataset(root, split="train").imgsets]
    run = tmp_path / "splits.json"
    run.write_text(json.dumps({"dataset": "probav", "train": ids[1:], "val": ids[:1],
                               "sources": {"train": "train", "val": "train"},
                               "options": {}}))
    val = open_dataset("probav", root, "val", splits_file=run, n_images=2)
    assert len(val) == 1 and val[0]["id"] == ids[0] and val.n_images == 2
    assert [val[i]["id"] for i in range(len(val))] == ids[:1]
    import pickle

    assert pickle.loads(pickle.dumps(val))[0]["id"] == ids[0]  # (DataLoader workers)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"dataset": "oli2msi", "val": ids[:1]}))
    with pytest.raises(DataError, match="a run on the oli2msi dataset, not on probav"):
        open_dataset("probav", root, "val", splits_file=other)
    gone = tmp_path / "gone.json"
    gone.write_text(json.dumps({"dataset": "probav", "val": ["imgset9999"],
                                "options": {"bands": ["NIR"]}}))
    with pytest.raises(DataError, match=r"1 of its 'val' items are not in the train split .*"
                                        r"imgset9999.*options \{'bands': \['NIR'\]\}"):
        open_dataset("probav", root, "val", splits_file=gone)
    with pytest.raises(DataError, match="no list of items for the 'test' split"):
        open_dataset("probav", root, "test", splits_file=run)
