//! Circuit SDK for zkcoproc: the code every zkcoproc RISC Zero guest runs around the app.
//!
//! A circuit is a `#![no_main]` RISC Zero guest whose only job is the application function;
//! [`entry!`] wires it up. The SDK reads the [`CircuitInput`] the service wrote to stdin
//! (panicking, and so making no proof, on a malformed one), verifies every state-proof witness
//! against the input's root (see [`state`]; a failure panics, so no proof exists), commits the
//! root as the journal's first 32 bytes *before* the application runs, then commits the
//! application's output. The journal is therefore always `root ‖ output`, and every
//! [`Witness::StateProof`] the application sees is a verified fact of the chain under that root,
//! whatever the application does.
//!
//! With the `evm` feature, every [`Witness::EvmCall`] is verified and executed again the same way
//! before the app runs (see `zkcoproc-evm`): its `to`, `calldata`, `block`, `domain` and `result`
//! are then facts of the chain under the root. Without the feature, an input holding an EVM call
//! makes no proof.
//!
//! Not for host code: this crate is `no_std` and only meaningful on `riscv32im-risc0-zkvm-elf`.
//!
//! ```ignore
//! #![no_main]
//! fn app(input: &zkcoproc_guest::CircuitInput) -> Vec<u8> { /* check, compute */ vec![] }
//! zkcoproc_guest::entry!(app);
//! ```

#![no_std]

extern crate alloc;

#[cfg(all(feature = "keccak-accelerator", target_os = "zkvm"))]
pub mod keccak;
pub mod state;

use alloc::vec::Vec;

pub use zkcoproc_types::{journal, Account, CircuitInput, EvmCall, Root, StateProof, StorageSlot, Witness};

/// The `alloy-primitives` the SDK verifies with (keccak, U256, Address), for apps to share.
pub use alloy_primitives;

/// The pinned RISC Zero guest crate (use it for `env`, accelerated `sha`, ...), so an app never
/// pins a second, possibly disagreeing, risc0 version.
pub use risc0_zkvm;

/// Largest input the SDK accepts (the service bounds what it writes well below this).
pub const MAX_INPUT_LEN: usize = 64 << 20;

/// Reads and decodes the circuit input from the host. Panics on a malformed or oversized input,
/// which aborts the guest so that no proof exists.
pub fn read_input() -> CircuitInput {
    use risc0_zkvm::guest::env;
    let mut len: u32 = 0;
    env::read_slice(core::slice::from_mut(&mut len));
    let len = len as usize;
    assert!(len <= MAX_INPUT_LEN, "circuit input of {len} bytes exceeds {MAX_INPUT_LEN}");
    let mut bytes = alloc::vec![0u8; len];
    env::read_slice(&mut bytes);
    match CircuitInput::decode(&bytes) {
        Ok(input) => input,
        Err(e) => panic!("{e}"),
    }
}

/// Verifies every state-proof and EVM-call witness of `input` against its root, panicking (so
/// that no proof can exist) on the first that fails.
pub fn verify_state_proofs(input: &CircuitInput) {
    for (i, w) in input.witnesses.iter().enumerate() {
        match w {
            Witness::Data(_) => {}
            Witness::StateProof(proof) => {
                if let Err(e) = state::verify_state_proof::<state::Risc0Sha256>(&input.root, proof) {
                    reject(i, &e);
                }
            }
            Witness::EvmCall(call) => verify_evm_call(i, &input.root, call),
        }
    }
}

/// Rejects witness `i`: the whole story (nodes and values, in hex) on standard error, which the
/// service keeps in the task's logs, then a panic that says in one line which witness and which
/// check failed (and, for a trie proof, which node).
fn reject(i: usize, e: &state::StateProofError) -> ! {
    use risc0_zkvm::guest::env::Write as _;
    let detail = alloc::format!("witness {i}: {e:?}\n");
    risc0_zkvm::guest::env::stderr().write_slice(detail.as_bytes());
    panic!("witness {i}: {e}");
}

#[cfg(feature = "evm")]
fn verify_evm_call(i: usize, root: &Root, call: &EvmCall) {
    if let Err(e) = zkcoproc_evm::verify::<state::Risc0Sha256>(root, call) {
        panic!("witness {i}: {e}");
    }
}

#[cfg(not(feature = "evm"))]
fn verify_evm_call(i: usize, _root: &Root, _call: &EvmCall) {
    panic!("witness {i}: an EVM call, and this circuit was built without the SDK's `evm` feature");
}

/// Runs `app` as a zkcoproc circuit: reads the input, verifies its state proofs, commits its
/// root, runs the app and commits its output. Use [`entry!`] rather than calling this directly.
pub fn run<F>(app: F)
where
    F: FnOnce(&CircuitInput) -> Vec<u8>,
{
    use risc0_zkvm::guest::env;
    let input = read_input();
    verify_state_proofs(&input);
    // The root goes first and before the app runs: the journal layout cannot be broken.
    env::commit_slice(&input.root);
    let output = app(&input);
    env::commit_slice(&output);
}

/// Declares `app: fn(&CircuitInput) -> Vec<u8>` as the circuit's application function.
#[macro_export]
macro_rules! entry {
    ($app:path) => {
        fn __zkcoproc_guest_main() {
            $crate::run($app)
        }
        $crate::risc0_zkvm::guest::entry!(__zkcoproc_guest_main);
    };
}
