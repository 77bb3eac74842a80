ALTER TABLE smt_updates ADD COLUMN admitted_by TEXT NOT NULL DEFAULT 'rpc';
ALTER TABLE smt_updates ADD COLUMN beacon_slot INTEGER;
CREATE TABLE light_client_states (
    domain      TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    state       BLOB NOT NULL,
    updated_at  INTEGER NOT NULL
);
