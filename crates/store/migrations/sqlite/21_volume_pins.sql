-- Volume pins: a reader that needs one version of a volume for longer than the next 16 commits
-- (a volume export, streamed at its client's pace) pins it. A commit deletes only the block rows
-- that no pinned version and none of the last 16 versions needs, and first drops the pins that
-- expired (their holder stopped renewing them: it crashed, finished or gave up). A pin's row
-- exists for as long as the rows of its version are all kept.
CREATE TABLE volume_pins (
    id         TEXT PRIMARY KEY,
    program_id TEXT NOT NULL,
    version    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX volume_pins_by_program ON volume_pins (program_id, version);
