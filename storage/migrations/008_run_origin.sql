-- Which Prefect flow run committed a run (a retried flow run re-processes what failed in it),
-- and the warehouse's own identity, which the outbox records (payouts.md, *Exactly-once*).

ALTER TABLE runs ADD COLUMN flow_run_id VARCHAR;

-- One row: the identity of this warehouse file, made once when it is created.
CREATE TABLE warehouse_identity (
    warehouse_id  VARCHAR NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
INSERT INTO warehouse_identity SELECT CAST(uuid() AS VARCHAR), now();
