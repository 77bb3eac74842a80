-- `/health` and `/metrics` count tasks by status and prover leases by outcome on every request.
-- Counted over the whole tables, their cost grew with the service's history: now the finished
-- ones are kept counted by a trigger, in the transaction that finishes them, and only unfinished
-- tasks and open leases (partial indexes) are counted when asked. A count is spread over 16
-- rows (`shard`, from the row's id), so replicas finishing tasks at once rarely wait on one row.
CREATE TABLE finished_counts (
    kind  TEXT NOT NULL,     -- 'task' (by status) or 'lease' (by outcome)
    value TEXT NOT NULL,
    shard INTEGER NOT NULL,
    n     BIGINT NOT NULL,
    PRIMARY KEY (kind, value, shard)
);
INSERT INTO finished_counts (kind, value, shard, n)
    SELECT 'task', status, 0, COUNT(*) FROM tasks WHERE status IN ('done', 'failed', 'cancelled') GROUP BY status;
INSERT INTO finished_counts (kind, value, shard, n)
    SELECT 'lease', outcome, 0, COUNT(*) FROM prover_leases WHERE outcome IS NOT NULL GROUP BY outcome;
-- Moves one row's count from `old_v` to `new_v` (NULL: not counted).
CREATE FUNCTION zkcoproc_move_count(t_kind TEXT, old_v TEXT, new_v TEXT, t_shard INTEGER)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF old_v IS NOT DISTINCT FROM new_v THEN
        RETURN;
    END IF;
    IF old_v IS NOT NULL THEN
        UPDATE finished_counts SET n = n - 1 WHERE kind = t_kind AND value = old_v AND shard = t_shard;
    END IF;
    IF new_v IS NOT NULL THEN
        INSERT INTO finished_counts AS f (kind, value, shard, n) VALUES (t_kind, new_v, t_shard, 1)
            ON CONFLICT (kind, value, shard) DO UPDATE SET n = f.n + 1;
    END IF;
END
$$;
-- Tasks are counted by finished status.
CREATE FUNCTION zkcoproc_count_task() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_v TEXT;
    new_v TEXT;
    t_shard INTEGER;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status IN ('done', 'failed', 'cancelled') THEN
        old_v := OLD.status;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status IN ('done', 'failed', 'cancelled') THEN
        new_v := NEW.status;
    END IF;
    IF TG_OP = 'DELETE' THEN
        t_shard := abs(hashtext(OLD.id) % 16);
    ELSE
        t_shard := abs(hashtext(NEW.id) % 16);
    END IF;
    PERFORM zkcoproc_move_count('task', old_v, new_v, t_shard);
    RETURN NULL;
END
$$;
-- Leases are counted by outcome, once they have one.
CREATE FUNCTION zkcoproc_count_lease() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_v TEXT;
    new_v TEXT;
    t_shard INTEGER;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_v := OLD.outcome;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_v := NEW.outcome;
    END IF;
    IF TG_OP = 'DELETE' THEN
        t_shard := abs(hashtext(OLD.lease_id) % 16);
    ELSE
        t_shard := abs(hashtext(NEW.lease_id) % 16);
    END IF;
    PERFORM zkcoproc_move_count('lease', old_v, new_v, t_shard);
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_count_finished AFTER INSERT OR DELETE OR UPDATE OF status ON tasks
    FOR EACH ROW EXECUTE FUNCTION zkcoproc_count_task();
CREATE TRIGGER leases_count_ended AFTER INSERT OR DELETE OR UPDATE OF outcome ON prover_leases
    FOR EACH ROW EXECUTE FUNCTION zkcoproc_count_lease();
-- The provers seen in the last minutes: leases issued since then, found by issue time.
CREATE INDEX prover_leases_by_issue ON prover_leases(issued_at);
