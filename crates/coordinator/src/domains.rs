//! Domains (external chains) and the coprocessor root.
//!
//! The service follows each configured domain from a trusted checkpoint: it fetches headers over
//! JSON-RPC, recomputes each hash, checks each parent link, and only then inserts
//! `(domain, number) → (hash, state root)` into the sparse Merkle tree whose root is the
//! coprocessor root. Only blocks at least `confirmations` deep are inserted. An authenticated
//! feeder may post headers too; they pass the same checks.
//!
//! Every insert is appended to the store's history (the root before and after) together with the
//! tree nodes it created, stored by hash, so every root the service has had stays known and
//! openable: under a recent root from memory (recent versions share their nodes), under any
//! older one by reading O(depth) nodes from the store. The history lock guards only in-memory
//! maps: no store or network I/O and no tree building happens while it is held.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;
use zkcoproc_eth::{CheckedHeader, EthError, RpcClient};
use zkcoproc_evm::preflight::{preflight, CallRequest, Limits as EvmLimits};
use zkcoproc_runtime::{DomainHost, EvmRequest, HostError};
use zkcoproc_smt::{BlockCommitment, Opening, Sha2, Tree, Walk};
use zkcoproc_store::{Admission, NewBlock, SmtUpdate, Store};
use zkcoproc_types::{EvmCall, Root, StateProof, Witness, EMPTY_ROOT};

use crate::{Coordinator, CoordinatorError};

/// Tree versions kept in memory for openings (older ones are opened from the stored nodes).
const RECENT_VERSIONS: usize = 256;

/// Updates replayed (and, for a history written before nodes were stored, whose nodes are
/// stored) per step at start-up.
const LOAD_CHUNK: usize = 10_000;
/// Timeout of one JSON-RPC request.
const RPC_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a replica on a shared store applies the blocks other replicas appended.
const HISTORY_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// One configured domain.
#[derive(Clone, Debug)]
pub struct DomainConfig {
    /// the domain's name (`ethereum`), see [`zkcoproc_smt::valid_domain`]
    pub name: String,
    /// its JSON-RPC endpoint
    pub rpc_url: String,
    /// the trusted first block (number and hash); `None`: the node's block at start-up
    pub checkpoint: Option<(u64, [u8; 32])>,
    /// only blocks at least this deep below the node's head are inserted
    pub confirmations: u64,
    /// how often the node is polled for new blocks
    pub poll_interval: Duration,
    /// `Some`: blocks are admitted by a consensus light client (the execution node only supplies
    /// headers, checked against the hashes it verified); `None`: RPC trust (hashes and parent
    /// links from the checkpoint on)
    pub light_client: Option<crate::light_client::LightClientConfig>,
}

/// The newest inserted block of a domain.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BlockInfo {
    /// domain name
    pub domain: String,
    /// block number
    pub number: u64,
    /// block hash (hex)
    pub hash: String,
    /// state root (hex)
    pub state_root: String,
    /// how the block was admitted: `light_client`, `light_client_optimistic` or `rpc`
    pub admitted_by: &'static str,
    /// for a light-client admission, the beacon slot of the header that vouched for it
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beacon_slot: Option<u64>,
}

/// An opening of `(domain, number)` under a root, as the API serves it.
#[derive(Clone, Debug)]
pub struct BlockOpening {
    /// the root it opens against
    pub root: Root,
    /// the SMT key of (domain, number)
    pub key: [u8; 32],
    /// the opening
    pub opening: Opening,
    /// what the tree holds for the key (None: the opening proves absence)
    pub value: Option<BlockCommitment>,
}

/// Where a root sits in the history.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RootInfo {
    /// the root (hex)
    pub root: String,
    /// its position in the history (0 = the empty tree)
    pub seq: u64,
    /// the block whose insert produced it (none for the empty root)
    pub block: Option<BlockInfo>,
    /// the newest block of each domain under it, with how it was admitted
    pub domains: Vec<BlockInfo>,
}

#[derive(Default)]
pub(crate) struct History {
    /// the newest tree
    tree: Tree,
    /// seq of the newest update (0: empty)
    seq: u64,
    /// every update, by seq - 1
    updates: Vec<SmtUpdate>,
    /// every root → seq
    roots: HashMap<Root, u64>,
    /// per domain: (seq, number) of each of its inserts, in order
    heads: HashMap<String, Vec<(u64, u64)>>,
    /// recent versions, by seq
    recent: BTreeMap<u64, Tree>,
}

impl History {
    fn new() -> Self {
        let mut h = History::default();
        h.roots.insert(EMPTY_ROOT, 0);
        h.recent.insert(0, Tree::new());
        h
    }

