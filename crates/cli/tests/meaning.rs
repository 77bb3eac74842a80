//! A proof means what it says: `verify` exits 0 only for a valid receipt under a trusted root,
//! `verify --task` does not take the image id on the service's word, a circuit committing another
//! root fails in preflight, a full volume in delivery is a clear outcome that keeps the proof,
//! `examples/hello` keeps a bounded set of receipts, and domain host errors keep their codes.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use zkcoproc_testing::{erc20_app, hello_app, hostile_controller, rootless_circuit, Server};
use zkcoproc_types::{CircuitInput, Witness};
use zkcoproc_zkvm::{CircuitImage, DevProver, Prover, Verifier, DEFAULT_MAX_CYCLES};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A dev (fake) receipt of `circuit` for an input pinned to `root` with one data witness.
fn fake_receipt(circuit: &Path, root: [u8; 32], witness: Vec<u8>) -> (Vec<u8>, String) {
    let image = CircuitImage::load(&std::fs::read(circuit).expect("circuit")).expect("image");
    let input = CircuitInput { root, witnesses: vec![Witness::Data(witness)] }.encode();
    let proved = DevProver::new(DEFAULT_MAX_CYCLES, Duration::ZERO).prove(&image, &input).expect("dev proof");
    (proved.receipt.bytes, image.image_id().to_string())
}

fn cli(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run zkcoproc")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn verify_accepts_a_receipt_only_under_a_trusted_root() {
    let app = hello_app();
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &[]).expect("server");
    let api = server.api();
    let program = api.deploy(app).expect("deploy");
    let task = api.prove(&program, &json!({"n": 3})).expect("prove");
    let t = api.wait_task(&task, Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "done", "{t}");

    // An honest task: its root is the service's (the empty root, seq 0).
    let out = cli(&["verify", "--task", &task, "--allow-fake", "--server", &server.url]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("program: {program} (recomputed")), "{}", stdout(&out));
    let (_, verdict) = api.post("/v1/verify", &json!({"task_id": task})).expect("verify");
    assert_eq!((verdict["valid"].as_bool(), verdict["receipt_valid"].as_bool()), (Some(true), Some(true)));

    // The same circuit, run on an input pinned to a root the service never had: the receipt is
    // valid, the statement is not one the service vouches for.
    let forged_root = [0xab; 32];
    let (receipt, image_id) = fake_receipt(&app.circuit, forged_root, 3u32.to_le_bytes().to_vec());
    let file = tmp.path().join("forged.bin");
    std::fs::write(&file, &receipt).expect("write");
    let file = file.to_str().expect("path");
    let base = ["verify", "--receipt", file, "--image-id", &image_id, "--allow-fake"];

    let out = cli(&[&base[..], &["--server", server.url.as_str()]].concat());
    assert!(!out.status.success(), "a receipt under an unknown root verified: {}", stdout(&out));
    assert!(stdout(&out).contains("NOT VERIFIED"), "{}", stdout(&out));
    assert!(stdout(&out).contains("never had this root"), "{}", stdout(&out));

    let out = cli(&[&base[..], &["--server", server.url.as_str(), "--allow-unknown-root"]].concat());
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("accepted because of --allow-unknown-root"), "{}", stdout(&out));

    // A verifier that asks no service trusts the roots it lists, and only those.
    let dead = "http://127.0.0.1:9";
    let roots = tmp.path().join("roots.txt");
    std::fs::write(&roots, format!("# roots I checked\n{}\n", "ab".repeat(32))).expect("roots");
    let roots_arg = roots.to_str().expect("path");
    let out = cli(&[&base[..], &["--server", dead, "--trusted-roots", roots_arg]].concat());
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("root trusted: listed in"), "{}", stdout(&out));
    std::fs::write(&roots, format!("0x{}\n", "cd".repeat(32))).expect("roots");
    let out = cli(&[&base[..], &["--server", dead, "--trusted-roots", roots_arg]].concat());
    assert!(!out.status.success(), "{}", stdout(&out));
    std::fs::write(&roots, "not a root\n").expect("roots");
    let out = cli(&[&base[..], &["--server", dead, "--trusted-roots", roots_arg]].concat());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a root"));

    // The service's verdict says the same: the receipt alone is valid, the proof is not.
    let body = json!({"receipt": b64(&receipt), "image_id": image_id});
    let (status, verdict) = api.post("/v1/verify", &body).expect("verify");
    assert_eq!(status, 200);
    assert_eq!(verdict["valid"], false, "{verdict}");
    assert_eq!(verdict["receipt_valid"], true, "{verdict}");
    assert_eq!(verdict["root_known"], false, "{verdict}");
    assert_eq!(verdict["error"]["code"], "unknown_root", "{verdict}");
}

