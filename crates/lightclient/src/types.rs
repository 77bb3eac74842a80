//! The light-client containers, one Rust type for every fork: decoded from SSZ in the layout of
//! the fork their slot is in, or from the beacon API's JSON; hashed (`hash_tree_root`) as the
//! consensus specs define them.
//!
//! A header of a fork before Capella has no execution part (`execution` is the default, the
//! branch empty); before Deneb the blob gas fields are zero. From Gloas on a header carries only
//! an execution block hash (`execution_block_hash`) and its branch, and a header of an earlier
//! slot inside Gloas data comes in that shape too. Branches keep the length they came with
//! (Electra's are one node longer, Gloas's longer again); [`crate::protocol`] checks them against
//! the generalized index of the header's fork, as `is_valid_normalized_merkle_branch` does.

use alloy_primitives::{Address, Bloom, Bytes, FixedBytes, B256, U256};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ssz::{DecodeError, SszDecoderBuilder};
use tree_hash::merkle_root;

use crate::config::{ChainSpec, Fork};
use crate::LightClientError;

/// A BLS public key, compressed.
pub type PubkeyBytes = FixedBytes<48>;
/// A BLS signature, compressed.
pub type SignatureBytes = FixedBytes<96>;

/// `BeaconBlockHeader`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeaconBlockHeader {
    /// slot
    #[serde(with = "quoted")]
    pub slot: u64,
    /// proposer index
    #[serde(with = "quoted")]
    pub proposer_index: u64,
    /// parent block root
    pub parent_root: B256,
    /// state root
    pub state_root: B256,
    /// body root
    pub body_root: B256,
}

/// `ExecutionPayloadHeader` (Deneb's fields; Capella's are the first 15).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionPayloadHeader {
    /// parent block hash
    pub parent_hash: B256,
    /// coinbase
    pub fee_recipient: Address,
    /// state root
    pub state_root: B256,
    /// receipts root
    pub receipts_root: B256,
    /// logs bloom
    pub logs_bloom: Bloom,
    /// prevrandao
    pub prev_randao: B256,
    /// block number
    #[serde(with = "quoted")]
    pub block_number: u64,
    /// gas limit
    #[serde(with = "quoted")]
    pub gas_limit: u64,
    /// gas used
    #[serde(with = "quoted")]
    pub gas_used: u64,
    /// timestamp
    #[serde(with = "quoted")]
    pub timestamp: u64,
    /// extra data (at most 32 bytes)
    pub extra_data: Bytes,
    /// base fee
    #[serde(with = "quoted_u256")]
    pub base_fee_per_gas: U256,
    /// block hash
    pub block_hash: B256,
    /// transactions root
    pub transactions_root: B256,
    /// withdrawals root
    pub withdrawals_root: B256,
    /// blob gas used (Deneb)
    #[serde(with = "quoted", default)]
    pub blob_gas_used: u64,
    /// excess blob gas (Deneb)
    #[serde(with = "quoted", default)]
    pub excess_blob_gas: u64,
}

/// `LightClientHeader`, in either shape: the execution payload header with its branch (Capella
/// to Fulu), or only the execution block hash with its branch (Gloas's shape, `execution` then
/// default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LightClientHeader {
    /// the beacon block header
    pub beacon: BeaconBlockHeader,
    /// the execution payload header (Capella on; default before, and in Gloas's shape)
    #[serde(default)]
    pub execution: ExecutionPayloadHeader,
    /// Gloas's shape: the execution block hash the header proves (for a Gloas block, its
    /// payload bid's parent block hash; for an earlier one, its payload's block hash)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_block_hash: Option<B256>,
    /// the branch of `execution` (or of `execution_block_hash`) to `beacon.body_root`
    /// (Capella on; empty or zero before)
    #[serde(default)]
    pub execution_branch: Vec<B256>,
}

/// `SyncCommittee`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCommittee {
    /// the members' keys, `SYNC_COMMITTEE_SIZE` of them
    pub pubkeys: Vec<PubkeyBytes>,
    /// their aggregate
    pub aggregate_pubkey: PubkeyBytes,
}

/// `SyncAggregate`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAggregate {
    /// participation bits, SSZ `Bitvector` bytes (bit i of member i is `bytes[i/8] >> (i%8)`)
    pub sync_committee_bits: Bytes,
    /// the aggregate signature
    pub sync_committee_signature: SignatureBytes,
}

