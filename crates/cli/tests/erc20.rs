//! The coprocessor root against a real Ethereum node (anvil): the service follows the chain from
//! a checkpoint, and `examples/erc20-balance` proves ERC-20 balances that must equal `balanceOf`
//! at the proven block (dev prover). A feeder's headers pass the same checks.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use zkcoproc_testing::anvil::Anvil;
use zkcoproc_testing::{erc20_app, poll, Api, Server};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

/// Waits until the service has inserted block `n` of `ethereum`.
fn wait_for_block(api: &Api, n: u64) -> Value {
    poll(Duration::from_secs(60), || {
        let (status, v) = api.get("/v1/domains/ethereum/latest")?;
        Ok((status == 200 && v["number"].as_u64() >= Some(n)).then_some(v))
    })
    .expect("service follows the chain")
}

#[test]
fn erc20_balances_are_proven_against_the_followed_chain() {
    let anvil = Anvil::start().expect("anvil");
    let accounts = anvil.accounts().expect("accounts");
    let (owner, alice, bob) = (&accounts[0], &accounts[1], &accounts[2]);
    let token = anvil.deploy_token(owner, 1_000_000_000).expect("deploy token");
    let b1 = anvil.transfer(&token, owner, alice, 1234).expect("transfer");
    anvil.mine(2).expect("mine");
    let b2 = anvil.transfer(&token, owner, alice, 66).expect("transfer");
    anvil.transfer(&token, alice, bob, 300).expect("transfer");
    anvil.mine(3).expect("mine");

    let tmp = tempfile::tempdir().expect("tempdir");
    let args = anvil.follow_args(2, 100).expect("follow args");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &args).expect("server");
    let api = server.api();
    let head = anvil.block_number().expect("head");
    // Only blocks two deep are inserted.
    let latest = wait_for_block(&api, head - 2);
    assert_eq!(latest["number"], head - 2, "{latest}");
    assert_eq!(latest["hash"], anvil.block_hash(head - 2).expect("hash"));
    std::thread::sleep(Duration::from_millis(500));
    let (_, latest) = api.get("/v1/domains/ethereum/latest").expect("latest");
    assert_eq!(latest["number"], head - 2, "a block less than 2 deep was inserted: {latest}");

    // The opening of b1 under the current root holds anvil's block hash.
    let (status, opening) = api.get(&format!("/v1/domains/ethereum/blocks/{b1}/opening")).expect("opening");
    assert_eq!(status, 200, "{opening}");
    assert_eq!(opening["present"], true);
    assert_eq!(opening["block_hash"], anvil.block_hash(b1).expect("hash"));
    let (_, future) =
        api.get(&format!("/v1/domains/ethereum/blocks/{}/opening", head + 50)).expect("opening");
    assert_eq!(future["present"], false, "a block not inserted has a non-membership opening");

    let program = api.deploy(erc20_app()).expect("deploy");
    let prove = |args: Value| -> Value {
        let task = api.prove(&program, &args).expect("prove");
        api.wait_task(&task, Duration::from_secs(300)).expect("task")
    };

    for (holder, block) in [(alice, b1), (alice, b2), (bob, b2), (bob, head - 2)] {
        let expected = anvil.balance_of(&token, holder, block).expect("balanceOf");
        let t = prove(json!({"token": token, "holder": holder, "slot": 0, "block": block}));
        assert_eq!(t["status"], "done", "{t}\nlog:\n{}", server.log());
        assert_eq!(t["result"]["balance"], expected.to_string(), "{t}");
        assert_eq!(t["result"]["slot"], 0, "{t}");
        assert_eq!(t["result"]["block"], block);
        assert_eq!(t["result"]["holder"].as_str().map(str::to_lowercase).as_deref(), Some(holder.as_str()));
        assert_eq!(t["result"]["token"].as_str().map(str::to_lowercase).as_deref(), Some(token.as_str()));
        // The journal starts with the root the task was pinned to, a root the service has had.
        let journal = t["journal"].as_str().expect("journal");
        assert_eq!(&journal[..64], t["root"].as_str().expect("root"));
        let (_, verdict) = api.post("/v1/verify", &json!({"task_id": t["id"]})).expect("verify");
        assert_eq!(verdict["valid"], true, "{verdict}");
        assert_eq!(verdict["root_known"], true, "{verdict}");
    }
    assert_eq!(anvil.balance_of(&token, alice, b1).expect("balance"), 1234);
    assert_eq!(anvil.balance_of(&token, bob, b1).expect("balance"), 0);

    // Default block: the newest under the root. A holder without tokens: balance 0 (the
    // storage proof proves the slot empty).
    let t = prove(json!({"token": token, "holder": "0x00000000000000000000000000000000000000aa"}));
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(t["result"]["balance"], "0");
    assert_eq!(t["result"]["block"], head - 2);

    // A block the service has not inserted: the task fails with a clear error.
    let t = prove(json!({"token": token, "holder": alice, "block": head + 100}));
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["code"], "block_not_under_root", "the host's code is kept: {t}");
    let message = t["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not under the task's root"), "{t}");

    // Another mapping index: the proof is of that mapping's entry, and says so (the journal
    // commits the slot); it never passes as `balances[holder]`.
    for slot in [1u64, 2] {
        let t = prove(json!({"token": token, "holder": alice, "slot": slot, "block": b1}));
        assert_eq!(t["status"], "done", "{t}");
        assert_eq!(t["result"]["slot"], slot, "{t}");
        assert_eq!(t["result"]["balance"], "0", "{t}");
        let journal = t["journal"].as_str().expect("journal");
        let word = &journal[64 + 3 * 64..64 + 4 * 64];
        assert_eq!(u64::from_str_radix(&word[48..], 16).ok(), Some(slot), "journal: {journal}");
    }

    // A task pinned to an older root still gets openings under that root.
    let old_root = opening["root"].as_str().expect("root").to_owned();
    // An idempotent request that named no root is the same request after the root moved.
    let keyed = |api: &zkcoproc_testing::Api| -> Value {
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/v1/programs/{program}/proofs", api.url()))
            .header("Idempotency-Key", "balance-of-alice-at-b1")
            .json(&json!({"args": {"token": token, "holder": alice, "block": b1}}))
            .send()
            .expect("submit");
        assert_eq!(resp.status().as_u16(), 202);
        resp.json().expect("json")
    };
    let before = keyed(&api);
    anvil.mine(2).expect("mine");
    wait_for_block(&api, head);
    let after = keyed(&api);
    assert_eq!(
        (after["task_id"].as_str(), after["replayed"].as_bool()),
        (before["task_id"].as_str(), Some(true)),
        "{after}"
    );
    let (_, now) = api.get("/v1/root").expect("root");
    assert_ne!(now["root"], old_root.as_str(), "the root moves as blocks are inserted");
    let task = {
        let (status, v) = api
            .post(
                &format!("/v1/programs/{program}/proofs"),
                &json!({"args": {"token": token, "holder": alice, "block": b1}, "root": old_root}),
            )
            .expect("submit");
        assert_eq!(status, 202, "{v}");
        v["task_id"].as_str().expect("task id").to_owned()
    };
    let t = api.wait_task(&task, Duration::from_secs(300)).expect("task");
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(t["root"], old_root.as_str());
    assert_eq!(t["result"]["balance"], "1234");
    let (_, info) = api.get(&format!("/v1/roots/{old_root}")).expect("root info");
    assert_eq!(info["known"], true, "{info}");
    let (_, info) = api.get(&format!("/v1/roots/{}", "ab".repeat(32))).expect("root info");
    assert_eq!(info["known"], false);
}

