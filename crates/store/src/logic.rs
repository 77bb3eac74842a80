//! The [`Store`] logic, once, for every [`Backend`]: claims, transitions, leases, attempts,
//! cancellation, volumes, nonces and the tree's history. Every method is one transaction.

use std::time::Duration;

use crate::sql::{args, Arg, Backend, Mode, Row, Tx};
use crate::{
    Admission, AttemptOutcome, CallbackAttempt, CancelOutcome, DueWebhook, Idempotency, Inserted, LeaseRules,
    Leased, NewBlock, NewProgram, NewTask, Opening, ProgramInfo, ProgramSummary, ProverAttempt, ProverLease,
    RenewOutcome, Result, SmtUpdate, StageUpdate, StatusCounts, Store, StoreError, TaskChange, TaskEvent,
    TaskFilter, TaskRecord, TaskStatus, TaskSummary, VolumeHead, VolumeWrite, WalkError, WebhookVerdict,
    WorkerRecord, LIFETIME_EXCEEDED, MAX_BLOCKS_PER_READ, VOLUME_VERSIONS_KEPT,
};

/// SQL predicate on a `prover_leases` row: the worker failed it (not a restart of
/// the service, not superseded by another worker's proof).
const WORKER_FAILED: &str = "(outcome IN ('failed', 'invalid') OR (outcome = 'expired' \
    AND reason IS DISTINCT FROM 'service restarted'))";

/// The columns a [`TaskRecord`] is read from, in the order its row reader expects.
const TASK_COLUMNS: &str = "id, program_id, args, root, receipt_kind, status, attempts, \
    error_code, error_message, created_at, updated_at, input, receipt, journal, logs, result, \
    user_cycles, lease_owner, claims, expected_journal, submitter, progress_done, progress_total, callback_url";

/// SQL predicate on a `prover_leases` row: the lease counts as a proving attempt.
/// A lease ended by a restart of the service (`reason = 'service restarted'`) counts against the
/// crash allowance instead, and a superseded one (another lease's receipt was accepted) did not
/// fail at all.
const COUNTED_ATTEMPT: &str =
    "(reason IS DISTINCT FROM 'service restarted' AND outcome IS DISTINCT FROM 'superseded')";

/// A lease duration in milliseconds, as stored.
fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

/// The error message of a task that failed with `prover_failed`: every attempt and how it ended.
fn prover_failed_message(attempts: &[ProverAttempt]) -> String {
    let list: Vec<String> = attempts
        .iter()
        .map(|a| {
            let (outcome, reason) = (a.outcome.as_deref().unwrap_or("open"), a.reason.as_deref());
            let reason = reason.map(|r| format!(" ({r})")).unwrap_or_default();
            format!("{} on {}: {outcome}{reason}", a.lease_id, a.worker)
        })
        .collect();
    format!("no proof after {} attempts: {}", attempts.len(), list.join("; "))
}

/// Runs `$body` in a `$mode` transaction of `$self` as `$tx`. A backend may run the body again
/// after the database aborted it, so it gets its own copy of the named variables each time: the
/// ones before `;` are taken (`to_owned`) and cloned; the ones after it (payloads: receipts,
/// volume images, artifacts) are moved into an `Arc` once and shared.
macro_rules! tx {
    ($self:ident, $mode:ident, |$tx:ident $(, $v:ident)* $(; $($big:ident),+)?| $body:expr) => {{
        $(let $v = $v.to_owned();)*
        $($(let $big = std::sync::Arc::new($big);)+)?
        $self
            .run(Mode::$mode, move |$tx| {
                $(let $v = $v.clone();)*
                $($(let $big = std::sync::Arc::clone(&$big);)+)?
                Box::pin(async move { $body })
            })
            .await
    }};
}

/// How many unfinished tasks an identity has (the per-identity quota, checked on every submit).
/// The partial index `tasks_unfinished_by_submitter` (on SQLite with the status in it, so the
/// count reads nothing else) answers it over the identity's unfinished tasks: its cost does not
/// grow with the tasks the identity finished.
pub(crate) const UNFINISHED_OF: &str = "SELECT COUNT(*) FROM tasks WHERE submitter IS NOT DISTINCT FROM $1 \
                                        AND status NOT IN ('done', 'failed', 'cancelled')";

/// Tasks by status (`/health`, `/metrics`): unfinished ones counted through their partial index
/// (on SQLite, `tasks_unfinished_by_submitter` holds the status), finished ones from the counts
/// the store's triggers keep in `finished_counts`. Its cost grows with the unfinished tasks, not
/// with the service's history.
pub(crate) const TASKS_BY_STATUS: &str = "SELECT status, COUNT(*) FROM tasks \
    WHERE status NOT IN ('done', 'failed', 'cancelled') GROUP BY status \
    UNION ALL SELECT value, CAST(SUM(n) AS BIGINT) FROM finished_counts WHERE kind = 'task' \
    GROUP BY value HAVING SUM(n) > 0 ORDER BY 1";

/// Prover leases by outcome (`/metrics`): open leases counted through their partial index (those
/// past their expiry as `expired`), ended ones from `finished_counts`.
pub(crate) const LEASES_BY_OUTCOME: &str = "SELECT o, CAST(SUM(c) AS BIGINT) FROM (\
    SELECT CASE WHEN expires_at <= $1 THEN 'expired' ELSE 'open' END AS o, COUNT(*) AS c \
    FROM prover_leases WHERE outcome IS NULL GROUP BY 1 \
    UNION ALL SELECT value, SUM(n) FROM finished_counts WHERE kind = 'lease' GROUP BY value) counts \
    GROUP BY o HAVING SUM(c) > 0";

/// How many provers held a lease since `$1` or hold one now (`/metrics`), through the leases
/// issued since then (`prover_leases_by_issue`) and the open ones.
pub(crate) const RECENT_PROVERS: &str = "SELECT COUNT(*) FROM (\
    SELECT worker FROM prover_leases WHERE issued_at >= $1 \
    UNION SELECT worker FROM prover_leases WHERE outcome IS NULL) provers";

/// Applies the migrations the database has not seen, one replica at a time.
pub(crate) async fn migrate(tx: &mut dyn Tx, migrations: &'static [&'static str]) -> Result<()> {
    tx.lock("migrate").await?;
    let (version, known) = (tx.schema_version().await?, migrations.len() as i64);
    if version > known {
        let message = format!("database schema version {version} is newer than this build ({known})");
        return Err(StoreError::Corrupt(message));
    }
    for sql in migrations.iter().skip(usize::try_from(version).unwrap_or(0)) {
        tx.batch(sql).await?;
        if sql.starts_with(SPLIT_VOLUMES) {
            split_volume_images(tx).await?;
        }
    }
    tx.set_schema_version(known).await
}

/// The first line of the migration after which [`split_volume_images`] runs.
const SPLIT_VOLUMES: &str = "-- zkcoproc: then split volume images into blocks";

/// Moves every whole volume image (the schema before block storage) into `volume_blocks` at its
/// version, in the 64 KiB blocks of that migration (a later one cuts them to
/// [`zkcoproc_vfs::BLOCK_SIZE`]), skipping all-zero blocks, inside the migration's transaction:
/// done once, durably.
async fn split_volume_images(tx: &mut dyn Tx) -> Result<()> {
    let ids = tx.query("SELECT program_id FROM volumes ORDER BY program_id", &[]).await?;
    for mut row in ids {
        let id: String = row.take(0)?;
        let sql = "SELECT image, version FROM volumes WHERE program_id = $1";
        let Some(mut r) = tx.opt(sql, args![&id]).await? else { continue };
        let (image, version): (Vec<u8>, i64) = (r.take(0)?, r.take(1)?);
        for (i, block) in image.chunks(64 << 10).enumerate() {
            if block.iter().any(|&b| b != 0) {
                let sql =
                    "INSERT INTO volume_blocks (program_id, block, version, data) VALUES ($1, $2, $3, $4)";
                tx.execute(sql, args![&id, to_i64(i as u64, "block")?, version, block]).await?;
            }
        }
        let size = to_i64(image.len() as u64, "volume size")?;
        tx.execute("UPDATE volumes SET size = $1 WHERE program_id = $2", args![size, &id]).await?;
    }
    Ok(())
}

fn status(s: &str) -> Result<TaskStatus> {
    TaskStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s}")))
}

fn to_i64(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Database(format!("{what} {n} too large")))
}

