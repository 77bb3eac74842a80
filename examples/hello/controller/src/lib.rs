//! Controller of `examples/hello`: takes `{"n": N}`, hands the circuit N, and turns the proven
//! output back into `{"n", "digest"}`.

use serde::Deserialize;
use serde_json::{json, Value};
use zkcoproc_controller_sdk::{export, info, Controller, Witness};

/// Upper bound on n: each iteration costs the circuit ~440 cycles.
const MAX_N: u32 = 100_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    n: u32,
}

struct Hello;

impl Controller for Hello {
    fn get_witnesses(args: String) -> Result<Vec<Witness>, String> {
        let args: Args = serde_json::from_str(&args)
            .map_err(|e| format!("bad args ({e}); expected {{\"n\": 1..={MAX_N}}}"))?;
        if args.n == 0 || args.n > MAX_N {
            return Err(format!("n must be in 1..={MAX_N}, got {}", args.n));
        }
        info(&format!("circuit will hash {} times", args.n));
        Ok(vec![Witness::Data(args.n.to_le_bytes().to_vec())])
    }

    fn entrypoint(event: String) -> Result<String, String> {
        let event: Value = serde_json::from_str(&event).map_err(|e| format!("bad event: {e}"))?;
        let output = event["output"].as_str().ok_or("event has no output")?;
        let output = hex::decode(output).map_err(|e| format!("output is not hex: {e}"))?;
        if output.len() != 36 {
            return Err(format!("output is {} bytes, expected 36", output.len()));
        }
        let n = u32::from_le_bytes([output[0], output[1], output[2], output[3]]);
        info(&format!("task {} proved", event["task_id"]));
        Ok(json!({"n": n, "digest": hex::encode(&output[4..])}).to_string())
    }
}

export!(Hello);
