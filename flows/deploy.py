"""Register the nightly flow as a Prefect deployment, served from this process."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prefect.schedules import Cron, Schedule

from claims.config import ConfigError, Settings
from flows.nightly import nightly

DEPLOYMENT = "claims-nightly"


def _parameters(settings: Settings) -> dict[str, str]:
    # Paths only: no personal data ever goes into deployment parameters.
    return {
        "landing": str(settings.landing),
        "warehouse": str(settings.warehouse),
        "outbox": str(settings.outbox),
    }


def nightly_schedule(cron: str, timezone: str) -> Schedule:
    """The deployment's schedule; a bad cron string or time zone is bad usage (exit 2)."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--timezone: no time zone {timezone!r} (e.g. Asia/Shanghai)") from None
    try:
        return Cron(cron, timezone=timezone)
    except ValueError:
        raise ConfigError(f"--cron: {cron!r} is not a cron schedule (e.g. '0 2 * * *')") from None


def serve_nightly(settings: Settings, *, cron: str, timezone: str) -> None:
    """``claims serve``: the nightly run on its cron schedule, served until stopped."""
    nightly.serve(
        name=DEPLOYMENT,
        schedules=[nightly_schedule(cron, timezone)],
        parameters=_parameters(settings),
        description="claims run: every ready partition up to yesterday (Asia/Shanghai), then pay",
    )
