"""Prefect flows: the nightly run, re-runs and backfills. Orchestration only.

Each flow reads like a table of contents of ``claims.pipeline``: plan → validate (one task run
per partition, named after its key, concurrently) → commit (the single warehouse writer) →
issue the batch → report. Tasks pass keys and paths, never frames.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date
from typing import Any, ParamSpec, TypeVar

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from claims import pipeline
from claims.config import ConfigError, Settings
from claims.dates import yesterday_in_shanghai
from claims.pii import scrub
from landing.errors import PartitionError
from outbox.report import render_markdown, write_report
from storage.lock import run_lock
from storage.warehouse import WarehouseBusy

P = ParamSpec("P")
R = TypeVar("R")


class StepFailed(Exception):
    """An unexpected error inside a step, its message scrubbed of anything personal."""


def _sanitized(fn: Callable[P, R]) -> Callable[P, R]:
    """Re-raise unexpected errors with a scrubbed message: Prefect logs task exceptions."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, WarehouseBusy, PartitionError, OSError):
            raise
        except Exception as exc:
            raise StepFailed(f"{type(exc).__name__}: {scrub(str(exc))[:500]}") from None

    return wrapper


def _io_only(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient I/O errors; a data error would fail the same way again."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


@task(
    task_run_name="{ref.key}",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=_io_only,
    cache_policy=NO_CACHE,
    persist_result=False,
)
@_sanitized
def validate_discharge_partition(
    ref: pipeline.PartitionRef, work_dir: str, registry_file: str
) -> pipeline.Validated:
    """Read, check and validate one discharge partition."""
    return pipeline.validate_partition(ref, work_dir=work_dir, registry_file=registry_file)


@task(
    task_run_name="{ref.key}",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=_io_only,
    cache_policy=NO_CACHE,
    persist_result=False,
)
@_sanitized
def validate_enrollment_snapshot(
    ref: pipeline.PartitionRef, work_dir: str, threshold: float
) -> pipeline.Validated:
    """Read, check and validate the enrolment snapshot to load."""
    return pipeline.validate_snapshot(ref, work_dir=work_dir, threshold=threshold)


@task(task_run_name="commit", cache_policy=NO_CACHE, persist_result=False)
@_sanitized
def commit_run(
    settings: Settings, plan: pipeline.RunPlan, validated: list[pipeline.Validated]
) -> pipeline.CommitResult:
    """Stage, adjudicate, post the ledger and the payment batch: one transaction."""
    return pipeline.commit(settings, plan, validated)


@task(
    task_run_name="issue-batch",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=_io_only,
    cache_policy=NO_CACHE,
    persist_result=False,
)
@_sanitized
def issue_batch(settings: Settings) -> list[str]:
    """Write committed batches to the outbox, then mark them issued."""
    return pipeline.issue(settings)


@task(task_run_name="report", cache_policy=NO_CACHE, persist_result=False)
@_sanitized
def report(settings: Settings, results: list[pipeline.CommitResult], title: str) -> str:
    """The run's HTML report and its Prefect markdown artifact (no personal data in either)."""
    path = write_report(settings.outbox, results, title=title)
    create_markdown_artifact(
        key="claims-run-report",
        markdown=render_markdown(results, title=title, report_path=str(path)),
        description=title,
    )
    return str(path)


def _validate_all(settings: Settings, plan: pipeline.RunPlan) -> list[pipeline.Validated]:
    """Validate the plan's partitions concurrently; an I/O failure fails only its partition."""
    futures = [
        (
            ref,
            validate_discharge_partition.submit(ref, plan.work_dir, plan.registry_file),
        )
        for ref in plan.discharges
    ]
    if plan.snapshot is not None:
        futures.append(
            (
                plan.snapshot,
                validate_enrollment_snapshot.submit(
                    plan.snapshot, plan.work_dir, settings.snapshot_reject_threshold
                ),
            )
        )
    validated = []
    for ref, future in futures:
        try:
            validated.append(future.result())
        except OSError as exc:
            validated.append(
                pipeline.Validated(
                    ref.kind,
                    ref.key,
                    ref.day,
                    ref.source,
                    None,
                    "failed",
                    error=f"io_error: {scrub(str(exc))[:300]}",
                    retry=True,
                )
            )
    return validated


def _settings(landing: str | None, warehouse: str | None, outbox: str | None) -> Settings:
    from pathlib import Path

    return Settings.build(
        Path(landing) if landing else None,
        Path(warehouse) if warehouse else None,
        Path(outbox) if outbox else None,
    )


def _one_commit(
    settings: Settings,
    *,
    command: str,
    as_of: date,
    rerun_keys: list[str] | None = None,
    rerun_failed: bool = False,
    feed_dates: tuple[date, date] | None = None,
) -> pipeline.CommitResult:
    plan = pipeline.plan_run(
        settings,
        command=command,
        as_of=as_of,
        rerun_keys=rerun_keys,
        rerun_failed=rerun_failed,
        feed_dates=feed_dates,
    )
    validated = _validate_all(settings, plan)
    result = commit_run(settings, plan, validated)
    issue_batch(settings)
    pipeline.cleanup(plan)
    return result


@flow(
    name="claims-nightly",
    flow_run_name="{command}-{as_of}",
    task_runner=ThreadPoolTaskRunner(max_workers=2),  # type: ignore[arg-type]
    persist_result=False,
    validate_parameters=False,
)
def nightly(
    as_of: date | None = None,
    command: str = "run",
    rerun_keys: list[str] | None = None,
    rerun_failed: bool = False,
    landing: str | None = None,
    warehouse: str | None = None,
    outbox: str | None = None,
) -> pipeline.CommitResult:
    """``claims run`` / ``claims rerun``: every ready partition not yet done with its content."""
    settings = _settings(landing, warehouse, outbox)
    day = as_of or yesterday_in_shanghai()
    logger = get_run_logger()
    with run_lock(settings.warehouse, settings.lock_timeout_s):
        result = _one_commit(
            settings,
            command=command,
            as_of=day,
            rerun_keys=rerun_keys,
            rerun_failed=rerun_failed,
        )
        path = report(settings, [result], title=f"claims {command} {day.isoformat()}")
    logger.info(
        "committed %s: %d partition(s) succeeded, %d failed, %d skipped; batch %s; report %s",
        result.run_id,
        len(result.partitions.get("succeeded", [])),
        len(result.partitions.get("failed", [])),
        len(result.partitions.get("skipped", [])),
        result.batch_id or "none",
        path,
    )
    return result


@task(task_run_name="feed_date={day}", cache_policy=NO_CACHE, persist_result=False)
@_sanitized
def backfill_date(settings: Settings, day: date) -> pipeline.CommitResult:
    """One feed date of a backfill: validate its partitions, commit, issue. Coarse on purpose:
    one task run per date keeps Prefect's overhead off the 365-partition path."""
    plan = pipeline.plan_run(settings, command="backfill", as_of=day, feed_dates=(day, day))
    validated = []
    for ref in plan.discharges:
        validated.append(
            pipeline.validate_partition(
                ref, work_dir=plan.work_dir, registry_file=plan.registry_file
            )
        )
    if plan.snapshot is not None:
        validated.append(
            pipeline.validate_snapshot(
                plan.snapshot, work_dir=plan.work_dir, threshold=settings.snapshot_reject_threshold
            )
        )
    result = pipeline.commit(settings, plan, validated)
    pipeline.issue(settings)
    pipeline.cleanup(plan)
    return result


@flow(
    name="claims-backfill",
    flow_run_name="backfill-{date_from}-{date_to}",
    persist_result=False,
    validate_parameters=False,
)
def backfill(
    date_from: date,
    date_to: date,
    landing: str | None = None,
    warehouse: str | None = None,
    outbox: str | None = None,
) -> list[pipeline.CommitResult]:
    """``claims backfill``: feed dates in order, one commit per date, resumable after a kill."""
    settings = _settings(landing, warehouse, outbox)
    results = []
    with run_lock(settings.warehouse, settings.lock_timeout_s):
        for day in pipeline.feed_dates_between(settings, date_from, date_to):
            results.append(backfill_date(settings, day))
        if results:
            report(settings, results, title=f"claims backfill {date_from} to {date_to}")
    return results
