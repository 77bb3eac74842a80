//! `zkcoproc-bench`: measured figures, printed (never asserted).
//!
//! - `prove [--n N]`: a real CPU proof of `examples/hello` through the service (a `zkcoproc
//!   serve` process), then bare `risc0_zkvm` proving of the same guest and input in the same run;
//!   prints both and the ratio.
//! - `dev-latency [--tasks K]`: dev-mode task latency (submit → done, durable) p50/p90/max.
//! - `witnesses [--calls K]`: `get-witnesses` of `examples/hello` in the sandbox with a cached
//!   module vs the same logic natively, p50/p99 and ratio; and the dry-run endpoint over HTTP.
//! - `workers [--tasks K] [--cost-ms 50]`: prover-lease round trip over HTTP (HMAC-signed), and
//!   dev-mode tasks/s drained by 1, 2 and 4 `zkcoproc worker` processes whose proofs cost a
//!   fixed time, with the scaling ratio.
//! - `vfs-write [--count K]`: latency of writing a 256 KiB file: in memory, and committed
//!   through the service (controller call + 16 MiB image committed with the stage).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use risc0_zkvm::{get_prover_server, ExecutorEnv, ProverOpts, VerifierContext};
use serde_json::json;
use zkcoproc_testing::{hello_app, Server};
use zkcoproc_types::{CircuitInput, Witness, EMPTY_ROOT};

/// Everything the benches print, kept for `report` to write into `bench/RESULTS.md`.
static REPORT: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// `println!`, also recorded for the report.
macro_rules! out {
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        println!("{line}");
        if let Ok(mut r) = REPORT.lock() {
            r.push_str(&line);
            r.push('\n');
        }
    }};
}

#[derive(Parser)]
#[command(about = "zkcoproc benchmarks")]
struct Args {
    /// The zkcoproc binary (default: beside this one).
    #[arg(long, global = true)]
    bin: Option<PathBuf>,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Real CPU proof through the service vs bare risc0_zkvm proving.
    Prove {
        /// SHA-256 iterations of examples/hello (the demo uses 100: one segment).
        #[arg(long, default_value_t = 100)]
        n: u32,
    },
    /// Dev-mode task latency, submit to done.
    DevLatency {
        /// Tasks to run one after another.
        #[arg(long, default_value_t = 50)]
        tasks: usize,
    },
    /// get-witnesses latency: wasm (cached module) vs native.
    Witnesses {
        /// Calls to time.
        #[arg(long, default_value_t = 2000)]
        calls: usize,
    },
    /// Lease round trip, and throughput of 1/2/4 remote workers with fixed-cost mock proving.
    Workers {
        /// Tasks per run.
        #[arg(long, default_value_t = 60)]
        tasks: usize,
        /// Modelled proving cost per task, in ms.
        #[arg(long, default_value_t = 50)]
        cost_ms: u64,
    },
    /// VFS write latency for a 256 KiB file.
    VfsWrite {
        /// Writes to time.
        #[arg(long, default_value_t = 40)]
        count: usize,
    },
    /// Guest cycles to verify one account proof and 0..N storage proofs (real anvil data).
    StateProofs {
        /// Largest number of slots measured.
        #[arg(long, default_value_t = 16)]
        max_slots: usize,
    },
    /// End-to-end dev-mode tasks/s (submit → done, durable) on SQLite and on PostgreSQL
    /// (`ZKCOPROC_TEST_POSTGRES`), next to each store's raw durable transaction rate.
    Throughput {
        /// Tasks per run.
        #[arg(long, default_value_t = 200)]
        tasks: usize,
    },
    /// P1–P8 in one run, written to `bench/RESULTS.md` with the machine description.
    Report {
        /// Where to write the results.
        #[arg(long, default_value = "bench/RESULTS.md")]
        out: PathBuf,
    },
    /// Openings of the coprocessor tree over the API: under a root `--age` inserts old (read from
    /// the stored nodes) vs under the current root (in memory), on a history of `--age` + 1 inserts.
    Openings {
        /// How many inserts old the old root is (the history has one more).
        #[arg(long, default_value_t = 100_000)]
        age: u64,
        /// Requests per root, interleaved.
        #[arg(long, default_value_t = 400)]
        requests: usize,
    },
    /// The light client: time to verify one mainnet-sized update (512 signers), and headers/s
    /// inserted catching up to a finalized block `--blocks` ahead (anvil chain), light client vs
    /// RPC trust, side by side.
    LightClient {
        /// How far ahead the finalized block is.
        #[arg(long, default_value_t = 10_000)]
        blocks: u64,
        /// Verifications timed.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
    },
    /// EVM view calls: guest cycles of `balanceOf` executed in the circuit (examples/erc20-evm)
    /// next to the slot-level proof of the same balance (examples/erc20-balance), the host
    /// preflight's time and the witness's size (anvil).
    EvmCall {
        /// Preflights timed.
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// Also make a real CPU proof of the EVM path (minutes) and verify it.
        #[arg(long)]
        prove: bool,
    },
    /// Header-follow throughput from anvil: checked headers inserted per second.
    Follow {
        /// Blocks mined before the service starts following from genesis.
        #[arg(long, default_value_t = 5000)]
        blocks: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match args.bin {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("zkcoproc"))
            .context("cannot locate the zkcoproc binary; pass --bin")?,
    };
    if !bin.is_file() {
        bail!("{} does not exist: build it first (cargo build -p zkcoproc-cli)", bin.display());
    }
    println!("machine: {}", machine());
    match args.bench {
        Bench::Throughput { tasks } => throughput(&bin, tasks),
        Bench::Report { out } => report(&bin, &out),
        Bench::Prove { n } => prove(&bin, n),
        Bench::DevLatency { tasks } => dev_latency(&bin, tasks),
        Bench::Witnesses { calls } => witnesses(&bin, calls),
        Bench::VfsWrite { count } => vfs_write(&bin, count),
        Bench::Workers { tasks, cost_ms } => workers(&bin, tasks, cost_ms),
        Bench::StateProofs { max_slots } => state_proofs(max_slots),
        Bench::Follow { blocks } => follow(&bin, blocks),
        Bench::LightClient { blocks, iterations } => light_client(&bin, blocks, iterations),
        Bench::Openings { age, requests } => openings(&bin, age, requests),
        Bench::EvmCall { iterations, prove } => evm_call(iterations, prove),
    }
}

