//! A database of the schema the previous release left (SQLite: 10 migrations, PostgreSQL: 5),
//! with rows in every state written the way that release wrote them, is opened by this build:
//! it is upgraded in place, every row reads back, and the work in flight carries on. And a
//! volume stored in 64 KiB blocks (SQLite: 22 migrations, PostgreSQL: 15) reads back the same in
//! the blocks of today.
//!
//! Migrations are append-only: the old schema here is the first migrations of this build's own
//! set, which are exactly the statements the previous release ran.

use std::time::Duration;

use zkcoproc_store::{
    AttemptOutcome, Idempotency, NewTask, PgStore, RenewOutcome, SqliteStore, StageUpdate, Store, StoreError,
    TaskStatus, VolumeWrite,
};

/// A value for a fixture row.
#[derive(Clone, Debug)]
enum V {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

/// The rows the previous release would have written: a program with a volume, a queued task
/// with an idempotency key, a proving task with an open prover lease, a done task with its
/// receipt, a nonce, and a tree update with its node. `$N` parameters (SQLite reads `?N`).
fn old_rows(now: i64) -> Vec<(&'static str, Vec<V>)> {
    use V::*;
    let task = "INSERT INTO tasks (id, program_id, args, root, receipt_kind, status, attempts, created_at, \
                updated_at, input, receipt, journal, lease_owner, lease_expires_at, submitter) \
                VALUES ($1, 'p', '{}', $2, 'composite', $3, $4, $5, $5, $6, $7, $8, NULL, NULL, 'alice')";
    let event = "INSERT INTO task_events (task_id, status, at) VALUES ($1, $2, $3)";
    let mut rows = vec![
        (
            "INSERT INTO programs (id, image_id, controller, circuit, created_at, owner) \
             VALUES ('p', $1, $2, $3, $4, 'alice')",
            vec![Text("ab".repeat(32)), Blob(vec![1, 2, 3]), Blob(vec![4, 5]), Int(now)],
        ),
        (
            "INSERT INTO volumes (program_id, image, updated_at, version) VALUES ('p', $1, $2, 3)",
            vec![Blob(old_volume()), Int(now)],
        ),
        (
            task,
            vec![
                Text("queued".into()),
                Blob(vec![0; 32]),
                Text("queued".into()),
                Int(0),
                Int(now),
                Null,
                Null,
                Null,
            ],
        ),
        (
            task,
            vec![
                Text("proving".into()),
                Blob(vec![0; 32]),
                Text("proving".into()),
                Int(1),
                Int(now),
                Blob(vec![9]),
                Null,
                Null,
            ],
        ),
        (
            task,
            vec![
                Text("done".into()),
                Blob(vec![0; 32]),
                Text("done".into()),
                Int(1),
                Int(now),
                Blob(vec![9]),
                Blob(vec![8; 10]),
                Blob(vec![6; 40]),
            ],
        ),
        (
            "INSERT INTO idempotency_keys (program_id, key, request_hash, task_id, created_at) \
             VALUES ('p', $1, 'h', 'queued', $2)",
            vec![Text("alice\nk1".into()), Int(now)],
        ),
        (
            "INSERT INTO prover_leases (lease_id, task_id, worker, issued_at, expires_at) \
             VALUES ('proving/1', 'proving', 'w1', $1, $2)",
            vec![Int(now), Int(now + 600_000)],
        ),
        ("INSERT INTO request_nonces (key, at) VALUES ('w1/n1', $1)", vec![Int(now)]),
        (
            "INSERT INTO smt_updates (seq, domain, number, block_hash, state_root, header, prev_root, root, \
             inserted_at) VALUES (1, 'eth', 5, $1, $2, $3, $4, $5, $6)",
            vec![
                Blob(vec![5; 32]),
                Blob(vec![6; 32]),
                Blob(vec![0xc0]),
                Blob(vec![0; 32]),
                Blob(vec![1; 32]),
                Int(now),
            ],
        ),
        ("INSERT INTO smt_nodes (hash, node) VALUES ($1, $2)", vec![Blob(vec![1; 32]), Blob(vec![3; 65])]),
    ];
    for (task, statuses) in [
        ("queued", &["queued"][..]),
        ("proving", &["queued", "witnessing", "proving"]),
        ("done", &["queued", "witnessing", "proving", "verifying", "delivering", "done"]),
    ] {
        for status in statuses {
            let (task, status) = (Text(task.to_string()), Text(status.to_string()));
            rows.push((event, vec![task, status, Int(now)]));
        }
    }
    rows
}

/// A whole FAT-16 image as the previous release stored it, with a file in it.
fn old_volume() -> Vec<u8> {
    let mut v = zkcoproc_vfs::Volume::format(zkcoproc_vfs::MIN_SIZE).expect("format");
    v.write("/OLD/KEPT.TXT", b"written by the previous release").expect("write");
    v.image().expect("image")
}

/// What this build must find in the upgraded database, and the work it must carry on with.
async fn carries_on(s: &dyn Store) {
    let program = s.program("p").await.expect("program").expect("kept");
    assert_eq!((program.owner.as_deref(), program.controller_size), (Some("alice"), 3));
    assert_eq!(program.volume_size, None, "deployed before sizes were chosen at deploy");
    // The whole image was split into blocks at its version: the same bytes, all-zero blocks
    // not stored, and the file reads back.
    let head = s.volume("p").await.expect("volume").expect("kept");
    let old = old_volume();
    assert_eq!((head.version, head.size), (3, old.len() as u64));
    let mut image = vec![0u8; old.len()];
    let mut stored = 0;
    let blocks = old.len().div_ceil(zkcoproc_vfs::BLOCK_SIZE) as u64;
    for first in (0..blocks).step_by(zkcoproc_store::MAX_BLOCKS_PER_READ as usize) {
        for (i, bytes) in s.volume_blocks("p", 3, first, blocks - first).await.expect("blocks") {
            let at = i as usize * zkcoproc_vfs::BLOCK_SIZE;
            image[at..at + bytes.len()].copy_from_slice(&bytes);
            stored += usize::from(!bytes.is_empty()) as u64;
        }
    }
    assert!(image == old, "the blocks do not make the old image");
    assert!(stored < blocks / 4, "{stored} of {blocks} blocks stored: zeros were not skipped");
    let mut volume = zkcoproc_vfs::Volume::open(image).expect("mounts");
    assert_eq!(volume.read("/old/kept.txt").expect("read"), b"written by the previous release");
    let done = s.task("done").await.expect("task").expect("kept");
    assert_eq!(
        (done.status, done.receipt.as_deref(), done.history.len()),
        (TaskStatus::Done, Some(&[8u8; 10][..]), 6)
    );
    assert_eq!(done.submitter.as_deref(), Some("alice"));
    // The old idempotency key still names its task.
    let again = NewTask {
        id: "other".into(),
        program_id: "p".into(),
        args: "{}".into(),
        root: [0; 32],
        receipt_kind: "composite".into(),
        submitter: Some("alice".into()),
        callback_url: None,
    };
    let key = Idempotency { key: "alice\nk1".into(), request_hash: "h".into() };
    let inserted = s.insert_task(again, Some(key)).await.expect("idempotent insert");
    assert_eq!((inserted.task.id.as_str(), inserted.created), ("queued", false));
    // The prover holding the old lease renews it and hands in its proof.
    let lease = Duration::from_secs(60);
    let renewed = s.renew_prover_lease("proving", "proving/1", lease, Duration::from_secs(3600)).await;
    assert_eq!(renewed.expect("renew"), RenewOutcome::Renewed);
    let accepted = s.accept_proof("proving", "proving/1", vec![1], vec![2], 10).await.expect("accept");
    assert_eq!(accepted, AttemptOutcome::Accepted);
    // The queued task is claimed; the nonce is remembered; the tree history reads back.
    let claimed = s.claim_next("local-r0", lease).await.expect("claim").expect("queued task");
    assert_eq!((claimed.id.as_str(), claimed.status), ("queued", TaskStatus::Queued));
    assert!(!s.use_nonce("w1/n1", Duration::from_secs(600)).await.expect("nonce"));
    let updates = s.smt_updates(0).await.expect("history");
    assert_eq!(updates.iter().map(|u| (u.seq, u.number, u.root)).collect::<Vec<_>>(), vec![(1, 5, [1; 32])]);
    assert!(s.has_smt_node([1; 32]).await.expect("node"));
    assert_eq!(s.block_header("eth", 5).await.expect("header"), Some(vec![0xc0]));
}

fn migrations(dialect: &str, count: usize) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dialect);
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("migrations").map(|e| e.expect("entry").path()).collect();
    files.sort();
    files.iter().take(count).map(|f| std::fs::read_to_string(f).expect("migration")).collect()
}

