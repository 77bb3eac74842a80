//! Following a domain with a consensus light client.
//!
//! The light client ([`zkcoproc_lightclient`]) decides which execution blocks enter the tree:
//! every header it finalizes (or, with `accept_optimistic`, every header a supermajority signed)
//! names an execution block by number and hash through a Merkle branch. Those blocks are
//! *anchors*. The execution node only supplies headers: the follower fetches the headers from
//! the newest inserted block up to the next anchor, checks that they link by parent hash, from
//! the anchor's verified hash back to the inserted head, and inserts them oldest first. A header
//! that does not link is refused (`unverified_header`) and nothing of the segment is inserted.
//!
//! The light-client store and its pending anchors are one durable record per domain, written
//! with a version check (replicas on one PostgreSQL database share it): a restart resumes
//! without a new bootstrap.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};
use zkcoproc_eth::{CheckedHeader, RpcClient};
use zkcoproc_lightclient::beacon::{check_network, BeaconClient};
use zkcoproc_lightclient::types::SignatureBytes;
use zkcoproc_lightclient::{ChainSpec, LightClientHeader, LightClientStore, LightClientUpdate};
use zkcoproc_smt::Sha2;
use zkcoproc_store::Admission;

use crate::domains::DomainConfig;
use crate::{Coordinator, CoordinatorError};

/// Timeout of one beacon-API request.
const BEACON_TIMEOUT: Duration = Duration::from_secs(20);
/// Most execution headers between two anchors (a gap this long needs a newer checkpoint).
const MAX_SEGMENT: u64 = 1 << 17;
/// Headers inserted per append (one store transaction).
const APPEND_CHUNK: usize = 1024;
/// Pending anchors kept (older ones are ancestors of newer ones: dropping them only makes a
/// segment longer).
const MAX_ANCHORS: usize = 1024;
/// Numbers of inserted anchors remembered for the view (the finalized and optimistic headers'
/// blocks are among the newest).
const NUMBERS_KEPT: usize = 16;
/// A finalized header this many epochs behind the clock is stale (finality normally lags 2–3).
const STALE_EPOCHS: u64 = 8;
/// Rounds of `updates` requests per step (each up to 32 periods).
const MAX_PERIOD_ROUNDS: usize = 4;

/// How a domain follows its light client.
#[derive(Clone, Debug)]
pub struct LightClientConfig {
    /// the beacon node's API base URL
    pub beacon_url: String,
    /// the trusted beacon block root (weak-subjectivity checkpoint)
    pub checkpoint: [u8; 32],
    /// the chain's parameters
    pub spec: Arc<ChainSpec>,
    /// insert blocks under optimistic (supermajority-signed, not finalized) headers too
    pub accept_optimistic: bool,
}

/// Why a domain cannot advance.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Stall {
    /// stable code: `domain_rpc`, `beacon`, `unverified_header`, `conflicting_block`,
    /// `stale_light_client`, `network_mismatch`, ...
    pub code: String,
    /// explanation
    pub message: String,
    /// since when (unix ms)
    pub since_ms: i64,
}

/// The light client's state, as `/health`, `/v1/root` and `/v1/domains/{name}/light-client` show it.
#[derive(Clone, Debug, Serialize, Default, PartialEq, Eq)]
pub struct LightClientView {
    /// the network name
    pub network: String,
    /// the checkpoint the store was bootstrapped from (hex)
    pub checkpoint: String,
    /// `finalized` or `optimistic`: which headers admit blocks
    pub accept: &'static str,
    /// whether the store exists (bootstrapped)
    pub bootstrapped: bool,
    /// the finalized header's beacon slot
    pub finalized_slot: u64,
    /// its execution block number (none before Capella; for a header in Gloas's shape, which
    /// names only the block's hash, none until that block is inserted)
    pub finalized_block: Option<u64>,
    /// the optimistic header's beacon slot
    pub optimistic_slot: u64,
    /// its execution block number (as `finalized_block`)
    pub optimistic_block: Option<u64>,
    /// the finalized header's sync-committee period
    pub sync_committee_period: u64,
    /// whether the next period's committee is known
    pub next_sync_committee_known: bool,
    /// the slot of the local clock
    pub current_slot: Option<u64>,
    /// when the store last moved (unix ms)
    pub last_update_ms: Option<i64>,
    /// verified execution blocks not inserted yet
    pub pending_anchors: usize,
}

