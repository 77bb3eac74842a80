//! Ethereum state proofs as a circuit receives them.
//!
//! A controller asks the host for a state proof (`eth_getProof` of an account and some storage
//! slots at a block) and returns it as a witness. Before the circuit runs, the service attaches
//! the block's header and the SMT [`Opening`] of `(domain, block)` under the task's root. The
//! guest SDK then checks the whole chain, root → opening → header → account → storage, before the
//! application sees any of it (see `zkcoproc-guest`).
//!
//! Everything here is plain data: nothing in this module is trusted until the guest verified it.

use alloc::string::String;
use alloc::vec::Vec;

pub use zkcoproc_smt::Opening;

use crate::wire::{Reader, Truncated};

/// Most MPT nodes in one account or storage proof.
pub const MAX_PROOF_NODES: usize = 64;
/// Largest MPT node (a full branch node is 532 bytes).
pub const MAX_NODE_LEN: usize = 1024;
/// Most storage slots in one state proof.
pub const MAX_SLOTS: usize = 4096;
/// Largest RLP block header.
pub const MAX_HEADER_LEN: usize = 4096;

/// An account as the state trie holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// transaction count
    pub nonce: u64,
    /// balance in wei, 32-byte big-endian
    pub balance: [u8; 32],
    /// root of the account's storage trie
    pub storage_root: [u8; 32],
    /// keccak-256 of the account's code
    pub code_hash: [u8; 32],
}

/// One storage slot: its key, its value and the proof of the value in the storage trie.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageSlot {
    /// the slot (32 bytes, before hashing)
    pub key: [u8; 32],
    /// the value, 32-byte big-endian (zero when the slot is empty)
    pub value: [u8; 32],
    /// MPT nodes from the storage root down
    pub proof: Vec<Vec<u8>>,
}

/// An account and storage proof at one block of one domain, with what binds it to the root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateProof {
    /// the domain (chain) name, e.g. `ethereum`
    pub domain: String,
    /// the block number
    pub block: u64,
    /// the account's address
    pub address: [u8; 20],
    /// the account's fields as claimed
    pub account: Account,
    /// MPT nodes from the state root down to the account
    pub account_proof: Vec<Vec<u8>>,
    /// the storage slots, each with its proof
    pub storage: Vec<StorageSlot>,
    /// the block's RLP header (attached by the service)
    pub header: Vec<u8>,
    /// the SMT opening of (domain, block) under the input's root (attached by the service)
    pub opening: Option<Opening>,
}

/// Why a state proof witness does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateDecodeError {
    /// The bytes ended early.
    Truncated,
    /// A count or length is over its limit.
    TooLarge(&'static str),
    /// The domain name is not UTF-8.
    BadDomain,
    /// The opening flag is neither 0 nor 1.
    BadFlag(u8),
    /// The opening does not decode.
    Opening(zkcoproc_smt::OpeningError),
    /// Bytes left after the state proof.
    TrailingBytes(usize),
}

impl core::fmt::Display for StateDecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StateDecodeError::Truncated => f.write_str("state proof: truncated"),
            StateDecodeError::TooLarge(what) => write!(f, "state proof: {what} over its limit"),
            StateDecodeError::BadDomain => f.write_str("state proof: domain is not UTF-8"),
            StateDecodeError::BadFlag(b) => write!(f, "state proof: bad opening flag {b}"),
            StateDecodeError::Opening(e) => write!(f, "state proof: {e}"),
            StateDecodeError::TrailingBytes(n) => write!(f, "state proof: {n} trailing bytes"),
        }
    }
}

