//! The sync protocol (`specs/altair/light-client/sync-protocol.md` with the Capella, Deneb,
//! Electra and Gloas changes): bootstrap, update validation, store updates, forced updates.
//!
//! Each function follows the spec function of the same name; a failed `assert` of the spec is an
//! [`UpdateError`], and the store is left as it was.

use std::sync::{Arc, Mutex};

use alloy_primitives::B256;
use blst::min_pk::{AggregatePublicKey, PublicKey, Signature};
use blst::BLST_ERROR;
use serde::{Deserialize, Serialize};

use crate::config::{ChainSpec, Fork};
use crate::types::{
    branch_root, execution_block_hash_gindex, gindex_at, gindex_depth, hash_pair, BeaconBlockHeader,
    LightClientBootstrap, LightClientHeader, LightClientUpdate, SyncCommittee, CURRENT_SYNC_COMMITTEE_GINDEX,
    EXECUTION_PAYLOAD_GINDEX, FINALIZED_ROOT_GINDEX, NEXT_SYNC_COMMITTEE_GINDEX,
};

/// `DOMAIN_SYNC_COMMITTEE`
pub const DOMAIN_SYNC_COMMITTEE: [u8; 4] = [7, 0, 0, 0];
/// The BLS signature scheme's domain separation tag (proof of possession, G2 signatures).
pub const BLS_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// Why an update (or a bootstrap) was refused. The names are stable: they are logged and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The bootstrap's header is not the trusted block root.
    #[error("bootstrap header root {got} is not the trusted block root {want}")]
    UntrustedBootstrap {
        /// the header's root
        got: B256,
        /// the checkpoint
        want: B256,
    },
    /// A header's execution part does not match its branch (or is set before Capella).
    #[error("invalid light-client header at slot {0}: execution payload header does not match its branch")]
    InvalidHeader(u64),
    /// A Merkle branch does not lead to the root it should.
    #[error("invalid {0} branch")]
    InvalidBranch(&'static str),
    /// A committee or a bits field has the wrong size for the preset.
    #[error("wrong size: {0}")]
    WrongSize(&'static str),
    /// Fewer signers than `MIN_SYNC_COMMITTEE_PARTICIPANTS`.
    #[error("{0} participants, below the minimum")]
    TooFewParticipants(u64),
    /// The slots are not ordered `current ≥ signature > attested ≥ finalized`.
    #[error("slots out of order: current {current}, signature {signature}, attested {attested}, finalized {finalized}")]
    SlotOrder {
        /// the local clock's slot
        current: u64,
        /// signature slot
        signature: u64,
        /// attested header slot
        attested: u64,
        /// finalized header slot
        finalized: u64,
    },
    /// The update was signed in a period the store has no committee for.
    #[error("signature period {signature} is not the store's period {store} (or the next, when known)")]
    WrongPeriod {
        /// the signature's period
        signature: u64,
        /// the store's
        store: u64,
    },
    /// The update says nothing the store does not know.
    #[error("update is not relevant: attested slot {attested} ≤ finalized slot {finalized}")]
    NotRelevant {
        /// attested slot
        attested: u64,
        /// the store's finalized slot
        finalized: u64,
    },
    /// A part that must be empty is not (a finalized header without a finality branch, ...).
    #[error("{0} present without its branch")]
    UnexpectedField(&'static str),
    /// The update's next committee differs from the one the store holds for that period.
    #[error("next sync committee differs from the known one")]
    CommitteeMismatch,
    /// A public key of the committee is not a valid BLS key.
    #[error("sync committee holds an invalid BLS public key")]
    InvalidPubkey,
    /// The aggregate signature is malformed or does not verify.
    #[error("sync aggregate signature does not verify")]
    BadSignature,
    /// `apply_light_client_update`'s assertion: a finalized period the store cannot take.
    #[error("update finalizes period {update}, store is in period {store} without a next committee")]
    CannotApply {
        /// the update's finalized period
        update: u64,
        /// the store's
        store: u64,
    },
}

impl UpdateError {
    /// A stable short name (for metrics and logs).
    pub fn code(&self) -> &'static str {
        match self {
            UpdateError::UntrustedBootstrap { .. } => "untrusted_bootstrap",
            UpdateError::InvalidHeader(_) => "invalid_header",
            UpdateError::InvalidBranch(_) => "invalid_branch",
            UpdateError::WrongSize(_) => "wrong_size",
            UpdateError::TooFewParticipants(_) => "too_few_participants",
            UpdateError::SlotOrder { .. } => "slot_order",
            UpdateError::WrongPeriod { .. } => "wrong_period",
            UpdateError::NotRelevant { .. } => "not_relevant",
            UpdateError::UnexpectedField(_) => "unexpected_field",
            UpdateError::CommitteeMismatch => "committee_mismatch",
            UpdateError::InvalidPubkey => "invalid_pubkey",
            UpdateError::BadSignature => "bad_signature",
            UpdateError::CannotApply { .. } => "cannot_apply",
        }
    }
}

/// `LightClientStore`, plus a cache of the committees' decompressed keys (not stored).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LightClientStore {
    /// the newest finalized header
    pub finalized_header: LightClientHeader,
    /// the committee of the finalized header's period
    pub current_sync_committee: SyncCommittee,
    /// the next period's committee, once known
    pub next_sync_committee: Option<SyncCommittee>,
    /// the best update seen that has not been applied (for a forced update)
    pub best_valid_update: Option<LightClientUpdate>,
    /// the newest header signed by more than the safety threshold
    pub optimistic_header: LightClientHeader,
    /// the most signers seen in the previous period
    pub previous_max_active_participants: u64,
    /// the most signers seen in this period
    pub current_max_active_participants: u64,
    #[serde(skip)]
    keys: KeyCache,
}

