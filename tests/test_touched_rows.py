"""A commit's touched stays: their discharge rows read and ranked once (ADR 0030) give the same
conflicts, partition counts and current records as the three reads that each derived one."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import hypothesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from storage import staging
from storage.warehouse import now, open_warehouse, transaction

# What each of the three derivations read before ADR 0030, kept here as the reference.
REFERENCE_CONFLICTS = """
SELECT r.partition_key, r.row_number,
       'version ' || version || ' of this stay was first received in ' || winner_partition
       || ' (row ' || winner_row || ') with different content', raw.raw,
       r.hospital_code, r.settlement_id
FROM (
    SELECT hospital_code, settlement_id, version, partition_key, row_number, content_md5,
        first_value(content_md5) OVER w AS winner_md5,
        first_value(partition_key) OVER w AS winner_partition,
        first_value(row_number) OVER w AS winner_row
    FROM discharge_rows d SEMI JOIN touched_stays t USING (hospital_code, settlement_id)
    WINDOW w AS (PARTITION BY hospital_code, settlement_id, version
                 ORDER BY feed_date, source, row_number)
) r
JOIN (SELECT partition_key, row_number, raw FROM discharge_rows) raw
  USING (partition_key, row_number)
WHERE r.content_md5 <> r.winner_md5
ORDER BY ALL
"""
REFERENCE_STAYS = """
SELECT hospital_code, settlement_id, version, record_type, self_pay_in_scope_fen, feed_date,
       source
FROM (
    SELECT d.*, row_number() OVER (
        PARTITION BY hospital_code, settlement_id, version
        ORDER BY feed_date, source, row_number) AS arrival
    FROM discharge_rows d SEMI JOIN touched_stays t USING (hospital_code, settlement_id)
)
WHERE arrival = 1
QUALIFY row_number() OVER (PARTITION BY hospital_code, settlement_id ORDER BY version DESC) = 1
ORDER BY ALL
"""

DAY = date(2026, 3, 1)
SOURCES = ("HOSPX", "SHYB")

# one discharge row: (stay, version, day offset, source, content), its row number given by order
rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(("C1", "C2", "C3")),
        st.integers(1, 3),
        st.integers(0, 2),
        st.sampled_from(SOURCES),
        st.sampled_from(("a", "b")),
    ),
    min_size=1,
    max_size=14,
)


def _fill(con, rows, touched):  # type: ignore[no-untyped-def]
    numbers: dict[str, int] = {}
    for stay, version, offset, source, content in rows:
        day = DAY + timedelta(days=offset)
        key = f"feed_date={day.isoformat()}/source={source}"
        numbers[key] = numbers.get(key, 0) + 1
        con.execute(
            "INSERT INTO discharge_rows VALUES (?, ?, ?, ?, 'H1', ?, ?, 'N', '110101199001011234', "
            "true, 'x', 'x', 'M', DATE '1990-01-01', DATE '2026-02-01', DATE '2026-02-03', "
            "'A00', true, 100, 0, ?, 0, ?, ?, ?)",
            [
                key,
                day,
                source,
                numbers[key],
                stay,
                version,
                1_000 * version + ord(content),
                now(),
                f'{{"stay": "{stay}", "content": "{content}"}}',
                content,
            ],
        )
    for key in numbers:
        day, source = date.fromisoformat(key[10:20]), key.split("source=")[1]
        con.execute(
            "INSERT INTO partition_state (kind, partition_key, day, source, status, content_hash, "
            "applied_hash, rows_read, updated_at) VALUES ('discharges', ?, ?, ?, 'succeeded', "
            "'h', 'h', ?, ?)",
            [key, day, source, numbers[key], now()],
        )
    staging.begin_commit(con)
    for stay in touched:
        con.execute("INSERT INTO touched_stays VALUES ('H1', ?)", [stay])


@hypothesis.settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rows_strategy, touched=st.sets(st.sampled_from(("C1", "C2", "C3")), min_size=1))
def test_touched_stays_ranked_once_derive_what_three_reads_did(
    tmp_path: Path, rows: list[tuple[str, int, int, str, str]], touched: set[str]
) -> None:
    path = tmp_path / f"w{abs(hash((tuple(rows), tuple(sorted(touched)))))}.duckdb"
    with open_warehouse(path) as con, transaction(con):
        _fill(con, rows, sorted(touched))
        conflicts = con.execute(REFERENCE_CONFLICTS).fetchall()
        stays = con.execute(REFERENCE_STAYS).fetchall()
        counts = con.execute(
            "SELECT partition_key, count(*) FROM (" + REFERENCE_CONFLICTS + ") "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        assert staging.refresh_touched_stays(con) == len(touched)
        assert (
            con.execute(
                "SELECT partition_key, row_number, message, raw, hospital_code, settlement_id "
                "FROM quarantine WHERE derived ORDER BY ALL"
            ).fetchall()
            == conflicts
        )
        assert (
            con.execute(
                "SELECT hospital_code, settlement_id, current_version, record_type, "
                "self_pay_in_scope_fen, feed_date, source FROM stays ORDER BY ALL"
            ).fetchall()
            == stays
        )
        # every partition holding a touched stay's row is recounted: its own conflict rows
        shown = dict(counts)
        recounted = con.execute(
            "SELECT partition_key, rows_quarantined FROM partition_state "
            "WHERE partition_key IN (SELECT partition_key FROM discharge_rows "
            "SEMI JOIN touched_stays USING (hospital_code, settlement_id)) ORDER BY ALL"
        ).fetchall()
        assert recounted == [(key, shown.get(key, 0)) for key, _ in recounted]
        # the ranked rows are the commit's scratch, not left behind in the session
        assert not con.execute(
            "SELECT 1 FROM duckdb_tables() WHERE table_name = 'touched_rows'"
        ).fetchall()
    path.unlink()


def test_a_version_received_twice_keeps_its_first_arrival_whatever_the_insert_order(
    tmp_path: Path,
) -> None:
    # The later delivery's row is written first: a stay that took any row of its version
    # (not the first by feed date, source and row number) would take this one.
    rows = [("C1", 1, 2, "SHYB", "b"), ("C1", 1, 0, "HOSPX", "a")]
    with open_warehouse(tmp_path / "w.duckdb") as con, transaction(con):
        _fill(con, rows, ["C1"])
        assert staging.refresh_touched_stays(con) == 1
        assert con.execute(
            "SELECT current_version, self_pay_in_scope_fen, feed_date, source FROM stays"
        ).fetchall() == [(1, 1_000 + ord("a"), DAY, "HOSPX")]
        # and the later row, with other content, is the conflict
        assert con.execute("SELECT partition_key FROM quarantine WHERE derived").fetchall() == [
            (f"feed_date={(DAY + timedelta(days=2)).isoformat()}/source=SHYB",)
        ]
