//! A beacon-API client for the light-client endpoints, bounded like the JSON-RPC client: a
//! timeout per request, a cap on every body, no redirects. Single objects are asked for as SSZ
//! (decoded in the fork the node names in `Eth-Consensus-Version`) with JSON accepted instead;
//! update ranges as JSON. Nothing a node sends is trusted: the protocol verifies it.

use std::time::Duration;

use alloy_primitives::B256;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::{ChainSpec, Fork};
use crate::types::{
    LightClientBootstrap, LightClientFinalityUpdate, LightClientOptimisticUpdate, LightClientUpdate,
};
use crate::LightClientError;

/// Largest response body accepted.
pub const MAX_BODY: usize = 16 << 20;
/// Most updates asked for in one `updates` request (`MAX_REQUEST_LIGHT_CLIENT_UPDATES` is 128).
pub const MAX_UPDATES_PER_REQUEST: u64 = 32;

/// What `/eth/v1/beacon/genesis` says.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Genesis {
    /// genesis time (unix seconds)
    #[serde(with = "crate::types::quoted")]
    pub genesis_time: u64,
    /// the genesis validators root
    pub genesis_validators_root: B256,
    /// the genesis fork version
    pub genesis_fork_version: alloy_primitives::FixedBytes<4>,
}

/// `{"version": ..., "data": ...}`: the data decodes the same whatever the version says (the
/// fields present tell), so only `data` is read.
#[derive(Deserialize)]
struct Versioned<T> {
    data: T,
}

/// A beacon node's light-client API.
#[derive(Clone, Debug)]
pub struct BeaconClient {
    http: reqwest::Client,
    base: String,
}

enum Body {
    Ssz(Option<Fork>, Vec<u8>),
    Json(Vec<u8>),
}

impl BeaconClient {
    /// A client for the node at `url` with a per-request `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, LightClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LightClientError::Beacon(e.to_string()))?;
        Ok(BeaconClient { http, base: url.trim_end_matches('/').to_owned() })
    }

    async fn get(&self, path: &str, ssz: bool) -> Result<Body, LightClientError> {
        let err = |m: String| LightClientError::Beacon(format!("{path}: {m}"));
        let accept =
            if ssz { "application/octet-stream;q=1.0,application/json;q=0.9" } else { "application/json" };
        let mut resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("accept", accept)
            .send()
            .await
            .map_err(|e| err(e.without_url().to_string()))?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(err(format!("HTTP {status}: the node redirects, and redirects are not followed")));
        }
        let is_ssz = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/octet-stream"));
        let fork = resp
            .headers()
            .get("eth-consensus-version")
            .and_then(|v| v.to_str().ok())
            .and_then(Fork::from_name);
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| err(e.without_url().to_string()))? {
            if buf.len() + chunk.len() > MAX_BODY {
                return Err(err(format!("response larger than {MAX_BODY} bytes")));
            }
            buf.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&buf[..buf.len().min(300)]).into_owned();
            return Err(err(format!("HTTP {status}: {text}")));
        }
        Ok(if is_ssz { Body::Ssz(fork, buf) } else { Body::Json(buf) })
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, LightClientError> {
        match self.get(path, false).await? {
            Body::Json(b) => json(path, &b),
            Body::Ssz(..) => Err(LightClientError::Beacon(format!("{path}: SSZ where JSON was asked for"))),
        }
    }

    async fn get_one<T: DeserializeOwned>(
        &self,
        path: &str,
        from_ssz: impl Fn(&[u8], Option<Fork>) -> Result<T, LightClientError>,
    ) -> Result<T, LightClientError> {
        match self.get(path, true).await? {
            Body::Ssz(fork, b) => from_ssz(&b, fork),
            Body::Json(b) => json::<Versioned<T>>(path, &b).map(|v| v.data),
        }
    }

    /// `GET /eth/v1/beacon/genesis`
    pub async fn genesis(&self) -> Result<Genesis, LightClientError> {
        self.get_json::<Versioned<Genesis>>("/eth/v1/beacon/genesis").await.map(|v| v.data)
    }

    /// `GET /eth/v1/config/spec`: the node's chain config (string values by name).
    pub async fn config(
        &self,
    ) -> Result<std::collections::BTreeMap<String, serde_json::Value>, LightClientError> {
        self.get_json::<Versioned<_>>("/eth/v1/config/spec").await.map(|v| v.data)
    }

    /// `GET /eth/v1/beacon/light_client/bootstrap/{block_root}`
    pub async fn bootstrap(
        &self,
        spec: &ChainSpec,
        block_root: B256,
    ) -> Result<LightClientBootstrap, LightClientError> {
        let path = format!("/eth/v1/beacon/light_client/bootstrap/{block_root}");
        self.get_one(&path, |b, f| LightClientBootstrap::from_ssz(spec, b, f)).await
    }

    /// `GET /eth/v1/beacon/light_client/updates?start_period=&count=` (count capped at
    /// [`MAX_UPDATES_PER_REQUEST`]).
    pub async fn updates(
        &self,
        start_period: u64,
        count: u64,
    ) -> Result<Vec<LightClientUpdate>, LightClientError> {
        let count = count.clamp(1, MAX_UPDATES_PER_REQUEST);
        let path = format!("/eth/v1/beacon/light_client/updates?start_period={start_period}&count={count}");
        let list: Vec<Versioned<LightClientUpdate>> = self.get_json(&path).await?;
        if list.len() as u64 > count {
            return Err(LightClientError::Beacon(format!(
                "{path}: {} updates for a count of {count}",
                list.len()
            )));
        }
        Ok(list.into_iter().map(|v| v.data).collect())
    }

    /// `GET /eth/v1/beacon/light_client/finality_update`
    pub async fn finality_update(
        &self,
        spec: &ChainSpec,
    ) -> Result<LightClientFinalityUpdate, LightClientError> {
        self.get_one("/eth/v1/beacon/light_client/finality_update", |b, f| {
            LightClientFinalityUpdate::from_ssz(spec, b, f)
        })
        .await
    }

    /// `GET /eth/v1/beacon/light_client/optimistic_update`
    pub async fn optimistic_update(
        &self,
        spec: &ChainSpec,
    ) -> Result<LightClientOptimisticUpdate, LightClientError> {
        self.get_one("/eth/v1/beacon/light_client/optimistic_update", |b, f| {
            LightClientOptimisticUpdate::from_ssz(spec, b, f)
        })
        .await
    }
}

