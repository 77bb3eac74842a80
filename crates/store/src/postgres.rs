//! The PostgreSQL store: the same data and guarantees as the SQLite store, shared by several
//! service replicas.
//!
//! Every method is one transaction (READ COMMITTED), retried when PostgreSQL aborts it for a
//! serialization failure or a deadlock. Claims lock the task row with `FOR UPDATE SKIP LOCKED`,
//! so replicas never wait on each other's candidates; operations on one task's prover leases lock
//! the task row first. Lease times come from the database clock, so replicas on machines whose
//! clocks disagree still agree on when a lease expired.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use crate::{
    lease_ms, prover_failed_message, AttemptOutcome, CancelOutcome, Idempotency, Inserted, LeaseRules,
    Leased, NewBlock, NewProgram, NewTask, Opening, ProgramInfo, ProverAttempt, ProverLease, RenewOutcome,
    Result, SmtUpdate, StageUpdate, StatusCounts, Store, StoreError, StoredVolume, TaskError, TaskEvent,
    TaskRecord, TaskStatus, VolumeWrite, WalkError, WorkerRecord, COUNTED_ATTEMPT, LIFETIME_EXCEEDED,
    TASK_COLUMNS, WORKER_FAILED,
};

/// Schema migrations, applied in order under an advisory lock; `zkcoproc_schema` records how
/// many ran. The schema is the SQLite one with PostgreSQL types.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE programs (
    id          TEXT PRIMARY KEY,
    image_id    TEXT NOT NULL,
    controller  BYTEA NOT NULL,
    circuit     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX programs_by_image ON programs(image_id);
CREATE TABLE tasks (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    program_id       TEXT NOT NULL REFERENCES programs(id),
    args             TEXT NOT NULL,
    root             BYTEA NOT NULL,
    receipt_kind     TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    input            BYTEA,
    receipt          BYTEA,
    journal          BYTEA,
    logs             TEXT NOT NULL DEFAULT '[]',
    result           TEXT,
    user_cycles      BIGINT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    claims           BIGINT NOT NULL DEFAULT 0,
    expected_journal BYTEA
);
CREATE INDEX tasks_unfinished ON tasks(seq) WHERE status NOT IN ('done', 'failed', 'cancelled');
CREATE INDEX tasks_proving ON tasks(seq) WHERE status = 'proving';
CREATE TABLE task_events (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id  TEXT NOT NULL REFERENCES tasks(id),
    status   TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX task_events_by_task ON task_events(task_id, seq);
CREATE TABLE volumes (
    program_id  TEXT PRIMARY KEY REFERENCES programs(id),
    image       BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL
);
CREATE TABLE idempotency_keys (
    program_id    TEXT NOT NULL REFERENCES programs(id),
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    task_id       TEXT NOT NULL REFERENCES tasks(id),
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (program_id, key)
);
CREATE TABLE prover_leases (
    lease_id    TEXT PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks(id),
    worker      TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    outcome     TEXT,
    reason      TEXT
);
CREATE INDEX prover_leases_by_task ON prover_leases(task_id);
CREATE INDEX prover_leases_open ON prover_leases(worker) WHERE outcome IS NULL;
CREATE TABLE smt_updates (
    seq          BIGINT PRIMARY KEY,
    domain       TEXT NOT NULL,
    number       BIGINT NOT NULL,
    block_hash   BYTEA NOT NULL,
    state_root   BYTEA NOT NULL,
    header       BYTEA NOT NULL,
    prev_root    BYTEA NOT NULL,
    root         BYTEA NOT NULL,
    inserted_at  BIGINT NOT NULL,
    UNIQUE (domain, number)
);
"#,
    // Volume images are mostly empty FAT clusters: lz4 compresses them several times faster
    // than the default pglz. Servers built without lz4 (or older than 14) keep pglz.
    r#"
DO $$
BEGIN
    ALTER TABLE volumes ALTER COLUMN image SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lz4 TOAST compression unavailable; volumes stay on pglz';
END $$;
"#,
    r#"
CREATE TABLE request_nonces (
    key  TEXT PRIMARY KEY,
    at   BIGINT NOT NULL
);
CREATE INDEX request_nonces_by_age ON request_nonces(at);
"#,
    r#"
CREATE TABLE smt_nodes (
    hash  BYTEA PRIMARY KEY,
    node  BYTEA NOT NULL
);
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

/// Advisory lock keys (one namespace of ours: "zkcp" as an integer, then a purpose).
const LOCK_MIGRATE: i64 = 0x7a6b_6370_0001;
const LOCK_SMT: i64 = 0x7a6b_6370_0002;

/// Transactions aborted by PostgreSQL for a serialization failure or deadlock are run again, up
/// to this many times.
const RETRIES: u32 = 8;

/// The database's clock in unix milliseconds: the one clock all replicas share.
const NOW: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

/// A store in a PostgreSQL database, shared by any number of service replicas.
pub struct PgStore {
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// An error inside a transaction: the database's (kept whole, so a retryable one can be told
/// apart) or the store's own.
#[derive(Debug)]
enum TxError {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        TxError::Pg(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl TxError {
    fn retryable(&self) -> bool {
        match self {
            TxError::Pg(e) => {
                matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
            }
            TxError::Store(_) => false,
        }
    }
}

impl From<TxError> for StoreError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Store(e) => e,
            TxError::Pg(e) => pg_error(&e),
        }
    }
}

fn pg_error(e: &tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Database(format!("{} ({})", db.message(), db.code().code())),
        None => StoreError::Database(e.to_string()),
    }
}

