//! In-process runners: claim a task, drive it stage by stage to a terminal status.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tracing::Instrument as _;
use zkcoproc_runtime::{CallContext, CallOutput, LogLine, RuntimeError};
use zkcoproc_store::{StageUpdate, StoreError, TaskError, TaskNotice, TaskRecord, TaskStatus};
use zkcoproc_types::{journal, CircuitInput};

use crate::volume::Session;
use crate::{Coordinator, CoordinatorError, VolumeGuard};

/// What one stage decided.
pub(crate) enum Step {
    /// Move to the next status with these fields.
    Advance(TaskStatus, StageUpdate),
    /// Fail the task.
    Fail { code: String, message: String, logs: Option<String> },
    /// Fail the task after the entrypoint saw the failure (its result and volume are kept).
    FailDelivered { code: String, message: String, update: StageUpdate },
    /// Another replica replaced the volume version the stage was reading: run it again.
    Again,
}

/// What committing a step did.
enum Commit {
    /// The task moved on to this status: go on with its next stage, if a runner has one.
    Moved(TaskStatus),
    /// The stage's volume write lost a race: run the stage again.
    Again,
    /// The task is not ours any more (or the store failed): let go of it.
    Stopped,
}

impl Step {
    fn fail(code: &str, message: impl Into<String>) -> Self {
        Step::Fail { code: code.to_owned(), message: message.into(), logs: None }
    }
}

impl Coordinator {
    /// Releases leases a previous process left (when this process owns the store exclusively;
    /// remote workers' prover leases stand) and starts [`Config::runners`](crate::Config::runners)
    /// runner loops and [`Config::provers`](crate::Config::provers) in-process provers.
    pub async fn spawn_runners(self: &Arc<Self>) -> Result<Vec<JoinHandle<()>>, CoordinatorError> {
        if self.store.shared() {
            // Replicas share the store: leases of a dead one are taken over as they expire.
            tracing::info!("shared store: tasks in flight elsewhere are taken over when their leases expire");
        } else {
            let released = self.store.release_all_leases().await?;
            if released > 0 {
                tracing::info!(tasks = released, "resuming tasks that were in flight");
            }
        }
        // Compile the controllers of the waiting tasks before any runner claims one: a claim is
        // then followed by the stage itself, not by a compile, so a crash during start-up is not
        // counted against the tasks that happen to be first in line (see `Config::max_claims`).
        let pending = self.store.programs_with_pending_work(self.runtime.limits().cached_controllers).await?;
        for program in &pending {
            if let Err(e) = self.controller(program).await {
                tracing::warn!(program = %program, error = %e, "cannot prepare the controller");
            }
        }
        if !pending.is_empty() {
            tracing::info!(programs = pending.len(), "controllers of waiting tasks prepared");
        }
        let instance = uuid::Uuid::now_v7().simple().to_string();
        let instance = &instance[..12];
        if self.config.runners > 0 {
            self.handed.open(format!("local-{instance}-delivery"), self.config.runners);
        }
        self.metrics.set_runners(self.config.runners, self.config.provers);
        let mut handles: Vec<JoinHandle<()>> = (0..self.config.runners)
            .map(|i| {
                let this = self.clone();
                let owner = format!("local-{instance}-r{i}");
                tokio::spawn(async move { this.run_loop(owner).await })
            })
            .collect();
        handles.extend(self.spawn_provers(instance));
        if let Some(notices) = self.store.notices() {
            let this = self.clone();
            handles.push(tokio::spawn(async move { this.follow_notices(notices).await }));
        }
        if let Some(retention) = self.config.retention {
            let this = self.clone();
            handles.push(tokio::spawn(async move { this.retention_loop(retention).await }));
        }
        Ok(handles)
    }

