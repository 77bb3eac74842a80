//! Verification of state-proof witnesses against the coprocessor root.
//!
//! For every [`StateProof`], in this order, with no step optional:
//!
//! 1. an SMT opening is present, and it proves that `(domain, block)` is in the tree whose root
//!    is the input's root (the opening's leaf commits to exactly that key);
//! 2. keccak-256 of the RLP header equals the block hash in the opening's leaf, and the header's
//!    number is the block and its state root the one in the leaf;
//! 3. the account proof is valid against that state root for `keccak(address)`, with the
//!    claimed account fields (or, for an empty account, proves its absence);
//! 4. every storage proof is valid against the account's storage root for `keccak(slot)`, with
//!    the claimed value (a zero value must be proven absent).
//!
//! MPT proofs are checked with `alloy-trie`, RLP with `alloy-rlp`. The checks are plain functions
//! so the host can run them too (tests, and the service's own preflight goes through the guest).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use alloy_primitives::{keccak256, Bytes, B256, U256};
use alloy_rlp::Decodable as _;
use alloy_trie::nodes::TrieNode;
use alloy_trie::proof::{verify_proof, ProofVerificationError};
use alloy_trie::{Nibbles, TrieAccount, EMPTY_ROOT_HASH, KECCAK_EMPTY};
use zkcoproc_smt::{BlockCommitment, Hasher, OpeningError};
use zkcoproc_types::{Root, StateProof};

/// SHA-256 of the RISC Zero zkVM (accelerated in the guest, software on the host).
#[derive(Clone, Copy, Debug)]
pub struct Risc0Sha256;

impl Hasher for Risc0Sha256 {
    fn sha256(data: &[u8]) -> [u8; 32] {
        use risc0_zkvm::sha::{Impl, Sha256 as _};
        let digest = Impl::hash_bytes(data);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_bytes());
        out
    }
}

/// Why a state proof is rejected.
#[derive(Debug, PartialEq, Eq)]
pub enum StateProofError {
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
    /// The account proof fails.
    Account {
        /// where, in a line
        error: TrieProofError,
        /// `alloy-trie`'s account of it, with the nodes and values involved
        detail: Box<ProofVerificationError>,
    },
    /// A storage proof fails.
    Storage {
        /// index of the slot in the state proof
        index: usize,
        /// the slot's key
        key: [u8; 32],
        /// where, in a line
        error: TrieProofError,
        /// `alloy-trie`'s account of it, with the nodes and values involved
        detail: Box<ProofVerificationError>,
    },
}

/// Why a Merkle-Patricia proof (an account's or a slot's) fails, in terms of its nodes: which
/// node breaks the chain from the trie's root, or what the proof proves instead of the witness's
/// claim. (`alloy-trie`'s own error carries whole nodes; this says where, in a line.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrieProofError {
    /// The proof holds no node, but the trie is not empty.
    Empty,
    /// Node `node` is not the one its parent references on the key's path (node 0: does not
    /// hash to the trie's root).
    WrongNode {
        /// index of the node in the proof
        node: usize,
    },
    /// Node `node` is not a well-formed trie node.
    BadNode {
        /// index of the node in the proof
        node: usize,
    },
    /// The proof's `nodes` nodes end before the key's path does.
    Truncated {
        /// how many nodes the proof has
        nodes: usize,
    },
    /// The proof reaches the key and proves another value than the witness claims (lengths of
    /// the RLP values; `None`: absent).
    WrongValue {
        /// what the proof proves
        proven: Option<usize>,
        /// what the witness claims
        claimed: Option<usize>,
    },
}

