//! The API end to end against a real `zkcoproc serve --prover dev` on an ephemeral port:
//! deploy, dry-run witnesses, prove, poll to done, fetch the proof, verify it.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use zkcoproc_testing::{hello_app, poll, Server};
use zkcoproc_zkvm::{ImageId, Verifier, VerifyError};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

/// What the hello circuit computes: SHA-256 iterated n times from the zero digest.
fn expected_digest(n: u32) -> [u8; 32] {
    let mut d = [0u8; 32];
    for _ in 0..n {
        d = Sha256::digest(d).into();
    }
    d
}

#[test]
fn deploy_dry_run_prove_fetch_and_verify_in_dev_mode() {
    let app = hello_app();
    let tmp = tempfile::tempdir().expect("tempdir");
    // Idle provers look for work only when told of it (not every 500 ms): a task entering proving
    // finds one waiting, always, and is leased to it in that commit.
    let server =
        Server::start(bin(), &tmp.path().join("data"), "dev", &["--poll-ms", "600000"]).expect("server");
    let api = server.api();

    let (status, health) = api.get("/health").expect("health");
    assert_eq!(status, 200);
    assert_eq!(health["prover"], "dev");
    assert_eq!(health["dev_mode"], true);

    // Deploy is content-addressed and idempotent.
    let program = api.deploy(app).expect("deploy");
    assert_eq!(program.len(), 64);
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = json!({
        "controller": b64.encode(std::fs::read(&app.controller).expect("wasm")),
        "circuit": b64.encode(std::fs::read(&app.circuit).expect("bin")),
    });
    let (status, again) = api.post("/v1/programs", &body).expect("redeploy");
    assert_eq!((status, again["program_id"].as_str()), (200, Some(program.as_str())));
    assert_eq!(again["created"], false);
    assert_eq!(again["image_id"].as_str(), Some(app.image_id.as_str()));

    let (status, info) = api.get(&format!("/v1/programs/{program}")).expect("program");
    assert_eq!(status, 200);
    assert_eq!(info["image_id"].as_str(), Some(app.image_id.as_str()));

    // Dry run: the controller's witness is n as 4 little-endian bytes.
    let (status, dry) =
        api.post(&format!("/v1/programs/{program}/witnesses"), &json!({"args": {"n": 5}})).expect("dry run");
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["witnesses"], json!([{"kind": "data", "data": "05000000"}]));
    assert_eq!(dry["logs"][0]["message"], "circuit will hash 5 times");

    // Prove and poll to done.
    let task = api.prove(&program, &json!({"n": 7})).expect("prove");
    let t = api.wait_task(&task, Duration::from_secs(120)).expect("task");
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(t["program_id"].as_str(), Some(program.as_str()));
    assert_eq!(t["receipt_kind"], "fake");
    assert_eq!(t["attempts"], 1);
    assert!(t["error"].is_null());
    for stage in ["queued", "witnessing", "proving", "verifying", "delivering", "done"] {
        assert!(t["timestamps"][stage].is_string(), "no {stage} timestamp in {t}");
    }
    let digest = hex::encode(expected_digest(7));
    let journal = format!("{}{}{}", "00".repeat(32), "07000000", digest);
    assert_eq!(t["journal"].as_str(), Some(journal.as_str()));
    assert_eq!(t["result"]["n"], 7);
    assert_eq!(t["result"]["digest"].as_str(), Some(digest.as_str()));

    // Fetch the proof and verify it: through the API, and locally.
    let (status, proof) = api.get(&format!("/v1/tasks/{task}/proof")).expect("proof");
    assert_eq!(status, 200);
    assert_eq!(proof["image_id"].as_str(), Some(app.image_id.as_str()));
    let receipt = b64.decode(proof["receipt"].as_str().expect("receipt")).expect("base64");
    let image_id = ImageId::from_hex(&app.image_id).expect("image id");
    let verified = Verifier::new(true).verify(&receipt, image_id).expect("dev verifier accepts");
    assert_eq!(hex::encode(&verified.journal), journal);
    // A fake receipt is never accepted by a verifier that is not in dev mode.
    assert!(matches!(Verifier::new(false).verify(&receipt, image_id), Err(VerifyError::FakeRejected)));

    let (status, verdict) = api.post("/v1/verify", &json!({"task_id": task})).expect("verify");
    assert_eq!(status, 200);
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["root_known"], true);
    assert_eq!(verdict["output"].as_str(), Some(format!("07000000{digest}").as_str()));

    // The same receipt checked against another image id is rejected.
    let other = json!({"receipt": b64.encode(&receipt), "image_id": "11".repeat(32)});
    let (status, verdict) = api.post("/v1/verify", &other).expect("verify other");
    assert_eq!(status, 200);
    assert_eq!(verdict["valid"], false, "{verdict}");

    // Prometheus metrics (OpenMetrics text) count what happened (counters are bumped right
    // after the commit the task JSON shows, so wait for them).
    let metrics = zkcoproc_testing::poll(Duration::from_secs(10), || {
        let m = reqwest::blocking::get(format!("{}/metrics", server.url))?.text()?;
        Ok(m.contains("zkcoproc_stage_duration_seconds_count{stage=\"delivering\"} 1").then_some(m))
    })
    .expect("metrics");
    assert!(metrics.contains("zkcoproc_tasks{status=\"done\"} 1"), "{metrics}");
    assert!(metrics.contains("zkcoproc_queue_depth 0"), "{metrics}");
    assert!(metrics.contains("zkcoproc_stage_duration_seconds_count{stage=\"proving\"} 1"), "{metrics}");
    assert!(metrics.contains("zkcoproc_runners 2"), "{metrics}");
    // The idle runners' delivery was claimed in the commit that accepted the proof: no claim of
    // its own, and every stage still in the task's history (above).
    assert!(metrics.contains("zkcoproc_deliveries_handed_total 1"), "{metrics}");
    // And the prover's lease was granted in the commit into proving (`attempts` 1, above).
    assert!(metrics.contains("zkcoproc_prover_leases_handed_total 1"), "{metrics}");

    // The CLI drives the same flow: `prove --wait` prints the final task JSON.
    let out = std::process::Command::new(bin())
        .args(["prove", &program, "--args", r#"{"n": 3}"#, "--wait", "--server", &server.url])
        .output()
        .expect("cli prove");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).expect("task json");
    assert_eq!(t["status"], "done");
    assert_eq!(t["result"]["n"], 3);
    // One progress line per stage, in order, even for stages shorter than a poll.
    let progress = String::from_utf8_lossy(&out.stderr);
    let stages: Vec<&str> = progress
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest.split_whitespace().next().unwrap_or("")))
        .collect();
    assert_eq!(stages, ["queued", "witnessing", "proving", "verifying", "delivering", "done"], "{progress}");

    // `verify --task` refuses a fake receipt unless asked to inspect it.
    let verify = |extra: &[&str]| {
        std::process::Command::new(bin())
            .args(["verify", "--task", &task, "--server", &server.url])
            .args(extra)
            .output()
            .expect("cli verify")
    };
    let refused = verify(&[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stdout).contains("NOT VERIFIED"));
    let inspected = verify(&["--allow-fake"]);
    assert!(inspected.status.success());
    assert!(String::from_utf8_lossy(&inspected.stdout).contains(&digest));
}