/// `LightClientBootstrap`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LightClientBootstrap {
    /// the trusted block's header
    pub header: LightClientHeader,
    /// the sync committee of its period
    pub current_sync_committee: SyncCommittee,
    /// its branch to `header.beacon.state_root`
    pub current_sync_committee_branch: Vec<B256>,
}

/// `LightClientUpdate`; finality and optimistic updates are updates with the missing parts
/// default (see [`LightClientUpdate::from_finality`], [`LightClientUpdate::from_optimistic`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LightClientUpdate {
    /// the header the committee signed
    pub attested_header: LightClientHeader,
    /// the next period's committee (all zero when absent)
    pub next_sync_committee: SyncCommittee,
    /// its branch to `attested_header.beacon.state_root` (all zero when absent)
    pub next_sync_committee_branch: Vec<B256>,
    /// the finalized header the attested state names (default when absent)
    pub finalized_header: LightClientHeader,
    /// its branch to `attested_header.beacon.state_root` (all zero when absent)
    pub finality_branch: Vec<B256>,
    /// the signature
    pub sync_aggregate: SyncAggregate,
    /// the slot at which it was signed
    #[serde(with = "quoted")]
    pub signature_slot: u64,
}

/// `LightClientFinalityUpdate`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LightClientFinalityUpdate {
    /// the header the committee signed
    pub attested_header: LightClientHeader,
    /// the finalized header
    pub finalized_header: LightClientHeader,
    /// its branch
    pub finality_branch: Vec<B256>,
    /// the signature
    pub sync_aggregate: SyncAggregate,
    /// the slot at which it was signed
    #[serde(with = "quoted")]
    pub signature_slot: u64,
}

/// `LightClientOptimisticUpdate`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LightClientOptimisticUpdate {
    /// the header the committee signed
    pub attested_header: LightClientHeader,
    /// the signature
    pub sync_aggregate: SyncAggregate,
    /// the slot at which it was signed
    #[serde(with = "quoted")]
    pub signature_slot: u64,
}

// ---------------------------------------------------------------------------------------------
// Generalized indices (`floorlog2` is the branch depth, the remainder the index in the subtree)

/// A generalized index into `BeaconState` before Electra, from Electra on, and from Gloas on.
pub type StateGindex = (u64, u64, u64);
/// `FINALIZED_ROOT_GINDEX`, `…_ELECTRA`, `…_GLOAS`
pub const FINALIZED_ROOT_GINDEX: StateGindex = (105, 169, 735);
/// `CURRENT_SYNC_COMMITTEE_GINDEX`, `…_ELECTRA`, `…_GLOAS`
pub const CURRENT_SYNC_COMMITTEE_GINDEX: StateGindex = (54, 86, 2945);
/// `NEXT_SYNC_COMMITTEE_GINDEX`, `…_ELECTRA`, `…_GLOAS`
pub const NEXT_SYNC_COMMITTEE_GINDEX: StateGindex = (55, 87, 2946);
/// `EXECUTION_PAYLOAD_GINDEX` (in the block body, Capella to Fulu)
pub const EXECUTION_PAYLOAD_GINDEX: u64 = 25;
/// `EXECUTION_BLOCK_HASH_GINDEX`: the payload's `block_hash` in a Capella block body.
pub const EXECUTION_BLOCK_HASH_GINDEX: u64 = 412;
/// `EXECUTION_BLOCK_HASH_GINDEX_DENEB`: the payload's `block_hash` in a Deneb block body.
pub const EXECUTION_BLOCK_HASH_GINDEX_DENEB: u64 = 812;
/// `EXECUTION_BLOCK_HASH_GINDEX_GLOAS`: `signed_execution_payload_bid.message.parent_block_hash`
/// in a Gloas block body.
pub const EXECUTION_BLOCK_HASH_GINDEX_GLOAS: u64 = 2856;

/// The depth of a generalized index (`floorlog2`).
pub fn gindex_depth(gindex: u64) -> usize {
    (63 - gindex.leading_zeros()) as usize
}

/// The generalized index of `gindex` for a header at `slot` (Electra's from its fork on,
/// Gloas's from its).
pub fn gindex_at(spec: &ChainSpec, gindex: StateGindex, slot: u64) -> u64 {
    match spec.fork_at_slot(slot) {
        f if f >= Fork::Gloas => gindex.2,
        f if f >= Fork::Electra => gindex.1,
        _ => gindex.0,
    }
}

