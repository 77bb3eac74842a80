//! Test circuit that does not use the SDK's entry: it commits 40 bytes of 0x07, so its journal
//! never starts with the task's root. The service must refuse it in preflight (`root_mismatch`)
//! before any prover time is spent.

#![no_main]

use zkcoproc_guest::risc0_zkvm::guest::env;

fn main() {
    env::commit_slice(&[7u8; 40]);
}

zkcoproc_guest::risc0_zkvm::guest::entry!(main);
