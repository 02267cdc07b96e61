"""A whole run without Prefect, in this thread: the same sequence the flows run as tasks."""

from __future__ import annotations

from datetime import date

from config.settings import Settings
from outbox.summary import CommitResult
from pipeline.sequence import LocalSteps, Request, run_steps


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
