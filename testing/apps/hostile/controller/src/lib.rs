//! A controller that misbehaves on request, for the sandbox tests. `{"mode": M}` picks what
//! `get-witnesses` does; the witness of the well-behaved modes is `n = 1` for the hello circuit.

use serde_json::{json, Value};
use zkcoproc_controller_sdk::{context, export, fs, info, Controller, Witness};

struct Hostile;

fn one() -> Vec<Witness> {
    vec![Witness::Data(1u32.to_le_bytes().to_vec())]
}

#[inline(never)]
fn recurse(depth: u64, pad: &mut [u8; 256]) -> u64 {
    pad[(depth % 256) as usize] = depth as u8;
    let mut local = *pad;
    recurse(depth + 1, &mut local) + u64::from(local[0])
}

impl Controller for Hostile {
    fn get_witnesses(args: String) -> Result<Vec<Witness>, String> {
        let args: Value = serde_json::from_str(&args).map_err(|e| e.to_string())?;
        match args["mode"].as_str().unwrap_or("ok") {
            "ok" | "bad-result" | "trap-entrypoint" | "fill-entrypoint" | "sleep-entrypoint" => Ok(one()),
            // Blocking WASI calls, which the epoch deadline alone cannot interrupt.
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(one())
            }
            "sleep-loop" => loop {
                std::thread::sleep(std::time::Duration::from_millis(200));
            },
            "clock-spin" => {
                let start = std::time::Instant::now();
                while start.elapsed() < std::time::Duration::from_secs(3600) {}
                Ok(one())
            }
            "many-witnesses" => Ok(vec![Witness::Data(Vec::new()); 5000]),
            // An EVM call the host never made: a made-up result under a handle of its own.
            "forged-evm-call" => Ok(vec![Witness::EvmCall(zkcoproc_controller_sdk::evm::EvmCall {
                domain: "ethereum".into(),
                block: 1,
                to: vec![0x11; 20],
                calldata: vec![0x70, 0xa0, 0x82, 0x31],
                result: vec![0xff; 32],
                reverted: false,
                witness: 0,
            })]),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "big-output" => Ok(vec![Witness::Data(vec![7u8; 100 << 20])]),
            "recursion" => {
                let mut pad = [0u8; 256];
                Ok(vec![Witness::Data(recurse(0, &mut pad).to_le_bytes().to_vec())])
            }
            "host-calls" => loop {
                std::hint::black_box(context::program_id());
            },
            "write" => {
                let path = args["path"].as_str().ok_or("write needs a path")?;
                let size = args["size"].as_u64().unwrap_or(16) as usize;
                fs::write(path, &vec![b'z'; size])?;
                info(&format!("wrote {size} bytes to {path}"));
                Ok(one())
            }
            other => Err(format!("unknown mode {other}")),
        }
    }

    fn entrypoint(event: String) -> Result<String, String> {
        let event: Value = serde_json::from_str(&event).map_err(|e| e.to_string())?;
        match event["args"]["mode"].as_str().unwrap_or("ok") {
            "bad-result" => Ok("this is not JSON".into()),
            "trap-entrypoint" if event["status"] == "done" => panic!("entrypoint trap on purpose"),
            "sleep-entrypoint" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok("{}".into())
            }
            // Writes 1 MB files until the volume is full, then gives up with the fs error.
            "fill-entrypoint" if event["status"] == "done" => {
                for i in 0.. {
                    fs::write(&format!("/fill/f{i}.bin"), &vec![b'f'; 1_000_000])?;
                }
                unreachable!()
            }
            _ => Ok(json!({"status": event["status"]}).to_string()),
        }
    }
}

export!(Hostile);
