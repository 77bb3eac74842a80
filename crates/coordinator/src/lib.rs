//! The zkcoproc coordinator: deploys programs and drives tasks through their stages.
//!
//! A task moves `queued → witnessing → proving → verifying → delivering → done` (or `failed`),
//! and every move is one committed store transition, so the service can be killed at any
//! point and resumes each task from its last committed stage. Runners claim tasks with a lease
//! for the controller stages; a task claimed more than [`Config::max_claims`] times in one stage
//! without progress (say, a controller that crashes the process every time) fails instead of
//! looping. Proving goes through prover leases (see `proving`), the same for in-process provers
//! and remote workers; every receipt is verified against the circuit's image id, and its journal
//! must start with the root the task was pinned to, before it is accepted.
//!
//! Not for HTTP (see `zkcoproc-api`) nor for running wasm or proving (see `zkcoproc-runtime` and
//! `zkcoproc-zkvm`): this crate wires them together through their traits.
//!
//! Start from [`Coordinator::new`], [`Coordinator::deploy`], [`Coordinator::submit`] and
//! [`Coordinator::spawn_runners`].

mod domains;
pub mod fair;
mod light_client;
mod metrics;
mod proving;
mod runner;
mod volume;

pub use domains::{AppendOutcome, BlockInfo, BlockOpening, DomainConfig, RootInfo};
pub use light_client::{DomainStatus, LightClientConfig, LightClientView, Stall};
pub use proving::{default_lease_lifetime, ProofVerdict, LOCAL_PREFIX};
pub use volume::{VolumeExport, EXPORT_PIN_LIFETIME};

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use zkcoproc_runtime::{CallContext, LogLine, Runtime, RuntimeError};
use zkcoproc_store::{
    CancelOutcome, Idempotency, Inserted, NewProgram, NewTask, ProgramInfo, Store, StoreError, TaskRecord,
};
use zkcoproc_types::{Root, Witness};
use zkcoproc_vfs::{Entry, VfsError};
use zkcoproc_zkvm::{CircuitImage, ImageId, Prover, ReceiptKind, Verifier, ZkvmError};

/// Domain separator of program ids (versioned: a new layout gets a new tag).
const PROGRAM_ID_DOMAIN: &[u8] = b"zkcoproc/program-id/v1";

/// Coordinator settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// In-process runners of the controller stages (tasks witnessed or delivered concurrently).
    pub runners: usize,
    /// In-process provers (each leases proving tasks like a remote worker).
    pub provers: usize,
    /// How long a runner's claim lasts without renewal.
    pub lease: Duration,
    /// How long a prover lease lasts without renewal (provers renew every third of it).
    pub prover_lease: Duration,
    /// Proving attempts of one task before it fails with `prover_failed`.
    pub max_attempts: u32,
    /// Runner claims of one task in one stage before it fails with `too_many_attempts`: a task
    /// whose stage keeps killing the process. Every claim after the first follows a crash (or a
    /// lost lease), so this is the crash allowance of the controller stages.
    pub max_claims: u32,
    /// How often idle runners look for expired leases even when not notified.
    pub poll_interval: Duration,
    /// Loaded circuit images kept in memory (least recently used are dropped and reloaded from
    /// the store when needed).
    pub cached_circuits: usize,
    /// Size of a program's FAT-16 volume when its deploy does not ask for one (formatted on
    /// first use).
    pub volume_size: u64,
    /// Largest volume a deploy may ask for.
    pub max_volume_size: u64,
    /// Controller calls of task stages running at once (each holds a blocking thread and a
    /// core); dry runs have a pool of this size of their own.
    pub controller_concurrency: usize,
    /// Cap on a circuit's user cycles in the preflight execution.
    pub max_cycles: u64,
    /// Unfinished tasks one identity may have at once (submits beyond it get `too_many_tasks`).
    pub max_unfinished_per_identity: u64,
    /// Longest a prover lease may be renewed for, whatever the task; `None`: a generous multiple
    /// of the task's cycle count (see [`proving::default_lease_lifetime`]).
    pub prover_max_lease: Option<Duration>,
    /// Consecutive failed leases after which a remote worker is quarantined.
    pub quarantine_after: u32,
    /// How long a quarantine lasts (from the newest failed lease).
    pub quarantine: Duration,
    /// How long finished tasks keep their circuit input and receipt; `None`: forever.
    pub retention: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            runners: 2,
            provers: 1,
            lease: Duration::from_secs(60),
            prover_lease: Duration::from_secs(60),
            max_attempts: 3,
            max_claims: zkcoproc_store::MAX_CRASHES,
            poll_interval: Duration::from_millis(500),
            cached_circuits: 64,
            volume_size: zkcoproc_vfs::DEFAULT_SIZE,
            max_volume_size: zkcoproc_vfs::MAX_SIZE,
            controller_concurrency: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            max_cycles: zkcoproc_zkvm::DEFAULT_MAX_CYCLES,
            max_unfinished_per_identity: 1_000,
            prover_max_lease: None,
            quarantine_after: 3,
            quarantine: Duration::from_secs(600),
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// Why a coordinator operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// A program or task does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// "program" or "task"
        what: &'static str,
        /// the id asked for
        id: String,
    },
    /// The request is invalid; `code` says how.
    #[error("{message}")]
    Invalid {
        /// stable machine-readable code
        code: &'static str,
        /// explanation
        message: String,
    },
    /// A controller call of a dry run failed.
    #[error("{error}")]
    Controller {
        /// the sandbox's error
        error: RuntimeError,
        /// the controller's logs up to the failure
        logs: Vec<LogLine>,
    },
    /// A filesystem request failed.
    #[error(transparent)]
    Vfs(#[from] VfsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A limit of the caller's was reached; try again after `retry_after`.
    #[error("{message}")]
    TooMany {
        /// stable machine-readable code
        code: &'static str,
        /// explanation
        message: String,
        /// when trying again makes sense
        retry_after: Duration,
    },
    /// A bug or host resource failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoordinatorError {
    fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        CoordinatorError::Invalid { code, message: message.into() }
    }
}

