CREATE TABLE programs (
    id          TEXT PRIMARY KEY,
    image_id    TEXT NOT NULL,
    controller  BLOB NOT NULL,
    circuit     BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE tasks (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    program_id       TEXT NOT NULL REFERENCES programs(id),
    args             TEXT NOT NULL,
    root             BLOB NOT NULL,
    receipt_kind     TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    input            BLOB,
    receipt          BLOB,
    journal          BLOB,
    logs             TEXT NOT NULL DEFAULT '[]',
    result           TEXT,
    user_cycles      INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER
);
CREATE INDEX tasks_unfinished ON tasks(seq) WHERE status NOT IN ('done', 'failed', 'cancelled');
CREATE TABLE task_events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id  TEXT NOT NULL REFERENCES tasks(id),
    status   TEXT NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX task_events_by_task ON task_events(task_id, seq);
