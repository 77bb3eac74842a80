-- Fair turns: runners claim tasks by turn, then age, not by age alone, and provers lease them
-- the same way. A task's turn is set when it is inserted: after every turn already started and
-- after its submitter's previous task, so an identity with a thousand tasks queued has them one
-- turn apart and an identity arriving later is served next (see the README, "Fair turns").
-- Tasks already stored keep their order: their turn is their sequence number.
ALTER TABLE tasks ADD COLUMN turn BIGINT NOT NULL DEFAULT 0;
UPDATE tasks SET turn = seq;
DROP INDEX tasks_unfinished;
CREATE INDEX tasks_unfinished ON tasks(turn, seq) WHERE status NOT IN ('done', 'failed', 'cancelled');
-- The newest turn started: a task cancelled while queued is left out (cancelling its own last
-- task must not move an identity's backlog ahead of everyone else).
CREATE INDEX tasks_started_turns ON tasks(turn) WHERE status NOT IN ('queued', 'cancelled');
