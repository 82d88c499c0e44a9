"""`zoomsr data sample` stopped by SIGTERM or a killed parent, and run twice at once.

Real processes: a script runs the command with slow pairs (its workers mark when they start
one), then is sent SIGTERM (what `timeout` and SLURM send) or SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from process_groups import kill_all, wait_gone

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses /proc and fork")

SCRIPT = textwrap.dedent("""
    import os, sys, time
    from zoomsr.data import sample

    def slow_pair(job):
        # a file per worker that started a pair: the test polls for them (no pipe to read)
        open(os.path.join(os.environ["ZOOMSR_TEST_STARTED"], str(os.getpid())), "w").close()
        time.sleep(120)

    sample._write_one = slow_pair  # the forked workers see it too
    os.cpu_count = lambda: 2  # two workers, whatever the machine
    from zoomsr.cli.main import main

    sys.exit(main(["data", "sample", sys.argv[1], "-n", "64", "--no-progress"]))
""")


def _start(tmp_path) -> tuple[subprocess.Popen, list[int]]:
    """The command, once two of its workers have started a pair (their initializer ran)."""
    started = tmp_path / "started"
    started.mkdir()
    env = {**os.environ, "ZOOMSR_TEST_STARTED": str(started)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the command ended early: {proc.returncode} {proc.stderr.read()}")
        workers = [int(p.name) for p in started.iterdir()]
        if len(workers) >= 2:
            return proc, workers
        time.sleep(0.05)
    kill_all(proc, [int(p.name) for p in started.iterdir()])
    message = "the sample's workers did not start a pair within 60 s"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def test_sigterm_stops_it_like_ctrl_c(tmp_path):
    """It ended at once, silently, exit 143."""
    proc, workers = _start(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        err = proc.stderr.read()
        assert code == 130, err
        assert "interrupted: nothing written to" in err
        assert wait_gone(workers, 10) == []
        assert not (tmp_path / "out").exists()
    finally:
        kill_all(proc, workers)


def test_workers_do_not_outlive_a_killed_command(tmp_path):
    """Killed with SIGKILL, its workers were left waiting on the pool's lock for ever."""
    proc, workers = _start(tmp_path)
    try:
        proc.kill()
        proc.wait(timeout=10)
        assert wait_gone(workers, 10) == []
    finally:
        kill_all(proc, workers)


def test_a_second_run_into_the_same_folder_is_refused(tmp_path, cli):
    """Both built in one hidden folder: one reported a dataset of the other's half-removed
    pairs as written."""
    proc, workers = _start(tmp_path)
    try:
        code, _, err = cli("data", "sample", tmp_path / "out", "-n", "16", "--no-progress")
        assert code == 2 and "out" in err and "another" in err, err
        assert proc.poll() is None  # the first goes on
    finally:
        kill_all(proc, workers)
