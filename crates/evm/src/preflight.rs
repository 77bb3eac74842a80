//! The host side of a view call: run it with revm against a JSON-RPC node at a block, record
//! every account, storage slot, code and block hash it touches, fetch the proofs of exactly that
//! state, and check the witness by executing the call again over it alone, as the circuit will.
//!
//! The node is untrusted. Whatever it answers during the recorded run only decides what the
//! witness holds: the final execution reads nothing but the witness, under the state root of the
//! header the caller supplies (a header of the service's tree), so a node that lies is caught
//! here (`domain_rpc`) and could not make the circuit accept a wrong result anyway.
//!
//! Bounded like every host call: gas, touched accounts and slots, code bytes, ancestor headers
//! and RPC requests ([`Limits`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alloy_consensus::Header;
use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_trie::KECCAK_EMPTY;
use revm::bytecode::Bytecode;
use revm::database_interface::DBErrorMarker;
use revm::state::AccountInfo;
use revm::Database;
use serde_json::json;
use tokio::runtime::Handle;
use zkcoproc_eth::{EthError, RpcClient};
use zkcoproc_types::evm::{MAX_CALLDATA, MAX_CODES};

use crate::mpt::NodePool;
use crate::{db, EvmCall, EvmError, Outcome, DEFAULT_GAS_LIMIT};

/// What a controller asks to call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallRequest {
    /// the domain
    pub domain: String,
    /// the block (under the task's root)
    pub block: u64,
    /// the domain's chain id
    pub chain_id: u64,
    /// the caller (zero by default)
    pub from: [u8; 20],
    /// the contract
    pub to: [u8; 20],
    /// wei sent, 32-byte big-endian
    pub value: [u8; 32],
    /// the gas the call may use (`None`: [`Limits::gas_limit`], at most the block's)
    pub gas_limit: Option<u64>,
    /// the input
    pub calldata: Vec<u8>,
    /// a revert is an outcome, not an error
    pub may_revert: bool,
}

/// Bounds on one preflight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// gas when the request names none, and the most it may name
    pub gas_limit: u64,
    /// distinct accounts the call may touch
    pub max_accounts: usize,
    /// distinct storage slots the call may touch
    pub max_slots: usize,
    /// bytes of code the call may load
    pub max_code_bytes: usize,
    /// JSON-RPC requests to the node
    pub max_rpc_requests: usize,
    /// wall-clock time of the whole preflight
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            gas_limit: DEFAULT_GAS_LIMIT,
            max_accounts: 256,
            max_slots: 4096,
            max_code_bytes: 4 << 20,
            max_rpc_requests: 2048,
            timeout: Duration::from_secs(120),
        }
    }
}

/// A preflighted call: the witness (header set, opening not yet attached), how it ended, and
/// what it cost.
#[derive(Clone, Debug)]
pub struct Preflight {
    /// the call with its result and witness
    pub call: EvmCall,
    /// the outcome of the execution over the witness alone
    pub outcome: Outcome,
    /// JSON-RPC requests made
    pub rpc_requests: usize,
    /// wall-clock time
    pub elapsed: Duration,
}

/// Why a call could not be preflighted.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The call reverted and the request did not allow it.
    #[error("the call reverted (revert data 0x{})", hex_string(.0))]
    Revert(Vec<u8>),
    /// The call ran out of gas.
    #[error("the call ran out of gas ({0} gas)")]
    OutOfGas(u64),
    /// The call touched more state than allowed.
    #[error("the call touches too much state: {0}")]
    TooMuchState(String),
    /// The node failed, or answered something the block's state root does not prove.
    #[error("{0}")]
    Rpc(String),
    /// The call halted, or revm refused it, or the request is not a valid call.
    #[error("{0}")]
    Invalid(String),
}

