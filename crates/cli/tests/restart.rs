//! Durability with real processes: SIGKILL the service with tasks in flight, start it again on
//! the same data directory, and every task reaches done exactly once.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use zkcoproc_testing::{hello_app, poll, Server};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

const TASKS: usize = 24;

#[test]
fn sigkill_mid_flight_then_restart_finishes_every_task_exactly_once() {
    let app = hello_app();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // A modelled 150 ms proving cost keeps tasks in flight when the kill lands.
    let extra = ["--dev-delay-ms", "150", "--workers", "2"];
    let mut server = Server::start(bin(), &data, "dev", &extra).expect("server");
    let api = server.api();
    let program = api.deploy(app).expect("deploy");

    let tasks: Vec<String> =
        (0..TASKS).map(|i| api.prove(&program, &json!({"n": i + 1})).expect("prove")).collect();
    assert_eq!(tasks.iter().collect::<HashSet<_>>().len(), TASKS, "task ids are unique");

    // Kill once some, but not all, tasks are done.
    let done_before_kill = poll(Duration::from_secs(120), || {
        let (_, h) = api.get("/health")?;
        let done = h["tasks"]["done"].as_u64().unwrap_or(0);
        Ok((done >= 3).then_some(done))
    })
    .expect("some tasks finish");
    server.kill();
    assert!(done_before_kill < TASKS as u64 - 4, "the kill must land with tasks in flight");
    assert!(!server.is_running());

    // Every accepted task survived the kill, and some were still unfinished.
    let mut server = Server::start(bin(), &data, "dev", &extra).expect("restart");
    let api = server.api();
    let (_, health) = api.get("/health").expect("health");
    let total: u64 = health["tasks"].as_object().expect("counts").values().filter_map(|v| v.as_u64()).sum();
    assert_eq!(total, TASKS as u64, "{health}");

    let mut resumed = 0;
    for (i, task) in tasks.iter().enumerate() {
        let t = api.wait_task(task, Duration::from_secs(120)).expect("task finishes");
        if t["attempts"].as_u64().unwrap_or(0) > 1 {
            resumed += 1;
        }
        assert_eq!(t["status"], "done", "task {task}: {t}\nlog:\n{}", server.log());
        assert_eq!(t["result"]["n"], i + 1, "{t}");
        // Exactly once: the history enters each stage once, in pipeline order, ending at done.
        let history: Vec<&str> =
            t["history"].as_array().expect("history").iter().filter_map(|e| e["status"].as_str()).collect();
        let pipeline = ["queued", "witnessing", "proving", "verifying", "delivering", "done"];
        assert_eq!(history, pipeline, "task {task} history");
    }
    let (_, health) = api.get("/health").expect("health");
    assert_eq!(health["tasks"], json!({"done": TASKS}), "{health}");
    // Tasks a runner or prover held when the process died were released at the restart and
    // taken again (a re-leased proof shows as a second attempt; a re-claimed controller stage
    // only in the restart's log).
    let log = server.log();
    assert!(
        resumed > 0 || log.contains("resuming tasks that were in flight"),
        "no task was in flight at the kill"
    );
    server.kill();
}