    /// Pushes updates built by [`build`] on this history. Updates at or below the current seq
    /// were pushed by a concurrent catch-up (the history is the same for everyone) and are skipped.
    fn push_built(&mut self, built: Vec<(SmtUpdate, Option<Tree>)>) -> Result<(), CoordinatorError> {
        for (u, tree) in built {
            if u.seq <= self.seq {
                continue;
            }
            if u.seq != self.seq + 1 || u.prev_root != self.root_at(self.seq).unwrap_or_default() {
                return Err(broken(&u, self.seq, &self.tree.root()));
            }
            self.push(u, tree);
        }
        Ok(())
    }

    /// Records update `u`; `tree` is the version after it, `None` only for an update that is
    /// followed by more in the same batch (the newest version is always kept).
    fn push(&mut self, u: SmtUpdate, tree: Option<Tree>) {
        self.seq = u.seq;
        self.roots.insert(u.root, u.seq);
        self.heads.entry(u.domain.clone()).or_default().push((u.seq, u.number));
        if let Some(tree) = tree {
            self.recent.insert(u.seq, tree.clone());
            while self.recent.len() > RECENT_VERSIONS {
                self.recent.pop_first();
            }
            self.tree = tree;
        }
        self.updates.push(u);
    }

    /// The root after update `seq` (0: the empty root).
    fn root_at(&self, seq: u64) -> Option<Root> {
        match seq {
            0 => Some(EMPTY_ROOT),
            s => self.updates.get((s - 1) as usize).map(|u| u.root),
        }
    }

    /// The newest block of `domain` inserted at or before `seq`.
    fn latest_at(&self, domain: &str, seq: u64) -> Option<&SmtUpdate> {
        let inserts = self.heads.get(domain)?;
        let i = inserts.partition_point(|(s, _)| *s <= seq);
        let (s, _) = inserts.get(i.checked_sub(1)?)?;
        self.updates.get((*s - 1) as usize)
    }

    /// What the newest tree holds for `key`.
    pub(crate) fn tree_get(&self, key: &[u8; 32]) -> Option<BlockCommitment> {
        self.tree.get(key)
    }

    pub(crate) fn head(&self, domain: &str) -> Option<&SmtUpdate> {
        self.latest_at(domain, self.seq)
    }
}

fn broken(u: &SmtUpdate, seq: u64, root: &Root) -> CoordinatorError {
    CoordinatorError::Internal(format!(
        "smt history is broken at seq {} (expected seq {} on root {})",
        u.seq,
        seq + 1,
        hex::encode(root)
    ))
}

/// Replays `updates` on top of `tree` (the version at `seq`), checking that they chain and that
/// each gives its recorded root. CPU work: callers run it without holding the history lock.
/// Only the last [`RECENT_VERSIONS`] versions are returned (the history keeps no more). With
/// `nodes`, also collects every node each insert created (for backfilling the store).
fn build(
    mut tree: Tree,
    mut seq: u64,
    updates: Vec<SmtUpdate>,
    mut nodes: Option<&mut Vec<([u8; 32], Vec<u8>)>>,
) -> Result<Vec<(SmtUpdate, Option<Tree>)>, CoordinatorError> {
    let mut out = Vec::with_capacity(updates.len());
    let keep_from = updates.len().saturating_sub(RECENT_VERSIONS);
    for (i, u) in updates.into_iter().enumerate() {
        if u.seq != seq + 1 || u.prev_root != tree.root() {
            return Err(broken(&u, seq, &tree.root()));
        }
        let key = zkcoproc_smt::key::<Sha2>(&u.domain, u.number);
        tree = tree.insert(key, BlockCommitment { block_hash: u.block_hash, state_root: u.state_root });
        if tree.root() != u.root {
            return Err(CoordinatorError::Internal(format!(
                "smt history: replaying seq {} gives root {}, stored {}",
                u.seq,
                hex::encode(tree.root()),
                hex::encode(u.root)
            )));
        }
        if let Some(nodes) = nodes.as_deref_mut() {
            nodes.extend(tree.path_rows(&key));
        }
        seq = u.seq;
        out.push((u, (i >= keep_from).then(|| tree.clone())));
    }
    Ok(out)
}

fn block_info(u: &SmtUpdate) -> BlockInfo {
    BlockInfo {
        domain: u.domain.clone(),
        number: u.number,
        hash: format!("0x{}", hex::encode(u.block_hash)),
        state_root: format!("0x{}", hex::encode(u.state_root)),
        admitted_by: u.admission.as_str(),
        beacon_slot: u.admission.beacon_slot(),
    }
}

/// The domains and the tree's history.
pub(crate) struct Domains {
    pub(crate) configs: HashMap<String, (DomainConfig, RpcClient)>,
    /// what each domain's follower last reported
    pub(crate) status: std::sync::Mutex<HashMap<String, crate::light_client::DomainStatus>>,
    /// each domain's chain id, asked of its node once
    chain_ids: std::sync::Mutex<HashMap<String, u64>>,
    /// bounds on one EVM call's preflight
    pub(crate) evm_limits: EvmLimits,
    history: RwLock<History>,
    /// serialises appends (follower loops and feeders)
    append: tokio::sync::Mutex<()>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Domains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.configs.keys().collect();
        names.sort();
        f.debug_struct("Domains").field("configured", &names).finish_non_exhaustive()
    }
}

