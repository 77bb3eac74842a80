//! Proving in a child process, so a proof can be stopped midway: RISC Zero's prover has no
//! cancellation hook, but a process can be killed, and its memory and cores come back at once.
//!
//! [`ChildProver`] runs `EXE prove-child` (the `zkcoproc` binary's hidden subcommand, which calls
//! [`serve_child`]) and talks to it over its standard streams:
//!
//! - request (parent → child stdin): `zkcp-prove-v1\n`, max cycles (u64 LE), the program binary
//!   and the circuit input, each as a u64 LE length and the bytes. The parent then keeps stdin
//!   open: end of file tells the child its parent is gone (killed, crashed), and the child exits
//!   instead of proving for nobody.
//! - reply (child stdout): `0`, user cycles, segments (u64 LE each), the receipt and the journal
//!   (length-prefixed); or `1`, the error code and message (length-prefixed).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{CircuitImage, CpuProver, Proved, Prover, Receipt, ReceiptKind, ZkvmError};

const MAGIC: &[u8] = b"zkcp-prove-v2\n";
/// A progress frame of the child's reply stream: `2`, segments done and total (u64 LE each),
/// before the final `0` or `1` reply.
const PROGRESS: u8 = 2;
/// Largest field the child or parent reads (a program binary, an input or a receipt).
const MAX_FIELD: u64 = 1 << 30;

/// Where a prover reports progress: segments proven, of how many (the executor's count).
pub type ProgressSink = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// A proof's controls: its stop flag (set it and a [`ChildProver`] kills its child within a few
/// milliseconds) and, optionally, where it reports progress.
#[derive(Clone, Default)]
pub struct Cancel {
    stop: Arc<AtomicBool>,
    progress: Option<ProgressSink>,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel").field("cancelled", &self.is_cancelled()).finish_non_exhaustive()
    }
}

impl Cancel {
    /// A flag not set, reporting progress nowhere.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// A flag not set; the prover calls `sink(done, total)` as segments are proven (with
    /// `done = 0` once the executor has counted them).
    pub fn with_progress(sink: ProgressSink) -> Self {
        Cancel { stop: Arc::default(), progress: Some(sink) }
    }

    /// Reports `done` of `total` segments proven.
    pub fn report(&self, done: u64, total: u64) {
        if let Some(sink) = &self.progress {
            sink(done, total);
        }
    }

    /// The progress sink, if any.
    pub(crate) fn sink(&self) -> Option<ProgressSink> {
        self.progress.clone()
    }

    /// Asks the proof to stop.
    pub fn cancel(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether the proof was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// The CPU prover in a child process (see the module documentation).
#[derive(Clone, Debug)]
pub struct ChildProver {
    exe: PathBuf,
    max_cycles: u64,
}

impl ChildProver {
    /// Proves with `exe prove-child` (an executable whose `prove-child` subcommand calls
    /// [`serve_child`]); only composite receipts, as [`CpuProver`].
    pub fn new(exe: PathBuf, kind: ReceiptKind, max_cycles: u64) -> Result<Self, ZkvmError> {
        CpuProver::new(kind, max_cycles)?;
        Ok(ChildProver { exe, max_cycles })
    }

    fn request(&self, image: &CircuitImage, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 24 + image.binary().len() + input.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.max_cycles.to_le_bytes());
        for field in [image.binary(), input] {
            out.extend_from_slice(&(field.len() as u64).to_le_bytes());
            out.extend_from_slice(field);
        }
        out
    }
}

impl Prover for ChildProver {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn receipt_kind(&self) -> ReceiptKind {
        ReceiptKind::Composite
    }

    fn prove(&self, image: &CircuitImage, input: &[u8]) -> Result<Proved, ZkvmError> {
        self.prove_cancellable(image, input, &Cancel::new())
    }

