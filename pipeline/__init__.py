"""The steps of a run, as plain functions: plan → validate → commit → issue (→ report).

Flows (``flows/``) run them as Prefect tasks and ``run_local`` in this thread, for
tests, benchmarks and debugging. Steps pass small references (partitions, paths, ids), never
frames: validation writes its frames to the staging folder and the one warehouse writer reads
them from there.
"""

# The steps are loaded on first use (PEP 562): a read-only command that only needs the checks in
# ``pipeline.guard`` must not pay for polars and pandera, which validation imports.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.backfill import DEFAULT_CHUNK_DAYS, Chunk, backfill_chunks, chunk_dates
    from pipeline.guard import check_landing, check_pairing, check_warehouse_exists, init_warehouse
    from pipeline.local import backfill_local, run_local
    from pipeline.pay import issue, issue_pending_batches
    from pipeline.plan import RunPlan, cleanup, feed_dates_between, plan_run
    from pipeline.sequence import LocalSteps, Outcome, Request, Steps, run_steps
    from pipeline.validate import (
        Validated,
        io_failure,
        validate_partition,
        validate_partitions,
        validate_snapshot,
    )
    from pipeline.write import commit

_HOMES = {
    "backfill_chunks": "pipeline.backfill",
    "backfill_local": "pipeline.local",
    "check_landing": "pipeline.guard",
    "check_pairing": "pipeline.guard",
    "check_warehouse_exists": "pipeline.guard",
    "Chunk": "pipeline.backfill",
    "chunk_dates": "pipeline.backfill",
    "cleanup": "pipeline.plan",
    "commit": "pipeline.write",
    "DEFAULT_CHUNK_DAYS": "pipeline.backfill",
    "feed_dates_between": "pipeline.plan",
    "init_warehouse": "pipeline.guard",
    "issue": "pipeline.pay",
    "issue_pending_batches": "pipeline.pay",
    "LocalSteps": "pipeline.sequence",
    "Outcome": "pipeline.sequence",
    "plan_run": "pipeline.plan",
    "Request": "pipeline.sequence",
    "run_local": "pipeline.local",
    "run_steps": "pipeline.sequence",
    "RunPlan": "pipeline.plan",
    "Steps": "pipeline.sequence",
    "validate_partition": "pipeline.validate",
    "validate_partitions": "pipeline.validate",
    "io_failure": "pipeline.validate",
    "validate_snapshot": "pipeline.validate",
    "Validated": "pipeline.validate",
}
__all__ = [
    "DEFAULT_CHUNK_DAYS",
    "Chunk",
    "LocalSteps",
    "Outcome",
    "Request",
    "RunPlan",
    "Steps",
    "Validated",
    "backfill_chunks",
    "backfill_local",
    "check_landing",
    "check_pairing",
    "check_warehouse_exists",
    "chunk_dates",
    "cleanup",
    "commit",
    "feed_dates_between",
    "init_warehouse",
    "io_failure",
    "issue",
    "issue_pending_batches",
    "plan_run",
    "run_local",
    "run_steps",
    "validate_partition",
    "validate_partitions",
    "validate_snapshot",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once loaded, an ordinary attribute (tests may replace it)
    return value
