//! What the store's logic needs from a database, and nothing more: statements with `$N`
//! parameters inside one transaction, rows of integers, text and bytes, the database clock,
//! advisory locks and the schema version. [`crate::sqlite`] and [`crate::postgres`] implement
//! it; the logic ([`crate::logic`]) is written once against it.
//!
//! SQL is written once, in the subset both dialects share (PostgreSQL's `$N` placeholders,
//! `ON CONFLICT`, `RETURNING`, `IS NOT DISTINCT FROM`, `COUNT(*) FILTER (WHERE ...)`). Row locks
//! (`FOR UPDATE`, `SKIP LOCKED`) are written for PostgreSQL; the SQLite backend drops them, its
//! write transactions (`BEGIN IMMEDIATE`) being the only writer anyway.

use std::future::Future;
use std::pin::Pin;

use crate::{Result, StoreError};

/// A boxed future that may move between threads.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A statement parameter (booleans are integers 0 and 1, in both dialects).
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    /// SQL NULL
    Null,
    /// a 64-bit integer
    Int(i64),
    /// text
    Text(&'a str),
    /// bytes
    Blob(&'a [u8]),
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl<'a> From<$t> for Arg<'a> {
            fn from($v: $t) -> Self {
                $e
            }
        })*
    };
}

arg_from! {
    i64 => |v| Arg::Int(v),
    bool => |v| Arg::Int(i64::from(v)),
    &'a str => |v| Arg::Text(v),
    &'a String => |v| Arg::Text(v),
    &'a [u8] => |v| Arg::Blob(v),
    &'a Vec<u8> => |v| Arg::Blob(v),
    &'a [u8; 32] => |v| Arg::Blob(v),
}

impl<'a, T: Into<Arg<'a>>> From<Option<T>> for Arg<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Arg::Null, Into::into)
    }
}

/// Statement parameters: `args![a, b]` is `&[Arg::from(a), Arg::from(b)]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$($crate::sql::Arg::from($a)),*] };
}
pub(crate) use args;

/// A column value read back.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL
    Null,
    /// an integer (booleans too)
    Int(i64),
    /// text
    Text(String),
    /// bytes
    Blob(Vec<u8>),
}

/// One result row.
#[derive(Debug)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Takes column `i` out of the row as a `T`.
    pub fn take<T: FromValue>(&mut self, i: usize) -> Result<T> {
        let value = self.0.get_mut(i).map_or(Value::Null, |v| std::mem::replace(v, Value::Null));
        T::from_value(value).ok_or_else(|| StoreError::Corrupt(format!("column {i} has an unexpected type")))
    }
}

/// A Rust type a column converts to (`None`: the column holds something else).
pub trait FromValue: Sized {
    /// Converts.
    fn from_value(v: Value) -> Option<Self>;
}

macro_rules! from_value {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl FromValue for $t {
            fn from_value($v: Value) -> Option<Self> {
                $e
            }
        })*
    };
}

from_value! {
    i64 => |v| if let Value::Int(n) = v { Some(n) } else { None },
    u64 => |v| i64::from_value(v).map(|n| n.max(0) as u64),
    u32 => |v| i64::from_value(v).map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX)),
    bool => |v| i64::from_value(v).map(|n| n != 0),
    String => |v| if let Value::Text(s) = v { Some(s) } else { None },
    Vec<u8> => |v| if let Value::Blob(b) = v { Some(b) } else { None },
    [u8; 32] => |v| Vec::<u8>::from_value(v).and_then(|b| b.try_into().ok()),
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One open transaction: it commits when the body returns `Ok` and rolls back on `Err`.
#[async_trait::async_trait]
pub trait Tx: Send {
    /// Runs a statement; returns how many rows it changed.
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64>;
    /// Runs a query; returns its rows.
    async fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>>;
    /// Runs several statements without parameters (migrations).
    async fn batch(&mut self, sql: &str) -> Result<()>;
    /// The store's clock, in unix ms (PostgreSQL: the database's, which all replicas share, as
    /// of the start of a writing transaction).
    async fn now(&mut self) -> Result<i64>;
    /// Holds the advisory lock `key` until the transaction ends (PostgreSQL; SQLite's write
    /// transaction already excludes every other writer).
    async fn lock(&mut self, key: &str) -> Result<()>;
    /// Tells the other processes sharing the database, once the transaction commits, that task
    /// `task_id` entered `status` (PostgreSQL `NOTIFY`; nothing to do on SQLite).
    async fn notify(&mut self, task_id: &str, status: &str) -> Result<()>;

    /// The schema version recorded in the database (0 for a new one).
    async fn schema_version(&mut self) -> Result<i64>;
    /// Records the schema version.
    async fn set_schema_version(&mut self, version: i64) -> Result<()>;
}

impl dyn Tx + '_ {
    /// The first row, if any.
    pub async fn opt(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>> {
        Ok(self.query(sql, args).await?.into_iter().next())
    }

    /// The first column of the first row, if there is a row.
    pub async fn first<T: FromValue>(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<T>> {
        self.opt(sql, args).await?.map(|mut r| r.take(0)).transpose()
    }

    /// The first column of the one row the query must return.
    pub async fn scalar<T: FromValue>(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<T> {
        self.first(sql, args).await?.ok_or_else(|| StoreError::Database(format!("no row from: {sql}")))
    }
}

/// Whether a transaction writes. Reads see one snapshot and take no write lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// reads only
    Read,
    /// reads that need no common snapshot (one statement, or statements that check their own
    /// consistency): PostgreSQL runs each on its own, without BEGIN and ROLLBACK
    Statements,
    /// reads and writes
    Write,
}

/// A database the store's logic runs on: it runs transactions and says whether several service
/// processes share it.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Whether several service processes may use the database at once (replicas).
    const SHARED: bool;

    /// Runs `body` in a transaction: committed when it returns `Ok`, rolled back on `Err`. A
    /// backend may run it again after the database aborted it (PostgreSQL's serialization
    /// failures and deadlocks), so it must not have effects outside the transaction.
    async fn run<T, F>(&self, mode: Mode, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T>> + Send + Sync + 'static;

    /// Waits for the advisory lock `key` and holds it, outside any transaction, until the guard
    /// is dropped (PostgreSQL: on a pooled connection kept for it). `None` where one process owns
    /// the database (SQLite): its own locks already order its work.
    async fn hold(&self, key: &str) -> Result<Option<crate::Held>> {
        let _ = key;
        Ok(None)
    }

    /// Status changes other processes commit ([`crate::Store::notices`]).
    fn listen(&self) -> Option<tokio::sync::broadcast::Receiver<crate::TaskNotice>> {
        None
    }
}
