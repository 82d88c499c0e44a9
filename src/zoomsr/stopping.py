"""Stopping cleanly on Ctrl-C: worker threads waited for through it (none is left running at
exit), pools of worker processes stopped at once, and steps that must not be cut in the
middle."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, cast

#: The signal the last :class:`Terminated` came from (:func:`take_termination`).
_terminated_by: int | None = None


class Terminated(KeyboardInterrupt):
    """A stop asked by a signal other than SIGINT (SIGTERM from ``timeout`` or SLURM), where a
    command handles it as Ctrl-C: ``signum`` says which (the CLI then exits with code 130
    rather than ending killed by SIGINT)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


class WorkerThread(threading.Thread):
    """A daemon thread that marks its end in ``ended`` (see :func:`join_despite_interrupts`)."""

    def __init__(self, target: Callable[..., Any], name: str, args: tuple = ()) -> None:
        super().__init__(target=target, name=name, args=args, daemon=True)
        self.ended = threading.Event()

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.ended.set()


def join_despite_interrupts(threads: Iterable[WorkerThread]) -> None:
    """Wait until every started thread of ``threads`` has ended; a Ctrl-C meanwhile does not
    cut the wait short: it is raised once they all have.

    A first Ctrl-C usually starts the stop that this waits for (threads end after the row or
    strip they are on), and users often press it again. Cutting the wait there left the
    threads running while Python exited, and a daemon thread still inside torch or GDAL then
    aborts the process ("terminate called without an active exception"). The wait is on each
    thread's ``ended`` event, not ``Thread.join``: on Python 3.11 a join cut short by Ctrl-C
    marks a running thread as stopped, so joining again returns at once.
    """
    interrupt: KeyboardInterrupt | None = None
    for t in threads:
        if t.ident is None:  # never started (Ctrl-C while starting them)
            continue
        interrupt = wait_through_interrupts(t.ended.wait) or interrupt
        t.join()  # past its work: only the thread's last steps are left
    if interrupt is not None:
        raise interrupt


def wait_through_interrupts(wait: Callable[[], object]) -> KeyboardInterrupt | None:
    """Call ``wait()`` until it returns, again after each Ctrl-C that cuts it short; return
    the last such interrupt (for the caller to raise once its own waiting is done), or None."""
    interrupt: KeyboardInterrupt | None = None
    while True:
        try:
            wait()
            return interrupt
        except KeyboardInterrupt as exc:
            interrupt = exc


#: Seconds after a held Ctrl-C (or SIGTERM) from which another one stops the block at once.
ESCAPE_AFTER = 3.0


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT), and a SIGTERM handled as one (:func:`sigterm_as_interrupt`),
    that comes during the block until it has ended, then handle it as it would have been
    (Python's handler raises ``KeyboardInterrupt``).

    For steps that leave a mess when cut in the middle: ``ray.init`` interrupted while it
    starts Ray's processes left them running, or crashed the process at exit. Where SIGINT is
    ignored (a background job started with it ignored) it stays so; outside the main thread
    (where no handler can be set) the block runs as it is. A signal that comes again
    :data:`ESCAPE_AFTER` s or more after the first is not held: it is raised there and then, so
    that a step that hangs (``ray.init`` retrying an address where nothing answers, for
    minutes) can still be stopped; pressed twice at once, Ctrl-C is still held once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # SIGINT unless ignored; SIGTERM where sigterm_as_interrupt handles it as Ctrl-C (else its
    # default, the end of the process, stays)
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(s))]
    came: list[int] = []
    first: list[float] = []
    escaped: list[bool] = []
    leaving: list[bool] = []

    def hold(signum: int, frame: Any) -> None:
        came.append(signum)
        if not first:
            first.append(time.monotonic())
        if (not escaped and not leaving and len(came) > 1
                and time.monotonic() - first[0] >= ESCAPE_AFTER):
            escaped.append(True)  # asked again, well after: the block may hang; stop it now,
            previous[signum](signum, frame)  # as its own handler does (SIGTERM: Terminated)

    # (the handlers held are callable: see held)
    previous = cast("dict[int, Callable[[int, Any], Any]]",
                    {s: signal.signal(s, hold) for s in held})
    try:
        yield
    finally:
        leaving.append(True)  # no escape while the handlers are put back (one would stay hold)
        for s, handler in previous.items():
            signal.signal(s, handler)
        if not escaped:
            for s in dict.fromkeys(came):
                signal.raise_signal(s)  # now to the handler it was held from


