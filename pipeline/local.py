"""A whole run without Prefect, in this thread: the same steps the flows call as tasks."""

from __future__ import annotations

from datetime import date

from config.settings import Settings
from outbox.summary import CommitResult
from pipeline.backfill import DEFAULT_CHUNK_DAYS, backfill_chunks
from pipeline.pay import issue
from pipeline.plan import cleanup, plan_run
from pipeline.validate import validate_partition, validate_snapshot
from pipeline.write import commit
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
    with run_lock(settings.warehouse, settings.lock_timeout_s):
        plan = plan_run(
            settings,
            command=command,
            as_of=as_of,
            rerun_keys=rerun_keys,
            rerun_failed=rerun_failed,
            feed_dates=feed_dates,
        )
        validated = [
            validate_partition(partition, work_dir=plan.work_dir, registry_file=plan.registry_file)
            for partition in plan.discharges
        ]
        if plan.snapshot is not None:
            validated.append(
                validate_snapshot(
                    plan.snapshot,
                    work_dir=plan.work_dir,
                    threshold=settings.snapshot_reject_threshold,
                )
            )
        result = commit(settings, plan, validated)
        issue(settings)
        cleanup(plan)
        return result


def backfill_local(
    settings: Settings, first: date, last: date, *, chunk_days: int = DEFAULT_CHUNK_DAYS
) -> list[CommitResult]:
    """``claims backfill`` without Prefect: one ``run_local`` per chunk of feed dates, on one
    warehouse connection, as the backfill flow does (one task run per chunk)."""
    chunks = backfill_chunks(settings, first, last, chunk_days)
    results = []
    with (
        run_lock(settings.warehouse, settings.lock_timeout_s),
        warehouse_session(settings.warehouse),
    ):
        for chunk in chunks:
            results.append(
                run_local(
                    settings,
                    command="backfill",
                    as_of=chunk.last,
                    feed_dates=(chunk.first, chunk.last),
                )
            )
    return results
