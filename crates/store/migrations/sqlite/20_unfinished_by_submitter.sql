-- The per-identity quota check counts an identity's unfinished tasks on every submit. The
-- partial index of migration 10 held only the submitter, so SQLite's planner preferred the full
-- `tasks_by_submitter (submitter, seq)` of migration 17 and read every task the identity ever
-- submitted, finished ones included, each row looked up for its status: a submit's cost grew
-- with the identity's history. With the status in it this index answers the count alone (a
-- covering index), over the identity's unfinished tasks only.
DROP INDEX tasks_unfinished_by_submitter;
CREATE INDEX tasks_unfinished_by_submitter ON tasks(submitter, status)
    WHERE status NOT IN ('done', 'failed', 'cancelled');
-- (PostgreSQL's planner already counts through the partial index, with an index-only scan: its
-- migrations have no counterpart.)
