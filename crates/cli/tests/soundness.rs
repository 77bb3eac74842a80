//! The soundness catalogue: the real `examples/erc20-balance` guest, executed on inputs built
//! from a real node (anvil), accepts the honest input and rejects every tampered one, so no proof
//! of any of them can exist. Each case breaks one link of root → opening → header → account →
//! storage → application.

use std::time::Duration;

use zkcoproc_eth::{CheckedHeader, RpcClient};
use zkcoproc_smt::{Sha2, Tree};
use zkcoproc_testing::anvil::Anvil;
use zkcoproc_testing::erc20_app;
use zkcoproc_types::{CircuitInput, StateProof, Witness};
use zkcoproc_zkvm::{execute, CircuitImage, DEFAULT_MAX_CYCLES};

const DOMAIN: &str = "ethereum";

struct Fixture {
    image: CircuitImage,
    tree: Tree,
    headers: Vec<CheckedHeader>,
    /// alice's balance slot proof at b1 (honest, complete)
    proof: StateProof,
    /// the same account and slot fetched at b2 (another state root, another storage root)
    later: StateProof,
    request: Vec<u8>,
    bob_request: Vec<u8>,
    b1: u64,
    balance: u128,
    token: [u8; 20],
    alice: [u8; 20],
}

fn addr(s: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    hex::decode_to_slice(s.trim_start_matches("0x"), &mut out).expect("address");
    out
}

fn balance_slot(holder: &[u8; 20]) -> ([u8; 32], Vec<u8>) {
    let mut preimage = [0u8; 64];
    preimage[12..32].copy_from_slice(holder);
    let key = alloy_primitives::keccak256(preimage).0;
    let mut request = holder.to_vec();
    request.extend_from_slice(&[0u8; 32]);
    (key, request)
}

/// The chain both catalogues prove against: a token on anvil, 4321 moved to alice at `b1` and 5
/// more at `b2`, every header checked to link and inserted into a tree.
struct Chain {
    rt: tokio::runtime::Runtime,
    rpc: RpcClient,
    headers: Vec<CheckedHeader>,
    tree: Tree,
    token: [u8; 20],
    alice: [u8; 20],
    bob: [u8; 20],
    b1: u64,
    b2: u64,
    head: u64,
}

fn chain(anvil: &Anvil) -> Chain {
    let accounts = anvil.accounts().expect("accounts");
    let (owner, alice, bob) = (&accounts[0], &accounts[1], &accounts[2]);
    let token = anvil.deploy_token(owner, 10_000_000).expect("token");
    let b1 = anvil.transfer(&token, owner, alice, 4321).expect("transfer");
    anvil.mine(1).expect("mine");
    let b2 = anvil.transfer(&token, owner, alice, 5).expect("transfer");
    let head = anvil.block_number().expect("head");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rpc = RpcClient::new(&anvil.url, Duration::from_secs(10)).expect("rpc");
    let headers = rt.block_on(rpc.headers(0, head as usize + 1)).expect("headers");
    let mut tree = Tree::new();
    for (i, h) in headers.iter().enumerate() {
        if i > 0 {
            headers[i - 1].check_child(h).expect("anvil's chain links");
        }
        let value = zkcoproc_smt::BlockCommitment { block_hash: h.hash.0, state_root: h.state_root.0 };
        tree = tree.insert(zkcoproc_smt::key::<Sha2>(DOMAIN, h.number), value);
    }
    let (token, alice, bob) = (addr(&token), addr(alice), addr(bob));
    Chain { rt, rpc, headers, tree, token, alice, bob, b1, b2, head }
}

