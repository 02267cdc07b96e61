"""Where things are and the knobs a run takes, from flags and ``CLAIMS_*`` variables."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
REFERENCE_DIR = PROJECT_DIR / "data" / "reference"

DEFAULT_LANDING = Path("data/landing")
DEFAULT_WAREHOUSE = Path("data/warehouse.duckdb")
DEFAULT_OUTBOX = Path("data/outbox")

# Share of a partition's rows that may be quarantined before the whole partition fails (feeds.md).
DEFAULT_REJECT_THRESHOLD = 0.05
# Same for an enrolment snapshot.
DEFAULT_SNAPSHOT_REJECT_THRESHOLD = 0.01
# How long a second run waits for the warehouse before it gives up with exit status 3.
DEFAULT_LOCK_TIMEOUT_S = 30.0
# Where partitions are validated: two local threads, or the workers of a Dask cluster.
TASK_RUNNERS = ("threads", "dask")
# A Dask scheduler address: ``tcp://host:port`` (or tls://, ucx://, ws://, wss://).
_DASK_ADDRESS = re.compile(r"(?:tcp|tls|ucx|wss?)://[^\s/]+:\d{1,5}")


class ConfigError(Exception):
    """Bad usage or configuration: nothing was done (exit status 2)."""


# DuckDB's buffer pool cap per connection; beyond it DuckDB spills to disk. Its own default is
# 80 % of RAM, which let a year's `claims verify` reach 8.3 GB where runs are held to 6 GB.
DEFAULT_DUCKDB_MEMORY_LIMIT = "4GB"
_MEMORY_LIMIT = re.compile(r"\d+(?:\.\d+)?\s*(?:[KMGT]i?B)", re.IGNORECASE)


def duckdb_memory_limit() -> str:
    """``CLAIMS_DUCKDB_MEMORY_LIMIT`` (e.g. ``4GB``, ``512MB``), else the default."""
    raw = (os.environ.get("CLAIMS_DUCKDB_MEMORY_LIMIT") or "").strip()
    if not raw:
        return DEFAULT_DUCKDB_MEMORY_LIMIT
    if not _MEMORY_LIMIT.fullmatch(raw):
        raise ConfigError(
            f"CLAIMS_DUCKDB_MEMORY_LIMIT must be a size such as 4GB or 512MB, got {raw!r}"
        )
    return raw


_UNITS = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_IUNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def size_bytes(size: str) -> int:
    """A size as DuckDB reads it (``4GB`` = 4·10⁹ bytes, ``4GiB`` = 4·2³⁰) in bytes.

    >>> size_bytes("4GB"), size_bytes("512 MiB")
    (4000000000, 536870912)
    """
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT])(i?)B", size.strip(), re.IGNORECASE)
    if m is None:
        raise ConfigError(f"not a size such as 4GB or 512MB: {size!r}")
    units = _IUNITS if m.group(3) else _UNITS
    return int(float(m.group(1)) * units[m.group(2).upper()])


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def task_runner_choice(
    task_runner: str | None = None, dask_address: str | None = None
) -> tuple[str, str | None]:
    """``(runner, address)`` from flags, else ``CLAIMS_TASK_RUNNER`` / ``CLAIMS_DASK_ADDRESS``.

    The runner is ``threads`` unless told otherwise or a Dask address is given; an address is
    used by ``dask`` only (without one, dask starts a temporary cluster on this machine).

    >>> task_runner_choice("dask", "tcp://scheduler:8786")
    ('dask', 'tcp://scheduler:8786')
    """
    address = dask_address if dask_address is not None else os.environ.get("CLAIMS_DASK_ADDRESS")
    address = (address or "").strip() or None
    runner = task_runner if task_runner is not None else os.environ.get("CLAIMS_TASK_RUNNER")
    runner = (runner or "").strip().lower() or ("dask" if address else "threads")
    if runner not in TASK_RUNNERS:
        raise ConfigError(
            f"task runner must be one of {', '.join(TASK_RUNNERS)} "
            f"(--task-runner / CLAIMS_TASK_RUNNER), got {runner!r}"
        )
    if address is not None and not _DASK_ADDRESS.fullmatch(address):
        raise ConfigError(
            "a Dask address (--dask-address / CLAIMS_DASK_ADDRESS) looks like "
            f"tcp://scheduler:8786, got {address!r}"
        )
    return runner, address if runner == "dask" else None


@dataclass(frozen=True)
class Settings:
    """Paths and knobs of one command; every path is absolute once built."""

    landing: Path
    warehouse: Path
    outbox: Path
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD
    snapshot_reject_threshold: float = DEFAULT_SNAPSHOT_REJECT_THRESHOLD
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    reference_dir: Path = field(default=REFERENCE_DIR)
    # Staging folder shared by the validating workers and the warehouse writer; None: beside
    # the warehouse (see ``staging_dir``).
    staging: Path | None = None
    task_runner: str = "threads"
    dask_address: str | None = None

    @classmethod
    def build(
        cls,
        landing: Path | None = None,
        warehouse: Path | None = None,
        outbox: Path | None = None,
        *,
        reject_threshold: float | None = None,
        lock_timeout_s: float | None = None,
        staging: Path | None = None,
        task_runner: str | None = None,
        dask_address: str | None = None,
    ) -> Settings:
        """Flags win over ``CLAIMS_*`` variables, which win over the defaults under ``data/``."""

        def pick(flag: Path | None, env: str, default: Path) -> Path:
            value = flag if flag is not None else Path(os.environ.get(env) or default)
            return value.expanduser().resolve()

        threshold = (
            reject_threshold
            if reject_threshold is not None
            else _env_float("CLAIMS_REJECT_THRESHOLD", DEFAULT_REJECT_THRESHOLD)
        )
        if not 0 <= threshold <= 1:
            raise ConfigError(f"reject threshold must be between 0 and 1, got {threshold}")
        timeout = (
            lock_timeout_s
            if lock_timeout_s is not None
            else _env_float("CLAIMS_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT_S)
        )
        if timeout < 0:
            raise ConfigError(f"lock timeout must be ≥ 0 seconds, got {timeout}")
        staging_path = staging if staging is not None else os.environ.get("CLAIMS_STAGING")
        runner, address = task_runner_choice(task_runner, dask_address)
        return cls(
            landing=pick(landing, "CLAIMS_LANDING", DEFAULT_LANDING),
            warehouse=pick(warehouse, "CLAIMS_WAREHOUSE", DEFAULT_WAREHOUSE),
            outbox=pick(outbox, "CLAIMS_OUTBOX", DEFAULT_OUTBOX),
            reject_threshold=threshold,
            lock_timeout_s=timeout,
            staging=Path(staging_path).expanduser().resolve() if staging_path else None,
            task_runner=runner,
            dask_address=address,
        )

    @property
    def staging_dir(self) -> Path:
        """Where validation writes staged Parquet for the single warehouse writer to load.

        ``<warehouse>.staging`` unless configured: Dask workers on other machines need a folder
        mounted at the same path on every worker and on the writer.
        """
        if self.staging is not None:
            return self.staging
        return self.warehouse.parent / (self.warehouse.stem + ".staging")
