"""Enrolment in the warehouse: replace the current snapshot, derive people and coverage chains.

A snapshot is complete: loading one replaces all enrolment (feeds.md). People's name, gender,
birth date and payee account come from their enrolment with the latest ``coverage_start``
(ties: greatest ``enrollment_id``) (benefits.md, *Matching*).
"""

from __future__ import annotations

from contextlib import suppress
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.ipc as ipc

from config.settings import duckdb_memory_limit, size_bytes
from storage.warehouse import now

if TYPE_CHECKING:
    import polars as pl

_ENROLMENT_COLUMNS = (
    "enrollment_id, national_id, member_name, member_name_norm, gender, birth_date, plan_code, "
    "coverage_start, coverage_end, payee_account"
)
# The chains' starts are computed before the insert (``chain_starts``), so the enrolments are
# the staged rows as they are: one scan, no window, no sort in DuckDB.
_CHAINS = f"SELECT {_ENROLMENT_COLUMNS}, chain_start FROM staged_enrollments"

# A person's attributes come from their latest enrolment (by coverage_start, then
# enrollment_id), flagged ``latest`` before the insert (``latest_rows``): the members are the
# staged rows so flagged, one filtered scan of the rows in memory (as Arrow), no grouping. Read
# from the staged rows, not from the enrolments just inserted: a second read of a table
# written in the same transaction costs twice as much.
_MEMBERS = """
SELECT national_id, member_name, member_name_norm, gender, birth_date, payee_account
FROM staged_enrollments WHERE latest
"""


def repeat_flags(rows: pa.Table) -> pa.Table:
    """The staged rows with two flags: ``several_person`` (its ``national_id`` is on another
    row too) and ``several_pair`` (so is its (``national_id``, ``plan_code``)).

    Found once, from 64-bit hashes sorted in polars, instead of by a grouping and two hash
    joins inside each of the two statements: equal values have equal hashes, so a row that
    shares its person or pair is always flagged; a collision can only flag a row that does
    not, which the statements above handle alike. Measured at 10 M enrolments (ADR 0015):
    ~1.3 CPU s here against ~4 saved in the two statements.
    """
    import polars as pl  # the load's alone: the night's imports stay as they are

    keys = pl.from_arrow(rows.select(["national_id", "plan_code"]))
    assert isinstance(keys, pl.DataFrame)
    person = pl.col("national_id").hash()
    hashes = keys.select(
        several_person=person,
        # XOR of the two hashes keeps equal pairs equal (a collision only flags more rows).
        several_pair=person.xor(pl.col("plan_code").hash(seed=1)),
    )
    del keys
    # A hash that repeats is found next to itself once sorted; the rows holding one of those
    # are flagged. Sorting 10 M hashes and one set lookup per row cost ~0.6 CPU s, polars'
    # ``is_duplicated`` (a hash table of counts) ~1.0.
    for name in ("several_person", "several_pair"):
        column = hashes.get_column(name)
        ordered = column.sort()
        repeated = ordered.filter(ordered == ordered.shift(1))
        rows = rows.append_column(name, column.is_in(repeated).alias(name).to_arrow())
    return rows


# Gaps and islands per (person, plan): an enrolment continues the chain when it starts no later
# than the day after every earlier one (by coverage_start, then enrollment_id) has ended;
# chain_start is the first day of its chain. Starts only grow in this order, so the chain's
# start is the latest chain-opening start so far. Days as integers shifted to be non-negative
# (date32 days from 0001-01-01 to 9999-12-31 span less than 2**22), each pair's run of rows
# lifted above the previous runs by ``_RUN_SPAN``: one running maximum over the sorted rows is
# then a running maximum within each pair.
_DAY_SHIFT = 1 << 20
_RUN_SPAN = 1 << 22
_OPEN_END = 2_932_896  # 9999-12-31 as days since 1970-01-01


