//! The PostgreSQL server of the test run (`scripts/postgres.sh` starts one and names it in
//! `ZKCOPROC_TEST_POSTGRES`).

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context as _;

/// The server's base URL (`postgres://user@host:port`), or `None` when the run has none, with a
/// notice. With `ZKCOPROC_REQUIRE_POSTGRES=1` (set by `scripts/test.sh`) a missing server panics:
/// there the PostgreSQL tests must run.
pub fn server() -> Option<String> {
    match std::env::var("ZKCOPROC_TEST_POSTGRES") {
        Ok(url) => Some(url.trim_end_matches('/').to_owned()),
        Err(_) => {
            if std::env::var("ZKCOPROC_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("ZKCOPROC_REQUIRE_POSTGRES=1 but ZKCOPROC_TEST_POSTGRES is not set");
            }
            eprintln!("SKIPPED: needs PostgreSQL (set ZKCOPROC_TEST_POSTGRES=postgres://user@host:port)");
            None
        }
    }
}

/// Creates an empty database on the server at `base`; returns its URL.
pub fn fresh_database(base: &str) -> anyhow::Result<String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("zkt_{}_{}_{}", std::process::id(), nanos, NEXT.fetch_add(1, Ordering::Relaxed));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (client, conn) = tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {base}"))?;
        let conn = tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.context("creating a database")?;
        drop(client);
        let _ = conn.await;
        anyhow::Ok(())
    })?;
    Ok(format!("{base}/{name}"))
}
