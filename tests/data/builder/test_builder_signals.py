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

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses /proc and fork")

SCRIPT = textwrap.dedent("""
    import contextlib, os, sys, time
    from zoomsr.data.builder import build

    def slow_block(job):
        print("worker", os.getpid(), flush=True)
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


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _start_with_two_workers() -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    while len(pids) < 2:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"script ended early: {proc.wait()} {proc.stderr.read()}")
        if line.startswith("worker "):
            pids.append(int(line.split()[1]))
    return proc, pids


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _cleanup(proc: subprocess.Popen, pids: list[int]) -> None:
    for pid in [*pids, proc.pid]:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_sigterm_stops_the_workers_like_ctrl_c():
    proc, pids = _start_with_two_workers()
    try:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code == 130  # not 143: the signal was handled
        assert _wait_gone(pids, 10) == []
        assert "interrupted" in proc.stdout.read()  # EOF only once the workers are gone
    finally:
        _cleanup(proc, pids)


def test_workers_do_not_outlive_a_killed_parent():
    proc, pids = _start_with_two_workers()
    try:
        proc.kill()
        proc.wait(timeout=10)
        assert _wait_gone(pids, 10) == []
    finally:
        _cleanup(proc, pids)


def test_sigterm_handler_is_restored():
    from zoomsr.data.builder.build import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert signal.getsignal(signal.SIGTERM) == before
