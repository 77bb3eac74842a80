//! `zkcoproc serve`: builds the components and runs the service until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use zkcoproc_api::access::{self, Access, ApiKeys};
use zkcoproc_api::server::HttpLimits;
use zkcoproc_api::webhooks::WebhookConfig;
use zkcoproc_coordinator::{Config, Coordinator, DomainConfig, LightClientConfig};
use zkcoproc_runtime::{Limits, Runtime};
use zkcoproc_store::{PgStore, SqliteStore, Store};
use zkcoproc_zkvm::{ChildProver, DevProver, Prover, ReceiptKind, Verifier, DEFAULT_MAX_CYCLES};

use crate::{ProverChoice, DEFAULT_LISTEN};

#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Data directory (SQLite database and lock), when no `--database` is given.
    #[arg(long, default_value = "./.zkcoproc")]
    data: PathBuf,
    /// A PostgreSQL database (`postgres://user[:password]@host[:port]/dbname`) instead of the
    /// embedded SQLite one. Any number of replicas may serve from one database.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Most connections this process opens to `--database` for queries (volume locks held by
    /// controller stages use a second pool of the same size, opened only as needed).
    #[arg(long, default_value_t = 16)]
    database_connections: usize,
    /// How long a runner's claim on a task lasts without a heartbeat, in milliseconds (runners
    /// renew every third of it); a task held by a process that died waits this long.
    #[arg(long, default_value_t = 60_000)]
    lease_ms: u64,
    /// Prover backend. `dev` executes only and marks receipts fake; this service then accepts
    /// fake receipts, and no other does.
    #[arg(long, value_enum, default_value = "cpu")]
    prover: ProverChoice,
    /// In-process provers (default: 1 for cpu, which uses every core; 2 for dev). They lease
    /// proving tasks exactly as remote `zkcoproc worker`s do; 0 runs none.
    #[arg(long)]
    workers: Option<usize>,
    /// Secrets of remote prover workers (`name:secret` lines); repeatable. Without one, remote
    /// workers are refused.
    #[arg(long)]
    worker_secret_file: Vec<PathBuf>,
    /// How long a prover lease lasts without a heartbeat, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    prover_lease_ms: u64,
    /// Runners of the controller stages (witnessing, delivery); default: one per core.
    #[arg(long)]
    runners: Option<usize>,
    /// How often idle runners and provers look for work nobody told them of (leases that
    /// expired, changes a replica missed), in milliseconds. New work wakes them at once: this
    /// process's own, and on PostgreSQL the other replicas' (LISTEN/NOTIFY).
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    /// Cap on a circuit's user cycles.
    #[arg(long, default_value_t = DEFAULT_MAX_CYCLES)]
    max_cycles: u64,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 32 << 20)]
    max_body_bytes: usize,
    /// Dev prover only: add this many milliseconds to every proof (models proving cost).
    #[arg(long, default_value_t = 0)]
    dev_delay_ms: u64,
    /// Size of a program's FAT-16 volume when its deploy does not ask for one, in MiB.
    #[arg(long, default_value_t = zkcoproc_vfs::DEFAULT_SIZE >> 20)]
    volume_size_mb: u64,
    /// Largest volume a deploy may ask for (`volume_size_mb`), in MiB (at most 2000, about what
    /// FAT-16 allows). Volumes are stored by 4 KiB block: a big one costs only what is written.
    #[arg(long, default_value_t = zkcoproc_vfs::MAX_SIZE >> 20)]
    max_volume_size_mb: u64,
    /// Controller sandbox: fuel (≈ wasm instructions) per call.
    #[arg(long, default_value_t = Limits::default().fuel)]
    controller_fuel: u64,
    /// Controller sandbox: wall-clock deadline per call, in milliseconds.
    #[arg(long, default_value_t = Limits::default().timeout.as_millis() as u64)]
    controller_timeout_ms: u64,
    /// Controller sandbox: linear memory cap per call, in MiB.
    #[arg(long, default_value_t = (Limits::default().max_memory_bytes >> 20) as u64)]
    controller_memory_mb: u64,
    /// Controller sandbox: host calls (log, context, fs, domain) per call.
    #[arg(long, default_value_t = Limits::default().max_host_calls)]
    controller_host_calls: u64,
    /// Follow an external chain: `NAME=JSON-RPC-URL` (e.g. `ethereum=http://127.0.0.1:8545`);
    /// repeatable.
    #[arg(long = "domain", value_name = "NAME=URL")]
    domains: Vec<String>,
    /// Trusted checkpoint of a domain; repeatable. With --beacon: `NAME=beacon:0xBLOCK_ROOT`, a
    /// beacon block root (weak-subjectivity checkpoint) the light client bootstraps from. With
    /// --trust rpc: `NAME=NUMBER:0xHASH`, the first execution block (without one, the node's
    /// confirmed block at start-up is taken, and logged).
    #[arg(long = "checkpoint", value_name = "NAME=beacon:0xROOT|NAME=NUMBER:0xHASH")]
    checkpoints: Vec<String>,
    /// The beacon node of a domain, `NAME=URL`; repeatable. Its light client decides which
    /// execution blocks enter the root.
    #[arg(long = "beacon", value_name = "NAME=URL")]
    beacons: Vec<String>,
    /// The consensus network of the light client: `mainnet`, `sepolia`, `holesky`, `hoodi`, or a
    /// consensus-spec `config.yaml`.
    #[arg(long, default_value = "mainnet")]
    network: String,
    /// Which light-client headers admit blocks: `finalized` (default), or `optimistic` (signed by
    /// a supermajority of the sync committee, not finalized: may be reorged away).
    #[arg(long, value_enum, default_value_t = Accept::Finalized)]
    accept: Accept,
    /// `rpc`: follow domains without --beacon on their JSON-RPC node's word (hashes and parent
    /// links from the checkpoint only; a node serving a self-consistent fake chain puts fake state
    /// roots under the root). Required for a domain without --beacon.
    #[arg(long, value_enum)]
    trust: Option<TrustArg>,
    /// Only blocks at least this many blocks below the node's head are inserted (reorg safety).
    #[arg(long)]
    confirmations: Option<u64>,
    /// How often domains are polled for new blocks, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    follow_interval_ms: u64,
    /// Secrets of block feeders (`name:secret` lines) for `POST /v1/domains/{name}/blocks`;
    /// repeatable. Without one, feeding is refused.
    #[arg(long)]
    feeder_secret_file: Vec<PathBuf>,
    /// A TOML config file with `[domains.NAME]` tables (`rpc`, `checkpoint`, `confirmations`);
    /// command-line flags win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// API keys (`name:token` lines): with it, deploy, submit, cancel, dry runs and volume reads
    /// need `Authorization: Bearer TOKEN`, and a program's volume and dry runs are its owner's
    /// (the identity that first deployed it). Without it the service is open to anyone.
    #[arg(long, value_name = "FILE")]
    api_keys_file: Option<PathBuf>,
    /// Without --api-keys-file, listen on a non-loopback address anyway (anyone who can reach
    /// it may deploy, prove, cancel and read every volume).
    #[arg(long)]
    insecure_open: bool,
    /// Unfinished tasks one identity (or, on an open service, all anonymous callers together)
    /// may have at once.
    #[arg(long, default_value_t = 1_000)]
    max_queued_per_identity: u64,
    /// Submits per second one identity (or anonymous client address) may make on average.
    #[arg(long, default_value_t = access::Quotas::default().submit_rate)]
    submit_rate: f64,
    /// Submits one identity may make at once before --submit-rate applies.
    #[arg(long, default_value_t = access::Quotas::default().submit_burst)]
    submit_burst: u32,
    /// Dry runs running at once (more wait briefly, then get 503).
    #[arg(long, default_value_t = access::Quotas::default().dry_runs)]
    max_dry_runs: usize,
    /// Deploys (controller compiles) running at once.
    #[arg(long, default_value_t = access::Quotas::default().deploys)]
    max_deploys: usize,
    /// Volume reads (fs, volume export) running at once.
    #[arg(long, default_value_t = access::Quotas::default().volume_reads)]
    max_volume_reads: usize,
    /// Longest a volume export waits for its client to take the next 256 KiB, in milliseconds;
    /// then the export is cut off and its volume-read slot freed.
    #[arg(long, default_value_t = access::Quotas::default().export_idle.as_millis() as u64)]
    export_idle_ms: u64,
    /// Receipt verifications (`POST /v1/verify`) running at once.
    #[arg(long, default_value_t = access::Quotas::default().verifications)]
    max_verifications: usize,
    /// Server-Sent Event streams open at once.
    #[arg(long, default_value_t = access::Quotas::default().event_streams)]
    max_event_streams: usize,
    /// Longest a client may take to send a request's headers, in milliseconds.
    #[arg(long, default_value_t = HttpLimits::default().header_read_timeout.as_millis() as u64)]
    header_timeout_ms: u64,
    /// Longest a client may take to send a request's body, in milliseconds.
    #[arg(long, default_value_t = HttpLimits::default().body_read_timeout.as_millis() as u64)]
    body_timeout_ms: u64,
    /// HTTP connections served at once.
    #[arg(long, default_value_t = HttpLimits::default().max_connections)]
    max_connections: usize,
    /// Days finished tasks keep their circuit input and receipt (the task, its journal and
    /// result stay); 0 keeps them forever.
    #[arg(long, default_value_t = 30)]
    retention_days: u64,
    /// Tests: the retention period in milliseconds instead of --retention-days.
    #[arg(long, hide = true)]
    retention_ms: Option<u64>,
    /// Longest a prover lease may be renewed for, in milliseconds; default: ten times an
    /// estimate of the task's proving time from its cycle count, at least 30 minutes.
    #[arg(long)]
    prover_max_lease_ms: Option<u64>,
    /// A remote worker whose last this-many leases all ended without a proof is refused leases
    /// for --quarantine-ms (0: never).
    #[arg(long, default_value_t = Config::default().quarantine_after)]
    quarantine_after: u32,
    /// How long a quarantine lasts, in milliseconds (from the newest failed lease).
    #[arg(long, default_value_t = Config::default().quarantine.as_millis() as u64)]
    quarantine_ms: u64,
    /// Accept callback URLs of loopback, private, link-local and other non-public addresses
    /// (tests, private networks); by default webhooks go to public addresses only.
    #[arg(long)]
    webhook_allow_private: bool,
    /// Longest one webhook attempt may take, connecting included, in milliseconds.
    #[arg(long, default_value_t = WebhookConfig::default().timeout.as_millis() as u64)]
    webhook_timeout_ms: u64,
    /// How long after a task ended its webhook is retried before it is abandoned, in seconds.
    #[arg(long, default_value_t = WebhookConfig::default().retry_for.as_secs())]
    webhook_retry_for_secs: u64,
    /// Pause after a webhook's first failed attempt, in milliseconds; each further one doubles
    /// it, up to --webhook-max-backoff-ms.
    #[arg(long, default_value_t = WebhookConfig::default().first_retry.as_millis() as u64)]
    webhook_first_retry_ms: u64,
    /// Longest pause between a webhook's attempts, in milliseconds.
    #[arg(long, default_value_t = WebhookConfig::default().max_backoff.as_millis() as u64)]
    webhook_max_backoff_ms: u64,
}

