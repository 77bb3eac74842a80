//! Builds zkcoproc apps without rzup or docker.
//!
//! An app is a directory with two crates: `controller/` (→ a WebAssembly component, built for
//! `wasm32-wasip2`) and `circuit/` (→ a RISC Zero program binary). [`build_app`] builds both and
//! writes `controller.wasm` and `circuit.bin` to the output directory; `zkcoproc build`, the
//! demo and the tests all go through it.
//!
//! Circuits are built the way `risc0-build` builds them with its own toolchain, but with the
//! pinned Rust toolchain [`TOOLCHAIN`] (which ships the tier-3 target
//! `riscv32im-risc0-zkvm-elf`): `-Zbuild-std` (enabled on stable with `RUSTC_BOOTSTRAP=1`),
//! risc0's rustflags, then the user ELF is combined with the v1compat kernel into the program
//! binary the prover loads. The image id depends on the compiler, so the toolchain is pinned,
//! not taken from whatever `rustup default` says.
//!
//! Not for proving or deploying: this crate only produces artifacts.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Rust toolchain controllers and circuits are built with (kept equal to
/// `rust-toolchain.toml`): a circuit's image id depends on it.
pub const TOOLCHAIN: &str = "1.95.0";
/// The zkVM guest target.
pub const GUEST_TARGET: &str = "riscv32im-risc0-zkvm-elf";
/// The controller target.
pub const CONTROLLER_TARGET: &str = "wasm32-wasip2";
/// Where user programs are linked; must equal `risc0_zkvm_platform::memory::TEXT_START` of the
/// pinned risc0 release (2.2.x platform for zkvm 3.0.x).
const TEXT_START: u32 = 0x0020_0800;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The app directory is not laid out as expected.
    #[error("{0}")]
    Layout(String),
    /// cargo could not be run.
    #[error("cannot run cargo: {0}")]
    Spawn(std::io::Error),
    /// cargo failed; its diagnostics were printed to stderr.
    #[error("building {what} failed (cargo exited with {status}); see the compiler output above")]
    Cargo {
        /// "controller" or "circuit"
        what: &'static str,
        /// cargo's exit status
        status: std::process::ExitStatus,
    },
    /// cargo succeeded but produced no artifact of the expected kind.
    #[error("building {0} produced no artifact")]
    NoArtifact(&'static str),
    /// The built ELF is not a loadable RISC Zero program.
    #[error("circuit ELF does not load as a RISC Zero program: {0}")]
    BadElf(String),
    /// File I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// the file
        path: PathBuf,
        /// the error
        source: std::io::Error,
    },
}

/// What [`build_app`] wrote.
#[derive(Clone, Debug)]
pub struct Built {
    /// the output directory
    pub out_dir: PathBuf,
    /// `out_dir/controller.wasm`
    pub controller: PathBuf,
    /// `out_dir/circuit.bin`
    pub circuit: PathBuf,
    /// the circuit's image id (hex)
    pub image_id: String,
}

/// Build settings.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Output directory; default `APP_DIR/target/zkcoproc`.
    pub out_dir: Option<PathBuf>,
    /// cargo target directory for the app's crates; default `$CARGO_TARGET_DIR/zkcoproc-apps`
    /// when that is set (so app builds share the host build's cache), else `APP_DIR/target`.
    pub target_dir: Option<PathBuf>,
}

/// Builds `APP_DIR/controller` and `APP_DIR/circuit` and writes `controller.wasm` and
/// `circuit.bin` to the output directory.
pub fn build_app(app_dir: &Path, options: &Options) -> Result<Built, BuildError> {
    let app_dir = &std::fs::canonicalize(app_dir)
        .map_err(|e| BuildError::Layout(format!("app directory {}: {e}", app_dir.display())))?;
    let controller_dir = app_dir.join("controller");
    let circuit_dir = app_dir.join("circuit");
    for (dir, what) in [(&controller_dir, "controller"), (&circuit_dir, "circuit")] {
        if !dir.join("Cargo.toml").is_file() {
            return Err(BuildError::Layout(format!(
                "{} has no {what} crate: expected {}",
                app_dir.display(),
                dir.join("Cargo.toml").display()
            )));
        }
    }
    let target_dir =
        options.target_dir.clone().unwrap_or_else(|| match std::env::var_os("CARGO_TARGET_DIR") {
            Some(t) => PathBuf::from(t).join("zkcoproc-apps"),
            None => app_dir.join("target"),
        });
    let out_dir = options.out_dir.clone().unwrap_or_else(|| app_dir.join("target").join("zkcoproc"));
    std::fs::create_dir_all(&out_dir).map_err(|source| BuildError::Io { path: out_dir.clone(), source })?;

    let wasm = build_controller(&controller_dir, &target_dir)?;
    let binary = build_circuit(&circuit_dir, &target_dir)?;
    let image_id = hex_image_id(&binary)?;

    let controller = out_dir.join("controller.wasm");
    let circuit = out_dir.join("circuit.bin");
    std::fs::copy(&wasm, &controller)
        .map_err(|source| BuildError::Io { path: controller.clone(), source })?;
    std::fs::write(&circuit, &binary).map_err(|source| BuildError::Io { path: circuit.clone(), source })?;
    Ok(Built { out_dir, controller, circuit, image_id })
}