    /// Passes on the task changes other replicas commit: a task waiting for a runner wakes one,
    /// a task waiting for a prover wakes the provers (and remote workers' long polls), and every
    /// change reaches the event streams and the provers' cancel watch, as this process's own do.
    async fn follow_notices(self: Arc<Self>, mut notices: tokio::sync::broadcast::Receiver<TaskNotice>) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match notices.recv().await {
                Ok(notice) => {
                    match notice.status {
                        TaskStatus::Queued | TaskStatus::Delivering => self.wake.notify_one(),
                        TaskStatus::Proving => self.work_to_prove(),
                        _ => {}
                    }
                    self.changed(&notice.task_id);
                }
                // Some were missed: whatever they were, every waiter looks again.
                Err(RecvError::Lagged(_)) => {
                    self.wake.notify_waiters();
                    self.work_to_prove_everywhere();
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Every hour (first a minute after start), drops the input and receipt of tasks that
    /// finished more than `retention` ago, in batches, pausing between them so the store keeps
    /// serving.
    async fn retention_loop(self: Arc<Self>, retention: std::time::Duration) {
        tokio::time::sleep(std::time::Duration::from_secs(60).min(retention)).await;
        loop {
            match self.prune_finished(retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    tasks = n,
                    days = retention.as_secs() / 86_400,
                    "pruned finished tasks' inputs and receipts"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot prune finished tasks"),
            }
            tokio::time::sleep(
                std::time::Duration::from_secs(3600).min(retention.max(std::time::Duration::from_secs(1))),
            )
            .await;
        }
    }

    /// Drops the input and receipt of every task that finished more than `retention` ago, in
    /// bounded batches; returns how many it pruned.
    pub async fn prune_finished(&self, retention: std::time::Duration) -> Result<u64, CoordinatorError> {
        const BATCH: usize = 500;
        let cutoff = self.store.now_ms().await? - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let mut total = 0;
        loop {
            let n = self.store.prune_payloads(cutoff, BATCH).await?;
            total += n;
            self.metrics.pruned(n);
            if n < BATCH as u64 {
                return Ok(total);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn run_loop(self: Arc<Self>, owner: String) {
        loop {
            // A delivery claimed as its proof was accepted comes first: it holds a lease already.
            if let Some((id, handed_owner)) = self.handed.take() {
                match self.store.task(&id).await {
                    Ok(Some(task))
                        if task.status == TaskStatus::Delivering
                            && task.lease_owner.as_deref() == Some(handed_owner.as_str()) =>
                    {
                        self.process(&handed_owner, task).await
                    }
                    // Cancelled, or its lease ran out while it waited and another runner took it.
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(task = %id, error = %e, "cannot read a handed task; its lease will expire")
                    }
                }
                continue;
            }
            // A queued task enters witnessing in its claim's own commit.
            match self.store.claim_and_start(&owner, self.config.lease).await {
                Ok(Some((task, entered))) => {
                    if entered {
                        self.advanced(&task, TaskStatus::Queued, TaskStatus::Witnessing);
                    }
                    self.process(&owner, task).await
                }
                Ok(None) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.config.poll_interval) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim a task");
                    tokio::time::sleep(self.config.poll_interval).await;
                }
            }
        }
    }

    /// Drives one claimed task until it is terminal or the lease is lost.
    async fn process(self: &Arc<Self>, owner: &str, task: TaskRecord) {
        let heartbeat = self.heartbeat(task.id.clone(), owner.to_owned());
        self.metrics.claimed(task.claims);
        let mut task = task;
        if task.claims > self.config.max_claims {
            let message = format!(
                "task was claimed {} times in `{}` without progress (limit {}): its stage keeps \
                 stopping the process",
                task.claims, task.status, self.config.max_claims
            );
            self.finish(owner, &task, Step::fail("too_many_attempts", message)).await;
            heartbeat.abort();
            return;
        }
        // Runners drive the controller stages; in `proving` the task waits for a prover lease.
        while !task.status.is_terminal() && task.status != TaskStatus::Proving {
            let span = tracing::info_span!("stage", task = %task.id, status = %task.status);
            // Stages that call the controller hold the program's volume lock until their
            // transition (which carries the blocks the call wrote) is committed; a call that never
            // opened the volume lets go of it as soon as it returns.
            let calls_controller = matches!(task.status, TaskStatus::Witnessing | TaskStatus::Delivering);
            let mut guard = match calls_controller {
                true => Some(self.volume_lock(&task.program_id).await),
                false => None,
            };
            let step = match task.status {
                TaskStatus::Queued => Step::Advance(TaskStatus::Witnessing, StageUpdate::default()),
                TaskStatus::Witnessing => self.witness(&task, &mut guard).await,
                TaskStatus::Delivering => self.deliver(&task, &mut guard).await,
                // `verifying` is never a stored status: a prover's receipt is verified when it is
                // submitted, and accepted straight into `delivering`.
                TaskStatus::Proving
                | TaskStatus::Verifying
                | TaskStatus::Done
                | TaskStatus::Failed
                | TaskStatus::Cancelled => break,
            };
            // A failure before delivery still reaches the controller's entrypoint.
            let step = match step {
                Step::Fail { code, message, logs } if task.status != TaskStatus::Delivering => {
                    if guard.is_none() {
                        guard = Some(self.volume_lock(&task.program_id).await);
                    }
                    self.deliver_failure(&task, code, message, logs).await
                }
                other => other,
            };
            let commit = self.finish(owner, &task, step).instrument(span).await;
            drop(guard);
            match commit {
                // Proving is the provers' business and an ended task has no next stage: the
                // runner knows the status it committed and need not read the task again.
                Commit::Moved(to) if to.is_terminal() || to == TaskStatus::Proving => break,
                Commit::Moved(_) => {}
                // Another replica wrote the program's volume while this stage ran: run the stage
                // again on the new image (the task itself did not move).
                Commit::Again => continue,
                Commit::Stopped => break,
            }
            task = match self.store.task(&task.id).await {
                Ok(Some(t)) => t,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot reload task; its lease will expire");
                    break;
                }
            };
        }
        heartbeat.abort();
    }

    /// The owner to claim a task's delivery for as its proof is accepted, if this process runs
    /// runners and fewer deliveries wait for them than there are runners (more would wait longer
    /// than a claim from the store, and their leases would run out meanwhile).
    pub(crate) fn delivery_owner(&self) -> Option<String> {
        self.handed.owner()
    }

    /// Hands a task whose delivery was claimed for `owner` to the runners, and wakes one.
    pub(crate) fn hand_delivery(&self, task_id: &str, owner: String) {
        self.metrics.handed.inc();
        self.handed.push(task_id.to_owned(), owner);
        self.wake.notify_one();
    }

    /// Commits a step.
    async fn finish(&self, owner: &str, task: &TaskRecord, step: Step) -> Commit {
        let failure_code = match &step {
            Step::Fail { code, .. } | Step::FailDelivered { code, .. } => Some(code.clone()),
            Step::Advance(..) => None,
            Step::Again => {
                tracing::info!(task = %task.id, "volume replaced while the stage read it; running the stage again");
                self.metrics.volume.reruns.inc();
                return Commit::Again;
            }
        };
        let (to, mut update) = match step {
            Step::Advance(to, mut update) => {
                // Proving is the provers' business: the runner lets go of the task.
                update.release_lease = to.is_terminal() || to == TaskStatus::Proving;
                (to, update)
            }
            Step::Fail { code, message, logs } => {
                tracing::warn!(task = %task.id, %code, %message, "task failed");
                let update = StageUpdate {
                    error: Some(TaskError { code, message }),
                    logs,
                    release_lease: true,
                    ..Default::default()
                };
                (TaskStatus::Failed, update)
            }
            Step::FailDelivered { code, message, mut update } => {
                tracing::warn!(task = %task.id, %code, %message, "task failed");
                update.error = Some(TaskError { code, message });
                update.release_lease = true;
                (TaskStatus::Failed, update)
            }
            Step::Again => return Commit::Again,
        };
        // A task entering proving while an in-process prover waits for work is leased to it in
        // the same commit, and handed over once committed.
        let handoff = match (task.status, to) {
            (TaskStatus::Witnessing, TaskStatus::Proving) => self.idle_provers.take(),
            _ => None,
        };
        if let Some((prover, _)) = &handoff {
            update.prover_lease = Some((prover.clone(), self.config.prover_lease));
        }
        let written = update.volume.as_ref().map_or(0, |v| v.written.len() as u64);
        match self.store.transition(&task.id, owner, task.status, to, update).await {
            Ok(true) => {
                self.metrics.volume.blocks_written.inc_by(written);
                self.advanced(task, task.status, to);
                if let Some(error) = &failure_code {
                    self.metrics.failed(error);
                }
                match handoff {
                    Some((_, prover)) => {
                        self.metrics.provers_handed.inc();
                        // A prover gone since (the process stopping) leaves the lease to expire.
                        let _ = prover.send(task.id.clone());
                    }
                    None if to == TaskStatus::Proving => self.work_to_prove(),
                    None => {}
                }
                Commit::Moved(to)
            }
            Ok(false) => {
                tracing::warn!(task = %task.id, "task moved by someone else; lease lost");
                Commit::Stopped
            }
            Err(StoreError::VolumeChanged(program)) => {
                tracing::info!(task = %task.id, %program, "volume changed by another replica; running the stage again");
                self.metrics.volume.reruns.inc();
                Commit::Again
            }
            Err(e) => {
                tracing::error!(task = %task.id, error = %e, "cannot commit stage; will retry");
                Commit::Stopped
            }
        }
    }

    /// Tells the log, the task's streams and the stage metric that a committed change moved
    /// `task` from `from` to `to`.
    fn advanced(&self, task: &TaskRecord, from: TaskStatus, to: TaskStatus) {
        tracing::info!(task = %task.id, %from, %to, "task advanced");
        self.changed(&task.id);
        self.observe_stage(task, from);
    }

    fn heartbeat(&self, id: String, owner: String) -> JoinHandle<()> {
        let store = self.store.clone();
        let lease = self.config.lease;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.extend_lease(&id, &owner, lease).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => tracing::warn!(task = %id, error = %e, "lease renewal failed"),
                }
            }
        })
    }

    fn call_context(&self, task: &TaskRecord) -> CallContext {
        CallContext {
            program_id: task.program_id.clone(),
            root: task.root,
            task_id: Some(task.id.clone()),
            domains: self.domain_host(),
        }
    }

    async fn witness(&self, task: &TaskRecord, guard: &mut Option<VolumeGuard>) -> Step {
        let controller = match self.controller(&task.program_id).await {
            Ok(c) => c,
            Err(e) => return Step::fail("internal", e.to_string()),
        };
        let (volume, session) = self.open_volume(&task.program_id);
        let runtime = self.runtime.clone();
        let (ctx, args, root) = (self.call_context(task), task.args.clone(), task.root);
        let out = self
            .controller_call(move || Ok(runtime.get_witnesses(&controller, ctx, Some(volume), &args)))
            .await;
        if session.changed() {
            return Step::Again;
        }
        if !session.opened() {
            // Nothing of the volume was read or written: the openings, the preflight and the
            // commit need not keep the program's other tasks waiting.
            guard.take();
        }
        match out {
            Ok(Ok(mut out)) => {
                let logs = append_logs(&task.logs, "witnessing", &out.logs);
                // Every state proof gets its header and its opening under the task's root.
                if let Err(e) = self.attach_openings(&root, &mut out.value).await {
                    let (code, message) = match e {
                        CoordinatorError::Invalid { code, message } => (code, message),
                        CoordinatorError::NotFound { what, id } => {
                            ("unknown_domain", format!("{what} {id} not found"))
                        }
                        other => ("internal", other.to_string()),
                    };
                    return Step::Fail { code: code.into(), message, logs: Some(logs) };
                }
                let volume = session.write(&task.program_id, out.volume);
                let input = CircuitInput { root, witnesses: out.value }.encode();
                // Preflight: run the circuit on this input (no proof). A circuit that rejects the
                // input fails here, before any prover time is spent, and the journal it commits
                // binds every receipt to this exact input.
                let expected = match self.preflight(&task.program_id, input.clone()).await {
                    // A circuit that commits another root than the task's (one not built on the
                    // guest SDK, or a bug) could never be accepted: fail now, before proving.
                    Ok((Ok(run), _)) if journal::split(&run.journal).map(|(r, _)| r) != Some(root) => {
                        let committed = journal::split(&run.journal).map(|(r, _)| hex::encode(r));
                        return Step::Fail {
                            code: "root_mismatch".into(),
                            message: format!(
                                "the circuit's journal starts with root {}, not the task's root {}: \
                                 circuits must commit `root ‖ output` (use zkcoproc_guest::entry!)",
                                committed.as_deref().unwrap_or("(journal shorter than a root)"),
                                hex::encode(root)
                            ),
                            logs: Some(logs),
                        };
                    }
                    Ok((Ok(run), _)) => run,
                    // The message says in a line what failed; what the guest wrote to standard
                    // error (the SDK's detail of a rejected witness) goes to the logs.
                    Ok((Err(e), guest_log)) => {
                        let detail: Vec<LogLine> = guest_log
                            .lines()
                            .filter(|l| !l.trim().is_empty())
                            .map(|l| LogLine { level: "error".into(), message: format!("circuit: {l}") })
                            .collect();
                        let logs = append_logs(&logs, "witnessing", &detail);
                        return Step::Fail {
                            code: e.code().into(),
                            message: e.to_string(),
                            logs: Some(logs),
                        };
                    }
                    Err(e) => return Step::fail("internal", e.to_string()),
                };
                Step::Advance(
                    TaskStatus::Proving,
                    StageUpdate {
                        input: Some(input),
                        logs: Some(logs),
                        volume,
                        expected_journal: Some(expected.journal),
                        // Until a prover reports its own count: sizes the lease lifetime.
                        user_cycles: Some(expected.user_cycles),
                        ..Default::default()
                    },
                )
            }
            Ok(Err(e)) => Step::Fail {
                code: e.error.code().to_owned(),
                message: e.error.to_string(),
                logs: Some(append_logs(&task.logs, "witnessing", &e.logs)),
            },
            Err(e) => Step::fail("internal", e.to_string()),
        }
    }

    async fn deliver(&self, task: &TaskRecord, guard: &mut Option<VolumeGuard>) -> Step {
        let (Some(receipt), Some(journal_bytes)) = (&task.receipt, &task.journal) else {
            return Step::fail("internal", "task reached delivering without a verified receipt");
        };
        let output = journal::split(journal_bytes).map(|(_, o)| o).unwrap_or_default();
        let mut event = entrypoint_event(task, "done", &task.logs);
        event["journal"] = json!(hex::encode(journal_bytes));
        event["output"] = json!(hex::encode(output));
        event["receipt_kind"] = json!(task.receipt_kind);
        event["receipt"] = json!(base64::engine::general_purpose::STANDARD.encode(receipt));
        let event = event.to_string();
        let called = self.call_entrypoint(task, event).await;
        if matches!(&called, Ok((_, session)) if !session.opened()) {
            guard.take();
        }
        match called {
            Ok((_, session)) if session.changed() => Step::Again,
            Ok((Ok(out), session)) => Step::Advance(
                TaskStatus::Done,
                StageUpdate {
                    result: Some(out.value),
                    logs: Some(append_logs(&task.logs, "delivering", &out.logs)),
                    volume: session.write(&task.program_id, out.volume),
                    ..Default::default()
                },
            ),
            // The entrypoint gave up because the program's volume is full: the task fails with
            // `volume_full`, and its verified proof stays at `GET /v1/tasks/{id}/proof`.
            Ok((Err(e), _)) if e.volume_full && matches!(e.error, RuntimeError::Controller(_)) => {
                Step::Fail {
                    code: "volume_full".to_owned(),
                    message: format!(
                        "delivery failed: the program's volume is full ({}); the verified proof is kept \
                     and can be fetched from GET /v1/tasks/{}/proof",
                        e.error, task.id
                    ),
                    logs: Some(append_logs(&task.logs, "delivering", &e.logs)),
                }
            }
            Ok((Err(e), _)) => Step::Fail {
                code: e.error.code().to_owned(),
                message: format!(
                    "delivery failed: {}; the verified proof is kept and can be fetched from \
                     GET /v1/tasks/{}/proof",
                    e.error, task.id
                ),
                logs: Some(append_logs(&task.logs, "delivering", &e.logs)),
            },
            Err(e) => Step::fail("internal", e.to_string()),
        }
    }
}

