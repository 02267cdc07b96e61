"""A night's checkpoints write what the night changed and merge no row groups (ADR 0016).

At a checkpoint DuckDB also merges a table's adjacent row groups whose rows fit in fewer: those
that deletes thinned, and the partly filled ones a backfill's parallel inserts leave at a
table's end, which it merges only once enough rows come after them. On the year-end warehouse
the benchmark night's 16,439 payment instructions were that much, and its checkpoint rewrote the
table's last 352,564 rows (~0.3 CPU s against ~0.02 s for the append). A night's sessions
(``run_steps``) set ``storage.warehouse.NO_ROW_GROUP_MERGES``; the merge stays with the writers
that rewrite much: a backfill's session (which settles), a migration, a backup's checkpoint.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from test_review import BED, PARTITIONS, _by_id, deliver, night, world

from pipeline import backfill_local
from pipeline.audit import backup
from storage.warehouse import open_warehouse, warehouse_session

ROW_GROUPS = (
    "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('thinned') WHERE column_id = 0"
)


def _row_groups(path: Path) -> int:
    with open_warehouse(path, read_only=True) as con:
        row = con.execute(ROW_GROUPS).fetchone()
    assert row is not None
    return int(row[0])


def _thin_without_merging(path: Path) -> int:
    """A 4-row-group table, 60 % of each row group deleted and checkpointed with merges off:
    what DuckDB would merge at the next checkpoint that may. Returns its row groups."""
    with (
        warehouse_session(path, settle_at_end=False, merge_row_groups=False),
        open_warehouse(path) as con,
    ):
        con.execute(
            "CREATE TABLE thinned AS SELECT range AS i, range::VARCHAR AS s FROM range(480000)"
        )
        con.execute("CHECKPOINT")
        con.execute("DELETE FROM thinned WHERE i % 10 < 6")
    return _row_groups(path)


def test_a_night_merges_no_row_groups_and_the_next_other_writer_does(tmp_path: Path) -> None:
    settings = world(tmp_path)
    deliver(settings, 0, [_by_id("M1", BED, "2026-01-05", "2026-01-08")])
    night(settings)
    left = _thin_without_merging(settings.warehouse)
    assert left == 4
    # a night that writes (a new stay paid) and checkpoints twice: nothing merged
    deliver(settings, 1, [_by_id("M2", BED, "2026-02-05", "2026-02-08")])
    assert night(settings).paid_fen > 0
    assert _row_groups(settings.warehouse) == left
    # a writer that may merge (here a backfill's session: its checkpoint and settle) does
    backfill_local(settings, *_feed_dates())
    merged = _row_groups(settings.warehouse)
    assert merged < left
    with open_warehouse(settings.warehouse, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM thinned").fetchone() == (192_000,)


def test_a_backup_merges_what_nights_left(tmp_path: Path) -> None:
    """Nights alone never merge; the backup an operator takes does (operations.md, Backups),
    and the copy holds every row."""
    settings = world(tmp_path)
    deliver(settings, 0, [_by_id("M1", BED, "2026-01-05", "2026-01-08")])
    night(settings)
    left = _thin_without_merging(settings.warehouse)
    taken = backup(settings, tmp_path / "backup")
    assert _row_groups(settings.warehouse) < left
    assert _row_groups(taken.folder / "warehouse.duckdb") < left
    with open_warehouse(taken.folder / "warehouse.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM thinned").fetchone() == (192_000,)


def test_the_default_session_merges_at_its_checkpoint(tmp_path: Path) -> None:
    """The behaviour the night turns off: if DuckDB stops merging thinned row groups at a
    checkpoint, this fails and ``NO_ROW_GROUP_MERGES`` is no longer needed."""
    path = tmp_path / "warehouse.duckdb"
    left = _thin_without_merging(path)
    with open_warehouse(path) as con:
        con.execute("CREATE TABLE unrelated (a INTEGER)")
        con.execute("CHECKPOINT")
    assert _row_groups(path) < left


def _feed_dates() -> tuple[date, date]:
    return PARTITIONS[0][0], PARTITIONS[-1][0]
