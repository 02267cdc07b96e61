"""The one live progress display of a process, for long work on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

# The one live progress display of this process: nested work (the demo's nights, each night's
# partitions) adds a line to it, since a terminal can show only one at a time.
_bars: Progress | None = None


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[], None]]:
    """A progress bar for long work, shown only when stdout is a terminal; yields ``advance``.

    >>> with progress("partitions", 3) as advance:
    ...     for _ in range(3):
    ...         advance()
    """
    global _bars
    if total < 1 or not sys.stdout.isatty():
        yield lambda: None
        return
    outer = _bars is None
    if _bars is None:
        _bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        _bars.start()
    bars = _bars
    task = bars.add_task(description, total=total)
    try:
        yield lambda: bars.advance(task)
    finally:
        if outer:
            bars.stop()
            _bars = None
        else:
            bars.remove_task(task)
