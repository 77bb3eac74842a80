-- Proving progress: segments proven and their total, as the prover holding the lease last
-- reported them on a heartbeat.
ALTER TABLE tasks ADD COLUMN progress_done INTEGER;
ALTER TABLE tasks ADD COLUMN progress_total INTEGER;
