"""zoomsr data check --dataset probav|worldstrat|oli2msi: every item of every split read."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from zoomsr.data import PROBAVDataset
from zoomsr.data.datasets import check_items
from zoomsr.errors import ConfigError

TESTS = Path(__file__).resolve().parents[1]


def _fixture(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / "data" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # (its dataclasses look their module up)
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def probav(tmp_path) -> Path:
    return _fixture("probav_fixture").write_probav(tmp_path / "probav")


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


def test_a_missing_split_folder_is_one_problem_and_the_others_are_checked(cli, probav):
    import shutil

    shutil.rmtree(probav / "test")
    results = check_items("probav", probav)
    assert [(r.split, r.items, len(r.problems)) for r in results] == [("train", 3, 0),
                                                                      ("test", 0, 1)]
    assert str(probav / "test") in results[1].problems[0]


def test_oli2msi_and_options(cli, tmp_path):
    root = tmp_path / "oli"
    _fixture("oli2msi_fixture").write_oli2msi(root, "train", n=2)
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
