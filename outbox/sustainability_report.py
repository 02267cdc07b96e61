"""Write the sustainability report of a benefit year: read the warehouse, compute, write files.

The one step both ``claims report sustainability`` (directly, no Prefect) and the
``claims-sustainability`` flow call. It only reads the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from config.settings import ConfigError, Settings
from outbox.sustainability import compute, headline, write_csv
from outbox.sustainability_html import write_html
from storage.sustainability import ReportUnavailable, read_sustainability_counts


@dataclass(frozen=True)
class SustainabilityFiles:
    """Where the report went and its headline rows (no personal data: plan totals only)."""

    csv: Path
    html: Path
    headline: list[dict[str, str]]
    rows: int


def check_request(year: int, plan: str | None) -> None:
    """A year the warehouse could hold and a plan of the contract, else ConfigError (exit 2)."""
    if not 1990 <= year <= 2100:
        raise ConfigError(f"--year {year} is outside 1990–2100")
    # Imported here: pandera comes with it, and the command should start fast.
    from schemas.reference import PLAN_CODES

    if plan is not None and plan not in PLAN_CODES:
        raise ConfigError(f"--plan must be one of {', '.join(PLAN_CODES)}")


def write_sustainability(settings: Settings, year: int, plan: str | None) -> SustainabilityFiles:
    """Compute the report for ``year`` (one plan or all) into ``<outbox>/reports/``."""
    check_request(year, plan)
    if not settings.warehouse.is_file():
        raise ConfigError(f"no warehouse at {settings.warehouse}: run `claims run` first")
    try:
        counts = read_sustainability_counts(settings.warehouse, year, plan=plan)
    except ReportUnavailable as exc:
        raise ConfigError(str(exc)) from None
    report = compute(counts)
    folder = settings.outbox / "reports"
    return SustainabilityFiles(
        csv=write_csv(folder, report),
        html=write_html(folder, report),
        headline=headline(report),
        rows=report.tidy.height,
    )