/// A one-connection-at-a-time HTTP server answering GETs from `routes` (path → body), 404
/// otherwise; serves until the process ends.
fn liar(routes: Vec<(String, Vec<u8>, &'static str)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
            let (status, body, kind) = match routes.iter().find(|(p, _, _)| *p == path) {
                Some((_, body, kind)) => ("200 OK", body.clone(), *kind),
                None => (
                    "404 Not Found",
                    br#"{"error":{"code":"not_found","message":"no"}}"#.to_vec(),
                    "application/json",
                ),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
        }
    });
    url
}

#[test]
fn verify_task_recomputes_the_program_id_instead_of_trusting_the_image_id() {
    let hello = hello_app();
    let controller = std::fs::read(&hello.controller).expect("controller");
    let hello_image = zkcoproc_zkvm::ImageId::from_hex(&hello.image_id).expect("image id");
    let program = zkcoproc_coordinator::program_id(&controller, &hello_image);
    // The liar's receipt is valid, for another circuit, whose journal the liar calls hello's.
    let (receipt, other_image) = fake_receipt(rootless_circuit(), [0; 32], Vec::new());
    assert_ne!(other_image, hello.image_id);
    let task = "0190b7c4-0000-7000-8000-000000000001";
    let proof = |image_id: &str, receipt: &[u8]| {
        json!({"task_id": task, "program_id": program, "image_id": image_id, "receipt": b64(receipt)})
            .to_string()
            .into_bytes()
    };
    let known = json!({"known": true, "seq": 1}).to_string().into_bytes();
    let controller_route =
        (format!("/v1/programs/{program}/controller"), controller, "application/octet-stream");
    let roots =
        |root: [u8; 32]| (format!("/v1/roots/{}", hex::encode(root)), known.clone(), "application/json");
    let lying = liar(vec![
        (format!("/v1/tasks/{task}/proof"), proof(&other_image, &receipt), "application/json"),
        controller_route.clone(),
        roots([7; 32]),
    ]);
    let out = cli(&["verify", "--task", task, "--allow-fake", "--server", &lying]);
    assert!(!out.status.success(), "the service's word on the image id was taken: {}", stdout(&out));
    assert!(stdout(&out).contains("NOT VERIFIED"), "{}", stdout(&out));
    assert!(stdout(&out).contains("make program"), "{}", stdout(&out));

    // The same service telling the truth (hello's image id and a hello receipt) is believed.
    let (honest, _) = fake_receipt(&hello.circuit, [0; 32], 2u32.to_le_bytes().to_vec());
    let truthful = liar(vec![
        (format!("/v1/tasks/{task}/proof"), proof(&hello.image_id, &honest), "application/json"),
        controller_route,
        roots([0; 32]),
    ]);
    let out = cli(&["verify", "--task", task, "--allow-fake", "--server", &truthful]);
    assert!(out.status.success(), "{}", stdout(&out));
    // ... unless the task must belong to another program.
    let out =
        cli(&["verify", "--task", task, "--allow-fake", "--server", &truthful, "--program", &"0".repeat(64)]);
    assert!(!out.status.success(), "{}", stdout(&out));
}

