"""The steps of a run, as plain functions: plan → validate → commit → issue (→ report).

Flows (``flows/``) call them as Prefect tasks; ``run_local`` calls them in this thread, for
tests, benchmarks and debugging. Steps pass small references (partitions, paths, ids), never
frames: validation writes its frames to the staging folder and the one warehouse writer reads
them from there.
"""

from pipeline.backfill import DEFAULT_CHUNK_DAYS, Chunk, backfill_chunks, chunk_dates
from pipeline.local import backfill_local, run_local
from pipeline.pay import issue, issue_pending_batches
from pipeline.plan import RunPlan, cleanup, feed_dates_between, plan_run
from pipeline.validate import Validated, validate_partition, validate_snapshot
from pipeline.write import commit

__all__ = [
    "DEFAULT_CHUNK_DAYS",
    "Chunk",
    "RunPlan",
    "Validated",
    "backfill_chunks",
    "backfill_local",
    "chunk_dates",
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
