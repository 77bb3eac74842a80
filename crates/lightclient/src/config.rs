//! Chain parameters: the preset (sizes), the fork schedule and the genesis validators root, from a
//! named network or a consensus-spec `config.yaml`.

use std::collections::BTreeMap;
use std::path::Path;

use alloy_primitives::B256;

use crate::LightClientError;

/// The consensus forks the light client knows, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fork {
    /// genesis
    Phase0,
    /// sync committees and the light-client protocol
    Altair,
    /// the merge
    Bellatrix,
    /// `LightClientHeader` gains the execution payload header and its branch
    Capella,
    /// the execution payload header gains the blob gas fields
    Deneb,
    /// `BeaconState` outgrows 32 fields: longer finality and sync-committee branches
    Electra,
    /// no light-client changes
    Fulu,
    /// ePBS: `LightClientHeader` carries only the execution block hash (the bid's parent);
    /// `BeaconState` and `BeaconBlockBody` are progressive containers (other branches)
    Gloas,
}

impl Fork {
    /// Every fork, oldest first.
    pub const ALL: [Fork; 8] = [
        Fork::Phase0,
        Fork::Altair,
        Fork::Bellatrix,
        Fork::Capella,
        Fork::Deneb,
        Fork::Electra,
        Fork::Fulu,
        Fork::Gloas,
    ];

    /// The name the consensus specs and the beacon API use (`deneb`).
    pub fn name(self) -> &'static str {
        match self {
            Fork::Phase0 => "phase0",
            Fork::Altair => "altair",
            Fork::Bellatrix => "bellatrix",
            Fork::Capella => "capella",
            Fork::Deneb => "deneb",
            Fork::Electra => "electra",
            Fork::Fulu => "fulu",
            Fork::Gloas => "gloas",
        }
    }

    /// The fork named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Fork> {
        Fork::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name))
    }
}

/// Sizes that differ between the `mainnet` and `minimal` presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    /// `SLOTS_PER_EPOCH`
    pub slots_per_epoch: u64,
    /// `EPOCHS_PER_SYNC_COMMITTEE_PERIOD`
    pub epochs_per_sync_committee_period: u64,
    /// `SYNC_COMMITTEE_SIZE`
    pub sync_committee_size: usize,
    /// `MIN_SYNC_COMMITTEE_PARTICIPANTS`
    pub min_sync_committee_participants: u64,
}

impl Preset {
    /// The mainnet preset (every public network).
    pub const MAINNET: Preset = Preset {
        slots_per_epoch: 32,
        epochs_per_sync_committee_period: 256,
        sync_committee_size: 512,
        min_sync_committee_participants: 1,
    };
    /// The minimal preset (spec tests, small devnets).
    pub const MINIMAL: Preset = Preset {
        slots_per_epoch: 8,
        epochs_per_sync_committee_period: 8,
        sync_committee_size: 32,
        min_sync_committee_participants: 1,
    };
}

/// Everything the light client needs to know about a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSpec {
    /// network name (`mainnet`, or the config file's `CONFIG_NAME`, or its path)
    pub name: String,
    /// sizes
    pub preset: Preset,
    /// `SLOT_DURATION_MS` (`SECONDS_PER_SLOT` × 1000 in configs before it)
    pub slot_duration_ms: u64,
    /// `MIN_GENESIS_TIME + GENESIS_DELAY`, or the network's genesis time when known
    pub genesis_time: Option<u64>,
    /// the genesis validators root, when the network fixes it (a spec test gives it separately)
    pub genesis_validators_root: Option<B256>,
    /// `(fork, version, activation epoch)`, by epoch; a fork not scheduled is absent
    pub forks: Vec<(Fork, [u8; 4], u64)>,
    /// the execution chain id (`eth_chainId`), when the network fixes it
    pub chain_id: Option<u64>,
}

/// `FAR_FUTURE_EPOCH`: a fork that is not scheduled.
pub const FAR_FUTURE_EPOCH: u64 = u64::MAX;

