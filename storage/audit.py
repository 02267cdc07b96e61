"""The warehouse's self-audit (``claims verify``; payouts.md): set-based checks, read-only.

Each check returns findings: what is wrong, about what (personal data masked), and what to do.
The checks run on a read-only connection and write only temporary tables.

- ``member_identity``: for every member, ``sum(instructions) − recovery_due = sum(ledger)``;
- ``ledger_target``: for every (stay, plan, member), the ledger sum equals the target that the
  adjudication SQL computes now from the stored inputs (every stay recomputed);
- ``ledger_balance``: ``ledger_balances`` (what a night reads as "posted so far") equals, per
  (stay, plan, member), the sum and the newest version of the ledger entries;
- ``instruction_grain``: one payment instruction per ``instruction_id`` (the table has no key
  index since migration 014; ``storage.ledger.post`` keeps the grain);
- ``entry_grain``: one ledger entry per ``entry_id`` (the table has no key index since
  migration 021; ``storage.ledger.post`` keeps the grain);
- ``stay_grain``: one ``stays`` row per stay (the table has no key index since migration 015;
  ``storage.staging`` keeps the grain);
- ``outcome_amounts``: each outcome's carried raw amounts equal its plan targets';
- ``member_number``: each outcome's member number is its national_id's (migration 022: what a
  night finds a person's other outcomes by);
- ``recovery_plan``: what each plan recovered from each member equals the ledger's recoveries,
  and each recovery balance is shown under the plan they give (migration 020);
- ``seal_chain``: every run's entries still give its seal, and each seal links to the previous;
- the batch checks, against what ``outbox.audit`` found on disk (``batch_findings``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from config.masking import mask_id
from storage.adjudication import adjudicate
from storage.batches import PAYMENT_COLUMNS
from storage.ledger import PLAN_OF
from storage.seals import GENESIS, LINES
from storage.sql import run_script
from storage.warehouse import _migrations, settle
from transforms.money import fen_to_yuan

# At most this many findings of one check are listed; the rest are counted.
SHOWN = 20

RESTORE = (
    "someone changed the warehouse outside claims: do not run until it is explained; restore the "
    "newest backup that verifies into a new file (`claims restore`), then `claims reconcile`"
)


@dataclass(frozen=True)
class Finding:
    """One broken promise: ``check`` names it, ``subject`` says where (masked)."""

    check: str
    subject: str
    detail: str
    todo: str


@dataclass(frozen=True)
class BatchOnDisk:
    """A ``batch_id=…`` folder of the outbox, as ``outbox.audit`` read it."""

    batch_id: str
    csv_path: Path | None  # None: no payments.csv
    file_sha256: str | None
    manifest: dict[str, Any] | None  # None: no manifest; {} an unreadable one


def _capped(rows: list[tuple[Any, ...]], total: int, make: Any) -> list[Finding]:
    found = [make(*r) for r in rows[:SHOWN]]
    if total > SHOWN:
        last = found[-1]
        found.append(Finding(last.check, f"and {total - SHOWN} more", "", last.todo))
    return found


def _first_found(con: duckdb.DuckDBPyConnection, query: str) -> tuple[list[tuple[Any, ...]], int]:
    """The first SHOWN rows of ``query`` in order, and how many rows it has: one run of the
    query, the count taken over its result. (Run once to count and again for the rows, the
    checks that group the ledger cost a year's verify ~7 s of CPU more.)"""
    found = con.execute(
        f"SELECT *, count(*) OVER () FROM ({query}) ORDER BY ALL LIMIT {SHOWN}"
    ).fetchall()
    return [row[:-1] for row in found], int(found[0][-1]) if found else 0


def member_identity(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    """payouts.md: ``sum(instructions) − recovery_due = sum(ledger entries)`` per member."""
    rows = con.execute(
        """
        WITH l AS (SELECT national_id, sum(amount_fen) AS fen FROM ledger_entries GROUP BY ALL),
        i AS (SELECT national_id, sum(amount_fen) AS fen FROM payment_instructions GROUP BY ALL),
        r AS (SELECT national_id, recovery_due_fen AS fen FROM recovery_balances)
        SELECT national_id, coalesce(i.fen, 0)::BIGINT, coalesce(r.fen, 0)::BIGINT,
               coalesce(l.fen, 0)::BIGINT
        FROM l FULL JOIN i USING (national_id) FULL JOIN r USING (national_id)
        WHERE coalesce(i.fen, 0) - coalesce(r.fen, 0) <> coalesce(l.fen, 0)
        ORDER BY national_id
        """
    ).fetchall()

    def make(nid: str, paid: int, due: int, ledger: int) -> Finding:
        return Finding(
            "member_identity",
            f"member {mask_id(nid)}",
            f"instructions {fen_to_yuan(paid)} − recovery due {fen_to_yuan(due)} ≠ ledger "
            f"{fen_to_yuan(ledger)} (off by {fen_to_yuan(paid - due - ledger)})",
            RESTORE,
        )

    return _capped(rows, len(rows), make)


def recompute_targets(con: duckdb.DuckDBPyConnection) -> None:
    """``new_targets`` (a temporary table) for every stay, from the stored inputs, by the
    adjudication itself (a full recompute that writes nothing): what a run would converge on."""
    adjudicate(con, full=True, write=False)


def ledger_targets(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    """payouts.md, *Convergence*: every (stay, plan, member) ledger sum equals its target."""
    recompute_targets(con)
    query = """
        WITH l AS (SELECT hospital_code, settlement_id, plan_code, national_id,
                          sum(amount_fen) AS fen FROM ledger_entries GROUP BY ALL)
        SELECT hospital_code, settlement_id, plan_code, national_id,
               coalesce(l.fen, 0)::BIGINT AS ledger_fen, coalesce(t.target_fen, 0) AS target_fen
        FROM l FULL JOIN new_targets t
          USING (hospital_code, settlement_id, plan_code, national_id)
        WHERE coalesce(l.fen, 0) <> coalesce(t.target_fen, 0)
    """
    rows, total = _first_found(con, query)

    def make(h: str, s: str, plan: str, nid: str, ledger: int, target: int) -> Finding:
        return Finding(
            "ledger_target",
            f"stay {h}/{s} plan {plan} member {mask_id(nid)}",
            f"ledger {fen_to_yuan(ledger)} ≠ target {fen_to_yuan(target)}",
            "if the seal chain is intact, a run was interrupted or inputs changed: "
            "`claims run` posts the difference; if the seals are broken, " + RESTORE,
        )

    return _capped(rows, total, make)


def ledger_balances(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    """The balances a night posts against (migration 012) equal the ledger they summarise."""
    query = """
        WITH l AS (SELECT hospital_code, settlement_id, plan_code, national_id,
                          sum(amount_fen)::BIGINT AS fen, arg_max(version, posted_at) AS version
                   FROM ledger_entries GROUP BY ALL)
        SELECT hospital_code, settlement_id, plan_code, national_id,
               l.fen, b.posted_fen, l.version, b.last_version, b.n
        FROM l FULL JOIN (
            SELECT hospital_code, settlement_id, plan_code, national_id, count(*) AS n,
                   sum(posted_fen)::BIGINT AS posted_fen, max(last_version) AS last_version
            FROM ledger_balances GROUP BY ALL
        ) b USING (hospital_code, settlement_id, plan_code, national_id)
        WHERE l.fen IS NULL OR b.n IS DISTINCT FROM 1
           OR coalesce(l.fen, 0) <> b.posted_fen
           OR (l.version IS NOT NULL AND l.version <> b.last_version)
    """
    rows, total = _first_found(con, query)

    def make(
        h: str,
        s: str,
        plan: str,
        nid: str,
        ledger: int | None,
        balance: int | None,
        version: int | None,
        last: int | None,
        n: int | None,
    ) -> Finding:
        if ledger is None:
            detail = f"a balance of {fen_to_yuan(balance or 0)} and no ledger entries"
        elif n is None:
            detail = f"ledger {fen_to_yuan(ledger or 0)} and no balance row"
        elif n > 1:
            detail = f"{n} balance rows for one key"
        elif (ledger or 0) != balance:
            detail = f"balance {fen_to_yuan(balance or 0)} ≠ ledger {fen_to_yuan(ledger or 0)}"
        else:
            detail = f"balance at version {last} ≠ ledger's newest entry at version {version}"
        return Finding(
            "ledger_balance",
            f"stay {h}/{s} plan {plan} member {mask_id(nid)}",
            detail,
            "the next run would post against a wrong balance: do not run; if the seal chain "
            "is intact, the balances alone drifted (rebuild them from the ledger: "
            "migration 012's INSERT); otherwise " + RESTORE,
        )

    return _capped(rows, total, make)


# Every link of the chain, recomputed independently: set-based, no recursion needed.
SEAL_CHECK_SQL = f"""
WITH d AS (
    SELECT run_id, count(*) AS n, sum(amount_fen) AS fen, {LINES} AS lines
    FROM ledger_entries GROUP BY run_id
), s AS (
    SELECT *, lag(seal) OVER (ORDER BY seq) AS prev_expected,
           row_number() OVER (ORDER BY seq) AS position
    FROM ledger_seals
)
SELECT coalesce(s.position, 9223372036854775807) AS position, coalesce(s.run_id, d.run_id),
    CASE
        WHEN s.run_id IS NULL THEN 'unsealed'
        WHEN s.seq <> s.position THEN 'gap'
        WHEN s.prev_seal <> coalesce(s.prev_expected, '{GENESIS}') THEN 'link'
        WHEN s.seal <> sha256(s.prev_seal || chr(10) || coalesce(d.lines, '')) THEN 'content'
    END AS problem,
    coalesce(d.n, 0) AS entries_now, s.entry_count AS entries_sealed,
    coalesce(d.fen, 0)::BIGINT AS fen_now, s.amount_sum_fen AS fen_sealed
FROM s FULL JOIN d USING (run_id)
WHERE problem IS NOT NULL
ORDER BY 1, 2
"""


def _held_twice(
    con: duckdb.DuckDBPyConnection, table: str, key: str
) -> tuple[list[tuple[Any, ...]], int]:
    """The first SHOWN keys of ``table`` held by more than one row, as (key..., rows), and how
    many keys are: one grouping of the table, the count taken over its result."""
    return _first_found(
        con, f"SELECT {key}, count(*) AS n FROM {table} GROUP BY {key} HAVING count(*) > 1"
    )


def _grain(
    con: duckdb.DuckDBPyConnection, check: str, table: str, key: str, what: str, advice: str
) -> list[Finding]:
    """One row of ``table`` per ``key``, for a table whose key index a migration dropped: each
    key held twice is a finding (``what``: the rows, as the finding's text names them)."""
    rows, total = _held_twice(con, table, key)

    def make(value: str, n: int) -> Finding:
        return Finding(
            check, f"{key.removesuffix('_id')} {value}", f"{n} {what} under one id", advice
        )

    return _capped(rows, total, make)


def instruction_grain(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    """One payment instruction per id (migration 014 dropped the key index that enforced it)."""
    return _grain(
        con,
        "instruction_grain",
        "payment_instructions",
        "instruction_id",
        "payment instructions",
        "a batch was written twice into the warehouse: do not run; compare the batch's "
        "files with its rows and, if the seals are broken, " + RESTORE,
    )


def entry_grain(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    """One ledger entry per id (migration 021 dropped the key index that enforced it)."""
    return _grain(
        con,
        "entry_grain",
        "ledger_entries",
        "entry_id",
        "ledger entries",
        "a run's entries were written twice into the warehouse: do not run; if the seals "
        "are broken, " + RESTORE,
    )


def stay_grain(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    """One current record per stay (migration 015 dropped the key index that enforced it)."""
    rows, total = _held_twice(con, "stays", "hospital_code, settlement_id")

    def make(hospital: str, settlement: str, n: int) -> Finding:
        return Finding(
            "stay_grain",
            f"stay {hospital}/{settlement}",
            f"{n} current records of one stay",
            "a stay's record was written into the warehouse outside claims: do not run (a "
            "run that touches the stay refuses it); if the seal chain is intact, delete the "
            "stay's rows from `stays` and `claims rerun --partition` the partition of its "
            "feed_date and source (it writes the one record again); otherwise " + RESTORE,
        )

    return _capped(rows, total, make)


def outcome_amounts(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    """Each outcome carries its stay's targets' raw amounts (migration 016), the sums a night's
    annual caps start from. One checksum of each side first (~0.4 CPU s on a year's warehouse);
    only when they differ are the stays compared one by one (~2 s) to name them."""
    sums = con.execute(
        """
        SELECT (SELECT sum(hash(hospital_code, settlement_id, r.plan_code, r.raw_fen)::HUGEINT)
                FROM (SELECT hospital_code, settlement_id, unnest(raw_by_plan) AS r
                      FROM stay_outcomes)),
               (SELECT sum(hash(hospital_code, settlement_id, plan_code, raw_fen)::HUGEINT)
                FROM stay_plan_targets),
               (SELECT sum(len(raw_by_plan)) FROM stay_outcomes),
               (SELECT count(*) FROM stay_plan_targets)
        """
    ).fetchone()
    if sums is not None and sums[0] == sums[1] and (sums[2] or 0) == sums[3]:
        return []
    query = """
        WITH c AS (
            SELECT hospital_code, settlement_id, len(raw_by_plan) AS n,
                   list_sum(list_transform(
                       raw_by_plan, lambda x: hash(x.plan_code, x.raw_fen)::HUGEINT)) AS h
            FROM stay_outcomes WHERE len(raw_by_plan) > 0
        ), t AS (
            SELECT hospital_code, settlement_id, count(*) AS n,
                   sum(hash(plan_code, raw_fen)::HUGEINT) AS h
            FROM stay_plan_targets GROUP BY ALL
        )
        SELECT hospital_code, settlement_id
        FROM c FULL JOIN t USING (hospital_code, settlement_id)
        WHERE c.h IS DISTINCT FROM t.h OR c.n IS DISTINCT FROM t.n
    """
    rows, total = _first_found(con, query)

    def make(hospital: str, settlement: str) -> Finding:
        return Finding(
            "outcome_amounts",
            f"stay {hospital}/{settlement}",
            "the raw amounts its outcome carries differ from its plan targets",
            "the next run would start an annual cap from a wrong sum: do not run; if the seal "
            "chain is intact, the carried amounts alone drifted (rebuild them from the targets: "
            "migration 016's INSERT); otherwise " + RESTORE,
        )

    return _capped(rows, total, make)


def member_numbers(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    """Each outcome's ``member_number`` is ``member_number(national_id)`` (migration 022): a
    night finds a person's other outcomes by it alone, so a wrong one hides a stay from the
    person's annual cap and overlaps. One pass over the outcomes' two columns (~1.4 CPU s on a
    year's warehouse), the findings counted beside the first ones."""
    rows, total = _first_found(
        con,
        "SELECT hospital_code, settlement_id FROM stay_outcomes "
        "WHERE member_number IS DISTINCT FROM member_number(national_id)",
    )

    def make(hospital: str, settlement: str) -> Finding:
        return Finding(
            "member_number",
            f"stay {hospital}/{settlement}",
            "the member number its outcome carries is not its national_id's",
            "a night would not find this stay among its person's other stays (annual cap, "
            "overlaps): do not run; if the seal chain is intact, the numbers alone drifted "
            "(rebuild them: `UPDATE stay_outcomes SET member_number = "
            "member_number(national_id)`); otherwise " + RESTORE,
        )

    return _capped(rows, total, make)


def recovery_plans(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    """What each plan recovered from each member (``member_plan_recoveries``) equals the
    ledger's recoveries, and each recovery balance's plan is the one they give (migration 020).
    One grouped read of the ledger's negative entries."""
    query = f"""
        WITH l AS (
            SELECT national_id, plan_code, -sum(amount_fen)::BIGINT AS recovered_fen
            FROM ledger_entries WHERE amount_fen < 0 GROUP BY ALL
        ), k AS (
            SELECT national_id, plan_code, count(*) AS n, sum(recovered_fen)::BIGINT AS fen
            FROM member_plan_recoveries GROUP BY ALL
        ), plans AS (
            SELECT national_id, {PLAN_OF} AS plan_code
            FROM l SEMI JOIN recovery_balances USING (national_id) GROUP BY ALL
        )
        SELECT national_id, plan_code, l.recovered_fen, k.fen, k.n, NULL, NULL
        FROM l FULL JOIN k USING (national_id, plan_code)
        WHERE l.recovered_fen IS DISTINCT FROM k.fen OR k.n > 1
        UNION ALL
        SELECT national_id, NULL, NULL, NULL, NULL, coalesce(b.plan_code, ''),
               coalesce(p.plan_code, '')
        FROM recovery_balances b LEFT JOIN plans p USING (national_id)
        WHERE b.plan_code IS DISTINCT FROM p.plan_code
    """
    rows, total = _first_found(con, query)

    def make(
        nid: str,
        plan: str | None,
        ledger: int | None,
        kept: int | None,
        n: int | None,
        shown: str | None,
        want: str | None,
    ) -> Finding:
        if plan is None:
            subject = f"member {mask_id(nid)}"
            detail = (
                f"the balance is shown under plan {shown or '(none)'}; the ledger's recoveries "
                f"give {want or '(none)'}"
            )
        else:
            subject = f"member {mask_id(nid)} plan {plan}"
            if n is not None and n > 1:
                detail = f"{n} rows of what the plan recovered from the member"
            else:
                detail = (
                    f"kept as recovered {fen_to_yuan(kept or 0)} ≠ the ledger's recoveries "
                    f"{fen_to_yuan(ledger or 0)}"
                )
        return Finding(
            "recovery_plan",
            subject,
            detail,
            "no money depends on it (the morning report shows the balance under a wrong plan, "
            "and later nights keep it wrong): if the seal chain is intact, rebuild both from "
            "the ledger (migration 020's statements); otherwise " + RESTORE,
        )

    return _capped(rows, total, make)


def seal_chain(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    """Recompute every seal; name the first run whose entries (or seal) changed."""
    rows = con.execute(SEAL_CHECK_SQL).fetchall()
    found = []
    for i, (position, run_id, problem, n_now, n_sealed, fen_now, fen_sealed) in enumerate(rows):
        first = "the first run whose ledger changed: " if i == 0 else ""
        if problem == "unsealed":
            detail = f"{n_now} entries carry run id {run_id}, which no seal covers (added by hand?)"
        elif problem in ("gap", "link"):
            detail = f"{first}run {run_id} (#{position}): the chain of seals is broken before it"
        else:
            detail = (
                f"{first}run {run_id} (#{position}) no longer gives its seal: sealed "
                f"{n_sealed} entries, {fen_to_yuan(fen_sealed)}; now {n_now} entries, "
                f"{fen_to_yuan(fen_now)}"
            )
        found.append(Finding("seal_chain", f"run {run_id}", detail, RESTORE))
        if len(found) >= SHOWN:
            break
    return found


def _disk_tables(con: duckdb.DuckDBPyConnection, disk: Sequence[BatchOnDisk]) -> None:
    """``disk_batches`` (one row per folder) and ``file_rows`` (every payments.csv row)."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE disk_batches (
            batch_id VARCHAR, has_csv BOOLEAN, file_sha256 VARCHAR, has_manifest BOOLEAN,
            readable BOOLEAN, m_batch_id VARCHAR, m_row_count VARCHAR, m_amount_sum VARCHAR,
            m_sha256 VARCHAR, m_seal VARCHAR, csv_path VARCHAR)
        """
    )
    rows = []
    for b in disk:
        m = b.manifest or {}
        rows.append(
            [
                b.batch_id,
                b.csv_path is not None,
                b.file_sha256,
                b.manifest is not None,
                bool(m),
                *(None if m.get(k) is None else str(m.get(k)) for k in _MANIFEST_KEYS),
                str(b.csv_path) if b.csv_path else None,
            ]
        )
    if rows:
        con.executemany("INSERT INTO disk_batches VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    columns = ", ".join(f"{c} VARCHAR" for c in ("folder_batch_id", *PAYMENT_COLUMNS))
    con.execute(f"CREATE OR REPLACE TEMP TABLE file_rows ({columns})")
    for b in disk:
        if b.csv_path is None:
            continue
        try:
            con.execute(
                "INSERT INTO file_rows SELECT ?, * FROM read_csv(?, header = true, "
                "all_varchar = true, auto_detect = false, strict_mode = true, quote = '\"', "
                "escape = '\"', delim = ',', columns = {"
                + ", ".join(f"'{c}': 'VARCHAR'" for c in PAYMENT_COLUMNS)
                + "})",
                [b.batch_id, str(b.csv_path)],
            )
        except duckdb.Error:
            con.execute("UPDATE disk_batches SET has_csv = NULL WHERE batch_id = ?", [b.batch_id])


_MANIFEST_KEYS = ("batch_id", "row_count", "amount_sum", "sha256", "seal")
# A payment file's amount (yuan, exactly 2 decimals) as fen; NULL when it is not that.
_AMOUNT = (
    "(CASE WHEN regexp_full_match({0}, '[0-9]+\\.[0-9]{{2}}') "
    "THEN replace({0}, '.', '')::BIGINT END)"
)

BATCH_CHECK_SQL = f"""
WITH known AS (
    SELECT b.batch_id, b.issued_at IS NOT NULL AS issued, b.row_count, b.amount_sum_fen,
           coalesce(s.seal, r.seal) AS seal, r.batch_id IS NOT NULL AS reconciled
    FROM payment_batches b
    LEFT JOIN ledger_seals s USING (run_id)
    LEFT JOIN reconciled_batches r USING (batch_id)
), counted AS (
    SELECT folder_batch_id AS batch_id, count(*) AS n,
           sum({_AMOUNT.format("amount")}) AS fen,
           count(*) FILTER (WHERE {_AMOUNT.format("amount")} IS NULL) AS bad_amounts
    FROM file_rows GROUP BY ALL
), wh AS (
    SELECT i.batch_id, i.instruction_id, i.national_id, i.payee_name, i.payee_account,
           i.amount_fen, i.entry_count, i.created_at
    FROM payment_instructions i SEMI JOIN disk_batches d USING (batch_id)
), fr AS (
    SELECT folder_batch_id AS batch_id, instruction_id, national_id, payee_name, payee_account,
           {_AMOUNT.format("amount")} AS amount_fen, TRY_CAST(entry_count AS INTEGER),
           TRY_CAST(created_at AS TIMESTAMPTZ)
    FROM file_rows
    WHERE batch_id = folder_batch_id AND currency = 'CNY'
), differ AS (
    -- the rows of either side without their twin on the other (EXCEPT ALL both ways), counted
    -- per batch: of each distinct row, |held by the warehouse − held by the file|. One
    -- grouping of both sides; DuckDB's EXCEPT ALL numbers each side's equal rows with a window
    -- (a year's 2.9 M instructions: 10–12 s against 3, with another process on 2 cores)
    SELECT batch_id, sum(abs(n_wh - n_fr)) AS n FROM (
        SELECT batch_id, instruction_id, national_id, payee_name, payee_account, amount_fen,
               entry_count, created_at,
               count(*) FILTER (WHERE in_wh) AS n_wh, count(*) FILTER (WHERE NOT in_wh) AS n_fr
        FROM (SELECT *, true AS in_wh FROM wh UNION ALL SELECT *, false FROM fr)
        GROUP BY ALL
    ) WHERE n_wh <> n_fr GROUP BY ALL
), foreign_rows AS (
    SELECT folder_batch_id AS batch_id, count(*) AS n FROM file_rows
    WHERE batch_id IS DISTINCT FROM folder_batch_id OR currency IS DISTINCT FROM 'CNY'
    GROUP BY ALL
)
SELECT coalesce(d.batch_id, k.batch_id) AS batch_id, k.batch_id IS NOT NULL AS known,
       coalesce(k.issued, false), coalesce(k.reconciled, false), d.batch_id IS NOT NULL,
       d.has_csv, d.file_sha256, d.has_manifest, d.readable, d.m_batch_id, d.m_row_count,
       d.m_amount_sum, d.m_sha256, d.m_seal, k.seal, k.row_count, k.amount_sum_fen,
       coalesce(c.n, 0), c.fen, coalesce(c.bad_amounts, 0), coalesce(x.n, 0), coalesce(f.n, 0)
FROM disk_batches d
FULL JOIN known k USING (batch_id)
LEFT JOIN counted c ON c.batch_id = coalesce(d.batch_id, k.batch_id)
LEFT JOIN differ x ON x.batch_id = coalesce(d.batch_id, k.batch_id)
LEFT JOIN foreign_rows f ON f.batch_id = coalesce(d.batch_id, k.batch_id)
ORDER BY 1
"""


def batch_findings(con: duckdb.DuckDBPyConnection, disk: Sequence[BatchOnDisk]) -> list[Finding]:
    """payouts.md, *Payment instructions*: each batch folder against its manifest and the
    warehouse; no batch on disk the warehouse does not know; no issued batch missing."""
    _disk_tables(con, disk)
    found: list[Finding] = []
    for row in con.execute(BATCH_CHECK_SQL).fetchall():
        found += _judge_batch(*row)
    return found


def _judge_batch(
    batch_id: str,
    known: bool,
    issued: bool,
    reconciled: bool,
    on_disk: bool,
    has_csv: bool | None,
    file_sha256: str | None,
    has_manifest: bool,
    readable: bool,
    m_batch_id: str | None,
    m_row_count: str | None,
    m_amount_sum: str | None,
    m_sha256: str | None,
    m_seal: str | None,
    seal: str | None,
    row_count: int | None,
    amount_sum_fen: int | None,
    file_rows: int,
    file_fen: int | None,
    bad_amounts: int,
    differing: int,
    foreign: int,
) -> list[Finding]:
    subject = f"batch {batch_id}"

    def f(check: str, detail: str, todo: str) -> Finding:
        return Finding(check, subject, detail, todo)

    resend = (
        "the file no longer says what the warehouse paid: find who changed it, and tell the bank "
        "before it pays this folder; the warehouse's instructions of the batch are the truth"
    )
    if not on_disk:
        if not issued:
            return []  # committed, not yet written: the next run writes it
        return [
            f(
                "batch_missing",
                "issued by the warehouse, but its folder is not in the outbox",
                "restore the folder from the outbox's backup or the bank's copy (the warehouse "
                "still holds its instructions); never re-issue it under another id",
            )
        ]
    if not known:
        if not has_manifest:
            return [
                f(
                    "batch_incomplete",
                    "a folder without a manifest that the warehouse does not know (the bank "
                    "ignores it)",
                    "remove the folder once you have checked that no run is writing it",
                )
            ]
        return [
            f(
                "batch_unknown",
                "in the outbox, but the warehouse has no such batch (a warehouse restored from "
                "an older backup, or the wrong --warehouse)",
                "if this warehouse is a restored backup, run `claims reconcile`; otherwise "
                "point --warehouse at the warehouse of this outbox",
            )
        ]
    if not has_manifest:
        if not issued:
            return []  # the next run writes it again, byte for byte
        return [
            f(
                "manifest_missing",
                "the batch was issued but its folder has no _manifest.json",
                "restore the folder from the outbox's backup or the bank's copy",
            )
        ]
    out = []
    if not readable:
        return [f("manifest_unreadable", "the _manifest.json is not a JSON object", resend)]
    if has_csv is None or not has_csv:
        what = "missing" if has_csv is not None else "not a valid payments.csv"
        return [f("file_unreadable", f"payments.csv is {what}", resend)]
    if m_batch_id != batch_id:
        out.append(f("manifest_batch_id", "the manifest names another batch", resend))
    if m_sha256 != file_sha256:
        out.append(f("manifest_sha256", "payments.csv does not have the manifest's sha256", resend))
    if m_row_count != str(file_rows):
        out.append(
            f(
                "manifest_row_count",
                f"manifest says {m_row_count} rows, the file has {file_rows}",
                resend,
            )
        )
    m_fen = _fen(m_amount_sum)
    if m_fen is None or file_fen is None or m_fen != file_fen or bad_amounts:
        shown = fen_to_yuan(file_fen) if file_fen is not None else "unreadable amounts"
        out.append(
            f(
                "manifest_amount_sum",
                f"manifest says {m_amount_sum}, the file sums to {shown}",
                resend,
            )
        )
    if differing or foreign or file_rows != row_count:
        out.append(
            f(
                "file_rows",
                f"{differing + foreign} row(s) of payments.csv differ from the warehouse's "
                f"instructions of the batch ({row_count} instructions, "
                f"{fen_to_yuan(amount_sum_fen or 0)})",
                resend,
            )
        )
    if m_seal is not None and m_seal != seal:
        detail = (
            "the manifest carries another ledger seal than the warehouse's for its run"
            if seal is not None
            else "the manifest carries a ledger seal, but the warehouse has none for its run"
        )
        out.append(f("manifest_seal", detail, RESTORE))
    return out


def _fen(text: str | None) -> int | None:
    if text is None:
        return None
    whole, dot, part = text.partition(".")
    if not whole.isdigit() or dot != "." or len(part) != 2 or not part.isdigit():
        return None
    return int(whole) * 100 + int(part)


# ---------------------------------------------------------------------------------------------
# Reconcile: take batches a restored warehouse does not know back into it, as paid
# ---------------------------------------------------------------------------------------------

TAKE_BACK_SQL = f"""
CREATE OR REPLACE TEMP TABLE taken AS
SELECT folder_batch_id AS batch_id, instruction_id, national_id, payee_name, payee_account,
       {_AMOUNT.format("amount")} AS amount_fen, entry_count::INTEGER AS entry_count,
       created_at::TIMESTAMPTZ AS created_at
FROM file_rows SEMI JOIN take USING (folder_batch_id);

INSERT INTO payment_instructions BY NAME SELECT * FROM taken;

INSERT INTO payment_batches
SELECT batch_id, CASE WHEN batch_id LIKE 'B%' THEN batch_id[2:] ELSE batch_id END,
       min(created_at), count(*), sum(amount_fen)::BIGINT, $at
FROM taken GROUP BY batch_id;

INSERT INTO reconciled_batches
SELECT t.batch_id, d.m_seal, count(*), sum(t.amount_fen)::BIGINT, $at
FROM taken t JOIN disk_batches d USING (batch_id) GROUP BY t.batch_id, d.m_seal;

-- Paid by a run this warehouse no longer has: owed against the entries the next run posts
-- again, so that the identity holds now and nothing is paid twice.
-- A new balance is shown under the plan that recovered most from its member (migration 020);
-- taking a batch back recovers nothing, so a balance that exists keeps its plan.
INSERT INTO recovery_balances (national_id, recovery_due_fen, plan_code)
SELECT t.national_id, t.fen, p.plan_code
FROM (SELECT national_id, sum(amount_fen)::BIGINT AS fen FROM taken GROUP BY ALL) t
LEFT JOIN (
    SELECT national_id, {PLAN_OF} AS plan_code
    FROM member_plan_recoveries WHERE national_id IN (SELECT national_id FROM taken)
    GROUP BY ALL
) p USING (national_id)
ON CONFLICT (national_id) DO UPDATE
SET recovery_due_fen = recovery_balances.recovery_due_fen + excluded.recovery_due_fen;
-- only balances that are not 0 are kept (migration 017): a payout held back may come to 0 here
DELETE FROM recovery_balances
WHERE recovery_due_fen = 0 AND national_id IN (SELECT national_id FROM taken);
"""


@dataclass(frozen=True)
class TakenBack:
    batches: list[str]
    instructions: int
    amount_fen: int


def unknown_batches(con: duckdb.DuckDBPyConnection, batch_ids: Sequence[str]) -> list[str]:
    """Of these batch ids (folders with a manifest), those the warehouse has no record of."""
    if not batch_ids:
        return []
    known = {
        str(r[0])
        for r in con.execute(
            "SELECT batch_id FROM payment_batches WHERE list_contains(?, batch_id)",
            [list(batch_ids)],
        ).fetchall()
    }
    return [b for b in batch_ids if b not in known]


def take_back(
    con: duckdb.DuckDBPyConnection, disk: Sequence[BatchOnDisk], batch_ids: Sequence[str], at: Any
) -> tuple[TakenBack, list[Finding]]:
    """Record the instructions of issued batches the warehouse does not know as its own, paid.

    Call inside a transaction. Refuses (returns the findings, records nothing) when one of the
    batches does not match its own manifest: a file that cannot be trusted is not booked.
    """
    con.execute("CREATE OR REPLACE TEMP TABLE take (folder_batch_id VARCHAR)")
    con.executemany("INSERT INTO take VALUES (?)", [[b] for b in batch_ids])
    problems = [
        f
        for f in batch_findings(con, [d for d in disk if d.batch_id in set(batch_ids)])
        if f.check not in ("batch_unknown", "batch_missing")
    ]
    if problems:
        return TakenBack([], 0, 0), problems
    # batch_findings built disk_batches and file_rows for the chosen batches.
    run_script(con, TAKE_BACK_SQL, {"at": at})
    row = con.execute("SELECT count(*), coalesce(sum(amount_fen), 0) FROM taken").fetchone()
    n, fen = (int(row[0]), int(row[1])) if row else (0, 0)
    return TakenBack(list(batch_ids), n, fen), []


def pending_migrations(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Migrations this code has that the warehouse file has not had yet (a read-only command
    cannot apply them)."""
    have = {int(r[0]) for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
    return [version for version, _, _ in _migrations() if version not in have]


def mark_restored(
    con: duckdb.DuckDBPyConnection, *, at: Any, backup_created_at: str, last_seal: str | None
) -> None:
    """Record that this warehouse was restored: paying waits for ``reconcile``."""
    con.execute("INSERT INTO restores VALUES (?, ?, ?, NULL)", [at, backup_created_at, last_seal])


def pending_restore(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether a restore has not yet been reconciled (and verified)."""
    row = con.execute("SELECT count(*) FROM restores WHERE reconciled_at IS NULL").fetchone()
    return bool(row and row[0])


def mark_reconciled(con: duckdb.DuckDBPyConnection, at: Any) -> None:
    con.execute("UPDATE restores SET reconciled_at = ? WHERE reconciled_at IS NULL", [at])


def checkpoint(con: duckdb.DuckDBPyConnection) -> None:
    """Write everything of the write-ahead log into the file (before a file copy), and merge the
    row groups that nights' deletes thinned: a night's checkpoints merge none (ADR 0016), and a
    plain checkpoint with an empty log writes nothing, so a backup settles (``settle``)."""
    settle(con)


def last_seal(con: duckdb.DuckDBPyConnection) -> tuple[int, str | None]:
    """(number of sealed runs, the newest seal)."""
    row = con.execute("SELECT count(*), arg_max(seal, seq) FROM ledger_seals").fetchone()
    return (int(row[0]), row[1]) if row else (0, None)
