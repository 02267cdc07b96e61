"""Enrolment in the warehouse: replace the current snapshot, derive people and coverage chains.

A snapshot is complete: loading one replaces all enrolment (feeds.md). People's name, gender,
birth date and payee account come from their enrolment with the latest ``coverage_start``
(ties: greatest ``enrollment_id``) (benefits.md, *Matching*).
"""

from __future__ import annotations

from collections.abc import Sequence
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

# An enrolment's columns as staged (the contract's, normalised), with the polars types a
# fingerprint casts them to, so that its hash depends on the values alone: the columns the
# diff compares, named once. ``enrollments`` keeps the cover alone (migration 024, ADR 0034):
# the person's name, gender, birth date and payee are their member row's.
_FINGERPRINT_TYPES = {
    "enrollment_id": "String",
    "national_id": "String",
    "member_name": "String",
    "member_name_norm": "String",
    "gender": "String",
    "birth_date": "Date",
    "plan_code": "String",
    "coverage_start": "Date",
    "coverage_end": "Date",
    "payee_account": "String",
}
_COVER_COLUMNS = "enrollment_id, national_id, plan_code, coverage_start, coverage_end"
# The chains' starts are computed before the insert (``derive``), so the enrolments are
# the staged rows' cover as it is: one scan, no window, no sort in DuckDB.
_CHAINS = f"SELECT {_COVER_COLUMNS}, chain_start, fingerprint FROM staged_enrollments"

# A person's attributes come from their latest enrolment (by coverage_start, then
# enrollment_id), flagged ``latest`` before the insert (``derive``): the members are the
# staged rows so flagged, one filtered scan of the rows in memory (as Arrow), no grouping. Read
# from the staged rows, not from the enrolments just inserted: a second read of a table
# written in the same transaction costs twice as much.
_MEMBERS = """
SELECT national_id, member_name, member_name_norm, gender, birth_date, payee_account
FROM staged_enrollments WHERE latest
"""


def repeat_flags(rows: pa.Table) -> pa.Table:
    """The staged rows with ``several_person``: its ``national_id`` is on another row too.

    Found from 64-bit hashes sorted in polars: equal values have equal hashes, so a row that
    shares its person is always flagged; a collision can only flag a row that does not, which
    ``derive`` handles alike (such a row is its person's only row: latest, its own chain).
    """
    import polars as pl  # the load's alone: the night's imports stay as they are

    keys = pl.from_arrow(rows.select(["national_id"]))
    assert isinstance(keys, pl.DataFrame)
    column = keys.get_column("national_id").hash()
    del keys
    # A hash that repeats is found next to itself once sorted; the rows holding one of those
    # are flagged. Sorting 10 M hashes and one set lookup per row cost ~0.6 CPU s, polars'
    # ``is_duplicated`` (a hash table of counts) ~1.0 (ADR 0015).
    ordered = column.sort()
    repeated = ordered.filter(ordered == ordered.shift(1))
    return rows.append_column("several_person", column.is_in(repeated).to_arrow())


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


def derive(rows: pa.Table) -> pa.Table:
    """The staged rows (with ``repeat_flags``) with what the load derives from them:
    ``chain_start``, the first day of the enrolment's chain (benefits.md, *Coverage*), and
    ``latest``, the row is its person's latest enrolment by ``coverage_start`` then
    ``enrollment_id`` (benefits.md, *Matching*: the members are these rows).

    A person with one enrolment has it as the latest and as its own chain. Only the rows
    flagged ``several_person`` (about half at full scale) are sorted, once, by the person's
    64-bit hash, the start and the id, carrying numbers only (gathering strings after a sort
    cost more than the sort): the last row of a person's run is the latest, and a stable sort
    of the runs by plan puts each (person, plan)'s rows together, still by start, for the
    chains. One sort for both, instead of a sort of the repeated pairs for the chains and a
    grouping with ``max_by`` in DuckDB for the members (measured at 10 M enrolments, ADR 0021).
    """
    import polars as pl  # the load's alone

    frame = pl.from_arrow(
        rows.select(
            [
                "national_id",
                "plan_code",
                "coverage_start",
                "coverage_end",
                "enrollment_id",
                "several_person",
            ]
        )
    )
    assert isinstance(frame, pl.DataFrame)
    nid, plan = pl.col("national_id"), pl.col("plan_code")
    chain_start, latest = _derive(
        frame, (nid.hash(), nid.hash(seed=2)), (plan.hash(seed=1), plan.hash(seed=3))
    )
    del frame
    return rows.append_column("chain_start", chain_start.to_arrow()).append_column(
        "latest", latest.to_arrow()
    )


