//! Remote prover workers with real processes over real HTTP: authentication and replay,
//! leases and results, invalid receipts, a killed worker, and a batch drained by two workers.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use zkcoproc_api::worker_auth;
use zkcoproc_testing::{hello_app, poll, Server, Worker};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

const SECRETS: &str = "w1:secret-of-worker-one\nw2:secret-of-worker-two\nevil:secret-of-the-evil-one\n";

fn secrets_file(dir: &Path) -> PathBuf {
    let path = dir.join("workers.secrets");
    std::fs::write(&path, SECRETS).expect("write secrets");
    path
}

/// The test speaking the worker protocol itself (to misbehave where needed).
struct Speaker {
    url: String,
    name: String,
    secret: Vec<u8>,
    http: reqwest::blocking::Client,
}

struct Signed {
    timestamp: u64,
    nonce: String,
    signature: String,
    body: Vec<u8>,
}

impl Speaker {
    fn new(url: &str, name: &str, secret: &str) -> Speaker {
        Speaker {
            url: url.into(),
            name: name.into(),
            secret: secret.as_bytes().to_vec(),
            http: reqwest::blocking::Client::new(),
        }
    }

    fn sign(&self, method: &str, path: &str, body: &Value) -> Signed {
        let body = serde_json::to_vec(body).expect("json");
        let timestamp = worker_auth::unix_now();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let signature = worker_auth::sign(&self.secret, method, path, timestamp, &nonce, &body);
        Signed { timestamp, nonce, signature, body }
    }

    fn send(&self, method: &str, path: &str, s: &Signed) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header(worker_auth::HEADER_WORKER, &self.name)
            .header(worker_auth::HEADER_TIMESTAMP, s.timestamp.to_string())
            .header(worker_auth::HEADER_NONCE, &s.nonce)
            .header(worker_auth::HEADER_SIGNATURE, &s.signature)
            .header("content-type", "application/json")
            .body(s.body.clone())
            .send()
            .expect("request");
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        self.send(method, path, &self.sign(method, path, body))
    }

    fn lease(&self, wait_ms: u64) -> (u16, Value) {
        self.call("POST", "/v1/worker/lease", &lease_request("dev", zkcoproc_zkvm::RISC0_VERSION, wait_ms))
    }
}

fn lease_request(prover: &str, risc0: &str, wait_ms: u64) -> Value {
    json!({"zkcoproc_version": env!("CARGO_PKG_VERSION"), "risc0_version": risc0, "prover": prover, "wait_ms": wait_ms})
}

/// A dev `zkcoproc worker` of `server`, logging beside its data directory.
/// A dev service proven by remote workers only (`--workers 0`, this file's secrets), with
/// `extra` flags; and the secrets file.
fn worker_service(tmp: &Path, extra: &[&str]) -> (Server, PathBuf) {
    let secrets = secrets_file(tmp);
    let path = secrets.to_str().expect("path").to_owned();
    let mut args = vec!["--workers", "0", "--worker-secret-file", path.as_str()];
    args.extend_from_slice(extra);
    (Server::start(bin(), &tmp.join("data"), "dev", &args).expect("server"), secrets)
}

fn worker(server: &Server, secrets: &Path, name: &str, extra: &[&str]) -> Worker {
    let log = server.data.with_file_name(format!("worker-{name}.log"));
    Worker::start(bin(), &server.url, name, secrets, extra, &log).expect("worker")
}

