"""Every command that writes checks its output folder before any work: an output that cannot
be made (under a file here) is one line naming it, exit 2, and no work done (these printed a
whole results table, or converted a model, then failed with a raw FileExistsError, exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoomsr.config_files import CONFIG_DIR

CONFIGS = CONFIG_DIR


@pytest.fixture
def blocked(tmp_path) -> tuple[Path, Path]:
    """(a file, a path under it)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    return afile, afile / "sub"


def _refused(cli, blocked, *args) -> None:
    afile, under = blocked
    code, out, err = cli(*args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (code, out, err)
    assert f"{under}" in err and f"cannot be created: {afile} is not a folder" in err, err


def test_evaluate(cli, blocked, tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "t").mkdir()
    _refused(cli, blocked, "evaluate", "--pred", tmp_path / "p", "--target", tmp_path / "t",
             "--out", blocked[1], "--no-progress")


def test_metrics_agreement(cli, blocked, tmp_path):
    judgments = tmp_path / "j.csv"
    judgments.write_text("target,a,b,choice\nt.png,a.png,b.png,A\n")  # images never read
    _refused(cli, blocked, "metrics", "agreement", judgments, "--out", blocked[1],
             "--no-progress")


def test_metrics_agreement_refuses_existing_outputs_before_scoring(cli, tmp_path):
    judgments = tmp_path / "j.csv"
    judgments.write_text("target,a,b,choice\nt.png,a.png,b.png,A\n")  # images never read
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "agreement.csv").write_text("earlier")
    code, out, err = cli("metrics", "agreement", judgments, "--out", tmp_path / "out",
                         "--no-progress")
    assert code == 2 and out == "" and "--overwrite" in err and "t.png" not in err, err


def test_data_build(cli, blocked, tmp_path):
    _refused(cli, blocked, "data", "build", blocked[1], "--s2", tmp_path / "none", "--hr",
             tmp_path / "none", "--no-progress")


def test_weights_import_ncnn(cli, blocked, tmp_path):
    param, bin_file = tmp_path / "m.param", tmp_path / "m.bin"
    param.write_text("never read")
    bin_file.write_bytes(b"never read")
    _refused(cli, blocked, "weights", "import-ncnn", param, bin_file, "-o",
             blocked[1] / "x.safetensors")


def test_train(cli, blocked, tmp_path):
    _refused(cli, blocked, "train", CONFIGS / "tiny.yaml", "--set",
             f"data.root={tmp_path / 'no-data'}", "--out", blocked[1])
