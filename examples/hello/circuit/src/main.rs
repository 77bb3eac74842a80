//! Circuit of `examples/hello`: iterates SHA-256 n times from the all-zero digest and outputs
//! `n (u32 LE) ‖ digest`. The SDK puts the root in front: the journal is `root ‖ n ‖ digest`.

#![no_main]

use zkcoproc_guest::risc0_zkvm::sha::{Impl, Sha256};
use zkcoproc_guest::{CircuitInput, Witness};

fn app(input: &CircuitInput) -> Vec<u8> {
    let [Witness::Data(n)] = input.witnesses.as_slice() else {
        panic!("expected exactly one data witness");
    };
    let n = u32::from_le_bytes(n.as_slice().try_into().expect("n is 4 bytes"));
    assert!(n > 0, "n must be positive");
    let mut digest = [0u8; 32];
    for _ in 0..n {
        let next = Impl::hash_bytes(&digest);
        digest.copy_from_slice(next.as_bytes());
    }
    let mut out = Vec::with_capacity(36);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&digest);
    out
}

zkcoproc_guest::entry!(app);
