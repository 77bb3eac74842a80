//! Domains (external chains) and the coprocessor root.
//!
//! The service follows each configured domain from a trusted checkpoint: it fetches headers over
//! JSON-RPC, recomputes each hash, checks each parent link, and only then inserts
//! `(domain, number) → (hash, state root)` into the sparse Merkle tree whose root is the
//! coprocessor root. Only blocks at least `confirmations` deep are inserted. An authenticated
//! feeder may post headers too; they pass the same checks.
//!
//! Every insert is appended to the store's history (the root before and after), so every root
//! the service has had stays known, and openings under an old root can be rebuilt from the
//! history (recent versions are kept in memory, sharing their nodes).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;
use zkcoproc_eth::{CheckedHeader, EthError, RpcClient};
use zkcoproc_runtime::DomainHost;
use zkcoproc_smt::{BlockCommitment, Opening, Sha2, Tree};
use zkcoproc_store::{NewBlock, SmtUpdate};
use zkcoproc_types::{Root, StateProof, Witness, EMPTY_ROOT};

use crate::{Coordinator, CoordinatorError};

/// Tree versions kept in memory for openings (older ones are rebuilt from the history).
const RECENT_VERSIONS: usize = 256;
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
}

#[derive(Default)]
struct History {
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

    /// Applies updates read from the store, checking that they chain and that replaying them
    /// gives the recorded roots.
    fn apply(&mut self, updates: Vec<SmtUpdate>) -> Result<(), CoordinatorError> {
        for u in updates {
            if u.seq != self.seq + 1 || u.prev_root != self.tree.root() {
                return Err(CoordinatorError::Internal(format!(
                    "smt history is broken at seq {} (expected seq {} on root {})",
                    u.seq,
                    self.seq + 1,
                    hex::encode(self.tree.root())
                )));
            }
            let key = zkcoproc_smt::key::<Sha2>(&u.domain, u.number);
            let tree =
                self.tree.insert(key, BlockCommitment { block_hash: u.block_hash, state_root: u.state_root });
            if tree.root() != u.root {
                return Err(CoordinatorError::Internal(format!(
                    "smt history: replaying seq {} gives root {}, stored {}",
                    u.seq,
                    hex::encode(tree.root()),
                    hex::encode(u.root)
                )));
            }
            self.push(u, tree);
        }
        Ok(())
    }

    fn push(&mut self, u: SmtUpdate, tree: Tree) {
        self.seq = u.seq;
        self.roots.insert(u.root, u.seq);
        self.heads.entry(u.domain.clone()).or_default().push((u.seq, u.number));
        self.recent.insert(u.seq, tree.clone());
        while self.recent.len() > RECENT_VERSIONS {
            self.recent.pop_first();
        }
        self.tree = tree;
        self.updates.push(u);
    }

    /// The tree as it was at `seq`.
    fn version(&self, seq: u64) -> Tree {
        if let Some(t) = self.recent.get(&seq) {
            return t.clone();
        }
        let mut tree = Tree::new();
        for u in self.updates.iter().take(seq as usize) {
            let key = zkcoproc_smt::key::<Sha2>(&u.domain, u.number);
            tree = tree.insert(key, BlockCommitment { block_hash: u.block_hash, state_root: u.state_root });
        }
        tree
    }

    /// The newest block of `domain` inserted at or before `seq`.
    fn latest_at(&self, domain: &str, seq: u64) -> Option<&SmtUpdate> {
        let inserts = self.heads.get(domain)?;
        let i = inserts.partition_point(|(s, _)| *s <= seq);
        let (s, _) = inserts.get(i.checked_sub(1)?)?;
        self.updates.get((*s - 1) as usize)
    }

    fn head(&self, domain: &str) -> Option<&SmtUpdate> {
        self.latest_at(domain, self.seq)
    }
}

fn block_info(u: &SmtUpdate) -> BlockInfo {
    BlockInfo {
        domain: u.domain.clone(),
        number: u.number,
        hash: format!("0x{}", hex::encode(u.block_hash)),
        state_root: format!("0x{}", hex::encode(u.state_root)),
    }
}

