//! One real CPU proof of `examples/hello` (one segment), verified; tampered receipts and receipts
//! checked against another image id are rejected. Slow (about a minute on 2 cores) by nature.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};
use zkcoproc_testing::{hello_app, Server};
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
    let t = api.wait_task(&task, Duration::from_secs(900)).expect("task");
    assert_eq!(t["status"], "done", "{t}\nlog:\n{}", server.log());
    assert_eq!(t["receipt_kind"], "composite");

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
