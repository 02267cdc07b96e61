"""Dates as the scheme sees them: the nightly run works on yesterday in Asia/Shanghai."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def yesterday_in_shanghai(now: datetime | None = None) -> date:
    """The default ``--date`` of ``claims run``."""
    current = (now or datetime.now(SHANGHAI)).astimezone(SHANGHAI)
    return current.date() - timedelta(days=1)