/// The generalized index that proves a header's execution block hash in its block body, for a
/// header at a slot of `fork` (Capella on) carried in Gloas's shape.
pub fn execution_block_hash_gindex(fork: Fork) -> u64 {
    match fork {
        f if f >= Fork::Gloas => EXECUTION_BLOCK_HASH_GINDEX_GLOAS,
        f if f >= Fork::Deneb => EXECUTION_BLOCK_HASH_GINDEX_DENEB,
        _ => EXECUTION_BLOCK_HASH_GINDEX,
    }
}

/// The root a Merkle `branch` (leaf's sibling first) leads to from `leaf` at `index` (the
/// position among the leaves of a tree of depth `branch.len()`).
pub fn branch_root(leaf: B256, branch: &[B256], index: u64) -> B256 {
    let mut value = leaf;
    for (i, node) in branch.iter().enumerate() {
        value = if index >> i & 1 == 1 { hash_pair(node, &value) } else { hash_pair(&value, node) };
    }
    value
}

// ---------------------------------------------------------------------------------------------
// Hashing

/// `sha256(a ‖ b)`
pub fn hash_pair(a: &B256, b: &B256) -> B256 {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    B256::from_slice(&h.finalize())
}

fn u64_leaf(v: u64) -> B256 {
    let mut b = B256::ZERO;
    b[..8].copy_from_slice(&v.to_le_bytes());
    b
}

/// The root of a container whose fields hash to `leaves`.
fn container_root(leaves: &[B256]) -> B256 {
    let bytes: Vec<u8> = leaves.iter().flat_map(|l| l.0).collect();
    merkle_root(&bytes, leaves.len())
}

impl BeaconBlockHeader {
    /// `hash_tree_root`: the beacon block root.
    pub fn root(&self) -> B256 {
        container_root(&[
            u64_leaf(self.slot),
            u64_leaf(self.proposer_index),
            self.parent_root,
            self.state_root,
            self.body_root,
        ])
    }
}

impl ExecutionPayloadHeader {
    /// `hash_tree_root` in the layout of `fork` (Capella's 15 fields, or Deneb's 17 from Deneb on).
    pub fn root(&self, fork: Fork) -> B256 {
        container_root(&self.field_roots(fork))
    }

    /// The roots of its fields in the layout of `fork`, in order: the leaves of [`Self::root`].
    pub fn field_roots(&self, fork: Fork) -> Vec<B256> {
        let mut fee = B256::ZERO;
        fee[..20].copy_from_slice(self.fee_recipient.as_slice());
        let extra = tree_hash::mix_in_length(&merkle_root(&self.extra_data, 1), self.extra_data.len());
        let mut leaves = vec![
            self.parent_hash,
            fee,
            self.state_root,
            self.receipts_root,
            merkle_root(self.logs_bloom.as_slice(), 0),
            self.prev_randao,
            u64_leaf(self.block_number),
            u64_leaf(self.gas_limit),
            u64_leaf(self.gas_used),
            u64_leaf(self.timestamp),
            extra,
            B256::from(self.base_fee_per_gas.to_le_bytes::<32>()),
            self.block_hash,
            self.transactions_root,
            self.withdrawals_root,
        ];
        if fork >= Fork::Deneb {
            leaves.push(u64_leaf(self.blob_gas_used));
            leaves.push(u64_leaf(self.excess_blob_gas));
        }
        leaves
    }
}

impl LightClientHeader {
    /// `get_lc_execution_root`: zero before Capella; for a Gloas block, its execution block hash;
    /// otherwise the execution payload header's root in the layout of the header's own fork
    /// (in Gloas's shape, recomputed from the block hash and the inner part of its branch).
    pub fn execution_root(&self, spec: &ChainSpec) -> B256 {
        let fork = spec.fork_at_slot(self.beacon.slot);
        match self.execution_block_hash {
            _ if fork < Fork::Capella => B256::ZERO,
            None => self.execution.root(fork),
            Some(hash) if fork >= Fork::Gloas => hash,
            Some(hash) => {
                // The branch runs from the block hash through the payload header (`block_hash`
                // is field 12 of its 15, from Deneb 17, fields) on to the body root.
                let in_payload: u64 = if fork >= Fork::Deneb { 32 + 12 } else { 16 + 12 };
                let depth = gindex_depth(in_payload);
                let inner =
                    self.execution_branch.len().saturating_sub(gindex_depth(EXECUTION_PAYLOAD_GINDEX));
                let Some(start) = inner.checked_sub(depth) else { return B256::ZERO };
                branch_root(hash, &self.execution_branch[start..inner], in_payload % (1 << depth))
            }
        }
    }

