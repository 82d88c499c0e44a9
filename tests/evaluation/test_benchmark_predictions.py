"""Another method's output files scored on the benchmark datasets (PROBA-V, WorldStrat): each
item's file by its id, read as the dataset reads its HR, scored as a model's outputs are."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml

from dataset_fixtures import fixture_module
from zoomsr.errors import DataError
from zoomsr.evaluation.benchmark import load_entry, run_benchmark
from zoomsr.evaluation.benchmark_spec import load_spec
from zoomsr.evaluation.prediction_files import prediction_files
from zoomsr.evaluation.scoring import open_for_model


@pytest.fixture
def datasets(tmp_path):
    root = fixture_module("probav_fixture").write_probav(tmp_path / "probav")
    fx = fixture_module("worldstrat_fixture")
    fx.write_worldstrat(tmp_path / "ws", [fx.FakeAOI("A1", "train"), fx.FakeAOI("A2", "train")])
    return {"probav-nir": {"dataset": "probav", "data": str(root), "split": "train",
                           "options": {"bands": "NIR"}},
            "ws": {"dataset": "worldstrat", "data": str(tmp_path / "ws"),
                   "options": {"lr_size": 8}}}


def _spec(tmp_path: Path, datasets: dict, models: list[dict]):
    doc = {"metrics": ["psnr", "ssim", "cpsnr"], "metric_options": {"border": 3},
           "examples": 2, "models": models,
           "datasets": [{"name": n, **d} for n, d in datasets.items()]}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_spec(path)


def _bicubic_outputs(tmp_path, datasets, name) -> dict[str, np.ndarray]:
    """The bicubic baseline's output of each item of dataset ``name``, by id."""
    spec = _spec(tmp_path, datasets, [{"name": "bicubic", "baseline": "bicubic"}])
    (m,), d = spec.models, next(d for d in spec.datasets if d.name == name)
    scoring = load_entry(m, 0)
    ds, _, _ = open_for_model(scoring, d.dataset, d.data, d.split, d.splits, d.options)
    from zoomsr.evaluation.baselines import for_dataset

    module = for_dataset(scoring, ds).module
    outputs = {}
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            outputs[item["id"]] = module(item["lr"][None])[0].clamp(0, 1).numpy()
    return outputs


