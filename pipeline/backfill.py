"""A backfill in chunks of consecutive feed dates (operations.md, ``claims backfill``).

Each chunk is one run: ``plan_run`` over the chunk's range of feed dates, its partitions
validated, then one ``commit`` (staging, matching, adjudication, the ledger and one payment
batch, in one transaction) and one issue. The ledger converges on the targets (ADR 0004), so
the ledger a backfill ends with does not depend on how its dates were chunked; ``chunk_days=1``
is one commit per date. Resumable: a partition already committed with its content is skipped,
so running the same backfill again after a kill commits only what the killed one had not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from config.settings import ConfigError, Settings
from pipeline.plan import feed_dates_between

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
