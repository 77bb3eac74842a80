//! A beacon node of our own for end-to-end tests, and an execution node that lies.
//!
//! [`TestBeacon`] serves the beacon API's light-client routes from a
//! [`zkcoproc_lightclient::testkit::TestChain`]: sync committees of real BLS keys, bootstraps
//! and updates signed by them over execution payload headers that are an anvil node's real
//! blocks ([`execution_header`]). [`LyingRpc`] stands in front of anvil and, once told to, serves
//! a fabricated chain from some block on: self-linked headers with other state roots, every hash
//! recomputed, as a malicious node would.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use alloy_primitives::{keccak256, B256};
use anyhow::Context as _;
use serde_json::{json, Value};
use zkcoproc_lightclient::testkit::TestChain;
use zkcoproc_lightclient::{ExecutionPayloadHeader, LightClientBootstrap, LightClientUpdate};

use crate::anvil::Anvil;
use crate::stub::{Handler, Stub};

#[derive(Default)]
struct BeaconData {
    genesis_time: u64,
    bootstraps: HashMap<B256, Value>,
    updates: BTreeMap<u64, Value>,
    finality: Option<Value>,
    optimistic: Option<Value>,
    requests: Vec<String>,
}

/// A beacon node serving a test chain's light-client data.
pub struct TestBeacon {
    /// the chain
    pub chain: Arc<TestChain>,
    stub: Stub,
    data: Arc<Mutex<BeaconData>>,
}

impl std::fmt::Debug for TestBeacon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBeacon").field("url", &self.stub.url).finish_non_exhaustive()
    }
}

fn json_reply(v: &Value) -> crate::stub::Reply {
    (200, "application/json", serde_json::to_vec(v).unwrap_or_default())
}

fn not_found(what: &str) -> crate::stub::Reply {
    (404, "application/json", format!("{{\"code\":404,\"message\":\"{what}\"}}").into_bytes())
}

impl TestBeacon {
    /// Serves `chain`, whose slot 0 began at `genesis_time` (unix seconds).
    pub fn start(chain: TestChain, genesis_time: u64) -> anyhow::Result<TestBeacon> {
        let chain = Arc::new(chain);
        let data = Arc::new(Mutex::new(BeaconData { genesis_time, ..Default::default() }));
        let (c, d) = (chain.clone(), data.clone());
        let handler: Handler = Arc::new(move |_method, path, _body| {
            let mut data = d.lock().unwrap_or_else(|p| p.into_inner());
            data.requests.push(path.to_owned());
            let spec = &c.spec;
            if path == "/eth/v1/beacon/genesis" {
                let genesis_version = spec.forks.first().map(|f| f.1).unwrap_or_default();
                return json_reply(&json!({"data": {
                    "genesis_time": data.genesis_time.to_string(),
                    "genesis_validators_root": c.genesis_validators_root,
                    "genesis_fork_version": format!("0x{}", hex::encode(genesis_version)),
                }}));
            }
            if path == "/eth/v1/config/spec" {
                let mut config = serde_json::Map::new();
                config.insert("SECONDS_PER_SLOT".into(), json!((spec.slot_duration_ms / 1000).to_string()));
                config.insert("SLOT_DURATION_MS".into(), json!(spec.slot_duration_ms.to_string()));
                for (fork, version, epoch) in &spec.forks[1..] {
                    let name = fork.name().to_ascii_uppercase();
                    config
                        .insert(format!("{name}_FORK_VERSION"), json!(format!("0x{}", hex::encode(version))));
                    config.insert(format!("{name}_FORK_EPOCH"), json!(epoch.to_string()));
                }
                return json_reply(&json!({ "data": config }));
            }
            if let Some(root) = path.strip_prefix("/eth/v1/beacon/light_client/bootstrap/") {
                let root: Option<B256> = root.parse().ok();
                return match root.and_then(|r| data.bootstraps.get(&r)) {
                    Some(b) => json_reply(b),
                    None => not_found("no bootstrap for that root"),
                };
            }
            if let Some(query) = path.strip_prefix("/eth/v1/beacon/light_client/updates?") {
                let param = |k: &str| -> u64 {
                    query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                };
                let (start, count) = (param("start_period"), param("count"));
                let list: Vec<Value> =
                    data.updates.range(start..start.saturating_add(count)).map(|(_, u)| u.clone()).collect();
                return json_reply(&Value::Array(list));
            }
            let stored = match path {
                "/eth/v1/beacon/light_client/finality_update" => data.finality.clone(),
                "/eth/v1/beacon/light_client/optimistic_update" => data.optimistic.clone(),
                _ => return not_found("no such route"),
            };
            match stored {
                Some(v) => json_reply(&v),
                None => not_found("no update yet"),
            }
        });
        Ok(TestBeacon { chain, stub: Stub::start(handler)?, data })
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.stub.url
    }

    fn data(&self) -> std::sync::MutexGuard<'_, BeaconData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `bootstrap` for its header's root; returns that root (the checkpoint).
    pub fn add_bootstrap(&self, bootstrap: &LightClientBootstrap) -> B256 {
        let root = bootstrap.header.beacon.root();
        self.data().bootstraps.insert(root, json!({"version": "deneb", "data": bootstrap}));
        root
    }

    /// Stops serving bootstraps.
    pub fn remove_bootstraps(&self) {
        self.data().bootstraps.clear();
    }

