//! Durable storage for zkcoproc: programs, tasks and task events, behind one [`Store`] trait.
//!
//! [`SqliteStore`] is the embedded default (one file in the data directory, WAL, `synchronous =
//! FULL`, so a task acknowledged to a client survives a crash or power loss). Every stage change
//! of a task is one conditional row update plus one event row in the same transaction: a
//! transition happens at most once, and a crash resumes from the last committed stage.
//!
//! Not for business rules: which transition is legal when is the coordinator's concern; the
//! store only guarantees that a transition from an expected status is atomic.
//!
//! [`PgStore`] keeps the same data in PostgreSQL, for several service replicas sharing one
//! database: runners claim with `FOR UPDATE SKIP LOCKED`, and leases of a dead replica are taken
//! over when they expire.
//!
//! The logic of every method is written once (`logic.rs`), against a small transaction
//! interface (`sql.rs`) that each database implements (`sqlite.rs`, `postgres.rs`): the dialect
//! differences (placeholders, row locks, the clock, advisory locks, schema versions, retries)
//! live there and nowhere else. Each dialect has its own ordered schema migrations
//! (`migrations/`).
//!
//! Start from [`Store`], [`SqliteStore::open`], [`PgStore::connect`] and [`TaskRecord`].

mod logic;
mod postgres;
mod sql;
mod sqlite;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use zkcoproc_smt::{Opening, WalkError};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// Another process holds the data directory.
    #[error("{0}")]
    Locked(String),
    /// A row holds data this build cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// An insert clashed with an existing row that differs.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A volume write started from an image that another writer replaced meanwhile.
    #[error("the volume of program {0} changed while the stage ran")]
    VolumeChanged(String),
    /// Filesystem error opening the store.
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Declares [`TaskStatus`] with its stored names, in pipeline order.
macro_rules! statuses {
    ($($(#[$doc:meta])* $name:ident = $text:literal,)*) => {
        /// Where a task is in its life.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum TaskStatus {
            $($(#[$doc])* $name,)*
        }

        impl TaskStatus {
            /// All statuses, in pipeline order.
            pub const ALL: [TaskStatus; [$($text),*].len()] = [$(TaskStatus::$name),*];

            /// Lower-case name, as stored and shown.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(TaskStatus::$name => $text,)*
                }
            }
        }
    };
}

statuses! {
    /// Accepted and durable, waiting for a runner.
    Queued = "queued",
    /// The controller's `get-witnesses` is running.
    Witnessing = "witnessing",
    /// A prover is proving the circuit.
    Proving = "proving",
    /// The service is verifying the receipt.
    Verifying = "verifying",
    /// The controller's `entrypoint` is receiving the proof.
    Delivering = "delivering",
    /// Finished with a verified proof.
    Done = "done",
    /// Finished without a proof; see the error.
    Failed = "failed",
    /// Cancelled on request.
    Cancelled = "cancelled",
}

impl TaskStatus {
    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Self> {
        TaskStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Done, failed or cancelled.
    pub fn is_terminal(&self) -> bool {
        matches!(self, TaskStatus::Done | TaskStatus::Failed | TaskStatus::Cancelled)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A program to store: content-addressed id and both artifacts.
#[derive(Clone, Debug)]
pub struct NewProgram {
    /// hex program id
    pub id: String,
    /// hex image id of the circuit
    pub image_id: String,
    /// the controller component
    pub controller: Vec<u8>,
    /// the circuit program binary
    pub circuit: Vec<u8>,
    /// the identity deploying it (`None` on an open service); kept only by the first deploy
    pub owner: Option<String>,
    /// the size its volume is formatted with, in bytes; kept only by the first deploy
    pub volume_size: u64,
    /// where its finished tasks are POSTed when a request names no URL; kept only by the first
    /// deploy
    pub callback_url: Option<String>,
}

/// A stored program, without its artifacts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProgramInfo {
    /// hex program id
    pub id: String,
    /// hex image id of the circuit
    pub image_id: String,
    /// controller size in bytes
    pub controller_size: u64,
    /// circuit size in bytes
    pub circuit_size: u64,
    /// unix milliseconds
    pub created_at: i64,
    /// the identity that first deployed it (`None`: deployed on an open service)
    pub owner: Option<String>,
    /// the size its volume is formatted with, in bytes (`None`: deployed before sizes were
    /// chosen at deploy; the service's default applies)
    #[serde(default)]
    pub volume_size: Option<u64>,
    /// where its finished tasks are POSTed when their request names no URL
    #[serde(default)]
    pub callback_url: Option<String>,
}

/// A task to enqueue.
#[derive(Clone, Debug)]
pub struct NewTask {
    /// task id
    pub id: String,
    /// program it runs
    pub program_id: String,
    /// the request's JSON arguments
    pub args: String,
    /// the coprocessor root the task is pinned to
    pub root: [u8; 32],
    /// the receipt kind asked for
    pub receipt_kind: String,
    /// the identity submitting it (`None` on an open service)
    pub submitter: Option<String>,
    /// where to POST the task when it finishes (`None`: the program's default, if any)
    pub callback_url: Option<String>,
}

/// An `Idempotency-Key` with a hash of the request it came with.
#[derive(Clone, Debug)]
pub struct Idempotency {
    /// the key as stored, scoped to the program (by the table) and to whatever the caller puts
    /// before a newline (the coordinator: the submitting identity); messages show only what
    /// follows the last newline, the client's own key
    pub key: String,
    /// hash of the request body; the same key with another body is a conflict
    pub request_hash: String,
}

/// The task an insert produced or found.
#[derive(Clone, Debug)]
pub struct Inserted {
    /// the task
    pub task: TaskRecord,
    /// false when an earlier request with the same idempotency key made it
    pub created: bool,
}

/// An error recorded on a failed task.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskError {
    /// stable machine-readable code
    pub code: String,
    /// human-readable explanation
    pub message: String,
}

/// A stored task: status, timestamps and everything its stages produced so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    /// task id
    pub id: String,
    /// program id
    pub program_id: String,
    /// JSON arguments
    pub args: String,
    /// pinned root
    pub root: [u8; 32],
    /// receipt kind asked for
    pub receipt_kind: String,
    /// current status
    pub status: TaskStatus,
    /// proving attempts (prover leases issued)
    pub attempts: u32,
    /// error, when failed
    pub error: Option<TaskError>,
    /// unix ms the task was created
    pub created_at: i64,
    /// unix ms of the last update
    pub updated_at: i64,
    /// every status change, oldest first (the first is `queued`)
    pub history: Vec<TaskEvent>,
    /// encoded circuit input, after witnessing
    pub input: Option<Vec<u8>>,
    /// receipt bytes, after proving
    pub receipt: Option<Vec<u8>>,
    /// verified journal, after verifying
    pub journal: Option<Vec<u8>>,
    /// the controller's logs (JSON array), appended by each controller call
    pub logs: String,
    /// the entrypoint's JSON result, after delivering
    pub result: Option<String>,
    /// user cycles of the proven run
    pub user_cycles: Option<u64>,
    /// lease holder, while a runner works on the task
    pub lease_owner: Option<String>,
    /// runner claims in the current stage (reset by every transition): a task claimed again
    /// and again without progress is crash-looping the process
    pub claims: u32,
    /// the journal of the preflight execution of this task's input: a receipt must match it
    pub expected_journal: Option<Vec<u8>>,
    /// the identity that submitted it (`None`: submitted on an open service)
    pub submitter: Option<String>,
    /// segments proven and their total, as its prover last reported them
    pub progress: Option<(u64, u64)>,
    /// where the task is POSTed when it finishes (its request's URL or its program's default)
    pub callback_url: Option<String>,
    /// its webhook delivery once it finished: `pending`, `delivered` or `abandoned`
    pub callback_state: Option<String>,
    /// its webhook delivery attempts, oldest first
    pub callbacks: Vec<CallbackAttempt>,
}

/// One attempt to POST a finished task to its callback URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackAttempt {
    /// unix ms the attempt ended
    pub at: i64,
    /// the receiver's HTTP status (`None`: no answer)
    pub status: Option<u16>,
    /// why it did not count as delivered (`None`: delivered)
    pub error: Option<String>,
}

