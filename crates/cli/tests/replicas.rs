//! Two `zkcoproc serve` replicas on one PostgreSQL database, three remote dev workers, 200 tasks
//! submitted through both replicas, and one replica SIGKILLed when a third of them are done: every acknowledged task is
//! done exactly once (one `delivering` and one `done` in its history, one accepted proof, one
//! receipt file in the program's volume, no stage run again for a volume race), and the
//! surviving replica answers for all of them.
//!
//! Needs the PostgreSQL server of `scripts/postgres.sh` (`ZKCOPROC_TEST_POSTGRES`).

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zkcoproc_testing::{hello_app, poll, postgres, Api, Server, Worker};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

const TASKS: usize = 200;

/// A dev worker whose proofs cost 10 ms, on `servers` (comma-separated replicas).
fn worker(servers: &str, name: &str, secrets: &Path, log: &Path) -> Worker {
    Worker::start(bin(), servers, name, secrets, &["--dev-delay-ms", "10"], log).expect("worker")
}

fn statuses(history: &Value) -> Vec<String> {
    history
        .as_array()
        .map(|h| h.iter().filter_map(|e| e["status"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn two_replicas_and_three_workers_drain_200_tasks_exactly_once_through_a_sigkill() {
    let Some(base) = postgres::server() else { return };
    let database = postgres::fresh_database(&base).expect("database");
    let app = hello_app();
    let tmp = tempfile::tempdir().expect("tempdir");
    let secrets = tmp.path().join("workers.secrets");
    std::fs::write(&secrets, "w1:secret-of-worker-one\nw2:secret-of-worker-two\nw3:secret-of-worker-three\n")
        .expect("secrets");
    let secrets_arg = secrets.to_str().expect("path");
    // No in-process provers: the three remote workers prove everything. Short leases, so the
    // killed replica's tasks are taken over quickly.
    let args = [
        "--database",
        &database,
        "--workers",
        "0",
        "--worker-secret-file",
        secrets_arg,
        "--lease-ms",
        "1500",
        "--prover-lease-ms",
        "1500",
        // One client submits the whole batch at once.
        "--submit-burst",
        "1000",
    ];
    let mut a = Server::start(bin(), &tmp.path().join("a"), "dev", &args).expect("replica a");
    let b = Server::start(bin(), &tmp.path().join("b"), "dev", &args).expect("replica b");
    let (api_a, api_b) = (a.api(), b.api());
    let program = api_a.deploy(app).expect("deploy through a");
    // The program deployed through one replica is the other's too.
    let (status, body) = api_b.get(&format!("/v1/programs/{program}")).expect("program on b");
    assert_eq!(status, 200, "{body}");

    // A signed worker request accepted by one replica is a replay to the other.
    {
        use zkcoproc_api::worker_auth;
        let body = serde_json::to_vec(&json!({
            "zkcoproc_version": env!("CARGO_PKG_VERSION"),
            "risc0_version": zkcoproc_zkvm::RISC0_VERSION,
            "prover": "dev",
            "wait_ms": 0,
        }))
        .expect("json");
        let (timestamp, nonce) = (worker_auth::unix_now(), "0123456789abcdef0123456789abcdef");
        let signature =
            worker_auth::sign(b"secret-of-worker-one", "POST", "/v1/worker/lease", timestamp, nonce, &body);
        let http = reqwest::blocking::Client::new();
        let send = |url: &str| {
            let resp = http
                .post(format!("{url}/v1/worker/lease"))
                .header(worker_auth::HEADER_WORKER, "w1")
                .header(worker_auth::HEADER_TIMESTAMP, timestamp.to_string())
                .header(worker_auth::HEADER_NONCE, nonce)
                .header(worker_auth::HEADER_SIGNATURE, &signature)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .expect("lease");
            (resp.status().as_u16(), resp.json::<Value>().unwrap_or(Value::Null))
        };
        assert_eq!(send(&a.url).0, 204);
        let (status, body) = send(&b.url);
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("replayed_request")), "{body}");
    }

    let _workers = [
        worker(&format!("{},{}", a.url, b.url), "w1", &secrets, &tmp.path().join("w1.log")),
        worker(&format!("{},{}", b.url, a.url), "w2", &secrets, &tmp.path().join("w2.log")),
        worker(&format!("{},{}", a.url, b.url), "w3", &secrets, &tmp.path().join("w3.log")),
    ];

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let api = [&api_a, &api_b][i % 2];
        // `keep`: the controller keeps every receipt, so a lost volume write would show.
        tasks.push(api.prove(&program, &json!({ "n": i + 1, "keep": 1000 })).expect("submit"));
    }
    // Any replica answers for any task: b knows a's tasks.
    let (status, body) = api_b.get(&format!("/v1/tasks/{}", tasks[0])).expect("task on b");
    assert_eq!(status, 200, "{body}");
    // Midway through the draining, replica a dies with tasks in flight.
    let done_at_kill = poll(Duration::from_secs(120), || {
        let (_, health) = api_b.get("/health")?;
        let done = health["tasks"]["done"].as_u64().unwrap_or(0);
        Ok((done >= TASKS as u64 / 3).then_some(done))
    })
    .expect("a third of the tasks done");
    a.kill();
    println!("SIGKILL replica a with {done_at_kill}/{TASKS} tasks done ({:?})", started.elapsed());

    let finished = poll(Duration::from_secs(240), || {
        let mut open = 0;
        for t in &tasks {
            let (status, body) = api_b.get(&format!("/v1/tasks/{t}"))?;
            anyhow::ensure!(status == 200, "GET task {t}: {status} {body}");
            if !matches!(body["status"].as_str(), Some("done" | "failed" | "cancelled")) {
                open += 1;
            }
        }
        Ok((open == 0).then_some(()))
    });
    if let Err(e) = finished {
        panic!("tasks did not finish: {e:#}\nreplica b log:\n{}", b.log());
    }
    println!("{TASKS} tasks done in {:?}", started.elapsed());

    let mut lost = 0;
    let mut duplicated = 0;
    let mut workers_seen = HashSet::new();
    for (i, t) in tasks.iter().enumerate() {
        let (_, task) = api_b.get(&format!("/v1/tasks/{t}")).expect("task");
        if task["status"] != "done" {
            lost += 1;
            eprintln!("task {t}: {task}");
            continue;
        }
        let history = statuses(&task["history"]);
        let count = |s: &str| history.iter().filter(|h| h.as_str() == s).count();
        if count("done") != 1 || count("delivering") != 1 {
            duplicated += 1;
            eprintln!("task {t} history: {history:?}");
        }
        let accepted: Vec<&Value> = task["provers"]
            .as_array()
            .map(|p| p.iter().filter(|a| a["outcome"] == "accepted").collect())
            .unwrap_or_default();
        assert_eq!(accepted.len(), 1, "task {t} has {} accepted proofs: {task}", accepted.len());
        workers_seen.insert(accepted[0]["worker"].as_str().unwrap_or_default().to_owned());
        assert_eq!(task["result"]["n"], json!(i + 1), "task {t} result: {task}");
    }
    println!(
        "tasks lost: {lost}, duplicated deliveries: {duplicated}, workers that proved: {workers_seen:?}"
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert!(workers_seen.len() >= 2, "work was not shared: {workers_seen:?}");

    // Every entrypoint's write reached the shared volume: replicas never overwrote each other.
    let files = receipt_files(&api_b, &program);
    assert_eq!(files, TASKS, "receipt files in the volume");
    // And they did not race for it: the program's volume lock in the store makes one replica's
    // stage wait for the other's instead of running and losing (before it: 54 of 200 reran).
    let races = [a.log(), b.log()]
        .iter()
        .map(|l| {
            l.matches("volume changed by another replica").count()
                + l.matches("volume replaced while").count()
        })
        .sum::<usize>();
    println!("stages run again after losing a volume race to the other replica: {races}");
    let lines: Vec<String> = [a.log(), b.log()]
        .iter()
        .flat_map(|l| l.lines().filter(|x| x.contains("volume")).map(str::to_owned).collect::<Vec<_>>())
        .take(10)
        .collect();
    assert_eq!(races, 0, "stages lost volume races: {lines:#?}");
}

/// Number of receipt files the controller stored in its volume.
fn receipt_files(api: &Api, program: &str) -> usize {
    let (status, body) = api.get(&format!("/v1/programs/{program}/fs?path=/var/share/proofs")).expect("list");
    assert_eq!(status, 200, "{body}");
    // Every file but the controller's INDEX of them.
    body["entries"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["is_dir"] == false && e["name"] != "INDEX").count())
        .unwrap_or(0)
}

/// A root one replica made is known to the others at once: a replica that has not synced it
/// yet looks it up in the shared history before answering `unknown_root`.
#[test]
fn a_replica_knows_a_root_another_replica_made_the_moment_it_is_asked() {
    let Some(base) = postgres::server() else { return };
    let database = postgres::fresh_database(&base).expect("database");
    let anvil = zkcoproc_testing::anvil::Anvil::start().expect("anvil");
    anvil.mine(3).expect("mine");
    let tmp = tempfile::tempdir().expect("tempdir");
    // A follows the chain; B only shares the database (and syncs the history every second).
    let follow = anvil.follow_args(0, 50).expect("follow args");
    let mut a_args: Vec<&str> = vec!["--database", &database];
    a_args.extend(follow.iter().map(String::as_str));
    let a = Server::start(bin(), &tmp.path().join("a"), "dev", &a_args).expect("replica a");
    let b =
        Server::start(bin(), &tmp.path().join("b"), "dev", &["--database", &database]).expect("replica b");
    let (api_a, api_b) = (a.api(), b.api());
    let program = api_b.deploy(hello_app()).expect("deploy");
    for round in 0..5 {
        let (_, before) = api_a.get("/v1/root").expect("root");
        anvil.mine(1).expect("mine");
        let root = poll(Duration::from_secs(30), || {
            let (_, now) = api_a.get("/v1/root")?;
            Ok((now["root"] != before["root"]).then(|| now["root"].as_str().unwrap_or_default().to_owned()))
        })
        .expect("a inserts the new block");
        let (status, info) = api_b.get(&format!("/v1/roots/{root}")).expect("root info");
        assert_eq!((status, info["known"].as_bool()), (200, Some(true)), "round {round}: {info}");
        let body = json!({"args": {"n": 1}, "root": root});
        let (status, v) = api_b.post(&format!("/v1/programs/{program}/proofs"), &body).expect("submit");
        assert_eq!(status, 202, "round {round}: a task pinned to a's new root was refused by b: {v}");
    }
}

/// A task submitted to a replica that runs no stages is taken up by another replica the moment it
/// is committed: the second replica's runners are woken by the first one's notice (PostgreSQL
/// LISTEN/NOTIFY), not by a poll. Both replicas poll for work only every ten minutes, so a task
/// that had to wait for a poll would miss the deadline by far.
#[test]
fn a_replica_takes_up_a_task_another_replica_accepted_without_waiting_for_a_poll() {
    let Some(base) = postgres::server() else { return };
    let database = postgres::fresh_database(&base).expect("database");
    let tmp = tempfile::tempdir().expect("tempdir");
    let quiet = ["--database", &database, "--poll-ms", "600000"];
    let front = [&quiet[..], &["--runners", "0", "--workers", "0"]].concat();
    let back = [&quiet[..], &["--runners", "1", "--workers", "1"]].concat();
    let a = Server::start(bin(), &tmp.path().join("a"), "dev", &front).expect("replica a");
    let b = Server::start(bin(), &tmp.path().join("b"), "dev", &back).expect("replica b");
    let api = a.api();
    let program = api.deploy(hello_app()).expect("deploy");
    // Give b's runner and prover time to look once and go to sleep for their ten minutes.
    std::thread::sleep(Duration::from_secs(2));
    for n in 1..=3 {
        let task = api.prove(&program, &json!({ "n": n })).expect("submit to a");
        let done = api.wait_task(&task, Duration::from_secs(30)).unwrap_or_else(|e| {
            panic!("task {n} submitted to a was not taken up by b: {e:#}\nb's log:\n{}", b.log())
        });
        assert_eq!(done["status"], "done", "{done}");
    }
}