def test_probav_challenge_pngs_and_worldstrat_tiffs_score_as_the_method_they_hold(
        tmp_path, datasets):
    """Files holding the bicubic baseline's outputs (a PROBA-V challenge submission: 16-bit
    PNGs at the HR's scale; WorldStrat: float GeoTIFFs) score as the baseline's cell does."""
    preds = tmp_path / "preds"
    (preds / "nested").mkdir(parents=True)
    for key, out in _bicubic_outputs(tmp_path, datasets, "probav-nir").items():
        # the challenge's scale: the HR PNG's values / 65535
        from PIL import Image

        Image.fromarray(np.round(out[0] * 65535).astype(np.uint16)).save(preds / f"{key}.png")
    for key, out in _bicubic_outputs(tmp_path, datasets, "ws").items():
        with rasterio.open(preds / "nested" / f"{key}.tif", "w", driver="GTiff",
                           width=out.shape[2], height=out.shape[1], count=out.shape[0],
                           dtype="float32") as dst:
            dst.write(out)
    (preds / "README.txt").write_text("not a prediction")
    spec = _spec(tmp_path, datasets, [{"name": "bicubic", "baseline": "bicubic"},
                                      {"name": "files", "predictions": "preds"}])
    result = run_benchmark(spec, tmp_path / "out", device="cpu")
    assert [(c.model, c.dataset, c.status) for c in result.cells] == [
        ("bicubic", "probav-nir", "scored"), ("bicubic", "ws", "scored"),
        ("files", "probav-nir", "scored"), ("files", "ws", "scored")], \
        [c.error for c in result.cells]
    for dataset, rel in (("probav-nir", 1e-3), ("ws", 1e-5)):  # (16-bit rounding; floats)
        base, files = result.cell("bicubic", dataset), result.cell("files", dataset)
        assert [r["key"] for r in files.rows] == [r["key"] for r in base.rows]
        for a, b in zip(files.rows, base.rows, strict=True):
            for metric in ("psnr", "ssim", "cpsnr"):
                assert a[metric] == pytest.approx(b[metric], rel=rel), (dataset, metric)
        # the cell's files as a model's (its per-item CSV) and its example images
        rows = list(csv.DictReader((tmp_path / "out" / "cells" / "files" / dataset
                                    / "per_image.csv").open()))
        assert [r["key"] for r in rows] == [r["key"] for r in files.rows]
        examples = [sorted(p.name for p in (tmp_path / "out" / "cells" / name / dataset
                                            / "examples").glob("*.npy"))
                    for name in ("files", "bicubic")]
        assert examples[0] and examples[0] == examples[1]  # the items the models show
    # a re-run keeps them (the folder's identity unchanged)
    again = run_benchmark(spec, tmp_path / "out", device="cpu")
    assert {c.status for c in again.cells} == {"kept"}
    # a file replaced by another of its size, its time put back (cp -p, rsync -a): refused
    import os

    from zoomsr.errors import ConfigError

    [tif] = sorted((preds / "nested").glob("*.tif"))[:1]
    st = tif.stat()
    with rasterio.open(tif, "r+") as dst:
        dst.write(np.zeros((dst.count, dst.height, dst.width), np.float32))
    os.utime(tif, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert tif.stat().st_size == st.st_size
    with pytest.raises(ConfigError, match=r"cells/files/ws \(model\.files\.stat_sha256\)"
                                          r".*\(stat_sha256: prediction files replaced"):
        run_benchmark(spec, tmp_path / "out", device="cpu")


def test_missing_twice_and_unreadable_prediction_files_name_them(tmp_path, datasets):
    ids = ["imgset0000", "imgset0001"]
    preds = tmp_path / "p"
    preds.mkdir()
    (preds / "imgset0000.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"p: no prediction file for 1 of the 2 item\(s\) scored "
                                        r"\(e\.g\. imgset0001: looked for imgset0001\.png, "
                                        r"\.tif or \.tiff under it\)"):
        prediction_files(preds, ids)
    (preds / "imgset0001.tif").write_bytes(b"")
    (preds / "sub").mkdir()
    (preds / "sub" / "imgset0001.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"1 item\(s\) have two prediction files \(e\.g\. "
                                        r"imgset0001: .*/imgset0001\.tif, "
                                        r".*/sub/imgset0001\.png\); keep one"):
        prediction_files(preds, ids)
    with pytest.raises(DataError, match=r"a file; predictions on a benchmark dataset are a "
                                        r"folder"):
        prediction_files(preds / "imgset0000.png", ids)
    # in a benchmark: the cell fails naming the file (an empty PNG), the others are scored
    spec = _spec(tmp_path, {"probav-nir": datasets["probav-nir"]},
                 [{"name": "bicubic", "baseline": "bicubic"},
                  {"name": "files", "predictions": "p"}])
    result = run_benchmark(spec, tmp_path / "out", device="cpu")
    assert [c.status for c in result.cells] == ["scored", "failed"]  # (NIR's imgset0594)
    assert "no prediction file for 1 of the 1 item(s) scored (e.g. imgset0594" in \
        result.cells[1].error
    (preds / "imgset0594.png").write_bytes(b"")
    result = run_benchmark(spec, tmp_path / "out", device="cpu")
    assert [c.status for c in result.cells] == ["kept", "failed"]
    assert "imgset0594.png" in result.cells[1].error


def test_wrong_bands_and_sizes_are_refused_naming_the_file(tmp_path, datasets):
    from zoomsr.data import PROBAVDataset, WorldStratDataset

    ws = WorldStratDataset(datasets["ws"]["data"], lr_size=8)
    path = tmp_path / "two.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=2,
                       dtype="uint16") as dst:
        dst.write(np.ones((2, 4, 4), np.uint16))
    with pytest.raises(DataError, match=r"two.tif: 2 band\(s\); the items' HR has 3 "
                                        r"\(R,G,B\) or the ps product's 4"):
        ws.read_prediction(path)
    four = tmp_path / "four.tif"
    with rasterio.open(four, "w", driver="GTiff", width=4, height=4, count=4,
                       dtype="uint16") as dst:
        dst.write(np.arange(4 * 16, dtype=np.uint16).reshape(4, 4, 4) * 100)
    got = ws.read_prediction(four)  # the product's 4 bands: its R, G, B taken
    assert got.shape == (3, 4, 4) and got[0, 0, 0] == 0.0
    assert got[1, 0, 0] == pytest.approx(1600 / 10000)
    pv = PROBAVDataset(datasets["probav-nir"]["data"], split="train", bands="NIR")
    from PIL import Image

    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((100, 100), np.uint16)).save(small)
    with pytest.raises(DataError, match=r"small.png: 100x100 px, expected 384x384"):
        pv.read_prediction(small)


