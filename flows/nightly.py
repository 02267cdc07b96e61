"""Prefect flows: the nightly run, re-runs and backfills. Orchestration only.

The nightly flow runs ``pipeline.run_steps``, the one sequence of a run: plan → validate
(``validate <key>``, concurrently) → commit (the single warehouse writer) → issue the batch →
settle (one task run per partition, named after its key, ending as the partition did) →
report; ``PrefectSteps`` says how each step runs as a task. Tasks pass keys and paths, never
frames. A night with a failed partition ends Failed; a retried flow run re-processes what
failed in it.

The plan, commit and issue task runs are called, not submitted: they run in the flow's thread,
where ``run_steps`` holds its two warehouse sessions (the pairing check and the plan; the
commit and the issue), so a night opens the file twice. No task parameter is a connection.

Validation runs on two local threads by default, or on the workers of a Dask cluster
(``CLAIMS_TASK_RUNNER=dask``, ``CLAIMS_DASK_ADDRESS``; ``flows.cluster``). What a worker gets is a
``Partition`` and paths, and what it returns is a ``Validated``: small, picklable, and free of
personal data; the rows travel as staged Parquet through the staging folder.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from prefect import Flow, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed, State
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

import pipeline
from config.dates import yesterday_in_shanghai
from config.masking import scrub
from config.settings import ConfigError, Settings, task_runner_choice
from flows.artifacts import partition_table_artifact
from flows.cluster import DaskValidation, on_workers, validates_here
from flows.progress import progress
from landing.errors import PartitionError
from landing.partitions import Partition
from outbox.report import render_markdown, write_report
from outbox.summary import CommitResult
from pipeline.backfill import prefetcher_for, run_chunk, with_next
from pipeline.prefetch import Prefetcher
from pipeline.sequence import plan_request
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
    """``<command>-<date>-<short id>``: reads like the command that started it, and unique, so
    that a flow run can be found (and retried) by its name."""
    params = flow_run.parameters
    try:
        day = _as_date(params.get("as_of")).isoformat()
    except ConfigError:
        day = "bad-date"
    return f"{params.get('command') or 'run'}-{day}-{str(flow_run.id or '')[:8]}"


@task(task_run_name="plan", cache_policy=NO_CACHE, persist_result=False)
@_sanitized
def plan_partitions(settings: Settings, request: pipeline.Request) -> pipeline.RunPlan:
    """Decide what this run processes (under the run lock) and recover what a killed run left."""
    return plan_request(settings, request)


@task(
    task_run_name="validate {ref.key}",
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
    """Read, check and validate one discharge partition (here, or on a Dask worker)."""
    return on_workers(
        pipeline.validate_partition, ref, work_dir=work_dir, registry_file=registry_file
    )


@task(
    task_run_name="validate {ref.key}",
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
    """Read, check and validate the enrolment snapshot to load (here, or on a Dask worker).
    Here, its staged slices stay in memory for the commit (``pipeline.held``)."""
    if validates_here():
        return pipeline.validate_snapshot(ref, work_dir=work_dir, threshold=threshold, hold=True)
    return on_workers(pipeline.validate_snapshot, ref, work_dir=work_dir, threshold=threshold)


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


@task(task_run_name="{key}", cache_policy=NO_CACHE, persist_result=False)
def partition_outcome(key: str, status: str, error: str | None) -> State[str] | str:
    """The partition's committed outcome, as its own task run: Failed, with the partition and
    the reason as its message, when it failed (a reject threshold is decided in the commit)."""
    if status == "failed":
        get_run_logger().warning("partition %s failed: %s", key, error)
        return Failed(message=f"{key}: {error}")
    return status


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
                validated.append(pipeline.io_failure(ref, exc))
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
    cluster of one single-threaded worker process per core on this machine. Dask workers get
    plain function calls, never Prefect (``flows.cluster``)."""
    if runner == "threads":
        return ThreadPoolTaskRunner(max_workers=2)
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--task-runner dask needs distributed: install the project's "
            "`dask` extra (uv sync --extra dask)"
        ) from None
    return DaskValidation(address=address)


