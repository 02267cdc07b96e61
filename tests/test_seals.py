"""A run's seal, streamed into hashlib, is the seal migration 007 defines (and verify recomputes).

``storage.seals.seal_run`` hashes a run's lines as DuckDB streams them out in batches;
``claims verify`` recomputes every seal with DuckDB's ``string_agg`` (``seals.LINES``). Here
both are held equal on runs of no entries, one entry, and more entries than one batch holds,
with text outside ASCII, on a real warehouse file.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from storage import seals
from storage.audit import seal_chain
from storage.warehouse import open_warehouse

AT = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)


def add_entries(con: duckdb.DuckDBPyConnection, run_id: str, n: int) -> None:
    con.execute(
        """
        INSERT INTO ledger_entries
        SELECT $run_id || '-' || lpad(i::VARCHAR, 7, '0'), $run_id, 'H' || (i % 7),
               'ZY-' || i, 1 + i % 3,
               CASE WHEN i % 2 = 0 THEN 'RETIREE_INPATIENT' ELSE 'GIG_WORKER' END,
               '11010519491231002X', (i * 37) % 100000 - 5000,
               CASE WHEN i % 5 = 0 THEN '复核 approved' ELSE 'new_stay' END,
               $at + INTERVAL (i) MICROSECOND
        FROM range($n) t(i)
        """,
        {"run_id": run_id, "n": n, "at": AT},
    )


def sql_seal(con: duckdb.DuckDBPyConnection, run_id: str, prev: str) -> str:
    row = con.execute(
        f"SELECT sha256($prev || chr(10) || {seals.LINES}) FROM ledger_entries "
        "WHERE run_id = $run_id",
        {"prev": prev, "run_id": run_id},
    ).fetchall()
    return str(row[0][0])


def test_streamed_seals_are_the_formulas(tmp_path: Path) -> None:
    sizes = {"r-empty": 0, "r-one": 1, "r-many": seals._BATCH_ROWS * 2 + 17, "r-few": 5}
    with open_warehouse(tmp_path / "warehouse.duckdb") as con:
        prev = seals.GENESIS
        for run_id, n in sizes.items():
            add_entries(con, run_id, n)
            expected = sql_seal(con, run_id, prev)
            assert seals.seal_run(con, run_id=run_id, at=AT) == expected
            prev = expected
        rows = con.execute(
            "SELECT run_id, seq, entry_count, prev_seal, seal FROM ledger_seals ORDER BY seq"
        ).fetchall()
        assert [(r[0], r[1], r[2]) for r in rows] == [
            (run_id, i + 1, n) for i, (run_id, n) in enumerate(sizes.items())
        ]
        assert rows[0][3] == seals.GENESIS
        assert all(a[4] == b[3] for a, b in itertools.pairwise(rows))
        # the empty run seals the empty string
        empty = hashlib.sha256(f"{seals.GENESIS}\n".encode()).hexdigest()
        assert rows[0][4] == empty
        assert seal_chain(con) == []


def test_a_changed_entry_changes_the_streamed_seal(tmp_path: Path) -> None:
    with open_warehouse(tmp_path / "warehouse.duckdb") as con:
        add_entries(con, "r1", 1000)
        before = seals.run_digest(con, "r1", seals.GENESIS)
        con.execute(
            "UPDATE ledger_entries SET amount_fen = amount_fen + 1 WHERE entry_id = 'r1-0000500'"
        )
        after = seals.run_digest(con, "r1", seals.GENESIS)
        assert before != after and after == sql_seal(con, "r1", seals.GENESIS)


def test_the_bytes_of_a_slice_and_of_string_views() -> None:
    import pyarrow as pa

    values = pa.array(["ab", "çde", "f", "gh"])
    assert bytes(seals._utf8_bytes(values.slice(1, 2))) == "çdef".encode()
    assert bytes(seals._utf8_bytes(values.cast(pa.large_string()).slice(2))) == b"fgh"
    assert bytes(seals._utf8_bytes(values.cast(pa.string_view()))) == "abçdefgh".encode()
