//! keccak-256 through the zkVM's keccak accelerator (feature `keccak-accelerator`).
//!
//! alloy-primitives' `native-keccak` feature makes every `keccak256` call (the SDK's trie walks
//! and header hashes, revm's `KECCAK256` opcode) call an external `native_keccak256`; this module
//! defines it with the Keccak sponge (rate 136 bytes, padding `0x01 … 0x80`), each permutation
//! done by `risc0_zkvm::guest::env::risc0_keccak_update`: the host permutes the state and the
//! prover proves the permutations in RISC Zero's keccak circuit, whose receipts the composite
//! receipt carries as a resolved assumption.

/// Bytes absorbed per permutation of keccak-256.
const RATE: usize = 136;

/// `keccak256(bytes[..len])` into `output[..32]`.
///
/// # Safety
///
/// `bytes` must be valid for `len` bytes and `output` for 32 writable bytes (alloy-primitives
/// calls it with a slice and a 32-byte buffer).
#[no_mangle]
pub unsafe extern "C" fn native_keccak256(bytes: *const u8, len: usize, output: *mut u8) {
    // SAFETY: the caller's contract above.
    let (input, output) =
        unsafe { (core::slice::from_raw_parts(bytes, len), core::slice::from_raw_parts_mut(output, 32)) };
    output.copy_from_slice(&keccak256(input));
}

/// keccak-256 of `input`, one accelerated permutation per 136-byte block.
pub fn keccak256(input: &[u8]) -> [u8; 32] {
    let mut state = [0u64; 25];
    let mut blocks = input.chunks_exact(RATE);
    for block in &mut blocks {
        absorb(&mut state, block);
        risc0_zkvm::guest::env::risc0_keccak_update(&mut state);
    }
    let rest = blocks.remainder();
    let mut last = [0u8; RATE];
    last[..rest.len()].copy_from_slice(rest);
    last[rest.len()] ^= 0x01;
    last[RATE - 1] ^= 0x80;
    absorb(&mut state, &last);
    risc0_zkvm::guest::env::risc0_keccak_update(&mut state);
    let mut out = [0u8; 32];
    for (chunk, lane) in out.chunks_exact_mut(8).zip(state) {
        chunk.copy_from_slice(&lane.to_le_bytes());
    }
    out
}

/// XORs a 136-byte block into the first 17 lanes (little-endian).
fn absorb(state: &mut [u64; 25], block: &[u8]) {
    for (lane, bytes) in state.iter_mut().zip(block.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        *lane ^= u64::from_le_bytes(word);
    }
}