/// Decompressed committee keys, by committee root: checking a signature then aggregates keys
/// without decompressing 512 points each time.
#[derive(Clone, Debug, Default)]
struct KeyCache(Arc<Mutex<Vec<(B256, CommitteeKeys)>>>);

/// A committee's keys, decompressed and validated.
type CommitteeKeys = Arc<Vec<PublicKey>>;

impl KeyCache {
    fn keys(&self, committee: &SyncCommittee) -> Result<CommitteeKeys, UpdateError> {
        let root = committee.root();
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, keys)) = cache.iter().find(|(r, _)| *r == root) {
            return Ok(keys.clone());
        }
        let keys = committee
            .pubkeys
            .iter()
            .map(|k| PublicKey::key_validate(k.as_slice()).map_err(|_| UpdateError::InvalidPubkey))
            .collect::<Result<Vec<_>, _>>()?;
        let keys = Arc::new(keys);
        cache.push((root, keys.clone()));
        // The current and next committees, and one just rotated out.
        if cache.len() > 3 {
            cache.remove(0);
        }
        Ok(keys)
    }
}

/// `is_valid_normalized_merkle_branch`: `branch` may be longer than the depth of `gindex` (a
/// branch of a later fork); the extra leading nodes must then be zero.
pub fn is_valid_branch(leaf: B256, branch: &[B256], gindex: u64, root: B256) -> bool {
    let depth = gindex_depth(gindex);
    let Some(extra) = branch.len().checked_sub(depth) else { return false };
    if branch[..extra].iter().any(|n| !n.is_zero()) {
        return false;
    }
    branch_root(leaf, &branch[extra..], gindex % (1 << depth)) == root
}

/// `is_valid_light_client_header`: Deneb's (which covers Capella's and Altair's) for a header
/// with its execution payload header, Gloas's for one in Gloas's shape (only the block hash); a
/// header of a Gloas slot must be in that shape.
pub fn is_valid_header(spec: &ChainSpec, header: &LightClientHeader) -> bool {
    let fork = spec.fork_at_slot(header.beacon.slot);
    if let Some(hash) = header.execution_block_hash {
        let branch = &header.execution_branch;
        if header.execution != Default::default() {
            return false;
        }
        if fork < Fork::Capella {
            return hash.is_zero() && branch.iter().all(|n| n.is_zero());
        }
        return is_valid_branch(hash, branch, execution_block_hash_gindex(fork), header.beacon.body_root);
    }
    if fork >= Fork::Gloas {
        return false;
    }
    if fork < Fork::Deneb && (header.execution.blob_gas_used != 0 || header.execution.excess_blob_gas != 0) {
        return false;
    }
    if fork < Fork::Capella {
        return header.execution == Default::default() && header.execution_branch.iter().all(|n| n.is_zero());
    }
    is_valid_branch(
        header.execution_root(spec),
        &header.execution_branch,
        EXECUTION_PAYLOAD_GINDEX,
        header.beacon.body_root,
    )
}

