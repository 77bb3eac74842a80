//! The embedded SQLite store.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::{
    now_ms, AttemptOutcome, CancelOutcome, Idempotency, Inserted, Leased, NewBlock, NewProgram, NewTask,
    ProgramInfo, ProverAttempt, ProverLease, RenewOutcome, Result, SmtUpdate, StageUpdate, StatusCounts,
    Store, StoreError, TaskError, TaskEvent, TaskRecord, TaskStatus,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE programs (
    id          TEXT PRIMARY KEY,
    image_id    TEXT NOT NULL,
    controller  BLOB NOT NULL,
    circuit     BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE tasks (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    program_id       TEXT NOT NULL REFERENCES programs(id),
    args             TEXT NOT NULL,
    root             BLOB NOT NULL,
    receipt_kind     TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    input            BLOB,
    receipt          BLOB,
    journal          BLOB,
    logs             TEXT NOT NULL DEFAULT '[]',
    result           TEXT,
    user_cycles      INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER
);
CREATE INDEX tasks_unfinished ON tasks(seq) WHERE status NOT IN ('done', 'failed', 'cancelled');
CREATE TABLE task_events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id  TEXT NOT NULL REFERENCES tasks(id),
    status   TEXT NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX task_events_by_task ON task_events(task_id, seq);
"#,
    r#"
CREATE TABLE volumes (
    program_id  TEXT PRIMARY KEY REFERENCES programs(id),
    image       BLOB NOT NULL,
    updated_at  INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE idempotency_keys (
    program_id    TEXT NOT NULL REFERENCES programs(id),
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    task_id       TEXT NOT NULL REFERENCES tasks(id),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (program_id, key)
);
"#,
    r#"
CREATE TABLE prover_leases (
    lease_id    TEXT PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks(id),
    worker      TEXT NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    outcome     TEXT,
    reason      TEXT
);
CREATE INDEX prover_leases_by_task ON prover_leases(task_id);
CREATE INDEX prover_leases_open ON prover_leases(worker) WHERE outcome IS NULL;
CREATE INDEX tasks_proving ON tasks(seq) WHERE status = 'proving';
ALTER TABLE tasks ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
ALTER TABLE tasks ADD COLUMN expected_journal BLOB;
"#,
    r#"
CREATE TABLE smt_updates (
    seq          INTEGER PRIMARY KEY,
    domain       TEXT NOT NULL,
    number       INTEGER NOT NULL,
    block_hash   BLOB NOT NULL,
    state_root   BLOB NOT NULL,
    header       BLOB NOT NULL,
    prev_root    BLOB NOT NULL,
    root         BLOB NOT NULL,
    inserted_at  INTEGER NOT NULL,
    UNIQUE (domain, number)
);
"#,
];

const TASK_COLUMNS: &str = "id, program_id, args, root, receipt_kind, status, attempts, \
    error_code, error_message, created_at, updated_at, input, receipt, journal, logs, result, \
    user_cycles, lease_owner, claims, expected_journal";

/// SQLite store in one file (WAL mode). One process owns a data directory at a time: opening
/// takes an exclusive lock on `zkcoproc.lock` beside the database.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    _lock: Option<File>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `DIR/zkcoproc.db`, locks the directory and migrates.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let lock =
            File::options().create(true).truncate(false).write(true).open(dir.join("zkcoproc.lock"))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(format!(
                "data directory {} is in use by another zkcoproc process",
                dir.display()
            )));
        }
        let conn = Connection::open(dir.join("zkcoproc.db"))?;
        let mut store = Self::from_connection(conn)?;
        store._lock = Some(lock);
        Ok(store)
    }

    /// An in-memory store (tests).
    pub fn in_memory() -> Result<Self> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before it returns, so an acknowledged task survives power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), _lock: None })
    }

    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard =
                conn.lock().map_err(|_| StoreError::Database("connection mutex poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Database(format!("store worker failed: {e}")))?
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is newer than this build ({known})"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

fn read_task(conn: &Connection, id: &str) -> Result<Option<TaskRecord>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
    let Some(mut task) = conn.query_row(&sql, [id], task_from_row).optional()?.transpose()? else {
        return Ok(None);
    };
    task.history = read_events(conn, id)?;
    Ok(Some(task))
}

fn read_attempts(conn: &Connection, task_id: &str) -> Result<Vec<ProverAttempt>> {
    let mut stmt = conn.prepare_cached(
        "SELECT lease_id, task_id, worker, issued_at, expires_at, outcome, reason FROM prover_leases \
         WHERE task_id = ?1 ORDER BY issued_at, lease_id",
    )?;
    let rows = stmt.query_map([task_id], |r| {
        Ok(ProverAttempt {
            lease_id: r.get(0)?,
            task_id: r.get(1)?,
            worker: r.get(2)?,
            issued_at: r.get(3)?,
            expires_at: r.get(4)?,
            outcome: r.get(5)?,
            reason: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The status of the task a lease belongs to and the lease's outcome so far, or `None` if the
/// lease is not that task's.
fn lease_task_status(
    conn: &Connection,
    task_id: &str,
    lease_id: &str,
) -> Result<Option<(TaskStatus, Option<String>)>> {
    let row: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT t.status, pl.outcome FROM prover_leases pl JOIN tasks t ON t.id = pl.task_id \
             WHERE pl.lease_id = ?1 AND pl.task_id = ?2",
            params![lease_id, task_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(s, outcome)| {
        TaskStatus::parse(&s)
            .map(|status| (status, outcome))
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {s}")))
    })
    .transpose()
}

/// Whether `lease_id` may report a result for `task_id` now: it must be a lease of that task,
/// the task must still be proving, and the lease must not have had its verdict yet (open, or
/// expired: a late result is still welcome). `Err` carries why not.
fn may_report(conn: &Connection, task_id: &str, lease_id: &str) -> Result<Result<(), AttemptOutcome>> {
    let Some((status, judged)) = lease_task_status(conn, task_id, lease_id)? else {
        return Ok(Err(AttemptOutcome::Unknown));
    };
    if status != TaskStatus::Proving {
        return Ok(Err(AttemptOutcome::NotProving(status)));
    }
    if !matches!(judged.as_deref(), None | Some("expired")) {
        return Ok(Err(AttemptOutcome::LeaseEnded));
    }
    Ok(Ok(()))
}

/// Fails a proving task whose attempts are used up, listing them. Returns whether it moved.
fn fail_proving(conn: &Connection, task_id: &str, now: i64) -> Result<bool> {
    conn.execute(
        "UPDATE prover_leases SET outcome = 'expired' WHERE task_id = ?1 AND outcome IS NULL",
        [task_id],
    )?;
    let attempts = read_attempts(conn, task_id)?;
    let list: Vec<String> = attempts
        .iter()
        .map(|a| {
            let outcome = a.outcome.as_deref().unwrap_or("open");
            match &a.reason {
                Some(r) => format!("{} on {}: {outcome} ({r})", a.lease_id, a.worker),
                None => format!("{} on {}: {outcome}", a.lease_id, a.worker),
            }
        })
        .collect();
    let message = format!("no proof after {} attempts: {}", attempts.len(), list.join("; "));
    let n = conn.execute(
        "UPDATE tasks SET status = 'failed', updated_at = ?1, error_code = 'prover_failed', error_message = ?2, \
         lease_owner = NULL, lease_expires_at = NULL WHERE id = ?3 AND status = 'proving'",
        params![now, message, task_id],
    )?;
    if n == 1 {
        conn.execute(
            "INSERT INTO task_events (task_id, status, at) VALUES (?1, 'failed', ?2)",
            params![task_id, now],
        )?;
    }
    Ok(n == 1)
}

fn put_volume(conn: &Connection, program_id: &str, image: &[u8], now: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO volumes (program_id, image, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(program_id) DO UPDATE SET image = excluded.image, updated_at = excluded.updated_at",
        params![program_id, image, now],
    )?;
    Ok(())
}

fn read_events(conn: &Connection, id: &str) -> Result<Vec<TaskEvent>> {
    let mut stmt =
        conn.prepare_cached("SELECT seq, status, at FROM task_events WHERE task_id = ?1 ORDER BY seq")?;
    let rows =
        stmt.query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, status, at) = row?;
        let status = TaskStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?;
        out.push(TaskEvent { seq, status, at });
    }
    Ok(out)
}

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Result<TaskRecord>> {
    let status: String = r.get(5)?;
    let root: Vec<u8> = r.get(3)?;
    let error_code: Option<String> = r.get(7)?;
    let error_message: Option<String> = r.get(8)?;
    let user_cycles: Option<i64> = r.get(16)?;
    let attempts: i64 = r.get(6)?;
    let Some(status) = TaskStatus::parse(&status) else {
        return Ok(Err(StoreError::Corrupt(format!("unknown status {status}"))));
    };
    let Ok(root) = <[u8; 32]>::try_from(root.as_slice()) else {
        return Ok(Err(StoreError::Corrupt("root is not 32 bytes".into())));
    };
    Ok(Ok(TaskRecord {
        id: r.get(0)?,
        program_id: r.get(1)?,
        args: r.get(2)?,
        root,
        receipt_kind: r.get(4)?,
        status,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        error: error_code.map(|code| TaskError { code, message: error_message.unwrap_or_default() }),
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        history: Vec::new(),
        input: r.get(11)?,
        receipt: r.get(12)?,
        journal: r.get(13)?,
        logs: r.get(14)?,
        result: r.get(15)?,
        user_cycles: user_cycles.map(|c| c as u64),
        lease_owner: r.get(17)?,
        claims: u32::try_from(r.get::<_, i64>(18)?).unwrap_or(u32::MAX),
        expected_journal: r.get(19)?,
    }))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn put_program(&self, p: NewProgram) -> Result<bool> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing: Option<String> = tx
                .query_row("SELECT image_id FROM programs WHERE id = ?1", [&p.id], |r| r.get(0))
                .optional()?;
            if let Some(image_id) = existing {
                if image_id != p.image_id {
                    return Err(StoreError::Conflict(format!(
                        "program {} exists with another image id",
                        p.id
                    )));
                }
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO programs (id, image_id, controller, circuit, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![p.id, p.image_id, p.controller, p.circuit, now_ms()],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn program(&self, id: &str) -> Result<Option<ProgramInfo>> {
        let id = id.to_owned();
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT id, image_id, length(controller), length(circuit), created_at \
                     FROM programs WHERE id = ?1",
                    [id],
                    |r| {
                        Ok(ProgramInfo {
                            id: r.get(0)?,
                            image_id: r.get(1)?,
                            controller_size: r.get::<_, i64>(2)? as u64,
                            circuit_size: r.get::<_, i64>(3)? as u64,
                            created_at: r.get(4)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    async fn program_artifacts(&self, id: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let id = id.to_owned();
        self.with(move |conn| {
            Ok(conn
                .query_row("SELECT controller, circuit FROM programs WHERE id = ?1", [id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?)
        })
        .await
    }

    async fn circuit_by_image_id(&self, image_id: &str) -> Result<Option<Vec<u8>>> {
        let image_id = image_id.to_owned();
        self.with(move |conn| {
            Ok(conn
                .query_row("SELECT circuit FROM programs WHERE image_id = ?1 LIMIT 1", [image_id], |r| {
                    r.get(0)
                })
                .optional()?)
        })
        .await
    }

    async fn insert_task(&self, t: NewTask, idempotency: Option<Idempotency>) -> Result<Inserted> {
        self.with(move |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(key) = &idempotency {
                let seen: Option<(String, String)> = tx
                    .query_row(
                        "SELECT request_hash, task_id FROM idempotency_keys WHERE program_id = ?1 AND key = ?2",
                        params![t.program_id, key.key],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                if let Some((hash, task_id)) = seen {
                    if hash != key.request_hash {
                        return Err(StoreError::Conflict(format!(
                            "Idempotency-Key `{}` was used for a different request (task {task_id})",
                            key.key
                        )));
                    }
                    let task = read_task(&tx, &task_id)?
                        .ok_or_else(|| StoreError::Corrupt(format!("idempotency key points at missing task {task_id}")))?;
                    return Ok(Inserted { task, created: false });
                }
            }
            tx.execute(
                "INSERT INTO tasks (id, program_id, args, root, receipt_kind, status, created_at, \
                 updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6)",
                params![t.id, t.program_id, t.args, t.root.to_vec(), t.receipt_kind, now],
            )?;
            tx.execute(
                "INSERT INTO task_events (task_id, status, at) VALUES (?1, 'queued', ?2)",
                params![t.id, now],
            )?;
            if let Some(key) = &idempotency {
                tx.execute(
                    "INSERT INTO idempotency_keys (program_id, key, request_hash, task_id, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![t.program_id, key.key, key.request_hash, t.id, now],
                )?;
            }
            let task = read_task(&tx, &t.id)?.ok_or_else(|| StoreError::Database("inserted task vanished".into()))?;
            tx.commit()?;
            Ok(Inserted { task, created: true })
        })
        .await
    }

    async fn task(&self, id: &str) -> Result<Option<TaskRecord>> {
        let id = id.to_owned();
        self.with(move |conn| read_task(conn, &id)).await
    }

    async fn task_events(&self, id: &str) -> Result<Vec<TaskEvent>> {
        let id = id.to_owned();
        self.with(move |conn| read_events(conn, &id)).await
    }

    async fn claim_next(&self, owner: &str, lease: Duration) -> Result<Option<TaskRecord>> {
        let owner = owner.to_owned();
        self.with(move |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id: Option<String> = tx
                .query_row(
                    "UPDATE tasks SET lease_owner = ?1, lease_expires_at = ?2, claims = claims + 1 \
                     WHERE seq = (SELECT seq FROM tasks \
                         WHERE status NOT IN ('done', 'failed', 'cancelled', 'proving') \
                           AND (lease_owner IS NULL OR lease_expires_at < ?3) \
                         ORDER BY seq LIMIT 1) \
                     RETURNING id",
                    params![owner, now.saturating_add(lease_ms(lease)), now],
                    |r| r.get(0),
                )
                .optional()?;
            let task = match id {
                Some(id) => read_task(&tx, &id)?,
                None => None,
            };
            tx.commit()?;
            Ok(task)
        })
        .await
    }

    async fn extend_lease(&self, id: &str, owner: &str, lease: Duration) -> Result<bool> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.with(move |conn| {
            let n = conn.execute(
                "UPDATE tasks SET lease_expires_at = ?1 WHERE id = ?2 AND lease_owner = ?3 \
                 AND status NOT IN ('done', 'failed', 'cancelled')",
                params![now_ms().saturating_add(lease_ms(lease)), id, owner],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_all_leases(&self) -> Result<u64> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner IS NOT NULL",
                [],
            )?;
            // In-process provers died with the previous process; remote workers' leases stand.
            let p = tx.execute(
                "UPDATE prover_leases SET outcome = 'expired', reason = 'service restarted' \
                 WHERE outcome IS NULL AND worker LIKE 'local-%'",
                [],
            )?;
            tx.commit()?;
            Ok((n + p) as u64)
        })
        .await
    }

    async fn transition(
        &self,
        id: &str,
        owner: &str,
        from: TaskStatus,
        to: TaskStatus,
        u: StageUpdate,
    ) -> Result<bool> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.with(move |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (error_code, error_message) = match u.error {
                Some(TaskError { code, message }) => (Some(code), Some(message)),
                None => (None, None),
            };
            let n = tx.execute(
                "UPDATE tasks SET status = ?1, updated_at = ?2, claims = 0, \
                    input = COALESCE(?3, input), result = COALESCE(?4, result), \
                    logs = COALESCE(?5, logs), expected_journal = COALESCE(?6, expected_journal), \
                    error_code = COALESCE(?7, error_code), \
                    error_message = COALESCE(?8, error_message), \
                    lease_owner = CASE WHEN ?9 THEN NULL ELSE lease_owner END, \
                    lease_expires_at = CASE WHEN ?9 THEN NULL ELSE lease_expires_at END \
                 WHERE id = ?10 AND status = ?11 AND lease_owner = ?12",
                params![
                    to.as_str(),
                    now,
                    u.input,
                    u.result,
                    u.logs,
                    u.expected_journal,
                    error_code,
                    error_message,
                    u.release_lease,
                    id,
                    from.as_str(),
                    owner,
                ],
            )?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO task_events (task_id, status, at) VALUES (?1, ?2, ?3)",
                params![id, to.as_str(), now],
            )?;
            if let Some((program_id, image)) = u.volume {
                put_volume(&tx, &program_id, &image, now)?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn volume(&self, program_id: &str) -> Result<Option<Vec<u8>>> {
        let id = program_id.to_owned();
        self.with(move |conn| {
            Ok(conn
                .query_row("SELECT image FROM volumes WHERE program_id = ?1", [id], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let id = id.to_owned();
        self.with(move |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let status: Option<String> =
                tx.query_row("SELECT status FROM tasks WHERE id = ?1", [&id], |r| r.get(0)).optional()?;
            let Some(status) = status else { return Ok(CancelOutcome::NotFound) };
            let status = TaskStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?;
            if status.is_terminal() {
                return Ok(CancelOutcome::AlreadyFinished(status));
            }
            tx.execute(
                "UPDATE tasks SET status = 'cancelled', updated_at = ?1, lease_owner = NULL, \
                 lease_expires_at = NULL, error_code = 'cancelled', \
                 error_message = 'cancelled on request while ' || status \
                 WHERE id = ?2",
                params![now, id],
            )?;
            tx.execute(
                "INSERT INTO task_events (task_id, status, at) VALUES (?1, 'cancelled', ?2)",
                params![id, now],
            )?;
            tx.commit()?;
            Ok(CancelOutcome::Cancelled(status))
        })
        .await
    }

    async fn lease_proving(&self, worker: &str, lease: Duration, max_attempts: u32) -> Result<Leased> {
        let worker = worker.to_owned();
        self.with(move |conn| {
            let now = now_ms();
            let expires = now.saturating_add(lease_ms(lease));
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Re-delivery: the worker's own open lease.
            let open: Option<(String, String)> = tx
                .query_row(
                    "SELECT pl.lease_id, pl.task_id FROM prover_leases pl JOIN tasks t ON t.id = pl.task_id \
                     WHERE pl.worker = ?1 AND pl.outcome IS NULL AND pl.expires_at > ?2 AND t.status = 'proving' \
                     ORDER BY pl.issued_at LIMIT 1",
                    params![worker, now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((lease_id, task_id)) = open {
                tx.execute("UPDATE prover_leases SET expires_at = ?1 WHERE lease_id = ?2", params![expires, lease_id])?;
                let task = read_task(&tx, &task_id)?.ok_or_else(|| StoreError::Corrupt("leased task vanished".into()))?;
                tx.commit()?;
                return Ok(Leased { lease: Some(ProverLease { lease_id, task, expires_at: expires }), failed: vec![] });
            }
            tx.execute(
                "UPDATE prover_leases SET outcome = 'expired' WHERE outcome IS NULL AND expires_at <= ?1",
                [now],
            )?;
            // Unleased proving tasks, those this worker has tried least first, then oldest.
            let candidates: Vec<String> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT t.id FROM tasks t WHERE t.status = 'proving' \
                     AND NOT EXISTS (SELECT 1 FROM prover_leases pl WHERE pl.task_id = t.id AND pl.outcome IS NULL) \
                     ORDER BY (SELECT COUNT(*) FROM prover_leases pl WHERE pl.task_id = t.id AND pl.worker = ?1), t.seq \
                     LIMIT 32",
                )?;
                let rows = stmt.query_map([&worker], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut failed = Vec::new();
            for task_id in candidates {
                // A lease that ended because this service died is not the prover's failure: it
                // counts against the (larger) crash allowance instead of `max_attempts`.
                let (leases, attempts, restarts): (i64, i64, i64) = tx.query_row(
                    "SELECT COUNT(*), \
                            COALESCE(SUM(reason IS NOT 'service restarted'), 0), \
                            COALESCE(SUM(reason IS 'service restarted'), 0) \
                     FROM prover_leases WHERE task_id = ?1",
                    [&task_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                if attempts >= i64::from(max_attempts) || restarts >= i64::from(crate::MAX_CRASHES) {
                    if fail_proving(&tx, &task_id, now)? {
                        failed.push(task_id);
                    }
                    continue;
                }
                let lease_id = format!("{task_id}/{}", leases + 1);
                tx.execute(
                    "INSERT INTO prover_leases (lease_id, task_id, worker, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![lease_id, task_id, worker, now, expires],
                )?;
                tx.execute("UPDATE tasks SET attempts = attempts + 1, updated_at = ?1 WHERE id = ?2", params![now, task_id])?;
                let task = read_task(&tx, &task_id)?.ok_or_else(|| StoreError::Corrupt("leased task vanished".into()))?;
                tx.commit()?;
                return Ok(Leased { lease: Some(ProverLease { lease_id, task, expires_at: expires }), failed });
            }
            tx.commit()?;
            Ok(Leased { lease: None, failed })
        })
        .await
    }

    async fn renew_prover_lease(
        &self,
        task_id: &str,
        lease_id: &str,
        lease: Duration,
    ) -> Result<RenewOutcome> {
        let (task_id, lease_id) = (task_id.to_owned(), lease_id.to_owned());
        self.with(move |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row: Option<(Option<String>, i64, String)> = tx
                .query_row(
                    "SELECT pl.outcome, pl.expires_at, t.status FROM prover_leases pl JOIN tasks t ON t.id = pl.task_id \
                     WHERE pl.lease_id = ?1 AND pl.task_id = ?2",
                    params![lease_id, task_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((outcome, expires_at, status)) = row else { return Ok(RenewOutcome::Unknown) };
            if status == "cancelled" {
                return Ok(RenewOutcome::Cancelled);
            }
            if status != "proving" || outcome.is_some() {
                return Ok(RenewOutcome::Lost);
            }
            // An expired lease may be revived only while nobody else holds the task.
            if expires_at <= now {
                let others: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM prover_leases WHERE task_id = ?1 AND lease_id <> ?2 \
                     AND outcome IS NULL AND expires_at > ?3",
                    params![task_id, lease_id, now],
                    |r| r.get(0),
                )?;
                if others > 0 {
                    return Ok(RenewOutcome::Lost);
                }
            }
            tx.execute(
                "UPDATE prover_leases SET expires_at = ?1 WHERE lease_id = ?2",
                params![now.saturating_add(lease_ms(lease)), lease_id],
            )?;
            tx.commit()?;
            Ok(RenewOutcome::Renewed)
        })
        .await
    }

    async fn fail_attempt(
        &self,
        task_id: &str,
        lease_id: &str,
        outcome: &str,
        reason: &str,
        max_attempts: u32,
    ) -> Result<AttemptOutcome> {
        let (task_id, lease_id, outcome, reason) =
            (task_id.to_owned(), lease_id.to_owned(), outcome.to_owned(), reason.to_owned());
        self.with(move |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Err(refused) = may_report(&tx, &task_id, &lease_id)? {
                return Ok(refused);
            }
            tx.execute(
                "UPDATE prover_leases SET outcome = ?1, reason = ?2 WHERE lease_id = ?3",
                params![outcome, reason, lease_id],
            )?;
            let attempts: i64 =
                tx.query_row("SELECT COUNT(*) FROM prover_leases WHERE task_id = ?1", [&task_id], |r| r.get(0))?;
            let open: i64 = tx.query_row(
                "SELECT COUNT(*) FROM prover_leases WHERE task_id = ?1 AND outcome IS NULL AND expires_at > ?2",
                params![task_id, now],
                |r| r.get(0),
            )?;
            let result = if attempts >= i64::from(max_attempts) && open == 0 {
                fail_proving(&tx, &task_id, now)?;
                AttemptOutcome::TaskFailed
            } else {
                AttemptOutcome::Retrying
            };
            tx.commit()?;
            Ok(result)
        })
        .await
    }

    async fn accept_proof(
        &self,
        task_id: &str,
        lease_id: &str,
        receipt: Vec<u8>,
        journal: Vec<u8>,
        user_cycles: u64,
    ) -> Result<AttemptOutcome> {
        let (task_id, lease_id) = (task_id.to_owned(), lease_id.to_owned());
        self.with(move |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Err(refused) = may_report(&tx, &task_id, &lease_id)? {
                return Ok(refused);
            }
            tx.execute("UPDATE prover_leases SET outcome = 'accepted' WHERE lease_id = ?1", [&lease_id])?;
            tx.execute(
                "UPDATE prover_leases SET outcome = 'superseded' WHERE task_id = ?1 AND outcome IS NULL",
                [&task_id],
            )?;
            tx.execute(
                "UPDATE tasks SET status = 'delivering', updated_at = ?1, claims = 0, receipt = ?2, journal = ?3, \
                 user_cycles = ?4 WHERE id = ?5",
                params![now, receipt, journal, user_cycles as i64, task_id],
            )?;
            for status in ["verifying", "delivering"] {
                tx.execute(
                    "INSERT INTO task_events (task_id, status, at) VALUES (?1, ?2, ?3)",
                    params![task_id, status, now],
                )?;
            }
            tx.commit()?;
            Ok(AttemptOutcome::Accepted)
        })
        .await
    }

    async fn record_failure_delivery(&self, task_id: &str, u: StageUpdate) -> Result<()> {
        let task_id = task_id.to_owned();
        self.with(move |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE tasks SET result = COALESCE(?1, result), logs = COALESCE(?2, logs), updated_at = ?3 \
                 WHERE id = ?4 AND status = 'failed'",
                params![u.result, u.logs, now, task_id],
            )?;
            if n == 1 {
                if let Some((program_id, image)) = u.volume {
                    put_volume(&tx, &program_id, &image, now)?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn prover_attempts(&self, task_id: &str) -> Result<Vec<ProverAttempt>> {
        let task_id = task_id.to_owned();
        self.with(move |conn| read_attempts(conn, &task_id)).await
    }

    async fn lease_stats(&self, since_ms: i64) -> Result<(Vec<(String, u64)>, u64)> {
        self.with(move |conn| {
            let now = now_ms();
            let mut stmt = conn.prepare_cached(
                "SELECT CASE WHEN outcome IS NOT NULL THEN outcome \
                             WHEN expires_at <= ?1 THEN 'expired' ELSE 'open' END AS o, COUNT(*) \
                 FROM prover_leases GROUP BY o",
            )?;
            let rows = stmt.query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
            let by_outcome = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            let workers: i64 = conn.query_row(
                "SELECT COUNT(DISTINCT worker) FROM prover_leases WHERE issued_at >= ?1 OR outcome IS NULL",
                [since_ms],
                |r| r.get(0),
            )?;
            Ok((by_outcome, workers as u64))
        })
        .await
    }

    async fn status_counts(&self) -> Result<StatusCounts> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached("SELECT status, COUNT(*) FROM tasks GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (status, n) = row?;
                let status = TaskStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status}")))?;
                out.push((status, n as u64));
            }
            Ok(out)
        })
        .await
    }

    async fn programs_with_pending_work(&self, limit: usize) -> Result<Vec<String>> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT program_id FROM tasks WHERE status IN ('queued', 'witnessing', 'delivering') \
                 GROUP BY program_id ORDER BY MAX(seq) DESC LIMIT ?1",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map([limit], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn append_blocks(&self, domain: &str, prev_root: [u8; 32], blocks: Vec<NewBlock>) -> Result<bool> {
        let domain = domain.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (mut seq, newest): (i64, Option<Vec<u8>>) = tx
                .query_row("SELECT seq, root FROM smt_updates ORDER BY seq DESC LIMIT 1", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?
                .map_or((0, None), |(s, r)| (s, Some(r)));
            if newest.as_deref().unwrap_or(&[0u8; 32][..]) != prev_root {
                return Ok(false);
            }
            let now = now_ms();
            let mut prev = prev_root;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO smt_updates (seq, domain, number, block_hash, state_root, header, \
                     prev_root, root, inserted_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                for b in &blocks {
                    seq += 1;
                    let number = i64::try_from(b.number)
                        .map_err(|_| StoreError::Database(format!("block number {} too large", b.number)))?;
                    stmt.execute(params![
                        seq,
                        domain,
                        number,
                        b.block_hash.to_vec(),
                        b.state_root.to_vec(),
                        b.header,
                        prev.to_vec(),
                        b.root.to_vec(),
                        now
                    ])?;
                    prev = b.root;
                }
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn smt_updates(&self, after_seq: u64) -> Result<Vec<SmtUpdate>> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, domain, number, block_hash, state_root, prev_root, root FROM smt_updates \
                 WHERE seq > ?1 ORDER BY seq",
            )?;
            let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
            let rows = stmt.query_map([after], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                    r.get::<_, Vec<u8>>(6)?,
                ))
            })?;
            let hash = |v: Vec<u8>| {
                <[u8; 32]>::try_from(v.as_slice())
                    .map_err(|_| StoreError::Corrupt("smt_updates: hash is not 32 bytes".into()))
            };
            let mut out = Vec::new();
            for row in rows {
                let (seq, domain, number, block_hash, state_root, prev_root, root) = row?;
                out.push(SmtUpdate {
                    seq: seq as u64,
                    domain,
                    number: number as u64,
                    block_hash: hash(block_hash)?,
                    state_root: hash(state_root)?,
                    prev_root: hash(prev_root)?,
                    root: hash(root)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn block_header(&self, domain: &str, number: u64) -> Result<Option<Vec<u8>>> {
        let domain = domain.to_owned();
        self.with(move |conn| {
            let number = i64::try_from(number).unwrap_or(i64::MAX);
            Ok(conn
                .query_row(
                    "SELECT header FROM smt_updates WHERE domain = ?1 AND number = ?2",
                    params![domain, number],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(id: &str) -> NewProgram {
        NewProgram {
            id: id.into(),
            image_id: "ab".repeat(32),
            controller: vec![1, 2, 3],
            circuit: vec![4, 5],
        }
    }

    fn task(id: &str) -> NewTask {
        NewTask {
            id: id.into(),
            program_id: "p".into(),
            args: "{}".into(),
            root: [0; 32],
            receipt_kind: "composite".into(),
        }
    }

    fn block(number: u64, root: u8) -> NewBlock {
        NewBlock {
            number,
            block_hash: [number as u8; 32],
            state_root: [number as u8 + 1; 32],
            header: vec![0xc0, number as u8],
            root: [root; 32],
        }
    }

    #[tokio::test]
    async fn programs_with_pending_work_are_those_with_controller_stages_ahead() {
        let s = SqliteStore::in_memory().expect("store");
        for p in ["p", "q"] {
            s.put_program(program(p)).await.expect("program");
        }
        s.insert_task(task("t1"), None).await.expect("insert");
        let mut other = task("t2");
        other.program_id = "q".into();
        s.insert_task(other, None).await.expect("insert");
        assert_eq!(s.programs_with_pending_work(10).await.expect("pending"), vec!["q", "p"]);
        assert_eq!(s.programs_with_pending_work(1).await.expect("pending"), vec!["q"]);
        assert!(s.cancel("t2").await.is_ok());
        assert_eq!(s.programs_with_pending_work(10).await.expect("pending"), vec!["p"]);
    }

    #[tokio::test]
    async fn smt_history_appends_only_on_top_of_the_newest_root() {
        let s = SqliteStore::in_memory().expect("store");
        assert!(s.append_blocks("eth", [0; 32], vec![block(5, 1), block(6, 2)]).await.expect("append"));
        // A writer that saw an older root is refused, and writes nothing.
        assert!(!s.append_blocks("eth", [1; 32], vec![block(7, 3)]).await.expect("stale"));
        assert!(s.append_blocks("eth", [2; 32], vec![block(7, 3)]).await.expect("append"));
        let all = s.smt_updates(0).await.expect("updates");
        assert_eq!(all.iter().map(|u| (u.seq, u.number)).collect::<Vec<_>>(), vec![(1, 5), (2, 6), (3, 7)]);
        assert_eq!(all[0].prev_root, [0; 32]);
        assert_eq!(all[2].prev_root, [2; 32]);
        assert_eq!(s.smt_updates(2).await.expect("tail").len(), 1);
        assert_eq!(s.block_header("eth", 6).await.expect("header"), Some(vec![0xc0, 6]));
        assert_eq!(s.block_header("eth", 8).await.expect("header"), None);
        // The same block twice is a constraint error, not a second leaf.
        assert!(s.append_blocks("eth", [3; 32], vec![block(7, 4)]).await.is_err());
        assert_eq!(s.smt_updates(0).await.expect("updates").len(), 3);
    }

    #[tokio::test]
    async fn deploy_is_idempotent_and_artifacts_round_trip() {
        let s = SqliteStore::in_memory().expect("open");
        assert!(s.put_program(program("p")).await.expect("put"));
        assert!(!s.put_program(program("p")).await.expect("put again"));
        let mut other = program("p");
        other.image_id = "cd".repeat(32);
        assert!(matches!(s.put_program(other).await, Err(StoreError::Conflict(_))));
        let info = s.program("p").await.expect("get").expect("exists");
        assert_eq!((info.controller_size, info.circuit_size), (3, 2));
        let (c, k) = s.program_artifacts("p").await.expect("get").expect("exists");
        assert_eq!((c, k), (vec![1, 2, 3], vec![4, 5]));
        assert!(s.program("q").await.expect("get").is_none());
    }

    #[tokio::test]
    async fn tasks_need_an_existing_program() {
        let s = SqliteStore::in_memory().expect("open");
        assert!(s.insert_task(task("t"), None).await.is_err());
    }

    #[tokio::test]
    async fn claims_are_exclusive_fifo_and_expire() {
        let s = SqliteStore::in_memory().expect("open");
        s.put_program(program("p")).await.expect("put");
        s.insert_task(task("t1"), None).await.expect("insert");
        s.insert_task(task("t2"), None).await.expect("insert");
        let a = s.claim_next("a", Duration::from_secs(60)).await.expect("claim").expect("t1");
        let b = s.claim_next("b", Duration::from_secs(60)).await.expect("claim").expect("t2");
        assert_eq!((a.id.as_str(), b.id.as_str()), ("t1", "t2"));
        assert_eq!((a.claims, b.claims), (1, 1));
        assert!(s.claim_next("c", Duration::from_secs(60)).await.expect("claim").is_none());
        // An expired lease is claimable again.
        assert!(s.extend_lease("t1", "a", Duration::ZERO).await.expect("extend"));
        std::thread::sleep(Duration::from_millis(5));
        let c = s.claim_next("c", Duration::from_secs(60)).await.expect("claim").expect("t1");
        assert_eq!((c.id.as_str(), c.claims), ("t1", 2));
        assert!(!s.extend_lease("t1", "a", Duration::from_secs(1)).await.expect("extend"));
    }

    #[tokio::test]
    async fn transitions_are_conditional_and_recorded() {
        let s = SqliteStore::in_memory().expect("open");
        s.put_program(program("p")).await.expect("put");
        s.insert_task(task("t"), None).await.expect("insert");
        s.claim_next("a", Duration::from_secs(60)).await.expect("claim");
        let w = |input: Vec<u8>| StageUpdate { input: Some(input), ..Default::default() };
        // Wrong owner or wrong source status: nothing happens.
        assert!(!s
            .transition("t", "b", TaskStatus::Queued, TaskStatus::Witnessing, w(vec![1]))
            .await
            .expect("tx"));
        assert!(!s
            .transition("t", "a", TaskStatus::Proving, TaskStatus::Verifying, w(vec![1]))
            .await
            .expect("tx"));
        assert!(s
            .transition("t", "a", TaskStatus::Queued, TaskStatus::Witnessing, w(vec![9]))
            .await
            .expect("tx"));
        // The same transition cannot happen twice.
        assert!(!s
            .transition("t", "a", TaskStatus::Queued, TaskStatus::Witnessing, w(vec![8]))
            .await
            .expect("tx"));
        let fail = StageUpdate {
            error: Some(TaskError { code: "x".into(), message: "boom".into() }),
            release_lease: true,
            ..Default::default()
        };
        assert!(s.transition("t", "a", TaskStatus::Witnessing, TaskStatus::Failed, fail).await.expect("tx"));
        let t = s.task("t").await.expect("get").expect("exists");
        assert_eq!(t.status, TaskStatus::Failed);
        assert_eq!(t.input, Some(vec![9]));
        assert_eq!(t.error.as_ref().map(|e| e.code.as_str()), Some("x"));
        assert_eq!(t.lease_owner, None);
        let statuses: Vec<_> = t.history.iter().map(|e| e.status).collect();
        assert_eq!(statuses, vec![TaskStatus::Queued, TaskStatus::Witnessing, TaskStatus::Failed]);
        let events = s.task_events("t").await.expect("events");
        assert_eq!(events.len(), 3);
        assert!(s.claim_next("a", Duration::from_secs(60)).await.expect("claim").is_none());
    }

    /// Puts task `id` in proving (as the runner does after witnessing).
    async fn proving(s: &SqliteStore, id: &str) {
        s.insert_task(task(id), None).await.expect("insert");
        s.claim_next("r", Duration::from_secs(60)).await.expect("claim").expect("claimed");
        let to_proving = StageUpdate { input: Some(vec![1]), release_lease: true, ..Default::default() };
        for (from, to, u) in [
            (TaskStatus::Queued, TaskStatus::Witnessing, StageUpdate::default()),
            (TaskStatus::Witnessing, TaskStatus::Proving, to_proving),
        ] {
            assert!(s.transition(id, "r", from, to, u).await.expect("tx"));
        }
    }

    #[tokio::test]
    async fn prover_leases_redeliver_retry_elsewhere_and_give_up() {
        let s = SqliteStore::in_memory().expect("open");
        s.put_program(program("p")).await.expect("put");
        proving(&s, "t").await;
        let lease = Duration::from_secs(60);
        // Runners never claim a proving task.
        assert!(s.claim_next("r", lease).await.expect("claim").is_none());
        let a = s.lease_proving("w1", lease, 3).await.expect("lease").lease.expect("t");
        assert_eq!((a.task.id.as_str(), a.task.attempts), ("t", 1));
        // Asking again returns the same lease (re-delivery); nobody else gets the task.
        let again = s.lease_proving("w1", lease, 3).await.expect("lease").lease.expect("redelivered");
        assert_eq!(again.lease_id, a.lease_id);
        assert!(s.lease_proving("w2", lease, 3).await.expect("lease").lease.is_none());
        assert_eq!(
            s.renew_prover_lease("t", &a.lease_id, lease).await.expect("renew"),
            RenewOutcome::Renewed
        );
        assert_eq!(s.renew_prover_lease("t", "t/9", lease).await.expect("renew"), RenewOutcome::Unknown);
        // A failed attempt: retried, preferably by another worker.
        let out = s.fail_attempt("t", &a.lease_id, "invalid", "bad seal", 3).await.expect("fail");
        assert_eq!(out, AttemptOutcome::Retrying);
        // A lease is judged once: neither a second verdict nor a later proof on it counts.
        let again = s.fail_attempt("t", &a.lease_id, "failed", "again", 3).await.expect("fail");
        assert_eq!(again, AttemptOutcome::LeaseEnded);
        let late = s.accept_proof("t", &a.lease_id, vec![1], vec![1], 1).await.expect("accept");
        assert_eq!(late, AttemptOutcome::LeaseEnded);
        proving(&s, "u").await;
        let b = s.lease_proving("w1", lease, 3).await.expect("lease").lease.expect("a task");
        assert_eq!(b.task.id, "u", "w1 should get the task it has not failed");
        let c = s.lease_proving("w2", lease, 3).await.expect("lease").lease.expect("t again");
        assert_eq!((c.task.id.as_str(), c.task.attempts), ("t", 2));
        // An expired lease lets another worker in; the late holder can no longer renew...
        assert_eq!(
            s.renew_prover_lease("t", &c.lease_id, Duration::ZERO).await.expect("renew"),
            RenewOutcome::Renewed
        );
        std::thread::sleep(Duration::from_millis(5));
        let d = s.lease_proving("w3", lease, 3).await.expect("lease").lease.expect("t a third time");
        assert_eq!(d.task.attempts, 3);
        assert_eq!(s.renew_prover_lease("t", &c.lease_id, lease).await.expect("renew"), RenewOutcome::Lost);
        // ... but its valid late proof is still accepted while the task is proving.
        let accepted = s.accept_proof("t", &c.lease_id, vec![7], vec![8], 99).await.expect("accept");
        assert_eq!(accepted, AttemptOutcome::Accepted);
        let t = s.task("t").await.expect("get").expect("t");
        assert_eq!(
            (t.status, t.receipt.clone(), t.user_cycles),
            (TaskStatus::Delivering, Some(vec![7]), Some(99))
        );
        let outcomes: Vec<_> = s
            .prover_attempts("t")
            .await
            .expect("attempts")
            .into_iter()
            .map(|a| (a.worker, a.outcome.unwrap_or_default()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("w1".into(), "invalid".into()),
                ("w2".into(), "accepted".into()),
                ("w3".into(), "superseded".into())
            ]
        );
        // The superseded holder learns it lost; its result is refused.
        assert_eq!(s.renew_prover_lease("t", &d.lease_id, lease).await.expect("renew"), RenewOutcome::Lost);
        let late = s.accept_proof("t", &d.lease_id, vec![1], vec![1], 1).await.expect("accept");
        assert_eq!(late, AttemptOutcome::NotProving(TaskStatus::Delivering));
        // Out of attempts: the task fails with the list of attempts.
        let out = s.fail_attempt("u", &b.lease_id, "failed", "boom", 2).await.expect("fail");
        assert_eq!(out, AttemptOutcome::Retrying);
        let l = s.lease_proving("w9", lease, 2).await.expect("lease").lease.expect("u");
        assert_eq!((l.task.id.as_str(), l.task.attempts), ("u", 2));
        let out = s.fail_attempt("u", &l.lease_id, "failed", "boom again", 2).await.expect("fail");
        assert_eq!(out, AttemptOutcome::TaskFailed);
        let u = s.task("u").await.expect("get").expect("u");
        assert_eq!(u.status, TaskStatus::Failed);
        let error = u.error.expect("error");
        assert_eq!(error.code, "prover_failed");
        assert!(error.message.contains("u/1 on w1") && error.message.contains("boom"), "{}", error.message);
    }

    #[tokio::test]
    async fn cancelled_tasks_stop_their_prover_and_restarts_free_local_leases() {
        let s = SqliteStore::in_memory().expect("open");
        s.put_program(program("p")).await.expect("put");
        proving(&s, "t").await;
        let lease = Duration::from_secs(60);
        let a = s.lease_proving("local-x-0", lease, 3).await.expect("lease").lease.expect("t");
        assert!(s.lease_proving("remote", lease, 3).await.expect("lease").lease.is_none());
        s.release_all_leases().await.expect("restart");
        let b =
            s.lease_proving("remote", lease, 3).await.expect("lease").lease.expect("freed by the restart");
        assert_ne!(a.lease_id, b.lease_id);
        s.cancel("t").await.expect("cancel");
        assert_eq!(
            s.renew_prover_lease("t", &b.lease_id, lease).await.expect("renew"),
            RenewOutcome::Cancelled
        );
        let refused = s.accept_proof("t", &b.lease_id, vec![1], vec![1], 1).await.expect("accept");
        assert_eq!(refused, AttemptOutcome::NotProving(TaskStatus::Cancelled));
    }

    #[tokio::test]
    async fn idempotency_keys_return_the_same_task_or_conflict() {
        let s = SqliteStore::in_memory().expect("open");
        s.put_program(program("p")).await.expect("put");
        let key = |hash: &str| Some(Idempotency { key: "k1".into(), request_hash: hash.into() });
        let first = s.insert_task(task("t1"), key("h")).await.expect("insert");
        assert!(first.created);
        let again = s.insert_task(task("t2"), key("h")).await.expect("retry");
        assert_eq!((again.task.id.as_str(), again.created), ("t1", false));
        assert!(s.task("t2").await.expect("get").is_none(), "a retry created a second task");
        assert!(matches!(s.insert_task(task("t3"), key("other")).await, Err(StoreError::Conflict(_))));
        assert!(s.task("t3").await.expect("get").is_none());
        // Without a key, or with another key, requests are independent.
        assert!(s.insert_task(task("t4"), None).await.expect("insert").created);
        let other = Some(Idempotency { key: "k2".into(), request_hash: "h".into() });
        assert!(s.insert_task(task("t5"), other).await.expect("insert").created);
    }

    #[tokio::test]
    async fn cancel_stops_the_holder_and_is_final() {
        let s = SqliteStore::in_memory().expect("open");
        s.put_program(program("p")).await.expect("put");
        s.insert_task(task("q"), None).await.expect("insert");
        s.insert_task(task("r"), None).await.expect("insert");
        // A queued task is never claimed once cancelled.
        assert_eq!(s.cancel("q").await.expect("cancel"), CancelOutcome::Cancelled(TaskStatus::Queued));
        let r = s.claim_next("a", Duration::from_secs(60)).await.expect("claim").expect("r");
        assert_eq!(r.id, "r");
        // A held task: the holder can neither move it nor renew its lease any more.
        assert_eq!(s.cancel("r").await.expect("cancel"), CancelOutcome::Cancelled(TaskStatus::Queued));
        assert!(!s
            .transition("r", "a", TaskStatus::Queued, TaskStatus::Witnessing, StageUpdate::default())
            .await
            .expect("tx"));
        assert!(!s.extend_lease("r", "a", Duration::from_secs(60)).await.expect("extend"));
        assert!(s.claim_next("b", Duration::from_secs(60)).await.expect("claim").is_none());
        // Finished tasks stay as they are; unknown ids are reported.
        assert_eq!(
            s.cancel("r").await.expect("cancel"),
            CancelOutcome::AlreadyFinished(TaskStatus::Cancelled)
        );
        assert_eq!(s.cancel("nope").await.expect("cancel"), CancelOutcome::NotFound);
        let t = s.task("q").await.expect("get").expect("q");
        assert_eq!(t.status, TaskStatus::Cancelled);
        assert_eq!(t.error.map(|e| e.code), Some("cancelled".to_owned()));
    }

    #[tokio::test]
    async fn volumes_commit_with_their_transition_only() {
        let s = SqliteStore::in_memory().expect("open");
        s.put_program(program("p")).await.expect("put");
        s.insert_task(task("t"), None).await.expect("insert");
        s.claim_next("a", Duration::from_secs(60)).await.expect("claim");
        assert_eq!(s.volume("p").await.expect("get"), None);
        let with_volume =
            |image: &[u8]| StageUpdate { volume: Some(("p".into(), image.to_vec())), ..Default::default() };
        // A transition that does not happen does not write the volume.
        assert!(!s
            .transition("t", "a", TaskStatus::Proving, TaskStatus::Verifying, with_volume(b"no"))
            .await
            .expect("tx"));
        assert_eq!(s.volume("p").await.expect("get"), None);
        assert!(s
            .transition("t", "a", TaskStatus::Queued, TaskStatus::Witnessing, with_volume(b"v1"))
            .await
            .expect("tx"));
        assert_eq!(s.volume("p").await.expect("get"), Some(b"v1".to_vec()));
    }

    #[tokio::test]
    async fn data_dir_is_exclusive_and_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(dir.path()).expect("open");
        assert!(matches!(SqliteStore::open(dir.path()), Err(StoreError::Locked(_))));
        s.put_program(program("p")).await.expect("put");
        s.insert_task(task("t"), None).await.expect("insert");
        drop(s);
        let s = SqliteStore::open(dir.path()).expect("reopen");
        let t = s.task("t").await.expect("get").expect("survived");
        assert_eq!(t.status, TaskStatus::Queued);
        let counts = s.status_counts().await.expect("counts");
        assert_eq!(counts, vec![(TaskStatus::Queued, 1)]);
    }
}
