CREATE TABLE prover_leases (
    lease_id    TEXT PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks(id),
    worker      TEXT NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    outcome     TEXT,
    reason      TEXT
);
CREATE INDEX prover_leases_by_task ON prover_leases(task_id);
CREATE INDEX prover_leases_open ON prover_leases(worker) WHERE outcome IS NULL;
CREATE INDEX tasks_proving ON tasks(seq) WHERE status = 'proving';
ALTER TABLE tasks ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
