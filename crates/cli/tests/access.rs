//! No outsider can stall or abuse the service: API keys and owners, per-identity quotas, global
//! limits, request sizes and read deadlines, retention. Each test is an attack that worked before.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use zkcoproc_testing::{hello_app, hostile_controller, poll, Api, Server};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

const KEYS: &str = "# identities\nalice:alice-token-0123456789\nbob:bob-token-0123456789ab\nmallory:mallory-token-012345678\n";

fn keyed_server(tmp: &Path, extra: &[&str]) -> Server {
    let keys = tmp.join("api.keys");
    std::fs::write(&keys, KEYS).expect("keys");
    let mut args = vec!["--api-keys-file", keys.to_str().expect("path")];
    args.extend_from_slice(extra);
    Server::start(bin(), &tmp.join("data"), "dev", &args).expect("server")
}

#[test]
fn api_keys_name_identities_and_only_owners_read_volumes_dry_run_or_cancel() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = keyed_server(tmp.path(), &["--workers", "0"]);
    let anonymous = server.api();
    let alice = Api::with_key(&server.url, "alice-token-0123456789");
    let bob = Api::with_key(&server.url, "bob-token-0123456789ab");
    let mallory = Api::with_key(&server.url, "mallory-token-012345678");
    let wrong = Api::with_key(&server.url, "alice-token-0123456780");

    // Deploying needs a key; a wrong one is as good as none.
    let err = anonymous.deploy(hello_app()).expect_err("anonymous deploy");
    assert!(err.to_string().contains("401"), "{err}");
    let err = wrong.deploy(hello_app()).expect_err("wrong key");
    assert!(err.to_string().contains("401") && err.to_string().contains("unknown API key"), "{err}");
    let program = alice.deploy(hello_app()).expect("alice deploys");
    // Deploying the same program again does not make bob its owner.
    assert_eq!(bob.deploy(hello_app()).expect("bob deploys the same"), program);
    let (_, info) = anonymous.get(&format!("/v1/programs/{program}")).expect("program");
    assert_eq!(info["owner"], "alice", "{info}");

    // Program-private routes: the owner only.
    let private = [
        format!("/v1/programs/{program}/fs"),
        format!("/v1/programs/{program}/volume"),
        format!("/v1/programs/{program}/fs/NOFILE.TXT"),
    ];
    for path in &private {
        let (status, body) = anonymous.get(path).expect("get");
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{path}: {body}");
        let (status, body) = bob.get(path).expect("get");
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{path}: {body}");
    }
    let (status, _) = alice.get(&private[0]).expect("alice lists");
    assert_eq!(status, 200);
    let dry = format!("/v1/programs/{program}/witnesses");
    let (status, body) = bob.post(&dry, &json!({"args": {"n": 1}})).expect("dry run");
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, body) = alice.post(&dry, &json!({"args": {"n": 1}})).expect("dry run");
    assert_eq!(status, 200, "{body}");

    // Anyone with a key may prove with a program; nobody without one.
    let err = anonymous.prove(&program, &json!({"n": 1})).expect_err("anonymous submit");
    assert!(err.to_string().contains("401"), "{err}");
    let bobs = bob.prove(&program, &json!({"n": 1})).expect("bob submits");
    let alices = alice.prove(&program, &json!({"n": 2})).expect("alice submits");
    let (_, t) = anonymous.get(&format!("/v1/tasks/{bobs}")).expect("task");
    assert_eq!(t["submitter"], "bob", "{t}");

    // Cancelling: the submitter or the program's owner, nobody else.
    let (status, body) = mallory.delete(&format!("/v1/tasks/{bobs}")).expect("cancel");
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, body) = anonymous.delete(&format!("/v1/tasks/{bobs}")).expect("cancel");
    assert_eq!(status, 401, "{body}");
    let (status, body) = bob.delete(&format!("/v1/tasks/{alices}")).expect("cancel");
    assert_eq!(status, 403, "bob may not cancel the owner's task: {body}");
    let (status, body) = bob.delete(&format!("/v1/tasks/{bobs}")).expect("cancel");
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")), "{body}");
    let (status, body) = alice.delete(&format!("/v1/tasks/{alices}")).expect("cancel");
    assert_eq!(status, 200, "{body}");
    let again = bob.prove(&program, &json!({"n": 3})).expect("bob submits");
    let (status, body) = alice.delete(&format!("/v1/tasks/{again}")).expect("owner cancels");
    assert_eq!(status, 200, "the program's owner may cancel any of its tasks: {body}");

    // Idempotency keys are per identity: bob's key never finds alice's task, and a conflict
    // names no task.
    let submit = |token: &str, n: u64| {
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/v1/programs/{program}/proofs", server.url))
            .header("Idempotency-Key", "order-1")
            .header("Authorization", format!("Bearer {token}"))
            .json(&json!({"args": {"n": n}}))
            .send()
            .expect("submit");
        (resp.status().as_u16(), resp.json::<serde_json::Value>().expect("json"))
    };
    let (alice_token, bob_token) = ("alice-token-0123456789", "bob-token-0123456789ab");
    let (s1, a1) = submit(alice_token, 5);
    let (s2, b1) = submit(bob_token, 5);
    assert_eq!((s1, s2), (202, 202));
    assert_ne!(a1["task_id"], b1["task_id"], "bob's key found alice's task");
    assert_eq!(b1["replayed"], false);
    let (s3, a2) = submit(alice_token, 5);
    assert_eq!((s3, &a2["task_id"], &a2["replayed"]), (202, &a1["task_id"], &json!(true)));
    let (s4, conflict) = submit(alice_token, 6);
    assert_eq!(s4, 409, "{conflict}");
    let message = conflict["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.contains(a1["task_id"].as_str().unwrap_or("?")), "{message}");
    println!("identities: service peak memory {} MiB", server.peak_memory_mib());
}