#[test]
fn fed_headers_are_checked_and_survive_a_restart() {
    let anvil = Anvil::start().expect("anvil");
    anvil.mine(8).expect("mine");
    let genesis = anvil.block_hash(0).expect("genesis");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rpc = zkcoproc_eth::RpcClient::new(&anvil.url, Duration::from_secs(10)).expect("rpc");
    let headers = rt.block_on(rpc.headers(0, 9)).expect("headers");
    assert_eq!(headers.len(), 9);
    let hex_of = |range: std::ops::Range<usize>| -> Vec<String> {
        headers[range].iter().map(|h| format!("0x{}", hex::encode(&h.rlp))).collect()
    };

    let tmp = tempfile::tempdir().expect("tempdir");
    let secrets = tmp.path().join("feeders");
    std::fs::write(&secrets, "feeder-1:0123456789abcdef0123456789abcdef\n").expect("secrets");
    // The follower points at a port nothing listens on: only the feeder inserts blocks.
    let checkpoint = format!("ethereum=0:{genesis}");
    let args = [
        "--domain",
        "ethereum=http://127.0.0.1:9",
        "--checkpoint",
        &checkpoint,
        "--feeder-secret-file",
        secrets.to_str().expect("path"),
        "--trust",
        "rpc",
    ];
    let data = tmp.path().join("data");
    let mut server = Server::start(bin(), &data, "dev", &args).expect("server");
    let api = server.api();
    let feed = |api: &Api, headers: Vec<String>, secret: &[u8]| -> (u16, Value) {
        let body = serde_json::to_vec(&json!({"headers": headers})).expect("json");
        zkcoproc_testing::signed_post(api.url(), "/v1/domains/ethereum/blocks", "feeder-1", secret, body)
            .expect("send")
    };
    let secret = b"0123456789abcdef0123456789abcdef";

    let (_, empty) = api.get("/v1/root").expect("root");
    assert_eq!(empty["root"], "00".repeat(32));

    // Not signed, or signed with another secret: refused.
    let (status, _) =
        api.post("/v1/domains/ethereum/blocks", &json!({"headers": hex_of(0..2)})).expect("post");
    assert_eq!(status, 401);
    assert_eq!(feed(&api, hex_of(0..2), b"wrong-secret-wrong-secret-wrong!").0, 401);
    // The first block must be the checkpoint.
    let (status, v) = feed(&api, hex_of(1..3), secret);
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("unlinked_header")), "{v}");

    let (status, v) = feed(&api, hex_of(0..4), secret);
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["inserted"].as_u64(), v["latest"]["number"].as_u64()), (Some(4), Some(3)));
    let root_after_3 = v["root"].as_str().expect("root").to_owned();
    // Resending overlaps is idempotent; the rest is inserted.
    let (status, v) = feed(&api, hex_of(2..6), secret);
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["inserted"].as_u64(), v["skipped"].as_u64()), (Some(2), Some(2)));
    // A gap does not link; neither does a header whose parent hash was altered (the feeder is
    // trusted to send real headers, but never to break the chain); garbage is not a header.
    let (status, v) = feed(&api, hex_of(7..8), secret);
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("unlinked_header")), "{v}");
    let mut tampered = headers[6].rlp.clone();
    tampered[5] ^= 1; // inside the parent hash (after the 3-byte list header and 0xa0)
    let (status, v) = feed(&api, vec![format!("0x{}", hex::encode(tampered))], secret);
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("unlinked_header")), "{v}");
    let (status, v) = feed(&api, vec!["0xzz".into()], secret);
    assert_eq!(status, 400, "{v}");
    let (status, v) = feed(&api, vec!["0xc0".into()], secret);
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("bad_header")), "{v}");

    let (_, root) = api.get("/v1/root").expect("root");
    assert_eq!(root["domains"][0]["number"], 5);
    let current = root["root"].as_str().expect("root").to_owned();

    // After a restart the tree is rebuilt from the history: same root, old roots still known.
    server.kill();
    let server = Server::start(bin(), &data, "dev", &args).expect("restart");
    let api = server.api();
    let (_, root) = api.get("/v1/root").expect("root");
    assert_eq!(root["root"], current.as_str());
    assert_eq!(root["seq"], 6);
    let (_, info) = api.get(&format!("/v1/roots/{root_after_3}")).expect("root info");
    assert_eq!((info["known"].as_bool(), info["seq"].as_u64()), (Some(true), Some(4)), "{info}");
    let (_, latest) = api.get(&format!("/v1/domains/ethereum/latest?root={root_after_3}")).expect("latest");
    assert_eq!(latest["number"], 3, "{latest}");
    let (status, v) = feed(&api, hex_of(6..9), secret);
    assert_eq!((status, v["inserted"].as_u64()), (200, Some(3)), "{v}");
}

