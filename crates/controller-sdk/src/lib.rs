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
/// The trait a controller implements (`get-witnesses` and `entrypoint`).
pub use bindings::Guest as Controller;
pub use bindings::Witness;

/// Logs a line at `level` through the host; the host stores it with the task.
pub fn log(level: Level, message: &str) {
    bindings::zkcoproc::controller::log::log(level, message);
}

/// Logs a line at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}