    /// The execution block this header names, `(number, hash)`; the number is unknown (`None`)
    /// for a header in Gloas's shape. `None` before Capella.
    pub fn execution_block(&self, spec: &ChainSpec) -> Option<(Option<u64>, B256)> {
        if spec.fork_at_slot(self.beacon.slot) < Fork::Capella {
            return None;
        }
        Some(match self.execution_block_hash {
            Some(hash) => (None, hash),
            None => (Some(self.execution.block_number), self.execution.block_hash),
        })
    }

    /// Whether this is `LightClientHeader()`: every field zero.
    pub fn is_default(&self) -> bool {
        self.beacon == BeaconBlockHeader::default()
            && self.execution == ExecutionPayloadHeader::default()
            && self.execution_block_hash.is_none_or(|h| h.is_zero())
            && self.execution_branch.iter().all(|n| n.is_zero())
    }
}

impl SyncCommittee {
    /// `hash_tree_root`
    pub fn root(&self) -> B256 {
        let key_root = |k: &PubkeyBytes| merkle_root(k.as_slice(), 0);
        let leaves: Vec<B256> = self.pubkeys.iter().map(key_root).collect();
        container_root(&[container_root(&leaves), key_root(&self.aggregate_pubkey)])
    }

    /// Whether this is `SyncCommittee()`: every key zero.
    pub fn is_default(&self) -> bool {
        self.aggregate_pubkey.is_zero() && self.pubkeys.iter().all(|k| k.is_zero())
    }

    /// `SyncCommittee()` of `size` members.
    pub fn empty(size: usize) -> Self {
        SyncCommittee { pubkeys: vec![PubkeyBytes::ZERO; size], aggregate_pubkey: PubkeyBytes::ZERO }
    }
}

impl SyncAggregate {
    /// Whether member `i` signed.
    pub fn bit(&self, i: usize) -> bool {
        self.sync_committee_bits.get(i / 8).is_some_and(|b| b >> (i % 8) & 1 == 1)
    }

    /// How many members signed.
    pub fn participants(&self) -> u64 {
        self.sync_committee_bits.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// The number of members the bits are for.
    pub fn size(&self) -> usize {
        self.sync_committee_bits.len() * 8
    }
}

impl LightClientUpdate {
    /// The update a finality update stands for (`process_light_client_finality_update`).
    pub fn from_finality(u: LightClientFinalityUpdate, spec: &ChainSpec) -> Self {
        let depth = gindex_depth(gindex_at(spec, NEXT_SYNC_COMMITTEE_GINDEX, u.attested_header.beacon.slot));
        LightClientUpdate {
            attested_header: u.attested_header,
            next_sync_committee: SyncCommittee::empty(spec.preset.sync_committee_size),
            next_sync_committee_branch: vec![B256::ZERO; depth],
            finalized_header: u.finalized_header,
            finality_branch: u.finality_branch,
            sync_aggregate: u.sync_aggregate,
            signature_slot: u.signature_slot,
        }
    }

    /// The update an optimistic update stands for (`process_light_client_optimistic_update`).
    pub fn from_optimistic(u: LightClientOptimisticUpdate, spec: &ChainSpec) -> Self {
        let slot = u.attested_header.beacon.slot;
        LightClientUpdate {
            attested_header: u.attested_header,
            next_sync_committee: SyncCommittee::empty(spec.preset.sync_committee_size),
            next_sync_committee_branch: vec![
                B256::ZERO;
                gindex_depth(gindex_at(spec, NEXT_SYNC_COMMITTEE_GINDEX, slot))
            ],
            finalized_header: LightClientHeader::default(),
            finality_branch: vec![B256::ZERO; gindex_depth(gindex_at(spec, FINALIZED_ROOT_GINDEX, slot))],
            sync_aggregate: u.sync_aggregate,
            signature_slot: u.signature_slot,
        }
    }

