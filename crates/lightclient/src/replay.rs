//! Replays one consensus-spec-tests `light_client/sync` case: `config.yaml`, `meta.yaml`,
//! `bootstrap.ssz_snappy`, `steps.yaml` and the `*.ssz_snappy` updates it names.
//!
//! Every object is decoded in the layout of the fork its slot is in (by the config's fork
//! epochs), so a case of any fork the light client knows replays, including cases whose store is
//! upgraded between forks (the store keeps one representation for every fork; `upgrade_store`
//! only runs its checks).

use std::collections::BTreeMap;
use std::path::Path;

use alloy_primitives::B256;
use serde::Deserialize;

use crate::config::ChainSpec;
use crate::protocol::LightClientStore;
use crate::types::{LightClientBootstrap, LightClientHeader, LightClientUpdate};
use crate::LightClientError;

/// Largest decompressed object read from a case (a mainnet update is about 26 KiB).
const MAX_OBJECT: usize = 16 << 20;

#[derive(Deserialize)]
struct Meta {
    genesis_validators_root: B256,
    trusted_block_root: B256,
}

#[derive(Deserialize, Debug, Clone)]
struct HeaderCheck {
    slot: u64,
    #[serde(alias = "root")]
    beacon_root: B256,
    #[serde(default)]
    execution_root: Option<B256>,
}

#[derive(Deserialize, Debug, Clone, Default)]
struct Checks {
    finalized_header: Option<HeaderCheck>,
    optimistic_header: Option<HeaderCheck>,
}

#[derive(Deserialize, Debug, Clone)]
struct StepBody {
    #[serde(default)]
    update: Option<String>,
    #[serde(default)]
    current_slot: Option<u64>,
    #[serde(default)]
    checks: Checks,
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// 1-based position in `steps.yaml`
    pub index: usize,
    /// `process_update`, `force_update`, `upgrade_store`
    pub kind: String,
    /// the update's file name, or the current slot
    pub subject: String,
    /// the store's finalized and optimistic slots after the step
    pub slots: (u64, u64),
    /// `Err` with what went wrong: the step failed or a check did not hold
    pub outcome: Result<(), String>,
}

impl std::fmt::Display for StepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = match &self.outcome {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("FAIL: {e}"),
        };
        write!(
            f,
            "step {:>3} {:<14} {:<80} finalized {:>6} optimistic {:>6}  {verdict}",
            self.index, self.kind, self.subject, self.slots.0, self.slots.1
        )
    }
}

/// Reads a snappy-compressed (block format) SSZ file, bounded.
pub fn read_ssz_snappy(path: &Path) -> Result<Vec<u8>, LightClientError> {
    let bad = |e: String| LightClientError::Decode(format!("{}: {e}", path.display()));
    let compressed = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let len = snap::raw::decompress_len(&compressed).map_err(|e| bad(e.to_string()))?;
    if len > MAX_OBJECT {
        return Err(bad(format!("decompresses to {len} bytes, more than {MAX_OBJECT}")));
    }
    snap::raw::Decoder::new().decompress_vec(&compressed).map_err(|e| bad(e.to_string()))
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, LightClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LightClientError::Config(format!("{}: {e}", path.display())))?;
    serde_yaml_ng::from_str(&text).map_err(|e| LightClientError::Config(format!("{}: {e}", path.display())))
}

fn check_header(
    spec: &ChainSpec,
    what: &str,
    want: &HeaderCheck,
    got: &LightClientHeader,
) -> Result<(), String> {
    if got.beacon.slot != want.slot {
        return Err(format!("{what} slot {} ≠ expected {}", got.beacon.slot, want.slot));
    }
    let root = got.beacon.root();
    if root != want.beacon_root {
        return Err(format!("{what} root {root} ≠ expected {}", want.beacon_root));
    }
    if let Some(want_exec) = want.execution_root {
        let exec = got.execution_root(spec);
        if exec != want_exec {
            return Err(format!("{what} execution root {exec} ≠ expected {want_exec}"));
        }
    }
    Ok(())
}

fn run_checks(spec: &ChainSpec, store: &LightClientStore, checks: &Checks) -> Result<(), String> {
    if let Some(c) = &checks.finalized_header {
        check_header(spec, "finalized", c, &store.finalized_header)?;
    }
    if let Some(c) = &checks.optimistic_header {
        check_header(spec, "optimistic", c, &store.optimistic_header)?;
    }
    Ok(())
}

/// Runs the case in `dir`, calling `on_step` after each step. Returns whether every step and
/// check passed; an `Err` is a case that could not be run at all (missing or malformed files, a
/// bootstrap refused).
pub fn replay(dir: &Path, mut on_step: impl FnMut(&StepReport)) -> Result<bool, LightClientError> {
    let config = std::fs::read_to_string(dir.join("config.yaml"))
        .map_err(|e| LightClientError::Config(format!("{}: {e}", dir.join("config.yaml").display())))?;
    let spec = ChainSpec::from_yaml(&config)?;
    let meta: Meta = read_yaml(&dir.join("meta.yaml"))?;
    let bootstrap =
        LightClientBootstrap::from_ssz(&spec, &read_ssz_snappy(&dir.join("bootstrap.ssz_snappy"))?, None)?;
    let mut store = LightClientStore::bootstrap(&spec, meta.trusted_block_root, bootstrap)
        .map_err(|e| LightClientError::Update(format!("bootstrap: {e}")))?;
    let steps: Vec<BTreeMap<String, StepBody>> = read_yaml(&dir.join("steps.yaml"))?;
    let mut all_ok = true;
    for (i, step) in steps.iter().enumerate() {
        let Some((kind, body)) = step.iter().next() else {
            return Err(LightClientError::Config(format!("steps.yaml: step {} is empty", i + 1)));
        };
        let current_slot = body.current_slot.unwrap_or(0);
        let (subject, result) = match kind.as_str() {
            "process_update" => {
                let name = body.update.clone().unwrap_or_default();
                let result = (|| {
                    let bytes = read_ssz_snappy(&dir.join(format!("{name}.ssz_snappy")))
                        .map_err(|e| e.to_string())?;
                    let update =
                        LightClientUpdate::from_ssz(&spec, &bytes, None).map_err(|e| e.to_string())?;
                    store
                        .process_update(&spec, &update, current_slot, meta.genesis_validators_root)
                        .map_err(|e| format!("update refused: {e}"))
                })();
                (format!("{name} @ slot {current_slot}"), result)
            }
            // `process_slot` is what releases before v1.3 called the forced update step.
            "force_update" | "process_slot" => (
                format!("@ slot {current_slot}"),
                store.force_update(&spec, current_slot).map(|_| ()).map_err(|e| format!("force update: {e}")),
            ),
            // One representation serves every fork: nothing to convert.
            "upgrade_store" => (String::new(), Ok(())),
            other => (String::new(), Err(format!("unknown step kind {other}"))),
        };
        let outcome = result.and_then(|()| run_checks(&spec, &store, &body.checks));
        all_ok &= outcome.is_ok();
        on_step(&StepReport {
            index: i + 1,
            kind: kind.clone(),
            subject,
            slots: (store.finalized_header.beacon.slot, store.optimistic_header.beacon.slot),
            outcome,
        });
    }
    Ok(all_ok)
}