async fn read_task(tx: &mut dyn Tx, id: &str) -> Result<Option<TaskRecord>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
    let Some(mut r) = tx.opt(&sql, args![id]).await? else { return Ok(None) };
    let error_code: Option<String> = r.take(7)?;
    let error_message: Option<String> = r.take(8)?;
    let callback_url: Option<String> = r.take(23)?;
    // Only tasks with a URL have a delivery: the rest pay no extra query.
    let (callback_state, callbacks) = match callback_url {
        Some(_) => read_callbacks(tx, id).await?,
        None => (None, Vec::new()),
    };
    Ok(Some(TaskRecord {
        id: r.take(0)?,
        program_id: r.take(1)?,
        args: r.take(2)?,
        root: r.take(3)?,
        receipt_kind: r.take(4)?,
        status: status(&r.take::<String>(5)?)?,
        attempts: r.take(6)?,
        error: error_code.map(|code| crate::TaskError { code, message: error_message.unwrap_or_default() }),
        created_at: r.take(9)?,
        updated_at: r.take(10)?,
        history: read_events(tx, id).await?,
        input: r.take(11)?,
        receipt: r.take(12)?,
        journal: r.take(13)?,
        logs: r.take(14)?,
        result: r.take(15)?,
        user_cycles: r.take(16)?,
        lease_owner: r.take(17)?,
        claims: r.take(18)?,
        expected_journal: r.take(19)?,
        submitter: r.take(20)?,
        progress: r.take::<Option<u64>>(21)?.zip(r.take::<Option<u64>>(22)?),
        callback_url,
        callback_state,
        callbacks,
    }))
}

/// A task's webhook delivery state (once it finished) and its attempts, oldest first.
async fn read_callbacks(tx: &mut dyn Tx, id: &str) -> Result<(Option<String>, Vec<CallbackAttempt>)> {
    let state = tx.first("SELECT state FROM webhook_deliveries WHERE task_id = $1", args![id]).await?;
    let sql = "SELECT at, status, error FROM webhook_attempts WHERE task_id = $1 ORDER BY seq";
    let attempts = tx.query(sql, args![id]).await?.into_iter().map(|mut r| {
        let status: Option<i64> = r.take(1)?;
        Ok(CallbackAttempt {
            at: r.take(0)?,
            status: status.and_then(|s| u16::try_from(s).ok()),
            error: r.take(2)?,
        })
    });
    Ok((state, attempts.collect::<Result<_>>()?))
}

/// A task that must exist (it was just written or locked).
async fn existing_task(tx: &mut dyn Tx, id: &str) -> Result<TaskRecord> {
    read_task(tx, id).await?.ok_or_else(|| StoreError::Corrupt(format!("task {id} vanished")))
}

async fn read_events(tx: &mut dyn Tx, id: &str) -> Result<Vec<TaskEvent>> {
    let sql = "SELECT seq, status, at FROM task_events WHERE task_id = $1 ORDER BY seq";
    let rows = tx.query(sql, args![id]).await?;
    rows.into_iter()
        .map(|mut r| {
            Ok(TaskEvent { seq: r.take(0)?, status: status(&r.take::<String>(1)?)?, at: r.take(2)? })
        })
        .collect()
}

/// The columns (of `programs p`) a [`ProgramInfo`] is read from by [`program_info`].
const PROGRAM_COLUMNS: &str = "p.id, p.image_id, CAST(length(p.controller) AS BIGINT), \
    CAST(length(p.circuit) AS BIGINT), p.created_at, p.owner, p.volume_size, p.callback_url";

/// A program's metadata from the first columns of a row ([`PROGRAM_COLUMNS`]).
fn program_info(r: &mut Row) -> Result<ProgramInfo> {
    Ok(ProgramInfo {
        id: r.take(0)?,
        image_id: r.take(1)?,
        controller_size: r.take(2)?,
        circuit_size: r.take(3)?,
        created_at: r.take(4)?,
        owner: r.take(5)?,
        volume_size: r.take(6)?,
        callback_url: r.take(7)?,
    })
}

/// The columns a [`ProverAttempt`] is read from by [`attempt`].
const ATTEMPT_COLUMNS: &str = "lease_id, task_id, worker, issued_at, expires_at, outcome, reason";

fn attempt(mut r: Row) -> Result<ProverAttempt> {
    Ok(ProverAttempt {
        lease_id: r.take(0)?,
        task_id: r.take(1)?,
        worker: r.take(2)?,
        issued_at: r.take(3)?,
        expires_at: r.take(4)?,
        outcome: r.take(5)?,
        reason: r.take(6)?,
    })
}

async fn read_attempts(tx: &mut dyn Tx, task_id: &str) -> Result<Vec<ProverAttempt>> {
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM prover_leases WHERE task_id = $1 ORDER BY issued_at, lease_id"
    );
    tx.query(&sql, args![task_id]).await?.into_iter().map(attempt).collect()
}

/// The status of a task, locking its row (PostgreSQL) until the transaction ends.
async fn lock_task(tx: &mut dyn Tx, id: &str) -> Result<Option<TaskStatus>> {
    let current: Option<String> =
        tx.first("SELECT status FROM tasks WHERE id = $1 FOR UPDATE", args![id]).await?;
    current.map(|s| status(&s)).transpose()
}

/// Locks the task row of a lease and checks that the lease may report a result now: it must be
/// a lease of that task, the task must still be proving, and the lease must not have had its
/// verdict yet (open, or expired: a late result is still welcome). `Err` carries why not.
async fn may_report(tx: &mut dyn Tx, task_id: &str, lease_id: &str) -> Result<Result<(), AttemptOutcome>> {
    let Some(current) = lock_task(tx, task_id).await? else { return Ok(Err(AttemptOutcome::Unknown)) };
    let sql = "SELECT outcome FROM prover_leases WHERE lease_id = $1 AND task_id = $2";
    let Some(judged) = tx.first::<Option<String>>(sql, args![lease_id, task_id]).await? else {
        return Ok(Err(AttemptOutcome::Unknown));
    };
    if current != TaskStatus::Proving {
        return Ok(Err(AttemptOutcome::NotProving(current)));
    }
    if !matches!(judged.as_deref(), None | Some("expired")) {
        return Ok(Err(AttemptOutcome::LeaseEnded));
    }
    Ok(Ok(()))
}

/// Records a status change. A task that finished with a callback URL gets its webhook delivery
/// in the outbox in the same transaction: it is durable exactly when the end is.
async fn insert_event(tx: &mut dyn Tx, task_id: &str, status: &str, at: i64) -> Result<()> {
    let sql = "INSERT INTO task_events (task_id, status, at) VALUES ($1, $2, $3)";
    tx.execute(sql, args![task_id, status, at]).await?;
    tx.notify(task_id, status).await?;
    if matches!(status, "done" | "failed" | "cancelled") {
        let sql = "INSERT INTO webhook_deliveries (task_id, program_id, url, created_at, next_attempt_at) \
                   SELECT id, program_id, callback_url, $2, $2 FROM tasks WHERE id = $1 AND callback_url IS NOT NULL \
                   ON CONFLICT (task_id) DO NOTHING";
        tx.execute(sql, args![task_id, at]).await?;
    }
    Ok(())
}

/// The body of [`Store::accept_proof`] and [`Store::accept_proof_claimed`].
async fn accept<B: Backend>(
    store: &B,
    task_id: &str,
    lease_id: &str,
    receipt: Vec<u8>,
    journal: Vec<u8>,
    user_cycles: u64,
    claim: Option<(&str, Duration)>,
) -> Result<AttemptOutcome> {
    let user_cycles = to_i64(user_cycles, "user cycles")?;
    let (owner, lease) = (claim.map(|(o, _)| o.to_owned()), claim.map(|(_, l)| lease_ms(l)));
    tx!(store, Write, |tx, task_id, lease_id, owner; receipt, journal| {
        let now = tx.now().await?;
        if let Err(refused) = may_report(tx, &task_id, &lease_id).await? {
            return Ok(refused);
        }
        let sql = "UPDATE prover_leases SET outcome = 'accepted' WHERE lease_id = $1";
        tx.execute(sql, args![&lease_id]).await?;
        let sql = "UPDATE prover_leases SET outcome = 'superseded' WHERE task_id = $1 AND outcome IS NULL";
        tx.execute(sql, args![&task_id]).await?;
        // An accepted proof has every segment proven, whatever the last report said. A task in
        // `proving` holds no runner's lease: the delivery's claim, if any, is its first.
        let sql = "UPDATE tasks SET status = 'delivering', updated_at = $1, receipt = $2, journal = $3, \
                   user_cycles = $4, progress_done = progress_total, lease_owner = $5, \
                   lease_expires_at = $6, claims = $7 WHERE id = $8";
        let expires = lease.map(|l| now.saturating_add(l));
        let claims = i64::from(owner.is_some());
        let (receipt, journal) = (receipt.as_slice(), journal.as_slice());
        let args = args![now, receipt, journal, user_cycles, owner.as_deref(), expires, claims, &task_id];
        tx.execute(sql, args).await?;
        for status in ["verifying", "delivering"] {
            insert_event(tx, &task_id, status, now).await?;
        }
        Ok(AttemptOutcome::Accepted)
    })
}

