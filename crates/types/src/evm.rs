//! An EVM view call as a circuit receives it: what was called, what it returned, and the
//! witness that lets the circuit execute it again over proven state.
//!
//! A controller asks the host to run a call (`evm::call` in the controller SDK); the service
//! runs it against the domain's node at a block under the task's root, recording every account,
//! storage slot, code and block hash the execution touched, and returns an [`EvmCall`] holding
//! the MPT nodes of exactly that state, the code, the ancestor headers `BLOCKHASH` needs, the
//! block's header and the SMT opening of `(domain, block)`. The circuit (`zkcoproc-evm`) checks
//! the header against the root, executes the call again with revm over the nodes (any state not
//! in them aborts the proof), and requires the same result.
//!
//! Everything here is plain data: nothing is trusted until the circuit verified it.

use alloc::string::String;
use alloc::vec::Vec;

pub use zkcoproc_smt::Opening;

use crate::state::MAX_HEADER_LEN;
use crate::wire::{Reader, Truncated};

/// Largest calldata of one call.
pub const MAX_CALLDATA: usize = 128 << 10;
/// Largest return (or revert) data of one call.
pub const MAX_RESULT: usize = 1 << 20;
/// Most ancestor headers (`BLOCKHASH` reaches 256 blocks back).
pub const MAX_ANCESTORS: usize = 256;
/// Most trie nodes in one call's witness.
pub const MAX_NODES: usize = 1 << 16;
/// Largest trie node (a full branch node is 532 bytes).
pub const MAX_NODE_LEN: usize = 1024;
/// Most contract codes in one call's witness.
pub const MAX_CODES: usize = 1024;
/// Largest contract code (the EIP-170 limit is 24 576 bytes; older contracts may exceed it).
pub const MAX_CODE_LEN: usize = 64 << 10;

/// One EVM view call at a block of a domain, with its result and the state it read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvmCall {
    /// the domain (chain) name, e.g. `ethereum`
    pub domain: String,
    /// the block whose state the call ran on (after all of its transactions)
    pub block: u64,
    /// the chain id the call ran under (`CHAINID`, and the fork schedule); from the service's
    /// configuration of the domain, not from the root
    pub chain_id: u64,
    /// the caller (`msg.sender`; zero unless the request set one)
    pub from: [u8; 20],
    /// the contract called
    pub to: [u8; 20],
    /// wei sent with the call, 32-byte big-endian
    pub value: [u8; 32],
    /// the gas the call may use
    pub gas_limit: u64,
    /// the call's input
    pub calldata: Vec<u8>,
    /// the app accepts a revert as the outcome (else a revert makes no proof)
    pub may_revert: bool,
    /// the call reverted: `result` is the revert data
    pub reverted: bool,
    /// the return data (or revert data) the preflight observed
    pub result: Vec<u8>,
    /// the block's RLP header (attached by the service)
    pub header: Vec<u8>,
    /// RLP headers of the block's ancestors, parent first, as far back as `BLOCKHASH` reached
    pub ancestors: Vec<Vec<u8>>,
    /// state and storage trie nodes the call touched (each once)
    pub nodes: Vec<Vec<u8>>,
    /// contract codes the call ran or read (each once)
    pub codes: Vec<Vec<u8>>,
    /// the SMT opening of (domain, block) under the input's root (attached by the service)
    pub opening: Option<Opening>,
}

/// Why an EVM call witness does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvmDecodeError {
    /// The bytes ended early.
    Truncated,
    /// A count or length is over its limit.
    TooLarge(&'static str),
    /// The domain name is not UTF-8.
    BadDomain,
    /// A flag byte is neither 0 nor 1.
    BadFlag(u8),
    /// The opening does not decode.
    Opening(zkcoproc_smt::OpeningError),
    /// Bytes left after the call.
    TrailingBytes(usize),
}

impl core::fmt::Display for EvmDecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EvmDecodeError::Truncated => f.write_str("evm call: truncated"),
            EvmDecodeError::TooLarge(what) => write!(f, "evm call: {what} over its limit"),
            EvmDecodeError::BadDomain => f.write_str("evm call: domain is not UTF-8"),
            EvmDecodeError::BadFlag(b) => write!(f, "evm call: bad flag {b}"),
            EvmDecodeError::Opening(e) => write!(f, "evm call: {e}"),
            EvmDecodeError::TrailingBytes(n) => write!(f, "evm call: {n} trailing bytes"),
        }
    }
}

impl From<Truncated> for EvmDecodeError {
    fn from(_: Truncated) -> Self {
        EvmDecodeError::Truncated
    }
}

