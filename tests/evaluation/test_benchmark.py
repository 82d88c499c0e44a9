"""Models x datasets x metrics (``zoomsr.evaluation.benchmark``): the spec file, the cells
(scored, kept on a re-run, refused when their settings changed, failed alone), the paired
comparisons and the report."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dataset_fixtures import fixture_module
from zoomsr.data import PROBAVDataset
from zoomsr.errors import ConfigError
from zoomsr.evaluation import evaluate_model
from zoomsr.evaluation.baselines import BicubicBaseline
from zoomsr.evaluation.benchmark import (
    BenchmarkResult,
    Cell,
    cell_dir,
    compare,
    run_benchmark,
)
from zoomsr.evaluation.benchmark_report import REPORT_FILES, markdown_table, write_report
from zoomsr.evaluation.benchmark_spec import load_spec, spec_from_dict
from zoomsr.models import create_model, save_checkpoint


@pytest.fixture
def bench(tmp_path):
    """A fake PROBA-V and WorldStrat copy, a tiny 1-band HighRes-net x3, and a spec of the
    bicubic baseline, the mean of 4 frames and that model on both."""
    root = fixture_module("probav_fixture").write_probav(tmp_path / "probav")
    fx = fixture_module("worldstrat_fixture")
    fx.write_worldstrat(tmp_path / "ws", [fx.FakeAOI("A1", "train"),
                                          fx.FakeAOI("A2", "train")])
    torch.manual_seed(0)
    model = create_model("highresnet", in_channels=1, out_channels=1, zoom_factor=3,
                         revisits=4, hidden_channels=9)
    save_checkpoint(model, tmp_path / "hrn.pth", n_images=4)
    doc = {
        "metrics": ["psnr", "ssim", "cpsnr"],
        "metric_options": {"border": 3},
        "models": [{"name": "bicubic", "baseline": "bicubic"},
                   {"name": "mean4", "baseline": "bicubic", "n_images": 4},
                   {"name": "hrn", "weights": "hrn.pth"}],
        "datasets": [{"name": "probav-nir", "dataset": "probav", "data": "probav",
                      "split": "train", "options": {"bands": "NIR"}},
                     {"name": "ws", "dataset": "worldstrat", "data": "ws",
                      "options": {"lr_size": 8}}],
    }
    return tmp_path, doc, root, model


def _spec(tmp_path: Path, doc: dict):
    import yaml

    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_spec(path)


def test_bicubic_baseline_is_the_frames_mean_upsampled():
    lr = torch.rand(2, 3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    want = F.interpolate(lr.mean(1), scale_factor=3, mode="bicubic", align_corners=False)
    assert torch.equal(BicubicBaseline(3)(lr), want)


def test_the_bicubic_baseline_upsamples_the_lr_channels_of_the_hr_bands(tmp_path):
    """A benchmark dataset of S2-NAIP frames with B08 (a band model's) failed its bicubic
    cell: the output [B, 4, ...] against the RGB HR [B, 3, ...], so no comparison either."""
    import yaml

    from zoomsr.data import S2NAIPDataset, WorldStratDataset, write_sample
    from zoomsr.evaluation.baselines import hr_channels_in_lr

    root = write_sample(tmp_path / "s", pairs=2, n_frames=2, bands="tci,b08", seed=0)
    s2 = S2NAIPDataset(root, bands="tci,b08", n_images=1, layout="frames", train=False,
                       skip_black_hr=False)
    assert hr_channels_in_lr(s2) == [0, 1, 2]
    assert hr_channels_in_lr(S2NAIPDataset(root, n_images=1, layout="frames")) is None
    ws = fixture_module("worldstrat_fixture")
    ws.write_worldstrat(tmp_path / "ws", [ws.FakeAOI("A1", "train")])
    rgbn = WorldStratDataset(tmp_path / "ws", split="train", lr_size=8,
                             lr_bands=("B02", "B03", "B04", "B08"), hr_kind="rgbn",
                             hr_bands=("R", "G", "B", "NIR"))
    assert rgbn.hr_bands == ("R", "G", "B", "NIR") and hr_channels_in_lr(rgbn) == [2, 1, 0, 3]
    b8a = WorldStratDataset(tmp_path / "ws", split="train", lr_size=8,
                            lr_bands=("B02", "B03", "B04", "B8A"), hr_kind="rgbn",
                            hr_bands=("NIR", "B", "G", "R"))  # NIR seen in B8A (was unmapped)
    assert hr_channels_in_lr(b8a) == [3, 0, 1, 2]
    rgb_lr = WorldStratDataset(tmp_path / "ws", split="train", lr_size=8, hr_kind="rgbn",
                               hr_bands=("R", "G", "B", "NIR"))
    assert hr_channels_in_lr(rgb_lr) is None  # no band of NIR among B04, B03, B02
    lr = torch.rand(1, 2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    want = F.interpolate(lr[:, :, [2, 1, 0, 3]].mean(1), scale_factor=2, mode="bicubic",
                         align_corners=False)
    assert torch.equal(BicubicBaseline(2, [2, 1, 0, 3])(lr), want)
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump({
        "metrics": ["psnr"],
        "models": [{"name": "bicubic", "baseline": "bicubic"}],
        "datasets": [{"name": "s2b08", "dataset": "s2naip", "data": "s",
                      "options": {"bands": ["tci", "b08"], "skip_black_hr": False}}]}))
    result = run_benchmark(load_spec(tmp_path / "bench.yaml"), tmp_path / "out", device="cpu")
    (cell,) = result.cells
    assert cell.error is None and cell.rows
    summary = json.loads((cell_dir(tmp_path / "out", "bicubic", "s2b08") / "summary.json")
                         .read_text())
    assert summary["options"]["loader_options"] == {"bands": ["tci", "b08"],
                                                    "skip_black_hr": False}
    # band for band the same scores as the baseline on the TCI frames alone
    tci = S2NAIPDataset(root, n_images=1, layout="frames", train=False, skip_black_hr=False)
    plain = evaluate_model(BicubicBaseline(4), tci, "psnr", device="cpu")
    assert [r["psnr"] for r in cell.rows] == [r["psnr"] for r in plain.rows]


def test_the_spec_reads_models_datasets_and_paths_from_the_files_folder(bench):
    tmp_path, doc, _, _ = bench
    spec = _spec(tmp_path, doc)
    assert [m.name for m in spec.models] == ["bicubic", "mean4", "hrn"]
    assert spec.models[2].weights == str(tmp_path / "hrn.pth")
    assert spec.datasets[0].data == tmp_path / "probav"
    assert spec.metric_options == {"border": 3}
    assert spec.baseline == "bicubic" and len(spec.cells()) == 6
    only = spec_from_dict({**doc, "models": [*doc["models"][:2], {
        "name": "hrn", "weights": "hrn.pth", "datasets": ["probav-nir"]}]}, base=tmp_path)
    assert [(m.name, d.name) for m, d in only.cells()][-1] == ("hrn", "probav-nir")
    assert len(only.cells()) == 5
    registry = spec_from_dict({**doc, "models": [{"name": "e", "weights": "esrgan-8"}]},
                              base=tmp_path)
    assert registry.models[0].weights == "esrgan-8"  # a registry name, not a path


@pytest.mark.parametrize(("change", "match"), [
    ({"models": [{"name": "a"}]},
     r"models\[0\] \(a\): give one of weights .*, baseline \(bicubic\) or predictions"),
    ({"models": [{"name": "a", "weights": "x.pth", "baseline": "bicubic"}]}, r"give one of"),
    ({"models": [{"name": "a", "predictions": "out/", "n_images": 2}]},
     r"models\[0\]\.n_images: predictions are files, not a model run here"),
    ({"models": [{"name": "a b", "baseline": "bicubic"}]}, r"models\[0\]\.name: 'a b' is not"),
    ({"models": [{"name": "a", "baseline": "nearest"}]}, r"'nearest' is not one of bicubic"),
    ({"models": [{"name": "a", "baseline": "bicubic"}, {"name": "a", "baseline": "bicubic"}]},
     r"models: the name\(s\) a are given twice"),
    ({"models": [{"name": "a", "baseline": "bicubic", "datasets": ["nope"]}]},
     r"models\[0\]\.datasets: nope is not a dataset of the file"),
    ({"models": [{"name": "a", "baseline": "bicubic", "n_images": 0}]},
     r"models\[0\]\.n_images: expected an integer >= 1"),
    ({"models": [{"name": "a", "weights": "x.pth", "config": {"k": 1}}]},
     r"models\[0\]\.config sets the architecture model builds; add model: NAME"),
    ({"models": [{"name": "a", "baseline": "bicubic", "wieghts": "x"}]},
     r"models\[0\]: unknown key\(s\) wieghts"),
    ({"datasets": [{"name": "d", "dataset": "sentinel", "data": "x"}]},
     r"datasets\[0\]\.dataset: 'sentinel' is not one of s2naip, probav"),
    ({"datasets": [{"name": "d", "dataset": "probav"}]}, r"datasets\[0\] \(d\): data .* required"),
    ({"datasets": [{"name": "d", "dataset": "probav", "data": "x", "options": {"split": "x"}}]},
     r"datasets\[0\]\.options split: give it as datasets\[0\]\.split"),
    ({"datasets": [{"name": "d", "dataset": "probav", "data": "x", "options": {"bandz": 1}}]},
     r"datasets\[0\]\.options: bandz not an option of the probav dataset"),
    ({"datasets": [{"name": "d", "dataset": "probav", "data": "x", "splits": "s.json"}]},
     r"datasets\[0\]\.splits gives the items of each split .* add split: val"),
    ({"metrics": ["psnr", "fid"]}, r"metrics: unknown metric 'fid'"),
    ({"metric_options": {"boarder": 4}}, r"metric_options: unknown key\(s\) boarder"),
    ({"compare_to": "nope"}, r"compare_to: 'nope' is not a model of the file"),
    ({"masks": "yes"}, r"masks: expected true or false"),
    ({"models": []}, r"models: expected a non-empty list"),
    ({"models": [{"name": "a", "baseline": "bicubic", "sample_steps": 4}]},
     r"models\[0\]\.sample_steps: a baseline is not sampled"),
])
def test_a_bad_spec_is_one_line_naming_the_file_and_key(bench, change, match):
    tmp_path, doc, _, _ = bench
    with pytest.raises(ConfigError, match=match) as info:
        _spec(tmp_path, {**doc, **change})
    assert "\n" not in str(info.value) and str(tmp_path / "bench.yaml") in str(info.value)


def test_a_missing_or_broken_spec_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="benchmark file not found"):
        load_spec(tmp_path / "none.yaml")
    (tmp_path / "b.yaml").write_text("models: [a\n")
    with pytest.raises(ConfigError, match=r"b\.yaml: not valid YAML"):
        load_spec(tmp_path / "b.yaml")


def test_cells_are_scored_as_evaluate_model_scores_each(bench):
    tmp_path, doc, root, model = bench
    spec = _spec(tmp_path, doc)
    out = tmp_path / "out"
    seen = []
    result = run_benchmark(spec, out, device="cpu", on_cell=seen.append)
    assert [(c.model, c.dataset, c.status) for c in seen] == [
        ("bicubic", "probav-nir", "scored"), ("bicubic", "ws", "scored"),
        ("mean4", "probav-nir", "scored"), ("mean4", "ws", "scored"),
        ("hrn", "probav-nir", "scored"), ("hrn", "ws", "failed")]
    # a 1-band model on WorldStrat's RGB: that cell alone fails, named
    assert "hrn takes 1 input channel(s) per frame" in result.cell("hrn", "ws").error
    from zoomsr.evaluation.scoring import dataset_metrics
    from zoomsr.metrics.factory import MetricOptions

    metrics = dataset_metrics(["psnr", "ssim", "cpsnr"], MetricOptions(border=3))
    ds = PROBAVDataset(root, "train", bands="NIR", n_images=4, layout="frames")
    want = evaluate_model(model, ds, metrics, device="cpu")
    got = result.cell("hrn", "probav-nir")
    assert [r["key"] for r in got.rows] == [r["key"] for r in want.rows]
    for name in ("psnr", "ssim", "cpsnr"):
        assert [r[name] for r in got.rows] == pytest.approx([r[name] for r in want.rows])
    bicubic = PROBAVDataset(root, "train", bands="NIR", n_images=1, layout="frames")
    plain = evaluate_model(BicubicBaseline(3), bicubic, metrics, device="cpu")
    assert result.cell("bicubic", "probav-nir").rows[0]["psnr"] == pytest.approx(
        plain.rows[0]["psnr"])
    # each cell as zoomsr evaluate-model --out writes it, with its settings recorded
    folder = cell_dir(out, "hrn", "probav-nir")
    doc_written = json.loads((folder / "summary.json").read_text())
    assert doc_written["options"]["benchmark_cell"]["dataset"]["options"] == {"bands": "NIR"}
    assert doc_written["options"]["n_images"] == 4
    assert not cell_dir(out, "hrn", "ws").exists()


def test_a_rerun_keeps_finished_cells_and_refuses_changed_settings(bench, monkeypatch):
    tmp_path, doc, _, _ = bench
    out = tmp_path / "out"
    doc = {**doc, "metrics": ["psnr", "ssim"]}
    first = run_benchmark(_spec(tmp_path, doc), out, device="cpu")
    import zoomsr.evaluation.model_eval as model_eval

    calls = []
    real = model_eval.evaluate_model
    monkeypatch.setattr(model_eval, "evaluate_model",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    again = run_benchmark(_spec(tmp_path, doc), out, device="cpu")
    # only the failed cell is tried again (the model is checked against the items there)
    assert [c.status for c in again.cells] == ["kept"] * 5 + ["failed"] and len(calls) == 1
    for a, b in zip(first.cells, again.cells, strict=True):
        assert [r.get("psnr") for r in a.rows] == pytest.approx([r.get("psnr") for r in b.rows])
        assert a.summary.get("psnr", {}).get("mean") == pytest.approx(
            b.summary.get("psnr", {}).get("mean"))
    # other settings: refused before any cell, naming every cell and what changed
    for change, what in (({"metric_options": {"border": 2}}, "metric_options.border"),
                         ({"masks": False}, "masks"),
                         ({"metrics": ["psnr", "cpsnr"]}, r"metrics \(\+cpsnr\)")):
        with pytest.raises(ConfigError, match=rf"5 finished cell\(s\) in .* were scored with "
                                              rf"other settings: cells/bicubic/probav-nir "
                                              rf"\({what}.*remove those cell folders"):
            run_benchmark(_spec(tmp_path, {**doc, **change}), out, device="cpu")
    # the same settings written otherwise: kept (metrics reordered or fewer, a default given)
    same = {**doc, "metrics": ["ssim", "psnr"],
            "models": [{**doc["models"][0], "n_images": 1}, *doc["models"][1:]]}
    kept = run_benchmark(_spec(tmp_path, same), out, device="cpu")
    assert [c.status for c in kept.cells][:5] == ["kept"] * 5
    assert list(kept.cells[0].summary) == ["ssim", "psnr"]
    weights = tmp_path / "hrn.pth"
    os.utime(weights)  # touched, the same weights: kept
    assert [c.status for c in run_benchmark(_spec(tmp_path, doc), out, device="cpu").cells][
        :5] == ["kept"] * 5
    # other weights written with the old file's size and time (cp -p, rsync -a): refused
    st = weights.stat()
    other = bytearray(weights.read_bytes())
    other[-1] ^= 1  # (the zip's last byte: the file still reads, as another one)
    weights.write_bytes(bytes(other))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_size == st.st_size
    with pytest.raises(ConfigError, match=r"1 finished cell\(s\) .*cells/hrn/probav-nir "
                                          r"\(model\.file\.sha256\)"):
        run_benchmark(_spec(tmp_path, doc), out, device="cpu")
    assert len(calls) == 3  # (the failed cell tried again by the run after the touch)
    redone = run_benchmark(_spec(tmp_path, doc), out, device="cpu", overwrite=True)
    assert [c.status for c in redone.cells] == ["scored"] * 5 + ["failed"] and len(calls) == 9


def test_an_interrupted_run_leaves_whole_cells_and_goes_on(bench, monkeypatch):
    tmp_path, doc, _, _ = bench
    out = tmp_path / "out"
    import zoomsr.evaluation.model_eval as model_eval

    real, calls = model_eval.evaluate_model, []

    def stopping(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(model_eval, "evaluate_model", stopping)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(_spec(tmp_path, doc), out, device="cpu")
    done = sorted(p.parent.relative_to(out / "cells").as_posix()
                  for p in (out / "cells").rglob("summary.json"))
    assert done == ["bicubic/probav-nir", "bicubic/ws"]
    assert not cell_dir(out, "mean4", "probav-nir").exists() or not any(
        cell_dir(out, "mean4", "probav-nir").iterdir())
    result = run_benchmark(_spec(tmp_path, doc), out, device="cpu")
    assert [c.status for c in result.cells] == ["kept", "kept", "scored", "scored", "scored",
                                                "failed"]


def _cell(model: str, rows: list[dict], metric: str = "lpips") -> Cell:
    values = [r[metric] for r in rows if math.isfinite(r[metric])]
    return Cell(model, "d", "scored", rows, {metric: {"mean": sum(values) / len(values)}})


def test_comparisons_are_paired_over_the_items_both_scored(bench):
    """Differences item by item (model - baseline), over the items both scored with a finite
    value; better / worse in the metric's direction (LPIPS: lower is better)."""
    tmp_path, doc, _, _ = bench
    spec = spec_from_dict({**doc, "models": [{"name": "a", "baseline": "bicubic"},
                                             {"name": "b", "baseline": "bicubic"}],
                           "datasets": [{**doc["datasets"][0], "name": "d"}]}, base=tmp_path)
    a = _cell("a", [{"key": k, "lpips": v} for k, v in
                    (("x", 0.30), ("y", 0.40), ("z", 0.50), ("w", 0.2))])
    b = _cell("b", [{"key": k, "lpips": v} for k, v in
                    (("x", 0.20), ("y", 0.45), ("z", 0.40), ("w", math.nan), ("v", 0.1))])
    rows = compare(BenchmarkResult(spec, [a, b], {"lpips": False}))
    assert len(rows) == 1
    r = rows[0]
    assert (r["model"], r["baseline"], r["n_items"]) == ("b", "a", 3)
    assert r["mean_diff"] == pytest.approx((-0.1 + 0.05 - 0.1) / 3)
    assert (r["better"], r["worse"], r["same"]) == (2, 1, 0)
    assert r["ci95_low"] < r["mean_diff"] < r["ci95_high"]  # Student's t on 3 differences


def test_the_report_writes_every_file_with_the_best_in_bold(bench):
    tmp_path, doc, _, _ = bench
    out = tmp_path / "out"
    result = run_benchmark(_spec(tmp_path, doc), out, device="cpu")
    paths = write_report(result, out)
    assert sorted(p.name for p in paths.values()) == sorted(
        [*REPORT_FILES.values(), "examples_probav-nir.png", "examples_ws.png"])
    rows = list(csv.DictReader(paths["results"].open()))
    assert len(rows) == 5 * 3  # 5 cells scored, 3 metrics; the failed one left out
    summary = json.loads(paths["summary"].read_text())
    assert summary["n_failed"] == 1
    assert [c["status"] for c in summary["cells"]].count("failed") == 1
    table = markdown_table(result)
    assert "| hrn |" in table and "failed" in table
    psnr = {r["model"]: float(r["mean"]) for r in rows
            if r["dataset"] == "probav-nir" and r["metric"] == "psnr"}
    best = max(psnr, key=psnr.get)
    line = next(x for x in table.splitlines() if x.startswith(f"| {best} |"))
    assert line.split(" | ")[1].startswith("**")
    comparisons = list(csv.DictReader(paths["comparisons"].open()))
    assert {(r["model"], r["dataset"]) for r in comparisons} == {
        ("mean4", "probav-nir"), ("mean4", "ws"), ("hrn", "probav-nir")}
    with Image.open(paths["plot"]) as png:
        assert png.size[0] > 300


def test_a_changed_splits_file_makes_its_cells_stale(tmp_path):
    """S2-NAIP through a benchmark, on the val items of a zoomsr train run's splits.json: a
    retrained run rewrites it, and the cells scored on the old items are not kept."""
    from zoomsr.data import write_sample

    root = write_sample(tmp_path / "s2", pairs=6, n_frames=4, seed=0)
    from zoomsr.data import S2NAIPDataset

    tiles = sorted({f"{p.image_id}/{p.tile}" for p in S2NAIPDataset(root, n_images=1).pairs})
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": tiles[3:], "val": tiles[:3]}))
    doc = {"metrics": ["psnr"],
           "models": [{"name": "bicubic", "baseline": "bicubic"},
                      {"name": "mean4", "baseline": "bicubic", "n_images": 4}],
           "datasets": [{"name": "val", "dataset": "s2naip", "data": "s2", "split": "val",
                         "splits": "splits.json"}]}
    out = tmp_path / "out"
    result = run_benchmark(_spec(tmp_path, doc), out, device="cpu")
    assert [len(c.rows) for c in result.cells] == [3, 3]
    assert sorted(r["key"] for r in result.cells[0].rows) == tiles[:3]
    recorded = json.loads((cell_dir(out, "bicubic", "val") / "summary.json").read_text())
    assert recorded["options"]["split"] == "val"
    splits.write_text(json.dumps({"train": tiles[:3], "val": tiles[3:]}))
    with pytest.raises(ConfigError, match=r"2 finished cell\(s\).*dataset\.splits_sha256"):
        run_benchmark(_spec(tmp_path, doc), out, device="cpu")


def test_any_error_fails_its_cell_alone_and_models_are_loaded_one_at_a_time(bench,
                                                                           monkeypatch):
    """An out-of-memory error (not a zoomsr one) in one cell: that cell fails, named, and the
    others are scored; each model is let go once its cells are done."""
    tmp_path, doc, _, _ = bench
    import zoomsr.evaluation.benchmark as benchmark
    from zoomsr.models.highresnet import HighResNet

    def no_memory(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(HighResNet, "forward", no_memory)
    freed = []
    real = benchmark._free
    monkeypatch.setattr(benchmark, "_free", lambda s: freed.append(s.name) or real(s))
    result = run_benchmark(_spec(tmp_path, doc), tmp_path / "out", device="cpu")
    assert [c.status for c in result.cells] == ["scored"] * 4 + ["failed"] * 2
    assert result.cells[4].error == ("OutOfMemoryError: CUDA out of memory. Tried to allocate "
                                     "2.00 GiB")
    assert freed[:2] == ["bicubic", "bicubic"] and freed[2] == "highresnet"


def test_a_failed_baseline_and_all_failed_cells_still_give_a_report(bench):
    tmp_path, doc, _, _ = bench
    out = tmp_path / "out"
    # there, but no checkpoint: found when its cells load it (a missing file is refused
    # before any cell: test_missing_files_and_split_typos_stop_the_run_before_any_cell)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    broken = {**doc, "models": [{"name": "gone", "weights": "junk.pth"},
                                {"name": "bicubic", "baseline": "bicubic"}]}
    result = run_benchmark(_spec(tmp_path, broken), out, device="cpu")
    rows = compare(result)
    assert rows and all(r["note"] == "no comparison: gone failed on it" for r in rows)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_report(result, out)
    dead = {**doc, "models": [{"name": "gone", "weights": "junk.pth"}]}
    result = run_benchmark(_spec(tmp_path, dead), tmp_path / "out2", device="cpu")
    assert [c.status for c in result.cells] == ["failed", "failed"]
    assert str(tmp_path / "junk.pth") in result.cells[0].error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_report(result, tmp_path / "out2")
    assert json.loads(paths["summary"].read_text())["n_failed"] == 2