fn provers(t: &Value) -> Vec<(String, String)> {
    t["provers"]
        .as_array()
        .expect("provers")
        .iter()
        .map(|p| {
            (p["worker"].as_str().unwrap_or("").to_owned(), p["outcome"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

#[test]
fn authentication_replays_versions_and_foreign_leases_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Without a secret, remote workers are refused.
    let closed =
        Server::start(bin(), &tmp.path().join("closed"), "dev", &["--workers", "0"]).expect("server");
    let (status, body) = Speaker::new(&closed.url, "w1", "secret-of-worker-one").lease(0);
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("workers_disabled")), "{body}");
    drop(closed);

    let (server, _) = worker_service(tmp.path(), &[]);
    let w1 = Speaker::new(&server.url, "w1", "secret-of-worker-one");
    let w2 = Speaker::new(&server.url, "w2", "secret-of-worker-two");

    // Wrong secret, unknown worker: 401.
    let (status, body) = Speaker::new(&server.url, "w1", "not-the-right-secret").lease(0);
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let (status, _) = Speaker::new(&server.url, "stranger", "secret-of-worker-one").lease(0);
    assert_eq!(status, 401);
    // No work: 204. The same request captured and sent again: refused.
    let request = lease_request("dev", zkcoproc_zkvm::RISC0_VERSION, 0);
    let signed = w1.sign("POST", "/v1/worker/lease", &request);
    assert_eq!(w1.send("POST", "/v1/worker/lease", &signed).0, 204);
    let (status, body) = w1.send("POST", "/v1/worker/lease", &signed);
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("replayed_request")), "{body}");
    // Incompatible workers are told why.
    let (status, body) = w1.call("POST", "/v1/worker/lease", &lease_request("dev", "2.0.0", 0));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("incompatible_worker")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("risc0-zkvm"), "{body}");
    let (status, body) =
        w1.call("POST", "/v1/worker/lease", &lease_request("cpu", zkcoproc_zkvm::RISC0_VERSION, 0));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("incompatible_worker")), "{body}");

    // A task: w1 leases it; asking again gives the same lease back.
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    let task = api.prove(&program, &json!({"n": 2})).expect("prove");
    let (status, lease) = w1.lease(10_000);
    assert_eq!(status, 200, "{lease}");
    assert_eq!(lease["task_id"].as_str(), Some(task.as_str()));
    let lease_id = lease["lease_id"].as_str().expect("lease id").to_owned();
    let (_, again) = w1.lease(0);
    assert_eq!(again["lease_id"].as_str(), Some(lease_id.as_str()), "re-delivery");
    // The circuit is served by image id to authenticated workers only.
    let image = lease["image_id"].as_str().expect("image id");
    assert_eq!(w1.call("GET", &format!("/v1/worker/circuits/{image}"), &Value::Null).0, 200);

    // Results and heartbeats for leases one does not hold: 409.
    let result_path = format!("/v1/worker/tasks/{task}/result");
    let (status, body) = w2.call("POST", &result_path, &json!({"lease_id": lease_id, "error": "mine now"}));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("no_lease")), "{body}");
    let (status, _) = w1.call("POST", &result_path, &json!({"lease_id": "made-up", "error": "x"}));
    assert_eq!(status, 409);

    // Cancel while leased: the worker learns it at its next heartbeat, and its result is refused.
    let heartbeat = format!("/v1/worker/tasks/{task}/heartbeat");
    assert_eq!(w1.call("POST", &heartbeat, &json!({"lease_id": lease_id})).1["status"], "renewed");
    let resp = reqwest::blocking::Client::new()
        .delete(format!("{}/v1/tasks/{task}", server.url))
        .send()
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(w1.call("POST", &heartbeat, &json!({"lease_id": lease_id})).1["status"], "cancelled");
    let (status, body) = w1.call("POST", &result_path, &json!({"lease_id": lease_id, "receipt": "AAAA"}));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("task_not_proving")), "{body}");
}

