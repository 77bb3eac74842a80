//! Bindings to the zkcoproc controller WIT world, for controllers written in Rust.
//!
//! A controller is a WebAssembly component (build it for `wasm32-wasip2`, or let
//! `zkcoproc build` do it) that implements [`Controller`] and exports it with [`export!`]:
//!
//! ```ignore
//! use zkcoproc_controller_sdk::{export, Controller, Witness};
//! struct App;
//! impl Controller for App {
//!     fn get_witnesses(args: String) -> Result<Vec<Witness>, String> { Ok(vec![]) }
//!     fn entrypoint(event: String) -> Result<String, String> { Ok(event) }
//! }
//! export!(App);
//! ```
//!
//! The world itself is `wit/controller.wit`; the service's runtime is generated from the same file.

/// Bindings generated from `wit/controller.wit` (the same file the host is generated from).
pub mod bindings {
    #![allow(missing_docs, unreachable_pub)]
    wit_bindgen::generate!({
        path: "wit",
        world: "controller",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "zkcoproc_controller_sdk::bindings",
    });
}

/// Exports a [`Controller`] implementation as the component's `get-witnesses` and `entrypoint`.
pub use bindings::export;
pub use bindings::zkcoproc::controller::context;
/// The program's FAT-16 volume (`read`, `write`, `list`, `remove`, `exists`).
pub use bindings::zkcoproc::controller::fs;
pub use bindings::zkcoproc::controller::log::Level;
pub use bindings::zkcoproc::controller::types::{Account, EthProof, StorageSlot};
/// The trait a controller implements (`get-witnesses` and `entrypoint`).
pub use bindings::Guest as Controller;
pub use bindings::Witness;

/// `code: message`, so `?` turns a filesystem error into a controller's `Err(String)`.
impl From<fs::FsError> for String {
    fn from(e: fs::FsError) -> String {
        format!("{}: {}", e.code, e.message)
    }
}

/// An 8.3 file stem for a task: the last 8 hex digits of its id (the random part of a UUIDv7).
/// Naming per-task files by it makes a re-delivery after a crash overwrite the same file.
pub fn task_file_stem(task_id: &str) -> Result<String, String> {
    let hex: String = task_id.chars().filter(char::is_ascii_hexdigit).collect();
    hex.get(hex.len().saturating_sub(8)..)
        .filter(|s| s.len() == 8)
        .map(str::to_owned)
        .ok_or_else(|| format!("task id `{task_id}` is too short"))
}

/// External chains (domains) the service follows, as seen from the task's root.
pub mod domain {
    use super::bindings::zkcoproc::controller::domain as host;
    use super::EthProof;

    /// The newest block of `domain` under the task's root.
    pub fn latest(domain: &str) -> Result<u64, String> {
        host::latest(domain)
    }

    /// An account + storage proof of `address` and `slots` at `block` of `domain` (the block
    /// must be under the task's root). Return it as [`Witness::StateProof`](crate::Witness) and
    /// the circuit SDK verifies it against the root before the circuit's app sees it.
    pub fn state_proof(
        domain: &str,
        block: u64,
        address: &[u8; 20],
        slots: &[[u8; 32]],
    ) -> Result<EthProof, String> {
        let slots: Vec<Vec<u8>> = slots.iter().map(|s| s.to_vec()).collect();
        host::state_proof(domain, block, address, &slots)
    }
}

/// Logs a line at `level` through the host; the host stores it with the task.
pub fn log(level: Level, message: &str) {
    bindings::zkcoproc::controller::log::log(level, message);
}

/// Logs a line at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}
