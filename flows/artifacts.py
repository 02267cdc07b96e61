"""Prefect artifacts beside the run report: the partitions of a run by state, as a table."""

from __future__ import annotations

from collections.abc import Sequence

from prefect.artifacts import create_table_artifact

from outbox.report import partition_table
from outbox.summary import CommitResult


def partition_table_artifact(results: Sequence[CommitResult], title: str) -> None:
    """Failed partitions first with the next command, then succeeded, waiting; skipped counted.

    Partition keys, states and scrubbed reasons only: no personal data.
    """
    rows = partition_table(results)
    if rows:
        create_table_artifact(key="claims-partitions", table=rows, description=title)
