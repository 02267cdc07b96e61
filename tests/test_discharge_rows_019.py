"""Migration 019: ``discharge_rows`` cheaper to write, with the same meaning.

A backfill chunk's commit inserts ~450,000 discharge rows. Their ``raw`` JSON is stored with ZSTD
(DuckDB's default analysis of it cost more than the rest of the row), and ``content_md5`` hashes
the contract values joined by the unit separator, each text value as a JSON string, instead of a
JSON object of them. The rows kept before are rehashed by the migration: hashes are compared
across partitions (a ``version_conflict`` is a row whose hash differs from the first row of its
stay version), so old and new rows must hash alike.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
from samples import table_as_made
from test_instruction_grain import _night
from test_night_scope import CROSSING, FIRST_NIGHT, check_equals_full_recompute, play
from test_stay_grain import _correct_a1

from pipeline import run_local
from storage.staging import CONTENT_MD5
from storage.warehouse import open_warehouse

# The row hash as it was before 019: the values as one JSON object.
OLD_MD5 = (
    "md5(to_json({'hospital_code': hospital_code, 'settlement_id': settlement_id, "
    "'version': version, 'record_type': record_type, 'national_id': national_id, "
    "'patient_name': patient_name, 'gender': gender, 'birth_date': birth_date, "
    "'admission_date': admission_date, 'discharge_date': discharge_date, "
    "'primary_diagnosis': primary_diagnosis, 'total_cost_fen': total_cost_fen, "
    "'fund_paid_fen': fund_paid_fen, 'self_pay_in_scope_fen': self_pay_in_scope_fen, "
    "'self_pay_out_of_scope_fen': self_pay_out_of_scope_fen, "
    "'settled_at': epoch_us(settled_at)}))"
)
ROWS = "SELECT * EXCLUDE (content_md5) FROM discharge_rows ORDER BY ALL"
STALE = f"SELECT count(*) FROM discharge_rows WHERE content_md5 <> {CONTENT_MD5}"
RAW_COMPRESSION = (
    "SELECT DISTINCT compression FROM pragma_storage_info('discharge_rows') "
    "WHERE column_name = 'raw' AND segment_type = 'VARCHAR'"
)


def _as_before_019(path: Path) -> None:
    """Put ``discharge_rows`` back as 001 made it, hashed as before 019, its rows in order."""
    create = table_as_made("001_foundation.sql", "discharge_rows", "discharge_rows_old")
    with open_warehouse(path) as con:
        con.execute(create)
        con.execute(
            "INSERT INTO discharge_rows_old SELECT * REPLACE "
            f"({OLD_MD5} AS content_md5) FROM discharge_rows ORDER BY rowid"
        )
        con.execute("DROP TABLE discharge_rows")
        con.execute("ALTER TABLE discharge_rows_old RENAME TO discharge_rows")
        con.execute("DELETE FROM schema_migrations WHERE version = 19")


def test_a_warehouse_migrated_to_019_holds_what_one_written_with_it_does(tmp_path: Path) -> None:
    settings = play(tmp_path / "crossing", CROSSING)
    with open_warehouse(settings.warehouse) as con:
        native = con.execute(ROWS).fetchall()
        hashes = con.execute("SELECT content_md5 FROM discharge_rows ORDER BY ALL").fetchall()
        assert native
        assert con.execute(STALE).fetchone() == (0,)
        con.execute("CHECKPOINT")
        assert con.execute(RAW_COMPRESSION).fetchall() == [("ZSTD",)]
    _as_before_019(settings.warehouse)
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute(STALE).fetchone() != (0,)  # hashed the old way
        assert con.execute(ROWS).fetchall() == native
    with open_warehouse(settings.warehouse) as con:  # migrates
        assert con.execute("SELECT 19 IN (SELECT version FROM schema_migrations)").fetchone() == (
            True,
        )
        assert con.execute(ROWS).fetchall() == native
        assert con.execute(STALE).fetchone() == (0,)
        assert (
            con.execute("SELECT content_md5 FROM discharge_rows ORDER BY ALL").fetchall() == hashes
        )
        con.execute("CHECKPOINT")
        assert con.execute(RAW_COMPRESSION).fetchall() == [("ZSTD",)]
    # nights on the migrated warehouse: a new stay, and a correction of a known one, whose
    # versions are compared with the rows hashed by the migration
    night = CROSSING.nights + 1
    _night(settings, night, "N1")
    _correct_a1(settings, night)
    result = run_local(settings, as_of=FIRST_NIGHT + timedelta(days=night))
    assert not result.failed, result.errors
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute(STALE).fetchone() == (0,)
        assert con.execute(
            "SELECT count(*) FROM quarantine WHERE rule = 'version_conflict'"
        ).fetchone() == (0,)
    check_equals_full_recompute(settings, tmp_path)


def test_the_row_hash_tells_apart_values_that_would_join_alike() -> None:
    """Text values are JSON strings in the joined text: a separator or a quote inside one
    cannot make two different rows hash alike; equal values hash alike."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE r (hospital_code VARCHAR, settlement_id VARCHAR, version BIGINT, "
        "record_type VARCHAR, national_id VARCHAR, patient_name VARCHAR, gender VARCHAR, "
        "birth_date DATE, admission_date DATE, discharge_date DATE, primary_diagnosis VARCHAR, "
        "total_cost_fen BIGINT, fund_paid_fen BIGINT, self_pay_in_scope_fen BIGINT, "
        "self_pay_out_of_scope_fen BIGINT, settled_at TIMESTAMPTZ)"
    )
    rest = "'F', DATE '1980-01-01', DATE '2026-01-01', DATE '2026-01-03', 'A01', 1, 2, 3, 4"
    at = "TIMESTAMPTZ '2026-01-03 10:00:00+00'"
    for national_id, name in [
        ("110", "a\x1fb"),
        ("110\x1fa", "b"),
        ('110","a', "b"),
        ('110"', '"a'),
        ("110", "a\x1fb"),  # the first again
    ]:
        con.execute(
            f"INSERT INTO r VALUES ('H1', 'S1', 1, 'N', ?, ?, {rest}, {at})", [national_id, name]
        )
    hashes = [h for (h,) in con.execute(f"SELECT {CONTENT_MD5} FROM r").fetchall()]
    assert len(set(hashes[:4])) == 4
    assert hashes[4] == hashes[0]