def test_missing_files_and_split_typos_stop_the_run_before_any_cell(bench):
    """A missing weights file or dataset folder, and a misspelt split, failed each of their
    cells after the others were scored (and wrote a report of failures): the docs promise
    every mistake of the file in one line before any work."""
    from zoomsr.evaluation.benchmark_spec import with_data

    tmp_path, doc, _, _ = bench
    spec_path = tmp_path / "bench.yaml"
    with pytest.raises(ConfigError, match=rf"^{spec_path}: models\[1\]\.weights: "
                       rf"{tmp_path / 'missing.pth'}: no such checkpoint file, nor a name"):
        run_benchmark(_spec(tmp_path, {**doc, "models": [
            {"name": "bicubic", "baseline": "bicubic"},
            {"name": "gone", "weights": "missing.pth"}]}), tmp_path / "out", device="cpu")
    assert not (tmp_path / "out" / "cells").exists()
    spec = _spec(tmp_path, doc)
    name = spec.datasets[-1].name
    moved = with_data(spec, {name: tmp_path / "nowhere"})
    with pytest.raises(ConfigError, match=rf"^{spec_path}: datasets\[{len(spec.datasets) - 1}\]"
                       rf"\.data: {tmp_path / 'nowhere'}: dataset folder not found \(or give "
                       rf"it with --data {name}=FOLDER\)$"):
        run_benchmark(moved, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out" / "cells").exists()
    # only the cells to be scored: the models chosen
    run_benchmark(moved, tmp_path / "out", device="cpu",
                  datasets=[d.name for d in spec.datasets if d.name != name])
    typo = {**doc, "datasets": [{**doc["datasets"][0], "split": "vall"}]}
    kind = doc["datasets"][0]["dataset"]
    with pytest.raises(ConfigError, match=rf"^{spec_path}: datasets\[0\]\.split: 'vall' is "
                       rf"not a split of {kind} \("):
        _spec(tmp_path, typo)


def test_weights_beside_the_spec_are_found_whatever_their_name(bench):
    tmp_path, doc, _, _ = bench
    (tmp_path / "hrn.pth").rename(tmp_path / "generator")
    spec = _spec(tmp_path, {**doc, "models": [{"name": "h", "weights": "generator"}]})
    assert spec.models[0].weights == str(tmp_path / "generator")


def test_missing_metric_weights_stop_the_run_before_any_cell(bench):
    tmp_path, doc, _, _ = bench
    spec = _spec(tmp_path, {**doc, "metrics": ["psnr", "lpips"],
                            "metric_options": {"lpips_weights": "nowhere/alex.pth"}})
    with pytest.raises(ConfigError, match=r"bench\.yaml: .*nowhere/alex\.pth"):
        run_benchmark(spec, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out" / "cells").exists()


def test_a_model_limited_to_some_datasets_leaves_the_others_blank(bench):
    tmp_path, doc, _, _ = bench
    limited = {**doc, "models": [doc["models"][0],
                                 {**doc["models"][2], "datasets": ["probav-nir"]}]}
    out = tmp_path / "out"
    result = run_benchmark(_spec(tmp_path, limited), out, device="cpu")
    assert [(c.model, c.dataset) for c in result.cells] == [
        ("bicubic", "probav-nir"), ("bicubic", "ws"), ("hrn", "probav-nir")]
    assert all(c.status == "scored" for c in result.cells)
    paths = write_report(result, out)
    hrn = next(x for x in paths["table"].read_text().splitlines() if x.startswith("| hrn |"))
    assert hrn.rstrip().endswith("|  |  |  |")  # no ws cells: blank, not failed
    assert {r["dataset"] for r in compare(result)} == {"probav-nir"}


def test_examples_show_the_same_items_for_every_model_and_survive_a_rerun(bench):
    """examples: 1 per dataset: each scored cell keeps its SR of the same item (chosen by key),
    the item's LR and HR are kept once; the report draws examples_DATASET.png, also from
    kept cells; a failed cell's tile says so."""
    tmp_path, doc, _, _ = bench
    out = tmp_path / "out"
    spec = _spec(tmp_path, {**doc, "examples": 1})
    result = run_benchmark(spec, out, device="cpu")
    for d in ("probav-nir", "ws"):
        shared = sorted(p.name for p in (out / "examples" / d).iterdir())
        assert len(shared) == 2 and shared[0].endswith(".hr.npy"), shared
        stem = shared[0][: -len(".hr.npy")]
        for m in ("bicubic", "mean4"):
            sr = np.load(cell_dir(out, m, d) / "examples" / f"{stem}.npy")
            hr = np.load(out / "examples" / d / f"{stem}.hr.npy")
            assert sr.shape == hr.shape and sr.dtype == np.float16
    paths = write_report(result, out)
    assert paths["examples_ws"].name == "examples_ws.png"
    with Image.open(paths["examples_probav-nir"]) as png:
        assert png.size[0] > 400
    again = run_benchmark(spec, out, device="cpu")
    assert [c.status for c in again.cells][:5] == ["kept"] * 5
    from zoomsr.evaluation.benchmark_report import example_figures

    figures = example_figures(again, out)
    assert set(figures) == {"probav-nir", "ws"}
    texts = [t.get_text() for ax in figures["ws"].axes for t in ax.texts]
    assert texts == ["failed"]  # hrn on ws: its tile says so
    none = run_benchmark(_spec(tmp_path, {**doc, "examples": 0}), tmp_path / "out2",
                         device="cpu")
    assert not (tmp_path / "out2" / "examples").exists()
    assert "examples_ws" not in write_report(none, tmp_path / "out2")


def test_prediction_files_join_the_table_and_pair_with_the_models_items(tmp_path):
    """A method's outputs as files (here: the HR images themselves, a perfect method, and a
    zoomsr infer-like folder of tile PNGs) are scored against S2-NAIP as zoomsr evaluate
    scores them, keyed image_id/tile like the models' cells, so the comparisons pair them."""
    import shutil

    from zoomsr.data import write_sample

    root = write_sample(tmp_path / "s2", pairs=3, n_frames=2, seed=0)
    preds = tmp_path / "preds"
    shutil.copytree(root / "naip", preds)
    # one prediction degraded: the others are perfect (infinite PSNR: not finite, left out)
    png = next(iter(sorted(preds.rglob("rgb.png"))))
    img = np.asarray(Image.open(png)).copy()
    img[::2] = img[::2] // 2
    Image.fromarray(img).save(png)
    doc = {"metrics": ["psnr", "ssim"], "examples": 1,
           "models": [{"name": "bicubic", "baseline": "bicubic"},
                      {"name": "files", "predictions": "preds"}],
           "datasets": [{"name": "s2", "dataset": "s2naip", "data": "s2"}]}
    out = tmp_path / "out"
    result = run_benchmark(_spec(tmp_path, doc), out, device="cpu")
    files = result.cell("files", "s2")
    assert files.status == "scored", files.error
    assert sorted(r["key"] for r in files.rows) == sorted(
        r["key"] for r in result.cell("bicubic", "s2").rows)
    [ssim] = [r for r in compare(result) if r["metric"] == "ssim"]
    assert ssim["n_items"] == 3 and ssim["note"] == ""
    assert ssim["better"] >= 2 and ssim["better"] + ssim["worse"] == 3  # the perfect ones win
    again = run_benchmark(_spec(tmp_path, doc), out, device="cpu")
    assert [c.status for c in again.cells] == ["kept", "kept"]
    os.utime(png, ns=(png.stat().st_atime_ns, png.stat().st_mtime_ns + 10**9))
    with pytest.raises(ConfigError, match=r"cells/files/s2 \(model\.files\.newest_ns, "
                                          r"model\.files\.stat_sha256\)"):
        run_benchmark(_spec(tmp_path, doc), out, device="cpu")
    paths = write_report(result, out)
    assert "examples_s2" in paths
    # its example: the prediction file itself, as read to be scored (8-bit / 255)
    [stem] = [p.stem for p in (cell_dir(out, "files", "s2") / "examples").iterdir()]
    key = stem.replace("__", "/")
    shown = np.load(cell_dir(out, "files", "s2") / "examples" / f"{stem}.npy")
    want = np.asarray(Image.open(preds / key / "rgb.png")).astype(np.float32) / 255
    np.testing.assert_allclose(shown.astype(np.float32), want, atol=1e-3)


def test_the_examples_drawn_are_the_first_by_rank_of_this_run(bench):
    """examples: 3, then 1 (with a new model): the figure draws the first-ranked item, the
    one every keeper kept; a rescore with another seed clears the cells' old images."""
    from zoomsr.evaluation.benchmark_report import example_figures
    from zoomsr.evaluation.examples import example_rank, file_stem

    tmp_path, doc, _, _ = bench
    out = tmp_path / "out"
    three = {**doc, "examples": 3, "models": doc["models"][:1],
             "datasets": doc["datasets"][1:]}  # WorldStrat's 2 areas
    run_benchmark(_spec(tmp_path, three), out, device="cpu")
    one = {**three, "examples": 1, "models": doc["models"][:2]}
    result = run_benchmark(_spec(tmp_path, one), out, device="cpu")
    first = min(("A1", "A2"), key=lambda k: example_rank(k, 0))
    [figure] = example_figures(result, out).values()
    assert figure.axes[0].get_ylabel() == first
    assert sorted(p.stem for p in (cell_dir(out, "mean4", "ws") / "examples").iterdir()) == [
        file_stem(first)]
    reseeded = run_benchmark(_spec(tmp_path, {**one, "seed": 1}), out, device="cpu",
                             overwrite=True)
    other = min(("A1", "A2"), key=lambda k: example_rank(k, 1))
    for m in ("bicubic", "mean4"):
        assert [p.stem for p in (cell_dir(out, m, "ws") / "examples").iterdir()] == [other]
    [figure] = example_figures(reseeded, out).values()
    assert figure.axes[0].get_ylabel() == other
    paths = write_report(reseeded, out)
    (out / "examples_gone.png").write_bytes(b"old")  # a dataset dropped since
    write_report(reseeded, out)
    assert not (out / "examples_gone.png").exists() and paths["examples_ws"].is_file()


def test_worldstrat_lr_examples_show_b04_b03_b02_as_rgb_whatever_the_band_order(bench):
    from zoomsr.data import WorldStratDataset

    tmp_path, _, _, _ = bench
    shown = []
    for bands in ("B04,B03,B02", "B02,B03,B04", "B03,B02,B04"):
        ds = WorldStratDataset(tmp_path / "ws", lr_bands=bands, lr_size=8, n_images=1,
                               layout="frames")
        result = evaluate_model(BicubicBaseline(4), ds, "psnr", device="cpu", examples=1)
        [images] = result.examples.values()
        shown.append(images["lr"])
    assert np.array_equal(shown[0], shown[1]) and np.array_equal(shown[0], shown[2])
    assert not np.array_equal(shown[0][..., 0], shown[0][..., 2])  # not one grey band


def test_prediction_files_are_scored_on_the_models_items_only(tmp_path):
    """S2NAIPDataset drops pairs whose NAIP has black pixels (skip_black_hr): the files'
    cell leaves their predictions out too (both cells on the same items)."""
    import shutil

    from zoomsr.data import write_sample

    root = write_sample(tmp_path / "s2", pairs=3, n_frames=2, seed=0)
    black = sorted(root.rglob("naip/*/*/rgb.png"))[0]
    img = np.asarray(Image.open(black)).copy()
    img[0, 0] = 0
    Image.fromarray(img).save(black)
    shutil.copytree(root / "naip", tmp_path / "preds")
    doc = {"metrics": ["psnr"], "examples": 0,
           "models": [{"name": "bicubic", "baseline": "bicubic"},
                      {"name": "files", "predictions": "preds"}],
           "datasets": [{"name": "s2", "dataset": "s2naip", "data": "s2"}]}
    result = run_benchmark(_spec(tmp_path, doc), tmp_path / "out", device="cpu")
    assert [len(c.rows) for c in result.cells] == [2, 2]
    recorded = json.loads((cell_dir(tmp_path / "out", "files", "s2") / "summary.json")
                          .read_text())
    assert recorded["options"]["not_items"] == 1


def test_a_raw_sr3_model_is_refused_naming_the_wrapper(bench):
    tmp_path, _, root, _ = bench
    sr3 = create_model("sr3", in_channels=2, out_channels=1, scale=3, base_channels=4,
                       channel_mults=(1, 1, 1, 1), num_res_blocks=1, attn_levels=(),
                       num_timesteps=8)
    ds = PROBAVDataset(root, "train", bands="NIR", n_images=2)
    with pytest.raises(ConfigError, match=r"diffusion model \(SR3\).*SampledSR3"):
        evaluate_model(sr3, ds, "psnr", device="cpu")


def test_more_examples_on_a_rerun_are_drawn_without_scoring_again(bench, monkeypatch):
    """examples: 1, then 2: the kept cells' models run on the one new item alone (their scores
    kept), so the figure has every model's tile."""
    from zoomsr.evaluation.benchmark_report import example_figures

    tmp_path, doc, _, _ = bench
    out = tmp_path / "out"
    one = {**doc, "examples": 1, "models": doc["models"][:2], "datasets": doc["datasets"][1:]}
    first = run_benchmark(_spec(tmp_path, one), out, device="cpu")
    import zoomsr.evaluation.model_eval as model_eval

    real, sizes = model_eval.evaluate_model, []
    monkeypatch.setattr(model_eval, "evaluate_model",
                        lambda model, ds, *a, **k: sizes.append(len(ds)) or real(model, ds,
                                                                                 *a, **k))
    two = run_benchmark(_spec(tmp_path, {**one, "examples": 2}), out, device="cpu")
    assert [c.status for c in two.cells] == ["kept", "kept"] and sizes == [1, 1]
    assert [c.summary["psnr"]["mean"] for c in two.cells] == [
        c.summary["psnr"]["mean"] for c in first.cells]
    for m in ("bicubic", "mean4"):
        assert len(list((cell_dir(out, m, "ws") / "examples").iterdir())) == 2
    [figure] = example_figures(two, out).values()
    assert not any(t.get_text() for ax in figure.axes for t in ax.texts)  # no blank tile


def test_cells_can_be_shared_out_by_model_into_one_folder(bench):
    """--models bicubic, then --models mean4 (e.g. two GPUs into one folder): each scores its
    own cells and reports the other's as they are there; another's stale cell does not stop
    a run that does not score it; unknown names are refused."""
    tmp_path, doc, _, _ = bench
    out = tmp_path / "out"
    two = {**doc, "models": doc["models"][:2]}
    first = run_benchmark(_spec(tmp_path, two), out, device="cpu", models=["bicubic"])
    assert [(c.model, c.status) for c in first.cells] == [("bicubic", "scored")] * 2
    # mean4, not run yet, is left out of the report: it had a legend entry (bicubic's
    # colour), a gap in each group of bars and an empty row in the table
    from zoomsr.evaluation.benchmark_report import plot_benchmark

    figure = plot_benchmark(first)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["bicubic"]
    assert [line.split(" |")[0] for line in markdown_table(first).splitlines()
            if line.startswith("| ") and not line.startswith("| model")] == ["| bicubic"]
    second = run_benchmark(_spec(tmp_path, two), out, device="cpu", models=["mean4"])
    assert [(c.model, c.status) for c in second.cells] == [
        ("bicubic", "kept"), ("bicubic", "kept"), ("mean4", "scored"), ("mean4", "scored")]
    assert len(compare(second)) == 2 * 3  # mean4 against bicubic, both datasets
    legend = plot_benchmark(second).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["bicubic", "mean4"]
    changed = {**two, "models": [{**two["models"][0], "n_images": 2}, two["models"][1]]}
    only = run_benchmark(_spec(tmp_path, changed), out, device="cpu", models=["mean4"],
                         datasets=["ws"])
    assert [(c.model, c.dataset, c.status) for c in only.cells] == [
        ("mean4", "probav-nir", "kept"), ("mean4", "ws", "kept")]  # stale bicubic left out
    with pytest.raises(ConfigError, match=r"gpu: not a model of .*\(its models: bicubic, mean4"):
        run_benchmark(_spec(tmp_path, two), out, device="cpu", models=["gpu"])


def test_a_resume_from_another_folder_keeps_the_finished_cells(bench, monkeypatch):
    """Cells recorded paths as typed ("bench/../sample"): a run of the same file from another
    folder refused every finished cell (the documented shared --out of several machines)."""
    import yaml

    tmp_path, doc, _, _ = bench
    small = {**doc, "models": doc["models"][::2], "datasets": doc["datasets"][:1]}
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "bench.yaml").write_text(yaml.safe_dump(
        {**small, "models": [small["models"][0], {"name": "hrn", "weights": "../hrn.pth"}],
         "datasets": [{**small["datasets"][0], "data": "../probav"}]}))
    monkeypatch.chdir(tmp_path)
    first = run_benchmark(load_spec("specs/bench.yaml"), Path("out"), device="cpu")
    assert [c.status for c in first.cells] == ["scored", "scored"]
    recorded = json.loads(next((tmp_path / "out" / "cells").rglob("summary.json")).read_text())
    assert "/../" not in json.dumps(recorded)  # absolute, normalised
    assert recorded["options"]["device"] == "cpu"
    monkeypatch.chdir(tmp_path / "specs")
    again = run_benchmark(load_spec("bench.yaml"), Path("../out"), device="cpu")
    assert [c.status for c in again.cells] == ["kept", "kept"]
    # a kept cell keeps the time its scoring took (benchmark.json said 0.0)
    for a, b in zip(first.cells, again.cells, strict=True):
        doc = json.loads((tmp_path / "out" / "cells" / a.model / a.dataset
                          / "summary.json").read_text())
        assert b.seconds == doc["options"]["seconds"] > 0
    # a cell of an earlier version (paths as typed, from the folder it ran in) is kept too
    monkeypatch.chdir(tmp_path)
    for summary in (tmp_path / "out" / "cells").rglob("summary.json"):
        text = summary.read_text().replace(str(tmp_path) + "/", "")
        summary.write_text(text)
    kept = run_benchmark(load_spec("specs/bench.yaml"), Path("out"), device="cpu")
    assert [c.status for c in kept.cells] == ["kept", "kept"]
