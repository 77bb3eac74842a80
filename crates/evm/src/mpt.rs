//! Lookups in Ethereum's Merkle-Patricia tries over a pool of nodes known by their hashes.
//!
//! A [`NodePool`] holds trie nodes keyed by their keccak-256, each hashed once when it enters.
//! [`NodePool::get`] walks from a root hash down the path of a key: every node it visits is
//! found by the hash its parent (or the root) names, so a value it returns is the value the
//! trie under that root holds, and an absence it returns is proven by the trie's own nodes. A
//! node the walk needs that is not in the pool is an error ([`MptError::MissingNode`]), never an
//! empty value.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use alloy_primitives::{keccak256, B256};
use alloy_rlp::Header;
use alloy_trie::EMPTY_ROOT_HASH;

/// Why a trie lookup failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MptError {
    /// The walk needs the node with this hash, and the pool does not have it.
    MissingNode(B256),
    /// A node on the path is not a well-formed trie node.
    BadNode,
}

impl fmt::Display for MptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MptError::MissingNode(h) => write!(f, "trie node {h} is not in the witness"),
            MptError::BadNode => f.write_str("malformed trie node"),
        }
    }
}

/// Trie nodes by keccak-256 hash.
#[derive(Clone, Debug, Default)]
pub struct NodePool {
    nodes: BTreeMap<B256, Vec<u8>>,
}

/// Where a child of a node is: by hash in the pool, embedded in its parent (an encoding under
/// 32 bytes), or nowhere (an empty slot).
enum Child<'a> {
    Hash(B256),
    Inline(&'a [u8]),
    Empty,
}

impl NodePool {
    /// A pool of `nodes`, each hashed once.
    pub fn new(nodes: impl IntoIterator<Item = Vec<u8>>) -> Self {
        NodePool { nodes: nodes.into_iter().map(|n| (keccak256(&n), n)).collect() }
    }

    /// Adds a node (hashing it).
    pub fn insert(&mut self, node: Vec<u8>) {
        self.nodes.insert(keccak256(&node), node);
    }

    /// Number of distinct nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes, in hash order.
    pub fn into_nodes(self) -> Vec<Vec<u8>> {
        self.nodes.into_values().collect()
    }

    /// The value stored under `key` (already hashed: the secure tries' paths are keccak-256 of
    /// the address or slot) in the trie whose root is `root`: `Some(payload)` (the RLP string's
    /// contents), or `None` when the trie proves there is none.
    pub fn get(&self, root: B256, key: &B256) -> Result<Option<&[u8]>, MptError> {
        if root == EMPTY_ROOT_HASH {
            return Ok(None);
        }
        let path: Vec<u8> = key.iter().flat_map(|b| [b >> 4, b & 0x0f]).collect();
        let mut at = 0;
        let mut child = Child::Hash(root);
        // Each step consumes at least one nibble, except an extension with an empty path; 2 × 64
        // + 1 steps bound any walk over a well-formed trie.
        for _ in 0..=2 * path.len() {
            let node = match child {
                Child::Hash(hash) => self.nodes.get(&hash).ok_or(MptError::MissingNode(hash))?.as_slice(),
                Child::Inline(node) => node,
                Child::Empty => return Ok(None),
            };
            let items = list_items(node)?;
            match items.as_slice() {
                [branch @ .., value] if branch.len() == 16 => {
                    let Some(&nibble) = path.get(at) else {
                        // Keys are all 64 nibbles: no value sits in a branch of a secure trie.
                        return Ok(non_empty(string(value)?));
                    };
                    at += 1;
                    child = child_ref(branch[nibble as usize])?;
                }
                [encoded_path, next] => {
                    let (leaf, nibbles) = compact_path(string(encoded_path)?)?;
                    let rest = &path[at..];
                    if leaf {
                        return Ok((rest == nibbles.as_slice()).then_some(string(next)?));
                    }
                    if !rest.starts_with(&nibbles) {
                        return Ok(None);
                    }
                    at += nibbles.len();
                    child = child_ref(next)?;
                }
                _ => return Err(MptError::BadNode),
            }
        }
        Err(MptError::BadNode)
    }
}

fn non_empty(s: &[u8]) -> Option<&[u8]> {
    (!s.is_empty()).then_some(s)
}

/// The raw encodings of the items of an RLP list that is exactly `node`.
fn list_items(node: &[u8]) -> Result<Vec<&[u8]>, MptError> {
    let mut buf = node;
    let header = Header::decode(&mut buf).map_err(|_| MptError::BadNode)?;
    if !header.list || header.payload_length != buf.len() {
        return Err(MptError::BadNode);
    }
    let mut items = Vec::with_capacity(17);
    while !buf.is_empty() {
        let start = buf;
        let h = Header::decode(&mut buf).map_err(|_| MptError::BadNode)?;
        if h.payload_length > buf.len() || items.len() == 17 {
            return Err(MptError::BadNode);
        }
        let used = start.len() - buf.len() + h.payload_length;
        items.push(&start[..used]);
        buf = &buf[h.payload_length..];
    }
    Ok(items)
}

/// The payload of an item that must be an RLP string.
fn string(item: &[u8]) -> Result<&[u8], MptError> {
    let mut buf = item;
    let h = Header::decode(&mut buf).map_err(|_| MptError::BadNode)?;
    if h.list || h.payload_length != buf.len() {
        return Err(MptError::BadNode);
    }
    Ok(buf)
}

