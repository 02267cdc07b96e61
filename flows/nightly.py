"""Prefect flows: the nightly run, re-runs and backfills. Orchestration only.

Each flow reads like a table of contents of ``pipeline``: plan → validate (one task run
per partition, named after its key, concurrently) → commit (the single warehouse writer) →
issue the batch → report. Tasks pass keys and paths, never frames.

Validation runs on the flow's task runner: two local threads by default, or the workers of a
Dask cluster (``CLAIMS_TASK_RUNNER=dask``, ``CLAIMS_DASK_ADDRESS``). What a worker gets is a
``Partition`` and paths, and what it returns is a ``Validated``: small, picklable, and free of
personal data; the rows travel as staged Parquet through the staging folder.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import Flow, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

import pipeline
from config.dates import yesterday_in_shanghai
from config.masking import scrub
from config.settings import ConfigError, Settings, task_runner_choice
from flows.artifacts import partition_table_artifact
from flows.progress import progress
from landing.errors import PartitionError
from landing.partitions import Partition
from outbox.report import render_markdown, write_report
from outbox.summary import CommitResult
from storage.lock import run_lock
from storage.warehouse import WarehouseBusy, warehouse_session

P = ParamSpec("P")
R = TypeVar("R")

# Transient I/O errors get these waits before each retry; a data error is never retried.
IO_RETRY_DELAYS_S: list[float] = [1, 5]


class StepFailed(Exception):
    """An unexpected error inside a step, its message scrubbed of anything personal."""


def _scrubbed_os_error(exc: OSError) -> OSError:
    """The same kind of I/O error (so that it is retried), its text scrubbed: it can quote a
    path, and a sender's file name can be personal data."""
    if exc.errno is None:
        return OSError(scrub(str(exc))[:300])
    filename = scrub(exc.filename) if isinstance(exc.filename, str) else None
    # OSError(errno, …) is built as the subclass of that errno (FileNotFoundError, …).
    return OSError(exc.errno, scrub(exc.strerror or "")[:300], filename)


def _sanitized(fn: Callable[P, R]) -> Callable[P, R]:
    """Re-raise errors with a scrubbed message: Prefect logs task exceptions and tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, WarehouseBusy, PartitionError):
            raise  # our own messages: keys, counts and rules, never values
        except OSError as exc:
            raise _scrubbed_os_error(exc) from None
        except Exception as exc:
            raise StepFailed(f"{type(exc).__name__}: {scrub(str(exc))[:500]}") from None

    return wrapper


def _io_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect 3 ``retry_condition_fn(task, task_run, state)``: retry transient I/O errors only.

    A data error would fail the same way again; validation returns it as an outcome anyway.
    """
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


def _as_date(value: date | str | None) -> date:
    """A date parameter: deployments and the API pass ISO strings (parameters are JSON)."""
    if value is None or value == "":
        return yesterday_in_shanghai()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ConfigError("a date parameter must be YYYY-MM-DD") from None
    return value


def _nightly_run_name() -> str:
    """``<command>-<date>``: the flow run reads like the command that started it."""
    params = flow_run.parameters
    try:
        day = _as_date(params.get("as_of")).isoformat()
    except ConfigError:
        day = "bad-date"
    return f"{params.get('command') or 'run'}-{day}"


@task(task_run_name="plan", cache_policy=NO_CACHE, persist_result=False)
@_sanitized
def plan_partitions(
    settings: Settings,
    command: str,
    as_of: date,
    rerun_keys: list[str] | None = None,
    rerun_failed: bool = False,
) -> pipeline.RunPlan:
    """Decide what this run processes (under the run lock) and recover what a killed run left."""
    return pipeline.plan_run(
        settings,
        command=command,
        as_of=as_of,
        rerun_keys=rerun_keys,
        rerun_failed=rerun_failed,
    )