/// `compute_domain(DOMAIN_SYNC_COMMITTEE, fork_version, genesis_validators_root)`
pub fn sync_committee_domain(fork_version: [u8; 4], genesis_validators_root: B256) -> B256 {
    let mut version = B256::ZERO;
    version[..4].copy_from_slice(&fork_version);
    let fork_data_root = hash_pair(&version, &genesis_validators_root);
    let mut domain = B256::ZERO;
    domain[..4].copy_from_slice(&DOMAIN_SYNC_COMMITTEE);
    domain[4..].copy_from_slice(&fork_data_root[..28]);
    domain
}

/// `compute_signing_root(header, domain)`
pub fn signing_root(header: &BeaconBlockHeader, domain: B256) -> B256 {
    hash_pair(&header.root(), &domain)
}

/// The fork version a signature at `signature_slot` is made with (the slot before it: a block
/// at a fork's first slot is signed by the committee in the previous slot).
pub fn signature_fork_version(spec: &ChainSpec, signature_slot: u64) -> [u8; 4] {
    spec.fork_at_epoch(spec.epoch_at(signature_slot.max(1) - 1)).1
}

impl LightClientStore {
    /// `initialize_light_client_store`
    pub fn bootstrap(
        spec: &ChainSpec,
        trusted_block_root: B256,
        bootstrap: LightClientBootstrap,
    ) -> Result<Self, UpdateError> {
        if !is_valid_header(spec, &bootstrap.header) {
            return Err(UpdateError::InvalidHeader(bootstrap.header.beacon.slot));
        }
        let got = bootstrap.header.beacon.root();
        if got != trusted_block_root {
            return Err(UpdateError::UntrustedBootstrap { got, want: trusted_block_root });
        }
        if bootstrap.current_sync_committee.pubkeys.len() != spec.preset.sync_committee_size {
            return Err(UpdateError::WrongSize("current sync committee"));
        }
        if !is_valid_branch(
            bootstrap.current_sync_committee.root(),
            &bootstrap.current_sync_committee_branch,
            gindex_at(spec, CURRENT_SYNC_COMMITTEE_GINDEX, bootstrap.header.beacon.slot),
            bootstrap.header.beacon.state_root,
        ) {
            return Err(UpdateError::InvalidBranch("current sync committee"));
        }
        Ok(LightClientStore {
            finalized_header: bootstrap.header.clone(),
            current_sync_committee: bootstrap.current_sync_committee,
            next_sync_committee: None,
            best_valid_update: None,
            optimistic_header: bootstrap.header,
            previous_max_active_participants: 0,
            current_max_active_participants: 0,
            keys: KeyCache::default(),
        })
    }

    /// The finalized header's sync-committee period.
    pub fn period(&self, spec: &ChainSpec) -> u64 {
        spec.period_at(self.finalized_header.beacon.slot)
    }

    /// `get_safety_threshold`
    pub fn safety_threshold(&self) -> u64 {
        self.previous_max_active_participants.max(self.current_max_active_participants) / 2
    }

