"""The Ray path on a local 2-CPU Ray instance gives the same GeoTIFF as the local path."""

from __future__ import annotations

import pytest
from infer_helpers import TINY, read, write_b08, write_frames

from zoomsr.inference import InferenceOptions, Tiling, run_inference
from zoomsr_needs import require_package


@pytest.mark.slow
def test_ray_matches_local(tmp_path, tiny_model, monkeypatch):
    require_package("ray")
    # "local" starts a new instance even where RAY_ADDRESS names a cluster (here: none there)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    import ray

    from zoomsr.inference.distributed import ray_row_source

    paths = write_frames(tmp_path / "in", n=3, size=(72, 56), holes={0: (slice(0, 9),
                                                                         slice(0, 20))})
    model = tiny_model(2)
    opts = InferenceOptions(tiling=Tiling(32, 8), progress=False, uncertainty=2)
    local = tmp_path / "local.tif"
    remote = tmp_path / "ray.tif"
    run_inference(paths, local, model, opts)
    result = run_inference(paths, remote, model, opts,
                           row_source=ray_row_source("local", workers=2))
    assert not ray.is_initialized()  # the local instance it started is stopped
    a, ma, meta_a = read(local)
    b, mb, meta_b = read(remote)
    assert (ma == mb).all() and meta_a["transform"] == meta_b["transform"]
    assert abs(a.astype(int) - b.astype(int)).max() <= 1
    assert (a == b).mean() > 0.999
    assert result.windows_computed == result.windows


@pytest.mark.slow
def test_ray_band_model_and_a_dying_worker(tmp_path):
    """A band-variant model (TCI + B08) runs on Ray like locally; a worker that dies mid-scene
    gives one clear error, the partial run is kept, and --resume finishes it locally."""
    require_package("ray")
    import numpy as np

    from zoomsr.inference import build_inference_model
    from zoomsr.inference.distributed import RayPool, RayWorkerError
    from zoomsr.inference.writer import partial_dir

    paths = write_frames(tmp_path / "in", n=2, size=(72, 40))
    write_b08(paths, 2500)
    model = build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 8},
                                  random_weights=True, device="cpu", bands="tci,b08")
    # column strips of one window: the pool's workers serve each strip in turn
    opts = InferenceOptions(tiling=Tiling(32, 8), progress=False, dn_offset=0, column_width=24)
    local = tmp_path / "local.tif"
    run_inference(tmp_path / "in", local, model, opts)
    with RayPool("local", workers=1) as pool:
        remote = tmp_path / "ray.tif"
        run_inference(tmp_path / "in", remote, model, opts, row_source=pool.rows)
        a, b = read(local)[0].astype(int), read(remote)[0].astype(int)
        assert np.abs(a - b).max() <= 1

        def rows_then_death(plan, m, rows):
            source = pool.rows(plan, m, rows)
            yield next(source)
            pool._ray.kill(pool._actors[0])  # the worker process dies mid-scene
            yield from source

        out = tmp_path / "dies.tif"
        with pytest.raises(RayWorkerError, match="a Ray model worker died"):
            run_inference(tmp_path / "in", out, model, opts, row_source=rows_then_death)
        assert not out.exists() and partial_dir(out).is_dir()
    result = run_inference(tmp_path / "in", out, model, InferenceOptions(
        tiling=Tiling(32, 8), progress=False, dn_offset=0, column_width=24, resume=True))
    assert result.windows_computed < result.windows
    assert np.abs(read(out)[0].astype(int) - a).max() <= 1


def test_a_ctrl_c_during_ray_init_comes_once_ray_is_up_and_stops_it(monkeypatch):
    """A Ctrl-C landing inside ``ray.init`` (seconds, while Ray starts its processes) left
    them running after zoomsr exited, or crashed the process at exit: the interrupt is now
    held until ``ray.init`` returns, then Ray is shut down and the interrupt raised."""
    import os
    import signal
    import sys
    import time
    import types

    from zoomsr.inference.distributed import RayPool

    steps: list[str] = []
    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: "init done" in steps and "shutdown" not in steps

    def init(**kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the start
        time.sleep(0.05)
        steps.append("init done")

    fake.init = init
    fake.shutdown = lambda: steps.append("shutdown")
    monkeypatch.setitem(sys.modules, "ray", fake)
    pool = RayPool("local", workers=1)
    with pytest.raises(KeyboardInterrupt):
        pool.start()
    assert steps == ["init done", "shutdown"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
