"""What every command shares: the path options, settings, exit statuses and their mapping.

Command modules (``claims/cli.py`` and the groups beside it) import from here, so that one
option is spelled once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from config.settings import ConfigError, Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3

console = Console()
err = Console(stderr=True)

Landing = Annotated[
    Path | None,
    typer.Option(
        "--landing", envvar="CLAIMS_LANDING", help="Landing folder \\[default: data/landing]."
    ),
]
Warehouse = Annotated[
    Path | None,
    typer.Option(
        "--warehouse",
        envvar="CLAIMS_WAREHOUSE",
        help="Warehouse file \\[default: data/warehouse.duckdb].",
    ),
]
Outbox = Annotated[
    Path | None,
    typer.Option(
        "--outbox", envvar="CLAIMS_OUTBOX", help="Outbox folder \\[default: data/outbox]."
    ),
]
Staging = Annotated[
    Path | None,
    typer.Option(
        "--staging",
        envvar="CLAIMS_STAGING",
        help="Staging folder for validated Parquet, shared by Dask workers and the writer "
        "(default: <warehouse>.staging beside the warehouse).",
    ),
]
TaskRunner = Annotated[
    str | None,
    typer.Option(
        "--task-runner",
        envvar="CLAIMS_TASK_RUNNER",
        help="Where partitions are validated: threads (2 local threads) or dask "
        "(default: threads; dask when a Dask address is given).",
    ),
]
DaskAddress = Annotated[
    str | None,
    typer.Option(
        "--dask-address",
        envvar="CLAIMS_DASK_ADDRESS",
        help="Dask scheduler, tcp://HOST:PORT (default: a temporary cluster on this machine).",
    ),
]
DateOpt = Annotated[
    str | None,
    typer.Option("--date", help="Feed date YYYY-MM-DD \\[default: yesterday, Asia/Shanghai]."),
]


def settings_from(
    landing: Path | None,
    warehouse: Path | None,
    outbox: Path | None,
    staging: Path | None = None,
    task_runner: str | None = None,
    dask_address: str | None = None,
) -> Settings:
    return Settings.build(
        landing,
        warehouse,
        outbox,
        staging=staging,
        task_runner=task_runner,
        dask_address=dask_address,
    )


def flow_paths(settings: Settings) -> dict[str, str | None]:
    """The flows' path parameters (never anything personal)."""
    return {
        "landing": str(settings.landing),
        "warehouse": str(settings.warehouse),
        "outbox": str(settings.outbox),
        "staging": str(settings.staging) if settings.staging is not None else None,
    }


def parse_day(text: str | None, option: str = "--date") -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{option} must be a date YYYY-MM-DD") from None


@contextmanager
def exit_codes() -> Iterator[None]:
    """Map the pipeline's errors to the contract's exit statuses, with a message, no traceback."""
    from rich.markup import escape

    from config.masking import scrub
    from landing.partitions import PartitionKeyError
    from storage.warehouse import WarehouseBusy

    def say(label: str, exc: Exception) -> None:
        err.print(f"{label} {escape(scrub(str(exc))[:500])}", highlight=False)

    try:
        yield
    except typer.Exit:
        raise
    except (ConfigError, PartitionKeyError) as exc:
        say("[red]error:[/red]", exc)
        raise typer.Exit(EXIT_USAGE) from None
    except WarehouseBusy as exc:
        say("[yellow]busy:[/yellow]", exc)
        raise typer.Exit(EXIT_BUSY) from None
    except Exception as exc:
        # Never a bare traceback, which could quote a value: what stopped, scrubbed. Re-running
        # is safe; the Prefect flow run's log has the (scrubbed) details.
        say(f"[red]error:[/red] {type(exc).__name__}:", exc)
        err.print("`claims status` shows the state of the warehouse.")
        raise typer.Exit(EXIT_FAILED) from None


@contextmanager
def one_run(settings: Settings) -> Iterator[None]:
    """Hold the warehouse's run lock before Prefect starts (it takes seconds): a second run
    says at once that it waits, waits at most CLAIMS_LOCK_TIMEOUT, then exits 3 having changed
    nothing. The flow re-enters the same lock; a deployment run (``claims serve``) takes it in
    the flow."""
    from storage.lock import run_lock

    def waiting(pid: int | None) -> None:
        holder = f" (process {pid})" if pid else ""
        err.print(
            f"waiting up to {settings.lock_timeout_s:.0f} s for another claims run{holder} "
            f"on {settings.warehouse.name} to finish…",
            highlight=False,
        )

    with run_lock(settings.warehouse, settings.lock_timeout_s, on_wait=waiting):
        yield


def existing_warehouse(settings: Settings) -> Settings:
    """Refuse a warehouse file that does not exist (exit 2, nothing created): only
    ``claims init`` makes one."""
    from pipeline.guard import check_warehouse_exists

    check_warehouse_exists(settings)
    return settings


def ready_to_run(settings: Settings) -> Settings:
    """What a run needs before anything starts: a landing folder with feeds, a warehouse that
    exists (its pairing with the outbox is checked under the run lock)."""
    from pipeline.guard import check_landing

    check_landing(settings)
    return existing_warehouse(settings)
