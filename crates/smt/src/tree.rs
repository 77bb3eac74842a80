//! Host side: a persistent (copy-on-write) tree, so every version the service has had stays
//! readable at the cost of the O(depth) nodes each insert adds.

use std::sync::Arc;
use std::vec::Vec;

use sha2::Digest as _;

use crate::{bit, node_hash, BlockCommitment, Hash, Hasher, Key, Leaf, Opening, EMPTY, MAX_DEPTH};

/// SHA-256 from the `sha2` crate.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sha2;

impl Hasher for Sha2 {
    fn sha256(data: &[u8]) -> Hash {
        sha2::Sha256::digest(data).into()
    }
}

#[derive(Debug)]
enum Node {
    Empty,
    Leaf(Leaf, Hash),
    Internal(Arc<Node>, Arc<Node>, Hash),
}

impl Node {
    fn hash(&self) -> Hash {
        match self {
            Node::Empty => EMPTY,
            Node::Leaf(_, h) | Node::Internal(_, _, h) => *h,
        }
    }

    fn leaf(leaf: Leaf) -> Arc<Node> {
        let h = leaf.hash::<Sha2>();
        Arc::new(Node::Leaf(leaf, h))
    }

    fn internal(left: Arc<Node>, right: Arc<Node>) -> Arc<Node> {
        let h = node_hash::<Sha2>(&left.hash(), &right.hash());
        Arc::new(Node::Internal(left, right, h))
    }
}

/// One version of the tree. Cloning is O(1), and an insert returns a new version that shares
/// all untouched nodes with the old one, which stays valid.
#[derive(Clone, Debug)]
pub struct Tree {
    root: Arc<Node>,
    len: usize,
}

impl Default for Tree {
    fn default() -> Self {
        Tree { root: Arc::new(Node::Empty), len: 0 }
    }
}

impl Tree {
    /// The empty tree (root [`EMPTY`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.root.hash()
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree has no leaf.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// This tree with `key` set to `value` (added, or replaced when present).
    pub fn insert(&self, key: Key, value: BlockCommitment) -> Tree {
        let leaf = Leaf { key, value };
        let (root, added) = insert(&self.root, leaf, 0);
        Tree { root, len: self.len + usize::from(added) }
    }

    /// The key's commitment, if present.
    pub fn get(&self, key: &Key) -> Option<BlockCommitment> {
        let mut node = &self.root;
        let mut depth = 0;
        loop {
            match node.as_ref() {
                Node::Empty => return None,
                Node::Leaf(l, _) => return (l.key == *key).then_some(l.value),
                Node::Internal(left, right, _) => {
                    node = if bit(key, depth) { right } else { left };
                    depth += 1;
                }
            }
        }
    }

    /// An opening for `key`: membership when the key is present, non-membership otherwise.
    pub fn open(&self, key: &Key) -> Opening {
        let mut siblings = Vec::new();
        let mut node = &self.root;
        loop {
            match node.as_ref() {
                Node::Empty => return Opening { siblings, leaf: None },
                Node::Leaf(l, _) => return Opening { siblings, leaf: Some(*l) },
                Node::Internal(left, right, _) => {
                    let (next, sibling) = match bit(key, siblings.len()) {
                        false => (left, right),
                        true => (right, left),
                    };
                    siblings.push(sibling.hash());
                    node = next;
                }
            }
        }
    }
}

impl Tree {
    /// The nodes on `key`'s path, root first, down to its leaf or to an empty subtree: after an
    /// insert of `key`, exactly the nodes that insert created (empty subtrees are not nodes).
    /// A store that keeps these for every insert can open every version (see [`crate::Walk`]).
    pub fn path_nodes(&self, key: &Key) -> Vec<crate::StoredNode> {
        self.path(key)
    }

    /// [`Tree::path_nodes`] as a store keeps them: `(hash, encoding)` rows.
    pub fn path_rows(&self, key: &Key) -> Vec<(Hash, Vec<u8>)> {
        self.path(key).iter().map(|n| (n.hash(), n.encode())).collect()
    }

