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

/// Crockford's base-32 digits: every one a valid 8.3 name character.
const BASE32: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The low 55 bits of a task id (a UUID: the last 14 of its hex digits are random in both v4
/// and v7), as 11 base-32 digits.
fn task_digits(task_id: &str) -> Result<[u8; 11], String> {
    let hex: Vec<u8> = task_id.bytes().filter(u8::is_ascii_hexdigit).collect();
    if hex.len() < 14 {
        return Err(format!("task id `{task_id}` is too short"));
    }
    let tail = std::str::from_utf8(&hex[hex.len() - 14..]).map_err(|e| e.to_string())?;
    let bits = u64::from_str_radix(tail, 16).map_err(|e| e.to_string())? & ((1 << 55) - 1);
    let mut out = [0u8; 11];
    for (i, d) in out.iter_mut().enumerate() {
        *d = BASE32[((bits >> (5 * (10 - i))) & 31) as usize];
    }
    Ok(out)
}

/// An 8.3 file stem for a task: 8 base-32 digits (40 random bits) of its id. Naming per-task
/// files by it makes a re-delivery after a crash overwrite the same file. Prefer
/// [`task_file_name`], which uses the extension too (55 bits).
pub fn task_file_stem(task_id: &str) -> Result<String, String> {
    let d = task_digits(task_id)?;
    Ok(String::from_utf8_lossy(&d[..8]).into_owned())
}

/// A whole 8.3 file name for a task, `SSSSSSSS.EEE`: 11 base-32 digits, 55 random bits of its id
/// (two tasks of a program share a name with probability about n²/2⁵⁶ over n tasks: 1.4·10⁻⁵ at
/// a million). The stem is [`task_file_stem`].
pub fn task_file_name(task_id: &str) -> Result<String, String> {
    let d = task_digits(task_id)?;
    Ok(format!("{}.{}", String::from_utf8_lossy(&d[..8]), String::from_utf8_lossy(&d[8..])))
}

/// Writes `data` to `dir/name`, keeping at most `keep` files written this way in `dir` (the
/// oldest are removed first), and removing more of the oldest while the volume is full. The
/// order lives in `dir/INDEX` (one name per line, oldest first). Writing a name that is already
/// kept (a re-delivery) replaces it and makes it the newest. Returns the file's path.
///
/// Fails with the filesystem's `vfs_full` only if `data` does not fit even once every other kept
/// file is gone. All of it is one controller call, so it is committed whole or not at all.
pub fn write_keeping_newest(dir: &str, name: &str, data: &[u8], keep: usize) -> Result<String, String> {
    let dir = dir.trim_end_matches('/');
    let index_path = format!("{dir}/INDEX");
    let mut kept: Vec<String> = match fs::read(&index_path) {
        Ok(bytes) => {
            String::from_utf8_lossy(&bytes).lines().map(str::to_owned).filter(|l| !l.is_empty()).collect()
        }
        Err(e) if e.code == "vfs_not_found" => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    kept.retain(|n| !n.eq_ignore_ascii_case(name));
    let evict = |kept: &mut Vec<String>| -> Result<(), String> {
        let oldest = kept.remove(0);
        match fs::remove(&format!("{dir}/{oldest}")) {
            Err(e) if e.code != "vfs_not_found" => Err(e.into()),
            _ => Ok(()),
        }
    };
    while kept.len() >= keep.max(1) {
        evict(&mut kept)?;
    }
    let path = format!("{dir}/{name}");
    loop {
        match fs::write(&path, data) {
            Ok(()) => break,
            Err(e) if e.code == "vfs_full" && !kept.is_empty() => evict(&mut kept)?,
            Err(e) => return Err(e.into()),
        }
    }
    kept.push(name.to_owned());
    let mut index = kept.join("\n");
    index.push('\n');
    fs::write(&index_path, index.as_bytes())?;
    Ok(path)
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

/// EVM view calls: "what does `to.f(args)` return at block N", proven by executing the call
/// again in the circuit over the state it touched.
///
/// ```ignore
/// let call = evm::call("ethereum", block, &token, &calldata)?;
/// Ok(vec![Witness::EvmCall(call)])
/// ```
pub mod evm {
    use super::bindings::zkcoproc::controller::evm as host;
    pub use super::bindings::zkcoproc::controller::types::{EvmCall, EvmCallOptions};

    /// Calls `to` with `calldata` at `block` of `domain` (which must be under the task's root)
    /// from the zero address, with no value and the default gas. A revert is an error
    /// (`evm_revert: ...`). Return the call as [`Witness::EvmCall`](crate::Witness): the circuit
    /// SDK (built with its `evm` feature) verifies it and executes it again before the circuit's
    /// app sees `call.result`.
    pub fn call(domain: &str, block: u64, to: &[u8; 20], calldata: &[u8]) -> Result<EvmCall, String> {
        let options = EvmCallOptions { from: None, value: None, gas_limit: None, may_revert: false };
        call_with(domain, block, to, calldata, &options)
    }

    /// [`call`] with a caller, a value, a gas limit, or a revert accepted as the outcome.
    pub fn call_with(
        domain: &str,
        block: u64,
        to: &[u8; 20],
        calldata: &[u8],
        options: &EvmCallOptions,
    ) -> Result<EvmCall, String> {
        host::call(domain, block, to, calldata, options)
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