impl TrieProofError {
    /// Says which node or value `error` (of [`verify_proof`] over `nodes`) is about.
    fn locate(error: &ProofVerificationError, nodes: &[Bytes]) -> Self {
        let bad_node = || {
            let malformed = nodes.iter().position(|n| {
                !matches!(
                    TrieNode::decode(&mut &n[..]),
                    Ok(TrieNode::Branch(_) | TrieNode::Extension(_) | TrieNode::Leaf(_))
                )
            });
            TrieProofError::BadNode { node: malformed.unwrap_or(nodes.len().saturating_sub(1)) }
        };
        match error {
            ProofVerificationError::RootMismatch { .. } => TrieProofError::Empty,
            ProofVerificationError::UnexpectedEmptyRoot | ProofVerificationError::Rlp(_) => bad_node(),
            ProofVerificationError::ValueMismatch { got, expected, .. } => {
                // A node that breaks the chain is reported as itself.
                if let Some(node) = got.as_ref().and_then(|g| nodes.iter().position(|n| n == g)) {
                    return TrieProofError::WrongNode { node };
                }
                // A proof that ends on a leaf proves that leaf's value; one that ends on a
                // branch or extension still owes the node it references.
                let ends_on_leaf = nodes
                    .last()
                    .is_some_and(|n| matches!(TrieNode::decode(&mut &n[..]), Ok(TrieNode::Leaf(_))));
                match got {
                    Some(_) if !ends_on_leaf => TrieProofError::Truncated { nodes: nodes.len() },
                    _ => TrieProofError::WrongValue {
                        proven: got.as_ref().map(|g| g.len()),
                        claimed: expected.as_ref().map(|e| e.len()),
                    },
                }
            }
        }
    }
}

impl fmt::Display for TrieProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = |len: &Option<usize>| match len {
            Some(n) => alloc::format!("a value ({n} bytes of RLP)"),
            None => "absence".into(),
        };
        match self {
            TrieProofError::Empty => f.write_str("no nodes, but the trie is not empty"),
            TrieProofError::WrongNode { node: 0 } => f.write_str("node 0 does not hash to the trie's root"),
            TrieProofError::WrongNode { node } => {
                write!(f, "node {node} is not the node {} references on the key's path", node - 1)
            }
            TrieProofError::BadNode { node } => write!(f, "node {node} is not a well-formed trie node"),
            TrieProofError::Truncated { nodes } => {
                write!(f, "the {nodes} nodes end before the key's path does (a node is missing)")
            }
            TrieProofError::WrongValue { proven, claimed } => {
                write!(f, "the nodes prove {} where the witness claims {}", value(proven), value(claimed))
            }
        }
    }
}

impl fmt::Display for StateProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateProofError::BadDomain => f.write_str("state proof: invalid domain name"),
            StateProofError::MissingOpening => f.write_str("state proof: no SMT opening"),
            StateProofError::Opening(e) => write!(f, "state proof: {e}"),
            StateProofError::BlockNotUnderRoot => f.write_str("state proof: block is not under the root"),
            StateProofError::HeaderHashMismatch => {
                f.write_str("state proof: header hash differs from the committed block hash")
            }
            StateProofError::BadHeader => f.write_str("state proof: malformed header"),
            StateProofError::HeaderNumberMismatch { header } => {
                write!(f, "state proof: header is for block {header}")
            }
            StateProofError::StateRootMismatch => {
                f.write_str("state proof: header state root differs from the committed one")
            }
            StateProofError::Account { error, .. } => write!(f, "state proof: account proof: {error}"),
            StateProofError::Storage { index, key, error, .. } => {
                let [a, b, c, d, ..] = *key;
                write!(
                    f,
                    "state proof: storage proof {index} (slot 0x{a:02x}{b:02x}{c:02x}{d:02x}…): {error}"
                )
            }
        }
    }
}

