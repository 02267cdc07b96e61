"""Run a script of several statements with named parameters, each statement getting its own."""

from __future__ import annotations

import re
from typing import Any

import duckdb
import polars as pl

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def run_script(
    con: duckdb.DuckDBPyConnection, script: str, params: dict[str, Any] | None = None
) -> None:
    """Execute ``;``-separated statements; parameters are bound, never formatted into SQL."""
    params = params or {}
    for statement in (s.strip() for s in script.split(";\n")):
        if not statement or all(
            line.strip().startswith("--") or not line.strip() for line in statement.splitlines()
        ):
            continue
        names = set(_PARAM.findall(statement))
        con.execute(statement, {k: v for k, v in params.items() if k in names})


def frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> pl.DataFrame:
    """A query's result as a polars frame (DuckDB 2's ``execute`` results have no ``.pl()``)."""
    return con.sql(sql, params=params or None).pl()
