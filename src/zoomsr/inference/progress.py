"""The scene run's progress bar (rich, on stderr): windows done, rate and ETA over the whole
run."""

from __future__ import annotations

import contextlib


def rate_text(per_s: float | None) -> str:
    """The progress bar's rate: windows a second, or seconds (minutes) a window when under
    0.1 a second (a slow model's 4 windows in 89 s showed "0.0 win/s")."""
    if per_s is None:
        return "  -- win/s"
    if per_s >= 0.1:
        return f"{per_s:6.1f} win/s"
    each = 1 / per_s
    return f"{each:6.1f} s/win" if each < 600 else f"{each / 60:4.0f} min/win"


def progress_bar(total: int, done: int, enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    # Rate and ETA from everything computed in this run over its whole time, not rich's
    # recent-samples estimate: Ray workers hand rows back in bursts, which that read as 30x
    # the real rate (and an ETA of seconds with minutes to go).
    def rate(task) -> float | None:
        new = task.completed - done
        return new / task.elapsed if task.elapsed and new > 0 else None

    class _Rate(ProgressColumn):
        def render(self, task):
            r = rate(task)
            return Text(rate_text(r))

    class _Eta(ProgressColumn):
        def render(self, task):
            r = rate(task)
            if task.finished or r is None:
                return Text("eta -:--:--" if not task.finished else "")
            left = int((task.total - task.completed) / r + 0.5)
            return Text(f"eta {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}")

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), _Rate(), TimeElapsedColumn(), _Eta(),
        console=Console(stderr=True),
    )