/// Fails a proving task (row locked by the caller) whose attempts are used up, listing them.
/// Returns whether it moved.
async fn fail_proving(tx: &mut dyn Tx, task_id: &str, now: i64) -> Result<bool> {
    let sql = "UPDATE prover_leases SET outcome = 'expired' WHERE task_id = $1 AND outcome IS NULL";
    tx.execute(sql, args![task_id]).await?;
    let message = prover_failed_message(&read_attempts(tx, task_id).await?);
    let sql = "UPDATE tasks SET status = 'failed', updated_at = $1, error_code = 'prover_failed', \
               error_message = $2, lease_owner = NULL, lease_expires_at = NULL WHERE id = $3 AND status = 'proving'";
    let moved = tx.execute(sql, args![now, &message, task_id]).await? == 1;
    if moved {
        insert_event(tx, task_id, "failed", now).await?;
    }
    Ok(moved)
}

/// The turn of a task `submitter` inserts now: no earlier than the newest turn started, and
/// after the submitter's previous task. Runners and provers take tasks by turn, then age, so an
/// identity's backlog is spread one turn per task and a newcomer is served next (README, "Fair
/// turns").
async fn next_turn(tx: &mut dyn Tx, submitter: Option<&str>) -> Result<i64> {
    let sql = "SELECT MAX(turn) FROM tasks WHERE status NOT IN ('queued', 'cancelled')";
    let started: Option<i64> = tx.scalar(sql, &[]).await?;
    let previous: Option<i64> = match submitter {
        Some(who) => {
            let sql = "SELECT turn FROM tasks WHERE submitter = $1 ORDER BY seq DESC LIMIT 1";
            tx.first(sql, args![who]).await?
        }
        None => {
            tx.first("SELECT turn FROM tasks WHERE submitter IS NULL ORDER BY seq DESC LIMIT 1", &[]).await?
        }
    };
    Ok(started.unwrap_or(0).max(previous.map_or(0, |p| p.saturating_add(1))))
}

/// Claims the task a runner may work on whose turn comes first (see [`Store::claim_next`]); with
/// `start`, a `queued` one enters `witnessing` as well. Returns it, and whether it entered.
async fn claim(
    tx: &mut dyn Tx,
    owner: &str,
    lease: Duration,
    start: bool,
) -> Result<Option<(TaskRecord, bool)>> {
    let now = tx.now().await?;
    // The status test repeats the partial index's own (`tasks_unfinished`): SQLite uses an index
    // only for a query whose terms contain its condition, and scanned every task ever run without.
    let sql = "UPDATE tasks SET lease_owner = $1, lease_expires_at = $2, claims = claims + 1 \
               WHERE seq = (SELECT seq FROM tasks \
                   WHERE status NOT IN ('done', 'failed', 'cancelled') AND status <> 'proving' \
                     AND (lease_owner IS NULL OR lease_expires_at < $3) \
                   ORDER BY turn, seq LIMIT 1 FOR UPDATE SKIP LOCKED) \
               RETURNING id, status";
    let Some(mut row) = tx.opt(sql, args![owner, now.saturating_add(lease_ms(lease)), now]).await? else {
        return Ok(None);
    };
    let (id, status): (String, String) = (row.take(0)?, row.take(1)?);
    let entered = start && status == TaskStatus::Queued.as_str();
    if entered {
        let sql = "UPDATE tasks SET status = 'witnessing', updated_at = $1, claims = 0 WHERE id = $2";
        tx.execute(sql, args![now, &id]).await?;
        insert_event(tx, &id, TaskStatus::Witnessing.as_str(), now).await?;
    }
    Ok(read_task(tx, &id).await?.map(|task| (task, entered)))
}

/// Commits a volume write as the next version if no block it touched changed since its base
/// (see [`VolumeWrite`]); the row lock taken by the check holds off a concurrent writer until the
/// transaction ends. Rows replaced [`VOLUME_VERSIONS_KEPT`] versions ago are deleted.
async fn put_volume(tx: &mut dyn Tx, write: &VolumeWrite, now: i64) -> Result<()> {
    let sql = "SELECT version FROM volumes WHERE program_id = $1 FOR UPDATE";
    let current: i64 = tx.first(sql, args![&write.program_id]).await?.unwrap_or(0);
    let changed = || StoreError::VolumeChanged(write.program_id.clone());
    let base = to_i64(write.base, "volume version")?;
    if current != base {
        // A first write racing another, a base from the future or too old to check: changed.
        if base == 0 || current < base || current - base > VOLUME_VERSIONS_KEPT as i64 {
            return Err(changed());
        }
        let sql = "SELECT DISTINCT block FROM volume_blocks_4k WHERE program_id = $1 AND version > $2";
        let mut moved = std::collections::HashSet::new();
        for mut row in tx.query(sql, args![&write.program_id, base]).await? {
            moved.insert(row.take::<u64>(0)?);
        }
        let mut mine = write.touched.iter().chain(write.written.iter().map(|(i, _)| i));
        if mine.any(|b| moved.contains(b)) {
            return Err(changed());
        }
    }
    let version = current + 1;
    // Claim the version first: of two first writes, the loser stops here, before its blocks.
    let sql = "INSERT INTO volumes (program_id, updated_at, version, size) VALUES ($1, $2, $3, $4) \
               ON CONFLICT (program_id) DO UPDATE SET updated_at = excluded.updated_at, \
               version = excluded.version WHERE volumes.version = $5";
    let size = to_i64(write.size, "volume size")?;
    if tx.execute(sql, args![&write.program_id, now, version, size, current]).await? != 1 {
        return Err(changed());
    }
    // Two statements for up to 256 blocks, in chunks of a power of two: a handful of statement
    // shapes to prepare (and cache), not one round trip per block.
    let mut rest = &write.written[..];
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(1 << rest.len().min(256).ilog2());
        rest = tail;
        let head = [Arg::Text(&write.program_id), Arg::Int(version)];
        let (mut blocks, mut rows) = (head.to_vec(), head.to_vec());
        for (block, data) in chunk {
            let block = Arg::Int(to_i64(*block, "block")?);
            blocks.push(block);
            rows.extend([block, Arg::Blob(data)]);
        }
        let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "UPDATE volume_blocks_4k SET superseded_by = $2 \
             WHERE program_id = $1 AND superseded_by IS NULL AND block IN ({})",
            list.join(", ")
        );
        tx.execute(&sql, &blocks).await?;
        let values: Vec<String> =
            (0..chunk.len()).map(|i| format!("($1, ${}, $2, ${})", 2 * i + 3, 2 * i + 4)).collect();
        let sql = format!(
            "INSERT INTO volume_blocks_4k (program_id, block, version, data) VALUES {}",
            values.join(", ")
        );
        tx.execute(&sql, &rows).await?;
    }
    // Rows replaced at version `h` or before are needed by no version from `h` on: delete those
    // no kept and no pinned version needs. Expired pins are dropped first, in this transaction,
    // so a pin that still exists was honoured by every commit (what a volume read relies on).
    let sql = "DELETE FROM volume_pins WHERE program_id = $1 AND expires_at <= $2";
    tx.execute(sql, args![&write.program_id, now]).await?;
    let kept = version - VOLUME_VERSIONS_KEPT as i64;
    let sql = "SELECT COALESCE(MIN(version), $2) FROM volume_pins WHERE program_id = $1";
    let pinned: i64 = tx.scalar(sql, args![&write.program_id, kept]).await?;
    let sql = "DELETE FROM volume_blocks_4k WHERE program_id = $1 AND superseded_by <= $2";
    tx.execute(sql, args![&write.program_id, kept.min(pinned)]).await?;
    Ok(())
}

/// Stores tree nodes, leaving those already stored (several replicas may store the same node).
async fn insert_nodes<'a>(
    tx: &mut dyn Tx,
    nodes: impl Iterator<Item = &'a ([u8; 32], Vec<u8>)> + Send,
) -> Result<()> {
    for (hash, node) in nodes {
        let sql = "INSERT INTO smt_nodes (hash, node) VALUES ($1, $2) ON CONFLICT DO NOTHING";
        tx.execute(sql, args![hash, node]).await?;
    }
    Ok(())
}

