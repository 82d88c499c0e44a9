"""``zoomsr infer --ray`` with or without an address; no Ray is started here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from infer_helpers import write_frames  # noqa: E402 - the inference tests' generator

from zoomsr.cli import infer as infer_cli  # noqa: E402
from zoomsr.cli.main import normalise_argv  # noqa: E402
from zoomsr_needs import require_package  # noqa: E402

TINY = ["--model", "rrdbnet", "--config", "num_in_ch=6,num_feat=8,num_block=1,num_grow_ch=4",
        "--random-weights", "--window", "32", "--overlap", "8", "--no-progress",
        "--device", "cpu"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # alone at the end, before another option, before an input path
        (["infer", "in/", "-o", "o.tif", "--ray"], ["infer", "in/", "-o", "o.tif", "--ray="]),
        (["infer", "in/", "--ray", "-o", "o.tif"], ["infer", "in/", "--ray=", "-o", "o.tif"]),
        (["infer", "--ray", "in/", "-o", "o.tif"], ["infer", "--ray=", "in/", "-o", "o.tif"]),
        (["infer", "--ray", "s3://bucket/scene/", "-o", "o.tif"],
         ["infer", "--ray=", "s3://bucket/scene/", "-o", "o.tif"]),
        (["--debug", "infer", "--ray", "--scenes", "s.json"],
         ["--debug", "infer", "--ray=", "--scenes", "s.json"]),
        # with an address: kept
        (["infer", "--ray", "local", "in/"], ["infer", "--ray", "local", "in/"]),
        (["infer", "--ray", "auto", "in/"], ["infer", "--ray", "auto", "in/"]),
        (["infer", "--ray", "ray://head.example:10001", "in/"],
         ["infer", "--ray", "ray://head.example:10001", "in/"]),
        (["infer", "--ray", "10.0.0.5:6379", "in/"], ["infer", "--ray", "10.0.0.5:6379", "in/"]),
        (["infer", "--ray", "[::1]:6379", "in/"], ["infer", "--ray", "[::1]:6379", "in/"]),
        (["infer", "--ray=auto", "in/"], ["infer", "--ray=auto", "in/"]),
        (["infer", "--ray=", "in/"], ["infer", "--ray=", "in/"]),
        (["infer", "--ray-workers", "3", "in/"], ["infer", "--ray-workers", "3", "in/"]),
        # after "--" everything is an input
        (["infer", "-o", "o.tif", "--", "--ray"], ["infer", "-o", "o.tif", "--", "--ray"]),
        # other commands are left alone
        (["train", "--ray"], ["train", "--ray"]),
        (["data", "info", "d/", "--ray"], ["data", "info", "d/", "--ray"]),
        (["--help"], ["--help"]),
        ([], []),
    ],
)
def test_normalise_argv(argv, expected):
    assert normalise_argv(argv) == expected


@pytest.mark.parametrize(
    ("token", "is_address"),
    [("local", True), ("auto", True), ("ray://10.0.0.5:10001", True), ("head-1.lan:6379", True),
     ("[fe80::1]:6379", True), ("scene/", False), ("./local", False), ("scene.txt", False),
     ("s3://bucket/x.tif", False), ("C:\\data", False), ("-o", False), ("", False)],
)
def test_is_ray_address(token, is_address):
    assert infer_cli.is_ray_address(token) is is_address


def test_other_commands_still_refuse_ray(cli):
    code, _, err = cli("data", "info", "somewhere", "--ray")
    assert code == 2 and "--ray" in err


def test_default_ray_address_follows_ray_init(monkeypatch):
    """RAY_ADDRESS or a `ray start` cluster: join ("auto"); else start one ("local")."""
    monkeypatch.setenv("RAY_ADDRESS", "ray://head.example:10001")
    assert infer_cli.default_ray_address() == "auto"
    monkeypatch.delenv("RAY_ADDRESS")
    require_package("ray")
    import ray._private.services as services

    from zoomsr.inference import distributed

    probed = []
    monkeypatch.setattr(distributed, "check_reachable", probed.append)  # (it answers)
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: "10.0.0.5:6379")
    assert infer_cli.default_ray_address() == "auto" and probed == ["10.0.0.5:6379"]
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    assert infer_cli.default_ray_address() == "local"


def test_a_stale_ray_start_cluster_fails_in_one_line(monkeypatch):
    """A cluster gone without `ray stop` leaves its file: ray.init retried its address for
    over 10 minutes, deaf to Ctrl-C."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    require_package("ray")
    import socket

    import ray._private.services as services

    from zoomsr.inference.distributed import RayUnavailableError

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(services, "find_bootstrap_address",
                        lambda temp_dir: f"127.0.0.1:{port}")
    with pytest.raises(RayUnavailableError) as info:
        infer_cli.default_ray_address()
    message = str(info.value)
    assert message.startswith(f"--ray: the Ray cluster last started on this machine with `ray "
                              f"start` (127.0.0.1:{port}, from Ray's ray_current_cluster file) "
                              "does not answer: `ray stop` forgets it, `--ray local` starts")
    assert "\n" not in message


class _Calls(list):
    pool: type


@pytest.fixture
def ray_calls(monkeypatch):
    """Record the address the infer command hands to the Ray path, and run locally instead."""
    import zoomsr.inference.distributed as distributed

    calls = _Calls()

    def fake_row_source(address, workers=2, gpus_per_worker=None):
        calls.append((address, workers))
        return None  # run_inference then computes the rows locally

    class FakePool:
        rows = None
        gpus = 0.0  # what the cluster gives each worker

        def __init__(self, address, workers=2, gpus_per_worker=None):
            calls.append((address, workers))

        def worker_gpus(self):
            return self.gpus

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    monkeypatch.setattr(distributed, "ray_row_source", fake_row_source)
    monkeypatch.setattr(distributed, "RayPool", FakePool)
    monkeypatch.setattr(infer_cli, "default_ray_address", lambda: "resolved-default")
    calls.pool = FakePool
    return calls


