//! The controller sandbox: runs zkcoproc controllers (WebAssembly components) with wasmtime.
//!
//! A controller is untrusted code. Every call gets a fresh instance in a fresh store, bounded by
//! fuel (CPU), an epoch deadline (wall clock), a memory cap and a wasm stack cap; its arguments,
//! logs and outputs are size-capped. WASI is linked deny-all: no preopened directory, no
//! environment, no arguments, no sockets, stdio discarded. Compiled components are cached per
//! program, so a program is compiled once.
//!
//! Not for scheduling or persistence: the coordinator decides when to call a controller and
//! stores what it returns.
//!
//! Start from [`Runtime`]: [`Runtime::validate`] at deploy, [`Runtime::prepare`] once per
//! program, then [`Runtime::get_witnesses`] and [`Runtime::entrypoint`].

mod host;
mod limits;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store};
use zkcoproc_types::{EvmCall, Root, StateProof, Witness};
pub use zkcoproc_vfs::Volume;

pub use host::LogLine;
use host::{ControllerPre, HostState};
pub use limits::Limits;

/// How often the epoch ticker advances; the wall-clock deadline has this granularity.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why a controller call or a controller artifact failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bytes are not a WebAssembly component wasmtime can compile.
    #[error("controller is not a valid WebAssembly component: {0}")]
    InvalidComponent(String),
    /// The component compiles but does not fit the controller world (missing exports, or imports
    /// the sandbox does not provide).
    #[error("controller does not implement the zkcoproc controller world: {0}")]
    WrongWorld(String),
    /// The controller trapped (panic, unreachable, stack overflow, ...).
    #[error("controller trapped: {0}")]
    Trap(String),
    /// The call ran out of fuel or past its wall-clock deadline.
    #[error("controller exceeded its {0} limit")]
    Timeout(&'static str),
    /// The controller tried to grow its memory past the cap.
    #[error("controller exceeded its memory limit of {0} bytes")]
    OutOfMemory(usize),
    /// The controller's arguments exceed the cap.
    #[error("arguments of {size} bytes exceed the limit of {limit} bytes")]
    ArgsTooLarge {
        /// size of the arguments
        size: usize,
        /// the cap
        limit: usize,
    },
    /// The controller returned more than the cap allows.
    #[error("controller output of {size} bytes exceeds the limit of {limit} bytes")]
    OutputTooLarge {
        /// size of the output
        size: usize,
        /// the cap
        limit: usize,
    },
    /// The controller returned more witnesses than the cap allows.
    #[error("controller returned {count} witnesses, more than the limit of {limit}")]
    TooManyWitnesses {
        /// witnesses returned
        count: usize,
        /// the cap
        limit: usize,
    },
    /// The controller returned something malformed.
    #[error("controller returned malformed output: {0}")]
    BadOutput(String),
    /// The controller returned an error of its own (`err(...)` from `get-witnesses` or
    /// `entrypoint`).
    #[error("controller returned an error: {0}")]
    Controller(String),
    /// The controller gave up after a `domain` host call failed and returned that failure (its
    /// error names the host error's code): the task keeps the host's code
    /// (`block_not_under_root`, `unknown_domain`, `domain_rpc`, ...).
    #[error("controller returned an error after a failed domain call: {message}")]
    Host {
        /// the failed host call's code
        code: String,
        /// the controller's error
        message: String,
    },
    /// The sandbox itself failed (a bug or resource problem on the host).
    #[error("controller runtime failure: {0}")]
    Internal(String),
}

impl RuntimeError {
    /// Stable machine-readable code for API responses and task errors.
    pub fn code(&self) -> &str {
        match self {
            RuntimeError::Host { code, .. } => code.as_str(),
            RuntimeError::InvalidComponent(_) | RuntimeError::WrongWorld(_) => "invalid_controller",
            RuntimeError::Trap(_) => "controller_trap",
            RuntimeError::Timeout(_) => "controller_timeout",
            RuntimeError::OutOfMemory(_) => "controller_out_of_memory",
            RuntimeError::ArgsTooLarge { .. } => "args_too_large",
            RuntimeError::OutputTooLarge { .. } => "controller_output_too_large",
            RuntimeError::TooManyWitnesses { .. } => "too_many_witnesses",
            RuntimeError::BadOutput(_) => "controller_bad_output",
            RuntimeError::Controller(_) => "controller_error",
            RuntimeError::Internal(_) => "internal",
        }
    }
}

