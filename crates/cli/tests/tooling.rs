//! Prover tooling, used as a person would from the shell: `zkcoproc task dump` writes a task's
//! circuit input, circuit, image id and arguments; `zkcoproc prove-local` proves (here:
//! executes) the dump on this machine and its receipt verifies under the service's root;
//! `zkcoproc worker --task` proves the named tasks and nothing else. The task input is readable
//! by the task's submitter and its program's owner only.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zkcoproc_testing::{hello_app, poll, Api, Server};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

fn zkcoproc(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run zkcoproc")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn a_dumped_task_proves_locally_to_the_services_output_and_verifies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &[]).expect("server");
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    let id = api.prove(&program, &json!({"n": 7})).expect("prove");
    let task = api.wait_task(&id, Duration::from_secs(120)).expect("task");
    assert_eq!(task["status"], "done", "{task}");

    let dir = tmp.path().join("dump");
    let out = zkcoproc(&["task", "dump", &id, "--out", path(&dir), "--server", &server.url]);
    assert!(out.status.success(), "task dump failed: {}", text(&out.stderr));
    let image_id = std::fs::read_to_string(dir.join("image_id")).expect("image_id");
    assert_eq!(image_id.trim(), hello_app().image_id);
    let circuit = std::fs::read(dir.join("circuit.bin")).expect("circuit.bin");
    assert_eq!(
        circuit,
        std::fs::read(&hello_app().circuit).expect("built circuit"),
        "not the deployed circuit"
    );
    let args: Value =
        serde_json::from_slice(&std::fs::read(dir.join("args.json")).expect("args.json")).expect("json");
    assert_eq!(args, json!({"n": 7}));
    let input = std::fs::read(dir.join("input.bin")).expect("input.bin");
    assert!(!input.is_empty());

    // The dump alone reproduces the service's statement: the same root and output, and a
    // receipt that verifies against the image id under a root the service knows.
    let receipt = tmp.path().join("receipt.bin");
    let out = zkcoproc(&[
        "prove-local",
        "--circuit",
        path(&dir.join("circuit.bin")),
        "--input",
        path(&dir.join("input.bin")),
        "--prover",
        "dev",
        "--out",
        path(&receipt),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "prove-local failed: {}{stdout}", text(&out.stderr));
    let line = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no `{key}` line in:\n{stdout}"))
    };
    assert_eq!(line("output:"), task["output"].as_str().expect("output"), "{stdout}");
    assert_eq!(line("root:"), task["root"].as_str().expect("root"), "{stdout}");
    assert_eq!(line("user cycles:"), task["user_cycles"].to_string(), "{stdout}");
    assert!(line("segments:").parse::<u64>().expect("segments") >= 1, "{stdout}");
    let out = zkcoproc(&[
        "verify",
        "--receipt",
        path(&receipt),
        "--image-id",
        image_id.trim(),
        "--allow-fake",
        "--server",
        &server.url,
    ]);
    assert!(out.status.success(), "verify: {}{}", text(&out.stdout), text(&out.stderr));

    // Another input is another statement: a changed byte does not give the same output.
    let mut changed = input;
    let last = changed.len() - 1;
    changed[last] ^= 0x01;
    let changed_path = tmp.path().join("changed.bin");
    std::fs::write(&changed_path, &changed).expect("write");
    let out = zkcoproc(&[
        "prove-local",
        "--circuit",
        path(&dir.join("circuit.bin")),
        "--input",
        path(&changed_path),
        "--prover",
        "dev",
    ]);
    let same =
        text(&out.stdout).contains(&format!("output:      {}", task["output"].as_str().unwrap_or("?")));
    assert!(!(out.status.success() && same), "a changed input proved the same statement");

    // A task whose controller never built an input: a clear 409, and no dump written.
    let failed = api.prove(&program, &json!({"n": "seven"})).expect("prove");
    let t = api.wait_task(&failed, Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "failed", "{t}");
    let (status, body) = api.get(&format!("/v1/tasks/{failed}/input")).expect("input");
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("no_input")), "{body}");
    let empty = tmp.path().join("empty");
    let out = zkcoproc(&["task", "dump", &failed, "--out", path(&empty), "--server", &server.url]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no circuit input"), "{}", text(&out.stderr));
    assert!(!empty.exists(), "a dump of a task without input wrote files");
    let unknown = "00000000-0000-4000-8000-000000000000";
    let (status, _) = api.get(&format!("/v1/tasks/{unknown}/input")).expect("input");
    assert_eq!(status, 404);
}

#[test]
fn only_the_submitter_and_the_owner_read_a_task_input() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let keys = tmp.path().join("api.keys");
    std::fs::write(
        &keys,
        "alice:alice-token-0123456789\nbob:bob-token-0123456789ab\nmallory:mallory-token-012345678\n",
    )
    .expect("keys");
    let args = ["--api-keys-file", path(&keys), "--workers", "0"];
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &args).expect("server");
    let alice = Api::with_key(&server.url, "alice-token-0123456789");
    let bob = Api::with_key(&server.url, "bob-token-0123456789ab");
    let program = alice.deploy(hello_app()).expect("deploy");
    let id = bob.prove(&program, &json!({"n": 2})).expect("bob submits");
    // No prover: the task waits in `proving` with its input built.
    poll(Duration::from_secs(60), || {
        let (_, t) = bob.get(&format!("/v1/tasks/{id}"))?;
        Ok((t["status"] == "proving").then_some(()))
    })
    .expect("proving");
    let read = |token: Option<&str>| {
        let mut req = reqwest::blocking::Client::new().get(format!("{}/v1/tasks/{id}/input", server.url));
        if let Some(token) = token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        let resp = req.send().expect("get");
        (resp.status().as_u16(), resp.bytes().expect("body").to_vec())
    };
    assert_eq!(read(None).0, 401);
    assert_eq!(read(Some("mallory-token-012345678")).0, 403);
    let (status, by_bob) = read(Some("bob-token-0123456789ab"));
    assert_eq!(status, 200);
    assert!(!by_bob.is_empty());
    assert_eq!(read(Some("alice-token-0123456789")), (200, by_bob));
}

