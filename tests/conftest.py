"""Shared fixtures: a fresh landing/warehouse/outbox per test, one Prefect harness per session
(per worker, when the suite runs on several).

Prefect is pointed at a temporary home before anything imports it, so tests never touch
``~/.prefect`` and never send telemetry.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Under pytest-xdist every worker inherits the controller's environment: each takes a home of its
# own, or two workers' ephemeral servers would share one SQLite database.
if "PYTEST_XDIST_WORKER" in os.environ or "PREFECT_HOME" not in os.environ:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="claims-test-prefect-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "false"
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("CLAIMS_LOCK_TIMEOUT", "5")

from config.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Landing, warehouse and outbox in a temporary folder (a real DuckDB file)."""
    return Settings.build(tmp_path / "landing", tmp_path / "warehouse.duckdb", tmp_path / "outbox")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One real Prefect test server for the whole session (~20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
