//! `zkcoproc worker`: a prover worker that leases proving tasks from a service over HTTP.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use serde_json::{json, Value};
use zkcoproc_api::worker_auth;
use zkcoproc_zkvm::{Cancel, ChildProver, CircuitImage, DevProver, Prover, ReceiptKind, DEFAULT_MAX_CYCLES};

use crate::ProverChoice;

#[derive(clap::Args, Debug)]
pub(crate) struct WorkerArgs {
    /// The service's URL, or several replicas' URLs separated by commas: the worker stays with
    /// one and moves to the next when it cannot be reached.
    #[arg(long, env = "ZKCOPROC_SERVER", default_value = crate::DEFAULT_SERVER)]
    server: String,
    /// File with this worker's secret (`name:secret`, or a bare secret).
    #[arg(long)]
    secret_file: PathBuf,
    /// Worker name (default: the name in the secret file).
    #[arg(long)]
    name: Option<String>,
    /// Prover backend: `cpu` (real proofs) or `dev` (fake receipts, for dev services only).
    #[arg(long, value_enum, default_value = "cpu")]
    prover: ProverChoice,
    /// Stop after this many tasks (default: run until killed).
    #[arg(long)]
    max_tasks: Option<u64>,
    /// Cap on a circuit's user cycles.
    #[arg(long, default_value_t = DEFAULT_MAX_CYCLES)]
    max_cycles: u64,
    /// Dev prover only: add this many milliseconds to every proof (models proving cost).
    #[arg(long, default_value_t = 0)]
    dev_delay_ms: u64,
    /// Lease and prove only these tasks (repeat the flag, or separate ids with commas), e.g. to
    /// debug a stuck task on a chosen machine; the worker ends once none of them is left to
    /// prove.
    #[arg(long = "task", value_name = "TASK_ID", value_delimiter = ',')]
    tasks: Vec<String>,
}

/// A client that signs every request with the worker's secret.
struct Signed {
    /// the service's replicas; requests go to `bases[current]`
    bases: Vec<String>,
    current: std::sync::atomic::AtomicUsize,
    http: reqwest::Client,
    name: String,
    secret: Vec<u8>,
    /// the `Retry-After` (seconds) of the last 429 or 503 answer
    retry_after: std::sync::atomic::AtomicU64,
}

impl Signed {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let body = body.map(serde_json::to_vec).transpose()?.unwrap_or_default();
        let first = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for i in 0..self.bases.len() {
            let index = (first + i) % self.bases.len();
            let base = &self.bases[index];
            let timestamp = worker_auth::unix_now();
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let signature = worker_auth::sign(&self.secret, method.as_str(), path, timestamp, &nonce, &body);
            let sent = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .header(worker_auth::HEADER_WORKER, &self.name)
                .header(worker_auth::HEADER_TIMESTAMP, timestamp.to_string())
                .header(worker_auth::HEADER_NONCE, nonce)
                .header(worker_auth::HEADER_SIGNATURE, signature)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    if index != first {
                        tracing::warn!(server = %base, "moved to another replica");
                        self.current.store(index, Ordering::Relaxed);
                    }
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                    self.retry_after.store(retry_after.min(3600), Ordering::Relaxed);
                    return Ok((resp.status().as_u16(), resp.bytes().await?.to_vec()));
                }
                Err(e) => {
                    tracing::debug!(server = %base, error = %e, "cannot reach the service");
                    last_error =
                        Some(anyhow::Error::new(e).context(format!("cannot reach the service at {base}")));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no service URL")))
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let (status, bytes) = self.call(method, path, Some(body)).await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }
}

fn refusal(status: u16, body: &Value) -> anyhow::Error {
    anyhow!(
        "the service refused this worker (HTTP {status}): {} ({})",
        body["error"]["message"].as_str().unwrap_or("no reason given"),
        body["error"]["code"].as_str().unwrap_or("?")
    )
}

