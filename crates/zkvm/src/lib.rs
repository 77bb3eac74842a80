//! zkVM backends for zkcoproc: a [`Prover`] turns a circuit and its input into a receipt, the
//! [`Verifier`] checks a receipt against a circuit's image id.
//!
//! Two backends, both RISC Zero 3.0 (see the pins in the workspace manifest):
//! - [`CpuProver`]: the real local CPU prover; composite receipts.
//! - [`DevProver`]: executes the guest and returns a receipt marked fake. A [`Verifier`] accepts
//!   fake receipts only when built with `dev_mode = true`; this switch is explicit and never read
//!   from `RISC0_DEV_MODE`, so a dev receipt can't pass a production service by accident.
//!
//! Receipts cross processes as bincode-encoded `risc0_zkvm::Receipt` bytes ([`Receipt::bytes`]),
//! the encoding RISC Zero's own tooling uses; decoding is size-bounded and strict.
//!
//! Start from [`CircuitImage::load`], [`Prover::prove`] and [`Verifier::verify`].

mod child;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bincode::Options;
use risc0_binfmt::ProgramBinary;
use risc0_zkvm::{
    get_prover_server, ExecutorEnv, ExecutorImpl, ExitCode, FakeReceipt, InnerReceipt, NullSegmentRef,
    ProverOpts, VerifierContext,
};
use serde::{Deserialize, Serialize};

pub use child::{serve_child, Cancel, ChildProver, ProgressSink};

/// The risc0-zkvm version this build proves and verifies with; prover and verifier must agree.
pub const RISC0_VERSION: &str = risc0_zkvm::VERSION;

/// Largest receipt [`Verifier::verify`] decodes.
pub const MAX_RECEIPT_BYTES: u64 = 128 << 20;

/// Default cap on a guest's user cycles (both backends): a runaway circuit stops here.
pub const DEFAULT_MAX_CYCLES: u64 = 1 << 26;

/// Why proving or verifying failed.
#[derive(Debug, thiserror::Error)]
pub enum ZkvmError {
    /// The circuit artifact is not a RISC Zero program.
    #[error("circuit is not a RISC Zero program: {0}")]
    InvalidCircuit(String),
    /// The guest panicked, exited with an error, or hit the cycle limit.
    #[error("circuit execution failed: {0}")]
    GuestFailed(String),
    /// The prover failed for a reason other than the guest.
    #[error("prover failed: {0}")]
    ProverFailed(String),
    /// The requested receipt kind cannot be produced by this build.
    #[error("{0}")]
    UnsupportedReceiptKind(String),
    /// The proof was stopped (its task was cancelled or its lease lost).
    #[error("proving stopped: the task was cancelled or its lease lost")]
    Cancelled,
}

impl ZkvmError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ZkvmError::InvalidCircuit(_) => "invalid_circuit",
            ZkvmError::GuestFailed(_) => "circuit_failed",
            ZkvmError::ProverFailed(_) => "prover_failed",
            ZkvmError::UnsupportedReceiptKind(_) => "unsupported_receipt_kind",
            ZkvmError::Cancelled => "cancelled",
        }
    }

    /// The explanation without the variant's prefix (what the variant is built from again).
    pub(crate) fn detail(&self) -> String {
        match self {
            ZkvmError::InvalidCircuit(m)
            | ZkvmError::GuestFailed(m)
            | ZkvmError::ProverFailed(m)
            | ZkvmError::UnsupportedReceiptKind(m) => m.clone(),
            ZkvmError::Cancelled => String::new(),
        }
    }
}

/// Why a receipt does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The bytes are not a receipt.
    #[error("receipt cannot be decoded: {0}")]
    Malformed(String),
    /// A fake (dev-mode) receipt given to a verifier that is not in dev mode.
    #[error("receipt is fake (dev mode) and this verifier does not accept fake receipts")]
    FakeRejected,
    /// The receipt does not prove the claimed image id and journal.
    #[error("receipt does not verify against image id {image_id}: {reason}")]
    Invalid {
        /// the image id checked against
        image_id: String,
        /// what the verifier said
        reason: String,
    },
}

/// A RISC Zero image id: the digest of the circuit's initial memory image.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageId(pub [u8; 32]);

