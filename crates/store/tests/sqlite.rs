//! The SQLite store's own behaviour (what both stores share is in `suite.rs`).

use std::time::Duration;

use zkcoproc_store::{NewProgram, NewTask, SqliteStore, Store, StoreError, TaskStatus};

fn program(id: &str) -> NewProgram {
    NewProgram {
        id: id.into(),
        image_id: "ab".repeat(32),
        controller: vec![1, 2, 3],
        circuit: vec![4, 5],
        owner: None,
        volume_size: 4 << 20,
        callback_url: None,
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
        callback_url: None,
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

/// Rows of replaced blocks are deleted once no kept version needs them: a volume rewritten many
/// times keeps its current blocks and at most one replaced row per kept version.
#[tokio::test]
async fn replaced_volume_blocks_are_deleted_once_no_kept_version_needs_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SqliteStore::open(dir.path()).expect("store");
    s.put_program(program("p")).await.expect("program");
    for v in 0..60u64 {
        let id = format!("t{v}");
        s.insert_task(NewTask { id: id.clone(), ..task("x") }, None).await.expect("insert");
        s.claim_next(&id, Duration::from_secs(60)).await.expect("claim").expect("claimed");
        let volume = zkcoproc_store::VolumeWrite {
            program_id: "p".into(),
            base: v,
            size: 4 << 20,
            written: vec![(v % 4, vec![v as u8 + 1; 64]), (10, vec![7; 64])],
            touched: vec![v % 4, 10],
        };
        let update = zkcoproc_store::StageUpdate { volume: Some(volume), ..Default::default() };
        assert!(s
            .transition(&id, &id, TaskStatus::Queued, TaskStatus::Witnessing, update)
            .await
            .expect("tx"));
    }
    let db = rusqlite::Connection::open(dir.path().join("zkcoproc.db")).expect("open");
    let rows: i64 = db.query_row("SELECT COUNT(*) FROM volume_blocks_4k", [], |r| r.get(0)).expect("count");
    // 5 current blocks (0..4 and 10) + block 10 replaced by each of the last 16 versions + the
    // blocks 0..4 replaced within them (4 of each 16): 5 + 16 + 16 at most.
    let kept = zkcoproc_store::VOLUME_VERSIONS_KEPT as i64;
    assert!(rows <= 5 + 2 * kept, "{rows} rows left of 120 written");
    let oldest_needed = 60 - kept;
    let stale: i64 = db
        .query_row("SELECT COUNT(*) FROM volume_blocks_4k WHERE superseded_by <= ?1", [oldest_needed], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(stale, 0);
    // Every kept version still reads whole.
    for v in oldest_needed..=60 {
        let blocks = s.volume_blocks("p", v as u64, 0, 16).await.expect("kept version");
        assert_eq!(blocks.len(), 5, "version {v}");
    }
}
