//! View calls against a real node (anvil): the preflight records a witness, the witness alone
//! reproduces `eth_call`, and every way of tampering with the witness makes it fail to verify.

use std::path::Path;
use std::time::Duration;

use alloy_primitives::keccak256;
use anyhow::Context as _;
use zkcoproc_eth::RpcClient;
use zkcoproc_evm::preflight::{preflight, CallRequest, Limits, PreflightError};
use zkcoproc_evm::{db::AncestorError, mpt::MptError, verify, EvmCall, EvmError, WitnessError};
use zkcoproc_smt::{BlockCommitment, Sha2, Tree};
use zkcoproc_testing::anvil::{address_word, compile, word, Anvil};

const DOMAIN: &str = "ethereum";

struct Chain {
    anvil: Anvil,
    rpc: RpcClient,
    chain_id: u64,
    probe: String,
    token: String,
    holder: String,
}

fn hex20(a: &str) -> anyhow::Result<[u8; 20]> {
    hex::decode(a.trim_start_matches("0x"))?.try_into().map_err(|_| anyhow::anyhow!("not an address: {a}"))
}

/// anvil with a ledger of 40 items, a probe over it, and the example token with a transfer.
async fn chain() -> anyhow::Result<Chain> {
    let anvil = Anvil::start()?;
    let from = anvil.accounts()?.first().context("no account")?.clone();
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contracts/Probe.sol");
    let ledger = anvil.deploy(&from, &compile(&sources, "Ledger")?)?;
    let push = hex::encode(selector("push(uint256)"));
    for i in 0..40u128 {
        anvil.send(&from, Some(&ledger), &format!("0x{push}{}", word(i * 3 + 1)))?;
    }
    let probe = anvil.deploy(&from, &format!("{}{}", compile(&sources, "Probe")?, address_word(&ledger)?))?;
    let token = anvil.deploy_token(&from, 1_000_000)?;
    let holder = "0x00000000000000000000000000000000000b0b01".to_owned();
    anvil.transfer(&token, &from, &holder, 1234)?;
    anvil.mine(3)?;
    let rpc = RpcClient::new(&anvil.url, Duration::from_secs(30))?;
    let chain_id = rpc.chain_id().await?;
    Ok(Chain { anvil, rpc, chain_id, probe, token, holder })
}

impl Chain {
    fn request(&self, to: &str, calldata: Vec<u8>, block: u64) -> anyhow::Result<CallRequest> {
        Ok(CallRequest {
            domain: DOMAIN.into(),
            block,
            chain_id: self.chain_id,
            to: hex20(to)?,
            calldata,
            ..CallRequest::default()
        })
    }

    async fn run(&self, request: CallRequest, limits: &Limits) -> Result<EvmCall, PreflightError> {
        let header = self.rpc.header(request.block).await.map_err(|e| PreflightError::Rpc(e.to_string()))?;
        Ok(preflight(&self.rpc, header.rlp, request, limits).await?.call)
    }
}

/// A root whose tree holds `call`'s block, and the call with its opening attached.
fn bind(mut call: EvmCall) -> ([u8; 32], EvmCall) {
    let header = zkcoproc_evm::db::decode_header(&call.header).expect("header");
    let key = zkcoproc_smt::key::<Sha2>(&call.domain, call.block);
    let commitment =
        BlockCommitment { block_hash: keccak256(&call.header).0, state_root: header.state_root.0 };
    let tree = Tree::new().insert(key, commitment);
    call.opening = Some(tree.open(&key));
    (tree.root(), call)
}

fn selector(signature: &str) -> Vec<u8> {
    keccak256(signature.as_bytes())[..4].to_vec()
}