    fn prove_cancellable(
        &self,
        image: &CircuitImage,
        input: &[u8],
        cancel: &Cancel,
    ) -> Result<Proved, ZkvmError> {
        let start = Instant::now();
        let failed = |what: &str, e: std::io::Error| ZkvmError::ProverFailed(format!("{what}: {e}"));
        let mut child = Command::new(&self.exe)
            .arg("prove-child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| failed(&format!("cannot start {} prove-child", self.exe.display()), e))?;
        let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ZkvmError::ProverFailed("the prover process has no stdin/stdout".into()));
        };
        // Writing and reading in threads: a large request and a large reply cannot deadlock.
        let request = self.request(image, input);
        let writer = std::thread::spawn(move || {
            let written = stdin.write_all(&request).and_then(|()| stdin.flush());
            // Kept open (returned) until the child is done: its end of file means "parent gone".
            (written, stdin)
        });
        let progress = cancel.clone();
        let reader = std::thread::spawn(move || {
            // Progress frames, passed on as they come, then the reply.
            let mut kind = [0u8; 1];
            loop {
                if stdout.read(&mut kind)? == 0 {
                    return Ok(Vec::new());
                }
                if kind[0] != PROGRESS {
                    break;
                }
                let (done, total) = (read_u64(&mut stdout)?, read_u64(&mut stdout)?);
                progress.report(done.min(total), total);
            }
            let mut reply = kind.to_vec();
            stdout.read_to_end(&mut reply).map(|_| reply)
        });
        let status = loop {
            if cancel.is_cancelled() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ZkvmError::Cancelled);
            }
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(failed("waiting for the prover process", e));
                }
            }
        };
        let stdin = writer.join().map_err(|_| ZkvmError::ProverFailed("request writer panicked".into()))?;
        drop(stdin);
        let reply = reader
            .join()
            .map_err(|_| ZkvmError::ProverFailed("reply reader panicked".into()))?
            .map_err(|e| failed("reading the prover's reply", e))?;
        let mut r = reply.as_slice();
        match take_byte(&mut r) {
            Some(0) => {
                let (user_cycles, segments) = (take_u64(&mut r), take_u64(&mut r));
                let (bytes, journal) = (take_field(&mut r), take_field(&mut r));
                match (user_cycles, segments, bytes, journal) {
                    (Some(user_cycles), Some(segments), Some(bytes), Some(journal)) => Ok(Proved {
                        receipt: Receipt { kind: ReceiptKind::Composite, bytes, journal },
                        user_cycles,
                        segments: usize::try_from(segments).unwrap_or(usize::MAX),
                        elapsed: start.elapsed(),
                    }),
                    _ => Err(ZkvmError::ProverFailed("the prover process sent a truncated reply".into())),
                }
            }
            Some(1) => {
                let code = take_field(&mut r).map(|c| String::from_utf8_lossy(&c).into_owned());
                let message = take_field(&mut r).map(|m| String::from_utf8_lossy(&m).into_owned());
                let message = message.unwrap_or_default();
                Err(match code.as_deref() {
                    Some("circuit_failed") => ZkvmError::GuestFailed(message),
                    Some("invalid_circuit") => ZkvmError::InvalidCircuit(message),
                    Some("unsupported_receipt_kind") => ZkvmError::UnsupportedReceiptKind(message),
                    _ => ZkvmError::ProverFailed(message),
                })
            }
            _ => {
                Err(ZkvmError::ProverFailed(format!("the prover process exited ({status}) without a reply")))
            }
        }
    }
}

fn take_byte(r: &mut &[u8]) -> Option<u8> {
    let (&b, rest) = r.split_first()?;
    *r = rest;
    Some(b)
}

fn take_u64(r: &mut &[u8]) -> Option<u64> {
    let (head, rest) = r.split_first_chunk::<8>()?;
    *r = rest;
    Some(u64::from_le_bytes(*head))
}

fn take_field(r: &mut &[u8]) -> Option<Vec<u8>> {
    let len = usize::try_from(take_u64(r)?).ok()?;
    if len > r.len() {
        return None;
    }
    let (field, rest) = r.split_at(len);
    *r = rest;
    Some(field.to_vec())
}

fn read_u64(input: &mut impl Read) -> std::io::Result<u64> {
    let mut buf = [0u8; 8];
    input.read_exact(&mut buf)?;
    Ok(u64::from_le_bytes(buf))
}

fn read_field(input: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let len = read_u64(input)?;
    if len > MAX_FIELD {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "field over 1 GiB"));
    }
    let mut field = vec![0u8; len as usize];
    input.read_exact(&mut field)?;
    Ok(field)
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u64).to_le_bytes());
    out.extend_from_slice(field);
}

/// The child's side: reads a request from `input`, proves it with the CPU prover, writes the
/// reply to `output`. Exits the process (status 3) as soon as `input` reaches its end before the
/// proof is done: the parent is gone.
pub fn serve_child(
    mut input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
) -> std::io::Result<()> {
    let mut magic = [0u8; MAGIC.len()];
    input.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a zkcoproc proving request"));
    }
    let max_cycles = read_u64(&mut input)?;
    let binary = read_field(&mut input)?;
    let circuit_input = read_field(&mut input)?;
    std::thread::spawn(move || {
        let mut rest = [0u8; 64];
        loop {
            match input.read(&mut rest) {
                Ok(0) | Err(_) => std::process::exit(3),
                Ok(_) => {}
            }
        }
    });
    let output = Arc::new(std::sync::Mutex::new(output));
    let frames = output.clone();
    let control = Cancel::with_progress(Arc::new(move |done: u64, total: u64| {
        let mut frame = vec![PROGRESS];
        frame.extend_from_slice(&done.to_le_bytes());
        frame.extend_from_slice(&total.to_le_bytes());
        if let Ok(mut out) = frames.lock() {
            // A parent that stopped reading is gone; the input watcher ends this process.
            let _ = out.write_all(&frame).and_then(|()| out.flush());
        }
    }));
    let proved = CircuitImage::load(&binary).and_then(|image| {
        CpuProver::new(ReceiptKind::Composite, max_cycles)?.prove_cancellable(
            &image,
            &circuit_input,
            &control,
        )
    });
    let mut reply = Vec::new();
    match proved {
        Ok(p) => {
            reply.push(0);
            reply.extend_from_slice(&p.user_cycles.to_le_bytes());
            reply.extend_from_slice(&(p.segments as u64).to_le_bytes());
            put_field(&mut reply, &p.receipt.bytes);
            put_field(&mut reply, &p.receipt.journal);
        }
        Err(e) => {
            reply.push(1);
            put_field(&mut reply, e.code().as_bytes());
            put_field(&mut reply, e.detail().as_bytes());
        }
    }
    let mut output = output.lock().map_err(|_| std::io::Error::other("reply writer poisoned"))?;
    output.write_all(&reply)?;
    output.flush()
}
