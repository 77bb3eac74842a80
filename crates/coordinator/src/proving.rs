//! Proving through leases: in-process provers and remote workers take the same path.
//!
//! A task in `proving` is leased to one prover at a time. The prover renews its lease while it
//! proves and submits a receipt or a failure. A receipt is verified (image id, receipt kind,
//! journal root) before it is accepted; an invalid one counts as a failed attempt of that
//! worker, and the task is leased again, preferably to another worker. A valid receipt from an
//! expired lease is still accepted while the task is proving. After `max_attempts` attempts
//! without a proof the task fails with `prover_failed` and the list of attempts.
//!
//! An in-process prover waiting for work may also be leased a task in the commit that moves the
//! task into `proving` (`IdleProvers`); from there on it is a lease like any other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use zkcoproc_store::{AttemptOutcome, LeaseRules, ProverLease, RenewOutcome, TaskRecord, TaskStatus};
use zkcoproc_types::journal;

use crate::{blocking, Coordinator, CoordinatorError};

/// The verdict on a submitted receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofVerdict {
    /// what the store did
    pub outcome: AttemptOutcome,
    /// why the receipt was rejected, if it was
    pub rejected: Option<String>,
}

/// A worker that asked for work this recently counts as "asking": while one other worker is,
/// a worker is not given a task it failed before.
const ASKING: Duration = Duration::from_secs(30);
/// Entries kept in the [`WorkerBook`]'s maps at most (they are cleared beyond it).
const BOOK_CAP: usize = 10_000;

/// Names of in-process provers start with this; remote worker names may not.
pub const LOCAL_PREFIX: &str = "local-";

/// Most segments a progress report may count (a circuit of 2^26 cycles in 2^20-cycle segments
/// has 64; this leaves room for any cycle limit and segment size).
pub(crate) const MAX_SEGMENTS: u64 = 1 << 24;

/// The longest a prover lease may be renewed for by default: ten times a pessimistic estimate of
/// the proof's time (a minute plus 10 000 user cycles a second), and never under 30 minutes.
pub fn default_lease_lifetime(user_cycles: Option<u64>) -> Duration {
    let estimate = Duration::from_secs(60 + user_cycles.unwrap_or(0) / 10_000);
    (estimate * 10).max(Duration::from_secs(30 * 60))
}

/// What this process knows of workers: when each last asked for work, the lifetime of the
/// leases it handed out, and which workers it found quarantined.
#[derive(Debug, Default)]
pub(crate) struct WorkerBook {
    polls: Mutex<HashMap<String, Instant>>,
    lifetimes: Mutex<HashMap<String, Duration>>,
    quarantined: Mutex<HashMap<String, Instant>>,
}

impl WorkerBook {
    /// Records that `worker` asks for work; the other workers that asked recently (at most 64).
    fn note_poll(&self, worker: &str) -> Vec<String> {
        let Ok(mut polls) = self.polls.lock() else { return Vec::new() };
        let now = Instant::now();
        if polls.len() >= BOOK_CAP {
            polls.retain(|_, at| now.duration_since(*at) < ASKING);
        }
        polls.insert(worker.to_owned(), now);
        polls
            .iter()
            .filter(|(w, at)| *w != worker && now.duration_since(**at) < ASKING)
            .map(|(w, _)| w.clone())
            .take(64)
            .collect()
    }

    fn lifetime(&self, lease_id: &str) -> Option<Duration> {
        self.lifetimes.lock().ok()?.get(lease_id).copied()
    }

    fn set_lifetime(&self, lease_id: &str, lifetime: Duration) {
        if let Ok(mut map) = self.lifetimes.lock() {
            if map.len() >= BOOK_CAP {
                map.clear();
            }
            map.insert(lease_id.to_owned(), lifetime);
        }
    }

    fn forget_lease(&self, lease_id: &str) {
        if let Ok(mut map) = self.lifetimes.lock() {
            map.remove(lease_id);
        }
    }

    /// Marks `worker` quarantined until `until` (or not, with `None`); the number quarantined now.
    fn set_quarantine(&self, worker: &str, until: Option<Instant>) -> (bool, usize) {
        let Ok(mut map) = self.quarantined.lock() else { return (false, 0) };
        let now = Instant::now();
        map.retain(|_, u| *u > now);
        let new = match until {
            Some(u) => map.insert(worker.to_owned(), u).is_none(),
            None => {
                map.remove(worker);
                false
            }
        };
        (new, map.len())
    }
}

