"""A whole run without Prefect, in this thread: the same sequence the flows run as tasks."""

from __future__ import annotations

from datetime import date

from config.settings import Settings
from outbox.summary import CommitResult
from pipeline.backfill import (
    DEFAULT_CHUNK_DAYS,
    backfill_chunks,
    prefetcher_for,
    run_chunk,
    with_next,
)
from pipeline.sequence import LocalSteps, Request, run_steps
from storage.lock import run_lock
from storage.warehouse import warehouse_session


def run_local(
    settings: Settings,
    *,
    command: str = "run",
    as_of: date,
    rerun_keys: list[str] | None = None,
    rerun_failed: bool = False,
    feed_dates: tuple[date, date] | None = None,
) -> CommitResult:
    """One whole commit without Prefect, in this thread: what the flows do, minus orchestration.

    For tests, benchmarks and debugging; the flows add task names, retries and concurrency.
    """
    request = Request(command, as_of, rerun_keys, rerun_failed, feed_dates)
    return run_steps(settings, LocalSteps(), request)


def backfill_local(
    settings: Settings, first: date, last: date, *, chunk_days: int = DEFAULT_CHUNK_DAYS
) -> list[CommitResult]:
    """``claims backfill`` without Prefect: one run per chunk of feed dates, on one warehouse
    connection, the next chunk validated in a second process while one commits, as the
    backfill flow does (one task run per chunk)."""
    chunks = backfill_chunks(settings, first, last, chunk_days)
    results = []
    with (
        run_lock(settings.warehouse, settings.lock_timeout_s),
        warehouse_session(settings.warehouse),
        prefetcher_for(settings, chunks) as prefetch,
    ):
        for chunk, following in with_next(chunks):
            results.append(run_chunk(settings, chunk, prefetch=prefetch, next_chunk=following))
    return results
