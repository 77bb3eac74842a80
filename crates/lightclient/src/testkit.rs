//! A beacon chain made up for tests and benchmarks: sync committees of real BLS keys (derived
//! from a seed), beacon states whose Merkle trees hold exactly what the light client checks
//! (the finalized checkpoint root, the current and next sync committees), and bootstraps and
//! updates signed by those committees over execution payload headers the caller chooses (an
//! anvil node's real blocks, say). Everything it makes passes the same verification as mainnet
//! data; nothing in the verifier knows about it.

use std::collections::BTreeMap;

use alloy_primitives::B256;
use blst::min_pk::{AggregateSignature, SecretKey};
use sha2::{Digest, Sha256};

use crate::config::{ChainSpec, Fork, Preset};
use crate::protocol::{signature_fork_version, signing_root, sync_committee_domain, BLS_DST};
use crate::types::{
    gindex_at, gindex_depth, hash_pair, BeaconBlockHeader, ExecutionPayloadHeader, LightClientBootstrap,
    LightClientFinalityUpdate, LightClientHeader, LightClientOptimisticUpdate, LightClientUpdate,
    PubkeyBytes, SignatureBytes, SyncAggregate, SyncCommittee, CURRENT_SYNC_COMMITTEE_GINDEX,
    EXECUTION_BLOCK_HASH_GINDEX_GLOAS, EXECUTION_PAYLOAD_GINDEX, FINALIZED_ROOT_GINDEX,
    NEXT_SYNC_COMMITTEE_GINDEX,
};

/// A consensus-spec `config.yaml` for a test chain of `preset` (`minimal` or `mainnet`) with
/// every fork through Deneb at genesis and Electra at `electra_epoch` (none: not scheduled).
pub fn config_yaml(preset: &str, seconds_per_slot: u64, electra_epoch: Option<u64>) -> String {
    config_yaml_to_gloas(preset, seconds_per_slot, electra_epoch, None)
}

/// [`config_yaml`] with Gloas (right after Electra) at `gloas_epoch` as well.
pub fn config_yaml_to_gloas(
    preset: &str,
    seconds_per_slot: u64,
    electra_epoch: Option<u64>,
    gloas_epoch: Option<u64>,
) -> String {
    let electra = electra_epoch.unwrap_or(crate::config::FAR_FUTURE_EPOCH);
    let gloas = gloas_epoch.unwrap_or(crate::config::FAR_FUTURE_EPOCH);
    format!(
        "PRESET_BASE: '{preset}'\nCONFIG_NAME: 'zkcoproc-test'\nSECONDS_PER_SLOT: {seconds_per_slot}\n\
         GENESIS_FORK_VERSION: 0x00000042\nALTAIR_FORK_VERSION: 0x01000042\nALTAIR_FORK_EPOCH: 0\n\
         BELLATRIX_FORK_VERSION: 0x02000042\nBELLATRIX_FORK_EPOCH: 0\nCAPELLA_FORK_VERSION: 0x03000042\n\
         CAPELLA_FORK_EPOCH: 0\nDENEB_FORK_VERSION: 0x04000042\nDENEB_FORK_EPOCH: 0\n\
         ELECTRA_FORK_VERSION: 0x05000042\nELECTRA_FORK_EPOCH: {electra}\n\
         GLOAS_FORK_VERSION: 0x07000042\nGLOAS_FORK_EPOCH: {gloas}\n"
    )
}

/// A header of the test chain with the proofs its state holds.
#[derive(Clone, Debug)]
pub struct TestHeader {
    /// the light-client header (with its execution payload header and branch)
    pub header: LightClientHeader,
    /// branch of the current sync committee to the state root
    pub current_branch: Vec<B256>,
    /// branch of the next sync committee to the state root
    pub next_branch: Vec<B256>,
    /// branch of the finalized checkpoint root to the state root
    pub finality_branch: Vec<B256>,
}

