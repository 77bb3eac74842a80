//! The consensus light client end to end: a beacon node of our own (sync committees of real BLS
//! keys, updates over anvil's real blocks) decides which blocks enter the root; an execution
//! node that lies and a beacon node that lies move nothing; the light-client store survives
//! SIGKILL. Also `zkcoproc light-client replay` on the official vectors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::B256;
use serde_json::{json, Value};
use zkcoproc_lightclient::testkit::{config_yaml, config_yaml_to_gloas, TestChain};
use zkcoproc_lightclient::{ChainSpec, LightClientUpdate};
use zkcoproc_testing::anvil::Anvil;
use zkcoproc_testing::beacon::{execution_header, LyingRpc, TestBeacon};
use zkcoproc_testing::{erc20_app, poll, Api, Server};

const SLOT_SECS: u64 = 12;
/// The clock's slot when a test starts: the updates below are signed up to this slot.
const NOW_SLOT: u64 = 100;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

fn sync_cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/consensus-spec-tests/minimal/deneb/light_client/sync")
}

/// The test network's config file (anvil's chain id), and the chain.
fn test_chain(dir: &Path, chain_id: u64, seed: u64) -> (TestChain, String) {
    let yaml = format!("{}DEPOSIT_CHAIN_ID: {chain_id}\n", config_yaml("minimal", SLOT_SECS, None));
    let path = dir.join(format!("network-{chain_id}-{seed}.yaml"));
    std::fs::write(&path, &yaml).expect("config");
    let spec = ChainSpec::from_yaml(&yaml).expect("spec");
    (TestChain::new(spec, seed), path.to_str().expect("path").to_owned())
}

fn genesis_time() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() - NOW_SLOT * SLOT_SECS
}

fn light_client(api: &Api) -> Value {
    let (status, v) = api.get("/v1/domains/ethereum/light-client").expect("light-client");
    assert_eq!(status, 200, "{v}");
    v
}

fn latest(api: &Api) -> Option<u64> {
    let (status, v) = api.get("/v1/domains/ethereum/latest").ok()?;
    (status == 200).then(|| v["number"].as_u64()).flatten()
}

fn wait_latest(api: &Api, n: u64, server: &Server) {
    poll(Duration::from_secs(60), || Ok((latest(api) >= Some(n)).then_some(()))).unwrap_or_else(|e| {
        panic!("block {n} not inserted: {e}\n{}\nlog:\n{}", light_client(api), server.log())
    });
}

/// `serve` arguments that follow the domain `ethereum` from `exec` with the light client on
/// `beacon`, bootstrapped from the beacon block `root` of `network`, every 100 ms.
fn follow_args(exec: &str, beacon: &str, root: B256, network: &str) -> Vec<String> {
    let (domain, beacon, checkpoint) =
        (format!("ethereum={exec}"), format!("ethereum={beacon}"), format!("ethereum=beacon:{root}"));
    let args = ["--domain", &domain, "--beacon", &beacon, "--checkpoint", &checkpoint, "--network", network];
    args.into_iter().chain(["--follow-interval-ms", "100"]).map(str::to_owned).collect()
}

/// An update finalizing anvil's block `block` at beacon slot `slot` (attested one slot later,
/// signed the slot after that by the whole committee).
fn finalizing(
    chain: &TestChain,
    anvil: &Anvil,
    slot: u64,
    block: u64,
    next_committee: bool,
) -> LightClientUpdate {
    let fin = chain.header(slot, execution_header(anvil, block).expect("block"), B256::ZERO);
    let att =
        chain.header(slot + 1, execution_header(anvil, block).expect("block"), fin.header.beacon.root());
    chain.update(&att, Some(&fin), next_committee, slot + 2, chain.spec.preset.sync_committee_size)
}

