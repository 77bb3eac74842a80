ALTER TABLE smt_updates ADD COLUMN admitted_by TEXT NOT NULL DEFAULT 'rpc';
ALTER TABLE smt_updates ADD COLUMN beacon_slot BIGINT;
CREATE TABLE light_client_states (
    domain      TEXT PRIMARY KEY,
    version     BIGINT NOT NULL,
    state       BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL
);
