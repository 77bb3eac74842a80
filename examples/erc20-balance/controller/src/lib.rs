//! Controller of `examples/erc20-balance`: proves an ERC-20 balance at an Ethereum block.
//!
//! Arguments: `{"token": "0x…", "holder": "0x…", "slot": 0, "block": N}`. `slot` is the storage
//! index of the token's `balances` mapping (default 0); `block` defaults to the newest block
//! under the task's root. The controller computes the mapping slot
//! `keccak256(pad32(holder) ‖ pad32(slot))`, asks the host for the state proof, and hands the
//! circuit the request and the proof. `entrypoint` stores the receipt in the program's volume
//! and decodes the journal into `{"block", "token", "holder", "slot", "balance"}` (balance as a
//! decimal string). The journal commits `slot`: a balance proven from another mapping index says
//! so, and a verifier checks that `slot` is the token's balances mapping.

use alloy_primitives::{keccak256, Address, U256};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use zkcoproc_controller_sdk::{
    domain, export, info, task_file_name, write_keeping_newest, Controller, Witness,
};

/// The domain the circuit accepts.
const DOMAIN: &str = "ethereum";

/// Receipts (and failure records) kept in the volume; older ones are removed.
const KEEP: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    token: Address,
    holder: Address,
    #[serde(default)]
    slot: u64,
    block: Option<u64>,
}

struct Erc20Balance;

impl Controller for Erc20Balance {
    fn get_witnesses(args: String) -> Result<Vec<Witness>, String> {
        let args: Args = serde_json::from_str(&args).map_err(|e| {
            format!("bad args ({e}); expected {{\"token\": \"0x…\", \"holder\": \"0x…\", \"slot\": 0, \"block\": N}}")
        })?;
        let block = match args.block {
            Some(b) => b,
            None => domain::latest(DOMAIN)?,
        };
        let slot = U256::from(args.slot).to_be_bytes::<32>();
        let mut preimage = [0u8; 64];
        preimage[12..32].copy_from_slice(args.holder.as_slice());
        preimage[32..].copy_from_slice(&slot);
        let key = keccak256(preimage).0;
        let proof = domain::state_proof(DOMAIN, block, &args.token.0 .0, &[key])?;
        info(&format!(
            "balance of {} in {} at block {block}: slot 0x{}",
            args.holder,
            args.token,
            hex::encode(key)
        ));
        let mut request = Vec::with_capacity(52);
        request.extend_from_slice(args.holder.as_slice());
        request.extend_from_slice(&slot);
        Ok(vec![Witness::Data(request), Witness::StateProof(proof)])
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
        let [block, token, holder, slot, balance] = words(&output)?;
        let block = U256::from_be_bytes(block);
        let block = u64::try_from(block).map_err(|_| "block number does not fit u64")?;
        let slot = U256::from_be_bytes(slot);
        let result = json!({
            "block": block,
            "token": Address::from_slice(&token[12..]).to_checksum(None),
            "holder": Address::from_slice(&holder[12..]).to_checksum(None),
            "slot": u64::try_from(slot).map_or_else(|_| json!(slot.to_string()), |s| json!(s)),
            "balance": U256::from_be_bytes(balance).to_string(),
            "receipt": path,
        });
        Ok(result.to_string())
    }
}

/// The five ABI words of the output.
fn words(output: &[u8]) -> Result<[[u8; 32]; 5], String> {
    if output.len() != 160 {
        return Err(format!("output is {} bytes, expected 160", output.len()));
    }
    let mut out = [[0u8; 32]; 5];
    for (i, w) in out.iter_mut().enumerate() {
        w.copy_from_slice(&output[32 * i..32 * (i + 1)]);
    }
    Ok(out)
}

export!(Erc20Balance);