pub(crate) async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let secrets = worker_auth::read_secrets(&args.secret_file).map_err(|e| anyhow!(e))?;
    let (name, secret) = match &args.name {
        Some(n) => secrets
            .into_iter()
            .find(|(name, _)| name == n || name == "worker")
            .map(|(_, s)| (n.clone(), s))
            .ok_or_else(|| anyhow!("{} has no secret for worker `{n}`", args.secret_file.display()))?,
        None => secrets.into_iter().next().ok_or_else(|| anyhow!("no secret"))?,
    };
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .build()?;
    let bases: Vec<String> = args
        .server
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    if bases.is_empty() {
        bail!("--server names no URL");
    }
    let client = Arc::new(Signed {
        bases,
        current: std::sync::atomic::AtomicUsize::new(0),
        http,
        name: name.clone(),
        secret,
        retry_after: std::sync::atomic::AtomicU64::new(0),
    });
    let prover: Arc<dyn Prover> = match args.prover {
        ProverChoice::Cpu => {
            let exe = std::env::current_exe().context("locating this executable for the prover")?;
            Arc::new(ChildProver::new(exe, ReceiptKind::Composite, args.max_cycles)?)
        }
        ProverChoice::Dev => {
            Arc::new(DevProver::new(args.max_cycles, Duration::from_millis(args.dev_delay_ms)))
        }
    };
    let prover_name = match args.prover {
        ProverChoice::Cpu => "cpu",
        ProverChoice::Dev => "dev",
    };
    tracing::info!(worker = %name, servers = %client.bases.join(","), prover = prover_name, "worker started");
    let mut circuits: HashMap<String, CircuitImage> = HashMap::new();
    let mut done = 0u64;
    // A worker never exits on one bad answer: it logs, waits longer after each failure in a row
    // (1 s doubling to a minute) and carries on. Only refusals that cannot change (bad
    // credentials, incompatible versions) end it.
    let mut failures = 0u32;
    let backoff = |failures: u32| Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60));
    while args.max_tasks.is_none_or(|max| done < max) {
        let mut request = json!({
            "zkcoproc_version": env!("CARGO_PKG_VERSION"),
            "risc0_version": zkcoproc_zkvm::RISC0_VERSION,
            "prover": prover_name,
            "wait_ms": 20_000,
        });
        if !args.tasks.is_empty() {
            request["tasks"] = json!(args.tasks);
        }
        let (status, lease) = match client.json(reqwest::Method::POST, "/v1/worker/lease", &request).await {
            Ok(r) => r,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "lease request failed; retrying");
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
        };
        match status {
            200 => {}
            204 => {
                failures = 0;
                continue;
            }
            // `--task`: every named task is proven (by this worker, or another) or ended.
            409 if lease["error"]["code"] == "tasks_not_provable" && done > 0 => {
                let why = lease["error"]["message"].as_str().unwrap_or_default();
                tracing::info!(tasks = done, "{why}; worker finished");
                return Ok(());
            }
            401 | 403 | 409 => return Err(refusal(status, &lease)),
            _ => {
                failures += 1;
                let asked = Duration::from_secs(client.retry_after.load(Ordering::Relaxed));
                let wait = backoff(failures).max(asked);
                tracing::warn!(status, body = %lease, seconds = wait.as_secs(), "lease refused for now; retrying later");
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        match work(&client, prover.clone(), &mut circuits, &lease).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %format!("{e:#}"), "this lease failed on the worker; carrying on");
                tokio::time::sleep(backoff(failures)).await;
            }
        }
        done += 1;
    }
    tracing::info!(tasks = done, "worker finished");
    Ok(())
}