impl Coordinator {
    /// Runs the entrypoint on `event` with the program's volume attached; returns the output with
    /// the volume session (which version the call read).
    #[allow(clippy::type_complexity)]
    async fn call_entrypoint(
        &self,
        task: &TaskRecord,
        event: String,
    ) -> Result<(Result<CallOutput<String>, zkcoproc_runtime::CallError>, Session), CoordinatorError> {
        let controller = self.controller(&task.program_id).await?;
        let (volume, session) = self.open_volume(&task.program_id);
        let runtime = self.runtime.clone();
        let ctx = self.call_context(task);
        let out = self
            .controller_call(move || Ok(runtime.entrypoint(&controller, ctx, Some(volume), &event)))
            .await?;
        Ok((out, session))
    }

    /// Tells the entrypoint that the task failed (status `failed` and the error), so
    /// controllers can record failures. The task fails with the original error either way; the
    /// entrypoint's result, logs and volume writes are kept when it succeeds.
    pub(crate) async fn deliver_failure(
        &self,
        task: &TaskRecord,
        code: String,
        message: String,
        logs: Option<String>,
    ) -> Step {
        let logs = logs.unwrap_or_else(|| task.logs.clone());
        let mut event = entrypoint_event(task, "failed", &logs);
        event["error"] = json!({"code": code, "message": message});
        let event = event.to_string();
        let mut update = StageUpdate::default();
        match self.call_entrypoint(task, event).await {
            Ok((_, session)) if session.changed() => return Step::Again,
            Ok((Ok(out), session)) => {
                update.result = Some(out.value);
                update.logs = Some(append_logs(&logs, "delivering", &out.logs));
                update.volume = session.write(&task.program_id, out.volume);
            }
            Ok((Err(e), _)) => {
                let note = LogLine {
                    level: "warn".into(),
                    message: format!(
                        "entrypoint failed on the failure event: {} ({})",
                        e.error,
                        e.error.code()
                    ),
                };
                let mut lines = e.logs;
                lines.push(note);
                update.logs = Some(append_logs(&logs, "delivering", &lines));
            }
            Err(e) => {
                tracing::warn!(task = %task.id, error = %e, "cannot deliver the failure event");
                update.logs = Some(logs);
            }
        }
        Step::FailDelivered { code, message, update }
    }
}