#[test]
fn a_failing_controller_fails_its_task_with_the_reason() {
    let app = hello_app();
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &[]).expect("server");
    let api = server.api();
    let program = api.deploy(app).expect("deploy");

    // n = 0 is refused by the controller: the task fails with its message and logs.
    let task = api.prove(&program, &json!({"n": 0})).expect("prove");
    let t = api.wait_task(&task, Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "failed");
    assert_eq!(t["error"]["code"], "controller_error");
    assert!(t["error"]["message"].as_str().unwrap_or_default().contains("n must be in"), "{t}");
    assert!(t["journal"].is_null());

    // Failures are counted by code (right after the commit the task is seen by, so poll).
    zkcoproc_testing::poll(Duration::from_secs(10), || {
        let metrics = reqwest::blocking::get(format!("{}/metrics", server.url))?.text()?;
        Ok(metrics.contains("zkcoproc_task_failures_total{code=\"controller_error\"} 1").then_some(()))
    })
    .expect("failure counted");

    // The proof of a failed task is not available.
    let (status, body) = api.get(&format!("/v1/tasks/{task}/proof")).expect("proof");
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "proof_not_ready");

    // Receipt kinds the service cannot make are refused up front, with the reason.
    let (status, body) = api
        .post(
            &format!("/v1/programs/{program}/proofs"),
            &json!({"args": {"n": 1}, "receipt_kind": "nonsense"}),
        )
        .expect("bad kind");
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_receipt_kind")));

    // A root the service never had is refused.
    let (status, body) = api
        .post(&format!("/v1/programs/{program}/proofs"), &json!({"args": {"n": 1}, "root": "ab".repeat(32)}))
        .expect("bad root");
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_root")));
}