/// Proves one leased task and reports the outcome.
async fn work(
    client: &Arc<Signed>,
    prover: Arc<dyn Prover>,
    circuits: &mut HashMap<String, CircuitImage>,
    lease: &Value,
) -> anyhow::Result<()> {
    let field =
        |k: &str| lease[k].as_str().map(str::to_owned).ok_or_else(|| anyhow!("lease without `{k}`: {lease}"));
    let (task_id, lease_id, image_id) = (field("task_id")?, field("lease_id")?, field("image_id")?);
    tracing::info!(task = %task_id, lease = %lease_id, "leased");
    let result_path = format!("/v1/worker/tasks/{task_id}/result");
    let (image, input) = match prepare(client, circuits, lease, &image_id).await {
        Ok(ready) => ready,
        Err(e) => {
            // Say so at once, so the task goes to another prover now rather than at expiry.
            let body = json!({ "lease_id": lease_id, "error": format!("worker_error: {e:#}") });
            if let Err(report) = client.json(reqwest::Method::POST, &result_path, &body).await {
                tracing::warn!(error = %report, "cannot report the failure; the lease will expire");
            }
            return Err(e);
        }
    };

    // Heartbeats at least every 3 s: a cancel reaches the proof within seconds, and the proof
    // (a child process) is killed at once.
    let progress: Arc<std::sync::Mutex<Option<(u64, u64)>>> = Arc::default();
    let stop = {
        let progress = progress.clone();
        Cancel::with_progress(Arc::new(move |done, total| {
            if let Ok(mut p) = progress.lock() {
                *p = Some((done, total));
            }
        }))
    };
    let renew_every = Duration::from_millis(lease["renew_every_ms"].as_u64().unwrap_or(20_000).max(100))
        .min(Duration::from_secs(3));
    let heartbeat = {
        let (client, stop, path) =
            (client.clone(), stop.clone(), format!("/v1/worker/tasks/{task_id}/heartbeat"));
        let lease_id = lease_id.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(renew_every).await;
                // Segments proven so far ride on the heartbeat.
                let mut body = json!({ "lease_id": lease_id });
                if let Some((done, total)) = progress.lock().ok().and_then(|p| *p) {
                    body["progress"] = json!({ "done": done, "total": total });
                }
                match client.json(reqwest::Method::POST, &path, &body).await {
                    Ok((200, v)) if v["status"] == "renewed" => {}
                    Ok((status, v)) => {
                        tracing::warn!(status, answer = %v, "lease ended; stopping the proof");
                        stop.cancel();
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
        })
    };
    let proving = stop.clone();
    let proved =
        tokio::task::spawn_blocking(move || prover.prove_cancellable(&image, &input, &proving)).await?;
    heartbeat.abort();
    if stop.is_cancelled() {
        tracing::info!(task = %task_id, "not submitting: the task was cancelled or the lease lost");
        return Ok(());
    }
    let body = match proved {
        Ok(p) => json!({
            "lease_id": lease_id,
            "receipt": base64::engine::general_purpose::STANDARD.encode(&p.receipt.bytes),
            "user_cycles": p.user_cycles,
        }),
        Err(e) => json!({ "lease_id": lease_id, "error": format!("{}: {e}", e.code()) }),
    };
    // A proof is worth a few tries: transport errors and 5xx answers are retried.
    let mut tries = 0;
    loop {
        tries += 1;
        match client.json(reqwest::Method::POST, &result_path, &body).await {
            Ok((status, answer)) if status < 500 || tries >= 5 => {
                tracing::info!(task = %task_id, status, answer = %answer, "result submitted");
                return Ok(());
            }
            Ok((status, _)) => {
                tracing::warn!(task = %task_id, status, "the service failed to take the result; retrying")
            }
            Err(e) if tries >= 5 => return Err(e.context("cannot submit the result")),
            Err(e) => tracing::warn!(task = %task_id, error = %e, "cannot submit the result; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1 << tries)).await;
    }
}

/// The leased task's circuit (fetched once per image id, and checked against it) and input.
async fn prepare(
    client: &Arc<Signed>,
    circuits: &mut HashMap<String, CircuitImage>,
    lease: &Value,
    image_id: &str,
) -> anyhow::Result<(CircuitImage, Vec<u8>)> {
    let encoded = lease["input"].as_str().ok_or_else(|| anyhow!("lease without `input`"))?;
    let input = base64::engine::general_purpose::STANDARD.decode(encoded).context("input is not base64")?;
    if !circuits.contains_key(image_id) {
        let (status, bytes) =
            client.call(reqwest::Method::GET, &format!("/v1/worker/circuits/{image_id}"), None).await?;
        if status != 200 {
            bail!("cannot fetch circuit {image_id}: HTTP {status}");
        }
        let image = tokio::task::spawn_blocking(move || CircuitImage::load(&bytes)).await??;
        // The service is trusted for work, not for bytes: the circuit must be the one named.
        if image.image_id().to_string() != image_id {
            bail!("the service sent circuit {} for image id {image_id}", image.image_id());
        }
        circuits.insert(image_id.to_owned(), image);
    }
    let image = circuits.get(image_id).cloned().ok_or_else(|| anyhow!("circuit cache"))?;
    Ok((image, input))
}
