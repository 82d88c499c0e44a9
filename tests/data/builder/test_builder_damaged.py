"""Damaged inputs: a truncated file is named before any work, a tile that cannot be decoded
during the build names its file, and a failed build does not look finished."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from builder_rasters import make_safe, utc

from zoomsr.data.builder import (
    BuildConfig,
    Sources,
    build_dataset,
    discover_highres,
    discover_sentinel2,
)
from zoomsr.data.check import check_dataset
from zoomsr.errors import DataError


def truncate(src: Path, dst: Path, keep: float) -> Path:
    """Copy the first ``keep`` share of ``src``'s bytes to ``dst`` (a cut-short download)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def corrupt_blocks(path: Path) -> None:
    """Zero every TIFF block's compressed bytes but their first and last few: the file keeps
    its size and header (it passes the open-time check) but no block decodes."""
    with rasterio.open(path) as src:
        h, w = src.block_shapes[0]
        spans = []
        for y in range(-(-src.height // h)):
            for x in range(-(-src.width // w)):
                offset = int(src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1))
                size = int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1))
                spans.append((offset, size))
    data = bytearray(path.read_bytes())
    for offset, size in spans:
        data[offset + 4: offset + size - 4] = bytes(size - 8)
    path.write_bytes(bytes(data))


@pytest.fixture
def scene_copy(builder_scene, tmp_path) -> Path:
    folder = tmp_path / "S2A_15TVG_20190801_0_L2A"
    shutil.copytree(builder_scene.s2["clear"], folder)
    return folder


def test_truncated_files_are_named_when_opened(builder_scene, scene_copy, tmp_path):
    for keep in (0.3, 0.7, 0.999):  # wherever the cut falls
        truncate(builder_scene.s2["clear"] / "TCI.tif", scene_copy / "TCI.tif", keep)
        with pytest.raises(DataError, match=r"TCI.tif: unreadable, the file is truncated"):
            discover_sentinel2([scene_copy])
    shutil.copy(builder_scene.s2["clear"] / "TCI.tif", scene_copy / "TCI.tif")
    truncate(builder_scene.s2["clear"] / "B08.tif", scene_copy / "B08.tif", 0.8)
    with pytest.raises(DataError, match=r"B08.tif: unreadable, the file is truncated"):
        discover_sentinel2([scene_copy])
    hr = truncate(builder_scene.hr_path, tmp_path / "hr" / builder_scene.hr_path.name, 0.9)
    with pytest.raises(DataError, match=rf"{hr.name}: unreadable, the file is truncated"):
        discover_highres([hr])
    # Intact files pass, JPEG 2000 (SAFE) included; a truncated JP2 is named too.
    assert discover_highres([builder_scene.hr_path])
    safe = make_safe(tmp_path / "safe", builder_scene.s2["clear"], utc(2019, 8, 1))
    assert discover_sentinel2([safe])
    jp2 = next(safe.rglob("*_TCI_10m.jp2"))
    jp2.write_bytes(jp2.read_bytes()[: jp2.stat().st_size * 9 // 10])
    with pytest.raises(DataError, match=r"_TCI_10m.jp2: unreadable, the file is truncated"):
        discover_sentinel2([safe])


def test_build_cli_names_a_truncated_input_before_writing(cli, builder_scene, scene_copy,
                                                          tmp_path):
    truncate(builder_scene.s2["clear"] / "TCI.tif", scene_copy / "TCI.tif", 0.5)
    out = tmp_path / "out"
    code, stdout, err = cli("data", "build", out, "--s2", scene_copy, "--hr",
                            builder_scene.hr_path, "--no-progress")
    assert code == 2 and stdout == ""
    assert len(err.strip().splitlines()) == 1
    assert f"{scene_copy / 'TCI.tif'}: unreadable, the file is truncated" in err
    assert not out.exists()  # nothing written
    hr = truncate(builder_scene.hr_path, tmp_path / "hr" / builder_scene.hr_path.name, 0.6)
    code, _, err = cli("data", "build", out, "--s2", builder_scene.s2["clear"], "--hr", hr,
                       "--no-progress")
    assert code == 2 and f"{hr}: unreadable, the file is truncated" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_block_that_cannot_be_decoded_names_its_file(cli, builder_scene, scene_copy,
                                                       tmp_path):
    """Damage the open-time check cannot see (same size, garbage inside the blocks) fails
    the build naming the file; the output is then an unfinished build, which `data check`
    says, and which the same command finishes once the file is good again."""
    corrupt_blocks(scene_copy / "TCI.tif")
    sources = Sources(discover_sentinel2([scene_copy]), discover_highres([builder_scene.hr_path]))
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"TCI.tif: cannot read raster, the file may be damaged"):
        build_dataset(out, sources, BuildConfig(), workers=1)
    # The same from a worker process (several blocks, two workers).
    with pytest.raises(DataError, match=r"TCI.tif: cannot read raster, the file may be damaged"):
        build_dataset(tmp_path / "out2", sources, BuildConfig(block_tiles=2), workers=2)
    assert not (out / "zoomsr_index.json").exists()
    assert not (out / "zoomsr_dataset.json").exists()
    report = check_dataset(out)
    assert any("unfinished `zoomsr data build`" in p.message for p in report.errors)
    # The CLI: one line naming the file (not rasterio's "WarpOperationError"), exit 2.
    code, _, err = cli("data", "build", out, "--s2", scene_copy, "--hr", builder_scene.hr_path,
                       "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{scene_copy / 'TCI.tif'}: cannot read raster" in err
    assert "WarpOperationError" not in err and "Chunk and warp" not in err
    # A good copy of the file: the same command resumes and finishes; check passes.
    shutil.copy(builder_scene.s2["clear"] / "TCI.tif", scene_copy / "TCI.tif")
    code, stdout, err = cli("data", "build", out, "--s2", scene_copy, "--hr",
                            builder_scene.hr_path, "--no-progress")
    assert code == 0, err
    assert check_dataset(out).errors == []


def test_real_truncated_scene_is_named(cli, shared_dir, tmp_path):
    """The user trial: the real Sentinel-2 TCI cut at 1.2 MB."""
    from affine import Affine
    from builder_rasters import write_raster

    from zoomsr.grid import TILE_SIZE_M, Tile, tile_for_lonlat

    real = shared_dir / "data" / "real" / "sentinel2-l2a-29RKH"
    bad = tmp_path / "bad" / "s2trunc"
    bad.mkdir(parents=True)
    for item in real.glob("*.json"):
        shutil.copy(item, bad / item.name)
    (bad / "TCI.tif").write_bytes((real / "TCI.tif").read_bytes()[:1_200_000])
    centre = tile_for_lonlat(-10.9963, 25.2761)
    corner = Tile(centre.col - 3, centre.row - 3).bounds
    res = (6 * TILE_SIZE_M + 20) / 200
    data = np.random.default_rng(0).integers(40, 220, (3, 200, 200), dtype=np.uint8)
    hr = write_raster(tmp_path / "hrA" / "hr_20200301.tif", data, "EPSG:3857",
                      Affine(res, 0, corner.left - 10, 0, -res, corner.top + 10))
    out = tmp_path / "bE_t"
    code, _, err = cli("data", "build", out, "--s2", bad, "--hr", hr.parent, "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "bad/s2trunc/TCI.tif: unreadable, the file is truncated" in err
    assert not out.exists()


def test_an_input_gone_since_planning_is_named_as_missing(builder_scene, scene_copy, tmp_path):
    from zoomsr.data.builder.reproject import GridWindow, warp

    gone = scene_copy / "TCI.tif"
    gone.unlink()
    with pytest.raises(DataError, match=rf"{gone}: file not found \(it was there when"):
        warp(str(gone), GridWindow(0, 0, 1, 1, 32))