    fn path(&self, key: &Key) -> Vec<crate::StoredNode> {
        let mut out = Vec::new();
        let mut node = &self.root;
        let mut depth = 0;
        loop {
            match node.as_ref() {
                Node::Empty => return out,
                Node::Leaf(l, _) => {
                    out.push(crate::StoredNode::Leaf(*l));
                    return out;
                }
                Node::Internal(left, right, _) => {
                    out.push(crate::StoredNode::Internal(left.hash(), right.hash()));
                    node = if bit(key, depth) { right } else { left };
                    depth += 1;
                }
            }
        }
    }
}

/// Inserts `leaf` under `node` at `depth`; returns the new subtree and whether a leaf was added.
fn insert(node: &Arc<Node>, leaf: Leaf, depth: usize) -> (Arc<Node>, bool) {
    match node.as_ref() {
        Node::Empty => (Node::leaf(leaf), true),
        Node::Leaf(existing, _) if existing.key == leaf.key => (Node::leaf(leaf), false),
        Node::Leaf(existing, _) => (split(node.clone(), &existing.key, leaf, depth), true),
        Node::Internal(left, right, _) => {
            if bit(&leaf.key, depth) {
                let (right, added) = insert(right, leaf, depth + 1);
                (Node::internal(left.clone(), right), added)
            } else {
                let (left, added) = insert(left, leaf, depth + 1);
                (Node::internal(left, right.clone()), added)
            }
        }
    }
}

