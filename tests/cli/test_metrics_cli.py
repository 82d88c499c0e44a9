"""``zoomsr metrics agreement`` end to end, in-process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def judgments(tmp_path) -> Path:
    """2 targets x 3 candidates of rising noise; humans always pick the less noisy one,
    except one pair judged a tie; JSONL with annotators."""
    rng = np.random.default_rng(0)
    lines = []
    for t in range(2):
        target = rng.integers(40, 215, size=(32, 32, 3)).astype(np.float64)
        Image.fromarray(target.astype(np.uint8)).save(tmp_path / f"t{t}.png")
        for k, sigma in enumerate((2.0, 12.0, 40.0)):
            noisy = np.clip(target + rng.normal(0, sigma, target.shape), 0, 255)
            Image.fromarray(noisy.round().astype(np.uint8)).save(tmp_path / f"t{t}_{k}.png")
        for i, j in ((0, 1), (0, 2), (1, 2)):
            choice = "tie" if (t, i, j) == (1, 1, 2) else "A"
            for ann in ("x", "y"):
                lines.append(json.dumps({"target": f"t{t}.png", "a": f"t{t}_{i}.png",
                                         "b": f"t{t}_{j}.png", "choice": choice,
                                         "annotator": ann}))
    path = tmp_path / "judgments.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_agreement_table_files_and_plot(cli, judgments, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = cli("metrics", "agreement", judgments, "--metrics", "psnr,ssim",
                               "--out", out, "--bootstrap", "300", "--no-progress")
    assert code == 0, stderr
    assert "Agreement with human judgment" in stdout and "100.0 %" in stdout
    assert "1 human ties" in stdout
    rows = {r["metric"]: r for r in csv.DictReader((out / "agreement.csv").read_text()
                                                   .splitlines())}
    assert float(rows["psnr"]["agreement"]) == 1.0 and rows["psnr"]["n_items"] == "5"
    assert rows["psnr"]["n_human_ties"] == "1"
    doc = json.loads((out / "agreement.json").read_text())
    ia = doc["inter_annotator"]
    assert ia["n_items"] == 6 and ia["percent_agreement"] == 1.0
    with Image.open(out / "agreement.png") as img:
        assert img.format == "PNG"
    code, _, stderr = cli("metrics", "agreement", judgments, "--out", out, "--no-progress")
    assert code == 2 and "--overwrite" in stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"target": "t0.png", "a": "t0_0.png", "b": "t0_1.png", "choice": "C"}\n',
         "choice 'C'"),
        ('{"target": "t0.png", "a": "t0_0.png", "b": "missing.png", "choice": "A"}\n',
         "missing.png"),
    ],
)
def test_bad_judgments_exit_2(cli, judgments, tmp_path, content, message):
    bad = judgments.parent / "bad.jsonl"
    bad.write_text(content)
    code, _, stderr = cli("metrics", "agreement", bad, "--out", tmp_path / "o", "--no-progress")
    assert code == 2 and message in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_missing_judgment_file_and_bad_bootstrap(cli, tmp_path):
    code, _, stderr = cli("metrics", "agreement", tmp_path / "none.csv", "--out", tmp_path)
    assert code == 2 and "judgment file not found" in stderr
    code, _, stderr = cli("metrics", "agreement", tmp_path / "none.csv", "--out", tmp_path,
                          "--bootstrap", "0")
    assert code == 2 and "--bootstrap" in stderr


def test_metrics_help_lists_every_metric():
    from zoomsr.cli.scoring_options import METRICS_HELP
    from zoomsr.metrics import METRIC_NAMES

    assert METRICS_HELP == f"Comma-separated metrics: {', '.join(METRIC_NAMES)}."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--border", "-1"), "--border must be an integer >= 0, got -1"),
        (("--batch-size", "0"), "--batch-size must be an integer >= 1, got 0"),
        (("--metrics", "cpsnr", "--cpsnr-mode", "foo"), "--cpsnr-mode must be one of"),
        (("--metrics", "lpips", "--lpips-weights", "{tmp}/none.pth"),
         "LPIPS alex backbone weights not found: {tmp}/none.pth"),
        (("--device", "foo"), "--device must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_options_and_weights_checked_before_the_judgments(cli, tmp_path, args, message):
    code, _, stderr = cli("metrics", "agreement", tmp_path / "none.csv", "--out", tmp_path / "o",
                          *(a.format(tmp=tmp_path) for a in args), "--no-progress")
    assert code == 2 and stderr.strip().splitlines() == [stderr.strip()]
    assert message.format(tmp=tmp_path) in stderr and "judgment file" not in stderr


def test_progress_leaves_a_final_line_when_stderr_is_not_a_terminal(cli, judgments, tmp_path):
    code, _, stderr = cli("metrics", "agreement", judgments, "--metrics", "psnr",
                          "--out", tmp_path / "out", "--bootstrap", "50")
    assert code == 0, stderr
    bar = [line for line in stderr.splitlines() if line.startswith("scoring")]
    assert len(bar) == 1 and "6/6" in bar[0]


def test_a_bad_clip_cache_is_refused_before_the_judgments(cli, tmp_path, tiny_clip):
    """As for `zoomsr evaluate`: a --clip-cache under a file failed only once the first
    batch's embeddings were written (or at exit), as a raw NotADirectoryError."""
    name, ckpt = tiny_clip
    afile = tmp_path / "a.png"
    afile.write_bytes(b"x")
    code, stdout, stderr = cli("metrics", "agreement", tmp_path / "none.csv", "--out",
                               tmp_path / "o", "--metrics", "clipscore", "--clip-model", name,
                               "--clip-pretrained", ckpt, "--clip-cache", afile / "sub",
                               "--no-progress")
    assert code == 2 and stderr.strip().splitlines() == [stderr.strip()], stderr
    assert stderr.startswith(f"error: --clip-cache {afile / 'sub'}: ") and "not a folder" in stderr