/// What a domain's follower last reported.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DomainStatus {
    /// the domain
    pub domain: String,
    /// `light_client` or `rpc`: how its blocks are admitted
    pub trust: &'static str,
    /// the light client's state (light-client domains)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub light_client: Option<LightClientView>,
    /// why it cannot advance, while it cannot
    pub stalled: Option<Stall>,
}

impl DomainStatus {
    pub(crate) fn new(config: &DomainConfig) -> Self {
        DomainStatus {
            domain: config.name.clone(),
            trust: if config.light_client.is_some() { "light_client" } else { "rpc" },
            light_client: config.light_client.as_ref().map(|lc| LightClientView {
                network: lc.spec.name.clone(),
                checkpoint: format!("0x{}", hex::encode(lc.checkpoint)),
                accept: if lc.accept_optimistic { "optimistic" } else { "finalized" },
                ..Default::default()
            }),
            stalled: None,
        }
    }
}

/// A verified execution block, not inserted yet.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Anchor {
    /// its number (`None`: a header in Gloas's shape names only the hash; the number comes with
    /// the header whose fields hash to it)
    number: Option<u64>,
    hash: B256,
    beacon_slot: u64,
    optimistic: bool,
}

/// The durable record of a domain's light client.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    checkpoint: B256,
    store: LightClientStore,
    anchors: VecDeque<Anchor>,
    updated_ms: i64,
}

impl Record {
    fn push_anchor(&mut self, header: &LightClientHeader, spec: &ChainSpec, optimistic: bool) {
        let Some((number, hash)) = header.execution_block(spec) else {
            return; // before Capella: no execution block to name
        };
        if hash.is_zero() {
            return; // the genesis header's default execution part
        }
        let anchor = Anchor { number, hash, beacon_slot: header.beacon.slot, optimistic };
        // Anchors are kept in beacon-slot order, which is block order on one chain; an optimistic
        // anchor above a new finalized one is replaced by it (the finalized chain decides).
        while self.anchors.back().is_some_and(|a| a.beacon_slot >= anchor.beacon_slot) {
            self.anchors.pop_back();
        }
        self.anchors.push_back(anchor);
        while self.anchors.len() > MAX_ANCHORS {
            self.anchors.pop_front();
        }
    }
}

/// What the durable record is kept for: the headers, the committees' period and whether the
/// next is known, and the best valid update (kept for a forced update after the timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Progress {
    finalized: u64,
    optimistic: u64,
    next_known: bool,
    period: u64,
    best: Option<(u64, u64)>,
}

impl Progress {
    fn of(store: &LightClientStore, spec: &ChainSpec) -> Self {
        Progress {
            finalized: store.finalized_header.beacon.slot,
            optimistic: store.optimistic_header.beacon.slot,
            next_known: store.next_sync_committee.is_some(),
            period: store.period(spec),
            best: store.best_valid_update.as_ref().map(|u| (u.attested_header.beacon.slot, u.signature_slot)),
        }
    }
}

/// A follower's state between steps.
struct Follower {
    beacon: BeaconClient,
    checked: bool,
    genesis_time: u64,
    gvr: B256,
    /// (version in the store, record)
    record: Option<(u64, Record)>,
    /// the newest finality and optimistic update processed (attested slot, signature slot,
    /// signature): the node serves the same one until a new one is made, and it is processed
    /// (and counted, and a refusal logged) once
    seen: [Option<(u64, u64, SignatureBytes)>; 2],
    /// the numbers of the newest anchors inserted (or found inserted), by hash: a header in
    /// Gloas's shape names only the hash, and the view shows its block's number from here
    numbers: VecDeque<(B256, u64)>,
}

fn invalid(code: &'static str, message: String) -> CoordinatorError {
    CoordinatorError::invalid(code, message)
}

