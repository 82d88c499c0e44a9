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


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _workers_of(pid: int) -> list[int]:
    """Live children of ``pid`` forked from it (same command line: not a resource tracker)."""
    def cmdline(p: int | str) -> bytes:
        with open(f"/proc/{p}/cmdline", "rb") as fh:
            return fh.read()

    parent = cmdline(pid)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                state, ppid = fh.read().rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state not in ("Z", "X") and cmdline(entry) == parent:
                found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


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
        pids = _workers_of(proc.pid)
        if any(tmp_path.iterdir()) and len(pids) >= 2:
            time.sleep(0.5)  # let the other worker finish its initializer too
            return proc, pids
        time.sleep(0.05)
    pids = _workers_of(proc.pid)
    _cleanup(proc, pids)
    message = f"the pool's workers did not start a block within 60 s (workers {pids})"
    if os.environ.get("CI") == "true":  # (CI's runs are the ones that must show it)
        pytest.fail(message)
    pytest.skip(message)


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


def test_sigterm_stops_the_workers_like_ctrl_c(tmp_path):
    proc, pids = _start_with_two_workers(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code == 130  # not 143: the signal was handled
        assert _wait_gone(pids, 10) == []
        assert "interrupted" in proc.stdout.read()  # EOF only once the workers are gone
    finally:
        _cleanup(proc, pids)


def test_workers_do_not_outlive_a_killed_parent(tmp_path):
    proc, pids = _start_with_two_workers(tmp_path)
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
