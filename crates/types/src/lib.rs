//! Types shared by the zkcoproc host and its zkVM guests.
//!
//! This crate is `no_std` + `alloc` and depends only on `zkcoproc-smt` (itself dependency-free), because the circuit links it and a
//! user must be able to audit everything a circuit runs. It holds the wire format of the
//! [`CircuitInput`] the service hands a circuit, and the [`journal`] layout every circuit commits
//! (`root (32 bytes) ‖ application output`).
//!
//! It is not for host-only concerns (JSON, storage, HTTP): those live in the host crates.
//!
//! Start from [`CircuitInput`] and [`journal::split`].

#![no_std]

extern crate alloc;

pub mod evm;
pub mod input;
pub mod journal;
pub mod state;
mod wire;

pub use evm::EvmCall;
pub use input::{CircuitInput, DecodeError, Witness};
pub use state::{Account, StateProof, StorageSlot};
pub use zkcoproc_smt as smt;

/// Length in bytes of a coprocessor root.
pub const ROOT_LEN: usize = 32;

/// A coprocessor root: the 32-byte root of the service's sparse Merkle tree over the external
/// chain blocks it knows. All-zero until the service follows a domain.
pub type Root = [u8; ROOT_LEN];

/// The root a proof is pinned to when the service knows no external block yet.
pub const EMPTY_ROOT: Root = [0u8; ROOT_LEN];
