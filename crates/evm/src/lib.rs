//! EVM view calls for zkcoproc: a Solidity view call executed with revm over exactly the state it
//! touches, each piece proven against the block's state root, the block bound to the
//! coprocessor root.
//!
//! The circuit side (`no_std`, what `zkcoproc-guest` runs before the app) is [`verify`]: for an
//! [`EvmCall`] witness, in this order, with no step optional,
//!
//! 1. the SMT opening proves `(domain, block)` under the input's root; keccak-256 of the RLP
//!    header is the block hash the root commits to, and the header's number and state root are
//!    the block's;
//! 2. the ancestor headers link by parent hash back from that header (they prove the hashes
//!    `BLOCKHASH` may ask for);
//! 3. the fork comes from the chain's schedule and the header's timestamp ([`env::spec`]), the
//!    block environment (number, timestamp, base fee, prevrandao, gas limit, coinbase, blob
//!    fee) from the header itself, never from the controller;
//! 4. revm executes the call over a [`db::WitnessDb`]: accounts and storage read by walking the
//!    tries from the header's state root through the witness's nodes (each known only by its
//!    hash), code found only by the account's code hash; state the witness does not prove stops
//!    the execution with an error, never reads as zero;
//! 5. the outcome must be exactly the call's `result` (and a revert is refused unless the call
//!    said it may revert).
//!
//! The host side (feature `preflight`) runs the call against a node and records its witness:
//! [`preflight`].

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod db;
pub mod env;
pub mod mpt;
#[cfg(feature = "preflight")]
pub mod preflight;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use alloy_consensus::Header;
use alloy_primitives::{keccak256, Address, Bytes, TxKind, U256};
use revm::context::result::{EVMError, ExecutionResult, HaltReason, Output};
use revm::context::{CfgEnv, Context, TxEnv};
use revm::{Database, ExecuteEvm, MainBuilder, MainContext};
use zkcoproc_smt::{Hasher, OpeningError};
pub use zkcoproc_types::evm::EvmCall;
use zkcoproc_types::Root;

pub use db::{Reads, WitnessError};

/// The gas a call may use unless the request says otherwise.
pub const DEFAULT_GAS_LIMIT: u64 = 30_000_000;

/// How a call ended, and what it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// the call reverted (`output` is the revert data)
    pub reverted: bool,
    /// the return or revert data
    pub output: Vec<u8>,
    /// gas used, as the transaction would have
    pub gas_used: u64,
    /// what it read
    pub reads: Reads,
}

/// Why an EVM call does not verify or does not execute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvmError {
    /// The domain name is not a valid domain name.
    BadDomain,
    /// No SMT opening was attached.
    MissingOpening,
    /// The opening does not verify against the root for this (domain, block).
    Opening(OpeningError),
    /// The opening proves the block is *not* under the root.
    BlockNotUnderRoot,
    /// The header's hash is not the block hash the root commits to.
    HeaderHashMismatch,
    /// The header is not a well-formed RLP header.
    BadHeader,
    /// The header is for another block number.
    HeaderNumberMismatch {
        /// the number in the header
        header: u64,
    },
    /// The header's state root is not the one the root commits to.
    StateRootMismatch,
    /// The ancestor headers do not prove what they claim.
    Ancestors(db::AncestorError),
    /// The header gives no environment for this chain.
    Env(env::EnvError),
    /// The execution needed state that the witness does not prove.
    Witness(WitnessError),
    /// revm refused the call as a transaction (gas limit over the block's, ...).
    Invalid(String),
    /// The call ran out of gas.
    OutOfGas,
    /// The call halted exceptionally (invalid opcode, stack error, ...).
    Halted(String),
    /// The call reverted and the call did not allow it; the revert data.
    Reverted(Vec<u8>),
    /// The execution's outcome is not the call's `result`.
    ResultMismatch,
}

impl fmt::Display for EvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvmError::BadDomain => f.write_str("evm call: invalid domain name"),
            EvmError::MissingOpening => f.write_str("evm call: no SMT opening"),
            EvmError::Opening(e) => write!(f, "evm call: {e}"),
            EvmError::BlockNotUnderRoot => f.write_str("evm call: block is not under the root"),
            EvmError::HeaderHashMismatch => {
                f.write_str("evm call: header hash differs from the committed block hash")
            }
            EvmError::BadHeader => f.write_str("evm call: malformed header"),
            EvmError::HeaderNumberMismatch { header } => write!(f, "evm call: header is for block {header}"),
            EvmError::StateRootMismatch => {
                f.write_str("evm call: header state root differs from the committed one")
            }
            EvmError::Ancestors(e) => write!(f, "evm call: {e}"),
            EvmError::Env(e) => write!(f, "evm call: {e}"),
            EvmError::Witness(e) => write!(f, "evm call: {e}"),
            EvmError::Invalid(e) => write!(f, "evm call: not a valid call: {e}"),
            EvmError::OutOfGas => f.write_str("evm call: out of gas"),
            EvmError::Halted(reason) => write!(f, "evm call: halted: {reason}"),
            EvmError::Reverted(data) => write!(f, "evm call: reverted ({} bytes of revert data)", data.len()),
            EvmError::ResultMismatch => {
                f.write_str("evm call: the execution's result differs from the claimed one")
            }
        }
    }
}