    /// `validate_light_client_update`
    pub fn validate(
        &self,
        spec: &ChainSpec,
        update: &LightClientUpdate,
        current_slot: u64,
        genesis_validators_root: B256,
    ) -> Result<(), UpdateError> {
        let size = spec.preset.sync_committee_size;
        let aggregate = &update.sync_aggregate;
        if aggregate.size() != size {
            return Err(UpdateError::WrongSize("sync committee bits"));
        }
        if update.next_sync_committee.pubkeys.len() != size {
            return Err(UpdateError::WrongSize("next sync committee"));
        }
        let participants = aggregate.participants();
        if participants < spec.preset.min_sync_committee_participants {
            return Err(UpdateError::TooFewParticipants(participants));
        }
        if !is_valid_header(spec, &update.attested_header) {
            return Err(UpdateError::InvalidHeader(update.attested_header.beacon.slot));
        }
        let attested = update.attested_header.beacon.slot;
        let finalized = update.finalized_header.beacon.slot;
        if !(current_slot >= update.signature_slot
            && update.signature_slot > attested
            && attested >= finalized)
        {
            return Err(UpdateError::SlotOrder {
                current: current_slot,
                signature: update.signature_slot,
                attested,
                finalized,
            });
        }
        let store_period = self.period(spec);
        let signature_period = spec.period_at(update.signature_slot);
        let next_known = self.next_sync_committee.is_some();
        let period_ok = if next_known {
            signature_period == store_period || signature_period == store_period + 1
        } else {
            signature_period == store_period
        };
        if !period_ok {
            return Err(UpdateError::WrongPeriod { signature: signature_period, store: store_period });
        }

        let attested_period = spec.period_at(attested);
        let brings_next = !next_known && update.has_next_sync_committee() && attested_period == store_period;
        if !(attested > self.finalized_header.beacon.slot || brings_next) {
            return Err(UpdateError::NotRelevant { attested, finalized: self.finalized_header.beacon.slot });
        }

        let state_root = update.attested_header.beacon.state_root;
        if !update.has_finality() {
            if !update.finalized_header.is_default() {
                return Err(UpdateError::UnexpectedField("finalized header"));
            }
        } else {
            let finalized_root = if finalized == 0 {
                if !update.finalized_header.is_default() {
                    return Err(UpdateError::UnexpectedField("genesis finalized header"));
                }
                B256::ZERO
            } else {
                if !is_valid_header(spec, &update.finalized_header) {
                    return Err(UpdateError::InvalidHeader(finalized));
                }
                update.finalized_header.beacon.root()
            };
            if !is_valid_branch(
                finalized_root,
                &update.finality_branch,
                gindex_at(spec, FINALIZED_ROOT_GINDEX, attested),
                state_root,
            ) {
                return Err(UpdateError::InvalidBranch("finality"));
            }
        }

        if !update.has_next_sync_committee() {
            if !update.next_sync_committee.is_default() {
                return Err(UpdateError::UnexpectedField("next sync committee"));
            }
        } else {
            if attested_period == store_period {
                if let Some(next) = &self.next_sync_committee {
                    if *next != update.next_sync_committee {
                        return Err(UpdateError::CommitteeMismatch);
                    }
                }
            }
            if !is_valid_branch(
                update.next_sync_committee.root(),
                &update.next_sync_committee_branch,
                gindex_at(spec, NEXT_SYNC_COMMITTEE_GINDEX, attested),
                state_root,
            ) {
                return Err(UpdateError::InvalidBranch("next sync committee"));
            }
        }

        let committee = if signature_period == store_period {
            &self.current_sync_committee
        } else {
            self.next_sync_committee
                .as_ref()
                .ok_or(UpdateError::WrongPeriod { signature: signature_period, store: store_period })?
        };
        let keys = self.keys.keys(committee)?;
        let signers: Vec<&PublicKey> =
            keys.iter().enumerate().filter(|(i, _)| aggregate.bit(*i)).map(|(_, k)| k).collect();
        let domain = sync_committee_domain(
            signature_fork_version(spec, update.signature_slot),
            genesis_validators_root,
        );
        let message = signing_root(&update.attested_header.beacon, domain);
        verify_aggregate(&signers, message.as_slice(), aggregate.sync_committee_signature.as_slice())
    }

    /// `apply_light_client_update`
    fn apply(&mut self, spec: &ChainSpec, update: &LightClientUpdate) -> Result<(), UpdateError> {
        let store_period = self.period(spec);
        let finalized_period = spec.period_at(update.finalized_header.beacon.slot);
        match &self.next_sync_committee {
            None => {
                if finalized_period != store_period {
                    return Err(UpdateError::CannotApply { update: finalized_period, store: store_period });
                }
                self.next_sync_committee = Some(update.next_sync_committee.clone());
            }
            Some(next) if finalized_period == store_period + 1 => {
                self.current_sync_committee = next.clone();
                self.next_sync_committee = Some(update.next_sync_committee.clone());
                self.previous_max_active_participants = self.current_max_active_participants;
                self.current_max_active_participants = 0;
            }
            Some(_) => {}
        }
        // An applied update that carried no committee leaves `SyncCommittee()`: unknown.
        if self.next_sync_committee.as_ref().is_some_and(SyncCommittee::is_default) {
            self.next_sync_committee = None;
        }
        if update.finalized_header.beacon.slot > self.finalized_header.beacon.slot {
            self.finalized_header = update.finalized_header.clone();
            if self.finalized_header.beacon.slot > self.optimistic_header.beacon.slot {
                self.optimistic_header = self.finalized_header.clone();
            }
        }
        Ok(())
    }

