//! HTTP client commands of the CLI.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use base64::Engine as _;
use serde_json::{json, Value};
use zkcoproc_types::journal;
use zkcoproc_zkvm::{ImageId, ReceiptKind, Verifier, VerifyError};

pub(crate) enum ReceiptSource {
    Task(String),
    File { file: PathBuf, image_id: String },
}

pub(crate) struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub(crate) fn new(base: &str) -> anyhow::Result<Self> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("--server / ZKCOPROC_SERVER must be an http(s) URL, got `{base}`");
        }
        let http = reqwest::Client::builder()
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

    pub(crate) async fn fs_export(&self, program: &str, out: &Path) -> anyhow::Result<()> {
        let image =
            self.send_bytes(self.http.get(format!("{}/v1/programs/{program}/volume", self.base))).await?;
        std::fs::write(out, &image).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote the {} byte FAT-16 image to {}", image.len(), out.display());
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

    pub(crate) async fn deploy(&self, controller: &Path, circuit: &Path) -> anyhow::Result<()> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = json!({
            "controller": b64.encode(read(controller)?),
            "circuit": b64.encode(read(circuit)?),
        });
        let resp = self.send(self.http.post(format!("{}/v1/programs", self.base)).json(&body)).await?;
        let id = resp["program_id"].as_str().ok_or_else(|| anyhow!("no program_id in {resp}"))?;
        eprintln!(
            "{} program {id} (image id {})",
            if resp["created"] == true { "deployed" } else { "already deployed:" },
            resp["image_id"].as_str().unwrap_or("?")
        );
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
        kind: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<String> {
        let args: Value = serde_json::from_str(args).context("--args is not valid JSON")?;
        let mut body = json!({ "args": args });
        if let Some(kind) = kind {
            body["receipt_kind"] = json!(kind);
        }
        let mut req = self.http.post(format!("{}/v1/programs/{program}/proofs", self.base)).json(&body);
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        let resp = self.send(req).await?;
        resp["task_id"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no task_id in {resp}"))
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
        while let Some(chunk) = resp.chunk().await? {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                for data in frame.lines().filter_map(|l| l.strip_prefix("data:")) {
                    let event: Value = serde_json::from_str(data.trim())?;
                    print_stage(start, &event);
                    if matches!(event["status"].as_str(), Some("done" | "failed" | "cancelled")) {
                        return Ok(());
                    }
                }
            }
        }
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

    /// Verifies locally: the service only supplies the bytes, never the verdict.
    pub(crate) async fn verify(&self, source: ReceiptSource, allow_fake: bool) -> anyhow::Result<bool> {
        let (receipt, image_id) = match source {
            ReceiptSource::Task(id) => {
                let (receipt, image_id, _) = self.fetch_proof(&id).await?;
                (receipt, image_id)
            }
            ReceiptSource::File { file, image_id } => {
                let receipt = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let image_id = ImageId::from_hex(&image_id)
                    .ok_or_else(|| anyhow!("--image-id must be 32 bytes of hex"))?;
                (receipt, image_id)
            }
        };
        let verdict =
            tokio::task::spawn_blocking(move || Verifier::new(allow_fake).verify(&receipt, image_id)).await?;
        match verdict {
            Ok(v) => {
                let (root, output) =
                    journal::split(&v.journal).ok_or_else(|| anyhow!("journal shorter than a root"))?;
                if v.kind == ReceiptKind::Fake {
                    println!("FAKE receipt (dev mode) accepted because of --allow-fake: it proves nothing");
                } else {
                    println!("verified: {} receipt for image id {image_id}", v.kind.as_str());
                }
                println!("root:   {}", hex::encode(root));
                println!("output: {}", hex::encode(output));
                // The receipt is valid on its own; whether its root is one the service has had
                // (so the chain facts it proves are the ones the service checked) is the
                // service's answer, reported apart from it.
                let url = format!("{}/v1/roots/{}", self.base, hex::encode(root));
                match self.send(self.http.get(url)).await {
                    Ok(info) if info["known"] == true => println!(
                        "root known to {}: yes (history position {}{})",
                        self.base,
                        info["seq"],
                        info["block"]["domain"]
                            .as_str()
                            .map(|d| format!(", after {d} block {}", info["block"]["number"]))
                            .unwrap_or_default()
                    ),
                    Ok(_) => println!("root known to {}: NO, the service never had this root", self.base),
                    Err(e) => println!("root known: unknown ({e:#})"),
                }
                Ok(true)
            }
            Err(VerifyError::FakeRejected) => {
                println!("NOT VERIFIED: the receipt is fake (made by a dev-mode service); pass --allow-fake to inspect it anyway");
                Ok(false)
            }
            Err(e) => {
                println!("NOT VERIFIED: {e}");
                Ok(false)
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
fn print_stage(start: Instant, event: &Value) {
    eprintln!(
        "[{:>7.1}s] {:<10} (at {})",
        start.elapsed().as_secs_f64(),
        event["status"].as_str().unwrap_or("?"),
        event["at"].as_str().unwrap_or("?")
    );
}
