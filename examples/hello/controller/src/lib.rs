//! Controller of `examples/hello`: takes `{"n": N}`, hands the circuit N, stores each finished
//! proof's receipt in its volume under `/var/share/proofs/` (the newest [`KEEP_RECEIPTS`]; older
//! ones are removed, and the service keeps every proof at `GET /v1/tasks/{id}/proof`), and turns
//! the proven output back into `{"n", "digest", "receipt"}`. Failed tasks are recorded under
//! `/var/log/` (the newest [`KEEP_FAILURES`]).

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use zkcoproc_controller_sdk::{export, info, task_file_name, write_keeping_newest, Controller, Witness};

/// Upper bound on n: each iteration costs the circuit ~440 cycles.
const MAX_N: u32 = 100_000;

/// Receipts kept in the volume by default (a real composite receipt is a few hundred KB; 16 of
/// them fit a 16 MiB volume several times over, and older ones are removed sooner if it fills up
/// anyway). A request may ask for another bound with `"keep"` (1 to [`MAX_KEEP`]).
pub const KEEP_RECEIPTS: usize = 16;

/// Largest `"keep"` a request may ask for.
pub const MAX_KEEP: usize = 1000;

/// Failure records kept in the volume.
pub const KEEP_FAILURES: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    n: u32,
    /// how many receipts the volume keeps after this one is stored
    keep: Option<usize>,
}

struct Hello;

/// The witness logic without host calls: the witness bytes and a log line. The benches run it
/// natively to compare with the wasm call.
pub fn plan(args: &str) -> Result<(Vec<u8>, String), String> {
    let args: Args = serde_json::from_str(args).map_err(|e| {
        format!("bad args ({e}); expected {{\"n\": 1..={MAX_N}, \"keep\": 1..={MAX_KEEP} (optional)}}")
    })?;
    if args.n == 0 || args.n > MAX_N {
        return Err(format!("n must be in 1..={MAX_N}, got {}", args.n));
    }
    if let Some(keep) = args.keep.filter(|k| !(1..=MAX_KEEP).contains(k)) {
        return Err(format!("keep must be in 1..={MAX_KEEP}, got {keep}"));
    }
    Ok((args.n.to_le_bytes().to_vec(), format!("circuit will hash {} times", args.n)))
}

impl Controller for Hello {
    fn get_witnesses(args: String) -> Result<Vec<Witness>, String> {
        let (witness, note) = plan(&args)?;
        info(&note);
        Ok(vec![Witness::Data(witness)])
    }

    fn entrypoint(event: String) -> Result<String, String> {
        let event: Value = serde_json::from_str(&event).map_err(|e| format!("bad event: {e}"))?;
        let task = event["task_id"].as_str().ok_or("event has no task_id")?;
        let name = task_file_name(task)?;
        if event["status"] == "failed" {
            let path = write_keeping_newest(
                "/var/log",
                &name,
                event["error"].to_string().as_bytes(),
                KEEP_FAILURES,
            )?;
            return Ok(json!({"failure_log": path}).to_string());
        }
        // Re-delivery after a crash overwrites the same file: the name comes from the task id.
        let receipt = base64::engine::general_purpose::STANDARD
            .decode(event["receipt"].as_str().ok_or("event has no receipt")?)
            .map_err(|e| format!("receipt is not base64: {e}"))?;
        let keep = event["args"]["keep"].as_u64().map_or(KEEP_RECEIPTS, |k| (k as usize).clamp(1, MAX_KEEP));
        let path = write_keeping_newest("/var/share/proofs", &name, &receipt, keep)?;
        let output = event["output"].as_str().ok_or("event has no output")?;
        let output = hex::decode(output).map_err(|e| format!("output is not hex: {e}"))?;
        if output.len() != 36 {
            return Err(format!("output is {} bytes, expected 36", output.len()));
        }
        let n = u32::from_le_bytes([output[0], output[1], output[2], output[3]]);
        info(&format!("task {task} proved; receipt stored at {path}"));
        Ok(json!({"n": n, "digest": hex::encode(&output[4..]), "receipt": path}).to_string())
    }
}

export!(Hello);
