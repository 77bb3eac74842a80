CREATE TABLE request_nonces (
    key  TEXT PRIMARY KEY,
    at   BIGINT NOT NULL
);
CREATE INDEX request_nonces_by_age ON request_nonces(at);