fn beacon_error(domain: &str, e: &zkcoproc_lightclient::LightClientError) -> CoordinatorError {
    invalid("beacon", format!("{domain}: {e}"))
}

fn now_ms() -> i64 {
    zkcoproc_store::now_ms()
}

impl Follower {
    /// The beacon slot of the local clock `ahead` of now (none before the genesis is known).
    fn slot_now(&self, spec: &ChainSpec, ahead: Duration) -> Option<u64> {
        let now = (std::time::SystemTime::now() + ahead).duration_since(std::time::UNIX_EPOCH).ok()?;
        let now_ms = u64::try_from(now.as_millis()).ok()?;
        spec.slot_at_ms(self.genesis_time, now_ms).filter(|_| self.genesis_time > 0)
    }
}

impl Coordinator {
    /// Records a follower's step outcome in the domain's status (and `/metrics`).
    pub(crate) fn set_stall(&self, domain: &str, error: Option<&CoordinatorError>) {
        let mut status = self.domains.status.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = status.get_mut(domain) else { return };
        match error {
            // Another replica appended first: not a stall, the next step builds on it.
            Some(CoordinatorError::Invalid { code: "smt_conflict", .. }) => {}
            Some(e) => {
                let code = match e {
                    CoordinatorError::Invalid { code, .. } => (*code).to_owned(),
                    _ => "internal".to_owned(),
                };
                let since_ms =
                    s.stalled.as_ref().filter(|x| x.code == code).map_or_else(now_ms, |x| x.since_ms);
                s.stalled = Some(Stall { code, message: e.to_string(), since_ms });
            }
            None => s.stalled = None,
        }
        self.metrics.stalled(domain, s.stalled.is_some());
    }

    /// Every domain's status, by name.
    pub fn domain_statuses(&self) -> Vec<DomainStatus> {
        let status = self.domains.status.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<DomainStatus> = status.values().cloned().collect();
        all.sort_by(|a, b| a.domain.cmp(&b.domain));
        all
    }

    /// One domain's status.
    pub fn domain_status(&self, domain: &str) -> Result<DomainStatus, CoordinatorError> {
        let status = self.domains.status.lock().unwrap_or_else(|p| p.into_inner());
        status
            .get(domain)
            .cloned()
            .ok_or_else(|| CoordinatorError::NotFound { what: "domain", id: domain.to_owned() })
    }

    /// Checks a light-client domain's nodes against its network: the execution node's chain id
    /// and the beacon node's genesis and fork schedule. `Ok(false)`: a node could not be reached
    /// (the follower checks again before it follows); `Err`: a node is on another chain.
    pub(crate) async fn check_light_client_nodes(&self, domain: &str) -> Result<bool, CoordinatorError> {
        let Some((config, rpc)) = self.domains.configs.get(domain) else { return Ok(true) };
        let Some(lc) = &config.light_client else { return Ok(true) };
        let beacon =
            BeaconClient::new(&lc.beacon_url, BEACON_TIMEOUT).map_err(|e| beacon_error(domain, &e))?;
        match check_nodes(domain, lc, rpc, &beacon).await {
            Ok(_) => Ok(true),
            Err(e @ CoordinatorError::Invalid { code: "network_mismatch", .. }) => Err(e),
            Err(e) => {
                tracing::warn!(domain, error = %e, "cannot check the nodes' network yet; the follower will retry");
                Ok(false)
            }
        }
    }