fn json<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, LightClientError> {
    serde_json::from_slice(body).map_err(|e| LightClientError::Decode(format!("{path}: {e}")))
}

/// Checks a beacon node's genesis and config against `spec`: the genesis validators root (when
/// the network fixes one), the version and epoch of every fork `spec` schedules, and that the
/// node schedules no fork the light client knows but `spec` does not (past it, `spec` would check
/// signatures and branches by the previous fork's rules: the store would stall). A fork this
/// build does not know at all (`<NAME>_FORK_EPOCH` of another name) is logged: the light client
/// can follow the chain only up to it.
pub fn check_network(
    spec: &ChainSpec,
    genesis: &Genesis,
    config: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<(), LightClientError> {
    let bad = |m: String| LightClientError::Config(format!("beacon node is not on {}: {m}", spec.name));
    if let Some(gvr) = spec.genesis_validators_root {
        if gvr != genesis.genesis_validators_root {
            return Err(bad(format!("genesis validators root {} ≠ {gvr}", genesis.genesis_validators_root)));
        }
    }
    for &(fork, version, epoch) in &spec.forks {
        if fork == Fork::Phase0 {
            if genesis.genesis_fork_version.0 != version {
                return Err(bad(format!(
                    "genesis fork version {} ≠ 0x{}",
                    genesis.genesis_fork_version,
                    hex::encode(version)
                )));
            }
            continue;
        }
        let upper = fork.name().to_ascii_uppercase();
        let text = |k: String| config.get(&k).and_then(|v| v.as_str().map(str::to_owned));
        if let Some(v) = text(format!("{upper}_FORK_VERSION")) {
            if !v.trim_start_matches("0x").eq_ignore_ascii_case(&hex::encode(version)) {
                return Err(bad(format!("{upper}_FORK_VERSION {v} ≠ 0x{}", hex::encode(version))));
            }
        }
        if let Some(e) = text(format!("{upper}_FORK_EPOCH")) {
            if e.parse::<u64>().ok() != Some(epoch) {
                return Err(bad(format!("{upper}_FORK_EPOCH {e} ≠ {epoch}")));
            }
        }
    }
    let scheduled = |v: &serde_json::Value| {
        let epoch = v.as_str().and_then(|e| e.parse::<u64>().ok()).or_else(|| v.as_u64());
        epoch.filter(|&e| e != crate::config::FAR_FUTURE_EPOCH)
    };
    for (key, value) in config {
        let (Some(name), Some(epoch)) = (key.strip_suffix("_FORK_EPOCH"), scheduled(value)) else { continue };
        match Fork::from_name(name) {
            Some(fork) if !spec.forks.iter().any(|f| f.0 == fork) => {
                return Err(bad(format!(
                    "the node schedules {name} at epoch {epoch}, which {} does not; give --network a \
                     config file that schedules it",
                    spec.name
                )));
            }
            Some(_) => {}
            None => tracing::warn!(
                network = %spec.name, fork = name, epoch,
                "the beacon node schedules a fork this build does not know: the light client can follow \
                 the chain only up to its first slot"
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_scheduling_a_known_fork_the_network_lacks_is_refused() {
        let spec = ChainSpec::named("mainnet").expect("mainnet");
        let genesis = Genesis {
            genesis_time: 1_606_824_023,
            genesis_validators_root: spec.genesis_validators_root.expect("gvr"),
            genesis_fork_version: [0, 0, 0, 0].into(),
        };
        let config = |extra: &[(&str, &str)]| {
            let mut c: std::collections::BTreeMap<String, serde_json::Value> = [
                ("DENEB_FORK_VERSION", "0x04000000"),
                ("DENEB_FORK_EPOCH", "269568"),
                ("EIP7805_FORK_EPOCH", "18446744073709551615"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
            c.extend(extra.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))));
            c
        };
        check_network(&spec, &genesis, &config(&[])).expect("mainnet as built in");
        let unscheduled = config(&[("GLOAS_FORK_EPOCH", "18446744073709551615")]);
        check_network(&spec, &genesis, &unscheduled).expect("an unscheduled fork changes nothing");
        let gloas = check_network(&spec, &genesis, &config(&[("GLOAS_FORK_EPOCH", "420000")]));
        let message = gloas.expect_err("gloas scheduled by the node only").to_string();
        assert!(message.contains("GLOAS at epoch 420000"), "{message}");
        let unknown = config(&[("SOMEFORK_FORK_EPOCH", "500000")]);
        check_network(&spec, &genesis, &unknown).expect("a fork this build does not know is only logged");
        let wrong = config(&[("DENEB_FORK_EPOCH", "1")]);
        assert!(check_network(&spec, &genesis, &wrong).is_err(), "a scheduled fork at another epoch");
    }
}