impl ImageId {
    /// Parses 64 hex digits (an optional `0x` prefix is accepted).
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(ImageId(out))
    }

    fn digest(&self) -> risc0_zkvm::Digest {
        risc0_zkvm::Digest::from_bytes(self.0)
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageId({self})")
    }
}

/// What kind of receipt a prover made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptKind {
    /// Dev mode: no proof at all, only the claim.
    Fake,
    /// One STARK per segment (what the CPU prover makes here).
    Composite,
    /// One recursion STARK (needs the recursion programs).
    Succinct,
    /// A Groth16 SNARK (needs the recursion programs and the Groth16 prover).
    Groth16,
}

impl ReceiptKind {
    /// Lower-case name, as in the task JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReceiptKind::Fake => "fake",
            ReceiptKind::Composite => "composite",
            ReceiptKind::Succinct => "succinct",
            ReceiptKind::Groth16 => "groth16",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "fake" => ReceiptKind::Fake,
            "composite" => ReceiptKind::Composite,
            "succinct" => ReceiptKind::Succinct,
            "groth16" => ReceiptKind::Groth16,
            _ => return None,
        })
    }

    fn of(inner: &InnerReceipt) -> Option<Self> {
        Some(match inner {
            InnerReceipt::Fake(_) => ReceiptKind::Fake,
            InnerReceipt::Composite(_) => ReceiptKind::Composite,
            InnerReceipt::Succinct(_) => ReceiptKind::Succinct,
            InnerReceipt::Groth16(_) => ReceiptKind::Groth16,
            _ => return None,
        })
    }
}

/// A loaded circuit: the RISC Zero program binary (user ELF + v1compat kernel) and its image id.
#[derive(Clone)]
pub struct CircuitImage {
    image_id: ImageId,
    binary: Arc<Vec<u8>>,
    /// the guest's initial memory with its page digests, built once at load: every execution
    /// starts from a copy instead of decoding the ELFs and hashing the pages again
    memory: Arc<risc0_binfmt::MemoryImage>,
}

impl fmt::Debug for CircuitImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitImage")
            .field("image_id", &self.image_id)
            .field("len", &self.binary.len())
            .finish()
    }
}

impl CircuitImage {
    /// Loads a circuit artifact: a RISC Zero program binary (what `zkcoproc build` writes), or a
    /// bare guest ELF, which is combined with the v1compat kernel here. Rejects anything that
    /// does not load as a RISC Zero program.
    pub fn load(bytes: &[u8]) -> Result<Self, ZkvmError> {
        let binary = if bytes.starts_with(b"\x7fELF") {
            ProgramBinary::new(bytes, risc0_zkos_v1compat::V1COMPAT_ELF).encode()
        } else {
            bytes.to_vec()
        };
        // The ELF parser sees untrusted bytes: a panic in it must reject the artifact, not take
        // down the caller.
        let computed = std::panic::catch_unwind(|| {
            let program = ProgramBinary::decode(&binary)?;
            // What the executor checks before it runs a program binary.
            anyhow::ensure!(
                program.header.abi_kind == risc0_binfmt::AbiKind::V1Compat
                    && program.header.abi_version.major == 1,
                "program binary ABI {:?} {} is not V1Compat 1.x",
                program.header.abi_kind,
                program.header.abi_version
            );
            let mut memory = program.to_image()?;
            // The image id is the digest of the initial system state (as `compute_image_id`).
            let state = risc0_binfmt::SystemState { pc: 0, merkle_root: memory.image_id() };
            Ok((risc0_zkvm::sha::Digestible::digest(&state), memory))
        })
        .map_err(|_| ZkvmError::InvalidCircuit("the program loader panicked".into()))?;
        let (digest, memory) =
            computed.map_err(|e: anyhow::Error| ZkvmError::InvalidCircuit(format!("{e:#}")))?;
        let mut id = [0u8; 32];
        id.copy_from_slice(digest.as_bytes());
        Ok(CircuitImage { image_id: ImageId(id), binary: Arc::new(binary), memory: Arc::new(memory) })
    }

    /// The circuit's image id.
    pub fn image_id(&self) -> ImageId {
        self.image_id
    }

    /// The program binary the prover loads.
    pub fn binary(&self) -> &[u8] {
        &self.binary
    }
}

