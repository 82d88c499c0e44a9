"""Pairing prediction and target folders: relative paths and the S2-NAIP layout."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoomsr.errors import DataError
from zoomsr.evaluation.pairing import list_images, pair_images


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)
    return path


def test_relative_paths_match_across_extensions(tmp_path):
    pred, target = tmp_path / "pred", tmp_path / "target"
    for rel in ("a.png", "sub/b.png", "only_target.png"):
        _png(target / rel)
    for rel in ("a.jpg", "sub/b.tif", "extra.png"):  # pairing does not read the files
        (pred / rel).parent.mkdir(parents=True, exist_ok=True)
        (pred / rel).write_bytes(b"x")
    (target / "notes.txt").write_text("ignored")
    (target / ".hidden.png").write_bytes(b"ignored")
    p = pair_images(pred, target)
    assert p.layout == "relative"
    assert [(x.key, x.pred.name, x.target.name) for x in p.pairs] == [
        ("a", "a.jpg", "a.png"), ("sub/b", "b.tif", "b.png")]
    assert p.missing_pred == [target / "only_target.png"]
    assert p.unmatched_pred == [pred / "extra.png"]
    assert not p.complete
    assert p.problems() == [f"no prediction for target {target / 'only_target.png'}",
                            f"no target for prediction {pred / 'extra.png'}"]


def test_s2naip_targets_match_predictions_by_tile(tmp_path):
    pred, target = tmp_path / "pred", tmp_path / "ds"
    _png(target / "naip" / "uuid-1" / "12345_67890" / "rgb.png")
    _png(target / "naip" / "uuid-2" / "12346_67890" / "rgb.png")
    _png(target / "naip" / "uuid-2" / "12347_67890" / "rgb.png")
    _png(pred / "12345_67890.png")  # {tile}.png
    _png(pred / "12346_67890" / "sr.png")  # {tile}/...png
    _png(pred / "readme.png")  # no tile id
    p = pair_images(pred, target / "naip")  # the naip folder itself works too
    assert p.layout == "s2naip"
    assert [(x.key, x.pred.relative_to(pred).as_posix()) for x in p.pairs] == [
        ("12345_67890", "12345_67890.png"), ("12346_67890", "12346_67890/sr.png")]
    assert p.missing_pred == [target / "naip" / "uuid-2" / "12347_67890" / "rgb.png"]
    assert p.unmatched_pred == [pred / "readme.png"]
    assert pair_images(pred, target).layout == "s2naip"


def test_mirrored_s2naip_predictions_match(tmp_path):
    rel = Path("naip/u/1_2/rgb.png")
    _png(tmp_path / "t" / rel)
    _png(tmp_path / "p" / rel)
    p = pair_images(tmp_path / "p", tmp_path / "t")
    assert [x.key for x in p.pairs] == ["1_2"] and p.complete


def test_ambiguous_keys_are_listed_not_paired(tmp_path):
    pred, target = tmp_path / "p", tmp_path / "t"
    _png(target / "a.png")
    _png(target / "b.png")
    _png(pred / "a.png")
    _png(pred / "a.jpg")
    _png(pred / "b.png")
    p = pair_images(pred, target)
    assert [x.key for x in p.pairs] == ["b"]
    assert sorted(f.name for f in p.ambiguous["a"]) == ["a.jpg", "a.png", "a.png"]
    assert not p.missing_pred and not p.unmatched_pred
    assert "matches several files" in p.problems()[0]


def test_folder_errors(tmp_path):
    _png(tmp_path / "t" / "a.png")
    with pytest.raises(DataError, match="prediction folder not found"):
        pair_images(tmp_path / "missing", tmp_path / "t")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no PNG, JPEG or GeoTIFF"):
        pair_images(tmp_path / "empty", tmp_path / "t")
    with pytest.raises(DataError, match="not a folder"):
        list_images(tmp_path / "t" / "a.png")
    _png(tmp_path / "p" / "zzz.png")
    with pytest.raises(DataError, match="no prediction .* matches a target"):
        pair_images(tmp_path / "p", tmp_path / "t")


def _dataset_root(root: Path) -> Path:
    """A dataset root as `zoomsr data build` / `data info --plot` leave it."""
    _png(root / "naip" / "uuid-1" / "12345_67890" / "rgb.png")
    _png(root / "naip" / "uuid-1" / "12346_67890" / "rgb.png")
    _png(root / "naip" / "uuid-2" / "12347_67890" / "rgb.png")
    for tile in ("12345_67890", "12346_67890", "12347_67890"):
        _png(root / "sentinel2" / tile / "tci.png")
        _png(root / "old_naip" / tile / "2016.png")
    _png(root / "montage.png")
    _png(root / "tiles.png")
    (root / "zoomsr_splits.json").write_text(
        '{"group_tiles": 16, "seed": 0, "train": ["12345_67890"], '
        '"val": ["uuid-1/12346_67890", "12347_67890"], "test": [], "buffer": []}'
    )
    return root


def test_dataset_root_is_read_through_its_naip_folder(tmp_path):
    root, pred = _dataset_root(tmp_path / "ds"), tmp_path / "pred"
    _png(pred / "12345_67890.png")
    _png(pred / "12346_67890.png")
    p = pair_images(pred, root)
    assert p.layout == "s2naip"
    assert [x.key for x in p.pairs] == ["12345_67890", "12346_67890"]
    assert p.pairs[0].target == root / "naip" / "uuid-1" / "12345_67890" / "rgb.png"
    assert p.missing_pred == [root / "naip" / "uuid-2" / "12347_67890" / "rgb.png"]
    assert not p.unmatched_pred and not p.ambiguous


def test_folder_with_a_non_s2naip_naip_subfolder_keeps_relative_paths(tmp_path):
    _png(tmp_path / "t" / "naip" / "a.png")
    _png(tmp_path / "t" / "b.png")
    _png(tmp_path / "p" / "naip" / "a.png")
    _png(tmp_path / "p" / "b.png")
    p = pair_images(tmp_path / "p", tmp_path / "t")
    assert p.layout == "relative" and [x.key for x in p.pairs] == ["b", "naip/a"]


def test_a_folder_with_naip_but_no_dataset_beside_it_keeps_every_target(tmp_path):
    """Only a real dataset root (sentinel2/ or the splits file beside naip/) is narrowed to
    naip/: elsewhere a target outside naip/ is still a target, not dropped silently."""
    _png(tmp_path / "t" / "naip" / "u1" / "12345_67890" / "rgb.png")
    _png(tmp_path / "t" / "u2" / "12346_67890" / "rgb.png")
    _png(tmp_path / "p" / "12345_67890.png")
    _png(tmp_path / "p" / "12346_67890.png")
    p = pair_images(tmp_path / "p", tmp_path / "t")
    assert [x.key for x in p.pairs] == ["12345_67890", "12346_67890"]


@pytest.mark.parametrize("naip", [False, True])
def test_split_keeps_the_tiles_of_one_split(tmp_path, naip):
    root, pred = _dataset_root(tmp_path / "ds"), tmp_path / "pred"
    for tile in ("12345_67890", "12346_67890", "12347_67890"):
        _png(pred / f"{tile}.png")
    _png(pred / "99_99.png")  # not a tile of the dataset: still reported
    p = pair_images(pred, root / "naip" if naip else root, split="val")
    assert [x.key for x in p.pairs] == ["12346_67890", "12347_67890"]
    assert p.outside_split == [pred / "12345_67890.png"] and p.split == "val"
    assert p.unmatched_pred == [pred / "99_99.png"] and not p.missing_pred
    train = pair_images(pred, root, split="train")
    assert [x.key for x in train.pairs] == ["12345_67890"]


def test_split_errors(tmp_path):
    root, pred = _dataset_root(tmp_path / "ds"), tmp_path / "pred"
    _png(pred / "12345_67890.png")
    with pytest.raises(DataError, match="--split must be one of"):
        pair_images(pred, root, split="validation")
    with pytest.raises(DataError, match="no target .* in the 'test' split"):
        pair_images(pred, root, split="test")
    (root / "zoomsr_splits.json").unlink()
    with pytest.raises(DataError, match="zoomsr_splits.json not found"):
        pair_images(pred, root, split="val")
    _png(tmp_path / "rel" / "a.png")
    (tmp_path / "rel" / "zoomsr_splits.json").write_text('{"val": ["a"]}')
    with pytest.raises(DataError, match="--split needs S2-NAIP targets"):
        pair_images(pred, tmp_path / "rel", split="val")


def test_no_prediction_in_the_split_says_so_and_where_they_are(tmp_path):
    """The user trial: predictions of train/val tiles only, --split val... the error said no
    prediction matches a target, with an example pair that does match."""
    root, pred = _dataset_root(tmp_path / "ds"), tmp_path / "pred"
    _png(pred / "12346_67890.png")  # val
    _png(pred / "12347_67890.png")  # val
    _png(pred / "99_99.png")  # no tile of the dataset
    with pytest.raises(DataError) as info:
        pair_images(pred, root, split="train")
    message = str(info.value)
    assert "\n" not in message and "matches a target" not in message
    assert f"none of the 3 predictions in {pred} is a tile of the 'train' split" in message
    assert "2 are tiles of other splits (2 in val)" in message
    assert "1 match no tile of the dataset" in message


def test_ambiguous_ids_are_listed_first(tmp_path):
    pred, target = tmp_path / "p", tmp_path / "t"
    for k in range(30):
        _png(target / f"{k:02d}.png")
    _png(pred / "00.png")
    _png(pred / "00.jpg")
    _png(pred / "01.png")
    _png(pred / "extra.png")
    p = pair_images(pred, target)
    lines = p.problems()
    assert "'00' matches several files" in lines[0]
    assert p.problem_counts() == ("1 id claimed by several files, 28 targets without a "
                                  "prediction, 1 prediction without a target")


def test_no_pair_error_names_ambiguous_ids(tmp_path):
    _png(tmp_path / "t" / "naip" / "u" / "1_2" / "rgb.png")
    _png(tmp_path / "p" / "1_2.png")
    _png(tmp_path / "p" / "1_2" / "sr.png")
    with pytest.raises(DataError, match="1 id claimed by several files, e.g. '1_2'"):
        pair_images(tmp_path / "p", tmp_path / "t")


def test_the_same_folder_as_predictions_and_targets_is_refused(tmp_path):
    """Every file paired with itself: PSNR "0 (+2 inf)", exit 0."""
    _png(tmp_path / "x" / "a.png")
    _png(tmp_path / "ds" / "naip" / "a.png")
    for pred, target in ((tmp_path / "x", tmp_path / "x"),
                         (tmp_path / "x", tmp_path / "x" / "." / ""),
                         (tmp_path / "ds" / "naip", tmp_path / "ds")):
        with pytest.raises(DataError, match=rf"^{pred}: the predictions and the targets are "
                                            "the same folder"):
            pair_images(pred, target)


def test_infer_side_outputs_are_no_predictions(tmp_path):
    """A prediction folder of `zoomsr infer` outputs with --save-lr --preview: the LR mosaics
    and previews were listed as predictions without a target."""
    pred, target = tmp_path / "pred", tmp_path / "target"
    _png(target / "a.png")
    _png(target / "b.lr.png")  # a target named so is not a side output
    for rel in ("a.tif", "a.lr.tif", "a.preview.png", "b.lr.tif", "c.lr.tif"):
        (pred / rel).parent.mkdir(parents=True, exist_ok=True)
        (pred / rel).write_bytes(b"x")
    p = pair_images(pred, target)
    assert [(x.key, x.pred.name) for x in p.pairs] == [("a", "a.tif"), ("b.lr", "b.lr.tif")]
    assert p.unmatched_pred == [pred / "c.lr.tif"]  # no a.tif-like partner: a prediction


@pytest.mark.parametrize(("pred", "target"), [("ds/naip/uuid-1", "ds"), ("ds", "ds/naip"),
                                              ("ds/naip/uuid-2", "ds/naip")])
def test_predictions_that_are_the_target_files_are_refused(tmp_path, pred, target):
    """--pred and --target swapped or nested: every pair was a file with itself, PSNR inf,
    SSIM 1, exit 0; only the very same folder (or DATASET/naip and DATASET) was caught."""
    _dataset_root(tmp_path / "ds")
    with pytest.raises(DataError) as info:
        pair_images(tmp_path / pred, tmp_path / target)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"--pred {tmp_path / pred} and --target {tmp_path / target}: ")
    assert "are target files themselves" in message
    assert message.endswith("--pred and --target are probably swapped or point at the same "
                            "images")


def test_a_prediction_hard_linked_to_its_target_is_refused(tmp_path):
    """The same file under another name (a hard link): os.path.samefile's test, not paths."""
    _png(tmp_path / "t" / "a.png")
    _png(tmp_path / "t" / "b.png")
    _png(tmp_path / "p" / "a.png", 3)
    os.link(tmp_path / "t" / "b.png", tmp_path / "p" / "b.png")
    with pytest.raises(DataError, match=r"1 of the 2 predictions are target files themselves "
                                        rf"\(e\.g\. {tmp_path / 'p' / 'b.png'} is "
                                        rf"{tmp_path / 't' / 'b.png'}\)"):
        pair_images(tmp_path / "p", tmp_path / "t")


