"""``zoomsr benchmark SPEC --out DIR``: every cell, the report, resumable, one-line errors."""

from __future__ import annotations

import json

import yaml

from dataset_fixtures import fixture_module


def _write(tmp_path, models, datasets=None):
    fixture_module("probav_fixture").write_probav(tmp_path / "probav")
    doc = {"metrics": ["psnr", "cpsnr"], "metric_options": {"border": 3}, "models": models,
           "datasets": datasets or [{"name": "nir", "dataset": "probav", "data": "probav",
                                     "split": "train", "options": {"bands": "NIR"}}]}
    spec = tmp_path / "bench.yaml"
    spec.write_text(yaml.safe_dump(doc))
    return spec


def test_the_command_scores_reports_and_resumes(cli, tmp_path):
    spec = _write(tmp_path, [{"name": "bicubic", "baseline": "bicubic"},
                             {"name": "mean4", "baseline": "bicubic", "n_images": 4}])
    out = tmp_path / "out"
    code, stdout, stderr = cli("benchmark", spec, "--out", out, "--no-progress", "--device",
                               "cpu")
    assert code == 0, stderr
    assert "[1/2] bicubic on nir: 1 items in" in stderr
    assert "paired differences against bicubic" in stdout and "nir (probav, 1 items)" in stdout
    for name in ("results.csv", "comparisons.csv", "results.md", "benchmark.json",
                 "benchmark.png"):
        assert (out / name).is_file(), name
    assert (out / "cells" / "mean4" / "nir" / "per_image.csv").is_file()
    code, _, stderr = cli("benchmark", spec, "--out", out, "--no-progress", "--device", "cpu")
    assert code == 0 and stderr.count("kept (scored by an earlier run)") == 2


def test_failed_cells_are_listed_and_the_exit_is_1(cli, tmp_path):
    spec = _write(tmp_path, [{"name": "bicubic", "baseline": "bicubic"},
                             {"name": "esrgan", "weights": "esrgan-8"}])
    out = tmp_path / "out"
    code, _, stderr = cli("benchmark", spec, "--out", out, "--no-progress", "--device", "cpu")
    assert code == 1
    lines = stderr.strip().splitlines()
    assert lines[0].startswith("[1/2] bicubic on nir: 1 items")
    # the weights are not in this machine's cache (no network): named, with what to run
    assert lines[1].startswith("error: [2/2] esrgan on nir: weights esrgan-8 are not in the "
                               "cache: run `zoomsr weights download esrgan-8`")
    assert lines[-1] == (f"error: 1 of 2 cells failed (listed above and in "
                         f"{out / 'benchmark.json'}); the others are in the report")
    doc = json.loads((out / "benchmark.json").read_text())
    assert [c["status"] for c in doc["cells"]] == ["scored", "failed"]


def test_a_bad_spec_or_option_is_one_line_exit_2(cli, tmp_path):
    spec = _write(tmp_path, [{"name": "b", "baseline": "bicubic"}])
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"models": [{"name": "b"}], "datasets": []}))
    for args, message in (
            ((bad,), f"error: {bad}: models[0] (b): give one of weights"),
            ((tmp_path / "none.yaml",), "benchmark file not found"),
            ((spec, "--device", "cuda:x"), "--device")):
        code, _, stderr = cli("benchmark", *args, "--out", tmp_path / "o", "--no-progress")
        assert code == 2, stderr
        assert len(stderr.strip().splitlines()) == 1 and message in stderr, stderr
    doc = yaml.safe_load(spec.read_text())
    doc["metric_options"] = {"border": -1}
    spec.write_text(yaml.safe_dump(doc))
    code, _, stderr = cli("benchmark", spec, "--out", tmp_path / "o", "--no-progress")
    assert code == 2 and "metric_options.border" in stderr and "--border" not in stderr, stderr


def test_a_report_file_no_benchmark_wrote_is_not_replaced(cli, tmp_path):
    spec = _write(tmp_path, [{"name": "bicubic", "baseline": "bicubic"}])
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.md").write_text("my notes\n")
    code, _, stderr = cli("benchmark", spec, "--out", out, "--no-progress", "--device", "cpu")
    assert code == 2 and stderr.strip() == (
        f"error: {out / 'results.md'}: already exists, and {out} holds no benchmark.json (not "
        "a benchmark's report); write to another folder, or use --overwrite")
    assert (out / "results.md").read_text() == "my notes\n" and not (out / "cells").exists()
    code, _, stderr = cli("benchmark", spec, "--out", out, "--no-progress", "--device", "cpu",
                          "--overwrite")
    assert code == 0, stderr
    code, _, stderr = cli("benchmark", spec, "--out", out, "--no-progress", "--device", "cpu")
    assert code == 0, stderr  # its own report: replaced


def test_the_shipped_sample_benchmark_runs_offline(cli, tmp_path):
    """configs/benchmarks/sample.yaml on a small sample (its data path pointed there; the
    full-size Real-ESRGAN left out for time): the baselines and the shipped zoomsr-multi8."""
    from zoomsr.config_files import CONFIG_DIR
    from zoomsr.data import write_sample

    shipped = CONFIG_DIR / "benchmarks" / "sample.yaml"
    doc = yaml.safe_load(shipped.read_text())
    assert [m["name"] for m in doc["models"]][:3] == ["bicubic", "mean8", "zoomsr-multi8"]
    root = write_sample(tmp_path / "sample", pairs=3, n_frames=8, seed=0)
    doc["datasets"][0]["data"] = str(root)
    doc["models"] = [m for m in doc["models"] if m["name"] != "realesrgan-x4plus"]
    spec = tmp_path / "bench.yaml"
    spec.write_text(yaml.safe_dump(doc))
    code, stdout, stderr = cli("benchmark", spec, "--out", tmp_path / "out", "--no-progress",
                               "--device", "cpu")
    assert code == 0, stderr
    summary = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert [(c["model"], c["status"], c["n_items"]) for c in summary["cells"]] == [
        ("bicubic", "scored", 3), ("mean8", "scored", 3), ("zoomsr-multi8", "scored", 3)]


def test_models_and_datasets_select_the_cells_scored(cli, tmp_path):
    spec = _write(tmp_path, [{"name": "bicubic", "baseline": "bicubic"},
                             {"name": "mean4", "baseline": "bicubic", "n_images": 4}])
    out = tmp_path / "out"
    code, _, stderr = cli("benchmark", spec, "--out", out, "--no-progress", "--device", "cpu",
                          "--models", "mean4", "--datasets", "nir")
    assert code == 0, stderr
    assert stderr.startswith("[1/1] mean4 on nir: 1 items")
    assert not (out / "cells" / "bicubic").exists()
    code, _, stderr = cli("benchmark", spec, "--out", out, "--no-progress", "--models", "x")
    assert code == 2 and "x: not a model of" in stderr
