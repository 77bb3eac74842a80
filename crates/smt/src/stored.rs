//! Host side: the tree's nodes kept by hash in a store, and openings read back from them.
//!
//! A node is stored as the exact bytes its hash is taken over (`0x00 ‖ key ‖ block_hash ‖
//! state_root` for a leaf, `0x01 ‖ left ‖ right` for an internal node), keyed by that hash. Every
//! insert adds the nodes on the new key's path; nodes shared between versions are stored once.
//! So every root the tree ever had stays openable: a [`Walk`] starts at the root's hash and reads
//! one node per level, checking each against the hash it was reached by, whatever the store
//! returns.

use std::vec::Vec;

use crate::tree::Sha2;
use crate::{bit, Hash, Hasher, Key, Leaf, Opening, EMPTY, LEAF_PREFIX, MAX_DEPTH, NODE_PREFIX};

/// One stored node, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredNode {
    /// a leaf
    Leaf(Leaf),
    /// an internal node: the hashes of its children
    Internal(Hash, Hash),
}

impl StoredNode {
    /// The node's encoding: the preimage of its hash.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            StoredNode::Leaf(l) => {
                let mut out = Vec::with_capacity(97);
                out.push(LEAF_PREFIX);
                out.extend_from_slice(&l.key);
                out.extend_from_slice(&l.value.block_hash);
                out.extend_from_slice(&l.value.state_root);
                out
            }
            StoredNode::Internal(left, right) => {
                let mut out = Vec::with_capacity(65);
                out.push(NODE_PREFIX);
                out.extend_from_slice(left);
                out.extend_from_slice(right);
                out
            }
        }
    }

    /// The node's hash (SHA-256 of [`StoredNode::encode`]).
    pub fn hash(&self) -> Hash {
        Sha2::sha256(&self.encode())
    }

    /// Decodes a node's encoding.
    pub fn decode(bytes: &[u8]) -> Option<StoredNode> {
        let h = |b: &[u8]| <Hash>::try_from(b).ok();
        match (bytes.first(), bytes.len()) {
            (Some(&LEAF_PREFIX), 97) => Some(StoredNode::Leaf(Leaf {
                key: h(&bytes[1..33])?,
                value: crate::BlockCommitment {
                    block_hash: h(&bytes[33..65])?,
                    state_root: h(&bytes[65..97])?,
                },
            })),
            (Some(&NODE_PREFIX), 65) => Some(StoredNode::Internal(h(&bytes[1..33])?, h(&bytes[33..65])?)),
            _ => None,
        }
    }
}

/// Why a walk over stored nodes stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The store has no node with this hash: the root is not one whose nodes were stored.
    Missing(Hash),
    /// The stored bytes do not hash to the hash they were stored under, or do not decode.
    Corrupt(Hash),
    /// The path is longer than a key has bits.
    TooDeep,
}

impl core::fmt::Display for WalkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WalkError::Missing(h) => {
                f.write_str("no stored node with hash ")?;
                crate::write_hex(f, h)
            }
            WalkError::Corrupt(h) => {
                f.write_str("stored node ")?;
                crate::write_hex(f, h)?;
                f.write_str(" is corrupt")
            }
            WalkError::TooDeep => write!(f, "path deeper than {MAX_DEPTH} levels"),
        }
    }
}

impl std::error::Error for WalkError {}

/// An opening under a root read from stored nodes, one level at a time: ask [`Walk::next_hash`] which
/// node to read, hand its bytes to [`Walk::feed`], and take [`Walk::finish`] once `next` is
/// `None`. The store decides how to read (one transaction, one connection); the walk decides what.
#[derive(Clone, Debug)]
pub struct Walk {
    key: Key,
    siblings: Vec<Hash>,
    next: Option<Hash>,
    leaf: Option<Leaf>,
}

impl Walk {
    /// A walk from `root` towards `key`.
    pub fn new(root: Hash, key: Key) -> Self {
        Walk { key, siblings: Vec::new(), next: (root != EMPTY).then_some(root), leaf: None }
    }

    /// The hash of the node to read next; `None` when the walk is complete.
    pub fn next_hash(&self) -> Option<Hash> {
        self.next
    }

