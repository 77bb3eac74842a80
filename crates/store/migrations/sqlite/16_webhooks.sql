-- Webhooks: a program's default callback URL and signing secret, a task's callback URL, and
-- the durable outbox of deliveries (one per finished task that has a URL) with its attempts.
ALTER TABLE programs ADD COLUMN callback_url TEXT;
ALTER TABLE programs ADD COLUMN webhook_secret TEXT;
ALTER TABLE tasks ADD COLUMN callback_url TEXT;
CREATE TABLE webhook_deliveries (
    task_id          TEXT PRIMARY KEY REFERENCES tasks(id),
    program_id       TEXT NOT NULL,
    url              TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    state            TEXT NOT NULL DEFAULT 'pending',
    lease_owner      TEXT,
    lease_expires_at INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE state = 'pending';
CREATE TABLE webhook_attempts (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL REFERENCES tasks(id),
    at      INTEGER NOT NULL,
    status  INTEGER,
    error   TEXT
);
CREATE INDEX webhook_attempts_by_task ON webhook_attempts(task_id, seq);
