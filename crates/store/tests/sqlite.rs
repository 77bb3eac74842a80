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
