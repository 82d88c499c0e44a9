"""Band-variant models (TCI + B08, 20 m, 60 m bands) and cloud-aware frame choice (SCL,
MSK_CLASSI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from infer_helpers import REAL_S2, TINY, crop_real_scene, read, write_b08, write_frames
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from zoomsr.errors import ConfigError, DataError, InputError
from zoomsr.inference import (
    InferenceOptions,
    Tiling,
    build_inference_model,
    discover_frames,
    run_inference,
)
from zoomsr.inference.reader import SCL_CLOUDY, SceneReader

FAST = Tiling(window=32, overlap=8)


def _model(n_images: int, bands: str):
    per_frame = 3 + bands.count(",")
    cfg = {**TINY, "num_in_ch": per_frame * n_images}
    return build_inference_model(model="rrdbnet", config=cfg, random_weights=True,
                                 device="cpu", bands=bands)


def _opts(**kw) -> InferenceOptions:
    return InferenceOptions(tiling=kw.pop("tiling", FAST), progress=False, **kw)


def _band_file(path: Path, data: np.ndarray, transform: Affine, crs: str = "EPSG:32631",
               nodata: float | None = 0) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype=data.dtype, crs=crs, transform=transform,
                       nodata=nodata) as dst:
        dst.write(data, 1)
    return path


def test_real_tci_b08_scl_read_on_the_native_grid(shared_dir, tmp_path):
    """Real L2A files (a crop with clouds): B08 / 8160 as the 4th channel, SCL clouds marked."""
    folder = crop_real_scene(shared_dir / REAL_S2, tmp_path / "29RKH", col=492, row=0)
    frame = discover_frames(folder, extra_bands=("b08",)).frames[0]
    (b08,) = frame.extras
    assert b08.name == "b08" and b08.path.name == "B08.tif"
    assert b08.radiometry == "dn" and b08.dn_offset == 0.0  # baseline 02.14 (STAC item)
    assert frame.clouds is not None and frame.clouds.path.name == "SCL.tif"

    model = _model(1, "tci,b08")
    from zoomsr.inference.grid import plan_grid

    grid = plan_grid([frame], model.scale, native=True)
    reader = SceneReader([frame], grid)
    try:
        pixels, valid, cloudy = reader.read(Window(0, 0, 24, 24))
    finally:
        reader.close()
    with rasterio.open(folder / "B08.tif") as ds:
        dn = ds.read(1).astype(np.float32)
    with rasterio.open(folder / "TCI.tif") as ds:
        tci = ds.read().astype(np.float32) / 255
    with rasterio.open(folder / "SCL.tif") as ds:
        scl = np.kron(ds.read(1), np.ones((2, 2), np.uint8))  # 200 m -> 100 m, nearest
    assert pixels.shape == (1, 4, 24, 24) and valid.all()
    np.testing.assert_allclose(pixels[0, 3], np.clip(dn / 8160, 0, 1), atol=1e-6)
    np.testing.assert_allclose(pixels[0, :3], tci, atol=1e-6)
    assert np.array_equal(cloudy[0], np.isin(scl, SCL_CLOUDY))
    assert 0.1 < cloudy.mean() < 0.7  # this crop is partly cloudy

    out = tmp_path / "sr.tif"
    result = run_inference(folder, out, model, _opts(native_grid=True))
    data, mask, meta = read(out)
    assert data.shape == (3, 96, 96) and mask.min() == 255
    assert meta["tags"]["zoomsr_inputs"].count("B08.tif") == 1
    assert result.model["bands"] == ["tci", "b08"]


def test_band_model_needs_its_bands(real_scene, tmp_path):
    (real_scene / "B08.tif").unlink()
    with pytest.raises(DataError, match=r"TCI.tif: no B08 for this date.*_B08.tif"):
        run_inference(real_scene, tmp_path / "o.tif", _model(1, "tci,b08"), _opts())


def test_20m_bands_warped_and_dn_offset_removed(tmp_path):
    """B04/B03/B02 at 10 m and B05 at 20 m (baseline 05.09: DN - 1000), UTM, one date each."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "S2B_MSIL2A_20230111T121649_N0509_R066_T31UDQ"
    folder.mkdir()
    t10 = Affine(10.0, 0, 500000.0, 0, -10.0, 4100000.0)
    t20 = Affine(20.0, 0, 500000.0, 0, -20.0, 4100000.0)
    stem = "T31UDQ_20230111T121649"
    for band in ("B04", "B03", "B02"):
        _band_file(folder / f"{stem}_{band}_10m.tif",
                   rng.integers(1100, 3500, (40, 48)).astype(np.uint16), t10)
    b05 = np.full((20, 24), 1000 + 4080, np.uint16)  # reflectance 0.408 -> 0.5 after / 8160
    _band_file(folder / f"{stem}_B05_20m.tif", b05, t20)
    _band_file(folder / f"{stem}_B08_10m.tif", np.full((40, 48), 9000, np.uint16), t10)
    found = discover_frames(folder, extra_bands=("b08", "b05"))
    (frame,) = found.frames
    assert [a.name for a in frame.extras] == ["b08", "b05"]
    assert all(a.dn_offset == 1000 for a in frame.extras) and frame.dn_offset == 1000
    model = _model(2, "tci,b08,b05")
    from zoomsr.inference.grid import plan_grid

    grid = plan_grid([frame], 4, native=True)
    reader = SceneReader([frame], grid)
    try:
        pixels, valid, cloudy = reader.read(Window(0, 0, 48, 40))
    finally:
        reader.close()
    assert cloudy is None and valid.all()
    np.testing.assert_allclose(pixels[0, 3], 8000 / 8160, atol=1e-6)
    np.testing.assert_allclose(pixels[0, 4], 0.5, atol=1e-6)
    out = tmp_path / "sr.tif"
    run_inference(folder, out, model, _opts(native_grid=True))
    assert read(out)[0].shape == (3, 160, 192)
    # the same frame through a JSON manifest with band keys
    manifest = tmp_path / "frames.json"
    manifest.write_text(json.dumps([{
        "b04": str(folder / f"{stem}_B04_10m.tif"), "b03": str(folder / f"{stem}_B03_10m.tif"),
        "b02": str(folder / f"{stem}_B02_10m.tif"), "nir": str(folder / f"{stem}_B08_10m.tif"),
        "rededge1": str(folder / f"{stem}_B05_20m.tif"),
    }]))
    again = discover_frames(manifest, extra_bands=("b08", "b05")).frames[0]
    assert [a.path for a in again.extras] == [a.path for a in frame.extras]