/// Prover leases of a task: all of them, those that count as attempts, those a restart ended.
async fn lease_counts(tx: &mut dyn Tx, task_id: &str) -> Result<(i64, i64, i64)> {
    let sql = format!(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE {COUNTED_ATTEMPT}), \
         COUNT(*) FILTER (WHERE reason = 'service restarted') FROM prover_leases WHERE task_id = $1"
    );
    let mut r =
        tx.opt(&sql, args![task_id]).await?.ok_or_else(|| StoreError::Database("no lease counts".into()))?;
    Ok((r.take(0)?, r.take(1)?, r.take(2)?))
}

fn leased(lease_id: String, task: TaskRecord, expires_at: i64, failed: Vec<String>) -> Result<Leased> {
    Ok(Leased { lease: Some(ProverLease { lease_id, task, expires_at }), failed })
}

#[async_trait::async_trait]
impl<B: Backend> Store for B {
    async fn put_program(&self, p: NewProgram) -> Result<bool> {
        tx!(self, Write, |tx; p| {
            let now = tx.now().await?;
            let sql = "INSERT INTO programs (id, image_id, controller, circuit, created_at, owner, volume_size, \
                       callback_url) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING";
            let size = to_i64(p.volume_size, "volume size")?;
            let (owner, url) = (p.owner.as_deref(), p.callback_url.as_deref());
            let args = args![&p.id, &p.image_id, &p.controller, &p.circuit, now, owner, size, url];
            if tx.execute(sql, args).await? == 1 {
                return Ok(true);
            }
            let image_id: String =
                tx.scalar("SELECT image_id FROM programs WHERE id = $1", args![&p.id]).await?;
            match image_id == p.image_id {
                true => Ok(false),
                false => Err(StoreError::Conflict(format!("program {} exists with another image id", p.id))),
            }
        })
    }

    async fn program(&self, id: &str) -> Result<Option<ProgramInfo>> {
        tx!(self, Statements, |tx, id| {
            let sql = format!("SELECT {PROGRAM_COLUMNS} FROM programs p WHERE p.id = $1");
            let Some(mut r) = tx.opt(&sql, args![&id]).await? else { return Ok(None) };
            program_info(&mut r).map(Some)
        })
    }

    async fn program_artifacts(&self, id: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        tx!(self, Statements, |tx, id| {
            let row = tx.opt("SELECT controller, circuit FROM programs WHERE id = $1", args![&id]).await?;
            row.map(|mut r| Ok((r.take(0)?, r.take(1)?))).transpose()
        })
    }

    async fn circuit_by_image_id(&self, image_id: &str) -> Result<Option<Vec<u8>>> {
        tx!(self, Statements, |tx, image_id| {
            tx.first("SELECT circuit FROM programs WHERE image_id = $1 LIMIT 1", args![&image_id]).await
        })
    }

    async fn insert_task(&self, t: NewTask, idempotency: Option<Idempotency>) -> Result<Inserted> {
        tx!(self, Write, |tx, idempotency; t| {
            let now = tx.now().await?;
            if let Some(key) = &idempotency {
                // Requests with one key are serialized: the second sees the first's task.
                tx.lock(&format!("idempotency\n{}\n{}", t.program_id, key.key)).await?;
                let sql =
                    "SELECT request_hash, task_id FROM idempotency_keys WHERE program_id = $1 AND key = $2";
                if let Some(mut seen) = tx.opt(sql, args![&t.program_id, &key.key]).await? {
                    let (hash, task_id): (String, String) = (seen.take(0)?, seen.take(1)?);
                    if hash != key.request_hash {
                        // Never name the other task: the key may be another client's.
                        let client_key = key.key.rsplit('\n').next().unwrap_or_default();
                        let message =
                            format!("Idempotency-Key `{client_key}` was used for a different request");
                        return Err(StoreError::Conflict(message));
                    }
                    return Ok(Inserted { task: existing_task(tx, &task_id).await?, created: false });
                }
            }
            let turn = next_turn(tx, t.submitter.as_deref()).await?;
            let sql = "INSERT INTO tasks (id, program_id, args, root, receipt_kind, status, created_at, updated_at, \
                       submitter, callback_url, turn) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6, $7, \
                       COALESCE($8, (SELECT callback_url FROM programs WHERE id = $2)), $9)";
            let (submitter, url) = (t.submitter.as_deref(), t.callback_url.as_deref());
            let args = args![&t.id, &t.program_id, &t.args, &t.root, &t.receipt_kind, now, submitter, url, turn];
            tx.execute(sql, args).await?;
            insert_event(tx, &t.id, "queued", now).await?;
            if let Some(key) = &idempotency {
                let sql =
                    "INSERT INTO idempotency_keys (program_id, key, request_hash, task_id, created_at) \
                           VALUES ($1, $2, $3, $4, $5)";
                tx.execute(sql, args![&t.program_id, &key.key, &key.request_hash, &t.id, now]).await?;
            }
            Ok(Inserted { task: existing_task(tx, &t.id).await?, created: true })
        })
    }

    async fn task(&self, id: &str) -> Result<Option<TaskRecord>> {
        tx!(self, Read, |tx, id| read_task(tx, &id).await)
    }

    async fn task_events(&self, id: &str) -> Result<Vec<TaskEvent>> {
        tx!(self, Statements, |tx, id| read_events(tx, &id).await)
    }

    async fn claim_next(&self, owner: &str, lease: Duration) -> Result<Option<TaskRecord>> {
        let claimed = tx!(self, Write, |tx, owner| claim(tx, &owner, lease, false).await)?;
        Ok(claimed.map(|(task, _)| task))
    }

    async fn claim_and_start(&self, owner: &str, lease: Duration) -> Result<Option<(TaskRecord, bool)>> {
        tx!(self, Write, |tx, owner| claim(tx, &owner, lease, true).await)
    }

    async fn extend_lease(&self, id: &str, owner: &str, lease: Duration) -> Result<bool> {
        tx!(self, Write, |tx, id, owner| {
            let until = tx.now().await?.saturating_add(lease_ms(lease));
            let sql = "UPDATE tasks SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3 \
                       AND status NOT IN ('done', 'failed', 'cancelled')";
            Ok(tx.execute(sql, args![until, &id, &owner]).await? == 1)
        })
    }

    async fn release_all_leases(&self) -> Result<u64> {
        if B::SHARED {
            // Other replicas hold leases on a shared store: a start-up must not take them away.
            return Ok(0);
        }
        tx!(self, Write, |tx| {
            let sql =
                "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner IS NOT NULL";
            let tasks = tx.execute(sql, &[]).await?;
            // In-process provers died with the previous process; remote workers' leases stand.
            let sql = "UPDATE prover_leases SET outcome = 'expired', reason = 'service restarted' \
                       WHERE outcome IS NULL AND worker LIKE 'local-%'";
            let provers = tx.execute(sql, &[]).await?;
            // Webhook senders died with it too: their deliveries are due again at once.
            let sql = "UPDATE webhook_deliveries SET lease_owner = NULL, lease_expires_at = NULL \
                       WHERE lease_owner IS NOT NULL";
            Ok(tasks + provers + tx.execute(sql, &[]).await?)
        })
    }

    fn shared(&self) -> bool {
        B::SHARED
    }

    fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<crate::TaskNotice>> {
        self.listen()
    }

