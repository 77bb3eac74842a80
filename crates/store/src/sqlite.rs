//! The embedded SQLite store.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::{
    lease_ms, now_ms, prover_failed_message, AttemptOutcome, CancelOutcome, Idempotency, Inserted,
    LeaseRules, Leased, NewBlock, NewProgram, NewTask, Opening, ProgramInfo, ProverAttempt, ProverLease,
    RenewOutcome, Result, SmtUpdate, StageUpdate, StatusCounts, Store, StoreError, StoredVolume, TaskError,
    TaskEvent, TaskRecord, TaskStatus, VolumeWrite, WalkError, WorkerRecord, COUNTED_ATTEMPT,
    LIFETIME_EXCEEDED, TASK_COLUMNS, WORKER_FAILED,
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
    r#"
ALTER TABLE volumes ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
"#,
    r#"
CREATE TABLE request_nonces (
    key  TEXT PRIMARY KEY,
    at   INTEGER NOT NULL
);
CREATE INDEX request_nonces_by_age ON request_nonces(at);
"#,
    r#"
CREATE TABLE smt_nodes (
    hash  BLOB PRIMARY KEY,
    node  BLOB NOT NULL
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE programs ADD COLUMN owner TEXT;
ALTER TABLE tasks ADD COLUMN submitter TEXT;
CREATE INDEX tasks_unfinished_by_submitter ON tasks(submitter)
    WHERE status NOT IN ('done', 'failed', 'cancelled');
CREATE INDEX tasks_finished_with_payloads ON tasks(updated_at)
    WHERE status IN ('done', 'failed', 'cancelled') AND (input IS NOT NULL OR receipt IS NOT NULL);
CREATE INDEX prover_leases_by_worker ON prover_leases(worker, issued_at);
"#,
];

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
    let message = prover_failed_message(&attempts);
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

