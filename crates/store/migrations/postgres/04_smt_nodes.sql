CREATE TABLE smt_nodes (
    hash  BYTEA PRIMARY KEY,
    node  BYTEA NOT NULL
);