    async fn transition(
        &self,
        id: &str,
        owner: &str,
        from: TaskStatus,
        to: TaskStatus,
        u: StageUpdate,
    ) -> Result<bool> {
        tx!(self, Write, |tx, id, owner; u| {
            let now = tx.now().await?;
            let (code, message) = (u.error.as_ref().map(|e| &e.code), u.error.as_ref().map(|e| &e.message));
            let cycles = u.user_cycles.map(|c| i64::try_from(c).unwrap_or(i64::MAX));
            // The first prover lease, granted with the move into `proving`, is an attempt.
            let prover_lease = match (from, to, &u.prover_lease) {
                (TaskStatus::Witnessing, TaskStatus::Proving, Some(lease)) => Some(lease),
                _ => None,
            };
            let sql = "UPDATE tasks SET status = $1, updated_at = $2, claims = 0, \
                          input = COALESCE($3, input), result = COALESCE($4, result), \
                          logs = COALESCE($5, logs), expected_journal = COALESCE($6, expected_journal), \
                          error_code = COALESCE($7, error_code), error_message = COALESCE($8, error_message), \
                          lease_owner = CASE WHEN $9 = 1 THEN NULL ELSE lease_owner END, \
                          lease_expires_at = CASE WHEN $9 = 1 THEN NULL ELSE lease_expires_at END, \
                          user_cycles = COALESCE($13, user_cycles), attempts = attempts + $14 \
                       WHERE id = $10 AND status = $11 AND lease_owner = $12";
            let (input, result, logs, expected) = (&u.input, &u.result, &u.logs, &u.expected_journal);
            let args = args![
                to.as_str(),
                now,
                input.as_ref(),
                result.as_ref(),
                logs.as_ref(),
                expected.as_ref(),
                code,
                message,
                u.release_lease,
                &id,
                from.as_str(),
                &owner,
                cycles,
                i64::from(prover_lease.is_some())
            ];
            if tx.execute(sql, args).await? == 0 {
                return Ok(false);
            }
            insert_event(tx, &id, to.as_str(), now).await?;
            if let Some((worker, lease)) = prover_lease {
                let sql = "INSERT INTO prover_leases (lease_id, task_id, worker, issued_at, expires_at) \
                           VALUES ($1, $2, $3, $4, $5)";
                let expires = now.saturating_add(lease_ms(*lease));
                tx.execute(sql, args![&crate::first_lease_id(&id), &id, worker, now, expires]).await?;
            }
            if let Some(write) = &u.volume {
                put_volume(tx, write, now).await?;
            }
            Ok(true)
        })
    }

    async fn volume_lock(&self, program_id: &str) -> Result<Option<crate::Held>> {
        self.hold(&format!("volume:{program_id}")).await
    }

    async fn volume(&self, program_id: &str) -> Result<Option<VolumeHead>> {
        tx!(self, Statements, |tx, program_id| {
            let row =
                tx.opt("SELECT version, size FROM volumes WHERE program_id = $1", args![&program_id]).await?;
            row.map(|mut r| Ok(VolumeHead { version: r.take(0)?, size: r.take(1)? })).transpose()
        })
    }

    async fn volume_blocks(
        &self,
        program_id: &str,
        version: u64,
        first: u64,
        count: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let (version, first) = (to_i64(version, "volume version")?, to_i64(first, "block")?);
        let end = first.saturating_add(to_i64(count.min(MAX_BLOCKS_PER_READ), "block count")?);
        tx!(self, Statements, |tx, program_id| {
            let sql = "SELECT block, data FROM volume_blocks_4k WHERE program_id = $1 AND block >= $2 \
                       AND block < $3 AND version <= $4 AND (superseded_by IS NULL OR superseded_by > $4)";
            let mut blocks = Vec::new();
            for mut row in tx.query(sql, args![&program_id, first, end, version]).await? {
                blocks.push((row.take(0)?, row.take(1)?));
            }
            // Read after the blocks: versions only grow, so if this one is still kept now, no
            // row the read needed had been deleted when it ran (the two statements are not one
            // snapshot). The same holds of a pin, as the first commit that no longer honours a
            // pin drops it in its own transaction.
            let sql = "SELECT version FROM volumes WHERE program_id = $1";
            let current: i64 = tx.first(sql, args![&program_id]).await?.unwrap_or(0);
            let mut kept = current >= version && current - version <= VOLUME_VERSIONS_KEPT as i64;
            if !kept && current >= version {
                let sql = "SELECT COUNT(*) FROM volume_pins WHERE program_id = $1 AND version = $2";
                kept = tx.scalar::<i64>(sql, args![&program_id, version]).await? > 0;
            }
            if !kept {
                return Err(StoreError::VolumeChanged(program_id));
            }
            Ok(blocks)
        })
    }

    async fn pin_volume(&self, program_id: &str, pin: &str, ttl: Duration) -> Result<Option<VolumeHead>> {
        tx!(self, Write, |tx, program_id, pin| {
            // The row lock commits take: a commit either comes before the pin (which then pins
            // its version) or sees it.
            let sql = "SELECT version, size FROM volumes WHERE program_id = $1 FOR UPDATE";
            let Some(mut row) = tx.opt(sql, args![&program_id]).await? else { return Ok(None) };
            let head = VolumeHead { version: row.take(0)?, size: row.take(1)? };
            let expires = tx.now().await?.saturating_add(lease_ms(ttl));
            let sql = "INSERT INTO volume_pins (id, program_id, version, expires_at) VALUES ($1, $2, $3, $4)";
            let version = to_i64(head.version, "volume version")?;
            tx.execute(sql, args![&pin, &program_id, version, expires]).await?;
            Ok(Some(head))
        })
    }

    async fn renew_volume_pin(&self, pin: &str, ttl: Duration) -> Result<bool> {
        tx!(self, Write, |tx, pin| {
            let expires = tx.now().await?.saturating_add(lease_ms(ttl));
            let sql = "UPDATE volume_pins SET expires_at = $1 WHERE id = $2";
            Ok(tx.execute(sql, args![expires, &pin]).await? == 1)
        })
    }

    async fn unpin_volume(&self, pin: &str) -> Result<()> {
        tx!(self, Write, |tx, pin| {
            tx.execute("DELETE FROM volume_pins WHERE id = $1", args![&pin]).await?;
            Ok(())
        })
    }