/// The fields every entrypoint event carries: which task, its status, arguments, root and logs.
/// The event carries the task id so a controller can make re-delivery idempotent.
fn entrypoint_event(task: &TaskRecord, status: &str, logs: &str) -> Value {
    json!({
        "task_id": task.id,
        "program_id": task.program_id,
        "status": status,
        "args": serde_json::from_str::<Value>(&task.args).unwrap_or(Value::Null),
        "root": hex::encode(task.root),
        "logs": serde_json::from_str::<Value>(logs).unwrap_or(Value::Null),
    })
}

/// Appends `lines` (tagged with `stage`) to a stored JSON array of log lines.
fn append_logs(existing: &str, stage: &str, lines: &[LogLine]) -> String {
    let mut all: Vec<Value> = serde_json::from_str(existing).unwrap_or_default();
    all.extend(lines.iter().map(|l| json!({"stage": stage, "level": l.level, "message": l.message})));
    Value::Array(all).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_append_with_stage_tags() {
        let line = LogLine { level: "info".into(), message: "hi".into() };
        let once = append_logs("[]", "witnessing", std::slice::from_ref(&line));
        let twice = append_logs(&once, "delivering", &[line]);
        let v: Vec<Value> = serde_json::from_str(&twice).expect("json");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["stage"], "witnessing");
        assert_eq!(v[1]["stage"], "delivering");
    }
}

/// Deliveries claimed as their proofs were accepted, waiting for a runner: at most as many as
/// there are runners. A runner takes them before it claims from the store.
#[derive(Debug, Default)]
pub(crate) struct Handed(Mutex<HandedState>);

#[derive(Debug, Default)]
struct HandedState {
    /// the lease owner of handed deliveries (`None`: this process runs no runners)
    owner: Option<String>,
    /// at most this many wait
    capacity: usize,
    waiting: std::collections::VecDeque<(String, String)>,
}

impl Handed {
    fn with<T>(&self, f: impl FnOnce(&mut HandedState) -> T) -> T {
        match self.0.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn open(&self, owner: String, capacity: usize) {
        self.with(|s| (s.owner, s.capacity) = (Some(owner), capacity));
    }

    fn owner(&self) -> Option<String> {
        self.with(|s| s.owner.clone().filter(|_| s.waiting.len() < s.capacity))
    }

    fn push(&self, task_id: String, owner: String) {
        self.with(|s| s.waiting.push_back((task_id, owner)));
    }

    fn take(&self) -> Option<(String, String)> {
        self.with(|s| s.waiting.pop_front())
    }
}
