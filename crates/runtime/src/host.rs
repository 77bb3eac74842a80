//! Host side of the controller world: the generated bindings, per-call state and the imports.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreContextMut};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_io::poll::{subscribe, DynPollable, Pollable};
use zkcoproc_types::{Account, EvmCall, StateProof, StorageSlot, Witness};
use zkcoproc_vfs::{VfsError, Volume};

use crate::{CallContext, EvmRequest, HostError, Limits};

/// Host bindings generated from the same WIT file the controller SDK uses.
mod bindings {
    #![allow(missing_docs, unreachable_pub)]
    wasmtime::component::bindgen!({
        path: "../controller-sdk/wit",
        world: "controller",
        // Host functions may trap (budget exhausted, oversized payload).
        imports: { default: trappable },
    });
}

use bindings::zkcoproc::controller::{context, domain, evm, fs, log, types};
pub(crate) use bindings::{Controller, ControllerPre};

/// One log line a controller wrote.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogLine {
    /// trace, debug, info, warn or error
    pub level: String,
    /// the message (truncated to the host-payload cap)
    pub message: String,
}

/// Why a host call trapped the controller.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostTrap {
    #[error("controller made more than {0} host calls")]
    TooManyHostCalls(u64),
}

/// Resource limiter of one call: all linear memories together stay under the memory cap (a
/// component may have many memories, and wasmtime enables multi-memory), and instances,
/// memories, tables and table elements are capped. Remembers when it refused a memory growth.
pub(crate) struct MemoryLimiter {
    max: usize,
    /// bytes of all linear memories of the call
    total: usize,
    /// elements of all tables of the call
    table_elements: usize,
    max_table_elements: usize,
    instances: usize,
    memories: usize,
    tables: usize,
    hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        MemoryLimiter {
            max: limits.max_memory_bytes,
            total: 0,
            table_elements: 0,
            max_table_elements: limits.max_table_elements,
            instances: limits.max_instances,
            memories: limits.max_memories,
            tables: limits.max_tables,
            hit: false,
        }
    }

    pub(crate) fn hit(&self) -> Option<usize> {
        self.hit.then_some(self.max)
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.max {
            self.hit = true;
            return Err(wasmtime::Error::msg("controller memory limit reached"));
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.table_elements.saturating_sub(current).saturating_add(desired);
        if total > self.max_table_elements {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.memories
    }

    fn tables(&self) -> usize {
        self.tables
    }
}

/// Per-call host state: the call's context, collected logs, limiter and a deny-all WASI context.
pub(crate) struct HostState {
    ctx: CallContext,
    /// The program's volume for this call (a private copy), and whether the call changed it.
    pub(crate) volume: Option<Volume>,
    pub(crate) volume_dirty: bool,
    /// whether a volume write failed with `vfs_full`
    pub(crate) volume_full: bool,
    host_calls: u64,
    max_host_calls: u64,
    max_fs_write: usize,
    pub(crate) logs: Vec<LogLine>,
    /// codes of the `domain` calls that failed in this call, in order
    pub(crate) domain_errors: Vec<String>,
    log_bytes: usize,
    dropped_logs: usize,
    max_payload: usize,
    max_log_bytes: usize,
    pub(crate) limiter: MemoryLimiter,
    /// when the call started: the zero of the controller's monotonic clock
    started: std::time::Instant,
    /// the call's wall-clock deadline: no clock wait of the controller lasts past it
    deadline: std::time::Instant,
    /// `domain.state-proof` calls made, and the JSON-RPC requests the domain calls caused
    state_proofs: usize,
    rpc_requests: usize,
    max_state_proofs: usize,
    max_rpc_requests: usize,
    /// the EVM calls recorded in this call, by the index their `evm-call` record names (taken
    /// when returned as a witness: each becomes at most one)
    evm_calls: Vec<Option<EvmCall>>,
    max_evm_calls: usize,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(ctx: CallContext, volume: Option<Volume>, limits: &Limits) -> Self {
        // Deny-all WASI: no preopens, env, args, stdin; stdout/stderr discarded; no sockets.
        let wasi = WasiCtx::builder().allow_tcp(false).allow_udp(false).build();
        HostState {
            ctx,
            volume,
            volume_dirty: false,
            volume_full: false,
            host_calls: 0,
            max_host_calls: limits.max_host_calls,
            max_fs_write: limits.max_fs_write_bytes,
            logs: Vec::new(),
            domain_errors: Vec::new(),
            log_bytes: 0,
            dropped_logs: 0,
            max_payload: limits.max_host_payload_bytes,
            max_log_bytes: limits.max_log_bytes,
            limiter: MemoryLimiter::new(limits),
            started: std::time::Instant::now(),
            deadline: std::time::Instant::now() + limits.timeout,
            state_proofs: 0,
            rpc_requests: 0,
            max_state_proofs: limits.max_state_proofs,
            max_rpc_requests: limits.max_rpc_requests,
            evm_calls: Vec::new(),
            max_evm_calls: limits.max_evm_calls,
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl HostState {
    /// Counts a host call; traps the controller once the budget is spent.
    fn charge(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.max_host_calls {
            return Err(wasmtime::Error::new(HostTrap::TooManyHostCalls(self.max_host_calls)));
        }
        Ok(())
    }

    fn volume(&mut self) -> Result<&mut Volume, fs::FsError> {
        self.volume.as_mut().ok_or_else(|| fs::FsError {
            code: "vfs_error".into(),
            message: "no volume is attached to this call".into(),
        })
    }
}

/// A clock wait of the controller (`std::thread::sleep`, a `poll` with a timeout): ends when asked
/// or at the call's deadline, whichever is first. Once the deadline has passed, the epoch
/// interruption traps the controller as soon as it runs wasm again, so a call ends within its
/// deadline (plus an epoch tick) whatever it waits for.
struct ClockWait(tokio::time::Instant);

#[async_trait::async_trait]
impl Pollable for ClockWait {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0).await;
    }
}

/// The WASI monotonic clock interface wasmtime-wasi links, as this sandbox serves it: `now` counts
/// nanoseconds since the call started, and every `subscribe-*` wait is cut at the call's deadline.
/// Storage keys per `eth_getProof` request (the eth crate's `MAX_KEYS_PER_CALL`).
const SLOTS_PER_RPC_REQUEST: usize = 1024;

const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

impl HostState {
    /// A pollable for a wait until `at` (a point of the call's clock), cut at the deadline.
    fn wait_until(&mut self, at: std::time::Instant) -> wasmtime::Result<Resource<DynPollable>> {
        let until = tokio::time::Instant::from_std(at.min(self.deadline));
        let wait = self.table.push(ClockWait(until))?;
        subscribe(&mut self.table, wait)
    }

    fn clock_nanos(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Replaces wasmtime-wasi's monotonic clock (already in `linker`) with the deadline-bounded one.
pub(crate) fn link_bounded_clock(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("now", |store: StoreContextMut<'_, HostState>, (): ()| {
        Ok((store.data().clock_nanos(),))
    })?;
    clock.func_wrap("resolution", |_: StoreContextMut<'_, HostState>, (): ()| Ok((1u64,)))?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, HostState>, (nanos,): (u64,)| {
            let state = store.data_mut();
            let at =
                std::time::Instant::now().checked_add(Duration::from_nanos(nanos)).unwrap_or(state.deadline);
            Ok((state.wait_until(at)?,))
        },
    )?;
    clock.func_wrap("subscribe-instant", |mut store: StoreContextMut<'_, HostState>, (when,): (u64,)| {
        let state = store.data_mut();
        let at = state.started.checked_add(Duration::from_nanos(when)).unwrap_or(state.deadline);
        Ok((state.wait_until(at)?,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

fn fs_error(e: &VfsError) -> fs::FsError {
    fs::FsError { code: e.code().into(), message: e.to_string() }
}

impl types::Host for HostState {}

impl fs::Host for HostState {
    fn read(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, fs::FsError>> {
        self.charge()?;
        Ok(self.volume().and_then(|v| v.read(&path).map_err(|e| fs_error(&e))))
    }

    fn write(&mut self, path: String, data: Vec<u8>) -> wasmtime::Result<Result<(), fs::FsError>> {
        self.charge()?;
        if data.len() > self.max_fs_write {
            return Ok(Err(fs::FsError {
                code: "vfs_too_large".into(),
                message: format!(
                    "write of {} bytes exceeds the limit of {} bytes",
                    data.len(),
                    self.max_fs_write
                ),
            }));
        }
        let out = self.volume().and_then(|v| v.write(&path, &data).map_err(|e| fs_error(&e)));
        self.volume_dirty |= out.is_ok();
        self.volume_full |= out.as_ref().is_err_and(|e| e.code == "vfs_full");
        Ok(out)
    }

    fn list(&mut self, path: String) -> wasmtime::Result<Result<Vec<fs::Entry>, fs::FsError>> {
        self.charge()?;
        Ok(self.volume().and_then(|v| {
            v.list(&path)
                .map(|entries| {
                    entries
                        .into_iter()
                        .map(|e| fs::Entry { name: e.name, is_dir: e.is_dir, size: e.size })
                        .collect()
                })
                .map_err(|e| fs_error(&e))
        }))
    }

    fn remove(&mut self, path: String) -> wasmtime::Result<Result<(), fs::FsError>> {
        self.charge()?;
        let out = self.volume().and_then(|v| v.remove(&path).map_err(|e| fs_error(&e)));
        self.volume_dirty |= out.is_ok();
        Ok(out)
    }

    fn exists(&mut self, path: String) -> wasmtime::Result<Result<bool, fs::FsError>> {
        self.charge()?;
        Ok(self.volume().and_then(|v| v.exists(&path).map_err(|e| fs_error(&e))))
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.charge()?;
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
            return Ok(());
        }
        self.log_bytes += message.len();
        tracing::debug!(program = %self.ctx.program_id, level, "controller: {message}");
        self.logs.push(LogLine { level: level.to_owned(), message });
        Ok(())
    }
}

impl context::Host for HostState {
    fn program_id(&mut self) -> wasmtime::Result<String> {
        self.charge()?;
        Ok(self.ctx.program_id.clone())
    }

    fn root(&mut self) -> wasmtime::Result<Vec<u8>> {
        self.charge()?;
        Ok(self.ctx.root.to_vec())
    }

    fn task_id(&mut self) -> wasmtime::Result<Option<String>> {
        self.charge()?;
        Ok(self.ctx.task_id.clone())
    }
}

impl HostState {
    /// Hands a domain call's outcome to the controller as `code: message`, remembering the code.
    fn domain_outcome<T>(&mut self, out: Result<T, HostError>) -> Result<T, String> {
        out.map_err(|e| {
            if self.domain_errors.len() < 64 {
                self.domain_errors.push(e.code.clone());
            }
            e.to_string()
        })
    }
}

impl domain::Host for HostState {
    fn latest(&mut self, domain: String) -> wasmtime::Result<Result<u64, String>> {
        self.charge()?;
        let out = match &self.ctx.domains {
            None => Err(no_domains()),
            Some(d) => d.latest(&domain, &self.ctx.root),
        };
        Ok(self.domain_outcome(out))
    }

    fn state_proof(
        &mut self,
        domain: String,
        block: u64,
        address: Vec<u8>,
        slots: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Result<types::EthProof, String>> {
        self.charge()?;
        let out = self.state_proof_of(&domain, block, &address, &slots);
        Ok(self.domain_outcome(out).map(|sp| from_state_proof(&sp)))
    }
}

impl evm::Host for HostState {
    fn call(
        &mut self,
        domain: String,
        block: u64,
        to: Vec<u8>,
        calldata: Vec<u8>,
        options: types::EvmCallOptions,
    ) -> wasmtime::Result<Result<types::EvmCall, String>> {
        self.charge()?;
        let out = self.evm_call_of(&domain, block, to, calldata, options);
        Ok(self.domain_outcome(out))
    }
}

fn no_domains() -> HostError {
    HostError::new("unknown_domain", "this service follows no domain")
}

impl HostState {
    fn state_proof_of(
        &mut self,
        domain: &str,
        block: u64,
        address: &[u8],
        slots: &[Vec<u8>],
    ) -> Result<StateProof, HostError> {
        let bad = |m: String| HostError::new("bad_state_proof_request", m);
        let Some(domains) = self.ctx.domains.clone() else {
            return Err(no_domains());
        };
        let Ok(address) = <[u8; 20]>::try_from(address) else {
            return Err(bad(format!("address must be 20 bytes, not {}", address.len())));
        };
        if slots.len() > zkcoproc_types::state::MAX_SLOTS {
            return Err(bad(format!(
                "{} slots exceed the limit of {}",
                slots.len(),
                zkcoproc_types::state::MAX_SLOTS
            )));
        }
        let mut keys = Vec::with_capacity(slots.len());
        for (i, s) in slots.iter().enumerate() {
            match <[u8; 32]>::try_from(s.as_slice()) {
                Ok(k) => keys.push(k),
                Err(_) => return Err(bad(format!("slot {i} must be 32 bytes, not {}", s.len()))),
            }
        }
        if self.state_proofs >= self.max_state_proofs {
            return Err(HostError::new(
                "too_many_state_proofs",
                format!("a controller call may fetch at most {} state proofs", self.max_state_proofs),
            ));
        }
        // One eth_getProof per 1024 slots (and one for an account without slots).
        let requests = keys.len().div_ceil(SLOTS_PER_RPC_REQUEST).max(1);
        if self.rpc_requests + requests > self.max_rpc_requests {
            return Err(HostError::new(
                "too_many_rpc_requests",
                format!(
                    "a controller call may cause at most {} JSON-RPC requests ({} made, this proof needs {requests})",
                    self.max_rpc_requests, self.rpc_requests
                ),
            ));
        }
        self.state_proofs += 1;
        self.rpc_requests += requests;
        domains.state_proof(domain, block, address, &keys, &self.ctx.root)
    }
}

impl HostState {
    fn evm_call_of(
        &mut self,
        domain: &str,
        block: u64,
        to: Vec<u8>,
        calldata: Vec<u8>,
        options: types::EvmCallOptions,
    ) -> Result<types::EvmCall, HostError> {
        let bad = |m: String| HostError::new("bad_evm_call", m);
        let Some(domains) = self.ctx.domains.clone() else {
            return Err(no_domains());
        };
        let request = EvmRequest {
            to: sized(to, "to").map_err(bad)?,
            from: options.from.map(|f| sized(f, "from")).transpose().map_err(bad)?.unwrap_or_default(),
            value: options.value.map(|v| sized(v, "value")).transpose().map_err(bad)?.unwrap_or_default(),
            gas_limit: options.gas_limit,
            calldata,
            may_revert: options.may_revert,
            max_rpc_requests: self.max_rpc_requests.saturating_sub(self.rpc_requests),
            timeout: self.deadline.saturating_duration_since(std::time::Instant::now()),
        };
        if request.calldata.len() > zkcoproc_types::evm::MAX_CALLDATA {
            return Err(bad(format!("calldata over {} bytes", zkcoproc_types::evm::MAX_CALLDATA)));
        }
        if self.evm_calls.len() >= self.max_evm_calls {
            return Err(HostError::new(
                "too_many_evm_calls",
                format!("a controller call may make at most {} EVM calls", self.max_evm_calls),
            ));
        }
        if request.max_rpc_requests == 0 {
            return Err(HostError::new(
                "too_many_rpc_requests",
                format!("a controller call may cause at most {} JSON-RPC requests", self.max_rpc_requests),
            ));
        }
        let (call, requests) = domains.evm_call(domain, block, request, &self.ctx.root)?;
        self.rpc_requests += requests;
        let record = types::EvmCall {
            domain: call.domain.clone(),
            block: call.block,
            to: call.to.to_vec(),
            calldata: call.calldata.clone(),
            result: call.result.clone(),
            reverted: call.reverted,
            witness: u32::try_from(self.evm_calls.len()).unwrap_or(u32::MAX),
        };
        self.evm_calls.push(Some(call));
        Ok(record)
    }

    /// Converts a controller's witnesses, checking every length (a malformed state proof is the
    /// controller's bad output, reported before any circuit runs) and taking each EVM call from
    /// what this call recorded (each at most once, so the output holds no copies).
    pub(crate) fn convert_witnesses(
        &mut self,
        witnesses: Vec<types::Witness>,
    ) -> Result<Vec<Witness>, String> {
        let mut out = Vec::with_capacity(witnesses.len());
        for (i, w) in witnesses.into_iter().enumerate() {
            out.push(match w {
                types::Witness::EvmCall(record) => {
                    Witness::EvmCall(Box::new(self.take_evm_call(i, &record)?))
                }
                other => to_witness(other)?,
            });
        }
        Ok(out)
    }

    fn take_evm_call(&mut self, i: usize, record: &types::EvmCall) -> Result<EvmCall, String> {
        let slot = usize::try_from(record.witness).ok().and_then(|n| self.evm_calls.get_mut(n));
        let Some(recorded) = slot else {
            return Err(format!("witness {i}: EVM call {} was not made in this call", record.witness));
        };
        let Some(call) = recorded.take() else {
            return Err(format!("witness {i}: EVM call {} is returned twice", record.witness));
        };
        let same = call.domain == record.domain
            && call.block == record.block
            && call.to.as_slice() == record.to.as_slice()
            && call.calldata == record.calldata
            && call.result == record.result
            && call.reverted == record.reverted;
        if !same {
            return Err(format!(
                "witness {i}: EVM call {} differs from the call the host made",
                record.witness
            ));
        }
        Ok(call)
    }
}

fn from_state_proof(sp: &StateProof) -> types::EthProof {
    types::EthProof {
        domain: sp.domain.clone(),
        block: sp.block,
        address: sp.address.to_vec(),
        account: types::Account {
            nonce: sp.account.nonce,
            balance: sp.account.balance.to_vec(),
            storage_root: sp.account.storage_root.to_vec(),
            code_hash: sp.account.code_hash.to_vec(),
        },
        account_proof: sp.account_proof.clone(),
        storage: sp
            .storage
            .iter()
            .map(|s| types::StorageSlot {
                key: s.key.to_vec(),
                value: s.value.to_vec(),
                proof: s.proof.clone(),
            })
            .collect(),
    }
}

fn bytes<const N: usize>(v: Vec<u8>, what: &str) -> Result<[u8; N], String> {
    sized(v, what).map_err(|e| format!("state proof: {e}"))
}

fn sized<const N: usize>(v: Vec<u8>, what: &str) -> Result<[u8; N], String> {
    let len = v.len();
    <[u8; N]>::try_from(v).map_err(|_| format!("{what} must be {N} bytes, not {len}"))
}

/// Converts a data or state-proof witness (EVM calls: [`HostState::convert_witnesses`]).
fn to_witness(w: types::Witness) -> Result<Witness, String> {
    match w {
        types::Witness::Data(bytes) => Ok(Witness::Data(bytes)),
        types::Witness::StateProof(sp) => {
            let mut storage = Vec::with_capacity(sp.storage.len());
            for s in sp.storage {
                storage.push(StorageSlot {
                    key: bytes(s.key, "slot key")?,
                    value: bytes(s.value, "slot value")?,
                    proof: s.proof,
                });
            }
            let proof = StateProof {
                domain: sp.domain,
                block: sp.block,
                address: bytes(sp.address, "address")?,
                account: Account {
                    nonce: sp.account.nonce,
                    balance: bytes(sp.account.balance, "balance")?,
                    storage_root: bytes(sp.account.storage_root, "storage root")?,
                    code_hash: bytes(sp.account.code_hash, "code hash")?,
                },
                account_proof: sp.account_proof,
                storage,
                header: Vec::new(),
                opening: None,
            };
            if !zkcoproc_types::smt::valid_domain(&proof.domain) {
                return Err(format!("state proof: invalid domain name {:?}", proof.domain));
            }
            proof.check_limits().map_err(|e| e.to_string())?;
            Ok(Witness::StateProof(Box::new(proof)))
        }
        types::Witness::EvmCall(_) => Err("EVM calls are converted with the call's state".into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_cap_is_for_all_memories_of_a_call_together() {
        let limits = Limits { max_memory_bytes: 100, max_table_elements: 10, ..Limits::default() };
        let mut l = MemoryLimiter::new(&limits);
        assert!(l.memory_growing(0, 60, None).expect("first memory"));
        assert_eq!(l.hit(), None);
        // A second memory of 60 would make 120 in all.
        assert!(l.memory_growing(0, 60, None).is_err());
        assert_eq!(l.hit(), Some(100));
        // Growing the first memory within the cap still works.
        assert!(l.memory_growing(60, 100, None).expect("grow"));
        assert!(l.memory_growing(100, 101, None).is_err());
        // Table elements are capped in total too.
        assert!(l.table_growing(0, 6, None).expect("table"));
        assert!(!l.table_growing(0, 6, None).expect("second table"));
        assert_eq!((l.instances(), l.memories(), l.tables()), (64, 8, 16));
    }
}
