"""One run per warehouse: an advisory lock file beside it, released by the OS when the process dies.

DuckDB's own file lock fails at once; this one waits a bounded time for the other run to finish,
then gives up with ``WarehouseBusy`` (exit status 3) having changed nothing.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from storage.warehouse import WarehouseBusy

# Re-entry is per (path, thread): the CLI and the flow it starts take the lock in one thread;
# another thread of the same process must wait like any other run.
_held: dict[tuple[Path, int], int] = {}
_guard = threading.Lock()


def lock_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".lock")


@contextmanager
def run_lock(
    warehouse: Path,
    timeout_s: float,
    poll_s: float = 0.2,
    on_wait: Callable[[int | None], None] | None = None,
) -> Iterator[None]:
    """Hold the warehouse's run lock; re-entrant within one thread (the CLI and its flow).

    ``on_wait(pid)`` is called once, at once, if another run holds it (``pid``: that run's
    process, if known), so that a waiting run can say so."""
    path = lock_path(warehouse).resolve()
    me = (path, threading.get_ident())
    with _guard:
        if me in _held:
            _held[me] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                _held[me] -= 1
        return

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(lock_holder(warehouse))
                    on_wait = None
                if time.monotonic() >= deadline:
                    raise WarehouseBusy(
                        f"another claims run holds {warehouse.name}; waited {timeout_s:.0f} s. "
                        "Nothing was changed: try again when it has finished "
                        "(CLAIMS_LOCK_TIMEOUT sets the wait)."
                    ) from None
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        with _guard:
            _held[me] = 1
        try:
            yield
        finally:
            with _guard:
                del _held[me]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_locked(warehouse: Path) -> bool:
    """Whether some run holds the warehouse right now (for ``claims status``)."""
    path = lock_path(warehouse)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def lock_holder(warehouse: Path) -> int | None:
    """The process id the holder of the run lock wrote, if readable."""
    try:
        text = lock_path(warehouse).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
