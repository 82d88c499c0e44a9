"""`data build -j N` stopped by SIGTERM or a killed parent leaves no worker behind.

Real processes: a script runs the builder's worker pool with slow blocks, prints the worker
pids, and is then sent SIGTERM (what `timeout` and SLURM send) or SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from process_groups import children, kill_all, wait_gone

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses /proc and fork")

SCRIPT = textwrap.dedent("""
    import contextlib, os, sys, time
    from zoomsr.data.builder import build

    def slow_block(job):
        # a file per worker that started a block: the test polls for them (no pipe to read)
        open(os.path.join(os.environ["ZOOMSR_TEST_STARTED"], str(os.getpid())), "w").close()
        time.sleep(120)
        return {"block": job}

    build.run_block = slow_block  # the forked workers see it too
    try:
        with getattr(build, "sigterm_as_interrupt", contextlib.nullcontext)():
            build._run_jobs(["a", "b", "c", "d"], 2, False, lambda r: None)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
""")


def _start_with_two_workers(tmp_path) -> tuple[subprocess.Popen, list[int]]:
    """The script, once its pool's workers exist and at least one has started a block (so its
    initializer ran). Every wait has a deadline: a pool that does not start within 60 s on a
    loaded machine skips the test instead of hanging it (fails it on CI)."""
    env = {**os.environ, "ZOOMSR_TEST_STARTED": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"script ended early: {proc.returncode} {proc.stderr.read()}")
        pids = children(proc.pid, same_command=True)
        if any(tmp_path.iterdir()) and len(pids) >= 2:
            time.sleep(0.5)  # let the other worker finish its initializer too
            return proc, pids
        time.sleep(0.05)
    pids = children(proc.pid, same_command=True)
    kill_all(proc, pids)
    message = f"the pool's workers did not start a block within 60 s (workers {pids})"
    if os.environ.get("CI") == "true":  # (CI's runs are the ones that must show it)
        pytest.fail(message)
    pytest.skip(message)


def test_sigterm_stops_the_workers_like_ctrl_c(tmp_path):
    proc, pids = _start_with_two_workers(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code == 130  # not 143: the signal was handled
        assert wait_gone(pids, 10) == []
        assert "interrupted" in proc.stdout.read()  # EOF only once the workers are gone
    finally:
        kill_all(proc, pids)


def test_workers_do_not_outlive_a_killed_parent(tmp_path):
    proc, pids = _start_with_two_workers(tmp_path)
    try:
        proc.kill()
        proc.wait(timeout=10)
        assert wait_gone(pids, 10) == []
    finally:
        kill_all(proc, pids)


def test_sigterm_handler_is_restored():
    from zoomsr.data.builder.build import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert signal.getsignal(signal.SIGTERM) == before
