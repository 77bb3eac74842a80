//! The PostgreSQL backend, shared by several service replicas.
//!
//! Every store method is one transaction (READ COMMITTED; reads REPEATABLE READ, READ ONLY),
//! run again when PostgreSQL aborts it for a serialization failure or a deadlock; reads whose
//! statements need no common snapshot ([`Mode::Statements`]) run without BEGIN and ROLLBACK, one
//! round trip a statement. Claims lock
//! the task row with `FOR UPDATE SKIP LOCKED`, so replicas never wait on each other's
//! candidates; operations on one task's prover leases lock the task row first. Times come from
//! the database clock, so replicas on machines whose clocks disagree still agree on when a lease
//! expired; a writing transaction reads it once, as it begins, in BEGIN's round trip.
//! Statements are prepared once per pooled connection. Every status change is announced with
//! `NOTIFY` in its transaction; each store listens on a connection of its own and passes on the
//! changes other processes committed ([`crate::Store::notices`]).

use std::error::Error;
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::sql::{Arg, Backend, BoxFuture, Mode, Row, Tx, Value};
use crate::{Result, StoreError, TaskNotice, TaskStatus};

/// The `NOTIFY` channel of task status changes; a payload is `origin status task-id`.
const CHANNEL: &str = "zkcoproc_tasks";

/// Schema migrations, applied in order under an advisory lock; `zkcoproc_schema` records how
/// many ran. The schema is the SQLite one with PostgreSQL types.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/01_schema.sql"),
    include_str!("../migrations/postgres/02_volume_compression.sql"),
    include_str!("../migrations/postgres/03_request_nonces.sql"),
    include_str!("../migrations/postgres/04_smt_nodes.sql"),
    include_str!("../migrations/postgres/05_owners_and_retention.sql"),
    include_str!("../migrations/postgres/06_light_client.sql"),
    include_str!("../migrations/postgres/07_volume_blocks.sql"),
    include_str!("../migrations/postgres/08_drop_volume_images.sql"),
    include_str!("../migrations/postgres/09_progress.sql"),
    include_str!("../migrations/postgres/10_webhooks.sql"),
    include_str!("../migrations/postgres/11_task_lists.sql"),
    include_str!("../migrations/postgres/12_volume_block_index.sql"),
    include_str!("../migrations/postgres/13_fair_turns.sql"),
    include_str!("../migrations/postgres/14_volume_pins.sql"),
    include_str!("../migrations/postgres/15_finished_counts.sql"),
    include_str!("../migrations/postgres/16_volume_blocks_4k.sql"),
];

/// Transactions aborted by PostgreSQL for a serialization failure or deadlock are run again, up
/// to this many times.
const RETRIES: u32 = 8;