    async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        tx!(self, Write, |tx, id| {
            let now = tx.now().await?;
            let Some(current) = lock_task(tx, &id).await? else { return Ok(CancelOutcome::NotFound) };
            if current.is_terminal() {
                return Ok(CancelOutcome::AlreadyFinished(current));
            }
            let sql = "UPDATE tasks SET status = 'cancelled', updated_at = $1, lease_owner = NULL, \
                       lease_expires_at = NULL, error_code = 'cancelled', \
                       error_message = 'cancelled on request while ' || status WHERE id = $2";
            tx.execute(sql, args![now, &id]).await?;
            insert_event(tx, &id, "cancelled", now).await?;
            Ok(CancelOutcome::Cancelled(current))
        })
    }

    async fn lease_proving(&self, worker: &str, rules: LeaseRules) -> Result<Leased> {
        let LeaseRules { lease, max_attempts, mut others_asking, mut only } = rules;
        only.sort_unstable();
        only.dedup();
        if !only.is_empty() {
            others_asking.clear();
        }
        others_asking.sort_unstable();
        others_asking.dedup();
        tx!(self, Write, |tx, worker, others_asking, only| {
            let now = tx.now().await?;
            let expires = now.saturating_add(lease_ms(lease));
            // `AND t.id IN (...)` over the named tasks, their parameters numbered from `first`.
            let named = |first: usize| match only.is_empty() {
                true => String::new(),
                false => {
                    let params: Vec<String> = (0..only.len()).map(|i| format!("${}", first + i)).collect();
                    format!("AND t.id IN ({})", params.join(", "))
                }
            };
            // Re-delivery: the worker's own open lease.
            let sql = format!(
                "SELECT pl.lease_id, pl.task_id FROM prover_leases pl JOIN tasks t ON t.id = pl.task_id \
                 WHERE pl.worker = $1 AND pl.outcome IS NULL AND pl.expires_at > $2 AND t.status = 'proving' {} \
                 ORDER BY pl.issued_at LIMIT 1 FOR UPDATE OF t",
                named(3)
            );
            let mut args: Vec<crate::sql::Arg<'_>> = vec![(&worker).into(), now.into()];
            args.extend(only.iter().map(crate::sql::Arg::from));
            if let Some(mut open) = tx.opt(&sql, &args).await? {
                let (lease_id, task_id): (String, String) = (open.take(0)?, open.take(1)?);
                let sql = "UPDATE prover_leases SET expires_at = $1 WHERE lease_id = $2";
                tx.execute(sql, args![expires, &lease_id]).await?;
                return leased(lease_id, existing_task(tx, &task_id).await?, expires, vec![]);
            }
            // Unleased proving tasks (open leases that expired do not hold a task), those this
            // worker has tried least first, then by turn and age; tasks another replica is leasing right
            // now are skipped, not waited for; none this worker failed before while one of the
            // other workers asking for work ($4...) has not failed it too.
            let others: Vec<String> = (0..others_asking.len()).map(|i| format!("${}", i + 4)).collect();
            let others = if others.is_empty() { "NULL".to_owned() } else { others.join(", ") };
            let sql = format!(
                "SELECT t.id FROM tasks t WHERE t.status = 'proving' {} \
                 AND NOT EXISTS (SELECT 1 FROM prover_leases pl WHERE pl.task_id = t.id \
                                 AND pl.outcome IS NULL AND pl.expires_at > $2) \
                 AND NOT (EXISTS (SELECT 1 FROM prover_leases pl WHERE pl.task_id = t.id \
                                  AND pl.worker = $1 AND {WORKER_FAILED}) \
                          AND (SELECT COUNT(DISTINCT pl.worker) FROM prover_leases pl WHERE pl.task_id = t.id \
                               AND pl.worker IN ({others}) AND {WORKER_FAILED}) < $3) \
                 ORDER BY (SELECT COUNT(*) FROM prover_leases pl WHERE pl.task_id = t.id AND pl.worker = $1), t.turn, t.seq \
                 LIMIT 32 FOR UPDATE OF t SKIP LOCKED",
                named(4 + others_asking.len())
            );
            let mut args: Vec<crate::sql::Arg<'_>> =
                vec![(&worker).into(), now.into(), (others_asking.len() as i64).into()];
            args.extend(others_asking.iter().map(crate::sql::Arg::from));
            args.extend(only.iter().map(crate::sql::Arg::from));
            let mut failed = Vec::new();
            for mut candidate in tx.query(&sql, &args).await? {
                let task_id: String = candidate.take(0)?;
                // The row lock was taken after the query's snapshot: a lease another replica
                // committed meanwhile (it held the lock until then) shows in a new statement.
                let sql = "SELECT COUNT(*) FROM prover_leases WHERE task_id = $1 AND outcome IS NULL \
                           AND expires_at > $2";
                if tx.scalar::<i64>(sql, args![&task_id, now]).await? > 0 {
                    continue;
                }
                // An in-process prover renews its lease while its process lives: its lease
                // expired because the process died (or hung), which counts against the crash
                // allowance, not the proving attempts.
                let sql = "UPDATE prover_leases SET outcome = 'expired', \
                           reason = CASE WHEN worker LIKE 'local-%' THEN 'service restarted' ELSE reason END \
                           WHERE task_id = $1 AND outcome IS NULL AND expires_at <= $2";
                tx.execute(sql, args![&task_id, now]).await?;
                let (leases, attempts, restarts) = lease_counts(tx, &task_id).await?;
                if attempts >= i64::from(max_attempts) || restarts >= i64::from(crate::MAX_CRASHES) {
                    if fail_proving(tx, &task_id, now).await? {
                        failed.push(task_id);
                    }
                    continue;
                }
                let lease_id = format!("{task_id}/{}", leases + 1);
                let sql = "INSERT INTO prover_leases (lease_id, task_id, worker, issued_at, expires_at) \
                           VALUES ($1, $2, $3, $4, $5)";
                tx.execute(sql, args![&lease_id, &task_id, &worker, now, expires]).await?;
                let sql = "UPDATE tasks SET attempts = attempts + 1, updated_at = $1 WHERE id = $2";
                tx.execute(sql, args![now, &task_id]).await?;
                return leased(lease_id, existing_task(tx, &task_id).await?, expires, failed);
            }
            Ok(Leased { lease: None, failed })
        })
    }

    async fn renew_prover_lease(
        &self,
        task_id: &str,
        lease_id: &str,
        lease: Duration,
        max_lifetime: Duration,
    ) -> Result<RenewOutcome> {
        tx!(self, Write, |tx, task_id, lease_id| {
            let now = tx.now().await?;
            let Some(current) = lock_task(tx, &task_id).await? else { return Ok(RenewOutcome::Unknown) };
            let sql = "SELECT outcome, expires_at, issued_at FROM prover_leases WHERE lease_id = $1 AND task_id = $2";
            let Some(mut row) = tx.opt(sql, args![&lease_id, &task_id]).await? else {
                return Ok(RenewOutcome::Unknown);
            };
            let (outcome, expires_at, issued_at): (Option<String>, i64, i64) =
                (row.take(0)?, row.take(1)?, row.take(2)?);
            if current == TaskStatus::Cancelled {
                return Ok(RenewOutcome::Cancelled);
            }
            if current != TaskStatus::Proving || outcome.is_some() {
                return Ok(RenewOutcome::Lost);
            }
            if now.saturating_sub(issued_at) > lease_ms(max_lifetime) {
                let sql = "UPDATE prover_leases SET outcome = 'expired', reason = $2 WHERE lease_id = $1";
                tx.execute(sql, args![&lease_id, LIFETIME_EXCEEDED]).await?;
                return Ok(RenewOutcome::Lost);
            }
            // An expired lease may be revived only while nobody else holds the task.
            let sql = "SELECT COUNT(*) FROM prover_leases WHERE task_id = $1 AND lease_id <> $2 \
                       AND outcome IS NULL AND expires_at > $3";
            if expires_at <= now && tx.scalar::<i64>(sql, args![&task_id, &lease_id, now]).await? > 0 {
                return Ok(RenewOutcome::Lost);
            }
            let sql = "UPDATE prover_leases SET expires_at = $1 WHERE lease_id = $2";
            tx.execute(sql, args![now.saturating_add(lease_ms(lease)), &lease_id]).await?;
            Ok(RenewOutcome::Renewed)
        })
    }

    async fn record_progress(&self, task_id: &str, lease_id: &str, done: u64, total: u64) -> Result<bool> {
        let (done, total) = (to_i64(done, "segments done")?, to_i64(total, "segments")?);
        tx!(self, Write, |tx, task_id, lease_id| {
            let sql = "UPDATE tasks SET progress_done = $1, progress_total = $2 WHERE id = $3 \
                       AND status = 'proving' AND EXISTS (SELECT 1 FROM prover_leases \
                       WHERE lease_id = $4 AND task_id = $3 AND outcome IS NULL)";
            Ok(tx.execute(sql, args![done, total, &task_id, &lease_id]).await? > 0)
        })
    }

    async fn task_progress(&self, task_id: &str) -> Result<Option<(u64, u64)>> {
        tx!(self, Statements, |tx, task_id| {
            let sql = "SELECT progress_done, progress_total FROM tasks WHERE id = $1";
            let Some(mut r) = tx.opt(sql, args![&task_id]).await? else { return Ok(None) };
            Ok(r.take::<Option<u64>>(0)?.zip(r.take::<Option<u64>>(1)?))
        })
    }

    async fn worker_record(&self, worker: &str, window: u32) -> Result<WorkerRecord> {
        tx!(self, Statements, |tx, worker| {
            let sql = format!(
                "SELECT {WORKER_FAILED}, issued_at FROM prover_leases WHERE worker = $1 AND outcome IS NOT NULL \
                 ORDER BY issued_at DESC LIMIT $2"
            );
            let mut record = WorkerRecord::default();
            for mut r in tx.query(&sql, args![&worker, i64::from(window)]).await? {
                if !r.take::<bool>(0)? {
                    break;
                }
                record.consecutive_failures += 1;
                if record.last_failure_at.is_none() {
                    record.last_failure_at = Some(r.take(1)?);
                }
            }
            Ok(record)
        })
    }

    async fn fail_attempt(
        &self,
        task_id: &str,
        lease_id: &str,
        outcome: &str,
        reason: &str,
        max_attempts: u32,
    ) -> Result<AttemptOutcome> {
        tx!(self, Write, |tx, task_id, lease_id, outcome, reason| {
            let now = tx.now().await?;
            if let Err(refused) = may_report(tx, &task_id, &lease_id).await? {
                return Ok(refused);
            }
            let sql = "UPDATE prover_leases SET outcome = $1, reason = $2 WHERE lease_id = $3";
            tx.execute(sql, args![&outcome, &reason, &lease_id]).await?;
            let (_, attempts, _) = lease_counts(tx, &task_id).await?;
            let sql = "SELECT COUNT(*) FROM prover_leases WHERE task_id = $1 AND outcome IS NULL AND expires_at > $2";
            let open: i64 = tx.scalar(sql, args![&task_id, now]).await?;
            if attempts >= i64::from(max_attempts) && open == 0 {
                fail_proving(tx, &task_id, now).await?;
                return Ok(AttemptOutcome::TaskFailed);
            }
            Ok(AttemptOutcome::Retrying)
        })
    }

    async fn accept_proof(
        &self,
        task_id: &str,
        lease_id: &str,
        receipt: Vec<u8>,
        journal: Vec<u8>,
        user_cycles: u64,
    ) -> Result<AttemptOutcome> {
        accept(self, task_id, lease_id, receipt, journal, user_cycles, None).await
    }

    async fn accept_proof_claimed(
        &self,
        task_id: &str,
        lease_id: &str,
        receipt: Vec<u8>,
        journal: Vec<u8>,
        user_cycles: u64,
        owner: &str,
        lease: Duration,
    ) -> Result<AttemptOutcome> {
        accept(self, task_id, lease_id, receipt, journal, user_cycles, Some((owner, lease))).await
    }

    async fn prover_attempts(&self, task_id: &str) -> Result<Vec<ProverAttempt>> {
        tx!(self, Statements, |tx, task_id| read_attempts(tx, &task_id).await)
    }

    async fn record_failure_delivery(&self, task_id: &str, u: StageUpdate) -> Result<()> {
        tx!(self, Write, |tx, task_id; u| {
            let now = tx.now().await?;
            let sql = "UPDATE tasks SET result = COALESCE($1, result), logs = COALESCE($2, logs), \
                       updated_at = $3 WHERE id = $4 AND status = 'failed'";
            let n = tx.execute(sql, args![u.result.as_ref(), u.logs.as_ref(), now, &task_id]).await?;
            if let (1, Some(write)) = (n, &u.volume) {
                put_volume(tx, write, now).await?;
            }
            Ok(())
        })
    }

    async fn lease_stats(&self, since_ms: i64) -> Result<(Vec<(String, u64)>, u64)> {
        tx!(self, Statements, |tx| {
            let now = tx.now().await?;
            let rows = tx.query(LEASES_BY_OUTCOME, args![now]).await?;
            let by_outcome =
                rows.into_iter().map(|mut r| Ok((r.take(0)?, r.take(1)?))).collect::<Result<_>>()?;
            Ok((by_outcome, tx.scalar(RECENT_PROVERS, args![since_ms]).await?))
        })
    }

    async fn status_counts(&self) -> Result<StatusCounts> {
        tx!(self, Statements, |tx| {
            let rows = tx.query(TASKS_BY_STATUS, &[]).await?;
            rows.into_iter().map(|mut r| Ok((status(&r.take::<String>(0)?)?, r.take(1)?))).collect()
        })
    }

    async fn unfinished_tasks_of(&self, submitter: Option<&str>) -> Result<u64> {
        let submitter = submitter.map(str::to_owned);
        tx!(self, Statements, |tx, submitter| tx.scalar(UNFINISHED_OF, args![submitter.as_deref()]).await)
    }

    async fn prune_payloads(&self, finished_before: i64, limit: usize) -> Result<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        tx!(self, Write, |tx| {
            let sql = "UPDATE tasks SET input = NULL, receipt = NULL WHERE seq IN (SELECT seq FROM tasks \
                       WHERE status IN ('done', 'failed', 'cancelled') AND (input IS NOT NULL OR receipt IS NOT NULL) \
                       AND updated_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)";
            tx.execute(sql, args![finished_before, limit]).await
        })
    }

    async fn now_ms(&self) -> Result<i64> {
        if !B::SHARED {
            // One process owns an unshared store: its clock is the store's (no connection needed).
            return Ok(crate::now_ms());
        }
        tx!(self, Statements, |tx| tx.now().await)
    }

    async fn programs_with_pending_work(&self, limit: usize) -> Result<Vec<String>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        tx!(self, Statements, |tx| {
            let sql = "SELECT program_id FROM tasks WHERE status IN ('queued', 'witnessing', 'delivering') \
                       GROUP BY program_id ORDER BY MAX(seq) DESC LIMIT $1";
            tx.query(sql, args![limit]).await?.into_iter().map(|mut r| r.take(0)).collect()
        })
    }

    async fn use_nonce(&self, key: &str, keep: Duration) -> Result<bool> {
        tx!(self, Write, |tx, key| {
            let now = tx.now().await?;
            let sql = "DELETE FROM request_nonces WHERE at < $1";
            tx.execute(sql, args![now.saturating_sub(lease_ms(keep))]).await?;
            let sql = "INSERT INTO request_nonces (key, at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
            Ok(tx.execute(sql, args![&key, now]).await? == 1)
        })
    }

    async fn append_blocks(&self, domain: &str, prev_root: [u8; 32], blocks: Vec<NewBlock>) -> Result<bool> {
        tx!(self, Write, |tx, domain; blocks| {
            // Appends are serialized: each one checks the newest root first.
            tx.lock("smt").await?;
            let newest = tx.opt("SELECT seq, root FROM smt_updates ORDER BY seq DESC LIMIT 1", &[]).await?;
            let (mut seq, newest_root): (i64, [u8; 32]) = match newest {
                Some(mut r) => (r.take(0)?, r.take(1)?),
                None => (0, [0u8; 32]),
            };
            if newest_root != prev_root {
                return Ok(false);
            }
            let now = tx.now().await?;
            let mut prev = prev_root;
            for b in blocks.iter() {
                seq += 1;
                let sql = "INSERT INTO smt_updates (seq, domain, number, block_hash, state_root, header, \
                           prev_root, root, inserted_at, admitted_by, beacon_slot) \
                           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
                let number = to_i64(b.number, "block number")?;
                let slot = b.admission.beacon_slot().map(|s| to_i64(s, "beacon slot")).transpose()?;
                let args = args![
                    seq, &domain, number, &b.block_hash, &b.state_root, &b.header, &prev, &b.root, now,
                    b.admission.as_str(), slot
                ];
                tx.execute(sql, args).await?;
                prev = b.root;
            }
            insert_nodes(tx, blocks.iter().flat_map(|b| &b.nodes)).await?;
            Ok(true)
        })
    }

    async fn smt_updates(&self, after_seq: u64) -> Result<Vec<SmtUpdate>> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        tx!(self, Statements, |tx| {
            let sql = "SELECT seq, domain, number, block_hash, state_root, prev_root, root, admitted_by, \
                       beacon_slot FROM smt_updates WHERE seq > $1 ORDER BY seq";
            let update = |mut r: Row| {
                Ok(SmtUpdate {
                    seq: r.take(0)?,
                    domain: r.take(1)?,
                    number: r.take(2)?,
                    block_hash: r.take(3)?,
                    state_root: r.take(4)?,
                    prev_root: r.take(5)?,
                    root: r.take(6)?,
                    admission: Admission::from_columns(&r.take::<String>(7)?, r.take(8)?)?,
                })
            };
            tx.query(sql, args![after]).await?.into_iter().map(update).collect()
        })
    }

    async fn block_header(&self, domain: &str, number: u64) -> Result<Option<Vec<u8>>> {
        let number = i64::try_from(number).unwrap_or(i64::MAX);
        tx!(self, Statements, |tx, domain| {
            let sql = "SELECT header FROM smt_updates WHERE domain = $1 AND number = $2";
            tx.first(sql, args![&domain, number]).await
        })
    }

    async fn light_client_state(&self, domain: &str) -> Result<Option<(u64, Vec<u8>)>> {
        tx!(self, Statements, |tx, domain| {
            let sql = "SELECT version, state FROM light_client_states WHERE domain = $1";
            match tx.opt(sql, args![&domain]).await? {
                Some(mut r) => Ok(Some((r.take(0)?, r.take(1)?))),
                None => Ok(None),
            }
        })
    }

    async fn put_light_client_state(&self, domain: &str, expected: u64, state: Vec<u8>) -> Result<bool> {
        let expected = to_i64(expected, "light-client state version")?;
        tx!(self, Write, |tx, domain; state| {
            let now = tx.now().await?;
            let changed = if expected == 0 {
                let sql = "INSERT INTO light_client_states (domain, version, state, updated_at) \
                           VALUES ($1, 1, $2, $3) ON CONFLICT (domain) DO NOTHING";
                tx.execute(sql, args![&domain, &*state, now]).await?
            } else {
                let sql = "UPDATE light_client_states SET version = version + 1, state = $2, updated_at = $3 \
                           WHERE domain = $1 AND version = $4";
                tx.execute(sql, args![&domain, &*state, now, expected]).await?
            };
            Ok(changed == 1)
        })
    }

    async fn smt_walk(&self, walk: zkcoproc_smt::Walk) -> Result<Result<Opening, WalkError>> {
        tx!(self, Statements, |tx, walk| {
            let mut walk = walk;
            while let Some(hash) = walk.next_hash() {
                let node: Option<Vec<u8>> =
                    tx.first("SELECT node FROM smt_nodes WHERE hash = $1", args![&hash]).await?;
                if let Err(e) = walk.feed(node.as_deref()) {
                    return Ok(Err(e));
                }
            }
            Ok(Ok(walk.finish()))
        })
    }

    async fn put_smt_nodes(&self, nodes: Vec<([u8; 32], Vec<u8>)>) -> Result<()> {
        tx!(self, Write, |tx; nodes| insert_nodes(tx, nodes.iter()).await)
    }

    async fn has_smt_node(&self, hash: [u8; 32]) -> Result<bool> {
        tx!(self, Statements, |tx| Ok(tx
            .opt("SELECT 1 FROM smt_nodes WHERE hash = $1", args![&hash])
            .await?
            .is_some()))
    }

    async fn list_programs(&self, owner: Option<&str>, limit: usize) -> Result<Vec<ProgramSummary>> {
        let (owner, limit) = (owner.map(str::to_owned), i64::try_from(limit).unwrap_or(i64::MAX));
        tx!(self, Statements, |tx, owner| {
            let sql = format!(
                "SELECT {PROGRAM_COLUMNS}, v.version, v.size, (SELECT COUNT(*) FROM volume_blocks_4k b \
                 WHERE b.program_id = p.id AND b.superseded_by IS NULL AND length(b.data) > 0) \
                 FROM programs p LEFT JOIN volumes v ON v.program_id = p.id \
                 WHERE CAST($1 AS TEXT) IS NULL OR p.owner = $1 ORDER BY p.created_at DESC, p.id LIMIT $2"
            );
            let mut programs = Vec::new();
            for mut r in tx.query(&sql, args![owner.as_deref(), limit]).await? {
                let info = program_info(&mut r)?;
                let head = r.take::<Option<u64>>(8)?.zip(r.take::<Option<u64>>(9)?);
                let sql = "SELECT status, COUNT(*) FROM tasks WHERE program_id = $1 GROUP BY status";
                let counts = tx.query(sql, args![&info.id]).await?.into_iter();
                programs.push(ProgramSummary {
                    tasks: counts
                        .map(|mut c| Ok((status(&c.take::<String>(0)?)?, c.take(1)?)))
                        .collect::<Result<_>>()?,
                    volume: head.map(|(version, size)| VolumeHead { version, size }),
                    volume_blocks: r.take(10)?,
                    info,
                });
            }
            Ok(programs)
        })
    }

    async fn list_tasks(&self, filter: TaskFilter, limit: usize) -> Result<Vec<TaskSummary>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        tx!(self, Statements, |tx, filter| {
            let wanted = filter.status.map(|s| s.as_str());
            let sql = "SELECT t.seq, t.id, t.program_id, t.status, t.created_at, t.updated_at, t.submitter, \
                       t.error_code FROM tasks t JOIN programs p ON p.id = t.program_id \
                       WHERE (CAST($1 AS TEXT) IS NULL OR t.status = $1) AND (CAST($2 AS TEXT) IS NULL OR t.program_id = $2) \
                       AND (CAST($3 AS TEXT) IS NULL OR t.submitter = $3 OR p.owner = $3) \
                       AND (CAST($4 AS BIGINT) IS NULL OR t.seq < $4) \
                       ORDER BY t.seq DESC LIMIT $5";
            let args =
                args![wanted, filter.program_id.as_ref(), filter.visible_to.as_ref(), filter.before, limit];
            let rows = tx.query(sql, args).await?.into_iter().map(|mut r| {
                Ok(TaskSummary {
                    seq: r.take(0)?,
                    id: r.take(1)?,
                    program_id: r.take(2)?,
                    status: status(&r.take::<String>(3)?)?,
                    created_at: r.take(4)?,
                    updated_at: r.take(5)?,
                    submitter: r.take(6)?,
                    error_code: r.take(7)?,
                })
            });
            rows.collect()
        })
    }

    async fn task_changes(&self, after_seq: i64, limit: usize) -> Result<(Vec<TaskChange>, i64)> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        tx!(self, Read, |tx| {
            let sql = "SELECT e.seq, e.task_id, t.program_id, e.status, e.at, t.submitter, p.owner \
                       FROM task_events e JOIN tasks t ON t.id = e.task_id JOIN programs p ON p.id = t.program_id \
                       WHERE e.seq > $1 ORDER BY e.seq LIMIT $2";
            let changes = tx.query(sql, args![after_seq, limit]).await?.into_iter().map(|mut r| {
                Ok(TaskChange {
                    seq: r.take(0)?,
                    task_id: r.take(1)?,
                    program_id: r.take(2)?,
                    status: status(&r.take::<String>(3)?)?,
                    at: r.take(4)?,
                    submitter: r.take(5)?,
                    owner: r.take(6)?,
                })
            });
            let changes = changes.collect::<Result<Vec<_>>>()?;
            let newest =
                tx.scalar("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM task_events", &[]).await?;
            Ok((changes, newest))
        })
    }

    async fn recent_leases(&self, limit: usize) -> Result<Vec<ProverAttempt>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        tx!(self, Statements, |tx| {
            let sql = format!(
                "SELECT {ATTEMPT_COLUMNS} FROM prover_leases ORDER BY issued_at DESC, lease_id LIMIT $1"
            );
            tx.query(&sql, args![limit]).await?.into_iter().map(attempt).collect()
        })
    }

    async fn claim_webhook_secret(&self, program_id: &str, secret: &str) -> Result<bool> {
        tx!(self, Write, |tx, program_id, secret| {
            let sql = "UPDATE programs SET webhook_secret = $1 WHERE id = $2 AND webhook_secret IS NULL";
            Ok(tx.execute(sql, args![&secret, &program_id]).await? == 1)
        })
    }

    async fn replace_webhook_secret(&self, program_id: &str, secret: &str) -> Result<bool> {
        tx!(self, Write, |tx, program_id, secret| {
            let sql = "UPDATE programs SET webhook_secret = $1 WHERE id = $2";
            Ok(tx.execute(sql, args![&secret, &program_id]).await? == 1)
        })
    }

    async fn webhook_secret(&self, program_id: &str) -> Result<Option<String>> {
        tx!(self, Statements, |tx, program_id| {
            let sql = "SELECT webhook_secret FROM programs WHERE id = $1";
            Ok(tx.first::<Option<String>>(sql, args![&program_id]).await?.flatten())
        })
    }

    async fn due_webhooks(&self, owner: &str, lease: Duration, limit: usize) -> Result<Vec<DueWebhook>> {
        // Most polls find nothing: a read says so without taking the write lock.
        let any = tx!(self, Statements, |tx| {
            let now = tx.now().await?;
            let sql = "SELECT 1 FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $1 \
                       AND (lease_expires_at IS NULL OR lease_expires_at < $1) LIMIT 1";
            Ok(tx.opt(sql, args![now]).await?.is_some())
        })?;
        if !any {
            return Ok(Vec::new());
        }
        tx!(self, Write, |tx, owner| {
            let now = tx.now().await?;
            let sql = "SELECT task_id, program_id, url, attempts, created_at FROM webhook_deliveries \
                       WHERE state = 'pending' AND next_attempt_at <= $1 \
                         AND (lease_expires_at IS NULL OR lease_expires_at < $1) \
                       ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED";
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut due = Vec::new();
            for mut r in tx.query(sql, args![now, limit]).await? {
                let d = DueWebhook {
                    task_id: r.take(0)?,
                    program_id: r.take(1)?,
                    url: r.take(2)?,
                    attempts: r.take(3)?,
                    created_at: r.take(4)?,
                };
                let sql = "UPDATE webhook_deliveries SET lease_owner = $1, lease_expires_at = $2 WHERE task_id = $3";
                tx.execute(sql, args![&owner, now.saturating_add(lease_ms(lease)), &d.task_id]).await?;
                due.push(d);
            }
            Ok(due)
        })
    }

    async fn record_webhook_attempt(
        &self,
        task_id: &str,
        owner: &str,
        status: Option<u16>,
        error: Option<String>,
        verdict: WebhookVerdict,
    ) -> Result<bool> {
        tx!(self, Write, |tx, task_id, owner, error| {
            let now = tx.now().await?;
            let sql = "SELECT attempts FROM webhook_deliveries \
                       WHERE task_id = $1 AND lease_owner = $2 AND state = 'pending' FOR UPDATE";
            if tx.first::<i64>(sql, args![&task_id, &owner]).await?.is_none() {
                return Ok(false);
            }
            let sql = "INSERT INTO webhook_attempts (task_id, at, status, error) VALUES ($1, $2, $3, $4)";
            tx.execute(sql, args![&task_id, now, status.map(i64::from), error.as_deref()]).await?;
            let (state, next) = match verdict {
                WebhookVerdict::Delivered => ("delivered", now),
                WebhookVerdict::Retry(after) => ("pending", now.saturating_add(lease_ms(after))),
                WebhookVerdict::Abandon => ("abandoned", now),
            };
            let sql =
                "UPDATE webhook_deliveries SET attempts = attempts + 1, state = $1, next_attempt_at = $2, \
                       lease_owner = NULL, lease_expires_at = NULL WHERE task_id = $3";
            tx.execute(sql, args![state, next, &task_id]).await?;
            Ok(true)
        })
    }
}