@task(
    task_run_name="{ref.key}",
    retries=len(IO_RETRY_DELAYS_S),
    retry_delay_seconds=IO_RETRY_DELAYS_S,
    retry_condition_fn=_io_only,
    cache_policy=NO_CACHE,
    persist_result=False,
)
@_sanitized
def validate_discharge_partition(
    ref: Partition, work_dir: str, registry_file: str
) -> pipeline.Validated:
    """Read, check and validate one discharge partition."""
    return pipeline.validate_partition(ref, work_dir=work_dir, registry_file=registry_file)


@task(
    task_run_name="{ref.key}",
    retries=len(IO_RETRY_DELAYS_S),
    retry_delay_seconds=IO_RETRY_DELAYS_S,
    retry_condition_fn=_io_only,
    cache_policy=NO_CACHE,
    persist_result=False,
)
@_sanitized
def validate_enrollment_snapshot(
    ref: Partition, work_dir: str, threshold: float
) -> pipeline.Validated:
    """Read, check and validate the enrolment snapshot to load."""
    return pipeline.validate_snapshot(ref, work_dir=work_dir, threshold=threshold)


@task(task_run_name="commit", cache_policy=NO_CACHE, persist_result=False)
@_sanitized
def commit_run(
    settings: Settings, plan: pipeline.RunPlan, validated: list[pipeline.Validated]
) -> CommitResult:
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
def report(settings: Settings, results: list[CommitResult], title: str) -> str:
    """The run's HTML report and its Prefect markdown artifact (no personal data in either)."""
    path = write_report(settings.outbox, results, title=title)
    create_markdown_artifact(
        key="claims-run-report",
        markdown=render_markdown(results, title=title, report_path=str(path)),
        description=title,
    )
    partition_table_artifact(results, title)
    return str(path)


def _io_failure(ref: Partition, exc: OSError) -> pipeline.Validated:
    """An I/O error that outlived its retries fails only its partition; the next run retries."""
    return pipeline.Validated(
        ref,
        None,
        "failed",
        error=f"io_error: {scrub(str(exc))[:300]}",
        retry=True,
    )


def _validate_all(settings: Settings, plan: pipeline.RunPlan) -> list[pipeline.Validated]:
    """Validate the plan's partitions concurrently on the flow's task runner (2 threads, or
    Dask workers); each writes its staged Parquet under ``plan.work_dir``."""
    futures = [
        (ref, validate_discharge_partition.submit(ref, plan.work_dir, plan.registry_file))
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
    with progress("validating partitions", len(futures)) as advance:
        for ref, future in futures:
            try:
                validated.append(future.result())
            except OSError as exc:
                validated.append(_io_failure(ref, exc))
            advance()
    return validated


def _settings(
    landing: str | None, warehouse: str | None, outbox: str | None, staging: str | None = None
) -> Settings:
    return Settings.build(
        Path(landing) if landing else None,
        Path(warehouse) if warehouse else None,
        Path(outbox) if outbox else None,
        staging=Path(staging) if staging else None,
    )


def task_runner_for(runner: str, address: str | None) -> TaskRunner[Any]:
    """Where validation runs: two local threads (validation is CPU-bound; Prefect's default
    pool is unbounded), or a Dask cluster: the scheduler at ``address``, else a temporary
    cluster of one single-threaded worker process per core on this machine."""
    if runner == "threads":
        return ThreadPoolTaskRunner(max_workers=2)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError(
            "--task-runner dask needs prefect-dask and distributed: install the project's "
            "`dask` extra (uv sync --extra dask)"
        ) from None
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={"processes": True, "threads_per_worker": 1, "dashboard_address": None}
    )


# The task runner is part of a flow's definition, and a deployment's flow run (`claims serve`,
# a work pool's worker) imports this module afresh: so the module-level flow takes its runner
# from CLAIMS_TASK_RUNNER / CLAIMS_DASK_ADDRESS (a deployment sets them as job variables);
# `claims run --task-runner …` overrides it with `nightly_for`.
_ENV_RUNNER = task_runner_choice()


