"""Register the nightly flow as a Prefect deployment: served from this process (`claims serve`)
or run by the workers of a process work pool (`claims deploy --pool NAME`)."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron, Schedule
from prefect.types.entrypoint import EntrypointType

from config.settings import ConfigError, Settings
from flows.nightly import nightly

# Distinct names: `claims serve` and a work pool's deployment must not overwrite each other.
SERVED = "serve"  # claims-nightly/serve
POOLED = "pool"  # claims-nightly/pool (or the --name given, one per shard say)
DESCRIPTION = "claims run: every ready partition up to yesterday (Asia/Shanghai), then pay"
# Deployment names end up in URLs and in `prefect deployment run FLOW/NAME`.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _parameters(settings: Settings) -> dict[str, str]:
    # Paths only: no personal data ever goes into deployment parameters.
    parameters = {
        "landing": str(settings.landing),
        "warehouse": str(settings.warehouse),
        "outbox": str(settings.outbox),
    }
    if settings.staging is not None:
        parameters["staging"] = str(settings.staging)
    return parameters


def _job_env(settings: Settings) -> dict[str, str]:
    """Environment of the deployment's flow runs: the task runner is chosen when the flow-run
    process imports ``flows.nightly``, from these variables (see ``nightly_for``)."""
    env = {"CLAIMS_TASK_RUNNER": settings.task_runner}
    if settings.dask_address:
        env["CLAIMS_DASK_ADDRESS"] = settings.dask_address
    return env


def one_at_a_time() -> ConcurrencyLimitConfig:
    """At most one nightly flow run of a deployment at a time; the next waits in the queue
    (not dropped). The warehouse lock stays the last word for runs from elsewhere."""
    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


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
        name=SERVED,
        schedules=[nightly_schedule(cron, timezone)],
        global_limit=one_at_a_time(),
        parameters=_parameters(settings),
        description=DESCRIPTION,
        # `flows.nightly.nightly`, imported as a module: a file path would load a second copy
        # of the module under another name, whose tasks Dask workers could not unpickle.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def _process_pool(pool: str) -> None:
    """The work pool must exist and be of the process type: its workers run the flow in a
    Python that has this project installed. Creating pools is left to whoever runs them."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ConfigError(
            "claims deploy needs a Prefect server: set PREFECT_API_URL "
            "(e.g. http://127.0.0.1:4200/api); `claims serve` needs none"
        )
    with get_client(sync_client=True) as client:
        try:
            work_pool = client.read_work_pool(pool)
        except ObjectNotFound:
            raise ConfigError(
                f"--pool: no work pool {pool!r}; create it with "
                f"`prefect work-pool create {pool} --type process`"
            ) from None
    if work_pool.type != "process":
        raise ConfigError(
            f"--pool: work pool {pool!r} is of type {work_pool.type!r}; "
            "claims deploys to a process work pool"
        )


def deploy_nightly(
    settings: Settings, *, pool: str, cron: str, timezone: str, name: str = POOLED
) -> str:
    """``claims deploy``: register the nightly run on its schedule to a process work pool, for
    ``prefect worker start --pool NAME`` to run; returns the deployment's id.

    The entrypoint is the module ``flows.nightly``, not a file: a worker needs this project
    installed (as a Dask worker does), not a copy of the deploying machine's folder.
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(f"--name: {name!r} is not a deployment name (letters, digits, _ . -)")
    schedule = nightly_schedule(cron, timezone)
    _process_pool(pool)
    deployment_id = nightly.deploy(
        name=name,
        work_pool_name=pool,
        schedules=[schedule],
        concurrency_limit=one_at_a_time(),
        parameters=_parameters(settings),
        job_variables={"env": _job_env(settings)},
        description=DESCRIPTION,
        entrypoint_type=EntrypointType.MODULE_PATH,
        build=False,
        push=False,
        print_next_steps=False,
        ignore_warnings=True,
    )
    return str(deployment_id)