#[test]
fn an_open_service_listens_on_loopback_only_unless_told() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--prover", "dev", "--data"])
        .arg(tmp.path().join("data"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--api-keys-file") && stderr.contains("--insecure-open"), "{stderr}");
    // Told, it serves (and says it is open).
    let server = Server::start(bin(), &tmp.path().join("data2"), "dev", &["--insecure-open"])
        .expect("an open service on loopback");
    drop(server);
}

#[test]
fn quotas_answer_429_and_503_with_retry_after() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = keyed_server(
        tmp.path(),
        &[
            "--workers",
            "0",
            "--runners",
            "0",
            "--max-queued-per-identity",
            "2",
            "--submit-burst",
            "4",
            "--submit-rate",
            "0.01",
            "--max-event-streams",
            "1",
        ],
    );
    let alice = Api::with_key(&server.url, "alice-token-0123456789");
    let bob = Api::with_key(&server.url, "bob-token-0123456789ab");
    let program = alice.deploy(hello_app()).expect("deploy");
    let send = |token: &str, n: u64| {
        reqwest::blocking::Client::new()
            .post(format!("{}/v1/programs/{program}/proofs", server.url))
            .header("Authorization", format!("Bearer {token}"))
            .json(&json!({"args": {"n": n}}))
            .send()
            .expect("submit")
    };
    let alice_token = "alice-token-0123456789";
    let first = send(alice_token, 1);
    assert_eq!(first.status().as_u16(), 202);
    let first: serde_json::Value = first.json().expect("json");
    assert_eq!(send(alice_token, 2).status().as_u16(), 202);
    // Two unfinished tasks: the third is refused, and says when to come back.
    let third = send(alice_token, 3);
    assert_eq!(third.status().as_u16(), 429);
    assert!(third.headers().get("retry-after").is_some());
    let body: serde_json::Value = third.json().expect("json");
    assert_eq!(body["error"]["code"], "too_many_tasks", "{body}");
    // Another identity is not held back by alice's tasks.
    assert_eq!(send("bob-token-0123456789ab", 1).status().as_u16(), 202);
    // The submit rate: alice's burst of 4 is used up (3 above, the refused one included).
    assert_eq!(send(alice_token, 4).status().as_u16(), 429);
    let fifth = send(alice_token, 5);
    assert_eq!(fifth.status().as_u16(), 429);
    let retry: u64 = fifth.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!(retry >= 1, "{retry}");
    let body: serde_json::Value = fifth.json().expect("json");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    drop(bob);

    // One event stream at a time: a second gets 503 at once, with Retry-After.
    let task = first["task_id"].as_str().expect("task id").to_owned();
    let events = format!("{}/v1/tasks/{task}/events", server.url);
    let stream = reqwest::blocking::Client::new().get(&events).send().expect("stream");
    assert_eq!(stream.status().as_u16(), 200);
    let second = reqwest::blocking::get(&events).expect("second stream");
    assert_eq!(second.status().as_u16(), 503);
    assert!(second.headers().get("retry-after").is_some());
    drop(stream);
    // Its slot comes back when the first stream closes.
    poll(Duration::from_secs(10), || {
        let resp = reqwest::blocking::Client::new().get(&events).send()?;
        Ok((resp.status().as_u16() == 200).then_some(()))
    })
    .expect("the slot was released");
    println!("quotas: service peak memory {} MiB", server.peak_memory_mib());
}

