//! Prometheus metrics of the coordinator (`GET /metrics`, OpenMetrics text).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use zkcoproc_store::{Store, StoreError, TaskStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainLabel {
    domain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainOutcomeLabel {
    domain: String,
    outcome: String,
}

/// The coordinator's metrics. Counters and histograms are kept in memory (per process); task
/// counts and queue depth are read from the store at scrape time, so they survive restarts.
pub(crate) struct Metrics {
    registry: Registry,
    stage_seconds: Family<StageLabel, Histogram>,
    tasks: Family<StatusLabel, Gauge>,
    queue_depth: Gauge,
    runners: Gauge,
    provers: Gauge,
    retries: Counter,
    /// deliveries claimed in the commit that accepted their proof
    pub(crate) handed: Counter,
    /// proving tasks leased to an idle in-process prover in the commit that moved them there
    pub(crate) provers_handed: Counter,
    /// volume traffic, counted by the volume code itself
    pub(crate) volume: crate::volume::VolumeCounters,
    verification_failures: Counter,
    failures: Family<CodeLabel, Counter>,
    leases: Family<OutcomeLabel, Gauge>,
    workers: Gauge,
    quarantined: Gauge,
    pruned: Counter,
    blocks: Family<DomainLabel, Counter>,
    lc_finalized: Family<DomainLabel, Gauge>,
    lc_optimistic: Family<DomainLabel, Gauge>,
    lc_period: Family<DomainLabel, Gauge>,
    lc_updates: Family<DomainOutcomeLabel, Counter>,
    stalled: Family<DomainLabel, Gauge>,
    webhook_attempts: Family<OutcomeLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("zkcoproc");
        // 1 ms .. ~9 min: dev-mode stages to multi-segment CPU proofs.
        let stage_seconds = Family::<StageLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 20))
        });
        let tasks = Family::<StatusLabel, Gauge>::default();
        let queue_depth = Gauge::default();
        let runners = Gauge::default();
        let provers = Gauge::default();
        let retries = Counter::default();
        let verification_failures = Counter::default();
        let failures = Family::<CodeLabel, Counter>::default();
        let leases = Family::<OutcomeLabel, Gauge>::default();
        let workers = Gauge::default();
        let quarantined = Gauge::default();
        let pruned = Counter::default();
        let blocks = Family::<DomainLabel, Counter>::default();
        let lc_finalized = Family::<DomainLabel, Gauge>::default();
        let lc_optimistic = Family::<DomainLabel, Gauge>::default();
        let lc_period = Family::<DomainLabel, Gauge>::default();
        let lc_updates = Family::<DomainOutcomeLabel, Counter>::default();
        let stalled = Family::<DomainLabel, Gauge>::default();
        registry.register(
            "light_client_finalized_slot",
            "Beacon slot of the light client's finalized header",
            lc_finalized.clone(),
        );
        registry.register(
            "light_client_optimistic_slot",
            "Beacon slot of the light client's optimistic header",
            lc_optimistic.clone(),
        );
        registry.register(
            "light_client_period",
            "The light client's sync-committee period",
            lc_period.clone(),
        );
        registry.register(
            "light_client_updates",
            "Light-client updates processed, by outcome (accepted, or the reason of the refusal)",
            lc_updates.clone(),
        );
        let webhook_attempts = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts by how they ended (delivered, retry, abandoned)",
            webhook_attempts.clone(),
        );
        registry.register(
            "domain_stalled",
            "1 while a domain cannot advance (node unreachable, unverifiable header, stale light client)",
            stalled.clone(),
        );
        registry.register(
            "domain_blocks_inserted",
            "Checked blocks inserted into the coprocessor tree",
            blocks.clone(),
        );
        registry.register("stage_duration_seconds", "Time tasks spent in each stage", stage_seconds.clone());
        registry.register("tasks", "Tasks by status (from the store)", tasks.clone());
        registry.register("queue_depth", "Tasks waiting to be claimed (queued)", queue_depth.clone());
        registry.register(
            "runners",
            "Runners of this process (they drive the controller stages: witnessing and delivering)",
            runners.clone(),
        );
        registry.register("provers", "In-process provers of this process", provers.clone());
        registry.register("retries", "Claims of a task that had been claimed before", retries.clone());
        let handed = Counter::default();
        registry.register(
            "deliveries_handed",
            "Deliveries claimed for this process's runners in the commit that accepted their proof (not by a claim of their own)",
            handed.clone(),
        );
        let provers_handed = Counter::default();
        registry.register(
            "prover_leases_handed",
            "Tasks leased to an idle in-process prover of this process in the commit that moved them into proving (not by a lease request of its own)",
            provers_handed.clone(),
        );
        let volume = crate::volume::VolumeCounters::default();
        registry.register(
            "volume_opens",
            "Volumes whose stored version was looked up (a controller call or fs request that touched its volume)",
            volume.opens.clone(),
        );
        registry.register(
            "volume_blocks_read",
            "Volume blocks read from the store",
            volume.blocks_read.clone(),
        );
        registry.register("volume_blocks_written", "Volume blocks committed", volume.blocks_written.clone());
        registry.register(
            "volume_stage_reruns",
            "Stages run again because another replica changed the volume blocks they used",
            volume.reruns.clone(),
        );
        registry.register(
            "verification_failures",
            "Receipts that failed verification, the root check or the preflight journal check",
            verification_failures.clone(),
        );
        registry.register("task_failures", "Failed tasks by error code", failures.clone());
        registry.register(
            "prover_leases",
            "Prover leases by outcome: open, accepted, failed, invalid, expired, superseded (from the store)",
            leases.clone(),
        );
        registry.register(
            "workers",
            "Provers (in-process or remote) that took a lease in the last 5 minutes",
            workers.clone(),
        );
        registry.register(
            "workers_quarantined",
            "Remote workers refused leases for now because their recent leases kept failing",
            quarantined.clone(),
        );
        registry.register(
            "tasks_pruned",
            "Finished tasks whose input and receipt were dropped after the retention period",
            pruned.clone(),
        );
        Metrics {
            registry,
            stage_seconds,
            tasks,
            queue_depth,
            runners,
            provers,
            retries,
            handed,
            provers_handed,
            volume,
            verification_failures,
            failures,
            leases,
            workers,
            quarantined,
            pruned,
            blocks,
            lc_finalized,
            lc_optimistic,
            lc_period,
            lc_updates,
            stalled,
            webhook_attempts,
        }
    }

    pub(crate) fn webhook_attempt(&self, outcome: &str) {
        self.webhook_attempts.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
    }

    pub(crate) fn stage_finished(&self, stage: TaskStatus, seconds: f64) {
        self.stage_seconds.get_or_create(&StageLabel { stage: stage.as_str().into() }).observe(seconds);
    }

    pub(crate) fn claimed(&self, attempts: u32) {
        if attempts > 1 {
            self.retries.inc();
        }
    }

    pub(crate) fn blocks_inserted(&self, domain: &str, n: u64) {
        self.blocks.get_or_create(&DomainLabel { domain: domain.into() }).inc_by(n);
    }

    pub(crate) fn light_client(&self, domain: &str, finalized: u64, optimistic: u64, period: u64) {
        let label = DomainLabel { domain: domain.into() };
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.lc_finalized.get_or_create(&label).set(int(finalized));
        self.lc_optimistic.get_or_create(&label).set(int(optimistic));
        self.lc_period.get_or_create(&label).set(int(period));
    }

    pub(crate) fn light_client_update(&self, domain: &str, outcome: &str) {
        let label = DomainOutcomeLabel { domain: domain.into(), outcome: outcome.into() };
        self.lc_updates.get_or_create(&label).inc();
    }

    pub(crate) fn stalled(&self, domain: &str, stalled: bool) {
        self.stalled.get_or_create(&DomainLabel { domain: domain.into() }).set(i64::from(stalled));
    }

    pub(crate) fn failed(&self, code: &str) {
        if matches!(code, "verification_failed" | "root_mismatch" | "journal_mismatch") {
            self.verification_failures.inc();
        }
        self.failures.get_or_create(&CodeLabel { code: code.into() }).inc();
    }

    pub(crate) fn set_quarantined(&self, n: usize) {
        self.quarantined.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub(crate) fn pruned(&self, n: u64) {
        self.pruned.inc_by(n);
    }

    pub(crate) fn set_runners(&self, runners: usize, provers: usize) {
        self.runners.set(i64::try_from(runners).unwrap_or(i64::MAX));
        self.provers.set(i64::try_from(provers).unwrap_or(i64::MAX));
    }

    /// Refreshes the store-backed gauges and renders everything as OpenMetrics text.
    pub(crate) async fn render(&self, store: &dyn Store) -> Result<String, StoreError> {
        let counts = store.status_counts().await?;
        for status in TaskStatus::ALL {
            let n = counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            self.tasks.get_or_create(&StatusLabel { status: status.as_str().into() }).set(n);
            if status == TaskStatus::Queued {
                self.queue_depth.set(n);
            }
        }
        let (by_outcome, workers) = store.lease_stats(zkcoproc_store::now_ms() - 5 * 60 * 1000).await?;
        for outcome in ["open", "accepted", "failed", "invalid", "expired", "superseded"] {
            let n = by_outcome.iter().find(|(o, _)| o == outcome).map_or(0, |(_, n)| *n);
            self.leases
                .get_or_create(&OutcomeLabel { outcome: outcome.into() })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.workers.set(i64::try_from(workers).unwrap_or(i64::MAX));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| StoreError::Database(format!("cannot encode metrics: {e}")))?;
        Ok(out)
    }
}
