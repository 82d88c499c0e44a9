"""zoomsr data check --dataset probav|worldstrat|oli2msi: every item of every split read."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataset_fixtures import fixture_module
from zoomsr.data import PROBAVDataset
from zoomsr.data.datasets import check_items
from zoomsr.errors import ConfigError


@pytest.fixture
def probav(tmp_path) -> Path:
    return fixture_module("probav_fixture").write_probav(tmp_path / "probav")


def test_a_clean_copy_passes_every_split(cli, probav):
    code, stdout, stderr = cli("data", "check", probav, "--dataset", "probav", "--no-progress")
    assert code == 0, stderr
    assert stdout.strip().endswith("probav: train 3 item(s), test 2 item(s), 0 error(s)")


def test_every_frame_is_read_not_only_those_a_model_would_take(cli, probav):
    bad = probav / "train" / "RED" / "imgset0000" / "LR003.png"  # its least clear frame
    bad.write_bytes(b"\x89PNG\r\n\x1a\n-truncated")
    PROBAVDataset(probav, split="train", n_images=1)[1]  # evaluation never reads it
    code, stdout, _ = cli("data", "check", probav, "--dataset", "probav", "--split", "train",
                          "--no-progress")
    assert code == 1
    errors = [line for line in stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0]
    assert stdout.strip().endswith("train 3 item(s), 1 error(s)")


def test_an_incomplete_image_set_does_not_stop_the_check_of_its_bands_others(cli, probav):
    """imgset0000 lacks its HR.png: listed; imgset0001 of the same band (RED) is still read,
    its truncated frame found too (the band was not opened at all: nothing of it was read)."""
    (probav / "train" / "RED" / "imgset0000" / "HR.png").unlink()
    bad = probav / "train" / "RED" / "imgset0001" / "LR001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n-truncated")
    results = check_items("probav", probav, ["train"])
    assert results[0].items == 2  # imgset0001 (RED) and imgset0594 (NIR)
    problems = results[0].problems
    assert len(problems) == 2
    assert "imgset0000" in problems[0] and "HR.png" in problems[0]
    assert str(bad) in problems[1]
    # a run that names its image sets is not stopped by a damaged one it does not use
    ds = PROBAVDataset(probav, "train", bands="RED", imgsets=["imgset0001"], n_images=1)
    assert [s.name for s in ds.imgsets] == ["imgset0001"]


def test_a_missing_split_folder_is_one_problem_and_the_others_are_checked(cli, probav):
    import shutil

    shutil.rmtree(probav / "test")
    results = check_items("probav", probav)
    assert [(r.split, r.items, len(r.problems)) for r in results] == [("train", 3, 0),
                                                                      ("test", 0, 1)]
    assert str(probav / "test") in results[1].problems[0]


def test_oli2msi_and_options(cli, tmp_path):
    root = tmp_path / "oli"
    fixture_module("oli2msi_fixture").write_oli2msi(root, "train", n=2)
    code, stdout, stderr = cli("data", "check", root, "--dataset", "oli2msi", "--split",
                               "train", "-o", "lr_size=8", "--no-progress")
    assert code == 0, stderr
    assert "train 2 item(s), 0 error(s)" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--dataset", "probav", "--bands", "b08"), "--bands and --scale check S2-NAIP"),
        (("--split", "train"), "apply to a benchmark --dataset"),
        (("--dataset", "probav", "-o", "n_images=3"), "n_images: set by the check"),
        (("--dataset", "probav", "-o", "band=NIR"), "band not an option of the probav"),
        (("--dataset", "sen2venus",), "unknown dataset 'sen2venus'"),
        (("--dataset", "probav", "--split", "val"), "split must be one of train, test"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, probav, args, message):
    code, _, stderr = cli("data", "check", probav, *args, "--no-progress")
    assert code == 2, stderr
    err = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0], stderr


def test_s2naip_is_refused_by_the_benchmark_check(tmp_path):
    with pytest.raises(ConfigError, match="zoomsr data check ROOT"):
        check_items("s2naip", tmp_path)


def test_the_progress_counts_every_item_of_every_split(probav):
    seen = []
    check_items("probav", probav, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(k, 5) for k in range(1, 6)]  # was 1..3 of 3, then 1..2 of 2


def test_every_missing_worldstrat_area_is_listed_and_the_others_read(cli, tmp_path):
    fx = fixture_module("worldstrat_fixture")
    root = fx.write_worldstrat(tmp_path / "ws", [fx.FakeAOI(n, "train") for n in
                                                 ("A1", "A2", "A3", "A4")])
    import shutil

    shutil.rmtree(root / "lr_dataset" / "A1")
    (root / "hr_dataset" / "A3" / "A3_ps.tiff").unlink()
    bad = root / "lr_dataset" / "A4" / "L2A" / "A4-2-L2A_data.tiff"
    bad.write_bytes(bad.read_bytes()[:300])
    code, stdout, _ = cli("data", "check", root, "--dataset", "worldstrat", "--split", "train",
                          "-o", "lr_size=8", "--no-progress")
    assert code == 1
    errors = [line for line in stdout.splitlines() if line.startswith("error:")]
    # the loader stops at the first missing area; the check listed only it, read no other
    assert len(errors) == 3, stdout
    assert str(root / "lr_dataset" / "A1" / "L2A") in errors[0]
    assert str(root / "hr_dataset" / "A3" / "A3_ps.tiff") in errors[1]
    assert str(bad) in errors[2]
    assert stdout.strip().endswith("train 2 item(s), 3 error(s)")


def test_every_unpaired_oli2msi_file_is_listed_and_the_pairs_read(tmp_path):
    root = tmp_path / "oli"
    written = fixture_module("oli2msi_fixture").write_oli2msi(root, "train", n=4)
    names = sorted(written)
    (root / "train_hr" / f"{names[0]}.TIF").unlink()
    (root / "train_lr" / f"{names[2]}.TIF").unlink()
    [found] = check_items("oli2msi", root, ["train"], lr_size=8)
    assert found.items == 2 and len(found.problems) == 2
    assert str(root / "train_lr" / f"{names[0]}.TIF") in found.problems[0]
    assert "no HR file of the same name" in found.problems[0]
    assert str(root / "train_hr" / f"{names[2]}.TIF") in found.problems[1]


def test_every_incomplete_probav_image_set_is_listed_and_the_sound_bands_read(probav):
    (probav / "train" / "NIR" / "imgset0594" / "QM002.png").unlink()
    (probav / "train" / "RED" / "imgset0001" / "SM.png").unlink()
    [found] = check_items("probav", probav, ["train"])
    assert [p.split(":")[0] for p in found.problems] == [
        str(probav / "train" / "NIR" / "imgset0594" / "QM002.png"),
        str(probav / "train" / "RED" / "imgset0001" / "SM.png")]
    assert found.items == 1  # RED's complete imgset0000, still read
    (probav / "train" / "RED" / "imgset0001" / "SM.png").write_bytes(
        (probav / "train" / "RED" / "imgset0000" / "SM.png").read_bytes())
    [found] = check_items("probav", probav, ["train"])
    assert found.items == 2 and len(found.problems) == 1  # RED read, NIR listed