/// Places `existing` (a leaf with key `existing_key`) and the new `leaf` below `depth`: internal
/// nodes down to the first bit where their keys differ.
fn split(existing: Arc<Node>, existing_key: &Key, leaf: Leaf, depth: usize) -> Arc<Node> {
    // Distinct keys differ in some bit below MAX_DEPTH, so the recursion ends there.
    debug_assert!(depth < MAX_DEPTH);
    let (a, b) = (bit(existing_key, depth), bit(&leaf.key, depth));
    if a == b {
        let child = split(existing, existing_key, leaf, depth + 1);
        let empty = Arc::new(Node::Empty);
        match a {
            false => Node::internal(child, empty),
            true => Node::internal(empty, child),
        }
    } else {
        let new = Node::leaf(leaf);
        match a {
            false => Node::internal(existing, new),
            true => Node::internal(new, existing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{key, OpeningError};
    use proptest::prelude::*;
    use std::vec;

    fn commitment(n: u64) -> BlockCommitment {
        let mut block_hash = [0u8; 32];
        block_hash[..8].copy_from_slice(&n.to_le_bytes());
        BlockCommitment { block_hash, state_root: Sha2::sha256(&block_hash) }
    }

    /// The root computed from scratch over a set of leaves, independently of the incremental
    /// insert: the shallowest-unique-prefix layout, recursively.
    fn reference_root(leaves: &[Leaf], depth: usize) -> Hash {
        match leaves {
            [] => EMPTY,
            [one] => one.hash::<Sha2>(),
            many => {
                let (right, left): (Vec<Leaf>, Vec<Leaf>) = many.iter().partition(|l| bit(&l.key, depth));
                node_hash::<Sha2>(&reference_root(&left, depth + 1), &reference_root(&right, depth + 1))
            }
        }
    }

    #[test]
    fn empty_tree_proves_absence() {
        let t = Tree::new();
        assert_eq!(t.root(), EMPTY);
        let k = key::<Sha2>("ethereum", 1);
        assert_eq!(t.open(&k).verify::<Sha2>(&EMPTY, &k), Ok(None));
    }

    #[test]
    fn keys_separate_domains_and_numbers() {
        assert_ne!(key::<Sha2>("ethereum", 1), key::<Sha2>("ethereum", 2));
        assert_ne!(key::<Sha2>("ethereum", 1), key::<Sha2>("ethereun", 1));
        assert_ne!(key::<Sha2>("a", 0x0100), key::<Sha2>("a\u{1}", 0));
    }

    #[test]
    fn an_opening_proves_only_its_own_key() {
        let mut t = Tree::new();
        for n in 0..50 {
            t = t.insert(key::<Sha2>("ethereum", n), commitment(n));
        }
        let root = t.root();
        let k7 = key::<Sha2>("ethereum", 7);
        let opening = t.open(&k7);
        assert_eq!(opening.verify::<Sha2>(&root, &k7), Ok(Some(commitment(7))));
        // The same opening, asked about block 8, does not say block 7's value is block 8's.
        let k8 = key::<Sha2>("ethereum", 8);
        assert!(matches!(opening.verify::<Sha2>(&root, &k8), Err(_) | Ok(None)));
        assert_ne!(opening.verify::<Sha2>(&root, &k8), Ok(Some(commitment(7))));
        // Another root rejects it.
        let other = t.insert(key::<Sha2>("ethereum", 50), commitment(50)).root();
        assert!(matches!(opening.verify::<Sha2>(&other, &k7), Err(OpeningError::RootMismatch { .. })));
    }

    #[test]
    fn tampered_openings_are_rejected() {
        let mut t = Tree::new();
        for n in 0..20 {
            t = t.insert(key::<Sha2>("ethereum", n), commitment(n));
        }
        let root = t.root();
        let k = key::<Sha2>("ethereum", 3);
        let good = t.open(&k);
        let mut value = good.clone();
        if let Some(l) = value.leaf.as_mut() {
            l.value.state_root[0] ^= 1;
        }
        assert!(value.verify::<Sha2>(&root, &k).is_err());
        let mut sibling = good.clone();
        sibling.siblings[0][5] ^= 0x80;
        assert!(sibling.verify::<Sha2>(&root, &k).is_err());
        let mut dropped = good.clone();
        dropped.leaf = None;
        assert!(dropped.verify::<Sha2>(&root, &k).is_err());
        let mut short = good;
        short.siblings.pop();
        assert!(short.verify::<Sha2>(&root, &k).is_err());
    }

    #[test]
    fn old_versions_stay_openable() {
        let mut versions = vec![Tree::new()];
        for n in 0..30 {
            let next = versions[versions.len() - 1].insert(key::<Sha2>("d", n), commitment(n));
            versions.push(next);
        }
        for (v, tree) in versions.iter().enumerate() {
            for n in 0..30u64 {
                let k = key::<Sha2>("d", n);
                let got = tree.open(&k).verify::<Sha2>(&tree.root(), &k);
                let want = ((n as usize) < v).then(|| commitment(n));
                assert_eq!(got, Ok(want), "version {v}, block {n}");
            }
        }
    }

    proptest! {
        #[test]
        fn incremental_root_matches_reference_and_openings_verify(
            numbers in proptest::collection::btree_set(any::<u64>(), 0..64),
            absent in proptest::collection::vec(any::<u64>(), 0..8),
        ) {
            let mut t = Tree::new();
            let mut leaves = Vec::new();
            for &n in &numbers {
                let k = key::<Sha2>("p", n);
                t = t.insert(k, commitment(n));
                leaves.push(Leaf { key: k, value: commitment(n) });
            }
            prop_assert_eq!(t.len(), numbers.len());
            prop_assert_eq!(t.root(), reference_root(&leaves, 0));
            let root = t.root();
            for &n in &numbers {
                let k = key::<Sha2>("p", n);
                let o = t.open(&k);
                prop_assert_eq!(o.verify::<Sha2>(&root, &k), Ok(Some(commitment(n))));
                prop_assert_eq!(Opening::decode(&o.encode()), Ok(o.clone()));
                prop_assert_eq!(o.encode().len(), o.encoded_len());
            }
            for n in absent.into_iter().filter(|n| !numbers.contains(n)) {
                let k = key::<Sha2>("p", n);
                prop_assert_eq!(t.open(&k).verify::<Sha2>(&root, &k), Ok(None));
                prop_assert_eq!(t.get(&k), None);
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Opening::decode(&bytes);
        }
    }
}