/// A SQLite database in `dir` of the schema the first `count` migrations make, with `rows`.
fn old_sqlite(dir: &std::path::Path, count: usize, rows: Vec<(&'static str, Vec<V>)>) {
    let mut conn = rusqlite::Connection::open(dir.join("zkcoproc.db")).expect("old database");
    conn.pragma_update(None, "journal_mode", "WAL").expect("wal");
    let tx = conn.transaction().expect("tx");
    for sql in migrations("sqlite", count) {
        tx.execute_batch(&sql).expect("old migration");
    }
    tx.pragma_update(None, "user_version", count as i64).expect("version");
    for (sql, values) in rows {
        let params = values.iter().map(|v| match v {
            V::Int(n) => rusqlite::types::Value::Integer(*n),
            V::Text(s) => rusqlite::types::Value::Text(s.clone()),
            V::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
            V::Null => rusqlite::types::Value::Null,
        });
        tx.execute(&sql.replace('$', "?"), rusqlite::params_from_iter(params)).expect(sql);
    }
    tx.commit().expect("commit");
}

/// Opens `dir`'s database with this build, runs `check` on it, and checks that every migration
/// of this build ran.
async fn upgraded_sqlite(dir: &std::path::Path, check: impl AsyncFnOnce(&dyn Store)) {
    let store = SqliteStore::open(dir).expect("upgraded");
    check(&store).await;
    drop(store);
    let conn = rusqlite::Connection::open(dir.join("zkcoproc.db")).expect("reopen");
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("version");
    assert_eq!(version, migrations("sqlite", usize::MAX).len() as i64);
}

/// A fresh PostgreSQL database of the schema the first `count` migrations make, with `rows`,
/// opened by this build; `check` runs on it, and every migration of this build must have run.
/// Skipped when no server is configured (an error under `ZKCOPROC_REQUIRE_POSTGRES=1`).
async fn upgraded_postgres(
    count: usize,
    rows: Vec<(&'static str, Vec<V>)>,
    check: impl AsyncFnOnce(&dyn Store),
) {
    let Ok(base) = std::env::var("ZKCOPROC_TEST_POSTGRES") else {
        assert!(
            std::env::var("ZKCOPROC_REQUIRE_POSTGRES").map_or(true, |v| v != "1"),
            "no PostgreSQL server"
        );
        eprintln!("SKIPPED: PostgreSQL case (set ZKCOPROC_TEST_POSTGRES=postgres://user@host:port)");
        return;
    };
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("zkt_upgrade_{}_{n}", std::process::id());
    let (admin, conn) =
        tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls).await.expect("connect");
    let conn = tokio::spawn(conn);
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    let url = format!("{base}/{name}");
    {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
        let conn = tokio::spawn(conn);
        for sql in migrations("postgres", count) {
            client.batch_execute(&sql).await.expect("old migration");
        }
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS zkcoproc_schema (version BIGINT NOT NULL); \
             DELETE FROM zkcoproc_schema; INSERT INTO zkcoproc_schema VALUES ({count})"
        );
        client.batch_execute(&sql).await.expect("version");
        for (sql, values) in rows {
            let values: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = values
                .into_iter()
                .map(|v| -> Box<dyn tokio_postgres::types::ToSql + Sync + Send> {
                    match v {
                        V::Int(n) => Box::new(n),
                        V::Text(s) => Box::new(s),
                        V::Blob(b) => Box::new(b),
                        V::Null => Box::new(None::<Vec<u8>>),
                    }
                })
                .collect();
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                values.iter().map(|v| v.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
            client.execute(sql, &params).await.expect(sql);
        }
        drop(client);
        let _ = conn.await;
    }
    let store = PgStore::connect(&url, 4).await.expect("upgraded");
    check(&store).await;
    drop(store);
    let (client, c) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    let c = tokio::spawn(c);
    let row = client.query_one("SELECT version FROM zkcoproc_schema", &[]).await.expect("version");
    drop(client);
    let _ = c.await;
    drop(admin);
    let _ = conn.await;
    assert_eq!(row.get::<_, i64>(0), migrations("postgres", usize::MAX).len() as i64);
}

#[tokio::test]
async fn a_sqlite_database_of_the_previous_release_is_upgraded_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    old_sqlite(dir.path(), 10, old_rows(zkcoproc_store::now_ms()));
    upgraded_sqlite(dir.path(), carries_on).await;
    let conn = rusqlite::Connection::open(dir.path().join("zkcoproc.db")).expect("reopen");
    let sql = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'programs_by_image'";
    assert_eq!(conn.query_row(sql, [], |r| r.get::<_, i64>(0)).expect("index"), 1);
}