def _twice_captured(root: Path) -> tuple[Path, Path]:
    """A dataset whose tile 30000_50000 is captured twice (uuidA, uuidB) and whose split lists
    one capture in train, the other in val; predictions per capture, flat for the rest."""
    ds, pred = root / "ds", root / "pred"
    for rel in ("uuidA/30000_50000", "uuidB/30000_50000", "uuidA/30000_50001",
                "uuidC/30000_50002"):
        _png(ds / "naip" / rel / "rgb.png")
    (ds / "sentinel2").mkdir()
    (ds / "zoomsr_splits.json").write_text(
        '{"train": ["uuidB/30000_50000"], "val": ["uuidA/30000_50000", "30000_50001"], '
        '"test": ["30000_50002"], "buffer": []}')
    for rel in ("uuidA/30000_50000.png", "uuidB/30000_50000.png", "30000_50001.png",
                "30000_50002.png"):
        _png(pred / rel)
    return ds, pred


def test_a_split_naming_one_capture_of_a_tile_captured_twice(tmp_path):
    """The captures of a tile were told apart only when both were in the split: --split train
    failed ("1 id claimed by several files"), --split val dropped uuidA's as ambiguous."""
    ds, pred = _twice_captured(tmp_path)
    every = pair_images(pred, ds)
    assert [x.key for x in every.pairs] == ["30000_50001", "30000_50002", "uuidA/30000_50000",
                                            "uuidB/30000_50000"] and every.complete
    train = pair_images(pred, ds, split="train")
    assert [(x.key, x.pred) for x in train.pairs] == [
        ("uuidB/30000_50000", pred / "uuidB" / "30000_50000.png")]
    assert train.pairs[0].target == ds / "naip" / "uuidB" / "30000_50000" / "rgb.png"
    assert train.outside_split == [pred / "30000_50001.png", pred / "30000_50002.png",
                                   pred / "uuidA" / "30000_50000.png"]
    assert train.complete
    val = pair_images(pred, ds / "naip", split="val")
    assert [(x.key, x.target.parts[-3]) for x in val.pairs] == [
        ("30000_50001", "uuidA"), ("uuidA/30000_50000", "uuidA")]
    assert val.outside_split == [pred / "30000_50002.png", pred / "uuidB" / "30000_50000.png"]
    assert val.complete
    # a prediction naming no capture of that tile: which one? listed, not guessed
    _png(pred / "30000_50000.png")
    val = pair_images(pred, ds, split="val")
    assert [x.key for x in val.pairs] == ["30000_50001", "uuidA/30000_50000"]
    assert val.ambiguous == {"30000_50000": [ds / "naip" / "uuidA" / "30000_50000" / "rgb.png",
                                             pred / "30000_50000.png"]}
    assert pair_images(pred, ds, split="test").outside_split[0] == pred / "30000_50000.png"