#[test]
fn invalid_receipts_are_rejected_and_the_task_is_proven_by_another_worker() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, secrets) = worker_service(tmp.path(), &[]);
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");

    // A genuine receipt of the same circuit, for another input (n = 4), proven by w1.
    let other = api.prove(&program, &json!({"n": 4})).expect("prove");
    {
        let _w1 = worker(&server, &secrets, "w1", &["--max-tasks", "1"]);
        let t = api.wait_task(&other, Duration::from_secs(60)).expect("task");
        assert_eq!(t["status"], "done", "{t}");
    }
    let (_, proof) = api.get(&format!("/v1/tasks/{other}/proof")).expect("proof");

    // w2 asks for work (there is none yet): from now on it counts as a worker asking.
    let (status, _) = Speaker::new(&server.url, "w2", "secret-of-worker-two").lease(0);
    assert_eq!(status, 204);
    let task = api.prove(&program, &json!({"n": 3})).expect("prove");
    let evil = Speaker::new(&server.url, "evil", "secret-of-the-evil-one");
    let bad_w1 = Speaker::new(&server.url, "w1", "secret-of-worker-one");
    let result_path = format!("/v1/worker/tasks/{task}/result");
    for (evil, receipt, reason) in [
        (&evil, json!("AAAAAAAA"), "verification_failed"),
        // Valid for the circuit, but it proves another run: bound to its input, rejected.
        (&bad_w1, proof["receipt"].clone(), "journal_mismatch"),
    ] {
        let (status, lease) = evil.lease(10_000);
        assert_eq!((status, lease["task_id"].as_str()), (200, Some(task.as_str())), "{lease}");
        let (status, verdict) =
            evil.call("POST", &result_path, &json!({"lease_id": lease["lease_id"], "receipt": receipt}));
        assert_eq!(status, 200, "{verdict}");
        assert_eq!(
            (verdict["accepted"].as_bool(), verdict["outcome"].as_str()),
            (Some(false), Some("retrying"))
        );
        assert!(verdict["reason"].as_str().unwrap_or_default().contains(reason), "{verdict}");
        // The same lease cannot try again.
        let (status, again) =
            evil.call("POST", &result_path, &json!({"lease_id": lease["lease_id"], "receipt": "AAAA"}));
        assert_eq!((status, again["error"]["code"].as_str()), (409, Some("lease_ended")), "{again}");
    }
    // While a worker that has not failed the task (w2) asks for work, a worker that failed it
    // is not given it again.
    let (status, lease) = evil.lease(0);
    assert_eq!(status, 204, "{lease}");
    let _w2 = worker(&server, &secrets, "w2", &[]);
    let t = api.wait_task(&task, Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(t["result"]["n"], 3, "{t}");
    assert_eq!(
        provers(&t),
        [
            ("evil".into(), "invalid".into()),
            ("w1".into(), "invalid".into()),
            ("w2".into(), "accepted".into())
        ]
    );
    let (_, m) = api.get("/health").expect("health");
    assert_eq!(m["tasks"]["done"], 2);
}

#[test]
fn a_killed_worker_loses_its_lease_and_another_worker_finishes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, secrets) = worker_service(tmp.path(), &["--prover-lease-ms", "1500"]);
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    let task = api.prove(&program, &json!({"n": 5})).expect("prove");

    // w1 takes the task and would take a minute; it is SIGKILLed mid-task.
    let w1 = worker(&server, &secrets, "w1", &["--dev-delay-ms", "60000"]);
    poll(Duration::from_secs(30), || {
        let (_, t) = api.get(&format!("/v1/tasks/{task}"))?;
        Ok((!provers(&t).is_empty()).then_some(()))
    })
    .expect("w1 leases the task");
    drop(w1);

    let _w2 = worker(&server, &secrets, "w2", &[]);
    let t = api.wait_task(&task, Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(t["attempts"], 2);
    assert_eq!(provers(&t), [("w1".into(), "expired".into()), ("w2".into(), "accepted".into())]);
    let metrics =
        reqwest::blocking::get(format!("{}/metrics", server.url)).expect("metrics").text().expect("text");
    assert!(metrics.contains("zkcoproc_prover_leases{outcome=\"expired\"} 1"), "{metrics}");
    assert!(metrics.contains("zkcoproc_workers 2"), "{metrics}");
}

#[test]
fn two_workers_drain_a_batch_each_task_done_exactly_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, secrets) = worker_service(tmp.path(), &[]);
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    let tasks: Vec<String> =
        (0..16).map(|i| api.prove(&program, &json!({"n": i + 1})).expect("prove")).collect();
    let _w1 = worker(&server, &secrets, "w1", &["--dev-delay-ms", "100"]);
    let _w2 = worker(&server, &secrets, "w2", &["--dev-delay-ms", "100"]);

    let mut used = HashSet::new();
    for (i, task) in tasks.iter().enumerate() {
        let t = api.wait_task(task, Duration::from_secs(120)).expect("task");
        assert_eq!(t["status"], "done", "{t}");
        assert_eq!(t["result"]["n"], i + 1);
        let history: Vec<&str> =
            t["history"].as_array().expect("history").iter().filter_map(|e| e["status"].as_str()).collect();
        assert_eq!(history, ["queued", "witnessing", "proving", "verifying", "delivering", "done"], "{t}");
        let p = provers(&t);
        assert_eq!(p.len(), 1, "{t}");
        assert_eq!(p[0].1, "accepted");
        used.insert(p[0].0.clone());
    }
    assert_eq!(used, HashSet::from(["w1".to_owned(), "w2".to_owned()]), "both workers should have proved");
}

