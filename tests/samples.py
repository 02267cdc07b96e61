"""Sample values the tests share: a valid identity number, a valid discharge row, a table as an
earlier migration made it, and every table of a warehouse for comparing two whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from stdnum.cn import ric

import synth

HOSPITALS = synth.make_hospitals(3)


def national_id(birth: str, seq: int) -> str:
    """A valid 18-character identity number (check character from python-stdnum)."""
    body = f"310104{birth.replace('-', '')}{seq:03d}"
    return body + ric.calc_check_digit(body + "0")


def discharge_row(sid: str = "S1", **values: str) -> dict[str, str]:
    """A valid discharge row as a sender writes it; keyword arguments replace values."""
    base = {
        "settlement_id": sid,
        "version": "1",
        "record_type": "N",
        "hospital_code": HOSPITALS["hospital_code"][0],
        "national_id": national_id("1956-03-14", 13),
        "patient_name": "张三",
        "gender": "M",
        "birth_date": "1956-03-14",
        "admission_date": "2026-11-02",
        "discharge_date": "2026-11-12",
        "primary_diagnosis": "I10.x05",
        "total_cost": "100.00",
        "fund_paid": "60.00",
        "self_pay_in_scope": "30.00",
        "self_pay_out_of_scope": "10.00",
        "settled_at": "2026-11-12T10:30:00+08:00",
    }
    return base | values


MIGRATIONS = Path(__file__).resolve().parents[1] / "storage" / "migrations"


def table_as_made(migration: str, table: str, as_name: str) -> str:
    """The ``CREATE TABLE`` of ``table`` as ``migration`` (a file of storage/migrations) made it,
    creating ``as_name`` instead: how a test puts a warehouse back to before a later migration."""
    sql = (MIGRATIONS / migration).read_text()
    start = sql.index(f"CREATE TABLE {table} (")
    return sql[start : sql.index(";", start) + 1].replace(f"{table} (", f"{as_name} (", 1)


def rebuild_as_made(con: duckdb.DuckDBPyConnection, migration: str, table: str) -> None:
    """Rebuild ``table`` as ``migration`` made it (its key index back, if it had one), the rows
    in the order they had: a table put back to before a later migration rebuilt it."""
    old = f"{table}_as_made"
    con.execute(table_as_made(migration, table, old))
    con.execute(f"INSERT INTO {old} SELECT * FROM {table} ORDER BY rowid")
    con.execute(f"DROP TABLE {table}")
    con.execute(f"ALTER TABLE {old} RENAME TO {table}")


def every_table(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted, by the table's name (all but ``schema_migrations``): how a
    test holds a migrated warehouse to one written with the migration."""
    names = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND table_name <> 'schema_migrations' ORDER BY 1"
        ).fetchall()
    ]
    return {n: con.execute(f"SELECT * FROM {n} ORDER BY ALL").fetchall() for n in names}


def warehouse_as_made(path: Path, *tables: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows (``every_table``), with the columns and key constraints of ``tables``:
    what a migrated warehouse and one written with the migration must have alike."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = every_table(con)
        out["columns"] = con.execute(
            "SELECT table_name, column_name, data_type, is_nullable "
            "FROM information_schema.columns WHERE list_contains($t, table_name) ORDER BY ALL",
            {"t": list(tables)},
        ).fetchall()
        out["keys"] = con.execute(
            "SELECT table_name, constraint_type, constraint_column_names FROM duckdb_constraints() "
            "WHERE list_contains($t, table_name) ORDER BY ALL",
            {"t": list(tables)},
        ).fetchall()
        return out
    finally:
        con.close()


def outcomes_as_before_022(con: duckdb.DuckDBPyConnection) -> None:
    """Put ``stay_outcomes`` back as 016–021 left it: the hashed member key instead of the member
    number, with 014's ``warehouse_keys``: how a test re-runs a migration before 022."""
    con.execute(table_as_made("016_outcomes_carry_raw_amounts.sql", "stay_outcomes_016", "o_016"))
    con.execute(
        "INSERT INTO o_016 SELECT hospital_code, settlement_id, current_version, status, reason, "
        "national_id, match_method, overlapped_stay, record_type, admission_date, discharge_date, "
        "self_pay_in_scope_fen, hash(national_id), raw_by_plan FROM stay_outcomes ORDER BY rowid"
    )
    con.execute("DROP TABLE stay_outcomes")
    con.execute("ALTER TABLE o_016 RENAME TO stay_outcomes")
    con.execute("CREATE TABLE warehouse_keys (hash_canary UBIGINT NOT NULL)")
    con.execute("INSERT INTO warehouse_keys VALUES (hash('claims member key'))")
    con.execute("DROP MACRO member_number")
