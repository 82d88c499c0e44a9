"""The Ray path on a local 2-CPU Ray instance gives the same GeoTIFF as the local path."""

from __future__ import annotations

import pytest
from infer_helpers import read, write_frames

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