@pytest.mark.parametrize(
    ("ray_args", "where", "address"),
    [
        (["--ray"], "end", "resolved-default"),
        (["--ray"], "before-option", "resolved-default"),
        (["--ray"], "before-input", "resolved-default"),
        (["--ray=auto"], "end", "auto"),
        (["--ray", "local"], "before-input", "local"),
        (["--ray", "ray://head.example:10001"], "before-input", "ray://head.example:10001"),
    ],
)
def test_ray_value_reaches_infer(cli, tmp_path, ray_calls, ray_args, where, address):
    write_frames(tmp_path / "in", n=2, size=(24, 24))
    out = tmp_path / "sr.tif"
    inputs, output = [str(tmp_path / "in")], ["-o", str(out)]
    if where == "end":
        argv = [*inputs, *output, *TINY, *ray_args]
    elif where == "before-option":
        argv = [*inputs, *ray_args, *output, *TINY]
    else:
        argv = [*ray_args, *inputs, *output, *TINY]
    code, stdout, err = cli("infer", *argv, "--ray-workers", "3")
    assert code == 0, err
    assert ray_calls == [(address, 3)]
    assert out.is_file() and "wrote" in stdout


def test_bare_ray_with_scenes(cli, tmp_path, ray_calls):
    write_frames(tmp_path / "in", n=2, size=(24, 24))
    manifest = tmp_path / "scenes.json"
    manifest.write_text(json.dumps({"scenes": [{"inputs": "in", "output": "sr.tif"}]}))
    code, stdout, err = cli("infer", "--scenes", manifest, "--ray", *TINY)
    assert code == 0, err
    assert ray_calls == [("resolved-default", 2)]
    assert (tmp_path / "sr.tif").is_file() and "1 scene(s) done" in stdout


def test_an_address_where_nothing_answers_fails_at_once(monkeypatch):
    """ray.init would retry a dead address for many minutes: a plain connect says so first,
    for an explicit address and for the RAY_ADDRESS that "auto" uses."""
    import socket

    require_package("ray")
    from zoomsr.inference.distributed import RayPool, RayUnavailableError

    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RayUnavailableError, match=rf"'127.0.0.1:{port}': nothing answers"):
        RayPool(f"127.0.0.1:{port}").start()
    monkeypatch.setenv("RAY_ADDRESS", f"ray://127.0.0.1:{port}")
    with pytest.raises(RayUnavailableError, match="nothing answers"):
        RayPool("auto").start()


def test_auto_with_no_cluster_says_what_to_do_in_zoomsr_terms(monkeypatch):
    """Ray's own message told the user to set `--address`, an option zoomsr does not have."""
    require_package("ray")
    import ray

    from zoomsr.inference.distributed import RayPool, RayUnavailableError

    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def no_cluster(*args, **kwargs):
        raise ConnectionError("Could not find any running Ray instance. Please specify the one "
                              "to connect to by setting `--address` flag or `RAY_ADDRESS` "
                              "environment variable.")

    monkeypatch.setattr(ray, "init", no_cluster)
    with pytest.raises(RayUnavailableError) as info:
        RayPool("auto").start()
    text = str(info.value)
    assert text.startswith("cannot start or reach Ray at 'auto': no Ray cluster is running")
    assert "--ray HOST:PORT" in text and "--ray local" in text and "--address" not in text


@pytest.mark.parametrize(("gpus", "precision", "expected"),
                         [(1.0, "auto", "bf16"), (0.0, "auto", "fp32"), (1.0, "fp32", "fp32"),
                          (0.0, "bf16", "bf16")])
def test_auto_precision_follows_the_ray_workers_device(cli, tmp_path, ray_calls, gpus,
                                                      precision, expected):
    """--precision auto on a driver without a GPU ran GPU workers in fp32: it follows the
    device the workers get (here on this CPU, so the rows are computed as they would be)."""
    import rasterio

    write_frames(tmp_path / "in", n=2, size=(24, 24))
    out = tmp_path / "sr.tif"
    ray_calls.pool.gpus = gpus
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--precision", precision,
                       "--ray", "local")
    assert code == 0, err
    with rasterio.open(out) as ds:
        assert ds.tags()["zoomsr_precision"] == expected


def test_a_finished_output_needs_no_cluster_to_be_reported_done(cli, tmp_path, ray_calls):
    """--resume of a finished output started or joined Ray first: a requeued job whose
    cluster was gone failed ("cannot reach Ray"), --ray local started one for nothing."""
    write_frames(tmp_path / "in", n=2, size=(24, 24))
    out = tmp_path / "sr.tif"
    assert cli("infer", tmp_path / "in", "-o", out, *TINY, "--ray", "local")[0] == 0
    ray_calls.clear()
    for precision in ("auto", "fp32"):
        code, stdout, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--resume",
                                "--precision", precision, "--ray", "10.0.0.9:6379")
        assert code == 0, err
        assert "finished by an earlier run, nothing to resume" in stdout
    assert ray_calls == []  # no pool made


def test_ray_workers_are_checked_without_ray_too(cli, tmp_path):
    """--ray-workers 0 without --ray was taken silently."""
    code, stdout, err = cli("infer", tmp_path, "-o", tmp_path / "o.tif", "--ray-workers", "0")
    assert code == 2 and err.strip() == "error: --ray-workers must be >= 1, got 0"
