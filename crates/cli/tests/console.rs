//! The web console in a real browser (Debian's Chromium, driven by Playwright through npm's
//! `playwright-core`): `tests/console/console.cjs` signs in with an API key, deploys `examples/hello`
//! from files, requests a proof, watches the task page reach `done` without a reload, verifies it,
//! downloads the receipt and a file of the volume, and opens every page. This test starts the
//! service, runs the script and checks what it saw against the API. Screenshots are kept in
//! `$CARGO_TARGET_DIR/console-screenshots/` (not committed).
//!
//! Without Chromium or playwright-core (installed by `scripts/test.sh`) the test is skipped with
//! a notice, unless `ZKCOPROC_REQUIRE_BROWSER=1` makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use zkcoproc_testing::anvil::npm_bin;
use zkcoproc_testing::{hello_app, Api, Server};

const KEYS: &str = "alice:alice-console-token-0123456789\nbob:bob-console-token-0123456789\n";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

/// A dev-mode service with the identities of [`KEYS`].
fn keyed_server(tmp: &Path) -> Server {
    let keys = tmp.join("api.keys");
    std::fs::write(&keys, KEYS).expect("keys");
    Server::start(bin(), &tmp.join("data"), "dev", &["--api-keys-file", keys.to_str().expect("path")])
        .expect("server")
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| zkcoproc_testing::repo_root().join("target"));
    target.join("console-screenshots")
}

#[test]
fn a_person_deploys_proves_watches_verifies_and_downloads_in_the_console() {
    let chromium = Path::new("/usr/bin/chromium");
    // npm_bin gives node_modules/.bin/<tool>; the package sits beside it.
    let modules = npm_bin("x").parent().and_then(Path::parent).map(Path::to_path_buf).expect("npm dir");
    if !chromium.exists() || !modules.join("playwright-core").exists() {
        let message = format!(
            "no browser for the console test ({} / {}): run scripts/test.sh, which installs both",
            chromium.display(),
            modules.join("playwright-core").display()
        );
        assert!(std::env::var("ZKCOPROC_REQUIRE_BROWSER").as_deref() != Ok("1"), "{message}");
        eprintln!("SKIPPED: {message}");
        return;
    }
    let app = hello_app();
    let tmp = tempfile::tempdir().expect("tmp");
    let server = keyed_server(tmp.path());
    let out = screenshots();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("screenshot dir");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/console.cjs");
    let status = Command::new("node")
        .arg(&script)
        .env("NODE_PATH", &modules)
        .env("URL", &server.url)
        .env("KEY", "alice-console-token-0123456789")
        .env("CONTROLLER", &app.controller)
        .env("CIRCUIT", &app.circuit)
        .env("OUT", &out)
        .env("CHROMIUM", chromium)
        .status()
        .expect("node");
    assert!(
        status.success(),
        "the browser script failed (see its output above); server log:\n{}",
        server.log()
    );

    let results: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).expect("results")).expect("json");
    let str_of = |k: &str| results[k].as_str().unwrap_or_default().to_owned();
    assert_eq!(results["problems"], serde_json::json!([]), "the page logged errors");
    assert_eq!(str_of("identity"), "signed in as alice");
    assert_eq!(results["reloads"], 0, "the task page followed the task without a reload");
    assert_eq!(results["task_streams"], 1, "the task page stops following a finished task");
    assert!(str_of("markup_shown").contains("<img src=x"), "the hostile text is shown as text: {results}");
    assert_eq!(results["markup_ran"], false, "markup from the service became page content");

    // What the browser showed is what the service has.
    let api = Api::with_key(&server.url, "alice-console-token-0123456789");
    let (_, program) = api.get(&format!("/v1/programs/{}", str_of("program_id"))).expect("program");
    assert_eq!(program["image_id"].as_str(), Some(app.image_id.as_str()));
    assert_eq!(program["owner"], "alice", "deployed with the key entered in the page");
    for task in ["task_id", "second_task_id"] {
        let (_, t) = api.get(&format!("/v1/tasks/{}", str_of(task))).expect("task");
        assert_eq!(t["status"], "done", "{t}");
    }
    let (_, task) = api.get(&format!("/v1/tasks/{}", str_of("task_id"))).expect("task");
    let journal = task["journal"].as_str().expect("journal");
    assert_eq!(str_of("journal_root"), journal[..64], "the journal's root as shown");
    assert_eq!(results["timeline"].as_u64(), task["history"].as_array().map(|h| h.len() as u64));
    assert!(str_of("verdict").starts_with("Valid"), "{}", str_of("verdict"));
    let (_, proof) = api.get(&format!("/v1/tasks/{}/proof", str_of("task_id"))).expect("proof");
    use base64::Engine as _;
    let receipt = base64::engine::general_purpose::STANDARD
        .decode(proof["receipt"].as_str().expect("receipt"))
        .expect("base64");
    assert_eq!(std::fs::read(out.join("receipt.bin")).expect("downloaded receipt"), receipt);
    // The downloaded file is the receipt the entrypoint wrote to the volume, as stored.
    let file = str_of("file");
    let written = task["result"]["receipt"].as_str().expect("the entrypoint's result names its file");
    assert!(file.eq_ignore_ascii_case(written), "{file} vs {written}");
    let url = format!("{}/v1/programs/{}/fs{}", server.url, str_of("program_id"), file);
    let stored = reqwest::blocking::Client::new()
        .get(url)
        .bearer_auth("alice-console-token-0123456789")
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.bytes())
        .expect("file through the API");
    assert!(!stored.is_empty());
    assert_eq!(
        std::fs::read(out.join("downloaded.bin")).expect("downloaded file"),
        stored.to_vec(),
        "{file}"
    );
    // The workers page lists the in-process provers that took the tasks, as the API does.
    let (_, workers) = api.get("/v1/workers").expect("workers");
    let listed = workers["workers"].as_array().map(Vec::len).expect("workers");
    assert!(listed >= 1 && results["workers"] == listed, "{workers} vs {results}");
    for page in ["programs", "program", "task", "tasks", "root", "workers", "api"] {
        assert!(out.join(format!("{page}.png")).exists(), "screenshot of {page}");
    }
}