#[test]
fn a_task_out_of_attempts_fails_with_the_list_and_its_entrypoint_hears_of_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, _) = worker_service(tmp.path(), &[]);
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    let task = api.prove(&program, &json!({"n": 2})).expect("prove");
    let evil = Speaker::new(&server.url, "evil", "secret-of-the-evil-one");
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let (status, lease) = evil.lease(10_000);
        assert_eq!(status, 200, "{lease}");
        let (_, verdict) = evil.call(
            "POST",
            &format!("/v1/worker/tasks/{task}/result"),
            &json!({"lease_id": lease["lease_id"], "receipt": "AAAAAAAA"}),
        );
        outcomes.push(verdict["outcome"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(outcomes, ["retrying", "retrying", "task_failed"]);
    let t = api.wait_task(&task, Duration::from_secs(10)).expect("task");
    assert_eq!(
        (t["status"].as_str(), t["error"]["code"].as_str()),
        (Some("failed"), Some("prover_failed")),
        "{t}"
    );
    assert!(t["error"]["message"].as_str().unwrap_or_default().contains("3 attempts"), "{t}");
    // The entrypoint got the failure event and recorded it in the program's volume.
    let t = poll(Duration::from_secs(30), || {
        let (_, t) = api.get(&format!("/v1/tasks/{task}"))?;
        Ok(t["result"]["failure_log"].is_string().then_some(t))
    })
    .expect("failure delivered");
    let path = t["result"]["failure_log"].as_str().expect("path");
    let bytes = reqwest::blocking::get(format!("{}/v1/programs/{program}/fs{path}", server.url))
        .expect("read")
        .text()
        .expect("text");
    assert!(bytes.contains("prover_failed"), "{bytes}");
}

/// Nonces outlive the process: a signed request captured before a restart is refused after it.
#[test]
fn a_signed_request_cannot_be_replayed_after_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let secrets = secrets_file(tmp.path());
    let args = ["--workers", "0", "--worker-secret-file", secrets.to_str().expect("path")];
    let data = tmp.path().join("data");
    let server = Server::start(bin(), &data, "dev", &args).expect("server");
    let speaker = Speaker::new(&server.url, "w1", "secret-of-worker-one");
    let path = "/v1/worker/lease";
    let captured = speaker.sign("POST", path, &lease_request("dev", zkcoproc_zkvm::RISC0_VERSION, 0));
    assert_eq!(speaker.send("POST", path, &captured).0, 204);
    drop(server);
    let server = Server::start(bin(), &data, "dev", &args).expect("restart");
    let speaker = Speaker::new(&server.url, "w1", "secret-of-worker-one");
    let (status, body) = speaker.send("POST", path, &captured);
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("replayed_request")), "{body}");
    // A fresh signature still works.
    assert_eq!(speaker.lease(0).0, 204);
}

/// One bad credential cannot fail the queue: a worker answering every lease with an error is kept
/// off the tasks it failed while an honest (slower) worker asks for work, then quarantined; every
/// task is proven.
#[test]
fn a_worker_failing_every_lease_is_kept_off_and_quarantined_while_an_honest_one_proves() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, secrets) =
        worker_service(tmp.path(), &["--quarantine-after", "2", "--quarantine-ms", "60000"]);
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    let _honest = worker(&server, &secrets, "w2", &["--dev-delay-ms", "1500"]);
    std::thread::sleep(Duration::from_millis(1500)); // it is asking for work
    let tasks: Vec<String> =
        (1..=3).map(|n| api.prove(&program, &json!({ "n": n })).expect("prove")).collect();
    let evil = Speaker::new(&server.url, "evil", "secret-of-the-evil-one");
    let start = std::time::Instant::now();
    let mut failed = Vec::new();
    let refusal = loop {
        assert!(start.elapsed() < Duration::from_secs(30), "never quarantined; failed {failed:?}");
        let (status, lease) = evil.lease(0);
        match status {
            200 => {
                let task = lease["task_id"].as_str().expect("task").to_owned();
                let (status, verdict) = evil.call(
                    "POST",
                    &format!("/v1/worker/tasks/{task}/result"),
                    &json!({"lease_id": lease["lease_id"], "error": "I fail everything"}),
                );
                assert_eq!(status, 200, "{verdict}");
                failed.push(task);
            }
            204 => std::thread::sleep(Duration::from_millis(50)),
            _ => break (status, lease),
        }
    };
    assert_eq!(refusal.0, 429, "{}", refusal.1);
    assert_eq!(refusal.1["error"]["code"], "worker_quarantined", "{}", refusal.1);
    let distinct: HashSet<&String> = failed.iter().collect();
    assert_eq!(
        distinct.len(),
        failed.len(),
        "a task was leased again to the worker that failed it: {failed:?}"
    );
    for task in &tasks {
        let t = api.wait_task(task, Duration::from_secs(60)).expect("task");
        assert_eq!(t["status"], "done", "{t}");
    }
    let metrics =
        reqwest::blocking::get(format!("{}/metrics", server.url)).expect("metrics").text().expect("text");
    assert!(metrics.contains("zkcoproc_workers_quarantined 1"), "{metrics}");
    assert!(server.log().contains("worker quarantined"), "the quarantine is logged");
    println!(
        "quarantine: {} failed leases, refused after {:?}; service peak memory {} MiB",
        failed.len(),
        start.elapsed(),
        server.peak_memory_mib()
    );
}