def test_oli2msi_prediction_files_read_as_its_hr_files(tmp_path):
    """An OLI2MSI pair's HR file given as its prediction reads as the item's ``hr``; a
    digital-number copy is refused naming the file."""
    from zoomsr.data import OLI2MSIDataset

    written = fixture_module("oli2msi_fixture").write_oli2msi(tmp_path / "o", "test", n=2)
    ds = OLI2MSIDataset(tmp_path / "o", "test", lr_size=8)
    name = sorted(written)[0]
    item = next(ds[i] for i in range(len(ds)) if ds[i]["id"] == name)
    got = ds.read_prediction(tmp_path / "o" / "test_hr" / f"{name}.TIF")
    assert got.dtype == np.float32 and torch.equal(torch.from_numpy(got), item["hr"])
    dn = tmp_path / "dn.tif"
    with rasterio.open(dn, "w", driver="GTiff", width=24, height=24, count=3,
                       dtype="uint16") as dst:
        dst.write(np.ones((3, 24, 24), np.uint16))
    with pytest.raises(DataError, match=r"dn.tif: uint16 pixels"):
        ds.read_prediction(dn)


def test_worldstrat_predictions_at_the_spot_images_size_are_resized_as_its_hr(tmp_path):
    """The HR is resized to lr_size x scale; a prediction at the SPOT product's own size (as
    WorldStrat's code writes them) is brought to it the same way: the HR files themselves,
    given as predictions, score as perfect (they failed: 40 px against 32)."""
    import shutil

    fx = fixture_module("worldstrat_fixture")
    root = fx.write_worldstrat(tmp_path / "ws", [fx.FakeAOI("A1", "train"),
                                                 fx.FakeAOI("A2", "train")], hr_size=40)
    preds = tmp_path / "preds"
    preds.mkdir()
    for aoi in ("A1", "A2"):
        shutil.copy(root / "hr_dataset" / aoi / f"{aoi}_ps.tiff", preds / f"{aoi}.tif")
    spec = _spec(tmp_path, {"ws": {"dataset": "worldstrat", "data": str(root),
                                   "options": {"lr_size": 8}}},
                 [{"name": "files", "predictions": "preds"}])
    result = run_benchmark(spec, tmp_path / "out", device="cpu")
    [cell] = result.cells
    assert cell.status == "scored", cell.error
    assert all(r["psnr"] == float("inf") for r in cell.rows)


def test_refused_prediction_files_name_the_file_and_why(tmp_path, datasets):
    from zoomsr.data import OLI2MSIDataset, WorldStratDataset

    ws = WorldStratDataset(datasets["ws"]["data"], lr_size=8)
    dn = tmp_path / "dn.tif"  # SPOT digital numbers saved as floats
    with rasterio.open(dn, "w", driver="GTiff", width=4, height=4, count=3,
                       dtype="float32") as dst:
        dst.write(np.full((3, 4, 4), 2500.0, np.float32))
    with pytest.raises(DataError, match=r"dn.tif: float values up to 2500; a WorldStrat "
                                        r"prediction holds floats in \[0, 1\]"):
        ws.read_prediction(dn)
    wide = tmp_path / "wide.tif"  # another aspect ratio: not stretched to the HR
    with rasterio.open(wide, "w", driver="GTiff", width=50, height=3, count=3,
                       dtype="float32") as dst:
        dst.write(np.full((3, 3, 50), 0.5, np.float32))
    with pytest.raises(DataError, match=r"wide.tif: 50x3 px is not the shape of the item's HR, "
                                        r"32x32"):
        ws.read_prediction(wide, (32, 32))
    assert ws.read_prediction(wide).shape == (3, 3, 50)  # (no HR size given: as it is)
    fixture_module("oli2msi_fixture").write_oli2msi(tmp_path / "o", "test", n=1)
    cropped = OLI2MSIDataset(tmp_path / "o", "test", lr_size=8, crop=4)
    hr = next((tmp_path / "o" / "test_hr").iterdir())
    with pytest.raises(DataError, match=r"the items are crops \(crop=4\) and a prediction is "
                                        r"a whole pair's image"):
        cropped.read_prediction(hr)
    whole = OLI2MSIDataset(tmp_path / "o", "test", lr_size=8)
    with pytest.raises(DataError, match=r"24x24 px; the item's HR is 30x30"):
        whole.read_prediction(hr, (30, 30))
