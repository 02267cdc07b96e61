-- ledger_entries without its PRIMARY KEY index. Every commit that posts writes its entries' ids
-- into an index of every entry ever posted (3.3 M after a year), and every checkpoint after it
-- writes that index again: a backfill chunk's ~400,000 entries on an eleven-month warehouse cost
-- ~1.2 CPU s with the key (insert 0.66, commit 0.22, checkpoint 0.31) against ~0.4 without it,
-- and more the longer the history. The grain (one entry per entry_id, payouts.md: unique) is kept
-- by the one path that writes entries (storage/ledger.py, post): ids are `<run_id>-<n>`, numbered
-- 1..n within the run, and a run id that already has entries is refused inside the commit's
-- transaction before anything is posted (`runs` keeps its key: a run id is committed once).
-- `claims verify` checks the grain (entry_grain).
-- Rebuilt (as 014 and 015 did) in the order the rows had: the ledger in the order it was posted.

CREATE TABLE ledger_entries_021 (
    entry_id       VARCHAR NOT NULL,
    run_id         VARCHAR NOT NULL,
    hospital_code  VARCHAR NOT NULL,
    settlement_id  VARCHAR NOT NULL,
    version        BIGINT NOT NULL,
    plan_code      VARCHAR NOT NULL,
    national_id    VARCHAR NOT NULL,
    amount_fen     BIGINT NOT NULL,
    reason         VARCHAR NOT NULL,
    posted_at      TIMESTAMPTZ NOT NULL
);
INSERT INTO ledger_entries_021 SELECT * FROM ledger_entries ORDER BY rowid;
DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_021 RENAME TO ledger_entries;