def chain_starts(rows: pa.Table) -> pa.Table:
    """The staged rows (with ``repeat_flags``) with ``chain_start``, the first day of the
    enrolment's chain (benefits.md, *Coverage*).

    A pair with a single enrolment is its own chain: its start. Only the rows flagged
    ``several_pair`` (~a quarter at full scale) are sorted, by the pair's 64-bit hash and the
    start: sorting on the hash instead of the two strings costs a third (measured at 10 M
    enrolments, ADR 0018). A hash shared by two pairs would interleave their rows; it is
    detected (a run of one hash holding two pairs) and those rows are sorted by the strings
    themselves, so the result never depends on the hash. Rows of one pair starting the same
    day need no order between them: whichever comes first, the later ones start within the
    first one's coverage, so none of them opens a chain the other would not.
    """
    import polars as pl  # the load's alone

    frame = pl.from_arrow(
        rows.select(["national_id", "plan_code", "coverage_start", "coverage_end", "several_pair"])
    )
    assert isinstance(frame, pl.DataFrame)
    starts = _chain_starts(
        frame, pl.col("national_id").hash().xor(pl.col("plan_code").hash(seed=1))
    )
    return rows.append_column("chain_start", starts.to_arrow())


def _chain_starts(frame: pl.DataFrame, pair: pl.Expr) -> pl.Series:
    """``chain_start`` for every row of ``frame``; ``pair``: a 64-bit key of the (person,
    plan), equal for equal pairs (a test gives one that collides)."""
    import polars as pl

    several = (
        frame.with_row_index("row")
        .filter(pl.col("several_pair"))
        .with_columns(pair=pair)
        .sort(["pair", "coverage_start"])
    )
    nid, plan, key = pl.col("national_id"), pl.col("plan_code"), pl.col("pair")
    same_key = (nid == nid.shift(1)) & (plan == plan.shift(1))
    collided = several.select(((key == key.shift(1)) & ~same_key).any()).item()
    if collided:  # two pairs share a hash (odds ~1e-7 a snapshot): the strings decide
        several = several.sort(["national_id", "plan_code", "coverage_start"])
        first = ~same_key.fill_null(False)
    else:
        first = (key != key.shift(1)).fill_null(True)
    start = pl.col("coverage_start").cast(pl.Int64) + _DAY_SHIFT
    end = pl.col("coverage_end").cast(pl.Int64).fill_null(_OPEN_END) + _DAY_SHIFT
    runs = several.select(
        "row",
        start.alias("start"),
        end.alias("end"),
        first.alias("first"),
    ).with_columns(lift=pl.col("first").cum_sum().cast(pl.Int64) * _RUN_SPAN)
    del several
    lift = pl.col("lift")
    # The latest end of the pair's earlier rows; on a pair's first row it is the previous
    # pair's (below this pair's lift): the first row opens its chain anyway.
    covered_until = (lift + pl.col("end")).cum_max().shift(1) - lift
    opens = pl.col("first") | (pl.col("start") > covered_until + 1)
    chain = (lift + pl.when(opens).then(pl.col("start")).otherwise(0)).cum_max() - lift
    found = runs.select(
        "row", (chain - _DAY_SHIFT).cast(pl.Int32).cast(pl.Date).alias("chain_start")
    )
    return (
        frame.get_column("coverage_start")
        .scatter(found.get_column("row"), found.get_column("chain_start"))
        .alias("chain_start")
    )


def latest_rows(rows: pa.Table) -> pa.Table:
    """The staged rows (with ``repeat_flags``) with ``latest``: the row is its person's latest
    enrolment, by ``coverage_start`` then ``enrollment_id`` (benefits.md, *Matching*).

    A person with one enrolment has it as the latest. Only the rows flagged ``several_person``
    (about half at full scale) are sorted, by the person's 64-bit hash, the start and the id,
    and the last row of each person's run is the latest: one sort in polars instead of a
    grouping with ``max_by`` in DuckDB, and the members' insert a filtered scan (measured at
    10 M enrolments, ADR 0021). A hash shared by two people would put their rows in one run;
    it is detected (a run of one hash holding two people) and those rows are sorted by the
    strings themselves, so the result never depends on the hash.
    """
    import polars as pl  # the load's alone

    frame = pl.from_arrow(
        rows.select(["national_id", "coverage_start", "enrollment_id", "several_person"])
    )
    assert isinstance(frame, pl.DataFrame)
    latest = _latest(frame, pl.col("national_id").hash())
    return rows.append_column("latest", latest.to_arrow())