    /// `is_sync_committee_update`
    pub fn has_next_sync_committee(&self) -> bool {
        self.next_sync_committee_branch.iter().any(|n| !n.is_zero())
    }

    /// `is_finality_update`
    pub fn has_finality(&self) -> bool {
        self.finality_branch.iter().any(|n| !n.is_zero())
    }
}

// ---------------------------------------------------------------------------------------------
// SSZ, in the layout of a fork

/// The SSZ layout of light-client data: what changed between forks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    /// the header carries the execution payload header (Capella on)
    execution: bool,
    /// the execution payload header has the blob gas fields (Deneb on)
    blob: bool,
    /// the header carries only the execution block hash (Gloas on)
    hash_only: bool,
    /// which of a [`StateGindex`]'s indices the state branches follow (0 before Electra, 1 from
    /// Electra, 2 from Gloas)
    state: u8,
    /// `SYNC_COMMITTEE_SIZE`
    committee: usize,
}

impl Layout {
    fn of(fork: Fork, spec: &ChainSpec) -> Self {
        Layout {
            execution: fork >= Fork::Capella,
            blob: fork >= Fork::Deneb,
            hash_only: fork >= Fork::Gloas,
            state: match fork {
                f if f >= Fork::Gloas => 2,
                f if f >= Fork::Electra => 1,
                _ => 0,
            },
            committee: spec.preset.sync_committee_size,
        }
    }

    fn depth(self, gindex: StateGindex) -> usize {
        gindex_depth(match self.state {
            2 => gindex.2,
            1 => gindex.1,
            _ => gindex.0,
        })
    }

    /// The size of a header of this layout, when it is fixed.
    fn header_fixed(self) -> Option<usize> {
        if self.hash_only {
            return Some(112 + 32 + 32 * gindex_depth(EXECUTION_BLOCK_HASH_GINDEX_GLOAS));
        }
        (!self.execution).then_some(112)
    }

    fn register_header(self, b: &mut SszDecoderBuilder<'_>) -> Result<(), DecodeError> {
        match self.header_fixed() {
            Some(n) => b.register_type_parameterized(true, n),
            None => b.register_anonymous_variable_length_item(),
        }
    }

    fn register_branch(self, b: &mut SszDecoderBuilder<'_>, depth: usize) -> Result<(), DecodeError> {
        b.register_type_parameterized(true, depth * 32)
    }

    fn committee_len(self) -> usize {
        48 * self.committee + 48
    }

    fn aggregate_len(self) -> usize {
        self.committee / 8 + 96
    }

    fn beacon(bytes: &[u8]) -> Result<BeaconBlockHeader, DecodeError> {
        let mut b = SszDecoderBuilder::new(bytes);
        for _ in 0..2 {
            b.register_type::<u64>()?;
        }
        for _ in 0..3 {
            b.register_type::<B256>()?;
        }
        let mut d = b.build()?;
        Ok(BeaconBlockHeader {
            slot: d.decode_next()?,
            proposer_index: d.decode_next()?,
            parent_root: d.decode_next()?,
            state_root: d.decode_next()?,
            body_root: d.decode_next()?,
        })
    }

    fn execution(self, bytes: &[u8]) -> Result<ExecutionPayloadHeader, DecodeError> {
        let mut b = SszDecoderBuilder::new(bytes);
        b.register_type::<B256>()?;
        b.register_type::<Address>()?;
        b.register_type::<B256>()?;
        b.register_type::<B256>()?;
        b.register_type::<Bloom>()?;
        b.register_type::<B256>()?;
        for _ in 0..4 {
            b.register_type::<u64>()?;
        }
        b.register_anonymous_variable_length_item()?;
        b.register_type::<U256>()?;
        for _ in 0..3 {
            b.register_type::<B256>()?;
        }
        if self.blob {
            b.register_type::<u64>()?;
            b.register_type::<u64>()?;
        }
        let mut d = b.build()?;
        let mut h = ExecutionPayloadHeader {
            parent_hash: d.decode_next()?,
            fee_recipient: d.decode_next()?,
            state_root: d.decode_next()?,
            receipts_root: d.decode_next()?,
            logs_bloom: d.decode_next()?,
            prev_randao: d.decode_next()?,
            block_number: d.decode_next()?,
            gas_limit: d.decode_next()?,
            gas_used: d.decode_next()?,
            timestamp: d.decode_next()?,
            extra_data: d.decode_next()?,
            base_fee_per_gas: d.decode_next()?,
            block_hash: d.decode_next()?,
            transactions_root: d.decode_next()?,
            withdrawals_root: d.decode_next()?,
            ..Default::default()
        };
        if self.blob {
            h.blob_gas_used = d.decode_next()?;
            h.excess_blob_gas = d.decode_next()?;
        }
        if h.extra_data.len() > 32 {
            return Err(DecodeError::BytesInvalid(format!("extra_data of {} bytes", h.extra_data.len())));
        }
        Ok(h)
    }

