"""Stage validated discharge rows and keep partition state, inside the caller's transaction.

Version rules of feeds.md are kept by construction: every accepted row of the partition contents
in use stays in ``discharge_rows``; for each stay version the row of the earliest partition
(``feed_date``, ``source``, then row order) stands, and a different row for the same version is a
``version_conflict``. Both are recomputed for the stays a commit touches, so the outcome is the
same whatever order partitions arrive in.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import polars as pl

from schemas.quarantine import VERSION_CONFLICT, over_threshold, threshold_error
from storage.warehouse import now

DISCHARGES = "discharges"
ENROLLMENTS = "enrollments"

# The contract values after parsing: two rows with equal content are one delivery sent twice.
# The values joined by the unit separator, each text value as a JSON string (quoted, escaped), the
# others numbers and dates: a one-to-one image of the values, hashed for half of what a JSON
# object of them cost (migration 019 rehashed the rows kept before; it holds the same formula).
CONTENT_MD5 = (
    "md5(concat_ws(chr(31), "
    "to_json(hospital_code), to_json(settlement_id), version, to_json(record_type), "
    "to_json(national_id), to_json(patient_name), to_json(gender), birth_date, "
    "admission_date, discharge_date, to_json(primary_diagnosis), total_cost_fen, "
    "fund_paid_fen, self_pay_in_scope_fen, self_pay_out_of_scope_fen, "
    "epoch_us(settled_at)))"
)


@dataclass(frozen=True)
class StageResult:
    """What staging one partition content did."""

    status: str  # succeeded | failed
    rows_read: int
    rows_quarantined: int
    error: str | None


def begin_commit(con: duckdb.DuckDBPyConnection) -> None:
    """Start collecting the stays this commit touches."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE touched_stays "
        "(hospital_code VARCHAR NOT NULL, settlement_id VARCHAR NOT NULL)"
    )


def _upsert_state(
    con: duckdb.DuckDBPyConnection,
    *,
    kind: str,
    key: str,
    day: date,
    source: str,
    status: str,
    run_id: str,
    content_hash: str | None = None,
    applied_hash: str | None = None,
    set_applied: bool = False,
    rows_read: int = 0,
    rows_quarantined: int = 0,
    error: str | None = None,
    warnings: dict[str, int] | None = None,
    count_attempt: bool = False,
    retry: bool = False,
) -> None:
    """Write a partition's latest state; attempts count every time a run processed the
    partition (a re-run, a re-delivery), so that the status table shows how many it took."""
    con.execute(
        """
        INSERT INTO partition_state AS p (kind, partition_key, day, source, status, content_hash,
            applied_hash, rows_read, rows_quarantined, error, retry, attempts, warnings, run_id,
            updated_at)
        VALUES ($kind, $key, $day, $source, $status, $content_hash, $applied_hash, $rows_read,
            $rows_quarantined, $error, $retry, CASE WHEN $count THEN 1 ELSE 0 END, $warnings,
            $run_id, $now)
        ON CONFLICT (kind, partition_key) DO UPDATE SET
            status = excluded.status,
            attempts = CASE WHEN $count THEN p.attempts + 1 ELSE p.attempts END,
            content_hash = coalesce(excluded.content_hash, p.content_hash),
            applied_hash = CASE WHEN $set_applied THEN excluded.applied_hash
                                ELSE p.applied_hash END,
            rows_read = excluded.rows_read,
            rows_quarantined = excluded.rows_quarantined,
            error = excluded.error,
            retry = excluded.retry,
            warnings = excluded.warnings,
            run_id = excluded.run_id,
            updated_at = excluded.updated_at
        """,
        {
            "kind": kind,
            "key": key,
            "day": day,
            "source": source,
            "status": status,
            "content_hash": content_hash,
            "applied_hash": applied_hash,
            "set_applied": set_applied,
            "rows_read": rows_read,
            "rows_quarantined": rows_quarantined,
            "error": error,
            "count": count_attempt,
            "retry": retry,
            "warnings": json.dumps(warnings or {}, sort_keys=True),
            "run_id": run_id,
            "now": now(),
        },
    )