/// Builds a controller crate for `wasm32-wasip2` (release) and returns the component's path.
pub fn build_controller(crate_dir: &Path, target_dir: &Path) -> Result<PathBuf, BuildError> {
    let mut cmd = cargo(crate_dir, target_dir, CONTROLLER_TARGET);
    cmd.env("CARGO_ENCODED_RUSTFLAGS", remap_flags(&path_packages(crate_dir)?, target_dir)?.join("\x1f"));
    let artifacts = run(&mut cmd, "controller")?;
    artifacts
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "wasm"))
        .ok_or(BuildError::NoArtifact("controller"))
}

/// Builds a circuit crate for the zkVM (release) and returns the program binary (user ELF +
/// v1compat kernel).
pub fn build_circuit(crate_dir: &Path, target_dir: &Path) -> Result<Vec<u8>, BuildError> {
    // Cargo hashes the absolute path of every path package outside the app's workspace (the SDK
    // crates) into its `-C metadata`, hence into symbol names and LLVM's code layout: the image
    // id would depend on where the checkout is. So the build runs through a symlink at a fixed
    // path (one build at a time, under a lock), as risc0's docker build uses a fixed `/src`.
    let stage = Stage::enter(crate_dir)?;
    let crate_dir = stage.crate_dir.as_path();
    let mut cmd = cargo(crate_dir, target_dir, GUEST_TARGET);
    let mut rustflags: Vec<String> = [
        "-C",
        "passes=lower-atomic",
        "-C",
        &format!("link-arg=-Ttext={TEXT_START:#010x}"),
        "-C",
        "link-arg=--fatal-warnings",
        "-C",
        "panic=abort",
        "--cfg",
        "getrandom_backend=\"custom\"",
    ]
    .map(str::to_owned)
    .to_vec();
    rustflags.extend(remap_flags(&stage.packages, target_dir)?);
    let rustflags = rustflags.join("\x1f");
    cmd.args([
        "-Zbuild-std=alloc,core,proc_macro,panic_abort,std",
        "-Zbuild-std-features=compiler-builtins-mem",
    ])
    .env("RUSTC_BOOTSTRAP", "1")
    .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
    .env("CFLAGS_riscv32im_risc0_zkvm_elf", "-march=rv32im -nostdlib")
    .env("RISC0_FEATURE_bigint2", "");
    let artifacts = run(&mut cmd, "circuit")?;
    let elf_path =
        artifacts.into_iter().find(|p| p.extension().is_none()).ok_or(BuildError::NoArtifact("circuit"))?;
    let elf = std::fs::read(&elf_path).map_err(|source| BuildError::Io { path: elf_path, source })?;
    let binary = risc0_binfmt::ProgramBinary::new(&elf, risc0_zkos_v1compat::V1COMPAT_ELF).encode();
    hex_image_id(&binary)?;
    Ok(binary)
}

/// Where circuits are built from: a symlink to the common ancestor of the circuit crate and
/// every path package it uses. Fixed, so that the same sources give the same image id whatever
/// their location and on every machine; private to the user building (see [`private_dir`]).
const STAGE_DIR: &str = "/tmp/zkcoproc-build";