/// A client that writes its whole request before reading the answer (as many do) is told why
/// a deploy was refused: the service answers 401 before reading the body, then reads the rest of
/// it. Before, it closed the connection on the unread body and such a client saw a broken pipe
/// or a reset, never the 401.
#[test]
fn a_refused_upload_is_answered_to_a_client_that_writes_it_whole_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = keyed_server(tmp.path(), &["--workers", "0"]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let body = format!("{{\"controller\":\"{}\",\"circuit\":\"AA==\"}}", "A".repeat(8 << 20));
    for _ in 0..3 {
        let mut client = std::net::TcpStream::connect(&addr).expect("connect");
        client.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let head = format!(
            "POST /v1/programs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        client.write_all(head.as_bytes()).expect("headers");
        client.write_all(body.as_bytes()).expect("the body is read, not refused with a reset");
        let mut answer = String::new();
        let _ = client.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 401"), "no 401 after the body: {answer:?}");
        assert!(answer.contains("unauthorized"), "{answer}");
    }
    let (status, _) = server.api().get("/health").expect("health");
    assert_eq!(status, 200);
}

#[test]
fn oversized_args_are_refused_before_parsing_and_slow_clients_are_cut_off() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        bin(),
        &tmp.path().join("data"),
        "dev",
        &["--workers", "0", "--header-timeout-ms", "500", "--body-timeout-ms", "1000"],
    )
    .expect("server");
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    // 2 MiB of args (over the 1 MiB limit): 413, before they become a JSON value.
    let big = json!({"args": {"pad": "x".repeat(2 << 20)}});
    for path in [format!("/v1/programs/{program}/proofs"), format!("/v1/programs/{program}/witnesses")] {
        let (status, body) = api.post(&path, &big).expect("post");
        assert_eq!((status, body["error"]["code"].as_str()), (413, Some("args_too_large")), "{path}: {body}");
    }

    let addr = server.url.trim_start_matches("http://").to_owned();
    // Slowloris: headers that never end. The connection is closed at the header deadline.
    let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").expect("write");
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let n = slow.read(&mut buf).unwrap_or(0);
    let held = start.elapsed();
    assert!(held < Duration::from_secs(5), "a client sending no end of headers held a connection {held:?}");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A body that never comes: 408 at the body deadline.
    let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let head = format!(
        "POST /v1/programs/{program}/proofs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    slow.write_all(head.as_bytes()).expect("write");
    let start = Instant::now();
    let n = slow.read(&mut buf).unwrap_or(0);
    assert!(start.elapsed() < Duration::from_secs(5), "a body that never came held the request");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408") || answer.contains(" 400 "), "{answer}");
    // The service still serves.
    let (status, _) = api.get("/health").expect("health");
    assert_eq!(status, 200);
    println!(
        "sizes and deadlines: headers cut after {held:?}; service peak memory {} MiB",
        server.peak_memory_mib()
    );
}

