//! The coprocessor's historical sparse Merkle tree: (domain, block number) → block commitment.
//!
//! The service inserts every external-chain block it has checked (its hash and state root) under
//! the key `H("zkcoproc/smt/key/v1" ‖ len ‖ domain ‖ number)`. The tree's root is the
//! **coprocessor root** every proof is bound to. An [`Opening`] proves, against a root, either
//! that a key holds a given commitment (membership) or that it holds nothing (non-membership).
//!
//! Layout (SHA-256 throughout, 256-bit keys, bits read most significant first):
//!
//! ```text
//! empty subtree  = 0^32
//! leaf           = H(0x00 ‖ key ‖ block_hash ‖ state_root)     a leaf commits to its key
//! internal node  = H(0x01 ‖ left ‖ right)
//! ```
//!
//! A subtree holding exactly one leaf is that leaf (placed at the shallowest depth where its key
//! is alone), so openings are about log2(n) siblings long, not 256. Leaves and internal nodes are
//! domain-separated, and the empty hash is no hash's output, so a valid opening for a key can
//! only be built from the tree that has that root.
//!
//! This crate is `no_std` + `alloc` with no required dependency: circuits verify openings with
//! their own (accelerated) SHA-256 through [`Hasher`]. The `std` feature adds the host side: the
//! persistent [`Tree`] (every version stays readable) and [`Sha2`], and the content-addressed
//! node encoding ([`StoredNode`]) with which a store keeps every version's nodes by hash, so an
//! opening under any historical root is a [`Walk`] of O(depth) node reads.
//!
//! Start from [`key`], [`Opening::verify`] and, on the host, [`Tree::insert`].

#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

use alloc::vec::Vec;
use core::fmt;

#[cfg(feature = "std")]
mod stored;
#[cfg(feature = "std")]
mod tree;
#[cfg(feature = "std")]
pub use stored::{StoredNode, Walk, WalkError};
#[cfg(feature = "std")]
pub use tree::{Sha2, Tree};

/// A 32-byte hash.
pub type Hash = [u8; 32];

/// A key of the tree: the hash of a (domain, block number) pair, see [`key`].
pub type Key = [u8; 32];

/// The root of the empty tree (also the hash of any empty subtree).
pub const EMPTY: Hash = [0u8; 32];

/// Deepest a leaf can sit: one level per key bit.
pub const MAX_DEPTH: usize = 256;

/// Longest domain name (bytes).
pub const MAX_DOMAIN_LEN: usize = 32;

const KEY_TAG: &[u8] = b"zkcoproc/smt/key/v1";
const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// SHA-256, supplied by the caller: the host uses [`Sha2`], a RISC Zero guest its accelerated
/// implementation. Both must be plain SHA-256.
pub trait Hasher {
    /// SHA-256 of `data`.
    fn sha256(data: &[u8]) -> Hash;
}

/// What a leaf holds for one block: the block's hash and its state root.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockCommitment {
    /// hash of the block header (keccak-256 of its RLP for Ethereum)
    pub block_hash: Hash,
    /// the header's state root
    pub state_root: Hash,
}

/// A leaf: its key and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// the key, see [`key`]
    pub key: Key,
    /// the block commitment
    pub value: BlockCommitment,
}

impl Leaf {
    /// The leaf's hash, which commits to its key.
    pub fn hash<H: Hasher>(&self) -> Hash {
        let mut buf = [0u8; 97];
        buf[0] = LEAF_PREFIX;
        buf[1..33].copy_from_slice(&self.key);
        buf[33..65].copy_from_slice(&self.value.block_hash);
        buf[65..97].copy_from_slice(&self.value.state_root);
        H::sha256(&buf)
    }
}

/// An internal node's hash.
pub fn node_hash<H: Hasher>(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = NODE_PREFIX;
    buf[1..33].copy_from_slice(left);
    buf[33..65].copy_from_slice(right);
    H::sha256(&buf)
}

/// Whether `name` is a valid domain name: 1 to 32 bytes of `a-z`, `0-9`, `-` and `_`.
pub fn valid_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DOMAIN_LEN
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The key of block `number` of `domain`. The caller checks the name with [`valid_domain`]; the
/// length prefix keeps distinct (domain, number) pairs distinct whatever the name.
pub fn key<H: Hasher>(domain: &str, number: u64) -> Key {
    let mut buf = Vec::with_capacity(KEY_TAG.len() + 1 + domain.len() + 8);
    buf.extend_from_slice(KEY_TAG);
    buf.push(domain.len().min(255) as u8);
    buf.extend_from_slice(domain.as_bytes());
    buf.extend_from_slice(&number.to_be_bytes());
    H::sha256(&buf)
}

/// Bit `i` of `key`, most significant first.
pub(crate) fn bit(key: &Key, i: usize) -> bool {
    (key[i / 8] >> (7 - (i % 8))) & 1 == 1
}

