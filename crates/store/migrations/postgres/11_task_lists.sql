-- Listings (the console, GET /v1/tasks): a program's tasks newest first, and an identity's.
CREATE INDEX tasks_by_program ON tasks(program_id, seq);
CREATE INDEX tasks_by_submitter ON tasks(submitter, seq);
