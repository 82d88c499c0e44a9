"""Running a script as a terminal runs a command: in a process group of its own, so a test
can send it a real Ctrl-C (SIGINT to the whole group, as a terminal does)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
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
