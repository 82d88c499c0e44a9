"""Running a script as a terminal runs a command: in a process group of its own, so a test
can send it a real Ctrl-C (SIGINT to the whole group, as a terminal does)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence


@contextlib.contextmanager
def own_group(command: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: str | os.PathLike[str] | None = None) -> Iterator[subprocess.Popen]:
    """``command`` started in a session of its own (stdout and stderr piped, as text; ``env``
    and ``cwd`` as ``subprocess.Popen`` takes them); its group is killed at the end, whatever
    the test did, so nothing outlives it."""
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=env, cwd=cwd)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        # reaped, its pipes closed (a process of another session may still hold them)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=30)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (not gone, not a zombie waiting to be reaped); Linux."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def children(pid: int, same_command: bool = False) -> list[int]:
    """Live children of ``pid``; ``same_command``: only those forked from it (its command
    line, not a resource tracker's); Linux."""
    def cmdline(p: int | str) -> bytes:
        with open(f"/proc/{p}/cmdline", "rb") as fh:
            return fh.read()

    parent = cmdline(pid) if same_command else None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                state, ppid = fh.read().rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state not in ("Z", "X") and (
                    parent is None or cmdline(entry) == parent):
                found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def wait_gone(pids: Sequence[int], seconds: float) -> list[int]:
    """The processes of ``pids`` still alive after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def kill_all(proc: subprocess.Popen, pids: Sequence[int]) -> None:
    """Kill ``pids``, ``proc``'s children and ``proc`` (whatever a test left), and reap it."""
    for pid in [*pids, *children(proc.pid), proc.pid]:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)