#[test]
fn an_erc20_balance_proven_with_the_real_cpu_prover_verifies() {
    let anvil = Anvil::start().expect("anvil");
    let accounts = anvil.accounts().expect("accounts");
    let token = anvil.deploy_token(&accounts[0], 5_000).expect("deploy token");
    let block = anvil.transfer(&token, &accounts[0], &accounts[1], 777).expect("transfer");
    let tmp = tempfile::tempdir().expect("tempdir");
    let args = anvil.follow_args(0, 100).expect("follow args");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(bin(), &tmp.path().join("data"), "cpu", &args).expect("server");
    let api = server.api();
    wait_for_block(&api, block);
    let program = api.deploy(erc20_app()).expect("deploy");
    let started = std::time::Instant::now();
    let task =
        api.prove(&program, &json!({"token": token, "holder": accounts[1], "block": block})).expect("prove");
    let t = api.wait_task(&task, Duration::from_secs(3600)).expect("task");
    println!("erc20-balance real CPU proof, submit to done: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(t["status"], "done", "{t}\nlog:\n{}", server.log());
    assert_eq!(t["receipt_kind"], "composite");
    assert_eq!(t["result"]["balance"], "777");
    let (_, verdict) = api.post("/v1/verify", &json!({"task_id": task})).expect("verify");
    assert_eq!(
        (verdict["valid"].as_bool(), verdict["root_known"].as_bool()),
        (Some(true), Some(true)),
        "{verdict}"
    );
    // A production verifier, outside the service, accepts it against the image id.
    let (_, proof) = api.get(&format!("/v1/tasks/{task}/proof")).expect("proof");
    let receipt = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        proof["receipt"].as_str().expect("receipt"),
    )
    .expect("base64");
    let image_id = zkcoproc_zkvm::ImageId::from_hex(&erc20_app().image_id).expect("image id");
    let verified = zkcoproc_zkvm::Verifier::new(false).verify(&receipt, image_id).expect("verifies");
    assert_eq!(hex::encode(&verified.journal[..32]), t["root"].as_str().expect("root"));
    assert_eq!(&verified.journal[32 + 96..32 + 128], &[0u8; 32], "the balances mapping is slot 0");
    assert_eq!(&verified.journal[32 + 128 + 16..], &777u128.to_be_bytes());
}
