//! Controller of `examples/erc20-evm`: proves an ERC-20 balance at an Ethereum block by calling
//! `balanceOf(holder)`, whatever the token's storage layout.
//!
//! Arguments: `{"token": "0x…", "holder": "0x…", "block": N}`; `block` defaults to the newest
//! block under the task's root. The controller asks the host to run the call (the host records
//! the state it reads) and hands the circuit the call. `entrypoint` stores the receipt in the
//! program's volume and decodes the journal into `{"block", "token", "holder", "balance"}`
//! (balance as a decimal string).

use alloy_primitives::{Address, U256};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use zkcoproc_controller_sdk::{
    domain, evm, export, info, task_file_name, write_keeping_newest, Controller, Witness,
};

/// The domain the circuit accepts.
const DOMAIN: &str = "ethereum";

/// Receipts (and failure records) kept in the volume; older ones are removed.
const KEEP: usize = 16;

/// `balanceOf(address)`
const BALANCE_OF: [u8; 4] = [0x70, 0xa0, 0x82, 0x31];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    token: Address,
    holder: Address,
    block: Option<u64>,
}

struct Erc20Evm;

impl Controller for Erc20Evm {
    fn get_witnesses(args: String) -> Result<Vec<Witness>, String> {
        let args: Args = serde_json::from_str(&args).map_err(|e| {
            format!("bad args ({e}); expected {{\"token\": \"0x…\", \"holder\": \"0x…\", \"block\": N}}")
        })?;
        let block = match args.block {
            Some(b) => b,
            None => domain::latest(DOMAIN)?,
        };
        let mut calldata = BALANCE_OF.to_vec();
        calldata.extend_from_slice(&[0u8; 12]);
        calldata.extend_from_slice(args.holder.as_slice());
        let call = evm::call(DOMAIN, block, &args.token.0 .0, &calldata)?;
        info(&format!(
            "{}.balanceOf({}) at block {block}: 0x{}",
            args.token,
            args.holder,
            hex::encode(&call.result)
        ));
        Ok(vec![Witness::EvmCall(call)])
    }

    fn entrypoint(event: String) -> Result<String, String> {
        let event: Value = serde_json::from_str(&event).map_err(|e| format!("bad event: {e}"))?;
        let task = event["task_id"].as_str().ok_or("event has no task_id")?;
        let name = task_file_name(task)?;
        if event["status"] == "failed" {
            let path = write_keeping_newest("/var/log", &name, event["error"].to_string().as_bytes(), KEEP)?;
            return Ok(json!({"failure_log": path}).to_string());
        }
        let receipt = base64::engine::general_purpose::STANDARD
            .decode(event["receipt"].as_str().ok_or("event has no receipt")?)
            .map_err(|e| format!("receipt is not base64: {e}"))?;
        let path = write_keeping_newest("/var/share/proofs", &name, &receipt, KEEP)?;
        let output = hex::decode(event["output"].as_str().ok_or("event has no output")?)
            .map_err(|e| format!("output is not hex: {e}"))?;
        if output.len() != 128 {
            return Err(format!("output is {} bytes, expected 128", output.len()));
        }
        let word = |i: usize| &output[32 * i..32 * (i + 1)];
        let block =
            u64::try_from(U256::from_be_slice(word(0))).map_err(|_| "block number does not fit u64")?;
        let result = json!({
            "block": block,
            "token": Address::from_slice(&word(1)[12..]).to_checksum(None),
            "holder": Address::from_slice(&word(2)[12..]).to_checksum(None),
            "balance": U256::from_be_slice(word(3)).to_string(),
            "receipt": path,
        });
        Ok(result.to_string())
    }
}

export!(Erc20Evm);