# The task runner is part of a flow's definition, and a deployment's flow run (`claims serve`,
# a work pool's worker) imports this module afresh: so the module-level flow takes its runner
# from CLAIMS_TASK_RUNNER / CLAIMS_DASK_ADDRESS (a deployment sets them as job variables);
# `claims run --task-runner …` overrides it with `nightly_for`.
_ENV_RUNNER = task_runner_choice()


class PrefectSteps:
    """The run's steps as task runs: validation concurrently on the flow's task runner, each
    processed partition's outcome as a task run named after its key."""

    def plan(self, settings: Settings, request: pipeline.Request) -> pipeline.RunPlan:
        return plan_partitions(settings, request)

    def validate(self, settings: Settings, plan: pipeline.RunPlan) -> list[pipeline.Validated]:
        return _validate_all(settings, plan)

    def commit(
        self, settings: Settings, plan: pipeline.RunPlan, validated: list[pipeline.Validated]
    ) -> CommitResult:
        return commit_run(settings, plan, validated)

    def issue(self, settings: Settings) -> list[str]:
        return issue_batch(settings)

    def settle(self, outcomes: list[pipeline.Outcome]) -> None:
        for o in outcomes:
            partition_outcome(o.key, o.status, o.error, return_state=True)

    def report(self, settings: Settings, result: CommitResult, title: str) -> None:
        report(settings, [result], title=title)


def _final_state(result: CommitResult) -> State[CommitResult] | CommitResult:
    """A night with a failed partition ends Failed (after the rest is committed, paid and
    reported), so that Prefect's automations and notifications on a failed flow run fire."""
    failed = result.partitions.get("failed", [])
    if not failed:
        return result
    done = len(failed) + len(result.partitions.get("succeeded", []))
    reasons = "; ".join(f"{k}: {result.errors.get(k, 'failed')[:200]}" for k in failed[:5])
    more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
    return Failed(
        message=f"{len(failed)} of {done} partitions failed: {reasons}{more}", data=result
    )


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
) -> CommitResult | State[CommitResult]:
    """``claims run`` / ``claims rerun``: every ready partition not yet done with its content.

    Retried (Prefect's retry of a failed flow run), it re-processes the partitions that failed
    in this flow run, and nothing that succeeded.
    """
    settings = _settings(landing, warehouse, outbox, staging)
    request = pipeline.Request(
        command,
        _as_date(as_of),
        rerun_keys,
        rerun_failed,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        retry=(flow_run.run_count or 1) > 1,
    )
    result = pipeline.run_steps(settings, PrefectSteps(), request)
    get_run_logger().info(
        "committed %s: %d partition(s) succeeded, %d failed, %d skipped; batch %s",
        result.run_id,
        len(result.partitions.get("succeeded", [])),
        len(result.partitions.get("failed", [])),
        len(result.partitions.get("skipped", [])),
        result.batch_id or "none",
    )
    return _final_state(result)


def run_nightly(flow: Flow[..., Any], **parameters: Any) -> CommitResult:
    """Run the nightly flow here and return its figures, also when the night failed (the flow
    run then ends Failed); an error that stopped it is raised again."""
    value = _run_for_figures(flow, **parameters)
    if not isinstance(value, CommitResult):
        raise StepFailed("the nightly flow returned no figures")
    return value


def run_backfill(**parameters: Any) -> list[CommitResult]:
    """Run the backfill flow here and return each chunk's figures, also when a partition
    failed (the flow run then ends Failed); an error that stopped it is raised again."""
    value = _run_for_figures(backfill, **parameters)
    if not isinstance(value, list):
        raise StepFailed("the backfill flow returned no figures")
    return value


def _run_for_figures(flow: Flow[..., Any], **parameters: Any) -> Any:
    state = cast(State[Any], flow(return_state=True, **parameters))
    value = state.result(raise_on_failure=False)
    if isinstance(value, BaseException):
        raise value
    if value is None:
        raise StepFailed(f"the flow run ended {state.type.value}: {scrub(state.message or '')}")
    return value