/// A webhook delivery due now, leased to one sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueWebhook {
    /// the finished task, also the delivery's id
    pub task_id: String,
    /// its program (whose secret signs the delivery)
    pub program_id: String,
    /// where to POST it
    pub url: String,
    /// attempts made so far
    pub attempts: u32,
    /// unix ms the task finished (the delivery was enqueued)
    pub created_at: i64,
}

/// What became of a webhook delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookVerdict {
    /// the receiver took it (2xx): done
    Delivered,
    /// try again after this long
    Retry(Duration),
    /// stop trying (out of time, or a URL that can never work)
    Abandon,
}

/// Fields a stage transition of a runner sets, besides the status. (Receipt, journal and
/// cycles come from provers, through [`Store::accept_proof`].)
#[derive(Clone, Debug, Default)]
pub struct StageUpdate {
    /// set the circuit input
    pub input: Option<Vec<u8>>,
    /// set the entrypoint result
    pub result: Option<String>,
    /// replace the logs (JSON array)
    pub logs: Option<String>,
    /// set the error (for failed)
    pub error: Option<TaskError>,
    /// drop the lease (terminal states)
    pub release_lease: bool,
    /// replace a program's volume image, in the same transaction
    pub volume: Option<VolumeWrite>,
    /// set the expected journal (from the preflight execution)
    pub expected_journal: Option<Vec<u8>>,
    /// set the user cycles (the preflight's count, until a prover reports its own)
    pub user_cycles: Option<u64>,
    /// from `witnessing` into `proving` only: lease the task to this prover for this long in the
    /// same commit, as its first lease ([`first_lease_id`]), counted as an attempt like any other
    pub prover_lease: Option<(String, Duration)>,
}