/// The test chain.
#[derive(Debug)]
pub struct TestChain {
    /// its parameters
    pub spec: ChainSpec,
    /// its genesis validators root
    pub genesis_validators_root: B256,
    seed: u64,
    keys: std::sync::Mutex<BTreeMap<u64, std::sync::Arc<Vec<SecretKey>>>>,
}

/// A sparse Merkle tree over generalized indices: unset subtrees are zero subtrees.
struct Sparse {
    leaves: BTreeMap<u64, B256>,
    depth: usize,
}

impl Sparse {
    fn new(leaves: BTreeMap<u64, B256>) -> Self {
        let depth = leaves.keys().map(|g| gindex_depth(*g)).max().unwrap_or(0);
        Sparse { leaves, depth }
    }

    fn node(&self, g: u64) -> B256 {
        if let Some(v) = self.leaves.get(&g) {
            return *v;
        }
        let d = gindex_depth(g);
        let below = self.leaves.keys().any(|&l| {
            let ld = gindex_depth(l);
            ld > d && l >> (ld - d) == g
        });
        if !below {
            let mut zero = B256::ZERO;
            for _ in d..self.depth {
                zero = hash_pair(&zero, &zero);
            }
            return zero;
        }
        hash_pair(&self.node(2 * g), &self.node(2 * g + 1))
    }

    fn root(&self) -> B256 {
        self.node(1)
    }

    fn branch(&self, mut g: u64) -> Vec<B256> {
        let mut out = Vec::new();
        while g > 1 {
            out.push(self.node(g ^ 1));
            g >>= 1;
        }
        out
    }
}

fn slot_leaf(slot: u64) -> B256 {
    let mut b = B256::ZERO;
    b[..8].copy_from_slice(&slot.to_le_bytes());
    b[31] = 0x5a;
    b
}

impl TestChain {
    /// A chain of `spec` (its genesis validators root derived from `seed`).
    pub fn new(mut spec: ChainSpec, seed: u64) -> Self {
        let gvr = B256::from_slice(&Sha256::digest(format!("zkcoproc test chain {seed}")));
        spec.genesis_validators_root = Some(gvr);
        TestChain { spec, genesis_validators_root: gvr, seed, keys: Default::default() }
    }

    /// The minimal-preset chain of [`config_yaml`] (Deneb, no Electra).
    pub fn minimal(seconds_per_slot: u64, seed: u64) -> Self {
        let spec = ChainSpec::from_yaml(&config_yaml("minimal", seconds_per_slot, None))
            .unwrap_or_else(|e| unreachable!("the built-in test config parses: {e}"));
        TestChain::new(spec, seed)
    }

    /// A chain with the mainnet preset (512-member committees) and every fork through Deneb.
    pub fn mainnet_sized(seed: u64) -> Self {
        let spec = ChainSpec::from_yaml(&config_yaml("mainnet", 12, None))
            .unwrap_or_else(|e| unreachable!("the built-in test config parses: {e}"));
        debug_assert_eq!(spec.preset, Preset::MAINNET);
        TestChain::new(spec, seed)
    }