/// A bincode-encoded `risc0_zkvm::Receipt` and its kind.
#[derive(Clone, Debug)]
pub struct Receipt {
    /// fake, composite, ...
    pub kind: ReceiptKind,
    /// bincode of `risc0_zkvm::Receipt`
    pub bytes: Vec<u8>,
    /// the journal the receipt commits to
    pub journal: Vec<u8>,
}

/// What proving produced, with figures.
#[derive(Clone, Debug)]
pub struct Proved {
    /// the receipt
    pub receipt: Receipt,
    /// user cycles the guest ran
    pub user_cycles: u64,
    /// number of segments
    pub segments: usize,
    /// wall-clock time spent
    pub elapsed: Duration,
}

/// Turns a circuit and its input into a receipt. Calls block for as long as proving takes; run
/// them on a blocking thread.
pub trait Prover: Send + Sync + fmt::Debug {
    /// `cpu` or `dev`.
    fn name(&self) -> &'static str;
    /// The kind of receipt this prover makes.
    fn receipt_kind(&self) -> ReceiptKind;
    /// Runs the circuit on `input` (a [`zkcoproc_types::CircuitInput`] encoding) and proves it.
    fn prove(&self, image: &CircuitImage, input: &[u8]) -> Result<Proved, ZkvmError>;
    /// [`Prover::prove`], stopping early with [`ZkvmError::Cancelled`] once `cancel` is set, if
    /// this prover can stop ([`ChildProver`] can, within milliseconds; the in-process provers
    /// cannot and run to the end).
    fn prove_cancellable(
        &self,
        image: &CircuitImage,
        input: &[u8],
        cancel: &Cancel,
    ) -> Result<Proved, ZkvmError> {
        let _ = cancel;
        self.prove(image, input)
    }
    /// A receipt for a run whose journal and user cycles are already known from an execution of
    /// the same input (the service's preflight), made without executing it again. Only a prover
    /// whose receipts prove nothing (dev) can; the others give `None` and must [`Prover::prove`].
    fn prove_known(
        &self,
        image: &CircuitImage,
        journal: &[u8],
        user_cycles: u64,
    ) -> Option<Result<Proved, ZkvmError>> {
        let _ = (image, journal, user_cycles);
        None
    }
}

/// Most bytes of a guest's standard error [`execute_logged`] keeps.
pub const MAX_GUEST_LOG: usize = 16 << 10;

/// A guest's standard error, kept up to [`MAX_GUEST_LOG`] bytes (the rest is dropped).
#[derive(Clone, Debug, Default)]
struct GuestLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for GuestLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut kept) = self.0.lock() {
            let room = MAX_GUEST_LOG.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..buf.len().min(room)]);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl GuestLog {
    fn text(&self) -> String {
        self.0.lock().map(|kept| String::from_utf8_lossy(&kept).into_owned()).unwrap_or_default()
    }
}

fn executor_env(
    input: &[u8],
    max_cycles: u64,
    log: Option<GuestLog>,
) -> Result<ExecutorEnv<'static>, ZkvmError> {
    let len = u32::try_from(input.len())
        .map_err(|_| ZkvmError::GuestFailed("circuit input larger than 4 GiB".into()))?;
    let mut env = ExecutorEnv::builder();
    env.write_slice(&[len]).write_slice(input).session_limit(Some(max_cycles)).stdout(std::io::sink());
    match log {
        Some(log) => env.stderr(log),
        None => env.stderr(std::io::sink()),
    };
    env.build().map_err(|e| ZkvmError::ProverFailed(format!("{e:#}")))
}

fn guest_error(e: &anyhow::Error) -> ZkvmError {
    ZkvmError::GuestFailed(format!("{e:#}"))
}

/// The real RISC Zero CPU prover; makes composite receipts.
#[derive(Debug, Clone)]
pub struct CpuProver {
    max_cycles: u64,
}

impl CpuProver {
    /// A CPU prover making receipts of `kind`. Only composite receipts are available in this
    /// build: succinct and Groth16 need RISC Zero's recursion programs, which the build cannot
    /// download here (see `.cargo/config.toml`).
    pub fn new(kind: ReceiptKind, max_cycles: u64) -> Result<Self, ZkvmError> {
        match kind {
            ReceiptKind::Composite => Ok(CpuProver { max_cycles }),
            other => Err(ZkvmError::UnsupportedReceiptKind(format!(
                "receipt kind `{}` is not available: this build has no RISC Zero recursion \
                 programs (succinct and groth16 need them); use `composite`",
                other.as_str()
            ))),
        }
    }
}

