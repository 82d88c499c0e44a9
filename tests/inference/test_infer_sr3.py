"""SR3 (diffusion) in scene inference: DDIM sampling with each window's noise named by its
own values, so batches, resumed runs and Ray workers give the same pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from infer_helpers import read, write_frames

from zoomsr.errors import ConfigError
from zoomsr.inference import InferenceOptions, Tiling, build_inference_model, run_inference
from zoomsr.models import create_model, save_checkpoint

#: A 2-image SR3 at x4, small enough to sample 4 steps of many windows in seconds.
SR3 = {"in_channels": 6, "scale": 4, "base_channels": 8, "channel_mults": (1, 2),
       "num_res_blocks": 1, "attn_levels": (), "num_timesteps": 20}
FAST = Tiling(window=16, overlap=4)


@pytest.fixture(scope="module")
def sr3_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(create_model("sr3", **SR3), tmp_path_factory.mktemp("sr3") / "sr3.pth")


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return write_frames(tmp_path_factory.mktemp("frames") / "in", n=3, size=(24, 28))


def _run(frames, out, checkpoint, **options):
    steps = options.pop("sample_steps", 4)
    seed = options.pop("seed", 0)
    model = build_inference_model(weights=checkpoint, device="cpu", sample_steps=steps,
                                  seed=seed)
    opts = InferenceOptions(tiling=FAST, progress=False, **options)
    return run_inference(frames, out, model, opts), model


def test_sr3_scene_is_georeferenced_and_the_same_in_any_batch(frames, sr3_checkpoint, tmp_path):
    one, model = _run(frames, tmp_path / "b1.tif", sr3_checkpoint, batch_size=1)
    many, _ = _run(frames, tmp_path / "b8.tif", sr3_checkpoint, batch_size=8)
    a, mask, meta = read(tmp_path / "b1.tif")
    b, _, _ = read(tmp_path / "b8.tif")
    assert model.n_images == 2 and model.layout == "stacked" and model.scale == 4
    assert a.shape == (3, 24 * 4, 28 * 4) and mask.all()
    with rasterio.open(frames[0]) as src:  # the inputs' place, at a quarter of their pixel
        crs, bounds, res = src.crs, src.bounds, src.res
    assert meta["crs"] == crs
    assert np.allclose(tuple(meta["bounds"]), tuple(bounds), atol=1e-6)
    assert (meta["transform"].a, meta["transform"].e) == pytest.approx((res[0] / 4, -res[1] / 4))
    # a window's noise comes from its own values: the batch it ran in does not matter (up to
    # float rounding of batched convolutions)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert a.std() > 0  # not a constant image
    sampling = {"method": "ddim", "eta": 0.0, "seed": 0, "steps": 4}
    assert model.describe()["sampling"] == sampling
    assert json.loads(meta["tags"]["zoomsr_sampling"]) == sampling
    assert json.loads(meta["tags"]["zoomsr_architecture"])["name"] == "sr3"


def test_sr3_seed_and_steps_change_the_output(frames, sr3_checkpoint, tmp_path):
    _run(frames, tmp_path / "s0.tif", sr3_checkpoint)
    _run(frames, tmp_path / "s0b.tif", sr3_checkpoint)
    _run(frames, tmp_path / "s1.tif", sr3_checkpoint, seed=1)
    _run(frames, tmp_path / "st.tif", sr3_checkpoint, sample_steps=2)
    base = read(tmp_path / "s0.tif")[0]
    assert np.array_equal(base, read(tmp_path / "s0b.tif")[0])  # deterministic
    assert not np.array_equal(base, read(tmp_path / "s1.tif")[0])
    assert not np.array_equal(base, read(tmp_path / "st.tif")[0])


def test_a_checkpoints_config_is_not_overridden(sr3_checkpoint):
    """The noise schedule is not in the tensors: -c num_timesteps=10 loaded and silently
    changed every output."""
    with pytest.raises(ConfigError, match=r"^-c num_timesteps=10: sr3.pth was saved with "
                                          r"num_timesteps=20; leave it out"):
        build_inference_model(weights=sr3_checkpoint, model="sr3", device="cpu",
                              config={"num_timesteps": 10})
    same = build_inference_model(weights=sr3_checkpoint, model="sr3", device="cpu",
                                 config={"num_timesteps": 20, "channel_mults": (1, 2)})
    assert same.config["num_timesteps"] == 20


def test_sample_steps_are_checked(sr3_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match=r"--sample-steps 21: this sr3 model has 20 timesteps"):
        build_inference_model(weights=sr3_checkpoint, device="cpu", sample_steps=21)
    with pytest.raises(ConfigError, match=r"--sample-steps applies to diffusion models \(sr3\), "
                                          r"not rrdbnet"):
        build_inference_model(model="rrdbnet", config={"num_in_ch": 6, "num_feat": 8,
                                                       "num_block": 1, "num_grow_ch": 4},
                              random_weights=True, device="cpu", sample_steps=4)


def test_sr3_from_the_cli_with_resume(cli, frames, sr3_checkpoint, tmp_path):
    out = tmp_path / "cli.tif"
    args = ["infer", *frames, "-o", out, "--weights", sr3_checkpoint, "--sample-steps", "3",
            "--window", "16", "--overlap", "4", "--no-progress", "--device", "cpu"]
    code, stdout, err = cli(*args)
    assert code == 0, err
    first = out.read_bytes()
    code, stdout, err = cli(*args, "--resume")  # finished: nothing redone
    assert code == 0 and "finished by an earlier run" in stdout, err
    code, stdout, err = cli(*args, "--resume", "--seed", "1")  # asks for another result
    assert code == 2 and "finished by an earlier run with other options (--seed 1, it was 0)" \
        in err
    code, _, err = cli(*args, "--overwrite")
    assert code == 0, err
    assert read(out)[0].tobytes() == read_bytes_image(first, tmp_path)
    zero = [("0" if a == "3" else a) for a in args]
    code, _, err = cli(*zero, "--overwrite")
    assert code == 2 and "--sample-steps must be an integer >= 1" in err


def read_bytes_image(data: bytes, tmp_path) -> bytes:
    path = tmp_path / "copy.tif"
    path.write_bytes(data)
    return read(path)[0].tobytes()


@pytest.mark.slow
def test_sr3_on_ray_gives_the_local_pixels(frames, sr3_checkpoint, tmp_path, monkeypatch):
    from zoomsr_needs import require_package

    require_package("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    from zoomsr.inference.distributed import RayPool

    _, model = _run(frames, tmp_path / "local.tif", sr3_checkpoint, seed=3)
    opts = InferenceOptions(tiling=FAST, progress=False, seed=3)
    with RayPool("local", workers=1) as pool:
        run_inference(frames, tmp_path / "ray.tif", model, opts, row_source=pool.rows)
    a, b = read(tmp_path / "local.tif")[0], read(tmp_path / "ray.tif")[0]
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_sr3_uncertainty_shows_where_the_dates_disagree(sr3_checkpoint, tmp_path):
    """The frame subsets of one window share its noise (named by the window's place): the
    spread was sampling noise everywhere (about 50 on and off an object seen on one date)."""
    import shutil

    import rasterio

    first = write_frames(tmp_path / "src", n=1, size=(24, 24))[0]
    paths = []
    for k, day in enumerate(("20240101", "20240201", "20240301", "20240401")):
        path = tmp_path / "in" / f"S2_{day}_TCI.tif"
        path.parent.mkdir(exist_ok=True)
        shutil.copy(first, path)
        if k == 3:  # a bright object on one date only
            with rasterio.open(path, "r+") as ds:
                data = ds.read()
                data[:, 8:16, 8:16] = 250
                ds.write(data)
        paths.append(path)
    _run(paths, tmp_path / "u.tif", sr3_checkpoint, uncertainty=2)
    band4 = read(tmp_path / "u.tif")[0][3].astype(float)
    on, off = band4[8 * 4 : 16 * 4, 8 * 4 : 16 * 4], band4[:, 20 * 4 :]
    # (a random-weight model: the object moves its output a little; the noise moved it by 26)
    assert off.mean() < 2 and on.mean() > 2 * off.mean()