def test_safe_like_folders_keep_the_finest_resolution(tmp_path):
    """A SAFE IMG_DATA folder: B04 at 10 and 20 m; the 10 m one is used."""
    t10 = Affine(10.0, 0, 500000.0, 0, -10.0, 4100000.0)
    t20 = Affine(20.0, 0, 500000.0, 0, -20.0, 4100000.0)
    img = tmp_path / "IMG_DATA"
    stem = "T31UDQ_20230111T121649"
    data10 = np.full((16, 16), 2000, np.uint16)
    data20 = np.full((8, 8), 2000, np.uint16)
    for band in ("B04", "B03", "B02"):
        (img / "R10m").mkdir(parents=True, exist_ok=True)
        _band_file(img / "R10m" / f"{stem}_{band}_10m.tif", data10, t10)
    (img / "R20m").mkdir()
    _band_file(img / "R20m" / f"{stem}_B04_20m.tif", data20, t20)
    _band_file(img / "R20m" / f"{stem}_B05_20m.tif", data20, t20)
    found = discover_frames(img, dn_offset=0, extra_bands=("b05",))
    (frame,) = found.frames
    assert frame.paths[0].parent.name == "R10m"
    assert frame.extras[0].path.name == f"{stem}_B05_20m.tif"
    assert any("B04_20m.tif" in note and "finer resolution" in note for note in found.ignored)


