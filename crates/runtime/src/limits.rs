//! Per-call limits of the controller sandbox.

use std::time::Duration;

/// Limits every controller call runs under. The defaults suit the examples with a wide margin
/// and keep one hostile controller from holding a core, memory or disk for long.
#[derive(Clone, Debug)]
pub struct Limits {
    /// wasmtime fuel per call (≈ one unit per wasm instruction).
    pub fuel: u64,
    /// Wall-clock deadline per call (also covers time spent in host calls).
    pub timeout: Duration,
    /// Cap on all linear memories of a call together, in bytes (a component may have several).
    pub max_memory_bytes: usize,
    /// Cap on the core instances, memories and tables one call may create, and on the elements
    /// of all its tables together.
    pub max_instances: usize,
    /// See [`Limits::max_instances`].
    pub max_memories: usize,
    /// See [`Limits::max_instances`].
    pub max_tables: usize,
    /// See [`Limits::max_instances`].
    pub max_table_elements: usize,
    /// Wasm stack cap, in bytes (deep recursion traps instead of exhausting the host stack).
    pub max_stack_bytes: usize,
    /// Cap on the JSON arguments passed to `get-witnesses`.
    pub max_args_bytes: usize,
    /// Cap on the encoded size of all witnesses one call returns.
    pub max_witness_bytes: usize,
    /// Cap on the number of witnesses one call returns (the circuit input holds at most
    /// [`zkcoproc_types::input::MAX_WITNESSES`]).
    pub max_witnesses: usize,
    /// Cap on `domain.state-proof` calls per controller call.
    pub max_state_proofs: usize,
    /// Cap on the JSON-RPC requests the `domain` calls of one controller call may cause (an
    /// `eth_getProof` per 1024 slots of each state proof).
    pub max_rpc_requests: usize,
    /// Cap on `evm.call` calls per controller call (each is bounded on its own by the service's
    /// EVM limits: gas, accounts, slots, code, RPC requests).
    pub max_evm_calls: usize,
    /// Cap on the entrypoint's result and error strings.
    pub max_result_bytes: usize,
    /// Cap on any single host-call payload (one log line, ...).
    pub max_host_payload_bytes: usize,
    /// Cap on host calls (log, context, fs) per controller call; past it the controller traps.
    pub max_host_calls: u64,
    /// Cap on one `fs.write` payload.
    pub max_fs_write_bytes: usize,
    /// Cap on the total bytes of log lines kept per call; later lines are counted, not kept.
    pub max_log_bytes: usize,
    /// Cap on a controller component's size.
    pub max_component_bytes: usize,
    /// Compiled controllers kept in memory (least recently used are dropped and recompiled on
    /// their next call).
    pub cached_controllers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 10_000_000_000,
            timeout: Duration::from_secs(30),
            max_memory_bytes: 256 << 20,
            max_instances: 64,
            max_memories: 8,
            max_tables: 16,
            max_table_elements: 100_000,
            max_stack_bytes: 1 << 20,
            max_args_bytes: 1 << 20,
            max_witness_bytes: 16 << 20,
            max_witnesses: zkcoproc_types::input::MAX_WITNESSES,
            max_state_proofs: 64,
            max_rpc_requests: 256,
            max_evm_calls: 16,
            max_result_bytes: 1 << 20,
            max_host_payload_bytes: 64 << 10,
            max_host_calls: 100_000,
            max_fs_write_bytes: 4 << 20,
            max_log_bytes: 256 << 10,
            max_component_bytes: 32 << 20,
            cached_controllers: 64,
        }
    }
}