fn fixture(anvil: &Anvil) -> Fixture {
    let Chain { rt, rpc, headers, tree, token, alice, bob, b1, b2, .. } = chain(anvil);
    let (key, request) = balance_slot(&alice);
    let (_, bob_request) = balance_slot(&bob);
    let fetch = |block: u64| {
        let mut p = rt.block_on(rpc.get_proof(token, &[key], block)).expect("eth_getProof");
        p.domain = DOMAIN.into();
        p
    };
    let mut proof = fetch(b1);
    proof.header = headers[b1 as usize].rlp.clone();
    proof.opening = Some(tree.open(&zkcoproc_smt::key::<Sha2>(DOMAIN, b1)));
    let later = fetch(b2);
    let image = CircuitImage::load(&std::fs::read(&erc20_app().circuit).expect("circuit")).expect("image");
    Fixture { image, tree, headers, proof, later, request, bob_request, b1, balance: 4321, token, alice }
}

impl Fixture {
    fn input(&self, proof: StateProof) -> CircuitInput {
        CircuitInput {
            root: self.tree.root(),
            witnesses: vec![Witness::Data(self.request.clone()), Witness::StateProof(Box::new(proof))],
        }
    }

    fn run(&self, input: &CircuitInput) -> Result<zkcoproc_zkvm::Executed, String> {
        execute(&self.image, &input.encode(), DEFAULT_MAX_CYCLES).map_err(|e| e.to_string())
    }

    fn rejects(&self, case: &str, input: &CircuitInput, reason: &str) -> String {
        self.rejects_logged(case, input, reason).0
    }

    /// Like [`Fixture::rejects`]; returns the error and what the guest wrote to standard error.
    fn rejects_logged(&self, case: &str, input: &CircuitInput, reason: &str) -> (String, String) {
        match zkcoproc_zkvm::execute_logged(&self.image, &input.encode(), DEFAULT_MAX_CYCLES) {
            (Ok(_), _) => panic!("{case}: the guest accepted a tampered input"),
            (Err(e), log) => {
                let e = e.to_string();
                assert!(e.contains(reason), "{case}: rejected, but for another reason: {e}");
                (e, log)
            }
        }
    }

    /// Like [`Fixture::rejects`], and the reason reads well: one line that names the witness and
    /// the check, with no node dumped in hex.
    /// The whole detail (alloy-trie's error, nodes and values in hex) is on the guest's standard
    /// error, which the service keeps in the task's logs.
    fn rejects_briefly(&self, case: &str, input: &CircuitInput, reason: &str) {
        let (e, log) = self.rejects_logged(case, input, reason);
        assert!(
            log.starts_with("witness 1: ") && log.contains("detail: "),
            "{case}: no detail logged: {log}"
        );
        let line =
            &e[e.find("witness 1: state proof").unwrap_or_else(|| panic!("{case}: no witness named: {e}"))..];
        let longest_hex = line.split(|c: char| !c.is_ascii_hexdigit()).map(str::len).max().unwrap_or(0);
        assert!(!line.contains('\n') && longest_hex < 40, "{case}: not a brief line: {line}");
    }
}

