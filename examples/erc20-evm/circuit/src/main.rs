//! Circuit of `examples/erc20-evm`: proves "at Ethereum block N, `token.balanceOf(holder)` returned
//! `balance`", bound to the coprocessor root, by executing the call itself.
//!
//! Witness: one EVM call. The SDK (feature `evm`) has verified it against the root and executed
//! it again with revm over the state it read, before `app` runs: its `to`, `calldata`, `block`,
//! `domain` and `result` are facts of the chain. `app` checks that the call is
//! `balanceOf(holder)` on the Ethereum domain and that it returned one word. No storage slot
//! appears anywhere: the token's own code decides where the balance lives, so nothing in the
//! request can change what is read.
//!
//! Output (after the root the SDK commits): `abi.encode(uint256 block, address token,
//! address holder, uint256 balance)`, 128 bytes.

#![no_main]

use zkcoproc_guest::{CircuitInput, Witness};

/// The domain this circuit speaks for: the journal says "Ethereum".
const DOMAIN: &str = "ethereum";

/// `balanceOf(address)`
const BALANCE_OF: [u8; 4] = [0x70, 0xa0, 0x82, 0x31];

fn app(input: &CircuitInput) -> Vec<u8> {
    let [Witness::EvmCall(call)] = input.witnesses.as_slice() else {
        panic!("expected exactly one EVM call");
    };
    assert_eq!(call.domain, DOMAIN, "the call is not on {DOMAIN}");
    assert!(!call.reverted, "balanceOf reverted");
    let data = call.calldata.as_slice();
    assert!(data.len() == 36 && data[..4] == BALANCE_OF, "the call is not balanceOf(address)");
    assert!(data[4..16].iter().all(|b| *b == 0), "the holder is not an address");
    assert_eq!(call.result.len(), 32, "balanceOf returned {} bytes, not one word", call.result.len());

    let mut out = Vec::with_capacity(128);
    let mut word = [0u8; 32];
    word[24..].copy_from_slice(&call.block.to_be_bytes());
    out.extend_from_slice(&word);
    let mut word = [0u8; 32];
    word[12..].copy_from_slice(&call.to);
    out.extend_from_slice(&word);
    out.extend_from_slice(&data[4..36]);
    out.extend_from_slice(&call.result);
    out
}

zkcoproc_guest::entry!(app);