/// Per list of byte strings: how many at most, how long each at most, and its name in errors.
type ListLimit = (usize, usize, &'static str);

const CALLDATA: ListLimit = (1, MAX_CALLDATA, "calldata");
const RESULT: ListLimit = (1, MAX_RESULT, "result");
const HEADER: ListLimit = (1, MAX_HEADER_LEN, "header");
const ANCESTORS: ListLimit = (MAX_ANCESTORS, MAX_HEADER_LEN, "ancestors");
const NODES: ListLimit = (MAX_NODES, MAX_NODE_LEN, "nodes");
const CODES: ListLimit = (MAX_CODES, MAX_CODE_LEN, "codes");

impl EvmCall {
    /// Encodes the call (the body of an EVM-call witness):
    ///
    /// ```text
    /// domain_len u8 | domain | block u64 | chain_id u64 | from [20] | to [20] | value [32]
    /// | gas_limit u64 | flags u8 (bit 0 may_revert, bit 1 reverted) | bytes(calldata)
    /// | bytes(result) | bytes(header) | list(ancestors) | list(nodes) | list(codes)
    /// | opening_flag u8 | [opening]
    /// bytes = len u32 | len bytes;  list = count u32 | count × bytes
    /// ```
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.domain.len().min(255) as u8);
        out.extend_from_slice(self.domain.as_bytes());
        out.extend_from_slice(&self.block.to_le_bytes());
        out.extend_from_slice(&self.chain_id.to_le_bytes());
        out.extend_from_slice(&self.from);
        out.extend_from_slice(&self.to);
        out.extend_from_slice(&self.value);
        out.extend_from_slice(&self.gas_limit.to_le_bytes());
        out.push(u8::from(self.may_revert) | (u8::from(self.reverted) << 1));
        for bytes in [&self.calldata, &self.result, &self.header] {
            put_bytes(bytes, out);
        }
        for list in [&self.ancestors, &self.nodes, &self.codes] {
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            list.iter().for_each(|b| put_bytes(b, out));
        }
        match &self.opening {
            None => out.push(0),
            Some(o) => {
                out.push(1);
                o.encode_into(out);
            }
        }
    }

    /// Length of [`encode_into`](Self::encode_into)'s output.
    pub fn encoded_len(&self) -> usize {
        let list = |l: &[Vec<u8>]| 4 + l.iter().map(|b| 4 + b.len()).sum::<usize>();
        1 + self.domain.len().min(255)
            + 8
            + 8
            + 20
            + 20
            + 32
            + 8
            + 1
            + 12
            + self.calldata.len()
            + self.result.len()
            + self.header.len()
            + list(&self.ancestors)
            + list(&self.nodes)
            + list(&self.codes)
            + 1
            + self.opening.as_ref().map_or(0, Opening::encoded_len)
    }

    /// Whether every count and length is within this module's limits (what
    /// [`decode`](Self::decode) accepts).
    pub fn check_limits(&self) -> Result<(), EvmDecodeError> {
        if self.domain.len() > zkcoproc_smt::MAX_DOMAIN_LEN {
            return Err(EvmDecodeError::TooLarge("domain"));
        }
        let fits = |items: &[&Vec<u8>], (count, len, what): ListLimit| match items.len() <= count
            && items.iter().all(|b| b.len() <= len)
        {
            true => Ok(()),
            false => Err(EvmDecodeError::TooLarge(what)),
        };
        fits(&[&self.calldata], CALLDATA)?;
        fits(&[&self.result], RESULT)?;
        fits(&[&self.header], HEADER)?;
        fits(&self.ancestors.iter().collect::<Vec<_>>(), ANCESTORS)?;
        fits(&self.nodes.iter().collect::<Vec<_>>(), NODES)?;
        fits(&self.codes.iter().collect::<Vec<_>>(), CODES)
    }

    /// Decodes exactly one call, enforcing the limits.
    pub fn decode(bytes: &[u8]) -> Result<Self, EvmDecodeError> {
        let mut r = Reader::new(bytes);
        let [domain_len] = r.array()?;
        if domain_len as usize > zkcoproc_smt::MAX_DOMAIN_LEN {
            return Err(EvmDecodeError::TooLarge("domain"));
        }
        let domain =
            core::str::from_utf8(r.take(domain_len as usize)?).map_err(|_| EvmDecodeError::BadDomain)?.into();
        let block = u64::from_le_bytes(r.array()?);
        let chain_id = u64::from_le_bytes(r.array()?);
        let (from, to, value) = (r.array()?, r.array()?, r.array()?);
        let gas_limit = u64::from_le_bytes(r.array()?);
        let [flags] = r.array()?;
        if flags > 3 {
            return Err(EvmDecodeError::BadFlag(flags));
        }
        let calldata = take_bytes(&mut r, CALLDATA)?;
        let result = take_bytes(&mut r, RESULT)?;
        let header = take_bytes(&mut r, HEADER)?;
        let ancestors = take_list(&mut r, ANCESTORS)?;
        let nodes = take_list(&mut r, NODES)?;
        let codes = take_list(&mut r, CODES)?;
        let opening = match r.array::<1>()? {
            [0] => None,
            [1] => {
                let (o, rest) = Opening::decode_prefix(r.rest).map_err(EvmDecodeError::Opening)?;
                r.rest = rest;
                Some(o)
            }
            [other] => return Err(EvmDecodeError::BadFlag(other)),
        };
        if !r.rest.is_empty() {
            return Err(EvmDecodeError::TrailingBytes(r.rest.len()));
        }
        Ok(EvmCall {
            domain,
            block,
            chain_id,
            from,
            to,
            value,
            gas_limit,
            calldata,
            may_revert: flags & 1 != 0,
            reverted: flags & 2 != 0,
            result,
            header,
            ancestors,
            nodes,
            codes,
            opening,
        })
    }
}

