//! The `zkcoproc` command line: `serve` runs the service; `build`, `deploy`, `prove`, `task`,
//! `proof` and `verify` are what app developers and scripts use.
//!
//! Output contract for scripts: `build` prints the output directory, `deploy` the program id and
//! `prove` the task id as the last line of stdout; `prove --wait` and `task` print task JSON.
//! Progress and explanations go to stderr.

mod client;
mod local;
mod scaffold;
mod serve;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Default address of the service.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:37281";
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:37281";

#[derive(Parser, Debug)]
#[command(name = "zkcoproc", version, about = "zkcoproc: a ZK coprocessor service and its client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which prover the service runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProverChoice {
    /// Real RISC Zero CPU proving (composite receipts).
    Cpu,
    /// Execute only; receipts are marked fake and only a dev service accepts them.
    Dev,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service.
    Serve(Box<serve::ServeArgs>),
    /// Run a prover worker that leases proving tasks from a service.
    Worker(worker::WorkerArgs),
    /// Internal: prove one request read from stdin (the child process of a CPU prover, killed
    /// when its task is cancelled).
    #[command(hide = true)]
    ProveChild,
    /// Write a new app (controller and circuit crates, `.gitignore`, a README) from a template,
    /// ready for `zkcoproc build NAME`.
    New {
        /// The app's directory; its last component names the crates (NAME-controller,
        /// NAME-circuit).
        name: PathBuf,
        /// The example the app starts from.
        #[arg(long, value_enum, default_value = "hello")]
        template: scaffold::Template,
        /// Take the SDK crates from this zkcoproc checkout (default: the checkout this binary was
        /// built from).
        #[arg(long, value_name = "DIR", conflicts_with = "sdk_git")]
        sdk_path: Option<PathBuf>,
        /// Take the SDK crates from this git repository of zkcoproc instead.
        #[arg(long, value_name = "URL")]
        sdk_git: Option<String>,
        /// With --sdk-git: the revision (commit or tag) to pin.
        #[arg(long, value_name = "REV", requires = "sdk_git")]
        sdk_rev: Option<String>,
    },
    /// Build an app (APP_DIR/controller and APP_DIR/circuit) into controller.wasm and circuit.bin.
    Build {
        /// The app directory.
        app_dir: PathBuf,
        /// Output directory (default APP_DIR/target/zkcoproc).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Deploy a built app; prints the program id as the last line.
    Deploy {
        /// A directory holding controller.wasm and circuit.bin (what `build` writes).
        app_out_dir: Option<PathBuf>,
        /// The controller component (instead of APP_OUT_DIR).
        #[arg(long, requires = "circuit", conflicts_with = "app_out_dir")]
        controller: Option<PathBuf>,
        /// The circuit program binary or guest ELF (instead of APP_OUT_DIR).
        #[arg(long, requires = "controller", conflicts_with = "app_out_dir")]
        circuit: Option<PathBuf>,
        /// Size of the program's FAT-16 volume in MiB (default: the service's; only the first
        /// deploy of a program sets it).
        #[arg(long)]
        volume_size_mb: Option<u64>,
        /// Where the program's finished tasks are POSTed when their request names no URL (only
        /// the first deploy of a program sets it). The deploy that creates the program prints
        /// the webhook secret that signs them, once.
        #[arg(long)]
        callback_url: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Request a proof; prints the task id (with --wait, follows it and prints the task JSON).
    Prove {
        /// The program id.
        program_id: String,
        /// The controller's arguments (JSON).
        #[arg(long, default_value = "{}")]
        args: String,
        /// Follow the task to its end, showing each stage, and print the final task JSON.
        #[arg(long)]
        wait: bool,
        /// Receipt kind to ask for (default: what the service's prover makes).
        #[arg(long)]
        receipt_kind: Option<String>,
        /// Idempotency-Key: retrying with the same key and arguments returns the same task.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Where to POST the task JSON when the task finishes (default: the program's URL).
        #[arg(long)]
        callback_url: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Cancel a task: a queued task never runs, a running one stops at its next step.
    Cancel {
        /// The task id.
        task_id: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Print a task's JSON (`task TASK_ID`), or dump what proving it needs (`task dump`).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Task {
        #[command(subcommand)]
        command: Option<TaskCommand>,
        /// The task id.
        #[arg(required = true)]
        task_id: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Prove (or, with `--prover dev`, execute) a circuit on an input on this machine, as
    /// `task dump` writes them; prints user cycles, segments and time, and verifies the receipt.
    #[command(name = "prove-local")]
    ProveLocal {
        /// The circuit binary or guest ELF (a dump's `circuit.bin`).
        #[arg(long)]
        circuit: PathBuf,
        /// The circuit input (a dump's `input.bin`).
        #[arg(long)]
        input: PathBuf,
        /// `cpu`: a real proof (composite receipt); `dev`: execute only, a fake receipt.
        #[arg(long, value_enum, default_value = "cpu")]
        prover: ProverChoice,
        /// Write the receipt here (for `zkcoproc verify --receipt`).
        #[arg(long, value_name = "RECEIPT")]
        out: Option<PathBuf>,
        /// Cap on the guest's user cycles.
        #[arg(long, default_value_t = zkcoproc_zkvm::DEFAULT_MAX_CYCLES)]
        max_cycles: u64,
    },
    /// Fetch a task's proof; with --out, write the raw receipt to a file (for `verify --receipt`).
    Proof {
        /// The task id.
        task_id: String,
        /// Write the receipt bytes here instead of printing the proof JSON.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Read a program's FAT-16 volume.
    Fs {
        #[command(subcommand)]
        command: FsCommand,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Verify a proof locally and check that its root is trusted; exit 0 only if both hold.
    ///
    /// The receipt is verified here, never on the service's word. Its root (the journal's first
    /// 32 bytes) must be listed in --trusted-roots FILE or be known to the service
    /// (`GET /v1/roots/{root}`).
    Verify {
        /// Verify this task's receipt. The image id is not taken on the service's word: the
        /// program's controller is fetched and the program id recomputed from it and the image id.
        #[arg(long, conflicts_with_all = ["receipt", "image_id"])]
        task: Option<String>,
        /// With --task: the program the task must belong to (its id is recomputed, see --task).
        #[arg(long, requires = "task")]
        program: Option<String>,
        /// A receipt file (what `proof --out` writes).
        #[arg(long, requires = "image_id")]
        receipt: Option<PathBuf>,
        /// The image id to verify the receipt file against (hex).
        #[arg(long, requires = "receipt")]
        image_id: Option<String>,
        /// Accept fake (dev-mode) receipts. They prove nothing; use for development only.
        #[arg(long)]
        allow_fake: bool,
        /// Roots this verifier trusts: one hex root per line (`#` comments and blank lines are
        /// ignored). A root listed here is trusted without asking the service.
        #[arg(long, value_name = "FILE")]
        trusted_roots: Option<PathBuf>,
        /// Exit 0 for a valid receipt whatever its root (the root is still reported). The
        /// statement is then proven only under a root nobody vouched for.
        #[arg(long)]
        allow_unknown_root: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// The Ethereum consensus light client.
    #[command(name = "light-client")]
    LightClient {
        #[command(subcommand)]
        command: LightClientCommand,
    },
}

#[derive(Subcommand, Debug)]
enum TaskCommand {
    /// Write a task's circuit input, circuit binary, image id and arguments to a directory
    /// (`input.bin`, `circuit.bin`, `image_id`, `args.json`) without proving, for
    /// `zkcoproc prove-local` on any machine.
    Dump {
        /// The task id.
        task_id: String,
        /// The directory to write (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum LightClientCommand {
    /// Run one consensus-spec-tests `light_client/sync` case directory (`config.yaml`,
    /// `meta.yaml`, `bootstrap.ssz_snappy`, `steps.yaml`, `update_*.ssz_snappy`): every step is
    /// executed and its checks compared; one line per step, then a summary. Exit 0 only if all
    /// pass. Any fork the light client knows, by the config's fork epochs.
    Replay {
        /// The case directory.
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum FsCommand {
    /// List a directory (default `/`).
    Ls {
        /// The program id.
        program_id: String,
        /// Absolute path of a directory.
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print a file's bytes to stdout.
    Cat {
        /// The program id.
        program_id: String,
        /// Absolute path of a file (8.3 names, case-insensitive).
        path: String,
    },
    /// Write the whole FAT-16 image to a file (mount it, or check it with fsck.fat).
    Export {
        /// The program id.
        program_id: String,
        /// Where to write the image.
        out: PathBuf,
    },
}

#[derive(clap::Args, Debug, Clone)]
struct ServerArg {
    /// The service's URL.
    #[arg(long = "server", env = "ZKCOPROC_SERVER", default_value = DEFAULT_SERVER, global = true)]
    url: String,
    /// API key (a token of the service's --api-keys-file), sent as `Authorization: Bearer`.
    #[arg(long = "api-key", env = "ZKCOPROC_API_KEY", global = true, hide_env_values = true)]
    api_key: Option<String>,
}

impl ServerArg {
    fn client(&self) -> anyhow::Result<client::Client> {
        client::Client::new(&self.url, self.api_key.as_deref())
    }
}

/// Runs the command line; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(matches!(cli.command, Command::Serve(_) | Command::Worker(_)));
    if let Command::ProveChild = cli.command {
        return match zkcoproc_zkvm::serve_child(std::io::stdin(), std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: prove-child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZKCOPROC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::serve(*args).await.map(|()| ExitCode::SUCCESS),
        Command::Worker(args) => worker::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::ProveChild => Ok(ExitCode::FAILURE), // handled in `main`, without a runtime
        Command::New { name, template, sdk_path, sdk_git, sdk_rev } => {
            let sdk = match (sdk_path, sdk_git) {
                (_, Some(url)) => scaffold::Sdk::Git { url, rev: sdk_rev },
                (Some(dir), None) => scaffold::Sdk::Path(
                    std::fs::canonicalize(&dir)
                        .map_err(|e| anyhow::anyhow!("--sdk-path {}: {e}", dir.display()))?,
                ),
                (None, None) => scaffold::Sdk::Path(scaffold::Sdk::this_checkout()?),
            };
            for file in scaffold::new_app(&name, template, &sdk)? {
                eprintln!("  {}", name.join(file).display());
            }
            eprintln!("next: zkcoproc build {0} && zkcoproc deploy {0}/target/zkcoproc", name.display());
            println!("{}", name.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Build { app_dir, out } => {
            let built = tokio::task::spawn_blocking(move || {
                zkcoproc_build::build_app(
                    &app_dir,
                    &zkcoproc_build::Options { out_dir: out, target_dir: None },
                )
            })
            .await??;
            eprintln!("controller: {}", built.controller.display());
            eprintln!("circuit:    {} (image id {})", built.circuit.display(), built.image_id);
            println!("{}", built.out_dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Deploy { app_out_dir, controller, circuit, volume_size_mb, callback_url, server } => {
            let (controller, circuit) = match (app_out_dir, controller, circuit) {
                (Some(dir), None, None) => (dir.join("controller.wasm"), dir.join("circuit.bin")),
                (None, Some(c), Some(k)) => (c, k),
                _ => anyhow::bail!("give APP_OUT_DIR, or both --controller and --circuit"),
            };
            server.client()?.deploy(&controller, &circuit, volume_size_mb, callback_url.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Prove { program_id, args, wait, receipt_kind, idempotency_key, callback_url, server } => {
            let c = server.client()?;
            let options = client::ProveOptions {
                kind: receipt_kind.as_deref(),
                idempotency_key: idempotency_key.as_deref(),
                callback_url: callback_url.as_deref(),
            };
            let task_id = c.prove(&program_id, &args, &options).await?;
            if !wait {
                println!("{task_id}");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("task {task_id}");
            let task = c.follow(&task_id).await?;
            println!("{}", serde_json::to_string_pretty(&task)?);
            Ok(if task["status"] == "done" { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Cancel { task_id, server } => {
            let task = server.client()?.cancel(&task_id).await?;
            println!("{}", serde_json::to_string_pretty(&task)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Task { command: Some(TaskCommand::Dump { task_id, out }), server, .. } => {
            local::dump(&server.client()?, &task_id, &out).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Task { command: None, task_id, server } => {
            let task_id = task_id.ok_or_else(|| anyhow::anyhow!("give a task id"))?;
            let task = server.client()?.task(&task_id).await?;
            println!("{}", serde_json::to_string_pretty(&task)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::ProveLocal { circuit, input, prover, out, max_cycles } => {
            let args = local::ProveLocal { circuit, input, prover, out, max_cycles };
            tokio::task::spawn_blocking(move || local::prove_local(&args)).await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Proof { task_id, out, server } => {
            server.client()?.proof(&task_id, out.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Fs { command, server } => {
            let c = server.client()?;
            match command {
                FsCommand::Ls { program_id, path } => c.fs_ls(&program_id, &path).await?,
                FsCommand::Cat { program_id, path } => c.fs_cat(&program_id, &path).await?,
                FsCommand::Export { program_id, out } => c.fs_export(&program_id, &out).await?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            task,
            program,
            receipt,
            image_id,
            allow_fake,
            trusted_roots,
            allow_unknown_root,
            server,
        } => {
            let source = match (task, receipt, image_id) {
                (Some(task), None, None) => client::ReceiptSource::Task { task, program },
                (None, Some(file), Some(image_id)) => client::ReceiptSource::File { file, image_id },
                _ => anyhow::bail!("give --task TASK_ID, or --receipt FILE with --image-id HEX"),
            };
            let trusted = match trusted_roots {
                Some(path) => Some((client::read_trusted_roots(&path)?, path)),
                None => None,
            };
            let policy = client::VerifyPolicy { allow_fake, trusted, allow_unknown_root };
            let ok = server.client()?.verify(source, &policy).await?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::LightClient { command: LightClientCommand::Replay { dir } } => {
            let (mut passed, mut failed) = (0usize, 0usize);
            let all_ok = zkcoproc_lightclient::replay::replay(&dir, |step| {
                if step.outcome.is_ok() {
                    passed += 1;
                } else {
                    failed += 1;
                }
                println!("{step}");
            })
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            println!(
                "{}: {passed} step(s) passed, {failed} failed: {}",
                dir.display(),
                if all_ok { "PASS" } else { "FAIL" }
            );
            Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
