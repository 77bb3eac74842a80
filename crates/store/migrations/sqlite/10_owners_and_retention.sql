ALTER TABLE programs ADD COLUMN owner TEXT;
ALTER TABLE tasks ADD COLUMN submitter TEXT;
CREATE INDEX tasks_unfinished_by_submitter ON tasks(submitter)
    WHERE status NOT IN ('done', 'failed', 'cancelled');
CREATE INDEX tasks_finished_with_payloads ON tasks(updated_at)
    WHERE status IN ('done', 'failed', 'cancelled') AND (input IS NOT NULL OR receipt IS NOT NULL);
CREATE INDEX prover_leases_by_worker ON prover_leases(worker, issued_at);
