"""A batch file is the bytes ``csv.writer`` gives for the batch's committed instructions.

The outbox renders a batch in one vectorised pass (a backfill chunk's batch holds ~300,000
instructions); this holds it to the row-by-row ``csv`` rendering it replaced, on a real
warehouse file, with payee names that need quoting and times stored in another time zone.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from outbox.payments import render_csv, write_batch
from storage.batches import PAYMENT_COLUMNS, batch_frame
from storage.warehouse import open_warehouse
from transforms.yuan import fen_to_yuan

BATCH = "B20261207T010203-abcd"
SHANGHAI = timezone(timedelta(hours=8))


def _by_csv_writer(rows: list[tuple[object, ...]]) -> bytes:
    """The reference: each instruction written by Python's ``csv`` module."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PAYMENT_COLUMNS)
    for iid, bid, nid, name, account, fen, count, created in rows:
        assert isinstance(fen, int) and isinstance(created, datetime)
        writer.writerow(
            [
                iid,
                bid,
                nid,
                name,
                account,
                fen_to_yuan(fen),
                "CNY",
                count,
                created.astimezone(UTC).isoformat(timespec="microseconds"),
            ]
        )
    return buffer.getvalue().encode("utf-8")


def _store(tmp_path: Path, rows: list[tuple[object, ...]]) -> Path:
    warehouse = tmp_path / "warehouse.duckdb"
    with open_warehouse(warehouse) as con:
        con.execute("DELETE FROM payment_instructions")
        if rows:
            con.executemany(
                "INSERT INTO payment_instructions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
    return warehouse


def _rows(names: list[str], amounts: list[int]) -> list[tuple[object, ...]]:
    start = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=SHANGHAI)
    return [
        (
            f"{BATCH}-{i:06d}",
            BATCH,
            f"11010119800101{i:04d}",
            name,
            f"6222{i:012d}",
            fen,
            1 + i % 3,
            start + timedelta(microseconds=7 * i),
        )
        for i, (name, fen) in enumerate(zip(names, amounts, strict=True))
    ]


HOSTILE = ["张三", "Li, Wei", 'O"Brien', "line\nbreak", " space ", "", "√", 'a,"b"\n']


def test_hostile_names_and_zones_give_the_csv_writers_bytes(tmp_path: Path) -> None:
    rows = _rows(HOSTILE, [123456, 5, 0, 100, 99, 1_000_000_000_00, 7, 10])
    warehouse = _store(tmp_path, rows)
    with open_warehouse(warehouse, read_only=True) as con:
        frame = batch_frame(con, BATCH)
        stored = con.execute(
            "SELECT * FROM payment_instructions WHERE batch_id = ? ORDER BY instruction_id",
            [BATCH],
        ).fetchall()
    assert render_csv(frame) == _by_csv_writer(stored)
    # The file reads back as the stored values, times in UTC.
    back = list(csv.reader(io.StringIO(render_csv(frame).decode("utf-8"))))
    assert [r[3] for r in back[1:]] == HOSTILE
    assert back[1][8] == "2026-12-06T17:02:03.456789+00:00"


def test_a_carriage_return_is_quoted_and_reads_back(tmp_path: Path) -> None:
    # Names cannot hold control characters (schemas.checks), but should one come through, the
    # file still reads back right: Python 3.11's csv writer would leave it unquoted.
    warehouse = _store(tmp_path, _rows(["carriage\rreturn", "x"], [1, 2]))
    with open_warehouse(warehouse, read_only=True) as con:
        data = render_csv(batch_frame(con, BATCH))
    back = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert [r[3] for r in back[1:]] == ["carriage\rreturn", "x"]


def test_an_empty_batch_is_the_header_alone(tmp_path: Path) -> None:
    warehouse = _store(tmp_path, [])
    with open_warehouse(warehouse, read_only=True) as con:
        frame = batch_frame(con, BATCH)
    assert render_csv(frame) == _by_csv_writer([])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(min_size=0, max_size=12), st.integers(0, 10**13)),
        min_size=1,
        max_size=20,
    )
)
def test_any_names_and_amounts_give_the_csv_writers_bytes(
    tmp_path_factory: object, people: list[tuple[str, int]]
) -> None:
    from _pytest.tmpdir import TempPathFactory

    assert isinstance(tmp_path_factory, TempPathFactory)
    # Without NUL (DuckDB text) and carriage returns (see the test above).
    names = [n.replace("\x00", "").replace("\r", "") for n, _ in people]
    rows = _rows(names, [fen for _, fen in people])
    warehouse = _store(tmp_path_factory.mktemp("pay"), rows)
    with open_warehouse(warehouse, read_only=True) as con:
        frame = batch_frame(con, BATCH)
        stored = con.execute(
            "SELECT * FROM payment_instructions ORDER BY instruction_id"
        ).fetchall()
    assert render_csv(frame) == _by_csv_writer(stored)


def test_the_manifest_counts_and_sums_the_file(tmp_path: Path) -> None:
    rows = _rows(["甲", "乙", "丙"], [101, 20_000, 3])
    warehouse = _store(tmp_path, rows)
    with open_warehouse(warehouse, read_only=True) as con:
        frame = batch_frame(con, BATCH)
    folder = write_batch(tmp_path / "outbox", BATCH, frame, seal="s")
    data = (folder / "payments.csv").read_bytes()
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest == {
        "batch_id": BATCH,
        "row_count": 3,
        "amount_sum": "201.04",
        "sha256": hashlib.sha256(data).hexdigest(),
        "seal": "s",
    }
    # Rewriting gives the same bytes.
    write_batch(tmp_path / "outbox", BATCH, frame, seal="s")
    assert (folder / "payments.csv").read_bytes() == data