#[test]
fn the_light_client_decides_what_enters_the_root_and_liars_move_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let anvil = Anvil::start().expect("anvil");
    let accounts = anvil.accounts().expect("accounts");
    let (owner, alice) = (&accounts[0], &accounts[1]);
    let token = anvil.deploy_token(owner, 1_000_000).expect("token");
    let b1 = anvil.transfer(&token, owner, alice, 777).expect("transfer");
    anvil.mine(3).expect("mine");
    let block_a = anvil.block_number().expect("head");

    let (chain, network) = test_chain(tmp.path(), 31337, 7);
    let checkpoint = chain.header(80, execution_header(&anvil, 1).expect("block 1"), B256::ZERO);
    let beacon = TestBeacon::start(chain, genesis_time()).expect("beacon");
    let chain = beacon.chain.clone();
    let root = beacon.add_bootstrap(&chain.bootstrap(&checkpoint));
    beacon.publish(&finalizing(&chain, &anvil, 88, block_a, true));
    let exec = LyingRpc::start(&anvil.url).expect("proxy");

    let feeders = tmp.path().join("feeders");
    std::fs::write(&feeders, "feeder-1:0123456789abcdef0123456789abcdef\n").expect("secrets");
    let mut args = vec!["--feeder-secret-file".to_owned(), feeders.to_str().expect("path").to_owned()];
    args.extend(follow_args(exec.url(), beacon.url(), root, &network));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let data = tmp.path().join("data");
    let mut server = Server::start(bin(), &data, "dev", &args).expect("server");
    let api = server.api();

    // The checkpoint's block and everything up to the finalized block enter the root.
    wait_latest(&api, block_a, &server);
    let (_, root_view) = api.get("/v1/root").expect("root");
    let head = &root_view["domains"][0];
    assert_eq!(head["number"], block_a, "{root_view}");
    assert_eq!(head["hash"], anvil.block_hash(block_a).expect("hash"));
    assert_eq!(head["admitted_by"], "light_client", "{root_view}");
    assert_eq!(head["beacon_slot"], 88, "{root_view}");
    assert_eq!(root_view["trust"][0]["trust"], "light_client", "{root_view}");
    assert_eq!(root_view["trust"][0]["stalled"], Value::Null, "{root_view}");
    let lc = light_client(&api);
    assert_eq!(lc["light_client"]["finalized_slot"], 88, "{lc}");
    assert_eq!(lc["light_client"]["optimistic_slot"], 89, "{lc}");
    assert_eq!(lc["light_client"]["sync_committee_period"], 1, "{lc}");
    assert_eq!(lc["light_client"]["next_sync_committee_known"], true, "{lc}");
    let (_, health) = api.get("/health").expect("health");
    assert_eq!(health["domains"][0]["trust"], "light_client", "{health}");
    let (_, by_root) =
        api.get(&format!("/v1/roots/{}", root_view["root"].as_str().expect("root"))).expect("root");
    assert_eq!(by_root["domains"][0]["admitted_by"], "light_client", "{by_root}");

    // An authenticated feeder cannot go around the light client.
    let body = serde_json::to_vec(&json!({"headers": ["0xc0"]})).expect("json");
    let secret = b"0123456789abcdef0123456789abcdef";
    let (status, refused) =
        zkcoproc_testing::signed_post(api.url(), "/v1/domains/ethereum/blocks", "feeder-1", secret, body)
            .expect("feed");
    assert_eq!((status, &refused["error"]["code"]), (409, &json!("light_client_domain")), "{refused}");

    // An ERC-20 balance is proven against the light-client root.
    let program = api.deploy(erc20_app()).expect("deploy");
    let task = api
        .prove(&program, &json!({"token": token, "holder": alice, "slot": 0, "block": b1}))
        .expect("prove");
    let t = api.wait_task(&task, Duration::from_secs(300)).expect("task");
    assert_eq!(t["status"], "done", "{t}\n{}", server.log());
    assert_eq!(t["result"]["balance"], "777", "{t}");
    let (_, verdict) = api.post("/v1/verify", &json!({"task_id": t["id"]})).expect("verify");
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["root_known"], true, "{verdict}");

    // The lying execution node: from block_a + 2 on it serves a fabricated, self-linked chain
    // (other state roots, every hash recomputed). The light client finalizes the real block_b:
    // the fabricated headers do not lead to its hash, nothing is inserted, the conflict shows.
    anvil.mine(4).expect("mine");
    let block_b = anvil.block_number().expect("head");
    exec.lie_from(block_a + 2);
    beacon.publish(&finalizing(&chain, &anvil, 94, block_b, false));
    let stalled = poll(Duration::from_secs(30), || {
        let lc = light_client(&api);
        Ok((lc["stalled"]["code"] == "unverified_header").then_some(lc))
    })
    .unwrap_or_else(|e| panic!("{e}: {}\n{}", light_client(&api), server.log()));
    assert_eq!(stalled["light_client"]["finalized_slot"], 94, "{stalled}");
    assert_eq!(latest(&api), Some(block_a), "no fabricated block may enter the root");
    let (_, health) = api.get("/health").expect("health");
    assert_eq!(health["domains"][0]["stalled"]["code"], "unverified_header", "{health}");
    assert!(server.log().contains("unverified_header"), "the refusal is logged");
    let (_, fake) =
        api.get(&format!("/v1/domains/ethereum/blocks/{}/opening", block_a + 2)).expect("opening");
    assert_eq!(fake["present"], false, "{fake}");

    // The lying beacon node: an update over a made-up execution block, signed by keys outside
    // the committee; and one signed by the committee's keys for another fork version. Neither
    // moves the store.
    exec.lie_from(u64::MAX);
    let fake_exec = zkcoproc_lightclient::ExecutionPayloadHeader {
        block_number: block_b + 1,
        block_hash: B256::repeat_byte(0xfa),
        ..execution_header(&anvil, block_b).expect("block")
    };
    let fin = chain.header(96, fake_exec.clone(), B256::ZERO);
    let att = chain.header(97, fake_exec, fin.header.beacon.root());
    let (stranger, _) = test_chain(tmp.path(), 31337, 8);
    let mut other_fork_spec = chain.spec.clone();
    for f in &mut other_fork_spec.forks {
        f.1[0] ^= 0x80;
    }
    let other_fork = TestChain::new(other_fork_spec, 7);
    for signer in [&stranger, &other_fork] {
        let forged = LightClientUpdate {
            sync_aggregate: signer.sign(&att.header.beacon, 98, 32),
            ..chain.update(&att, Some(&fin), false, 98, 32)
        };
        beacon.publish(&forged);
        std::thread::sleep(Duration::from_millis(800));
        let lc = light_client(&api);
        assert_eq!(lc["light_client"]["finalized_slot"], 94, "a forged update moved the store: {lc}");
    }
    let metrics =
        reqwest::blocking::get(format!("{}/metrics", api.url())).expect("metrics").text().expect("text");
    assert!(
        metrics
            .contains("zkcoproc_light_client_updates_total{domain=\"ethereum\",outcome=\"bad_signature\"}"),
        "{metrics}"
    );

    // Honest again, and a genuine update: the service catches up to block_b.
    beacon.publish(&finalizing(&chain, &anvil, 98, block_b, false));
    wait_latest(&api, block_b, &server);
    assert_eq!(
        api.get(&format!("/v1/domains/ethereum/blocks/{}/opening", block_a + 2)).expect("opening").1
            ["block_hash"],
        anvil.block_hash(block_a + 2).expect("hash")
    );
    poll(Duration::from_secs(10), || Ok(light_client(&api)["stalled"].is_null().then_some(())))
        .unwrap_or_else(|e| panic!("{e}: {}", light_client(&api)));

    // SIGKILL and restart without a bootstrap to be had: the store resumes from the database.
    server.kill();
    beacon.remove_bootstraps();
    let asked_before = beacon.requests().len();
    let server = Server::start(bin(), &data, "dev", &args).expect("restart");
    let api = server.api();
    let lc = poll(Duration::from_secs(30), || {
        let lc = light_client(&api);
        Ok((lc["light_client"]["bootstrapped"] == true).then_some(lc))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(lc["light_client"]["finalized_slot"], 98, "{lc}");
    assert_eq!(latest(&api), Some(block_b));
    let asked: Vec<String> = beacon.requests()[asked_before..].to_vec();
    assert!(!asked.iter().any(|p| p.contains("/bootstrap/")), "restart asked for a bootstrap: {asked:?}");
}

/// Gloas headers name only an execution block hash (their bid's parent): the service learns the
/// number from the execution node's header that hashes to it, and inserts the chain down to it.
#[test]
fn a_gloas_chain_is_followed_through_the_block_hashes_it_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let anvil = Anvil::start().expect("anvil");
    anvil.mine(5).expect("mine");
    let block_a = anvil.block_number().expect("head");

    let yaml =
        format!("{}DEPOSIT_CHAIN_ID: 31337\n", config_yaml_to_gloas("minimal", SLOT_SECS, Some(0), Some(0)));
    let network = tmp.path().join("gloas.yaml");
    std::fs::write(&network, &yaml).expect("config");
    let chain = TestChain::new(ChainSpec::from_yaml(&yaml).expect("spec"), 11);
    let checkpoint = chain.header(80, execution_header(&anvil, 2).expect("block 2"), B256::ZERO);
    assert!(checkpoint.header.execution_block_hash.is_some(), "a Gloas header");
    let beacon = TestBeacon::start(chain, genesis_time()).expect("beacon");
    let chain = beacon.chain.clone();
    let root = beacon.add_bootstrap(&chain.bootstrap(&checkpoint));
    beacon.publish(&finalizing(&chain, &anvil, 88, block_a, true));

    let args = follow_args(&anvil.url, beacon.url(), root, network.to_str().expect("path"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start(bin(), &tmp.path().join("data"), "dev", &args).expect("server");
    let api = server.api();
    wait_latest(&api, block_a, &server);
    let (_, root_view) = api.get("/v1/root").expect("root");
    let head = &root_view["domains"][0];
    assert_eq!(head["hash"], anvil.block_hash(block_a).expect("hash"), "{root_view}");
    assert_eq!(head["admitted_by"], "light_client", "{root_view}");
    assert_eq!(head["beacon_slot"], 88, "{root_view}");
    // The view learns the finalized block's number once the block is inserted, and again after
    // a restart (from the stored record's anchor, found inserted).
    let shows_number = |api: &Api| {
        let shown = poll(Duration::from_secs(10), || {
            Ok((light_client(api)["light_client"]["finalized_block"] == json!(block_a)).then_some(()))
        });
        assert!(shown.is_ok(), "finalized_block never {block_a}: {}", light_client(api));
    };
    shows_number(&api);
    let (status, first) = api.get("/v1/domains/ethereum/blocks/2/opening").expect("opening");
    assert_eq!((status, &first["present"]), (200, &json!(true)), "the checkpoint's block: {first}");
    assert_eq!(first["block_hash"], anvil.block_hash(2).expect("hash"), "found by its hash: {first}");
    let (status, below) = api.get("/v1/domains/ethereum/blocks/1/opening").expect("opening");
    assert_eq!((status, &below["present"]), (200, &json!(false)), "nothing below the checkpoint: {below}");
    server.kill();
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &args).expect("restart");
    shows_number(&server.api());
}

#[test]
fn rpc_trust_takes_a_fabricated_chain_and_nodes_of_another_network_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let anvil = Anvil::start().expect("anvil");
    anvil.mine(6).expect("mine");
    let exec = LyingRpc::start(&anvil.url).expect("proxy");
    exec.lie_from(3);

    // What the light client prevents: on the node's word, a self-consistent fabricated chain
    // enters the root (the hashes and links it checks all hold).
    let genesis = anvil.block_hash(0).expect("genesis");
    let (exec_arg, checkpoint) = (format!("ethereum={}", exec.url()), format!("ethereum=0:{genesis}"));
    let args = [
        "--domain",
        &exec_arg,
        "--checkpoint",
        &checkpoint,
        "--confirmations",
        "0",
        "--follow-interval-ms",
        "100",
        "--trust",
        "rpc",
    ];
    let server = Server::start(bin(), &tmp.path().join("rpc"), "dev", &args).expect("server");
    let api = server.api();
    wait_latest(&api, 5, &server);
    let (_, opening) = api.get("/v1/domains/ethereum/blocks/4/opening").expect("opening");
    assert_ne!(
        opening["block_hash"],
        anvil.block_hash(4).expect("hash"),
        "the fabricated block 4 is in the root"
    );
    let (_, root) = api.get("/v1/root").expect("root");
    assert_eq!(root["domains"][0]["admitted_by"], "rpc", "{root}");
    assert_eq!(root["trust"][0]["trust"], "rpc", "{root}");
    assert!(server.log().contains("--trust rpc"), "RPC trust is warned about at start");
    drop(server);

    // A beacon node whose network is not the configured one, and an execution node of another
    // chain id: the service refuses to start.
    let (chain, _) = test_chain(tmp.path(), 31337, 9);
    let checkpoint = chain.header(80, execution_header(&anvil, 1).expect("block"), B256::ZERO);
    let beacon = TestBeacon::start(chain, genesis_time()).expect("beacon");
    let root = beacon.add_bootstrap(&beacon.chain.bootstrap(&checkpoint));
    let (_, mainnet_id) = test_chain(tmp.path(), 1, 9);
    let other_versions = tmp.path().join("other-versions.yaml");
    let yaml = format!("{}DEPOSIT_CHAIN_ID: 31337\n", config_yaml("minimal", SLOT_SECS, None));
    std::fs::write(&other_versions, yaml.replace("0x04000042", "0x04000043")).expect("config");
    let beacon_arg = format!("ethereum={}", beacon.url());
    let checkpoint = format!("ethereum=beacon:{root}");
    let anvil_arg = format!("ethereum={}", anvil.url);
    for network in [mainnet_id.as_str(), "sepolia", other_versions.to_str().expect("path")] {
        let args = [
            "--domain",
            &anvil_arg,
            "--beacon",
            &beacon_arg,
            "--checkpoint",
            &checkpoint,
            "--network",
            network,
        ];
        let err = Server::start(bin(), &tmp.path().join(format!("wrong-{}", network.len())), "dev", &args)
            .err()
            .unwrap_or_else(|| panic!("a node of another network was accepted ({network})"));
        assert!(format!("{err:#}").contains("network mismatch"), "{network}: {err:#}");
    }
}