/// `/openapi.json` is an OpenAPI 3 document, and every operation it documents is a route of the
/// service (none answers the router's "no such endpoint" or "method not allowed").
#[test]
fn the_openapi_document_describes_real_routes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &[]).expect("server");
    let api = server.api();
    let (status, doc) = api.get("/openapi.json").expect("openapi");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    for contract in
        ["/v1/programs", "/v1/programs/{id}/proofs", "/v1/tasks/{id}", "/v1/verify", "/openapi.json"]
    {
        assert!(paths.contains_key(contract), "{contract} is not documented");
    }
    let http = reqwest::blocking::Client::new();
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "0e3a4a5e-1b8a-4d36-9a1e-4b7a7e2f1c00")
            .replace("{root}", &"00".repeat(32))
            .replace("{image_id}", &"00".repeat(32))
            .replace("{name}", "ethereum")
            .replace("{number}", "1")
            .replace("{path}", "x.txt");
        for method in item.as_object().expect("path item").keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let resp = http
                .request(method.clone(), format!("{}{concrete}", api.url()))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .expect("request");
            let status = resp.status().as_u16();
            // An event stream that opened runs until the client goes: only its status counts.
            let streaming = resp.headers().get("content-type").is_some_and(|t| t == "text/event-stream");
            let body: Value = if streaming { Value::Null } else { resp.json().unwrap_or(Value::Null) };
            assert_ne!(status, 405, "{method} {path} is documented but not routed: {body}");
            assert_ne!(
                body["error"]["message"], "no such endpoint",
                "{method} {path} is documented but not routed"
            );
            operations += 1;
        }
    }
    assert!(operations >= 24, "only {operations} operations documented");
}

/// `--runners 0`: tasks stay queued; `--workers 0`: tasks are witnessed and wait in `proving` for
/// a remote worker. `/metrics` reports runners and in-process provers apart.
#[test]
fn runners_and_workers_flags_do_what_they_say() {
    let app = hello_app();
    let tmp = tempfile::tempdir().expect("tempdir");
    let metric = |api: &zkcoproc_testing::Api, name: &str| -> Option<String> {
        let resp = reqwest::blocking::get(format!("{}/metrics", api.url())).ok()?.text().ok()?;
        resp.lines().find(|l| l.starts_with(&format!("{name} "))).map(|l| l[name.len() + 1..].to_owned())
    };

    let server = Server::start(bin(), &tmp.path().join("r0"), "dev", &["--runners", "0"]).expect("server");
    let api = server.api();
    let program = api.deploy(app).expect("deploy");
    let task = api.prove(&program, &json!({"n": 1})).expect("prove");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, t) = api.get(&format!("/v1/tasks/{task}")).expect("task");
    assert_eq!(t["status"], "queued", "{t}");
    assert_eq!(metric(&api, "zkcoproc_runners").as_deref(), Some("0"));
    drop(server);

    let args = ["--workers", "0", "--runners", "3"];
    let server = Server::start(bin(), &tmp.path().join("w0"), "dev", &args).expect("server");
    let api = server.api();
    let program = api.deploy(app).expect("deploy");
    let task = api.prove(&program, &json!({"n": 1})).expect("prove");
    poll(Duration::from_secs(30), || {
        let (_, t) = api.get(&format!("/v1/tasks/{task}"))?;
        Ok((t["status"] == "proving").then_some(()))
    })
    .expect("witnessed, waiting for a prover");
    std::thread::sleep(Duration::from_millis(1000));
    let (_, t) = api.get(&format!("/v1/tasks/{task}")).expect("task");
    assert_eq!(t["status"], "proving", "no in-process prover, no worker: {t}");
    assert_eq!(metric(&api, "zkcoproc_runners").as_deref(), Some("3"));
    assert_eq!(metric(&api, "zkcoproc_provers").as_deref(), Some("0"));
}
