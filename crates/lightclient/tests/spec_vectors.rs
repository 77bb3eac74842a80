//! The official consensus-spec-tests `light_client/sync` vectors (`../shared/testdata`), replayed
//! step by step, and corrupted variants of their updates refused.

use std::path::{Path, PathBuf};

use alloy_primitives::B256;
use zkcoproc_lightclient::protocol::LightClientStore;
use zkcoproc_lightclient::replay::{read_ssz_snappy, replay};
use zkcoproc_lightclient::{ChainSpec, LightClientBootstrap, LightClientUpdate, UpdateError};

fn sync_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/consensus-spec-tests/minimal/deneb/light_client/sync")
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(sync_dir())
        .expect("../shared/testdata is beside the repository")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("steps.yaml").exists())
        .collect();
    cases.sort();
    cases
}

#[test]
fn deneb_minimal_sync_cases_pass_every_step() {
    let cases = cases();
    assert_eq!(cases.len(), 3, "{cases:?}");
    for case in cases {
        let mut steps = 0;
        let mut failures = Vec::new();
        let ok = replay(&case, |s| {
            steps += 1;
            if s.outcome.is_err() {
                failures.push(s.to_string());
            }
        })
        .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        assert!(ok && failures.is_empty(), "{}: {failures:#?}", case.display());
        let want = std::fs::read_to_string(case.join("steps.yaml"))
            .expect("steps")
            .lines()
            .filter(|l| l.starts_with("- "))
            .count();
        assert_eq!(steps, want, "{}", case.display());
    }
}

/// The `light_client_sync` case's chain, its store after bootstrap, and its first update.
struct Case {
    spec: ChainSpec,
    gvr: B256,
    store: LightClientStore,
    dir: PathBuf,
}

impl Case {
    fn load() -> Case {
        let dir = sync_dir().join("light_client_sync");
        let spec = ChainSpec::from_yaml(&std::fs::read_to_string(dir.join("config.yaml")).expect("config"))
            .expect("spec");
        let meta = std::fs::read_to_string(dir.join("meta.yaml")).expect("meta");
        let hex_of = |key: &str| -> B256 {
            let at = meta.find(key).expect(key) + key.len();
            let rest = &meta[at..];
            let start = rest.find("0x").expect("hex");
            rest[start..start + 66].parse().expect("root")
        };
        let bootstrap = LightClientBootstrap::from_ssz(
            &spec,
            &read_ssz_snappy(&dir.join("bootstrap.ssz_snappy")).expect("read"),
            None,
        )
        .expect("bootstrap");
        let store =
            LightClientStore::bootstrap(&spec, hex_of("trusted_block_root"), bootstrap).expect("store");
        Case { spec, gvr: hex_of("genesis_validators_root"), store, dir }
    }

    /// The first update of the case (signed by the bootstrap's committee, with a next committee
    /// and finality: `_sf`).
    fn update(&self) -> LightClientUpdate {
        let name = "update_0xbccdacbfe0f0bfd10367dfc318b479e2830ed7c5119151ad0eb917fc66d51203_sf.ssz_snappy";
        LightClientUpdate::from_ssz(&self.spec, &read_ssz_snappy(&self.dir.join(name)).expect("read"), None)
            .expect("update")
    }

    fn process(&self, spec: &ChainSpec, update: &LightClientUpdate) -> Result<LightClientStore, UpdateError> {
        let mut store = self.store.clone();
        store.process_update(spec, update, 41, self.gvr).map(|()| store)
    }
}

#[test]
fn the_unmodified_update_is_accepted() {
    let case = Case::load();
    let store = case.process(&case.spec, &case.update()).expect("the genuine update");
    assert_eq!(store.finalized_header.beacon.slot, 24);
    assert_eq!(store.optimistic_header.beacon.slot, 40);
}

#[test]
fn a_flipped_signature_bit_is_refused() {
    let case = Case::load();
    for byte in [0usize, 17, 95] {
        let mut u = case.update();
        u.sync_aggregate.sync_committee_signature.0[byte] ^= 0x04;
        assert_eq!(case.process(&case.spec, &u).err(), Some(UpdateError::BadSignature), "byte {byte}");
    }
}

#[test]
fn a_changed_finality_branch_node_is_refused() {
    let case = Case::load();
    for node in 0..6 {
        let mut u = case.update();
        u.finality_branch[node].0[5] ^= 1;
        assert_eq!(
            case.process(&case.spec, &u).err(),
            Some(UpdateError::InvalidBranch("finality")),
            "node {node}"
        );
    }
    // The finalized header changed instead: its root no longer matches the branch.
    let mut u = case.update();
    u.finalized_header.beacon.proposer_index += 1;
    assert_eq!(case.process(&case.spec, &u).err(), Some(UpdateError::InvalidBranch("finality")));
}

