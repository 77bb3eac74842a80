//! HTTP client commands of the CLI.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use base64::Engine as _;
use serde_json::{json, Value};
use zkcoproc_types::journal;
use zkcoproc_zkvm::{ImageId, ReceiptKind, Verifier, VerifyError};

pub(crate) enum ReceiptSource {
    /// a task's receipt, optionally required to belong to `program`
    Task {
        task: String,
        program: Option<String>,
    },
    File {
        file: PathBuf,
        image_id: String,
    },
}

/// What `zkcoproc verify` accepts besides a valid receipt.
pub(crate) struct VerifyPolicy {
    /// fake (dev-mode) receipts
    pub(crate) allow_fake: bool,
    /// roots trusted without asking the service, and the file they came from
    pub(crate) trusted: Option<(HashSet<[u8; 32]>, PathBuf)>,
    /// a valid receipt under a root nobody vouched for
    pub(crate) allow_unknown_root: bool,
}

/// Reads a trusted-roots file: one hex root (`0x` optional) per line; blank lines and `#`
/// comments are ignored.
pub(crate) fn read_trusted_roots(path: &Path) -> anyhow::Result<HashSet<[u8; 32]>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut roots = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut root = [0u8; 32];
        hex::decode_to_slice(line.strip_prefix("0x").unwrap_or(line), &mut root)
            .map_err(|_| anyhow!("{}:{}: `{line}` is not a root (32 bytes of hex)", path.display(), i + 1))?;
        roots.insert(root);
    }
    Ok(roots)
}

