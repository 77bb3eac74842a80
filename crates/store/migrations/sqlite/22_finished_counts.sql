-- `/health` and `/metrics` count tasks by status and prover leases by outcome on every request.
-- Counted over the whole tables, their cost grew with the service's history (40 ms at 100 000
-- tasks, on the store's one connection): now the finished ones are kept counted by triggers, in
-- the transaction that finishes them, and only unfinished tasks and open leases (partial
-- indexes) are counted when asked. `shard` spreads a count over rows (PostgreSQL's replicas
-- would otherwise all wait on one row); SQLite has one writer and uses shard 0.
CREATE TABLE finished_counts (
    kind  TEXT NOT NULL,     -- 'task' (by status) or 'lease' (by outcome)
    value TEXT NOT NULL,
    shard INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (kind, value, shard)
);
INSERT INTO finished_counts (kind, value, shard, n)
    SELECT 'task', status, 0, COUNT(*) FROM tasks WHERE status IN ('done', 'failed', 'cancelled') GROUP BY status;
INSERT INTO finished_counts (kind, value, shard, n)
    SELECT 'lease', outcome, 0, COUNT(*) FROM prover_leases WHERE outcome IS NOT NULL GROUP BY outcome;
CREATE TRIGGER tasks_count_finished AFTER UPDATE OF status ON tasks
    WHEN NEW.status IN ('done', 'failed', 'cancelled') AND OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO finished_counts (kind, value, shard, n) VALUES ('task', NEW.status, 0, 1)
        ON CONFLICT (kind, value, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tasks_count_unfinished AFTER UPDATE OF status ON tasks
    WHEN OLD.status IN ('done', 'failed', 'cancelled') AND OLD.status IS NOT NEW.status
BEGIN
    UPDATE finished_counts SET n = n - 1 WHERE kind = 'task' AND value = OLD.status AND shard = 0;
END;
CREATE TRIGGER tasks_count_inserted AFTER INSERT ON tasks
    WHEN NEW.status IN ('done', 'failed', 'cancelled')
BEGIN
    INSERT INTO finished_counts (kind, value, shard, n) VALUES ('task', NEW.status, 0, 1)
        ON CONFLICT (kind, value, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tasks_count_deleted AFTER DELETE ON tasks
    WHEN OLD.status IN ('done', 'failed', 'cancelled')
BEGIN
    UPDATE finished_counts SET n = n - 1 WHERE kind = 'task' AND value = OLD.status AND shard = 0;
END;
CREATE TRIGGER leases_count_ended AFTER UPDATE OF outcome ON prover_leases
    WHEN NEW.outcome IS NOT NULL AND OLD.outcome IS NOT NEW.outcome
BEGIN
    INSERT INTO finished_counts (kind, value, shard, n) VALUES ('lease', NEW.outcome, 0, 1)
        ON CONFLICT (kind, value, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER leases_count_reopened AFTER UPDATE OF outcome ON prover_leases
    WHEN OLD.outcome IS NOT NULL AND OLD.outcome IS NOT NEW.outcome
BEGIN
    UPDATE finished_counts SET n = n - 1 WHERE kind = 'lease' AND value = OLD.outcome AND shard = 0;
END;
CREATE TRIGGER leases_count_inserted AFTER INSERT ON prover_leases
    WHEN NEW.outcome IS NOT NULL
BEGIN
    INSERT INTO finished_counts (kind, value, shard, n) VALUES ('lease', NEW.outcome, 0, 1)
        ON CONFLICT (kind, value, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER leases_count_deleted AFTER DELETE ON prover_leases
    WHEN OLD.outcome IS NOT NULL
BEGIN
    UPDATE finished_counts SET n = n - 1 WHERE kind = 'lease' AND value = OLD.outcome AND shard = 0;
END;
-- The provers seen in the last minutes: leases issued since then, found by issue time.
CREATE INDEX prover_leases_by_issue ON prover_leases(issued_at);