/// Writes a volume image if the stored version is still the write's base (see [`VolumeWrite`]).
fn put_volume(conn: &Connection, write: &VolumeWrite, now: i64) -> Result<()> {
    let current: i64 = conn
        .query_row("SELECT version FROM volumes WHERE program_id = ?1", [&write.program_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    if u64::try_from(current).ok() != Some(write.base) {
        return Err(StoreError::VolumeChanged(write.program_id.clone()));
    }
    let version = i64::try_from(write.base.saturating_add(1)).unwrap_or(i64::MAX);
    conn.execute(
        "INSERT INTO volumes (program_id, image, updated_at, version) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(program_id) DO UPDATE SET image = excluded.image, updated_at = excluded.updated_at, \
         version = excluded.version",
        params![write.program_id, write.image, now, version],
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
        submitter: r.get(20)?,
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
                "INSERT INTO programs (id, image_id, controller, circuit, created_at, owner) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![p.id, p.image_id, p.controller, p.circuit, now_ms(), p.owner],
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
                    "SELECT id, image_id, length(controller), length(circuit), created_at, owner \
                     FROM programs WHERE id = ?1",
                    [id],
                    |r| {
                        Ok(ProgramInfo {
                            id: r.get(0)?,
                            image_id: r.get(1)?,
                            controller_size: r.get::<_, i64>(2)? as u64,
                            circuit_size: r.get::<_, i64>(3)? as u64,
                            created_at: r.get(4)?,
                            owner: r.get(5)?,
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
                        // Never name the other task: the key may be another client's.
                        return Err(StoreError::Conflict(format!(
                            "Idempotency-Key `{}` was used for a different request",
                            key.key.rsplit('\n').next().unwrap_or_default()
                        )));
                    }
                    let task = read_task(&tx, &task_id)?
                        .ok_or_else(|| StoreError::Corrupt(format!("idempotency key points at missing task {task_id}")))?;
                    return Ok(Inserted { task, created: false });
                }
            }
            tx.execute(
                "INSERT INTO tasks (id, program_id, args, root, receipt_kind, status, created_at, \
                 updated_at, submitter) VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6, ?7)",
                params![t.id, t.program_id, t.args, t.root.to_vec(), t.receipt_kind, now, t.submitter],
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

    fn shared(&self) -> bool {
        false
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
                    lease_expires_at = CASE WHEN ?9 THEN NULL ELSE lease_expires_at END, \
                    user_cycles = COALESCE(?13, user_cycles) \
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
                    u.user_cycles.map(|c| i64::try_from(c).unwrap_or(i64::MAX)),
                ],
            )?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO task_events (task_id, status, at) VALUES (?1, ?2, ?3)",
                params![id, to.as_str(), now],
            )?;
            if let Some(write) = &u.volume {
                put_volume(&tx, write, now)?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn volume(&self, program_id: &str) -> Result<Option<StoredVolume>> {
        let id = program_id.to_owned();
        self.with(move |conn| {
            Ok(conn
                .query_row("SELECT image, version FROM volumes WHERE program_id = ?1", [id], |r| {
                    Ok(StoredVolume { image: r.get(0)?, version: r.get::<_, i64>(1)?.max(0) as u64 })
                })
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

    async fn lease_proving(&self, worker: &str, rules: LeaseRules) -> Result<Leased> {
        let worker = worker.to_owned();
        let LeaseRules { lease, max_attempts, others_asking } = rules;
        let others =
            serde_json::to_string(&others_asking).map_err(|e| StoreError::Database(e.to_string()))?;
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
            // An in-process prover renews its lease while its process lives: its lease expired
            // because the process died (or hung), which counts against the crash allowance.
            tx.execute(
                "UPDATE prover_leases SET outcome = 'expired', \
                 reason = CASE WHEN worker LIKE 'local-%' THEN 'service restarted' ELSE reason END \
                 WHERE outcome IS NULL AND expires_at <= ?1",
                [now],
            )?;
            // Unleased proving tasks, those this worker has tried least first, then oldest; none
            // it failed before while another worker asking for work has not failed it.
            let candidates: Vec<String> = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT t.id FROM tasks t WHERE t.status = 'proving' \
                     AND NOT EXISTS (SELECT 1 FROM prover_leases pl WHERE pl.task_id = t.id AND pl.outcome IS NULL) \
                     AND NOT (EXISTS (SELECT 1 FROM prover_leases pl WHERE pl.task_id = t.id \
                                  AND pl.worker = ?1 AND {WORKER_FAILED}) \
                              AND EXISTS (SELECT 1 FROM json_each(?2) o WHERE NOT EXISTS ( \
                                  SELECT 1 FROM prover_leases pl WHERE pl.task_id = t.id \
                                  AND pl.worker = o.value AND {WORKER_FAILED}))) \
                     ORDER BY (SELECT COUNT(*) FROM prover_leases pl WHERE pl.task_id = t.id AND pl.worker = ?1), t.seq \
                     LIMIT 32"
                ))?;
                let rows = stmt.query_map(params![&worker, others], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut failed = Vec::new();
            for task_id in candidates {
                // A lease that ended because this service died is not the prover's failure: it
                // counts against the (larger) crash allowance instead of `max_attempts`.
                let (leases, attempts, restarts): (i64, i64, i64) = tx.query_row(
                    &format!(
                        "SELECT COUNT(*), COALESCE(SUM({COUNTED_ATTEMPT}), 0), \
                                COALESCE(SUM(reason IS 'service restarted'), 0) \
                         FROM prover_leases WHERE task_id = ?1"
                    ),
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
        max_lifetime: Duration,
    ) -> Result<RenewOutcome> {
        let (task_id, lease_id) = (task_id.to_owned(), lease_id.to_owned());
        self.with(move |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row: Option<(Option<String>, i64, i64, String)> = tx
                .query_row(
                    "SELECT pl.outcome, pl.expires_at, pl.issued_at, t.status FROM prover_leases pl \
                     JOIN tasks t ON t.id = pl.task_id WHERE pl.lease_id = ?1 AND pl.task_id = ?2",
                    params![lease_id, task_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let Some((outcome, expires_at, issued_at, status)) = row else {
                return Ok(RenewOutcome::Unknown);
            };
            if status == "cancelled" {
                return Ok(RenewOutcome::Cancelled);
            }
            if status != "proving" || outcome.is_some() {
                return Ok(RenewOutcome::Lost);
            }
            if now.saturating_sub(issued_at) > lease_ms(max_lifetime) {
                tx.execute(
                    &format!(
                        "UPDATE prover_leases SET outcome = 'expired', reason = '{LIFETIME_EXCEEDED}' \
                     WHERE lease_id = ?1"
                    ),
                    [&lease_id],
                )?;
                tx.commit()?;
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
            let attempts: i64 = tx.query_row(
                &format!("SELECT COALESCE(SUM({COUNTED_ATTEMPT}), 0) FROM prover_leases WHERE task_id = ?1"),
                [&task_id],
                |r| r.get(0),
            )?;
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
                if let Some(write) = &u.volume {
                    put_volume(&tx, write, now)?;
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

    async fn worker_record(&self, worker: &str, window: u32) -> Result<WorkerRecord> {
        let worker = worker.to_owned();
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {WORKER_FAILED}, issued_at FROM prover_leases WHERE worker = ?1 AND outcome IS NOT NULL \
                 ORDER BY issued_at DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![worker, window], |r| Ok((r.get::<_, bool>(0)?, r.get::<_, i64>(1)?)))?;
            let mut record = WorkerRecord::default();
            for row in rows {
                let (failed, issued_at) = row?;
                if !failed {
                    break;
                }
                record.consecutive_failures += 1;
                record.last_failure_at.get_or_insert(issued_at);
            }
            Ok(record)
        })
        .await
    }

    async fn unfinished_tasks_of(&self, submitter: Option<&str>) -> Result<u64> {
        let submitter = submitter.map(str::to_owned);
        self.with(move |conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM tasks WHERE submitter IS ?1 \
                 AND status NOT IN ('done', 'failed', 'cancelled')",
                [submitter],
                |r| r.get(0),
            )?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn prune_payloads(&self, finished_before: i64, limit: usize) -> Result<u64> {
        self.with(move |conn| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let n = conn.execute(
                "UPDATE tasks SET input = NULL, receipt = NULL WHERE seq IN (SELECT seq FROM tasks \
                 WHERE status IN ('done', 'failed', 'cancelled') AND (input IS NOT NULL OR receipt IS NOT NULL) \
                 AND updated_at < ?1 LIMIT ?2)",
                params![finished_before, limit],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn now_ms(&self) -> Result<i64> {
        // One process owns a SQLite store: its clock is the store's.
        Ok(now_ms())
    }

    async fn use_nonce(&self, key: &str, keep: Duration) -> Result<bool> {
        let key = key.to_owned();
        self.with(move |conn| {
            let now = now_ms();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM request_nonces WHERE at < ?1", [now.saturating_sub(lease_ms(keep))])?;
            let fresh = tx.execute(
                "INSERT OR IGNORE INTO request_nonces (key, at) VALUES (?1, ?2)",
                params![key, now],
            )?;
            tx.commit()?;
            Ok(fresh == 1)
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
                insert_nodes(&tx, blocks.iter().flat_map(|b| &b.nodes))?;
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

    async fn smt_walk(&self, walk: zkcoproc_smt::Walk) -> Result<Result<Opening, WalkError>> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let out = {
                let mut stmt = tx.prepare_cached("SELECT node FROM smt_nodes WHERE hash = ?1")?;
                walk.run(|hash| stmt.query_row([&hash[..]], |r| r.get::<_, Vec<u8>>(0)).optional())?
            };
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn put_smt_nodes(&self, nodes: Vec<([u8; 32], Vec<u8>)>) -> Result<()> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            insert_nodes(&tx, nodes.iter())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn has_smt_node(&self, hash: [u8; 32]) -> Result<bool> {
        self.with(move |conn| {
            Ok(conn
                .query_row("SELECT 1 FROM smt_nodes WHERE hash = ?1", [&hash[..]], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }
}

fn insert_nodes<'a>(
    tx: &rusqlite::Transaction<'_>,
    nodes: impl Iterator<Item = &'a ([u8; 32], Vec<u8>)>,
) -> Result<()> {
    let mut stmt = tx.prepare_cached("INSERT OR IGNORE INTO smt_nodes (hash, node) VALUES (?1, ?2)")?;
    for (hash, node) in nodes {
        stmt.execute(params![&hash[..], node])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    // The behaviour both stores share is tested in `tests/suite.rs`; these are SQLite's own.
    use super::*;

    fn program(id: &str) -> NewProgram {
        NewProgram {
            id: id.into(),
            image_id: "ab".repeat(32),
            controller: vec![1, 2, 3],
            circuit: vec![4, 5],
            owner: None,
        }
    }

    fn task(id: &str) -> NewTask {
        NewTask {
            id: id.into(),
            program_id: "p".into(),
            args: "{}".into(),
            root: [0; 32],
            receipt_kind: "composite".into(),
            submitter: None,
        }
    }

    #[tokio::test]
    async fn a_restart_frees_every_lease_of_the_previous_process() {
        let s = SqliteStore::in_memory().expect("store");
        s.put_program(program("p")).await.expect("program");
        s.insert_task(task("t"), None).await.expect("insert");
        s.claim_next("local-old-r0", Duration::from_secs(60)).await.expect("claim").expect("t");
        assert!(s.claim_next("local-new-r0", Duration::from_secs(60)).await.expect("claim").is_none());
        assert!(!s.shared());
        assert_eq!(s.release_all_leases().await.expect("restart"), 1);
        let t = s.claim_next("local-new-r0", Duration::from_secs(60)).await.expect("claim").expect("freed");
        assert_eq!((t.id.as_str(), t.claims), ("t", 2));
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