    /// Publishes `update`: the best update of its period when it carries the next committee,
    /// the latest finality update when it carries finality, the latest optimistic update.
    pub fn publish(&self, update: &LightClientUpdate) {
        let spec = &self.chain.spec;
        let wrap = |v: Value| json!({"version": "deneb", "data": v});
        let mut data = self.data();
        if update.has_next_sync_committee() {
            let period = spec.period_at(update.attested_header.beacon.slot);
            data.updates.insert(period, wrap(json!(update)));
        }
        if update.has_finality() {
            data.finality = Some(wrap(json!(TestChain::finality_update(update))));
        }
        data.optimistic = Some(wrap(json!(TestChain::optimistic_update(update))));
    }

    /// The paths asked for so far.
    pub fn requests(&self) -> Vec<String> {
        self.data().requests.clone()
    }
}

/// The execution payload header of anvil's block `n`, as a beacon block would carry it.
pub fn execution_header(anvil: &Anvil, n: u64) -> anyhow::Result<ExecutionPayloadHeader> {
    let b = anvil.rpc("eth_getBlockByNumber", &json!([format!("{n:#x}"), false]))?;
    let h256 = |k: &str| -> anyhow::Result<B256> {
        b[k].as_str()
            .unwrap_or("0x0000000000000000000000000000000000000000000000000000000000000000")
            .parse()
            .context(k.to_owned())
    };
    let q = |k: &str| -> u64 {
        b[k].as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()).unwrap_or(0)
    };
    Ok(ExecutionPayloadHeader {
        parent_hash: h256("parentHash")?,
        fee_recipient: b["miner"].as_str().context("miner")?.parse()?,
        state_root: h256("stateRoot")?,
        receipts_root: h256("receiptsRoot")?,
        logs_bloom: b["logsBloom"].as_str().context("bloom")?.parse()?,
        prev_randao: h256("mixHash")?,
        block_number: q("number"),
        gas_limit: q("gasLimit"),
        gas_used: q("gasUsed"),
        timestamp: q("timestamp"),
        extra_data: b["extraData"].as_str().context("extraData")?.parse()?,
        base_fee_per_gas: alloy_primitives::U256::from(q("baseFeePerGas")),
        block_hash: h256("hash")?,
        transactions_root: h256("transactionsRoot")?,
        withdrawals_root: h256("withdrawalsRoot")?,
        blob_gas_used: q("blobGasUsed"),
        excess_blob_gas: q("excessBlobGas"),
    })
}

/// A JSON-RPC proxy in front of anvil that, after [`LyingRpc::lie_from`], serves a fabricated
/// chain from that block on.
pub struct LyingRpc {
    stub: Stub,
    from: Arc<AtomicU64>,
}

impl std::fmt::Debug for LyingRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LyingRpc").field("url", &self.stub.url).finish_non_exhaustive()
    }
}

impl LyingRpc {
    /// An honest proxy to `anvil_url` (for now).
    pub fn start(anvil_url: &str) -> anyhow::Result<LyingRpc> {
        let from = Arc::new(AtomicU64::new(u64::MAX));
        let fabricated: Arc<Mutex<HashMap<u64, Value>>> = Arc::default();
        let http = reqwest::blocking::Client::new();
        let (url, lie_from) = (anvil_url.to_owned(), from.clone());
        let forward = move |req: &Value| -> Value {
            http.post(&url).json(req).send().and_then(|r| r.json()).unwrap_or_else(|e| {
                json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32000, "message": e.to_string()}})
            })
        };
        let handler: Handler = Arc::new(move |_method, _path, body| {
            let Ok(req) = serde_json::from_slice::<Value>(body) else {
                return (400, "application/json", b"{}".to_vec());
            };
            let answer = |r: &Value| -> Value {
                let k = lie_from.load(Ordering::SeqCst);
                let number = (r["method"] == "eth_getBlockByNumber")
                    .then(|| {
                        r["params"][0]
                            .as_str()
                            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                    })
                    .flatten();
                match number {
                    Some(n) if n >= k => {
                        let block = fabricate(n, k, &fabricated, &forward);
                        json!({"jsonrpc": "2.0", "id": r["id"], "result": block})
                    }
                    _ => forward(r),
                }
            };
            let out = match &req {
                Value::Array(batch) => Value::Array(batch.iter().map(answer).collect()),
                single => answer(single),
            };
            json_reply(&out)
        });
        Ok(LyingRpc { stub: Stub::start(handler)?, from })
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.stub.url
    }

    /// From now on, serve a fabricated chain from block `k` on (`u64::MAX`: honest again).
    pub fn lie_from(&self, k: u64) {
        self.from.store(k, Ordering::SeqCst);
    }
}

/// Block `n` of the fabricated chain forking at `k`: anvil's block with another state root and,
/// above `k`, the fabricated parent; its hash recomputed from the fields.
fn fabricate(n: u64, k: u64, cache: &Mutex<HashMap<u64, Value>>, forward: &dyn Fn(&Value) -> Value) -> Value {
    if let Some(v) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&n) {
        return v.clone();
    }
    let real = forward(&json!({"jsonrpc": "2.0", "id": 0, "method": "eth_getBlockByNumber",
                                "params": [format!("{n:#x}"), false]}))["result"]
        .clone();
    let Ok(mut header) = serde_json::from_value::<alloy_consensus::Header>(real.clone()) else { return real };
    header.state_root = keccak256(format!("fabricated state {n}"));
    if n > k {
        let parent = fabricate(n - 1, k, cache, forward);
        if let Some(h) = parent["hash"].as_str().and_then(|h| h.parse::<B256>().ok()) {
            header.parent_hash = h;
        }
    }
    let mut v = serde_json::to_value(&header).unwrap_or(Value::Null);
    v["hash"] = json!(header.hash_slow());
    cache.lock().unwrap_or_else(|p| p.into_inner()).insert(n, v.clone());
    v
}