pub(crate) struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub(crate) fn new(base: &str, api_key: Option<&str>) -> anyhow::Result<Self> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("--server / ZKCOPROC_SERVER must be an http(s) URL, got `{base}`");
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = api_key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
                .map_err(|_| {
                    anyhow!("--api-key / ZKCOPROC_API_KEY holds characters a header cannot carry")
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()?;
        Ok(Client { base: base.trim_end_matches('/').to_owned(), http })
    }

    async fn send_bytes(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Vec<u8>> {
        let resp = req.send().await.with_context(|| format!("cannot reach the service at {}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.bytes().await?.to_vec());
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Err(error_message(status, &body))
    }

    pub(crate) async fn fs_ls(&self, program: &str, path: &str) -> anyhow::Result<()> {
        let url = format!("{}/v1/programs/{program}/fs", self.base);
        let listing = self.send(self.http.get(url).query(&[("path", path)])).await?;
        for e in listing["entries"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or("?");
            if e["is_dir"] == true {
                println!("{:>10}  {name}/", "<dir>");
            } else {
                println!("{:>10}  {name}", e["size"].as_u64().unwrap_or(0));
            }
        }
        Ok(())
    }

    pub(crate) async fn fs_cat(&self, program: &str, path: &str) -> anyhow::Result<()> {
        use std::io::Write as _;
        let path = path.trim_start_matches('/');
        let bytes =
            self.send_bytes(self.http.get(format!("{}/v1/programs/{program}/fs/{path}", self.base))).await?;
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)?;
        out.flush()?;
        Ok(())
    }

    /// Streams the image to `out` (through `out.partial`, renamed once whole): a 2 GB volume
    /// is never in memory.
    pub(crate) async fn fs_export(&self, program: &str, out: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        let url = format!("{}/v1/programs/{program}/volume", self.base);
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("cannot reach the service at {}", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            return Err(error_message(status, &body));
        }
        let expected = resp.content_length();
        let partial = out.with_extension("partial");
        let file =
            std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        let mut file = std::io::BufWriter::new(file);
        let mut written = 0u64;
        while let Some(chunk) = resp.chunk().await.context("the image stream broke off")? {
            file.write_all(&chunk).with_context(|| format!("writing {}", partial.display()))?;
            written += chunk.len() as u64;
        }
        if expected.is_some_and(|n| n != written) {
            anyhow::bail!("the image stream ended after {written} of {} bytes", expected.unwrap_or(0));
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&partial, out).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote the {written} byte FAT-16 image to {}", out.display());
        Ok(())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req.send().await.with_context(|| format!("cannot reach the service at {}", self.base))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        Err(error_message(status, &body))
    }

    pub(crate) async fn deploy(
        &self,
        controller: &Path,
        circuit: &Path,
        volume_size_mb: Option<u64>,
        callback_url: Option<&str>,
    ) -> anyhow::Result<()> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut body = json!({
            "controller": b64.encode(read(controller)?),
            "circuit": b64.encode(read(circuit)?),
        });
        if let Some(mb) = volume_size_mb {
            body["volume_size_mb"] = json!(mb);
        }
        if let Some(url) = callback_url {
            body["callback_url"] = json!(url);
        }
        let resp = self.send(self.http.post(format!("{}/v1/programs", self.base)).json(&body)).await?;
        let id = resp["program_id"].as_str().ok_or_else(|| anyhow!("no program_id in {resp}"))?;
        eprintln!(
            "{} program {id} (image id {})",
            if resp["created"] == true { "deployed" } else { "already deployed:" },
            resp["image_id"].as_str().unwrap_or("?")
        );
        if let Some(secret) = resp["webhook_secret"].as_str() {
            eprintln!("webhook secret: {secret}  (signs this program's callbacks; shown only now, keep it)");
        }
        println!("{id}");
        Ok(())
    }

    pub(crate) async fn cancel(&self, id: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(format!("{}/v1/tasks/{id}", self.base))).await
    }

    pub(crate) async fn prove(
        &self,
        program: &str,
        args: &str,
        o: &ProveOptions<'_>,
    ) -> anyhow::Result<String> {
        let args: Value = serde_json::from_str(args).context("--args is not valid JSON")?;
        let mut body = json!({ "args": args });
        if let Some(kind) = o.kind {
            body["receipt_kind"] = json!(kind);
        }
        if let Some(url) = o.callback_url {
            body["callback_url"] = json!(url);
        }
        let mut req = self.http.post(format!("{}/v1/programs/{program}/proofs", self.base)).json(&body);
        if let Some(key) = o.idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        let resp = self.send(req).await?;
        resp["task_id"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no task_id in {resp}"))
    }

    pub(crate) async fn program(&self, id: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}/v1/programs/{id}", self.base))).await
    }

    /// The circuit input the task's controller built (`GET /v1/tasks/{id}/input`).
    pub(crate) async fn task_input(&self, id: &str) -> anyhow::Result<Vec<u8>> {
        self.send_bytes(self.http.get(format!("{}/v1/tasks/{id}/input", self.base))).await
    }

    /// The circuit binary a program was deployed with (`GET /v1/programs/{id}/circuit`).
    pub(crate) async fn circuit(&self, program: &str) -> anyhow::Result<Vec<u8>> {
        self.send_bytes(self.http.get(format!("{}/v1/programs/{program}/circuit", self.base))).await
    }

    pub(crate) async fn task(&self, id: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}/v1/tasks/{id}", self.base))).await
    }

    /// Follows a task to a terminal status over its event stream (SSE), printing a line per
    /// stage to stderr; falls back to polling if the stream cannot be read.
    pub(crate) async fn follow(&self, id: &str) -> anyhow::Result<Value> {
        let start = Instant::now();
        if let Err(e) = self.follow_events(id, start).await {
            tracing::warn!(error = %e, "event stream unavailable; polling");
            self.poll(id, start).await?;
        }
        let task = self.task(id).await?;
        if let Some(err) = task["error"].as_object() {
            eprintln!(
                "error: {} ({})",
                err.get("message").and_then(Value::as_str).unwrap_or(""),
                err.get("code").and_then(Value::as_str).unwrap_or("")
            );
        }
        Ok(task)
    }

    async fn follow_events(&self, id: &str, start: Instant) -> anyhow::Result<()> {
        let mut resp = self
            .http
            .get(format!("{}/v1/tasks/{id}/events", self.base))
            .timeout(Duration::from_secs(7 * 24 * 3600))
            .send()
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            return Err(error_message(status, &resp.json().await.unwrap_or(Value::Null)));
        }
        let mut buf = String::new();
        let mut progress = ProgressView::new(start);
        while let Some(chunk) = resp.chunk().await? {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let kind = frame.lines().find_map(|l| l.strip_prefix("event:")).map_or("message", str::trim);
                for data in frame.lines().filter_map(|l| l.strip_prefix("data:")) {
                    let event: Value = serde_json::from_str(data.trim())?;
                    if kind == "progress" {
                        progress.show(&event);
                        continue;
                    }
                    progress.clear();
                    print_stage(start, &event);
                    if matches!(event["status"].as_str(), Some("done" | "failed" | "cancelled")) {
                        return Ok(());
                    }
                }
            }
        }
        progress.clear();
        anyhow::bail!("event stream ended before the task finished")
    }

    /// Polls the task, printing every stage of its history not printed yet.
    async fn poll(&self, id: &str, start: Instant) -> anyhow::Result<()> {
        let mut printed = 0;
        let mut interval = Duration::from_millis(100);
        loop {
            let task = self.task(id).await?;
            let history = task["history"].as_array().cloned().unwrap_or_default();
            for event in history.iter().skip(printed) {
                print_stage(start, event);
            }
            printed = printed.max(history.len());
            if matches!(task["status"].as_str(), Some("done" | "failed" | "cancelled")) {
                return Ok(());
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_secs(1));
        }
    }

    async fn fetch_proof(&self, id: &str) -> anyhow::Result<(Vec<u8>, ImageId, Value)> {
        let proof = self.send(self.http.get(format!("{}/v1/tasks/{id}/proof", self.base))).await?;
        let receipt = base64::engine::general_purpose::STANDARD
            .decode(proof["receipt"].as_str().unwrap_or_default())
            .context("receipt is not base64")?;
        let image_id = proof["image_id"]
            .as_str()
            .and_then(ImageId::from_hex)
            .ok_or_else(|| anyhow!("proof has no valid image_id"))?;
        Ok((receipt, image_id, proof))
    }

    pub(crate) async fn proof(&self, id: &str, out: Option<&Path>) -> anyhow::Result<()> {
        let (receipt, image_id, mut proof) = self.fetch_proof(id).await?;
        match out {
            Some(path) => {
                std::fs::write(path, &receipt).with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {} bytes of receipt to {}", receipt.len(), path.display());
                println!("{image_id}");
            }
            None => {
                proof["receipt"] = json!(format!("<{} bytes, base64; use --out FILE>", receipt.len()));
                println!("{}", serde_json::to_string_pretty(&proof)?);
            }
        }
        Ok(())
    }

    /// Verifies locally: the service only supplies bytes, never the verdict. Prints the verdict
    /// and returns whether the receipt verifies and its root is trusted.
    pub(crate) async fn verify(&self, source: ReceiptSource, policy: &VerifyPolicy) -> anyhow::Result<bool> {
        let (receipt, image_id) = match source {
            ReceiptSource::Task { task, program } => {
                let (receipt, image_id, proof) = self.fetch_proof(&task).await?;
                let claimed = proof["program_id"].as_str().unwrap_or_default().to_owned();
                if let Some(want) = program.filter(|p| *p != claimed) {
                    println!("NOT VERIFIED: task {task} belongs to program {claimed}, not {want}");
                    return Ok(false);
                }
                // The image id comes from the service: bind it to the program id, which is
                // content-addressed over the controller's bytes and the image id.
                let controller = self
                    .send_bytes(self.http.get(format!("{}/v1/programs/{claimed}/controller", self.base)))
                    .await
                    .with_context(|| format!("fetching the controller of program {claimed}"))?;
                let recomputed = zkcoproc_coordinator::program_id(&controller, &image_id);
                if recomputed != claimed {
                    println!(
                        "NOT VERIFIED: the service says program {claimed} has image id {image_id}, but its \
                         controller and that image id make program {recomputed}"
                    );
                    return Ok(false);
                }
                println!("program: {claimed} (recomputed from its controller and image id {image_id})");
                (receipt, image_id)
            }
            ReceiptSource::File { file, image_id } => {
                let receipt = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let image_id = ImageId::from_hex(&image_id)
                    .ok_or_else(|| anyhow!("--image-id must be 32 bytes of hex"))?;
                (receipt, image_id)
            }
        };
        let allow_fake = policy.allow_fake;
        let verdict =
            tokio::task::spawn_blocking(move || Verifier::new(allow_fake).verify(&receipt, image_id)).await?;
        let v = match verdict {
            Ok(v) => v,
            Err(VerifyError::FakeRejected) => {
                println!("NOT VERIFIED: the receipt is fake (made by a dev-mode service); pass --allow-fake to inspect it anyway");
                return Ok(false);
            }
            Err(e) => {
                println!("NOT VERIFIED: {e}");
                return Ok(false);
            }
        };
        let Some((root, output)) = journal::split(&v.journal) else {
            println!("NOT VERIFIED: the journal ({} bytes) is too short to hold a root", v.journal.len());
            return Ok(false);
        };
        if v.kind == ReceiptKind::Fake {
            println!("FAKE receipt (dev mode) accepted because of --allow-fake: it proves nothing");
        } else {
            println!("verified: {} receipt for image id {image_id}", v.kind.as_str());
        }
        println!("root:   {}", hex::encode(root));
        println!("output: {}", hex::encode(output));
        let trusted = self.root_trusted(&root, policy).await;
        match (trusted, policy.allow_unknown_root) {
            (true, _) => Ok(true),
            (false, true) => {
                println!(
                    "accepted because of --allow-unknown-root: the receipt is valid, but its statement \
                     holds only under root {}, which nobody here vouched for",
                    hex::encode(root)
                );
                Ok(true)
            }
            (false, false) => {
                println!(
                    "NOT VERIFIED: the receipt is valid, but its root {} is not trusted (not in \
                     --trusted-roots, not known to {}); pass --allow-unknown-root to accept it anyway",
                    hex::encode(root),
                    self.base
                );
                Ok(false)
            }
        }
    }

    /// Whether `root` is trusted: listed in the trusted-roots file, or known to the service.
    /// Prints how it was decided.
    async fn root_trusted(&self, root: &[u8; 32], policy: &VerifyPolicy) -> bool {
        if let Some((roots, path)) = &policy.trusted {
            if roots.contains(root) {
                println!("root trusted: listed in {}", path.display());
                return true;
            }
            println!("root not listed in {}", path.display());
        }
        let url = format!("{}/v1/roots/{}", self.base, hex::encode(root));
        match self.send(self.http.get(url)).await {
            Ok(info) if info["known"] == true => {
                println!(
                    "root known to {}: yes (history position {}{})",
                    self.base,
                    info["seq"],
                    info["block"]["domain"]
                        .as_str()
                        .map(|d| format!(", after {d} block {}", info["block"]["number"]))
                        .unwrap_or_default()
                );
                true
            }
            Ok(_) => {
                println!("root known to {}: NO, the service never had this root", self.base);
                false
            }
            Err(e) => {
                println!("root known to {}: cannot tell ({e:#})", self.base);
                false
            }
        }
    }
}

