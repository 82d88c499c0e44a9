"""Progress bars for long operations (rich), switchable off for tests and pipes.

Every bar goes to stderr and is not transient: on a terminal it is redrawn in place; with
stderr not a terminal (a pipe, ``nohup``, a SLURM log) nothing is drawn while it runs, and its
final state is left as one line, so a log still says how far the work got and how long it took.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

#: ``update(done, total)``: the callback :func:`progress_callback` yields.
UpdateFn = Callable[[int, int], None]


def new_progress(enabled: bool = True) -> Progress:
    """A rich :class:`Progress` on stderr with count, elapsed time and rate-based ETA, whose
    last state stays as a line (see the module docstring); ``enabled=False``: shows nothing."""
    from rich.console import Console

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=Console(stderr=True), transient=False,
                    disable=not enabled)


def track(
    items: Iterable[T], description: str, total: int | None = None, enabled: bool = True
) -> Iterator[T]:
    """Iterate ``items`` showing a bar with count, rate-based ETA and elapsed time (on stderr)."""
    if not enabled:
        yield from items
        return
    with new_progress() as progress:
        yield from progress.track(items, total=total, description=description)


@contextmanager
def progress_callback(description: str, enabled: bool = True) -> Iterator[UpdateFn]:
    """A bar like :func:`track`'s for work that reports itself: yields ``update(done, total)``
    (e.g. the ``progress`` argument of :func:`zoomsr.evaluation.run.score_pairs`). When the
    work fails, the bar is removed, so the error is the one line left."""
    with new_progress(enabled) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            yield update
        except BaseException:
            progress.live.transient = True  # a terminal: the bar is erased
            if not progress.console.is_interactive:  # a log: nothing was drawn; add nothing
                progress.console.quiet = True
            raise
