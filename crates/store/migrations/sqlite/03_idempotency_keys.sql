CREATE TABLE idempotency_keys (
    program_id    TEXT NOT NULL REFERENCES programs(id),
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    task_id       TEXT NOT NULL REFERENCES tasks(id),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (program_id, key)
);