/// The domains and the tree's history.
pub(crate) struct Domains {
    configs: HashMap<String, (DomainConfig, RpcClient)>,
    history: RwLock<History>,
    /// serialises appends (follower loops and feeders)
    append: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Domains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.configs.keys().collect();
        names.sort();
        f.debug_struct("Domains").field("configured", &names).finish_non_exhaustive()
    }
}

impl Domains {
    pub(crate) fn empty() -> Self {
        Domains {
            configs: HashMap::new(),
            history: RwLock::new(History::new()),
            append: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn new(configs: Vec<DomainConfig>) -> Result<Self, CoordinatorError> {
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
        Ok(Domains {
            configs: map,
            history: RwLock::new(History::new()),
            append: tokio::sync::Mutex::new(()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, History> {
        // A panic while holding the lock cannot leave the history half-updated (updates are
        // computed first and pushed whole), so a poisoned lock is still consistent.
        self.history.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, History> {
        self.history.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest block of `domain` under `root` (default: the current root).
    pub(crate) fn latest_block(
        &self,
        domain: &str,
        root: Option<&Root>,
    ) -> Result<BlockInfo, CoordinatorError> {
        let h = self.read();
        let seq = match root {
            None => h.seq,
            Some(r) => *h.roots.get(r).ok_or_else(|| unknown_root(r))?,
        };
        if !self.configs.contains_key(domain) && !h.heads.contains_key(domain) {
            return Err(CoordinatorError::NotFound { what: "domain", id: domain.to_owned() });
        }
        h.latest_at(domain, seq).map(block_info).ok_or_else(|| {
            CoordinatorError::invalid("no_blocks", format!("no block of {domain} is under that root yet"))
        })
    }

    /// The opening of block `number` of `domain` under `root` (default: the current root):
    /// membership if it was inserted by then, non-membership otherwise.
    pub(crate) fn opening(
        &self,
        domain: &str,
        number: u64,
        root: Option<&Root>,
    ) -> Result<BlockOpening, CoordinatorError> {
        if !zkcoproc_smt::valid_domain(domain) {
            return Err(CoordinatorError::invalid("bad_domain", format!("invalid domain name {domain:?}")));
        }
        let tree = {
            let h = self.read();
            let seq = match root {
                None => h.seq,
                Some(r) => *h.roots.get(r).ok_or_else(|| unknown_root(r))?,
            };
            h.version(seq)
        };
        let key = zkcoproc_smt::key::<Sha2>(domain, number);
        let opening = tree.open(&key);
        Ok(BlockOpening { root: tree.root(), key, value: tree.get(&key), opening })
    }

    /// Fetches a state proof for a controller (blocking: runs on a controller thread). The block
    /// must be under `root`, so the witness can be opened under the task's root later.
    fn fetch_state_proof(
        &self,
        handle: &tokio::runtime::Handle,
        root: &Root,
        domain: &str,
        block: u64,
        address: [u8; 20],
        slots: &[[u8; 32]],
    ) -> Result<StateProof, CoordinatorError> {
        let rpc = self.rpc(domain)?;
        let latest = self.latest_block(domain, Some(root))?;
        if block > latest.number || self.opening(domain, block, Some(root))?.value.is_none() {
            return Err(CoordinatorError::invalid(
                "block_not_under_root",
                format!("block {block} of {domain} is not under the task's root (newest: {})", latest.number),
            ));
        }
        let mut proof =
            handle.block_on(rpc.get_proof(address, slots, block)).map_err(|e| eth_error(domain, &e))?;
        proof.domain = domain.to_owned();
        Ok(proof)
    }

    fn rpc(&self, domain: &str) -> Result<&RpcClient, CoordinatorError> {
        self.configs
            .get(domain)
            .map(|(_, rpc)| rpc)
            .ok_or_else(|| CoordinatorError::NotFound { what: "domain", id: domain.to_owned() })
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

    /// Whether `root` is a root the service has had.
    pub fn is_known_root(&self, root: &Root) -> bool {
        self.domains.read().roots.contains_key(root)
    }

    /// Where `root` sits in the history, if the service has had it.
    pub fn root_info(&self, root: &Root) -> Option<RootInfo> {
        let h = self.domains.read();
        let seq = *h.roots.get(root)?;
        let block = seq.checked_sub(1).and_then(|i| h.updates.get(i as usize)).map(block_info);
        Some(RootInfo { root: hex::encode(root), seq, block })
    }

    /// The current root and the newest block of every domain.
    pub fn root_summary(&self) -> (RootInfo, Vec<BlockInfo>) {
        let h = self.domains.read();
        let root = h.tree.root();
        let block = h.seq.checked_sub(1).and_then(|i| h.updates.get(i as usize)).map(block_info);
        let mut names: Vec<&String> = self.domains.configs.keys().chain(h.heads.keys()).collect();
        names.sort();
        names.dedup();
        let heads = names.into_iter().filter_map(|d| h.head(d)).map(block_info).collect();
        (RootInfo { root: hex::encode(root), seq: h.seq, block }, heads)
    }

    /// The configured domain names.
    pub fn domain_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.domains.configs.keys().cloned().collect();
        names.sort();
        names
    }

    /// The newest block of `domain` under `root` (default: the current root).
    pub fn latest_block(&self, domain: &str, root: Option<&Root>) -> Result<BlockInfo, CoordinatorError> {
        self.domains.latest_block(domain, root)
    }

    /// The opening of block `number` of `domain` under `root` (default: the current root):
    /// membership if it was inserted by then, non-membership otherwise.
    pub fn opening(
        &self,
        domain: &str,
        number: u64,
        root: Option<&Root>,
    ) -> Result<BlockOpening, CoordinatorError> {
        self.domains.opening(domain, number, root)
    }

    /// What controllers of a call pinned to any root may read through the `domain` import.
    pub(crate) fn domain_host(&self) -> Option<Arc<dyn DomainHost>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        Some(Arc::new(DomainAccess { domains: self.domains.clone(), handle }))
    }

    /// Loads the tree's history from the store, checks each domain's checkpoint against it and
    /// starts a follower per configured domain.
    pub async fn spawn_domains(self: &Arc<Self>) -> Result<Vec<JoinHandle<()>>, CoordinatorError> {
        let updates = self.store.smt_updates(0).await?;
        let count = updates.len();
        self.domains.write().apply(updates)?;
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
            handles.push(tokio::spawn(async move { this.follow(name).await }));
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
            let _guard = self.domains.append.lock().await;
            match self.catch_up().await {
                Ok(()) => warned = false,
                Err(e) if !warned => {
                    warned = true;
                    tracing::error!(error = %e, "cannot read the tree's history from the store; retrying");
                }
                Err(_) => {}
            }
        }
    }

    /// Applies the history the store has beyond this process's tree. Callers hold the append lock.
    async fn catch_up(&self) -> Result<(), CoordinatorError> {
        let after = self.domains.read().seq;
        let updates = self.store.smt_updates(after).await?;
        if !updates.is_empty() {
            let n = updates.len();
            self.domains.write().apply(updates)?;
            tracing::debug!(updates = n, root = %hex::encode(self.current_root()), "history caught up");
        }
        Ok(())
    }

    async fn follow(self: Arc<Self>, domain: String) {
        let Some((config, rpc)) = self.domains.configs.get(&domain) else { return };
        let mut warned = false;
        loop {
            match self.follow_once(config, rpc).await {
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
        self.append_headers(domain, headers, true).await?;
        Ok(n)
    }

    /// Checks and inserts headers of `domain` (the follower's, or a feeder's). The first must
    /// follow the newest inserted block, or, for a domain with no block yet, be its first block.
    /// Headers already inserted with the same hash are skipped (a feeder may resend).
    pub(crate) async fn append_headers(
        &self,
        domain: &str,
        headers: Vec<CheckedHeader>,
        from_follower: bool,
    ) -> Result<AppendOutcome, CoordinatorError> {
        let _guard = self.domains.append.lock().await;
        if self.store.shared() {
            // Build on what the other replicas appended, not on a stale tree.
            self.catch_up().await?;
        }
        let (mut tree, prev_root, head) = {
            let h = self.domains.read();
            (h.tree.clone(), h.tree.root(), h.head(domain).cloned())
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
            blocks.push((
                NewBlock {
                    number: header.number,
                    block_hash: header.hash.0,
                    state_root: header.state_root.0,
                    header: header.rlp,
                    root: tree.root(),
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
            self.catch_up().await?;
            return Err(CoordinatorError::invalid("smt_conflict", "the tree moved on concurrently; retry"));
        }
        let inserted = blocks.len();
        let mut h = self.domains.write();
        for (b, tree) in blocks {
            let update = SmtUpdate {
                seq: h.seq + 1,
                domain: domain.to_owned(),
                number: b.number,
                block_hash: b.block_hash,
                state_root: b.state_root,
                prev_root: h.tree.root(),
                root: b.root,
            };
            h.push(update, tree);
        }
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
        if !self.domains.configs.contains_key(domain) {
            return Err(CoordinatorError::NotFound { what: "domain", id: domain.to_owned() });
        }
        let mut headers = Vec::with_capacity(rlp_headers.len());
        for (i, rlp) in rlp_headers.iter().enumerate() {
            let h = CheckedHeader::decode_rlp(rlp)
                .map_err(|e| CoordinatorError::invalid("bad_header", format!("header {i}: {e}")))?;
            headers.push(h);
        }
        self.append_headers(domain, headers, false).await
    }

    /// Attaches, to every state proof in `witnesses`, the block's header and the SMT opening of
    /// (domain, block) under `root`. Whatever the controller put there is replaced.
    pub(crate) async fn attach_openings(
        &self,
        root: &Root,
        witnesses: &mut [Witness],
    ) -> Result<(), CoordinatorError> {
        for (i, w) in witnesses.iter_mut().enumerate() {
            let Witness::StateProof(sp) = w else { continue };
            let opened = self.opening(&sp.domain, sp.block, Some(root))?;
            if opened.value.is_none() {
                let latest = self.latest_block(&sp.domain, Some(root)).map(|b| b.number).ok();
                return Err(CoordinatorError::invalid(
                    "block_not_under_root",
                    format!(
                        "witness {i}: block {} of {} is not under the task's root {} (newest block under it: {})",
                        sp.block,
                        sp.domain,
                        hex::encode(root),
                        latest.map_or_else(|| "none".to_owned(), |n| n.to_string())
                    ),
                ));
            }
            let header = self.store.block_header(&sp.domain, sp.block).await?.ok_or_else(|| {
                CoordinatorError::Internal(format!(
                    "{} block {} is in the tree but has no header",
                    sp.domain, sp.block
                ))
            })?;
            sp.header = header;
            sp.opening = Some(opened.opening);
        }
        Ok(())
    }
}

/// The `domain` import of controllers, backed by the service's domains.
#[derive(Debug)]
pub(crate) struct DomainAccess {
    domains: Arc<Domains>,
    handle: tokio::runtime::Handle,
}

impl DomainHost for DomainAccess {
    fn latest(&self, domain: &str, root: &Root) -> Result<u64, String> {
        self.domains.latest_block(domain, Some(root)).map(|b| b.number).map_err(|e| e.to_string())
    }

    fn state_proof(
        &self,
        domain: &str,
        block: u64,
        address: [u8; 20],
        slots: &[[u8; 32]],
        root: &Root,
    ) -> Result<StateProof, String> {
        self.domains
            .fetch_state_proof(&self.handle, root, domain, block, address, slots)
            .map_err(|e| e.to_string())
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