/// `--accept`
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Accept {
    /// finalized headers only
    Finalized,
    /// supermajority-signed optimistic headers too
    Optimistic,
}

/// `--trust`
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TrustArg {
    /// the execution node's word, from a checkpoint
    Rpc,
}

/// Default `--confirmations`: deep enough that ordinary Ethereum reorgs never reach it.
const DEFAULT_CONFIRMATIONS: u64 = 12;

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    domains: std::collections::BTreeMap<String, DomainFileEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainFileEntry {
    rpc: String,
    checkpoint: Option<String>,
    confirmations: Option<u64>,
    beacon: Option<String>,
}

/// A `--checkpoint` value: a beacon block root, or an execution block.
enum Checkpoint {
    Beacon([u8; 32]),
    Block(u64, [u8; 32]),
}

fn parse_any_checkpoint(s: &str) -> anyhow::Result<Checkpoint> {
    match s.strip_prefix("beacon:") {
        Some(root) => Ok(Checkpoint::Beacon(parse_hash(root)?)),
        None => parse_checkpoint(s).map(|(n, h)| Checkpoint::Block(n, h)),
    }
}

fn parse_hash(hash: &str) -> anyhow::Result<[u8; 32]> {
    hex::decode(hash.strip_prefix("0x").unwrap_or(hash))
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| anyhow::anyhow!("checkpoint hash `{hash}` is not 32 bytes of hex"))
}