#[tokio::test]
async fn a_postgres_database_of_the_previous_release_is_upgraded_in_place() {
    upgraded_postgres(5, old_rows(zkcoproc_store::now_ms()), carries_on).await;
}

/// Bytes of the 1 MiB image of the 64 KiB-block fixture at `version` (1 to 3).
fn image_64k(version: u8) -> Vec<u8> {
    let mut image = vec![0u8; 1 << 20];
    // Block 0: full at version 1 and 2, zeroed at 3. Block 1: its first half written at 1; at 2
    // its first 4 KiB zeroed and the rest changed. Block 5: written at 3 only.
    if version < 3 {
        image[..64 << 10].fill(0xa0 + version);
    }
    image[(64 << 10)..(96 << 10)].fill(0xb1);
    if version >= 2 {
        image[(64 << 10)..(68 << 10)].fill(0);
        image[(68 << 10)..(128 << 10)].fill(0xb2);
    }
    if version == 3 {
        image[(5 << 16) + 100..(5 << 16) + 200].fill(0xc3);
    }
    image
}

/// A program whose volume the store of today's schema (before migration 23 / 16) wrote in 64 KiB
/// blocks over three versions, the way `put_volume` did: each version's changed blocks, the
/// rows they replaced marked, an all-zero block stored empty.
fn rows_64k(now: i64) -> Vec<(&'static str, Vec<V>)> {
    use V::*;
    let mut rows = vec![
        (
            "INSERT INTO programs (id, image_id, controller, circuit, created_at, owner, volume_size) \
             VALUES ('p', $1, $2, $3, $4, 'alice', $5)",
            vec![Text("ab".repeat(32)), Blob(vec![1, 2, 3]), Blob(vec![4, 5]), Int(now), Int(1 << 20)],
        ),
        (
            "INSERT INTO volumes (program_id, updated_at, version, size) VALUES ('p', $1, 3, $2)",
            vec![Int(now), Int(1 << 20)],
        ),
    ];
    for version in 1..=3u8 {
        let (image, before) =
            (image_64k(version), if version > 1 { image_64k(version - 1) } else { vec![0; 1 << 20] });
        for (block, (new, old)) in image.chunks(64 << 10).zip(before.chunks(64 << 10)).enumerate() {
            if new == old {
                continue;
            }
            rows.push((
                "UPDATE volume_blocks SET superseded_by = $1 WHERE program_id = 'p' AND block = $2 \
                 AND superseded_by IS NULL",
                vec![Int(version.into()), Int(block as i64)],
            ));
            let data = if new.iter().all(|&b| b == 0) { Vec::new() } else { new.to_vec() };
            rows.push((
                "INSERT INTO volume_blocks (program_id, block, version, data) VALUES ('p', $1, $2, $3)",
                vec![Int(block as i64), Int(version.into()), Blob(data)],
            ));
        }
    }
    rows
}