/// A client that asks for a volume export and then stops reading holds a volume-read slot only
/// until the export's idle deadline: then the export is cut off, short of its length, and the
/// slot serves other reads. Before the deadline existed, one such client per slot kept every
/// program's `fs` reads and exports at 503 for as long as it kept its connections open.
#[test]
fn a_volume_export_its_client_stopped_reading_is_cut_off_and_frees_its_slot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let args = ["--workers", "0", "--max-volume-reads", "1", "--export-idle-ms", "2000"];
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &args).expect("server");
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    let addr = server.url.trim_start_matches("http://").to_owned();
    // The export of a 256 MiB volume starts; the client reads the status line and no more.
    let mut stalled = std::net::TcpStream::connect(&addr).expect("connect");
    stalled.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let request = format!("GET /v1/programs/{program}/volume HTTP/1.1\r\nHost: x\r\n\r\n");
    stalled.write_all(request.as_bytes()).expect("write");
    let mut status_line = [0u8; 12];
    stalled.read_exact(&mut status_line).expect("status line");
    assert_eq!(&status_line, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&status_line));
    // A reader that keeps taking data (up to 1 MiB every 100 ms) is not cut off, three times the
    // deadline long. (How slow a reader may be depends on the kernel's socket buffers too: a
    // writer is woken only once a good part of its send buffer has drained.)
    let mut buf = vec![0u8; 1 << 20];
    let (steady, mut got) = (Instant::now(), 0usize);
    while steady.elapsed() < Duration::from_secs(6) {
        let n = stalled.read(&mut buf).expect("a steady reader is served");
        assert!(n > 0, "a steady reader was cut off after {:?} and {got} bytes", steady.elapsed());
        got += n;
        std::thread::sleep(Duration::from_millis(100));
    }
    let cut = server.log().lines().filter(|l| l.contains("volume export cut off")).count();
    assert_eq!(cut, 0, "a steady reader was cut off (it had {got} bytes)");
    // Now it stops reading.
    // The only volume-read slot frees up once the export has waited two seconds for its client.
    let start = Instant::now();
    let listed = poll(Duration::from_secs(20), || {
        let (status, body) = api.get(&format!("/v1/programs/{program}/fs"))?;
        Ok((status == 200).then_some(body))
    })
    .unwrap_or_else(|e| panic!("a stalled export kept the volume-read slot: {e:#}"));
    assert!(listed["entries"].is_array(), "{listed}");
    let waited = start.elapsed();
    // The stalled client, reading again, gets the connection closed short of the image.
    while let Ok(n) = stalled.read(&mut buf) {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(got < 256 << 20, "the stalled client got the whole image ({got} bytes)");
    println!("stalled export: slot free after {waited:?}, the client had {} MiB of 256", got >> 20);
}

