//! JSON renderings of stored records.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use zkcoproc_coordinator::DryRun;
use zkcoproc_store::{ProgramInfo, ProverAttempt, TaskRecord, TaskStatus};
use zkcoproc_types::{journal, Witness};

use crate::openapi::{DryRunView, LogLineView, ProgramView};

pub(crate) fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

pub(crate) fn program(p: &ProgramInfo) -> ProgramView {
    ProgramView {
        program_id: p.id.clone(),
        image_id: p.image_id.clone(),
        controller_size: p.controller_size,
        circuit_size: p.circuit_size,
        created_at: rfc3339(p.created_at),
        owner: p.owner.clone(),
        volume_size_mb: p.volume_size.map(|b| b >> 20),
        callback_url: p.callback_url.as_deref().map(shown_url),
    }
}

/// What an EVM call's witness holds: the accounts and slots the call reads (counted by running it
/// over the witness, as the circuit will), its code, nodes and ancestor headers.
fn evm_witness_size(call: &zkcoproc_types::EvmCall) -> Value {
    let reads = zkcoproc_evm::db::decode_header(&call.header)
        .and_then(|header| zkcoproc_evm::execute(call, &header).ok())
        .map(|outcome| outcome.reads);
    json!({
        "accounts": reads.map(|r| r.accounts),
        "slots": reads.map(|r| r.slots),
        "code_bytes": call.codes.iter().map(Vec::len).sum::<usize>(),
        "codes": call.codes.len(),
        "nodes": call.nodes.len(),
        "ancestors": call.ancestors.len(),
        "bytes": call.encoded_len(),
    })
}

pub(crate) fn dry_run(d: &DryRun) -> DryRunView {
    let witnesses: Vec<Value> = d
        .witnesses
        .iter()
        .map(|w| match w {
            Witness::Data(bytes) => json!({"kind": "data", "data": hex::encode(bytes)}),
            Witness::StateProof(sp) => json!({
                "kind": "state_proof",
                "domain": sp.domain,
                "block": sp.block,
                "address": format!("0x{}", hex::encode(sp.address)),
                "nonce": sp.account.nonce,
                "balance": format!("0x{}", hex::encode(sp.account.balance)),
                "storage_root": format!("0x{}", hex::encode(sp.account.storage_root)),
                "code_hash": format!("0x{}", hex::encode(sp.account.code_hash)),
                "account_proof_nodes": sp.account_proof.len(),
                "storage": sp.storage.iter().map(|s| json!({
                    "key": format!("0x{}", hex::encode(s.key)),
                    "value": format!("0x{}", hex::encode(s.value)),
                    "proof_nodes": s.proof.len(),
                })).collect::<Vec<_>>(),
                "header": format!("0x{}", hex::encode(&sp.header)),
                "opening": sp.opening.as_ref().map(|o| hex::encode(o.encode())),
            }),
            Witness::EvmCall(call) => json!({
                "kind": "evm_call",
                "domain": call.domain,
                "block": call.block,
                "chain_id": call.chain_id,
                "from": format!("0x{}", hex::encode(call.from)),
                "to": format!("0x{}", hex::encode(call.to)),
                "calldata": format!("0x{}", hex::encode(&call.calldata)),
                "gas_limit": call.gas_limit,
                "may_revert": call.may_revert,
                "reverted": call.reverted,
                "result": format!("0x{}", hex::encode(&call.result)),
                "witness": evm_witness_size(call),
                "opening": call.opening.as_ref().map(|o| hex::encode(o.encode())),
            }),
        })
        .collect();
    DryRunView {
        witnesses,
        input_len: d.input_len as u64,
        logs: d
            .logs
            .iter()
            .map(|l| LogLineView { level: l.level.clone(), message: l.message.clone() })
            .collect(),
    }
}

/// A callback URL as answers show it (tasks and programs are public to read): without its query
/// and fragment, which often carry a receiver's token (`?…` says one was there).
pub(crate) fn shown_url(url: &str) -> String {
    match url.find(['?', '#']) {
        Some(i) => format!("{}?…", &url[..i]),
        None => url.to_owned(),
    }
}

/// A task's proving progress: segments proven of the executor's count, as last reported.
pub(crate) fn progress(done: u64, total: u64) -> Value {
    json!({"stage": "proving", "done": done, "total": total})
}

/// The task JSON: identity, status, attempts, per-stage timestamps and durations, error, proving
/// progress, webhook deliveries, and on success the journal, output, receipt kind and the
/// entrypoint's result.
pub(crate) fn task(t: &TaskRecord, attempts: &[ProverAttempt]) -> Value {
    let mut timestamps = Map::new();
    for e in &t.history {
        timestamps.entry(e.status.as_str()).or_insert_with(|| json!(rfc3339(e.at)));
    }
    let at = |s: TaskStatus| t.history.iter().find(|e| e.status == s).map(|e| e.at);
    let history: Vec<Value> =
        t.history.iter().map(|e| json!({"status": e.status.as_str(), "at": rfc3339(e.at)})).collect();
    let mut durations = Map::new();
    let stages = [
        TaskStatus::Queued,
        TaskStatus::Witnessing,
        TaskStatus::Proving,
        TaskStatus::Verifying,
        TaskStatus::Delivering,
    ];
    for (i, stage) in stages.iter().enumerate() {
        let end = stages[i + 1..]
            .iter()
            .chain([TaskStatus::Done, TaskStatus::Failed, TaskStatus::Cancelled].iter())
            .find_map(|s| at(*s));
        if let (Some(start), Some(end)) = (at(*stage), end) {
            durations.insert(stage.as_str().to_owned(), json!(end - start));
        }
    }
    let end = [TaskStatus::Done, TaskStatus::Failed, TaskStatus::Cancelled].iter().find_map(|s| at(*s));
    if let Some(end) = end {
        durations.insert("total".into(), json!(end - t.created_at));
    }
    let output = t.journal.as_deref().and_then(journal::split).map(|(_, o)| hex::encode(o));
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    json!({
        "id": t.id,
        "program_id": t.program_id,
        "status": t.status.as_str(),
        "attempts": t.attempts,
        "args": parse(&t.args),
        "root": hex::encode(t.root),
        "receipt_kind": t.receipt_kind,
        "submitter": t.submitter,
        "created_at": rfc3339(t.created_at),
        "updated_at": rfc3339(t.updated_at),
        "timestamps": timestamps,
        "durations_ms": durations,
        "history": history,
        "provers": attempts
            .iter()
            .map(|a| json!({
                "lease_id": a.lease_id,
                "worker": a.worker,
                "issued_at": rfc3339(a.issued_at),
                "outcome": a.outcome.as_deref().unwrap_or("open"),
                "reason": a.reason,
            }))
            .collect::<Vec<_>>(),
        "error": t.error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
        "journal": t.journal.as_ref().map(hex::encode),
        "output": output,
        "user_cycles": t.user_cycles,
        "progress": t.progress.map(|(done, total)| progress(done, total)),
        "result": t.result.as_deref().map(parse),
        "logs": parse(&t.logs),
        "callback_url": t.callback_url.as_deref().map(shown_url),
        "callback_state": t.callback_state,
        "callbacks": t
            .callbacks
            .iter()
            .map(|c| json!({"at": rfc3339(c.at), "status": c.status, "error": c.error}))
            .collect::<Vec<_>>(),
    })
}