/// In-process provers waiting for work, each with the channel a runner hands it a task on: a task
/// leased to it in the commit that moved the task into `proving` (one commit where a transition
/// and a lease were two). A prover a runner took off the list waits for that commit's outcome (a
/// task id, or the sender dropped when the commit did not move the task).
#[derive(Debug, Default)]
pub(crate) struct IdleProvers(Mutex<Vec<(String, tokio::sync::oneshot::Sender<String>)>>);

impl IdleProvers {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<(String, tokio::sync::oneshot::Sender<String>)>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts `prover` on the list; the receiver gets the task a runner leases it.
    fn wait(&self, prover: &str) -> tokio::sync::oneshot::Receiver<String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut idle = self.list();
        idle.retain(|(name, _)| name != prover);
        idle.push((prover.to_owned(), tx));
        rx
    }

    /// Takes `prover` off the list; `false` when a runner took it off already.
    fn withdraw(&self, prover: &str) -> bool {
        let mut idle = self.list();
        let before = idle.len();
        idle.retain(|(name, _)| name != prover);
        idle.len() < before
    }

    /// Takes the prover that has waited longest off the list, for a runner to lease a task to.
    pub(crate) fn take(&self) -> Option<(String, tokio::sync::oneshot::Sender<String>)> {
        let mut idle = self.list();
        (!idle.is_empty()).then(|| idle.remove(0))
    }
}

impl Coordinator {
    /// Refuses a remote worker whose last [`Config::quarantine_after`](crate::Config) leases all
    /// ended without a proof, until [`Config::quarantine`](crate::Config) after the newest of
    /// them (`worker_quarantined`, with the time left). In-process provers are never
    /// quarantined. The verdict comes from the store, so every replica reaches the same one.
    pub async fn check_worker(&self, worker: &str) -> Result<(), CoordinatorError> {
        let n = self.config.quarantine_after;
        if n == 0 || worker.starts_with(LOCAL_PREFIX) {
            return Ok(());
        }
        let record = self.store.worker_record(worker, n).await?;
        let now = self.store.now_ms().await?;
        let until = record.last_failure_at.map(|at| {
            at.saturating_add(i64::try_from(self.config.quarantine.as_millis()).unwrap_or(i64::MAX))
        });
        match until {
            Some(until) if record.consecutive_failures >= n && until > now => {
                let left = Duration::from_millis(u64::try_from(until - now).unwrap_or(0));
                let (new, count) = self.workers.set_quarantine(worker, Some(Instant::now() + left));
                self.metrics.set_quarantined(count);
                if new {
                    tracing::warn!(
                        worker,
                        failures = record.consecutive_failures,
                        seconds = left.as_secs(),
                        "worker quarantined: its recent leases all ended without a proof"
                    );
                }
                Err(CoordinatorError::TooMany {
                    code: "worker_quarantined",
                    message: format!(
                        "worker {worker} is quarantined for {} s more: its last {} leases ended without a proof",
                        left.as_secs().max(1),
                        record.consecutive_failures
                    ),
                    retry_after: left.max(Duration::from_secs(1)),
                })
            }
            _ => {
                let (_, count) = self.workers.set_quarantine(worker, None);
                self.metrics.set_quarantined(count);
                Ok(())
            }
        }
    }

    /// Starts [`Config::provers`](crate::Config::provers) in-process provers; each leases
    /// proving tasks as a remote worker does, or is handed one leased to it as the task entered
    /// `proving` while it waited.
    pub fn spawn_provers(self: &Arc<Self>, instance: &str) -> Vec<JoinHandle<()>> {
        (0..self.config.provers)
            .map(|i| {
                let this = self.clone();
                let name = format!("local-{instance}-p{i}");
                tokio::spawn(async move { this.prover_loop(name).await })
            })
            .collect()
    }