/// The service's `{"error": {"code", "message"}}` as a readable error.
fn error_message(status: reqwest::StatusCode, body: &Value) -> anyhow::Error {
    match (&body["error"]["code"], &body["error"]["message"]) {
        (Value::String(code), Value::String(message)) => {
            let mut msg = format!("{message} ({code}, HTTP {status})");
            if let Some(logs) = body["error"]["logs"].as_array().filter(|l| !l.is_empty()) {
                msg.push_str(&format!("\ncontroller logs: {}", Value::Array(logs.clone())));
            }
            anyhow!(msg)
        }
        _ => anyhow!("service answered HTTP {status}"),
    }
}

/// One progress line for a stage event `{status, at}`.
/// Proving progress while following a task: a bar (stage, segments, elapsed time) when stderr
/// is a terminal, a plain line per report otherwise (for scripts and logs).
struct ProgressView {
    start: Instant,
    terminal: bool,
    bar: Option<indicatif::ProgressBar>,
    last: Option<(u64, u64)>,
}

impl ProgressView {
    fn new(start: Instant) -> Self {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        ProgressView { start, terminal, bar: None, last: None }
    }

    /// Shows a `progress` event (`{stage, done, total}`).
    fn show(&mut self, event: &Value) {
        let (Some(done), Some(total)) = (event["done"].as_u64(), event["total"].as_u64()) else { return };
        if self.last == Some((done, total)) {
            return;
        }
        self.last = Some((done, total));
        let stage = event["stage"].as_str().unwrap_or("proving");
        if !self.terminal {
            let at = self.start.elapsed().as_secs_f64();
            eprintln!("[{at:>7.1}s] {stage:<10} {done}/{total} segments");
            return;
        }
        let start = self.start;
        let bar = self.bar.get_or_insert_with(|| {
            let style = indicatif::ProgressStyle::with_template(
                "[{elapsed:>7}] {prefix:<10} [{bar:30}] {pos}/{len} segments",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            let bar = indicatif::ProgressBar::new(total).with_style(style).with_elapsed(start.elapsed());
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        bar.set_prefix(stage.to_owned());
        bar.set_length(total);
        bar.set_position(done);
    }

    /// Removes the bar before a stage line is printed.
    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn print_stage(start: Instant, event: &Value) {
    eprintln!(
        "[{:>7.1}s] {:<10} (at {})",
        start.elapsed().as_secs_f64(),
        event["status"].as_str().unwrap_or("?"),
        event["at"].as_str().unwrap_or("?")
    );
}

/// What a proof request may name besides the program and its arguments.
#[derive(Debug, Default)]
pub(crate) struct ProveOptions<'a> {
    /// receipt kind (default: what the service's prover makes)
    pub(crate) kind: Option<&'a str>,
    /// `Idempotency-Key`
    pub(crate) idempotency_key: Option<&'a str>,
    /// where the finished task is POSTed
    pub(crate) callback_url: Option<&'a str>,
}