/// A child reference: a 32-byte string is a hash, an empty string no child, a list under 32
/// bytes a node embedded in its parent.
fn child_ref(item: &[u8]) -> Result<Child<'_>, MptError> {
    if item.first().is_some_and(|b| *b >= 0xc0) {
        return match item.len() < 32 {
            true => Ok(Child::Inline(item)),
            false => Err(MptError::BadNode),
        };
    }
    match string(item)? {
        [] => Ok(Child::Empty),
        hash if hash.len() == 32 => Ok(Child::Hash(B256::from_slice(hash))),
        _ => Err(MptError::BadNode),
    }
}

/// Decodes a hex-prefix path: whether it ends in a leaf, and its nibbles.
fn compact_path(encoded: &[u8]) -> Result<(bool, Vec<u8>), MptError> {
    let (&first, rest) = encoded.split_first().ok_or(MptError::BadNode)?;
    let flag = first >> 4;
    let leaf = match flag {
        0 | 1 => false,
        2 | 3 => true,
        _ => return Err(MptError::BadNode),
    };
    let mut nibbles = Vec::with_capacity(2 * encoded.len());
    if flag & 1 == 1 {
        nibbles.push(first & 0x0f);
    } else if first & 0x0f != 0 {
        return Err(MptError::BadNode);
    }
    nibbles.extend(rest.iter().flat_map(|b| [b >> 4, b & 0x0f]));
    Ok((leaf, nibbles))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloy_primitives::U256;
    use alloy_trie::proof::ProofRetainer;
    use alloy_trie::{HashBuilder, Nibbles};

    /// A trie of `entries` (hashed keys, RLP values), with the proof nodes of `proven` keys.
    fn trie(entries: &[(B256, Vec<u8>)], proven: &[B256]) -> (B256, Vec<Vec<u8>>) {
        let mut sorted = entries.to_vec();
        sorted.sort();
        let targets = proven.iter().map(|k| Nibbles::unpack(k)).collect();
        let mut hb = HashBuilder::default().with_proof_retainer(ProofRetainer::new(targets));
        for (k, v) in &sorted {
            hb.add_leaf(Nibbles::unpack(k), v);
        }
        let root = hb.root();
        let nodes = hb.take_proof_nodes().into_inner().into_values().map(|b| b.to_vec()).collect();
        (root, nodes)
    }

    fn entries(n: u64) -> Vec<(B256, Vec<u8>)> {
        (1..=n)
            .map(|i| (keccak256(U256::from(i).to_be_bytes::<32>()), alloy_rlp::encode(U256::from(i * 7))))
            .collect()
    }

    #[test]
    fn values_and_absences_come_from_the_nodes() {
        let all = entries(300);
        let absent = keccak256([0xab; 32]);
        let proven: Vec<B256> = all.iter().step_by(37).map(|(k, _)| *k).chain([absent]).collect();
        let (root, nodes) = trie(&all, &proven);
        let pool = NodePool::new(nodes);
        for (k, v) in all.iter().step_by(37) {
            assert_eq!(pool.get(root, k), Ok(Some(v.as_slice())));
        }
        assert_eq!(pool.get(root, &absent), Ok(None));
        assert_eq!(pool.get(EMPTY_ROOT_HASH, &absent), Ok(None));
    }

    #[test]
    fn a_key_off_the_proven_paths_is_a_missing_node_not_a_zero() {
        let all = entries(300);
        let (root, nodes) = trie(&all, &[all[0].0]);
        let pool = NodePool::new(nodes);
        let other =
            all.iter().find(|(k, _)| k[0] >> 4 != all[0].0[0] >> 4).expect("a key in another subtrie");
        assert!(matches!(pool.get(root, &other.0), Err(MptError::MissingNode(_))));
        // Without its root node nothing can be read.
        assert_eq!(NodePool::default().get(root, &all[0].0), Err(MptError::MissingNode(root)));
    }

    #[test]
    fn a_changed_node_is_not_found_by_its_old_hash() {
        let all = entries(50);
        let (root, nodes) = trie(&all, &[all[3].0]);
        let mut tampered = nodes.clone();
        // Change one byte of the deepest node (the leaf holding the value).
        let leaf = tampered.iter_mut().min_by_key(|n| n.len()).expect("nodes");
        let last = leaf.len() - 1;
        leaf[last] ^= 1;
        let pool = NodePool::new(tampered);
        assert!(matches!(pool.get(root, &all[3].0), Err(MptError::MissingNode(_))));
        assert_eq!(NodePool::new(nodes).get(root, &all[3].0), Ok(Some(all[3].1.as_slice())));
    }

    #[test]
    fn malformed_nodes_are_errors() {
        let root_node = vec![0xc3, 0x80, 0x80, 0x80];
        let root = keccak256(&root_node);
        assert_eq!(NodePool::new([root_node]).get(root, &B256::ZERO), Err(MptError::BadNode));
        let not_a_list = vec![0x83, 1, 2, 3];
        let root = keccak256(&not_a_list);
        assert_eq!(NodePool::new([not_a_list]).get(root, &B256::ZERO), Err(MptError::BadNode));
    }
}