fn prove(bin: &Path, n: u32) -> anyhow::Result<()> {
    let app = hello_app();
    let tmp = tempfile::tempdir()?;
    let server = bench_server(bin, &tmp.path().join("data"), "cpu", &[])?;
    let api = server.api();
    let program = api.deploy(app)?;

    let start = Instant::now();
    let task = api.prove(&program, &json!({ "n": n }))?;
    let t = api.wait_task(&task, Duration::from_secs(3600))?;
    let client_total = start.elapsed();
    if t["status"] != "done" {
        bail!("service task did not finish: {t}");
    }
    let ms = |k: &str| t["durations_ms"][k].as_u64().unwrap_or(0);
    drop(server);

    // Bare risc0_zkvm: the same program binary and the same input bytes, same framing.
    let binary = std::fs::read(&app.circuit)?;
    let input =
        CircuitInput { root: EMPTY_ROOT, witnesses: vec![Witness::Data(n.to_le_bytes().to_vec())] }.encode();
    let start = Instant::now();
    let env = ExecutorEnv::builder().write_slice(&[input.len() as u32]).write_slice(&input).build()?;
    let info = get_prover_server(&ProverOpts::composite().with_dev_mode(false))?.prove(env, &binary)?;
    let bare = start.elapsed();
    let image_id = risc0_zkvm::compute_image_id(&binary)?;
    info.receipt.verify_with_context(&VerifierContext::default().with_dev_mode(false), image_id)?;
    if info.receipt.journal.bytes != hex::decode(t["journal"].as_str().unwrap_or_default())? {
        bail!("bare proving produced another journal than the service");
    }

    let service_proving = Duration::from_millis(ms("proving"));
    let service_total = Duration::from_millis(ms("total"));
    out!("examples/hello n={n}: {} user cycles, {} segment(s)", info.stats.user_cycles, info.stats.segments);
    out!("| measurement | seconds |");
    out!("|---|---|");
    out!("| service: submit → done (server-side) | {:.2} |", service_total.as_secs_f64());
    out!("| service: submit → done (client, polling) | {:.2} |", client_total.as_secs_f64());
    out!("| service: proving stage | {:.2} |", service_proving.as_secs_f64());
    out!(
        "| service: witnessing + verifying + delivering | {:.3} |",
        (ms("witnessing") + ms("verifying") + ms("delivering")) as f64 / 1e3
    );
    out!("| bare risc0_zkvm prove (same guest, same input) | {:.2} |", bare.as_secs_f64());
    out!("ratio service total / bare prove: {:.3}", service_total.as_secs_f64() / bare.as_secs_f64());
    Ok(())
}

