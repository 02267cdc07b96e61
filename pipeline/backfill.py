"""A backfill in chunks of consecutive feed dates (operations.md, ``claims backfill``).

Each chunk is one run: ``plan_run`` over the chunk's range of feed dates, its partitions
validated, then one ``commit`` (staging, matching, adjudication, the ledger and one payment
batch, in one transaction) and one issue. The ledger converges on the targets (ADR 0004), so
the ledger a backfill ends with does not depend on how its dates were chunked; ``chunk_days=1``
is one commit per date. Resumable: a partition already committed with its content is skipped,
so running the same backfill again after a kill commits only what the killed one had not.

``run_chunk`` is one chunk's run, for ``backfill_local`` and the backfill flow's task alike;
with a ``Prefetcher`` (``pipeline.prefetch``), the next chunk's partitions are validated in a
second process while this chunk commits.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date, timedelta

import pipeline
from config.settings import ConfigError, Settings
from landing.partitions import Partition
from outbox.summary import CommitResult
from pipeline.plan import RunPlan, expected_discharges, feed_dates_between
from pipeline.prefetch import Prefetcher
from pipeline.sequence import LocalSteps, Request, plan_request, run_steps
from pipeline.validate import Validated, io_failure

log = logging.getLogger("claims")

DEFAULT_CHUNK_DAYS = 31


@dataclass(frozen=True)
class Chunk:
    """Feed dates ``first``..``last`` (inclusive), committed together."""

    first: date
    last: date
    feed_dates: tuple[date, ...]

    @property
    def label(self) -> str:
        """``feed_date=D`` or ``feed_date=D1..D2``: names a task run, never anything personal."""
        if self.first == self.last:
            return f"feed_date={self.first.isoformat()}"
        return f"feed_date={self.first.isoformat()}..{self.last.isoformat()}"


def check_chunk_days(chunk_days: int) -> int:
    """A chunk spans at least one day (else bad usage, exit 2)."""
    if isinstance(chunk_days, bool) or not isinstance(chunk_days, int) or chunk_days < 1:
        raise ConfigError("--chunk-days must be a whole number of days, at least 1")
    return chunk_days


def chunk_dates(days: list[date], chunk_days: int) -> list[Chunk]:
    """Split sorted feed dates into chunks: each starts at its first feed date and holds the
    feed dates of the next ``chunk_days`` calendar days (fewer where the landing has gaps)."""
    check_chunk_days(chunk_days)
    chunks: list[Chunk] = []
    current: list[date] = []
    for day in sorted(set(days)):
        if current and day >= current[0] + timedelta(days=chunk_days):
            chunks.append(Chunk(current[0], current[-1], tuple(current)))
            current = []
        current.append(day)
    if current:
        chunks.append(Chunk(current[0], current[-1], tuple(current)))
    return chunks


def backfill_chunks(
    settings: Settings, first: date, last: date, chunk_days: int = DEFAULT_CHUNK_DAYS
) -> list[Chunk]:
    """The chunks of a backfill of [first, last]: the landing folder's feed dates in range."""
    check_chunk_days(chunk_days)
    if first > last:
        raise ConfigError("--from must not be after --to")
    return chunk_dates(feed_dates_between(settings, first, last), chunk_days)


def with_next(chunks: list[Chunk]) -> list[tuple[Chunk, Chunk | None]]:
    """Each chunk with the one after it (None for the last)."""
    return list(zip(chunks, [*chunks[1:], None], strict=False))


def prefetcher_for(
    settings: Settings, chunks: list[Chunk]
) -> AbstractContextManager[Prefetcher | None]:
    """A prefetcher for a backfill of ``chunks`` (none for a single chunk: nothing follows it)."""
    if len(chunks) < 2:
        return nullcontext(None)
    return Prefetcher(settings.staging_dir)


class BackfillSteps(LocalSteps):
    """A backfill chunk's steps in this thread. Its discharge partitions come from the
    prefetcher where it validated them with the content the plan chose (the rest is validated
    here), and once they are in hand the next chunk's are prefetched while this one commits.
    An I/O error fails only its partition (snapshot included), to be retried by the next run."""

    def __init__(
        self, chunk: Chunk, prefetch: Prefetcher | None = None, next_chunk: Chunk | None = None
    ) -> None:
        self.chunk, self.prefetch, self.next_chunk = chunk, prefetch, next_chunk

    def plan(self, settings: Settings, request: Request) -> RunPlan:
        keep = self.prefetch.keep if self.prefetch is not None else ()
        return plan_request(settings, request, keep_staging=keep)

    def validate_discharges(self, settings: Settings, plan: RunPlan) -> list[Validated]:
        ready: dict[Partition, Validated] = {}
        if self.prefetch is not None:
            ready = self.prefetch.take(self.chunk, plan.discharges, plan.registry_file)
        rest = [p for p in plan.discharges if p not in ready]
        fresh = iter(
            pipeline.validate_partitions(
                rest, work_dir=plan.work_dir, registry_file=plan.registry_file
            )
            if rest
            else []
        )
        validated = [ready[p] if p in ready else next(fresh) for p in plan.discharges]
        if self.prefetch is not None:
            log.info(
                "%s: %d of %d partition(s) validated ahead",
                self.chunk.label,
                len(ready),
                len(plan.discharges),
            )
        if self.prefetch is not None and self.next_chunk is not None:
            # Once this chunk is validated: the child then has the second core to itself while
            # this process commits.
            following = (self.next_chunk.first, self.next_chunk.last)
            self.prefetch.start(
                self.next_chunk, expected_discharges(settings, following), plan.registry_file
            )
        return validated

    def validate_snapshot(
        self, settings: Settings, snapshot: Partition, work_dir: str
    ) -> Validated:
        try:
            return super().validate_snapshot(settings, snapshot, work_dir)
        except OSError as exc:
            return io_failure(snapshot, exc)


def run_chunk(
    settings: Settings,
    chunk: Chunk,
    *,
    prefetch: Prefetcher | None = None,
    next_chunk: Chunk | None = None,
) -> CommitResult:
    """One chunk of a backfill: the run's one sequence of steps, one commit. Its prefetched
    files go once it is committed (or has failed)."""
    request = Request("backfill", chunk.last, feed_dates=(chunk.first, chunk.last))
    try:
        return run_steps(settings, BackfillSteps(chunk, prefetch, next_chunk), request)
    finally:
        if prefetch is not None:
            prefetch.release(chunk)