def test_no_prediction_in_the_split_counts_each_capture_in_its_own_split(tmp_path):
    ds, pred = _twice_captured(tmp_path)
    for rel in ("30000_50001.png", "30000_50002.png"):
        (pred / rel).unlink()
    with pytest.raises(DataError, match=r"2 are tiles of other splits \(1 in train, 1 in val\)"):
        pair_images(pred, ds, split="test")


def test_the_layout_names_it_copies_are_the_data_layers():
    # pairing spells them itself (it does not import the data layer, to stay light)
    from zoomsr.data import layout
    from zoomsr.data.builder import splits
    from zoomsr.evaluation import pairing

    assert pairing.SPLIT_NAMES == splits.SPLIT_NAMES
    assert pairing.SPLITS_FILE == layout.SPLITS_FILE
    assert pairing.NAIP_DIR == layout.NAIP_DIR


@pytest.mark.parametrize(("folders", "kind"), [
    (["train/NIR/imgset0594", "test/RED/imgset1161"], "PROBA-V copy"),
    (["hr_dataset/A1", "lr_dataset/A1/L2A"], "WorldStrat copy"),
    (["test_hr", "test_lr"], "OLI2MSI copy"),
])
def test_a_benchmark_datasets_folder_as_target_points_to_the_benchmark(tmp_path, folders,
                                                                        kind):
    """Predictions named by item id against a benchmark dataset's folder pair with none of
    its files: the error says where such files are scored."""
    target = tmp_path / "data"
    for folder in folders:
        _png(target / folder / "HR.png")
    _png(tmp_path / "preds" / "imgset0594.png")
    with pytest.raises(DataError, match=rf"is a {kind}: score other methods' files on it "
                                        r"with `zoomsr benchmark`"):
        pair_images(tmp_path / "preds", target)
    (tmp_path / "plain").mkdir()
    _png(tmp_path / "plain" / "x.png")
    with pytest.raises(DataError) as info:  # an ordinary folder: no such hint
        pair_images(tmp_path / "preds", tmp_path / "plain")
    assert "zoomsr benchmark" not in str(info.value)