def test_multiband_file_with_labelled_b08(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "S2A_20240101_stack_N0400.tif"
    data = rng.integers(1100, 4000, (4, 36, 44)).astype(np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=44, height=36, count=4, dtype="uint16",
                       crs="EPSG:32631", transform=Affine(10, 0, 5e5, 0, -10, 4.1e6),
                       nodata=0) as dst:
        dst.write(data)
        dst.descriptions = ("B04", "B03", "B02", "B08")
    found = discover_frames(path, extra_bands=("b08",))
    frame = found.frames[0]
    assert frame.bands == (1, 2, 3) and frame.extras[0].band == 4
    assert frame.extras[0].path == path and frame.extras[0].dn_offset == 1000
    assert found.ignored == []
    # an RGB model: the stack's B08 left out, and said (it was silent; a B08 file is said)
    found = discover_frames(path)
    assert found.frames[0].extras == () and found.ignored == [
        f"{path}: B08 (band 4), a band this model does not take"]


def test_scl_clouds_steer_the_frame_choice(tmp_path):
    """Three dates, equally complete; the first is cloudy by its SCL, so the other two are used."""
    folder = tmp_path / "in"
    paths = write_frames(folder, n=3, size=(40, 40), seed=3)
    with rasterio.open(paths[0]) as ds:
        transform = ds.transform
    for i, cls in ((0, 9), (1, 4), (2, 5)):  # cloud high probability / vegetation / bare soil
        _band_file(folder / f"S2_2024010{i + 1}_SCL.tif", np.full((40, 40), cls, np.uint8),
                   transform, crs="EPSG:3857")
    model = _model(2, "tci")
    both = run_inference(folder, tmp_path / "all.tif", model, _opts())
    assert [f.clouds is not None for f in both.frames] == [True, True, True]
    clear = tmp_path / "clear"
    clear.mkdir()
    for p in paths[1:]:
        shutil.copy(p, clear / p.name)
    run_inference(clear, tmp_path / "clear.tif", model, _opts())
    used = read(tmp_path / "all.tif")[0]
    assert used.std() > 1  # a real picture, not a constant
    assert np.array_equal(used, read(tmp_path / "clear.tif")[0])
    # without the SCL files the first two dates win the tie
    for f in folder.glob("*_SCL.tif"):
        f.unlink()
    run_inference(folder, tmp_path / "noscl.tif", model, _opts())
    assert not np.array_equal(read(tmp_path / "noscl.tif")[0], used)


def test_s2naip_chunks_with_b08(tmp_path):
    from zoomsr.data.sample import write_sample

    root = write_sample(tmp_path / "ds", pairs=4, n_frames=3, bands="tci,b08", workers=1)
    out = tmp_path / "chunks.tif"
    result = run_inference(root, out, _model(2, "tci,b08"), _opts())
    assert result.windows == 4 and read(out)[1].max() == 255
    for f in (root / "sentinel2").glob("*/b08.png"):
        f.unlink()
        break
    with pytest.raises(DataError, match=r"b08.png: missing; the model takes bands tci,b08"):
        run_inference(root, tmp_path / "again.tif", _model(2, "tci,b08"), _opts())


def test_model_bands_must_fit_its_channels():
    with pytest.raises(ConfigError, match=r"num_in_ch=8 cannot take frames of bands tci,b08,b05"):
        build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 8},
                              random_weights=True, device="cpu", bands="tci,b08,b05")
    with pytest.raises(ConfigError, match="--bands tci,b08"):
        build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 32},
                              random_weights=True, device="cpu")
    model = _model(2, "tci,b08")
    with pytest.raises(InputError, match=r"expects \[B, 2, 4, h, w\]"):
        model.forward(np.zeros((1, 2, 3, 8, 8), np.float32))


def test_checkpoint_carries_its_bands(tmp_path):
    from zoomsr.models import create_model, save_checkpoint

    net = create_model("rrdbnet", **{**TINY, "num_in_ch": 8})
    path = save_checkpoint(net, tmp_path / "g.pth", bands=["tci", "b08"], n_images=2)
    model = build_inference_model(weights=path, device="cpu")
    assert model.bands == ("tci", "b08") and model.n_images == 2 and model.channels == 4
    # recorded as a string: it was read letter by letter
    path = save_checkpoint(net, tmp_path / "s.pth", bands="tci,b08", n_images=2)
    assert build_inference_model(weights=path, device="cpu").bands == ("tci", "b08")