def _derive(
    frame: pl.DataFrame, person: tuple[pl.Expr, pl.Expr], plan: tuple[pl.Expr, pl.Expr]
) -> tuple[pl.Series, pl.Series]:
    """(``chain_start``, ``latest``) for every row of ``frame``.

    ``person`` and ``plan``: each a 64-bit key that orders the rows and a second, independent
    one that checks it, both equal for equal values (a test gives keys that collide). Two
    people sharing the first key are found next to each other with different second keys
    (for 64-bit hashes ~1e-6 a snapshot, and both colliding ~1e-25): those rows are then sorted
    by the strings themselves; likewise two plans of one person.
    """
    import polars as pl

    several = (
        frame.with_row_index("row")
        .filter(pl.col("several_person"))
        .select(
            "row",
            "coverage_start",
            "enrollment_id",
            person=person[0],
            check=person[1],
            plan=plan[0],
            plan_check=plan[1],
        )
        .sort(["person", "coverage_start", "enrollment_id"])
    )
    key, check = pl.col("person"), pl.col("check")
    if several.select(((key == key.shift(1)) & (check != check.shift(1))).any()).item():
        # two people share the key: the strings decide
        nid = frame.get_column("national_id").gather(several.get_column("row"))
        several = (
            several.with_columns(national_id=nid)
            .sort(["national_id", "coverage_start", "enrollment_id"])
            .with_columns(person=pl.col("national_id").rank("dense").cast(pl.UInt64))
        )
    several = several.drop("enrollment_id", "check")
    # Each person's run numbered; its last row is the latest.
    run = ((key != key.shift(1)).fill_null(True)).cum_sum().cast(pl.UInt64)
    several = several.with_columns(run=run)
    run_no = pl.col("run")
    latest = several.select("row", (run_no != run_no.shift(-1)).fill_null(True).alias("latest"))
    # The pairs: each run's rows by plan (the run's number above the plan key's top 32 bits),
    # a stable sort that keeps each pair's rows in their order by start.
    pairs = several.select(
        "row",
        "coverage_start",
        "plan_check",
        pair=(run_no * (1 << 32)) | (pl.col("plan") // (1 << 32)),
    ).sort("pair", maintain_order=True)
    del several
    pair, plan_check = pl.col("pair"), pl.col("plan_check")
    first = (pair != pair.shift(1)).fill_null(True)
    if pairs.select(((pair == pair.shift(1)) & (plan_check != plan_check.shift(1))).any()).item():
        # two plans of one person share the key's bits: the strings decide
        code = frame.get_column("plan_code").gather(pairs.get_column("row"))
        pairs = pairs.with_columns(run=pair // (1 << 32), plan_code=code).sort(
            ["run", "plan_code"], maintain_order=True
        )
        run_of, plan_of = pl.col("run"), pl.col("plan_code")
        first = ((run_of != run_of.shift(1)) | (plan_of != plan_of.shift(1))).fill_null(True)
    ends = frame.get_column("coverage_end").gather(pairs.get_column("row"))
    start = pl.col("coverage_start").cast(pl.Int64) + _DAY_SHIFT
    end = pl.col("coverage_end").cast(pl.Int64).fill_null(_OPEN_END) + _DAY_SHIFT
    runs = (
        pairs.with_columns(coverage_end=ends)
        .select("row", start.alias("start"), end.alias("end"), first.alias("first"))
        .with_columns(lift=pl.col("first").cum_sum().cast(pl.Int64) * _RUN_SPAN)
    )
    del pairs
    lift = pl.col("lift")
    # The latest end of the pair's earlier rows; on a pair's first row it is the previous
    # pair's (below this pair's lift): the first row opens its chain anyway.
    covered_until = (lift + pl.col("end")).cum_max().shift(1) - lift
    chain_opens = pl.col("first") | (pl.col("start") > covered_until + 1)
    chain = (lift + pl.when(chain_opens).then(pl.col("start")).otherwise(0)).cum_max() - lift
    found = runs.select(
        "row", (chain - _DAY_SHIFT).cast(pl.Int32).cast(pl.Date).alias("chain_start")
    )
    chain_start = (
        frame.get_column("coverage_start")
        .scatter(found.get_column("row"), found.get_column("chain_start"))
        .alias("chain_start")
    )
    is_latest = (
        frame.get_column("several_person")
        .not_()
        .scatter(latest.get_column("row"), latest.get_column("latest"))
        .alias("latest")
    )
    return chain_start, is_latest


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
#
# The snapshot in effect's fingerprints are those its load kept (``enrollments.fingerprint``,
# migration 023, computed by ``fingerprints``), so the diff hashes the new side only, once, for
# the diff and for the next one (ADR 0026). They are compared only when the kept canary says
# they were computed the way this process computes them (the same polars hash); otherwise (a
# warehouse from before 023, another polars) the diff compares what the warehouse keeps
# (ADR 0034): each enrolment's cover, hashed on both sides by DuckDB, and each person's member
# row against their latest staged row. That names the people whose enrolment rows or member row
# the load changes, which is all a re-match reads; the kept fingerprints name those too, and
# also anyone whose earlier enrolment alone changed its name or payee (whose re-match then finds
# what it found before).
# An old row without a fingerprint (NULL) never equals a new one: its person counts as changed.
SNAPSHOT_CHANGES = "snapshot_changes"
_COVER_FINGERPRINTS = f"SELECT enrollment_id, national_id, hash({_COVER_COLUMNS}) AS fingerprint"
_KEPT_FINGERPRINTS = "SELECT enrollment_id, national_id, fingerprint"
_CHANGED_PEOPLE = """
CREATE OR REPLACE TEMP TABLE snapshot_changed_people AS
SELECT DISTINCT coalesce(o.national_id, n.national_id) AS national_id
FROM ({fingerprints} FROM enrollments) o
FULL JOIN ({fingerprints} FROM staged_enrollments) n
    ON o.enrollment_id = n.enrollment_id AND o.fingerprint = n.fingerprint
WHERE o.enrollment_id IS NULL OR n.enrollment_id IS NULL
"""
# With the cover alone compared: also the people whose member row the load changes (the rows
# ``derive`` flagged ``latest``; people who came or left are named by their enrolments).
_CHANGED_MEMBERS = """
INSERT INTO snapshot_changed_people
SELECT o.national_id
FROM members o JOIN (SELECT * FROM staged_enrollments WHERE latest) n USING (national_id)
WHERE o.member_name IS DISTINCT FROM n.member_name
   OR o.member_name_norm IS DISTINCT FROM n.member_name_norm
   OR o.gender IS DISTINCT FROM n.gender
   OR o.birth_date IS DISTINCT FROM n.birth_date
   OR o.payee_account IS DISTINCT FROM n.payee_account
EXCEPT SELECT national_id FROM snapshot_changed_people
"""
_CHANGE_ROWS = f"""
INSERT INTO {SNAPSHOT_CHANGES}
SELECT national_id, member_name_norm, birth_date, gender
FROM members SEMI JOIN snapshot_changed_people USING (national_id)
"""

# The row whose fingerprint is kept beside the fingerprints (``fingerprint_keys``): a process
# that hashes it otherwise (another polars) cannot compare its fingerprints with the kept ones.
_CANARY_ROW = {
    "enrollment_id": "E1",
    "national_id": "11010119500101001X",
    "member_name": "张 伟",
    "member_name_norm": "张伟",
    "gender": "M",
    "birth_date": date(1950, 1, 1),
    "plan_code": "WORKER_MUTUAL",
    "coverage_start": date(2020, 1, 1),
    "coverage_end": None,
    "payee_account": "6222000000000000",
}
_FINGERPRINT_BATCH = 1 << 18


def _row_hashes(frame: pl.DataFrame) -> pl.Series:
    import polars as pl

    return frame.select(
        pl.col(c).cast(getattr(pl, t)) for c, t in _FINGERPRINT_TYPES.items()
    ).hash_rows()


def fingerprint_canary() -> int:
    """This process's fingerprint of a fixed row (``_CANARY_ROW``)."""
    import polars as pl

    frame = pl.DataFrame(
        [_CANARY_ROW], schema={c: getattr(pl, t) for c, t in _FINGERPRINT_TYPES.items()}
    )
    return int(_row_hashes(frame).item())


def fingerprints(rows: pa.Table, *, batch: int = _FINGERPRINT_BATCH) -> pa.Table:
    """The staged rows with ``fingerprint``: a 64-bit hash of the row's enrolment columns
    (polars' ``hash_rows``), kept in ``enrollments`` for the next snapshot's diff.

    Hashed 262,144 rows at a time: only those rows' strings are converted to polars at once (the
    whole table's would be ~1 GB beside the mapped slices at 10 M enrolments; a million at a time
    left the process ~0.15 GB larger, for the same ~0.5–0.9 CPU s)."""
    import polars as pl

    parts = []
    for part in rows.select(list(_FINGERPRINT_TYPES)).to_batches(max_chunksize=batch):
        frame = pl.from_arrow(part)
        assert isinstance(frame, pl.DataFrame)
        parts.append(_row_hashes(frame).to_arrow())
    return rows.append_column("fingerprint", pa.chunked_array(parts, pa.uint64()))


def _changed_people(con: duckdb.DuckDBPyConnection, canary: int) -> None:
    """``snapshot_changed_people``: the diff, on the kept fingerprints when they compare, else
    on the cover and the members (the staged rows carry ``derive``'s ``latest``)."""
    kept = con.execute("SELECT hash_canary FROM fingerprint_keys").fetchall() == [(canary,)]
    if kept:
        con.execute(_CHANGED_PEOPLE.format(fingerprints=_KEPT_FINGERPRINTS))
    else:
        con.execute(_CHANGED_PEOPLE.format(fingerprints=_COVER_FINGERPRINTS))
        con.execute(_CHANGED_MEMBERS)


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
# enrolments instead of ~90). The setting covers the inserts only (a later snapshot writes the
# changed people's rows alike, ADR 0029).


def staged_snapshot(staged: Path | Sequence[pa.Table]) -> pa.Table:
    """The staged slices as one Arrow table: the slices validation held in memory, or its
    files (``part-NNNN.arrow``, Arrow IPC, uncompressed) memory-mapped. No decoding and no
    copy either way; DuckDB scans it in place, as often as the load needs (the chains, the
    members, the diff)."""
    if not isinstance(staged, Path):
        return pa.concat_tables(staged)
    tables = [
        ipc.open_file(pa.memory_map(str(part))).read_all()
        for part in sorted(staged.glob("part-*.arrow"))
    ]
    return pa.concat_tables(tables)


def load_budget(cap: int, mapped: int) -> int:
    """DuckDB's memory cap during a load, in bytes: the cap less the mapped slices' size, so
    that DuckDB and the slices together stay within the cap; never below half of it."""
    return max(cap - mapped, cap // 2)


def _register_staged(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    """``rows`` as the load's ``staged_enrollments``, with their fingerprints (hashed here unless
    validation hashed them slice by slice), and DuckDB's memory cap lowered for the load.

    The slices are this process's memory too (~1.5 GB at 10 M enrolments), which DuckDB's cap
    does not count: for the load DuckDB gets the cap less their size, so that the process stays
    within the cap plus the interpreter (the 6 GB of docs/benchmarks.md) instead of the cap plus
    the slices. Never below half the cap; the load sets the cap back when it ends."""
    if "fingerprint" not in rows.column_names:
        rows = fingerprints(rows)
    con.register("staged_enrollments", rows)
    con.execute(
        f"SET memory_limit = '{load_budget(size_bytes(duckdb_memory_limit()), rows.nbytes)}B'"
    )


def load_snapshot(
    con: duckdb.DuckDBPyConnection,
    *,
    staged: Path | Sequence[pa.Table],
    snapshot_date: date,
    content_hash: str,
    run_id: str,
) -> int:
    """Replace enrolment with the staged snapshot's slices (inside the transaction): their
    folder, or the slices themselves when validation held them in memory (``staged_snapshot``).

    Over a snapshot whose kept fingerprints compare, only the changed people's rows are
    replaced (``_replace_changed_people``); otherwise every row is."""
    canary = fingerprint_canary()
    if _fingerprints_compare(con, canary):
        return _replace_changed_people(
            con,
            staged=staged,
            snapshot_date=snapshot_date,
            content_hash=content_hash,
            run_id=run_id,
            canary=canary,
        )
    _register_staged(con, derive(repeat_flags(staged_snapshot(staged))))
    try:
        _start_changes(con)
        # Without a stay there is nothing to re-match: the first load skips the diff.
        diff = con.execute(
            "SELECT EXISTS (SELECT 1 FROM stays) OR EXISTS (SELECT 1 FROM stay_outcomes)"
        ).fetchone()
        if diff is not None and diff[0]:
            _changed_people(con, canary)
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
        count = _record_snapshot(con, canary, snapshot_date, content_hash, run_id)
    finally:
        # After a failure the transaction is aborted and refuses this too; the next load
        # replaces the registration, closing the connection drops it.
        with suppress(duckdb.Error):
            con.unregister("staged_enrollments")
        with suppress(duckdb.Error):  # else ``transaction`` restores it after its ROLLBACK
            con.execute(f"SET memory_limit = '{duckdb_memory_limit()}'")
    return int(count)


def _record_snapshot(
    con: duckdb.DuckDBPyConnection, canary: int, snapshot_date: date, content_hash: str, run_id: str
) -> int:
    """The snapshot in effect and how its fingerprints were made; its number of enrolments."""
    con.execute("DELETE FROM fingerprint_keys")  # how the fingerprints just kept were made
    con.execute("INSERT INTO fingerprint_keys VALUES ($c)", {"c": canary})
    count = con.execute("SELECT count(*) FROM enrollments").fetchone()[0]  # type: ignore[index]
    con.execute("DELETE FROM current_snapshot")
    con.execute(
        "INSERT INTO current_snapshot VALUES (?, ?, ?, ?, ?)",
        [snapshot_date, content_hash, count, now(), run_id],
    )
    return int(count)


# A new snapshot over one whose fingerprints compare (ADR 0029). A person's enrolment rows,
# chain starts and member row depend on that person's enrolments alone (chains are per person
# and plan, the member row is the person's latest enrolment), so a person the diff finds
# unchanged (every row there with the same id and fingerprint, none added or removed) keeps
# exactly the rows the whole load would write: their kept rows stay, and only the changed
# people's rows are deleted and written again from the new snapshot, with chains and latest
# rows derived from those people's rows only. Rewriting the 10 M enrolments and 7.25 M members
# cost the night ~8 CPU s at full scale, with ~2.5 more for sorting everyone's rows; 1 % of the
# people changed.
# (A row without a person, which validation never passes, is taken as changed, so that the
# table's constraint refuses it as the whole load does.)
_CHANGED_ROWS = """
SELECT * FROM staged_enrollments s SEMI JOIN snapshot_changed_people p
    ON s.national_id IS NOT DISTINCT FROM p.national_id
"""
_OLD_MEMBERS = """
DELETE FROM members WHERE national_id IN (SELECT national_id FROM snapshot_changed_people)
RETURNING national_id, member_name_norm, birth_date, gender
"""
_OLD_ENROLMENTS = """
DELETE FROM enrollments WHERE national_id IN (SELECT national_id FROM snapshot_changed_people)
"""
_NEW_CHAINS = f"SELECT {_COVER_COLUMNS}, chain_start, fingerprint FROM snapshot_changed_rows"
_NEW_MEMBERS = """
SELECT national_id, member_name, member_name_norm, gender, birth_date, payee_account
FROM snapshot_changed_rows WHERE latest
"""


def _fingerprints_compare(con: duckdb.DuckDBPyConnection, canary: int) -> bool:
    """The snapshot in effect kept fingerprints made as this process makes them (so a diff
    on them is exact, and its unchanged rows' fingerprints serve the next one)."""
    kept = con.execute("SELECT hash_canary FROM fingerprint_keys").fetchall() == [(canary,)]
    return kept and con.execute("SELECT EXISTS (SELECT 1 FROM enrollments)").fetchall() == [(True,)]


def _replace_changed_people(
    con: duckdb.DuckDBPyConnection,
    *,
    staged: Path | Sequence[pa.Table],
    snapshot_date: date,
    content_hash: str,
    run_id: str,
    canary: int,
) -> int:
    """``load_snapshot`` over a snapshot whose fingerprints compare: the diff, then only the
    changed people's enrolments and members replaced (see above)."""
    _register_staged(con, staged_snapshot(staged))
    try:
        _start_changes(con)
        con.execute(_CHANGED_PEOPLE.format(fingerprints=_KEPT_FINGERPRINTS))
        changed = con.sql(_CHANGED_ROWS).to_arrow_table()
        con.unregister("staged_enrollments")
        con.register("snapshot_changed_rows", derive(repeat_flags(changed)))
        del changed
        # their demographics before, from the member rows the delete removes
        # (``sql`` runs a DELETE at once and holds what it returned: ~72,000 rows at full scale)
        con.register("snapshot_old_members", con.sql(_OLD_MEMBERS).to_arrow_table())
        con.execute(f"INSERT INTO {SNAPSHOT_CHANGES} SELECT * FROM snapshot_old_members")
        con.unregister("snapshot_old_members")
        con.execute(_OLD_ENROLMENTS)
        con.execute("SET force_compression = 'uncompressed'")  # as the whole load writes them
        con.execute(f"INSERT INTO enrollments BY NAME {_NEW_CHAINS}")
        con.execute(f"INSERT INTO members BY NAME {_NEW_MEMBERS}")
        con.execute("RESET force_compression")
        # and after: the member rows just written
        con.execute(
            f"INSERT INTO {SNAPSHOT_CHANGES} SELECT national_id, member_name_norm, birth_date, "
            "gender FROM snapshot_changed_rows WHERE latest"
        )
        con.execute(
            f"INSERT INTO {SNAPSHOT_CHANGES} SELECT national_id, NULL, NULL, NULL "
            "FROM snapshot_changed_people"  # people who left or came, whatever their demographics
        )
        con.execute("DROP TABLE snapshot_changed_people")
        return _record_snapshot(con, canary, snapshot_date, content_hash, run_id)
    finally:
        for name in ("staged_enrollments", "snapshot_changed_rows", "snapshot_old_members"):
            with suppress(duckdb.Error):
                con.unregister(name)
        with suppress(duckdb.Error):
            con.execute(f"SET memory_limit = '{duckdb_memory_limit()}'")
