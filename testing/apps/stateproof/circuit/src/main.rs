//! Bench circuit: only the SDK's state-proof verification (no application work), so the cycle
//! count of an input is what verifying its state proofs costs. Outputs the number of storage
//! slots verified (u32 LE).

#![no_main]

use zkcoproc_guest::{CircuitInput, Witness};

fn app(input: &CircuitInput) -> Vec<u8> {
    let slots: usize = input
        .witnesses
        .iter()
        .map(|w| match w {
            Witness::StateProof(p) => p.storage.len(),
            Witness::Data(_) | Witness::EvmCall(_) => 0,
        })
        .sum();
    (slots as u32).to_le_bytes().to_vec()
}

zkcoproc_guest::entry!(app);