#[test]
fn a_circuit_committing_another_root_fails_in_preflight_without_proving() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &[]).expect("server");
    let api = server.api();
    let program = api.deploy_files(&hello_app().controller, rootless_circuit()).expect("deploy");
    let task = api.prove(&program, &json!({"n": 1})).expect("prove");
    let t = api.wait_task(&task, Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["code"], "root_mismatch", "{t}");
    assert_eq!(t["attempts"], 0, "a proving attempt was spent: {t}");
    assert_eq!(t["provers"].as_array().map(Vec::len), Some(0), "a prover was leased: {t}");
}

#[test]
fn a_full_volume_in_delivery_fails_with_volume_full_and_keeps_the_proof() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server =
        Server::start(bin(), &tmp.path().join("data"), "dev", &["--volume-size-mb", "4"]).expect("server");
    let api = server.api();
    let program = api.deploy_files(hostile_controller(), &hello_app().circuit).expect("deploy");
    let task = api.prove(&program, &json!({"mode": "fill-entrypoint"})).expect("prove");
    let t = api.wait_task(&task, Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["code"], "volume_full", "{t}");
    let message = t["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("/v1/tasks/{task}/proof")), "{t}");
    let (status, proof) = api.get(&format!("/v1/tasks/{task}/proof")).expect("proof");
    assert_eq!(status, 200, "{proof}");
    let (_, verdict) = api.post("/v1/verify", &json!({"task_id": task})).expect("verify");
    assert_eq!(verdict["valid"], true, "{verdict}");
}

#[test]
fn hello_keeps_only_its_newest_receipts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &[]).expect("server");
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");
    let mut receipts = Vec::new();
    for i in 0..20u32 {
        let task = api.prove(&program, &json!({"n": i + 1})).expect("prove");
        let t = api.wait_task(&task, Duration::from_secs(60)).expect("task");
        assert_eq!(t["status"], "done", "{t}");
        receipts.push((task, t["result"]["receipt"].as_str().expect("path").to_owned()));
    }
    let (_, listing) = api.get(&format!("/v1/programs/{program}/fs?path=/var/share/proofs")).expect("list");
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .filter(|n| *n != "INDEX")
        .collect();
    assert_eq!(names.len(), 16, "{listing}");
    for (i, (task, path)) in receipts.iter().enumerate() {
        let (status, _) = api.get(&format!("/v1/programs/{program}/fs{path}")).expect("read");
        assert_eq!(status, if i < 4 { 404 } else { 200 }, "receipt {i} at {path}");
        // The service keeps every proof, whatever the controller keeps.
        let (status, _) = api.get(&format!("/v1/tasks/{task}/proof")).expect("proof");
        assert_eq!(status, 200);
    }
    // Distinct tasks, distinct names.
    let unique: std::collections::HashSet<&String> = receipts.iter().map(|(_, p)| p).collect();
    assert_eq!(unique.len(), 20);
}

#[test]
fn domain_host_errors_keep_their_codes() {
    // A service that follows no domain: the erc20 controller's `domain::latest("ethereum")`
    // fails with `unknown_domain`, and the task says so.
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &[]).expect("server");
    let api = server.api();
    let program = api.deploy(erc20_app()).expect("deploy");
    let holder = "0x00000000000000000000000000000000000000aa";
    let task = api.prove(&program, &json!({"token": holder, "holder": holder})).expect("prove");
    let t = api.wait_task(&task, Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["code"], "unknown_domain", "{t}");
    // A dry run answers with the same code.
    let (status, v) = api
        .post(
            &format!("/v1/programs/{program}/witnesses"),
            &json!({"args": {"token": holder, "holder": holder}}),
        )
        .expect("dry run");
    assert_eq!((status, v["error"]["code"].as_str()), (422, Some("unknown_domain")), "{v}");
}

