//! Tooling for one task away from the service: `zkcoproc task dump` writes what a prover needs
//! to a directory, `zkcoproc prove-local` proves (or executes) such a dump on this machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use zkcoproc_types::journal;
use zkcoproc_zkvm::{CircuitImage, CpuProver, DevProver, Prover, ReceiptKind, Verifier};

use crate::client::Client;
use crate::ProverChoice;

/// The files of a dump directory.
pub(crate) const INPUT: &str = "input.bin";
/// The circuit binary, as deployed.
pub(crate) const CIRCUIT: &str = "circuit.bin";
/// The image id, hex, one line.
pub(crate) const IMAGE_ID: &str = "image_id";
/// The controller's arguments the task was submitted with.
pub(crate) const ARGS: &str = "args.json";

/// Writes `DIR/input.bin`, `DIR/circuit.bin`, `DIR/image_id` and `DIR/args.json` for a task,
/// without proving. The circuit is checked against the program's image id before anything is
/// written, so a dump always executes the program the task belongs to.
pub(crate) async fn dump(client: &Client, task_id: &str, out: &Path) -> anyhow::Result<()> {
    let task = client.task(task_id).await?;
    let program = task["program_id"].as_str().ok_or_else(|| anyhow!("task JSON without `program_id`"))?;
    let image_id = client.program(program).await?["image_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("program JSON without `image_id`"))?;
    let input =
        client.task_input(task_id).await.with_context(|| format!("fetching task {task_id}'s input"))?;
    let circuit =
        client.circuit(program).await.with_context(|| format!("fetching program {program}'s circuit"))?;
    let loaded = {
        let circuit = circuit.clone();
        tokio::task::spawn_blocking(move || CircuitImage::load(&circuit)).await??
    };
    if loaded.image_id().to_string() != image_id {
        bail!(
            "the service sent a circuit of image id {} for program {program} (image id {image_id})",
            loaded.image_id()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let args = serde_json::to_string_pretty(&task["args"])? + "\n";
    for (name, bytes) in [
        (INPUT, &input[..]),
        (CIRCUIT, &circuit[..]),
        (IMAGE_ID, format!("{image_id}\n").as_bytes()),
        (ARGS, args.as_bytes()),
    ] {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "task {task_id} ({}): input {} bytes, circuit {} bytes, image id {image_id}",
        task["status"].as_str().unwrap_or("?"),
        input.len(),
        circuit.len()
    );
    eprintln!(
        "prove it here with: zkcoproc prove-local --circuit {0}/{CIRCUIT} --input {0}/{INPUT}",
        out.display()
    );
    println!("{}", out.display());
    Ok(())
}

/// What `prove-local` is asked to do.
pub(crate) struct ProveLocal {
    pub(crate) circuit: PathBuf,
    pub(crate) input: PathBuf,
    pub(crate) prover: ProverChoice,
    pub(crate) out: Option<PathBuf>,
    pub(crate) max_cycles: u64,
}

/// Proves (`cpu`) or executes (`dev`: a fake receipt) a circuit on an input on this machine,
/// verifies the receipt, and prints cycles, segments and time. Blocking: run it off the runtime.
pub(crate) fn prove_local(args: &ProveLocal) -> anyhow::Result<()> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let image =
        CircuitImage::load(&read(&args.circuit)?).map_err(|e| anyhow!("{}: {e}", args.circuit.display()))?;
    let input = read(&args.input)?;
    let prover: Box<dyn Prover> = match args.prover {
        ProverChoice::Cpu => Box::new(CpuProver::new(ReceiptKind::Composite, args.max_cycles)?),
        ProverChoice::Dev => Box::new(DevProver::new(args.max_cycles, Duration::ZERO)),
    };
    eprintln!(
        "image id {}: {} with the {} prover ...",
        image.image_id(),
        if args.prover == ProverChoice::Cpu { "proving" } else { "executing" },
        prover.name()
    );
    let proved = prover.prove(&image, &input).map_err(|e| anyhow!("{}: {e}", e.code()))?;
    let verified = Verifier::new(args.prover == ProverChoice::Dev)
        .verify(&proved.receipt.bytes, image.image_id())
        .map_err(|e| anyhow!("the receipt made here does not verify: {e}"))?;
    println!("image id:    {}", image.image_id());
    println!("user cycles: {}", proved.user_cycles);
    println!("segments:    {}", proved.segments);
    println!("time:        {:.3} s", proved.elapsed.as_secs_f64());
    println!("receipt:     {} ({} bytes), verified", verified.kind.as_str(), proved.receipt.bytes.len());
    match journal::split(&verified.journal) {
        Some((root, output)) => {
            println!("root:        {}", hex::encode(root));
            println!("output:      {}", hex::encode(output));
        }
        None => println!("journal:     {} (shorter than a root)", hex::encode(&verified.journal)),
    }
    if let Some(out) = &args.out {
        std::fs::write(out, &proved.receipt.bytes).with_context(|| format!("writing {}", out.display()))?;
        println!("written to:  {}", out.display());
    }
    Ok(())
}