/// Verifies `proof` against `root` (see the module docs). On success the proof's block, account
/// and storage values are facts of the chain the root commits to.
pub fn verify_state_proof<H: Hasher>(
    root: &Root,
    proof: &StateProof,
) -> Result<BlockCommitment, StateProofError> {
    if !zkcoproc_smt::valid_domain(&proof.domain) {
        return Err(StateProofError::BadDomain);
    }
    let opening = proof.opening.as_ref().ok_or(StateProofError::MissingOpening)?;
    let key = zkcoproc_smt::key::<H>(&proof.domain, proof.block);
    let commitment = opening
        .verify::<H>(root, &key)
        .map_err(StateProofError::Opening)?
        .ok_or(StateProofError::BlockNotUnderRoot)?;

    if keccak256(&proof.header).0 != commitment.block_hash {
        return Err(StateProofError::HeaderHashMismatch);
    }
    let (number, state_root) = header_number_and_state_root(&proof.header)?;
    if number != proof.block {
        return Err(StateProofError::HeaderNumberMismatch { header: number });
    }
    if state_root != commitment.state_root {
        return Err(StateProofError::StateRootMismatch);
    }

    let account = TrieAccount {
        nonce: proof.account.nonce,
        balance: U256::from_be_bytes(proof.account.balance),
        storage_root: B256::from(proof.account.storage_root),
        code_hash: B256::from(proof.account.code_hash),
    };
    let empty = account.nonce == 0
        && account.balance.is_zero()
        && account.storage_root == EMPTY_ROOT_HASH
        && account.code_hash == KECCAK_EMPTY;
    let expected = (!empty).then(|| alloy_rlp::encode(account));
    let nodes = to_bytes(&proof.account_proof);
    verify_proof(B256::from(state_root), Nibbles::unpack(keccak256(proof.address)), expected, &nodes)
        .map_err(|detail| StateProofError::Account {
            error: TrieProofError::locate(&detail, &nodes),
            detail: Box::new(detail),
        })?;

    for (index, slot) in proof.storage.iter().enumerate() {
        let value = U256::from_be_bytes(slot.value);
        let expected = (!value.is_zero()).then(|| alloy_rlp::encode(value));
        let nodes = to_bytes(&slot.proof);
        verify_proof(account.storage_root, Nibbles::unpack(keccak256(slot.key)), expected, &nodes).map_err(
            |detail| StateProofError::Storage {
                index,
                key: slot.key,
                error: TrieProofError::locate(&detail, &nodes),
                detail: Box::new(detail),
            },
        )?;
    }
    Ok(commitment)
}

fn to_bytes(nodes: &[Vec<u8>]) -> Vec<Bytes> {
    nodes.iter().map(|n| Bytes::copy_from_slice(n)).collect()
}

/// The number and state root of an RLP Ethereum header: `[parent_hash, ommers_hash,
/// beneficiary, state_root, transactions_root, receipts_root, logs_bloom, difficulty, number,
/// ...]`. The later fields (which vary by fork) are only required to be well-formed RLP items.
pub fn header_number_and_state_root(header: &[u8]) -> Result<(u64, [u8; 32]), StateProofError> {
    let bad = |_| StateProofError::BadHeader;
    let mut buf = header;
    let list = alloy_rlp::Header::decode(&mut buf).map_err(bad)?;
    if !list.list || list.payload_length != buf.len() {
        return Err(StateProofError::BadHeader);
    }
    let _parent = <[u8; 32]>::decode(&mut buf).map_err(bad)?;
    let _ommers = <[u8; 32]>::decode(&mut buf).map_err(bad)?;
    let _beneficiary = <[u8; 20]>::decode(&mut buf).map_err(bad)?;
    let state_root = <[u8; 32]>::decode(&mut buf).map_err(bad)?;
    let _transactions = <[u8; 32]>::decode(&mut buf).map_err(bad)?;
    let _receipts = <[u8; 32]>::decode(&mut buf).map_err(bad)?;
    skip_item(&mut buf)?; // logs bloom
    let _difficulty = U256::decode(&mut buf).map_err(bad)?;
    let number = u64::decode(&mut buf).map_err(bad)?;
    while !buf.is_empty() {
        skip_item(&mut buf)?;
    }
    Ok((number, state_root))
}

fn skip_item(buf: &mut &[u8]) -> Result<(), StateProofError> {
    let h = alloy_rlp::Header::decode(buf).map_err(|_| StateProofError::BadHeader)?;
    if h.payload_length > buf.len() {
        return Err(StateProofError::BadHeader);
    }
    *buf = &buf[h.payload_length..];
    Ok(())
}
