//! EVM view calls end to end against a real node (anvil): `examples/erc20-evm` proves
//! `balanceOf(holder)` by executing it in the circuit (dev prover), for the example token (balances
//! at slot 0) and a token whose balances live at slot 5, with the same request shape; the dry run
//! shows the call, its result and its witness; a call the circuit cannot vouch for fails.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use zkcoproc_testing::anvil::{compile, word, Anvil};
use zkcoproc_testing::{erc20_evm_app, poll, Server};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

#[test]
fn balances_are_proven_by_calling_balance_of_whatever_the_storage_layout() {
    let anvil = Anvil::start().expect("anvil");
    let accounts = anvil.accounts().expect("accounts");
    let (owner, alice, bob) = (&accounts[0], &accounts[1], &accounts[2]);
    let token = anvil.deploy_token(owner, 1_000_000).expect("deploy token");
    let shifted_source = zkcoproc_testing::repo_root().join("examples/erc20-evm/contracts/ShiftedToken.sol");
    let shifted_code = compile(&shifted_source, "ShiftedToken").expect("compile ShiftedToken");
    let shifted = anvil.deploy(owner, &format!("{shifted_code}{}", word(5_000))).expect("deploy shifted");
    let b1 = anvil.transfer(&token, owner, alice, 1234).expect("transfer");
    let b2 = anvil.transfer(&shifted, owner, alice, 777).expect("transfer");
    anvil.transfer(&shifted, alice, bob, 77).expect("transfer");
    anvil.mine(3).expect("mine");
    let head = anvil.block_number().expect("head");

    let tmp = tempfile::tempdir().expect("tempdir");
    let args = anvil.follow_args(0, 100).expect("follow args");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &args).expect("server");
    let api = server.api();
    poll(Duration::from_secs(60), || {
        let (status, v) = api.get("/v1/domains/ethereum/latest")?;
        Ok((status == 200 && v["number"].as_u64() >= Some(head)).then_some(v))
    })
    .expect("service follows the chain");

    let program = api.deploy(erc20_evm_app()).expect("deploy");
    let prove = |args: Value| -> Value {
        let task = api.prove(&program, &args).expect("prove");
        api.wait_task(&task, Duration::from_secs(300)).expect("task")
    };
    for (token, holder, block) in
        [(&token, alice, b1), (&shifted, alice, b2), (&shifted, bob, head), (&shifted, alice, head)]
    {
        let expected = anvil.balance_of(token, holder, block).expect("balanceOf");
        let t = prove(json!({"token": token, "holder": holder, "block": block}));
        assert_eq!(t["status"], "done", "{t}\nlog:\n{}", server.log());
        assert_eq!(t["result"]["balance"], expected.to_string(), "{t}");
        assert_eq!(t["result"]["block"], block);
        assert_eq!(t["result"]["token"].as_str().map(str::to_lowercase).as_deref(), Some(token.as_str()));
        assert_eq!(t["result"]["holder"].as_str().map(str::to_lowercase).as_deref(), Some(holder.as_str()));
        // root ‖ abi.encode(block, token, holder, balance)
        let journal = t["journal"].as_str().expect("journal");
        assert_eq!(journal.len(), 2 * (32 + 128), "{journal}");
        assert_eq!(&journal[..64], t["root"].as_str().expect("root"));
        assert_eq!(&journal[64 + 3 * 64..], word(expected), "{journal}");
        let (_, verdict) = api.post("/v1/verify", &json!({"task_id": t["id"]})).expect("verify");
        assert_eq!(verdict["valid"], true, "{verdict}");
    }
    assert_eq!(anvil.balance_of(&shifted, bob, head).expect("balance"), 77);

    // The dry run shows the call, what it returned and how much state it read.
    let (status, dry) = api
        .post(
            &format!("/v1/programs/{program}/witnesses"),
            &json!({"args": {"token": shifted, "holder": alice, "block": head}}),
        )
        .expect("dry run");
    assert_eq!(status, 200, "{dry}");
    let call = &dry["witnesses"][0];
    assert_eq!(call["kind"], "evm_call", "{dry}");
    assert_eq!(call["to"], shifted.as_str(), "{dry}");
    assert_eq!(call["block"], head);
    assert_eq!(call["result"], format!("0x{}", word(700)), "{dry}");
    assert!(call["witness"]["accounts"].as_u64() >= Some(1), "{dry}");
    assert!(call["witness"]["slots"].as_u64() >= Some(1), "{dry}");
    assert!(call["witness"]["code_bytes"].as_u64() > Some(100), "{dry}");

    // An address without code returns no word: the circuit refuses, the task fails.
    let t = prove(json!({"token": bob, "holder": alice, "block": head}));
    assert_eq!(t["status"], "failed", "{t}");
    // A block the service has not inserted.
    let t = prove(json!({"token": token, "holder": alice, "block": head + 50}));
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["code"], "block_not_under_root", "{t}");
}