#[test]
fn replay_runs_the_official_vectors_and_fails_a_wrong_check() {
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(sync_cases()).expect("testdata").map(|e| e.expect("entry").path()).collect();
    cases.sort();
    assert_eq!(cases.len(), 3);
    for case in &cases {
        let out = Command::new(bin()).args(["light-client", "replay"]).arg(case).output().expect("replay");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {stdout}{}", case.display(), String::from_utf8_lossy(&out.stderr));
        let steps = std::fs::read_to_string(case.join("steps.yaml"))
            .expect("steps")
            .lines()
            .filter(|l| l.starts_with("- "))
            .count();
        assert_eq!(stdout.lines().filter(|l| l.starts_with("step ")).count(), steps, "{stdout}");
        assert!(stdout.lines().last().is_some_and(|l| l.ends_with("PASS")), "{stdout}");
    }
    // A copy whose expected finalized slot is wrong: that step fails, the exit code says so.
    let tmp = tempfile::tempdir().expect("tempdir");
    let case = cases.iter().find(|c| c.ends_with("light_client_sync")).expect("light_client_sync");
    for entry in std::fs::read_dir(case).expect("case") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).expect("copy");
    }
    let steps = std::fs::read_to_string(tmp.path().join("steps.yaml")).expect("steps");
    std::fs::write(
        tmp.path().join("steps.yaml"),
        steps.replacen("finalized_header: {slot: 72", "finalized_header: {slot: 73", 1),
    )
    .expect("write");
    let out = Command::new(bin()).args(["light-client", "replay"]).arg(tmp.path()).output().expect("replay");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL: finalized slot 72 ≠ expected 73"), "{stdout}");
    // A missing case directory is an error, not a pass.
    let out = Command::new(bin()).args(["light-client", "replay", "/nonexistent"]).output().expect("replay");
    assert!(!out.status.success());
}