impl StateProof {
    /// Encodes the state proof (the body of a state-proof witness):
    ///
    /// ```text
    /// domain_len u8 | domain | block u64 | address [20] | nonce u64 | balance [32]
    /// | storage_root [32] | code_hash [32] | nodes(account_proof)
    /// | slots u16 | slots × (key [32] | value [32] | nodes(proof))
    /// | header_len u32 | header | opening_flag u8 | [opening]
    /// nodes = count u16 | count × (len u32 | bytes)
    /// ```
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.domain.len().min(255) as u8);
        out.extend_from_slice(self.domain.as_bytes());
        out.extend_from_slice(&self.block.to_le_bytes());
        out.extend_from_slice(&self.address);
        out.extend_from_slice(&self.account.nonce.to_le_bytes());
        out.extend_from_slice(&self.account.balance);
        out.extend_from_slice(&self.account.storage_root);
        out.extend_from_slice(&self.account.code_hash);
        encode_nodes(&self.account_proof, out);
        out.extend_from_slice(&(self.storage.len() as u16).to_le_bytes());
        for slot in &self.storage {
            out.extend_from_slice(&slot.key);
            out.extend_from_slice(&slot.value);
            encode_nodes(&slot.proof, out);
        }
        out.extend_from_slice(&(self.header.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.header);
        match &self.opening {
            None => out.push(0),
            Some(o) => {
                out.push(1);
                o.encode_into(out);
            }
        }
    }

    /// Encoded size of [`StateProof::encode_into`].
    pub fn encoded_len(&self) -> usize {
        let nodes = |n: &[Vec<u8>]| 2 + n.iter().map(|x| 4 + x.len()).sum::<usize>();
        1 + self.domain.len()
            + 8
            + 20
            + 8
            + 96
            + nodes(&self.account_proof)
            + 2
            + self.storage.iter().map(|s| 64 + nodes(&s.proof)).sum::<usize>()
            + 4
            + self.header.len()
            + 1
            + self.opening.as_ref().map_or(0, Opening::encoded_len)
    }

    /// Whether every count and length is within this module's limits (what [`decode`] accepts).
    ///
    /// [`decode`]: StateProof::decode
    pub fn check_limits(&self) -> Result<(), StateDecodeError> {
        let nodes_ok =
            |n: &[Vec<u8>]| n.len() <= MAX_PROOF_NODES && n.iter().all(|x| x.len() <= MAX_NODE_LEN);
        if self.domain.len() > zkcoproc_smt::MAX_DOMAIN_LEN {
            return Err(StateDecodeError::TooLarge("domain"));
        }
        if !nodes_ok(&self.account_proof) {
            return Err(StateDecodeError::TooLarge("account proof"));
        }
        if self.storage.len() > MAX_SLOTS {
            return Err(StateDecodeError::TooLarge("slot count"));
        }
        if !self.storage.iter().all(|s| nodes_ok(&s.proof)) {
            return Err(StateDecodeError::TooLarge("storage proof"));
        }
        if self.header.len() > MAX_HEADER_LEN {
            return Err(StateDecodeError::TooLarge("header"));
        }
        Ok(())
    }

    /// Decodes exactly one state proof, enforcing the limits.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateDecodeError> {
        let mut r = Reader::new(bytes);
        let [domain_len] = r.array()?;
        if domain_len as usize > zkcoproc_smt::MAX_DOMAIN_LEN {
            return Err(StateDecodeError::TooLarge("domain"));
        }
        let domain = core::str::from_utf8(r.take(domain_len as usize)?)
            .map_err(|_| StateDecodeError::BadDomain)?
            .into();
        let block = u64::from_le_bytes(r.array()?);
        let address = r.array()?;
        let account = Account {
            nonce: u64::from_le_bytes(r.array()?),
            balance: r.array()?,
            storage_root: r.array()?,
            code_hash: r.array()?,
        };
        let account_proof = decode_nodes(&mut r, "account proof")?;
        let slots = u16::from_le_bytes(r.array()?) as usize;
        if slots > MAX_SLOTS {
            return Err(StateDecodeError::TooLarge("slot count"));
        }
        let mut storage = Vec::with_capacity(slots);
        for _ in 0..slots {
            storage.push(StorageSlot {
                key: r.array()?,
                value: r.array()?,
                proof: decode_nodes(&mut r, "storage proof")?,
            });
        }
        let header_len = u32::from_le_bytes(r.array()?) as usize;
        if header_len > MAX_HEADER_LEN {
            return Err(StateDecodeError::TooLarge("header"));
        }
        let header = r.take(header_len)?.to_vec();
        let opening = match r.array::<1>()? {
            [0] => None,
            [1] => {
                let (o, rest) = Opening::decode_prefix(r.rest).map_err(StateDecodeError::Opening)?;
                r.rest = rest;
                Some(o)
            }
            [other] => return Err(StateDecodeError::BadFlag(other)),
        };
        if !r.rest.is_empty() {
            return Err(StateDecodeError::TrailingBytes(r.rest.len()));
        }
        Ok(StateProof { domain, block, address, account, account_proof, storage, header, opening })
    }
}

fn encode_nodes(nodes: &[Vec<u8>], out: &mut Vec<u8>) {
    out.extend_from_slice(&(nodes.len() as u16).to_le_bytes());
    for n in nodes {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(n);
    }
}

impl From<Truncated> for StateDecodeError {
    fn from(_: Truncated) -> Self {
        StateDecodeError::Truncated
    }
}

/// `count u16 | count × (len u32 | bytes)`, within the proof limits.
fn decode_nodes(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<Vec<u8>>, StateDecodeError> {
    let count = u16::from_le_bytes(r.array()?) as usize;
    if count > MAX_PROOF_NODES {
        return Err(StateDecodeError::TooLarge(what));
    }
    let mut nodes = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32::from_le_bytes(r.array()?) as usize;
        if len > MAX_NODE_LEN {
            return Err(StateDecodeError::TooLarge(what));
        }
        nodes.push(r.take(len)?.to_vec());
    }
    Ok(nodes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;

    pub(crate) fn sample() -> StateProof {
        StateProof {
            domain: "ethereum".into(),
            block: 42,
            address: [0x11; 20],
            account: Account { nonce: 3, balance: [2; 32], storage_root: [3; 32], code_hash: [4; 32] },
            account_proof: vec![vec![0xf8, 1, 2], vec![5; 40]],
            storage: vec![StorageSlot { key: [9; 32], value: [8; 32], proof: vec![vec![7; 10]] }],
            header: vec![0xf9; 20],
            opening: Some(Opening { siblings: vec![[1; 32], [2; 32]], leaf: None }),
        }
    }

    #[test]
    fn round_trip_and_length() {
        for opening in [None, sample().opening] {
            let sp = StateProof { opening, ..sample() };
            let mut bytes = Vec::new();
            sp.encode_into(&mut bytes);
            assert_eq!(bytes.len(), sp.encoded_len());
            assert_eq!(StateProof::decode(&bytes), Ok(sp));
        }
    }

    #[test]
    fn truncations_and_trailing_bytes_are_rejected() {
        let mut bytes = Vec::new();
        sample().encode_into(&mut bytes);
        for n in 0..bytes.len() {
            assert!(StateProof::decode(&bytes[..n]).is_err(), "prefix {n} decoded");
        }
        bytes.push(0);
        assert_eq!(StateProof::decode(&bytes), Err(StateDecodeError::TrailingBytes(1)));
    }

    #[test]
    fn limits_are_enforced_on_both_sides() {
        let mut sp = sample();
        sp.account_proof = vec![vec![0; MAX_NODE_LEN + 1]];
        assert!(sp.check_limits().is_err());
        let mut bytes = Vec::new();
        sp.encode_into(&mut bytes);
        assert_eq!(StateProof::decode(&bytes), Err(StateDecodeError::TooLarge("account proof")));
    }
}
