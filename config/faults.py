"""Fault injection for the reliability tests: die like ``kill -9`` at a named commit point.

Set ``CLAIMS_FAULT=<point>`` (and optionally ``CLAIMS_FAULT_SKIP=n`` to pass the point n times
first). Off unless set; costs one dictionary lookup per point.
"""

from __future__ import annotations

import os

POINTS = (
    "after_validation",  # partitions validated, nothing committed yet
    "after_staging",  # rows staged inside the transaction, before adjudication
    "in_ledger",  # ledger entries inserted, transaction not committed
    "after_commit",  # committed, batch file not written
    "batch_file_half",  # batch file written under its temporary name, not renamed
    "after_batch_file",  # batch files in place, batch not yet marked issued
    "snapshot_load",  # enrolment snapshot half loaded inside the transaction
)
# Points outside a run (the run's crash tests go through POINTS only).
BACKUP_POINTS = ("backup_half",)  # backup: warehouse copied, its checksums not yet written
# In a backfill's prefetching child process (pipeline.prefetch): the child dies, the run goes on.
PREFETCH_POINTS = ("prefetch_child",)
_passed: dict[str, int] = {}


def fault_point(point: str) -> None:
    """Exit the process at once, without cleanup, when this point is the configured fault."""
    if os.environ.get("CLAIMS_FAULT") != point:
        return
    skip = int(os.environ.get("CLAIMS_FAULT_SKIP", "0") or 0)
    seen = _passed.get(point, 0)
    _passed[point] = seen + 1
    if seen >= skip:
        os._exit(137)
