CREATE TABLE volumes (
    program_id  TEXT PRIMARY KEY REFERENCES programs(id),
    image       BLOB NOT NULL,
    updated_at  INTEGER NOT NULL
);
