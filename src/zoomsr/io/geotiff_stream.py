"""Writing the output GeoTIFF while the rows are still being computed.

:class:`GeoTIFFStream` runs :func:`~zoomsr.io.geotiff.write_geotiff` in a thread of this
process; :class:`GeoTIFFProcess` runs it in a process of its own, which shares no interpreter
lock with the threads that make the rows (on a GPU, threads that spend their time launching
kernels from Python: beside one thread of pure Python the writer's own work took about 6x as
long, 1.7x since it no longer masks or checks tile by tile, ``benchmarks/writer_throughput.py
--busy-threads 1``). Both take the same calls and write the same bytes; the pipeline uses the
thread (on an H200 runs with the process made 95.5 km²/s against the thread's 109.3).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import threading
import traceback
import warnings
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

from zoomsr.errors import WriteError, ZoomsrError, ZoomsrWarning, first_line
from zoomsr.io.geotiff import write_geotiff
from zoomsr.io.raw_raster import RawRaster
from zoomsr.stopping import (
    WorkerThread,
    interrupts_held,
    join_despite_interrupts,
    signal_on_parent_death,
    wait_through_interrupts,
)


class _Abandoned(Exception):
    """Raised in the writer thread when the run stops before the output is complete."""


class GeoTIFFStream:
    """Writes the output GeoTIFF in a thread while the rows are still being computed.

    :meth:`rows_done` says how many raw rows of which chunk (``chunks``, as
    :func:`write_geotiff` takes them) are final; the thread compresses and writes each
    :data:`~zoomsr.io.geotiff.STRIP`-row strip as soon as it is, so on a fast GPU the final
    GeoTIFF costs little after the last row. :meth:`finish` supplies the tags and waits for
    the atomic rename; :meth:`abandon` (an error, Ctrl-C) stops the thread and removes its
    temporary file. The bytes are those of :func:`write_geotiff`: the same calls, in the same
    order.
    """

    def __init__(self, raw: RawRaster, output: Path, **kwargs: Any) -> None:
        self.raw = raw
        self._last = len(kwargs.get("chunks") or [None]) - 1  # index of the last chunk
        self._cond = threading.Condition()
        self._ready = (0, 0)  # (chunk, rows): every earlier chunk is final, and these rows
        self._stop = False
        self._tags: dict[str, str] | None = None
        self._error: BaseException | None = None
        self._thread = WorkerThread(self._run, "zoomsr-geotiff", args=(output, kwargs))

    def start(self) -> None:
        """Start the writer thread. Call it inside the ``try`` whose ``except`` calls
        :meth:`abandon`, so that a Ctrl-C landing anywhere after the start stops it."""
        self._thread.start()

    def _run(self, output: Path, kwargs: dict[str, Any]) -> None:
        try:
            write_geotiff(self.raw, output, tags=self._wait_tags, wait_rows=self._wait_rows,
                          **kwargs)
        except _Abandoned:
            pass
        except BaseException as exc:  # handed to finish()
            self._error = exc

    def _wait_rows(self, rows: int, chunk: int) -> None:
        with self._cond:
            while not self._stop and self._ready < (chunk, rows):
                self._cond.wait()
            if self._stop:
                raise _Abandoned

    def _wait_tags(self) -> dict[str, str]:
        with self._cond:
            while not self._stop and self._tags is None:
                self._cond.wait()
            if self._stop or self._tags is None:
                raise _Abandoned
            return self._tags

    def rows_done(self, rows: int, chunk: int = 0) -> None:
        """Raw rows ``[0, rows)`` of ``chunk`` are final, and every earlier chunk is. Raises
        the writer's error, if it had one (e.g. a full disk), now rather than after the last
        row."""
        if self._error is not None:
            raise self._error
        with self._cond:
            self._ready = max(self._ready, (chunk, rows))
            self._cond.notify_all()

    def finish(self, tags: dict[str, str]) -> None:
        """All rows are final: write the tags, wait for the file to be renamed into place."""
        with self._cond:
            self._ready = (self._last, self.raw.height)
            self._tags = tags
            self._cond.notify_all()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop without an output (the temporary file is removed). A strip being compressed
        (or a COG conversion) finishes first; the file is then removed, not renamed."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        join_despite_interrupts([self._thread])


class GeoTIFFProcess:
    """:class:`GeoTIFFStream`'s calls, with the writing done in a child process.

    The child is a fresh interpreter (``python -c``, not ``multiprocessing``'s spawn, which
    would run the user's main script again in it) in a session of its own, so a Ctrl-C at the
    terminal reaches only this process, which then tells the child to stop
    (:meth:`abandon`). It reads the rows from the raw file (``pread``: the rows written by
    this process are visible to it once :meth:`rows_done` says they are final). If this
    process dies, the child sees its end of the pipe close (on Linux it is also sent SIGTERM)
    and removes its temporary file, as it does on SIGTERM; if the child dies, the next call
    here removes its temporary file and raises :class:`~zoomsr.errors.WriteError` (the rows
    are kept for ``--resume``). A child that cannot start (no interpreter that imports this
    zoomsr: a frozen application) is replaced by a :class:`GeoTIFFStream`, with a warning.
    Use it where :func:`~zoomsr.io.atomic.output_lock` holds the output (as the pipeline does):
    a dead child's temporary files are found by name.
    """

    def __init__(self, raw: RawRaster, output: Path, **kwargs: Any) -> None:
        self.raw, self.output = raw, output
        self._kwargs = kwargs
        self._last = len(kwargs.get("chunks") or [None]) - 1
        self._sent = (0, 0)
        self._conn: Connection | None = None
        self._proc: subprocess.Popen | None = None
        self._ready = False  # the child has started (imported zoomsr)
        self._error: BaseException | None = None
        self._thread: GeoTIFFStream | None = None  # the stand-in for a child that never started
        #: The child's peak resident memory (MB), once it has written the file.
        self.peak_rss_mb: float | None = None

    def start(self) -> None:
        """Start the child and hand it the job. Call it inside the ``try`` whose ``except``
        calls :meth:`abandon`."""
        ours, theirs = Pipe(duplex=True)
        # this process's import path (multiprocessing's spawn hands it over the same way): the
        # child imports the zoomsr this process runs, a source tree's too
        path = [os.fspath(p) for p in sys.path if isinstance(p, (str, os.PathLike))]
        code = ("import signal, sys, json; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "sys.path[:] = json.loads(sys.argv[1]); "
                "from zoomsr.io.geotiff_stream import serve; "
                f"serve({theirs.fileno()}, {os.getpid()}); "
                # its files are closed: no interpreter teardown (30 ms the run waited for)
                "sys.stderr.flush(); import os; os._exit(0)")
        try:
            # not cut between the child's start and its job: a Ctrl-C there left a child
            # nobody waited for, or one that printed a traceback for a job it never got
            with interrupts_held():
                self._proc = subprocess.Popen(
                    [sys.executable, "-c", code, json.dumps(path)],
                    pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                    start_new_session=True)
                self._conn = ours
                self._send(("start", self.raw, str(self.output), self._kwargs))
        finally:
            theirs.close()
            if self._conn is None:
                ours.close()

    def _remove_temps(self) -> None:
        """The temporary files of a child that died (it could not remove them)."""
        from zoomsr.io.atomic import remove_stale_temps

        remove_stale_temps(self.output, suffix=".tif")

    def _ended(self) -> BaseException:
        """The error to raise for a child that is gone without saying why (its temporary
        files removed)."""
        assert self._proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        code = self._proc.returncode
        if code is not None:  # (a child still running may still write its file)
            self._remove_temps()
        return WriteError(f"{self.output}: the GeoTIFF writer process ended unexpectedly "
                          f"(exit code {code}); rows computed so far are kept: run the same "
                          "command with --resume to continue")

    def _fall_back(self) -> bool:
        """If the child exited before it started (it could not import zoomsr), write in a
        thread instead, from the rows said final so far; True if so."""
        if self._ready or self._thread is not None or self._proc is None:
            return self._thread is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        if self._proc.returncode is None or self._proc.returncode < 0:  # killed: an error
            return False
        self._remove_temps()
        warnings.warn(f"{self.output}: the GeoTIFF writer process could not start (exit code "
                      f"{self._proc.returncode}; see above): writing it in this process",
                      ZoomsrWarning, stacklevel=3)
        self._thread = GeoTIFFStream(self.raw, self.output, **self._kwargs)
        self._thread.start()
        if self._sent > (0, 0):
            self._thread.rows_done(self._sent[1], chunk=self._sent[0])
        return True

    def _receive(self, block: bool = True) -> tuple | None:
        """The child's next report (None: none yet, when not blocking); "ready" is noted and
        skipped; its end, unannounced, is an error."""
        assert self._conn is not None
        while True:
            try:
                if not block and not self._conn.poll():
                    return None
                message = self._conn.recv()
            except (EOFError, OSError):
                return ("ended",)
            if message[0] != "ready":
                return message
            self._ready = True

    def _check(self) -> bool:
        """Raise the child's error if it has reported one (without waiting); True if the
        work has gone to a thread (:meth:`_fall_back`)."""
        if self._thread is not None:
            return True
        if self._error is None and self._conn is not None:
            message = self._receive(block=False)
            if message is not None:
                if message[0] == "ended":
                    if self._fall_back():
                        return True
                    self._error = self._ended()
                else:
                    self._error = message[1]
        if self._error is not None:
            raise self._error
        return False

    def _send(self, message: tuple) -> None:
        assert self._conn is not None
        try:
            self._conn.send(message)
        except OSError:  # the child is gone: its own report, if it made one, says why
            if not self._check():
                raise self._ended() from None

    def rows_done(self, rows: int, chunk: int = 0) -> None:
        """As :meth:`GeoTIFFStream.rows_done`."""
        if self._check():
            self._thread.rows_done(rows, chunk)  # type: ignore[union-attr]
            return
        if (chunk, rows) > self._sent:
            self._sent = (chunk, rows)  # (a fall-back while sending hands them on)
            self._send(("rows", chunk, rows))

    def finish(self, tags: dict[str, str]) -> None:
        """As :meth:`GeoTIFFStream.finish`."""
        if not self._check():
            self._send(("rows", self._last, self.raw.height))
            if self._thread is None:
                self._send(("tags", tags))
        if self._thread is None:
            message = self._receive()
            if message[0] == "ended" and not self._fall_back():  # type: ignore[index]
                self._error = self._ended()
            elif message[0] == "error":  # type: ignore[index]
                self._error = message[1]  # type: ignore[index]
            elif message[0] == "done":  # type: ignore[index]
                self.peak_rss_mb = message[1]  # type: ignore[index]
        if self._thread is not None:
            self._thread.finish(tags)
            return
        self._wait()
        if self._error is not None:
            raise self._error

    def _wait(self) -> None:
        """Wait for the child to exit; a Ctrl-C meanwhile is raised once it has."""
        if self._proc is None:
            return
        interrupt = wait_through_interrupts(self._proc.wait)
        if self._conn is not None:
            self._conn.close()
        if self._proc.returncode not in (0, None):  # killed: it could not clean up
            self._remove_temps()
        if interrupt is not None:
            raise interrupt

    def abandon(self) -> None:
        """As :meth:`GeoTIFFStream.abandon`: the child finishes the strip it is on, removes
        its temporary file and exits; this waits for that."""
        if self._thread is not None:
            self._thread.abandon()
        if self._proc is None:
            return
        if self._proc.poll() is None and self._conn is not None and not self._conn.closed:
            with contextlib.suppress(OSError):
                self._conn.send(("abandon",))
        self._wait()


def _stop_on_sigterm(parent: int) -> None:
    """In the child: SIGTERM (a job's time limit, a service stop: sent to every process of
    the job) stops the writing as the parent's "abandon" does, and on Linux the parent's
    death sends it (a killed run's child otherwise finished a COG conversion first)."""
    def stop(signum: int, frame: object) -> None:
        raise _Abandoned

    signal.signal(signal.SIGTERM, stop)
    signal_on_parent_death()
    if os.getppid() != parent:  # the parent died before that: nobody is waiting
        raise _Abandoned


def serve(fd: int, parent: int | None = None) -> None:
    """The child's side of :class:`GeoTIFFProcess`: messages from the parent on ``fd``."""
    conn = Connection(fd)
    ready = (0, 0)
    tags: dict[str, str] | None = None

    def next_message() -> None:
        nonlocal ready, tags
        try:
            kind, *rest = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            raise _Abandoned from None
        if kind == "rows":
            ready = max(ready, tuple(rest))
        elif kind == "tags":
            tags = rest[0]
        else:
            raise _Abandoned

    def wait_rows(rows: int, chunk: int) -> None:
        while conn.poll():  # an "abandon" sent while rows were ready already
            next_message()
        while ready < (chunk, rows):
            next_message()

    def wait_tags() -> dict[str, str]:
        while tags is None:
            next_message()
        return tags

    output = "the output GeoTIFF"
    try:
        _stop_on_sigterm(parent if parent is not None else os.getppid())
        conn.send(("ready",))
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the parent is gone before it said what to do
            return
        if job[0] != "start":  # stopped before it said what to do
            return
        _, raw, output, kwargs = job
        write_geotiff(raw, Path(output), tags=wait_tags, wait_rows=wait_rows, **kwargs)
    except _Abandoned:
        return
    except BaseException as exc:
        report: BaseException = exc
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # an error that does not travel: its line, as a WriteError
            report = WriteError(f"{output}: {first_line(exc)}")
        if not isinstance(exc, (ZoomsrError, OSError)):  # a defect: its traceback, shown by
            note = getattr(report, "add_note", None)  # the parent's --debug, not on stderr
            if note is not None:
                note("in the GeoTIFF writer process:\n" + traceback.format_exc().rstrip())
        with contextlib.suppress(OSError):
            conn.send(("error", report))
        return
    with contextlib.suppress(OSError):
        conn.send(("done", own_peak_rss_mb()))


def own_peak_rss_mb() -> float:
    """This process's peak resident memory since it was started (MB).

    Linux's ``ru_maxrss`` also counts the memory of the process it was forked from, up to
    the ``exec`` (a child of a 2 GB run reported 2 GB): its ``VmHWM`` is the peak since."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes there
