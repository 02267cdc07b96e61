"""Register the nightly flow as a Prefect deployment, served from this process."""

from __future__ import annotations

from prefect.schedules import Cron

from claims.config import Settings
from flows.nightly import nightly

DEPLOYMENT = "claims-nightly"


def _parameters(settings: Settings) -> dict[str, str]:
    # Paths only: no personal data ever goes into deployment parameters.
    return {
        "landing": str(settings.landing),
        "warehouse": str(settings.warehouse),
        "outbox": str(settings.outbox),
    }


def serve_nightly(settings: Settings, *, cron: str, timezone: str) -> None:
    """``claims serve``: the nightly run on its cron schedule, served until stopped."""
    nightly.serve(
        name=DEPLOYMENT,
        schedules=[Cron(cron, timezone=timezone)],
        parameters=_parameters(settings),
        description="claims run: every ready partition up to yesterday (Asia/Shanghai), then pay",
    )