/// Creates `dir` with mode 0700, or makes sure the one there is a real directory (no symlink)
/// owned by this user, and closes it to everyone else. Another user who made it first could
/// otherwise swap the staged sources under a build: the build refuses instead.
fn private_dir(dir: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Io { path, source }
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(BuildError::Io { path: dir.to_path_buf(), source: e }),
    }
    let me = std::fs::metadata("/proc/self").map_err(io(Path::new("/proc/self")))?.uid();
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    if !meta.file_type().is_dir() || meta.uid() != me {
        return Err(BuildError::Layout(format!(
            "{} is not a directory of yours (uid {me}): it is {} owned by uid {}. Another user may have \
             made it to tamper with circuit builds; remove it and build again",
            dir.display(),
            if meta.file_type().is_symlink() {
                "a symlink"
            } else if meta.is_dir() {
                "a directory"
            } else {
                "a file"
            },
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

/// A circuit build running through the [`STAGE_DIR`] symlink; holds the machine-wide lock.
struct Stage {
    /// the circuit crate, through the link
    crate_dir: PathBuf,
    /// its path packages (name, directory through the link), for the remap flags
    packages: Vec<(String, PathBuf)>,
    _lock: std::fs::File,
}

impl Stage {
    fn enter(crate_dir: &Path) -> Result<Self, BuildError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BuildError::Io { path, source }
        };
        let crate_dir = std::fs::canonicalize(crate_dir).map_err(io(crate_dir))?;
        let mut packages = path_packages(&crate_dir)?;
        let mut root = crate_dir.clone();
        for (_, dir) in &mut packages {
            *dir = std::fs::canonicalize(&*dir).map_err(io(dir))?;
            while !dir.starts_with(&root) {
                if !root.pop() {
                    break;
                }
            }
        }
        let stage = Path::new(STAGE_DIR);
        private_dir(stage)?;
        let lock_path = stage.join("lock");
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let link = stage.join("src");
        match std::fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BuildError::Io { path: link, source: e }),
        }
        std::os::unix::fs::symlink(&root, &link).map_err(io(&link))?;
        // Everything below `root` is seen through the link, as cargo will see it.
        let staged = |dir: &Path| link.join(dir.strip_prefix(&root).unwrap_or(Path::new("")));
        let packages = packages.into_iter().map(|(name, dir)| (name, staged(&dir))).collect();
        Ok(Stage { crate_dir: staged(&crate_dir), packages, _lock: lock })
    }
}

/// The path packages a crate depends on (and itself): name and directory.
fn path_packages(crate_dir: &Path) -> Result<Vec<(String, PathBuf)>, BuildError> {
    let mut metadata = Command::new("cargo");
    metadata
        .env("RUSTUP_TOOLCHAIN", TOOLCHAIN)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"));
    if crate_dir.join("Cargo.lock").is_file() {
        metadata.arg("--locked");
    }
    let metadata: serde_json::Value = serde_json::from_str(&tool_output(&mut metadata)?)
        .map_err(|e| BuildError::Layout(format!("cargo metadata printed no JSON: {e}")))?;
    let mut dirs = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        // Path packages have no source; registry packages live under CARGO_HOME.
        if !package["source"].is_null() {
            continue;
        }
        let (Some(name), Some(manifest)) = (package["name"].as_str(), package["manifest_path"].as_str())
        else {
            continue;
        };
        if let Some(dir) = Path::new(manifest).parent() {
            dirs.push((name.to_owned(), dir.to_path_buf()));
        }
    }
    Ok(dirs)
}

/// `--remap-path-prefix` flags that make a build independent of where things sit on disk.
///
/// Panic locations embed source paths in the binary, so without these the image id of a circuit
/// (and the bytes of a controller) would depend on the checkout path, `CARGO_HOME` and the rustup
/// home. Every path package (the app's crates and the SDK crates they use) maps to
/// `/src/<name>`, the registry to `/cargo`, the toolchain's rust-src to `/rust` and the target
/// directory to `/target`.
fn remap_flags(packages: &[(String, PathBuf)], target_dir: &Path) -> Result<Vec<String>, BuildError> {
    let mut remaps: Vec<(PathBuf, String)> = Vec::new();
    let sysroot =
        tool_output(Command::new("rustc").env("RUSTUP_TOOLCHAIN", TOOLCHAIN).args(["--print", "sysroot"]))?;
    remaps.push((PathBuf::from(sysroot.trim()).join("lib/rustlib/src/rust"), "/rust".into()));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = cargo_home {
        remaps.push((home, "/cargo".into()));
    }
    remaps.push((target_dir.to_path_buf(), "/target".into()));
    for (name, dir) in packages {
        remaps.push((dir.clone(), format!("/src/{name}")));
    }
    Ok(remaps
        .into_iter()
        .flat_map(|(from, to)| ["--remap-path-prefix".to_owned(), format!("{}={to}", from.display())])
        .collect())
}