def record_waiting(
    con: duckdb.DuckDBPyConnection, *, kind: str, key: str, day: date, source: str, run_id: str
) -> None:
    """A folder without a manifest: a delivery in progress. A known partition keeps its state."""
    con.execute(
        """
        INSERT INTO partition_state (kind, partition_key, day, source, status, rows_read,
            rows_quarantined, attempts, run_id, updated_at)
        VALUES (?, ?, ?, ?, 'waiting', 0, 0, 0, ?, ?)
        ON CONFLICT (kind, partition_key) DO NOTHING
        """,
        [kind, key, day, source, run_id, now()],
    )


def mark_running_set(
    con: duckdb.DuckDBPyConnection, parts: list[tuple[str, str, date, str]], *, run_id: str
) -> None:
    """Shown while a run works on its partitions ((kind, key, day, source), a chunk's ~90 in
    one statement); a killed run's leftovers are reset on the next."""
    if not parts:
        return
    con.register(
        "running_parts",
        pl.DataFrame(
            parts,
            schema={"kind": pl.String, "key": pl.String, "day": pl.Date, "source": pl.String},
            orient="row",
        ),
    )
    con.execute(
        """
        INSERT INTO partition_state AS p (kind, partition_key, day, source, status, rows_read,
            rows_quarantined, attempts, run_id, updated_at)
        SELECT kind, key, day, source, 'running', 0, 0, 0, $run_id, $now FROM running_parts
        ON CONFLICT (kind, partition_key) DO UPDATE SET status = 'running',
            run_id = excluded.run_id, updated_at = excluded.updated_at
        """,
        {"run_id": run_id, "now": now()},
    )
    con.unregister("running_parts")


