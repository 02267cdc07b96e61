"""The ``claims`` command (operations.md, *Commands*).

Exit status: 0 all well; 1 the run finished but some partition failed (the rest is committed);
2 bad usage or configuration, nothing done; 3 the warehouse was busy with another run, nothing done.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated

import typer

from claims import audit_cli, desk_cli, options
from claims.options import (
    EXIT_FAILED,
    EXIT_OK,
    DaskAddress,
    DateOpt,
    Landing,
    Outbox,
    Staging,
    TaskRunner,
    Warehouse,
    existing_warehouse,
    exit_codes,
    flow_paths,
    one_run,
    parse_day,
    ready_to_run,
    settings_from,
)
from claims.review_cli import review as review_app
from config.settings import ConfigError, Settings

if TYPE_CHECKING:
    from outbox.summary import CommitResult

app = typer.Typer(
    name="claims",
    help="Pays hospitalisation benefits from nightly discharge feeds, without a claim form.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(review_app, name="review")
desk_cli.register(app)


def _check_ready(settings: Settings, keys: list[str]) -> None:
    """Each ``--partition`` must be a ready partition of the landing folder (else exit 2)."""
    from landing.partitions import discharge_partition

    for key in keys:
        partition = discharge_partition(settings.landing, key)
        if not partition.path.is_dir():
            raise ConfigError(f"no partition {key} in the landing folder {settings.landing}")
        if not partition.is_ready:
            raise ConfigError(f"partition {key} has no _manifest.json yet: it is still arriving")


def _prefect_env() -> None:
    """Quiet, local defaults for Prefect; a configured PREFECT_API_URL is used as is."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The first start migrates a new SQLite database: on 2 busy cores that can take > 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false")


def _flows() -> ModuleType:
    """``flows.nightly``, imported only after Prefect's environment is set (Prefect reads its
    settings and configures logging on import)."""
    _prefect_env()
    import flows.nightly

    return flows.nightly


def _run_nightly(settings: Settings, **parameters: object) -> CommitResult:
    """The nightly flow, here, under the run lock; with a Prefect server configured, a run
    refused by the lock leaves a flow run there saying so."""
    from pipeline.guard import check_pairing
    from storage.warehouse import WarehouseBusy

    try:
        with one_run(settings):
            check_pairing(settings)  # before Prefect starts: a wrong pair is refused at once
            flows = _flows()
            return flows.run_nightly(
                flows.nightly_for(settings), **parameters, **flow_paths(settings)
            )
    except WarehouseBusy as exc:
        _flows().record_refused(parameters, str(exc))
        raise


def _finish(results: list[CommitResult], report: bool = True) -> None:
    from rich.markdown import Markdown

    from outbox.report import render_markdown

    if report and results:
        options.console.print(Markdown(render_markdown(results, title="claims: what happened")))
    failed = any(r.failed for r in results)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


@app.command()
def run(
    date_: DateOpt = None,
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
    staging: Staging = None,
    task_runner: TaskRunner = None,
    dask_address: DaskAddress = None,
) -> None:
    """The nightly job: every ready partition with feed_date ≤ D not yet done, then pay."""
    from config.dates import yesterday_in_shanghai

    with exit_codes():
        settings = settings_from(landing, warehouse, outbox, staging, task_runner, dask_address)
        day = parse_day(date_) or yesterday_in_shanghai()
        ready_to_run(settings)
        # A flow that fails for a known reason (busy, bad usage) re-raises it here.
        result = _run_nightly(settings, as_of=day, command="run")
    _finish([result])