#[test]
fn the_guest_accepts_the_honest_input_and_rejects_every_tampered_one() {
    let anvil = Anvil::start().expect("anvil");
    let f = fixture(&anvil);

    // Honest: the journal is root ‖ abi(block, token, holder, slot, balance).
    let honest = f.run(&f.input(f.proof.clone())).expect("honest input executes");
    let mut expected = f.tree.root().to_vec();
    let mut word = [0u8; 32];
    word[24..].copy_from_slice(&f.b1.to_be_bytes());
    expected.extend_from_slice(&word);
    for a in [&f.token, &f.alice] {
        let mut word = [0u8; 32];
        word[12..].copy_from_slice(a);
        expected.extend_from_slice(&word);
    }
    expected.extend_from_slice(&[0u8; 32]); // the mapping index (slot 0)
    let mut word = [0u8; 32];
    word[16..].copy_from_slice(&f.balance.to_be_bytes());
    expected.extend_from_slice(&word);
    assert_eq!(honest.journal, expected);
    println!("honest erc20 input: {} user cycles, {} segment(s)", honest.user_cycles, honest.segments);

    let key = |n: u64| zkcoproc_smt::key::<Sha2>(DOMAIN, n);
    let with = |edit: &dyn Fn(&mut StateProof)| {
        let mut p = f.proof.clone();
        edit(&mut p);
        f.input(p)
    };

    f.rejects("state proof without an opening", &with(&|p| p.opening = None), "no SMT opening");
    f.rejects(
        "opening for another block number",
        &with(&|p| p.opening = Some(f.tree.open(&key(f.b1 - 1)))),
        "opening",
    );
    let mut other_root = f.input(f.proof.clone());
    other_root.root = f.tree.insert(key(9_999), Default::default()).root();
    f.rejects("opening under another root", &other_root, "opening leads to root");
    f.rejects(
        "header not matching the opening",
        &with(&|p| p.header = f.headers[f.b1 as usize - 1].rlp.clone()),
        "header hash",
    );
    // Each MPT failure says which proof and which node, in a line.
    let root_node = "node 0 does not hash to the trie's root";
    f.rejects_briefly(
        "account proof against the wrong state root",
        &with(&|p| {
            p.account = f.later.account.clone();
            p.account_proof = f.later.account_proof.clone();
        }),
        &format!("account proof: {root_node}"),
    );
    let slot = format!("storage proof 0 (slot 0x{}…)", hex::encode(&f.proof.storage[0].key[..4]));
    f.rejects_briefly(
        "storage proof against the wrong storage root",
        &with(&|p| p.storage = f.later.storage.clone()),
        &format!("{slot}: {root_node}"),
    );
    let missing = "nodes end before the key's path does (a node is missing)";
    f.rejects_briefly("truncated account proof", &with(&|p| drop(p.account_proof.pop())), missing);
    f.rejects_briefly("truncated storage proof", &with(&|p| drop(p.storage[0].proof.pop())), missing);
    assert!(f.proof.account_proof.len() >= 2, "anvil's state trie has a branch above the token");
    f.rejects_briefly(
        "reordered account proof nodes",
        &with(&|p| p.account_proof.swap(0, 1)),
        &format!("account proof: {root_node}"),
    );
    f.rejects_briefly(
        "reordered storage proof nodes",
        &with(&|p| p.storage[0].proof.reverse()),
        &format!("{slot}: {root_node}"),
    );
    let last = f.proof.account_proof.len() - 1;
    f.rejects_briefly(
        "a tampered account proof node",
        &with(&|p| {
            let node = &mut p.account_proof[last];
            let end = node.len() - 1;
            node[end] ^= 1;
        }),
        &format!("account proof: node {last} is not the node {} references on the key's path", last - 1),
    );
    f.rejects_briefly(
        "a storage value other than the proven one",
        &with(&|p| p.storage[0].value[31] ^= 1),
        &format!("{slot}: the nodes prove a value"),
    );
    f.rejects_briefly(
        "an account other than the proven one",
        &with(&|p| p.account.nonce += 1),
        "account proof: the nodes prove a value",
    );
    f.rejects("a state proof of another domain", &with(&|p| p.domain = "sepolia".into()), "opening");
    let mut bob = f.input(f.proof.clone());
    bob.witnesses[0] = Witness::Data(f.bob_request.clone());
    f.rejects("alice's slot passed off as bob's balance", &bob, "not balances[holder]");
}