    pub(crate) async fn follow_light_client(self: Arc<Self>, domain: String) {
        let Some((config, rpc)) = self.domains.configs.get(&domain) else { return };
        let Some(lc) = &config.light_client else { return };
        let beacon = match BeaconClient::new(&lc.beacon_url, BEACON_TIMEOUT) {
            Ok(b) => b,
            Err(e) => {
                self.set_stall(&domain, Some(&beacon_error(&domain, &e)));
                return;
            }
        };
        let mut f = Follower {
            beacon,
            checked: false,
            genesis_time: 0,
            gvr: B256::ZERO,
            record: None,
            seen: [None; 2],
            numbers: VecDeque::new(),
        };
        let mut warned = false;
        loop {
            let step = self.light_client_step(config, lc, rpc, &mut f).await;
            self.set_stall(&domain, step.as_ref().err());
            self.publish_light_client(&domain, lc, &f);
            match step {
                Ok(progress) => {
                    warned = false;
                    if progress {
                        continue;
                    }
                }
                Err(e) => {
                    if !warned {
                        tracing::error!(domain = %domain, error = %e, "light-client follower cannot advance; retrying");
                    } else {
                        tracing::debug!(domain = %domain, error = %e, "light-client follower still cannot advance");
                    }
                    warned = true;
                }
            }
            tokio::time::sleep(config.poll_interval).await;
        }
    }

    fn publish_light_client(&self, domain: &str, lc: &LightClientConfig, f: &Follower) {
        let Some((_, record)) = &f.record else { return };
        let store = &record.store;
        let spec = &lc.spec;
        // A header in Gloas's shape names only the hash: its number is known once its anchor is
        // inserted (after a restart, the stored record's anchors are inserted again, or found
        // inserted, in the first step).
        let block = |h: &LightClientHeader| {
            let (number, hash) = h.execution_block(spec).filter(|(_, hash)| !hash.is_zero())?;
            number.or_else(|| f.numbers.iter().find(|(inserted, _)| *inserted == hash).map(|(_, n)| *n))
        };
        let current_slot = f.slot_now(spec, Duration::ZERO);
        let view = LightClientView {
            network: spec.name.clone(),
            checkpoint: format!("0x{}", hex::encode(record.checkpoint)),
            accept: if lc.accept_optimistic { "optimistic" } else { "finalized" },
            bootstrapped: true,
            finalized_slot: store.finalized_header.beacon.slot,
            finalized_block: block(&store.finalized_header),
            optimistic_slot: store.optimistic_header.beacon.slot,
            optimistic_block: block(&store.optimistic_header),
            sync_committee_period: store.period(spec),
            next_sync_committee_known: store.next_sync_committee.is_some(),
            current_slot,
            last_update_ms: Some(record.updated_ms),
            pending_anchors: record.anchors.len(),
        };
        self.metrics.light_client(
            domain,
            view.finalized_slot,
            view.optimistic_slot,
            view.sync_committee_period,
        );
        let mut status = self.domains.status.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = status.get_mut(domain) {
            s.light_client = Some(view);
        }
    }

