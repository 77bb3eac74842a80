//! The embedded SQLite backend: one connection, one writer, every transaction on a blocking
//! thread.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use crate::sql::{Arg, Backend, BoxFuture, Mode, Row, Tx, Value};
use crate::{now_ms, Result, StoreError};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/01_tasks.sql"),
    include_str!("../migrations/sqlite/02_volumes.sql"),
    include_str!("../migrations/sqlite/03_idempotency_keys.sql"),
    include_str!("../migrations/sqlite/04_prover_leases.sql"),
    include_str!("../migrations/sqlite/05_expected_journal.sql"),
    include_str!("../migrations/sqlite/06_smt_updates.sql"),
    include_str!("../migrations/sqlite/07_volume_versions.sql"),
    include_str!("../migrations/sqlite/08_request_nonces.sql"),
    include_str!("../migrations/sqlite/09_smt_nodes.sql"),
    include_str!("../migrations/sqlite/10_owners_and_retention.sql"),
    include_str!("../migrations/sqlite/11_programs_by_image.sql"),
    include_str!("../migrations/sqlite/12_light_client.sql"),
    include_str!("../migrations/sqlite/13_volume_blocks.sql"),
    include_str!("../migrations/sqlite/14_drop_volume_images.sql"),
    include_str!("../migrations/sqlite/15_progress.sql"),
    include_str!("../migrations/sqlite/16_webhooks.sql"),
    include_str!("../migrations/sqlite/17_task_lists.sql"),
    include_str!("../migrations/sqlite/18_volume_block_index.sql"),
    include_str!("../migrations/sqlite/19_fair_turns.sql"),
    include_str!("../migrations/sqlite/20_unfinished_by_submitter.sql"),
    include_str!("../migrations/sqlite/21_volume_pins.sql"),
    include_str!("../migrations/sqlite/22_finished_counts.sql"),
    include_str!("../migrations/sqlite/23_volume_blocks_4k.sql"),
];

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

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
        let mut store = Self::from_connection(Connection::open(dir.join("zkcoproc.db"))?)?;
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
        conn.set_prepared_statement_cache_capacity(128);
        run_on(&mut conn, Mode::Write, |tx| Box::pin(crate::logic::migrate(tx, MIGRATIONS)))?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), _lock: None })
    }
}

#[async_trait::async_trait]
impl Backend for SqliteStore {
    const SHARED: bool = false;

    async fn run<T, F>(&self, mode: Mode, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T>> + Send + Sync + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard =
                conn.lock().map_err(|_| StoreError::Database("connection mutex poisoned".into()))?;
            run_on(&mut guard, mode, body)
        })
        .await
        .map_err(|e| StoreError::Database(format!("store worker failed: {e}")))?
    }
}

/// Runs `body` in one transaction on `conn`, on this thread. SQLite's calls are synchronous, so
/// the body's future completes in its first poll; one that does not is refused (rolled back).
fn run_on<T, F>(conn: &mut Connection, mode: Mode, body: F) -> Result<T>
where
    F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T>>,
{
    // IMMEDIATE: a writer takes the write lock at the start, so its reads see what it writes on.
    // A read needs no transaction: nothing else writes while this one connection is held.
    if mode == Mode::Write {
        conn.execute_batch("BEGIN IMMEDIATE")?;
    }
    let mut tx = SqliteTx { conn };
    let out = match body(&mut tx).as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(StoreError::Database("a SQLite transaction waited on something else".into())),
    };
    let end = match (mode, &out) {
        (Mode::Read | Mode::Statements, _) => Ok(()),
        (Mode::Write, Ok(_)) => tx.conn.execute_batch("COMMIT"),
        (Mode::Write, Err(_)) => tx.conn.execute_batch("ROLLBACK"),
    };
    if let Err(e) = end {
        // A failed COMMIT leaves the transaction open: end it, so the connection stays usable.
        if !tx.conn.is_autocommit() {
            let _ = tx.conn.execute_batch("ROLLBACK");
        }
        return Err(e.into());
    }
    out
}

struct SqliteTx<'c> {
    conn: &'c mut Connection,
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Null => ValueRef::Null,
            Arg::Int(n) => ValueRef::Integer(n),
            Arg::Text(s) => ValueRef::Text(s.as_bytes()),
            Arg::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// The statement as SQLite reads it: `$N` becomes `?N`, and row-lock clauses (`FOR UPDATE`,
