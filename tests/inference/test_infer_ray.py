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
        # a worker given one CPU decodes its rows' files in its own thread: the read pool's
        # 16 would take the other workers' CPUs
        assert pool._get(pool._actors[0].read_threads.remote()) == 1

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


@pytest.mark.slow
def test_workers_that_cannot_start_do_not_hang_the_scene(tmp_path, tiny_model, monkeypatch):
    """A cluster with fewer CPUs than --ray-workers: the rows given to the worker that could
    not be placed were waited for forever, silently. Rows now go to the started workers (the
    others join once placed, as on an autoscaling cluster), with a note; and when none
    starts (the cluster busy), one line after READY_TIMEOUT_S."""
    require_package("ray")
    import ray

    from zoomsr.errors import ZoomsrWarning
    from zoomsr.inference import distributed
    from zoomsr.inference.distributed import RayPool, RayUnavailableError

    paths = write_frames(tmp_path / "in", n=2, size=(40, 40))
    model = tiny_model(2)
    opts = InferenceOptions(tiling=Tiling(32, 8), progress=False)
    run_inference(paths, tmp_path / "local.tif", model, opts)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(distributed, "WAIT_NOTICE_S", 0.0)
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        pool = RayPool("auto", workers=2)  # joins the running 1-CPU session
        with pytest.warns(ZoomsrWarning, match=r"1 of 2 Ray model workers wait for resources "
                          r"after 0 s \(the cluster has 0 CPU\(s\) free; each needs 1 CPU\): "
                          r"the rows go to the 1 started"):
            run_inference(paths, tmp_path / "ray.tif", model, opts, row_source=pool.rows)
        pool.close()
        assert read(tmp_path / "ray.tif")[0].tobytes() == read(tmp_path / "local.tif")[0].tobytes()

        @ray.remote(num_cpus=1)
        class Busy:  # another job holding the only CPU
            def ready(self) -> bool:
                return True

        busy = Busy.remote()
        ray.get(busy.ready.remote())
        monkeypatch.setattr(distributed, "READY_TIMEOUT_S", 2.0)
        pool = RayPool("auto", workers=1)
        with pytest.warns(ZoomsrWarning, match=r"waiting for the Ray model workers to start: "
                          r"none of 1 has"), \
                pytest.raises(RayUnavailableError, match=r"none of 1 Ray model workers started "
                              r"within 2 s: the cluster has 0 CPU\(s\) free \(each worker "
                              r"needs 1 CPU\)"):
            run_inference(paths, tmp_path / "busy.tif", model, opts, row_source=pool.rows)
        pool.close()
    finally:
        ray.shutdown()


def test_an_address_where_no_ray_answers_is_refused_at_once():
    """A web server (the dashboard's port) passed the TCP check, and ray.init then retried for
    many minutes, deaf to Ctrl-C."""
    import http.server
    import socketserver
    import threading

    from zoomsr.inference.distributed import RayUnavailableError, check_reachable

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    with socketserver.TCPServer(("127.0.0.1", 0), Quiet) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        address = f"127.0.0.1:{server.server_address[1]}"
        with pytest.raises(RayUnavailableError, match=rf"cannot use '{address}' as a Ray "
                           r"address: what answers there is no Ray cluster .*not the dashboard"):
            check_reachable(address)
        with pytest.raises(RayUnavailableError, match=r"that is a web address"):
            check_reachable(f"http://{address}")
        server.shutdown()

    class Tls(socketserver.BaseRequestHandler):  # a TLS server: an alert, in binary
        def handle(self) -> None:
            self.request.recv(64)
            self.request.sendall(b"\x15\x03\x01\x00\x02\x02\x46")

    class Closes(socketserver.BaseRequestHandler):  # hangs up at once
        def handle(self) -> None:
            pass

    import socket

    class Server6(socketserver.TCPServer):
        address_family = socket.AF_INET6

    try:  # an IPv6 address, in brackets as the docs write it: it was looked up as a name
        server6 = Server6(("::1", 0), Quiet)
    except OSError:  # no IPv6 on this machine
        server6 = None
    if server6 is not None:
        with server6 as server:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            with pytest.raises(RayUnavailableError, match=r"what answers there is no Ray"):
                check_reachable(f"[::1]:{server.server_address[1]}")
            server.shutdown()

    for handler in (Tls, Closes):  # left to ray.init (clusters with RAY_USE_TLS answer so)
        with socketserver.TCPServer(("127.0.0.1", 0), handler) as server:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            check_reachable(f"127.0.0.1:{server.server_address[1]}")
            server.shutdown()


