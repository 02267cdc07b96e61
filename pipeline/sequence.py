"""A run's steps, written once: check → lock → plan → validate → commit → issue → settle →
report.

``run_steps`` is the sequence; a ``Steps`` says how each step is executed. ``LocalSteps`` calls
the step functions in this thread (``run_local``: tests, benchmarks, debugging); the Prefect
flow (``flows/nightly.py``) passes steps that run them as task runs, validation concurrently.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Protocol

import pipeline
from config.settings import Settings
from landing.partitions import Partition
from outbox.summary import CommitResult
from pipeline import held
from pipeline.guard import check_landing, check_pairing
from pipeline.pay import issue
from pipeline.plan import RunPlan, cleanup, plan_run
from pipeline.validate import Validated
from pipeline.write import commit
from storage import runs
from storage.lock import run_lock
from storage.warehouse import open_warehouse, warehouse_session


@dataclass(frozen=True)
class Request:
    """What a run was asked to do (its command line, or a deployment's parameters)."""

    command: str
    as_of: date
    rerun_keys: list[str] | None = None
    rerun_failed: bool = False
    feed_dates: tuple[date, date] | None = None
    flow_run_id: str | None = None  # the Prefect flow run that commits it, if any
    retry: bool = False  # a retry of that flow run: re-process what failed in it

    @property
    def title(self) -> str:
        return f"claims {self.command} {self.as_of.isoformat()}"


@dataclass(frozen=True)
class Outcome:
    """One processed partition's committed outcome (no personal data)."""

    key: str
    status: str  # succeeded | failed
    error: str | None = None


class Steps(Protocol):
    """How each step of a run is executed."""

    def plan(self, settings: Settings, request: Request) -> RunPlan: ...

    def validate(self, settings: Settings, plan: RunPlan) -> list[Validated]: ...

    def commit(
        self, settings: Settings, plan: RunPlan, validated: list[Validated]
    ) -> CommitResult: ...

    def issue(self, settings: Settings) -> list[str]: ...

    def settle(self, outcomes: list[Outcome]) -> None: ...

    def report(self, settings: Settings, result: CommitResult, title: str) -> None: ...


def outcomes(plan: RunPlan, result: CommitResult) -> list[Outcome]:
    """What became of each partition the plan processed, as committed (a reject threshold is
    only decided in the commit)."""
    failed = set(result.partitions.get("failed", []))
    keys = [p.key for p in plan.discharges] + ([plan.snapshot.key] if plan.snapshot else [])
    return [
        Outcome(k, "failed", result.errors.get(k, "failed"))
        if k in failed
        else Outcome(k, "succeeded")
        for k in keys
    ]


def run_steps(settings: Settings, steps: Steps, request: Request) -> CommitResult:
    """One run: nothing is written before the landing folder and the warehouse–outbox pair
    check out; then one commit, under the warehouse's run lock.

    The warehouse file is opened twice (``warehouse_session``): once for the pairing check and
    the plan, once for the commit and the batch's issue. Between them, while the partitions
    are validated, the file is closed, so that ``claims status`` can read it (operations.md:
    it shows the partitions the run marked running). Each phase ends with one checkpoint; no
    other transaction is open to hold back its merges, so it is not settled (a backfill's
    session is: ``storage.warehouse.settle``), and it merges no row groups: its checkpoints
    write what it changed (``storage.warehouse.NO_ROW_GROUP_MERGES``). Within a backfill's
    session, both phases are that session's one connection.
    """
    check_landing(settings)
    with run_lock(settings.warehouse, settings.lock_timeout_s):
        with warehouse_session(settings.warehouse, settle_at_end=False, merge_row_groups=False):
            check_pairing(settings)
            plan = steps.plan(settings, request)
        try:
            validated = steps.validate(settings, plan)
            with warehouse_session(settings.warehouse, settle_at_end=False, merge_row_groups=False):
                result = steps.commit(settings, plan, validated)
                steps.issue(settings)
                # Before the file closes: a run whose staging folder is there and whose file is
                # closed is validating (what `claims status` and its test rely on).
                cleanup(plan)
        finally:
            held.release(Path(plan.work_dir))  # slices a failed commit did not take
        steps.settle(outcomes(plan, result))
        steps.report(settings, result, request.title)
    return result


def plan_request(
    settings: Settings, request: Request, *, keep_staging: tuple[str, ...] = ()
) -> RunPlan:
    """Plan what ``request`` asks; a retried flow run re-processes the partitions that failed
    in it, content changed or not, and nothing that succeeded. Under the run lock.
    ``keep_staging``: staging folders still in use by this process (``plan_run``)."""
    if request.retry and request.flow_run_id is not None:
        with open_warehouse(settings.warehouse) as con:
            failed = runs.failed_in_flow_run(con, request.flow_run_id)
        if failed is not None:  # else it never committed: an ordinary run does what is not done
            keys = [k for k in failed if k.startswith("feed_date=")]
            # rerun_keys (even empty) also re-loads a snapshot that failed with this content.
            request = replace(request, rerun_keys=keys, rerun_failed=False)
    return plan_run(
        settings,
        command=request.command,
        as_of=request.as_of,
        rerun_keys=request.rerun_keys,
        rerun_failed=request.rerun_failed,
        feed_dates=request.feed_dates,
        flow_run_id=request.flow_run_id,
        keep_staging=keep_staging,
    )


class LocalSteps:
    """Every step in this thread, one after the other; no report, no Prefect."""

    def plan(self, settings: Settings, request: Request) -> RunPlan:
        return plan_request(settings, request)

    def validate(self, settings: Settings, plan: RunPlan) -> list[Validated]:
        validated = self.validate_discharges(settings, plan)
        if plan.snapshot is not None:
            validated.append(self.validate_snapshot(settings, plan.snapshot, plan.work_dir))
        return validated

    def validate_discharges(self, settings: Settings, plan: RunPlan) -> list[Validated]:
        """The plan's discharge partitions in one pass (a night's, or a backfill chunk's)."""
        # Through the package, so that a test may replace ``pipeline.validate_partitions``.
        return pipeline.validate_partitions(
            plan.discharges, work_dir=plan.work_dir, registry_file=plan.registry_file
        )

    def validate_snapshot(
        self, settings: Settings, snapshot: Partition, work_dir: str
    ) -> Validated:
        """The snapshot to load; an I/O error propagates (a debugging run shows it)."""
        # The commit is this process's: the staged slices stay in memory (``pipeline.held``).
        return pipeline.validate_snapshot(
            snapshot, work_dir=work_dir, threshold=settings.snapshot_reject_threshold, hold=True
        )

    def commit(self, settings: Settings, plan: RunPlan, validated: list[Validated]) -> CommitResult:
        return commit(settings, plan, validated)

    def issue(self, settings: Settings) -> list[str]:
        return issue(settings)

    def settle(self, outcomes: list[Outcome]) -> None:
        pass  # the result says it all

    def report(self, settings: Settings, result: CommitResult, title: str) -> None:
        pass  # the flows write the report and its artifact