def test_bands_other_than_a_checkpoints_own_are_refused(tmp_path):
    """--bands tci,b05 to a model trained on tci,b08 fed B05 where it learnt B08: it ran,
    exit 0 (a registry entry refused it; a file recording its bands did not)."""
    from zoomsr.errors import ConfigError
    from zoomsr.models import create_model, save_checkpoint

    net = create_model("rrdbnet", **{**TINY, "num_in_ch": 10})  # 2 x (tci, b05, b08)
    path = save_checkpoint(net, tmp_path / "g.pth", bands=["tci", "b05", "b08"], n_images=2)
    for other in ("tci,b05,b11", "tci,b08,b05"):  # another band, the same in another order
        with pytest.raises(ConfigError, match=rf"^bands {other}: .*g\.pth was trained on bands "
                                              r"tci,b05,b08 \(recorded in the file\)"):
            build_inference_model(weights=path, device="cpu", bands=other)
    same = build_inference_model(weights=path, device="cpu", bands=["tci", "B05", "b08"])
    assert same.bands == ("tci", "b05", "b08")


def test_a_training_checkpoint_carries_its_run_configs_bands(tmp_path):
    """A Lightning .ckpt of a run on tci,b08 was read as 2 TCI frames more (no error)."""
    import torch

    from zoomsr.models import checkpoint_metadata, create_model

    net = create_model("rrdbnet", **{**TINY, "num_in_ch": 12})  # 3 x tci+b08, or 4 x tci
    torch.save({"zoomsr": checkpoint_metadata(net),
                "state_dict": {f"generator.{k}": v for k, v in net.state_dict().items()},
                "zoomsr_config": {"data": {"bands": ["tci", "b08"], "n_images": 3}}},
               tmp_path / "last.ckpt")
    model = build_inference_model(weights=tmp_path / "last.ckpt", device="cpu")
    assert model.bands == ("tci", "b08") and model.n_images == 3


def test_nan_weights_are_refused_by_infer(tmp_path):
    """The fast loader skipped the finite check: infer wrote a black band and exited 0."""
    from zoomsr.errors import CheckpointError
    from zoomsr.models import create_model, save_checkpoint

    net = create_model("rrdbnet", **TINY)
    net.conv_last.bias.data[0] = float("nan")
    path = save_checkpoint(net, tmp_path / "diverged.pth")
    with pytest.raises(CheckpointError, match=r"diverged.pth: conv_last.bias holds NaN"):
        build_inference_model(weights=path, device="cpu")


def test_radiometry_option_applies_to_extra_bands(tmp_path):
    """Float digital numbers: --radiometry dn holds for B08 as for B04/B03/B02."""
    t10 = Affine(10.0, 0, 500000.0, 0, -10.0, 4100000.0)
    for band in ("B02", "B03", "B04", "B08"):
        _band_file(tmp_path / f"T31UDQ_20240101_{band}.tif",
                   np.full((16, 16), 2500, np.float32), t10)
    frame = discover_frames(tmp_path, radiometry="dn", dn_offset=0, extra_bands=("b08",))
    (f,) = frame.frames
    assert f.radiometry == "dn" and f.extras[0].radiometry == "dn"


def test_resume_refuses_a_changed_extra_band(tmp_path):
    paths = write_frames(tmp_path / "in", n=2, size=(72, 40))
    b08 = write_b08(paths, 3000)[0]
    model = _model(2, "tci,b08")
    out = tmp_path / "sr.tif"

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_inference(tmp_path / "in", out, model, _opts(dn_offset=0), on_row=stop)
    with rasterio.open(b08, "r+") as ds:
        ds.write(np.full((1, 72, 40), 3100, np.uint16))
    with pytest.raises(InputError, match=r"other inputs or settings \(.*_B08.tif changed since"):
        run_inference(tmp_path / "in", out, model, _opts(dn_offset=0, resume=True))


