//! One real CPU proof of `examples/hello` (one segment), verified, its progress reported while
//! proving; tampered receipts and receipts checked against another image id are rejected. Slow (about a minute on 2 cores) by nature.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};
use zkcoproc_testing::{hello_app, poll, Server};
use zkcoproc_zkvm::{ImageId, Verifier, VerifyError};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

#[test]
fn a_real_cpu_proof_verifies_and_tampering_is_rejected() {
    let app = hello_app();
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(bin(), &tmp.path().join("data"), "cpu", &[]).expect("server");
    let api = server.api();
    let program = api.deploy(app).expect("deploy");

    let n = 20u32;
    let task = api.prove(&program, &json!({"n": n})).expect("prove");
    // While proving, the prover child's progress (its one segment, none proven yet) shows on the
    // task; once accepted, the segment is proven.
    let counted = json!({"stage": "proving", "done": 0, "total": 1});
    let seen = poll(Duration::from_secs(900), || {
        let (_, t) = api.get(&format!("/v1/tasks/{task}"))?;
        Ok(match t["status"].as_str() {
            Some("proving") if t["progress"] == counted => Some(true),
            Some("delivering" | "done" | "failed") => Some(false),
            _ => None,
        })
    })
    .expect("task");
    assert!(seen, "no progress reported while proving");
    let t = api.wait_task(&task, Duration::from_secs(900)).expect("task");
    assert_eq!(t["status"], "done", "{t}\nlog:\n{}", server.log());
    assert_eq!(t["receipt_kind"], "composite");
    assert_eq!(t["progress"], json!({"stage": "proving", "done": 1, "total": 1}), "{t}");

    let mut digest = [0u8; 32];
    for _ in 0..n {
        digest = Sha256::digest(digest).into();
    }
    assert_eq!(t["result"]["n"], n);
    assert_eq!(t["result"]["digest"].as_str(), Some(hex::encode(digest).as_str()));

    let (_, proof) = api.get(&format!("/v1/tasks/{task}/proof")).expect("proof");
    let receipt = base64::engine::general_purpose::STANDARD
        .decode(proof["receipt"].as_str().expect("receipt"))
        .expect("base64");
    let image_id = ImageId::from_hex(&app.image_id).expect("image id");

    // A production verifier (no dev mode) accepts the real receipt.
    let verified = Verifier::new(false).verify(&receipt, image_id).expect("real receipt verifies");
    assert_eq!(&verified.journal[..32], &[0u8; 32], "journal starts with the (empty) root");
    assert_eq!(&verified.journal[32..36], &n.to_le_bytes());
    assert_eq!(&verified.journal[36..], &digest);

    // Checked against another image id: rejected.
    let other = ImageId([0x42; 32]);
    assert!(matches!(Verifier::new(false).verify(&receipt, other), Err(VerifyError::Invalid { .. })));

    // One flipped byte anywhere in the seal, the claim or the journal: rejected. Flip a spread
    // of positions, including the last byte (the journal's end).
    let positions = [receipt.len() / 7, receipt.len() / 3, receipt.len() / 2, receipt.len() - 1];
    for pos in positions {
        let mut bad = receipt.clone();
        bad[pos] ^= 0x01;
        assert!(
            Verifier::new(false).verify(&bad, image_id).is_err(),
            "receipt with byte {pos} flipped verified"
        );
    }

    // The CLI verifies locally: `proof --out` then `verify --receipt`, and `verify --task`.
    let file = tmp.path().join("receipt.bin");
    let out = Command::new(bin())
        .args(["proof", &task, "--server", &server.url, "--out"])
        .arg(&file)
        .output()
        .expect("cli proof");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(bin())
        .args(["verify", "--server", &server.url, "--image-id", &app.image_id, "--receipt"])
        .arg(&file)
        .output()
        .expect("cli verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("verified: composite receipt"), "{stdout}");
    assert!(stdout.contains(&format!("root known to {}: yes", server.url)), "{stdout}");

    let mut bad = receipt.clone();
    bad[receipt.len() / 2] ^= 0x80;
    std::fs::write(&file, &bad).expect("write");
    let out = Command::new(bin())
        .args(["verify", "--image-id", &app.image_id, "--receipt"])
        .arg(&file)
        .output()
        .expect("cli verify tampered");
    assert!(!out.status.success(), "tampered receipt verified");
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT VERIFIED"));

    let out = Command::new(bin())
        .args(["verify", "--task", &task, "--server", &server.url])
        .output()
        .expect("cli verify task");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    // This (cpu) service refuses fake receipts: a dev-mode receipt of the same program fails.
    let dev_dir = tmp.path().join("dev");
    let dev = Server::start(bin(), &dev_dir, "dev", &[]).expect("dev server");
    let dev_api = dev.api();
    let dev_program = dev_api.deploy(app).expect("deploy on dev");
    assert_eq!(dev_program, program, "program ids do not depend on the service");
    let dev_task = dev_api.prove(&dev_program, &json!({"n": n})).expect("prove on dev");
    dev_api.wait_task(&dev_task, Duration::from_secs(60)).expect("dev task");
    let (_, dev_proof) = dev_api.get(&format!("/v1/tasks/{dev_task}/proof")).expect("dev proof");
    let body = json!({"receipt": dev_proof["receipt"], "image_id": app.image_id});
    let (status, verdict) = api.post("/v1/verify", &body).expect("verify fake on cpu service");
    assert_eq!(status, 200);
    assert_eq!(verdict["valid"], false, "{verdict}");
    assert!(verdict["error"]["message"].as_str().unwrap_or_default().contains("fake"), "{verdict}");
}

/// Pids of `pid`'s child processes, with their command lines.
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // The fields after the command name (which may hold spaces) start after the last ')'.
        let after = stat.rsplit(')').next().unwrap_or("");
        let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            out.push((child, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    out
}

/// CPU time (user + system, in clock ticks) of `pid` and its children.
fn cpu_ticks(pid: u32) -> u64 {
    let ticks = |p: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("").to_owned();
        // utime and stime are fields 14 and 15 of stat: the 12th and 13th after the command name.
        let field =
            |i: usize| after.split_whitespace().nth(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        field(11) + field(12)
    };
    ticks(pid) + children(pid).iter().map(|(c, _)| ticks(*c)).sum::<u64>()
}

/// Cancelling a task stops its real CPU proof within seconds: the prover's child process is
/// killed and the service's CPU use drops.
#[test]
fn cancelling_a_cpu_proof_kills_it_and_frees_the_cpu() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(bin(), &tmp.path().join("data"), "cpu", &[]).expect("server");
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    // 100 000 SHA-256 rounds: many segments, minutes of proving.
    let task = api.prove(&program, &json!({"n": 100_000})).expect("prove");
    let pid = server.pid();
    let prover = zkcoproc_testing::poll(Duration::from_secs(300), || {
        let (_, t) = api.get(&format!("/v1/tasks/{task}"))?;
        anyhow::ensure!(t["status"] != "failed", "the task failed: {t}");
        Ok(children(pid).into_iter().find(|(_, cmd)| cmd.contains("prove-child")))
    })
    .expect("the proof runs in a child process");
    std::thread::sleep(Duration::from_secs(3));
    let window = Duration::from_secs(2);
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    let busy = cpu_ticks(pid).saturating_sub(before);

    let (status, body) = api.delete(&format!("/v1/tasks/{task}")).expect("cancel");
    assert_eq!(status, 200, "{body}");
    let cancelled = std::time::Instant::now();
    zkcoproc_testing::poll(Duration::from_secs(5), || {
        Ok((!std::path::Path::new(&format!("/proc/{}", prover.0)).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", prover.0))
                .unwrap_or_default()
                .contains(") Z"))
        .then_some(()))
    })
    .expect("the prover process was not killed within 5 s of the cancel");
    let stopped_in = cancelled.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    let idle = cpu_ticks(pid).saturating_sub(before);
    println!("prover stopped {stopped_in:?} after the cancel; CPU ticks over {window:?}: {busy} proving, {idle} after");
    assert!(children(pid).iter().all(|(_, cmd)| !cmd.contains("prove-child")), "{:?}", children(pid));
    assert!(idle * 4 < busy.max(1), "CPU use did not drop: {busy} ticks proving, {idle} after the cancel");
    let log = server.log();
    assert!(log.contains("proof stopped"), "{log}");
}