/// The EVM path: the real `examples/erc20-evm` guest (SDK feature `evm`) executes `balanceOf`
/// again over the preflight's witness and accepts the honest input; every tampered witness makes
/// it panic, so no proof of it can exist.
#[test]
fn the_evm_guest_executes_the_call_again_and_rejects_every_tampered_witness() {
    use zkcoproc_evm::preflight::{preflight, CallRequest, Limits};
    use zkcoproc_types::EvmCall;

    let anvil = Anvil::start().expect("anvil");
    let Chain { rt, rpc, headers, tree, token, alice, b1, b2, head, .. } = chain(&anvil);
    let mut calldata = vec![0x70, 0xa0, 0x82, 0x31, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    calldata.extend_from_slice(&alice);
    let chain_id = rt.block_on(rpc.chain_id()).expect("chain id");
    let call_at = |block: u64| -> EvmCall {
        let request = CallRequest {
            domain: DOMAIN.into(),
            block,
            chain_id,
            to: token,
            calldata: calldata.clone(),
            ..Default::default()
        };
        let header = headers[block as usize].rlp.clone();
        let mut call =
            rt.block_on(preflight(&rpc, header, request, &Limits::default())).expect("preflight").call;
        call.opening = Some(tree.open(&zkcoproc_smt::key::<Sha2>(DOMAIN, block)));
        call
    };
    let honest = call_at(b1);
    let later = call_at(b2);
    let image =
        CircuitImage::load(&std::fs::read(&zkcoproc_testing::erc20_evm_app().circuit).expect("circuit"))
            .expect("image");
    let input =
        |call: EvmCall| CircuitInput { root: tree.root(), witnesses: vec![Witness::EvmCall(Box::new(call))] };
    let run = |input: &CircuitInput| {
        execute(&image, &input.encode(), DEFAULT_MAX_CYCLES).map_err(|e| e.to_string())
    };

    // Honest: root ‖ abi(block, token, holder, balance).
    let out = run(&input(honest.clone())).expect("honest input executes");
    let mut expected = tree.root().to_vec();
    let mut word = [0u8; 32];
    word[24..].copy_from_slice(&b1.to_be_bytes());
    expected.extend_from_slice(&word);
    for a in [&token, &alice] {
        let mut word = [0u8; 32];
        word[12..].copy_from_slice(a);
        expected.extend_from_slice(&word);
    }
    let mut word = [0u8; 32];
    word[16..].copy_from_slice(&4321u128.to_be_bytes());
    expected.extend_from_slice(&word);
    assert_eq!(out.journal, expected);
    println!("honest erc20-evm input: {} user cycles, {} segment(s)", out.user_cycles, out.segments);

    let rejects = |case: &str, edit: &dyn Fn(&mut EvmCall), reason: &str| {
        let mut call = honest.clone();
        edit(&mut call);
        match run(&input(call)) {
            Ok(_) => panic!("{case}: the guest accepted a tampered call"),
            Err(e) => assert!(e.contains(reason), "{case}: rejected, but for another reason: {e}"),
        }
    };
    let last = |v: &mut Vec<u8>| {
        let n = v.len() - 1;
        v[n] ^= 1;
    };
    rejects("a result that differs from the re-execution", &|c| last(&mut c.result), "result differs");
    rejects("a revert claimed for a success", &|c| c.reverted = true, "result differs");
    rejects(
        "a storage value changed (its leaf no longer hashes to what its parent names)",
        &|c| {
            let leaf = c.nodes.iter_mut().min_by_key(|n| n.len()).expect("nodes");
            last(leaf)
        },
        "is not in the witness",
    );
    for i in 0..honest.nodes.len() {
        rejects(&format!("trie node {i} missing"), &|c| drop(c.nodes.remove(i)), "is not in the witness");
    }
    rejects("wrong code for the token", &|c| c.codes[0].push(0), "code with hash");
    rejects(
        "a header field changed (timestamp)",
        &|c| {
            let mut h = zkcoproc_evm::db::decode_header(&c.header).expect("header");
            h.timestamp += 1;
            c.header = alloy_rlp::encode(&h);
        },
        "header hash differs",
    );
    rejects(
        "an ancestor header that does not link",
        &|c| c.ancestors = vec![headers[head as usize].rlp.clone()],
        "does not link",
    );
    rejects("a witness without the opening", &|c| c.opening = None, "no SMT opening");
    rejects("accounts from another block", &|c| c.nodes = later.nodes.clone(), "is not in the witness");
    rejects(
        "the opening of another block",
        &|c| c.opening = Some(tree.open(&zkcoproc_smt::key::<Sha2>(DOMAIN, b2))),
        "opening",
    );
    rejects(
        "a call the app does not prove (another holder's balance under the honest result)",
        &|c| c.calldata[35] ^= 1,
        "result differs",
    );
}
