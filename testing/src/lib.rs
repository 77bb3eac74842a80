//! Helpers for zkcoproc's end-to-end tests and benches: real `zkcoproc serve` processes on
//! loopback ports chosen at run time, the example apps built once, and polling with deadlines.
//!
//! Not for production code. Start from [`Server::start`] and [`hello_app`].

pub mod anvil;
pub mod beacon;
pub mod postgres;
pub mod stub;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Where test builds of example apps go: under the cargo target directory, so they are cached
/// between runs like everything else.
fn apps_out_dir(app: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    target.join("zkcoproc-test-apps").join(app)
}

/// Builds `examples/<app>` (once per process) and returns what was built.
pub fn build_example(app: &str) -> anyhow::Result<zkcoproc_build::Built> {
    let options = zkcoproc_build::Options { out_dir: Some(apps_out_dir(app)), target_dir: None };
    zkcoproc_build::build_app(&repo_root().join("examples").join(app), &options)
        .with_context(|| format!("building examples/{app}"))
}

/// `examples/erc20-balance`, built once per test process.
pub fn erc20_app() -> &'static zkcoproc_build::Built {
    static ERC20: OnceLock<zkcoproc_build::Built> = OnceLock::new();
    ERC20.get_or_init(|| match build_example("erc20-balance") {
        Ok(b) => b,
        Err(e) => panic!("{e:#}"),
    })
}

/// `examples/erc20-evm`, built once per test process.
pub fn erc20_evm_app() -> &'static zkcoproc_build::Built {
    static ERC20_EVM: OnceLock<zkcoproc_build::Built> = OnceLock::new();
    ERC20_EVM.get_or_init(|| match build_example("erc20-evm") {
        Ok(b) => b,
        Err(e) => panic!("{e:#}"),
    })
}

/// `examples/hello`, built once per test process.
pub fn hello_app() -> &'static zkcoproc_build::Built {
    static HELLO: OnceLock<zkcoproc_build::Built> = OnceLock::new();
    HELLO.get_or_init(|| match build_example("hello") {
        Ok(b) => b,
        Err(e) => panic!("{e:#}"),
    })
}

/// The hostile test controller (`testing/apps/hostile/controller`), built once per process;
/// returns the component's path. Deploy it with [`hello_app`]'s circuit.
pub fn hostile_controller() -> &'static Path {
    static HOSTILE: OnceLock<PathBuf> = OnceLock::new();
    HOSTILE.get_or_init(|| {
        let dir = repo_root().join("testing/apps/hostile/controller");
        let target = apps_out_dir("hostile").join("cargo");
        match zkcoproc_build::build_controller(&dir, &target) {
            Ok(p) => p,
            Err(e) => panic!("building the hostile controller: {e:#}"),
        }
    })
}

/// The rootless test circuit (`testing/apps/rootless/circuit`: its journal never starts with the
/// task's root), built once per process; returns the program binary's path.
pub fn rootless_circuit() -> &'static Path {
    static ROOTLESS: OnceLock<PathBuf> = OnceLock::new();
    ROOTLESS.get_or_init(|| {
        let dir = repo_root().join("testing/apps/rootless/circuit");
        let out = apps_out_dir("rootless");
        let built = zkcoproc_build::build_circuit(&dir, &out.join("cargo"))
            .map_err(anyhow::Error::from)
            .and_then(|bin| {
                std::fs::create_dir_all(&out)?;
                let path = out.join("circuit.bin");
                std::fs::write(&path, bin)?;
                Ok(path)
            });
        match built {
            Ok(p) => p,
            Err(e) => panic!("building the rootless circuit: {e:#}"),
        }
    })
}

/// A running `zkcoproc serve` process; killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// base URL, e.g. `http://127.0.0.1:41234`
    pub url: String,
    /// the data directory it serves
    pub data: PathBuf,
    log: PathBuf,
}

impl Server {
    /// Starts `bin serve --listen 127.0.0.1:0 --data DATA --prover PROVER EXTRA...` and waits
    /// (up to 60 s) for it to print its address. Its stderr goes to `DATA/../server-N.log`.
    pub fn start(bin: &Path, data: &Path, prover: &str, extra: &[&str]) -> anyhow::Result<Server> {
        std::fs::create_dir_all(data)?;
        let log = unique_log_path(data);
        let log_file = std::fs::File::create(&log)?;
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--prover", prover, "--data"])
            .arg(data)
            .args(extra)
            .env("ZKCOPROC_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("zkcoproc listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => Ok(Server { child, url, data: data.to_path_buf(), log }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("server did not start; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default())
            }
        }
    }

    /// The process's peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_memory_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        kib / 1024
    }

