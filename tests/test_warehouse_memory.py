"""DuckDB's buffer pool is capped (``CLAIMS_DUCKDB_MEMORY_LIMIT``, default 4GB) on every
connection the warehouse opens, writer or reader; a malformed value is a configuration error."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import DEFAULT_DUCKDB_MEMORY_LIMIT, ConfigError, duckdb_memory_limit
from storage.warehouse import open_warehouse


def _limit(path: Path, *, read_only: bool = False) -> str:
    with open_warehouse(path, read_only=read_only) as con:
        row = con.execute("SELECT current_setting('memory_limit')").fetchone()
    assert row is not None
    return str(row[0])


def test_every_connection_gets_the_default_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLAIMS_DUCKDB_MEMORY_LIMIT", raising=False)
    assert DEFAULT_DUCKDB_MEMORY_LIMIT == "4GB"
    db = tmp_path / "warehouse.duckdb"
    # DuckDB reports the limit in binary units: 4 GB is 3.7 GiB.
    assert _limit(db) == "3.7 GiB"
    assert _limit(db, read_only=True) == "3.7 GiB"


def test_the_variable_sets_another_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAIMS_DUCKDB_MEMORY_LIMIT", "512MB")
    assert duckdb_memory_limit() == "512MB"
    assert _limit(tmp_path / "warehouse.duckdb") == "488.2 MiB"


@pytest.mark.parametrize("value", ["lots", "4", "-1GB", "4 GB; DROP TABLE x"])
def test_a_malformed_cap_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CLAIMS_DUCKDB_MEMORY_LIMIT", value)
    with pytest.raises(ConfigError, match="CLAIMS_DUCKDB_MEMORY_LIMIT"):
        _limit(tmp_path / "warehouse.duckdb")