def ignore_interrupts_in_worker() -> None:
    """A worker process's initializer: Ctrl-C reaches the whole process group, and the parent
    alone handles it (:func:`stop_workers`). A worker interrupted while it waited for a job
    printed "Process ForkProcess-2:" and a traceback, cut short as the parent stopped it.

    Fork the workers inside :func:`interrupts_held` (the first ``submit`` or ``map`` does):
    a forked worker keeps that handler until this runs, and a Ctrl-C during the fork's own
    callbacks printed "Exception ignored in: <function _releaseLock ...>".
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


#: libc's ``prctl`` once loaded (None: not on Linux, or not found). Load it in a parent
#: before it forks (:func:`load_prctl`): a dlopen in a child forked from a multi-threaded
#: parent may deadlock on the loader's lock.
_PRCTL: list[Callable[..., int] | None] = []


def load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux), loaded once; None elsewhere or where it is not found."""
    if not _PRCTL:
        prctl = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                prctl = ctypes.CDLL(None, use_errno=True).prctl
            except (OSError, AttributeError):
                prctl = None
        _PRCTL.append(prctl)
    return _PRCTL[0]


def signal_on_parent_death(signum: int = signal.SIGTERM) -> bool:
    """In a child process: ``signum`` is sent to it when its parent dies, even killed with
    SIGKILL (Linux's ``PR_SET_PDEATHSIG``). False where that cannot be set (not Linux): the
    caller watches the parent itself. Either way, the caller checks next that the parent is
    still its parent (one that died before this call sends nothing)."""
    prctl = load_prctl()
    if prctl is not None:
        prctl(1, signum, 0, 0, 0)  # PR_SET_PDEATHSIG
    return prctl is not None


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes for a command's jobs: forked on Linux (they inherit
    the imported modules; spawned elsewhere, where jobs must be module-level functions),
    each started by :func:`pool_worker_init` (libc's ``prctl`` loaded here first)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    load_prctl()  # before the fork
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=pool_worker_init,
                               initargs=(os.getpid(),))


def pool_worker_init(parent_pid: int) -> None:
    """Initializer of a command's worker processes (:func:`worker_pool`): Ctrl-C
    left to the parent (:func:`ignore_interrupts_in_worker`), SIGTERM kills the worker (a
    fork copies the parent's :func:`sigterm_as_interrupt` handler), and the worker does not
    outlive the parent, even one killed with SIGKILL (it was left waiting on the pool's lock
    for ever)."""
    ignore_interrupts_in_worker()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not signal_on_parent_death():
        _watch_parent(parent_pid)
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="zoomsr-parent-watch", daemon=True).start()


def stop_workers(pool: ProcessPoolExecutor, futures: Sequence[Future] = ()) -> None:
    """Cancel what has not started and terminate the pool's worker processes, rather than wait
    for the jobs they are on (a Ctrl-C during that wait, often pressed twice, could leave the
    pool's shutdown hanging). Another Ctrl-C meanwhile is raised once they are stopped.

    The pool's manager thread is waited for too: at exit, ``concurrent.futures`` wakes the
    manager threads it knows through a pipe that a manager thread closes as it ends, and the
    two raced ("Exception ignored ... _python_exit ... OSError: [Errno 9] Bad file
    descriptor").
    """
    with interrupts_held():
        for f in futures:
            f.cancel()
        processes = list((getattr(pool, "_processes", None) or {}).values())
        manager = getattr(pool, "_executor_manager_thread", None)  # shutdown() drops it
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            if proc.is_alive():
                proc.terminate()
        for proc in processes:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        if manager is not None:
            manager.join(timeout=10)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (``timeout``, SLURM, ``kill``) raises :class:`Terminated` (a
    ``KeyboardInterrupt``) in the main thread, as Ctrl-C does, so a command stops its workers
    and keeps finished work. Does nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        global _terminated_by
        _terminated_by = signum  # Typer turns the exception into exit code 130: kept here
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def take_termination() -> int | None:
    """The signal that :func:`sigterm_as_interrupt` last turned into an interrupt (None: none
    since the last call), and forget it."""
    global _terminated_by
    signum, _terminated_by = _terminated_by, None
    return signum