@pytest.mark.slow
def test_a_ray_run_from_the_cli_prints_no_ray_notice(tmp_path):
    """Ray 2.60 announced "Token authentication is enabled for this Ray cluster" on stderr
    at every start of the private local instance: the one stderr line of a good run."""
    require_package("ray")
    import os
    import subprocess
    import sys

    write_frames(tmp_path / "in", n=2, size=(24, 24))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    args = [sys.executable, "-m", "zoomsr", "infer", str(tmp_path / "in"), "-o",
            str(tmp_path / "ray.tif"), "--model", "rrdbnet", "--config",
            "num_in_ch=6,num_feat=8,num_block=1,num_grow_ch=4", "--random-weights",
            "--window", "16", "--overlap", "4", "--no-progress", "--device", "cpu",
            "--ray", "local", "--ray-workers", "1"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and "wrote" in done.stdout


@pytest.mark.slow
def test_a_worker_exception_is_raised_as_itself(monkeypatch):
    """A plain exception in a worker (e.g. CUDA out of memory) came out as
    "RayTaskError(ValueError): ray::RowWorker.row() (pid=...)" and the remote traceback,
    where the local path gives one line."""
    require_package("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    from zoomsr.errors import DataError
    from zoomsr.inference.distributed import RayPool

    with RayPool("local", workers=1) as pool:
        ray = pool._ray

        @ray.remote
        def fail(kind: str) -> None:
            raise (ValueError("out of memory") if kind == "plain" else DataError("x.tif: bad"))

        with pytest.raises(ValueError, match=r"^out of memory$"):
            pool._get(fail.remote("plain"))
        with pytest.raises(DataError, match=r"^x.tif: bad$"):
            pool._get(fail.remote("zoomsr"))


@pytest.mark.slow
def test_ray_workers_keep_the_precision_asked_for(tmp_path, monkeypatch):
    """--precision bf16 on CPU workers ran fp32 there (the driver's choice was kept for CUDA
    workers only): the Ray output was the local fp32 one, not the bf16 one asked for."""
    require_package("ray")
    import numpy as np

    from zoomsr.inference import build_inference_model
    from zoomsr.inference.distributed import RayPool

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    paths = write_frames(tmp_path / "in", n=2, size=(40, 40))
    opts = InferenceOptions(tiling=Tiling(32, 8), progress=False)
    outs = {}
    for precision in ("fp32", "bf16"):
        model = build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 6},
                                      random_weights=True, device="cpu", precision=precision)
        run_inference(paths, tmp_path / f"{precision}.tif", model, opts)
        outs[precision] = read(tmp_path / f"{precision}.tif")[0].astype(int)
    assert not np.array_equal(outs["fp32"], outs["bf16"])
    with RayPool("local", workers=1) as pool:
        run_inference(paths, tmp_path / "ray.tif", model, opts, row_source=pool.rows)
    ray_out = read(tmp_path / "ray.tif")[0].astype(int)
    assert np.abs(ray_out - outs["bf16"]).max() <= 1
    assert np.abs(ray_out - outs["bf16"]).sum() < np.abs(ray_out - outs["fp32"]).sum()


def test_a_sigterm_during_ray_init_comes_once_ray_is_up_and_stops_it(monkeypatch):
    """``ray.init`` first sets its own SIGTERM handler (``sys.exit``) in place of the one
    holding the signal: a SIGTERM while Ray started its processes exited with code 15,
    silently, and left them running for minutes. Its setter now does nothing during the
    start: the SIGTERM is held, then handled as zoomsr's commands handle it (as Ctrl-C)."""
    import os
    import signal
    import sys
    import time
    import types

    from zoomsr.inference.distributed import RayPool
    from zoomsr.stopping import Terminated, sigterm_as_interrupt

    steps: list[str] = []
    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: "init done" in steps and "shutdown" not in steps
    utils = types.SimpleNamespace(
        set_sigterm_handler=lambda handler: signal.signal(signal.SIGTERM, handler))
    fake._private = types.SimpleNamespace(utils=utils)
    real_setter = utils.set_sigterm_handler

    def init(**kwargs):  # as Ray's: its handler first, then the processes
        fake._private.utils.set_sigterm_handler(lambda signum, frame: sys.exit(signum))
        os.kill(os.getpid(), signal.SIGTERM)  # `kill`, SLURM, `timeout` in the middle
        time.sleep(0.05)
        steps.append("init done")

    fake.init = init
    fake.shutdown = lambda: steps.append("shutdown")
    monkeypatch.setitem(sys.modules, "ray", fake)
    with sigterm_as_interrupt():
        ours = signal.getsignal(signal.SIGTERM)
        with pytest.raises(Terminated):
            RayPool("local", workers=1).start()
        assert signal.getsignal(signal.SIGTERM) is ours
    assert steps == ["init done", "shutdown"]
    assert utils.set_sigterm_handler is real_setter  # Ray's own again after its start


def test_the_installed_ray_sets_its_sigterm_handler_where_it_is_kept():
    """The setter :func:`~zoomsr.inference.distributed._sigterm_kept` quiets during
    ``ray.init`` is where the installed Ray has it, and ``ray.init`` calls it (a Ray that
    moved it would end zoomsr on a SIGTERM during its start again)."""
    require_package("ray")
    import inspect

    import ray

    assert callable(ray._private.utils.set_sigterm_handler)
    assert "ray._private.utils.set_sigterm_handler(" in inspect.getsource(ray.init)