    /// The process id (to kill it from another thread).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client for this server.
    pub fn api(&self) -> Api {
        Api::new(&self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unique_log_path(data: &Path) -> PathBuf {
    let parent = data.parent().unwrap_or(data);
    (0..)
        .map(|i| parent.join(format!("server-{i}.log")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| parent.join("server.log"))
}

/// A `zkcoproc worker --prover dev` process; SIGKILLed on drop.
#[derive(Debug)]
pub struct Worker(Child);

impl Worker {
    /// Starts `bin worker --server SERVERS --name NAME --prover dev --secret-file SECRETS EXTRA...`
    /// (`servers`: one URL or several, comma-separated), logging to `log`.
    pub fn start(
        bin: &Path,
        servers: &str,
        name: &str,
        secrets: &Path,
        extra: &[&str],
        log: &Path,
    ) -> anyhow::Result<Worker> {
        let log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(bin)
            .args(["worker", "--server", servers, "--name", name, "--prover", "dev", "--secret-file"])
            .arg(secrets)
            .args(extra)
            .env("ZKCOPROC_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting worker {name}"))?;
        Ok(Worker(child))
    }
}

impl Worker {
    /// Whether the worker process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small blocking JSON client.
#[derive(Debug, Clone)]
pub struct Api {
    url: String,
    http: reqwest::blocking::Client,
}

impl Api {
    /// A client for `url`.
    pub fn new(url: &str) -> Api {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap_or_else(|_| reqwest::blocking::Client::new());
        Api { url: url.to_owned(), http }
    }

    /// A client for `url` that sends `Authorization: Bearer TOKEN`.
    pub fn with_key(url: &str, token: &str) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .default_headers(headers)
            .build()
            .unwrap_or_else(|_| reqwest::blocking::Client::new());
        Api { url: url.to_owned(), http }
    }

    /// DELETE `path`.
    pub fn delete(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let resp = self.http.delete(format!("{}{path}", self.url)).send()?;
        Ok((resp.status().as_u16(), resp.json().unwrap_or(Value::Null)))
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// GET `path`; returns the status and the JSON body (Null when not JSON).
    pub fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let resp = self.http.get(format!("{}{path}", self.url)).send()?;
        Ok((resp.status().as_u16(), resp.json().unwrap_or(Value::Null)))
    }

    /// POST `body` as JSON to `path`.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let resp = self.http.post(format!("{}{path}", self.url)).json(body).send()?;
        Ok((resp.status().as_u16(), resp.json().unwrap_or(Value::Null)))
    }

    /// POST raw bytes with a content type to `path`.
    pub fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> anyhow::Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()?;
        Ok((resp.status().as_u16(), resp.json().unwrap_or(Value::Null)))
    }

    /// Deploys a built app; returns the program id.
    pub fn deploy(&self, built: &zkcoproc_build::Built) -> anyhow::Result<String> {
        self.deploy_files(&built.controller, &built.circuit)
    }

    /// Deploys a controller component and a circuit from files; returns the program id.
    pub fn deploy_files(&self, controller: &Path, circuit: &Path) -> anyhow::Result<String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = serde_json::json!({
            "controller": b64.encode(std::fs::read(controller)?),
            "circuit": b64.encode(std::fs::read(circuit)?),
        });
        let (status, resp) = self.post("/v1/programs", &body)?;
        if status != 201 && status != 200 {
            bail!("deploy answered {status}: {resp}");
        }
        resp["program_id"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no program_id: {resp}"))
    }

    /// Submits a proof request; returns the task id.
    pub fn prove(&self, program: &str, args: &Value) -> anyhow::Result<String> {
        let (status, resp) =
            self.post(&format!("/v1/programs/{program}/proofs"), &serde_json::json!({ "args": args }))?;
        if status != 202 {
            bail!("prove answered {status}: {resp}");
        }
        resp["task_id"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no task_id: {resp}"))
    }

    /// Polls a task until it is terminal or `timeout` passes.
    pub fn wait_task(&self, task: &str, timeout: Duration) -> anyhow::Result<Value> {
        poll(timeout, || {
            let (status, t) = self.get(&format!("/v1/tasks/{task}"))?;
            if status != 200 {
                bail!("task lookup answered {status}: {t}");
            }
            let s = t["status"].as_str().unwrap_or_default();
            Ok(matches!(s, "done" | "failed" | "cancelled").then_some(t))
        })
        .with_context(|| format!("waiting for task {task}"))
    }
}

/// `POST path` to the service at `url`, signed as worker or feeder `name` with `secret` (the
/// HMAC scheme of `zkcoproc_api::worker_auth`, a fresh nonce, now's timestamp).
pub fn signed_post(
    url: &str,
    path: &str,
    name: &str,
    secret: &[u8],
    body: Vec<u8>,
) -> anyhow::Result<(u16, Value)> {
    use zkcoproc_api::worker_auth::{self, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_WORKER};
    let ts = worker_auth::unix_now();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let sig = worker_auth::sign(secret, "POST", path, ts, &nonce, &body);
    let resp = reqwest::blocking::Client::new()
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .header(HEADER_WORKER, name)
        .header(HEADER_TIMESTAMP, ts.to_string())
        .header(HEADER_NONCE, nonce)
        .header(HEADER_SIGNATURE, sig)
        .body(body)
        .send()?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().unwrap_or(Value::Null)))
}

/// Calls `f` until it returns `Some` or `timeout` passes, backing off from 20 ms to 500 ms.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("condition not met within {timeout:?}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}