impl PreflightError {
    /// The stable error code: `evm_revert`, `evm_out_of_gas`, `evm_too_much_state`,
    /// `domain_rpc` or `evm_invalid`.
    pub fn code(&self) -> &'static str {
        match self {
            PreflightError::Revert(_) => "evm_revert",
            PreflightError::OutOfGas(_) => "evm_out_of_gas",
            PreflightError::TooMuchState(_) => "evm_too_much_state",
            PreflightError::Rpc(_) => "domain_rpc",
            PreflightError::Invalid(_) => "evm_invalid",
        }
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `request` against `rpc` at the block whose RLP header is `header` (which the caller
/// took from its own verified chain: the witness is checked against its state root), and
/// returns the call with its witness, within `limits` (the whole of it within
/// `limits.timeout`). Runs revm on a blocking thread.
pub async fn preflight(
    rpc: &RpcClient,
    header: Vec<u8>,
    request: CallRequest,
    limits: &Limits,
) -> Result<Preflight, PreflightError> {
    let started = Instant::now();
    let timeout = limits.timeout;
    let too_slow = |_| PreflightError::TooMuchState(format!("the preflight took longer than {timeout:?}"));
    let (call, outcome, rpc_requests) =
        tokio::time::timeout(timeout, run(rpc, header, request, limits)).await.map_err(too_slow)??;
    Ok(Preflight { call, outcome, rpc_requests, elapsed: started.elapsed() })
}

async fn run(
    rpc: &RpcClient,
    header: Vec<u8>,
    request: CallRequest,
    limits: &Limits,
) -> Result<(EvmCall, Outcome, usize), PreflightError> {
    let decoded =
        db::decode_header(&header).ok_or_else(|| PreflightError::Invalid("malformed header".into()))?;
    if decoded.number != request.block {
        let message = format!("header is for block {}, not {}", decoded.number, request.block);
        return Err(PreflightError::Invalid(message));
    }
    if request.calldata.len() > MAX_CALLDATA {
        return Err(PreflightError::Invalid(format!("calldata over {MAX_CALLDATA} bytes")));
    }
    let gas_limit = request.gas_limit.unwrap_or(limits.gas_limit).min(decoded.gas_limit);
    if gas_limit > limits.gas_limit {
        return Err(PreflightError::Invalid(format!("gas limit over {}", limits.gas_limit)));
    }
    let mut call = EvmCall {
        domain: request.domain,
        block: request.block,
        chain_id: request.chain_id,
        from: request.from,
        to: request.to,
        value: request.value,
        gas_limit,
        calldata: request.calldata,
        may_revert: request.may_revert,
        header,
        ..EvmCall::default()
    };
    let recorder = Recorder::new(rpc.clone(), Handle::current(), decoded.clone(), limits.clone());
    // The recorded run may outlive a timeout: it stops at its RPC and gas limits.
    let recorded = {
        let (call, header) = (call.clone(), decoded.clone());
        tokio::task::spawn_blocking(move || record(&call, &header, recorder))
            .await
            .map_err(|e| PreflightError::Rpc(format!("preflight worker failed: {e}")))??
    };
    let Recorded { recorder, reverted, output } = recorded;
    if reverted && !call.may_revert {
        return Err(PreflightError::Revert(output));
    }
    (call.reverted, call.result) = (reverted, output);
    let witness = recorder.into_witness().await?;
    (call.nodes, call.codes, call.ancestors) = (witness.nodes, witness.codes, witness.ancestors);

    // The witness alone, as the circuit will run it.
    let outcome = crate::execute(&call, &decoded).map_err(|e| match e {
        EvmError::Witness(e) => PreflightError::Rpc(format!(
            "the node's answers are not those of block {}'s state: {e}",
            call.block
        )),
        other => PreflightError::Invalid(other.to_string()),
    })?;
    if outcome.reverted != call.reverted || outcome.output != call.result {
        let message =
            format!("the node's answers at block {} are not consistent with its state root", call.block);
        return Err(PreflightError::Rpc(message));
    }
    Ok((call, outcome, witness.requests))
}

/// What the recorded run needs in the witness, and the requests it took in all.
struct Witnessed {
    nodes: Vec<Vec<u8>>,
    codes: Vec<Vec<u8>>,
    ancestors: Vec<Vec<u8>>,
    requests: usize,
}

struct Recorded {
    recorder: Recorder,
    reverted: bool,
    output: Vec<u8>,
}

fn record(call: &EvmCall, header: &Header, recorder: Recorder) -> Result<Recorded, PreflightError> {
    let (result, mut recorder) =
        crate::run(call, header, recorder).map_err(|e| PreflightError::Invalid(e.to_string()))?;
    if let Some(failure) = recorder.failure.take() {
        return Err(failure);
    }
    let result = result.map_err(|e| e.map_db_err(|e: RecordError| EvmError::Invalid(e.0)));
    match crate::outcome(result, crate::Reads::default()) {
        Ok(outcome) => Ok(Recorded { recorder, reverted: outcome.reverted, output: outcome.output }),
        Err(EvmError::OutOfGas) => Err(PreflightError::OutOfGas(call.gas_limit)),
        Err(e) => Err(PreflightError::Invalid(e.to_string())),
    }
}

/// A database error of the recorded run; the reason itself is kept in [`Recorder::failure`].
#[derive(Debug)]
struct RecordError(String);

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RecordError {}
impl DBErrorMarker for RecordError {}

/// A revm database that asks the node and remembers what was asked.
struct Recorder {
    rpc: RpcClient,
    handle: Handle,
    header: Header,
    limits: Limits,
    /// the first limit or node failure (the database error revm reports is only its message)
    failure: Option<PreflightError>,
    requests: usize,
    nodes: NodePool,
    /// accounts touched, with the storage slots touched and the values seen
    accounts: BTreeMap<Address, BTreeMap<U256, U256>>,
    codes: BTreeMap<B256, Vec<u8>>,
    code_bytes: usize,
    slots: usize,
    /// ancestor headers fetched, parent first
    ancestors: Vec<zkcoproc_eth::CheckedHeader>,
}

impl Recorder {
    fn new(rpc: RpcClient, handle: Handle, header: Header, limits: Limits) -> Self {
        Recorder {
            rpc,
            handle,
            header,
            limits,
            failure: None,
            requests: 0,
            nodes: NodePool::default(),
            accounts: BTreeMap::new(),
            codes: BTreeMap::new(),
            code_bytes: 0,
            slots: 0,
            ancestors: Vec::new(),
        }
    }

    fn fail(&mut self, e: PreflightError) -> RecordError {
        let message = e.to_string();
        self.failure.get_or_insert(e);
        RecordError(message)
    }

    /// Counts a request against the limit, then runs it on the runtime.
    fn ask<T>(
        &mut self,
        fut: impl std::future::Future<Output = Result<T, EthError>>,
    ) -> Result<T, RecordError> {
        self.requests += 1;
        if self.requests > self.limits.max_rpc_requests {
            let limit = self.limits.max_rpc_requests;
            return Err(self.fail(PreflightError::TooMuchState(format!("more than {limit} RPC requests"))));
        }
        let out = self.handle.block_on(fut);
        out.map_err(|e| self.fail(PreflightError::Rpc(e.to_string())))
    }

    fn block(&self) -> String {
        format!("{:#x}", self.header.number)
    }

    /// The proofs of the touched slots (the accounts' proofs came with their first read), in
    /// batches per account; the values must be the ones the run saw.
    async fn into_witness(mut self) -> Result<Witnessed, PreflightError> {
        for (address, slots) in &self.accounts {
            if slots.is_empty() {
                continue;
            }
            let keys: Vec<[u8; 32]> = slots.keys().map(|k| k.to_be_bytes::<32>()).collect();
            self.requests += keys.len().div_ceil(zkcoproc_eth::MAX_KEYS_PER_CALL);
            if self.requests > self.limits.max_rpc_requests {
                let limit = self.limits.max_rpc_requests;
                return Err(PreflightError::TooMuchState(format!("more than {limit} RPC requests")));
            }
            let proof = self
                .rpc
                .get_proof(address.0 .0, &keys, self.header.number)
                .await
                .map_err(|e| PreflightError::Rpc(e.to_string()))?;
            for (slot, (_, seen)) in proof.storage.iter().zip(slots) {
                if U256::from_be_bytes(slot.value) != *seen {
                    let message = format!("the node gave two values for a storage slot of {address}");
                    return Err(PreflightError::Rpc(message));
                }
                slot.proof.iter().for_each(|n| self.nodes.insert(n.clone()));
            }
            proof.account_proof.iter().for_each(|n| self.nodes.insert(n.clone()));
        }
        Ok(Witnessed {
            nodes: self.nodes.into_nodes(),
            codes: self.codes.into_values().collect(),
            ancestors: self.ancestors.into_iter().map(|h| h.rlp).collect(),
            requests: self.requests,
        })
    }
}

impl Database for Recorder {
    type Error = RecordError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, RecordError> {
        if !self.accounts.contains_key(&address) && self.accounts.len() >= self.limits.max_accounts {
            let limit = self.limits.max_accounts;
            return Err(self.fail(PreflightError::TooMuchState(format!("more than {limit} accounts"))));
        }
        self.accounts.entry(address).or_default();
        let (rpc, number) = (self.rpc.clone(), self.header.number);
        let proof = self.ask(async move { rpc.get_proof(address.0 .0, &[], number).await })?;
        proof.account_proof.iter().for_each(|n| self.nodes.insert(n.clone()));
        let account = proof.account;
        // Nodes differ in how they show an account that does not exist (empty or zero hashes).
        let code_hash = match B256::from(account.code_hash) {
            B256::ZERO => KECCAK_EMPTY,
            hash => hash,
        };
        let balance = U256::from_be_bytes(account.balance);
        let no_storage = [[0; 32], alloy_trie::EMPTY_ROOT_HASH.0].contains(&account.storage_root);
        if account.nonce == 0 && balance.is_zero() && code_hash == KECCAK_EMPTY && no_storage {
            return Ok(None);
        }
        let code = self.code_by_hash_at(address, code_hash)?;
        Ok(Some(AccountInfo {
            balance,
            nonce: account.nonce,
            code_hash,
            code: Some(code),
            ..AccountInfo::default()
        }))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, RecordError> {
        match self.codes.get(&code_hash) {
            Some(code) => Ok(Bytecode::new_raw(code.clone().into())),
            None if code_hash == KECCAK_EMPTY => Ok(Bytecode::default()),
            None => Err(self.fail(PreflightError::Rpc(format!("code {code_hash} was never loaded")))),
        }
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, RecordError> {
        if let Some(value) = self.accounts.get(&address).and_then(|s| s.get(&index)) {
            return Ok(*value);
        }
        if self.slots >= self.limits.max_slots {
            let limit = self.limits.max_slots;
            return Err(self.fail(PreflightError::TooMuchState(format!("more than {limit} storage slots"))));
        }
        let (rpc, block) = (self.rpc.clone(), self.block());
        let params = json!([address, B256::from(index.to_be_bytes::<32>()), block]);
        let value: U256 = self.ask(async move { rpc.call("eth_getStorageAt", params).await })?;
        self.slots += 1;
        self.accounts.entry(address).or_default().insert(index, value);
        Ok(value)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, RecordError> {
        let newest = self.header.number;
        if number >= newest || newest - number > 256 {
            return Err(self.fail(PreflightError::Invalid(format!("BLOCKHASH({number}) out of range"))));
        }
        // Ancestors from the parent down to `number + 1`; `number`'s hash is the parent hash of
        // the last one (or of the header itself).
        while (newest - self.ancestors.len() as u64) > number + 1 {
            let next = newest - 1 - self.ancestors.len() as u64;
            let rpc = self.rpc.clone();
            let header = self.ask(async move { rpc.header(next).await })?;
            let expected = self.ancestors.last().map_or(self.header.parent_hash, |h| h.parent_hash);
            if header.hash != expected {
                let message = format!("block {next} from the node is not an ancestor of block {newest}");
                return Err(self.fail(PreflightError::Rpc(message)));
            }
            self.ancestors.push(header);
        }
        Ok(self.ancestors.last().map_or(self.header.parent_hash, |h| h.parent_hash))
    }
}

impl Recorder {
    /// The code of `address`, which must hash to `code_hash`.
    fn code_by_hash_at(&mut self, address: Address, code_hash: B256) -> Result<Bytecode, RecordError> {
        if code_hash == KECCAK_EMPTY || self.codes.contains_key(&code_hash) {
            return self.code_by_hash(code_hash);
        }
        if self.codes.len() >= MAX_CODES {
            return Err(self.fail(PreflightError::TooMuchState(format!("more than {MAX_CODES} contracts"))));
        }
        let (rpc, block) = (self.rpc.clone(), self.block());
        let code: alloy_primitives::Bytes =
            self.ask(async move { rpc.call("eth_getCode", json!([address, block])).await })?;
        if keccak256(&code) != code_hash {
            return Err(self
                .fail(PreflightError::Rpc(format!("the code of {address} does not hash to its code hash"))));
        }
        self.code_bytes += code.len();
        if self.code_bytes > self.limits.max_code_bytes {
            let limit = self.limits.max_code_bytes;
            return Err(self.fail(PreflightError::TooMuchState(format!("more than {limit} bytes of code"))));
        }
        self.codes.insert(code_hash, code.to_vec());
        self.code_by_hash(code_hash)
    }
}
