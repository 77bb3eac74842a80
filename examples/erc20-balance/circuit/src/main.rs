//! Circuit of `examples/erc20-balance`: proves "at Ethereum block N, `holder` held `balance` of
//! the ERC-20 at `token`", bound to the coprocessor root.
//!
//! Witnesses: `data(holder (20) ‖ slot (32, big-endian))`, then one state proof of the token
//! account with one storage slot. The SDK has verified the state proof against the root before
//! `app` runs (opening → header → account → storage); `app` checks that the proven slot is the
//! `balances[holder]` slot of the mapping at `slot` (`keccak256(pad32(holder) ‖ slot)`), so a
//! controller cannot pass off another slot's value.
//!
//! Output (after the root the SDK commits): `abi.encode(uint256 block, address token,
//! address holder, uint256 slot, uint256 balance)`, 160 bytes. The mapping index `slot` is part
//! of the statement: which storage mapping holds a token's balances is a fact of its source code,
//! not of its state, so the circuit cannot check it. A verifier must check that `slot` is the
//! index of `token`'s balances mapping (0 for OpenZeppelin's ERC20); the journal says exactly
//! "at block N, `token`'s storage mapping number `slot` maps `holder` to `balance`".

#![no_main]

use zkcoproc_guest::alloy_primitives::keccak256;
use zkcoproc_guest::{CircuitInput, Witness};

/// The domain this circuit speaks for: the journal says "Ethereum".
const DOMAIN: &str = "ethereum";

fn app(input: &CircuitInput) -> Vec<u8> {
    let [Witness::Data(request), Witness::StateProof(proof)] = input.witnesses.as_slice() else {
        panic!("expected a request witness and one state proof");
    };
    assert_eq!(request.len(), 52, "request is holder (20) ‖ slot (32)");
    assert_eq!(proof.domain, DOMAIN, "state proof is not from {DOMAIN}");
    let [slot] = proof.storage.as_slice() else {
        panic!("expected exactly one storage slot");
    };
    let mut preimage = [0u8; 64];
    preimage[12..32].copy_from_slice(&request[..20]);
    preimage[32..].copy_from_slice(&request[20..]);
    assert_eq!(slot.key, keccak256(preimage).0, "proven slot is not balances[holder]");

    let mut out = Vec::with_capacity(160);
    let mut word = [0u8; 32];
    word[24..].copy_from_slice(&proof.block.to_be_bytes());
    out.extend_from_slice(&word);
    let mut word = [0u8; 32];
    word[12..].copy_from_slice(&proof.address);
    out.extend_from_slice(&word);
    out.extend_from_slice(&preimage[..32]);
    out.extend_from_slice(&preimage[32..]);
    out.extend_from_slice(&slot.value);
    out
}

zkcoproc_guest::entry!(app);