def test_band_variant_shapes_need_their_bands():
    """A 72-channel checkpoint is esrgan-20m's shape: not silently read as 24 TCI images."""
    cfg = {**TINY, "num_in_ch": 72}
    with pytest.raises(ConfigError, match=r"esrgan-20m .* --bands tci,b08,b05,b06,b07,b11,b12"):
        build_inference_model(model="rrdbnet", config=cfg, random_weights=True, device="cpu")
    assert build_inference_model(model="rrdbnet", config=cfg, random_weights=True,
                                 device="cpu", bands="tci").n_images == 24
    twenty = build_inference_model(model="rrdbnet", config=cfg, random_weights=True,
                                   device="cpu", bands="tci,b08,b05,b06,b07,b11,b12")
    assert twenty.n_images == 8 and twenty.channels == 9


def test_preview_images_are_not_dates(tmp_path):
    paths = write_frames(tmp_path / "in", n=2, size=(24, 24))
    shutil.copy(paths[0], tmp_path / "in" / "T31UDQ_20240101T105431_PVI.tif")
    found = discover_frames(tmp_path / "in")
    assert len(found.frames) == 2
    assert any("PVI.tif: a preview image" in note for note in found.ignored)


@pytest.mark.parametrize("shift", [(0, 0, 0.5), (10, 0, 1.0)])  # a smaller tile; shifted 10 px
def test_a_band_from_another_area_is_refused(tmp_path, shift):
    """A B08 that does not cover its TCI's area (another tile, a crop, a shifted grid) would
    mask or misplace the output silently: refused, naming both files."""
    paths = write_frames(tmp_path, n=1, size=(40, 48))
    (b08,) = write_b08(paths, 2000)
    dx, dy, part = shift
    with rasterio.open(b08) as ds:
        t, profile = ds.transform, ds.profile
        data = ds.read()
    profile |= {"transform": Affine(t.a, 0, t.c + dx * t.a, 0, t.e, t.f),
                "width": int(48 * part), "height": int(40 * part)}
    with rasterio.open(b08, "w", **profile) as ds:
        ds.write(data[:, : profile["height"], : profile["width"]])
    with pytest.raises(DataError, match=r"_B08.tif: B08 does not cover the same area as .*_TCI"):
        discover_frames(tmp_path, dn_offset=0, extra_bands=("b08",))



def test_a_band_file_of_more_than_one_band_is_refused(tmp_path):
    """A 2-band file named ..._B08.tif was read as its band 1, silently."""
    paths = write_frames(tmp_path, n=1, size=(40, 48))
    (b08,) = write_b08(paths, 2000)
    with rasterio.open(b08) as ds:
        profile, data = ds.profile, ds.read(1)
    with rasterio.open(b08, "w", **(profile | {"count": 2})) as ds:
        ds.write(np.stack([data, data]))
    with pytest.raises(DataError, match=r"_B08.tif: 2 bands in a B08 file; expected that one "
                                        r"band \(a stack of bands is given as the frame"):
        discover_frames(tmp_path, dn_offset=0, extra_bands=("b08",))
    # its values and an alpha band (gdalwarp -dstalpha): one band, masked
    with rasterio.open(b08, "w", **(profile | {"count": 2, "nodata": None, "alpha": "YES"})
                       ) as ds:
        ds.write(np.stack([data, np.full_like(data, 65535)]))
    with rasterio.open(b08) as ds:
        assert ds.colorinterp[1] == ColorInterp.alpha
    (frame,) = discover_frames(tmp_path, dn_offset=0, extra_bands=("b08",)).frames
    assert frame.extras[0].band == 1