/// `zkcoproc worker --prover dev --task ID...` against `server`, waited for (at most a minute).
fn named_worker(server: &Server, secrets: &Path, tasks: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(["worker", "--server", &server.url, "--prover", "dev", "--secret-file", path(secrets)]);
    for t in tasks {
        cmd.args(["--task", t]);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("worker");
    let deadline = Instant::now() + Duration::from_secs(60);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("the worker did not end: {}", text(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_worker_given_tasks_proves_those_and_ends() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let secrets: PathBuf = tmp.path().join("workers.secrets");
    std::fs::write(&secrets, "debug:secret-of-the-debugging-worker\n").expect("secrets");
    let args = ["--workers", "0", "--worker-secret-file", path(&secrets)];
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &args).expect("server");
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    let ids: Vec<String> = (1..=3).map(|n| api.prove(&program, &json!({"n": n})).expect("prove")).collect();
    for id in &ids {
        poll(Duration::from_secs(60), || {
            let (_, t) = api.get(&format!("/v1/tasks/{id}"))?;
            Ok((t["status"] == "proving").then_some(()))
        })
        .expect("proving");
    }

    // The oldest task is first in line for any worker; this one takes only the two named.
    let out = named_worker(&server, &secrets, &[&ids[1], &ids[2]]);
    assert!(out.status.success(), "worker: {}", text(&out.stderr));
    for id in &ids[1..] {
        let t = api.wait_task(id, Duration::from_secs(30)).expect("task");
        assert_eq!(t["status"], "done", "{t}");
        assert_eq!(t["provers"][0]["worker"], "debug", "{t}");
    }
    let (_, first) = api.get(&format!("/v1/tasks/{}", ids[0])).expect("task");
    assert_eq!(first["status"], "proving", "a task not named was proven: {first}");
    assert_eq!(first["provers"], json!([]), "{first}");

    // Nothing left to prove among the named: the worker says so and fails at once.
    let out = named_worker(&server, &secrets, &[&ids[1]]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("none of the named tasks is left to prove") && stderr.contains("is done"),
        "{stderr}"
    );
}

#[test]
fn a_new_app_builds_at_once_deploys_and_proves() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = tmp.path().join("myapp");
    let out = zkcoproc(&["new", path(&app), "--template", "hello"]);
    assert!(out.status.success(), "new: {}", text(&out.stderr));
    for file in [".gitignore", "README.md", "controller/Cargo.lock", "circuit/Cargo.lock"] {
        assert!(app.join(file).is_file(), "{file} missing");
    }
    let readme = std::fs::read_to_string(app.join("README.md")).expect("readme");
    assert!(readme.contains("zkcoproc build myapp"), "{readme}");
    // Not over an existing app.
    let again = zkcoproc(&["new", path(&app)]);
    assert!(!again.status.success() && text(&again.stderr).contains("not empty"));

    let out = zkcoproc(&["build", path(&app)]);
    assert!(out.status.success(), "build: {}", text(&out.stderr));
    let built = app.join("target/zkcoproc");
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &[]).expect("server");
    let api = server.api();
    let program =
        api.deploy_files(&built.join("controller.wasm"), &built.join("circuit.bin")).expect("deploy");
    let id = api.prove(&program, &json!({"n": 3})).expect("prove");
    let task = api.wait_task(&id, Duration::from_secs(120)).expect("task");
    assert_eq!(task["status"], "done", "{task}");
    // The template's statement: n (u32 LE) ‖ SHA-256 applied n times from zero.
    assert!(task["output"].as_str().expect("output").starts_with("03000000"), "{task}");
}

#[test]
fn proving_progress_reaches_the_task_the_event_stream_and_prove_wait() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let secrets: PathBuf = tmp.path().join("workers.secrets");
    std::fs::write(&secrets, "w:secret-of-the-worker\n").expect("secrets");
    // Leases renewed every 500 ms, so the worker's heartbeats carry its progress that often.
    let args = ["--workers", "0", "--worker-secret-file", path(&secrets), "--prover-lease-ms", "1500"];
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &args).expect("server");
    let program = server.api().deploy(hello_app()).expect("deploy");
    // Not a terminal: `prove --wait` prints a plain line per progress report.
    let waiting = Command::new(bin())
        .args(["prove", &program, "--args", r#"{"n": 5}"#, "--wait", "--server", &server.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prove --wait");
    // The dev worker executes (1 segment), then takes 3 s to "prove" it.
    let mut worker = Command::new(bin())
        .args(["worker", "--server", &server.url, "--prover", "dev", "--dev-delay-ms", "3000"])
        .args(["--secret-file", path(&secrets), "--max-tasks", "1"])
        .stderr(Stdio::null())
        .spawn()
        .expect("worker");
    let out = waiting.wait_with_output().expect("prove --wait");
    let _ = worker.kill();
    let _ = worker.wait();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("proving    0/1 segments"), "no progress line while proving:\n{stderr}");
    let task: Value = serde_json::from_slice(&out.stdout).expect("task JSON");
    assert_eq!(task["status"], "done", "{task}");
    // Once the proof is accepted, every segment counts as proven.
    assert_eq!(task["progress"], json!({"stage": "proving", "done": 1, "total": 1}), "{task}");
}