/// Dry runs cannot stall the pipeline: a caller who fills every dry-run slot with a controller
/// that sleeps until its deadline does not delay another program's tasks, whose controller calls
/// take their slots from a pool of their own. Before, dry runs and task stages shared one pool of
/// a call per core, and such dry runs held every task up until they timed out, one after another.
#[test]
fn dry_runs_that_sleep_until_their_deadline_do_not_hold_up_tasks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Five API slots, so that one client may hold the four sleepers (one caller never holds
    // the last free slot).
    let args = ["--controller-timeout-ms", "8000", "--max-dry-runs", "5"];
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &args).expect("server");
    let api = server.api();
    let hostile = api.deploy_files(hostile_controller(), &hello_app().circuit).expect("deploy hostile");
    let hello = api.deploy(hello_app()).expect("deploy hello");
    let path = format!("/v1/programs/{hostile}/witnesses");
    let sleepers: Vec<_> = (0..4)
        .map(|_| {
            let (api, path) = (server.api(), path.clone());
            std::thread::spawn(move || api.post(&path, &json!({"args": {"mode": "sleep"}})))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let task = api.prove(&hello, &json!({"n": 3})).expect("submit");
    let done = api.wait_task(&task, Duration::from_secs(6)).unwrap_or_else(|e| {
        panic!("a task waited behind sleeping dry runs: {e:#}");
    });
    assert_eq!(done["status"], "done", "{done}");
    let took = start.elapsed();
    for sleeper in sleepers {
        let (status, body) = sleeper.join().expect("thread").expect("dry run answered");
        assert_ne!(status, 200, "a dry run that slept past its deadline succeeded: {body}");
    }
    println!("a task beside 4 sleeping dry runs: done in {took:?}");
}

/// Mallory keeps more dry runs going than there are slots, each a controller that sleeps until
/// its deadline and sent again as soon as it ends. Before, slots went in arrival order: her
/// waiting calls took every slot that freed and bob's dry run got 503 after its 2 s wait. Now
/// she never holds the last free API slot, and a freed controller slot goes to the caller
/// holding fewest: bob's dry run waits at most for one of her calls to end.
#[test]
fn one_identity_cannot_hold_every_dry_run_slot() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = keyed_server(tmp.path(), &["--controller-timeout-ms", "3000", "--max-dry-runs", "4"]);
    let mallory = Api::with_key(&server.url, "mallory-token-012345678");
    let bob = Api::with_key(&server.url, "bob-token-0123456789ab");
    let hostile = mallory.deploy_files(hostile_controller(), &hello_app().circuit).expect("deploy hostile");
    let hello = bob.deploy(hello_app()).expect("deploy hello");
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let floods: Vec<_> = (0..8)
        .map(|_| {
            let (mallory, stop, refused) = (mallory.clone(), stop.clone(), refused.clone());
            let path = format!("/v1/programs/{hostile}/witnesses");
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let (status, body) =
                        mallory.post(&path, &json!({"args": {"mode": "sleep"}})).expect("answered");
                    assert_ne!(status, 200, "a sleeping dry run succeeded: {body}");
                    if status == 503 {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let path = format!("/v1/programs/{hello}/witnesses");
    let mut took = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let (status, body) = bob.post(&path, &json!({"args": {"n": 3}})).expect("bob's dry run");
        assert_eq!(status, 200, "bob's dry run beside mallory's sleeping ones: {body}");
        took.push(start.elapsed());
        // One deadline of hers (3 s) at most, plus margin.
        assert!(start.elapsed() < Duration::from_millis(4_500), "bob's dry run took {:?}", start.elapsed());
    }
    stop.store(true, Ordering::SeqCst);
    for flood in floods {
        flood.join().expect("mallory's thread");
    }
    // Her calls did fill the slots: some of her own were turned away.
    assert!(refused.load(Ordering::SeqCst) > 0, "mallory's dry runs never filled the slots");
    println!("bob's dry runs beside 8 of mallory's sleeping ones: {took:?}");
}

#[test]
fn a_backlog_of_sleeping_tasks_does_not_hold_up_another_identitys_task() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // One runner, so that each of mallory's tasks holds every controller stage for its deadline.
    let server = keyed_server(tmp.path(), &["--runners", "1", "--controller-timeout-ms", "1500"]);
    let mallory = Api::with_key(&server.url, "mallory-token-012345678");
    let bob = Api::with_key(&server.url, "bob-token-0123456789ab");
    let hostile = mallory.deploy_files(hostile_controller(), &hello_app().circuit).expect("deploy hostile");
    let hello = bob.deploy(hello_app()).expect("deploy hello");
    // Mallory queues 12 tasks whose controller sleeps until its deadline: 18 s of the runner.
    let sleepers: Vec<String> =
        (0..12).map(|_| mallory.prove(&hostile, &json!({"mode": "sleep"})).expect("submit")).collect();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let task = bob.prove(&hello, &json!({"n": 3})).expect("submit");
    // Bob's task waits for the sleeping call in progress, not for the backlog behind it: at most
    // one deadline before witnessing and one before delivering.
    let done = bob.wait_task(&task, Duration::from_secs(8)).unwrap_or_else(|e| {
        panic!("bob's task waited behind mallory's backlog: {e:#}");
    });
    assert_eq!(done["status"], "done", "{done}");
    let took = start.elapsed();
    let waiting = sleepers
        .iter()
        .filter(|t| {
            let (_, t) = mallory.get(&format!("/v1/tasks/{t}")).expect("task");
            t["status"] == "queued"
        })
        .count();
    assert!(waiting >= 6, "mallory's backlog ran first: only {waiting} of 12 still queued");
    // Her tasks are not starved either: each still ends, at its deadline.
    let last = mallory.wait_task(&sleepers[11], Duration::from_secs(60)).expect("mallory's last task");
    assert_eq!(last["error"]["code"], "controller_timeout", "{last}");
    println!(
        "bob's task beside 12 sleeping tasks queued before it: done in {took:?}, {waiting} still queued"
    );
}

#[test]
fn finished_tasks_lose_input_and_receipt_after_the_retention_period() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server =
        Server::start(bin(), &tmp.path().join("data"), "dev", &["--retention-ms", "1000"]).expect("server");
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    let task = api.prove(&program, &json!({"n": 2})).expect("prove");
    let t = api.wait_task(&task, Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "done", "{t}");
    let (status, _) = api.get(&format!("/v1/tasks/{task}/proof")).expect("proof");
    assert_eq!(status, 200, "fresh: the proof is there");
    let (status, body) = poll(Duration::from_secs(20), || {
        let (status, body) = api.get(&format!("/v1/tasks/{task}/proof"))?;
        Ok((status != 200).then_some((status, body)))
    })
    .expect("pruned");
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("proof_pruned")), "{body}");
    // The task, its journal and result stay.
    let (_, t) = api.get(&format!("/v1/tasks/{task}")).expect("task");
    assert_eq!((t["status"].as_str(), t["result"]["n"].as_u64()), (Some("done"), Some(2)), "{t}");
    assert!(t["journal"].is_string(), "{t}");
    let metrics =
        reqwest::blocking::get(format!("{}/metrics", server.url)).expect("metrics").text().expect("text");
    assert!(metrics.contains("zkcoproc_tasks_pruned_total 1"), "{metrics}");
}