    fn secret_keys(&self, period: u64) -> std::sync::Arc<Vec<SecretKey>> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.entry(period)
            .or_insert_with(|| {
                let keys = (0..self.spec.preset.sync_committee_size)
                    .map(|i| {
                        let ikm = Sha256::digest(format!("{}/{period}/{i}", self.seed));
                        SecretKey::key_gen(&ikm, &[]).unwrap_or_else(|e| unreachable!("32-byte ikm: {e:?}"))
                    })
                    .collect();
                std::sync::Arc::new(keys)
            })
            .clone()
    }

    /// The sync committee of `period`.
    pub fn committee(&self, period: u64) -> SyncCommittee {
        let keys = self.secret_keys(period);
        let pks: Vec<_> = keys.iter().map(SecretKey::sk_to_pk).collect();
        let refs: Vec<_> = pks.iter().collect();
        let aggregate = blst::min_pk::AggregatePublicKey::aggregate(&refs, false)
            .unwrap_or_else(|e| unreachable!("valid keys aggregate: {e:?}"))
            .to_public_key();
        SyncCommittee {
            pubkeys: pks.iter().map(|k| PubkeyBytes::from(k.compress())).collect(),
            aggregate_pubkey: PubkeyBytes::from(aggregate.compress()),
        }
    }

    /// A beacon block at `slot` whose execution payload header is `execution` and whose state
    /// names `finalized_root` as finalized (zero: genesis). From Gloas on the block names only
    /// `execution.block_hash` (as its bid's parent block hash), and the header is in Gloas's
    /// shape.
    pub fn header(&self, slot: u64, execution: ExecutionPayloadHeader, finalized_root: B256) -> TestHeader {
        let spec = &self.spec;
        let fork = spec.fork_at_slot(slot);
        let gloas = fork >= Fork::Gloas;
        let (gindex, leaf) = if gloas {
            (EXECUTION_BLOCK_HASH_GINDEX_GLOAS, execution.block_hash)
        } else {
            (EXECUTION_PAYLOAD_GINDEX, execution.root(fork.max(Fork::Capella)))
        };
        let body = Sparse::new(BTreeMap::from([(gindex, leaf), (16, slot_leaf(slot))]));
        let period = spec.period_at(slot);
        let (fin, cur, next) = (
            gindex_at(spec, FINALIZED_ROOT_GINDEX, slot),
            gindex_at(spec, CURRENT_SYNC_COMMITTEE_GINDEX, slot),
            gindex_at(spec, NEXT_SYNC_COMMITTEE_GINDEX, slot),
        );
        let state = Sparse::new(BTreeMap::from([
            (fin, finalized_root),
            (cur, self.committee(period).root()),
            (next, self.committee(period + 1).root()),
            (cur / 2 * 2 - 16, slot_leaf(slot)),
        ]));
        let beacon = BeaconBlockHeader {
            slot,
            proposer_index: slot % 64,
            parent_root: B256::from_slice(&Sha256::digest(slot.to_le_bytes())),
            state_root: state.root(),
            body_root: body.root(),
        };
        let header = if gloas {
            LightClientHeader {
                beacon,
                execution_block_hash: Some(execution.block_hash),
                execution_branch: body.branch(gindex),
                ..Default::default()
            }
        } else {
            LightClientHeader {
                beacon,
                execution,
                execution_block_hash: None,
                execution_branch: body.branch(gindex),
            }
        };
        TestHeader {
            header,
            current_branch: state.branch(cur),
            next_branch: state.branch(next),
            finality_branch: state.branch(fin),
        }
    }

    /// `upgrade_lc_header_to_gloas` of a header made before Gloas (Capella on): only its execution
    /// block hash, with the branch from it through the payload header to the body root,
    /// normalized (leading zeros) to Gloas's length.
    pub fn in_gloas_shape(&self, made: &TestHeader) -> LightClientHeader {
        let fork = self.spec.fork_at_slot(made.header.beacon.slot);
        let fields = made.header.execution.field_roots(fork);
        let width = fields.len().next_power_of_two() as u64;
        let payload = Sparse::new((0..).map(|i| width + i).zip(fields.iter().copied()).collect());
        let mut branch = payload.branch(width + 12); // `block_hash` is field 12
        branch.extend(made.header.execution_branch.iter().copied());
        let depth = gindex_depth(EXECUTION_BLOCK_HASH_GINDEX_GLOAS);
        let mut normalized = vec![B256::ZERO; depth.saturating_sub(branch.len())];
        normalized.extend(branch);
        LightClientHeader {
            beacon: made.header.beacon.clone(),
            execution_block_hash: Some(made.header.execution.block_hash),
            execution_branch: normalized,
            ..Default::default()
        }
    }

    /// The bootstrap of `at` (its beacon block root is the checkpoint).
    pub fn bootstrap(&self, at: &TestHeader) -> LightClientBootstrap {
        LightClientBootstrap {
            header: at.header.clone(),
            current_sync_committee: self.committee(self.spec.period_at(at.header.beacon.slot)),
            current_sync_committee_branch: at.current_branch.clone(),
        }
    }

    /// `attested` signed at `signature_slot` by the first `signers` members of that period's
    /// committee, naming `finalized` (its state must have been made with that header's root)
    /// and, with `next_committee`, carrying the next sync committee.
    pub fn update(
        &self,
        attested: &TestHeader,
        finalized: Option<&TestHeader>,
        next_committee: bool,
        signature_slot: u64,
        signers: usize,
    ) -> LightClientUpdate {
        let slot = attested.header.beacon.slot;
        let size = self.spec.preset.sync_committee_size;
        LightClientUpdate {
            attested_header: attested.header.clone(),
            next_sync_committee: if next_committee {
                self.committee(self.spec.period_at(slot) + 1)
            } else {
                SyncCommittee::empty(size)
            },
            next_sync_committee_branch: if next_committee {
                attested.next_branch.clone()
            } else {
                vec![B256::ZERO; attested.next_branch.len()]
            },
            finalized_header: finalized.map(|f| f.header.clone()).unwrap_or_default(),
            finality_branch: if finalized.is_some() {
                attested.finality_branch.clone()
            } else {
                vec![B256::ZERO; attested.finality_branch.len()]
            },
            sync_aggregate: self.sign(&attested.header.beacon, signature_slot, signers),
            signature_slot,
        }
    }

    /// The sync aggregate of the first `signers` members of the committee of `signature_slot`'s
    /// period over `header`.
    pub fn sign(&self, header: &BeaconBlockHeader, signature_slot: u64, signers: usize) -> SyncAggregate {
        let keys = self.secret_keys(self.spec.period_at(signature_slot));
        let domain = sync_committee_domain(
            signature_fork_version(&self.spec, signature_slot),
            self.genesis_validators_root,
        );
        let message = signing_root(header, domain);
        let size = self.spec.preset.sync_committee_size;
        let mut bits = vec![0u8; size / 8];
        let signatures: Vec<_> = keys
            .iter()
            .take(signers.min(size))
            .enumerate()
            .map(|(i, k)| {
                bits[i / 8] |= 1 << (i % 8);
                k.sign(message.as_slice(), BLS_DST, &[])
            })
            .collect();
        let refs: Vec<_> = signatures.iter().collect();
        let signature = match AggregateSignature::aggregate(&refs, false) {
            Ok(a) => SignatureBytes::from(a.to_signature().compress()),
            Err(_) => SignatureBytes::ZERO,
        };
        SyncAggregate { sync_committee_bits: bits.into(), sync_committee_signature: signature }
    }

    /// The finality update an update stands for.
    pub fn finality_update(u: &LightClientUpdate) -> LightClientFinalityUpdate {
        LightClientFinalityUpdate {
            attested_header: u.attested_header.clone(),
            finalized_header: u.finalized_header.clone(),
            finality_branch: u.finality_branch.clone(),
            sync_aggregate: u.sync_aggregate.clone(),
            signature_slot: u.signature_slot,
        }
    }

    /// The optimistic update an update stands for.
    pub fn optimistic_update(u: &LightClientUpdate) -> LightClientOptimisticUpdate {
        LightClientOptimisticUpdate {
            attested_header: u.attested_header.clone(),
            sync_aggregate: u.sync_aggregate.clone(),
            signature_slot: u.signature_slot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LightClientStore;
    use crate::UpdateError;

    fn exec(number: u64) -> ExecutionPayloadHeader {
        ExecutionPayloadHeader {
            block_number: number,
            block_hash: B256::repeat_byte(number as u8),
            ..Default::default()
        }
    }

    #[test]
    fn a_made_up_chain_syncs_across_periods_and_strangers_cannot_move_it() {
        let chain = TestChain::minimal(6, 1);
        let spec = &chain.spec;
        let gvr = chain.genesis_validators_root;
        let checkpoint = chain.header(8, exec(1), B256::ZERO);
        let root = checkpoint.header.beacon.root();
        let mut store =
            LightClientStore::bootstrap(spec, root, chain.bootstrap(&checkpoint)).expect("bootstrap");

        // Period 0: finalize slot 16 and learn the next committee.
        let fin = chain.header(16, exec(5), B256::ZERO);
        let att = chain.header(24, exec(7), fin.header.beacon.root());
        let u = chain.update(&att, Some(&fin), true, 25, 32);
        store.process_update(spec, &u, 25, gvr).expect("update");
        assert_eq!(store.finalized_header.beacon.slot, 16);
        assert!(store.next_sync_committee.is_some());

        // Another chain's committee (another seed) signs a later header: refused.
        let stranger = TestChain::minimal(6, 2);
        let att2 = chain.header(40, exec(9), fin.header.beacon.root());
        let forged = LightClientUpdate {
            sync_aggregate: stranger.sign(&att2.header.beacon, 41, 32),
            ..chain.update(&att2, None, false, 41, 32)
        };
        assert_eq!(
            store.clone().process_update(spec, &forged, 41, gvr).err(),
            Some(UpdateError::BadSignature)
        );

        // Period 1, signed by period 1's committee (known from the update), finalizing slot 64.
        let fin1 = chain.header(64, exec(30), B256::ZERO);
        let att1 = chain.header(72, exec(33), fin1.header.beacon.root());
        let u1 = chain.update(&att1, Some(&fin1), true, 73, 25);
        store.process_update(spec, &u1, 80, gvr).expect("period 1 update");
        assert_eq!(store.finalized_header.beacon.slot, 64);
        assert_eq!(store.period(spec), 1);
        assert_eq!(store.current_sync_committee, chain.committee(1));

        // Fewer than 2/3 signers: optimistic at best, never finalized.
        let fin2 = chain.header(80, exec(40), B256::ZERO);
        let att2 = chain.header(88, exec(44), fin2.header.beacon.root());
        let weak = chain.update(&att2, Some(&fin2), false, 89, 20);
        store.process_update(spec, &weak, 90, gvr).expect("weak update is valid");
        assert_eq!(store.finalized_header.beacon.slot, 64, "20 of 32 signers cannot finalize");
        assert_eq!(store.optimistic_header.beacon.slot, 88);
        assert_eq!(store.finalized_header.execution.block_number, 30);
    }

    #[test]
    fn electra_branches_verify_with_their_longer_gindices() {
        let spec = ChainSpec::from_yaml(&config_yaml("minimal", 6, Some(0))).expect("spec");
        let chain = TestChain::new(spec, 3);
        let checkpoint = chain.header(8, exec(1), B256::ZERO);
        assert_eq!(checkpoint.current_branch.len(), 6);
        assert_eq!(checkpoint.finality_branch.len(), 7);
        let root = checkpoint.header.beacon.root();
        let mut store =
            LightClientStore::bootstrap(&chain.spec, root, chain.bootstrap(&checkpoint)).expect("bootstrap");
        let fin = chain.header(16, exec(5), B256::ZERO);
        let att = chain.header(24, exec(7), fin.header.beacon.root());
        store
            .process_update(
                &chain.spec,
                &chain.update(&att, Some(&fin), true, 25, 32),
                25,
                chain.genesis_validators_root,
            )
            .expect("electra update");
        assert_eq!(store.finalized_header.beacon.slot, 16);
    }

    fn gloas_chain(electra: u64, gloas: u64, seed: u64) -> TestChain {
        let yaml = config_yaml_to_gloas("minimal", 6, Some(electra), Some(gloas));
        TestChain::new(ChainSpec::from_yaml(&yaml).expect("spec"), seed)
    }

    #[test]
    fn gloas_headers_name_only_the_block_hash_and_earlier_ones_convert() {
        use crate::protocol::is_valid_header;
        // Electra from genesis, Gloas from epoch 2 (slot 16).
        let chain = gloas_chain(0, 2, 5);
        let (spec, gvr) = (&chain.spec, chain.genesis_validators_root);
        let checkpoint = chain.header(8, exec(1), B256::ZERO);
        let root = checkpoint.header.beacon.root();
        let mut store =
            LightClientStore::bootstrap(spec, root, chain.bootstrap(&checkpoint)).expect("bootstrap");

        // An Electra header in Gloas's shape: valid, and its execution root (recomputed from the
        // block hash and the branch) is the payload header's.
        let electra = chain.header(12, exec(3), B256::ZERO);
        let shaped = chain.in_gloas_shape(&electra);
        assert_eq!(shaped.execution_branch.len(), 11);
        assert!(is_valid_header(spec, &shaped));
        assert_eq!(shaped.execution_root(spec), electra.header.execution_root(spec));
        assert_eq!(shaped.execution_block(spec), Some((None, exec(3).block_hash)));
        assert_eq!(electra.header.execution_block(spec), Some((Some(3), exec(3).block_hash)));
        let mut other_hash = shaped.clone();
        other_hash.execution_block_hash = Some(B256::repeat_byte(0x77));
        assert!(!is_valid_header(spec, &other_hash), "a hash its branch does not prove");

        // A Gloas block: its header carries only the (parent) block hash, under Gloas's index.
        let gloas = chain.header(16, exec(5), B256::ZERO);
        assert!(gloas.header.execution_block_hash.is_some() && gloas.header.execution == Default::default());
        assert!(is_valid_header(spec, &gloas.header));
        assert_eq!(gloas.header.execution_root(spec), exec(5).block_hash);
        let full_shape = LightClientHeader {
            beacon: gloas.header.beacon.clone(),
            execution: exec(5),
            execution_block_hash: None,
            execution_branch: vec![B256::ZERO; 4],
        };
        assert!(!is_valid_header(spec, &full_shape), "a Gloas header must be in Gloas's shape");
        assert_eq!(
            (gloas.finality_branch.len(), gloas.current_branch.len(), gloas.next_branch.len()),
            (9, 11, 11)
        );

        // Across the fork: a Gloas attested header whose state finalized the Electra block, which
        // the update carries in Gloas's shape.
        let att = chain.header(20, exec(6), electra.header.beacon.root());
        let mut across = chain.update(&att, Some(&electra), true, 21, 32);
        across.finalized_header = shaped.clone();
        store.process_update(spec, &across, 21, gvr).expect("update across the fork");
        assert_eq!(store.finalized_header, shaped);
        assert_eq!(store.finalized_header.execution_root(spec), electra.header.execution_root(spec));

        // Within Gloas: the finality and next-committee branches follow Gloas's indices.
        let fin = chain.header(24, exec(7), B256::ZERO);
        let att = chain.header(32, exec(8), fin.header.beacon.root());
        let u = chain.update(&att, Some(&fin), true, 33, 32);
        let mut electra_signed = u.clone();
        electra_signed.sync_aggregate = {
            let electra_only = gloas_chain(0, crate::config::FAR_FUTURE_EPOCH, 5);
            electra_only.sign(&att.header.beacon, 33, 32)
        };
        assert_eq!(
            store.clone().process_update(spec, &electra_signed, 33, gvr).err(),
            Some(UpdateError::BadSignature),
            "signed under Electra's fork version after Gloas"
        );
        store.process_update(spec, &u, 33, gvr).expect("gloas update");
        assert_eq!(store.finalized_header.beacon.slot, 24);
        assert_eq!(store.finalized_header.execution_block(spec), Some((None, exec(7).block_hash)));
    }

    /// SSZ of a header in Gloas's (fixed-size) layout.
    fn gloas_header_ssz(h: &LightClientHeader) -> Vec<u8> {
        let b = &h.beacon;
        let mut out = [b.slot.to_le_bytes(), b.proposer_index.to_le_bytes()].concat();
        for r in [b.parent_root, b.state_root, b.body_root, h.execution_block_hash.unwrap_or_default()] {
            out.extend(r.0);
        }
        h.execution_branch.iter().for_each(|n| out.extend(n.0));
        out
    }

    fn committee_ssz(c: &SyncCommittee) -> Vec<u8> {
        let mut out: Vec<u8> = c.pubkeys.iter().flat_map(|k| k.0).collect();
        out.extend(c.aggregate_pubkey.0);
        out
    }

    #[test]
    fn a_gloas_spec_case_replays_from_ssz() {
        let chain = gloas_chain(0, 0, 6);
        let spec = &chain.spec;
        let checkpoint = chain.header(8, exec(1), B256::ZERO);
        let fin = chain.header(16, exec(5), B256::ZERO);
        let att = chain.header(24, exec(7), fin.header.beacon.root());
        let u = chain.update(&att, Some(&fin), true, 25, 32);

        let dir = std::env::temp_dir().join(format!("zkcoproc-gloas-case-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let write = |name: &str, ssz: Vec<u8>| {
            let packed = snap::raw::Encoder::new().compress_vec(&ssz).expect("snappy");
            std::fs::write(dir.join(format!("{name}.ssz_snappy")), packed).expect("write");
        };
        let b = chain.bootstrap(&checkpoint);
        let mut bytes = gloas_header_ssz(&b.header);
        bytes.extend(committee_ssz(&b.current_sync_committee));
        b.current_sync_committee_branch.iter().for_each(|n| bytes.extend(n.0));
        write("bootstrap", bytes);
        let mut bytes = gloas_header_ssz(&u.attested_header);
        bytes.extend(committee_ssz(&u.next_sync_committee));
        u.next_sync_committee_branch.iter().for_each(|n| bytes.extend(n.0));
        bytes.extend(gloas_header_ssz(&u.finalized_header));
        u.finality_branch.iter().for_each(|n| bytes.extend(n.0));
        bytes.extend(u.sync_aggregate.sync_committee_bits.iter());
        bytes.extend(u.sync_aggregate.sync_committee_signature.0);
        bytes.extend(u.signature_slot.to_le_bytes());
        write("update_a_sf", bytes);

        // The files as consensus-spec-tests lays them out (v1.6 config keys).
        let config = config_yaml_to_gloas("minimal", 6, Some(0), Some(0))
            .replace("SECONDS_PER_SLOT: 6", "SLOT_DURATION_MS: 6000\nBLOB_SCHEDULE: []");
        std::fs::write(dir.join("config.yaml"), config).expect("config");
        let meta = format!(
            "{{genesis_validators_root: '{}',\ntrusted_block_root: '{}',\n\
             bootstrap_fork_digest: '0x00000000', store_fork_digest: '0x00000000'}}\n",
            chain.genesis_validators_root,
            checkpoint.header.beacon.root()
        );
        std::fs::write(dir.join("meta.yaml"), meta).expect("meta");
        let steps = |finalized_exec: B256| {
            format!(
                "- process_update:\n    update_fork_digest: '0x00000000'\n    update: \n      update_a_sf\n    \
                 current_slot: 25\n    checks:\n      finalized_header:\n        slot: 16\n        \
                 beacon_root: '{}'\n        execution_root: '{finalized_exec}'\n      optimistic_header:\n        \
                 slot: 24\n        beacon_root: '{}'\n        execution_root: '{}'\n",
                fin.header.beacon.root(),
                att.header.beacon.root(),
                exec(7).block_hash,
            )
        };
        std::fs::write(dir.join("steps.yaml"), steps(exec(5).block_hash)).expect("steps");
        let mut lines = Vec::new();
        let passed = crate::replay::replay(&dir, |step| lines.push(step.to_string())).expect("case runs");
        assert!(passed, "{lines:?}");
        assert_eq!(lines.len(), 1);

        // The checks are checked: another execution root fails the step.
        std::fs::write(dir.join("steps.yaml"), steps(B256::repeat_byte(1))).expect("steps");
        let passed = crate::replay::replay(&dir, |_| {}).expect("case runs");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!passed, "a wrong expected execution root must fail");
        let _ = spec;
    }
}
