-- The review desk (operations.md, `claims desk` / `claims operators`; issue 19): who may sign in,
-- and every view of a review item, for audit.

-- One row per operator (name). Never deleted: a disabled operator keeps their decisions' name.
CREATE TABLE operators (
    operator       VARCHAR PRIMARY KEY,   -- a staff login (lowercase letters, digits, . _ -)
    role           VARCHAR NOT NULL,      -- reviewer | approver | auditor
    password_hash  VARCHAR NOT NULL,      -- scrypt$n$r$p$salt_hex$hash_hex
    is_disabled    BOOLEAN NOT NULL DEFAULT false,
    created_at     TIMESTAMPTZ NOT NULL,
    disabled_at    TIMESTAMPTZ
);

-- Append-only: one row per item page shown to a signed-in operator.
-- Grain: (operator, hospital_code, settlement_id, viewed_at).
CREATE TABLE desk_views (
    operator       VARCHAR NOT NULL,
    hospital_code  VARCHAR NOT NULL,
    settlement_id  VARCHAR NOT NULL,
    version        BIGINT NOT NULL,
    viewed_at      TIMESTAMPTZ NOT NULL
);