    fn header(self, bytes: &[u8]) -> Result<LightClientHeader, DecodeError> {
        if !self.execution {
            return Ok(LightClientHeader { beacon: Self::beacon(bytes)?, ..Default::default() });
        }
        if self.hash_only {
            let mut b = SszDecoderBuilder::new(bytes);
            b.register_type_parameterized(true, 112)?;
            b.register_type::<B256>()?;
            self.register_branch(&mut b, gindex_depth(EXECUTION_BLOCK_HASH_GINDEX_GLOAS))?;
            let mut d = b.build()?;
            return Ok(LightClientHeader {
                beacon: d.decode_next_with(Self::beacon)?,
                execution_block_hash: Some(d.decode_next()?),
                execution_branch: d.decode_next()?,
                ..Default::default()
            });
        }
        let mut b = SszDecoderBuilder::new(bytes);
        b.register_type_parameterized(true, 112)?;
        b.register_anonymous_variable_length_item()?;
        self.register_branch(&mut b, gindex_depth(EXECUTION_PAYLOAD_GINDEX))?;
        let mut d = b.build()?;
        Ok(LightClientHeader {
            beacon: d.decode_next_with(Self::beacon)?,
            execution: d.decode_next_with(|s| self.execution(s))?,
            execution_block_hash: None,
            execution_branch: d.decode_next()?,
        })
    }

    fn committee(self, bytes: &[u8]) -> Result<SyncCommittee, DecodeError> {
        let mut b = SszDecoderBuilder::new(bytes);
        b.register_type_parameterized(true, 48 * self.committee)?;
        b.register_type::<PubkeyBytes>()?;
        let mut d = b.build()?;
        Ok(SyncCommittee { pubkeys: d.decode_next()?, aggregate_pubkey: d.decode_next()? })
    }

    fn aggregate(self, bytes: &[u8]) -> Result<SyncAggregate, DecodeError> {
        let mut b = SszDecoderBuilder::new(bytes);
        b.register_type_parameterized(true, self.committee / 8)?;
        b.register_type::<SignatureBytes>()?;
        let mut d = b.build()?;
        Ok(SyncAggregate {
            sync_committee_bits: d.decode_next_with(|s| Ok(Bytes::copy_from_slice(s)))?,
            sync_committee_signature: d.decode_next()?,
        })
    }

    fn bootstrap(self, bytes: &[u8]) -> Result<LightClientBootstrap, DecodeError> {
        let mut b = SszDecoderBuilder::new(bytes);
        self.register_header(&mut b)?;
        b.register_type_parameterized(true, self.committee_len())?;
        self.register_branch(&mut b, self.depth(CURRENT_SYNC_COMMITTEE_GINDEX))?;
        let mut d = b.build()?;
        Ok(LightClientBootstrap {
            header: d.decode_next_with(|s| self.header(s))?,
            current_sync_committee: d.decode_next_with(|s| self.committee(s))?,
            current_sync_committee_branch: d.decode_next()?,
        })
    }

    fn update(self, bytes: &[u8]) -> Result<LightClientUpdate, DecodeError> {
        let mut b = SszDecoderBuilder::new(bytes);
        self.register_header(&mut b)?;
        b.register_type_parameterized(true, self.committee_len())?;
        self.register_branch(&mut b, self.depth(NEXT_SYNC_COMMITTEE_GINDEX))?;
        self.register_header(&mut b)?;
        self.register_branch(&mut b, self.depth(FINALIZED_ROOT_GINDEX))?;
        b.register_type_parameterized(true, self.aggregate_len())?;
        b.register_type::<u64>()?;
        let mut d = b.build()?;
        Ok(LightClientUpdate {
            attested_header: d.decode_next_with(|s| self.header(s))?,
            next_sync_committee: d.decode_next_with(|s| self.committee(s))?,
            next_sync_committee_branch: d.decode_next()?,
            finalized_header: d.decode_next_with(|s| self.header(s))?,
            finality_branch: d.decode_next()?,
            sync_aggregate: d.decode_next_with(|s| self.aggregate(s))?,
            signature_slot: d.decode_next()?,
        })
    }