/// Every kept version of the 64 KiB-block fixture reads back as it was, in blocks of today's
/// size, with all-zero parts stored empty and every part of a rewritten block still counted as
/// rewritten by the version that wrote it.
async fn volume_recut(s: &dyn Store) {
    let size = 1usize << 20;
    let blocks = (size / zkcoproc_vfs::BLOCK_SIZE) as u64;
    for version in 1..=3u8 {
        let mut image = vec![0u8; size];
        let mut stored = 0;
        for (i, bytes) in s.volume_blocks("p", version.into(), 0, blocks).await.expect("blocks") {
            assert!(
                bytes.len() == zkcoproc_vfs::BLOCK_SIZE || bytes.is_empty(),
                "block {i}: {} bytes",
                bytes.len()
            );
            let at = i as usize * zkcoproc_vfs::BLOCK_SIZE;
            image[at..at + bytes.len()].copy_from_slice(&bytes);
            stored += usize::from(!bytes.is_empty());
        }
        assert!(image == image_64k(version), "version {version} does not read back");
        let nonzero = image.chunks(zkcoproc_vfs::BLOCK_SIZE).filter(|b| b.iter().any(|&x| x != 0)).count();
        assert_eq!(stored, nonzero, "version {version}: all-zero blocks stored with bytes");
    }
    // Every part of a block a version rewrote was rewritten by it, zero or not: a write based on
    // version 2 that touched a part of the old block 0 (zeroed at 3) or an all-zero part of the
    // old block 5 (written at 3) conflicts; one that touched only the old block 2 does not.
    let task = NewTask {
        id: "w".into(),
        program_id: "p".into(),
        args: "{}".into(),
        root: [0; 32],
        receipt_kind: "composite".into(),
        submitter: None,
        callback_url: None,
    };
    s.insert_task(task, None).await.expect("insert");
    s.claim_next("r", Duration::from_secs(60)).await.expect("claim").expect("queued task");
    let part = (64 << 10) / zkcoproc_vfs::BLOCK_SIZE as u64;
    for (touched, conflicts) in [(vec![3], true), (vec![5 * part + 15], true), (vec![2 * part], false)] {
        let write =
            VolumeWrite { program_id: "p".into(), base: 2, size: size as u64, written: vec![], touched };
        let update = StageUpdate { volume: Some(write), ..Default::default() };
        let got = s.transition("w", "r", TaskStatus::Queued, TaskStatus::Witnessing, update).await;
        assert_eq!(matches!(got, Err(StoreError::VolumeChanged(_))), conflicts, "{got:?}");
    }
    assert_eq!(s.volume("p").await.expect("head").map(|h| h.version), Some(4));
}

#[tokio::test]
async fn a_sqlite_volume_of_64_kib_blocks_is_cut_into_blocks_of_today() {
    let dir = tempfile::tempdir().expect("tempdir");
    old_sqlite(dir.path(), 22, rows_64k(zkcoproc_store::now_ms()));
    upgraded_sqlite(dir.path(), volume_recut).await;
    // The table of 64 KiB blocks is gone: a build that stores them fails instead of mixing them in.
    let conn = rusqlite::Connection::open(dir.path().join("zkcoproc.db")).expect("reopen");
    let sql = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'volume_blocks'";
    assert_eq!(conn.query_row(sql, [], |r| r.get::<_, i64>(0)).expect("tables"), 0);
}

#[tokio::test]
async fn a_postgres_volume_of_64_kib_blocks_is_cut_into_blocks_of_today() {
    upgraded_postgres(15, rows_64k(zkcoproc_store::now_ms()), volume_recut).await;
}