impl Prover for CpuProver {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn receipt_kind(&self) -> ReceiptKind {
        ReceiptKind::Composite
    }

    fn prove(&self, image: &CircuitImage, input: &[u8]) -> Result<Proved, ZkvmError> {
        self.prove_cancellable(image, input, &Cancel::new())
    }

    /// Proves segment by segment, reporting each proven one to `control` (it cannot stop early:
    /// run it in a [`ChildProver`] for that).
    fn prove_cancellable(
        &self,
        image: &CircuitImage,
        input: &[u8],
        control: &Cancel,
    ) -> Result<Proved, ZkvmError> {
        let start = Instant::now();
        let env = executor_env(input, self.max_cycles, None)?;
        // Explicitly not dev mode, whatever RISC0_DEV_MODE says.
        let opts = ProverOpts::composite().with_dev_mode(false);
        let server = get_prover_server(&opts).map_err(|e| ZkvmError::ProverFailed(format!("{e:#}")))?;
        // What `server.prove` does (execute, then prove the session), in two steps so that the
        // segment count is known before proving starts and each proven segment is reported.
        let mut exec = ExecutorImpl::new(env, (*image.memory).clone())
            .map_err(|e| ZkvmError::InvalidCircuit(format!("{e:#}")))?;
        let mut session = exec.run().map_err(|e| guest_error(&e))?;
        let total = session.segments.len() as u64;
        control.report(0, total);
        if let Some(sink) = control.sink() {
            session.add_hook(SegmentsProven { sink, total, done: AtomicU64::new(0) });
        }
        let ctx = VerifierContext::default().with_dev_mode(false);
        let info = server.prove_session(&ctx, &session).map_err(|e| guest_error(&e))?;
        let bytes = encode_receipt(&info.receipt)?;
        Ok(Proved {
            receipt: Receipt {
                kind: ReceiptKind::Composite,
                bytes,
                journal: info.receipt.journal.bytes.clone(),
            },
            user_cycles: info.stats.user_cycles,
            segments: info.stats.segments,
            elapsed: start.elapsed(),
        })
    }
}

/// Reports each proven segment of a session.
struct SegmentsProven {
    sink: ProgressSink,
    total: u64,
    done: AtomicU64,
}

impl risc0_zkvm::SessionEvents for SegmentsProven {
    fn on_post_prove_segment(&self, _segment: &risc0_zkvm::Segment) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        (self.sink)(done.min(self.total), self.total);
    }
}

/// What executing a circuit (no proving) produced.
#[derive(Clone, Debug)]
pub struct Executed {
    /// the journal the guest committed
    pub journal: Vec<u8>,
    /// user cycles
    pub user_cycles: u64,
    /// segments
    pub segments: usize,
}

/// Runs the guest on `input` without proving; fails like proving would (guest panic, exit
/// code, cycle limit). Execution costs about a thousandth of proving.
fn run_session(
    image: &CircuitImage,
    input: &[u8],
    max_cycles: u64,
    log: Option<GuestLog>,
) -> Result<(risc0_zkvm::Session, usize), ZkvmError> {
    let env = executor_env(input, max_cycles, log)?;
    let mut exec = ExecutorImpl::new(env, (*image.memory).clone())
        .map_err(|e| ZkvmError::InvalidCircuit(format!("{e:#}")))?;
    let mut segments = 0usize;
    let session = exec
        .run_with_callback(|_segment| {
            segments += 1;
            Ok(Box::new(NullSegmentRef))
        })
        .map_err(|e| guest_error(&e))?;
    if session.exit_code != ExitCode::Halted(0) {
        return Err(ZkvmError::GuestFailed(format!("guest exited with {:?}", session.exit_code)));
    }
    Ok((session, segments))
}

/// Executes the circuit on `input` (no proof) and returns its journal: the service's preflight,
/// which also binds every later receipt to this exact input.
pub fn execute(image: &CircuitImage, input: &[u8], max_cycles: u64) -> Result<Executed, ZkvmError> {
    run_executed(image, input, max_cycles, None)
}