    fn finality_update(self, bytes: &[u8]) -> Result<LightClientFinalityUpdate, DecodeError> {
        let mut b = SszDecoderBuilder::new(bytes);
        self.register_header(&mut b)?;
        self.register_header(&mut b)?;
        self.register_branch(&mut b, self.depth(FINALIZED_ROOT_GINDEX))?;
        b.register_type_parameterized(true, self.aggregate_len())?;
        b.register_type::<u64>()?;
        let mut d = b.build()?;
        Ok(LightClientFinalityUpdate {
            attested_header: d.decode_next_with(|s| self.header(s))?,
            finalized_header: d.decode_next_with(|s| self.header(s))?,
            finality_branch: d.decode_next()?,
            sync_aggregate: d.decode_next_with(|s| self.aggregate(s))?,
            signature_slot: d.decode_next()?,
        })
    }

    fn optimistic_update(self, bytes: &[u8]) -> Result<LightClientOptimisticUpdate, DecodeError> {
        let mut b = SszDecoderBuilder::new(bytes);
        self.register_header(&mut b)?;
        b.register_type_parameterized(true, self.aggregate_len())?;
        b.register_type::<u64>()?;
        let mut d = b.build()?;
        Ok(LightClientOptimisticUpdate {
            attested_header: d.decode_next_with(|s| self.header(s))?,
            sync_aggregate: d.decode_next_with(|s| self.aggregate(s))?,
            signature_slot: d.decode_next()?,
        })
    }
}

/// Decodes `bytes` in the layout of each fork the light client knows, newest first, and keeps the
/// first decoding whose `slot` (of the object's header) falls in that fork: light-client data is
/// encoded in the fork of its header's slot. `fork` fixes the fork instead, when the caller knows
/// it (the beacon API's `Eth-Consensus-Version`).
fn decode_in_fork<T>(
    spec: &ChainSpec,
    bytes: &[u8],
    fork: Option<Fork>,
    what: &str,
    decode: impl Fn(Layout, &[u8]) -> Result<T, DecodeError>,
    slot: impl Fn(&T) -> u64,
) -> Result<T, LightClientError> {
    let candidates: Vec<Fork> = match fork {
        Some(f) => vec![f],
        None => [Fork::Gloas, Fork::Electra, Fork::Deneb, Fork::Capella, Fork::Altair].into(),
    };
    let mut last = None;
    for f in candidates {
        match decode(Layout::of(f, spec), bytes) {
            Ok(v)
                if fork.is_some() || Layout::of(spec.fork_at_slot(slot(&v)), spec) == Layout::of(f, spec) =>
            {
                return Ok(v)
            }
            Ok(v) => {
                last = Some(format!(
                    "decodes as {} data but its slot {} is in {}",
                    f.name(),
                    slot(&v),
                    spec.fork_at_slot(slot(&v)).name()
                ))
            }
            Err(e) => last = last.or(Some(format!("{e:?}"))),
        }
    }
    Err(LightClientError::Decode(format!("{what}: {}", last.unwrap_or_default())))
}

impl LightClientBootstrap {
    /// Decodes SSZ bytes (see [`decode_in_fork`]).
    pub fn from_ssz(spec: &ChainSpec, bytes: &[u8], fork: Option<Fork>) -> Result<Self, LightClientError> {
        decode_in_fork(spec, bytes, fork, "bootstrap", |l, b| l.bootstrap(b), |v| v.header.beacon.slot)
    }
}

impl LightClientUpdate {
    /// Decodes SSZ bytes (see [`decode_in_fork`]).
    pub fn from_ssz(spec: &ChainSpec, bytes: &[u8], fork: Option<Fork>) -> Result<Self, LightClientError> {
        decode_in_fork(spec, bytes, fork, "update", |l, b| l.update(b), |v| v.attested_header.beacon.slot)
    }
}