    /// One step: load or bootstrap the store, sync committees by period, process the latest
    /// finality (and optimistic) update, force an update after the timeout, save the record,
    /// insert the blocks up to each anchor. Returns whether anything moved.
    async fn light_client_step(
        &self,
        config: &DomainConfig,
        lc: &LightClientConfig,
        rpc: &RpcClient,
        f: &mut Follower,
    ) -> Result<bool, CoordinatorError> {
        let domain = config.name.as_str();
        let spec = lc.spec.as_ref();
        if !f.checked {
            let (genesis_time, gvr) = check_nodes(domain, lc, rpc, &f.beacon).await?;
            f.genesis_time = genesis_time;
            f.gvr = gvr;
            f.checked = true;
        }
        self.load_record(domain, lc, f).await?;
        // A signature slot may start up to half a second early by our clock (gossip disparity).
        let current_slot = f.slot_now(spec, Duration::from_millis(500)).unwrap_or(0);
        let Some((version, record)) = f.record.as_mut() else { return Ok(false) };
        let before = Progress::of(&record.store, spec);
        let gvr = f.gvr;
        let process = |store: &mut LightClientStore, update: &LightClientUpdate| match store.process_update(
            spec,
            update,
            current_slot,
            gvr,
        ) {
            Ok(()) => self.metrics.light_client_update(domain, "accepted"),
            Err(e) => {
                self.metrics.light_client_update(domain, e.code());
                match e {
                    zkcoproc_lightclient::UpdateError::NotRelevant { .. } => {}
                    _ => tracing::warn!(
                        domain, code = e.code(), error = %e,
                        attested_slot = update.attested_header.beacon.slot,
                        "light-client update refused"
                    ),
                }
            }
        };

        // Committees: catch up period by period to the clock's.
        for _ in 0..MAX_PERIOD_ROUNDS {
            let store_period = record.store.period(spec);
            let current_period = spec.period_at(current_slot);
            if record.store.next_sync_committee.is_some() && store_period >= current_period {
                break;
            }
            let count = current_period.saturating_sub(store_period) + 1;
            let updates =
                f.beacon.updates(store_period, count).await.map_err(|e| beacon_error(domain, &e))?;
            let at = (record.store.finalized_header.beacon.slot, record.store.next_sync_committee.is_some());
            for u in &updates {
                process(&mut record.store, u);
            }
            if at == (record.store.finalized_header.beacon.slot, record.store.next_sync_committee.is_some()) {
                break;
            }
        }
        let key = |u: &LightClientUpdate| {
            Some((u.attested_header.beacon.slot, u.signature_slot, u.sync_aggregate.sync_committee_signature))
        };
        match f.beacon.finality_update(spec).await {
            Ok(u) => {
                let u = LightClientUpdate::from_finality(u, spec);
                if f.seen[0] != key(&u) {
                    f.seen[0] = key(&u);
                    process(&mut record.store, &u);
                }
            }
            Err(e) => tracing::debug!(domain, error = %e, "no finality update"),
        }
        if lc.accept_optimistic {
            match f.beacon.optimistic_update(spec).await {
                Ok(u) => {
                    let u = LightClientUpdate::from_optimistic(u, spec);
                    if f.seen[1] != key(&u) {
                        f.seen[1] = key(&u);
                        process(&mut record.store, &u);
                    }
                }
                Err(e) => tracing::debug!(domain, error = %e, "no optimistic update"),
            }
        }
        match record.store.force_update(spec, current_slot) {
            Ok(true) => tracing::warn!(
                domain,
                slot = record.store.finalized_header.beacon.slot,
                "light client forced an update after the timeout"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(domain, error = %e, "forced update refused"),
        }
        let after = Progress::of(&record.store, spec);
        let moved = after != before;
        if moved {
            let finalized = record.store.finalized_header.clone();
            record.push_anchor(&finalized, spec, false);
            if lc.accept_optimistic && after.optimistic > after.finalized {
                let optimistic = record.store.optimistic_header.clone();
                record.push_anchor(&optimistic, spec, true);
            }
            record.updated_ms = now_ms();
            let bytes =
                serde_json::to_vec(&*record).map_err(|e| CoordinatorError::Internal(e.to_string()))?;
            if !self.store.put_light_client_state(domain, *version, bytes).await? {
                // Another replica moved the store: continue from its record (and process the
                // latest updates on it again).
                f.record = None;
                f.seen = [None; 2];
                return Ok(true);
            }
            *version += 1;
            if after.finalized != before.finalized || after.optimistic != before.optimistic {
                tracing::info!(
                    domain,
                    finalized_slot = after.finalized,
                    optimistic_slot = after.optimistic,
                    period = after.period,
                    "light client advanced"
                );
            }
        } else if current_slot > after.finalized + STALE_EPOCHS * spec.preset.slots_per_epoch {
            let last = record.updated_ms;
            self.insert_to_anchors(domain, rpc, f).await?;
            return Err(invalid(
                "stale_light_client",
                format!(
                    "{domain}: finalized slot {} is far behind the clock's slot {current_slot}; last moved at {last} ms",
                    after.finalized
                ),
            ));
        }
        let inserted = self.insert_to_anchors(domain, rpc, f).await?;
        Ok(moved || inserted > 0)
    }

    /// Loads the domain's record (or bootstraps it from the checkpoint); on a shared store,
    /// takes a newer record another replica wrote.
    async fn load_record(
        &self,
        domain: &str,
        lc: &LightClientConfig,
        f: &mut Follower,
    ) -> Result<(), CoordinatorError> {
        let spec = lc.spec.as_ref();
        let have = f.record.as_ref().map(|(v, _)| *v);
        if have.is_some() && !self.store.shared() {
            return Ok(());
        }
        if let Some((version, bytes)) = self.store.light_client_state(domain).await? {
            if have == Some(version) {
                return Ok(());
            }
            let record: Record = serde_json::from_slice(&bytes).map_err(|e| {
                CoordinatorError::Internal(format!("{domain}: stored light-client state: {e}"))
            })?;
            if have.is_none() && record.checkpoint.0 != lc.checkpoint {
                tracing::warn!(
                    domain, stored = %record.checkpoint, configured = %B256::from(lc.checkpoint),
                    "the stored light client was bootstrapped from another checkpoint; it resumes from its own state"
                );
            }
            f.record = Some((version, record));
            return Ok(());
        }
        let checkpoint = B256::from(lc.checkpoint);
        let bootstrap = f.beacon.bootstrap(spec, checkpoint).await.map_err(|e| beacon_error(domain, &e))?;
        let store = LightClientStore::bootstrap(spec, checkpoint, bootstrap).map_err(|e| {
            invalid("bad_bootstrap", format!("{domain}: bootstrap for {checkpoint} refused: {e}"))
        })?;
        let mut record = Record { checkpoint, store, anchors: VecDeque::new(), updated_ms: now_ms() };
        let header = record.store.finalized_header.clone();
        record.push_anchor(&header, spec, false);
        let bytes = serde_json::to_vec(&record).map_err(|e| CoordinatorError::Internal(e.to_string()))?;
        if self.store.put_light_client_state(domain, 0, bytes).await? {
            tracing::info!(domain, %checkpoint, slot = header.beacon.slot, "light client bootstrapped from the checkpoint");
            f.record = Some((1, record));
        }
        // else another replica bootstrapped first: the next step loads its record.
        Ok(())
    }

    /// Inserts the blocks up to each pending anchor, oldest first. Returns how many.
    async fn insert_to_anchors(
        &self,
        domain: &str,
        rpc: &RpcClient,
        f: &mut Follower,
    ) -> Result<usize, CoordinatorError> {
        let Some((_, record)) = f.record.as_mut() else { return Ok(0) };
        let mut inserted = 0;
        while let Some(anchor) = record.anchors.front().copied() {
            let (n, number) = self.insert_to_anchor(domain, rpc, anchor).await?;
            inserted += n;
            record.anchors.pop_front();
            f.numbers.push_back((anchor.hash, number));
            if f.numbers.len() > NUMBERS_KEPT {
                f.numbers.pop_front();
            }
        }
        Ok(inserted)
    }

    async fn insert_to_anchor(
        &self,
        domain: &str,
        rpc: &RpcClient,
        anchor: Anchor,
    ) -> Result<(usize, u64), CoordinatorError> {
        let admission =
            Admission::LightClient { beacon_slot: anchor.beacon_slot, optimistic: anchor.optimistic };
        let rpc_err = |e: zkcoproc_eth::EthError| invalid("domain_rpc", format!("{domain}: {e}"));
        // An anchor of a header in Gloas's shape has only the hash: the node's header that hashes
        // to it (`header_by_hash` refuses any other) gives the number.
        let (number, fetched) = match anchor.number {
            Some(n) => (n, None),
            None => {
                let header = rpc.header_by_hash(anchor.hash).await.map_err(rpc_err)?;
                (header.number, Some(header))
            }
        };
        let head = self.domains.read().head(domain).map(|u| (u.number, u.block_hash));
        let Some((head_number, head_hash)) = head else {
            let header = match fetched {
                Some(h) => h,
                None => rpc.header(number).await.map_err(rpc_err)?,
            };
            refuse_unless(domain, &header, anchor.hash, "the light client verified")?;
            self.append_headers(domain, vec![header], Some(admission)).await?;
            return Ok((1, number));
        };
        if number <= head_number {
            let key = zkcoproc_smt::key::<Sha2>(domain, number);
            let stored = self.domains.read().tree_get(&key);
            return match stored {
                Some(c) if c.block_hash != anchor.hash.0 => Err(invalid(
                    "conflicting_block",
                    format!(
                        "{domain}: block {} is inserted as 0x{}, but the light client verified {} (slot {}): \
                         an inserted block is not on the verified chain",
                        number,
                        hex::encode(c.block_hash),
                        anchor.hash,
                        anchor.beacon_slot
                    ),
                )),
                _ => Ok((0, number)),
            };
        }
        let len = number - head_number;
        if len > MAX_SEGMENT {
            return Err(invalid(
                "segment_too_long",
                format!(
                    "{domain}: {len} blocks between the inserted head {head_number} and the verified block {}: \
                     more than {MAX_SEGMENT}; restart from a newer checkpoint",
                    number
                ),
            ));
        }
        let mut headers: Vec<CheckedHeader> = Vec::with_capacity(len as usize);
        while (headers.len() as u64) < len {
            let from = head_number + 1 + headers.len() as u64;
            let batch = rpc.headers(from, (len - headers.len() as u64) as usize).await.map_err(rpc_err)?;
            if batch.is_empty() {
                return Err(invalid(
                    "domain_rpc",
                    format!("{domain}: the node returned no headers from {from}"),
                ));
            }
            headers.extend(batch);
        }
        // From the verified hash back to the inserted head: each header must be its child's parent.
        let mut expected = anchor.hash;
        for h in headers.iter().rev() {
            refuse_unless(domain, h, expected, &format!("the verified chain ending in block {number}"))?;
            expected = h.parent_hash;
        }
        if expected.0 != head_hash {
            return Err(invalid(
                "conflicting_block",
                format!(
                    "{domain}: the verified chain to block {} descends from 0x{expected:x} at {head_number}, but the \
                     inserted block there is 0x{}",
                    number,
                    hex::encode(head_hash)
                ),
            ));
        }
        let n = headers.len();
        let mut rest = headers;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(APPEND_CHUNK));
            self.append_headers(domain, rest, Some(admission)).await?;
            rest = tail;
        }
        Ok((n, number))
    }
}

