//! `zkcoproc-bench`: measured figures, printed (never asserted).
//!
//! - `prove [--n N]`: a real CPU proof of `examples/hello` through the service (a `zkcoproc
//!   serve` process), then bare `risc0_zkvm` proving of the same guest and input in the same run;
//!   prints both and the ratio.
//! - `dev-latency [--tasks K]`: dev-mode task latency (submit → done, durable) p50/p90/max.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use risc0_zkvm::{get_prover_server, ExecutorEnv, ProverOpts, VerifierContext};
use serde_json::json;
use zkcoproc_testing::{hello_app, Server};
use zkcoproc_types::{CircuitInput, Witness, EMPTY_ROOT};

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
    println!("machine: {} cores, {}", cores(), cpu_model());
    match args.bench {
        Bench::Prove { n } => prove(&bin, n),
        Bench::DevLatency { tasks } => dev_latency(&bin, tasks),
    }
}

fn prove(bin: &Path, n: u32) -> anyhow::Result<()> {
    let app = hello_app();
    let tmp = tempfile::tempdir()?;
    let server = Server::start(bin, &tmp.path().join("data"), "cpu", &[])?;
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
    println!(
        "examples/hello n={n}: {} user cycles, {} segment(s)",
        info.stats.user_cycles, info.stats.segments
    );
    println!("| measurement | seconds |");
    println!("|---|---|");
    println!("| service: submit → done (server-side) | {:.2} |", service_total.as_secs_f64());
    println!("| service: submit → done (client, polling) | {:.2} |", client_total.as_secs_f64());
    println!("| service: proving stage | {:.2} |", service_proving.as_secs_f64());
    println!(
        "| service: witnessing + verifying + delivering | {:.3} |",
        (ms("witnessing") + ms("verifying") + ms("delivering")) as f64 / 1e3
    );
    println!("| bare risc0_zkvm prove (same guest, same input) | {:.2} |", bare.as_secs_f64());
    println!("ratio service total / bare prove: {:.3}", service_total.as_secs_f64() / bare.as_secs_f64());
    Ok(())
}

fn dev_latency(bin: &Path, tasks: usize) -> anyhow::Result<()> {
    let app = hello_app();
    let tmp = tempfile::tempdir()?;
    let server = Server::start(bin, &tmp.path().join("data"), "dev", &[])?;
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
    println!("dev-mode tasks (examples/hello n=100), {tasks} sequential, SQLite synchronous=FULL:");
    println!("| latency (ms) | p50 | p90 | max |");
    println!("|---|---|---|---|");
    for (name, v) in
        [("server-side submit → done", &mut server_side), ("client-observed submit → done", &mut client_side)]
    {
        v.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            pct(v, 0.5),
            pct(v, 0.9),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
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
