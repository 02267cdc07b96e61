-- What each (stay, plan, member) has been posted so far, kept by storage/ledger.py `post` in the
-- same transaction as the entries it sums, so a night reads the balances of the stays it
-- recomputes instead of summing the whole ledger. Derived: it always equals the sum of
-- ledger_entries per key (`claims verify` checks it, check `ledger_balance`); the ledger stays
-- the record. No PRIMARY KEY, like the other derived tables (migration 005): `post` deletes and
-- re-inserts the keys it posted, one row per key by construction.
CREATE TABLE ledger_balances (
    hospital_code   VARCHAR NOT NULL,
    settlement_id   VARCHAR NOT NULL,
    plan_code       VARCHAR NOT NULL,
    national_id     VARCHAR NOT NULL,
    posted_fen      BIGINT NOT NULL,     -- sum(amount_fen) of the key's entries
    last_version    BIGINT NOT NULL,     -- the version of the key's newest entry
    last_posted_at  TIMESTAMPTZ NOT NULL -- when that entry was posted
);

INSERT INTO ledger_balances
SELECT hospital_code, settlement_id, plan_code, national_id, sum(amount_fen)::BIGINT,
       arg_max(version, posted_at), max(posted_at)
FROM ledger_entries
GROUP BY ALL;