def _latest(frame: pl.DataFrame, person: pl.Expr) -> pl.Series:
    """``latest`` for every row of ``frame``; ``person``: a 64-bit key of the person, equal for
    equal people (a test gives one that collides)."""
    import polars as pl

    order = ["coverage_start", "enrollment_id"]
    several = (
        frame.with_row_index("row")
        .filter(pl.col("several_person"))
        .with_columns(person=person)
        .sort(["person", *order])
    )
    nid, key = pl.col("national_id"), pl.col("person")
    collided = several.select(((key == key.shift(1)) & (nid != nid.shift(1))).any()).item()
    if collided:  # two people share a hash (odds ~1e-6 a snapshot): the strings decide
        several = several.sort(["national_id", *order])
        last = (nid != nid.shift(-1)).fill_null(True)
    else:
        last = (key != key.shift(-1)).fill_null(True)
    found = several.select("row", last.alias("latest"))
    del several
    return (
        frame.get_column("several_person")
        .not_()
        .scatter(found.get_column("row"), found.get_column("latest"))
        .alias("latest")
    )


# The people a new snapshot changes (a diff against the snapshot in effect, before it is
# replaced): anyone with an enrolment row added, removed or different in any column (name,
# identity, payee, plan, dates), which covers people who appear or disappear. Their old and new
# demographics go with them: a stay without a valid ID matches by those (benefits.md, *Matching*).
# Adjudication scopes its re-match to the stays these people can change
# (``storage.adjudication.adjudicate(snapshot_diff=True)``).
#
# enrollment_id is unique on both sides (validation quarantines repeats), so the diff is one
# hash join on it: a row is unchanged when the other side has the same id and the same
# fingerprint, a 64-bit hash of every column; every other row, old or new, names its person.
# One join of 10 M rows against 10 M, holding an id and a number per row, instead of two set
# differences over whole rows (a quarter of the CPU; a join on every column held whole rows
# and outgrew the memory cap at full scale). A change that kept its row's fingerprint would go
# unseen: for 64-bit hashes, odds of ~5e-20 per changed row.
SNAPSHOT_CHANGES = "snapshot_changes"
_FINGERPRINTS = f"SELECT enrollment_id, national_id, hash({_ENROLMENT_COLUMNS}) AS fingerprint"
_CHANGED_PEOPLE = f"""
CREATE OR REPLACE TEMP TABLE snapshot_changed_people AS
SELECT DISTINCT coalesce(o.national_id, n.national_id) AS national_id
FROM ({_FINGERPRINTS} FROM enrollments) o
FULL JOIN ({_FINGERPRINTS} FROM staged_enrollments) n
    ON o.enrollment_id = n.enrollment_id AND o.fingerprint = n.fingerprint
WHERE o.enrollment_id IS NULL OR n.enrollment_id IS NULL
"""
_CHANGE_ROWS = f"""
INSERT INTO {SNAPSHOT_CHANGES}
SELECT national_id, member_name_norm, birth_date, gender
FROM members SEMI JOIN snapshot_changed_people USING (national_id)
"""


def _start_changes(con: duckdb.DuckDBPyConnection) -> None:
    # Accumulates over the snapshots one commit loads; adjudication drops it.
    con.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {SNAPSHOT_CHANGES} (national_id VARCHAR, "
        "member_name_norm VARCHAR, birth_date DATE, gender VARCHAR)"
    )


def current_snapshot(con: duckdb.DuckDBPyConnection) -> tuple[date, str] | None:
    """(snapshot_date, content_hash) of the snapshot in effect, if any."""
    row = con.execute("SELECT snapshot_date, content_hash FROM current_snapshot").fetchone()
    return None if row is None else (row[0], str(row[1]))