def test_sample_judgments_make_the_agreement_command_runnable(cli, tmp_path):
    """No judgment file shipped: the documented `zoomsr metrics agreement` could not be
    tried. A simulated one on real Sentinel-2 crops, seeded."""
    code, out, err = cli("metrics", "sample-judgments", tmp_path / "j", "--items", "6")
    assert code == 0, err
    assert "simulated judgments, not human ones" in err
    path = Path(out.strip())
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert len(rows) == 18 and {r["annotator"] for r in rows} == {"sim1", "sim2", "sim3"}
    assert all((path.parent / r[k]).is_file() for r in rows for k in ("target", "a", "b"))
    with Image.open(path.parent / rows[0]["target"]) as img:
        assert img.size == (64, 64) and img.mode == "RGB"
    code, _, err = cli("metrics", "sample-judgments", tmp_path / "j", "--items", "6")
    assert code == 2 and "--overwrite" in err
    cli("metrics", "sample-judgments", tmp_path / "k", "--items", "6")
    assert (tmp_path / "k" / "judgments.csv").read_text() == path.read_text()  # seeded
    code, out, err = cli("metrics", "agreement", path, "--metrics", "psnr", "--out",
                         tmp_path / "ag", "--no-progress", "--bootstrap", "100")
    assert code == 0, err
    doc = json.loads((tmp_path / "ag" / "agreement.json").read_text())
    assert doc["metrics"]["psnr"]["agreement"] > 0.5  # the simulated people prefer less loss
    # how it was run (agreement.json recorded none of it)
    assert doc["options"]["judgments"] == str(path.resolve())
    assert doc["options"]["metrics"] == ["psnr"] and doc["options"]["bootstrap"] == 100
    assert doc["options"]["seed"] == 0 and doc["options"]["zoomsr_version"]
    code, _, err = cli("metrics", "sample-judgments", tmp_path / "x", "--items", "17")
    assert code == 2 and "--items must be an integer from 1 to 16" in err
    # a file as OUT: a NotADirectoryError at its first image, exit 1
    (tmp_path / "afile").write_text("")
    code, _, err = cli("metrics", "sample-judgments", tmp_path / "afile", "--items", "1")
    assert code == 2 and f"{tmp_path / 'afile'}: exists and is not a folder" in err, err
    # --annotators: that many votes per pair, each item's pair the same whoever votes
    code, out, err = cli("metrics", "sample-judgments", tmp_path / "two", "--items", "6",
                         "--annotators", "2")
    assert code == 0, err
    two = list(csv.DictReader(Path(out.strip()).read_text().splitlines()))
    assert len(two) == 12 and {r["annotator"] for r in two} == {"sim1", "sim2"}
    assert {(r["target"], r["a"], r["b"]) for r in two} == {
        (r["target"], r["a"], r["b"]) for r in rows}
    code, _, err = cli("metrics", "sample-judgments", tmp_path / "none", "--annotators", "0")
    assert code == 2 and "--annotators must be an integer >= 1" in err