#[test]
fn a_next_sync_committee_that_does_not_match_its_branch_is_refused() {
    let case = Case::load();
    let mut u = case.update();
    assert!(u.has_next_sync_committee());
    u.next_sync_committee.pubkeys.swap(0, 1);
    assert_eq!(case.process(&case.spec, &u).err(), Some(UpdateError::InvalidBranch("next sync committee")));
    let mut u = case.update();
    u.next_sync_committee_branch[2].0[0] ^= 0x80;
    assert_eq!(case.process(&case.spec, &u).err(), Some(UpdateError::InvalidBranch("next sync committee")));
}

#[test]
fn an_update_signed_for_another_fork_or_chain_is_refused() {
    let case = Case::load();
    let u = case.update();
    // The same update checked as if the chain's Deneb version were another: the signing domain
    // differs, so the committee's signature does not verify.
    let mut other_fork = case.spec.clone();
    for f in &mut other_fork.forks {
        f.1[3] ^= 0x10;
    }
    assert_eq!(case.process(&other_fork, &u).err(), Some(UpdateError::BadSignature));
    // and for another chain (genesis validators root).
    let mut store = case.store.clone();
    let err = store.process_update(&case.spec, &u, 41, B256::repeat_byte(1)).expect_err("another chain");
    assert_eq!(err, UpdateError::BadSignature);
}

#[test]
fn participation_below_the_minimum_is_refused() {
    let case = Case::load();
    let mut u = case.update();
    u.sync_aggregate.sync_committee_bits = vec![0u8; u.sync_aggregate.sync_committee_bits.len()].into();
    assert_eq!(case.process(&case.spec, &u).err(), Some(UpdateError::TooFewParticipants(0)));
    // One signer dropped from the bits: the aggregate no longer matches the signers.
    let mut u = case.update();
    let mut bits = u.sync_aggregate.sync_committee_bits.to_vec();
    let first = bits.iter().position(|b| *b != 0).expect("a signer");
    bits[first] &= bits[first] - 1;
    u.sync_aggregate.sync_committee_bits = bits.into();
    assert_eq!(case.process(&case.spec, &u).err(), Some(UpdateError::BadSignature));
}

#[test]
fn bootstrap_from_another_root_or_with_a_bad_committee_branch_is_refused() {
    let case = Case::load();
    let bytes = read_ssz_snappy(&case.dir.join("bootstrap.ssz_snappy")).expect("read");
    let bootstrap = LightClientBootstrap::from_ssz(&case.spec, &bytes, None).expect("bootstrap");
    let root = bootstrap.header.beacon.root();
    assert!(matches!(
        LightClientStore::bootstrap(&case.spec, B256::repeat_byte(9), bootstrap.clone()),
        Err(UpdateError::UntrustedBootstrap { .. })
    ));
    let mut b = bootstrap.clone();
    b.current_sync_committee.pubkeys[3].0[7] ^= 1;
    assert_eq!(
        LightClientStore::bootstrap(&case.spec, root, b).err(),
        Some(UpdateError::InvalidBranch("current sync committee"))
    );
    let mut b = bootstrap;
    b.header.execution.state_root.0[0] ^= 1;
    assert!(matches!(LightClientStore::bootstrap(&case.spec, root, b), Err(UpdateError::InvalidHeader(_))));
}

#[test]
fn truncated_or_padded_ssz_is_a_decode_error() {
    let case = Case::load();
    let name = "update_0xbccdacbfe0f0bfd10367dfc318b479e2830ed7c5119151ad0eb917fc66d51203_sf.ssz_snappy";
    let bytes = read_ssz_snappy(&case.dir.join(name)).expect("read");
    for cut in [0, 1, 100, bytes.len() - 1] {
        assert!(LightClientUpdate::from_ssz(&case.spec, &bytes[..cut], None).is_err(), "cut at {cut}");
    }
    let mut longer = bytes;
    longer.push(0);
    // A trailing byte lands in the variable part (extra_data of the finalized header) and changes
    // its root: decoding may succeed, but the update is then refused.
    if let Ok(u) = LightClientUpdate::from_ssz(&case.spec, &longer, None) {
        assert!(case.process(&case.spec, &u).is_err());
    }
}