def test_named_files_find_their_dates_other_bands_beside_them(tmp_path):
    """As a folder input: naming only the TCIs still finds each date's B08 and SCL."""
    paths = write_frames(tmp_path / "in", n=2, size=(24, 24))
    write_b08(paths, 3000)
    scl = paths[0].with_name(paths[0].name.replace("_TCI", "_SCL"))
    with rasterio.open(paths[0]) as src:
        profile = src.profile | {"count": 1, "photometric": "MINISBLACK", "nodata": None}
    with rasterio.open(scl, "w", **profile) as dst:
        dst.write(np.full((1, 24, 24), 4, np.uint8))
    frames = discover_frames(paths, dn_offset=0, extra_bands=("b08",)).frames
    assert [f.extras[0].path.name for f in frames] == ["S2_20240101_B08.tif",
                                                        "S2_20240102_B08.tif"]
    assert frames[0].clouds.path == scl and frames[1].clouds is None
    # a date without one: the advice names a file that would be found
    paths[1].with_name("S2_20240102_B08.tif").unlink()
    with pytest.raises(DataError, match=r"S2_20240102_TCI.tif: no B08 .* put it beside as e.g. "
                                        r"S2_20240102_B08.tif"):
        discover_frames(paths, dn_offset=0, extra_bands=("b08",))


