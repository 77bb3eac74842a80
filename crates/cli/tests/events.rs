//! Task lifecycle controls over real HTTP: idempotent submission, cancellation of queued and
//! running tasks, and the Server-Sent Events stream of stage changes.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use zkcoproc_testing::{hello_app, poll, Server};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

/// Reads a whole SSE stream (it ends at a terminal status) and returns the `data` of each event.
fn sse(url: &str) -> Vec<Value> {
    let body = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
        .get(url)
        .send()
        .expect("events")
        .text()
        .expect("stream ends");
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).expect("event json"))
        .collect()
}

fn statuses(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["status"].as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn idempotency_keys_and_cancelling_queued_tasks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // No runner and no prover: tasks stay queued.
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &["--runners", "0", "--workers", "0"])
        .expect("server");
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    let url = format!("{}/v1/programs/{program}/proofs", server.url);
    let http = reqwest::blocking::Client::new();
    let submit = |key: &str, n: u32| {
        let resp = http
            .post(&url)
            .header("Idempotency-Key", key)
            .json(&json!({"args": {"n": n}}))
            .send()
            .expect("post");
        (resp.status().as_u16(), resp.json::<Value>().unwrap_or(Value::Null))
    };

    let (status, first) = submit("order-17", 5);
    assert_eq!((status, &first["replayed"]), (202, &json!(false)), "{first}");
    let (status, again) = submit("order-17", 5);
    assert_eq!((status, &again["replayed"]), (202, &json!(true)), "{again}");
    assert_eq!(again["task_id"], first["task_id"]);
    let (status, conflict) = submit("order-17", 6);
    assert_eq!((status, conflict["error"]["code"].as_str()), (409, Some("conflict")), "{conflict}");
    let task_id = first["task_id"].as_str().expect("task id");
    assert!(!conflict.to_string().contains(task_id), "a conflict revealed the key's task: {conflict}");
    let (status, bad) = submit("a key with spaces", 5);
    assert_eq!((status, bad["error"]["code"].as_str()), (400, Some("bad_idempotency_key")), "{bad}");
    let (_, health) = api.get("/health").expect("health");
    assert_eq!(health["tasks"], json!({"queued": 1}), "a retry created a task: {health}");

    // Cancel the queued task: it is cancelled, for good.
    let task = first["task_id"].as_str().expect("task id").to_owned();
    let resp = http.delete(format!("{}/v1/tasks/{task}", server.url)).send().expect("delete");
    assert_eq!(resp.status().as_u16(), 200);
    let t: Value = resp.json().expect("task json");
    assert_eq!((t["status"].as_str(), t["error"]["code"].as_str()), (Some("cancelled"), Some("cancelled")));
    let resp = http.delete(format!("{}/v1/tasks/{task}", server.url)).send().expect("delete again");
    assert_eq!(resp.status().as_u16(), 409);
    let resp = http
        .delete(format!("{}/v1/tasks/01234567-89ab-cdef-0123-456789abcdef", server.url))
        .send()
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 404);
    // Its event stream replays the history and ends.
    assert_eq!(statuses(&sse(&format!("{}/v1/tasks/{task}/events", server.url))), ["queued", "cancelled"]);

    // The CLI cancels too.
    let other = api.prove(&program, &json!({"n": 1})).expect("prove");
    let out = std::process::Command::new(bin())
        .args(["cancel", &other, "--server", &server.url])
        .output()
        .expect("cli cancel");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t: Value = serde_json::from_slice(&out.stdout).expect("task json");
    assert_eq!(t["status"], "cancelled");
}

#[test]
fn a_running_task_is_cancelled_and_events_stream_every_stage_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Every proof takes 3 s more, so a task can be caught while proving.
    let extra = ["--dev-delay-ms", "3000", "--workers", "1"];
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &extra).expect("server");
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");

    let running = api.prove(&program, &json!({"n": 2})).expect("prove");
    poll(Duration::from_secs(60), || {
        let (_, t) = api.get(&format!("/v1/tasks/{running}"))?;
        Ok((t["status"] == "proving").then_some(()))
    })
    .expect("task reaches proving");
    let resp = reqwest::blocking::Client::new()
        .delete(format!("{}/v1/tasks/{running}", server.url))
        .send()
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 200);

    // The next task runs once the runner notices; the cancelled one never becomes done.
    let next = api.prove(&program, &json!({"n": 3})).expect("prove");
    let events = sse(&format!("{}/v1/tasks/{next}/events", server.url));
    assert_eq!(statuses(&events), ["queued", "witnessing", "proving", "verifying", "delivering", "done"]);
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap_or(-1)).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "events out of order: {seqs:?}");
    let (_, t) = api.get(&format!("/v1/tasks/{running}")).expect("task");
    assert_eq!(t["status"], "cancelled", "{t}");
    let history: Vec<&str> =
        t["history"].as_array().expect("history").iter().filter_map(|e| e["status"].as_str()).collect();
    assert_eq!(history, ["queued", "witnessing", "proving", "cancelled"], "{t}");

    // An unknown task's stream is a 404 with the usual error body.
    let (status, body) = api.get("/v1/tasks/01234567-89ab-cdef-0123-456789abcdef/events").expect("events");
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
}