/// A history written by a release that stored no tree nodes: the service stores them at start-up,
/// and then opens blocks under every root, old ones (beyond the 256 versions kept in memory) from
/// the stored nodes. Every opening verifies against its root.
#[test]
fn openings_under_old_roots_come_from_stored_nodes_even_for_an_old_database() {
    use zkcoproc_smt::{key, BlockCommitment, Opening, Sha2, Tree};
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let commitment = |n: u64| BlockCommitment { block_hash: [n as u8; 32], state_root: [(n >> 8) as u8; 32] };
    let mut roots = Vec::new();
    {
        let store = zkcoproc_store::SqliteStore::open(&data).expect("store");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let mut tree = Tree::new();
        for chunk in (0..300u64).collect::<Vec<_>>().chunks(50) {
            let prev = tree.root();
            let mut blocks = Vec::new();
            for &n in chunk {
                tree = tree.insert(key::<Sha2>("old", n), commitment(n));
                roots.push(tree.root());
                let c = commitment(n);
                blocks.push(zkcoproc_store::NewBlock {
                    number: n,
                    block_hash: c.block_hash,
                    state_root: c.state_root,
                    header: vec![0xc0],
                    root: tree.root(),
                    nodes: Vec::new(), // as the previous release wrote them
                    admission: Default::default(),
                });
            }
            let appended = rt
                .block_on(zkcoproc_store::Store::append_blocks(&store, "old", prev, blocks))
                .expect("append");
            assert!(appended);
        }
    }
    let mut server = Server::start(bin(), &data, "dev", &[]).expect("server");
    for round in 0..2 {
        let api = server.api();
        for (seq, n) in [(1usize, 0u64), (2, 1), (40, 39), (40, 41), (150, 7), (300, 299)] {
            let root = hex::encode(roots[seq - 1]);
            let (status, o) =
                api.get(&format!("/v1/domains/old/blocks/{n}/opening?root={root}")).expect("opening");
            assert_eq!(status, 200, "round {round}, seq {seq}, block {n}: {o}");
            let opening =
                Opening::decode(&hex::decode(o["opening"].as_str().expect("opening")).expect("hex"))
                    .expect("decodes");
            let got = opening.verify::<Sha2>(&roots[seq - 1], &key::<Sha2>("old", n)).expect("verifies");
            assert_eq!(
                got,
                ((n as usize) < seq).then(|| commitment(n)),
                "round {round}, seq {seq}, block {n}"
            );
            assert_eq!(o["present"], (n as usize) < seq);
        }
        // Again after a restart (the nodes are stored now).
        server.kill();
        server = Server::start(bin(), &data, "dev", &[]).expect("restart");
    }
}

/// The dev prover's receipt from a known journal (the service's preflight already executed the
/// input) carries the same claim as one from executing again, and verifies the same way.
#[test]
fn a_dev_receipt_from_the_preflight_journal_is_the_receipt_a_second_run_makes() {
    let image = CircuitImage::load(&std::fs::read(&hello_app().circuit).expect("circuit")).expect("image");
    let input =
        CircuitInput { root: [3; 32], witnesses: vec![Witness::Data(7u32.to_le_bytes().to_vec())] }.encode();
    let prover = DevProver::new(DEFAULT_MAX_CYCLES, Duration::ZERO);
    let executed = prover.prove(&image, &input).expect("dev proof");
    let known = prover
        .prove_known(&image, &executed.receipt.journal, executed.user_cycles)
        .expect("a dev prover can")
        .expect("receipt");
    assert_eq!(known.user_cycles, executed.user_cycles);
    let verifier = Verifier::new(true);
    let known = verifier.verify(&known.receipt.bytes, image.image_id()).expect("verifies");
    let executed = verifier.verify(&executed.receipt.bytes, image.image_id()).expect("verifies");
    assert_eq!(known.journal, executed.journal);
    assert_eq!(known.claim_digest, executed.claim_digest, "the claims differ");
    // A journal that is not the run's makes another claim.
    let other = prover.prove_known(&image, b"another journal", 1).expect("dev").expect("receipt");
    let other = verifier.verify(&other.receipt.bytes, image.image_id()).expect("verifies");
    assert_ne!(other.claim_digest, executed.claim_digest);
}