impl ChainSpec {
    /// A named network: `mainnet`, `sepolia`, `holesky` or `hoodi`.
    pub fn named(name: &str) -> Option<ChainSpec> {
        // (gvr, genesis time, chain id, [genesis, altair, bellatrix, capella, deneb, electra, fulu]);
        // Gloas is not scheduled on any of them yet (a config file can schedule it).
        type Net = (&'static str, u64, u64, [([u8; 4], u64); 7]);
        let net: Net = match name {
            "mainnet" => (
                "4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95",
                1_606_824_023,
                1,
                [
                    ([0, 0, 0, 0], 0),
                    ([1, 0, 0, 0], 74_240),
                    ([2, 0, 0, 0], 144_896),
                    ([3, 0, 0, 0], 194_048),
                    ([4, 0, 0, 0], 269_568),
                    ([5, 0, 0, 0], 364_032),
                    ([6, 0, 0, 0], 411_392),
                ],
            ),
            "sepolia" => (
                "d8ea171f3c94aea21ebc42a1ed61052acf3f9209c00e4efbaaddac09ed9b8078",
                1_655_733_600,
                11_155_111,
                [
                    ([0x90, 0, 0, 0x69], 0),
                    ([0x90, 0, 0, 0x70], 50),
                    ([0x90, 0, 0, 0x71], 100),
                    ([0x90, 0, 0, 0x72], 56_832),
                    ([0x90, 0, 0, 0x73], 132_608),
                    ([0x90, 0, 0, 0x74], 222_464),
                    ([0x90, 0, 0, 0x75], 272_640),
                ],
            ),
            "holesky" => (
                "9143aa7c615a7f7115e2b6aac319c03529df8242ae705fba9df39b79c59fa8b1",
                1_695_902_400,
                17_000,
                [
                    ([1, 1, 0x70, 0], 0),
                    ([2, 1, 0x70, 0], 0),
                    ([3, 1, 0x70, 0], 0),
                    ([4, 1, 0x70, 0], 256),
                    ([5, 1, 0x70, 0], 29_696),
                    ([6, 1, 0x70, 0], 115_968),
                    ([7, 1, 0x70, 0], 165_120),
                ],
            ),
            "hoodi" => (
                "212f13fc4df078b6cb7db228f1c8307566dcecf900867401a92023d7ba99cb5f",
                1_742_213_400,
                560_048,
                [
                    ([0x10, 0, 0x09, 0x10], 0),
                    ([0x20, 0, 0x09, 0x10], 0),
                    ([0x30, 0, 0x09, 0x10], 0),
                    ([0x40, 0, 0x09, 0x10], 0),
                    ([0x50, 0, 0x09, 0x10], 0),
                    ([0x60, 0, 0x09, 0x10], 2_048),
                    ([0x70, 0, 0x09, 0x10], 50_688),
                ],
            ),
            _ => return None,
        };
        let (gvr, genesis_time, chain_id, schedule) = net;
        let gvr: B256 = gvr.parse().ok()?;
        Some(ChainSpec {
            name: name.to_owned(),
            preset: Preset::MAINNET,
            slot_duration_ms: 12_000,
            genesis_time: Some(genesis_time),
            genesis_validators_root: Some(gvr),
            forks: Fork::ALL.into_iter().zip(schedule).map(|(f, (v, e))| (f, v, e)).collect(),
            chain_id: Some(chain_id),
        })
    }

    /// A named network, or a consensus-spec `config.yaml` at that path.
    pub fn load(name_or_path: &str) -> Result<ChainSpec, LightClientError> {
        if let Some(spec) = ChainSpec::named(name_or_path) {
            return Ok(spec);
        }
        let path = Path::new(name_or_path);
        let text = std::fs::read_to_string(path).map_err(|e| {
            LightClientError::Config(format!(
                "{name_or_path}: not a known network (mainnet, sepolia, holesky, hoodi) nor a readable config file: {e}"
            ))
        })?;
        let mut spec = ChainSpec::from_yaml(&text)?;
        if spec.name.is_empty() {
            spec.name = name_or_path.to_owned();
        }
        Ok(spec)
    }

    /// Parses a consensus-spec config (`config.yaml`: `PRESET_BASE`, `SECONDS_PER_SLOT`,
    /// `GENESIS_FORK_VERSION`, `<FORK>_FORK_VERSION`, `<FORK>_FORK_EPOCH`, ...). Preset values
    /// present in the file (`SYNC_COMMITTEE_SIZE`, ...) override the preset's.
    pub fn from_yaml(text: &str) -> Result<ChainSpec, LightClientError> {
        let bad = |m: String| LightClientError::Config(m);
        let map: BTreeMap<String, serde_yaml_ng::Value> =
            serde_yaml_ng::from_str(text).map_err(|e| bad(format!("config: {e}")))?;
        let text_of = |key: &str| -> Option<String> {
            map.get(key).map(|v| match v {
                serde_yaml_ng::Value::String(s) => s.clone(),
                serde_yaml_ng::Value::Number(n) => n.to_string(),
                other => format!("{other:?}"),
            })
        };
        let num = |key: &str| -> Result<Option<u64>, LightClientError> {
            text_of(key)
                .map(|s| {
                    s.parse::<u64>()
                        .map_err(|_| bad(format!("config: {key} is not an unsigned integer: {s}")))
                })
                .transpose()
        };
        let version = |key: &str| -> Result<Option<[u8; 4]>, LightClientError> {
            // YAML reads an unquoted 0x01000001 as a number; the file means its hex digits.
            let Some(v) = map.get(key) else { return Ok(None) };
            let s = match v {
                serde_yaml_ng::Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(|n| format!("{n:08x}"))
                    .ok_or_else(|| bad(format!("config: {key} is not a 4-byte version")))?,
                serde_yaml_ng::Value::String(s) => s.trim_start_matches("0x").to_owned(),
                _ => return Err(bad(format!("config: {key} is not a 4-byte version"))),
            };
            let bytes = hex::decode(&s).map_err(|_| bad(format!("config: {key} is not hex: {s}")))?;
            <[u8; 4]>::try_from(bytes.as_slice())
                .map(Some)
                .map_err(|_| bad(format!("config: {key} is not 4 bytes: {s}")))
        };
        let mut preset = match text_of("PRESET_BASE").as_deref() {
            Some("minimal") => Preset::MINIMAL,
            Some("mainnet") | None => Preset::MAINNET,
            Some(other) => return Err(bad(format!("config: unknown PRESET_BASE {other}"))),
        };
        if let Some(n) = num("SLOTS_PER_EPOCH")? {
            preset.slots_per_epoch = n;
        }
        if let Some(n) = num("EPOCHS_PER_SYNC_COMMITTEE_PERIOD")? {
            preset.epochs_per_sync_committee_period = n;
        }
        if let Some(n) = num("SYNC_COMMITTEE_SIZE")? {
            preset.sync_committee_size =
                usize::try_from(n).map_err(|_| bad("config: SYNC_COMMITTEE_SIZE too large".into()))?;
        }
        if let Some(n) = num("MIN_SYNC_COMMITTEE_PARTICIPANTS")? {
            preset.min_sync_committee_participants = n;
        }
        if preset.slots_per_epoch == 0
            || preset.epochs_per_sync_committee_period == 0
            || preset.sync_committee_size == 0
            || preset.sync_committee_size % 8 != 0
            || preset.sync_committee_size > 1 << 16
        {
            return Err(bad(format!("config: unusable preset {preset:?}")));
        }
        let genesis = version("GENESIS_FORK_VERSION")?
            .ok_or_else(|| bad("config: GENESIS_FORK_VERSION missing".into()))?;
        let mut forks = vec![(Fork::Phase0, genesis, 0)];
        for fork in &Fork::ALL[1..] {
            let upper = fork.name().to_ascii_uppercase();
            let (Some(v), Some(e)) =
                (version(&format!("{upper}_FORK_VERSION"))?, num(&format!("{upper}_FORK_EPOCH"))?)
            else {
                continue;
            };
            if e != FAR_FUTURE_EPOCH {
                forks.push((*fork, v, e));
            }
        }
        if forks.windows(2).any(|w| w[1].2 < w[0].2) {
            return Err(bad("config: fork epochs are not in fork order".into()));
        }
        if !forks.iter().any(|f| f.0 == Fork::Altair) {
            return Err(bad("config: no ALTAIR_FORK_EPOCH: the chain has no sync committees".into()));
        }
        // Configs since consensus-specs v1.6 give `SLOT_DURATION_MS`; older ones `SECONDS_PER_SLOT`.
        let slot_duration_ms = match (num("SLOT_DURATION_MS")?, num("SECONDS_PER_SLOT")?) {
            (Some(ms), _) => ms,
            (None, Some(s)) => s.saturating_mul(1000),
            (None, None) => 12_000,
        };
        if slot_duration_ms == 0 {
            return Err(bad("config: SLOT_DURATION_MS is 0".into()));
        }
        let genesis_time = match (num("MIN_GENESIS_TIME")?, num("GENESIS_DELAY")?) {
            (Some(t), d) => Some(t.saturating_add(d.unwrap_or(0))),
            _ => None,
        };
        Ok(ChainSpec {
            name: text_of("CONFIG_NAME").unwrap_or_default(),
            preset,
            slot_duration_ms,
            genesis_time,
            genesis_validators_root: None,
            forks,
            chain_id: num("DEPOSIT_CHAIN_ID")?,
        })
    }

    /// `compute_epoch_at_slot`
    pub fn epoch_at(&self, slot: u64) -> u64 {
        slot / self.preset.slots_per_epoch
    }

    /// `compute_sync_committee_period_at_slot`
    pub fn period_at(&self, slot: u64) -> u64 {
        self.epoch_at(slot) / self.preset.epochs_per_sync_committee_period
    }

    /// `UPDATE_TIMEOUT`, in slots.
    pub fn update_timeout(&self) -> u64 {
        self.preset.slots_per_epoch.saturating_mul(self.preset.epochs_per_sync_committee_period)
    }

    /// The fork active at `epoch`, and its version.
    pub fn fork_at_epoch(&self, epoch: u64) -> (Fork, [u8; 4]) {
        let mut current = (Fork::Phase0, [0; 4]);
        for &(fork, version, at) in &self.forks {
            if at <= epoch {
                current = (fork, version);
            }
        }
        current
    }

    /// The fork active at `slot`.
    pub fn fork_at_slot(&self, slot: u64) -> Fork {
        self.fork_at_epoch(self.epoch_at(slot)).0
    }

    /// Whether `fork` is active at `slot`.
    pub fn is_active(&self, fork: Fork, slot: u64) -> bool {
        self.fork_at_slot(slot) >= fork
    }

    /// The slot at a unix time in milliseconds, for a chain whose genesis was at `genesis_time`
    /// (unix seconds; `None` before genesis).
    pub fn slot_at_ms(&self, genesis_time: u64, unix_ms: u64) -> Option<u64> {
        let since = unix_ms.checked_sub(genesis_time.checked_mul(1000)?)?;
        Some(since / self.slot_duration_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_well_formed() {
        for name in ["mainnet", "sepolia", "holesky", "hoodi"] {
            let spec = ChainSpec::named(name).expect(name);
            assert_eq!(spec.forks.len(), 7, "{name}");
            assert!(spec.forks.windows(2).all(|w| w[0].2 <= w[1].2), "{name}");
            assert_eq!(spec.fork_at_epoch(u64::MAX / 2).0, Fork::Fulu);
        }
        let main = ChainSpec::named("mainnet").expect("mainnet");
        assert_eq!(main.fork_at_epoch(269_567).0, Fork::Capella);
        assert_eq!(main.fork_at_epoch(269_568), (Fork::Deneb, [4, 0, 0, 0]));
        assert_eq!(main.period_at(8192 * 3 + 5), 3);
    }

    #[test]
    fn yaml_config_reads_versions_and_skips_unscheduled_forks() {
        let spec = ChainSpec::from_yaml(
            "PRESET_BASE: 'minimal'\nSECONDS_PER_SLOT: 6\nGENESIS_FORK_VERSION: 0x00000001\n\
             ALTAIR_FORK_VERSION: 0x01000001\nALTAIR_FORK_EPOCH: 0\nCAPELLA_FORK_VERSION: '0x03000001'\n\
             CAPELLA_FORK_EPOCH: 3\nELECTRA_FORK_VERSION: 0x05000001\nELECTRA_FORK_EPOCH: 18446744073709551615\n",
        )
        .expect("config");
        assert_eq!(spec.preset, Preset::MINIMAL);
        assert_eq!(spec.slot_duration_ms, 6_000);
        assert_eq!(spec.fork_at_epoch(2), (Fork::Altair, [1, 0, 0, 1]));
        assert_eq!(spec.fork_at_epoch(3), (Fork::Capella, [3, 0, 0, 1]));
        assert!(!spec.forks.iter().any(|f| f.0 == Fork::Electra));
        // A config of consensus-specs v1.6 on: the slot time in ms, Gloas, a list-valued key.
        let newer = ChainSpec::from_yaml(
            "PRESET_BASE: 'minimal'\nSLOT_DURATION_MS: 6000\nGENESIS_FORK_VERSION: 0x00000001\n\
             ALTAIR_FORK_VERSION: 0x01000001\nALTAIR_FORK_EPOCH: 0\nFULU_FORK_VERSION: 0x06000001\n\
             FULU_FORK_EPOCH: 1\nBLOB_SCHEDULE: []\nGLOAS_FORK_VERSION: 0x07000001\nGLOAS_FORK_EPOCH: 3\n",
        )
        .expect("v1.6 config");
        assert_eq!(newer.slot_duration_ms, 6_000);
        assert_eq!(newer.fork_at_epoch(2), (Fork::Fulu, [6, 0, 0, 1]));
        assert_eq!(newer.fork_at_epoch(3), (Fork::Gloas, [7, 0, 0, 1]));
        assert_eq!(newer.slot_at_ms(100, 100_000 + 6_000 * 7 + 5_999), Some(7));
        assert_eq!(newer.slot_at_ms(100, 99_999), None);
        assert!(ChainSpec::from_yaml("PRESET_BASE: 'tiny'\n").is_err());
        assert!(ChainSpec::from_yaml("GENESIS_FORK_VERSION: 0x00000001\n").is_err(), "no altair");
    }
}
