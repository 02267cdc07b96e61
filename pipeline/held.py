"""Staged snapshot slices held in this process's memory for its own commit.

A snapshot validated in the process that commits it (``run_local``, a backfill chunk, the
nightly flow's validation on its local threads) hands its staged slices to the load as Arrow
tables in memory instead of Arrow files: no write, no mapping, no removal of ~1.5 GB at
10 M enrolments (ADR 0028). Validation elsewhere (a Dask worker) writes the files, as before.
The slices are held under the staged folder's path, which the ``Validated`` names as ever;
the commit takes them (``take``) or reads the folder, and ``release`` drops what a run left
(a failed commit, a run that never committed).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

_HELD: dict[str, list[pa.Table]] = {}
_LOCK = threading.Lock()  # validation may run on a task runner's thread


def hold(staged_dir: Path, slices: list[pa.Table]) -> None:
    """Keep ``slices`` (in order) for the commit that loads ``staged_dir``."""
    with _LOCK:
        _HELD[str(staged_dir)] = slices


def take(staged_dir: Path) -> list[pa.Table] | None:
    """The slices held for ``staged_dir``, once; ``None`` when they are on disk instead."""
    with _LOCK:
        return _HELD.pop(str(staged_dir), None)


def release(work_dir: Path) -> None:
    """Drop whatever is still held under a run's staging folder."""
    prefix = str(work_dir)
    with _LOCK:
        for key in [k for k in _HELD if Path(k).is_relative_to(prefix)]:
            del _HELD[key]