/// Why an opening does not verify or does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpeningError {
    /// More siblings than key bits.
    TooDeep(usize),
    /// The opening's leaf is for another key that does not share the path, so it proves nothing
    /// about the key asked for.
    WrongPath,
    /// The opening does not lead to the root.
    RootMismatch {
        /// the root the opening leads to
        computed: Hash,
        /// the root it was checked against
        expected: Hash,
    },
    /// The encoding ended early.
    Truncated,
    /// Bytes left after the opening.
    TrailingBytes(usize),
    /// The leaf flag is neither 0 nor 1.
    BadFlag(u8),
}

impl fmt::Display for OpeningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpeningError::TooDeep(n) => write!(f, "opening has {n} siblings, more than {MAX_DEPTH}"),
            OpeningError::WrongPath => f.write_str("opening's leaf is not on the key's path"),
            OpeningError::RootMismatch { computed, expected } => {
                f.write_str("opening leads to root ")?;
                write_hex(f, computed)?;
                f.write_str(", not ")?;
                write_hex(f, expected)
            }
            OpeningError::Truncated => f.write_str("opening: truncated"),
            OpeningError::TrailingBytes(n) => write!(f, "opening: {n} trailing bytes"),
            OpeningError::BadFlag(b) => write!(f, "opening: bad leaf flag {b}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for OpeningError {}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// A proof about one key against a root: the siblings on the key's path from the root down, and
/// what sits at the end of the path (a leaf, or nothing).
///
/// - membership: the leaf is the key's own;
/// - non-membership: no leaf (an empty subtree), or another key's leaf that shares the path (so
///   the key, had it been inserted, would have split that leaf).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    /// sibling hashes, from the root's children down to the end of the path
    pub siblings: Vec<Hash>,
    /// the leaf at the end of the path, if any
    pub leaf: Option<Leaf>,
}

impl Opening {
    /// Checks the opening for `key` against `root`. Returns the key's commitment when it is in
    /// the tree and `None` when the opening proves it is not.
    pub fn verify<H: Hasher>(&self, root: &Hash, key: &Key) -> Result<Option<BlockCommitment>, OpeningError> {
        let depth = self.siblings.len();
        if depth > MAX_DEPTH {
            return Err(OpeningError::TooDeep(depth));
        }
        let mut h = match &self.leaf {
            None => EMPTY,
            Some(leaf) => {
                if leaf.key != *key && (0..depth).any(|i| bit(&leaf.key, i) != bit(key, i)) {
                    return Err(OpeningError::WrongPath);
                }
                leaf.hash::<H>()
            }
        };
        for (i, sibling) in self.siblings.iter().enumerate().rev() {
            h = match bit(key, i) {
                false => node_hash::<H>(&h, sibling),
                true => node_hash::<H>(sibling, &h),
            };
        }
        if h != *root {
            return Err(OpeningError::RootMismatch { computed: h, expected: *root });
        }
        Ok(self.leaf.filter(|l| l.key == *key).map(|l| l.value))
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        2 + 32 * self.siblings.len() + 1 + if self.leaf.is_some() { 96 } else { 0 }
    }

    /// Encodes as `depth u16 LE | depth × sibling | flag u8 | [key | block_hash | state_root]`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.siblings.len() as u16).to_le_bytes());
        for s in &self.siblings {
            out.extend_from_slice(s);
        }
        match &self.leaf {
            None => out.push(0),
            Some(l) => {
                out.push(1);
                out.extend_from_slice(&l.key);
                out.extend_from_slice(&l.value.block_hash);
                out.extend_from_slice(&l.value.state_root);
            }
        }
    }

    /// The encoding of [`Opening::encode_into`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Decodes an opening from the front of `bytes`, returning it and the bytes after it.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Self, &[u8]), OpeningError> {
        let (depth, mut rest) = take::<2>(bytes)?;
        let depth = u16::from_le_bytes(depth) as usize;
        if depth > MAX_DEPTH {
            return Err(OpeningError::TooDeep(depth));
        }
        let mut siblings = Vec::with_capacity(depth);
        for _ in 0..depth {
            let (s, r) = take::<32>(rest)?;
            siblings.push(s);
            rest = r;
        }
        let ([flag], mut rest) = take::<1>(rest)?;
        let leaf = match flag {
            0 => None,
            1 => {
                let (key, r) = take::<32>(rest)?;
                let (block_hash, r) = take::<32>(r)?;
                let (state_root, r) = take::<32>(r)?;
                rest = r;
                Some(Leaf { key, value: BlockCommitment { block_hash, state_root } })
            }
            other => return Err(OpeningError::BadFlag(other)),
        };
        Ok((Opening { siblings, leaf }, rest))
    }

    /// Decodes exactly one opening.
    pub fn decode(bytes: &[u8]) -> Result<Self, OpeningError> {
        let (opening, rest) = Self::decode_prefix(bytes)?;
        if !rest.is_empty() {
            return Err(OpeningError::TrailingBytes(rest.len()));
        }
        Ok(opening)
    }
}

fn take<const N: usize>(bytes: &[u8]) -> Result<([u8; N], &[u8]), OpeningError> {
    if bytes.len() < N {
        return Err(OpeningError::Truncated);
    }
    let (head, tail) = bytes.split_at(N);
    let mut out = [0u8; N];
    out.copy_from_slice(head);
    Ok((out, tail))
}