    /// `process_light_client_update`. On an error the store is unchanged.
    pub fn process_update(
        &mut self,
        spec: &ChainSpec,
        update: &LightClientUpdate,
        current_slot: u64,
        genesis_validators_root: B256,
    ) -> Result<(), UpdateError> {
        self.validate(spec, update, current_slot, genesis_validators_root)?;
        let mut next = self.clone();
        let participants = update.sync_aggregate.participants();
        if next.best_valid_update.as_ref().is_none_or(|best| is_better_update(spec, update, best)) {
            next.best_valid_update = Some(update.clone());
        }
        next.current_max_active_participants = next.current_max_active_participants.max(participants);
        if participants > next.safety_threshold()
            && update.attested_header.beacon.slot > next.optimistic_header.beacon.slot
        {
            next.optimistic_header = update.attested_header.clone();
        }
        let finalizes_next_committee = next.next_sync_committee.is_none()
            && update.has_next_sync_committee()
            && update.has_finality()
            && spec.period_at(update.finalized_header.beacon.slot)
                == spec.period_at(update.attested_header.beacon.slot);
        let size = update.sync_aggregate.size() as u64;
        if participants * 3 >= size * 2
            && (update.finalized_header.beacon.slot > next.finalized_header.beacon.slot
                || finalizes_next_committee)
        {
            next.apply(spec, update)?;
            next.best_valid_update = None;
        }
        *self = next;
        Ok(())
    }

    /// `process_light_client_store_force_update`. Returns whether the store moved.
    pub fn force_update(&mut self, spec: &ChainSpec, current_slot: u64) -> Result<bool, UpdateError> {
        if current_slot <= self.finalized_header.beacon.slot.saturating_add(spec.update_timeout()) {
            return Ok(false);
        }
        let Some(mut best) = self.best_valid_update.clone() else { return Ok(false) };
        if best.finalized_header.beacon.slot <= self.finalized_header.beacon.slot {
            best.finalized_header = best.attested_header.clone();
        }
        let mut next = self.clone();
        next.apply(spec, &best)?;
        next.best_valid_update = None;
        *self = next;
        Ok(true)
    }
}

/// `bls.FastAggregateVerify(signers, message, signature)`.
fn verify_aggregate(signers: &[&PublicKey], message: &[u8], signature: &[u8]) -> Result<(), UpdateError> {
    if signers.is_empty() {
        return Err(UpdateError::BadSignature);
    }
    let signature = Signature::from_bytes(signature).map_err(|_| UpdateError::BadSignature)?;
    let aggregate = AggregatePublicKey::aggregate(signers, false).map_err(|_| UpdateError::BadSignature)?;
    match signature.verify(true, message, BLS_DST, &[], &aggregate.to_public_key(), false) {
        BLST_ERROR::BLST_SUCCESS => Ok(()),
        _ => Err(UpdateError::BadSignature),
    }
}

/// `is_better_update`
pub fn is_better_update(spec: &ChainSpec, new: &LightClientUpdate, old: &LightClientUpdate) -> bool {
    let max = new.sync_aggregate.size() as u64;
    let (new_n, old_n) = (new.sync_aggregate.participants(), old.sync_aggregate.participants());
    let (new_super, old_super) = (new_n * 3 >= max * 2, old_n * 3 >= max * 2);
    if new_super != old_super {
        return new_super;
    }
    if !new_super && new_n != old_n {
        return new_n > old_n;
    }
    let relevant = |u: &LightClientUpdate| {
        u.has_next_sync_committee()
            && spec.period_at(u.attested_header.beacon.slot) == spec.period_at(u.signature_slot)
    };
    if relevant(new) != relevant(old) {
        return relevant(new);
    }
    if new.has_finality() != old.has_finality() {
        return new.has_finality();
    }
    if new.has_finality() {
        let committee_final = |u: &LightClientUpdate| {
            spec.period_at(u.finalized_header.beacon.slot) == spec.period_at(u.attested_header.beacon.slot)
        };
        if committee_final(new) != committee_final(old) {
            return committee_final(new);
        }
    }
    if new_n != old_n {
        return new_n > old_n;
    }
    if new.attested_header.beacon.slot != old.attested_header.beacon.slot {
        return new.attested_header.beacon.slot < old.attested_header.beacon.slot;
    }
    new.signature_slot < old.signature_slot
}
