"""Progress bars and log lines for long stages (rich).

Bars are drawn only on an interactive terminal (DVC passes its terminal through to stage
commands); in logs and CI every stage still prints one line per finished unit of work.
Set ``KDINTERP_PROGRESS=0`` to turn bars off everywhere.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import datetime

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["console", "log", "progress_bar"]

console = Console(stderr=True)


def log(message: str) -> None:
    """Print one log line (stderr) prefixed with the time; never wrapped, so logs stay greppable."""
    console.print(f"[{datetime.now():%H:%M:%S}] {message}", highlight=False, markup=False, soft_wrap=True)


def _enabled() -> bool:
    return console.is_terminal and os.environ.get("KDINTERP_PROGRESS", "1") != "0"


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int, str], None]]:
    """A transient progress bar; yields ``advance(steps, status_text)``.

    Args:
        description: shown left of the bar.
        total: number of steps.
        enabled: False draws nothing (e.g. on every process but rank 0).
    """
    if not (enabled and _enabled()):
        yield lambda steps=1, status="": None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total, status="")

        def advance(steps: int = 1, status: str = "") -> None:
            progress.update(task, advance=steps, status=status)

        yield advance