impl LightClientFinalityUpdate {
    /// Decodes SSZ bytes (see [`decode_in_fork`]).
    pub fn from_ssz(spec: &ChainSpec, bytes: &[u8], fork: Option<Fork>) -> Result<Self, LightClientError> {
        decode_in_fork(
            spec,
            bytes,
            fork,
            "finality update",
            |l, b| l.finality_update(b),
            |v| v.attested_header.beacon.slot,
        )
    }
}

impl LightClientOptimisticUpdate {
    /// Decodes SSZ bytes (see [`decode_in_fork`]).
    pub fn from_ssz(spec: &ChainSpec, bytes: &[u8], fork: Option<Fork>) -> Result<Self, LightClientError> {
        decode_in_fork(
            spec,
            bytes,
            fork,
            "optimistic update",
            |l, b| l.optimistic_update(b),
            |v| v.attested_header.beacon.slot,
        )
    }
}

/// A `u64` as the beacon API writes it: a decimal string (a bare number is accepted too).
pub(crate) mod quoted {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            S(String),
            N(u64),
        }
        match Either::deserialize(d)? {
            Either::S(s) => s.parse().map_err(serde::de::Error::custom),
            Either::N(n) => Ok(n),
        }
    }
}

/// A `U256` as the beacon API writes it: a decimal string.
mod quoted_u256 {
    use alloy_primitives::U256;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        let s = String::deserialize(d)?;
        U256::from_str_radix(&s, 10).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gindex_depths() {
        assert_eq!(gindex_depth(FINALIZED_ROOT_GINDEX.0), 6);
        assert_eq!(gindex_depth(FINALIZED_ROOT_GINDEX.1), 7);
        assert_eq!(gindex_depth(CURRENT_SYNC_COMMITTEE_GINDEX.0), 5);
        assert_eq!(gindex_depth(NEXT_SYNC_COMMITTEE_GINDEX.1), 6);
        assert_eq!(gindex_depth(EXECUTION_PAYLOAD_GINDEX), 4);
        let gloas = (FINALIZED_ROOT_GINDEX.2, CURRENT_SYNC_COMMITTEE_GINDEX.2, NEXT_SYNC_COMMITTEE_GINDEX.2);
        assert_eq!((gindex_depth(gloas.0), gindex_depth(gloas.1), gindex_depth(gloas.2)), (9, 11, 11));
        // The payload's `block_hash` (field 12) under the body's `execution_payload` (25): 16 leaves
        // in Capella's payload header, 32 in Deneb's.
        assert_eq!(EXECUTION_BLOCK_HASH_GINDEX, (EXECUTION_PAYLOAD_GINDEX << 4) | 12);
        assert_eq!(EXECUTION_BLOCK_HASH_GINDEX_DENEB, (EXECUTION_PAYLOAD_GINDEX << 5) | 12);
        assert_eq!(gindex_depth(EXECUTION_BLOCK_HASH_GINDEX_GLOAS), 11);
    }

    #[test]
    fn json_round_trip_uses_the_beacon_api_format() {
        let h = LightClientHeader {
            beacon: BeaconBlockHeader { slot: 7, proposer_index: 3, ..Default::default() },
            execution: ExecutionPayloadHeader {
                block_number: 9,
                base_fee_per_gas: U256::from(1_000_000_007u64),
                ..Default::default()
            },
            execution_block_hash: None,
            execution_branch: vec![B256::ZERO; 4],
        };
        let json = serde_json::to_value(&h).expect("json");
        assert!(json.get("execution_block_hash").is_none(), "absent unless in Gloas's shape");
        assert_eq!(json["beacon"]["slot"], "7");
        assert_eq!(json["execution"]["base_fee_per_gas"], "1000000007");
        let back: LightClientHeader = serde_json::from_value(json).expect("back");
        assert_eq!(back, h);

        // A Gloas header as the beacon API gives it: no `execution`, the block hash instead.
        let hash = B256::repeat_byte(0xab);
        let gloas = serde_json::json!({
            "beacon": {"slot": "9", "proposer_index": "1", "parent_root": B256::ZERO,
                       "state_root": B256::ZERO, "body_root": B256::ZERO},
            "execution_block_hash": hash,
            "execution_branch": vec![B256::ZERO; 11],
        });
        let h: LightClientHeader = serde_json::from_value(gloas).expect("gloas json");
        assert_eq!((h.execution_block_hash, h.execution_branch.len()), (Some(hash), 11));
        assert_eq!(h.execution, ExecutionPayloadHeader::default());
    }
}