def _l1c_safe(root: Path, tci: Path, day: int, mask: np.ndarray | None) -> Path:
    """An L1C SAFE product (ESA's layout, JPEG 2000) of the TCI ``tci`` and, when given,
    its cloud mask ``mask`` ``[3, h, w]`` (opaque, cirrus, snow) at 60 m."""
    stamp = f"202401{day:02d}T103429"
    granule = (root / f"S2B_MSIL1C_{stamp}_N0510_R108_T31UFU_{stamp}.SAFE" / "GRANULE"
               / f"L1C_T31UFU_A035668_{stamp}")
    (granule / "IMG_DATA").mkdir(parents=True)
    (granule / "QI_DATA").mkdir()
    with rasterio.open(tci) as src:
        data, profile = src.read(), src.profile
    profile.update(driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES")
    for k in ("tiled", "blockxsize", "blockysize", "interleave", "compress", "photometric"):
        profile.pop(k, None)
    with rasterio.open(granule / "IMG_DATA" / f"T31UFU_{stamp}_TCI.jp2", "w", **profile) as d:
        d.write(data)
    if mask is not None:
        t = profile["transform"]
        with rasterio.open(granule / "QI_DATA" / "MSK_CLASSI_B00.jp2", "w",
                           driver="JP2OpenJPEG", width=mask.shape[2], height=mask.shape[1],
                           count=3, dtype="uint8", crs=profile["crs"], QUALITY=100,
                           REVERSIBLE="YES",
                           transform=Affine(60.0, 0, t.c, 0, -60.0, t.f)) as d:
            d.write(mask)
    return granule


def test_l1c_cloud_mask_steers_the_frame_choice(tmp_path, cli):
    """L1C has no SCL; its SAFE granules carry MSK_CLASSI (opaque, cirrus, snow flags, 60 m):
    three equally complete dates, the first opaque-cloudy, the second cirrus-covered, the third
    clear but snowy (snow is not cloud). So the third and the least cloudy other are used."""
    tcis = write_frames(tmp_path / "tci", n=3, size=(40, 40), seed=3, crs="EPSG:32631")
    masks = np.zeros((3, 3, 7, 7), np.uint8)
    masks[0, 0] = 1  # opaque everywhere
    masks[1, 1, :3] = 1  # cirrus over the top three 60 m rows
    masks[2, 2] = 1  # snow
    safes = tmp_path / "safes"
    for i in range(3):
        _l1c_safe(safes, tcis[i], i + 1, masks[i])
    found = discover_frames(safes).frames
    assert [f.clouds.name for f in found] == ["msk_classi"] * 3
    assert [f.clouds.path.parent.name for f in found] == ["QI_DATA"] * 3
    model = _model(2, "tci")
    used = run_inference(safes, tmp_path / "all.tif", model, _opts(native_grid=True))
    assert used.grid.crs.to_epsg() == 32631
    clear = tmp_path / "clear"
    for i in (1, 2):
        _l1c_safe(clear, tcis[i], i + 1, None)
    run_inference(clear, tmp_path / "clear.tif", model, _opts(native_grid=True))
    out = read(tmp_path / "all.tif")[0]
    assert out.std() > 1 and np.array_equal(out, read(tmp_path / "clear.tif")[0])
    # the mask is what steered it: without it the first two dates win the tie
    for m in safes.glob("*/GRANULE/*/QI_DATA/*.jp2"):
        m.unlink()
    run_inference(safes, tmp_path / "nomask.tif", model, _opts(native_grid=True))
    assert not np.array_equal(read(tmp_path / "nomask.tif")[0], out)
    # the CLI says which layer steered the choice
    shutil.rmtree(safes)
    for i in range(3):
        _l1c_safe(safes, tcis[i], i + 1, masks[i])
    code, out_text, err = cli("infer", safes, "-o", tmp_path / "cli.tif", "--model", "rrdbnet",
                              "-c", ",".join(f"{k}={v}" for k, v in
                                             {**TINY, "num_in_ch": 6}.items()),
                              "--random-weights", "--window", "32", "--overlap", "8",
                              "--no-progress", "--device", "cpu", "--native-grid")
    assert code == 0, err
    assert "frame choice: clouds counted (MSK_CLASSI for 3 of 3 date(s))" in out_text


def test_an_scl_wins_over_the_cloud_mask_and_named_masks_are_found(tmp_path):
    """An L2A granule has both (MSK_CLASSI from baseline 04.00): the SCL, finer in classes, is
    used. A folder of named files finds a date's MSK_CLASSI by its name."""
    paths = write_frames(tmp_path / "in", n=1, size=(40, 40), crs="EPSG:32631")
    with rasterio.open(paths[0]) as ds:
        t = ds.transform
    mask = Affine(60.0, 0, t.c, 0, -60.0, t.f)
    named = tmp_path / "in" / "S2_20240101_MSK_CLASSI.tif"
    with rasterio.open(named, "w", driver="GTiff", width=7, height=7, count=3, dtype="uint8",
                       crs="EPSG:32631", transform=mask) as d:
        d.write(np.zeros((3, 7, 7), np.uint8))
    assert discover_frames(tmp_path / "in").frames[0].clouds.path == named
    assert discover_frames(paths).frames[0].clouds.path == named  # beside a file named too
    manifest = tmp_path / "frames.json"  # or listed by its key
    manifest.write_text(json.dumps([{"tci": str(paths[0]), "msk_classi": str(named)}]))
    assert discover_frames(manifest).frames[0].clouds.path == named
    _band_file(tmp_path / "in" / "S2_20240101_SCL.tif", np.full((20, 20), 4, np.uint8),
               Affine(20.0, 0, t.c, 0, -20.0, t.f))
    assert discover_frames(tmp_path / "in").frames[0].clouds.name == "scl"


def test_a_cloud_mask_without_its_cirrus_band_is_refused(tmp_path):
    paths = write_frames(tmp_path / "in", n=1, size=(40, 40), crs="EPSG:32631")
    with rasterio.open(paths[0]) as ds:
        t = ds.transform
    bad = _band_file(tmp_path / "in" / "S2_20240101_MSK_CLASSI.tif",
                     np.zeros((7, 7), np.uint8), Affine(60.0, 0, t.c, 0, -60.0, t.f))
    with pytest.raises(DataError, match=rf"^{bad}: MSK_CLASSI must be an 8-bit cloud mask with "
                                        r"opaque and cirrus bands \(band 1, 2\), found 1 band"):
        discover_frames(tmp_path / "in")


def test_an_scl_that_holds_no_scene_classes_is_refused(tmp_path):
    """An 8-bit layer of 200s named SCL was used as one: every pixel counted as clear."""
    paths = write_frames(tmp_path / "in", n=1, size=(40, 40), crs="EPSG:32631")
    with rasterio.open(paths[0]) as ds:
        t = ds.transform
    scl = _band_file(tmp_path / "in" / "S2_20240101_SCL.tif", np.full((20, 20), 200, np.uint8),
                     Affine(20.0, 0, t.c, 0, -20.0, t.f))
    with pytest.raises(DataError, match=rf"^{scl}: values up to 200: not an SCL \(scene "
                                        r"classes 0-11\)"):
        discover_frames(tmp_path / "in")