/// A failed call: the error and the logs the controller wrote before it failed.
#[derive(Debug)]
pub struct CallError {
    /// what went wrong
    pub error: RuntimeError,
    /// the controller's log lines up to the failure
    pub logs: Vec<LogLine>,
    /// whether a write to the program's volume failed with `vfs_full` during the call
    pub volume_full: bool,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for CallError {}

impl CallError {
    fn new(error: RuntimeError, logs: Vec<LogLine>) -> Self {
        CallError { error, logs, volume_full: false }
    }
}

impl From<RuntimeError> for CallError {
    fn from(error: RuntimeError) -> Self {
        CallError { error, logs: Vec::new(), volume_full: false }
    }
}

/// A successful call: the value, the logs the controller wrote and, if the call changed it, the
/// program's new volume (to be committed by the caller).
#[derive(Debug)]
pub struct CallOutput<T> {
    /// what the controller returned
    pub value: T,
    /// the controller's log lines
    pub logs: Vec<LogLine>,
    /// the volume after the call, when the call wrote to it
    pub volume: Option<Volume>,
}

/// A failed `domain` host call: a stable code (`block_not_under_root`, `unknown_domain`,
/// `unknown_root`, `no_blocks`, `domain_rpc`, `bad_state_proof_request`, ...) and a message. The
/// controller sees `code: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostError {
    /// stable machine-readable code
    pub code: String,
    /// explanation
    pub message: String,
}

impl HostError {
    /// A host error with `code`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        HostError { code: code.to_owned(), message: message.into() }
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The external chains (domains) a controller may read through the `domain` import, as the
/// service provides them. Calls block (they may go to a JSON-RPC node); controllers run on
/// blocking threads.
pub trait DomainHost: Send + Sync + std::fmt::Debug {
    /// The newest block of `domain` under `root`.
    fn latest(&self, domain: &str, root: &Root) -> Result<u64, HostError>;
    /// `eth_getProof` of `address` and `slots` at `block` of `domain`, which must be under
    /// `root`. The proof comes without header and opening.
    fn state_proof(
        &self,
        domain: &str,
        block: u64,
        address: [u8; 20],
        slots: &[[u8; 32]],
        root: &Root,
    ) -> Result<StateProof, HostError>;
    /// Runs an EVM view call at `block` of `domain` (under `root`) and records its witness, within
    /// the request's budget. Returns the call (with its header, without the opening) and the
    /// JSON-RPC requests it made.
    fn evm_call(
        &self,
        domain: &str,
        block: u64,
        request: EvmRequest,
        root: &Root,
    ) -> Result<(EvmCall, usize), HostError>;
}

/// An EVM view call a controller asks for (the `evm.call` import), lengths checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvmRequest {
    /// `msg.sender`
    pub from: [u8; 20],
    /// the contract
    pub to: [u8; 20],
    /// wei, big-endian
    pub value: [u8; 32],
    /// gas (`None`: the service's default)
    pub gas_limit: Option<u64>,
    /// the input
    pub calldata: Vec<u8>,
    /// a revert is the outcome, not an error
    pub may_revert: bool,
    /// JSON-RPC requests the call may make (what is left of the controller call's budget)
    pub max_rpc_requests: usize,
    /// how long the call may take (what is left of the controller call's deadline)
    pub timeout: std::time::Duration,
}

/// What a call runs for; exposed to the controller through the `context` and `domain` imports.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// hex program id
    pub program_id: String,
    /// the root the task is pinned to
    pub root: Root,
    /// the task, or none for a dry run
    pub task_id: Option<String>,
    /// the domains the controller may read (none: every `domain` call fails)
    pub domains: Option<Arc<dyn DomainHost>>,
}