/// Refuses (and logs) a header that is not the one with the verified hash.
fn refuse_unless(
    domain: &str,
    header: &CheckedHeader,
    verified: B256,
    what: &str,
) -> Result<(), CoordinatorError> {
    if header.hash == verified {
        return Ok(());
    }
    tracing::error!(
        domain, number = header.number, served = %header.hash, verified = %verified,
        "unverified_header: the execution node served a header that is not on {what}"
    );
    Err(invalid(
        "unverified_header",
        format!(
            "{domain}: the execution node's block {} is {}, not {verified} from {what}; nothing of it is inserted",
            header.number, header.hash
        ),
    ))
}

/// Checks the nodes against the network; returns the genesis time and validators root to use.
async fn check_nodes(
    domain: &str,
    lc: &LightClientConfig,
    rpc: &RpcClient,
    beacon: &BeaconClient,
) -> Result<(u64, B256), CoordinatorError> {
    let spec = lc.spec.as_ref();
    let mismatch = |m: String| invalid("network_mismatch", format!("{domain}: network mismatch: {m}"));
    let chain_id = rpc.chain_id().await.map_err(|e| invalid("domain_rpc", format!("{domain}: {e}")))?;
    if let Some(want) = spec.chain_id {
        if chain_id != want {
            return Err(mismatch(format!(
                "the execution node's chain id is {chain_id}, {} has {want}",
                spec.name
            )));
        }
    }
    let genesis = beacon.genesis().await.map_err(|e| beacon_error(domain, &e))?;
    let config = beacon.config().await.map_err(|e| beacon_error(domain, &e))?;
    check_network(spec, &genesis, &config).map_err(|e| mismatch(e.to_string()))?;
    if let Some(t) = spec.genesis_time.filter(|_| spec.genesis_validators_root.is_some()) {
        if t != genesis.genesis_time {
            return Err(mismatch(format!("beacon genesis time {} ≠ {t}", genesis.genesis_time)));
        }
    }
    Ok((genesis.genesis_time, spec.genesis_validators_root.unwrap_or(genesis.genesis_validators_root)))
}