/// [`run_session`], kept as what the service needs of it.
fn run_executed(
    image: &CircuitImage,
    input: &[u8],
    max_cycles: u64,
    log: Option<GuestLog>,
) -> Result<Executed, ZkvmError> {
    let (session, segments) = run_session(image, input, max_cycles, log)?;
    let user_cycles = session.user_cycles;
    Ok(Executed { journal: session.journal.map(|j| j.bytes).unwrap_or_default(), user_cycles, segments })
}

/// [`execute`], also returning what the guest wrote to standard error (at most
/// [`MAX_GUEST_LOG`] bytes; the guest SDK writes the detail of a rejected witness there).
pub fn execute_logged(
    image: &CircuitImage,
    input: &[u8],
    max_cycles: u64,
) -> (Result<Executed, ZkvmError>, String) {
    let log = GuestLog::default();
    let run = run_executed(image, input, max_cycles, Some(log.clone()));
    (run, log.text())
}

/// Dev backend: executes the guest for real and returns a receipt marked fake.
#[derive(Debug, Clone)]
pub struct DevProver {
    max_cycles: u64,
    delay: Duration,
}

impl DevProver {
    /// A dev prover; `delay` is added to every proof to model a fixed proving cost (benchmarks).
    pub fn new(max_cycles: u64, delay: Duration) -> Self {
        DevProver { max_cycles, delay }
    }
}

impl Prover for DevProver {
    fn name(&self) -> &'static str {
        "dev"
    }

    fn receipt_kind(&self) -> ReceiptKind {
        ReceiptKind::Fake
    }

    fn prove(&self, image: &CircuitImage, input: &[u8]) -> Result<Proved, ZkvmError> {
        self.prove_cancellable(image, input, &Cancel::new())
    }

    /// Executes, reports the segments as none proven, waits the modelled proving delay, and
    /// reports them all proven.
    fn prove_cancellable(
        &self,
        image: &CircuitImage,
        input: &[u8],
        control: &Cancel,
    ) -> Result<Proved, ZkvmError> {
        let start = Instant::now();
        let (session, segments) = run_session(image, input, self.max_cycles, None)?;
        control.report(0, segments as u64);
        let claim = session.claim().map_err(|e| ZkvmError::ProverFailed(format!("{e:#}")))?;
        let journal = session.journal.map(|j| j.bytes).unwrap_or_default();
        let proved = self.fake(claim, journal, session.user_cycles, segments, start)?;
        control.report(segments as u64, segments as u64);
        Ok(proved)
    }

    /// The fake receipt of a guest that halted with `journal`: the claim a successful run makes
    /// ([`ReceiptClaim::ok`]), the same one [`DevProver::prove`] gets from executing again.
    fn prove_known(
        &self,
        image: &CircuitImage,
        journal: &[u8],
        user_cycles: u64,
    ) -> Option<Result<Proved, ZkvmError>> {
        let start = Instant::now();
        let claim =
            risc0_zkvm::ReceiptClaim::ok(risc0_zkvm::sha::Digest::from(image.image_id().0), journal.to_vec());
        Some(self.fake(claim, journal.to_vec(), user_cycles, 0, start))
    }
}

impl DevProver {
    /// The fake receipt of `claim`, handed out after the modelled proving delay.
    fn fake(
        &self,
        claim: risc0_zkvm::ReceiptClaim,
        journal: Vec<u8>,
        user_cycles: u64,
        segments: usize,
        start: Instant,
    ) -> Result<Proved, ZkvmError> {
        let receipt = risc0_zkvm::Receipt::new(InnerReceipt::Fake(FakeReceipt::new(claim)), journal.clone());
        let bytes = encode_receipt(&receipt)?;
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let receipt = Receipt { kind: ReceiptKind::Fake, bytes, journal };
        Ok(Proved { receipt, user_cycles, segments, elapsed: start.elapsed() })
    }
}

fn bincode_options() -> impl Options {
    bincode::DefaultOptions::new().with_fixint_encoding().with_limit(MAX_RECEIPT_BYTES)
}