def nightly_for(settings: Settings) -> Flow[..., Any]:
    """The nightly flow with the task runner ``settings`` ask for."""
    if (settings.task_runner, settings.dask_address) == _ENV_RUNNER:
        return nightly
    return nightly.with_options(
        task_runner=task_runner_for(settings.task_runner, settings.dask_address)
    )


@task(task_run_name="{chunk.label}", cache_policy=NO_CACHE, persist_result=False)
@_sanitized
def backfill_chunk(
    settings: Settings,
    chunk: pipeline.Chunk,
    prefetch: Prefetcher | None = None,
    next_chunk: pipeline.Chunk | None = None,
) -> CommitResult:
    """One chunk of a backfill's feed dates: the run's one sequence of steps, one commit, in
    this thread and in one pass (one task run per chunk keeps a long backfill off Prefect's
    per-task overhead: platform-facts, >1 000 task runs stall). With ``prefetch``, its
    partitions were validated in a second process while the previous chunk committed, and
    ``next_chunk``'s are while this one commits (``pipeline.prefetch``)."""
    return run_chunk(settings, chunk, prefetch=prefetch, next_chunk=next_chunk)


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
) -> list[CommitResult] | State[list[CommitResult]]:
    """``claims backfill``: feed dates in order, one commit per chunk of up to ``chunk_days``
    dates (one task run each), resumable after a kill.

    A partition already committed is skipped by its content hash, so re-running the same range
    after a kill posts only what the killed run had not committed.
    """
    settings = _settings(landing, warehouse, outbox, staging)
    first, last = _as_date(date_from), _as_date(date_to)
    logger = get_run_logger()
    results = []
    pipeline.check_landing(settings)
    # One warehouse connection for every date: each close would checkpoint the log into the
    # file, a second per date of rewriting the same blocks (docs/benchmarks.md).
    with (
        run_lock(settings.warehouse, settings.lock_timeout_s),
        warehouse_session(settings.warehouse),
    ):
        pipeline.check_pairing(settings)
        chunks = pipeline.backfill_chunks(settings, first, last, int(chunk_days))
        # The next chunk is validated in a second process while one commits; the prefetcher
        # (and its child) lives across the chunks' task runs and ends with this block.
        with (
            prefetcher_for(settings, chunks) as prefetch,
            progress("backfill chunks", len(chunks)) as advance,
        ):
            for chunk, following in with_next(chunks):
                results.append(backfill_chunk(settings, chunk, prefetch, following))
                advance()
        if results:
            report(settings, results, title=f"claims backfill {first} to {last}")
    failed = [k for r in results for k in r.partitions.get("failed", [])]
    logger.info(
        "backfill %s to %s: %d chunk(s), %d failed partition(s)",
        first,
        last,
        len(results),
        len(failed),
    )
    for key in failed:
        logger.warning("partition %s failed: %s", key, _error_of(results, key))
    if failed:
        # Like a bad night: the good chunks are committed and paid; the flow run says what failed.
        reasons = "; ".join(f"{k}: {_error_of(results, k)[:200]}" for k in failed[:5])
        more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
        return Failed(message=f"{len(failed)} partition(s) failed: {reasons}{more}", data=results)
    return results


def _error_of(results: list[CommitResult], key: str) -> str:
    return next((r.errors[key] for r in results if key in r.errors), "failed")


def record_refused(parameters: dict[str, Any], reason: str) -> None:
    """With a Prefect server configured, a run refused by the warehouse's lock leaves a flow run
    there, in a terminal state (Cancelled: nothing was done, another run is working) saying
    so."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Cancelled

    if not PREFECT_API_URL.value():
        return  # no server configured: nothing would keep the record
    command = str(parameters.get("command") or "run")
    day = _as_date(parameters.get("as_of")).isoformat()
    params = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in parameters.items()}
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(
            nightly,
            name=f"{command}-{day}-refused",
            parameters=params,
            state=Cancelled(message=f"refused: {scrub(reason)[:400]}"),
        )
        client.update_flow_run(run.id, name=f"{command}-{day}-{str(run.id)[:8]}")


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
