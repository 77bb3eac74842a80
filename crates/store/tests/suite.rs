//! The behaviour every [`Store`] must have, run against both implementations: SQLite (in
//! memory) and PostgreSQL (a fresh database per test on the server `ZKCOPROC_TEST_POSTGRES`
//! names, e.g. `postgres://zkcoproc@127.0.0.1:5433`). Without that variable the PostgreSQL
//! cases are skipped with a notice, unless `ZKCOPROC_REQUIRE_POSTGRES=1` (set by
//! `scripts/test.sh`) makes that a failure.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zkcoproc_store::{
    first_lease_id, Admission, AttemptOutcome, CancelOutcome, Idempotency, LeaseRules, NewBlock, NewProgram,
    NewTask, PgStore, RenewOutcome, SqliteStore, StageUpdate, Store, StoreError, TaskError, TaskFilter,
    TaskStatus, VolumeWrite, WebhookVerdict,
};

fn sqlite() -> Arc<dyn Store> {
    Arc::new(SqliteStore::in_memory().expect("sqlite store"))
}

/// The PostgreSQL server of the PostgreSQL cases, or `None` (the case is skipped) without one;
/// a panic instead when `ZKCOPROC_REQUIRE_POSTGRES=1` (CI), so that no case skips there.
fn postgres_server() -> Option<String> {
    let Ok(base) = std::env::var("ZKCOPROC_TEST_POSTGRES") else {
        if std::env::var("ZKCOPROC_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            panic!("ZKCOPROC_REQUIRE_POSTGRES=1 but ZKCOPROC_TEST_POSTGRES is not set");
        }
        eprintln!("SKIPPED: PostgreSQL case (set ZKCOPROC_TEST_POSTGRES=postgres://user@host:port)");
        return None;
    };
    Some(base)
}

/// A PostgreSQL store on a database of its own, or `None` (skipped) without a server.
async fn postgres() -> Option<Arc<dyn Store>> {
    Some(Arc::new(fresh_database(&postgres_server()?).await))
}

/// Creates an empty database on the server at `base` and connects a store to it. (The async twin
/// of `zkcoproc_testing::postgres::fresh_database`, which blocks on a runtime of its own and so
/// cannot run inside these tokio tests.)
async fn fresh_database(base: &str) -> PgStore {
    PgStore::connect(&fresh_url(base).await, 8).await.expect("pg store")
}

/// Creates an empty database on the server at `base`; returns its URL.
async fn fresh_url(base: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("zkt_{}_{}_{}", std::process::id(), nanos, NEXT.fetch_add(1, Ordering::Relaxed));
    let (client, conn) =
        tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls).await.expect("connect");
    let conn = tokio::spawn(conn);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    drop(client);
    let _ = conn.await;
    format!("{base}/{name}")
}

/// Runs each named case on both stores.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::sqlite()).await;
                }
            )*
        }
        mod postgres_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(s) = super::postgres().await {
                        super::$name(&s).await;
                    }
                }
            )*
        }
    };
}

both!(
    programs_with_pending_work_are_those_with_controller_stages_ahead,
    smt_history_appends_only_on_top_of_the_newest_root,
    deploy_is_idempotent_and_artifacts_round_trip,
    tasks_need_an_existing_program,
    claims_are_exclusive_fifo_and_expire,
    claims_and_prover_leases_take_identities_in_turn,
    a_claim_starts_a_queued_task_in_its_own_commit,
    an_accepted_proof_can_claim_its_delivery_in_its_commit,
    a_task_entering_proving_can_be_leased_in_its_commit,
    transitions_are_conditional_and_recorded,
    prover_leases_redeliver_retry_elsewhere_and_give_up,
    counts_follow_every_way_tasks_and_leases_end,
    expired_local_leases_count_as_crashes_and_cancel_stops_the_prover,
    idempotency_keys_return_the_same_task_or_conflict,
    cancel_stops_the_holder_and_is_final,
    volumes_commit_with_their_transition_only,
    stale_volume_writes_are_refused_whole,
    volume_versions_read_as_they_were_until_they_are_no_longer_kept,
    a_pinned_volume_version_stays_readable_until_dropped_or_expired,
    writes_of_many_blocks_land_whole_and_replace_each_block_once,
    fifty_concurrent_volume_writers_all_land,
    concurrent_claimers_take_each_task_once,
    concurrent_provers_lease_each_task_once,
    nonces_are_used_once_and_forgotten_when_old,
    every_root_opens_from_the_stored_nodes,
    restarts_and_superseded_leases_are_not_proving_attempts,
    owners_submitters_and_unfinished_counts_are_kept,
    finished_payloads_are_pruned_in_batches_and_rows_stay,
    a_worker_is_kept_from_tasks_it_failed_and_its_record_counts_failures,
    a_worker_naming_tasks_leases_only_those,
    progress_is_recorded_for_the_open_lease_only,
    leases_end_at_their_maximum_lifetime,
    light_client_state_moves_by_version_and_blocks_keep_their_admission,
    webhooks_are_enqueued_with_the_end_and_leased_to_one_sender,
    listings_show_what_an_identity_may_see_newest_first,
);

/// A lease lifetime no test reaches.
const FOREVER: Duration = Duration::from_secs(3600);

fn rules(lease: Duration, max_attempts: u32) -> LeaseRules {
    LeaseRules { lease, max_attempts, others_asking: Vec::new(), only: Vec::new() }
}

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

fn block(number: u64, root: u8) -> NewBlock {
    NewBlock {
        number,
        block_hash: [number as u8; 32],
        state_root: [number as u8 + 1; 32],
        header: vec![0xc0, number as u8],
        root: [root; 32],
        nodes: Vec::new(),
        admission: Default::default(),
    }
}

