//! Host side of the controller world: the generated bindings, per-call state and the imports.

use serde::{Deserialize, Serialize};
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use zkcoproc_types::Witness;

use crate::{CallContext, Limits};

/// Host bindings generated from the same WIT file the controller SDK uses.
mod bindings {
    #![allow(missing_docs, unreachable_pub)]
    wasmtime::component::bindgen!({
        path: "../controller-sdk/wit",
        world: "controller",
    });
}

use bindings::zkcoproc::controller::{context, log, types};
pub(crate) use bindings::{Controller, ControllerPre};

/// One log line a controller wrote.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogLine {
    /// trace, debug, info, warn or error
    pub level: String,
    /// the message (truncated to the host-payload cap)
    pub message: String,
}

/// Memory limiter that remembers when it refused a growth.
pub(crate) struct MemoryLimiter {
    max: usize,
    hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn hit(&self) -> Option<usize> {
        self.hit.then_some(self.max)
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
            return Err(wasmtime::Error::msg("controller memory limit reached"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Per-call host state: the call's context, collected logs, limiter and a deny-all WASI context.
pub(crate) struct HostState {
    ctx: CallContext,
    pub(crate) logs: Vec<LogLine>,
    log_bytes: usize,
    dropped_logs: usize,
    max_payload: usize,
    max_log_bytes: usize,
    pub(crate) limiter: MemoryLimiter,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(ctx: CallContext, limits: &Limits) -> Self {
        // Deny-all WASI: no preopens, env, args, stdin; stdout/stderr discarded; no sockets.
        let wasi = WasiCtx::builder().allow_tcp(false).allow_udp(false).build();
        HostState {
            ctx,
            logs: Vec::new(),
            log_bytes: 0,
            dropped_logs: 0,
            max_payload: limits.max_host_payload_bytes,
            max_log_bytes: limits.max_log_bytes,
            limiter: MemoryLimiter {
                max: limits.max_memory_bytes,
                hit: false,
            },
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        let message = truncate(message, self.max_payload);
        if self.log_bytes + message.len() > self.max_log_bytes {
            self.dropped_logs += 1;
            if self.dropped_logs == 1 {
                self.logs.push(LogLine {
                    level: "warn".into(),
                    message: "log limit reached: later lines dropped".into(),
                });
            }
            return;
        }
        self.log_bytes += message.len();
        tracing::debug!(program = %self.ctx.program_id, level, "controller: {message}");
        self.logs.push(LogLine {
            level: level.to_owned(),
            message,
        });
    }
}

impl context::Host for HostState {
    fn program_id(&mut self) -> String {
        self.ctx.program_id.clone()
    }

    fn root(&mut self) -> Vec<u8> {
        self.ctx.root.to_vec()
    }

    fn task_id(&mut self) -> Option<String> {
        self.ctx.task_id.clone()
    }
}

pub(crate) fn to_witness(w: types::Witness) -> Witness {
    match w {
        types::Witness::Data(bytes) => Witness::Data(bytes),
    }
}

/// Truncates `s` to at most `max` bytes on a char boundary, marking the cut.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("…[truncated]");
    }
    s
}
