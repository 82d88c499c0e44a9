"""The process pool that runs a build's blocks: forked workers that ignore Ctrl-C (the
parent stops them), die with their parent even when it is killed, and are stopped at
once when a block fails or the build is interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, wait

from zoomsr.data.builder.config import BlockJob
from zoomsr.progress import track
from zoomsr.stopping import interrupts_held, stop_workers, worker_pool


def run_jobs(run_block: Callable[[BlockJob], dict], jobs: Sequence[BlockJob], workers: int,
             progress: bool, on_done: Callable[[dict], None]) -> None:
    """``run_block(job)`` for every job, in ``workers`` processes (in this one when one is
    enough), each result handed to ``on_done`` as its block finishes.

    ``run_block`` must be a module-level function: spawned workers (not on Linux) import it
    by name.
    """
    if workers <= 1 or len(jobs) <= 1:
        for job in track(jobs, "building blocks", enabled=progress):
            on_done(run_block(job))
        return
    # fork on Linux: workers inherit the imported modules (spawn would re-import torch)
    with worker_pool(workers) as pool:
        with interrupts_held():  # forks the workers (see stopping.ignore_interrupts_in_worker)
            futures = [pool.submit(run_block, job) for job in jobs]
        try:
            for future in track(_as_completed(futures), "building blocks", total=len(jobs),
                                enabled=progress):
                on_done(future.result())
        except BaseException:
            # Ctrl-C, SIGTERM (see sigterm_as_interrupt) or a failed block: stop the workers
            # now rather than wait for their blocks. Finished blocks and pairs are on disk
            # (atomic files), and a re-run resumes from them.
            stop_workers(pool, futures)
            raise


def _as_completed(futures: list) -> Iterable:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
        yield from sorted(done, key=futures.index)


__all__ = ["run_jobs"]