fn calldata(signature: &str, args: &[&str]) -> Vec<u8> {
    let mut data = selector(signature);
    for a in args {
        data.extend(hex::decode(a).expect("hex argument"));
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_calls_reproduce_eth_call_and_tampering_is_caught() -> anyhow::Result<()> {
    let c = chain().await?;
    let block = c.anvil.block_number()?;

    // A call into a second contract looping over 40 storage slots, block fields and blockhash.
    let probe_data = calldata("probe(uint256)", &[&word(2)]);
    let call = c.run(c.request(&c.probe, probe_data.clone(), block)?, &Limits::default()).await?;
    let expected = c.anvil.call(&c.probe, &format!("0x{}", hex::encode(&probe_data)), block)?;
    assert_eq!(hex::encode(&call.result), expected, "the preflight's result is eth_call's");
    assert!(!call.reverted);
    assert_eq!(call.ancestors.len(), 1, "blockhash(number - 2) needs the parent header");
    let total: u128 = (0..40u128).map(|i| i * 3 + 1).sum();
    assert_eq!(&call.result[..32], hex::decode(word(total))?.as_slice());

    let (root, bound) = bind(call.clone());
    let outcome = verify::<Sha2>(&root, &bound).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(outcome.output, call.result);
    assert!(outcome.reads.slots >= 41, "the loop read every item and the length: {:?}", outcome.reads);

    // The token: balanceOf(holder) through the EVM.
    let balance_data = calldata("balanceOf(address)", &[&address_word(&c.holder)?]);
    let token_call = c.run(c.request(&c.token, balance_data, block)?, &Limits::default()).await?;
    assert_eq!(token_call.result, hex::decode(word(1234))?);
    let (token_root, token_bound) = bind(token_call);
    verify::<Sha2>(&token_root, &token_bound).map_err(|e| anyhow::anyhow!("{e}"))?;

    // Soundness: each of these must make verification impossible.
    let refuse = |what: &str, tampered: EvmCall, check: &dyn Fn(&EvmError) -> bool| match verify::<Sha2>(
        &root, &tampered,
    ) {
        Ok(_) => panic!("{what}: a tampered call verified"),
        Err(e) => assert!(check(&e), "{what}: refused for the wrong reason: {e:?}"),
    };
    let missing_node =
        |e: &EvmError| matches!(e, EvmError::Witness(WitnessError::Trie(MptError::MissingNode(_))));

    let mut t = bound.clone();
    t.result[31] ^= 1;
    refuse("a result that differs from the re-execution", t, &|e| *e == EvmError::ResultMismatch);

    let mut t = bound.clone();
    t.reverted = true;
    refuse("a success claimed as a revert", t, &|e| *e == EvmError::ResultMismatch);

    // A storage value changed: the leaf holding it no longer has the hash its parent names.
    let mut t = bound.clone();
    let leaf = t.nodes.iter_mut().min_by_key(|n| n.len()).context("nodes")?;
    let last = leaf.len() - 1;
    leaf[last] ^= 1;
    refuse("a trie node changed", t, &missing_node);

    for i in 0..bound.nodes.len() {
        let mut t = bound.clone();
        t.nodes.remove(i);
        refuse(&format!("trie node {i} missing"), t, &missing_node);
    }

    let mut t = bound.clone();
    for code in &mut t.codes {
        code.push(0x00);
    }
    refuse("wrong code for the accounts", t, &|e| {
        matches!(e, EvmError::Witness(WitnessError::MissingCode(_)))
    });

    let mut t = bound.clone();
    let mut header = zkcoproc_evm::db::decode_header(&t.header).context("header")?;
    header.timestamp += 1;
    t.header = alloy_rlp::encode(&header);
    refuse("a header field changed (timestamp)", t, &|e| *e == EvmError::HeaderHashMismatch);

    let mut t = bound.clone();
    t.ancestors[0] = c.rpc.header(block - 5).await?.rlp;
    refuse("an ancestor header that does not link", t, &|e| {
        *e == EvmError::Ancestors(AncestorError::Unlinked(0))
    });

    let mut t = bound.clone();
    t.ancestors.clear();
    refuse("blockhash without its ancestor", t, &|e| {
        matches!(e, EvmError::Witness(WitnessError::MissingBlockHash(_)))
    });

    let mut t = bound.clone();
    t.opening = None;
    refuse("a witness without the opening", t, &|e| *e == EvmError::MissingOpening);

    // The state of another block: the same call's witness at an older block, presented as
    // this block's (its nodes hang under another state root).
    let older = c.run(c.request(&c.probe, probe_data.clone(), block - 4)?, &Limits::default()).await?;
    let mut t = bound.clone();
    t.nodes = older.nodes;
    refuse("accounts from another block", t, &missing_node);

    // Another chain id: `block.chainid` is part of the result, so the claimed result is not
    // what the call returns under it.
    let mut t = bound.clone();
    t.chain_id += 1;
    refuse("another chain id", t, &|e| *e == EvmError::ResultMismatch);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverts_gas_and_state_bounds_have_their_codes() -> anyhow::Result<()> {
    let c = chain().await?;
    let block = c.anvil.block_number()?;
    let check = |minimum: u128| calldata("check(uint256)", &[&word(minimum)]);

    let err =
        c.run(c.request(&c.probe, check(1 << 100), block)?, &Limits::default()).await.expect_err("must fail");
    assert_eq!(err.code(), "evm_revert", "{err}");
    let PreflightError::Revert(data) = &err else { panic!("{err:?}") };
    assert!(String::from_utf8_lossy(data).contains("total below minimum"), "{err}");

    // A call that may revert: the revert data is the fact, and it verifies.
    let request = CallRequest { may_revert: true, ..c.request(&c.probe, check(1 << 100), block)? };
    let call = c.run(request, &Limits::default()).await?;
    assert!(call.reverted);
    let (root, bound) = bind(call);
    assert!(verify::<Sha2>(&root, &bound).map_err(|e| anyhow::anyhow!("{e}"))?.reverted);
    // ... and a revert of a call that did not allow it is no proof.
    let mut t = bound.clone();
    t.may_revert = false;
    assert!(matches!(verify::<Sha2>(&root, &t), Err(EvmError::Reverted(_))));

    // Out of gas at the top (a call running out inside `ledger.sum()` is a revert of the outer
    // call, as Solidity bubbles it up): the intrinsic cost is paid, the first cold SLOAD is not.
    let request = CallRequest { gas_limit: Some(23_000), ..c.request(&c.probe, check(0), block)? };
    let err = c.run(request, &Limits::default()).await.expect_err("must fail");
    assert_eq!(err.code(), "evm_out_of_gas", "{err}");
    let request = CallRequest { gas_limit: Some(40_000), ..c.request(&c.probe, check(0), block)? };
    let err = c.run(request, &Limits::default()).await.expect_err("must fail");
    assert_eq!(err.code(), "evm_revert", "out of gas inside the inner call: {err}");

    let small = Limits { max_slots: 10, ..Limits::default() };
    let err = c.run(c.request(&c.probe, check(0), block)?, &small).await.expect_err("must fail");
    assert_eq!(err.code(), "evm_too_much_state", "{err}");
    assert!(err.to_string().contains("10 storage slots"), "{err}");

    let few = Limits { max_rpc_requests: 3, ..Limits::default() };
    let err = c.run(c.request(&c.probe, check(0), block)?, &few).await.expect_err("must fail");
    assert_eq!(err.code(), "evm_too_much_state", "{err}");
    Ok(())
}
