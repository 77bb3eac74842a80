-- Webhooks: a program's default callback URL and signing secret, a task's callback URL, and
-- the durable outbox of deliveries (one per finished task that has a URL) with its attempts.
ALTER TABLE programs ADD COLUMN callback_url TEXT;
ALTER TABLE programs ADD COLUMN webhook_secret TEXT;
ALTER TABLE tasks ADD COLUMN callback_url TEXT;
CREATE TABLE webhook_deliveries (
    task_id          TEXT PRIMARY KEY REFERENCES tasks(id),
    program_id       TEXT NOT NULL,
    url              TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    state            TEXT NOT NULL DEFAULT 'pending',
    lease_owner      TEXT,
    lease_expires_at BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE state = 'pending';
CREATE TABLE webhook_attempts (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id TEXT NOT NULL REFERENCES tasks(id),
    at      BIGINT NOT NULL,
    status  BIGINT,
    error   TEXT
);
CREATE INDEX webhook_attempts_by_task ON webhook_attempts(task_id, seq);
