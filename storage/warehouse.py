"""The warehouse: one DuckDB file, numbered migrations, one writer at a time.

>>> with open_warehouse(path) as con:        # doctest: +SKIP
...     with transaction(con):
...         con.execute("INSERT INTO ...", [param])
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import duckdb

from config.settings import duckdb_memory_limit

MIGRATIONS_PACKAGE = "storage.migrations"


class WarehouseBusy(Exception):
    """Another process holds the warehouse (exit status 3)."""


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        m = re.fullmatch(r"(\d{3})_(\w+)\.sql", entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply the migrations this file has not seen yet, each in its own transaction."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, name, sql in _migrations():
        if version in done:
            continue
        with transaction(con):
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, now()])
        applied.append(version)
    return applied


def now() -> datetime:
    return datetime.now(UTC)


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    return "lock" in str(exc).lower()


class _Session:
    """A connection kept open across several steps; opened by the first writer that needs it."""

    def __init__(self, *, merge_row_groups: bool = True) -> None:
        self.con: duckdb.DuckDBPyConnection | None = None
        self.merge_row_groups = merge_row_groups


# Sessions of ``warehouse_session``, by (file, thread).
_sessions: dict[tuple[Path, int], _Session] = {}


@contextmanager
def warehouse_session(
    path: Path, *, settle_at_end: bool = True, merge_row_groups: bool = True
) -> Iterator[None]:
    """Keep one writing connection open across several steps and commits; checkpoint once.

    Every ``open_warehouse`` of the same file for writing in this thread reuses it: a night's
    plan (with the pairing check), and its commit with the batch's issue, each open the file
    once; a backfill holds it for all of its chunks. The connection is opened by the first
    ``open_warehouse`` inside the session, not before (a check that refuses to create the
    file stays able to). Closing a connection checkpoints the write-ahead log into the file,
    and a commit checkpoints once the log passes 16 MB: per feed date of a backfill that was a
    second of rewriting the same blocks. Within a session the log may grow to 1 GB and is
    checkpointed once, at the end (after an error, the close alone does it), then settled
    (``settle``; ``settle_at_end=False``: a night's phases, whose checkpoint no other
    transaction holds back). ``merge_row_groups=False`` (a night's phases): its checkpoints
    write what the session changed and merge no row groups (``NO_ROW_GROUP_MERGES``).
    Re-entrant: a session inside one of the same file and thread is the outer one.
    """
    key = (path.resolve(), threading.get_ident())
    if key in _sessions:
        yield
        return
    session = _sessions[key] = _Session(merge_row_groups=merge_row_groups)
    try:
        yield
        if session.con is not None:
            session.con.execute("CHECKPOINT")
            if settle_at_end:
                settle(session.con)
    finally:
        del _sessions[key]
        if session.con is not None:
            session.con.close()


# A checkpoint also merges a table's adjacent row groups whose rows fit in fewer (DuckDB's
# vacuum, for tables without a key index): row groups that deletes thinned, and the partly
# filled ones a backfill's parallel inserts leave at a table's end, which DuckDB merges only once
# enough rows come after them. A night's append can be that much: on the year-end warehouse the
# benchmark night's 16,439 payment instructions made its checkpoint rewrite the table's last
# 352,564 rows (~0.3 CPU s, ~0.45 s of wall, against ~0.02 s for the append alone; issue 16,
# ADR 0016). A night's session turns that off: its checkpoints write what it changed, which does
# not grow with history; the merging stays with the sessions that rewrite much (a backfill's,
# which also settles), and with any other writer (``claims backup``'s checkpoint, a migration).
NO_ROW_GROUP_MERGES = "SET max_vacuum_tasks = 0"

# What ``settle`` writes and drops again: a checkpoint with nothing to write does nothing.
_SETTLE_TABLE = "checkpoint_settle"


def settle(con: duckdb.DuckDBPyConnection) -> None:
    """Checkpoint once more, so that row groups the session's deletes thinned are merged now.

    DuckDB merges the row groups that deleted rows thinned at a checkpoint, unless another
    transaction of the database is open at that moment; then the merge waits for the next
    checkpoint that writes anything. A backfill's last checkpoint left such a merge (what held
    it back was not found; the merge was there, 32 → 31 row groups each): the first night
    after it paid ~0.55 CPU s (about a second of wall) merging ``stay_plan_targets`` and
    ``ledger_balances`` in its plan's first commit (issue 16, ADR 0014). Creating and dropping
    an empty table, each followed by a checkpoint, gives that checkpoint something to write and
    leaves the schema as it was (a kill between the two leaves the empty table, which the next
    session's ``settle`` drops). With nothing pending it costs two small checkpoints.
    """
    con.execute(f"CREATE TABLE IF NOT EXISTS {_SETTLE_TABLE} (settled INTEGER)")
    con.execute("CHECKPOINT")
    con.execute(f"DROP TABLE {_SETTLE_TABLE}")
    con.execute("CHECKPOINT")


def _connect(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A configured (and, for a writer, created and migrated) connection to the file."""
    if read_only and not path.exists():
        raise FileNotFoundError(f"no warehouse at {path}: run `claims run` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if _is_lock_conflict(exc):
            raise WarehouseBusy(f"the warehouse {path.name} is in use by another run") from None
        raise
    try:
        # Order is kept only where a query sorts; this halves write time (platform notes).
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"SET memory_limit = '{duckdb_memory_limit()}'")
        if not read_only:
            migrate(con)
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def open_warehouse(path: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open (and, for a writer, create and migrate) the warehouse file; inside a
    ``warehouse_session`` of this thread, a writer gets the session's connection."""
    session = _sessions.get((path.resolve(), threading.get_ident()))
    if session is not None and not read_only:
        if session.con is None:
            session.con = _connect(path, read_only=False)
            session.con.execute("SET checkpoint_threshold = '1GB'")
            if not session.merge_row_groups:
                session.con.execute(NO_ROW_GROUP_MERGES)
        yield session.con
        return
    con = _connect(path, read_only=read_only)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN … COMMIT, rolled back on any exception: a commit point is all or nothing."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        # Settings a failed step changed for its own work (storage.members: compression and
        # DuckDB's share of memory) cannot be reset inside the aborted transaction; here they are.
        con.execute("RESET force_compression")
        con.execute(f"SET memory_limit = '{duckdb_memory_limit()}'")
        raise
    con.execute("COMMIT")


# The connection type, for code outside storage/ that passes a connection along.
Connection = duckdb.DuckDBPyConnection