fn put_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take_bytes(r: &mut Reader<'_>, (_, max, what): ListLimit) -> Result<Vec<u8>, EvmDecodeError> {
    let len = u32::from_le_bytes(r.array()?) as usize;
    if len > max {
        return Err(EvmDecodeError::TooLarge(what));
    }
    Ok(r.take(len)?.to_vec())
}

fn take_list(r: &mut Reader<'_>, limit: ListLimit) -> Result<Vec<Vec<u8>>, EvmDecodeError> {
    let count = u32::from_le_bytes(r.array()?) as usize;
    if count > limit.0 {
        return Err(EvmDecodeError::TooLarge(limit.2));
    }
    // Not `with_capacity(count)`: a lying count must not allocate before the bytes are there.
    let mut items = Vec::new();
    for _ in 0..count {
        items.push(take_bytes(r, limit)?);
    }
    Ok(items)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;

    pub(crate) fn sample() -> EvmCall {
        EvmCall {
            domain: "ethereum".into(),
            block: 42,
            chain_id: 1,
            from: [1; 20],
            to: [2; 20],
            value: [3; 32],
            gas_limit: 30_000_000,
            calldata: vec![0x70, 0xa0, 0x82, 0x31],
            may_revert: true,
            reverted: false,
            result: vec![0; 32],
            header: vec![0xf9; 30],
            ancestors: vec![vec![0xf9; 10], vec![]],
            nodes: vec![vec![0xf8; 40], vec![0xe2; 3]],
            codes: vec![vec![0x60, 0x00]],
            opening: Some(Opening { siblings: vec![[1; 32]], leaf: None }),
        }
    }

    #[test]
    fn round_trip_and_length() {
        for opening in [None, sample().opening] {
            let call = EvmCall { opening, ..sample() };
            let mut bytes = Vec::new();
            call.encode_into(&mut bytes);
            assert_eq!(bytes.len(), call.encoded_len());
            assert_eq!(EvmCall::decode(&bytes), Ok(call));
        }
    }

    #[test]
    fn truncations_trailing_bytes_and_bad_flags_are_rejected() {
        let mut bytes = Vec::new();
        sample().encode_into(&mut bytes);
        for n in 0..bytes.len() {
            assert!(EvmCall::decode(&bytes[..n]).is_err(), "prefix {n} decoded");
        }
        let flags_at = 1 + 8 + 8 + 8 + 20 + 20 + 32 + 8;
        let mut bad = bytes.clone();
        bad[flags_at] = 4;
        assert_eq!(EvmCall::decode(&bad), Err(EvmDecodeError::BadFlag(4)));
        bytes.push(0);
        assert_eq!(EvmCall::decode(&bytes), Err(EvmDecodeError::TrailingBytes(1)));
    }

    #[test]
    fn limits_are_enforced_on_both_sides() {
        let mut call = sample();
        call.nodes = vec![vec![0; MAX_NODE_LEN + 1]];
        assert_eq!(call.check_limits(), Err(EvmDecodeError::TooLarge("nodes")));
        let mut bytes = Vec::new();
        call.encode_into(&mut bytes);
        assert_eq!(EvmCall::decode(&bytes), Err(EvmDecodeError::TooLarge("nodes")));
        let mut call = sample();
        call.codes = vec![vec![]; MAX_CODES + 1];
        assert_eq!(call.check_limits(), Err(EvmDecodeError::TooLarge("codes")));
    }
}