    /// Takes the node read for [`Walk::next_hash`] (`None`: the store has no such node).
    pub fn feed(&mut self, bytes: Option<&[u8]>) -> Result<(), WalkError> {
        let Some(expected) = self.next else { return Ok(()) };
        let bytes = bytes.ok_or(WalkError::Missing(expected))?;
        if Sha2::sha256(bytes) != expected {
            return Err(WalkError::Corrupt(expected));
        }
        match StoredNode::decode(bytes).ok_or(WalkError::Corrupt(expected))? {
            StoredNode::Leaf(leaf) => {
                self.leaf = Some(leaf);
                self.next = None;
            }
            StoredNode::Internal(left, right) => {
                if self.siblings.len() >= MAX_DEPTH {
                    return Err(WalkError::TooDeep);
                }
                let (child, sibling) = match bit(&self.key, self.siblings.len()) {
                    false => (left, right),
                    true => (right, left),
                };
                self.siblings.push(sibling);
                self.next = (child != EMPTY).then_some(child);
            }
        }
        Ok(())
    }

    /// The opening (call once [`Walk::next_hash`] is `None`).
    pub fn finish(self) -> Opening {
        Opening { siblings: self.siblings, leaf: self.leaf }
    }

    /// Runs the whole walk with a synchronous node reader.
    pub fn run<E>(
        mut self,
        mut read: impl FnMut(&Hash) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Result<Opening, WalkError>, E> {
        while let Some(hash) = self.next_hash() {
            let bytes = read(&hash)?;
            if let Err(e) = self.feed(bytes.as_deref()) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(self.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{key, BlockCommitment, Tree};
    use std::collections::HashMap;

    fn commitment(n: u64) -> BlockCommitment {
        let mut block_hash = [0u8; 32];
        block_hash[..8].copy_from_slice(&n.to_le_bytes());
        BlockCommitment { block_hash, state_root: [7; 32] }
    }

    #[test]
    fn every_version_opens_from_the_stored_nodes_alone() {
        let mut store: HashMap<Hash, Vec<u8>> = HashMap::new();
        let mut versions = std::vec![Tree::new()];
        for n in 0..200u64 {
            let k = key::<Sha2>("d", n);
            let next = versions[versions.len() - 1].insert(k, commitment(n));
            for node in next.path_nodes(&k) {
                assert_eq!(node.hash(), Sha2::sha256(&node.encode()));
                store.insert(node.hash(), node.encode());
            }
            versions.push(next);
        }
        for (v, tree) in versions.iter().enumerate().step_by(7) {
            for n in [0u64, 3, 99, 150, 199, 500] {
                let k = key::<Sha2>("d", n);
                let walked = Walk::new(tree.root(), k)
                    .run(|h| Ok::<_, ()>(store.get(h).cloned()))
                    .expect("reads")
                    .expect("walks");
                assert_eq!(walked, tree.open(&k), "version {v}, block {n}");
                let want = ((n as usize) < v).then(|| commitment(n));
                assert_eq!(walked.verify::<Sha2>(&tree.root(), &k), Ok(want));
            }
        }
    }

    #[test]
    fn a_store_that_lies_is_caught() {
        let k = key::<Sha2>("d", 1);
        let tree = Tree::new().insert(k, commitment(1)).insert(key::<Sha2>("d", 2), commitment(2));
        let mut store: HashMap<Hash, Vec<u8>> = HashMap::new();
        for n in [1, 2] {
            for node in tree.path_nodes(&key::<Sha2>("d", n)) {
                store.insert(node.hash(), node.encode());
            }
        }
        let root = tree.root();
        let mut forged = store.clone();
        if let Some(bytes) = forged.get_mut(&root) {
            bytes[5] ^= 1;
        }
        let out = Walk::new(root, k).run(|h| Ok::<_, ()>(forged.get(h).cloned())).expect("reads");
        assert_eq!(out, Err(WalkError::Corrupt(root)));
        let out = Walk::new([9; 32], k).run(|h| Ok::<_, ()>(store.get(h).cloned())).expect("reads");
        assert_eq!(out, Err(WalkError::Missing([9; 32])));
        let empty = Walk::new(EMPTY, k).run(|_| Err("no read expected")).expect("no read");
        assert_eq!(empty, Ok(Opening { siblings: Vec::new(), leaf: None }));
    }
}