type TxResult<T> = std::result::Result<T, TxError>;

/// Runs `$body` in a transaction on a pooled connection as `$tx`, again when PostgreSQL aborted
/// it for a serialization failure or deadlock. The body commits; an early return rolls back.
macro_rules! transaction {
    ($self:ident, |$tx:ident| $body:block) => {{
        let mut attempt = 0u32;
        loop {
            let mut client = $self.client().await?;
            let result: TxResult<_> = async {
                let $tx = client.transaction().await?;
                $body
            }
            .await;
            match result {
                Err(e) if e.retryable() && attempt < RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, "transaction aborted by the database; retrying");
                    tokio::time::sleep(Duration::from_millis(2u64 << attempt.min(6))).await;
                }
                other => break other.map_err(StoreError::from),
            }
        }
    }};
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/dbname`), with up to
    /// `max_connections` pooled connections, and migrates the schema.
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Database(format!("database url: {e}")))?;
        let manager =
            Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Database(format!("connection pool: {e}")))?;
        let store = PgStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| pg_error(&e))?;
        let run = async {
            // Replicas starting together migrate one at a time.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_MIGRATE]).await?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS zkcoproc_schema (version BIGINT NOT NULL)").await?;
            let version: i64 = match tx.query_opt("SELECT version FROM zkcoproc_schema", &[]).await? {
                Some(row) => row.try_get(0)?,
                None => {
                    tx.execute("INSERT INTO zkcoproc_schema (version) VALUES (0)", &[]).await?;
                    0
                }
            };
            let known = MIGRATIONS.len() as i64;
            if version > known {
                return Err(TxError::Store(StoreError::Corrupt(format!(
                    "database schema version {version} is newer than this build ({known})"
                ))));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.batch_execute(sql).await?;
                tx.execute("UPDATE zkcoproc_schema SET version = $1", &[&((i + 1) as i64)]).await?;
            }
            Ok(())
        };
        let result: TxResult<()> = run.await;
        result?;
        tx.commit().await.map_err(|e| pg_error(&e))?;
        Ok(())
    }
}

/// PostgreSQL text cannot hold NUL: text that came from outside (controller results, logs and
/// error messages, request arguments) has any replaced, where SQLite would have kept it.
fn pg_text(s: &str) -> std::borrow::Cow<'_, str> {
    match s.contains('\0') {
        true => std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}")),
        false => std::borrow::Cow::Borrowed(s),
    }
}

fn pg_text_opt(s: &Option<String>) -> Option<std::borrow::Cow<'_, str>> {
    s.as_deref().map(pg_text)
}

async fn db_now(c: &impl GenericClient) -> TxResult<i64> {
    Ok(c.query_one(NOW, &[]).await?.try_get(0)?)
}

fn status(s: &str) -> TxResult<TaskStatus> {
    TaskStatus::parse(s).ok_or_else(|| TxError::Store(StoreError::Corrupt(format!("unknown status {s}"))))
}

fn hash32(v: &[u8], what: &str) -> TxResult<[u8; 32]> {
    <[u8; 32]>::try_from(v)
        .map_err(|_| TxError::Store(StoreError::Corrupt(format!("{what} is not 32 bytes"))))
}

fn to_i64(n: u64, what: &str) -> TxResult<i64> {
    i64::try_from(n).map_err(|_| TxError::Store(StoreError::Database(format!("{what} {n} too large"))))
}

fn task_from_row(r: &Row) -> TxResult<TaskRecord> {
    let error_code: Option<String> = r.try_get(7)?;
    let error_message: Option<String> = r.try_get(8)?;
    let user_cycles: Option<i64> = r.try_get(16)?;
    let root: Vec<u8> = r.try_get(3)?;
    Ok(TaskRecord {
        id: r.try_get(0)?,
        program_id: r.try_get(1)?,
        args: r.try_get(2)?,
        root: hash32(&root, "root")?,
        receipt_kind: r.try_get(4)?,
        status: status(r.try_get(5)?)?,
        attempts: u32::try_from(r.try_get::<_, i64>(6)?).unwrap_or(u32::MAX),
        error: error_code.map(|code| TaskError { code, message: error_message.unwrap_or_default() }),
        created_at: r.try_get(9)?,
        updated_at: r.try_get(10)?,
        history: Vec::new(),
        input: r.try_get(11)?,
        receipt: r.try_get(12)?,
        journal: r.try_get(13)?,
        logs: r.try_get(14)?,
        result: r.try_get(15)?,
        user_cycles: user_cycles.map(|c| c.max(0) as u64),
        lease_owner: r.try_get(17)?,
        claims: u32::try_from(r.try_get::<_, i64>(18)?).unwrap_or(u32::MAX),
        expected_journal: r.try_get(19)?,
        submitter: r.try_get(20)?,
    })
}

async fn read_task(c: &impl GenericClient, id: &str) -> TxResult<Option<TaskRecord>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
    let Some(row) = c.query_opt(&sql, &[&id]).await? else { return Ok(None) };
    let mut task = task_from_row(&row)?;
    task.history = read_events(c, id).await?;
    Ok(Some(task))
}

async fn read_events(c: &impl GenericClient, id: &str) -> TxResult<Vec<TaskEvent>> {
    let rows =
        c.query("SELECT seq, status, at FROM task_events WHERE task_id = $1 ORDER BY seq", &[&id]).await?;
    rows.iter()
        .map(|r| Ok(TaskEvent { seq: r.try_get(0)?, status: status(r.try_get(1)?)?, at: r.try_get(2)? }))
        .collect()
}

async fn read_attempts(c: &impl GenericClient, task_id: &str) -> TxResult<Vec<ProverAttempt>> {
    let rows = c
        .query(
            "SELECT lease_id, task_id, worker, issued_at, expires_at, outcome, reason FROM prover_leases \
             WHERE task_id = $1 ORDER BY issued_at, lease_id",
            &[&task_id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ProverAttempt {
                lease_id: r.try_get(0)?,
                task_id: r.try_get(1)?,
                worker: r.try_get(2)?,
                issued_at: r.try_get(3)?,
                expires_at: r.try_get(4)?,
                outcome: r.try_get(5)?,
                reason: r.try_get(6)?,
            })
        })
        .collect()
}

/// Locks the task row of a lease and checks that the lease may report a result now (see the
/// SQLite store's `may_report`). `Err` carries why not.
async fn may_report(
    c: &impl GenericClient,
    task_id: &str,
    lease_id: &str,
) -> TxResult<std::result::Result<(), AttemptOutcome>> {
    let Some(task) = c.query_opt("SELECT status FROM tasks WHERE id = $1 FOR UPDATE", &[&task_id]).await?
    else {
        return Ok(Err(AttemptOutcome::Unknown));
    };
    let Some(lease) = c
        .query_opt(
            "SELECT outcome FROM prover_leases WHERE lease_id = $1 AND task_id = $2",
            &[&lease_id, &task_id],
        )
        .await?
    else {
        return Ok(Err(AttemptOutcome::Unknown));
    };
    let status = status(task.try_get(0)?)?;
    if status != TaskStatus::Proving {
        return Ok(Err(AttemptOutcome::NotProving(status)));
    }
    let judged: Option<String> = lease.try_get(0)?;
    if !matches!(judged.as_deref(), None | Some("expired")) {
        return Ok(Err(AttemptOutcome::LeaseEnded));
    }
    Ok(Ok(()))
}

/// Fails a proving task (row locked by the caller) whose attempts are used up, listing them.
async fn fail_proving(c: &impl GenericClient, task_id: &str, now: i64) -> TxResult<bool> {
    c.execute(
        "UPDATE prover_leases SET outcome = 'expired' WHERE task_id = $1 AND outcome IS NULL",
        &[&task_id],
    )
    .await?;
    let attempts = read_attempts(c, task_id).await?;
    let message = prover_failed_message(&attempts);
    let n = c
        .execute(
            "UPDATE tasks SET status = 'failed', updated_at = $1, error_code = 'prover_failed', error_message = $2, \
             lease_owner = NULL, lease_expires_at = NULL WHERE id = $3 AND status = 'proving'",
            &[&now, &message, &task_id],
        )
        .await?;
    if n == 1 {
        insert_event(c, task_id, "failed", now).await?;
    }
    Ok(n == 1)
}

async fn insert_event(c: &impl GenericClient, task_id: &str, status: &str, at: i64) -> TxResult<()> {
    c.execute("INSERT INTO task_events (task_id, status, at) VALUES ($1, $2, $3)", &[&task_id, &status, &at])
        .await?;
    Ok(())
}

/// Writes a volume image if the stored version is still the write's base; the row lock taken by
/// the check holds off a concurrent writer until this transaction ends.
async fn put_volume(c: &impl GenericClient, write: &VolumeWrite, now: i64) -> TxResult<()> {
    let current: i64 = match c
        .query_opt("SELECT version FROM volumes WHERE program_id = $1 FOR UPDATE", &[&write.program_id])
        .await?
    {
        Some(row) => row.try_get(0)?,
        None => 0,
    };
    if u64::try_from(current).ok() != Some(write.base) {
        return Err(TxError::Store(StoreError::VolumeChanged(write.program_id.clone())));
    }
    let version = to_i64(write.base.saturating_add(1), "volume version")?;
    // Two first writes race on the insert: the loser's unique violation is a changed volume too.
    let inserted = c
        .execute(
            "INSERT INTO volumes (program_id, image, updated_at, version) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (program_id) DO UPDATE SET image = excluded.image, updated_at = excluded.updated_at, \
             version = excluded.version WHERE volumes.version = $5",
            &[&write.program_id, &write.image, &now, &version, &current],
        )
        .await?;
    if inserted != 1 {
        return Err(TxError::Store(StoreError::VolumeChanged(write.program_id.clone())));
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn put_program(&self, p: NewProgram) -> Result<bool> {
        transaction!(self, |tx| {
            let now = db_now(&tx).await?;
            let n = tx
                .execute(
                    "INSERT INTO programs (id, image_id, controller, circuit, created_at, owner) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                    &[&p.id, &p.image_id, &p.controller, &p.circuit, &now, &p.owner],
                )
                .await?;
            if n == 0 {
                let row = tx.query_one("SELECT image_id FROM programs WHERE id = $1", &[&p.id]).await?;
                let image_id: String = row.try_get(0)?;
                if image_id != p.image_id {
                    return Err(TxError::Store(StoreError::Conflict(format!(
                        "program {} exists with another image id",
                        p.id
                    ))));
                }
            }
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    async fn program(&self, id: &str) -> Result<Option<ProgramInfo>> {
        transaction!(self, |tx| {
            let row = tx
                .query_opt(
                    "SELECT id, image_id, length(controller)::BIGINT, length(circuit)::BIGINT, created_at, \
                     owner FROM programs WHERE id = $1",
                    &[&id],
                )
                .await?;
            row.map(|r| {
                Ok(ProgramInfo {
                    id: r.try_get(0)?,
                    image_id: r.try_get(1)?,
                    controller_size: r.try_get::<_, i64>(2)?.max(0) as u64,
                    circuit_size: r.try_get::<_, i64>(3)?.max(0) as u64,
                    created_at: r.try_get(4)?,
                    owner: r.try_get(5)?,
                })
            })
            .transpose()
        })
    }

    async fn program_artifacts(&self, id: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        transaction!(self, |tx| {
            let row = tx.query_opt("SELECT controller, circuit FROM programs WHERE id = $1", &[&id]).await?;
            row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
        })
    }

    async fn circuit_by_image_id(&self, image_id: &str) -> Result<Option<Vec<u8>>> {
        transaction!(self, |tx| {
            let row = tx
                .query_opt("SELECT circuit FROM programs WHERE image_id = $1 LIMIT 1", &[&image_id])
                .await?;
            row.map(|r| Ok(r.try_get(0)?)).transpose()
        })
    }

    async fn insert_task(&self, t: NewTask, idempotency: Option<Idempotency>) -> Result<Inserted> {
        transaction!(self, |tx| {
            let now = db_now(&tx).await?;
            if let Some(key) = &idempotency {
                // Requests with one key are serialized: the second sees the first's task.
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))",
                    &[&t.program_id, &key.key],
                )
                .await?;
                let seen = tx
                    .query_opt(
                        "SELECT request_hash, task_id FROM idempotency_keys WHERE program_id = $1 AND key = $2",
                        &[&t.program_id, &key.key],
                    )
                    .await?;
                if let Some(row) = seen {
                    let (hash, task_id): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                    if hash != key.request_hash {
                        // Never name the other task: the key may be another client's.
                        return Err(TxError::Store(StoreError::Conflict(format!(
                            "Idempotency-Key `{}` was used for a different request",
                            key.key.rsplit('\n').next().unwrap_or_default()
                        ))));
                    }
                    let task = read_task(&tx, &task_id).await?.ok_or_else(|| {
                        TxError::Store(StoreError::Corrupt(format!(
                            "idempotency key points at missing task {task_id}"
                        )))
                    })?;
                    return Ok(Inserted { task, created: false });
                }
            }
            tx.execute(
                "INSERT INTO tasks (id, program_id, args, root, receipt_kind, status, created_at, updated_at, \
                 submitter) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6, $7)",
                &[&t.id, &t.program_id, &pg_text(&t.args), &t.root.as_slice(), &t.receipt_kind, &now, &t.submitter],
            )
            .await?;
            insert_event(&tx, &t.id, "queued", now).await?;
            if let Some(key) = &idempotency {
                tx.execute(
                    "INSERT INTO idempotency_keys (program_id, key, request_hash, task_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&t.program_id, &key.key, &key.request_hash, &t.id, &now],
                )
                .await?;
            }
            let task = read_task(&tx, &t.id)
                .await?
                .ok_or_else(|| TxError::Store(StoreError::Database("inserted task vanished".into())))?;
            tx.commit().await?;
            Ok(Inserted { task, created: true })
        })
    }

    async fn task(&self, id: &str) -> Result<Option<TaskRecord>> {
        // One snapshot for the row and its history.
        transaction!(self, |tx| {
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
            read_task(&tx, id).await
        })
    }

    async fn task_events(&self, id: &str) -> Result<Vec<TaskEvent>> {
        transaction!(self, |tx| { read_events(&tx, id).await })
    }

    async fn claim_next(&self, owner: &str, lease: Duration) -> Result<Option<TaskRecord>> {
        transaction!(self, |tx| {
            let now = db_now(&tx).await?;
            let row = tx
                .query_opt(
                    "UPDATE tasks SET lease_owner = $1, lease_expires_at = $2, claims = claims + 1 \
                     WHERE seq = (SELECT seq FROM tasks \
                         WHERE status NOT IN ('done', 'failed', 'cancelled', 'proving') \
                           AND (lease_owner IS NULL OR lease_expires_at < $3) \
                         ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     RETURNING id",
                    &[&owner, &now.saturating_add(lease_ms(lease)), &now],
                )
                .await?;
            let task = match row {
                Some(r) => read_task(&tx, r.try_get(0)?).await?,
                None => None,
            };
            tx.commit().await?;
            Ok(task)
        })
    }

    async fn extend_lease(&self, id: &str, owner: &str, lease: Duration) -> Result<bool> {
        transaction!(self, |tx| {
            let n = tx
                .execute(
                    "UPDATE tasks SET lease_expires_at = (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT + $1 \
                     WHERE id = $2 AND lease_owner = $3 AND status NOT IN ('done', 'failed', 'cancelled')",
                    &[&lease_ms(lease), &id, &owner],
                )
                .await?;
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    async fn release_all_leases(&self) -> Result<u64> {
        // Other replicas hold leases on a shared store: a start-up must not take them away.
        Ok(0)
    }

    fn shared(&self) -> bool {
        true
    }

    async fn transition(
        &self,
        id: &str,
        owner: &str,
        from: TaskStatus,
        to: TaskStatus,
        u: StageUpdate,
    ) -> Result<bool> {
        let (error_code, error_message) = match &u.error {
            Some(TaskError { code, message }) => (Some(pg_text(code)), Some(pg_text(message))),
            None => (None, None),
        };
        let (result, logs) = (pg_text_opt(&u.result), pg_text_opt(&u.logs));
        let user_cycles = u.user_cycles.map(|c| i64::try_from(c).unwrap_or(i64::MAX));
        transaction!(self, |tx| {
            let now = db_now(&tx).await?;
            let n = tx
                .execute(
                    "UPDATE tasks SET status = $1, updated_at = $2, claims = 0, \
                        input = COALESCE($3, input), result = COALESCE($4, result), \
                        logs = COALESCE($5, logs), expected_journal = COALESCE($6, expected_journal), \
                        error_code = COALESCE($7, error_code), error_message = COALESCE($8, error_message), \
                        lease_owner = CASE WHEN $9 THEN NULL ELSE lease_owner END, \
                        lease_expires_at = CASE WHEN $9 THEN NULL ELSE lease_expires_at END, \
                        user_cycles = COALESCE($13, user_cycles) \
                     WHERE id = $10 AND status = $11 AND lease_owner = $12",
                    &[
                        &to.as_str(),
                        &now,
                        &u.input,
                        &result,
                        &logs,
                        &u.expected_journal,
                        &error_code,
                        &error_message,
                        &u.release_lease,
                        &id,
                        &from.as_str(),
                        &owner,
                        &user_cycles,
                    ],
                )
                .await?;
            if n == 0 {
                return Ok(false);
            }
            insert_event(&tx, id, to.as_str(), now).await?;
            if let Some(write) = &u.volume {
                put_volume(&tx, write, now).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn volume(&self, program_id: &str) -> Result<Option<StoredVolume>> {
        transaction!(self, |tx| {
            let row = tx
                .query_opt("SELECT image, version FROM volumes WHERE program_id = $1", &[&program_id])
                .await?;
            row.map(|r| {
                Ok(StoredVolume { image: r.try_get(0)?, version: r.try_get::<_, i64>(1)?.max(0) as u64 })
            })
            .transpose()
        })
    }

    async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        transaction!(self, |tx| {
            let now = db_now(&tx).await?;
            let Some(row) = tx.query_opt("SELECT status FROM tasks WHERE id = $1 FOR UPDATE", &[&id]).await?
            else {
                return Ok(CancelOutcome::NotFound);
            };
            let current = status(row.try_get(0)?)?;
            if current.is_terminal() {
                return Ok(CancelOutcome::AlreadyFinished(current));
            }
            tx.execute(
                "UPDATE tasks SET status = 'cancelled', updated_at = $1, lease_owner = NULL, \
                 lease_expires_at = NULL, error_code = 'cancelled', \
                 error_message = 'cancelled on request while ' || status WHERE id = $2",
                &[&now, &id],
            )
            .await?;
            insert_event(&tx, id, "cancelled", now).await?;
            tx.commit().await?;
            Ok(CancelOutcome::Cancelled(current))
        })
    }

    async fn lease_proving(&self, worker: &str, rules: LeaseRules) -> Result<Leased> {
        let LeaseRules { lease, max_attempts, others_asking } = rules;
        let candidates_sql = format!(
            "SELECT t.id FROM tasks t WHERE t.status = 'proving' \
             AND NOT EXISTS (SELECT 1 FROM prover_leases pl WHERE pl.task_id = t.id \
                             AND pl.outcome IS NULL AND pl.expires_at > $2) \
             AND NOT (EXISTS (SELECT 1 FROM prover_leases pl WHERE pl.task_id = t.id \
                                  AND pl.worker = $1 AND {WORKER_FAILED}) \
                      AND EXISTS (SELECT 1 FROM unnest($3::text[]) AS o(name) WHERE NOT EXISTS ( \
                                  SELECT 1 FROM prover_leases pl WHERE pl.task_id = t.id \
                                  AND pl.worker = o.name AND {WORKER_FAILED}))) \
             ORDER BY (SELECT COUNT(*) FROM prover_leases pl WHERE pl.task_id = t.id AND pl.worker = $1), t.seq \
             LIMIT 32 FOR UPDATE OF t SKIP LOCKED"
        );
        transaction!(self, |tx| {
            let now = db_now(&tx).await?;
            let expires = now.saturating_add(lease_ms(lease));
            // Re-delivery: the worker's own open lease.
            let open = tx
                .query_opt(
                    "SELECT pl.lease_id, pl.task_id FROM prover_leases pl JOIN tasks t ON t.id = pl.task_id \
                     WHERE pl.worker = $1 AND pl.outcome IS NULL AND pl.expires_at > $2 AND t.status = 'proving' \
                     ORDER BY pl.issued_at LIMIT 1 FOR UPDATE OF t",
                    &[&worker, &now],
                )
                .await?;
            if let Some(row) = open {
                let (lease_id, task_id): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                tx.execute(
                    "UPDATE prover_leases SET expires_at = $1 WHERE lease_id = $2",
                    &[&expires, &lease_id],
                )
                .await?;
                let task = read_task(&tx, &task_id)
                    .await?
                    .ok_or_else(|| TxError::Store(StoreError::Corrupt("leased task vanished".into())))?;
                tx.commit().await?;
                return Ok(Leased {
                    lease: Some(ProverLease { lease_id, task, expires_at: expires }),
                    failed: vec![],
                });
            }
            // Unleased proving tasks (open leases that expired do not hold a task), those this
            // worker has tried least first, then oldest; tasks another replica is leasing
            // right now are skipped, not waited for; none this worker failed before, when told
            // to avoid them.
            let candidates = tx.query(candidates_sql.as_str(), &[&worker, &now, &others_asking]).await?;
            let mut failed = Vec::new();
            for row in candidates {
                let task_id: String = row.try_get(0)?;
                // An in-process prover renews its lease while its process lives: its lease
                // expired because the process died (or hung), which counts against the crash
                // allowance, not the proving attempts.
                tx.execute(
                    "UPDATE prover_leases SET outcome = 'expired', \
                     reason = CASE WHEN worker LIKE 'local-%' THEN 'service restarted' ELSE reason END \
                     WHERE task_id = $1 AND outcome IS NULL AND expires_at <= $2",
                    &[&task_id, &now],
                )
                .await?;
                let counts = tx
                    .query_one(
                        format!(
                            "SELECT COUNT(*), COUNT(*) FILTER (WHERE {COUNTED_ATTEMPT}), \
                                    COUNT(*) FILTER (WHERE reason = 'service restarted') \
                             FROM prover_leases WHERE task_id = $1"
                        )
                        .as_str(),
                        &[&task_id],
                    )
                    .await?;
                let (leases, attempts, restarts): (i64, i64, i64) =
                    (counts.try_get(0)?, counts.try_get(1)?, counts.try_get(2)?);
                if attempts >= i64::from(max_attempts) || restarts >= i64::from(crate::MAX_CRASHES) {
                    if fail_proving(&tx, &task_id, now).await? {
                        failed.push(task_id);
                    }
                    continue;
                }
                let lease_id = format!("{task_id}/{}", leases + 1);
                tx.execute(
                    "INSERT INTO prover_leases (lease_id, task_id, worker, issued_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&lease_id, &task_id, &worker, &now, &expires],
                )
                .await?;
                tx.execute(
                    "UPDATE tasks SET attempts = attempts + 1, updated_at = $1 WHERE id = $2",
                    &[&now, &task_id],
                )
                .await?;
                let task = read_task(&tx, &task_id)
                    .await?
                    .ok_or_else(|| TxError::Store(StoreError::Corrupt("leased task vanished".into())))?;
                tx.commit().await?;
                return Ok(Leased {
                    lease: Some(ProverLease { lease_id, task, expires_at: expires }),
                    failed,
                });
            }
            tx.commit().await?;
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
        transaction!(self, |tx| {
            let now = db_now(&tx).await?;
            let Some(task) =
                tx.query_opt("SELECT status FROM tasks WHERE id = $1 FOR UPDATE", &[&task_id]).await?
            else {
                return Ok(RenewOutcome::Unknown);
            };
            let Some(row) = tx
                .query_opt(
                    "SELECT outcome, expires_at, issued_at FROM prover_leases WHERE lease_id = $1 AND task_id = $2",
                    &[&lease_id, &task_id],
                )
                .await?
            else {
                return Ok(RenewOutcome::Unknown);
            };
            let current = status(task.try_get(0)?)?;
            let (outcome, expires_at): (Option<String>, i64) = (row.try_get(0)?, row.try_get(1)?);
            if current == TaskStatus::Cancelled {
                return Ok(RenewOutcome::Cancelled);
            }
            if current != TaskStatus::Proving || outcome.is_some() {
                return Ok(RenewOutcome::Lost);
            }
            let issued_at: i64 = row.try_get(2)?;
            if now.saturating_sub(issued_at) > lease_ms(max_lifetime) {
                tx.execute(
                    "UPDATE prover_leases SET outcome = 'expired', reason = $2 WHERE lease_id = $1",
                    &[&lease_id, &LIFETIME_EXCEEDED],
                )
                .await?;
                tx.commit().await?;
                return Ok(RenewOutcome::Lost);
            }
            // An expired lease may be revived only while nobody else holds the task.
            if expires_at <= now {
                let others: i64 = tx
                    .query_one(
                        "SELECT COUNT(*) FROM prover_leases WHERE task_id = $1 AND lease_id <> $2 \
                         AND outcome IS NULL AND expires_at > $3",
                        &[&task_id, &lease_id, &now],
                    )
                    .await?
                    .try_get(0)?;
                if others > 0 {
                    return Ok(RenewOutcome::Lost);
                }
            }
            tx.execute(
                "UPDATE prover_leases SET expires_at = $1 WHERE lease_id = $2",
                &[&now.saturating_add(lease_ms(lease)), &lease_id],
            )
            .await?;
            tx.commit().await?;
            Ok(RenewOutcome::Renewed)
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
        transaction!(self, |tx| {
            let now = db_now(&tx).await?;
            if let Err(refused) = may_report(&tx, task_id, lease_id).await? {
                return Ok(refused);
            }
            tx.execute(
                "UPDATE prover_leases SET outcome = $1, reason = $2 WHERE lease_id = $3",
                &[&outcome, &reason, &lease_id],
            )
            .await?;
            let counts = tx
                .query_one(
                    format!(
                        "SELECT COUNT(*) FILTER (WHERE {COUNTED_ATTEMPT}), \
                                COUNT(*) FILTER (WHERE outcome IS NULL AND expires_at > $2) \
                         FROM prover_leases WHERE task_id = $1"
                    )
                    .as_str(),
                    &[&task_id, &now],
                )
                .await?;
            let (attempts, open): (i64, i64) = (counts.try_get(0)?, counts.try_get(1)?);
            let result = if attempts >= i64::from(max_attempts) && open == 0 {
                fail_proving(&tx, task_id, now).await?;
                AttemptOutcome::TaskFailed
            } else {
                AttemptOutcome::Retrying
            };
            tx.commit().await?;
            Ok(result)
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
        transaction!(self, |tx| {
            let now = db_now(&tx).await?;
            if let Err(refused) = may_report(&tx, task_id, lease_id).await? {
                return Ok(refused);
            }
            tx.execute("UPDATE prover_leases SET outcome = 'accepted' WHERE lease_id = $1", &[&lease_id])
                .await?;
            tx.execute(
                "UPDATE prover_leases SET outcome = 'superseded' WHERE task_id = $1 AND outcome IS NULL",
                &[&task_id],
            )
            .await?;
            tx.execute(
                "UPDATE tasks SET status = 'delivering', updated_at = $1, claims = 0, receipt = $2, journal = $3, \
                 user_cycles = $4 WHERE id = $5",
                &[&now, &receipt, &journal, &to_i64(user_cycles, "user cycles")?, &task_id],
            )
            .await?;
            for status in ["verifying", "delivering"] {
                insert_event(&tx, task_id, status, now).await?;
            }
            tx.commit().await?;
            Ok(AttemptOutcome::Accepted)
        })
    }

    async fn prover_attempts(&self, task_id: &str) -> Result<Vec<ProverAttempt>> {
        transaction!(self, |tx| { read_attempts(&tx, task_id).await })
    }

    async fn record_failure_delivery(&self, task_id: &str, u: StageUpdate) -> Result<()> {
        transaction!(self, |tx| {
            let now = db_now(&tx).await?;
            let n = tx
                .execute(
                    "UPDATE tasks SET result = COALESCE($1, result), logs = COALESCE($2, logs), updated_at = $3 \
                     WHERE id = $4 AND status = 'failed'",
                    &[&pg_text_opt(&u.result), &pg_text_opt(&u.logs), &now, &task_id],
                )
                .await?;
            if n == 1 {
                if let Some(write) = &u.volume {
                    put_volume(&tx, write, now).await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn lease_stats(&self, since_ms: i64) -> Result<(Vec<(String, u64)>, u64)> {
        transaction!(self, |tx| {
            let now = db_now(&tx).await?;
            let rows = tx
                .query(
                    "SELECT CASE WHEN outcome IS NOT NULL THEN outcome \
                                 WHEN expires_at <= $1 THEN 'expired' ELSE 'open' END AS o, COUNT(*) \
                     FROM prover_leases GROUP BY o",
                    &[&now],
                )
                .await?;
            let by_outcome = rows
                .iter()
                .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, i64>(1)?.max(0) as u64)))
                .collect::<TxResult<Vec<_>>>()?;
            let workers: i64 = tx
                .query_one(
                    "SELECT COUNT(DISTINCT worker) FROM prover_leases WHERE issued_at >= $1 OR outcome IS NULL",
                    &[&since_ms],
                )
                .await?
                .try_get(0)?;
            Ok((by_outcome, workers.max(0) as u64))
        })
    }

    async fn status_counts(&self) -> Result<StatusCounts> {
        transaction!(self, |tx| {
            let rows = tx.query("SELECT status, COUNT(*) FROM tasks GROUP BY status", &[]).await?;
            rows.iter()
                .map(|r| Ok((status(r.try_get(0)?)?, r.try_get::<_, i64>(1)?.max(0) as u64)))
                .collect::<TxResult<Vec<_>>>()
        })
    }

    async fn programs_with_pending_work(&self, limit: usize) -> Result<Vec<String>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        transaction!(self, |tx| {
            let rows = tx
                .query(
                    "SELECT program_id FROM tasks WHERE status IN ('queued', 'witnessing', 'delivering') \
                     GROUP BY program_id ORDER BY MAX(seq) DESC LIMIT $1",
                    &[&limit],
                )
                .await?;
            rows.iter().map(|r| Ok(r.try_get(0)?)).collect::<TxResult<Vec<String>>>()
        })
    }

    async fn worker_record(&self, worker: &str, window: u32) -> Result<WorkerRecord> {
        let sql = format!(
            "SELECT {WORKER_FAILED}, issued_at FROM prover_leases WHERE worker = $1 AND outcome IS NOT NULL \
             ORDER BY issued_at DESC LIMIT $2"
        );
        let window = i64::from(window);
        transaction!(self, |tx| {
            let rows = tx.query(sql.as_str(), &[&worker, &window]).await?;
            let mut record = WorkerRecord::default();
            for r in rows {
                if !r.try_get::<_, bool>(0)? {
                    break;
                }
                record.consecutive_failures += 1;
                if record.last_failure_at.is_none() {
                    record.last_failure_at = Some(r.try_get(1)?);
                }
            }
            Ok(record)
        })
    }

    async fn unfinished_tasks_of(&self, submitter: Option<&str>) -> Result<u64> {
        transaction!(self, |tx| {
            let row = tx
                .query_one(
                    "SELECT COUNT(*) FROM tasks WHERE submitter IS NOT DISTINCT FROM $1 \
                     AND status NOT IN ('done', 'failed', 'cancelled')",
                    &[&submitter],
                )
                .await?;
            Ok(row.try_get::<_, i64>(0)?.max(0) as u64)
        })
    }

    async fn prune_payloads(&self, finished_before: i64, limit: usize) -> Result<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        transaction!(self, |tx| {
            let n = tx
                .execute(
                    "UPDATE tasks SET input = NULL, receipt = NULL WHERE seq IN (SELECT seq FROM tasks \
                     WHERE status IN ('done', 'failed', 'cancelled') AND (input IS NOT NULL OR receipt IS NOT NULL) \
                     AND updated_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    &[&finished_before, &limit],
                )
                .await?;
            tx.commit().await?;
            Ok(n)
        })
    }

    async fn now_ms(&self) -> Result<i64> {
        transaction!(self, |tx| { db_now(&tx).await })
    }

    async fn use_nonce(&self, key: &str, keep: Duration) -> Result<bool> {
        let key = pg_text(key);
        transaction!(self, |tx| {
            let now = db_now(&tx).await?;
            tx.execute("DELETE FROM request_nonces WHERE at < $1", &[&now.saturating_sub(lease_ms(keep))])
                .await?;
            let fresh = tx
                .execute(
                    "INSERT INTO request_nonces (key, at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    &[&key, &now],
                )
                .await?;
            tx.commit().await?;
            Ok(fresh == 1)
        })
    }

    async fn append_blocks(&self, domain: &str, prev_root: [u8; 32], blocks: Vec<NewBlock>) -> Result<bool> {
        transaction!(self, |tx| {
            // Appends are serialized: each one checks the newest root first.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_SMT]).await?;
            let newest =
                tx.query_opt("SELECT seq, root FROM smt_updates ORDER BY seq DESC LIMIT 1", &[]).await?;
            let (mut seq, newest_root): (i64, Vec<u8>) = match newest {
                Some(r) => (r.try_get(0)?, r.try_get(1)?),
                None => (0, vec![0u8; 32]),
            };
            if newest_root.as_slice() != prev_root.as_slice() {
                return Ok(false);
            }
            let now = db_now(&tx).await?;
            let stmt = tx
                .prepare(
                    "INSERT INTO smt_updates (seq, domain, number, block_hash, state_root, header, \
                     prev_root, root, inserted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .await?;
            let mut prev = prev_root;
            for b in &blocks {
                seq += 1;
                let number = to_i64(b.number, "block number")?;
                tx.execute(
                    &stmt,
                    &[
                        &seq,
                        &domain,
                        &number,
                        &b.block_hash.as_slice(),
                        &b.state_root.as_slice(),
                        &b.header,
                        &prev.as_slice(),
                        &b.root.as_slice(),
                        &now,
                    ],
                )
                .await?;
                prev = b.root;
            }
            insert_nodes(&tx, blocks.iter().flat_map(|b| &b.nodes)).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn smt_updates(&self, after_seq: u64) -> Result<Vec<SmtUpdate>> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        transaction!(self, |tx| {
            let rows = tx
                .query(
                    "SELECT seq, domain, number, block_hash, state_root, prev_root, root FROM smt_updates \
                     WHERE seq > $1 ORDER BY seq",
                    &[&after],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(SmtUpdate {
                        seq: r.try_get::<_, i64>(0)?.max(0) as u64,
                        domain: r.try_get(1)?,
                        number: r.try_get::<_, i64>(2)?.max(0) as u64,
                        block_hash: hash32(r.try_get(3)?, "smt_updates: block hash")?,
                        state_root: hash32(r.try_get(4)?, "smt_updates: state root")?,
                        prev_root: hash32(r.try_get(5)?, "smt_updates: previous root")?,
                        root: hash32(r.try_get(6)?, "smt_updates: root")?,
                    })
                })
                .collect::<TxResult<Vec<_>>>()
        })
    }

    async fn block_header(&self, domain: &str, number: u64) -> Result<Option<Vec<u8>>> {
        let number = i64::try_from(number).unwrap_or(i64::MAX);
        transaction!(self, |tx| {
            let row = tx
                .query_opt(
                    "SELECT header FROM smt_updates WHERE domain = $1 AND number = $2",
                    &[&domain, &number],
                )
                .await?;
            row.map(|r| Ok(r.try_get(0)?)).transpose()
        })
    }

    async fn smt_walk(&self, walk: zkcoproc_smt::Walk) -> Result<Result<Opening, WalkError>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT node FROM smt_nodes WHERE hash = $1")
            .await
            .map_err(|e| pg_error(&e))?;
        // Nodes are immutable once written (content-addressed), so reading them one query at a
        // time outside a transaction still reads one consistent version.
        let mut walk = walk;
        while let Some(hash) = walk.next_hash() {
            let row = client.query_opt(&stmt, &[&hash.as_slice()]).await.map_err(|e| pg_error(&e))?;
            let node: Option<Vec<u8>> = row.map(|r| r.try_get(0)).transpose().map_err(|e| pg_error(&e))?;
            if let Err(e) = walk.feed(node.as_deref()) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(walk.finish()))
    }

    async fn put_smt_nodes(&self, nodes: Vec<([u8; 32], Vec<u8>)>) -> Result<()> {
        transaction!(self, |tx| {
            insert_nodes(&tx, nodes.iter()).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn has_smt_node(&self, hash: [u8; 32]) -> Result<bool> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT 1 FROM smt_nodes WHERE hash = $1", &[&hash.as_slice()])
            .await
            .map_err(|e| pg_error(&e))?;
        Ok(row.is_some())
    }
}

/// Stores tree nodes, leaving those already stored (several replicas may store the same node).
async fn insert_nodes<'a>(
    tx: &deadpool_postgres::Transaction<'_>,
    nodes: impl Iterator<Item = &'a ([u8; 32], Vec<u8>)>,
) -> TxResult<()> {
    let stmt = tx
        .prepare_cached("INSERT INTO smt_nodes (hash, node) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .await?;
    for (hash, node) in nodes {
        tx.execute(&stmt, &[&hash.as_slice(), node]).await?;
    }
    Ok(())
}
