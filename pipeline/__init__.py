"""The steps of a run, as plain functions: plan → validate → commit → issue (→ report).

Flows (``flows/``) run them as Prefect tasks and ``run_local`` in this thread, for
tests, benchmarks and debugging. Steps pass small references (partitions, paths, ids), never
frames: validation writes its frames to the staging folder and the one warehouse writer reads
them from there.
"""

from pipeline.guard import check_landing, check_pairing, check_warehouse_exists, init_warehouse
from pipeline.local import run_local
from pipeline.pay import issue, issue_pending_batches
from pipeline.plan import RunPlan, cleanup, feed_dates_between, plan_run
from pipeline.sequence import LocalSteps, Outcome, Request, Steps, run_steps
from pipeline.validate import Validated, validate_partition, validate_snapshot
from pipeline.write import commit

__all__ = [
    "LocalSteps",
    "Outcome",
    "Request",
    "RunPlan",
    "Steps",
    "Validated",
    "check_landing",
    "check_pairing",
    "check_warehouse_exists",
    "cleanup",
    "commit",
    "feed_dates_between",
    "init_warehouse",
    "issue",
    "issue_pending_batches",
    "plan_run",
    "run_local",
    "run_steps",
    "validate_partition",
    "validate_snapshot",
]