@app.command()
def rerun(
    partition: Annotated[
        list[str] | None,
        typer.Option("--partition", help="feed_date=YYYY-MM-DD/source=SOURCE (repeatable)."),
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed partition.")] = False,
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
    staging: Staging = None,
    task_runner: TaskRunner = None,
    dask_address: DaskAddress = None,
) -> None:
    """Process partitions again even if their content did not change, then adjudicate and pay."""
    from landing.partitions import parse_discharge_key

    with exit_codes():
        if bool(partition) == failed:
            raise ConfigError("give either --partition KEY (one or more) or --failed")
        for key in partition or []:
            parse_discharge_key(key)
        settings = settings_from(landing, warehouse, outbox, staging, task_runner, dask_address)
        from config.dates import yesterday_in_shanghai

        keys = list(dict.fromkeys(partition or []))
        ready_to_run(settings)
        _check_ready(settings, keys)
        if failed and _nothing_failed(settings):
            options.console.print("Nothing failed: there is nothing to re-run.")
            raise typer.Exit(EXIT_OK)
        as_of = max([parse_discharge_key(k)[0] for k in keys], default=yesterday_in_shanghai())
        result = _run_nightly(
            settings,
            as_of=as_of,
            command="rerun",
            rerun_keys=keys or None,
            rerun_failed=failed,
        )
    _finish([result])


def _nothing_failed(settings: Settings) -> bool:
    """Whether the warehouse shows no failed partition (read before Prefect starts); a busy
    warehouse is left for the run to wait for."""
    from pipeline.audit import refuse_if_behind
    from storage.queries import partition_runs
    from storage.warehouse import WarehouseBusy, open_warehouse

    try:
        with open_warehouse(settings.warehouse, read_only=True) as con:
            refuse_if_behind(settings, con)  # a restored warehouse says so even with nothing to do
        return all(row["status"] != "failed" for row in partition_runs(settings.warehouse))
    except WarehouseBusy:
        return False


@app.command()
def backfill(
    from_: Annotated[str, typer.Option("--from", help="First feed date YYYY-MM-DD.")],
    to: Annotated[str, typer.Option("--to", help="Last feed date YYYY-MM-DD.")],
    chunk_days: Annotated[
        int,
        typer.Option(
            "--chunk-days",
            help="Commit up to N consecutive feed dates together (one transaction and one "
            "payment batch each); 1 commits each date on its own.",
        ),
    ] = 31,
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
    staging: Staging = None,
) -> None:
    """`run` restricted to feed dates from --from to --to, in date order, in chunks of dates."""
    with exit_codes():
        first, last = parse_day(from_, "--from"), parse_day(to, "--to")
        assert first is not None and last is not None
        if first > last:
            raise ConfigError("--from must not be after --to")
        if chunk_days < 1:
            raise ConfigError("--chunk-days must be at least 1")
        settings = ready_to_run(settings_from(landing, warehouse, outbox, staging))
        from pipeline.guard import check_pairing

        with one_run(settings):
            check_pairing(settings)
            results = _flows().run_backfill(
                date_from=first, date_to=last, chunk_days=chunk_days, **flow_paths(settings)
            )
    if not results:
        options.console.print("No partitions with feed dates in that range.")
    _finish(results)


@app.command()
def status(
    date_: DateOpt = None,
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
) -> None:
    """Partitions by state, with rows, quarantined rows, errors, attempts; the last runs."""
    from claims import views

    with exit_codes():
        settings = existing_warehouse(settings_from(landing, warehouse, outbox))
        failed = views.print_status(options.console, settings, parse_day(date_))
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


@app.command()
def quarantine(
    partition: Annotated[
        str, typer.Option("--partition", help="feed_date=D/source=S or snapshot_date=D.")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Also write the rows, unmasked, to this CSV file."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows to show on the terminal.")] = 50,
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
) -> None:
    """The quarantined rows of a partition with the rules they broke (personal data masked)."""
    from claims import views

    with exit_codes():
        settings = existing_warehouse(settings_from(landing, warehouse, outbox))
        views.print_quarantine(options.console, settings, partition, limit=limit, output=output)


@app.command()
def explain(
    stay: Annotated[str, typer.Option("--stay", help="HOSPITAL_CODE/SETTLEMENT_ID.")],
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
) -> None:
    """How one stay's money was computed, step by step (personal data masked)."""
    from claims import views

    with exit_codes():
        settings = existing_warehouse(settings_from(landing, warehouse, outbox))
        views.print_explanation(options.console, settings, stay)


@app.command()
def init(
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
) -> None:
    """Create the warehouse and pair it with the outbox (every other command needs it)."""
    from rich.markup import escape

    from pipeline.guard import init_warehouse

    with exit_codes():
        settings = settings_from(landing, warehouse, outbox)
        created, identity = init_warehouse(settings)
    what = "created" if created else "already exists"
    options.console.print(
        f"warehouse {escape(str(settings.warehouse))} {what} (id {identity}); it issues into "
        f"the outbox {escape(str(settings.outbox))}.",
        highlight=False,
    )