# _UNCOMPRESSED: DuckDB compresses the row groups a large insert writes (dictionary and FSST for
# strings). For the enrolment tables that was ~40 % of the load's CPU (at 1 M enrolments the
# two inserts cost 2.8 CPU s compressed, 1.6 uncompressed) and scanning them is cheaper
# uncompressed too; the price is disk, ~2.3x for these two tables (~200 MB per million
# enrolments instead of ~90). Both tables are replaced whole by every snapshot, so the trade
# is made anew at each load. The setting covers the two inserts only.


def staged_snapshot(staged: Path) -> pa.Table:
    """The staged slices (``part-NNNN.arrow``, Arrow IPC, uncompressed) as one Arrow table over
    memory-mapped files: no decoding and no copy; DuckDB scans it in place, as often as the
    load needs (the chains, the members, the diff)."""
    tables = [
        ipc.open_file(pa.memory_map(str(part))).read_all()
        for part in sorted(staged.glob("part-*.arrow"))
    ]
    return pa.concat_tables(tables)


def load_budget(cap: int, mapped: int) -> int:
    """DuckDB's memory cap during a load, in bytes: the cap less the mapped slices' size, so
    that DuckDB and the slices together stay within the cap; never below half of it."""
    return max(cap - mapped, cap // 2)


def load_snapshot(
    con: duckdb.DuckDBPyConnection,
    *,
    staged: Path,
    snapshot_date: date,
    content_hash: str,
    run_id: str,
) -> int:
    """Replace enrolment with the staged snapshot's slices (inside the transaction)."""
    rows = latest_rows(chain_starts(repeat_flags(staged_snapshot(staged))))
    con.register("staged_enrollments", rows)
    # The mapped slices are this process's memory too (~1.5 GB at 10 M enrolments, resident once
    # read), which DuckDB's cap does not count: for the load DuckDB gets the cap less their
    # size, so that the process stays within the cap plus the interpreter (the 6 GB of
    # docs/benchmarks.md) instead of the cap plus the slices. Never below half the cap.
    con.execute(
        f"SET memory_limit = '{load_budget(size_bytes(duckdb_memory_limit()), rows.nbytes)}B'"
    )
    del rows
    try:
        _start_changes(con)
        # Without a stay there is nothing to re-match: the first load skips the diff.
        diff = con.execute(
            "SELECT EXISTS (SELECT 1 FROM stays) OR EXISTS (SELECT 1 FROM stay_outcomes)"
        ).fetchone()
        if diff is not None and diff[0]:
            con.execute(_CHANGED_PEOPLE)
        else:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE snapshot_changed_people (national_id VARCHAR)"
            )
        con.execute(_CHANGE_ROWS)  # their demographics before
        con.execute("DELETE FROM enrollments")
        con.execute("DELETE FROM members")
        # Written uncompressed (see _UNCOMPRESSED), the setting restored at once.
        # (An aborted transaction refuses RESET: on failure ``transaction`` resets it after its
        # ROLLBACK.)
        con.execute("SET force_compression = 'uncompressed'")
        con.execute(f"INSERT INTO enrollments BY NAME {_CHAINS}")
        con.execute(f"INSERT INTO members BY NAME {_MEMBERS}")
        con.execute("RESET force_compression")
        con.execute(_CHANGE_ROWS)  # and after
        con.execute(
            f"INSERT INTO {SNAPSHOT_CHANGES} SELECT national_id, NULL, NULL, NULL "
            "FROM snapshot_changed_people"  # people who left or came, whatever their demographics
        )
        con.execute("DROP TABLE snapshot_changed_people")
        count = con.execute("SELECT count(*) FROM enrollments").fetchone()[0]  # type: ignore[index]
        con.execute("DELETE FROM current_snapshot")
        con.execute(
            "INSERT INTO current_snapshot VALUES (?, ?, ?, ?, ?)",
            [snapshot_date, content_hash, count, now(), run_id],
        )
    finally:
        # After a failure the transaction is aborted and refuses this too; the next load
        # replaces the registration, closing the connection drops it.
        with suppress(duckdb.Error):
            con.unregister("staged_enrollments")
        with suppress(duckdb.Error):  # else ``transaction`` restores it after its ROLLBACK
            con.execute(f"SET memory_limit = '{duckdb_memory_limit()}'")
    return int(count)