/// A store in a PostgreSQL database, shared by any number of service replicas.
pub struct PgStore {
    pool: Pool,
    /// connections that hold session advisory locks ([`Backend::hold`]): a pool of their own, so
    /// that held locks can never take the connections the lock holders' own queries need
    locks: Pool,
    /// this store's name in the notices it sends, so that it does not tell itself its own
    origin: std::sync::Arc<str>,
    /// the changes other stores committed, as its listener hears them
    notices: tokio::sync::broadcast::Sender<TaskNotice>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/dbname`), with up to
    /// `max_connections` pooled connections for queries (and as many, opened only when needed,
    /// for held volume locks), and migrates the schema.
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Database(format!("database url: {e}")))?;
        let pool = |config: tokio_postgres::Config| {
            let manager = Manager::from_config(
                config,
                NoTls,
                ManagerConfig { recycling_method: RecyclingMethod::Fast },
            );
            Pool::builder(manager)
                .max_size(max_connections.max(1))
                .wait_timeout(Some(Duration::from_secs(30)))
                .create_timeout(Some(Duration::from_secs(10)))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| StoreError::Database(format!("connection pool: {e}")))
        };
        let (queries, locks) = (pool(config.clone())?, pool(config.clone())?);
        let origin: std::sync::Arc<str> = format!("{:016x}", rand_origin()).into();
        let (notices, _) = tokio::sync::broadcast::channel(1024);
        let listener = tokio::spawn(listen(config, origin.clone(), notices.clone()));
        let store = PgStore { pool: queries, locks, origin, notices, listener };
        store.run(Mode::Write, |tx| Box::pin(crate::logic::migrate(tx, MIGRATIONS))).await?;
        Ok(store)
    }
}

fn pg_error(e: &tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Database(format!("{} ({})", db.message(), db.code().code())),
        None => StoreError::Database(e.to_string()),
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

#[async_trait::async_trait]
impl Backend for PgStore {
    const SHARED: bool = true;

    async fn run<T, F>(&self, mode: Mode, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T>> + Send + Sync + 'static,
    {
        let mut attempt = 0u32;
        loop {
            // The connection goes back (or, dropped mid-transaction, is closed) before any wait
            // for a retry.
            let (out, retry) = {
                let client = self
                    .pool
                    .get()
                    .await
                    .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
                match mode {
                    Mode::Statements => {
                        // Each statement on its own (autocommit): nothing to begin or to end.
                        let mut conn = PgTx { tx: &client, retry: false, origin: &self.origin, clock: None };
                        match body(&mut conn).await {
                            Ok(v) => return Ok(v),
                            Err(e) => (Err(e), conn.retry),
                        }
                    }
                    Mode::Write | Mode::Read => {
                        match Open(Some(client)).transact(mode, &self.origin, &body).await {
                            Ok(v) => return Ok(v),
                            Err((e, retry)) => (Err(e), retry),
                        }
                    }
                }
            };
            if !retry || attempt >= RETRIES {
                return out;
            }
            attempt += 1;
            tracing::debug!(attempt, "transaction aborted by the database; retrying");
            tokio::time::sleep(Duration::from_millis(2u64 << attempt.min(6))).await;
        }
    }

    async fn hold(&self, key: &str) -> Result<Option<crate::Held>> {
        let client = self
            .locks
            .get()
            .await
            .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
        let sql = format!("SELECT pg_advisory_lock(hashtextextended($1, {LOCK_SEED}))");
        client.query_one(&sql, &[&key]).await.map_err(|e| pg_error(&e))?;
        Ok(Some(crate::Held(Box::new(PgHeld { client: Some(client), key: key.to_owned() }))))
    }

    fn listen(&self) -> Option<tokio::sync::broadcast::Receiver<TaskNotice>> {
        Some(self.notices.subscribe())
    }
}

/// A session advisory lock and the connection that holds it; dropping it unlocks (on a task of
/// the runtime) and returns the connection, or closes the connection, which also unlocks.
struct PgHeld {
    client: Option<deadpool_postgres::Object>,
    key: String,
}

/// The advisory-lock namespace of ours: "zkcp" as the hash seed (shared with [`Tx::lock`]).
const LOCK_SEED: &str = "2053792624";

impl Drop for PgHeld {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            // Not returned to the pool: the session ends, and its locks with it.
            drop(deadpool_postgres::Object::take(client));
            return;
        };
        let key = std::mem::take(&mut self.key);
        drop(handle.spawn(async move {
            let sql = format!("SELECT pg_advisory_unlock(hashtextextended($1, {LOCK_SEED}))");
            if client.query_one(&sql, &[&key]).await.is_err() {
                drop(deadpool_postgres::Object::take(client));
            }
        }));
    }
}

/// The query of the database clock, in unix ms (a macro, so that [`BEGIN_WRITE`] can include it).
macro_rules! clock_query {
    () => {
        "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT"
    };
}

/// The statement that begins a writing transaction and reads the database clock, in one round
/// trip: nearly every writing transaction needs the clock, and it is read once, at the start.
const BEGIN_WRITE: &str = concat!("START TRANSACTION; ", clock_query!());

/// A pooled connection in a transaction begun and ended by simple statements (so that BEGIN and
/// the clock take one round trip). Dropped while still holding the connection (its caller
/// stopped waiting mid-transaction), it closes the connection rather than return it to the pool
/// inside the transaction; the server then rolls the transaction back.
struct Open(Option<deadpool_postgres::Object>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

impl Open {
    /// Begins, runs `body`, commits (or rolls back on its error), and gives the connection
    /// back to the pool; the error comes with whether running the transaction again may succeed.
    /// A connection whose BEGIN, COMMIT or ROLLBACK failed is in a state not worth finding out:
    /// it is closed.
    async fn transact<T, F>(mut self, mode: Mode, origin: &str, body: &F) -> Result<T, (StoreError, bool)>
    where
        F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T>> + Send + Sync,
    {
        let Some(client) = self.0.as_ref() else {
            return Err((StoreError::Database("no connection".into()), false));
        };
        let begin = match mode {
            Mode::Read => "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            _ => BEGIN_WRITE,
        };
        let clock = match client.simple_query(begin).await {
            Ok(messages) => messages.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse::<i64>().ok()),
                _ => None,
            }),
            Err(e) => return Err((pg_error(&e), retryable(&e))),
        };
        let mut tx = PgTx { tx: client, retry: false, origin, clock };
        let (out, end) = match body(&mut tx).await {
            Ok(v) => match client.batch_execute("COMMIT").await {
                Ok(()) => (Ok(v), Ok(())),
                Err(e) => (Err((pg_error(&e), retryable(&e))), Err(())),
            },
            Err(e) => (Err((e, tx.retry)), client.batch_execute("ROLLBACK").await.map_err(drop)),
        };
        if end.is_ok() {
            // The transaction ended: the connection goes back to the pool.
            drop(self.0.take());
        }
        out
    }
}

/// Statements on a connection: in a transaction, or each on its own.
struct PgTx<'c, C> {
    tx: &'c C,
    origin: &'c str,
    /// the database clock read when the transaction began, if it was
    clock: Option<i64>,
    /// the last statement failed in a way that running the transaction again may fix
    retry: bool,
}

impl<C: GenericClient> PgTx<'_, C> {
    fn fail(&mut self, e: &tokio_postgres::Error) -> StoreError {
        self.retry |= retryable(e);
        pg_error(e)
    }

    async fn statement(&mut self, sql: &str) -> Result<tokio_postgres::Statement> {
        self.tx.prepare_cached(sql).await.map_err(|e| self.fail(&e))
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

/// Each value is checked against the parameter's type by the type it holds (an integer also
/// fits the narrower integer types, if it is in their range).
impl ToSql for Arg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(n) if *ty == Type::INT2 => i16::try_from(n)?.to_sql_checked(ty, out),
            Arg::Int(n) if *ty == Type::INT4 => i32::try_from(n)?.to_sql_checked(ty, out),
            Arg::Int(n) => n.to_sql_checked(ty, out),
            Arg::Text(s) => pg_text(s).as_ref().to_sql_checked(ty, out),
            Arg::Blob(b) => b.to_sql_checked(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn row(r: &tokio_postgres::Row) -> std::result::Result<Row, tokio_postgres::Error> {
    let mut values = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        let v = match *column.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|n| Value::Int(n.into())),
            Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(|n| Value::Int(n.into())),
            Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(|b| Value::Int(b.into())),
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            // Text and anything else that reads as text; other types fail here with their name.
            _ => r.try_get::<_, Option<String>>(i)?.map(Value::Text),
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

fn params<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

#[async_trait::async_trait]
impl<C: GenericClient> Tx for PgTx<'_, C> {
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let stmt = self.statement(sql).await?;
        self.tx.execute(&stmt, &params(args)).await.map_err(|e| self.fail(&e))
    }

    async fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        let stmt = self.statement(sql).await?;
        let rows = self.tx.query(&stmt, &params(args)).await.map_err(|e| self.fail(&e))?;
        rows.iter().map(row).collect::<Result<_, _>>().map_err(|e| self.fail(&e))
    }

    async fn batch(&mut self, sql: &str) -> Result<()> {
        self.tx.batch_execute(sql).await.map_err(|e| self.fail(&e))
    }

    async fn now(&mut self) -> Result<i64> {
        if let Some(clock) = self.clock {
            return Ok(clock);
        }
        (self as &mut dyn Tx).scalar(clock_query!(), &[]).await
    }

    async fn notify(&mut self, task_id: &str, status: &str) -> Result<()> {
        let payload = format!("{} {status} {task_id}", self.origin);
        let sql = "SELECT pg_notify($1, $2)";
        self.execute(sql, &[Arg::Text(CHANNEL), Arg::Text(&payload)]).await.map(drop)
    }

    async fn lock(&mut self, key: &str) -> Result<()> {
        // One namespace of ours: "zkcp" as the hash seed.
        let sql = format!("SELECT pg_advisory_xact_lock(hashtextextended($1, {LOCK_SEED}))");
        self.execute(&sql, &[Arg::Text(key)]).await.map(drop)
    }

    async fn schema_version(&mut self) -> Result<i64> {
        self.batch("CREATE TABLE IF NOT EXISTS zkcoproc_schema (version BIGINT NOT NULL)").await?;
        match (self as &mut dyn Tx).first("SELECT version FROM zkcoproc_schema", &[]).await? {
            Some(version) => Ok(version),
            None => {
                self.execute("INSERT INTO zkcoproc_schema (version) VALUES (0)", &[]).await?;
                Ok(0)
            }
        }
    }

    async fn set_schema_version(&mut self, version: i64) -> Result<()> {
        self.execute("UPDATE zkcoproc_schema SET version = $1", &[Arg::Int(version)]).await.map(drop)
    }
}

/// A store's name for its notices: unique enough among the replicas of one database.
fn rand_origin() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Listens for other stores' notices on a connection of its own and passes them on; reconnects
/// a second after the connection is lost (the runners' and streams' polling covers the gap).
async fn listen(
    config: tokio_postgres::Config,
    origin: std::sync::Arc<str>,
    notices: tokio::sync::broadcast::Sender<TaskNotice>,
) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (origin, notices) = (origin.clone(), notices.clone());
                // Polling the connection for its messages is also what carries the LISTEN.
                let driver = tokio::spawn(async move {
                    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if let Some(notice) = parse_notice(n.payload(), &origin) {
                                    // No receiver is fine: nobody follows changes.
                                    let _ = notices.send(notice);
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "the PostgreSQL notice connection failed");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        tracing::debug!("listening for task changes of other replicas");
                        let _ = driver.await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %pg_error(&e), "cannot LISTEN for task changes");
                        driver.abort();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %pg_error(&e), "cannot open the PostgreSQL notice connection"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A notice another store sent (`None`: this store's own, or not one of ours).
fn parse_notice(payload: &str, own: &str) -> Option<TaskNotice> {
    let mut parts = payload.splitn(3, ' ');
    let (origin, status, task_id) = (parts.next()?, parts.next()?, parts.next()?);
    if origin == own || task_id.is_empty() {
        return None;
    }
    Some(TaskNotice { task_id: task_id.to_owned(), status: TaskStatus::parse(status)? })
}