@app.command()
def demo(
    folder: Annotated[
        Path, typer.Option(help="Where to build the demo (landing, warehouse, outbox).")
    ] = Path("data/demo"),
    nights: Annotated[int, typer.Option(help="Nights of discharges to generate.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic data.")] = 7,
) -> None:
    """Build a realistic synthetic landing folder, run it night by night, show what happened."""
    from claims.demo import run_demo

    level = os.environ.get("PREFECT_LOGGING_LEVEL")
    try:
        with exit_codes():
            # The demo prints its own account of each night; Prefect's task lines (and the
            # failed partition's, which it shows itself) would drown it.
            os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
            _prefect_env()
            code = run_demo(options.console, folder.resolve(), nights=nights, seed=seed)
    finally:  # for this command only (a test runs commands in one process)
        if level is None:
            os.environ.pop("PREFECT_LOGGING_LEVEL", None)
        else:
            os.environ["PREFECT_LOGGING_LEVEL"] = level
    raise typer.Exit(code)


@app.command()
def serve(
    cron: Annotated[str, typer.Option(help="Cron schedule.")] = "0 2 * * *",
    timezone: Annotated[str, typer.Option(help="Time zone of the schedule.")] = "Asia/Shanghai",
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
    staging: Staging = None,
    notify_url: NotifyUrl = None,
) -> None:
    """Register the nightly Prefect deployment on its schedule and serve it (runs until stopped)."""
    with exit_codes():
        settings = ready_to_run(settings_from(landing, warehouse, outbox, staging))
        _prefect_env()
        _notify(notify_url)
        from flows.deploy import serve_nightly

        serve_nightly(settings, cron=cron, timezone=timezone)


@app.command()
def deploy(
    pool: Annotated[str, typer.Option("--pool", help="Prefect work pool (process type).")],
    cron: Annotated[str, typer.Option(help="Cron schedule.")] = "0 2 * * *",
    timezone: Annotated[str, typer.Option(help="Time zone of the schedule.")] = "Asia/Shanghai",
    name: Annotated[str, typer.Option(help="Deployment name (one per shard, say).")] = "pool",
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
    staging: Staging = None,
    task_runner: TaskRunner = None,
    dask_address: DaskAddress = None,
    notify_url: NotifyUrl = None,
) -> None:
    """Register the nightly deployment to a process work pool, for `prefect worker start`."""
    from rich.markup import escape

    with exit_codes():
        settings = ready_to_run(
            settings_from(landing, warehouse, outbox, staging, task_runner, dask_address)
        )
        _prefect_env()
        from flows.deploy import deploy_nightly

        deployment_id = deploy_nightly(settings, pool=pool, cron=cron, timezone=timezone, name=name)
        _notify(notify_url)
    options.console.print(
        f"deployment claims-nightly/{escape(name)} ({deployment_id}) registered to work pool "
        f"{escape(pool)}, validating with {settings.task_runner}; run it with a worker:\n"
        f"  prefect worker start --pool {escape(pool)}",
        highlight=False,
    )


NotifyUrl = Annotated[
    str | None,
    typer.Option(
        "--notify-url",
        envvar="CLAIMS_NOTIFY_URL",
        help="POST to this webhook when a nightly flow run fails (a Prefect automation; "
        "needs PREFECT_API_URL) \\[default: no notification].",
    ),
]


def _notify(url: str | None) -> None:
    """The automation that posts to ``url`` when a night fails (created or updated)."""
    if url is None:
        return
    from urllib.parse import urlsplit

    from flows.notify import AUTOMATION, notify_on_failure

    notify_on_failure(url)
    # The URL itself may hold a token: only its host is shown.
    options.err.print(
        f"automation {AUTOMATION}: a failed night is posted to {urlsplit(url).hostname}",
        highlight=False,
    )


from claims.report_cli import app as report_app  # noqa: E402 - registered after the commands

app.add_typer(report_app)

for _audit in (audit_cli.verify, audit_cli.backup, audit_cli.restore, audit_cli.reconcile):
    app.command()(_audit)


def main() -> None:
    """Console entry point."""
    # pandera imports hypothesis, where it is installed (the development tools), for its
    # data-synthesis strategies, which no command uses: 0.4-0.7 s of every night. A command
    # process goes without it (pandera checks the same; an installed program has no hypothesis).
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]
    try:
        app()
    except KeyboardInterrupt:
        options.err.print("interrupted")
        sys.exit(130)
    finally:
        # The command is done; what follows is the interpreter's exit, whose last full garbage
        # collection walks every object a run left (Prefect, pydantic, polars: 1-2 s after a
        # night, `python -m benchmarks.server_night`). Exempt them: the process ends, and its
        # memory goes with it.
        # Prefect's exit handlers (its logs and events to the API) still run; files and the
        # warehouse are closed by the commands' own context managers.
        gc.freeze()