/// The id of a task's first prover lease. A task enters `proving` once (from `witnessing`) and is
/// leased only there, so a lease granted with that entry ([`StageUpdate::prover_lease`]) is the
/// first.
pub fn first_lease_id(task_id: &str) -> String {
    format!("{task_id}/1")
}

/// How many versions of a volume stay readable: a reader that started at a version more than
/// this many commits old gets [`StoreError::VolumeChanged`] (the blocks only it needed may be
/// gone), and a write whose base is older than that cannot be checked and is refused the same way.
pub const VOLUME_VERSIONS_KEPT: u64 = 16;

/// An advisory lock held across processes until dropped (see [`Store::volume_lock`]): it owns
/// whatever holds the lock (a connection), and dropping it lets go.
pub struct Held(#[allow(dead_code, reason = "held for its drop")] pub(crate) Box<dyn Send + Sync>);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

/// A task's status change that another process sharing the store committed
/// ([`Store::notices`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskNotice {
    /// the task
    pub task_id: String,
    /// the status it entered
    pub status: TaskStatus,
}

/// Most blocks one [`Store::volume_blocks`] call returns (4 MiB).
pub const MAX_BLOCKS_PER_READ: u64 = 1024;

/// A program's volume as stored: its version (bumped by every write) and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeHead {
    /// how many times it was written
    pub version: u64,
    /// the image size in bytes
    pub size: u64,
}

/// The blocks a controller call wrote to a program's volume, committed as version
/// `current + 1` only if no block the call read or wrote changed since `base` (the version it
/// started from): a call that read what another replica wrote meanwhile would otherwise lose
/// that write, while calls that touched other blocks commit both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeWrite {
    /// the program
    pub program_id: String,
    /// the version the call started from (0: the program had no volume yet)
    pub base: u64,
    /// the volume's size in bytes (kept from its first write)
    pub size: u64,
    /// the blocks written, `(index, bytes)`; empty bytes: all zeros
    pub written: Vec<(u64, Vec<u8>)>,
    /// the blocks the call read or wrote
    pub touched: Vec<u64>,
}

/// One status change of a task, in order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskEvent {
    /// store-wide sequence number
    pub seq: i64,
    /// the status entered
    pub status: TaskStatus,
    /// unix ms
    pub at: i64,
}

/// What a cancel request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task was unfinished and is now cancelled; it was in this status.
    Cancelled(TaskStatus),
    /// The task had already finished with this status; nothing changed.
    AlreadyFinished(TaskStatus),
    /// No such task.
    NotFound,
}

/// A prover's lease on a task in `proving`.
#[derive(Clone, Debug)]
pub struct ProverLease {
    /// the lease's id (given back with heartbeats and results)
    pub lease_id: String,
    /// the task, with its circuit input
    pub task: TaskRecord,
    /// unix ms the lease ends unless renewed
    pub expires_at: i64,
}

/// What a lease request did: the lease, if any, and the tasks it failed on the way because
/// their attempts were used up (their entrypoint still has to hear of it).
#[derive(Clone, Debug, Default)]
pub struct Leased {
    /// the lease
    pub lease: Option<ProverLease>,
    /// ids of tasks that failed with `prover_failed`
    pub failed: Vec<String>,
}