/// What a proof request names besides its program, arguments and root.
#[derive(Clone, Copy, Debug, Default)]
pub struct SubmitOptions<'a> {
    /// receipt kind asked for (default: what the prover makes)
    pub receipt_kind: Option<&'a str>,
    /// the request's `Idempotency-Key`
    pub idempotency_key: Option<&'a str>,
    /// the identity submitting (`None` on an open service)
    pub submitter: Option<&'a str>,
    /// where to POST the task when it finishes (default: the program's)
    pub callback_url: Option<&'a str>,
}

/// Result of a deploy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deployed {
    /// content-addressed program id (hex)
    pub program_id: String,
    /// the circuit's image id (hex)
    pub image_id: String,
    /// false when the same program was deployed before
    pub created: bool,
    /// the secret that signs the program's webhooks, told once: to the deploy that set it (the
    /// first, or the owner's first since webhooks exist)
    pub webhook_secret: Option<String>,
}

/// Result of a dry run of `get-witnesses`.
#[derive(Clone, Debug)]
pub struct DryRun {
    /// the witnesses, in order
    pub witnesses: Vec<Witness>,
    /// the circuit input they make, encoded
    pub input_len: usize,
    /// the controller's logs
    pub logs: Vec<LogLine>,
}

/// A fresh webhook secret: 32 bytes from the operating system's generator, as 64 hex digits (the
/// HMAC key is those digits' ASCII bytes).
fn webhook_secret() -> Result<String, CoordinatorError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| CoordinatorError::Internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Program id: SHA-256 over a domain tag, the controller's length and bytes, and the image id.
pub fn program_id(controller: &[u8], image_id: &ImageId) -> String {
    let mut h = Sha256::new();
    h.update(PROGRAM_ID_DOMAIN);
    h.update((controller.len() as u64).to_le_bytes());
    h.update(controller);
    h.update(image_id.0);
    hex::encode(h.finalize())
}