fn encode_receipt(receipt: &risc0_zkvm::Receipt) -> Result<Vec<u8>, ZkvmError> {
    bincode_options()
        .serialize(receipt)
        .map_err(|e| ZkvmError::ProverFailed(format!("cannot encode receipt: {e}")))
}

/// What a successful verification establishes.
#[derive(Clone, Debug)]
pub struct Verified {
    /// the receipt's kind
    pub kind: ReceiptKind,
    /// the verified journal (`root ‖ output` for zkcoproc circuits)
    pub journal: Vec<u8>,
    /// the digest of the claim the receipt attests (image, exit, journal, assumptions)
    pub claim_digest: [u8; 32],
}

thread_local! {
    // A `VerifierContext` parses and checks the Groth16 verifying key's curve points when it is
    // made: a fixed cost that a verification per task need not pay again. It is not `Send` (its
    // hash suites are `Rc`), so each thread keeps its own, made the first time it verifies.
    static VERIFIER: VerifierContext = VerifierContext::default().with_dev_mode(false);
    static DEV_VERIFIER: VerifierContext = VerifierContext::default().with_dev_mode(true);
}

/// Verifies receipts. Accepts fake receipts only when `dev_mode` is set.
#[derive(Clone, Copy, Debug)]
pub struct Verifier {
    dev_mode: bool,
}

impl Verifier {
    /// A verifier; `dev_mode = true` also accepts fake receipts (for `--prover dev` services).
    pub fn new(dev_mode: bool) -> Self {
        Verifier { dev_mode }
    }

    /// Whether fake receipts are accepted.
    pub fn dev_mode(&self) -> bool {
        self.dev_mode
    }

    /// Decodes `bytes` as a receipt and verifies it proves a run of `image_id`. Returns the
    /// verified journal.
    pub fn verify(&self, bytes: &[u8], image_id: ImageId) -> Result<Verified, VerifyError> {
        let receipt: risc0_zkvm::Receipt =
            bincode_options().deserialize(bytes).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let kind = ReceiptKind::of(&receipt.inner)
            .ok_or_else(|| VerifyError::Malformed("unknown receipt kind".into()))?;
        if kind == ReceiptKind::Fake && !self.dev_mode {
            return Err(VerifyError::FakeRejected);
        }
        let checked = |ctx: &VerifierContext| receipt.verify_with_context(ctx, image_id.digest());
        let checked = match self.dev_mode {
            true => DEV_VERIFIER.with(checked),
            false => VERIFIER.with(checked),
        };
        checked
            .map_err(|e| VerifyError::Invalid { image_id: image_id.to_string(), reason: e.to_string() })?;
        let claim = receipt.claim().map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let claim_digest = risc0_zkvm::sha::Digestible::digest(&claim).into();
        Ok(Verified { kind, journal: receipt.journal.bytes, claim_digest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_programs_are_rejected() {
        for bytes in [&b""[..], b"not an elf", b"\x7fELF\x01\x01\x01", &[0u8; 4096]] {
            let err = CircuitImage::load(bytes).expect_err("garbage loaded as a circuit");
            assert_eq!(err.code(), "invalid_circuit", "{err}");
        }
    }

    #[test]
    fn image_id_hex_round_trip() {
        let id = ImageId([0xab; 32]);
        assert_eq!(ImageId::from_hex(&id.to_string()), Some(id));
        assert_eq!(ImageId::from_hex(&format!("0x{id}")), Some(id));
        assert_eq!(ImageId::from_hex("abcd"), None);
    }

    #[test]
    fn garbage_receipts_are_malformed() {
        let v = Verifier::new(true);
        for bytes in [&b""[..], b"\x00\x01\x02", &[0xffu8; 64]] {
            assert!(matches!(v.verify(bytes, ImageId([0; 32])), Err(VerifyError::Malformed(_))));
        }
    }

    #[test]
    fn only_composite_is_offered_by_the_cpu_prover() {
        assert!(CpuProver::new(ReceiptKind::Composite, 1 << 20).is_ok());
        for kind in [ReceiptKind::Succinct, ReceiptKind::Groth16, ReceiptKind::Fake] {
            let err = CpuProver::new(kind, 1 << 20).expect_err("unsupported kind accepted");
            assert_eq!(err.code(), "unsupported_receipt_kind");
        }
    }
}