@flow(
    name="claims-nightly",
    flow_run_name=_nightly_run_name,
    task_runner=task_runner_for(*_ENV_RUNNER),
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
    staging: str | None = None,
) -> CommitResult:
    """``claims run`` / ``claims rerun``: every ready partition not yet done with its content."""
    settings = _settings(landing, warehouse, outbox, staging)
    day = _as_date(as_of)
    logger = get_run_logger()
    with run_lock(settings.warehouse, settings.lock_timeout_s):
        plan = plan_partitions(settings, command, day, rerun_keys, rerun_failed)
        validated = _validate_all(settings, plan)
        result = commit_run(settings, plan, validated)
        issue_batch(settings)
        pipeline.cleanup(plan)
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


def nightly_for(settings: Settings) -> Flow[..., CommitResult]:
    """The nightly flow with the task runner ``settings`` ask for."""
    if (settings.task_runner, settings.dask_address) == _ENV_RUNNER:
        return nightly
    return nightly.with_options(
        task_runner=task_runner_for(settings.task_runner, settings.dask_address)
    )


def _validate_inline(settings: Settings, plan: pipeline.RunPlan) -> list[pipeline.Validated]:
    """A backfill date's partitions, in this thread: one task run per date keeps a long
    backfill off Prefect's per-task overhead (platform-facts: >1 000 task runs stall)."""
    validated = []
    for ref in plan.discharges:
        try:
            validated.append(
                pipeline.validate_partition(
                    ref, work_dir=plan.work_dir, registry_file=plan.registry_file
                )
            )
        except OSError as exc:
            validated.append(_io_failure(ref, exc))
    if plan.snapshot is not None:
        try:
            validated.append(
                pipeline.validate_snapshot(
                    plan.snapshot,
                    work_dir=plan.work_dir,
                    threshold=settings.snapshot_reject_threshold,
                )
            )
        except OSError as exc:
            validated.append(_io_failure(plan.snapshot, exc))
    return validated


@task(task_run_name="{chunk.label}", cache_policy=NO_CACHE, persist_result=False)
@_sanitized
def backfill_chunk(settings: Settings, chunk: pipeline.Chunk) -> CommitResult:
    """One chunk of a backfill's feed dates: plan, validate its partitions, one commit, issue."""
    plan = pipeline.plan_run(
        settings, command="backfill", as_of=chunk.last, feed_dates=(chunk.first, chunk.last)
    )
    result = pipeline.commit(settings, plan, _validate_inline(settings, plan))
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
    staging: str | None = None,
    chunk_days: int = pipeline.DEFAULT_CHUNK_DAYS,
) -> list[CommitResult]:
    """``claims backfill``: feed dates in order, one commit per chunk of up to ``chunk_days``
    dates (one task run each), resumable after a kill.

    A partition already committed is skipped by its content hash, so re-running the same range
    after a kill posts only what the killed run had not committed.
    """
    settings = _settings(landing, warehouse, outbox, staging)
    first, last = _as_date(date_from), _as_date(date_to)
    logger = get_run_logger()
    results = []
    # One warehouse connection for every date: each close would checkpoint the log into the
    # file, a second per date of rewriting the same blocks (docs/benchmarks.md).
    with (
        run_lock(settings.warehouse, settings.lock_timeout_s),
        warehouse_session(settings.warehouse),
    ):
        chunks = pipeline.backfill_chunks(settings, first, last, int(chunk_days))
        with progress("backfill chunks", len(chunks)) as advance:
            for chunk in chunks:
                results.append(backfill_chunk(settings, chunk))
                advance()
        if results:
            report(settings, results, title=f"claims backfill {first} to {last}")
    logger.info(
        "backfill %s to %s: %d chunk(s), %d failed partition(s)",
        first,
        last,
        len(results),
        sum(len(r.partitions.get("failed", [])) for r in results),
    )
    return results


def connect_api() -> None:
    """Reach Prefect's API, starting the local one in ephemeral mode (8-15 s): the demo does
    this in the background so that its first flow run does not wait. Errors are left for the
    first flow run to report."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.hello()
    except Exception:  # the first flow run reports any real problem, with its context
        pass