fn parse_checkpoint(s: &str) -> anyhow::Result<(u64, [u8; 32])> {
    let (number, hash) =
        s.split_once(':').ok_or_else(|| anyhow::anyhow!("checkpoint `{s}` is not NUMBER:0xHASH"))?;
    let number: u64 = number.parse().with_context(|| format!("checkpoint block number `{number}`"))?;
    Ok((number, parse_hash(hash)?))
}

/// The domains from the config file and the flags (flags win).
fn domain_configs(args: &ServeArgs) -> anyhow::Result<Vec<DomainConfig>> {
    let file: ConfigFile = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => ConfigFile::default(),
    };
    let poll_interval = Duration::from_millis(args.follow_interval_ms.max(10));
    let mut domains: std::collections::BTreeMap<String, DomainConfig> = std::collections::BTreeMap::new();
    // (beacon URL, beacon checkpoint) per domain
    let mut beacons: std::collections::BTreeMap<String, (Option<String>, Option<[u8; 32]>)> =
        Default::default();
    for (name, e) in file.domains {
        let confirmations = args.confirmations.or(e.confirmations).unwrap_or(DEFAULT_CONFIRMATIONS);
        let mut config = DomainConfig {
            name: name.clone(),
            rpc_url: e.rpc,
            checkpoint: None,
            confirmations,
            poll_interval,
            light_client: None,
        };
        match e.checkpoint.as_deref().map(parse_any_checkpoint).transpose()? {
            Some(Checkpoint::Block(n, h)) => config.checkpoint = Some((n, h)),
            Some(Checkpoint::Beacon(root)) => beacons.entry(name.clone()).or_default().1 = Some(root),
            None => {}
        }
        if let Some(url) = e.beacon {
            beacons.entry(name.clone()).or_default().0 = Some(url);
        }
        domains.insert(name, config);
    }
    for d in &args.domains {
        let (name, url) =
            d.split_once('=').ok_or_else(|| anyhow::anyhow!("--domain `{d}` is not NAME=URL"))?;
        let confirmations = args.confirmations.unwrap_or(DEFAULT_CONFIRMATIONS);
        let entry = domains.entry(name.to_owned()).or_insert_with(|| DomainConfig {
            name: name.to_owned(),
            rpc_url: String::new(),
            checkpoint: None,
            confirmations,
            poll_interval,
            light_client: None,
        });
        entry.rpc_url = url.to_owned();
    }
    for c in &args.checkpoints {
        let (name, cp) = c.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--checkpoint `{c}` is not NAME=beacon:0xROOT or NAME=NUMBER:0xHASH")
        })?;
        let entry = domains
            .get_mut(name)
            .ok_or_else(|| anyhow::anyhow!("--checkpoint for `{name}`, which no --domain configures"))?;
        match parse_any_checkpoint(cp)? {
            Checkpoint::Block(n, h) => entry.checkpoint = Some((n, h)),
            Checkpoint::Beacon(root) => beacons.entry(name.to_owned()).or_default().1 = Some(root),
        }
    }
    for b in &args.beacons {
        let (name, url) =
            b.split_once('=').ok_or_else(|| anyhow::anyhow!("--beacon `{b}` is not NAME=URL"))?;
        if !domains.contains_key(name) {
            anyhow::bail!("--beacon for `{name}`, which no --domain configures");
        }
        beacons.entry(name.to_owned()).or_default().0 = Some(url.to_owned());
    }
    let mut spec = None;
    for (name, config) in domains.iter_mut() {
        match beacons.remove(name).unwrap_or_default() {
            (Some(beacon_url), Some(checkpoint)) => {
                if config.checkpoint.is_some() {
                    anyhow::bail!(
                        "{name}: a light-client domain's checkpoint is a beacon block root \
                         (--checkpoint {name}=beacon:0xROOT), not an execution block"
                    );
                }
                if spec.is_none() {
                    let loaded = zkcoproc_lightclient::ChainSpec::load(&args.network)
                        .map_err(|e| anyhow::anyhow!("--network: {e}"))?;
                    spec = Some(Arc::new(loaded));
                }
                config.light_client = Some(LightClientConfig {
                    beacon_url,
                    checkpoint,
                    spec: spec.clone().ok_or_else(|| anyhow::anyhow!("--network"))?,
                    accept_optimistic: args.accept == Accept::Optimistic,
                });
            }
            (Some(_), None) => anyhow::bail!(
                "{name}: --beacon needs a trusted beacon block root: --checkpoint {name}=beacon:0xROOT"
            ),
            (None, Some(_)) => anyhow::bail!("{name}: a beacon checkpoint needs --beacon {name}=URL"),
            (None, None) if args.trust == Some(TrustArg::Rpc) => tracing::warn!(
                domain = %name,
                "--trust rpc: blocks are admitted on the execution node's word (hashes and parent links \
                 from the checkpoint only); a node serving a self-consistent fake chain can put fake state \
                 roots under the root. Give --beacon and a beacon checkpoint for a light client"
            ),
            (None, None) => anyhow::bail!(
                "{name}: no light client: give --beacon {name}=URL --checkpoint {name}=beacon:0xROOT, \
                 or accept the execution node's word with --trust rpc"
            ),
        }
    }
    Ok(domains.into_values().collect())
}

pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let keys = match &args.api_keys_file {
        Some(file) => Some(ApiKeys::read(file).map_err(|e| anyhow::anyhow!(e))?),
        None if !args.listen.ip().is_loopback() && !args.insecure_open => anyhow::bail!(
            "refusing to listen on {} without --api-keys-file: anyone who can reach it could deploy, \
             prove, cancel and read every volume. Give --api-keys-file FILE, or --insecure-open to \
             serve openly anyway",
            args.listen
        ),
        None => None,
    };
    let store: Arc<dyn Store> = match &args.database {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Arc::new(
            PgStore::connect(url, args.database_connections)
                .await
                .with_context(|| format!("connecting to the database {}", redact(url)))?,
        ),
        Some(url) => anyhow::bail!("--database `{}` is not a postgres:// URL", redact(url)),
        None => Arc::new(
            SqliteStore::open(&args.data)
                .with_context(|| format!("opening the store in {}", args.data.display()))?,
        ),
    };
    let limits = Limits {
        fuel: args.controller_fuel,
        timeout: Duration::from_millis(args.controller_timeout_ms),
        max_memory_bytes: usize::try_from(args.controller_memory_mb << 20)?,
        max_host_calls: args.controller_host_calls,
        ..Limits::default()
    };
    let runtime = Arc::new(Runtime::new(limits)?);
    let max_args_bytes = runtime.limits().max_args_bytes;
    let (prover, verifier, default_workers): (Arc<dyn Prover>, Verifier, usize) = match args.prover {
        ProverChoice::Cpu => {
            // Each proof in a child process of this binary: a cancelled task's proof is killed.
            let exe = std::env::current_exe().context("locating this executable for the prover")?;
            (
                Arc::new(ChildProver::new(exe, ReceiptKind::Composite, args.max_cycles)?),
                Verifier::new(false),
                1,
            )
        }
        ProverChoice::Dev => {
            tracing::warn!("dev prover: receipts are FAKE and prove nothing");
            (
                Arc::new(DevProver::new(args.max_cycles, Duration::from_millis(args.dev_delay_ms))),
                Verifier::new(true),
                2,
            )
        }
    };
    let (min, max) = (zkcoproc_vfs::MIN_SIZE >> 20, zkcoproc_vfs::MAX_SIZE >> 20);
    if !(min..=max).contains(&args.max_volume_size_mb) {
        anyhow::bail!("--max-volume-size-mb must be between {min} and {max}");
    }
    if !(min..=args.max_volume_size_mb).contains(&args.volume_size_mb) {
        anyhow::bail!(
            "--volume-size-mb must be between {min} and --max-volume-size-mb ({})",
            args.max_volume_size_mb
        );
    }
    let volume_size = args.volume_size_mb << 20;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let config = Config {
        provers: args.workers.unwrap_or(default_workers),
        runners: args.runners.unwrap_or(cores),
        poll_interval: Duration::from_millis(args.poll_ms.max(10)),
        prover_lease: Duration::from_millis(args.prover_lease_ms.max(300)),
        lease: Duration::from_millis(args.lease_ms.max(300)),
        volume_size,
        max_volume_size: args.max_volume_size_mb << 20,
        max_cycles: args.max_cycles,
        max_unfinished_per_identity: args.max_queued_per_identity,
        prover_max_lease: args.prover_max_lease_ms.map(Duration::from_millis),
        quarantine_after: args.quarantine_after,
        quarantine: Duration::from_millis(args.quarantine_ms),
        retention: match args.retention_ms {
            Some(ms) => Some(Duration::from_millis(ms.max(1))),
            None => (args.retention_days > 0)
                .then(|| Duration::from_secs(args.retention_days.saturating_mul(86_400))),
        },
        ..Config::default()
    };
    let domains = domain_configs(&args)?;
    let coordinator = Arc::new(
        Coordinator::new(store, runtime, prover, verifier, config)
            .with_domains(domains)
            .map_err(|e| anyhow::anyhow!(e))?,
    );
    let mut runners = coordinator.spawn_domains().await.map_err(|e| anyhow::anyhow!(e))?;
    runners.extend(coordinator.spawn_runners().await?);
    let webhooks = WebhookConfig {
        allow_private: args.webhook_allow_private,
        timeout: Duration::from_millis(args.webhook_timeout_ms.max(100)),
        retry_for: Duration::from_secs(args.webhook_retry_for_secs),
        first_retry: Duration::from_millis(args.webhook_first_retry_ms.max(10)),
        max_backoff: Duration::from_millis(args.webhook_max_backoff_ms.max(10)),
        ..WebhookConfig::default()
    };
    runners
        .push(zkcoproc_api::webhooks::spawn(coordinator.clone(), webhooks).map_err(|e| anyhow::anyhow!(e))?);

    let mut secrets = Vec::new();
    for file in &args.worker_secret_file {
        secrets.extend(zkcoproc_api::worker_auth::read_secrets(file).map_err(|e| anyhow::anyhow!(e))?);
    }
    if secrets.is_empty() {
        tracing::info!("no --worker-secret-file: remote prover workers are refused");
    }
    let mut feeders = Vec::new();
    for file in &args.feeder_secret_file {
        feeders.extend(zkcoproc_api::worker_auth::read_secrets(file).map_err(|e| anyhow::anyhow!(e))?);
    }
    let quotas = access::Quotas {
        submit_rate: args.submit_rate,
        submit_burst: args.submit_burst,
        dry_runs: args.max_dry_runs,
        deploys: args.max_deploys,
        volume_reads: args.max_volume_reads,
        verifications: args.max_verifications,
        event_streams: args.max_event_streams,
        export_idle: Duration::from_millis(args.export_idle_ms),
        ..access::Quotas::default()
    };
    let open = keys.is_none();
    let api_config = zkcoproc_api::ApiConfig {
        max_body_bytes: args.max_body_bytes,
        max_args_bytes,
        access: Arc::new(Access::new(keys, &quotas)),
        allow_private_callbacks: args.webhook_allow_private,
    };
    let app = zkcoproc_api::router(
        coordinator.clone(),
        &api_config,
        zkcoproc_api::worker_auth::WorkerAuth::new(secrets),
        zkcoproc_api::FeederAuth(zkcoproc_api::worker_auth::WorkerAuth::new(feeders)),
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let data = match &args.database {
        Some(url) => redact(url),
        None => args.data.display().to_string(),
    };
    tracing::info!(%addr, %data, prover = ?args.prover, "zkcoproc serving");
    if open {
        tracing::warn!(%addr, "no --api-keys-file: the service is OPEN, anyone who reaches it may deploy, prove, \
            cancel and read volumes");
    }
    // Scripts and tests read this line to learn the address (useful with port 0).
    println!("zkcoproc listening on http://{addr}");

    let http = HttpLimits {
        header_read_timeout: Duration::from_millis(args.header_timeout_ms.max(100)),
        body_read_timeout: Duration::from_millis(args.body_timeout_ms.max(100)),
        max_connections: args.max_connections,
        ..HttpLimits::default()
    };
    zkcoproc_api::server::serve(listener, app, http, shutdown_signal()).await?;
    for r in runners {
        r.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// A database URL without its password, for messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(extra);
        match Wrap::try_parse_from(argv) {
            Ok(w) => w.args,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn database_passwords_stay_out_of_messages() {
        assert_eq!(redact("postgres://zk:s3cret@db:5432/zk"), "postgres://zk:***@db:5432/zk");
        assert_eq!(redact("postgres://zk@db/zk"), "postgres://zk@db/zk");
        assert_eq!(redact("postgres://db/zk"), "postgres://db/zk");
    }

    #[test]
    fn domains_come_from_the_config_file_and_flags_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("zkcoproc.toml");
        let hash = format!("0x{}", "ab".repeat(32));
        std::fs::write(
            &file,
            format!(
                "[domains.ethereum]\nrpc = \"http://file:8545\"\ncheckpoint = \"100:{hash}\"\nconfirmations = 5\n\n\
                 [domains.gnosis]\nrpc = \"http://gnosis\"\n"
            ),
        )
        .expect("write");
        let config = file.to_str().expect("path");
        // Without a light client, RPC trust must be asked for.
        let err = domain_configs(&parse(&["--config", config])).expect_err("no --trust rpc");
        assert!(err.to_string().contains("--trust rpc"), "{err}");
        let domains = domain_configs(&parse(&["--config", config, "--trust", "rpc"])).expect("config");
        assert_eq!(domains.len(), 2);
        assert_eq!(domains[0].name, "ethereum");
        assert_eq!(domains[0].rpc_url, "http://file:8545");
        assert_eq!(domains[0].checkpoint, Some((100, [0xab; 32])));
        assert_eq!(domains[0].confirmations, 5);
        assert_eq!(domains[1].confirmations, DEFAULT_CONFIRMATIONS);

        let flags = ["--config", config, "--domain", "ethereum=http://flag", "--checkpoint"];
        let cp = format!("ethereum=7:{}", "cd".repeat(32));
        let mut argv = flags.to_vec();
        argv.extend([cp.as_str(), "--confirmations", "0", "--trust", "rpc"]);
        let domains = domain_configs(&parse(&argv)).expect("flags");
        assert_eq!(domains[0].rpc_url, "http://flag");
        assert_eq!(domains[0].checkpoint, Some((7, [0xcd; 32])));
        assert_eq!(domains[0].confirmations, 0);

        for bad in [
            vec!["--domain", "ethereum"],
            vec!["--domain", "ethereum=http://x", "--checkpoint", "ethereum=7:0x12"],
            vec!["--checkpoint", "sepolia=1:0x00"],
        ] {
            assert!(domain_configs(&parse(&bad)).is_err(), "{bad:?} was accepted");
        }
        std::fs::write(&file, "[domains.ethereum]\nrpc = 1\n").expect("write");
        assert!(domain_configs(&parse(&["--config", config])).is_err());
    }

    #[test]
    fn a_beacon_and_a_beacon_checkpoint_make_a_light_client_domain() {
        let root = format!("ethereum=beacon:0x{}", "ef".repeat(32));
        let args =
            ["--domain", "ethereum=http://exec", "--beacon", "ethereum=http://beacon", "--checkpoint", &root];
        let domains = domain_configs(&parse(&args)).expect("light client");
        let lc = domains[0].light_client.as_ref().expect("light-client domain");
        assert_eq!(lc.beacon_url, "http://beacon");
        assert_eq!(lc.checkpoint, [0xef; 32]);
        assert_eq!(lc.spec.name, "mainnet");
        assert!(!lc.accept_optimistic);
        assert_eq!(domains[0].checkpoint, None);

        let mut optimistic = args.to_vec();
        optimistic.extend(["--accept", "optimistic", "--network", "sepolia"]);
        let domains = domain_configs(&parse(&optimistic)).expect("optimistic");
        let lc = domains[0].light_client.as_ref().expect("light-client domain");
        assert!(lc.accept_optimistic);
        assert_eq!(lc.spec.chain_id, Some(11_155_111));

        let block_cp = format!("ethereum=7:0x{}", "cd".repeat(32));
        for bad in [
            // a beacon without a beacon checkpoint, and the other way round
            vec!["--domain", "ethereum=http://exec", "--beacon", "ethereum=http://beacon"],
            vec!["--domain", "ethereum=http://exec", "--checkpoint", &root],
            // an execution-block checkpoint for a light client
            vec![
                "--domain",
                "ethereum=http://exec",
                "--beacon",
                "ethereum=http://b",
                "--checkpoint",
                &root,
                "--checkpoint",
                &block_cp,
            ],
            // a network that does not exist
            vec![
                "--domain",
                "ethereum=http://exec",
                "--beacon",
                "ethereum=http://b",
                "--checkpoint",
                &root,
                "--network",
                "nowhere",
            ],
            vec!["--domain", "ethereum=http://exec", "--beacon", "gnosis=http://b"],
        ] {
            assert!(domain_configs(&parse(&bad)).is_err(), "{bad:?} was accepted");
        }
    }
}