async fn programs_with_pending_work_are_those_with_controller_stages_ahead(s: &Arc<dyn Store>) {
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

async fn smt_history_appends_only_on_top_of_the_newest_root(s: &Arc<dyn Store>) {
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

async fn deploy_is_idempotent_and_artifacts_round_trip(s: &Arc<dyn Store>) {
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

async fn tasks_need_an_existing_program(s: &Arc<dyn Store>) {
    assert!(s.insert_task(task("t"), None).await.is_err());
}

async fn claims_are_exclusive_fifo_and_expire(s: &Arc<dyn Store>) {
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
    tokio::time::sleep(Duration::from_millis(5)).await;
    let c = s.claim_next("c", Duration::from_secs(60)).await.expect("claim").expect("t1");
    assert_eq!((c.id.as_str(), c.claims), ("t1", 2));
    assert!(!s.extend_lease("t1", "a", Duration::from_secs(1)).await.expect("extend"));
}

fn task_of(id: &str, submitter: Option<&str>) -> NewTask {
    NewTask { submitter: submitter.map(str::to_owned), ..task(id) }
}

/// The ids the claims of a runner take, one claim after another, until none is left.
async fn claim_order(s: &Arc<dyn Store>) -> Vec<String> {
    let mut order = Vec::new();
    while let Some((t, _)) = s.claim_and_start("r", FOREVER).await.expect("claim") {
        order.push(t.id);
    }
    order
}

async fn claims_and_prover_leases_take_identities_in_turn(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    // Alice queues four tasks, then bob and an anonymous client one each: they do not wait
    // behind alice's backlog.
    for (id, who) in [("a1", "alice"), ("a2", "alice"), ("a3", "alice"), ("a4", "alice"), ("b1", "bob")] {
        s.insert_task(task_of(id, Some(who)), None).await.expect("insert");
    }
    s.insert_task(task_of("n1", None), None).await.expect("insert");
    let (first, _) = s.claim_and_start("r", FOREVER).await.expect("claim").expect("a task");
    assert_eq!(first.id, "a1");
    // Bob's second task takes its turn after alice's second; carol, new, goes before both.
    s.insert_task(task_of("b2", Some("bob")), None).await.expect("insert");
    s.insert_task(task_of("c1", Some("carol")), None).await.expect("insert");
    // Alice cancelling her last queued task does not move her backlog ahead of a newcomer.
    s.cancel("a4").await.expect("cancel");
    s.insert_task(task_of("d1", Some("dave")), None).await.expect("insert");
    assert_eq!(claim_order(s).await, ["b1", "n1", "c1", "d1", "a2", "b2", "a3"]);

    // Provers lease by turn too: bob has had fewer turns than alice, whose tasks came first.
    for id in ["pa1", "pa2", "pa3", "pb1"] {
        let who = if id.starts_with("pa") { "alice" } else { "bob" };
        s.insert_task(task_of(id, Some(who)), None).await.expect("insert");
    }
    let to_proving = StageUpdate { input: Some(vec![1]), release_lease: true, ..Default::default() };
    for id in claim_order(s).await {
        let (from, to) = (TaskStatus::Witnessing, TaskStatus::Proving);
        assert!(s.transition(&id, "r", from, to, to_proving.clone()).await.expect("tx"));
    }
    let mut leased = Vec::new();
    for worker in ["w1", "w2", "w3", "w4"] {
        let lease = s.lease_proving(worker, rules(FOREVER, 3)).await.expect("lease").lease.expect("a task");
        leased.push(lease.task.id);
    }
    assert_eq!(leased, ["pb1", "pa1", "pa2", "pa3"]);
}

async fn a_claim_starts_a_queued_task_in_its_own_commit(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    s.insert_task(task("t1"), None).await.expect("insert");
    s.insert_task(task("t2"), None).await.expect("insert");
    let lease = Duration::from_secs(60);
    let (t, entered) = s.claim_and_start("a", lease).await.expect("claim").expect("t1");
    assert!(entered);
    assert_eq!((t.id.as_str(), t.status, t.claims), ("t1", TaskStatus::Witnessing, 0));
    assert_eq!(t.lease_owner.as_deref(), Some("a"));
    let stored = s.task("t1").await.expect("read").expect("t1");
    let history: Vec<TaskStatus> = stored.history.iter().map(|e| e.status).collect();
    assert_eq!(history, [TaskStatus::Queued, TaskStatus::Witnessing], "each stage keeps its event");
    assert_eq!(s.task_events("t1").await.expect("events").len(), 2);
    // The runner holds it in witnessing: its transition out of witnessing is the next step.
    let to_proving = StageUpdate { input: Some(vec![1]), ..Default::default() };
    assert!(s
        .transition("t1", "a", TaskStatus::Witnessing, TaskStatus::Proving, to_proving)
        .await
        .expect("tx"));
    // A task past queued is claimed as it is (an expired claim taken over), not moved.
    let (t2, _) = s.claim_and_start("b", lease).await.expect("claim").expect("t2");
    assert!(s.extend_lease("t2", "b", Duration::ZERO).await.expect("extend"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (again, entered) = s.claim_and_start("c", lease).await.expect("claim").expect("t2 again");
    assert!(!entered);
    assert_eq!((again.id.as_str(), again.status, again.claims), (t2.id.as_str(), TaskStatus::Witnessing, 1));
    assert_eq!(s.task_events("t2").await.expect("events").len(), 2, "no second witnessing event");
    assert!(s.claim_and_start("d", lease).await.expect("claim").is_none());
}

async fn transitions_are_conditional_and_recorded(s: &Arc<dyn Store>) {
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
async fn proving(s: &dyn Store, id: &str) {
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

async fn prover_leases_redeliver_retry_elsewhere_and_give_up(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    proving(&**s, "t").await;
    let lease = Duration::from_secs(60);
    // Runners never claim a proving task.
    assert!(s.claim_next("r", lease).await.expect("claim").is_none());
    let a = s.lease_proving("w1", rules(lease, 3)).await.expect("lease").lease.expect("t");
    assert_eq!((a.task.id.as_str(), a.task.attempts), ("t", 1));
    // Asking again returns the same lease (re-delivery); nobody else gets the task.
    let again = s.lease_proving("w1", rules(lease, 3)).await.expect("lease").lease.expect("redelivered");
    assert_eq!(again.lease_id, a.lease_id);
    assert!(s.lease_proving("w2", rules(lease, 3)).await.expect("lease").lease.is_none());
    assert_eq!(
        s.renew_prover_lease("t", &a.lease_id, lease, FOREVER).await.expect("renew"),
        RenewOutcome::Renewed
    );
    assert_eq!(s.renew_prover_lease("t", "t/9", lease, FOREVER).await.expect("renew"), RenewOutcome::Unknown);
    // A failed attempt: retried, preferably by another worker.
    let out = s.fail_attempt("t", &a.lease_id, "invalid", "bad seal", 3).await.expect("fail");
    assert_eq!(out, AttemptOutcome::Retrying);
    // A lease is judged once: neither a second verdict nor a later proof on it counts.
    let again = s.fail_attempt("t", &a.lease_id, "failed", "again", 3).await.expect("fail");
    assert_eq!(again, AttemptOutcome::LeaseEnded);
    let late = s.accept_proof("t", &a.lease_id, vec![1], vec![1], 1).await.expect("accept");
    assert_eq!(late, AttemptOutcome::LeaseEnded);
    proving(&**s, "u").await;
    let b = s.lease_proving("w1", rules(lease, 3)).await.expect("lease").lease.expect("a task");
    assert_eq!(b.task.id, "u", "w1 should get the task it has not failed");
    let c = s.lease_proving("w2", rules(lease, 3)).await.expect("lease").lease.expect("t again");
    assert_eq!((c.task.id.as_str(), c.task.attempts), ("t", 2));
    // An expired lease lets another worker in; the late holder can no longer renew...
    assert_eq!(
        s.renew_prover_lease("t", &c.lease_id, Duration::ZERO, FOREVER).await.expect("renew"),
        RenewOutcome::Renewed
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let d = s.lease_proving("w3", rules(lease, 3)).await.expect("lease").lease.expect("t a third time");
    assert_eq!(d.task.attempts, 3);
    assert_eq!(
        s.renew_prover_lease("t", &c.lease_id, lease, FOREVER).await.expect("renew"),
        RenewOutcome::Lost
    );
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
    assert_eq!(
        s.renew_prover_lease("t", &d.lease_id, lease, FOREVER).await.expect("renew"),
        RenewOutcome::Lost
    );
    let late = s.accept_proof("t", &d.lease_id, vec![1], vec![1], 1).await.expect("accept");
    assert_eq!(late, AttemptOutcome::NotProving(TaskStatus::Delivering));
    // Out of attempts: the task fails with the list of attempts.
    let out = s.fail_attempt("u", &b.lease_id, "failed", "boom", 2).await.expect("fail");
    assert_eq!(out, AttemptOutcome::Retrying);
    let l = s.lease_proving("w9", rules(lease, 2)).await.expect("lease").lease.expect("u");
    assert_eq!((l.task.id.as_str(), l.task.attempts), ("u", 2));
    let out = s.fail_attempt("u", &l.lease_id, "failed", "boom again", 2).await.expect("fail");
    assert_eq!(out, AttemptOutcome::TaskFailed);
    let u = s.task("u").await.expect("get").expect("u");
    assert_eq!(u.status, TaskStatus::Failed);
    let error = u.error.expect("error");
    assert_eq!(error.code, "prover_failed");
    assert!(error.message.contains("u/1 on w1") && error.message.contains("boom"), "{}", error.message);
}

/// A proof accepted with its delivery claimed: in that one commit the task enters `delivering`
/// leased to the owner, one claim counted; other claims pass it by while the lease lasts, and the
/// owner delivers it. A proof accepted without the claim leaves the delivery to any claim.
async fn an_accepted_proof_can_claim_its_delivery_in_its_commit(s: &Arc<dyn Store>) {
    let lease = Duration::from_secs(60);
    s.put_program(program("p")).await.expect("put");
    for id in ["a", "b"] {
        proving(&**s, id).await;
    }
    let a = s.lease_proving("w1", rules(lease, 3)).await.expect("lease").lease.expect("a");
    let b = s.lease_proving("w2", rules(lease, 3)).await.expect("lease").lease.expect("b");
    assert_eq!((a.task.id.as_str(), b.task.id.as_str()), ("a", "b"));
    let out =
        s.accept_proof_claimed("a", &a.lease_id, vec![1], vec![2], 3, "me", lease).await.expect("accept");
    assert_eq!(out, AttemptOutcome::Accepted);
    let t = s.task("a").await.expect("get").expect("a");
    assert_eq!((t.status, t.lease_owner.as_deref(), t.claims), (TaskStatus::Delivering, Some("me"), 1));
    assert_eq!((t.receipt.as_deref(), t.journal.as_deref()), (Some(&[1u8][..]), Some(&[2u8][..])));
    let history: Vec<TaskStatus> = t.history.iter().map(|e| e.status).collect();
    assert_eq!(&history[history.len() - 2..], [TaskStatus::Verifying, TaskStatus::Delivering]);
    let out = s.accept_proof("b", &b.lease_id, vec![1], vec![2], 3).await.expect("accept");
    assert_eq!(out, AttemptOutcome::Accepted);
    let u = s.task("b").await.expect("get").expect("b");
    assert_eq!((u.status, u.lease_owner, u.claims), (TaskStatus::Delivering, None, 0));
    // Another runner's claims take the unclaimed delivery only.
    let claimed = s.claim_next("other", lease).await.expect("claim").expect("b");
    assert_eq!(claimed.id, "b");
    assert!(s.claim_next("other", lease).await.expect("claim").is_none());
    let done = StageUpdate { release_lease: true, ..Default::default() };
    assert!(!s
        .transition("a", "other", TaskStatus::Delivering, TaskStatus::Done, done.clone())
        .await
        .expect("tx"));
    assert!(s.transition("a", "me", TaskStatus::Delivering, TaskStatus::Done, done).await.expect("tx"));
    // A proof for a task that is no longer proving claims nothing.
    let late =
        s.accept_proof_claimed("a", &a.lease_id, vec![1], vec![2], 3, "late", lease).await.expect("accept");
    assert_ne!(late, AttemptOutcome::Accepted);
    let t = s.task("a").await.expect("get").expect("a");
    assert_eq!((t.status, t.lease_owner), (TaskStatus::Done, None));
}

async fn a_task_entering_proving_can_be_leased_in_its_commit(s: &Arc<dyn Store>) {
    let lease = Duration::from_secs(60);
    s.put_program(program("p")).await.expect("put");
    for id in ["a", "b"] {
        s.insert_task(task(id), None).await.expect("insert");
        let (t, entered) = s.claim_and_start("r", lease).await.expect("claim").expect("claimed");
        assert!(entered && t.id == id);
    }
    let to_proving = |prover: &str| StageUpdate {
        input: Some(vec![1]),
        release_lease: true,
        prover_lease: Some((prover.to_owned(), lease)),
        ..Default::default()
    };
    // A transition refused (not the owner) leases nothing.
    assert!(!s
        .transition("a", "intruder", TaskStatus::Witnessing, TaskStatus::Proving, to_proving("p1"))
        .await
        .expect("tx"));
    assert!(s.prover_attempts("a").await.expect("attempts").is_empty());
    assert!(s
        .transition("a", "r", TaskStatus::Witnessing, TaskStatus::Proving, to_proving("p1"))
        .await
        .expect("tx"));
    let t = s.task("a").await.expect("get").expect("a");
    assert_eq!((t.status, t.attempts, t.lease_owner), (TaskStatus::Proving, 1, None));
    let attempts = s.prover_attempts("a").await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!((attempts[0].lease_id.as_str(), attempts[0].worker.as_str()), ("a/1", "p1"));
    assert_eq!(attempts[0].lease_id, first_lease_id("a"));
    assert!(attempts[0].outcome.is_none() && attempts[0].expires_at > attempts[0].issued_at);
    // Nobody else leases it; its prover asking gets the same lease back.
    assert!(s.lease_proving("w", rules(lease, 3)).await.expect("lease").lease.is_none());
    let again = s.lease_proving("p1", rules(lease, 3)).await.expect("lease").lease.expect("redelivered");
    assert_eq!(again.lease_id, "a/1");
    // A task that entered without a prover is leased by a request, numbered the same way.
    let plain = StageUpdate { input: Some(vec![1]), release_lease: true, ..Default::default() };
    assert!(s.transition("b", "r", TaskStatus::Witnessing, TaskStatus::Proving, plain).await.expect("tx"));
    let b = s.lease_proving("w", rules(lease, 3)).await.expect("lease").lease.expect("b");
    assert_eq!(b.lease_id, "b/1");
    assert_eq!(s.renew_prover_lease("a", "a/1", lease, FOREVER).await.expect("renew"), RenewOutcome::Renewed);
    let out = s.accept_proof("a", "a/1", vec![1], vec![2], 3).await.expect("accept");
    assert_eq!(out, AttemptOutcome::Accepted);
    assert_eq!(s.task("a").await.expect("get").expect("a").status, TaskStatus::Delivering);
}

/// The counts `/health` and `/metrics` show: unfinished tasks and open leases counted, finished
/// tasks and ended leases kept counted (by the store's triggers) however they end.
async fn counts_follow_every_way_tasks_and_leases_end(s: &Arc<dyn Store>) {
    let lease = Duration::from_secs(60);
    s.put_program(program("p")).await.expect("put");
    for id in ["a", "b", "c", "d"] {
        proving(&**s, id).await;
    }
    let a = s.lease_proving("w1", rules(lease, 3)).await.expect("lease").lease.expect("a");
    let out = s.accept_proof(&a.task.id, &a.lease_id, vec![1], vec![2], 3).await.expect("accept");
    assert_eq!(out, AttemptOutcome::Accepted);
    let b = s.lease_proving("w2", rules(lease, 1)).await.expect("lease").lease.expect("b");
    let out = s.fail_attempt(&b.task.id, &b.lease_id, "invalid", "bad seal", 1).await.expect("fail");
    assert_eq!(out, AttemptOutcome::TaskFailed);
    let c = s.lease_proving("w3", rules(lease, 3)).await.expect("lease").lease.expect("c");
    let out = s.fail_attempt(&c.task.id, &c.lease_id, "failed", "boom", 3).await.expect("fail");
    assert_eq!(out, AttemptOutcome::Retrying);
    let open = s.lease_proving("w4", rules(lease, 3)).await.expect("lease").lease.expect("c or d");
    s.insert_task(task("q"), None).await.expect("insert");
    s.cancel("q").await.expect("cancel");
    s.insert_task(task("r"), None).await.expect("insert");

    let counts = s.status_counts().await.expect("counts");
    let expected = [
        (TaskStatus::Cancelled, 1),
        (TaskStatus::Delivering, 1),
        (TaskStatus::Failed, 1),
        (TaskStatus::Proving, 2),
        (TaskStatus::Queued, 1),
    ];
    assert_eq!(counts, expected);
    let (mut by_outcome, provers) = s.lease_stats(0).await.expect("lease stats");
    by_outcome.sort();
    let expected = [("accepted", 1), ("failed", 1), ("invalid", 1), ("open", 1)];
    assert_eq!(by_outcome, expected.map(|(o, n)| (o.to_owned(), n)));
    assert_eq!(provers, 4, "w1 to w4");
    // An open lease past its expiry counts as expired.
    let task = open.task.id.clone();
    s.renew_prover_lease(&task, &open.lease_id, Duration::ZERO, FOREVER).await.expect("renew");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (by_outcome, provers) = s.lease_stats(i64::MAX).await.expect("lease stats");
    assert!(by_outcome.contains(&("expired".to_owned(), 1)), "{by_outcome:?}");
    assert!(!by_outcome.iter().any(|(o, _)| o == "open"), "{by_outcome:?}");
    assert_eq!(provers, 1, "only w4 holds a lease, and none was issued since");
    // Once delivered, a task moves from one count to the other.
    let runner = s.claim_next("runner", lease).await.expect("claim").expect("a");
    assert_eq!(runner.id, a.task.id);
    let done = StageUpdate { release_lease: true, ..Default::default() };
    assert!(s
        .transition(&runner.id, "runner", TaskStatus::Delivering, TaskStatus::Done, done)
        .await
        .expect("tx"));
    let counts = s.status_counts().await.expect("counts");
    assert!(counts.contains(&(TaskStatus::Done, 1)), "{counts:?}");
    assert!(!counts.iter().any(|(status, _)| *status == TaskStatus::Delivering), "{counts:?}");
}

async fn idempotency_keys_return_the_same_task_or_conflict(s: &Arc<dyn Store>) {
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

async fn cancel_stops_the_holder_and_is_final(s: &Arc<dyn Store>) {
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
    assert_eq!(s.cancel("r").await.expect("cancel"), CancelOutcome::AlreadyFinished(TaskStatus::Cancelled));
    assert_eq!(s.cancel("nope").await.expect("cancel"), CancelOutcome::NotFound);
    let t = s.task("q").await.expect("get").expect("q");
    assert_eq!(t.status, TaskStatus::Cancelled);
    assert_eq!(t.error.map(|e| e.code), Some("cancelled".to_owned()));
}

/// A volume write of `blocks` (index, fill byte; 0: an all-zero block), having read `read`.
fn volume_write(base: u64, blocks: &[(u64, u8)], read: &[u64]) -> VolumeWrite {
    let written: Vec<(u64, Vec<u8>)> =
        blocks.iter().map(|&(i, b)| (i, if b == 0 { Vec::new() } else { vec![b; 8] })).collect();
    let mut touched: Vec<u64> = read.iter().copied().chain(blocks.iter().map(|b| b.0)).collect();
    touched.sort_unstable();
    touched.dedup();
    VolumeWrite { program_id: "p".into(), base, size: 4 << 20, written, touched }
}

/// Blocks 0..8 of the volume at `version`, as (index, first byte) of the stored ones.
async fn blocks_at(s: &Arc<dyn Store>, version: u64) -> Vec<(u64, u8)> {
    all_blocks_at(s, version, 8).await
}

async fn volumes_commit_with_their_transition_only(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    s.insert_task(task("t"), None).await.expect("insert");
    s.claim_next("a", Duration::from_secs(60)).await.expect("claim");
    assert_eq!(s.volume("p").await.expect("get"), None);
    let with_volume =
        |fill: u8| StageUpdate { volume: Some(volume_write(0, &[(1, fill)], &[])), ..Default::default() };
    // A transition that does not happen does not write the volume.
    assert!(!s
        .transition("t", "a", TaskStatus::Proving, TaskStatus::Verifying, with_volume(9))
        .await
        .expect("tx"));
    assert_eq!(s.volume("p").await.expect("get"), None);
    assert!(s
        .transition("t", "a", TaskStatus::Queued, TaskStatus::Witnessing, with_volume(1))
        .await
        .expect("tx"));
    let v1 = s.volume("p").await.expect("get").expect("written");
    assert_eq!((v1.version, v1.size), (1, 4 << 20));
    assert_eq!(blocks_at(s, 1).await, vec![(1, 1)]);
    assert_eq!(s.program("p").await.expect("get").expect("p").volume_size, Some(4 << 20));
}

async fn volume_versions_read_as_they_were_until_they_are_no_longer_kept(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    let mut version = 0;
    // Version v writes block v % 3 with byte v (block 0 of version 3 is all zeros).
    for v in 1..=20u64 {
        let id = format!("t{v}");
        s.insert_task(task(&id), None).await.expect("insert");
        s.claim_next(&id, Duration::from_secs(60)).await.expect("claim").expect("claimed");
        let fill = if v == 3 { 0 } else { v as u8 };
        let update =
            StageUpdate { volume: Some(volume_write(version, &[(v % 3, fill)], &[])), ..Default::default() };
        assert!(s
            .transition(&id, &id, TaskStatus::Queued, TaskStatus::Witnessing, update)
            .await
            .expect("tx"));
        version = v;
        if v == 3 {
            // Each version reads what it was: version 2 still has block 0 empty and 1, 2 set.
            assert_eq!(blocks_at(s, 1).await, vec![(1, 1)]);
            assert_eq!(blocks_at(s, 2).await, vec![(1, 1), (2, 2)]);
            assert_eq!(blocks_at(s, 3).await, vec![(0, 0), (1, 1), (2, 2)]);
        }
    }
    assert_eq!(blocks_at(s, 20).await, vec![(0, 18), (1, 19), (2, 20)]);
    // The last VOLUME_VERSIONS_KEPT versions stay readable; older ones are refused, not misread.
    let oldest = 20 - zkcoproc_store::VOLUME_VERSIONS_KEPT;
    assert_eq!(blocks_at(s, oldest).await, vec![(0, 0), (1, 4), (2, 2)]);
    let gone = s.volume_blocks("p", oldest - 1, 0, 8).await;
    assert!(matches!(gone, Err(StoreError::VolumeChanged(_))), "{gone:?}");
    let future = s.volume_blocks("p", 21, 0, 8).await;
    assert!(matches!(future, Err(StoreError::VolumeChanged(_))), "{future:?}");
}

/// Commits version `base + 1` of volume "p", writing `blocks` (see [`volume_write`]), with a
/// task of its own.
async fn commit_version(s: &Arc<dyn Store>, base: u64, blocks: &[(u64, u8)]) {
    let id = format!("v{}", base + 1);
    s.insert_task(task(&id), None).await.expect("insert");
    s.claim_next(&id, FOREVER).await.expect("claim").expect("claimed");
    let update = StageUpdate { volume: Some(volume_write(base, blocks, &[])), ..Default::default() };
    assert!(s.transition(&id, &id, TaskStatus::Queued, TaskStatus::Witnessing, update).await.expect("tx"));
}

/// A reader that pins a version (a volume export) reads it as it was however many versions are
/// committed after it; the pin's end, dropped or expired, lets commits delete what it kept.
async fn a_pinned_volume_version_stays_readable_until_dropped_or_expired(s: &Arc<dyn Store>) {
    let kept = zkcoproc_store::VOLUME_VERSIONS_KEPT;
    s.put_program(program("p")).await.expect("put");
    assert_eq!(s.pin_volume("p", "early", FOREVER).await.expect("pin"), None, "no volume to pin yet");
    commit_version(s, 0, &[(0, 1), (1, 1)]).await;
    commit_version(s, 1, &[(0, 2), (1, 2)]).await;
    let head = s.pin_volume("p", "export", FOREVER).await.expect("pin").expect("pinned");
    assert_eq!(head.version, 2);
    let brief = s.pin_volume("p", "brief", Duration::ZERO).await.expect("pin").expect("pinned");
    assert_eq!(brief.version, 2);
    // Version v writes blocks 0 and 1 with byte v.
    let last = 2 + kept + 4;
    for base in 2..last {
        commit_version(s, base, &[(0, base as u8 + 1), (1, base as u8 + 1)]).await;
    }
    // The pinned version reads as it was; the one before it, not pinned, is refused.
    assert_eq!(all_blocks_at(s, 2, 4).await, vec![(0, 2), (1, 2)]);
    let old = s.volume_blocks("p", 1, 0, 4).await;
    assert!(matches!(old, Err(StoreError::VolumeChanged(_))), "{old:?}");
    assert_eq!(all_blocks_at(s, last, 4).await, vec![(0, last as u8), (1, last as u8)]);
    // The pin that expired at once was dropped by the first commit after it; the other renews.
    assert!(!s.renew_volume_pin("brief", FOREVER).await.expect("renew"));
    assert!(s.renew_volume_pin("export", FOREVER).await.expect("renew"));
    // Dropped, the pin keeps its version no more, and the next commit deletes its rows.
    s.unpin_volume("export").await.expect("unpin");
    assert!(!s.renew_volume_pin("export", FOREVER).await.expect("renew"));
    let gone = s.volume_blocks("p", 2, 0, 4).await;
    assert!(matches!(gone, Err(StoreError::VolumeChanged(_))), "{gone:?}");
    commit_version(s, last, &[(2, 9)]).await;
    let gone = s.volume_blocks("p", 2, 0, 4).await;
    assert!(matches!(gone, Err(StoreError::VolumeChanged(_))), "{gone:?}");
    // An expired pin that no commit dropped yet comes back with its renewal.
    s.pin_volume("p", "late", Duration::ZERO).await.expect("pin").expect("pinned");
    assert!(s.renew_volume_pin("late", FOREVER).await.expect("renew"));
    for base in last + 1..last + 1 + kept + 2 {
        commit_version(s, base, &[(0, 7)]).await;
    }
    assert_eq!(all_blocks_at(s, last + 1, 4).await, vec![(0, last as u8), (1, last as u8), (2, 9)]);
}

/// Blocks `0..n` of the volume at `version`, as (index, first byte) of the stored ones, read 64
/// at a time.
async fn all_blocks_at(s: &Arc<dyn Store>, version: u64, n: u64) -> Vec<(u64, u8)> {
    let mut out = Vec::new();
    for first in (0..n).step_by(64) {
        let blocks = s.volume_blocks("p", version, first, 64.min(n - first)).await.expect("blocks");
        out.extend(blocks.into_iter().map(|(i, b)| (i, b.first().copied().unwrap_or(0))));
    }
    out.sort_unstable();
    out
}

async fn writes_of_many_blocks_land_whole_and_replace_each_block_once(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    // 103 blocks (stored in several statements), then 7 of them again.
    let first: Vec<(u64, u8)> = (0..103).map(|i| (i, (i % 200) as u8 + 1)).collect();
    let again: Vec<(u64, u8)> = [0, 1, 63, 64, 65, 100, 102].iter().map(|&i| (i, 250)).collect();
    for (v, blocks) in [(1u64, &first), (2, &again)] {
        let id = format!("t{v}");
        s.insert_task(task(&id), None).await.expect("insert");
        s.claim_next(&id, Duration::from_secs(60)).await.expect("claim").expect("claimed");
        let update = StageUpdate { volume: Some(volume_write(v - 1, blocks, &[])), ..Default::default() };
        assert!(s
            .transition(&id, &id, TaskStatus::Queued, TaskStatus::Witnessing, update)
            .await
            .expect("tx"));
    }
    assert_eq!(all_blocks_at(s, 1, 110).await, first);
    let mut second = first.clone();
    for &(i, b) in &again {
        second[i as usize].1 = b;
    }
    assert_eq!(all_blocks_at(s, 2, 110).await, second);
}

async fn stale_volume_writes_are_refused_whole(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    for id in ["a", "b", "c", "d"] {
        s.insert_task(task(id), None).await.expect("insert");
        s.claim_next(id, Duration::from_secs(60)).await.expect("claim").expect("claimed");
    }
    let write = |blocks: &[(u64, u8)], read: &[u64], base| StageUpdate {
        volume: Some(volume_write(base, blocks, read)),
        logs: Some("[\"stale\"]".into()),
        ..Default::default()
    };
    // Both stages started from the empty volume; the first to commit wins.
    let first =
        s.transition("a", "a", TaskStatus::Queued, TaskStatus::Witnessing, write(&[(0, 1)], &[], 0)).await;
    assert!(first.expect("a"));
    let stale =
        s.transition("b", "b", TaskStatus::Queued, TaskStatus::Witnessing, write(&[(1, 2)], &[], 0)).await;
    assert!(matches!(stale, Err(StoreError::VolumeChanged(ref p)) if p == "p"), "{stale:?}");
    // Nothing of the refused transition was written: not the status, not the logs, no event.
    let b = s.task("b").await.expect("get").expect("b");
    assert_eq!((b.status, b.logs.as_str(), b.history.len()), (TaskStatus::Queued, "[]", 1));
    assert_eq!(s.volume("p").await.expect("get").map(|v| v.version), Some(1));
    // Two stages from version 1: c writes block 2 after reading 0; d, which read block 2, and
    // any stage that wrote 2 meanwhile, must run again; one that touched other blocks commits.
    let c =
        s.transition("c", "c", TaskStatus::Queued, TaskStatus::Witnessing, write(&[(2, 3)], &[0], 1)).await;
    assert!(c.expect("c"));
    let d =
        s.transition("d", "d", TaskStatus::Queued, TaskStatus::Witnessing, write(&[(3, 4)], &[2], 1)).await;
    assert!(matches!(d, Err(StoreError::VolumeChanged(_))), "{d:?}");
    let b = s
        .transition("b", "b", TaskStatus::Queued, TaskStatus::Witnessing, write(&[(1, 2)], &[0, 3], 1))
        .await;
    assert!(b.expect("disjoint blocks commit"));
    assert_eq!(s.volume("p").await.expect("get").map(|v| v.version), Some(3));
    assert_eq!(blocks_at(s, 3).await, vec![(0, 1), (1, 2), (2, 3)]);
    // Run again on the new version, d commits.
    let d =
        s.transition("d", "d", TaskStatus::Queued, TaskStatus::Witnessing, write(&[(3, 4)], &[2], 3)).await;
    assert!(d.expect("d"));
    assert_eq!(blocks_at(s, 4).await, vec![(0, 1), (1, 2), (2, 3), (3, 4)]);
}

/// 50 writers of one program's volume at once, each from the version it read: those whose
/// blocks another committed meanwhile run again on the new version; every write lands once.
async fn fifty_concurrent_volume_writers_all_land(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    s.insert_task(task("init"), None).await.expect("insert");
    s.claim_next("init", Duration::from_secs(60)).await.expect("claim");
    let init = StageUpdate { volume: Some(volume_write(0, &[(0, 1)], &[])), ..Default::default() };
    assert!(s
        .transition("init", "init", TaskStatus::Queued, TaskStatus::Witnessing, init)
        .await
        .expect("tx"));
    let mut writers = Vec::new();
    for i in 0..50u64 {
        let s = Arc::clone(s);
        let id = format!("w{i:02}");
        s.insert_task(task(&id), None).await.expect("insert");
        writers.push(tokio::spawn(async move {
            // Each writer holds whichever task it claimed. A claim skips rows other claims have
            // locked (PostgreSQL's SKIP LOCKED), so it may find none for a moment: as a runner
            // does, it looks again.
            let mut claimed = None;
            for _ in 0..200 {
                claimed = s.claim_next(&id, Duration::from_secs(60)).await.expect("claim");
                if claimed.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let claimed = claimed.expect("a task within 2 s");
            let (task_id, owner) = (claimed.id.clone(), id.clone());
            let mut reruns = 0u32;
            loop {
                let base = s.volume("p").await.expect("head").map_or(0, |h| h.version);
                // Half the writers also read the shared block 0 (a directory, say): they collide.
                let read: &[u64] = if i % 2 == 0 { &[0] } else { &[] };
                let blocks = [(1 + i, (i + 2) as u8)];
                let update =
                    StageUpdate { volume: Some(volume_write(base, &blocks, read)), ..Default::default() };
                match s.transition(&task_id, &owner, TaskStatus::Queued, TaskStatus::Witnessing, update).await
                {
                    Ok(true) => return reruns,
                    Ok(false) => panic!("{id} lost its task"),
                    Err(StoreError::VolumeChanged(_)) => reruns += 1,
                    Err(e) => panic!("{id}: {e}"),
                }
                assert!(reruns < 500, "{id} never committed");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let head = s.volume("p").await.expect("head").expect("volume");
    assert_eq!(head.version, 51);
    let mut all = Vec::new();
    for first in (0..51).step_by(8) {
        all.extend(s.volume_blocks("p", head.version, first, 8).await.expect("blocks"));
    }
    all.sort_unstable_by_key(|b| b.0);
    let firsts: Vec<(u64, u8)> = all.iter().map(|(i, b)| (*i, b[0])).collect();
    let expected: Vec<(u64, u8)> = (0..51u64).map(|i| (i, if i == 0 { 1 } else { (i + 1) as u8 })).collect();
    assert_eq!(firsts, expected);
}

async fn expired_local_leases_count_as_crashes_and_cancel_stops_the_prover(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    proving(&**s, "t").await;
    let lease = Duration::from_secs(60);
    // One proving attempt allowed: a lease that ended with its (in-process) prover's service
    // does not use it up.
    let a = s.lease_proving("local-x-p0", rules(lease, 1)).await.expect("lease").lease.expect("t");
    assert!(s.lease_proving("remote", rules(lease, 1)).await.expect("lease").lease.is_none());
    let renewed = s.renew_prover_lease("t", &a.lease_id, Duration::ZERO, FOREVER).await.expect("renew");
    assert_eq!(renewed, RenewOutcome::Renewed);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b = s
        .lease_proving("remote", rules(lease, 1))
        .await
        .expect("lease")
        .lease
        .expect("taken over after expiry");
    assert_ne!(a.lease_id, b.lease_id);
    let attempts = s.prover_attempts("t").await.expect("attempts");
    assert_eq!(attempts[0].reason.as_deref(), Some("service restarted"));
    assert_eq!(s.cancel("t").await.expect("cancel"), CancelOutcome::Cancelled(TaskStatus::Proving));
    assert_eq!(
        s.renew_prover_lease("t", &b.lease_id, lease, FOREVER).await.expect("renew"),
        RenewOutcome::Cancelled
    );
    let refused = s.accept_proof("t", &b.lease_id, vec![1], vec![1], 1).await.expect("accept");
    assert_eq!(refused, AttemptOutcome::NotProving(TaskStatus::Cancelled));
}

async fn concurrent_claimers_take_each_task_once(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    for i in 0..60 {
        s.insert_task(task(&format!("t{i:02}")), None).await.expect("insert");
    }
    let claimers: Vec<_> = (0..6)
        .map(|c| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let owner = format!("c{c}");
                while let Some(t) = s.claim_next(&owner, Duration::from_secs(60)).await.expect("claim") {
                    got.push(t.id);
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.expect("claimer"));
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!((all.len(), unique.len()), (60, 60), "a task was claimed twice or not at all");
}

async fn concurrent_provers_lease_each_task_once(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    for i in 0..20 {
        proving(&**s, &format!("t{i:02}")).await;
    }
    let provers: Vec<_> = (0..5)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let worker = format!("w{w}");
                loop {
                    let leased =
                        s.lease_proving(&worker, rules(Duration::from_secs(60), 3)).await.expect("lease");
                    let Some(l) = leased.lease else { break };
                    let out =
                        s.accept_proof(&l.task.id, &l.lease_id, vec![1], vec![2], 3).await.expect("accept");
                    assert_eq!(out, AttemptOutcome::Accepted);
                    got.push(l.task.id);
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for p in provers {
        all.extend(p.await.expect("prover"));
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!((all.len(), unique.len()), (20, 20), "a task was leased twice or not at all");
    let counts = s.status_counts().await.expect("counts");
    assert_eq!(counts, vec![(TaskStatus::Delivering, 20)]);
}

async fn nonces_are_used_once_and_forgotten_when_old(s: &Arc<dyn Store>) {
    let keep = Duration::from_secs(120);
    assert!(s.use_nonce("worker/w1/00aa", keep).await.expect("first"));
    assert!(!s.use_nonce("worker/w1/00aa", keep).await.expect("replay"), "a replayed nonce was accepted");
    assert!(s.use_nonce("worker/w2/00aa", keep).await.expect("another signer"));
    // Concurrent uses of one nonce: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(
                async move { s.use_nonce("feeder/f/77", Duration::from_secs(120)).await.expect("use") },
            )
        })
        .collect();
    let mut wins = 0;
    for r in racers {
        wins += usize::from(r.await.expect("racer"));
    }
    assert_eq!(wins, 1);
    // Past `keep`, a nonce is forgotten (and the signature's timestamp check refuses the request).
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(s.use_nonce("worker/w1/00aa", Duration::from_millis(10)).await.expect("old"));
}

async fn every_root_opens_from_the_stored_nodes(s: &Arc<dyn Store>) {
    use zkcoproc_smt::{key, BlockCommitment, Sha2, Tree, Walk, WalkError};
    let mut tree = Tree::new();
    let mut roots = vec![tree.root()];
    for chunk in (0..40u64).collect::<Vec<_>>().chunks(8) {
        let prev = tree.root();
        let mut blocks = Vec::new();
        for &n in chunk {
            let k = key::<Sha2>("eth", n);
            tree = tree.insert(k, BlockCommitment { block_hash: [n as u8; 32], state_root: [1; 32] });
            roots.push(tree.root());
            let nodes = tree.path_rows(&k);
            blocks.push(NewBlock { root: tree.root(), nodes, ..block(n, 0) });
        }
        assert!(s.append_blocks("eth", prev, blocks).await.expect("append"));
    }
    for (version, root) in roots.iter().enumerate() {
        for n in [0u64, 7, 8, 39, 41] {
            let k = key::<Sha2>("eth", n);
            let opening = s.smt_walk(Walk::new(*root, k)).await.expect("read").expect("walk");
            let want = ((n as usize) < version)
                .then_some(BlockCommitment { block_hash: [n as u8; 32], state_root: [1; 32] });
            assert_eq!(opening.verify::<Sha2>(root, &k), Ok(want), "version {version}, block {n}");
        }
    }
    assert!(s.has_smt_node(tree.root()).await.expect("has"));
    let unknown = [0xee; 32];
    assert!(!s.has_smt_node(unknown).await.expect("has"));
    let missing = s.smt_walk(Walk::new(unknown, key::<Sha2>("eth", 1))).await.expect("read");
    assert_eq!(missing, Err(WalkError::Missing(unknown)));
    // Backfilling stores what is missing and leaves what is there.
    let other = Tree::new().insert(key::<Sha2>("x", 1), BlockCommitment::default());
    let nodes: Vec<_> = other.path_rows(&key::<Sha2>("x", 1));
    s.put_smt_nodes(nodes.clone()).await.expect("put");
    s.put_smt_nodes(nodes).await.expect("put again");
    assert!(s.has_smt_node(other.root()).await.expect("has"));
}

async fn restarts_and_superseded_leases_are_not_proving_attempts(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    proving(&**s, "t").await;
    let long = Duration::from_secs(60);
    // Two leases of in-process provers whose service died (they expire unrenewed).
    for p in ["local-a-p0", "local-b-p0"] {
        let l = s.lease_proving(p, rules(long, 3)).await.expect("lease").lease.expect("t");
        assert_eq!(
            s.renew_prover_lease("t", &l.lease_id, Duration::ZERO, FOREVER).await.expect("renew"),
            RenewOutcome::Renewed
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // One worker failure: the first of 3 attempts, not the third.
    let w = s.lease_proving("w1", rules(long, 3)).await.expect("lease").lease.expect("still provable");
    let out = s.fail_attempt("t", &w.lease_id, "failed", "out of memory", 3).await.expect("fail");
    assert_eq!(out, AttemptOutcome::Retrying, "two restarts and one failure used up the attempts");
    let attempts = s.prover_attempts("t").await.expect("attempts");
    let restarted = attempts.iter().filter(|a| a.reason.as_deref() == Some("service restarted")).count();
    assert_eq!((attempts.len(), restarted), (3, 2));
    // Another worker can still prove it.
    let w2 = s.lease_proving("w2", rules(long, 3)).await.expect("lease").lease.expect("still provable");
    assert_eq!(
        s.accept_proof("t", &w2.lease_id, vec![1], vec![2], 3).await.expect("accept"),
        AttemptOutcome::Accepted
    );
}

async fn owners_submitters_and_unfinished_counts_are_kept(s: &Arc<dyn Store>) {
    let mut p = program("p");
    p.owner = Some("alice".into());
    assert!(s.put_program(p).await.expect("put"));
    // A later deploy of the same program by someone else does not take it over.
    let mut again = program("p");
    again.owner = Some("mallory".into());
    assert!(!s.put_program(again).await.expect("put again"));
    assert_eq!(s.program("p").await.expect("get").expect("p").owner.as_deref(), Some("alice"));
    for (id, who) in [("a1", Some("alice")), ("a2", Some("alice")), ("b1", Some("bob")), ("n1", None)] {
        let mut t = task(id);
        t.submitter = who.map(str::to_owned);
        s.insert_task(t, None).await.expect("insert");
    }
    assert_eq!(s.task("a1").await.expect("get").expect("a1").submitter.as_deref(), Some("alice"));
    assert_eq!(s.unfinished_tasks_of(Some("alice")).await.expect("count"), 2);
    assert_eq!(s.unfinished_tasks_of(Some("bob")).await.expect("count"), 1);
    assert_eq!(s.unfinished_tasks_of(None).await.expect("count"), 1);
    assert_eq!(s.unfinished_tasks_of(Some("carol")).await.expect("count"), 0);
    s.cancel("a1").await.expect("cancel");
    assert_eq!(s.unfinished_tasks_of(Some("alice")).await.expect("count"), 1, "finished tasks do not count");
}

async fn finished_payloads_are_pruned_in_batches_and_rows_stay(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    for id in ["t1", "t2", "t3"] {
        proving(&**s, id).await;
        let l =
            s.lease_proving("w", rules(Duration::from_secs(60), 3)).await.expect("lease").lease.expect("t");
        let out = s.accept_proof(id, &l.lease_id, vec![7; 8], vec![9; 4], 10).await.expect("accept");
        assert_eq!(out, AttemptOutcome::Accepted);
        // Finished (a runner would deliver it; cancelling finishes it just as well here).
        s.cancel(id).await.expect("finish");
    }
    // An unfinished task keeps everything, however old.
    proving(&**s, "open").await;
    let cutoff = s.now_ms().await.expect("now") + 60_000;
    assert_eq!(s.prune_payloads(0, 10).await.expect("prune"), 0, "nothing finished before the epoch");
    assert_eq!(s.prune_payloads(cutoff, 1).await.expect("prune"), 1, "one batch of one");
    assert_eq!(s.prune_payloads(cutoff, 10).await.expect("prune"), 2);
    assert_eq!(s.prune_payloads(cutoff, 10).await.expect("prune"), 0);
    for id in ["t1", "t2", "t3"] {
        let t = s.task(id).await.expect("get").expect("the row stays");
        assert_eq!((t.input, t.receipt), (None, None));
        assert_eq!(t.journal, Some(vec![9; 4]), "the journal stays");
        assert!(!t.history.is_empty());
    }
    let open = s.task("open").await.expect("get").expect("open");
    assert_eq!(open.input, Some(vec![1]));
}

async fn a_worker_is_kept_from_tasks_it_failed_and_its_record_counts_failures(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    proving(&**s, "t").await;
    let long = Duration::from_secs(60);
    let avoid = LeaseRules { others_asking: vec!["good".into()], ..rules(long, 3) };
    assert_eq!(s.worker_record("bad", 3).await.expect("record"), Default::default());
    let l = s.lease_proving("bad", avoid.clone()).await.expect("lease").lease.expect("t");
    s.fail_attempt("t", &l.lease_id, "failed", "no", 3).await.expect("fail");
    // While a worker that has not failed the task asks for work, the one that failed it does not
    // get it again.
    assert!(s.lease_proving("bad", avoid.clone()).await.expect("lease").lease.is_none());
    let record = s.worker_record("bad", 3).await.expect("record");
    assert_eq!(record.consecutive_failures, 1);
    assert!(record.last_failure_at.is_some());
    // Without the rule (nobody else is asking for work) it may try again.
    let again = s.lease_proving("bad", rules(long, 3)).await.expect("lease").lease.expect("t again");
    s.fail_attempt("t", &again.lease_id, "invalid", "bad receipt", 3).await.expect("fail");
    assert_eq!(s.worker_record("bad", 3).await.expect("record").consecutive_failures, 2);
    assert_eq!(s.worker_record("bad", 1).await.expect("record").consecutive_failures, 1, "window");
    // When every worker asking has failed the task, it is not held back from them (it would
    // wait for nobody): here "bad" asks while only "also-bad", which failed it too, does.
    let also = s.lease_proving("also-bad", rules(long, 9)).await.expect("lease").lease.expect("t");
    s.fail_attempt("t", &also.lease_id, "failed", "no", 9).await.expect("fail");
    let stuck = LeaseRules { others_asking: vec!["also-bad".into()], ..rules(long, 9) };
    let retry = s.lease_proving("bad", stuck).await.expect("lease").lease.expect("not held for nobody");
    s.fail_attempt("t", &retry.lease_id, "failed", "no", 9).await.expect("fail");
    let good = s.lease_proving("good", rules(long, 9)).await.expect("lease").lease.expect("t for good");
    s.accept_proof("t", &good.lease_id, vec![1], vec![2], 3).await.expect("accept");
    s.cancel("t").await.expect("finish");
    assert_eq!(s.worker_record("good", 3).await.expect("record").consecutive_failures, 0);
    // A success ends a run of failures.
    proving(&**s, "u").await;
    let u = s.lease_proving("bad", avoid.clone()).await.expect("lease").lease.expect("u");
    s.accept_proof("u", &u.lease_id, vec![1], vec![2], 3).await.expect("accept");
    assert_eq!(s.worker_record("bad", 3).await.expect("record").consecutive_failures, 0);
}

async fn a_worker_naming_tasks_leases_only_those(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    for id in ["t", "u", "v"] {
        proving(&**s, id).await;
    }
    let long = Duration::from_secs(60);
    let named = |ids: &[&str]| LeaseRules {
        only: ids.iter().map(|id| (*id).to_owned()).collect(),
        // Naming tasks sets aside the rule for tasks a worker failed before.
        others_asking: vec!["other".into()],
        ..rules(long, 9)
    };
    // The oldest task ("t") is first in line; a worker naming "v" and "u" gets one of those.
    let a = s.lease_proving("debug", named(&["v", "u"])).await.expect("lease").lease.expect("u");
    assert_eq!(a.task.id, "u");
    // Its open lease comes back only when asked for a task it names.
    let again = s.lease_proving("debug", named(&["u"])).await.expect("lease").lease.expect("u again");
    assert_eq!(again.lease_id, a.lease_id);
    s.fail_attempt("u", &a.lease_id, "failed", "debugging", 9).await.expect("fail");
    let v = s.lease_proving("debug", named(&["v"])).await.expect("lease").lease.expect("v");
    assert_eq!(v.task.id, "v");
    let retry =
        s.lease_proving("debug", named(&["u"])).await.expect("lease").lease.expect("u, failed before");
    assert_eq!(retry.task.id, "u");
    assert!(s.lease_proving("debug", named(&["nope"])).await.expect("lease").lease.is_none());
    let t = s.lease_proving("anyone", rules(long, 9)).await.expect("lease").lease.expect("t");
    assert_eq!(t.task.id, "t");
}

async fn progress_is_recorded_for_the_open_lease_only(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    proving(&**s, "t").await;
    let long = Duration::from_secs(60);
    let l = s.lease_proving("w", rules(long, 3)).await.expect("lease").lease.expect("t");
    assert_eq!(l.task.progress, None);
    assert!(s.record_progress("t", &l.lease_id, 0, 4).await.expect("progress"));
    assert!(s.record_progress("t", &l.lease_id, 3, 4).await.expect("progress"));
    assert!(!s.record_progress("t", "t/9", 4, 4).await.expect("progress"), "not its lease");
    assert_eq!(s.task("t").await.expect("task").expect("t").progress, Some((3, 4)));
    assert_eq!(s.task_progress("t").await.expect("progress"), Some((3, 4)));
    assert_eq!(s.task_progress("nope").await.expect("progress"), None);
    // A lease that ended reports nothing more.
    s.fail_attempt("t", &l.lease_id, "failed", "no", 3).await.expect("fail");
    assert!(!s.record_progress("t", &l.lease_id, 4, 4).await.expect("progress"));
    assert_eq!(s.task("t").await.expect("task").expect("t").progress, Some((3, 4)));
    // An accepted proof has proven them all.
    let next = s.lease_proving("w2", rules(long, 3)).await.expect("lease").lease.expect("t again");
    assert!(s.record_progress("t", &next.lease_id, 1, 4).await.expect("progress"));
    s.accept_proof("t", &next.lease_id, vec![1], vec![2], 3).await.expect("accept");
    assert_eq!(s.task_progress("t").await.expect("progress"), Some((4, 4)));
}

async fn leases_end_at_their_maximum_lifetime(s: &Arc<dyn Store>) {
    s.put_program(program("p")).await.expect("put");
    proving(&**s, "t").await;
    let long = Duration::from_secs(60);
    let l = s.lease_proving("slow", rules(long, 3)).await.expect("lease").lease.expect("t");
    let life = Duration::from_millis(50);
    assert_eq!(
        s.renew_prover_lease("t", &l.lease_id, long, life).await.expect("renew"),
        RenewOutcome::Renewed
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(s.renew_prover_lease("t", &l.lease_id, long, life).await.expect("renew"), RenewOutcome::Lost);
    let attempts = s.prover_attempts("t").await.expect("attempts");
    assert_eq!(attempts[0].outcome.as_deref(), Some("expired"));
    assert_eq!(attempts[0].reason.as_deref(), Some(zkcoproc_store::LIFETIME_EXCEEDED));
    // The task is free for another prover at once, and the ended lease counted as an attempt.
    let next = s.lease_proving("fast", rules(long, 3)).await.expect("lease").lease.expect("reassigned");
    assert_eq!(next.task.attempts, 2);
    assert_eq!(s.worker_record("slow", 3).await.expect("record").consecutive_failures, 1);
}

async fn light_client_state_moves_by_version_and_blocks_keep_their_admission(s: &Arc<dyn Store>) {
    assert_eq!(s.light_client_state("ethereum").await.expect("read"), None);
    assert!(!s.put_light_client_state("ethereum", 1, b"v?".to_vec()).await.expect("put"), "no row to update");
    assert!(s.put_light_client_state("ethereum", 0, b"v1".to_vec()).await.expect("put"));
    assert!(!s.put_light_client_state("ethereum", 0, b"again".to_vec()).await.expect("put"), "created twice");
    assert_eq!(s.light_client_state("ethereum").await.expect("read"), Some((1, b"v1".to_vec())));
    assert!(s.put_light_client_state("ethereum", 1, b"v2".to_vec()).await.expect("put"));
    // A writer that read version 1 lost the race: nothing is written.
    assert!(!s.put_light_client_state("ethereum", 1, b"stale".to_vec()).await.expect("put"));
    assert_eq!(s.light_client_state("ethereum").await.expect("read"), Some((2, b"v2".to_vec())));

    let lc = Admission::LightClient { beacon_slot: 4242, optimistic: false };
    let opt = Admission::LightClient { beacon_slot: 4243, optimistic: true };
    let blocks = vec![
        NewBlock { admission: lc, ..block(1, 1) },
        NewBlock { admission: opt, ..block(2, 2) },
        block(3, 3),
    ];
    assert!(s.append_blocks("ethereum", [0; 32], blocks).await.expect("append"));
    let got: Vec<Admission> =
        s.smt_updates(0).await.expect("history").into_iter().map(|u| u.admission).collect();
    assert_eq!(got, vec![lc, opt, Admission::Rpc]);
}

/// Two processes on one PostgreSQL database: while one holds a program's volume lock, the
/// other's `volume_lock` waits; it gets the lock once the first guard is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_lock_is_held_across_stores_until_dropped() {
    let Some(base) = postgres_server() else { return };
    let url = fresh_url(&base).await;
    let a = PgStore::connect(&url, 4).await.expect("store");
    let b = PgStore::connect(&url, 4).await.expect("second store");
    let held = a.volume_lock("p").await.expect("lock").expect("a shared store locks");
    let waiting = tokio::spawn(async move {
        let guard = b.volume_lock("p").await.expect("lock");
        (guard, b)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the second store took a held lock");
    // Another program's lock is free meanwhile.
    drop(a.volume_lock("q").await.expect("lock").expect("q"));
    drop(held);
    let (guard, _b) =
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("released").expect("join");
    assert!(guard.is_some());
    // Held locks have connections of their own: a store with a single query connection still
    // answers while it holds a lock (with one pool, the query would wait for the held one).
    let small = PgStore::connect(&url, 1).await.expect("one-connection store");
    let held = small.volume_lock("r").await.expect("lock").expect("r");
    let put = tokio::time::timeout(Duration::from_secs(5), small.put_program(program("p"))).await;
    assert!(put.expect("a held lock starved the queries").is_ok());
    drop(held);
    // SQLite: one process owns the database, no store lock.
    assert!(sqlite().volume_lock("p").await.expect("lock").is_none());
}

/// A PostgreSQL transaction whose caller stops waiting midway (a request cancelled) commits
/// nothing, and its connection is not handed to the next transaction still inside it (which
/// would then commit the abandoned work with its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_postgres_transaction_commits_nothing() {
    let Some(base) = postgres_server() else { return };
    let url = fresh_url(&base).await;
    // One connection: the next transaction gets the abandoned one's, if it is given back.
    let store = PgStore::connect(&url, 1).await.expect("store");
    store.put_program(program("p")).await.expect("put");
    let (outside, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    let conn = tokio::spawn(conn);
    // Holding the program row makes a task insert wait in its foreign-key check.
    outside.batch_execute("BEGIN; SELECT 1 FROM programs WHERE id = 'p' FOR UPDATE").await.expect("lock");
    let abandoned =
        tokio::time::timeout(Duration::from_millis(500), store.insert_task(task("t1"), None)).await;
    assert!(abandoned.is_err(), "the insert did not wait for the row lock");
    outside.batch_execute("COMMIT").await.expect("unlock");
    store.insert_task(task("t2"), None).await.expect("the next transaction");
    assert!(store.task("t2").await.expect("get").is_some());
    assert!(store.task("t1").await.expect("get").is_none(), "the abandoned insert was committed");
    drop(outside);
    let _ = conn.await;
}

async fn webhooks_are_enqueued_with_the_end_and_leased_to_one_sender(s: &Arc<dyn Store>) {
    const LEASE: Duration = Duration::from_secs(60);
    let p = NewProgram { callback_url: Some("http://p.example/hook".into()), ..program("p") };
    s.put_program(p).await.expect("put");
    s.put_program(program("q")).await.expect("put q");
    // The secret is set once; a later claim changes nothing.
    assert!(s.claim_webhook_secret("p", "first").await.expect("claim"));
    assert!(!s.claim_webhook_secret("p", "second").await.expect("claim again"));
    assert_eq!(s.webhook_secret("p").await.expect("secret").as_deref(), Some("first"));
    assert_eq!(s.webhook_secret("q").await.expect("secret"), None);
    // Rotation replaces it; a program that does not exist has none to replace.
    assert!(s.replace_webhook_secret("p", "rotated").await.expect("rotate"));
    assert_eq!(s.webhook_secret("p").await.expect("secret").as_deref(), Some("rotated"));
    assert!(!s.replace_webhook_secret("nope", "x").await.expect("rotate unknown"));
    assert!(s.replace_webhook_secret("p", "first").await.expect("rotate back"));
    let info = s.program("p").await.expect("get").expect("p");
    assert_eq!(info.callback_url.as_deref(), Some("http://p.example/hook"));
    // A task takes its request's URL, else its program's; a program without one gives none.
    s.insert_task(task("a"), None).await.expect("a");
    let own = NewTask { callback_url: Some("http://t.example/".into()), ..task("b") };
    s.insert_task(own, None).await.expect("b");
    s.insert_task(NewTask { program_id: "q".into(), ..task("c") }, None).await.expect("c");
    let urls = |t: Option<zkcoproc_store::TaskRecord>| t.expect("task").callback_url;
    assert_eq!(urls(s.task("a").await.expect("a")).as_deref(), Some("http://p.example/hook"));
    assert_eq!(urls(s.task("b").await.expect("b")).as_deref(), Some("http://t.example/"));
    assert_eq!(urls(s.task("c").await.expect("c")), None);
    // Nothing is due before a task ends; its end enqueues it (with the end's transaction).
    assert!(s.due_webhooks("w1", LEASE, 10).await.expect("due").is_empty());
    for id in ["a", "b", "c"] {
        s.cancel(id).await.expect("cancel");
    }
    let mut due = s.due_webhooks("w1", LEASE, 10).await.expect("due");
    due.sort_by(|x, y| x.task_id.cmp(&y.task_id));
    let got: Vec<_> = due.iter().map(|d| (d.task_id.as_str(), d.url.as_str(), d.attempts)).collect();
    assert_eq!(got, vec![("a", "http://p.example/hook", 0), ("b", "http://t.example/", 0)]);
    assert!(due.iter().all(|d| d.program_id == "p"));
    // Leased: another sender gets nothing, and cannot record an attempt.
    assert!(s.due_webhooks("w2", LEASE, 10).await.expect("due").is_empty());
    assert!(!s
        .record_webhook_attempt("a", "w2", Some(200), None, WebhookVerdict::Delivered)
        .await
        .expect("rec"));
    let failed = Some("the receiver answered 500".to_owned());
    let retry = WebhookVerdict::Retry(Duration::ZERO);
    assert!(s.record_webhook_attempt("a", "w1", Some(500), failed, retry).await.expect("record"));
    assert!(s
        .record_webhook_attempt("b", "w1", Some(204), None, WebhookVerdict::Delivered)
        .await
        .expect("rec"));
    // Recorded once: the lease ended with the attempt.
    assert!(!s
        .record_webhook_attempt("b", "w1", Some(204), None, WebhookVerdict::Delivered)
        .await
        .expect("rec"));
    // The failed one is due again (to whoever asks), the delivered one never.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let due = s.due_webhooks("w2", Duration::ZERO, 10).await.expect("due");
    assert_eq!(due.iter().map(|d| (d.task_id.as_str(), d.attempts)).collect::<Vec<_>>(), vec![("a", 1)]);
    // A sender that dies loses its lease when it expires: the delivery is due again.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let due = s.due_webhooks("w3", LEASE, 10).await.expect("due");
    assert_eq!(due.iter().map(|d| d.task_id.as_str()).collect::<Vec<_>>(), vec!["a"]);
    assert!(!s.record_webhook_attempt("a", "w2", None, None, WebhookVerdict::Delivered).await.expect("rec"));
    let timeout = Some("operation timed out".to_owned());
    assert!(s.record_webhook_attempt("a", "w3", None, timeout, WebhookVerdict::Abandon).await.expect("rec"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(s.due_webhooks("w4", LEASE, 10).await.expect("due").is_empty());
    // The tasks show their deliveries.
    let a = s.task("a").await.expect("a").expect("a");
    assert_eq!(a.callback_state.as_deref(), Some("abandoned"));
    let attempts: Vec<_> = a.callbacks.iter().map(|c| (c.status, c.error.as_deref())).collect();
    assert_eq!(
        attempts,
        vec![(Some(500), Some("the receiver answered 500")), (None, Some("operation timed out"))]
    );
    assert!(a.callbacks[0].at <= a.callbacks[1].at);
    let b = s.task("b").await.expect("b").expect("b");
    assert_eq!(b.callback_state.as_deref(), Some("delivered"));
    assert_eq!(
        b.callbacks.iter().map(|c| (c.status, c.error.clone())).collect::<Vec<_>>(),
        vec![(Some(204), None)]
    );
    let c = s.task("c").await.expect("c").expect("c");
    assert_eq!((c.callback_state, c.callbacks.len()), (None, 0));
}

async fn listings_show_what_an_identity_may_see_newest_first(s: &Arc<dyn Store>) {
    s.put_program(NewProgram { owner: Some("alice".into()), ..program("p") }).await.expect("p");
    s.put_program(NewProgram { owner: Some("bob".into()), ..program("q") }).await.expect("q");
    // Alice's program: bob submits one task; bob's program: carol submits one.
    s.insert_task(NewTask { submitter: Some("bob".into()), ..task("t1") }, None).await.expect("t1");
    let of_q = NewTask { program_id: "q".into(), submitter: Some("carol".into()), ..task("t2") };
    s.insert_task(of_q, None).await.expect("t2");
    s.insert_task(task("t3"), None).await.expect("t3");
    s.cancel("t3").await.expect("cancel");
    let ids = |tasks: Vec<zkcoproc_store::TaskSummary>| tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let list = |f: TaskFilter| async move { ids(s.list_tasks(f, 10).await.expect("list")) };
    assert_eq!(list(TaskFilter::default()).await, ["t3", "t2", "t1"]);
    let visible = |who: &str| TaskFilter { visible_to: Some(who.into()), ..Default::default() };
    assert_eq!(list(visible("alice")).await, ["t3", "t1"], "alice owns p");
    assert_eq!(list(visible("bob")).await, ["t2", "t1"], "bob owns q and submitted t1");
    assert_eq!(list(visible("carol")).await, ["t2"]);
    assert!(list(visible("mallory")).await.is_empty());
    let cancelled = TaskFilter { status: Some(TaskStatus::Cancelled), ..Default::default() };
    assert_eq!(list(cancelled).await, ["t3"]);
    let of_q = TaskFilter { program_id: Some("q".into()), ..Default::default() };
    assert_eq!(list(of_q).await, ["t2"]);
    // Paging: the next page starts after the last row's seq.
    let first = s.list_tasks(TaskFilter::default(), 2).await.expect("page 1");
    let next = TaskFilter { before: first.last().map(|t| t.seq), ..Default::default() };
    assert_eq!(list(next).await, ["t1"]);

    // Programs, with their counts and volumes; an owner sees only its own.
    let update = StageUpdate { volume: Some(volume_write(0, &[(1, 7), (2, 0)], &[])), ..Default::default() };
    s.claim_next("r", Duration::from_secs(60)).await.expect("claim").expect("t1");
    assert!(s.transition("t1", "r", TaskStatus::Queued, TaskStatus::Witnessing, update).await.expect("tx"));
    let all = s.list_programs(None, 10).await.expect("programs");
    let p = all.iter().find(|p| p.info.id == "p").expect("p listed");
    assert_eq!(all.len(), 2);
    let mut counts = p.tasks.clone();
    counts.sort_by_key(|(st, _)| st.as_str());
    assert_eq!(counts, vec![(TaskStatus::Cancelled, 1), (TaskStatus::Witnessing, 1)]);
    assert_eq!(p.volume.map(|v| (v.version, v.size)), Some((1, 4 << 20)));
    assert_eq!(p.volume_blocks, 1, "the zeroed block takes no space");
    let bobs = s.list_programs(Some("bob"), 10).await.expect("bob's");
    assert_eq!(bobs.iter().map(|p| p.info.id.as_str()).collect::<Vec<_>>(), ["q"]);
    assert_eq!((bobs[0].volume, bobs[0].volume_blocks), (None, 0));

    // The event log: every status change after a seq, with whom it concerns; the newest seq.
    let (changes, newest) = s.task_changes(0, 100).await.expect("changes");
    let seen: Vec<_> = changes.iter().map(|c| (c.task_id.as_str(), c.status)).collect();
    assert_eq!(
        seen,
        [
            ("t1", TaskStatus::Queued),
            ("t2", TaskStatus::Queued),
            ("t3", TaskStatus::Queued),
            ("t3", TaskStatus::Cancelled),
            ("t1", TaskStatus::Witnessing),
        ]
    );
    assert_eq!(newest, changes.last().expect("last").seq);
    let t2 = &changes[1];
    assert_eq!(
        (t2.program_id.as_str(), t2.submitter.as_deref(), t2.owner.as_deref()),
        ("q", Some("carol"), Some("bob"))
    );
    let (later, same) = s.task_changes(changes[3].seq, 100).await.expect("later");
    assert_eq!((later.len(), same), (1, newest));
    assert_eq!(s.task_changes(newest, 100).await.expect("none").0, vec![]);

    // Prover leases of any task, newest first.
    s.cancel("t2").await.expect("cancel t2"); // so that t4 is the task claimed next
    proving(s.as_ref(), "t4").await;
    s.lease_proving("w1", rules(Duration::from_secs(60), 3)).await.expect("lease").lease.expect("t4");
    let leases = s.recent_leases(10).await.expect("leases");
    assert_eq!(
        leases.iter().map(|l| (l.task_id.as_str(), l.worker.as_str())).collect::<Vec<_>>(),
        [("t4", "w1")]
    );
}

/// Two stores on one PostgreSQL database (two replicas): each hears the status changes the other
/// commits, as it commits them, and not its own; SQLite has nobody to hear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_hear_each_others_task_changes_and_not_their_own() {
    assert!(sqlite().notices().is_none());
    let Some(base) = postgres_server() else { return };
    let url = fresh_url(&base).await;
    let a = PgStore::connect(&url, 4).await.expect("replica a");
    let b = PgStore::connect(&url, 4).await.expect("replica b");
    let (mut heard_by_a, mut heard_by_b) = (a.notices().expect("a listens"), b.notices().expect("b listens"));
    // A listener connects on its own: wait until b's is up (a's notices before that are lost,
    // which the runners' polling covers), by sending until one arrives.
    a.put_program(program("p")).await.expect("put");
    let next = |rx: &mut tokio::sync::broadcast::Receiver<zkcoproc_store::TaskNotice>| {
        let mut rx = rx.resubscribe();
        async move { tokio::time::timeout(Duration::from_secs(1), rx.recv()).await }
    };
    let mut n = 0;
    let first = loop {
        n += 1;
        assert!(n < 30, "b never heard a's insert");
        let waiting = next(&mut heard_by_b);
        a.insert_task(task(&format!("warm{n}")), None).await.expect("insert");
        if let Ok(Ok(notice)) = waiting.await {
            break notice;
        }
    };
    assert_eq!(first.status, TaskStatus::Queued);
    assert!(first.task_id.starts_with("warm"), "{first:?}");
    // From now on every change a commits reaches b, in order, with its status.
    heard_by_b = heard_by_b.resubscribe();
    heard_by_a = heard_by_a.resubscribe();
    a.insert_task(task("t"), None).await.expect("insert");
    let (t, _) = loop {
        let (t, entered) = a.claim_and_start("r", FOREVER).await.expect("claim").expect("a task");
        if t.id == "t" {
            break (t, entered);
        }
    };
    assert!(a
        .transition("t", "r", TaskStatus::Witnessing, TaskStatus::Proving, Default::default())
        .await
        .expect("tx"));
    let mut heard = Vec::new();
    while heard.len() < 3 {
        let notice = tokio::time::timeout(Duration::from_secs(5), heard_by_b.recv())
            .await
            .expect("b hears a's changes within 5 s")
            .expect("notice");
        if notice.task_id == t.id {
            heard.push(notice.status);
        }
    }
    assert_eq!(heard, [TaskStatus::Queued, TaskStatus::Witnessing, TaskStatus::Proving]);
    // b's own change reaches a, and never b itself.
    assert_eq!(b.cancel("t").await.expect("cancel"), CancelOutcome::Cancelled(TaskStatus::Proving));
    let by_a = loop {
        let notice = tokio::time::timeout(Duration::from_secs(5), heard_by_a.recv())
            .await
            .expect("a hears b's cancel")
            .expect("notice");
        if notice.task_id == "t" && notice.status == TaskStatus::Cancelled {
            break notice;
        }
    };
    assert_eq!(by_a.task_id, "t");
    while let Ok(notice) = heard_by_b.try_recv() {
        assert!(notice.status != TaskStatus::Cancelled, "b heard its own cancel: {notice:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(notice) = heard_by_b.try_recv() {
        assert!(notice.status != TaskStatus::Cancelled, "b heard its own cancel: {notice:?}");
    }
}
