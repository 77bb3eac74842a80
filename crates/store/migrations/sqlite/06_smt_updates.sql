CREATE TABLE smt_updates (
    seq          INTEGER PRIMARY KEY,
    domain       TEXT NOT NULL,
    number       INTEGER NOT NULL,
    block_hash   BLOB NOT NULL,
    state_root   BLOB NOT NULL,
    header       BLOB NOT NULL,
    prev_root    BLOB NOT NULL,
    root         BLOB NOT NULL,
    inserted_at  INTEGER NOT NULL,
    UNIQUE (domain, number)
);
