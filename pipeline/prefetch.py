"""Validate a backfill's next chunk in a second process while this chunk commits.

A chunk of a backfill is plan → validate → commit → issue, under the run lock, one after the
other; validation is pure (files in, staged Parquet and a small ``Validated`` out, no
warehouse), so while chunk k commits (DuckDB, this process) one child process validates the
discharge partitions that chunk k+1's plan is expected to choose, into a folder of its own.
When chunk k+1 is planned, ``take`` hands over each prefetched ``Validated`` whose partition
the plan chose and whose content hash is the content the partition has now; everything else
(a partition the plan did not expect, a delivery that changed, a failure of any kind, a child
that crashed) is validated in this process as without a prefetch. The plan stays
authoritative: nothing prefetched is committed unless the plan asked for that partition with
that content.

The child is started with ``spawn`` (never ``fork``: this process holds a DuckDB connection),
imports only the validation (no Prefect, no DuckDB), ignores Ctrl-C (this process decides) and
dies with this process (``PR_SET_PDEATHSIG``), so that a kill leaves no orphan writing into the
staging folder. Its folders live under ``<staging>/prefetch-<token>``; the plan of a later run
removes them like any other leftover staging folder, and ``close`` removes them on every exit.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from config.faults import fault_point
from landing.partitions import Partition

if TYPE_CHECKING:
    from pipeline.validate import Validated

log = logging.getLogger("claims")

PREFIX = "prefetch-"
# A prefetch normally finishes long before the commit it hides behind; a child that takes longer
# than this is given up (and stopped): the chunk is validated here instead.
WAIT_S = 900.0


def _child_started(parent_pid: int) -> None:
    """In the child: die with the parent, leave Ctrl-C to it, and go without hypothesis as
    the command does (``claims.cli.main``: pandera would import it for nothing, ~0.5 s)."""
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(0)


def _validate_in_child(
    partitions: list[Partition], work_dir: str, registry_file: str
) -> list[Validated]:
    """In the child: the partitions in one pass, exactly as ``LocalSteps`` validates them."""
    fault_point("prefetch_child")  # the tests' crash of the child
    from pipeline.validate import validate_partitions

    return validate_partitions(partitions, work_dir=work_dir, registry_file=registry_file)


@dataclass
class _Job:
    folder: Path
    registry: bytes  # the registry the child validates with
    future: Future[list[Validated]]


class Prefetcher:
    """One child process validating the next chunk of one backfill; a context manager."""

    def __init__(self, staging_dir: Path) -> None:
        self.folder_name = f"{PREFIX}{secrets.token_hex(4)}"
        self._root = staging_dir / self.folder_name
        self._pool: ProcessPoolExecutor | None = None
        self._broken = False
        self._jobs: dict[object, _Job] = {}
        self._count = 0

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def keep(self) -> tuple[str, ...]:
        """The staging folders a plan must leave alone while this backfill runs."""
        return (self.folder_name,)

    def start(self, chunk: object, partitions: Sequence[Partition], registry_file: str) -> None:
        """Validate ``partitions`` (those chunk ``chunk``'s plan is expected to choose) in the
        child, with the registry in ``registry_file``. Never raises for a prefetch that cannot
        be started: the chunk is then validated here, as without one."""
        if self._broken or not partitions or chunk in self._jobs:
            return
        try:
            self._count += 1
            folder = self._root / f"chunk-{self._count:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            registry = Path(registry_file).read_bytes()
            (folder / "hospitals.csv").write_bytes(registry)
            future = self._executor().submit(
                _validate_in_child, list(partitions), str(folder), str(folder / "hospitals.csv")
            )
        except Exception as exc:  # an I/O error, a pool that cannot start: no prefetch
            log.warning("could not prefetch the next chunk (%s)", type(exc).__name__)
            self._give_up()
            return
        self._jobs[chunk] = _Job(folder, registry, future)

    def take(
        self, chunk: object, chosen: Sequence[Partition], registry_file: str
    ) -> dict[Partition, Validated]:
        """The prefetched outcomes usable for chunk ``chunk``'s plan, which chose ``chosen`` and
        validates with ``registry_file``: validated partitions the plan chose, with the content
        they have now and the same registry. Waits for the child if it is still at work."""
        job = self._jobs.get(chunk)
        if job is None:
            return {}
        try:
            done = job.future.result(timeout=WAIT_S)
        except FutureTimeout:
            log.warning("the prefetch of a chunk took too long; validating it here")
            self._give_up(at_work=True)
            return {}
        except Exception as exc:  # the child failed or died: its type only, never its text
            failure = type(exc).__name__
            log.warning("the prefetch of a chunk failed (%s); validating it here", failure)
            self._give_up()
            return {}
        try:
            if Path(registry_file).read_bytes() != job.registry:
                return {}
        except OSError:
            return {}
        wanted = set(chosen)
        usable: dict[Partition, Validated] = {}
        for v in done:
            if v.partition not in wanted or v.status != "validated" or v.content_hash is None:
                continue
            try:
                if v.partition.content_hash() != v.content_hash:
                    continue  # delivered again since: the plan's content is the new one
            except OSError:
                continue  # gone or unreadable: validated here, which says so
            usable[v.partition] = v
        return usable

    def release(self, chunk: object) -> None:
        """Chunk ``chunk`` is committed (or given up): its prefetched files go."""
        job = self._jobs.pop(chunk, None)
        if job is None:
            return
        if not job.future.done() and not job.future.cancel():
            # Still at work: the chunk never got to take it (its run stopped: an error, Ctrl-C).
            # Stop the child rather than wait, and never remove a folder it still writes to.
            self._give_up(at_work=True)
        shutil.rmtree(job.folder, ignore_errors=True)

    # After ``_give_up`` the child is stopped and joined: nothing writes to the folder any more.

    def close(self) -> None:
        """Stop the child (at once, if it is at work) and remove every prefetched file."""
        self._stop_pool()
        self._jobs.clear()
        shutil.rmtree(self._root, ignore_errors=True)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_started,
                initargs=(os.getpid(),),
            )
        return self._pool

    def _give_up(self, *, at_work: bool = False) -> None:
        """No more prefetching in this backfill (the child failed, or cannot be trusted)."""
        self._broken = True
        self._stop_pool(at_work=at_work)

    def _stop_pool(self, *, at_work: bool = False) -> None:
        """Shut the child down: at once (terminated) if it is at work, else in order."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        busy = at_work or any(not j.future.done() for j in self._jobs.values())
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=not busy, cancel_futures=True)
        if busy:
            for process in processes:
                process.terminate()
            for process in processes:
                process.join(10)