/// One proving attempt: a lease and how it ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProverAttempt {
    /// lease id
    pub lease_id: String,
    /// task id
    pub task_id: String,
    /// worker name
    pub worker: String,
    /// unix ms issued
    pub issued_at: i64,
    /// unix ms it ends (or ended) unless renewed
    pub expires_at: i64,
    /// `None` while open; then accepted, failed, invalid, superseded or expired
    pub outcome: Option<String>,
    /// why it failed, for failed and invalid outcomes
    pub reason: Option<String>,
}

/// What renewing a prover lease found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewOutcome {
    /// Renewed: keep proving.
    Renewed,
    /// The task was cancelled: stop.
    Cancelled,
    /// The lease ended (expired and taken over, or the task moved on): stop.
    Lost,
    /// No such lease for that task.
    Unknown,
}

/// What the store did with a proving attempt that ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The proof was accepted; the task moved to delivering.
    Accepted,
    /// The attempt was recorded as failed; the task will be leased again.
    Retrying,
    /// The attempt was the last one allowed; the task failed with `prover_failed`.
    TaskFailed,
    /// The task is no longer proving (done, failed, cancelled): nothing changed.
    NotProving(TaskStatus),
    /// This lease already had its verdict (failed, invalid, ...): a lease is judged once.
    LeaseEnded,
    /// No such lease for that task.
    Unknown,
}

/// How proving leases are handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRules {
    /// how long a lease lasts without renewal
    pub lease: Duration,
    /// leases of a task that may end without a proof before it fails with `prover_failed`
    pub max_attempts: u32,
    /// other workers asking for work now: a task the leasing worker already failed is not
    /// leased to it while one of them has not failed it (empty: no such rule)
    pub others_asking: Vec<String>,
    /// lease only these tasks (empty: any); a worker asking for named tasks debugs them, so the
    /// `others_asking` rule does not keep them from it
    pub only: Vec<String>,
}

/// How a worker's most recent leases ended, newest first (for quarantine decisions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerRecord {
    /// leases that ended without a proof (failed, invalid, or expired not by a restart), counted
    /// from the newest back to the first that did not
    pub consecutive_failures: u32,
    /// unix ms the newest of those leases was issued
    pub last_failure_at: Option<i64>,
}

/// The reason recorded on a prover lease that ended because it outlived its maximum lifetime.
pub const LIFETIME_EXCEEDED: &str = "lease lifetime exceeded";

/// How many times a task may be caught in flight by a crash of the service (its in-process
/// prover lease expiring with the restart) before it fails: a task that crashes the service every
/// time must not crash it forever, but a service restarted a few times must not fail innocent
/// tasks. Such leases do not count against a task's proving attempts.
pub const MAX_CRASHES: u32 = 10;

/// Counts of tasks by status.
pub type StatusCounts = Vec<(TaskStatus, u64)>;

/// One insert into the coprocessor's sparse Merkle tree: a checked block of a domain, and the
/// root after it. Updates form a chain (`prev_root` of one is `root` of the one before), the
/// history of every root the service has had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtUpdate {
    /// position in the history, from 1
    pub seq: u64,
    /// the domain (chain) name
    pub domain: String,
    /// the block number
    pub number: u64,
    /// the block's hash
    pub block_hash: [u8; 32],
    /// the block's state root
    pub state_root: [u8; 32],
    /// the root before this update
    pub prev_root: [u8; 32],
    /// the root after this update
    pub root: [u8; 32],
    /// how the block was admitted
    pub admission: Admission,
}

/// How a block entered the tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Admission {
    /// Followed over JSON-RPC from a trusted checkpoint: only hashes and parent links checked.
    #[default]
    Rpc,
    /// The execution block of a light-client header, or one of its ancestors by parent hash.
    LightClient {
        /// the beacon slot of the header that vouched for it
        beacon_slot: u64,
        /// the header was only optimistic (signed by a supermajority, not finalized)
        optimistic: bool,
    },
}