/// Runs a tool in the sanitized environment and returns its stdout.
fn tool_output(cmd: &mut Command) -> Result<String, BuildError> {
    for (key, _) in std::env::vars_os() {
        if let Some(key) = key.to_str().filter(|k| k.starts_with("CARGO") && *k != "CARGO_HOME") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.stderr(Stdio::inherit()).output().map_err(BuildError::Spawn)?;
    if !out.status.success() {
        return Err(BuildError::Layout(format!("{cmd:?} failed with {}", out.status)));
    }
    String::from_utf8(out.stdout).map_err(|e| BuildError::Layout(format!("{cmd:?} printed non-UTF-8: {e}")))
}

fn hex_image_id(binary: &[u8]) -> Result<String, BuildError> {
    let digest = risc0_binfmt::compute_image_id(binary).map_err(|e| BuildError::BadElf(format!("{e:#}")))?;
    Ok(digest.as_bytes().iter().map(|b| format!("{b:02x}")).collect())
}

/// A `cargo build --release` for `target`, in an environment cleaned of the calling cargo's
/// settings (as risc0-build does) and pinned to [`TOOLCHAIN`].
fn cargo(crate_dir: &Path, target_dir: &Path, target: &str) -> Command {
    let mut cmd = Command::new("cargo");
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if (key.starts_with("CARGO") && key != "CARGO_HOME")
            || matches!(
                key,
                "RUSTFLAGS" | "RUSTC" | "RUSTDOC" | "RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER" | "DOCS_RS"
            )
        {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUSTUP_TOOLCHAIN", TOOLCHAIN)
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(crate_dir)
        .args(["build", "--release", "--target", target])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--message-format=json-render-diagnostics");
    // A committed Cargo.lock is part of what fixes the image id: never let cargo move it.
    if crate_dir.join("Cargo.lock").is_file() {
        cmd.arg("--locked");
    }
    cmd
}

/// Runs cargo, passing its diagnostics through to stderr, and returns the files of the
/// artifacts of the crate being built.
fn run(cmd: &mut Command, what: &'static str) -> Result<Vec<PathBuf>, BuildError> {
    tracing::info!(?cmd, "building {what}");
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().map_err(BuildError::Spawn)?;
    let mut files = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                eprintln!("{line}");
                continue;
            };
            if msg["reason"] != "compiler-artifact" {
                continue;
            }
            let kinds = msg["target"]["kind"].as_array().cloned().unwrap_or_default();
            if !kinds.iter().any(|k| k == "cdylib" || k == "bin") {
                continue;
            }
            let names = msg["filenames"].as_array().cloned().unwrap_or_default();
            files.extend(names.iter().filter_map(|f| f.as_str()).map(PathBuf::from));
            if let Some(exe) = msg["executable"].as_str() {
                files.push(PathBuf::from(exe));
            }
        }
    }
    let status = child.wait().map_err(BuildError::Spawn)?;
    if !status.success() {
        return Err(BuildError::Cargo { what, status });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_crates_are_a_layout_error() {
        let dir = std::env::temp_dir().join(format!("zkcoproc-build-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let err = build_app(&dir, &Options::default()).expect_err("empty dir built");
        assert!(matches!(err, BuildError::Layout(_)), "{err}");
        assert!(err.to_string().contains("controller"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_stage_directory_is_private_and_a_planted_one_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        let fresh = tmp.path().join("fresh");
        private_dir(&fresh).expect("created");
        let mode = std::fs::metadata(&fresh).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Ours but left open: closed again.
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        private_dir(&fresh).expect("ours");
        assert_eq!(std::fs::metadata(&fresh).expect("meta").permissions().mode() & 0o777, 0o700);
        // A symlink planted where the directory goes (to a directory the planter controls).
        let planted = tmp.path().join("planted");
        std::os::unix::fs::symlink(&fresh, &planted).expect("symlink");
        let err = private_dir(&planted).expect_err("a symlink was used");
        assert!(err.to_string().contains("symlink"), "{err}");
        // Another user's directory (root's /, when not running as root).
        if std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).ok() != Some(0) {
            assert!(private_dir(Path::new("/")).is_err());
        }
    }
}