/// Verifies `call` against `root` and executes it again (see the crate docs); on success its
/// `to`, `calldata`, `block`, `domain` and `result` are facts of the chain the root commits to.
pub fn verify<H: Hasher>(root: &Root, call: &EvmCall) -> Result<Outcome, EvmError> {
    if !zkcoproc_smt::valid_domain(&call.domain) {
        return Err(EvmError::BadDomain);
    }
    let opening = call.opening.as_ref().ok_or(EvmError::MissingOpening)?;
    let key = zkcoproc_smt::key::<H>(&call.domain, call.block);
    let commitment =
        opening.verify::<H>(root, &key).map_err(EvmError::Opening)?.ok_or(EvmError::BlockNotUnderRoot)?;
    if keccak256(&call.header).0 != commitment.block_hash {
        return Err(EvmError::HeaderHashMismatch);
    }
    let header = db::decode_header(&call.header).ok_or(EvmError::BadHeader)?;
    if header.number != call.block {
        return Err(EvmError::HeaderNumberMismatch { header: header.number });
    }
    if header.state_root.0 != commitment.state_root {
        return Err(EvmError::StateRootMismatch);
    }
    let outcome = execute(call, &header)?;
    if outcome.reverted && !call.may_revert {
        return Err(EvmError::Reverted(outcome.output));
    }
    if outcome.reverted != call.reverted || outcome.output != call.result {
        return Err(EvmError::ResultMismatch);
    }
    Ok(outcome)
}

/// Executes `call` over its witness at `header` (whose binding to a root is the caller's
/// concern: [`verify`] checks it), under the header's environment. The call's `result` is not
/// consulted.
pub fn execute(call: &EvmCall, header: &Header) -> Result<Outcome, EvmError> {
    let hashes = db::block_hashes(header, &call.ancestors).map_err(EvmError::Ancestors)?;
    let db = db::WitnessDb::new(header.state_root, &call.nodes, &call.codes, hashes);
    let (result, db) = run(call, header, db)?;
    outcome(result.map_err(|e| e.map_db_err(EvmError::Witness)), db.reads)
}

/// What revm made of a call: its result, or why there is none (with the database's error
/// already turned into an [`EvmError`]).
pub(crate) type RunResult = Result<ExecutionResult, EVMError<EvmError>>;

/// revm's verdict on a call over `DB`, and the database after it.
pub(crate) type Ran<DB> = (Result<ExecutionResult, EVMError<<DB as Database>::Error>>, DB);

/// Runs `call` at `header` over `db` with revm, under the environment the header gives; returns
/// revm's verdict and the database.
pub(crate) fn run<DB: Database>(call: &EvmCall, header: &Header, db: DB) -> Result<Ran<DB>, EvmError> {
    let spec = env::spec(call.chain_id, header).map_err(EvmError::Env)?;
    let mut cfg = CfgEnv::new_with_spec(spec);
    cfg.chain_id = call.chain_id;
    // `eth_call` semantics: no nonce, no fee (a zero gas price under the base fee), any caller,
    // and no per-transaction gas cap (EIP-7825 limits transactions, not calls).
    cfg.disable_nonce_check = true;
    cfg.disable_base_fee = true;
    cfg.disable_eip3607 = true;
    cfg.tx_gas_limit_cap = Some(u64::MAX);
    let block = env::block_env(header, spec, cfg.blob_base_fee_update_fraction());
    let mut evm = Context::mainnet().with_db(db).with_block(block).with_cfg(cfg).build_mainnet();
    let tx = TxEnv {
        caller: Address::from(call.from),
        gas_limit: call.gas_limit,
        gas_price: 0,
        kind: TxKind::Call(Address::from(call.to)),
        value: U256::from_be_bytes(call.value),
        data: Bytes::copy_from_slice(&call.calldata),
        chain_id: Some(call.chain_id),
        ..TxEnv::default()
    };
    let result = evm.transact_one(tx);
    Ok((result, evm.ctx.journaled_state.database))
}

/// The [`Outcome`] of revm's verdict.
pub(crate) fn outcome(result: RunResult, reads: Reads) -> Result<Outcome, EvmError> {
    let (reverted, output, gas_used) = match result {
        Ok(ExecutionResult::Success { output, gas, .. }) => {
            let data = match output {
                Output::Call(data) | Output::Create(data, _) => data,
            };
            (false, data.to_vec(), gas.tx_gas_used())
        }
        Ok(ExecutionResult::Revert { output, gas, .. }) => (true, output.to_vec(), gas.tx_gas_used()),
        Ok(ExecutionResult::Halt { reason: HaltReason::OutOfGas(_), .. }) => return Err(EvmError::OutOfGas),
        Ok(ExecutionResult::Halt { reason, .. }) => {
            return Err(EvmError::Halted(alloc::format!("{reason:?}")))
        }
        Err(EVMError::Database(e)) => return Err(e),
        Err(e) => return Err(EvmError::Invalid(e.to_string())),
    };
    Ok(Outcome { reverted, output, gas_used, reads })
}
