"""The steps of a run, as plain functions: plan → validate → commit → issue (→ report).

Flows (``flows/``) call them as Prefect tasks; ``run_local`` calls them in this thread, for
tests, benchmarks and debugging. Steps pass small references (partitions, paths, ids), never
frames: validation writes its frames to the staging folder and the one warehouse writer reads
them from there.
"""

from pipeline.local import run_local
from pipeline.pay import issue, issue_pending_batches
from pipeline.plan import RunPlan, cleanup, feed_dates_between, plan_run
from pipeline.validate import Validated, validate_partition, validate_snapshot
from pipeline.write import commit

__all__ = [
    "RunPlan",
    "Validated",
    "cleanup",
    "commit",
    "feed_dates_between",
    "issue",
    "issue_pending_batches",
    "plan_run",
    "run_local",
    "validate_partition",
    "validate_snapshot",
]
