CREATE TABLE programs (
    id          TEXT PRIMARY KEY,
    image_id    TEXT NOT NULL,
    controller  BYTEA NOT NULL,
    circuit     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX programs_by_image ON programs(image_id);
CREATE TABLE tasks (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    program_id       TEXT NOT NULL REFERENCES programs(id),
    args             TEXT NOT NULL,
    root             BYTEA NOT NULL,
    receipt_kind     TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    input            BYTEA,
    receipt          BYTEA,
    journal          BYTEA,
    logs             TEXT NOT NULL DEFAULT '[]',
    result           TEXT,
    user_cycles      BIGINT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    claims           BIGINT NOT NULL DEFAULT 0,
    expected_journal BYTEA
);
CREATE INDEX tasks_unfinished ON tasks(seq) WHERE status NOT IN ('done', 'failed', 'cancelled');
CREATE INDEX tasks_proving ON tasks(seq) WHERE status = 'proving';
CREATE TABLE task_events (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id  TEXT NOT NULL REFERENCES tasks(id),
    status   TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX task_events_by_task ON task_events(task_id, seq);
CREATE TABLE volumes (
    program_id  TEXT PRIMARY KEY REFERENCES programs(id),
    image       BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL
);
CREATE TABLE idempotency_keys (
    program_id    TEXT NOT NULL REFERENCES programs(id),
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    task_id       TEXT NOT NULL REFERENCES tasks(id),
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (program_id, key)
);
CREATE TABLE prover_leases (
    lease_id    TEXT PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks(id),
    worker      TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    outcome     TEXT,
    reason      TEXT
);
CREATE INDEX prover_leases_by_task ON prover_leases(task_id);
CREATE INDEX prover_leases_open ON prover_leases(worker) WHERE outcome IS NULL;
CREATE TABLE smt_updates (
    seq          BIGINT PRIMARY KEY,
    domain       TEXT NOT NULL,
    number       BIGINT NOT NULL,
    block_hash   BYTEA NOT NULL,
    state_root   BYTEA NOT NULL,
    header       BYTEA NOT NULL,
    prev_root    BYTEA NOT NULL,
    root         BYTEA NOT NULL,
    inserted_at  BIGINT NOT NULL,
    UNIQUE (domain, number)
);