fn dev_latency(bin: &Path, tasks: usize) -> anyhow::Result<()> {
    let app = hello_app();
    let tmp = tempfile::tempdir()?;
    let server = bench_server(bin, &tmp.path().join("data"), "dev", &[])?;
    let api = server.api();
    let program = api.deploy(app)?;
    let mut server_side = Vec::with_capacity(tasks);
    let mut client_side = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let start = Instant::now();
        let task = api.prove(&program, &json!({ "n": 100 }))?;
        // Tight polling so the client-side figure is not dominated by the poll interval.
        let t = loop {
            let (_, t) = api.get(&format!("/v1/tasks/{task}"))?;
            if matches!(t["status"].as_str(), Some("done" | "failed")) {
                break t;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        client_side.push(start.elapsed().as_secs_f64() * 1e3);
        if t["status"] != "done" {
            bail!("task failed: {t}");
        }
        server_side.push(t["durations_ms"]["total"].as_f64().unwrap_or(f64::NAN));
    }
    out!("dev-mode tasks (examples/hello n=100), {tasks} sequential, SQLite synchronous=FULL:");
    out!("| latency (ms) | p50 | p90 | max |");
    out!("|---|---|---|---|");
    for (name, v) in
        [("server-side submit → done", &mut server_side), ("client-observed submit → done", &mut client_side)]
    {
        v.sort_by(f64::total_cmp);
        out!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            pct(v, 0.5),
            pct(v, 0.9),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

fn witnesses(bin: &Path, calls: usize) -> anyhow::Result<()> {
    use zkcoproc_runtime::{CallContext, Limits, Runtime};
    let app = hello_app();
    let runtime = Runtime::new(Limits::default())?;
    let controller = runtime.prepare("bench", &std::fs::read(&app.controller)?)?;
    let ctx = CallContext { program_id: "bench".into(), root: EMPTY_ROOT, task_id: None, domains: None };
    let args = r#"{"n": 1000}"#;
    let mut wasm = Vec::with_capacity(calls);
    let mut native = Vec::with_capacity(calls);
    for _ in 0..calls.min(50) {
        // warm-up: instance pools, caches
        runtime.get_witnesses(&controller, ctx.clone(), None, args).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    for _ in 0..calls {
        let start = Instant::now();
        let out = runtime
            .get_witnesses(&controller, ctx.clone(), None, args)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        wasm.push(start.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(out);
        let start = Instant::now();
        let out = hello_controller::plan(std::hint::black_box(args)).map_err(|e| anyhow::anyhow!(e))?;
        native.push(start.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(out);
    }
    // The same call through the service: HTTP, program lookup, volume load, dry run.
    let tmp = tempfile::tempdir()?;
    let server = bench_server(bin, &tmp.path().join("data"), "dev", &[])?;
    let api = server.api();
    let program = api.deploy(app)?;
    let mut http = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        let (status, body) =
            api.post(&format!("/v1/programs/{program}/witnesses"), &json!({"args": {"n": 1000}}))?;
        http.push(start.elapsed().as_secs_f64() * 1e6);
        if status != 200 {
            bail!("dry run answered {status}: {body}");
        }
    }
    out!("examples/hello get-witnesses ({{\"n\": 1000}}), {calls} calls, cached module:");
    let rows = &mut [
        ("wasm sandbox (fresh instance + store per call, fuel, epoch deadline)", wasm),
        ("native (same logic, no sandbox)", native),
        ("service dry run over HTTP (200 calls)", http),
    ];
    table("get-witnesses (µs)", &[0.5, 0.99], rows);
    let (wasm, native) = (&rows[0].1, &rows[1].1);
    out!("ratio wasm / native at p50: {:.0}", pct(wasm, 0.5) / pct(native, 0.5));
    Ok(())
}

fn vfs_write(bin: &Path, count: usize) -> anyhow::Result<()> {
    let data = vec![0x5au8; 256 << 10];
    let mut volume = zkcoproc_vfs::Volume::format(zkcoproc_vfs::DEFAULT_SIZE)?;
    let mut memory = Vec::with_capacity(count);
    for i in 0..count {
        let start = Instant::now();
        volume.write(&format!("/bench/f{}.bin", i % 8), &data)?;
        memory.push(start.elapsed().as_secs_f64() * 1e3);
    }
    // Through the service: a controller writes the file in get-witnesses; the stage commits the
    // blocks it wrote in the same SQLite transaction as the transition (synchronous = FULL). The
    // same work on a program with a 16 MiB volume and on one with 1 GiB, one service each.
    let mut rows = vec![("in memory (fatfs on a 256 MiB volume, blocks kept apart)".to_owned(), memory)];
    let mut p50 = Vec::new();
    for mb in [16u64, 1024] {
        let tmp = tempfile::tempdir()?;
        let size = mb.to_string();
        let server = bench_server(
            bin,
            &tmp.path().join("data"),
            "dev",
            &["--workers", "1", "--volume-size-mb", &size],
        )?;
        let api = server.api();
        let program = api.deploy_files(zkcoproc_testing::hostile_controller(), &hello_app().circuit)?;
        let (mut witnessing, mut total) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for i in 0..count {
            let args = json!({"mode": "write", "path": format!("/bench/f{}.bin", i % 8), "size": 256 << 10});
            let start = Instant::now();
            let task = api.prove(&program, &args)?;
            let t = api.wait_task(&task, Duration::from_secs(60))?;
            if t["status"] != "done" {
                bail!("write task failed: {t}");
            }
            total.push(start.elapsed().as_secs_f64() * 1e3);
            witnessing.push(t["durations_ms"]["witnessing"].as_f64().unwrap_or(f64::NAN));
        }
        let mut sorted = total.clone();
        sorted.sort_by(f64::total_cmp);
        p50.push(pct(&sorted, 0.5));
        rows.push((format!("{mb} MiB volume: witnessing stage (call + block commit)"), witnessing));
        rows.push((format!("{mb} MiB volume: task, submit → done (client)"), total));
    }
    out!("VFS write of a 256 KiB file (8 files rewritten in turn), {count} writes each:");
    let mut rows: Vec<(&str, Vec<f64>)> = rows.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    table("latency (ms)", &[0.5, 0.99], &mut rows);
    out!("ratio of task latency p50, 1 GiB / 16 MiB volume: {:.2}", p50[1] / p50[0]);
    Ok(())
}

fn workers(bin: &Path, tasks: usize, cost_ms: u64) -> anyhow::Result<()> {
    use zkcoproc_api::worker_auth;
    let tmp = tempfile::tempdir()?;
    let names: Vec<String> = (0..64).map(|i| format!("b{i}")).collect();
    let secrets: String = names.iter().map(|n| format!("{n}:bench-secret-{n}-0123456789\n")).collect();
    let secrets_file = tmp.path().join("secrets");
    std::fs::write(&secrets_file, secrets)?;
    let secrets_arg = secrets_file.to_str().context("path")?.to_owned();

    // Lease round trip: tasks wait in proving (no in-process prover); each lease call by a fresh
    // worker identity gets one immediately.
    let server = bench_server(
        bin,
        &tmp.path().join("rtt"),
        "dev",
        &["--workers", "0", "--worker-secret-file", &secrets_arg],
    )?;
    let api = server.api();
    let program = api.deploy(hello_app())?;
    for i in 0..names.len() {
        api.prove(&program, &json!({ "n": i + 1 }))?;
    }
    zkcoproc_testing::poll(Duration::from_secs(60), || {
        let (_, h) = api.get("/health")?;
        Ok((h["tasks"]["proving"].as_u64() == Some(names.len() as u64)).then_some(()))
    })?;
    let http = reqwest::blocking::Client::new();
    let mut rtt = Vec::new();
    for name in &names {
        let body = serde_json::to_vec(&json!({
            "zkcoproc_version": env!("CARGO_PKG_VERSION"),
            "risc0_version": zkcoproc_zkvm::RISC0_VERSION,
            "prover": "dev",
            "wait_ms": 0,
        }))?;
        let start = Instant::now();
        let (ts, nonce) = (worker_auth::unix_now(), uuid::Uuid::new_v4().simple().to_string());
        let secret = format!("bench-secret-{name}-0123456789");
        let sig = worker_auth::sign(secret.as_bytes(), "POST", "/v1/worker/lease", ts, &nonce, &body);
        let resp = http
            .post(format!("{}/v1/worker/lease", server.url))
            .header(worker_auth::HEADER_WORKER, name)
            .header(worker_auth::HEADER_TIMESTAMP, ts.to_string())
            .header(worker_auth::HEADER_NONCE, nonce)
            .header(worker_auth::HEADER_SIGNATURE, sig)
            .body(body)
            .send()?;
        let status = resp.status().as_u16();
        let _ = resp.bytes()?;
        rtt.push(start.elapsed().as_secs_f64() * 1e3);
        if status != 200 {
            bail!("lease answered {status}");
        }
    }
    drop(server);
    out!("prover lease round trip (signed POST /v1/worker/lease returning a task), {} leases:", rtt.len());
    table("latency (ms)", &[0.5, 0.99], &mut [("lease round trip", rtt)]);

    // Throughput: K tasks drained by N worker processes, each proof costing `cost_ms`.
    let mut rates = Vec::new();
    for n in [1usize, 2, 4] {
        let server = bench_server(
            bin,
            &tmp.path().join(format!("drain{n}")),
            "dev",
            &["--workers", "0", "--worker-secret-file", &secrets_arg],
        )?;
        let api = server.api();
        let program = api.deploy(hello_app())?;
        let ids: Vec<String> =
            (0..tasks).map(|i| api.prove(&program, &json!({ "n": i % 50 + 1 }))).collect::<Result<_, _>>()?;
        let start = Instant::now();
        let cost = cost_ms.to_string();
        let workers: Vec<zkcoproc_testing::Worker> = (0..n)
            .map(|i| {
                let log = tmp.path().join(format!("drain{n}-{}.log", names[i]));
                let extra = ["--dev-delay-ms", cost.as_str()];
                zkcoproc_testing::Worker::start(bin, &server.url, &names[i], &secrets_file, &extra, &log)
            })
            .collect::<Result<_, _>>()?;
        for id in &ids {
            let t = api.wait_task(id, Duration::from_secs(600))?;
            if t["status"] != "done" {
                bail!("task failed: {t}");
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        drop(workers);
        rates.push((n, tasks as f64 / elapsed));
    }
    out!("dev-mode tasks drained by remote workers, {tasks} tasks, proof cost {cost_ms} ms (ideal per worker: {:.1}/s):", 1000.0 / cost_ms as f64);
    out!("| workers | tasks/s | speed-up vs 1 |");
    out!("|---|---|---|");
    for (n, rate) in &rates {
        out!("| {n} | {rate:.1} | {:.2} |", rate / rates[0].1);
    }
    Ok(())
}

/// Sorts each row's samples and prints a markdown table of the given percentiles (1.0 = max).
fn state_proofs(max_slots: usize) -> anyhow::Result<()> {
    use zkcoproc_smt::{BlockCommitment, Sha2, Tree};
    use zkcoproc_testing::anvil::Anvil;
    let anvil = Anvil::start()?;
    let accounts = anvil.accounts()?;
    let token = anvil.deploy_token(&accounts[0], 1 << 60)?;
    // Give distinct holders balances, so each proven slot is a real leaf of the storage trie.
    let holders: Vec<String> = (1..=max_slots.max(1)).map(|i| format!("0x{:040x}", 0x1000 + i)).collect();
    for h in &holders {
        anvil.transfer(&token, &accounts[0], h, 1000)?;
    }
    let block = anvil.block_number()?;
    let rt = tokio::runtime::Runtime::new()?;
    let rpc = zkcoproc_eth::RpcClient::new(&anvil.url, Duration::from_secs(30))?;
    let header = rt.block_on(rpc.header(block))?;
    let key = zkcoproc_smt::key::<Sha2>("ethereum", block);
    let tree = Tree::new()
        .insert(key, BlockCommitment { block_hash: header.hash.0, state_root: header.state_root.0 });
    let slot = |holder: &str| -> anyhow::Result<[u8; 32]> {
        let mut preimage = [0u8; 64];
        hex::decode_to_slice(holder.trim_start_matches("0x"), &mut preimage[12..32])?;
        Ok(alloy_primitives::keccak256(preimage).0)
    };
    let slots: Vec<[u8; 32]> = holders.iter().map(|h| slot(h)).collect::<anyhow::Result<_>>()?;
    let token_addr: [u8; 20] = hex::decode(token.trim_start_matches("0x"))?
        .try_into()
        .map_err(|_| anyhow::anyhow!("token address"))?;

    let dir = zkcoproc_testing::repo_root().join("testing/apps/stateproof/circuit");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| zkcoproc_testing::repo_root().join("target"))
        .join("zkcoproc-test-apps/stateproof");
    eprintln!("building the state-proof bench circuit ...");
    let image = zkcoproc_zkvm::CircuitImage::load(&zkcoproc_build::build_circuit(&dir, &target)?)?;
    let cycles = |n: usize| -> anyhow::Result<u64> {
        let mut proof = rt.block_on(rpc.get_proof(token_addr, &slots[..n], block))?;
        proof.domain = "ethereum".into();
        proof.header = header.rlp.clone();
        proof.opening = Some(tree.open(&key));
        let input = CircuitInput { root: tree.root(), witnesses: vec![Witness::StateProof(Box::new(proof))] };
        let run = zkcoproc_zkvm::execute(&image, &input.encode(), zkcoproc_zkvm::DEFAULT_MAX_CYCLES)?;
        Ok(run.user_cycles)
    };
    let empty = CircuitInput { root: tree.root(), witnesses: vec![] };
    let base =
        zkcoproc_zkvm::execute(&image, &empty.encode(), zkcoproc_zkvm::DEFAULT_MAX_CYCLES)?.user_cycles;
    out!("state-proof verification in the guest (user cycles; anvil state trie, software keccak)");
    out!("{:>6} {:>12} {:>14}", "slots", "cycles", "over no proof");
    out!("{:>6} {:>12} {:>14}", "none", base, 0);
    let mut rows = Vec::new();
    let mut n = 0;
    loop {
        let c = cycles(n)?;
        out!("{n:>6} {c:>12} {:>14}", c - base);
        rows.push((n, c));
        if n >= max_slots {
            break;
        }
        n = if n == 0 { 1 } else { (n * 2).min(max_slots) };
    }
    if let (Some(&(1, one)), Some(&(last_n, last))) = (rows.iter().find(|(n, _)| *n == 1), rows.last()) {
        if last_n > 1 {
            out!("per extra slot: {:.0} cycles", (last - one) as f64 / (last_n - 1) as f64);
        }
    }
    Ok(())
}

/// P7. One ERC-20 balance on anvil, proven two ways, each input run in the executor: the slot
/// path (`examples/erc20-balance`: opening, header, account and storage proof) and the EVM path
/// (`examples/erc20-evm`: opening, header, `balanceOf` executed with revm over the witness). Also
/// the host preflight of the call (median of `iterations`) and the witness's size.
fn evm_call(iterations: usize, prove: bool) -> anyhow::Result<()> {
    use zkcoproc_smt::{BlockCommitment, Sha2, Tree};
    use zkcoproc_testing::anvil::{address_word, Anvil};
    let anvil = Anvil::start()?;
    let accounts = anvil.accounts()?;
    let token = anvil.deploy_token(&accounts[0], 1 << 60)?;
    let holder = "0x0000000000000000000000000000000000001234";
    anvil.transfer(&token, &accounts[0], holder, 4321)?;
    anvil.mine(1)?;
    let block = anvil.block_number()?;
    let rt = tokio::runtime::Runtime::new()?;
    let rpc = zkcoproc_eth::RpcClient::new(&anvil.url, Duration::from_secs(30))?;
    let header = rt.block_on(rpc.header(block))?;
    let chain_id = rt.block_on(rpc.chain_id())?;
    let key = zkcoproc_smt::key::<Sha2>("ethereum", block);
    let tree = Tree::new()
        .insert(key, BlockCommitment { block_hash: header.hash.0, state_root: header.state_root.0 });
    let to: [u8; 20] = hex::decode(token.trim_start_matches("0x"))?
        .try_into()
        .map_err(|_| anyhow::anyhow!("token address"))?;
    let holder_word = hex::decode(address_word(holder)?)?;

    // The slot path: balances[holder] at slot 0.
    let mut preimage = [0u8; 64];
    preimage[..32].copy_from_slice(&holder_word);
    let slot = alloy_primitives::keccak256(preimage).0;
    let mut proof = rt.block_on(rpc.get_proof(to, &[slot], block))?;
    (proof.domain, proof.header, proof.opening) =
        ("ethereum".into(), header.rlp.clone(), Some(tree.open(&key)));
    let mut request = holder_word[12..].to_vec();
    request.extend_from_slice(&[0u8; 32]);
    let slot_input = CircuitInput {
        root: tree.root(),
        witnesses: vec![Witness::Data(request), Witness::StateProof(Box::new(proof))],
    };

    // The EVM path: balanceOf(holder), preflighted against anvil.
    let mut calldata = vec![0x70, 0xa0, 0x82, 0x31];
    calldata.extend_from_slice(&holder_word);
    let request = zkcoproc_evm::preflight::CallRequest {
        domain: "ethereum".into(),
        block,
        chain_id,
        to,
        calldata,
        ..Default::default()
    };
    let limits = zkcoproc_evm::preflight::Limits::default();
    let mut times = Vec::with_capacity(iterations);
    let mut done = None;
    for _ in 0..iterations.max(1) {
        let run = rt.block_on(zkcoproc_evm::preflight::preflight(
            &rpc,
            header.rlp.clone(),
            request.clone(),
            &limits,
        ))?;
        times.push(run.elapsed.as_secs_f64() * 1000.0);
        done = Some(run);
    }
    let done = done.context("no preflight ran")?;
    let mut call = done.call.clone();
    call.opening = Some(tree.open(&key));
    let witness_bytes = call.encoded_len();
    let evm_input = CircuitInput { root: tree.root(), witnesses: vec![Witness::EvmCall(Box::new(call))] };

    eprintln!("building examples/erc20-balance and examples/erc20-evm ...");
    let run = |app: &str, input: &CircuitInput| -> anyhow::Result<zkcoproc_zkvm::Executed> {
        let built = zkcoproc_testing::build_example(app)?;
        let image = zkcoproc_zkvm::CircuitImage::load(&std::fs::read(&built.circuit)?)?;
        Ok(zkcoproc_zkvm::execute(&image, &input.encode(), zkcoproc_zkvm::DEFAULT_MAX_CYCLES)?)
    };
    let slot_run = run("erc20-balance", &slot_input)?;
    let evm_run = run("erc20-evm", &evm_input)?;
    if prove {
        use zkcoproc_zkvm::Prover as _;
        let built = zkcoproc_testing::build_example("erc20-evm")?;
        let image = zkcoproc_zkvm::CircuitImage::load(&std::fs::read(&built.circuit)?)?;
        let prover = zkcoproc_zkvm::CpuProver::new(
            zkcoproc_zkvm::ReceiptKind::Composite,
            zkcoproc_zkvm::DEFAULT_MAX_CYCLES,
        )?;
        eprintln!("proving the EVM path on the CPU ...");
        let proved = prover.prove(&image, &evm_input.encode())?;
        let verified = zkcoproc_zkvm::Verifier::new(false).verify(&proved.receipt.bytes, image.image_id())?;
        if verified.journal != evm_run.journal {
            bail!("the proven journal differs from the executed one");
        }
        out!(
            "real CPU proof of the EVM path (composite receipt, verified): {:.1} s, {} segment(s), receipt {} bytes",
            proved.elapsed.as_secs_f64(),
            proved.segments,
            proved.receipt.bytes.len()
        );
    }
    if evm_run.journal[32..].ends_with(&slot_run.journal[slot_run.journal.len() - 32..]) {
        out!("both paths prove the same balance (4321)");
    } else {
        bail!(
            "the two paths disagree: {} vs {}",
            hex::encode(&slot_run.journal),
            hex::encode(&evm_run.journal)
        );
    }
    out!("| balance of one holder (anvil) | user cycles | segments |");
    out!("|---|---|---|");
    let slot = (slot_run.user_cycles, slot_run.segments);
    out!("| slot path (examples/erc20-balance, software keccak) | {} | {} |", slot.0, slot.1);
    let evm = (evm_run.user_cycles, evm_run.segments);
    out!("| EVM path (examples/erc20-evm: balanceOf, keccak accelerator) | {} | {} |", evm.0, evm.1);
    out!("");
    out!("EVM path / slot path: {:.2}×", evm_run.user_cycles as f64 / slot_run.user_cycles as f64);
    times.sort_by(f64::total_cmp);
    let reads = done.outcome.reads;
    out!(
        "preflight of balanceOf (host, against anvil over loopback): p50 {:.1} ms, p90 {:.1} ms over {} runs; {} RPC requests",
        pct(&times, 0.5),
        pct(&times, 0.9),
        times.len(),
        done.rpc_requests
    );
    out!("");
    out!(
        "witness: {} accounts, {} slots read; {} trie nodes, {} code(s) of {} bytes, {} ancestor headers; {} bytes encoded",
        reads.accounts,
        reads.slots,
        done.call.nodes.len(),
        done.call.codes.len(),
        reads.code_bytes,
        done.call.ancestors.len(),
        witness_bytes
    );
    Ok(())
}

/// P6. (a) `validate` of a 512-signer update (mainnet preset, made-up chain of real BLS keys):
/// the first against a fresh store (the 512 committee keys decompressed and checked) and then
/// with the keys cached. (b) From a checkpoint at anvil's genesis, the service catches up to a
/// block `blocks` ahead: under RPC trust (`--trust rpc`, confirmations 0) and under the light
/// client (a test beacon node finalizing that block), each timed from process start until the
/// block is in the root.
fn light_client(bin: &Path, blocks: u64, iterations: usize) -> anyhow::Result<()> {
    use alloy_primitives::B256;
    use zkcoproc_lightclient::testkit::{config_yaml, TestChain};
    use zkcoproc_lightclient::{ExecutionPayloadHeader, LightClientStore};
    use zkcoproc_testing::anvil::Anvil;
    use zkcoproc_testing::beacon::{execution_header, TestBeacon};

    let chain = TestChain::mainnet_sized(1);
    let spec = &chain.spec;
    let exec = |n: u64| ExecutionPayloadHeader {
        block_number: n,
        block_hash: B256::repeat_byte(n as u8),
        ..Default::default()
    };
    let base = 3 * 8192 + 64;
    let checkpoint = chain.header(base, exec(1), B256::ZERO);
    let root = checkpoint.header.beacon.root();
    let fin = chain.header(base + 32, exec(2), B256::ZERO);
    let att = chain.header(base + 64, exec(3), fin.header.beacon.root());
    let update = chain.update(&att, Some(&fin), true, base + 65, 512);
    let gvr = chain.genesis_validators_root;
    let fresh = || LightClientStore::bootstrap(spec, root, chain.bootstrap(&checkpoint));
    let mut first = Vec::new();
    for _ in 0..10 {
        let store = fresh().map_err(|e| anyhow::anyhow!("{e}"))?;
        let t = Instant::now();
        store.validate(spec, &update, base + 65, gvr).map_err(|e| anyhow::anyhow!("{e}"))?;
        first.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let store = fresh().map_err(|e| anyhow::anyhow!("{e}"))?;
    store.validate(spec, &update, base + 65, gvr).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut cached = Vec::new();
    for _ in 0..iterations {
        let t = Instant::now();
        store.validate(spec, &update, base + 65, gvr).map_err(|e| anyhow::anyhow!("{e}"))?;
        cached.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out!(
        "Validating one update signed by 512 of 512 sync-committee members (mainnet preset; BLS with blst, \
          branches, SSZ roots); {iterations} runs with the committee's keys cached, 10 with a fresh store:\n"
    );
    table(
        "ms",
        &[0.5, 0.9, 1.0],
        &mut [("validate, keys cached", cached), ("validate, fresh store (512 keys decompressed)", first)],
    );

    let anvil = Anvil::start()?;
    let mut mined = 0;
    while mined < blocks {
        let n = (blocks - mined).min(250);
        anvil.mine(n)?;
        mined += n;
    }
    let tmp = tempfile::tempdir()?;
    let catch_up = |name: &str, args: &[&str]| -> anyhow::Result<f64> {
        let begin = Instant::now();
        let server = bench_server(bin, &tmp.path().join(name), "dev", args)?;
        let api = server.api();
        loop {
            let (status, v) = api.get("/v1/domains/ethereum/latest")?;
            if status == 200 && v["number"].as_u64() >= Some(blocks) {
                break;
            }
            if begin.elapsed() > Duration::from_secs(1800) {
                bail!("{name}: the service did not catch up: {v}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(begin.elapsed().as_secs_f64())
    };
    let rpc_args = anvil.follow_args(0, 20)?;
    let rpc_args: Vec<&str> = rpc_args.iter().map(String::as_str).collect();
    let rpc = catch_up("rpc", &rpc_args)?;

    let yaml = format!("{}DEPOSIT_CHAIN_ID: 31337\n", config_yaml("minimal", 12, None));
    let network = tmp.path().join("network.yaml");
    std::fs::write(&network, &yaml)?;
    let lc_chain = TestChain::new(zkcoproc_lightclient::ChainSpec::from_yaml(&yaml)?, 2);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let cp = lc_chain.header(80, execution_header(&anvil, 0)?, B256::ZERO);
    let fin = lc_chain.header(88, execution_header(&anvil, blocks)?, B256::ZERO);
    let att = lc_chain.header(89, execution_header(&anvil, blocks)?, fin.header.beacon.root());
    let update = lc_chain.update(&att, Some(&fin), true, 90, 32);
    let beacon = TestBeacon::start(lc_chain, now - 100 * 12)?;
    let cp_root = beacon.add_bootstrap(&beacon.chain.bootstrap(&cp));
    beacon.publish(&update);
    let lc_args = [
        format!("--domain=ethereum={}", anvil.url),
        format!("--beacon=ethereum={}", beacon.url()),
        format!("--checkpoint=ethereum=beacon:{cp_root}"),
        format!("--network={}", network.display()),
        "--follow-interval-ms=20".to_owned(),
    ];
    let lc_args: Vec<&str> = lc_args.iter().map(String::as_str).collect();
    let lc = catch_up("light-client", &lc_args)?;
    out!(
        "\nCatching up from anvil's genesis to block {blocks} (checked, inserted and committed; timed from \
         process start): RPC trust {rpc:.2} s = {:.0} headers/s; light client (bootstrap, one finality \
         update, headers checked back from its verified hash) {lc:.2} s = {:.0} headers/s; light client / RPC \
         trust = {:.2}×",
        (blocks + 1) as f64 / rpc,
        (blocks + 1) as f64 / lc,
        rpc / lc
    );
    Ok(())
}

fn follow(bin: &Path, blocks: u64) -> anyhow::Result<()> {
    use zkcoproc_testing::anvil::Anvil;
    let anvil = Anvil::start()?;
    // In chunks: anvil answers a large anvil_mine only after mining them all.
    let mut mined = 0;
    while mined < blocks {
        let n = (blocks - mined).min(2000);
        anvil.mine(n)?;
        mined += n;
    }
    let tmp = tempfile::tempdir()?;
    let args = anvil.follow_args(0, 20)?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Timed from the process start: the follower begins inserting while the API comes up.
    let begin = Instant::now();
    let server = bench_server(bin, &tmp.path().join("data"), "dev", &args)?;
    let api = server.api();
    let started = begin.elapsed();
    loop {
        let (status, v) = api.get("/v1/domains/ethereum/latest")?;
        if status == 200 && v["number"].as_u64() >= Some(blocks) {
            break;
        }
        if begin.elapsed() > Duration::from_secs(1800) {
            bail!("the service did not catch up: {v}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = begin.elapsed().as_secs_f64();
    out!(
        "header follow from anvil: {} headers (fetched in batches of {}, hash and link checked, inserted \
         and committed) in {secs:.2} s from process start = {:.0} headers/s (API up after {:.2} s)",
        blocks + 1,
        zkcoproc_eth::MAX_BATCH,
        (blocks + 1) as f64 / secs,
        started.as_secs_f64()
    );
    Ok(())
}

/// Writes a history of `age + 1` inserts of domain `bench` (with the tree nodes each insert
/// created, as the service stores them) straight into a SQLite data directory, starts the
/// service on it, and times `GET /v1/domains/bench/blocks/{n}/opening` under the oldest root
/// (seq 1, `age` inserts before the current one) and under the current root, interleaved.
fn openings(bin: &Path, age: u64, requests: usize) -> anyhow::Result<()> {
    use zkcoproc_smt::{key, BlockCommitment, Sha2, Tree};
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let total = age + 1;
    let begin = Instant::now();
    let oldest = {
        let store = zkcoproc_store::SqliteStore::open(&data)?;
        let mut tree = Tree::new();
        let mut oldest = None;
        let mut number = 0u64;
        while number < total {
            let prev = tree.root();
            let mut blocks = Vec::new();
            for _ in 0..1000.min(total - number) {
                let k = key::<Sha2>("bench", number);
                let mut block_hash = [0u8; 32];
                block_hash[..8].copy_from_slice(&number.to_be_bytes());
                let value = BlockCommitment {
                    block_hash,
                    state_root: <Sha2 as zkcoproc_smt::Hasher>::sha256(&block_hash),
                };
                tree = tree.insert(k, value);
                oldest.get_or_insert(tree.root());
                let nodes = tree.path_rows(&k);
                blocks.push(zkcoproc_store::NewBlock {
                    number,
                    block_hash,
                    state_root: value.state_root,
                    header: vec![0xc0],
                    root: tree.root(),
                    nodes,
                    admission: Default::default(),
                });
                number += 1;
            }
            if !rt.block_on(zkcoproc_store::Store::append_blocks(&store, "bench", prev, blocks))? {
                bail!("history append refused");
            }
        }
        oldest.context("empty history")?
    };
    out!("history of {total} inserts written in {:.1} s", begin.elapsed().as_secs_f64());
    let begin = Instant::now();
    let server = bench_server(bin, &data, "dev", &[])?;
    out!("service up on it (history loaded) in {:.1} s", begin.elapsed().as_secs_f64());
    let api = server.api();
    let (_, current) = api.get("/v1/root")?;
    if current["seq"].as_u64() != Some(total) {
        bail!("the service did not load the history: {current}");
    }
    let old = hex::encode(oldest);
    let mut rows: Vec<(&str, Vec<f64>)> =
        vec![("old root (seq 1)", Vec::new()), ("current root", Vec::new())];
    for i in 0..requests {
        // Block 0 is under both roots; other blocks only under the current one.
        let n = if i % 2 == 0 { 0 } else { (i as u64 * 7919) % total };
        for (row, root) in [(0, Some(old.as_str())), (1, None)] {
            let path = match root {
                Some(r) => format!("/v1/domains/bench/blocks/{n}/opening?root={r}"),
                None => format!("/v1/domains/bench/blocks/{n}/opening"),
            };
            let t = Instant::now();
            let (status, v) = api.get(&path)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if status != 200 {
                bail!("opening answered {status}: {v}");
            }
            rows[row].1.push(ms);
        }
    }
    table("opening over HTTP, ms", &[0.5, 0.9, 0.99], &mut rows);
    let (old_p50, cur_p50) = (pct(&rows[0].1, 0.5), pct(&rows[1].1, 0.5));
    out!(
        "ratio old root / current root (p50): {:.2} ({requests} requests each, {age} inserts apart)",
        old_p50 / cur_p50
    );
    Ok(())
}

fn table(unit: &str, percentiles: &[f64], rows: &mut [(&str, Vec<f64>)]) {
    let head: Vec<String> = percentiles
        .iter()
        .map(|&p| if p >= 1.0 { "max".to_owned() } else { format!("p{}", (p * 100.0).round()) })
        .collect();
    out!("| {unit} | {} |", head.join(" | "));
    out!("|---|{}", "---|".repeat(head.len()));
    for (name, samples) in rows.iter_mut() {
        samples.sort_by(f64::total_cmp);
        let cells: Vec<String> = percentiles.iter().map(|&p| format!("{:.2}", pct(samples, p))).collect();
        out!("| {name} | {} |", cells.join(" | "));
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// P1–P8 with their default sizes, then the file.
fn report(bin: &Path, path: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Ok(mut r) = REPORT.lock() {
        r.clear();
    }
    let sections: [(&str, &dyn Fn() -> anyhow::Result<()>); 8] = [
        ("P1: real proof through the service vs bare risc0_zkvm", &|| prove(bin, 100)),
        ("P2: end-to-end dev-mode throughput vs the store's raw transaction rate", &|| throughput(bin, 200)),
        ("P3: controller get-witnesses, wasm vs native", &|| witnesses(bin, 2000)),
        ("P4: remote workers with fixed-cost mock proving", &|| workers(bin, 60, 50)),
        ("P5: openings under a root 100 000 inserts old vs under the current root", &|| {
            openings(bin, 100_000, 400)
        }),
        ("P6: light client: update verification, and catching up 10 000 blocks vs RPC trust", &|| {
            light_client(bin, 10_000, 200)
        }),
        ("P7: EVM view call (balanceOf in the circuit) vs the slot-level proof", &|| evm_call(20, false)),
        ("P8: volume writes through the service, 1 GiB vs 16 MiB volume", &|| vfs_write(bin, 40)),
    ];
    for (title, run) in sections {
        out!("\n## {title}\n");
        run()?;
    }
    let body = markdown_blocks(&REPORT.lock().map(|r| r.clone()).unwrap_or_default());
    let text = format!(
        "# zkcoproc benchmark results\n\nWritten by `zkcoproc-bench report` (`scripts/bench.sh`); every figure \
         below is measured in that one run, in {:.0} s.\n\n- machine: {}\n- date: {}\n{body}",
        started.elapsed().as_secs_f64(),
        machine(),
        date(),
    );
    // Notes added by hand below a section's figures (`### ...`: side-by-side runs of two builds,
    // figures from other runs) stay under their section.
    let text = match std::fs::read_to_string(path) {
        Ok(previous) => keep_notes(&text, &previous),
        Err(_) => text,
    };
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("\nwritten to {}", path.display());
    Ok(())
}

/// `report` with the `### ` subsections of each `## ` section of `previous` appended to the
/// section of the same title (the sections `report` no longer writes are dropped with theirs).
fn keep_notes(report: &str, previous: &str) -> String {
    let notes = |section: &str| section.find("\n### ").map(|at| section[at..].trim_end().to_owned());
    let previous: HashMap<&str, String> = split_sections(previous)
        .into_iter()
        .filter_map(|section| Some((section.lines().next()?, notes(section)?)))
        .collect();
    let mut out = String::new();
    for (i, section) in split_sections(report).into_iter().enumerate() {
        out.push_str(section.trim_end());
        if let Some(notes) = section.lines().next().filter(|_| i > 0).and_then(|title| previous.get(title)) {
            out.push('\n');
            out.push_str(notes);
        }
        out.push_str("\n\n");
    }
    format!("{}\n", out.trim_end())
}

/// `text` cut before every line that starts a `## ` section; the first part is what precedes
/// the first section.
fn split_sections(text: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = text.match_indices("\n## ").map(|(at, _)| at + 1).collect();
    starts.insert(0, 0);
    starts.push(text.len());
    starts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

/// The printed lines as markdown: a blank line before and after every table.
fn markdown_blocks(text: &str) -> String {
    let mut out = String::new();
    let mut previous = "";
    for line in text.lines() {
        let (table, was_table) = (line.starts_with('|'), previous.starts_with('|'));
        if table != was_table && !line.is_empty() && !previous.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
        previous = line;
    }
    out
}

/// End-to-end tasks/s on each store, next to its raw rate of durable transactions.
fn throughput(bin: &Path, tasks: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut rows = Vec::new();
    // SQLite: the service's data directory and the raw store on the same disk.
    let dir = tmp.path().join("sqlite");
    let e2e = drain(bin, &dir.join("service"), &[], tasks)?;
    let raw = rt.block_on(async {
        let store = zkcoproc_store::SqliteStore::open(&dir.join("raw"))?;
        raw_rate(&store, tasks).await
    })?;
    rows.push(("SQLite (WAL, synchronous = FULL)", e2e, raw));
    match zkcoproc_testing::postgres::server() {
        Some(base) => {
            let db = zkcoproc_testing::postgres::fresh_database(&base)?;
            let e2e = drain(bin, &tmp.path().join("pg"), &["--database", &db], tasks)?;
            let raw_db = zkcoproc_testing::postgres::fresh_database(&base)?;
            let raw = rt.block_on(async {
                let store = zkcoproc_store::PgStore::connect(&raw_db, 4).await?;
                raw_rate(&store, tasks).await
            })?;
            rows.push(("PostgreSQL (local, synchronous_commit = on)", e2e, raw));
        }
        None => out!("(PostgreSQL skipped: ZKCOPROC_TEST_POSTGRES is not set)"),
    }
    out!("{tasks} dev-mode tasks of examples/hello submitted at once, 2 in-process dev provers, drained to done:");
    out!("| store | end-to-end tasks/s | commits a task | raw durable transactions/s (one task insert each) | ratio |");
    out!("|---|---|---|---|---|");
    for (name, (e2e, commits), raw) in &rows {
        out!("| {name} | {e2e:.1} | {commits:.2} | {raw:.0} | {:.3} |", e2e / raw);
    }
    let bounds: Vec<String> =
        rows.iter().map(|(name, (_, commits), raw)| format!("{name}: {:.0}", raw / commits)).collect();
    out!(
        "\nA task commits 5 to 7 transactions on its way: insert; claim, entering witnessing; \
         transition to proving, leasing the task to an idle in-process prover (else a lease of its \
         own); proof accepted, claiming the delivery for a runner (else a claim of its own, when \
         the runners are behind); done. The commits a task above are counted from the service's \
         `/metrics` (`zkcoproc_prover_leases_handed_total`, `zkcoproc_deliveries_handed_total`), \
         so the store alone would allow about raw / commits tasks/s ({}).",
        bounds.join("; ")
    );
    Ok(())
}

/// Submits `tasks` tasks to a fresh dev service at once; tasks/s until all are done, and the
/// commits a task took (7, less the leases and deliveries the service handed over in another
/// stage's commit).
fn drain(bin: &Path, data: &Path, extra: &[&str], tasks: usize) -> anyhow::Result<(f64, f64)> {
    let mut args = vec!["--workers", "2"];
    args.extend_from_slice(extra);
    let server = bench_server(bin, data, "dev", &args)?;
    let api = server.api();
    let program = api.deploy(hello_app())?;
    let start = Instant::now();
    let ids: Vec<String> =
        (0..tasks).map(|i| api.prove(&program, &json!({ "n": i % 50 + 1 }))).collect::<Result<_, _>>()?;
    for id in &ids {
        let t = api.wait_task(id, Duration::from_secs(600))?;
        if t["status"] != "done" {
            bail!("task failed: {t}");
        }
    }
    let rate = tasks as f64 / start.elapsed().as_secs_f64();
    let metrics = reqwest::blocking::get(format!("{}/metrics", server.url))?.text()?;
    let counter = |name: &str| -> anyhow::Result<f64> {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /metrics"))?;
        Ok(line.rsplit(' ').next().unwrap_or_default().parse()?)
    };
    let handed =
        counter("zkcoproc_prover_leases_handed_total ")? + counter("zkcoproc_deliveries_handed_total ")?;
    Ok((rate, 7.0 - handed / tasks as f64))
}

/// Durable single-insert transactions per second, one after another.
async fn raw_rate(store: &dyn zkcoproc_store::Store, n: usize) -> anyhow::Result<f64> {
    store
        .put_program(zkcoproc_store::NewProgram {
            id: "p".into(),
            image_id: "00".repeat(32),
            controller: vec![0],
            circuit: vec![0],
            owner: None,
            volume_size: zkcoproc_vfs::DEFAULT_SIZE,
            callback_url: None,
        })
        .await?;
    let start = Instant::now();
    for i in 0..n {
        let task = zkcoproc_store::NewTask {
            id: format!("raw-{i}"),
            program_id: "p".into(),
            args: "{}".into(),
            root: EMPTY_ROOT,
            receipt_kind: "fake".into(),
            submitter: None,
            callback_url: None,
        };
        store.insert_task(task, None).await?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn machine() -> String {
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("MemTotal")).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        .map_or("unknown memory".to_owned(), |kb| format!("{:.1} GiB RAM", kb as f64 / (1 << 20) as f64));
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("PRETTY_NAME=")).map(|l| l[12..].trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown OS".into());
    format!("{} cores, {}, {mem}, {os}, no GPU (RISC Zero CPU prover)", cores(), cpu_model())
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Quota flags that keep the service's per-caller limits out of the measurements: a benchmark is
/// one client submitting as fast as it can, which the defaults would (rightly) throttle.
const UNTHROTTLED: &[&str] = &[
    "--submit-rate",
    "1000000",
    "--submit-burst",
    "1000000",
    "--max-queued-per-identity",
    "100000000",
    "--max-dry-runs",
    "1024",
    "--max-volume-reads",
    "1024",
    "--max-verifications",
    "1024",
];

/// [`Server::start`] with [`UNTHROTTLED`] quotas.
fn bench_server(bin: &Path, data: &Path, prover: &str, extra: &[&str]) -> anyhow::Result<Server> {
    let mut args = UNTHROTTLED.to_vec();
    args.extend_from_slice(extra);
    Server::start(bin, data, prover, &args)
}

#[cfg(test)]
mod tests {
    use super::keep_notes;

    #[test]
    fn a_report_keeps_the_notes_under_its_sections() {
        let previous = "# results\n\nold run\n\n## P1: a\n\nold a\n\n### side by side\n\nnote a\n\n\
                        ## P2: b\n\nold b\n\n## P9: gone\n\n### lost\n\nnote gone\n";
        let report = "# results\n\nnew run\n\n## P1: a\n\nnew a\n\n## P2: b\n\nnew b\n";
        assert_eq!(
            keep_notes(report, previous),
            "# results\n\nnew run\n\n## P1: a\n\nnew a\n\n### side by side\n\nnote a\n\n## P2: b\n\nnew b\n"
        );
        // A first report, or one of a file without notes, is written as it is.
        assert_eq!(keep_notes(report, "# results\n"), report);
    }
}