/// Drives deploys and tasks. Share it behind an `Arc`.
pub struct Coordinator {
    store: Arc<dyn Store>,
    runtime: Arc<Runtime>,
    prover: Arc<dyn Prover>,
    verifier: Verifier,
    config: Config,
    circuits: Mutex<lru::LruCache<String, CircuitImage>>,
    volume_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// controller calls of task stages running at once
    controller_slots: tokio::sync::Semaphore,
    /// dry runs' controller calls running at once: a pool of their own, so that dry runs (of a
    /// controller that sleeps until its deadline, say) never keep task stages waiting, shared
    /// fairly between callers (a freed slot goes to the waiting caller that holds fewest)
    dry_run_slots: fair::FairSlots,
    wake: Notify,
    /// tasks whose delivery this process claimed as it accepted their proofs, for its runners
    /// (see [`Coordinator::submit_proof`])
    handed: runner::Handed,
    /// in-process provers waiting for work, for runners to lease tasks to as they enter proving
    idle_provers: proving::IdleProvers,
    provable: Notify,
    changes: tokio::sync::broadcast::Sender<String>,
    metrics: metrics::Metrics,
    domains: Arc<domains::Domains>,
    workers: proving::WorkerBook,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("prover", &self.prover.name())
            .field("dev_mode", &self.verifier.dev_mode())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// A coordinator over `store`, running controllers in `runtime`, proving with `prover` and
    /// verifying with `verifier`.
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Arc<Runtime>,
        prover: Arc<dyn Prover>,
        verifier: Verifier,
        config: Config,
    ) -> Self {
        let circuits = NonZeroUsize::new(config.cached_circuits).unwrap_or(NonZeroUsize::MIN);
        let slots = config.controller_concurrency.max(1);
        Coordinator {
            domains: Arc::new(domains::Domains::empty(store.clone())),
            store,
            runtime,
            prover,
            verifier,
            config,
            circuits: Mutex::new(lru::LruCache::new(circuits)),
            volume_locks: Mutex::new(HashMap::new()),
            controller_slots: tokio::sync::Semaphore::new(slots),
            dry_run_slots: fair::FairSlots::new(slots),
            wake: Notify::new(),
            handed: runner::Handed::default(),
            idle_provers: proving::IdleProvers::default(),
            provable: Notify::new(),
            changes: tokio::sync::broadcast::channel(1024).0,
            metrics: metrics::Metrics::new(),
            workers: proving::WorkerBook::default(),
        }
    }

    /// This coordinator, following `domains` (started by [`Coordinator::spawn_domains`]).
    pub fn with_domains(mut self, domains: Vec<DomainConfig>) -> Result<Self, CoordinatorError> {
        self.domains = Arc::new(domains::Domains::new(domains, self.store.clone())?);
        Ok(self)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The verifier (dev mode or not).
    pub fn verifier(&self) -> Verifier {
        self.verifier
    }

    /// The kind of receipt this service's tasks need (fake for a dev service).
    pub fn receipt_kind(&self) -> ReceiptKind {
        self.prover.receipt_kind()
    }

    /// A task's proving attempts, oldest first.
    pub async fn prover_attempts(
        &self,
        task_id: &str,
    ) -> Result<Vec<zkcoproc_store::ProverAttempt>, CoordinatorError> {
        Ok(self.store.prover_attempts(task_id).await?)
    }

    /// The worker a prover lease was issued to, if that lease belongs to that task.
    pub async fn lease_worker(
        &self,
        task_id: &str,
        lease_id: &str,
    ) -> Result<Option<String>, CoordinatorError> {
        let attempts = self.store.prover_attempts(task_id).await?;
        Ok(attempts.into_iter().find(|a| a.lease_id == lease_id).map(|a| a.worker))
    }

    /// The prover's name (`cpu` or `dev`).
    pub fn prover_name(&self) -> &'static str {
        self.prover.name()
    }

    /// Validates and stores a program. Idempotent: the same pair gives the same id. `owner` is
    /// the deploying identity (`None` on an open service); `volume_size` the size of its volume
    /// in bytes (`None`: [`Config::volume_size`]). Only the first deploy sets either.
    pub async fn deploy(
        &self,
        controller: Vec<u8>,
        circuit: Vec<u8>,
        owner: Option<&str>,
        volume_size: Option<u64>,
        callback_url: Option<String>,
    ) -> Result<Deployed, CoordinatorError> {
        let volume_size = volume_size.unwrap_or(self.config.volume_size);
        let max = self.config.max_volume_size;
        if !(zkcoproc_vfs::MIN_SIZE..=max).contains(&volume_size) || !volume_size.is_multiple_of(1 << 20) {
            return Err(CoordinatorError::invalid(
                "bad_volume_size",
                format!(
                    "volume size {volume_size} bytes: a whole number of MiB from {} to {} (this service's maximum)",
                    zkcoproc_vfs::MIN_SIZE >> 20,
                    max >> 20
                ),
            ));
        }
        let runtime = self.runtime.clone();
        let (id, controller, image) = blocking(move || {
            let image = CircuitImage::load(&circuit)
                .map_err(|e| CoordinatorError::invalid("invalid_circuit", e.to_string()))?;
            let id = program_id(&controller, &image.image_id());
            // Validates (compiles, type-checks the world) and warms the cache for the first task.
            runtime
                .prepare(&id, &controller)
                .map_err(|e| CoordinatorError::invalid("invalid_controller", e.to_string()))?;
            Ok((id, controller, image))
        })
        .await?;
        let image_id = image.image_id();
        let created = self
            .store
            .put_program(NewProgram {
                id: id.clone(),
                image_id: image_id.to_string(),
                controller,
                // Stored as the program binary the prover loads (a bare ELF was wrapped).
                circuit: image.binary().to_vec(),
                owner: owner.map(str::to_owned),
                volume_size,
                callback_url,
            })
            .await?;
        // A program deployed before webhooks existed gets its secret on its owner's next deploy.
        let may_claim = created || {
            let first = self.program(&id).await?.owner;
            first.is_none() || first.as_deref() == owner
        };
        let fresh = webhook_secret()?;
        let claimed = may_claim && self.store.claim_webhook_secret(&id, &fresh).await?;
        let webhook_secret = if claimed { Some(fresh) } else { None };
        if let Ok(mut circuits) = self.circuits.lock() {
            circuits.put(id.clone(), image);
        }
        tracing::info!(program = %id, image_id = %image_id, created, "program deployed");
        Ok(Deployed { program_id: id, image_id: image_id.to_string(), created, webhook_secret })
    }

    /// A program's metadata.
    pub async fn program(&self, id: &str) -> Result<ProgramInfo, CoordinatorError> {
        self.store
            .program(id)
            .await?
            .ok_or_else(|| CoordinatorError::NotFound { what: "program", id: id.to_owned() })
    }

    /// Gives a program a new webhook secret (32 random bytes, hex) and returns it: deliveries
    /// from now on, retries of earlier ones included, are signed with it. Who may ask is the
    /// API's concern (the program's owner).
    pub async fn rotate_webhook_secret(&self, program_id: &str) -> Result<String, CoordinatorError> {
        let secret = webhook_secret()?;
        if !self.store.replace_webhook_secret(program_id, &secret).await? {
            return Err(CoordinatorError::NotFound { what: "program", id: program_id.to_owned() });
        }
        tracing::info!(program = %program_id, "webhook secret rotated");
        Ok(secret)
    }

    /// Counts a webhook delivery attempt by how it ended (`delivered`, `retry`, `abandoned`).
    pub fn webhook_attempted(&self, outcome: &str) {
        self.metrics.webhook_attempt(outcome);
    }

    /// Runs the controller's `get-witnesses` without proving. `caller` tells callers apart (an
    /// identity, a client address) for the dry-run pool, whose freed slots go to the waiting
    /// caller holding fewest.
    pub async fn dry_run(
        &self,
        program_id: &str,
        args: &str,
        caller: &str,
    ) -> Result<DryRun, CoordinatorError> {
        check_args_json(args)?;
        let ctx = CallContext {
            program_id: program_id.to_owned(),
            root: self.current_root(),
            task_id: None,
            domains: self.domain_host(),
        };
        let controller = self.controller(program_id).await?;
        // The dry run sees the files; its writes are discarded.
        self.program(program_id).await?;
        let (volume, _) = self.open_volume(program_id);
        let runtime = self.runtime.clone();
        let args = args.to_owned();
        let root = ctx.root;
        // The slot goes with the call: a request given up (its client went) does not free it while
        // the controller still runs.
        let slot = self.dry_run_slots.acquire(caller).await;
        let out = blocking(move || {
            let _slot = slot;
            runtime
                .get_witnesses(&controller, ctx, Some(volume), &args)
                .map_err(|e| CoordinatorError::Controller { error: e.error, logs: e.logs })
        })
        .await?;
        let mut witnesses = out.value;
        self.attach_openings(&root, &mut witnesses).await?;
        let input_len = zkcoproc_types::CircuitInput { root, witnesses: witnesses.clone() }.encode().len();
        Ok(DryRun { witnesses, input_len, logs: out.logs })
    }

    /// Enqueues a proof of `program_id` for `args`, pinned to `root` (default: the current
    /// root). The task is durable when this returns. With an `idempotency_key`, a retry of the
    /// same request returns the same task (`created` false); the same key with another request
    /// is a conflict. Keys are scoped to (`submitter`, program): another identity's key never
    /// matches. `submitter` is the identity submitting (`None` on an open service); it may have
    /// at most [`Config::max_unfinished_per_identity`] unfinished tasks. `callback_url` (checked
    /// by the caller) is where the finished task is POSTed; the program must have a webhook
    /// secret to sign it.
    pub async fn submit(
        &self,
        program_id: &str,
        args: &str,
        root: Option<Root>,
        options: SubmitOptions<'_>,
    ) -> Result<Inserted, CoordinatorError> {
        let SubmitOptions { receipt_kind, idempotency_key, submitter, callback_url } = options;
        check_args_json(args)?;
        if args.len() > self.runtime.limits().max_args_bytes {
            return Err(CoordinatorError::invalid(
                "args_too_large",
                format!(
                    "arguments of {} bytes exceed the limit of {} bytes",
                    args.len(),
                    self.runtime.limits().max_args_bytes
                ),
            ));
        }
        let requested_root = root;
        let root = root.unwrap_or_else(|| self.current_root());
        if !self.is_known_root(&root).await? {
            return Err(CoordinatorError::invalid(
                "unknown_root",
                format!("root {} is not a root this service has had", hex::encode(root)),
            ));
        }
        let kind = self.resolve_receipt_kind(receipt_kind)?;
        self.program(program_id).await?;
        if callback_url.is_some() && self.store.webhook_secret(program_id).await?.is_none() {
            return Err(CoordinatorError::invalid(
                "no_webhook_secret",
                format!(
                    "program {program_id} has no webhook secret to sign callbacks with (it was deployed \
                     before webhooks existed); its owner gets one by deploying it again"
                ),
            ));
        }
        let unfinished = self.store.unfinished_tasks_of(submitter).await?;
        if unfinished >= self.config.max_unfinished_per_identity {
            return Err(CoordinatorError::TooMany {
                code: "too_many_tasks",
                message: format!(
                    "{} has {unfinished} unfinished tasks, the most one identity may have; \
                     wait for some to finish",
                    submitter.unwrap_or("the anonymous caller")
                ),
                retry_after: Duration::from_secs(10),
            });
        }
        // The request is what the client sent: the root only if it named one, so a retry after
        // new blocks moved the current root is still the same request.
        let named_root = requested_root.map(hex::encode).unwrap_or_default();
        let idempotency = idempotency_key.map(|key| {
            let mut h = Sha256::new();
            // A callback URL is part of the request when named (hashes of requests without one
            // stay what they were).
            let parts = [program_id, args, &named_root, receipt_kind.unwrap_or("")];
            for part in parts.into_iter().chain(callback_url) {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
            // Scoped to the submitter: names hold no newline, keys no control character.
            let key = format!("{}\n{key}", submitter.unwrap_or(""));
            Idempotency { key, request_hash: hex::encode(h.finalize()) }
        });
        let inserted = self
            .store
            .insert_task(
                NewTask {
                    id: uuid::Uuid::now_v7().to_string(),
                    program_id: program_id.to_owned(),
                    args: args.to_owned(),
                    root,
                    receipt_kind: kind.as_str().to_owned(),
                    submitter: submitter.map(str::to_owned),
                    callback_url: callback_url.map(str::to_owned),
                },
                idempotency,
            )
            .await?;
        if inserted.created {
            tracing::info!(task = %inserted.task.id, program = %program_id, "task queued");
            self.wake.notify_one();
            self.changed(&inserted.task.id);
        }
        Ok(inserted)
    }

    /// Cancels a task: a queued task never runs; a running one is stopped at its next step
    /// (its holder can no longer move it or renew its lease).
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, CoordinatorError> {
        let outcome = self.store.cancel(id).await?;
        if let CancelOutcome::Cancelled(from) = outcome {
            tracing::info!(task = %id, %from, "task cancelled");
            self.changed(id);
        }
        Ok(outcome)
    }

    /// Ids of tasks whose status changed in this process, as they change (for event streams;
    /// a lagging receiver should re-read the store).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// Records how long `task` spent in `stage`, which it is leaving now.
    fn observe_stage(&self, task: &TaskRecord, stage: zkcoproc_store::TaskStatus) {
        if let Some(entered) = task.history.iter().rev().find(|e| e.status == stage) {
            let seconds = (zkcoproc_store::now_ms() - entered.at).max(0) as f64 / 1e3;
            self.metrics.stage_finished(stage, seconds);
        }
    }

    fn changed(&self, task_id: &str) {
        // No receivers is fine: nobody is streaming.
        let _ = self.changes.send(task_id.to_owned());
    }

    /// Prometheus metrics, OpenMetrics text format.
    pub async fn render_metrics(&self) -> Result<String, CoordinatorError> {
        Ok(self.metrics.render(self.store.as_ref()).await?)
    }

    /// A program's controller component, as deployed.
    pub async fn controller_bytes(&self, program_id: &str) -> Result<Vec<u8>, CoordinatorError> {
        Ok(self.artifacts(program_id).await?.0)
    }

    /// The circuit binary a program was deployed with.
    pub async fn circuit_bytes(&self, program_id: &str) -> Result<Vec<u8>, CoordinatorError> {
        Ok(self.artifacts(program_id).await?.1)
    }

    /// A task by id.
    pub async fn task(&self, id: &str) -> Result<TaskRecord, CoordinatorError> {
        self.store
            .task(id)
            .await?
            .ok_or_else(|| CoordinatorError::NotFound { what: "task", id: id.to_owned() })
    }

    /// The image id of a program.
    pub async fn image_id(&self, program_id: &str) -> Result<ImageId, CoordinatorError> {
        let info = self.program(program_id).await?;
        ImageId::from_hex(&info.image_id).ok_or_else(|| {
            CoordinatorError::Store(StoreError::Corrupt(format!(
                "program {program_id} has a malformed image id"
            )))
        })
    }

    /// Lists a directory of a program's volume.
    pub async fn list_dir(&self, program_id: &str, path: &str) -> Result<Vec<Entry>, CoordinatorError> {
        let path = path.to_owned();
        self.with_volume(program_id, move |v| v.list(&path)).await
    }

    /// Reads a file of a program's volume.
    pub async fn read_file(&self, program_id: &str, path: &str) -> Result<Vec<u8>, CoordinatorError> {
        let path = path.to_owned();
        self.with_volume(program_id, move |v| v.read(&path)).await
    }

    /// Serializes the controller calls of one program that may write its volume: held from
    /// before the call until the stage that carries its blocks is committed. An in-process lock
    /// orders the calls of this process; on a shared store the program's volume lock in the
    /// store then orders them across replicas, so their writes do not race. Should the store's
    /// lock fail, the stage runs under the in-process lock alone and the versions still catch a
    /// race (the stage runs again).
    pub(crate) async fn volume_lock(&self, program_id: &str) -> VolumeGuard {
        let lock = match self.volume_locks.lock() {
            Ok(mut locks) => locks.entry(program_id.to_owned()).or_default().clone(),
            // A poisoned map only means another thread panicked while inserting; a fresh
            // lock is still correct for this call's own serialization.
            Err(_) => Arc::new(tokio::sync::Mutex::new(())),
        };
        let local = lock.lock_owned().await;
        let shared = match self.store.volume_lock(program_id).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(program = program_id, error = %e, "cannot take the program's volume lock in the store");
                None
            }
        };
        VolumeGuard { _shared: shared, _local: local }
    }

    fn resolve_receipt_kind(&self, asked: Option<&str>) -> Result<ReceiptKind, CoordinatorError> {
        let produced = self.prover.receipt_kind();
        let Some(asked) = asked else {
            return Ok(produced);
        };
        let kind = ReceiptKind::parse(asked).ok_or_else(|| {
            CoordinatorError::invalid(
                "bad_receipt_kind",
                format!("unknown receipt kind `{asked}` (fake, composite, succinct or groth16)"),
            )
        })?;
        if kind == produced || (produced == ReceiptKind::Fake) {
            // A dev-mode service answers every request with a fake receipt.
            return Ok(produced);
        }
        Err(CoordinatorError::invalid(
            "unsupported_receipt_kind",
            ZkvmError::UnsupportedReceiptKind(format!(
                "receipt kind `{asked}` is not available from this service's `{}` prover, which \
                 makes `{}` receipts (succinct and groth16 need RISC Zero's recursion programs, \
                 which this build does not have)",
                self.prover.name(),
                produced.as_str()
            ))
            .to_string(),
        ))
    }

    async fn controller(
        &self,
        program_id: &str,
    ) -> Result<zkcoproc_runtime::LoadedController, CoordinatorError> {
        if let Some(c) = self.runtime.cached(program_id) {
            return Ok(c);
        }
        let (wasm, _) = self.artifacts(program_id).await?;
        let runtime = self.runtime.clone();
        let id = program_id.to_owned();
        blocking(move || {
            runtime
                .prepare(&id, &wasm)
                .map_err(|e| CoordinatorError::Internal(format!("stored controller: {e}")))
        })
        .await
    }

    async fn circuit(&self, program_id: &str) -> Result<CircuitImage, CoordinatorError> {
        if let Some(c) = self.circuits.lock().ok().and_then(|mut m| m.get(program_id).cloned()) {
            return Ok(c);
        }
        let (_, circuit) = self.artifacts(program_id).await?;
        let image = blocking(move || {
            CircuitImage::load(&circuit)
                .map_err(|e| CoordinatorError::Internal(format!("stored circuit: {e}")))
        })
        .await?;
        if let Ok(mut circuits) = self.circuits.lock() {
            circuits.put(program_id.to_owned(), image.clone());
        }
        Ok(image)
    }

    async fn artifacts(&self, program_id: &str) -> Result<(Vec<u8>, Vec<u8>), CoordinatorError> {
        self.store
            .program_artifacts(program_id)
            .await?
            .ok_or_else(|| CoordinatorError::NotFound { what: "program", id: program_id.to_owned() })
    }
}

