"""Store the reference data in effect (registry, plan rules) and tell whether it changed."""

from __future__ import annotations

import duckdb
import polars as pl

from storage.warehouse import now


def stored_hash(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    row = con.execute(
        "SELECT content_hash FROM reference_versions WHERE name = ?", [name]
    ).fetchone()
    return None if row is None else str(row[0])


def replace_reference(
    con: duckdb.DuckDBPyConnection,
    name: str,
    table: str,
    frame: pl.DataFrame,
    *,
    origin: str,
    content_hash: str,
) -> None:
    """Swap a reference table's content (inside the caller's transaction)."""
    if table not in ("hospitals", "plan_rules"):
        raise ValueError(f"not a reference table: {table}")
    con.register("reference_frame", frame)
    con.execute(f"DELETE FROM {table}")
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM reference_frame")
    con.unregister("reference_frame")
    con.execute(
        """
        INSERT INTO reference_versions VALUES (?, ?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET content_hash = excluded.content_hash,
            origin = excluded.origin, loaded_at = excluded.loaded_at
        """,
        [name, content_hash, origin, now()],
    )


def stored_registry(con: duckdb.DuckDBPyConnection) -> pl.DataFrame | None:
    """The registry the warehouse adjudicates with, if it has one."""
    frame = con.sql("SELECT * FROM hospitals ORDER BY hospital_code").pl()
    return frame if frame.height else None