impl Admission {
    /// `rpc`, `light_client` or `light_client_optimistic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Admission::Rpc => "rpc",
            Admission::LightClient { optimistic: false, .. } => "light_client",
            Admission::LightClient { optimistic: true, .. } => "light_client_optimistic",
        }
    }

    /// The beacon slot of a light-client admission.
    pub fn beacon_slot(self) -> Option<u64> {
        match self {
            Admission::Rpc => None,
            Admission::LightClient { beacon_slot, .. } => Some(beacon_slot),
        }
    }

    fn from_columns(by: &str, slot: Option<u64>) -> Result<Self> {
        match (by, slot) {
            ("rpc", _) => Ok(Admission::Rpc),
            ("light_client", Some(beacon_slot)) => {
                Ok(Admission::LightClient { beacon_slot, optimistic: false })
            }
            ("light_client_optimistic", Some(beacon_slot)) => {
                Ok(Admission::LightClient { beacon_slot, optimistic: true })
            }
            _ => Err(StoreError::Corrupt(format!("block admission {by} / {slot:?}"))),
        }
    }
}

/// A block to append to the tree, with the root it leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBlock {
    /// the block number
    pub number: u64,
    /// the block's hash
    pub block_hash: [u8; 32],
    /// the block's state root
    pub state_root: [u8; 32],
    /// the block's RLP header
    pub header: Vec<u8>,
    /// the tree's root after inserting this block
    pub root: [u8; 32],
    /// the tree nodes this insert created, as `(hash, encoding)` (see
    /// [`zkcoproc_smt::StoredNode`]); stored by hash, so every root stays openable
    pub nodes: Vec<([u8; 32], Vec<u8>)>,
    /// how the block was admitted
    pub admission: Admission,
}

/// A program as a listing shows it: its metadata, its tasks by status and its volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSummary {
    /// the program
    pub info: ProgramInfo,
    /// its tasks by status (statuses without tasks left out)
    pub tasks: StatusCounts,
    /// its volume's version and size, once written
    pub volume: Option<VolumeHead>,
    /// the non-zero blocks its volume's newest version keeps in the store
    pub volume_blocks: u64,
}

/// Which tasks a listing shows, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// only tasks in this status
    pub status: Option<TaskStatus>,
    /// only tasks of this program
    pub program_id: Option<String>,
    /// only tasks this identity submitted or whose program it owns (`None`: every task)
    pub visible_to: Option<String>,
    /// only tasks listed after this one (its `seq`), for the next page
    pub before: Option<i64>,
}

/// A task as a listing shows it, without its payloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSummary {
    /// its place in submission order (for paging)
    pub seq: i64,
    /// task id
    pub id: String,
    /// program id
    pub program_id: String,
    /// current status
    pub status: TaskStatus,
    /// unix ms created
    pub created_at: i64,
    /// unix ms of the last update
    pub updated_at: i64,
    /// who submitted it
    pub submitter: Option<String>,
    /// its error code, when failed
    pub error_code: Option<String>,
}

/// A status change of some task, from the store-wide event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskChange {
    /// the event's store-wide sequence number
    pub seq: i64,
    /// the task
    pub task_id: String,
    /// its program
    pub program_id: String,
    /// the status entered
    pub status: TaskStatus,
    /// unix ms
    pub at: i64,
    /// who submitted the task
    pub submitter: Option<String>,
    /// who owns its program
    pub owner: Option<String>,
}

