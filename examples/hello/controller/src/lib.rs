//! Controller of `examples/hello`: takes `{"n": N}`, hands the circuit N, stores each finished
//! proof's receipt in its volume under `/var/share/proofs/`, and turns the proven output back
//! into `{"n", "digest", "receipt"}`. A failed task is recorded under `/var/log/`.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use zkcoproc_controller_sdk::{export, fs, info, task_file_stem, Controller, Witness};

/// Upper bound on n: each iteration costs the circuit ~440 cycles.
const MAX_N: u32 = 100_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    n: u32,
}

struct Hello;

/// The witness logic without host calls: the witness bytes and a log line. The benches run it
/// natively to compare with the wasm call.
pub fn plan(args: &str) -> Result<(Vec<u8>, String), String> {
    let args: Args =
        serde_json::from_str(args).map_err(|e| format!("bad args ({e}); expected {{\"n\": 1..={MAX_N}}}"))?;
    if args.n == 0 || args.n > MAX_N {
        return Err(format!("n must be in 1..={MAX_N}, got {}", args.n));
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
        let name = task_file_stem(task)?;
        if event["status"] == "failed" {
            let path = format!("/var/log/{name}.err");
            fs::write(&path, event["error"].to_string().as_bytes())?;
            return Ok(json!({"failure_log": path}).to_string());
        }
        // Re-delivery after a crash overwrites the same file: the name comes from the task id.
        let receipt = base64::engine::general_purpose::STANDARD
            .decode(event["receipt"].as_str().ok_or("event has no receipt")?)
            .map_err(|e| format!("receipt is not base64: {e}"))?;
        let path = format!("/var/share/proofs/{name}.bin");
        fs::write(&path, &receipt)?;
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
