"""A writing session leaves no merge of thinned row groups to the next commit (ADR 0014).

DuckDB merges the row groups that deleted rows thinned out at a checkpoint, unless another
transaction of the same database is open then: the merge waits for the next checkpoint that has
anything to write. (What held a backfill's last checkpoint back was not found; the merge was
left all the same.) A backfill replaces targets and balances all year and checkpoints at its end;
the first night after it paid that merge (~0.5 CPU s, a second of wall on the year-end
warehouse) in its plan's first commit. ``storage.warehouse.settle`` (run at the end of every
``warehouse_session``) checkpoints once more, with something to write, so that the session pays
for its own deletes.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from storage.warehouse import open_warehouse, settle, warehouse_session

ROW_GROUPS = (
    "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('thinned') WHERE column_id = 0"
)
TABLES = "SELECT table_name FROM duckdb_tables() WHERE database_name = 'warehouse' ORDER BY 1"


def _thinned_under_a_reader(con: duckdb.DuckDBPyConnection) -> int:
    """Delete most rows of a 4-row-group table and checkpoint while another transaction is
    open (what held the merge back); return the row groups the file then has."""
    con.execute("CREATE TABLE thinned AS SELECT range AS i, range::VARCHAR AS s FROM range(480000)")
    con.execute("CHECKPOINT")
    reader = con.cursor()
    reader.execute("BEGIN TRANSACTION")
    reader.execute("SELECT count(*) FROM runs").fetchall()
    con.execute("DELETE FROM thinned WHERE i % 10 <> 0")
    con.execute("CHECKPOINT")
    reader.execute("COMMIT")
    reader.close()
    row = con.execute(ROW_GROUPS).fetchone()
    assert row is not None
    return int(row[0])


def _next_commit_row_groups(path: Path) -> tuple[int, int]:
    """Row groups before and after the next commit that writes anything (a night's first)."""
    with open_warehouse(path) as con:
        before = con.execute(ROW_GROUPS).fetchone()
        con.execute("CREATE TABLE unrelated (a INTEGER)")
        con.execute("CHECKPOINT")
        after = con.execute(ROW_GROUPS).fetchone()
    assert before is not None and after is not None
    return int(before[0]), int(after[0])


def test_without_settling_the_next_commit_merges_what_the_session_deleted(
    tmp_path: Path,
) -> None:
    """The behaviour ``settle`` is for: if DuckDB stops deferring the merge, this fails and
    ``settle`` is no longer needed."""
    path = tmp_path / "warehouse.duckdb"
    with open_warehouse(path) as con:
        left = _thinned_under_a_reader(con)
    before, after = _next_commit_row_groups(path)
    assert before == left
    assert after < before  # the next commit paid for the merge


def test_settle_merges_them_so_the_next_commit_has_nothing_left(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with open_warehouse(path) as con:
        tables = con.execute(TABLES).fetchall()
        left = _thinned_under_a_reader(con)
        settle(con)
        settled = con.execute(ROW_GROUPS).fetchone()
        assert settled is not None and int(settled[0]) < left
        # the schema is as it was (the scratch table is gone), the rows too
        assert con.execute(TABLES).fetchall() == sorted([*tables, ("thinned",)])
        assert con.execute("SELECT count(*) FROM thinned").fetchone() == (48000,)
    before, after = _next_commit_row_groups(path)
    assert after == before


def test_a_session_settles_at_its_end(tmp_path: Path) -> None:
    """The reader's transaction ends inside the session, after the checkpoint that it held
    back (as a backfill's last commit): the session's end leaves nothing for the next commit."""
    path = tmp_path / "warehouse.duckdb"
    with open_warehouse(path):
        pass  # create and migrate
    with warehouse_session(path), open_warehouse(path) as con:  # the session's connection
        _thinned_under_a_reader(con)
    before, after = _next_commit_row_groups(path)
    assert after == before
