"""Stopping a pool of worker processes at once (Ctrl-C, a failed job)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor


def stop_workers(pool: ProcessPoolExecutor, futures: Sequence[Future] = ()) -> None:
    """Cancel what has not started and terminate the pool's worker processes, rather than wait
    for the jobs they are on (a Ctrl-C during that wait, often pressed twice, could leave the
    pool's shutdown hanging)."""
    for f in futures:
        f.cancel()
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