/// `OF t`, `SKIP LOCKED`) go, the write transaction being the only writer. (One pass over the
/// bytes: it runs for every statement.)
fn translate(sql: &str) -> String {
    let (bytes, mut out) = (sql.as_bytes(), String::with_capacity(sql.len()));
    let (mut copied, mut i, mut in_literal) = (0, 0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => in_literal = !in_literal,
            b'$' if !in_literal && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                out.push_str(&sql[copied..i]);
                out.push('?');
                copied = i + 1;
            }
            b' ' if !in_literal && sql[i..].starts_with(" FOR UPDATE") => {
                out.push_str(&sql[copied..i]);
                let mut rest = &sql[i + " FOR UPDATE".len()..];
                if let Some(after) = rest.strip_prefix(" OF ") {
                    rest = after.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
                }
                rest = rest.strip_prefix(" SKIP LOCKED").unwrap_or(rest);
                (copied, i) = (sql.len() - rest.len(), sql.len() - rest.len());
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&sql[copied..]);
    out
}

fn value(v: ValueRef<'_>) -> Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Int(n),
        ValueRef::Text(t) => Value::Text(
            String::from_utf8(t.to_vec()).map_err(|_| StoreError::Corrupt("text is not UTF-8".into()))?,
        ),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        ValueRef::Real(_) => return Err(StoreError::Corrupt("unexpected floating-point column".into())),
    })
}

#[async_trait::async_trait]
impl Tx for SqliteTx<'_> {
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(&translate(sql))?;
        Ok(stmt.execute(rusqlite::params_from_iter(args))? as u64)
    }

    async fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        let mut stmt = self.conn.prepare_cached(&translate(sql))?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(Row((0..columns).map(|i| value(row.get_ref(i)?)).collect::<Result<_>>()?));
        }
        Ok(out)
    }

    async fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }

    async fn now(&mut self) -> Result<i64> {
        // One process owns a SQLite store: its clock is the store's.
        Ok(now_ms())
    }

    async fn notify(&mut self, _task_id: &str, _status: &str) -> Result<()> {
        // One process owns the database: it tells its own parts in memory.
        Ok(())
    }

    async fn lock(&mut self, _key: &str) -> Result<()> {
        Ok(())
    }

    async fn schema_version(&mut self) -> Result<i64> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    async fn set_schema_version(&mut self, version: i64) -> Result<()> {
        Ok(self.conn.pragma_update(None, "user_version", version)?)
    }
}