/// A worker that renews its lease forever without a result loses it at the maximum lifetime; the
/// task goes to another worker.
#[test]
fn a_lease_renewed_forever_ends_at_its_maximum_lifetime() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (server, secrets) =
        worker_service(tmp.path(), &["--prover-lease-ms", "600", "--prover-max-lease-ms", "2000"]);
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    let task = api.prove(&program, &json!({"n": 2})).expect("prove");
    let evil = Speaker::new(&server.url, "evil", "secret-of-the-evil-one");
    let (status, lease) = evil.lease(10_000);
    assert_eq!(status, 200, "{lease}");
    let start = std::time::Instant::now();
    let heartbeat = format!("/v1/worker/tasks/{task}/heartbeat");
    loop {
        assert!(start.elapsed() < Duration::from_secs(10), "the lease was renewed past its lifetime");
        let (status, answer) = evil.call("POST", &heartbeat, &json!({"lease_id": lease["lease_id"]}));
        assert_eq!(status, 200, "{answer}");
        if answer["status"] == "lost" {
            break;
        }
        assert_eq!(answer["status"], "renewed");
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(start.elapsed() >= Duration::from_millis(1500), "ended early: {:?}", start.elapsed());
    println!("lease lifetime 2 s: lost after {:?}", start.elapsed());
    let _w2 = worker(&server, &secrets, "w2", &[]);
    let t = api.wait_task(&task, Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(provers(&t), [("evil".into(), "expired".into()), ("w2".into(), "accepted".into())]);
    assert_eq!(t["provers"][0]["reason"], "lease lifetime exceeded", "{t}");
}

/// A fake service for `zkcoproc worker`: one lease whose circuit cannot be fetched (HTTP 500),
/// then no work. Records the result the worker reports.
fn flaky_service() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = results.clone();
    std::thread::spawn(move || {
        let mut leased = false;
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let (status, answer) = if path == "/v1/worker/lease" && !leased {
                leased = true;
                let lease = json!({"task_id": "t1", "lease_id": "t1/1", "program_id": "p", "image_id": "ab".repeat(32),
                    "receipt_kind": "fake", "input": "", "lease_expires_at_ms": 0, "renew_every_ms": 60_000});
                ("200 OK", lease.to_string())
            } else if path == "/v1/worker/lease" {
                std::thread::sleep(Duration::from_millis(200));
                ("204 No Content", String::new())
            } else if path.starts_with("/v1/worker/circuits/") {
                (
                    "500 Internal Server Error",
                    r#"{"error":{"code":"store_error","message":"disk on fire"}}"#.into(),
                )
            } else {
                if let Ok(mut r) = seen.lock() {
                    r.push(String::from_utf8_lossy(&body).into_owned());
                }
                ("200 OK", r#"{"accepted":false,"outcome":"retrying"}"#.into())
            };
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, results)
}

/// `zkcoproc worker` survives a failed request: it reports the lease it could not work on, backs
/// off and keeps asking, instead of exiting.
#[test]
fn a_worker_survives_a_failed_circuit_fetch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let secrets = secrets_file(tmp.path());
    let (url, results) = flaky_service();
    let log = tmp.path().join("worker.log");
    let mut w = Worker::start(bin(), &url, "w1", &secrets, &[], &log).expect("worker");
    let reported = poll(Duration::from_secs(20), || {
        Ok(results.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.first().cloned())
    })
    .expect("the worker reported the lease it could not work on");
    assert!(reported.contains("cannot fetch circuit") && reported.contains("t1/1"), "{reported}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(w.is_running(), "the worker exited: {}", std::fs::read_to_string(&log).unwrap_or_default());
}
