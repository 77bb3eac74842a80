//! Host side of the controller world: the generated bindings, per-call state and the imports.

use serde::{Deserialize, Serialize};
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use zkcoproc_types::{Account, StateProof, StorageSlot, Witness};
use zkcoproc_vfs::{VfsError, Volume};

use crate::{CallContext, Limits};

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

use bindings::zkcoproc::controller::{context, domain, fs, log, types};
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
    /// The program's volume for this call (a private copy), and whether the call changed it.
    pub(crate) volume: Option<Volume>,
    pub(crate) volume_dirty: bool,
    host_calls: u64,
    max_host_calls: u64,
    max_fs_write: usize,
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
    pub(crate) fn new(ctx: CallContext, volume: Option<Volume>, limits: &Limits) -> Self {
        // Deny-all WASI: no preopens, env, args, stdin; stdout/stderr discarded; no sockets.
        let wasi = WasiCtx::builder().allow_tcp(false).allow_udp(false).build();
        HostState {
            ctx,
            volume,
            volume_dirty: false,
            host_calls: 0,
            max_host_calls: limits.max_host_calls,
            max_fs_write: limits.max_fs_write_bytes,
            logs: Vec::new(),
            log_bytes: 0,
            dropped_logs: 0,
            max_payload: limits.max_host_payload_bytes,
            max_log_bytes: limits.max_log_bytes,
            limiter: MemoryLimiter { max: limits.max_memory_bytes, hit: false },
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

impl domain::Host for HostState {
    fn latest(&mut self, domain: String) -> wasmtime::Result<Result<u64, String>> {
        self.charge()?;
        Ok(match &self.ctx.domains {
            None => Err("this service follows no domain".into()),
            Some(d) => d.latest(&domain, &self.ctx.root),
        })
    }

    fn state_proof(
        &mut self,
        domain: String,
        block: u64,
        address: Vec<u8>,
        slots: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Result<types::EthProof, String>> {
        self.charge()?;
        let Some(domains) = self.ctx.domains.clone() else {
            return Ok(Err("this service follows no domain".into()));
        };
        let Ok(address) = <[u8; 20]>::try_from(address.as_slice()) else {
            return Ok(Err(format!("address must be 20 bytes, not {}", address.len())));
        };
        if slots.len() > zkcoproc_types::state::MAX_SLOTS {
            return Ok(Err(format!(
                "{} slots exceed the limit of {}",
                slots.len(),
                zkcoproc_types::state::MAX_SLOTS
            )));
        }
        let mut keys = Vec::with_capacity(slots.len());
        for (i, s) in slots.iter().enumerate() {
            match <[u8; 32]>::try_from(s.as_slice()) {
                Ok(k) => keys.push(k),
                Err(_) => return Ok(Err(format!("slot {i} must be 32 bytes, not {}", s.len()))),
            }
        }
        Ok(domains
            .state_proof(&domain, block, address, &keys, &self.ctx.root)
            .map(|sp| from_state_proof(&sp)))
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
    let len = v.len();
    <[u8; N]>::try_from(v).map_err(|_| format!("state proof: {what} must be {N} bytes, not {len}"))
}

/// Converts a controller's witness, checking every length: a malformed state proof is the
/// controller's bad output, reported before any circuit runs.
pub(crate) fn to_witness(w: types::Witness) -> Result<Witness, String> {
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