impl Domains {
    pub(crate) fn empty(store: Arc<dyn Store>) -> Self {
        Domains {
            configs: HashMap::new(),
            status: Default::default(),
            chain_ids: Default::default(),
            evm_limits: EvmLimits::default(),
            history: RwLock::new(History::new()),
            append: tokio::sync::Mutex::new(()),
            store,
        }
    }

    pub(crate) fn new(configs: Vec<DomainConfig>, store: Arc<dyn Store>) -> Result<Self, CoordinatorError> {
        let mut map = HashMap::new();
        for c in configs {
            if !zkcoproc_smt::valid_domain(&c.name) {
                return Err(CoordinatorError::invalid(
                    "bad_domain",
                    format!("invalid domain name {:?}: 1-32 of a-z, 0-9, - and _", c.name),
                ));
            }
            let rpc = RpcClient::new(&c.rpc_url, RPC_TIMEOUT)
                .map_err(|e| CoordinatorError::Internal(e.to_string()))?;
            if map.insert(c.name.clone(), (c, rpc)).is_some() {
                return Err(CoordinatorError::invalid("bad_domain", "a domain is configured twice"));
            }
        }
        let status = map
            .values()
            .map(|(c, _)| (c.name.clone(), crate::light_client::DomainStatus::new(c)))
            .collect::<HashMap<_, _>>()
            .into();
        Ok(Domains {
            configs: map,
            status,
            chain_ids: Default::default(),
            evm_limits: EvmLimits::default(),
            history: RwLock::new(History::new()),
            append: tokio::sync::Mutex::new(()),
            store,
        })
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, History> {
        // A panic while holding the lock cannot leave the history half-updated (updates are
        // computed first and pushed whole), so a poisoned lock is still consistent.
        self.history.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, History> {
        self.history.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the history the store has beyond this process's tree (other replicas' appends).
    /// Safe to run concurrently: the tree is built outside the history lock, and updates another
    /// catch-up pushed first are skipped.
    async fn catch_up(&self) -> Result<(), CoordinatorError> {
        let (after, tree) = {
            let h = self.read();
            (h.seq, h.tree.clone())
        };
        let updates = self.store.smt_updates(after).await?;
        if updates.is_empty() {
            return Ok(());
        }
        let n = updates.len();
        let built = tokio::task::spawn_blocking(move || build(tree, after, updates, None))
            .await
            .map_err(|e| CoordinatorError::Internal(format!("history replay failed: {e}")))??;
        self.write().push_built(built)?;
        tracing::debug!(updates = n, "history caught up");
        Ok(())
    }

    /// The history position of `root` (default: the current root). A root this process does not
    /// know may have been made by another replica on a shared store: the history is synced from
    /// the store before the root is declared unknown.
    async fn seq_of(&self, root: Option<&Root>) -> Result<u64, CoordinatorError> {
        let Some(r) = root else { return Ok(self.read().seq) };
        if let Some(seq) = self.read().roots.get(r) {
            return Ok(*seq);
        }
        if self.store.shared() {
            self.catch_up().await?;
            if let Some(seq) = self.read().roots.get(r) {
                return Ok(*seq);
            }
        }
        Err(unknown_root(r))
    }

    /// Whether `root` is a root the service has had (synced from a shared store on a miss).
    pub(crate) async fn is_known(&self, root: &Root) -> Result<bool, CoordinatorError> {
        match self.seq_of(Some(root)).await {
            Ok(_) => Ok(true),
            Err(CoordinatorError::Invalid { code: "unknown_root", .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The newest block of `domain` under `root` (default: the current root).
    pub(crate) async fn latest_block(
        &self,
        domain: &str,
        root: Option<&Root>,
    ) -> Result<BlockInfo, CoordinatorError> {
        let seq = self.seq_of(root).await?;
        let h = self.read();
        if !self.configs.contains_key(domain) && !h.heads.contains_key(domain) {
            return Err(CoordinatorError::NotFound { what: "domain", id: domain.to_owned() });
        }
        h.latest_at(domain, seq).map(block_info).ok_or_else(|| {
            CoordinatorError::invalid("no_blocks", format!("no block of {domain} is under that root yet"))
        })
    }

    /// The opening of block `number` of `domain` under `root` (default: the current root):
    /// membership if it was inserted by then, non-membership otherwise. O(tree depth) under any
    /// root: a recent version is opened in memory, an older one from the stored nodes.
    pub(crate) async fn opening(
        &self,
        domain: &str,
        number: u64,
        root: Option<&Root>,
    ) -> Result<BlockOpening, CoordinatorError> {
        if !zkcoproc_smt::valid_domain(domain) {
            return Err(CoordinatorError::invalid("bad_domain", format!("invalid domain name {domain:?}")));
        }
        let seq = self.seq_of(root).await?;
        let key = zkcoproc_smt::key::<Sha2>(domain, number);
        let (recent, at) = {
            let h = self.read();
            (h.recent.get(&seq).cloned(), h.root_at(seq))
        };
        let at = at.ok_or_else(|| CoordinatorError::Internal(format!("history has no seq {seq}")))?;
        let opening = match recent {
            Some(tree) => tree.open(&key),
            None => self.store.smt_walk(Walk::new(at, key)).await?.map_err(|e| {
                CoordinatorError::Internal(format!("opening under root {}: {e}", hex::encode(at)))
            })?,
        };
        let value = opening.leaf.filter(|l| l.key == key).map(|l| l.value);
        Ok(BlockOpening { root: at, key, value, opening })
    }

    /// Fetches a state proof for a controller. The block must be under `root`, so the witness
    /// can be opened under the task's root later.
    async fn fetch_state_proof(
        &self,
        root: &Root,
        domain: &str,
        block: u64,
        address: [u8; 20],
        slots: &[[u8; 32]],
    ) -> Result<StateProof, CoordinatorError> {
        let rpc = self.rpc(domain)?;
        self.check_under_root(root, domain, block).await?;
        let mut proof = rpc.get_proof(address, slots, block).await.map_err(|e| eth_error(domain, &e))?;
        proof.domain = domain.to_owned();
        Ok(proof)
    }

    async fn stored_header(&self, domain: &str, block: u64) -> Result<Vec<u8>, CoordinatorError> {
        self.store.block_header(domain, block).await?.ok_or_else(|| {
            CoordinatorError::Internal(format!("{domain} block {block} is in the tree but has no header"))
        })
    }

    /// Runs an EVM view call at `block` of `domain` (which must be under `root`) against the
    /// domain's node and records its witness, checked against the block's stored header.
    async fn evm_call(
        &self,
        root: &Root,
        domain: &str,
        block: u64,
        request: EvmRequest,
    ) -> Result<(EvmCall, usize), CoordinatorError> {
        let rpc = self.rpc(domain)?;
        self.check_under_root(root, domain, block).await?;
        let limits = EvmLimits {
            max_rpc_requests: self.evm_limits.max_rpc_requests.min(request.max_rpc_requests),
            timeout: self.evm_limits.timeout.min(request.timeout),
            ..self.evm_limits.clone()
        };
        let header = self.stored_header(domain, block).await?;
        let chain_id = self.chain_id(domain, rpc).await?;
        let request = CallRequest {
            domain: domain.to_owned(),
            block,
            chain_id,
            from: request.from,
            to: request.to,
            value: request.value,
            gas_limit: request.gas_limit,
            calldata: request.calldata,
            may_revert: request.may_revert,
        };
        let done = preflight(rpc, header, request, &limits)
            .await
            .map_err(|e| CoordinatorError::invalid(e.code(), format!("{domain} block {block}: {e}")))?;
        let (reads, call) = (done.outcome.reads, &done.call);
        tracing::info!(
            domain,
            block,
            to = %hex::encode(call.to),
            accounts = reads.accounts,
            slots = reads.slots,
            code_bytes = reads.code_bytes,
            nodes = call.nodes.len(),
            ancestors = call.ancestors.len(),
            gas = done.outcome.gas_used,
            rpc_requests = done.rpc_requests,
            ms = done.elapsed.as_millis() as u64,
            "EVM call preflighted"
        );
        Ok((done.call, done.rpc_requests))
    }

    /// The chain id of `domain`'s node, asked once (the start-up checks compared it with the
    /// light client's network, where there is one).
    async fn chain_id(&self, domain: &str, rpc: &RpcClient) -> Result<u64, CoordinatorError> {
        if let Some(id) = self.chain_ids.lock().ok().and_then(|ids| ids.get(domain).copied()) {
            return Ok(id);
        }
        let id = rpc.chain_id().await.map_err(|e| eth_error(domain, &e))?;
        if let Ok(mut ids) = self.chain_ids.lock() {
            ids.insert(domain.to_owned(), id);
        }
        Ok(id)
    }

    async fn check_under_root(&self, root: &Root, domain: &str, block: u64) -> Result<(), CoordinatorError> {
        let latest = self.latest_block(domain, Some(root)).await?;
        if block > latest.number || self.opening(domain, block, Some(root)).await?.value.is_none() {
            return Err(CoordinatorError::invalid(
                "block_not_under_root",
                format!("block {block} of {domain} is not under the task's root (newest: {})", latest.number),
            ));
        }
        Ok(())
    }

    fn rpc(&self, domain: &str) -> Result<&RpcClient, CoordinatorError> {
        self.configs
            .get(domain)
            .map(|(_, rpc)| rpc)
            .ok_or_else(|| CoordinatorError::NotFound { what: "domain", id: domain.to_owned() })
    }

    /// Loads the whole history from the store (at start-up) and makes sure every version's nodes
    /// are stored: a history written before nodes were stored gets them now, once. Replays in
    /// chunks, so neither the versions nor the nodes of a long history are all in memory at once.
    async fn load(&self) -> Result<usize, CoordinatorError> {
        let mut rest = self.store.smt_updates(0).await?;
        let count = rest.len();
        let backfill = match rest.last() {
            Some(u) => !self.store.has_smt_node(u.root).await?,
            None => false,
        };
        if backfill {
            tracing::info!(
                updates = count,
                "storing the tree nodes of a history written before nodes were stored"
            );
        }
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(LOAD_CHUNK));
            let chunk = std::mem::replace(&mut rest, tail);
            let (tree, seq) = {
                let h = self.read();
                (h.tree.clone(), h.seq)
            };
            let (built, nodes) = tokio::task::spawn_blocking(move || {
                let mut nodes = Vec::new();
                let built = build(tree, seq, chunk, backfill.then_some(&mut nodes))?;
                Ok::<_, CoordinatorError>((built, nodes))
            })
            .await
            .map_err(|e| CoordinatorError::Internal(format!("history replay failed: {e}")))??;
            if backfill {
                self.store.put_smt_nodes(nodes).await?;
            }
            self.write().push_built(built)?;
        }
        Ok(count)
    }
}

/// Why a domain operation failed.
fn eth_error(domain: &str, e: &EthError) -> CoordinatorError {
    CoordinatorError::invalid("domain_rpc", format!("{domain}: {e}"))
}

impl Coordinator {
    /// The coprocessor root new tasks are pinned to: the root of the newest tree.
    pub fn current_root(&self) -> Root {
        self.domains.read().tree.root()
    }

    /// Whether `root` is a root the service has had. On a shared store a root this replica has
    /// not seen yet is looked up in the store's history first.
    pub async fn is_known_root(&self, root: &Root) -> Result<bool, CoordinatorError> {
        self.domains.is_known(root).await
    }

    /// Where `root` sits in the history, if the service has had it.
    pub async fn root_info(&self, root: &Root) -> Result<Option<RootInfo>, CoordinatorError> {
        if !self.domains.is_known(root).await? {
            return Ok(None);
        }
        let h = self.domains.read();
        let Some(&seq) = h.roots.get(root) else { return Ok(None) };
        let block = seq.checked_sub(1).and_then(|i| h.updates.get(i as usize)).map(block_info);
        let mut names: Vec<&String> = h.heads.keys().collect();
        names.sort();
        let domains = names.into_iter().filter_map(|d| h.latest_at(d, seq)).map(block_info).collect();
        Ok(Some(RootInfo { root: hex::encode(root), seq, block, domains }))
    }

    /// The current root and the newest block of every domain.
    pub fn root_summary(&self) -> (RootInfo, Vec<BlockInfo>) {
        let h = self.domains.read();
        let root = h.tree.root();
        let block = h.seq.checked_sub(1).and_then(|i| h.updates.get(i as usize)).map(block_info);
        let mut names: Vec<&String> = self.domains.configs.keys().chain(h.heads.keys()).collect();
        names.sort();
        names.dedup();
        let heads: Vec<BlockInfo> = names.into_iter().filter_map(|d| h.head(d)).map(block_info).collect();
        (RootInfo { root: hex::encode(root), seq: h.seq, block, domains: heads.clone() }, heads)
    }

    /// The configured domain names.
    pub fn domain_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.domains.configs.keys().cloned().collect();
        names.sort();
        names
    }

    /// The newest block of `domain` under `root` (default: the current root).
    pub async fn latest_block(
        &self,
        domain: &str,
        root: Option<&Root>,
    ) -> Result<BlockInfo, CoordinatorError> {
        self.domains.latest_block(domain, root).await
    }

    /// The opening of block `number` of `domain` under `root` (default: the current root):
    /// membership if it was inserted by then, non-membership otherwise. O(tree depth) under any
    /// root the service has had.
    pub async fn opening(
        &self,
        domain: &str,
        number: u64,
        root: Option<&Root>,
    ) -> Result<BlockOpening, CoordinatorError> {
        self.domains.opening(domain, number, root).await
    }

    /// What controllers of a call pinned to any root may read through the `domain` import.
    pub(crate) fn domain_host(&self) -> Option<Arc<dyn DomainHost>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        Some(Arc::new(DomainAccess { domains: self.domains.clone(), handle }))
    }

    /// Loads the tree's history from the store, checks each domain's checkpoint against it and
    /// starts a follower per configured domain.
    pub async fn spawn_domains(self: &Arc<Self>) -> Result<Vec<JoinHandle<()>>, CoordinatorError> {
        let count = self.domains.load().await?;
        tracing::info!(updates = count, root = %hex::encode(self.current_root()), "coprocessor root loaded");
        let mut handles = Vec::new();
        for (config, _) in self.domains.configs.values() {
            if let Some((number, hash)) = config.checkpoint {
                let stored = {
                    let h = self.domains.read();
                    let key = zkcoproc_smt::key::<Sha2>(&config.name, number);
                    let first = h.heads.get(&config.name).and_then(|v| v.first()).map(|(_, n)| *n);
                    (h.tree.get(&key), first)
                };
                match stored {
                    (Some(c), _) if c.block_hash != hash => {
                        return Err(CoordinatorError::invalid(
                            "checkpoint_conflict",
                            format!(
                                "{}: checkpoint {number}:0x{} conflicts with stored block 0x{}",
                                config.name,
                                hex::encode(hash),
                                hex::encode(c.block_hash)
                            ),
                        ))
                    }
                    (None, Some(first)) => tracing::warn!(
                        domain = %config.name, checkpoint = number, first_stored = first,
                        "checkpoint is outside the stored history; following on from the stored blocks"
                    ),
                    _ => {}
                }
            }
            let this = self.clone();
            let name = config.name.clone();
            if config.light_client.is_some() {
                // A node on another chain is refused now; one that cannot be reached yet is
                // checked by the follower before it follows.
                self.check_light_client_nodes(&name).await?;
                handles.push(tokio::spawn(async move { this.follow_light_client(name).await }));
            } else {
                handles.push(tokio::spawn(async move { this.follow(name).await }));
            }
        }
        if self.store.shared() {
            let this = self.clone();
            handles.push(tokio::spawn(async move { this.sync_history().await }));
        }
        Ok(handles)
    }

    /// On a shared store, other replicas append blocks too: every second, apply what they
    /// appended, so this replica's root (pinned by new tasks, served by `/v1/root`) keeps up.
    async fn sync_history(self: Arc<Self>) {
        let mut warned = false;
        loop {
            tokio::time::sleep(HISTORY_SYNC_INTERVAL).await;
            match self.domains.catch_up().await {
                Ok(()) => warned = false,
                Err(e) if !warned => {
                    warned = true;
                    tracing::error!(error = %e, "cannot read the tree's history from the store; retrying");
                }
                Err(_) => {}
            }
        }
    }

    async fn follow(self: Arc<Self>, domain: String) {
        let Some((config, rpc)) = self.domains.configs.get(&domain) else { return };
        let mut warned = false;
        loop {
            let step = self.follow_once(config, rpc).await;
            self.set_stall(&domain, step.as_ref().err());
            match step {
                Ok(inserted) => {
                    warned = false;
                    if inserted > 0 {
                        // More may be waiting: go on at once.
                        continue;
                    }
                }
                Err(e) => {
                    if !warned {
                        tracing::error!(domain = %domain, error = %e, "cannot follow the chain; retrying");
                    } else {
                        tracing::debug!(domain = %domain, error = %e, "still cannot follow the chain");
                    }
                    warned = true;
                }
            }
            tokio::time::sleep(config.poll_interval).await;
        }
    }

    /// One step of following: inserts up to a batch of confirmed headers. Returns how many.
    async fn follow_once(&self, config: &DomainConfig, rpc: &RpcClient) -> Result<usize, CoordinatorError> {
        let domain = &config.name;
        let node_head = rpc.block_number().await.map_err(|e| eth_error(domain, &e))?;
        let confirmed = node_head.saturating_sub(config.confirmations);
        let head = self.domains.read().head(domain).map(|u| u.number);
        let headers = match head {
            None => {
                let (number, expected) = match config.checkpoint {
                    Some((n, h)) => (n, Some(h)),
                    None => (confirmed, None),
                };
                if number > confirmed {
                    return Ok(0);
                }
                let header = rpc.header(number).await.map_err(|e| eth_error(domain, &e))?;
                match expected {
                    Some(h) if header.hash.0 != h => {
                        return Err(CoordinatorError::invalid(
                            "checkpoint_mismatch",
                            format!(
                                "{domain}: node's block {number} is {}, not the checkpoint 0x{}",
                                header.hash,
                                hex::encode(h)
                            ),
                        ))
                    }
                    Some(_) => {}
                    None => tracing::warn!(
                        domain = %domain, number, hash = %header.hash,
                        "no --checkpoint: trusting the node's block at start-up as the checkpoint"
                    ),
                }
                vec![header]
            }
            Some(head) if head < confirmed => {
                let count = usize::try_from(confirmed - head).unwrap_or(usize::MAX);
                rpc.headers(head + 1, count).await.map_err(|e| eth_error(domain, &e))?
            }
            Some(_) => return Ok(0),
        };
        let n = headers.len();
        self.append_headers(domain, headers, Some(Admission::Rpc)).await?;
        Ok(n)
    }

    /// Checks and inserts headers of `domain` (the follower's, or a feeder's). The first must
    /// follow the newest inserted block, or, for a domain with no block yet, be its first block.
    /// Headers already inserted with the same hash are skipped (a feeder may resend).
    pub(crate) async fn append_headers(
        &self,
        domain: &str,
        headers: Vec<CheckedHeader>,
        follower: Option<Admission>,
    ) -> Result<AppendOutcome, CoordinatorError> {
        let from_follower = follower.is_some();
        let admission = follower.unwrap_or(Admission::Rpc);
        let _guard = self.domains.append.lock().await;
        if self.store.shared() {
            // Build on what the other replicas appended, not on a stale tree.
            self.domains.catch_up().await?;
        }
        let (mut tree, prev_root, base_seq, head) = {
            let h = self.domains.read();
            (h.tree.clone(), h.tree.root(), h.seq, h.head(domain).cloned())
        };
        let mut parent: Option<(u64, [u8; 32])> = head.as_ref().map(|u| (u.number, u.block_hash));
        // A domain's first block must be its checkpoint, when one is configured.
        let checkpoint = self.domains.configs.get(domain).and_then(|(c, _)| c.checkpoint);
        if let (None, Some((number, hash)), Some(first)) = (&parent, checkpoint, headers.first()) {
            if first.number != number || first.hash.0 != hash {
                return Err(CoordinatorError::invalid(
                    "unlinked_header",
                    format!(
                        "{domain} has no block yet: the first must be the checkpoint {number}:0x{}, not {}:{}",
                        hex::encode(hash),
                        first.number,
                        first.hash
                    ),
                ));
            }
        }
        let mut blocks = Vec::new();
        let mut skipped = 0;
        for header in headers {
            let key = zkcoproc_smt::key::<Sha2>(domain, header.number);
            if let Some(existing) = tree.get(&key) {
                if existing.block_hash != header.hash.0 {
                    return Err(CoordinatorError::invalid(
                        "conflicting_block",
                        format!(
                            "{domain} block {} is already inserted as 0x{}, not {}",
                            header.number,
                            hex::encode(existing.block_hash),
                            header.hash
                        ),
                    ));
                }
                skipped += 1;
                continue;
            }
            if let Some((number, hash)) = parent {
                if header.number != number + 1 || header.parent_hash.0 != hash {
                    let e = EthError::Unlinked {
                        number: header.number,
                        parent_hash: header.parent_hash,
                        expected: hash.into(),
                    };
                    if from_follower {
                        tracing::error!(domain, error = %e, "rejected a header that does not link (reorg deeper than the confirmations?)");
                    }
                    return Err(CoordinatorError::invalid("unlinked_header", format!("{domain}: {e}")));
                }
            }
            let value = BlockCommitment { block_hash: header.hash.0, state_root: header.state_root.0 };
            tree = tree.insert(key, value);
            parent = Some((header.number, header.hash.0));
            let nodes = tree.path_rows(&key);
            blocks.push((
                NewBlock {
                    number: header.number,
                    block_hash: header.hash.0,
                    state_root: header.state_root.0,
                    header: header.rlp,
                    root: tree.root(),
                    nodes,
                    admission,
                },
                tree.clone(),
            ));
        }
        if blocks.is_empty() {
            return Ok(AppendOutcome { inserted: 0, skipped });
        }
        let new_blocks: Vec<NewBlock> = blocks.iter().map(|(b, _)| b.clone()).collect();
        if !self.store.append_blocks(domain, prev_root, new_blocks).await? {
            // Another writer appended first (a replica sharing the store): reload and let the
            // caller retry.
            self.domains.catch_up().await?;
            return Err(CoordinatorError::invalid("smt_conflict", "the tree moved on concurrently; retry"));
        }
        let inserted = blocks.len();
        // Another task may have synced these very updates from the store already (a reader's
        // catch-up on a shared store): pushing them by their seq skips what is there.
        let keep_from = blocks.len().saturating_sub(RECENT_VERSIONS);
        let mut built = Vec::with_capacity(blocks.len());
        let mut prev = prev_root;
        for (i, (b, tree)) in blocks.into_iter().enumerate() {
            let update = SmtUpdate {
                seq: base_seq + 1 + i as u64,
                domain: domain.to_owned(),
                number: b.number,
                block_hash: b.block_hash,
                state_root: b.state_root,
                prev_root: prev,
                root: b.root,
                admission: b.admission,
            };
            prev = b.root;
            built.push((update, (i >= keep_from).then_some(tree)));
        }
        let mut h = self.domains.write();
        h.push_built(built)?;
        tracing::info!(domain, inserted, head = ?parent.map(|(n, _)| n), root = %hex::encode(h.tree.root()), "blocks inserted");
        self.metrics.blocks_inserted(domain, inserted as u64);
        Ok(AppendOutcome { inserted, skipped })
    }

    /// Inserts headers an authenticated feeder posted (RLP-encoded).
    pub async fn feed_headers(
        &self,
        domain: &str,
        rlp_headers: Vec<Vec<u8>>,
    ) -> Result<AppendOutcome, CoordinatorError> {
        let Some((config, _)) = self.domains.configs.get(domain) else {
            return Err(CoordinatorError::NotFound { what: "domain", id: domain.to_owned() });
        };
        if config.light_client.is_some() {
            return Err(CoordinatorError::invalid(
                "light_client_domain",
                format!("{domain}'s blocks are admitted by its light client only: fed headers are refused"),
            ));
        }
        let mut headers = Vec::with_capacity(rlp_headers.len());
        for (i, rlp) in rlp_headers.iter().enumerate() {
            let h = CheckedHeader::decode_rlp(rlp)
                .map_err(|e| CoordinatorError::invalid("bad_header", format!("header {i}: {e}")))?;
            headers.push(h);
        }
        self.append_headers(domain, headers, None).await
    }

    /// Attaches, to every state proof and EVM call in `witnesses`, the block's header and the SMT
    /// opening of (domain, block) under `root`. Whatever the controller put there is replaced.
    pub(crate) async fn attach_openings(
        &self,
        root: &Root,
        witnesses: &mut [Witness],
    ) -> Result<(), CoordinatorError> {
        for (i, w) in witnesses.iter_mut().enumerate() {
            let (domain, block, header, opening) = match w {
                Witness::Data(_) => continue,
                Witness::StateProof(sp) => (&sp.domain, sp.block, &mut sp.header, &mut sp.opening),
                Witness::EvmCall(call) => (&call.domain, call.block, &mut call.header, &mut call.opening),
            };
            let opened = self.opening(domain, block, Some(root)).await?;
            if opened.value.is_none() {
                let latest = self.latest_block(domain, Some(root)).await.map(|b| b.number).ok();
                return Err(CoordinatorError::invalid(
                    "block_not_under_root",
                    format!(
                        "witness {i}: block {block} of {domain} is not under the task's root {} (newest block under it: {})",
                        hex::encode(root),
                        latest.map_or_else(|| "none".to_owned(), |n| n.to_string())
                    ),
                ));
            }
            *header = self.domains.stored_header(domain, block).await?;
            *opening = Some(opened.opening);
        }
        Ok(())
    }
}

/// The `domain` import of controllers, backed by the service's domains. Controllers run on
/// blocking threads, so the calls block on the service's runtime.
#[derive(Debug)]
pub(crate) struct DomainAccess {
    domains: Arc<Domains>,
    handle: tokio::runtime::Handle,
}

/// A domain operation's error as the controller (and, if it gives up, the task) sees it.
fn host_error(e: CoordinatorError) -> HostError {
    match e {
        CoordinatorError::Invalid { code, message } => HostError { code: code.to_owned(), message },
        CoordinatorError::NotFound { what: "domain", id } => HostError {
            code: "unknown_domain".into(),
            message: format!("domain `{id}` is not followed by this service"),
        },
        other => HostError { code: "internal".into(), message: other.to_string() },
    }
}

impl DomainHost for DomainAccess {
    fn latest(&self, domain: &str, root: &Root) -> Result<u64, HostError> {
        self.handle
            .block_on(self.domains.latest_block(domain, Some(root)))
            .map(|b| b.number)
            .map_err(host_error)
    }

    fn state_proof(
        &self,
        domain: &str,
        block: u64,
        address: [u8; 20],
        slots: &[[u8; 32]],
        root: &Root,
    ) -> Result<StateProof, HostError> {
        self.handle
            .block_on(self.domains.fetch_state_proof(root, domain, block, address, slots))
            .map_err(host_error)
    }

    fn evm_call(
        &self,
        domain: &str,
        block: u64,
        request: EvmRequest,
        root: &Root,
    ) -> Result<(EvmCall, usize), HostError> {
        self.handle.block_on(self.domains.evm_call(root, domain, block, request)).map_err(host_error)
    }
}

/// What an append did.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct AppendOutcome {
    /// blocks inserted
    pub inserted: usize,
    /// blocks that were already in the tree with the same hash
    pub skipped: usize,
}

fn unknown_root(root: &Root) -> CoordinatorError {
    CoordinatorError::invalid(
        "unknown_root",
        format!("root {} is not a root this service has had", hex::encode(root)),
    )
}
