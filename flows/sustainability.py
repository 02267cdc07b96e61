"""The ``claims-sustainability`` flow: the plan-by-plan report of a benefit year, with artifacts.

Orchestration only: one task runs ``pipeline.write_sustainability`` (the same step as
``claims report sustainability``) and the flow leaves two artifacts: a link to the HTML page and
the headline table (plan totals; no personal data). It only reads the warehouse, so it takes no
run lock; while a run is writing, the read waits and retries.

It is meant to run monthly beside the nightly deployment, e.g. on the 2nd at 06:00 for the year of
the month just ended::

    from prefect import serve
    serve(nightly.to_deployment(...), sustainability_deployment(settings))
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.types.entrypoint import EntrypointType

from config.dates import yesterday_in_shanghai
from config.masking import scrub
from config.settings import ConfigError, Settings
from outbox.sustainability_report import SustainabilityFiles, check_request, write_sustainability
from storage.warehouse import WarehouseBusy

DEPLOYMENT = "claims-sustainability-monthly"
DESCRIPTION = "claims report sustainability: the benefit year of the month just ended"
# A nightly run holds the warehouse for minutes at most: wait for it, twice.
BUSY_RETRY_DELAYS_S: list[float] = [60, 300]


class ReportFailed(Exception):
    """An unexpected error while writing the report, its message scrubbed."""


def default_year() -> int:
    """The year of the month just ended (Asia/Shanghai): on 2 January, the year before."""
    return (yesterday_in_shanghai().replace(day=1) - timedelta(days=1)).year


def _year(value: int | str | None) -> int:
    """The year parameter: deployments and the API pass JSON, maybe as a string."""
    if value is None or value == "":
        return default_year()
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) == 4:
        return int(value)
    raise ConfigError("the year parameter must be a benefit year YYYY")


def _run_name() -> str:
    params = flow_run.parameters
    try:
        year = str(_year(params.get("year")))
    except ConfigError:
        year = "bad-year"
    plan = params.get("plan")
    return f"sustainability-{year}" + (f"-{plan}" if isinstance(plan, str) and plan else "")


def _busy_only(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only while a run holds the warehouse; bad parameters fail the same way again."""
    try:
        state.result()
    except WarehouseBusy:
        return True
    except Exception:
        return False
    return False


@task(
    task_run_name="report-{year}",
    retries=len(BUSY_RETRY_DELAYS_S),
    retry_delay_seconds=BUSY_RETRY_DELAYS_S,
    retry_condition_fn=_busy_only,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def write_report(settings: Settings, year: int, plan: str | None) -> SustainabilityFiles:
    """Read the warehouse, write the CSV and the HTML page under ``<outbox>/reports/``."""
    try:
        return write_sustainability(settings, year, plan)
    except (ConfigError, WarehouseBusy):
        raise  # our own messages: years, plans, file names
    except Exception as exc:
        raise ReportFailed(f"{type(exc).__name__}: {scrub(str(exc))[:500]}") from None


@flow(
    name="claims-sustainability",
    flow_run_name=_run_name,
    persist_result=False,
    validate_parameters=False,
)
def sustainability(
    year: int | str | None = None,
    plan: str | None = None,
    landing: str | None = None,
    warehouse: str | None = None,
    outbox: str | None = None,
) -> SustainabilityFiles:
    """``claims report sustainability`` as a flow: the report, its link and headline artifacts."""
    from pathlib import Path

    settings = Settings.build(
        Path(landing) if landing else None,
        Path(warehouse) if warehouse else None,
        Path(outbox) if outbox else None,
    )
    chosen = _year(year)
    check_request(chosen, plan or None)
    files = write_report(settings, chosen, plan or None)
    create_link_artifact(
        key="claims-sustainability-report",
        link=files.html.resolve().as_uri(),
        link_text=f"Sustainability {chosen} (HTML)",
        description=f"Plan sustainability for {chosen}; the tidy CSV is {files.csv.name} beside it",
    )
    create_table_artifact(
        key="claims-sustainability-headline",
        table=files.headline,
        description=f"The year {chosen} so far, per plan (the projection is a run-rate)",
    )
    get_run_logger().info("sustainability %d: %d CSV rows, %s", chosen, files.rows, files.html)
    return files


def sustainability_deployment(
    settings: Settings,
    *,
    cron: str = "0 6 2 * *",
    timezone: str = "Asia/Shanghai",
    name: str = DEPLOYMENT,
) -> Any:
    """The monthly deployment (a ``RunnerDeployment``), to serve beside the nightly one:
    ``prefect.serve(…, sustainability_deployment(settings))``; ``.apply()`` registers it alone."""
    from prefect.schedules import Cron

    return sustainability.to_deployment(
        name=name,
        schedules=[Cron(cron, timezone=timezone)],
        # Paths only, never anything personal; the year defaults to the month just ended.
        parameters={
            "landing": str(settings.landing),
            "warehouse": str(settings.warehouse),
            "outbox": str(settings.outbox),
        },
        description=DESCRIPTION,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
