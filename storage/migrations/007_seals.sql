-- A tamper-evident ledger (payouts.md; issue 17): every committed run seals its ledger entries
-- with a hash chained to the previous run's seal, in the same transaction as the entries.
--
--   seal = sha256(prev_seal || chr(10) || lines)
--   lines = the run's entries, one line each, ordered by entry_id, joined by chr(10):
--           entry_id|run_id|hospital_code|settlement_id|version|plan_code|national_id|
--           amount_fen|reason|posted_at as microseconds since 1970-01-01 UTC
--   prev_seal of the first run: 64 zeros. A run with no entries seals the empty string.
--
-- storage/seals.py computes it for each new run; `claims verify` recomputes every link and
-- names the first run whose entries no longer give its seal. Grain: run_id; seq orders the chain.
CREATE TABLE ledger_seals (
    run_id          VARCHAR PRIMARY KEY,
    seq             BIGINT NOT NULL UNIQUE,
    entry_count     BIGINT NOT NULL,
    amount_sum_fen  BIGINT NOT NULL,
    prev_seal       VARCHAR NOT NULL,
    seal            VARCHAR NOT NULL,
    sealed_at       TIMESTAMPTZ NOT NULL
);

-- Batches found in the outbox and taken back into a restored warehouse by `claims reconcile`:
-- their instructions were paid by a run this warehouse no longer has. Grain: batch_id.
CREATE TABLE reconciled_batches (
    batch_id        VARCHAR PRIMARY KEY,
    seal            VARCHAR,               -- the seal in the batch's manifest, if any
    row_count       BIGINT NOT NULL,
    amount_sum_fen  BIGINT NOT NULL,
    reconciled_at   TIMESTAMPTZ NOT NULL
);

-- A warehouse restored from a backup (`claims restore`) pays nothing until `claims reconcile`
-- has taken back the batches issued after the backup and verify found nothing. Grain: one row
-- per restore.
CREATE TABLE restores (
    restored_at        TIMESTAMPTZ NOT NULL,
    backup_created_at  VARCHAR NOT NULL,
    backup_last_seal   VARCHAR,
    reconciled_at      TIMESTAMPTZ            -- NULL until reconcile and verify passed
);

-- Seal the runs committed before this migration, oldest first.
INSERT INTO ledger_seals
WITH RECURSIVE digests AS (
    SELECT r.run_id,
           row_number() OVER (ORDER BY r.started_at, r.run_id) AS seq,
           count(e.entry_id) AS entry_count,
           coalesce(sum(e.amount_fen), 0)::BIGINT AS amount_sum_fen,
           coalesce(string_agg(concat_ws('|', e.entry_id, e.run_id, e.hospital_code,
                                         e.settlement_id, e.version, e.plan_code, e.national_id,
                                         e.amount_fen, e.reason, epoch_us(e.posted_at)),
                               chr(10) ORDER BY e.entry_id), '') AS lines
    FROM runs r LEFT JOIN ledger_entries e USING (run_id)
    GROUP BY r.run_id, r.started_at
), chain AS (
    SELECT run_id, seq, entry_count, amount_sum_fen, repeat('0', 64) AS prev_seal,
           sha256(repeat('0', 64) || chr(10) || lines) AS seal
    FROM digests WHERE seq = 1
    UNION ALL
    SELECT d.run_id, d.seq, d.entry_count, d.amount_sum_fen, c.seal,
           sha256(c.seal || chr(10) || d.lines)
    FROM chain c JOIN digests d ON d.seq = c.seq + 1
)
SELECT run_id, seq, entry_count, amount_sum_fen, prev_seal, seal, now() FROM chain;