fn check_args_json(args: &str) -> Result<(), CoordinatorError> {
    serde_json::from_str::<serde::de::IgnoredAny>(args)
        .map(|_| ())
        .map_err(|e| CoordinatorError::invalid("bad_args", format!("args are not valid JSON: {e}")))
}

impl Coordinator {
    /// Runs a task stage's controller call on the blocking pool, at most
    /// [`Config::controller_concurrency`] at a time (dry runs have a pool of their own, see
    /// [`Coordinator::dry_run`]).
    async fn controller_call<T, F>(&self, f: F) -> Result<T, CoordinatorError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, CoordinatorError> + Send + 'static,
    {
        let _slot = self
            .controller_slots
            .acquire()
            .await
            .map_err(|_| CoordinatorError::Internal("controller pool closed".into()))?;
        blocking(f).await
    }
}

/// A program's volume lock, in this process and (on a shared store) across replicas.
pub(crate) struct VolumeGuard {
    // Dropped in this order: the store's lock first, then this process's.
    _shared: Option<zkcoproc_store::Held>,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

/// Runs CPU-bound or blocking work off the async executor.
async fn blocking<T, F>(f: F) -> Result<T, CoordinatorError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, CoordinatorError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CoordinatorError::Internal(format!("blocking task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_ids_are_domain_separated_and_content_addressed() {
        let a = program_id(b"wasm", &ImageId([1; 32]));
        assert_eq!(a, program_id(b"wasm", &ImageId([1; 32])));
        assert_ne!(a, program_id(b"wasm", &ImageId([2; 32])));
        assert_ne!(a, program_id(b"wasn", &ImageId([1; 32])));
        // Moving bytes between the controller and the image id changes the id (length prefix).
        let mut shifted = [1u8; 32];
        shifted[0] = b'm';
        assert_ne!(program_id(b"was", &ImageId(shifted)), a);
        assert_eq!(a.len(), 64);
    }
}