/// A compiled, type-checked controller, ready to instantiate.
#[derive(Clone)]
pub struct LoadedController {
    pre: ControllerPre<HostState>,
}

impl std::fmt::Debug for LoadedController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedController").finish_non_exhaustive()
    }
}

/// The controller sandbox. Cheap to share behind an `Arc`; calls block, so run them on a
/// blocking thread pool.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    cache: Mutex<lru::LruCache<String, LoadedController>>,
    ticker_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(limits: Limits) -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.max_stack_bytes);
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Internal(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::Internal(e.to_string()))?;
        host::Controller::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Internal(e.to_string()))?;
        // WASI clock waits end at the call's deadline (see `host::link_bounded_clock`).
        host::link_bounded_clock(&mut linker).map_err(|e| RuntimeError::Internal(format!("{e:#}")))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.weak();
        std::thread::Builder::new()
            .name("zkcoproc-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticking.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| RuntimeError::Internal(e.to_string()))?;

        let capacity = NonZeroUsize::new(limits.cached_controllers).unwrap_or(NonZeroUsize::MIN);
        let cache = Mutex::new(lru::LruCache::new(capacity));
        Ok(Runtime { engine, linker, limits, cache, ticker_stop })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles `wasm` and checks that it is a controller component: the expected exports with
    /// the expected types, and no import the sandbox does not provide.
    pub fn validate(&self, wasm: &[u8]) -> Result<LoadedController, RuntimeError> {
        if wasm.len() > self.limits.max_component_bytes {
            return Err(RuntimeError::InvalidComponent(format!(
                "{} bytes exceed the limit of {} bytes",
                wasm.len(),
                self.limits.max_component_bytes
            )));
        }
        let component = Component::new(&self.engine, wasm)
            .map_err(|e| RuntimeError::InvalidComponent(format!("{e:#}")))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?;
        let pre = ControllerPre::new(pre).map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?;
        Ok(LoadedController { pre })
    }

    /// The cached controller of `program_id`, if it was prepared before.
    pub fn cached(&self, program_id: &str) -> Option<LoadedController> {
        self.cache.lock().ok()?.get(program_id).cloned()
    }

    /// Compiles and caches the controller of `program_id` (a no-op when cached).
    pub fn prepare(&self, program_id: &str, wasm: &[u8]) -> Result<LoadedController, RuntimeError> {
        if let Some(c) = self.cached(program_id) {
            return Ok(c);
        }
        let loaded = self.validate(wasm)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(program_id.to_owned(), loaded.clone());
        }
        Ok(loaded)
    }

    /// Calls `get-witnesses(args)`.
    pub fn get_witnesses(
        &self,
        controller: &LoadedController,
        ctx: CallContext,
        volume: Option<Volume>,
        args: &str,
    ) -> Result<CallOutput<Vec<Witness>>, CallError> {
        self.check_args(args)?;
        let limit = self.limits.max_witness_bytes;
        let max_witnesses = self.limits.max_witnesses;
        // The witnesses are converted while the call's state (the EVM calls it recorded) lives.
        let convert = |bindings: &host::Controller, store: &mut Store<HostState>| {
            let out = bindings.call_get_witnesses(&mut *store, args)?;
            Ok(out.map(|witnesses| store.data_mut().convert_witnesses(witnesses)))
        };
        self.call(controller, ctx, volume, convert).and_then(|out| {
            let value = match out.value {
                Ok(v) => v,
                Err(e) => return Err(CallError::new(RuntimeError::BadOutput(e), out.logs)),
            };
            let out = CallOutput { value, logs: out.logs, volume: out.volume };
            if out.value.len() > max_witnesses {
                return Err(CallError::new(
                    RuntimeError::TooManyWitnesses { count: out.value.len(), limit: max_witnesses },
                    out.logs,
                ));
            }
            let size: usize = out.value.iter().map(Witness::encoded_len).sum();
            if size > limit {
                return Err(CallError::new(RuntimeError::OutputTooLarge { size, limit }, out.logs));
            }
            Ok(out)
        })
    }

    /// Calls `entrypoint(event)`; the result must be JSON.
    pub fn entrypoint(
        &self,
        controller: &LoadedController,
        ctx: CallContext,
        volume: Option<Volume>,
        event: &str,
    ) -> Result<CallOutput<String>, CallError> {
        let limit = self.limits.max_result_bytes;
        self.call(controller, ctx, volume, |bindings, store| bindings.call_entrypoint(&mut *store, event))
            .and_then(|out| {
                if out.value.len() > limit {
                    return Err(CallError::new(
                        RuntimeError::OutputTooLarge { size: out.value.len(), limit },
                        out.logs,
                    ));
                }
                if let Err(e) = serde_json_check(&out.value) {
                    return Err(CallError::new(
                        RuntimeError::BadOutput(format!("entrypoint result is not JSON: {e}")),
                        out.logs,
                    ));
                }
                Ok(out)
            })
    }

    fn check_args(&self, args: &str) -> Result<(), CallError> {
        if args.len() > self.limits.max_args_bytes {
            return Err(
                RuntimeError::ArgsTooLarge { size: args.len(), limit: self.limits.max_args_bytes }.into()
            );
        }
        Ok(())
    }

    fn call<T>(
        &self,
        controller: &LoadedController,
        ctx: CallContext,
        volume: Option<Volume>,
        f: impl FnOnce(&host::Controller, &mut Store<HostState>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<CallOutput<T>, CallError> {
        let state = HostState::new(ctx, volume, &self.limits);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let internal = |e: wasmtime::Error| RuntimeError::Internal(format!("{e:#}"));
        store.set_fuel(self.limits.fuel).map_err(internal)?;
        let ticks = self.limits.timeout.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();

        let started = std::time::Instant::now();
        let result = controller.pre.instantiate(&mut store).and_then(|bindings| f(&bindings, &mut store));
        // A call that ran past its deadline failed, whatever it returned: the epoch interruption
        // may not get to trap it when the deadline falls inside a host call (a clock wait that
        // ended at the deadline) and the controller returns right after.
        let result = match result {
            Ok(_) if started.elapsed() >= self.limits.timeout => {
                Err(wasmtime::Error::new(wasmtime::Trap::Interrupt))
            }
            other => other,
        };
        let state = store.into_data();
        let memory_hit = state.limiter.hit();
        let volume = if state.volume_dirty { state.volume } else { None };
        let logs = state.logs;
        let host_errors = state.domain_errors;
        let volume_full = state.volume_full;
        match result {
            Ok(Ok(value)) => Ok(CallOutput { value, logs, volume }),
            Ok(Err(message)) => {
                let message = host::truncate(message, self.limits.max_result_bytes);
                // A controller that gives up on a failed domain call (`?`) returns the host's
                // `code: message`: the task keeps that code. Only codes the host really returned
                // in this call count, so a controller cannot claim one it never got.
                let error = match host_errors.iter().rev().find(|c| message.contains(c.as_str())) {
                    Some(code) => RuntimeError::Host { code: code.clone(), message },
                    None => RuntimeError::Controller(message),
                };
                Err(CallError { error, logs, volume_full })
            }
            Err(e) => {
                let error = classify(&e, memory_hit);
                Err(CallError { error, logs, volume_full })
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn classify(e: &wasmtime::Error, memory_hit: Option<usize>) -> RuntimeError {
    if let Some(limit) = memory_hit {
        return RuntimeError::OutOfMemory(limit);
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => RuntimeError::Timeout("fuel"),
        Some(wasmtime::Trap::Interrupt) => RuntimeError::Timeout("wall-clock"),
        _ if e.downcast_ref::<host::HostTrap>().is_some() => RuntimeError::Timeout("host-call"),
        // The trap itself ("wasm trap: call stack exhausted"), not the wasm backtrace that
        // wasmtime attaches as context (thousands of frames for deep recursion).
        Some(trap) => RuntimeError::Trap(trap.to_string()),
        None => RuntimeError::Trap(host::truncate(e.to_string(), 4096)),
    }
}

fn serde_json_check(s: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<serde::de::IgnoredAny>(s).map(|_| ())
}