    async fn prover_loop(self: Arc<Self>, name: String) {
        loop {
            match self.lease_proving(&name, &[]).await {
                Ok(Some(lease)) => self.prove_leased(&name, lease.task, lease.lease_id).await,
                Ok(None) => {
                    // Idle: a runner may lease this prover a task in the commit that moves the
                    // task into `proving`, and hand it over here.
                    let mut handed = self.idle_provers.wait(&name);
                    let task_id = tokio::select! {
                        got = &mut handed => got.ok(),
                        () = self.wait_for_provable(self.config.poll_interval) => {
                            match self.idle_provers.withdraw(&name) {
                                true => None,
                                // A runner took this prover off the list: its commit decides.
                                false => handed.await.ok(),
                            }
                        }
                    };
                    if let Some(task_id) = task_id {
                        self.prove_handed(&name, task_id).await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot lease a proving task");
                    tokio::time::sleep(self.config.poll_interval).await;
                }
            }
        }
    }

    /// Proves a task leased to this prover in the commit that moved it into `proving` (see
    /// [`IdleProvers`]).
    async fn prove_handed(self: &Arc<Self>, name: &str, task_id: String) {
        let lease_id = zkcoproc_store::first_lease_id(&task_id);
        match self.store.task(&task_id).await {
            Ok(Some(task)) if task.status == TaskStatus::Proving => {
                self.note_lease(name, &task, &lease_id);
                self.prove_leased(name, task, lease_id).await
            }
            // Cancelled since: its lease ended with it.
            Ok(_) => {}
            Err(e) => {
                tracing::error!(task = %task_id, error = %e, "cannot read a handed task; its lease will expire")
            }
        }
    }

    async fn prove_leased(self: &Arc<Self>, name: &str, task: TaskRecord, lease_id: String) {
        // Set when the task is cancelled or the lease lost: a prover that can stop (the CPU
        // prover's child process) stops at once.
        // Progress goes to the heartbeat, which records it at once (not only at renewals).
        let (progress, reported) = tokio::sync::watch::channel(None);
        let stop = zkcoproc_zkvm::Cancel::with_progress(Arc::new(move |done, total| {
            let _ = progress.send(Some((done, total)));
        }));
        let heartbeat = self.prover_heartbeat(task.id.clone(), lease_id.clone(), stop.clone(), reported);
        let proved = match (task.input.clone(), self.circuit(&task.program_id).await) {
            (Some(input), Ok(image)) => {
                let (prover, stop) = (self.prover.clone(), stop.clone());
                let known = task.expected_journal.clone().zip(task.user_cycles);
                blocking(move || {
                    // The preflight already executed this input: a dev prover needs no second run.
                    match known.and_then(|(journal, cycles)| prover.prove_known(&image, &journal, cycles)) {
                        Some(proved) => Ok(proved),
                        None => Ok(prover.prove_cancellable(&image, &input, &stop)),
                    }
                })
                .await
            }
            (None, _) => {
                Err(CoordinatorError::Internal("task reached proving without a circuit input".into()))
            }
            (_, Err(e)) => Err(e),
        };
        heartbeat.abort();
        if stop.is_cancelled() {
            tracing::info!(task = %task.id, prover = name, "proof stopped: the task was cancelled or the lease lost");
            return;
        }
        let submitted = match proved {
            Ok(Ok(p)) => {
                tracing::info!(task = %task.id, prover = name, cycles = p.user_cycles, segments = p.segments,
                    ms = p.elapsed.as_millis() as u64, kind = p.receipt.kind.as_str(), "proved");
                self.submit_proof(&task.id, &lease_id, name, p.receipt.bytes, Some(p.user_cycles))
                    .await
                    .map(|v| v.outcome)
            }
            Ok(Err(e)) => self.submit_failure(&task.id, &lease_id, name, &format!("{}: {e}", e.code())).await,
            Err(e) => self.submit_failure(&task.id, &lease_id, name, &e.to_string()).await,
        };
        if let Err(e) = submitted {
            tracing::error!(task = %task.id, error = %e, "cannot record the proving outcome; the lease will expire");
        }
    }

    /// Renews the lease every third of its length and sets `stop` when it ends. A cancel in this
    /// process is heard at once (the change notification), one in another replica at the next
    /// renewal.
    fn prover_heartbeat(
        self: &Arc<Self>,
        task_id: String,
        lease_id: String,
        stop: zkcoproc_zkvm::Cancel,
        mut reported: tokio::sync::watch::Receiver<Option<(u64, u64)>>,
    ) -> JoinHandle<()> {
        let this = self.clone();
        let mut changes = self.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.config.prover_lease / 3);
            tick.tick().await;
            let mut progressing = true;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = reported.changed(), if progressing => {
                        progressing = changed.is_ok();
                        let progress = *reported.borrow_and_update();
                        if let Some((done, total)) = progress {
                            if let Err(e) = this.record_progress(&task_id, &lease_id, done, total).await {
                                tracing::warn!(task = %task_id, error = %e, "cannot record proving progress");
                            }
                        }
                        continue;
                    }
                    changed = changes.recv() => match changed {
                        Ok(id) if id == task_id => {}
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            changes = this.subscribe();
                            continue;
                        }
                    },
                }
                match this.renew(&task_id, &lease_id).await {
                    Ok(RenewOutcome::Renewed) => {}
                    Ok(other) => {
                        tracing::info!(task = %task_id, outcome = ?other, "lease ended; stopping the proof");
                        stop.cancel();
                        break;
                    }
                    Err(e) => tracing::warn!(task = %task_id, error = %e, "lease renewal failed"),
                }
            }
        })
    }

    /// Leases a proving task to `worker` (its own open lease again, if it has one); with
    /// `only` not empty, one of those tasks only (`zkcoproc worker --task`).
    pub async fn lease_proving(
        self: &Arc<Self>,
        worker: &str,
        only: &[String],
    ) -> Result<Option<ProverLease>, CoordinatorError> {
        // While another worker that has not failed a task asks for work, a worker that failed
        // it does not get it: one bad worker cannot use up a task's attempts alone.
        let rules = LeaseRules {
            lease: self.config.prover_lease,
            max_attempts: self.config.max_attempts,
            others_asking: self.workers.note_poll(worker),
            only: only.to_vec(),
        };
        let leased = self.store.lease_proving(worker, rules).await?;
        for task_id in leased.failed {
            self.prover_failed(task_id);
        }
        if let Some(l) = &leased.lease {
            self.note_lease(worker, &l.task, &l.lease_id);
        }
        Ok(leased.lease)
    }

    /// Records the lifetime of a lease just granted, and tells the task's streams.
    fn note_lease(&self, worker: &str, task: &TaskRecord, lease_id: &str) {
        let lifetime =
            self.config.prover_max_lease.unwrap_or_else(|| default_lease_lifetime(task.user_cycles));
        self.workers.set_lifetime(lease_id, lifetime);
        tracing::info!(task = %task.id, lease = %lease_id, worker, "task leased for proving");
        self.changed(&task.id);
    }

    /// A task ran out of proving attempts: tell its entrypoint (in the background, under the
    /// program's volume lock), as for any failed task.
    fn prover_failed(self: &Arc<Self>, task_id: String) {
        self.metrics.failed("prover_failed");
        self.changed(&task_id);
        let this = self.clone();
        tokio::spawn(async move {
            let task = match this.task(&task_id).await {
                Ok(t) => t,
                Err(e) => return tracing::warn!(task = %task_id, error = %e, "cannot load the failed task"),
            };
            let Some(error) = task.error.clone() else { return };
            let _guard = this.volume_lock(&task.program_id).await;
            // Another replica may write the volume meanwhile: deliver again on the new image.
            for _ in 0..5 {
                let update = match this
                    .deliver_failure(&task, error.code.clone(), error.message.clone(), None)
                    .await
                {
                    crate::runner::Step::FailDelivered { update, .. } => update,
                    crate::runner::Step::Again => continue,
                    _ => return,
                };
                match this.store.record_failure_delivery(&task_id, update).await {
                    Err(zkcoproc_store::StoreError::VolumeChanged(_)) => continue,
                    Err(e) => {
                        tracing::warn!(task = %task_id, error = %e, "cannot record the failure delivery")
                    }
                    Ok(()) => {}
                }
                return;
            }
            tracing::warn!(task = %task_id, "failure delivery kept losing volume races; its writes are dropped");
        });
    }

    /// Wakes one prover waiting for work (an in-process prover or a worker's long poll), or
    /// leaves a permit for the next to wait: one task to lease, one prover to look for it (waking
    /// them all sent every other one to the store for nothing). A prover that finds a task looks
    /// again when done, so a burst is drained by every prover it woke; one that cannot take the
    /// task (a worker named other tasks) leaves it to the others' next look.
    pub(crate) fn work_to_prove(&self) {
        self.provable.notify_one();
    }

    /// Wakes every prover waiting for work: what changed is not known (notices were missed).
    pub(crate) fn work_to_prove_everywhere(&self) {
        self.provable.notify_waiters();
        self.provable.notify_one();
    }

    /// Waits until a task may have become provable, or `at_most` passed.
    pub async fn wait_for_provable(&self, at_most: std::time::Duration) {
        tokio::select! {
            _ = self.provable.notified() => {}
            _ = tokio::time::sleep(at_most) => {}
        }
    }

    /// How often a prover should renew its lease.
    pub fn renew_interval(&self) -> std::time::Duration {
        self.config.prover_lease / 3
    }

    /// Records the proving progress the holder of `lease_id` reported (`done` of `total`
    /// segments) and tells the task's event streams; false if the lease is not the task's open
    /// one. Reports that cannot be segment counts are refused.
    pub async fn record_progress(
        &self,
        task_id: &str,
        lease_id: &str,
        done: u64,
        total: u64,
    ) -> Result<bool, CoordinatorError> {
        if done > total || total > MAX_SEGMENTS {
            return Err(CoordinatorError::invalid(
                "bad_progress",
                format!("progress {done} of {total} segments: done must not exceed total, nor total {MAX_SEGMENTS}"),
            ));
        }
        let recorded = self.store.record_progress(task_id, lease_id, done, total).await?;
        if recorded {
            self.changed(task_id);
        }
        Ok(recorded)
    }

    /// Renews a prover lease; tells the prover to stop when the task was cancelled or the lease
    /// was lost, or outlived its maximum lifetime ([`Config::prover_max_lease`](crate::Config)).
    pub async fn renew(&self, task_id: &str, lease_id: &str) -> Result<RenewOutcome, CoordinatorError> {
        let lifetime = match (self.config.prover_max_lease, self.workers.lifetime(lease_id)) {
            (Some(fixed), _) => fixed,
            (None, Some(known)) => known,
            // Leased by another replica, or before a restart.
            (None, None) => {
                let lifetime = default_lease_lifetime(self.task(task_id).await?.user_cycles);
                self.workers.set_lifetime(lease_id, lifetime);
                lifetime
            }
        };
        let outcome =
            self.store.renew_prover_lease(task_id, lease_id, self.config.prover_lease, lifetime).await?;
        if outcome != RenewOutcome::Renewed {
            self.workers.forget_lease(lease_id);
            self.work_to_prove();
        }
        Ok(outcome)
    }

    /// A prover's receipt: verified against the program's image id, the task's receipt kind and
    /// root, then accepted (the task moves on to delivery) or counted as a failed attempt.
    pub async fn submit_proof(
        self: &Arc<Self>,
        task_id: &str,
        lease_id: &str,
        worker: &str,
        receipt: Vec<u8>,
        user_cycles: Option<u64>,
    ) -> Result<ProofVerdict, CoordinatorError> {
        self.workers.forget_lease(lease_id);
        let task = self.task(task_id).await?;
        match self.check_receipt(&task, receipt.clone()).await? {
            Ok(journal) => {
                // The delivery is claimed for this process's runners in the same commit, when
                // they are not behind already: one commit fewer than a claim of its own.
                let cycles = user_cycles.unwrap_or(0);
                let deliverer = self.delivery_owner();
                let outcome = match &deliverer {
                    Some(owner) => {
                        let lease = self.config.lease;
                        self.store
                            .accept_proof_claimed(task_id, lease_id, receipt, journal, cycles, owner, lease)
                    }
                    None => self.store.accept_proof(task_id, lease_id, receipt, journal, cycles),
                }
                .await?;
                if outcome == AttemptOutcome::Accepted {
                    tracing::info!(task = %task_id, lease = %lease_id, worker, "proof accepted");
                    self.observe_stage(&task, zkcoproc_store::TaskStatus::Proving);
                    self.changed(task_id);
                    match deliverer {
                        Some(owner) => self.hand_delivery(task_id, owner),
                        None => self.wake.notify_one(),
                    }
                }
                Ok(ProofVerdict { outcome, rejected: None })
            }
            Err((code, reason)) => {
                tracing::warn!(task = %task_id, lease = %lease_id, worker, %code, %reason, "receipt rejected");
                self.metrics.failed(&code);
                let reason = format!("{code}: {reason}");
                let outcome = self.record_failure(task_id, lease_id, "invalid", &reason).await?;
                Ok(ProofVerdict { outcome, rejected: Some(reason) })
            }
        }
    }

    /// A prover gave up on a task (with its reason): a failed attempt.
    pub async fn submit_failure(
        self: &Arc<Self>,
        task_id: &str,
        lease_id: &str,
        worker: &str,
        reason: &str,
    ) -> Result<AttemptOutcome, CoordinatorError> {
        tracing::warn!(task = %task_id, lease = %lease_id, worker, reason, "proving attempt failed");
        self.workers.forget_lease(lease_id);
        self.record_failure(task_id, lease_id, "failed", reason).await
    }

    async fn record_failure(
        self: &Arc<Self>,
        task_id: &str,
        lease_id: &str,
        outcome: &str,
        reason: &str,
    ) -> Result<AttemptOutcome, CoordinatorError> {
        let reason: String = reason.chars().take(4096).collect();
        let out =
            self.store.fail_attempt(task_id, lease_id, outcome, &reason, self.config.max_attempts).await?;
        match out {
            AttemptOutcome::Retrying => self.work_to_prove(),
            AttemptOutcome::TaskFailed => self.prover_failed(task_id.to_owned()),
            _ => {}
        }
        if out != AttemptOutcome::TaskFailed {
            self.changed(task_id);
        }
        Ok(out)
    }

    /// Verifies `receipt` for `task`: the program's image id, the task's receipt kind, a journal
    /// equal to the preflight's and starting with the task's root. Returns the journal, or
    /// (code, reason).
    async fn check_receipt(
        &self,
        task: &TaskRecord,
        receipt: Vec<u8>,
    ) -> Result<Result<Vec<u8>, (String, String)>, CoordinatorError> {
        let image_id = self.image_id(&task.program_id).await?;
        let verifier = self.verifier;
        let verified = blocking(move || Ok(verifier.verify(&receipt, image_id))).await?;
        let v = match verified {
            Ok(v) => v,
            Err(e) => return Ok(Err(("verification_failed".into(), e.to_string()))),
        };
        if v.kind.as_str() != task.receipt_kind {
            let reason =
                format!("receipt is {} but the task asked for {}", v.kind.as_str(), task.receipt_kind);
            return Ok(Err(("verification_failed".into(), reason)));
        }
        if task.expected_journal.as_ref().is_some_and(|expected| *expected != v.journal) {
            return Ok(Err((
                "journal_mismatch".into(),
                "the receipt proves another run: its journal differs from this task's preflight execution"
                    .into(),
            )));
        }
        Ok(match journal::split(&v.journal) {
            Some((root, _)) if root == task.root => Ok(v.journal),
            Some((root, _)) => Err((
                "root_mismatch".into(),
                format!(
                    "journal is bound to root {} but the task was pinned to {}",
                    hex::encode(root),
                    hex::encode(task.root)
                ),
            )),
            None => Err(("root_mismatch".into(), "journal is shorter than a root".into())),
        })
    }

    /// Executes the program's circuit on `input` without proving; returns the journal and cycle
    /// count, or why the circuit rejected the input, and what the guest wrote to standard error.
    pub(crate) async fn preflight(
        &self,
        program_id: &str,
        input: Vec<u8>,
    ) -> Result<(Result<zkcoproc_zkvm::Executed, zkcoproc_zkvm::ZkvmError>, String), CoordinatorError> {
        let image = self.circuit(program_id).await?;
        let max_cycles = self.config.max_cycles;
        blocking(move || Ok(zkcoproc_zkvm::execute_logged(&image, &input, max_cycles))).await
    }

    /// A loaded circuit by image id (what remote workers download), if a program uses it.
    pub async fn circuit_by_image_id(&self, image_id: &str) -> Result<Option<Vec<u8>>, CoordinatorError> {
        Ok(self.store.circuit_by_image_id(image_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::IdleProvers;

    #[tokio::test]
    async fn an_idle_prover_is_handed_one_task_or_told_there_is_none() {
        let idle = IdleProvers::default();
        assert!(idle.take().is_none());
        let mut first = idle.wait("p0");
        let second = idle.wait("p1");
        // The prover that waited longest is taken first, and only once.
        let (name, sender) = idle.take().expect("p0 idle");
        assert_eq!(name, "p0");
        // Taken: it may no longer leave on its own; it waits for the runner's commit.
        assert!(!idle.withdraw("p0"));
        assert!(first.try_recv().is_err());
        sender.send("t1".into()).expect("p0 listens");
        assert_eq!(first.await.expect("handed"), "t1");
        // A commit that did not move its task drops the sender: the prover hears there is none.
        let (name, sender) = idle.take().expect("p1 idle");
        assert_eq!(name, "p1");
        drop(sender);
        assert!(second.await.is_err());
        // A prover that stops waiting on its own leaves the list; waiting again replaces its place.
        let _stale = idle.wait("p2");
        let _fresh = idle.wait("p2");
        assert!(idle.withdraw("p2"));
        assert!(idle.take().is_none());
    }
}