#[cfg(test)]
mod tests {
    /// The quota count reads the identity's unfinished tasks, not its history: before migration
    /// 20 SQLite counted through `tasks_by_submitter` and stepped over every task the identity
    /// ever submitted (about 13 VM steps each), so each submit of an identity with a long
    /// history held the store's one connection for longer. Anonymous callers (no submitter)
    /// count as one identity, through the same index.
    #[test]
    fn the_quota_count_does_not_read_finished_tasks() {
        let store = super::SqliteStore::in_memory().expect("store");
        let conn = store.conn.lock().expect("connection");
        conn.execute_batch(
            "INSERT INTO programs (id, image_id, controller, circuit, created_at) VALUES ('p', '00', x'00', x'00', 0);
             INSERT INTO tasks (id, program_id, args, root, receipt_kind, status, created_at, updated_at, submitter)
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)
                 SELECT 'done-' || i, 'p', '{}', x'00', 'fake', 'done', 0, 0, CASE WHEN i % 2 = 0 THEN 'alice' END FROM n;
             INSERT INTO tasks (id, program_id, args, root, receipt_kind, status, created_at, updated_at, submitter)
                 VALUES ('open', 'p', '{}', x'00', 'fake', 'queued', 0, 0, 'alice'),
                        ('open-anonymous', 'p', '{}', x'00', 'fake', 'proving', 0, 0, NULL);",
        )
        .expect("tasks");
        for submitter in [Some("alice"), None] {
            let mut stmt = conn.prepare(&super::translate(crate::logic::UNFINISHED_OF)).expect("prepare");
            let count: i64 = stmt.query_row([submitter], |r| r.get(0)).expect("count");
            assert_eq!(count, 1, "{submitter:?}");
            let steps = stmt.get_status(rusqlite::StatementStatus::VmStep);
            assert!(steps < 200, "{submitter:?}: the count took {steps} VM steps over 2 000 finished tasks");
        }
    }

    /// `/health` and `/metrics` are public and not rate limited, and SQLite has one connection:
    /// counting the whole task and lease tables on each request let anyone hold the store in
    /// proportion to the service's history (40 ms a request at 100 000 tasks). The counts read
    /// the unfinished tasks, the open leases and those issued since the window began, and the
    /// few rows of `finished_counts`, whatever the history.
    #[test]
    fn health_counts_do_not_read_the_history() {
        let store = super::SqliteStore::in_memory().expect("store");
        let conn = store.conn.lock().expect("connection");
        conn.execute_batch(
            "INSERT INTO programs (id, image_id, controller, circuit, created_at) VALUES ('p', '00', x'00', x'00', 0);
             INSERT INTO tasks (id, program_id, args, root, receipt_kind, status, created_at, updated_at, submitter)
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)
                 SELECT 't' || i, 'p', '{}', x'00', 'fake', 'proving', 0, 0, CASE WHEN i % 2 = 0 THEN 'alice' END FROM n;
             INSERT INTO prover_leases (lease_id, task_id, worker, issued_at, expires_at)
                 SELECT id || '/1', id, 'w' || (seq % 7), seq, seq + 10 FROM tasks;
             UPDATE prover_leases SET outcome = CASE WHEN issued_at % 3 = 0 THEN 'failed' ELSE 'accepted' END;
             UPDATE tasks SET status = CASE WHEN seq % 4 = 0 THEN 'failed' ELSE 'done' END;
             UPDATE tasks SET status = 'cancelled' WHERE seq = 8;
             INSERT INTO tasks (id, program_id, args, root, receipt_kind, status, created_at, updated_at)
                 VALUES ('open', 'p', '{}', x'00', 'fake', 'proving', 0, 0);
             INSERT INTO prover_leases (lease_id, task_id, worker, issued_at, expires_at)
                 VALUES ('open/1', 'open', 'w-open', 5000, 5010);",
        )
        .expect("history");
        let run = |sql: &str, arg: Option<i64>| {
            let mut stmt = conn.prepare(&super::translate(sql)).expect("prepare");
            let rows: Vec<(String, i64)> = stmt
                .query_map(rusqlite::params_from_iter(arg), |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            (rows, stmt.get_status(rusqlite::StatementStatus::VmStep))
        };
        let (tasks, steps) = run(crate::logic::TASKS_BY_STATUS, None);
        let expected = [("cancelled", 1), ("done", 3000), ("failed", 999), ("proving", 1)];
        assert_eq!(tasks, expected.map(|(s, n)| (s.to_owned(), n)));
        assert!(steps < 300, "counting tasks took {steps} VM steps over 4 000 finished tasks");
        let (mut leases, steps) = run(crate::logic::LEASES_BY_OUTCOME, Some(5005));
        leases.sort();
        let expected = [("accepted", 2667), ("failed", 1333), ("open", 1)];
        assert_eq!(leases, expected.map(|(s, n)| (s.to_owned(), n)));
        assert!(steps < 300, "counting leases took {steps} VM steps over 4 000 ended leases");
        let mut stmt = conn.prepare(&super::translate(crate::logic::RECENT_PROVERS)).expect("prepare");
        let provers: i64 = stmt.query_row([3990], |r| r.get(0)).expect("provers");
        assert_eq!(provers, 8, "the 7 workers of the leases issued since 3990, and the open one's");
        let steps = stmt.get_status(rusqlite::StatementStatus::VmStep);
        assert!(steps < 500, "counting provers took {steps} VM steps over 4 000 leases");
    }

    #[test]
    fn statements_are_translated_to_sqlite() {
        let pg =
            "SELECT a FROM t WHERE a = $1 AND b = 'it''s $2 FOR UPDATE' LIMIT $12 FOR UPDATE SKIP LOCKED";
        assert_eq!(
            super::translate(pg),
            "SELECT a FROM t WHERE a = ?1 AND b = 'it''s $2 FOR UPDATE' LIMIT ?12"
        );
        assert_eq!(
            super::translate("(SELECT 1 FROM t JOIN u FOR UPDATE OF t) x"),
            "(SELECT 1 FROM t JOIN u) x"
        );
    }
}