/// The listings behind the console show each identity only its own: bob sees neither alice's
/// program nor its tasks, in the lists or on the event stream, and without a key every listing
/// is refused.
#[test]
fn listings_show_each_identity_only_its_own() {
    let app = hello_app();
    let tmp = tempfile::tempdir().expect("tmp");
    let server = keyed_server(tmp.path());
    let alice = Api::with_key(&server.url, "alice-console-token-0123456789");
    let bob = Api::with_key(&server.url, "bob-console-token-0123456789");
    let program = alice.deploy(app).expect("deploy");
    // Bob's event stream, opened before alice's task exists.
    let mut events = reqwest::blocking::Client::new()
        .get(format!("{}/v1/events", server.url))
        .bearer_auth("bob-console-token-0123456789")
        .send()
        .expect("bob's stream");
    assert_eq!(events.status(), 200);
    let task = alice.prove(&program, &serde_json::json!({"n": 1})).expect("prove");
    alice.wait_task(&task, std::time::Duration::from_secs(120)).expect("done");
    // Bob asks for a proof of alice's program: that task he may see.
    let own = bob.prove(&program, &serde_json::json!({"n": 2})).expect("bob proves");
    bob.wait_task(&own, std::time::Duration::from_secs(120)).expect("done");

    let ids = |api: &Api, path: &str, list: &str, key: &str| -> Vec<String> {
        let (status, body) = api.get(path).expect("list");
        assert_eq!(status, 200, "{body}");
        body[list]
            .as_array()
            .expect("list")
            .iter()
            .map(|v| v[key].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(ids(&alice, "/v1/programs", "programs", "program_id"), [program.as_str()]);
    assert!(ids(&bob, "/v1/programs", "programs", "program_id").is_empty());
    assert_eq!(
        ids(&alice, "/v1/tasks", "tasks", "id"),
        [own.as_str(), task.as_str()],
        "alice owns the program"
    );
    assert_eq!(ids(&bob, "/v1/tasks", "tasks", "id"), [own.as_str()], "bob sees only his own task");
    assert_eq!(ids(&alice, "/v1/tasks?status=done&limit=1", "tasks", "id"), [own.as_str()]);
    let (status, body) = alice.get("/v1/tasks?status=bogus").expect("bad status");
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_status")));
    // Only the owner rotates a program's webhook secret.
    let rotate = format!("/v1/programs/{program}/webhook-secret");
    assert_eq!(bob.post(&rotate, &serde_json::json!({})).expect("bob rotates").0, 403);
    assert_eq!(alice.post(&rotate, &serde_json::json!({})).expect("alice rotates").0, 200);
    let (_, me) = bob.get("/v1/identity").expect("identity");
    assert_eq!((me["identity"].as_str(), me["keys_required"].as_bool()), (Some("bob"), Some(true)));
    let anonymous = Api::new(&server.url);
    for path in ["/v1/programs", "/v1/tasks", "/v1/workers", "/v1/events", "/v1/identity"] {
        assert_eq!(anonymous.get(path).expect("anonymous").0, 401, "{path}");
    }

    // Bob's stream carried his task's changes and none of alice's task.
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    use std::io::Read as _;
    while !seen.contains("\"status\":\"done\"") {
        let n = events.read(&mut buf).expect("read the stream");
        assert!(n > 0, "stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains(&own), "{seen}");
    assert!(!seen.contains(&task), "bob's stream showed alice's task: {seen}");
}