def reset_interrupted(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Partitions left ``running`` by a killed run are not done: say so, so the next run retries."""
    rows = con.execute(
        """
        UPDATE partition_state
        SET status = 'failed',
            error = 'interrupted: the run ' || coalesce(run_id, '?')
                    || ' stopped before it committed',
            retry = true,
            updated_at = ?
        WHERE status = 'running' AND run_id IS DISTINCT FROM ?
        RETURNING partition_key
        """,
        [now(), run_id],
    ).fetchall()
    return len(rows)


def record_skipped(
    con: duckdb.DuckDBPyConnection, *, kind: str, key: str, content_hash: str, run_id: str
) -> None:
    """Same content as the one in use: nothing to do. A known success keeps saying so."""
    con.execute(
        """
        UPDATE partition_state
        SET status = CASE WHEN status = 'succeeded' THEN 'succeeded' ELSE 'skipped' END,
            content_hash = ?, error = NULL, run_id = ?, updated_at = ?,
            rows_quarantined = (SELECT count(DISTINCT row_number) FROM quarantine q
                                WHERE q.kind = partition_state.kind
                                  AND q.partition_key = partition_state.partition_key
                                  AND q.content_hash = partition_state.applied_hash)
        WHERE kind = ? AND partition_key = ? AND status <> 'succeeded'
        """,
        [content_hash, run_id, now(), kind, key],
    )


def _store_quarantine(
    con: duckdb.DuckDBPyConnection,
    *,
    kind: str,
    key: str,
    content_hash: str,
    quarantine: pl.DataFrame,
) -> None:
    con.execute(
        "DELETE FROM quarantine WHERE kind = ? AND partition_key = ? AND content_hash = ? "
        "AND NOT derived",
        [kind, key, content_hash],
    )
    if quarantine.height:
        con.register("incoming_quarantine", quarantine)
        con.execute(
            """
            INSERT INTO quarantine (kind, partition_key, content_hash, row_number, rule, message,
                raw, derived)
            SELECT ?, ?, ?, row_number, rule, message, raw, false FROM incoming_quarantine
            """,
            [kind, key, content_hash],
        )
        con.unregister("incoming_quarantine")


def _forget_old_contents(con: duckdb.DuckDBPyConnection, kind: str, key: str) -> None:
    """Quarantine rows of contents that are neither the latest nor the one in use."""
    con.execute(
        """
        DELETE FROM quarantine q
        WHERE q.kind = $kind AND q.partition_key = $key AND NOT EXISTS (
            SELECT 1 FROM partition_state p
            WHERE p.kind = q.kind AND p.partition_key = q.partition_key
              AND q.content_hash IN (p.content_hash, p.applied_hash))
        """,
        {"kind": kind, "key": key},
    )


def record_failure(
    con: duckdb.DuckDBPyConnection,
    *,
    kind: str,
    key: str,
    day: date,
    source: str,
    content_hash: str | None,
    error: str,
    run_id: str,
    rows_read: int = 0,
    quarantine: pl.DataFrame | None = None,
    retry: bool = False,
) -> StageResult:
    """The whole partition failed: keep why (and its bad rows); the content in use stays.

    ``retry`` marks a failure that is not the data's fault (an I/O error): the next run tries
    the same content again instead of waiting for a new delivery.
    """
    rows_quarantined = 0
    if quarantine is not None and content_hash is not None:
        _store_quarantine(con, kind=kind, key=key, content_hash=content_hash, quarantine=quarantine)
        rows_quarantined = quarantine.get_column("row_number").n_unique()
    _upsert_state(
        con,
        kind=kind,
        key=key,
        day=day,
        source=source,
        status="failed",
        run_id=run_id,
        content_hash=content_hash,
        rows_read=rows_read,
        rows_quarantined=rows_quarantined,
        error=error,
        count_attempt=True,
        retry=retry,
    )
    _forget_old_contents(con, kind, key)
    return StageResult("failed", rows_read, rows_quarantined, error)


def _conflicts_within(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Rows of ``incoming_rows`` that repeat an earlier row's stay version of the same partition
    with other content (``partition_key``, ``row_number``, ``rule``, ``message``, ``raw``).

    Only conflicts inside the partition count toward its reject threshold: whether another
    partition's row was seen first depends on processing order, and the threshold must not.
    Conflicts across partitions are derived afterwards (``refresh_touched_stays``).
    """
    return con.sql(
        f"""
        WITH ranked AS (
            SELECT hospital_code, settlement_id, version, row_number, raw, partition_key,
                content_md5,
                first_value(content_md5) OVER w AS winner_md5,
                first_value(partition_key) OVER w AS winner_partition,
                first_value(row_number) OVER w AS winner_row
            FROM incoming_rows
            WINDOW w AS (PARTITION BY partition_key, hospital_code, settlement_id, version
                         ORDER BY feed_date, source, row_number)
        )
        SELECT partition_key, row_number, $rule AS rule,
               {_CONFLICT_MESSAGE} AS message, raw
        FROM ranked
        WHERE content_md5 <> winner_md5
        ORDER BY partition_key, row_number
        """,
        params={"rule": VERSION_CONFLICT},
    ).pl()


_CONFLICT_MESSAGE = (
    "'version ' || version || ' of this stay was first received in ' || winner_partition "
    "|| ' (row ' || winner_row || ') with different content'"
)


@dataclass(frozen=True)
class StageInput:
    """One validated partition content to stage."""

    key: str
    day: date
    source: str
    content_hash: str
    staged: pl.DataFrame  # StagedDischarge
    quarantine: pl.DataFrame  # QuarantineRow
    rows_read: int
    warnings: dict[str, int]


def stage_discharges(
    con: duckdb.DuckDBPyConnection,
    *,
    key: str,
    day: date,
    source: str,
    content_hash: str,
    staged: pl.DataFrame,
    quarantine: pl.DataFrame,
    rows_read: int,
    warnings: dict[str, int],
    threshold: float,
    run_id: str,
) -> StageResult:
    """Replace the partition's rows with this content, unless too many rows are bad."""
    item = StageInput(key, day, source, content_hash, staged, quarantine, rows_read, warnings)
    return stage_discharge_set(con, [item], threshold=threshold, run_id=run_id)[0]


def stage_discharge_set(
    con: duckdb.DuckDBPyConnection,
    items: list[StageInput],
    *,
    threshold: float,
    run_id: str,
) -> list[StageResult]:
    """Replace each partition's rows with its new content, unless too many of its rows are bad:
    ``stage_discharges`` for a night's or a chunk's partitions in a few set-based statements
    instead of a dozen per partition. Every rule is per partition (its rows, its conflicts
    within, its threshold, its state), so the outcome is the one partition by partition gives.
    """
    if not items:
        return []
    keys = [i.key for i in items]
    if len(set(keys)) != len(keys):
        raise ValueError("a partition is staged once per commit")
    frames = [i.staged.with_columns(pl.lit(i.key, pl.String).alias("partition_key")) for i in items]
    con.register("staged_frame", pl.concat(frames, how="vertical"))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE incoming_rows AS
        SELECT *, {CONTENT_MD5} AS content_md5 FROM staged_frame
        """
    )
    con.unregister("staged_frame")
    conflicts = _conflicts_within(con).partition_by("partition_key", as_dict=True)
    results: list[StageResult] = []
    accepted: list[tuple[StageInput, int]] = []
    for item in items:
        mine = conflicts.get((item.key,))
        all_bad = (
            pl.concat([item.quarantine, mine.drop("partition_key")], how="vertical_relaxed").sort(
                "row_number", "rule"
            )
            if mine is not None
            else item.quarantine.sort("row_number", "rule")
        )
        bad_rows = all_bad.get_column("row_number").n_unique()
        if over_threshold(bad_rows, item.rows_read, threshold):
            error = threshold_error(
                bad_rows,
                item.rows_read,
                threshold,
                f"nothing of the partition is used. See `claims quarantine --partition {item.key}`",
            )
            results.append(
                record_failure(
                    con,
                    kind=DISCHARGES,
                    key=item.key,
                    day=item.day,
                    source=item.source,
                    content_hash=item.content_hash,
                    error=error,
                    run_id=run_id,
                    rows_read=item.rows_read,
                    quarantine=all_bad,
                )
            )
        else:
            accepted.append((item, bad_rows))
            results.append(StageResult("succeeded", item.rows_read, bad_rows, None))
    if accepted:
        _replace_rows(con, accepted, run_id=run_id)
    con.execute("DROP TABLE IF EXISTS incoming_rows")
    return results


def _replace_rows(
    con: duckdb.DuckDBPyConnection, accepted: list[tuple[StageInput, int]], *, run_id: str
) -> None:
    """The accepted partitions' rows, quarantine and state, in one statement each."""
    con.register(
        "accepted_keys",
        pl.DataFrame(
            {
                "partition_key": [i.key for i, _ in accepted],
                "day": [i.day for i, _ in accepted],
                "source": [i.source for i, _ in accepted],
                "content_hash": [i.content_hash for i, _ in accepted],
                "rows_read": [i.rows_read for i, _ in accepted],
                "rows_quarantined": [bad for _, bad in accepted],
                "warnings": [json.dumps(i.warnings, sort_keys=True) for i, _ in accepted],
            },
            schema={
                "partition_key": pl.String,
                "day": pl.Date,
                "source": pl.String,
                "content_hash": pl.String,
                "rows_read": pl.Int64,
                "rows_quarantined": pl.Int64,
                "warnings": pl.String,
            },
        ),
    )
    # Stays whose rows change: the old contents' and the new ones'. A night's partitions are
    # new: whether any old contents exist is one narrow look (the partition key), and only then
    # are their stays read (a scan of every row's stay key on a year's warehouse). A partition's
    # rows are only ever written below, with a state whose ``applied_hash`` is set (and never
    # unset: only a success sets it), so a partition whose state has none has no rows (a new one
    # is only ``running``), and the look (every row's partition key) is skipped.
    known = con.execute(
        "SELECT count(*) FROM partition_state WHERE kind = ? AND applied_hash IS NOT NULL "
        "AND partition_key IN (SELECT partition_key FROM accepted_keys)",
        [DISCHARGES],
    ).fetchone()
    old = (
        con.execute(
            "SELECT count(*) FROM discharge_rows "
            "WHERE partition_key IN (SELECT partition_key FROM accepted_keys)"
        ).fetchone()
        if known and known[0]
        else (0,)
    )
    if old and old[0]:
        con.execute(
            """
            INSERT INTO touched_stays
            SELECT DISTINCT hospital_code, settlement_id FROM discharge_rows
            WHERE partition_key IN (SELECT partition_key FROM accepted_keys)
            """
        )
    con.execute(
        """
        INSERT INTO touched_stays
        SELECT DISTINCT hospital_code, settlement_id FROM incoming_rows
        WHERE partition_key IN (SELECT partition_key FROM accepted_keys)
        """
    )
    if old and old[0]:  # else nothing to delete: no second scan of every row's partition key
        con.execute(
            "DELETE FROM discharge_rows "
            "WHERE partition_key IN (SELECT partition_key FROM accepted_keys)"
        )
    con.execute(
        "DELETE FROM quarantine WHERE kind = ? AND derived "
        "AND partition_key IN (SELECT partition_key FROM accepted_keys)",
        [DISCHARGES],
    )
    con.execute(
        "INSERT INTO discharge_rows BY NAME SELECT * FROM incoming_rows "
        "WHERE partition_key IN (SELECT partition_key FROM accepted_keys)"
    )
    con.execute(
        "DELETE FROM quarantine q WHERE q.kind = ? AND NOT q.derived AND EXISTS ("
        "SELECT 1 FROM accepted_keys a WHERE a.partition_key = q.partition_key "
        "AND a.content_hash = q.content_hash)",
        [DISCHARGES],
    )
    quarantines = [
        i.quarantine.select(
            pl.lit(i.key, pl.String).alias("partition_key"),
            pl.lit(i.content_hash, pl.String).alias("content_hash"),
            "row_number",
            "rule",
            "message",
            "raw",
        )
        for i, _ in accepted
        if i.quarantine.height
    ]
    if quarantines:
        con.register("incoming_quarantine", pl.concat(quarantines, how="vertical_relaxed"))
        con.execute(
            """
            INSERT INTO quarantine (kind, partition_key, content_hash, row_number, rule, message,
                raw, derived)
            SELECT ?, partition_key, content_hash, row_number, rule, message, raw, false
            FROM incoming_quarantine
            """,
            [DISCHARGES],
        )
        con.unregister("incoming_quarantine")
    # As ``_upsert_state`` does for one success: counted as an attempt, its content in use.
    con.execute(
        """
        INSERT INTO partition_state AS p (kind, partition_key, day, source, status, content_hash,
            applied_hash, rows_read, rows_quarantined, error, retry, attempts, warnings, run_id,
            updated_at)
        SELECT $kind, partition_key, day, source, 'succeeded', content_hash, content_hash,
            rows_read, rows_quarantined, NULL, false, 1, warnings, $run_id, $now
        FROM accepted_keys
        ON CONFLICT (kind, partition_key) DO UPDATE SET
            status = excluded.status,
            attempts = p.attempts + 1,
            content_hash = coalesce(excluded.content_hash, p.content_hash),
            applied_hash = excluded.applied_hash,
            rows_read = excluded.rows_read,
            rows_quarantined = excluded.rows_quarantined,
            error = excluded.error,
            retry = excluded.retry,
            warnings = excluded.warnings,
            run_id = excluded.run_id,
            updated_at = excluded.updated_at
        """,
        {"kind": DISCHARGES, "run_id": run_id, "now": now()},
    )
    # Quarantine rows of contents that are neither the latest nor the one in use.
    con.execute(
        """
        DELETE FROM quarantine q
        WHERE q.kind = $kind
          AND q.partition_key IN (SELECT partition_key FROM accepted_keys)
          AND NOT EXISTS (
            SELECT 1 FROM partition_state p
            WHERE p.kind = q.kind AND p.partition_key = q.partition_key
              AND q.content_hash IN (p.content_hash, p.applied_hash))
        """,
        {"kind": DISCHARGES},
    )
    con.unregister("accepted_keys")


# The touched stays' rows, read from ``discharge_rows`` once and ranked once: the conflicts, the
# partitions whose conflict counts may change and the stays' current records all come from it.
# Each used to read and join the rows again, and the conflicts and the current records each
# sorted them by the same window (~0.6 of ~2.0 CPU s on a late backfill chunk's ~435,000 stays,
# ADR 0030). ``raw`` is not carried: the few conflicting rows' text is joined back.
_TOUCHED_ROWS_SQL = """
CREATE OR REPLACE TEMP TABLE touched_rows AS
SELECT hospital_code, settlement_id, version, partition_key, row_number, content_md5,
       record_type, national_id, is_valid_id, patient_name_norm, gender, birth_date,
       admission_date, discharge_date, self_pay_in_scope_fen, feed_date, source,
       row_number() OVER w AS arrival,  -- 1: the version's first row, the one a stay keeps
       first_value(content_md5) OVER w AS winner_md5,
       first_value(partition_key) OVER w AS winner_partition,
       first_value(row_number) OVER w AS winner_row
FROM discharge_rows d SEMI JOIN touched t USING (hospital_code, settlement_id)
WINDOW w AS (PARTITION BY hospital_code, settlement_id, version
             ORDER BY feed_date, source, row_number)
"""


def refresh_touched_stays(con: duckdb.DuckDBPyConnection) -> int:
    """Re-derive conflicts and current records of the stays this commit touched."""
    con.execute("CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT * FROM touched_stays")
    con.execute(
        """
        DELETE FROM quarantine q
        WHERE q.derived AND EXISTS (SELECT 1 FROM touched t
            WHERE t.hospital_code = q.hospital_code AND t.settlement_id = q.settlement_id)
        """
    )
    con.execute(_TOUCHED_ROWS_SQL)
    con.execute(
        f"""
        INSERT INTO quarantine (kind, partition_key, content_hash, row_number, rule, message, raw,
            derived, hospital_code, settlement_id)
        SELECT 'discharges', r.partition_key, p.applied_hash, r.row_number, $rule,
               {_CONFLICT_MESSAGE}, raw.raw, true, r.hospital_code, r.settlement_id
        FROM touched_rows r
        JOIN (SELECT partition_key, row_number, raw FROM discharge_rows) raw
          USING (partition_key, row_number)
        JOIN partition_state p ON p.kind = 'discharges' AND p.partition_key = r.partition_key
        WHERE r.content_md5 <> r.winner_md5
        """,
        {"rule": VERSION_CONFLICT},
    )
    # Partitions whose conflict rows may have changed: recount what they show.
    con.execute(
        """
        UPDATE partition_state p
        SET rows_quarantined = (
            SELECT count(DISTINCT q.row_number) FROM quarantine q
            WHERE q.kind = p.kind AND q.partition_key = p.partition_key
              AND q.content_hash = p.content_hash)
        WHERE p.kind = 'discharges' AND p.content_hash = p.applied_hash
          AND p.partition_key IN (SELECT DISTINCT partition_key FROM touched_rows)
        """
    )
    _replace_stays(con)
    con.execute("DROP TABLE touched_rows")
    return con.execute("SELECT count(*) FROM touched").fetchone()[0]  # type: ignore[index]


class StayKeyHeld(Exception):
    """A stay the commit rewrites was held more than once: ``stays`` has no key index
    (migration 015), so a row written outside ``claims`` is not refused by the table. The
    commit's transaction is rolled back, nothing is posted."""


def _replace_stays(con: duckdb.DuckDBPyConnection) -> None:
    """The current record of each touched stay: its rows deleted, one row per stay inserted.

    ``stays`` has no key index (migration 015): its grain is kept here. Every row of a touched
    stay is deleted, and one row per touched stay that still has rows is inserted (one per key
    by construction), so a touched stay cannot be held twice after the commit. A touched stay
    that was held twice before it (written outside this path) is refused (``StayKeyHeld``),
    from the rows the delete returns, before anything is inserted: the commit does not quietly
    repair what someone wrote by hand. ``claims verify`` checks every stay (``stay_grain``).
    """
    deleted = con.execute(
        "DELETE FROM stays s WHERE EXISTS (SELECT 1 FROM touched t "
        "WHERE t.hospital_code = s.hospital_code AND t.settlement_id = s.settlement_id) "
        "RETURNING hospital_code, settlement_id"
    ).fetchall()  # the touched stays that were known: a chunk's corrections, a few thousand
    held = [(key, n) for key, n in Counter(deleted).items() if n > 1]
    if held:
        (hospital, settlement), n = min(held)
        raise StayKeyHeld(
            f"stay {hospital}/{settlement} was held {n} times in the warehouse (a row written "
            "outside claims?): nothing was committed; run `claims verify` (check stay_grain)"
        )
    con.execute(
        """
        INSERT INTO stays BY NAME
        SELECT hospital_code, settlement_id, version AS current_version, record_type, national_id,
               is_valid_id, patient_name_norm, gender, birth_date, admission_date, discharge_date,
               self_pay_in_scope_fen, feed_date, source
        FROM touched_rows  -- _TOUCHED_ROWS_SQL: the touched stays' rows, ranked once
        WHERE arrival = 1
        QUALIFY row_number() OVER (PARTITION BY hospital_code, settlement_id
                                   ORDER BY version DESC) = 1
        """
    )


def record_success(
    con: duckdb.DuckDBPyConnection,
    *,
    kind: str,
    key: str,
    day: date,
    source: str,
    content_hash: str,
    rows_read: int,
    quarantine: pl.DataFrame,
    warnings: dict[str, int],
    run_id: str,
) -> StageResult:
    """A content now in use (an enrolment snapshot); its bad rows kept for the engineer."""
    if quarantine.height:
        _store_quarantine(con, kind=kind, key=key, content_hash=content_hash, quarantine=quarantine)
    bad = quarantine.get_column("row_number").n_unique() if quarantine.height else 0
    _upsert_state(
        con,
        kind=kind,
        key=key,
        day=day,
        source=source,
        status="succeeded",
        run_id=run_id,
        content_hash=content_hash,
        applied_hash=content_hash,
        set_applied=True,
        rows_read=rows_read,
        rows_quarantined=bad,
        warnings=warnings,
        count_attempt=True,
    )
    _forget_old_contents(con, kind, key)
    return StageResult("succeeded", rows_read, bad, None)


def partition_states(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], tuple[Any, ...]]:
    """(kind, key) → (status, content_hash, applied_hash, retry) of every known partition."""
    rows = con.execute(
        "SELECT kind, partition_key, status, content_hash, applied_hash, retry FROM partition_state"
    ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def mark_superseded(
    con: duckdb.DuckDBPyConnection, *, ready: list[tuple[str, date]], run_id: str
) -> None:
    """Ready snapshots older than the one in effect will never be loaded: skipped, saying why.

    Also for a snapshot that arrives after a newer one was loaded (one row per partition).
    """
    row = con.execute("SELECT snapshot_date FROM current_snapshot").fetchone()
    if row is None:
        return
    in_effect: date = row[0]
    loaded_key = f"snapshot_date={in_effect.isoformat()}"
    for key, day in ready:
        if day >= in_effect:
            continue
        con.execute(
            """
            INSERT INTO partition_state AS p (kind, partition_key, day, source, status, error,
                rows_read, rows_quarantined, attempts, run_id, updated_at)
            VALUES ('enrollments', $key, $day, '', 'skipped', $error, 0, 0, 0, $run_id, $now)
            ON CONFLICT (kind, partition_key) DO UPDATE SET
                status = 'skipped', error = excluded.error, run_id = excluded.run_id,
                updated_at = excluded.updated_at
            WHERE p.status <> 'skipped' OR p.error IS DISTINCT FROM excluded.error
            """,
            {
                "key": key,
                "day": day,
                "error": f"superseded by {loaded_key}",
                "run_id": run_id,
                "now": now(),
            },
        )