/// Persistence for zkcoproc. Every method is atomic.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Stores a program. Returns `false` when the same id existed already (idempotent deploy).
    async fn put_program(&self, program: NewProgram) -> Result<bool>;
    /// A program's metadata.
    async fn program(&self, id: &str) -> Result<Option<ProgramInfo>>;
    /// A program's controller and circuit bytes.
    async fn program_artifacts(&self, id: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>>;
    /// The circuit program binary with this image id (hex), if some program uses it.
    async fn circuit_by_image_id(&self, image_id: &str) -> Result<Option<Vec<u8>>>;

    /// Enqueues a task (status queued), durably. With an idempotency key already used for the
    /// same request, returns that request's task instead; for another request, `Conflict`.
    async fn insert_task(&self, task: NewTask, idempotency: Option<Idempotency>) -> Result<Inserted>;
    /// A task by id.
    async fn task(&self, id: &str) -> Result<Option<TaskRecord>>;
    /// A task's status changes, oldest first.
    async fn task_events(&self, id: &str) -> Result<Vec<TaskEvent>>;
    /// Claims the unfinished task not in `proving` (provers lease those) whose lease is free or
    /// expired and whose turn comes first (then the oldest), for `owner`, until `now + lease`,
    /// counting a claim. Returns it with the lease set. A task's turn, set when it is inserted,
    /// is no earlier than the newest turn started and after its submitter's previous task: one
    /// identity's backlog does not hold up the tasks of another.
    async fn claim_next(&self, owner: &str, lease: Duration) -> Result<Option<TaskRecord>>;
    /// [`Store::claim_next`], and a claimed `queued` task enters `witnessing` in the same
    /// transaction (its `witnessing` event recorded, claims reset as by a transition): one
    /// commit where a claim and a transition were two. The flag says whether it entered now.
    async fn claim_and_start(&self, owner: &str, lease: Duration) -> Result<Option<(TaskRecord, bool)>>;
    /// Extends `owner`'s lease on a task. `false` when the owner no longer holds it.
    async fn extend_lease(&self, id: &str, owner: &str, lease: Duration) -> Result<bool>;
    /// Drops every lease (used at start-up by the only process that owns the store; never on a
    /// [`shared`](Store::shared) store, where other replicas hold leases).
    async fn release_all_leases(&self) -> Result<u64>;
    /// Whether several service processes may use this store at once (replicas). A shared store's
    /// leases of a dead process are taken over when they expire, not at start-up.
    fn shared(&self) -> bool;
    /// Status changes that other processes sharing the store commit, as they commit them
    /// (PostgreSQL: `LISTEN`/`NOTIFY` on a connection kept for it, reopened when lost; changes
    /// committed while it is down are not told). `None` where no other process writes (SQLite).
    fn notices(&self) -> Option<tokio::sync::broadcast::Receiver<TaskNotice>>;
    /// Moves a task from `from` to `to` and applies `update`, if it is still in `from` and
    /// still leased by `owner`. `false` when it was not (someone else moved it). A volume write
    /// whose base version is no longer the stored one fails the whole transition with
    /// [`StoreError::VolumeChanged`]: the stage must run again on the new image.
    async fn transition(
        &self,
        id: &str,
        owner: &str,
        from: TaskStatus,
        to: TaskStatus,
        update: StageUpdate,
    ) -> Result<bool>;
    /// Waits until no other process holds the program's volume lock, then holds it until the
    /// guard is dropped: replicas run the stages that may write a program's volume one at a
    /// time instead of racing (a dead holder's lock ends with its connection). `None` on a store
    /// one process owns (SQLite).
    async fn volume_lock(&self, program_id: &str) -> Result<Option<Held>>;
    /// A program's volume version and size, if it has one yet.
    async fn volume(&self, program_id: &str) -> Result<Option<VolumeHead>>;
    /// Blocks `first..first + count` (at most [`MAX_BLOCKS_PER_READ`]) of a program's volume as
    /// they were at `version`: `(index, bytes)`; a block not returned, or empty, is all zeros.
    /// [`StoreError::VolumeChanged`] when `version` is no longer kept ([`VOLUME_VERSIONS_KEPT`]).
    async fn volume_blocks(
        &self,
        program_id: &str,
        version: u64,
        first: u64,
        count: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>>;
    /// Pins the program's current volume version as `pin` (an id the caller chose) until
    /// `now + ttl`, and answers that version (`None`: no volume stored yet, nothing pinned): its
    /// blocks stay readable through [`Store::volume_blocks`] however many versions are committed
    /// after it, until the pin is dropped ([`Store::unpin_volume`]) or expires. An expired pin is
    /// dropped by the next commit of the program's volume; until then a renewal revives it.
    async fn pin_volume(&self, program_id: &str, pin: &str, ttl: Duration) -> Result<Option<VolumeHead>>;
    /// Moves a pin's expiry to `now + ttl`; `false` if the pin is gone (dropped, or expired and
    /// dropped by a commit: its version is then kept only while among the last
    /// [`VOLUME_VERSIONS_KEPT`]).
    async fn renew_volume_pin(&self, pin: &str, ttl: Duration) -> Result<bool>;
    /// Drops a pin (nothing if it is gone already).
    async fn unpin_volume(&self, pin: &str) -> Result<()>;
    /// Cancels an unfinished task, whoever holds it: its lease is dropped, so the holder's next
    /// transition or lease renewal fails and it stops.
    async fn cancel(&self, id: &str) -> Result<CancelOutcome>;
    /// Leases a task in `proving` to `worker` until `now + lease`: the worker's own open lease
    /// if it has one (re-delivery), else the unleased proving task whose turn comes first (see
    /// [`Store::claim_next`]), preferring tasks this worker has not tried before. A task whose
    /// `max_attempts` leases all ended without a proof fails with `prover_failed` instead of
    /// being leased; leases ended by a restart of the service count against [`MAX_CRASHES`]
    /// instead.
    /// A task this worker already failed is not leased to it while one of `rules.others_asking`
    /// has not failed it too (so the task waits for one of them, and never for nobody).
    async fn lease_proving(&self, worker: &str, rules: LeaseRules) -> Result<Leased>;
    /// Renews a prover lease, unless it was issued more than `max_lifetime` ago: such a lease
    /// ends (`expired`, reason `lease lifetime exceeded`, counting as an attempt) and the answer
    /// is [`RenewOutcome::Lost`], so the task goes to another prover.
    async fn renew_prover_lease(
        &self,
        task_id: &str,
        lease_id: &str,
        lease: Duration,
        max_lifetime: Duration,
    ) -> Result<RenewOutcome>;
    /// Records the progress (`done` of `total` segments) the holder of an open lease reported;
    /// false (nothing written) if the task is not proving under that lease.
    async fn record_progress(&self, task_id: &str, lease_id: &str, done: u64, total: u64) -> Result<bool>;
    /// A task's recorded progress (segments done, total), without loading the task.
    async fn task_progress(&self, task_id: &str) -> Result<Option<(u64, u64)>>;
    /// How `worker`'s newest leases (at most `window`) ended.
    async fn worker_record(&self, worker: &str, window: u32) -> Result<WorkerRecord>;
    /// Records a proving attempt that ended without an accepted proof (`outcome` is `failed` or
    /// `invalid`); fails the task with `prover_failed` when it was the last attempt allowed.
    async fn fail_attempt(
        &self,
        task_id: &str,
        lease_id: &str,
        outcome: &str,
        reason: &str,
        max_attempts: u32,
    ) -> Result<AttemptOutcome>;
    /// Accepts a verified proof from a lease (even an expired one, while the task is still
    /// proving): stores receipt and journal, records `verifying` and `delivering`, and ends the
    /// task's other open leases as superseded.
    async fn accept_proof(
        &self,
        task_id: &str,
        lease_id: &str,
        receipt: Vec<u8>,
        journal: Vec<u8>,
        user_cycles: u64,
    ) -> Result<AttemptOutcome>;
    /// [`Store::accept_proof`], and the task's delivery claimed in the same commit by `owner`
    /// until `now + lease` (a claim counted, as by [`Store::claim_next`]): one commit fewer for a
    /// task whose delivery the accepting process runs itself.
    #[allow(clippy::too_many_arguments)]
    async fn accept_proof_claimed(
        &self,
        task_id: &str,
        lease_id: &str,
        receipt: Vec<u8>,
        journal: Vec<u8>,
        user_cycles: u64,
        owner: &str,
        lease: Duration,
    ) -> Result<AttemptOutcome>;
    /// A task's proving attempts, oldest first.
    async fn prover_attempts(&self, task_id: &str) -> Result<Vec<ProverAttempt>>;
    /// Records what the entrypoint did with the failure event of a task that failed outside a
    /// runner (result, logs, new volume), in one transaction.
    async fn record_failure_delivery(&self, task_id: &str, update: StageUpdate) -> Result<()>;
    /// Prover leases by outcome (`open` for leases still running) and the number of distinct
    /// workers that took a lease since `since_ms`.
    async fn lease_stats(&self, since_ms: i64) -> Result<(Vec<(String, u64)>, u64)>;
    /// Number of tasks in each status.
    async fn status_counts(&self) -> Result<StatusCounts>;
    /// Number of unfinished tasks `submitter` submitted (`None`: those submitted anonymously).
    async fn unfinished_tasks_of(&self, submitter: Option<&str>) -> Result<u64>;
    /// Drops the circuit input and the receipt of up to `limit` tasks that finished before
    /// `finished_before` (unix ms); the task row, its journal, result and history stay. Returns
    /// how many tasks it pruned (fewer than `limit`: nothing more to prune).
    async fn prune_payloads(&self, finished_before: i64, limit: usize) -> Result<u64>;
    /// The store's clock, in unix ms: the one clock every replica of a shared store judges
    /// signed-request timestamps and nonce expiry by.
    async fn now_ms(&self) -> Result<i64>;
    /// Up to `limit` programs with tasks waiting for a controller stage (queued, witnessing or
    /// delivering), most recently submitted first: what a restarted service should compile first.
    async fn programs_with_pending_work(&self, limit: usize) -> Result<Vec<String>>;

    /// Records the nonce of a signed request (`key` names signer and nonce); `false` when it was
    /// recorded before, i.e. the request is a replay. Nonces older than `keep` are forgotten (the
    /// signature's timestamp check refuses such old requests anyway). On a shared store every
    /// replica sees every nonce, and a restart forgets none.
    async fn use_nonce(&self, key: &str, keep: Duration) -> Result<bool>;

    /// Appends blocks of `domain` to the tree's history, in order, if the newest stored root is
    /// still `prev_root` (the empty root for an empty history). `false`, and nothing written,
    /// when another writer moved the history on first. Each block's `root` is the root after it.
    async fn append_blocks(&self, domain: &str, prev_root: [u8; 32], blocks: Vec<NewBlock>) -> Result<bool>;
    /// The tree's history after `seq` (0 for all of it), oldest first.
    async fn smt_updates(&self, after_seq: u64) -> Result<Vec<SmtUpdate>>;
    /// The RLP header of a stored block.
    async fn block_header(&self, domain: &str, number: u64) -> Result<Option<Vec<u8>>>;
    /// A domain's light-client state and its version (1 after the first write).
    async fn light_client_state(&self, domain: &str) -> Result<Option<(u64, Vec<u8>)>>;
    /// Writes a domain's light-client state if its version is still `expected` (0: no state
    /// yet). Returns `false`, writing nothing, when another writer moved it first.
    async fn put_light_client_state(&self, domain: &str, expected: u64, state: Vec<u8>) -> Result<bool>;
    /// Runs `walk` (an opening under some root) over the stored tree nodes, reading one node per
    /// level in one transaction. The walk checks every node against its hash, so a missing or
    /// corrupt node is its error, not a wrong opening.
    async fn smt_walk(&self, walk: zkcoproc_smt::Walk) -> Result<Result<Opening, WalkError>>;
    /// Stores tree nodes `(hash, encoding)` (those already stored are left as they are): for
    /// histories written before nodes were stored.
    async fn put_smt_nodes(&self, nodes: Vec<([u8; 32], Vec<u8>)>) -> Result<()>;
    /// Whether the node with this hash is stored.
    async fn has_smt_node(&self, hash: [u8; 32]) -> Result<bool>;
    /// Up to `limit` programs, newest first, with their task counts and volume use; only those
    /// `owner` owns when it is named.
    async fn list_programs(&self, owner: Option<&str>, limit: usize) -> Result<Vec<ProgramSummary>>;
    /// Up to `limit` tasks matching `filter`, newest first.
    async fn list_tasks(&self, filter: TaskFilter, limit: usize) -> Result<Vec<TaskSummary>>;
    /// Up to `limit` status changes of any task after event `after_seq`, oldest first, and the
    /// newest event's seq (0: none yet).
    async fn task_changes(&self, after_seq: i64, limit: usize) -> Result<(Vec<TaskChange>, i64)>;
    /// The `limit` most recently issued prover leases of any task, newest first.
    async fn recent_leases(&self, limit: usize) -> Result<Vec<ProverAttempt>>;
    /// Sets a program's webhook secret unless it has one; returns whether it was set (a program
    /// deployed before webhooks existed gets one on its next deploy).
    async fn claim_webhook_secret(&self, program_id: &str, secret: &str) -> Result<bool>;
    /// Replaces a program's webhook secret (rotation); false when there is no such program.
    async fn replace_webhook_secret(&self, program_id: &str, secret: &str) -> Result<bool>;
    /// A program's webhook secret.
    async fn webhook_secret(&self, program_id: &str) -> Result<Option<String>>;
    /// Leases to `owner` for `lease` up to `limit` pending webhook deliveries whose next attempt
    /// is due (the store's clock), oldest due first. A delivery whose lease expired (its sender
    /// died) is due again.
    async fn due_webhooks(&self, owner: &str, lease: Duration, limit: usize) -> Result<Vec<DueWebhook>>;
    /// Records an attempt of `owner`'s leased delivery of `task_id` (at the store's clock: the
    /// receiver's `status`, if it answered, and the `error`, if it did not count) and what follows
    /// it, ending the lease; returns false (and records nothing) if the lease was lost meanwhile.
    async fn record_webhook_attempt(
        &self,
        task_id: &str,
        owner: &str,
        status: Option<u16>,
        error: Option<String>,
        verdict: WebhookVerdict,
    ) -> Result<bool>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
