//! The state a call sees in the circuit: a revm [`Database`] over a witness whose every answer
//! comes from a trie walk under the proven state root, a code whose hash is the account's code
//! hash, or a header linked by parent hash to the proven one. What the witness lacks is an
//! error that aborts the execution ([`WitnessError`]), never a zero.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use alloy_consensus::Header;
use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_rlp::Decodable;
use alloy_trie::{TrieAccount, EMPTY_ROOT_HASH, KECCAK_EMPTY};
use revm::bytecode::Bytecode;
use revm::database_interface::DBErrorMarker;
use revm::state::AccountInfo;
use revm::Database;

use crate::mpt::{MptError, NodePool};

/// State the execution needed that the witness does not prove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WitnessError {
    /// A trie walk failed (a node is missing or malformed).
    Trie(MptError),
    /// An account's trie entry is not a well-formed account.
    BadAccount(Address),
    /// A storage value in the trie is not a well-formed integer.
    BadStorage(Address),
    /// No code in the witness has this hash.
    MissingCode(B256),
    /// `BLOCKHASH` of a block whose hash the ancestors do not prove.
    MissingBlockHash(u64),
}

impl fmt::Display for WitnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WitnessError::Trie(e) => write!(f, "{e}"),
            WitnessError::BadAccount(a) => write!(f, "the state trie holds a malformed account {a}"),
            WitnessError::BadStorage(a) => write!(f, "the storage trie of {a} holds a malformed value"),
            WitnessError::MissingCode(h) => write!(f, "code with hash {h} is not in the witness"),
            WitnessError::MissingBlockHash(n) => write!(f, "the hash of block {n} is not in the witness"),
        }
    }
}

impl core::error::Error for WitnessError {}
impl DBErrorMarker for WitnessError {}

/// The parent-hash links of the ancestor headers: `ancestors[0]` is the parent of `header`, each
/// next one the parent of the one before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AncestorError {
    /// An ancestor is not a well-formed header.
    Malformed(usize),
    /// An ancestor's hash is not its child's parent hash (or its number not one less).
    Unlinked(usize),
}

impl fmt::Display for AncestorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AncestorError::Malformed(i) => write!(f, "ancestor header {i} is malformed"),
            AncestorError::Unlinked(i) => write!(f, "ancestor header {i} does not link to its child"),
        }
    }
}

/// The block hashes the ancestors prove, by number: the parent's hash from the header itself,
/// and one more block back per ancestor header.
pub fn block_hashes(header: &Header, ancestors: &[Vec<u8>]) -> Result<BTreeMap<u64, B256>, AncestorError> {
    let mut hashes = BTreeMap::new();
    let (mut child_number, mut parent_hash) = (header.number, header.parent_hash);
    for (i, rlp) in ancestors.iter().enumerate() {
        let Some(number) = child_number.checked_sub(1) else { return Err(AncestorError::Unlinked(i)) };
        hashes.insert(number, parent_hash);
        if keccak256(rlp) != parent_hash {
            return Err(AncestorError::Unlinked(i));
        }
        let ancestor = decode_header(rlp).ok_or(AncestorError::Malformed(i))?;
        if ancestor.number != number {
            return Err(AncestorError::Unlinked(i));
        }
        (child_number, parent_hash) = (number, ancestor.parent_hash);
    }
    if let Some(number) = child_number.checked_sub(1) {
        hashes.insert(number, parent_hash);
    }
    Ok(hashes)
}

/// Decodes an RLP header that must be exactly `rlp`.
pub fn decode_header(rlp: &[u8]) -> Option<Header> {
    let mut buf = rlp;
    let header = Header::decode(&mut buf).ok()?;
    buf.is_empty().then_some(header)
}

/// What a call read, for the dry run and the figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    /// accounts looked up
    pub accounts: usize,
    /// storage slots looked up
    pub slots: usize,
    /// bytes of code loaded
    pub code_bytes: usize,
}

/// A revm database over a witness, answering only what it proves.
#[derive(Debug)]
pub struct WitnessDb {
    state_root: B256,
    nodes: NodePool,
    codes: BTreeMap<B256, Bytes>,
    hashes: BTreeMap<u64, B256>,
    storage_roots: BTreeMap<Address, B256>,
    /// what the execution read so far
    pub reads: Reads,
}

impl WitnessDb {
    /// A database of the state under `state_root`, from trie `nodes`, `codes` and the block
    /// `hashes` the ancestors proved. Every node and code is hashed once here.
    pub fn new(state_root: B256, nodes: &[Vec<u8>], codes: &[Vec<u8>], hashes: BTreeMap<u64, B256>) -> Self {
        let codes = codes.iter().map(|c| (keccak256(c), Bytes::copy_from_slice(c))).collect();
        WitnessDb {
            state_root,
            nodes: NodePool::new(nodes.iter().cloned()),
            codes,
            hashes,
            storage_roots: BTreeMap::new(),
            reads: Reads::default(),
        }
    }

    fn account(&mut self, address: Address) -> Result<Option<TrieAccount>, WitnessError> {
        self.reads.accounts += 1;
        let found = self.nodes.get(self.state_root, &keccak256(address)).map_err(WitnessError::Trie)?;
        let account = match found {
            None => None,
            Some(mut rlp) => {
                let account = TrieAccount::decode(&mut rlp).map_err(|_| WitnessError::BadAccount(address))?;
                if !rlp.is_empty() {
                    return Err(WitnessError::BadAccount(address));
                }
                Some(account)
            }
        };
        let storage_root = account.as_ref().map_or(EMPTY_ROOT_HASH, |a| a.storage_root);
        self.storage_roots.insert(address, storage_root);
        Ok(account)
    }
}

impl Database for WitnessDb {
    type Error = WitnessError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, WitnessError> {
        let Some(account) = self.account(address)? else { return Ok(None) };
        let code = self.code_by_hash(account.code_hash)?;
        Ok(Some(AccountInfo {
            balance: account.balance,
            nonce: account.nonce,
            code_hash: account.code_hash,
            code: Some(code),
            ..AccountInfo::default()
        }))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, WitnessError> {
        if code_hash == KECCAK_EMPTY {
            return Ok(Bytecode::default());
        }
        let code = self.codes.get(&code_hash).ok_or(WitnessError::MissingCode(code_hash))?;
        self.reads.code_bytes += code.len();
        Ok(Bytecode::new_raw(code.clone()))
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, WitnessError> {
        let root = match self.storage_roots.get(&address) {
            Some(root) => *root,
            None => {
                self.account(address)?;
                self.storage_roots.get(&address).copied().unwrap_or(EMPTY_ROOT_HASH)
            }
        };
        self.reads.slots += 1;
        let key = keccak256(index.to_be_bytes::<32>());
        match self.nodes.get(root, &key).map_err(WitnessError::Trie)? {
            None => Ok(U256::ZERO),
            Some(mut rlp) => {
                let value = U256::decode(&mut rlp).map_err(|_| WitnessError::BadStorage(address))?;
                match rlp.is_empty() && !value.is_zero() {
                    true => Ok(value),
                    false => Err(WitnessError::BadStorage(address)),
                }
            }
        }
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, WitnessError> {
        self.hashes.get(&number).copied().ok_or(WitnessError::MissingBlockHash(number))
    }
}
