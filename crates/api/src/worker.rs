//! The prover-worker protocol: `POST /v1/worker/lease`, `GET /v1/worker/circuits/{image_id}`,
//! `POST /v1/worker/tasks/{id}/heartbeat`, `POST /v1/worker/tasks/{id}/result`.
//! Every request is authenticated (see [`crate::worker_auth`]); workers are untrusted, so every
//! receipt they submit is verified before it is accepted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::json;
use zkcoproc_store::{AttemptOutcome, RenewOutcome, TaskStatus};
use zkcoproc_zkvm::ReceiptKind;

use crate::worker_auth::{AuthError, WorkerAuth};
use crate::{ApiError, ApiResult, AppState};

/// Longest a lease request waits for work.
const MAX_WAIT: Duration = Duration::from_secs(25);

/// Who a signed endpoint is for: what it answers when no secret is configured for that role.
pub(crate) struct Role {
    /// scopes the role's nonces
    pub(crate) name: &'static str,
    pub(crate) disabled_code: &'static str,
    pub(crate) disabled_message: &'static str,
}

/// Prover workers (`--worker-secret-file`).
pub(crate) const WORKERS: Role = Role {
    name: "worker",
    disabled_code: "workers_disabled",
    disabled_message: "remote workers are disabled: start the service with --worker-secret-file",
};

fn auth_error(e: &AuthError, role: &Role) -> ApiError {
    let (status, code) = match e {
        AuthError::Disabled => {
            return ApiError::new(StatusCode::FORBIDDEN, role.disabled_code, role.disabled_message)
        }
        AuthError::Replayed => (StatusCode::UNAUTHORIZED, "replayed_request"),
        AuthError::Stale => (StatusCode::UNAUTHORIZED, "stale_request"),
        AuthError::Malformed(_) | AuthError::BadSignature => (StatusCode::UNAUTHORIZED, "unauthorized"),
    };
    ApiError::new(status, code, e.to_string())
}

/// Authenticates a signed request for `role` and parses its JSON body (empty: `{}`). The nonce is
/// checked against this process's memory and then recorded in the store, so a request replayed to
/// another replica, or after a restart, is refused too.
pub(crate) async fn authed<T: DeserializeOwned>(
    c: &AppState,
    auth: &WorkerAuth,
    role: &Role,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<(String, T)> {
    // The store's clock: replicas whose own clocks disagree still judge timestamps alike.
    let now = c.store().now_ms().await.map_err(zkcoproc_coordinator::CoordinatorError::from)?;
    let now = u64::try_from(now / 1000).unwrap_or(0);
    let worker =
        auth.verify(method.as_str(), uri.path(), headers, body, now).map_err(|e| auth_error(&e, role))?;
    // `verify` checked the nonce header's presence and shape.
    let nonce =
        headers.get(crate::worker_auth::HEADER_NONCE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let key = format!("{}/{worker}/{nonce}", role.name);
    let keep = Duration::from_secs(3 * crate::worker_auth::MAX_SKEW_SECS);
    if !c.store().use_nonce(&key, keep).await.map_err(zkcoproc_coordinator::CoordinatorError::from)? {
        return Err(auth_error(&AuthError::Replayed, role));
    }
    let parsed = serde_json::from_slice(if body.is_empty() { b"{}" } else { body })
        .map_err(|e| ApiError::bad_request("bad_json", format!("request body: {e}")))?;
    Ok((worker, parsed))
}

fn conflict(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeaseRequest {
    zkcoproc_version: String,
    risc0_version: String,
    /// `cpu` or `dev`: what the worker can make
    prover: String,
    /// how long to wait for work, in ms (at most 25 s)
    #[serde(default)]
    wait_ms: u64,
    /// lease only these tasks (`zkcoproc worker --task`; at most [`MAX_NAMED_TASKS`])
    #[serde(default)]
    tasks: Vec<String>,
}

/// Most tasks a worker may name in one lease request.
const MAX_NAMED_TASKS: usize = 64;

fn minor(version: &str) -> Option<(&str, &str)> {
    let mut parts = version.split('.');
    Some((parts.next()?, parts.next()?))
}

#[utoipa::path(post, path = "/v1/worker/lease", tag = "workers",
    request_body(content = Object, description = "signed by a worker: versions, prover, `wait_ms`, and optionally `tasks`, the only task ids it will take"),
    responses((status = 200, description = "a lease: task, input, image id", body = Object),
        (status = 204, description = "no task to prove within `wait_ms`"), crate::openapi::Errors, crate::openapi::AuthErrors))]
pub(crate) async fn lease(
    State(c): State<AppState>,
    Extension(auth): Extension<Arc<WorkerAuth>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (worker, req): (String, LeaseRequest) =
        authed(&c, &auth, &WORKERS, &method, &uri, &headers, &body).await?;
    if req.risc0_version != risc0_zkvm::VERSION {
        return Err(conflict(
            "incompatible_worker",
            format!(
                "the service proves and verifies with risc0-zkvm {}, the worker runs {}: receipts would not agree",
                risc0_zkvm::VERSION,
                req.risc0_version
            ),
        ));
    }
    let ours = env!("CARGO_PKG_VERSION");
    if minor(&req.zkcoproc_version).is_none() || minor(&req.zkcoproc_version) != minor(ours) {
        return Err(conflict(
            "incompatible_worker",
            format!(
                "the service speaks the worker protocol of zkcoproc {ours}, the worker is {}",
                req.zkcoproc_version
            ),
        ));
    }
    let makes = match req.prover.as_str() {
        "dev" => ReceiptKind::Fake,
        "cpu" => ReceiptKind::Composite,
        other => {
            return Err(ApiError::bad_request(
                "bad_request",
                format!("unknown prover `{other}` (cpu or dev)"),
            ))
        }
    };
    if makes != c.receipt_kind() {
        return Err(conflict(
            "incompatible_worker",
            format!(
                "this service's tasks need {} receipts; a `{}` worker makes {}",
                c.receipt_kind().as_str(),
                req.prover,
                makes.as_str()
            ),
        ));
    }
    // A worker whose recent leases all failed gets none for a while (429, `Retry-After`).
    c.check_worker(&worker).await?;
    if req.tasks.len() > MAX_NAMED_TASKS {
        let message =
            format!("a lease request names at most {MAX_NAMED_TASKS} tasks, not {}", req.tasks.len());
        return Err(ApiError::bad_request("bad_request", message));
    }
    let deadline = Instant::now() + Duration::from_millis(req.wait_ms).min(MAX_WAIT);
    loop {
        named_tasks_provable(&c, &req.tasks).await?;
        if let Some(lease) = c.lease_proving(&worker, &req.tasks).await? {
            let task = lease.task;
            let input = task.input.as_deref().unwrap_or_default();
            let image_id = c.image_id(&task.program_id).await?;
            return Ok(Json(json!({
                "task_id": task.id,
                "lease_id": lease.lease_id,
                "program_id": task.program_id,
                "image_id": image_id.to_string(),
                "receipt_kind": task.receipt_kind,
                "input": base64::engine::general_purpose::STANDARD.encode(input),
                "lease_expires_at_ms": lease.expires_at,
                "renew_every_ms": c.renew_interval().as_millis() as u64,
            }))
            .into_response());
        }
        if Instant::now() >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // Woken when a task enters proving; the short fallback covers a wake-up missed between
        // the lease attempt above and this wait.
        c.wait_for_provable(Duration::from_millis(100).min(deadline - Instant::now())).await;
    }
}

/// Checks the tasks a worker names: well-formed ids, and at least one of them still to be
/// proven (queued, witnessing or proving; else 409 `tasks_not_provable`, which ends
/// `zkcoproc worker --task` instead of letting it wait for nothing).
async fn named_tasks_provable(c: &AppState, tasks: &[String]) -> ApiResult<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let mut states = Vec::with_capacity(tasks.len());
    for id in tasks {
        let id = crate::task_id(id)?;
        match c.task(id).await {
            Ok(task)
                if matches!(
                    task.status,
                    TaskStatus::Queued | TaskStatus::Witnessing | TaskStatus::Proving
                ) =>
            {
                return Ok(())
            }
            Ok(task) => states.push(format!("{id} is {}", task.status)),
            Err(zkcoproc_coordinator::CoordinatorError::NotFound { .. }) => {
                states.push(format!("{id} is unknown"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(conflict(
        "tasks_not_provable",
        format!("none of the named tasks is left to prove: {}", states.join(", ")),
    ))
}

#[utoipa::path(get, path = "/v1/worker/circuits/{image_id}", tag = "workers",
    params(("image_id" = String, Path, description = "image id (hex)")),
    responses((status = 200, description = "the circuit binary", body = Vec<u8>, content_type = "application/octet-stream"), crate::openapi::Errors, crate::openapi::AuthErrors))]
pub(crate) async fn circuit(
    State(c): State<AppState>,
    Extension(auth): Extension<Arc<WorkerAuth>>,
    Path(image_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let _: (String, serde_json::Value) = authed(&c, &auth, &WORKERS, &method, &uri, &headers, &body).await?;
    if image_id.len() != 64 || !image_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request("bad_image_id", "image id must be 32 bytes of hex"));
    }
    match c.circuit_by_image_id(&image_id.to_ascii_lowercase()).await? {
        Some(bytes) => {
            Ok(([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
        }
        None => Err(ApiError::not_found(format!("no circuit with image id {image_id}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeartbeatRequest {
    lease_id: String,
    /// segments proven so far, of how many (the executor's count)
    #[serde(default)]
    progress: Option<ProgressReport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProgressReport {
    done: u64,
    total: u64,
}

/// Checks that `lease_id` is a lease of `task_id` issued to `worker`.
async fn own_lease(c: &AppState, task_id: &str, lease_id: &str, worker: &str) -> ApiResult<()> {
    match c.lease_worker(task_id, lease_id).await? {
        Some(holder) if holder == worker => Ok(()),
        Some(_) => Err(conflict("no_lease", format!("lease {lease_id} was not issued to {worker}"))),
        None => Err(conflict("no_lease", format!("task {task_id} has no lease {lease_id}"))),
    }
}

#[utoipa::path(post, path = "/v1/worker/tasks/{id}/heartbeat", tag = "workers",
    params(("id" = String, Path, description = "task id")),
    request_body(content = Object, description = "signed by a worker: `lease_id`"),
    responses((status = 200, description = "renewed, cancelled or lost", body = Object), crate::openapi::Errors, crate::openapi::AuthErrors))]
pub(crate) async fn heartbeat(
    State(c): State<AppState>,
    Extension(auth): Extension<Arc<WorkerAuth>>,
    Path(task_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let (worker, req): (String, HeartbeatRequest) =
        authed(&c, &auth, &WORKERS, &method, &uri, &headers, &body).await?;
    own_lease(&c, &task_id, &req.lease_id, &worker).await?;
    let status = match c.renew(&task_id, &req.lease_id).await? {
        RenewOutcome::Renewed => {
            if let Some(p) = &req.progress {
                c.record_progress(&task_id, &req.lease_id, p.done, p.total).await?;
            }
            "renewed"
        }
        RenewOutcome::Cancelled => "cancelled",
        RenewOutcome::Lost => "lost",
        RenewOutcome::Unknown => {
            return Err(conflict("no_lease", format!("task {task_id} has no lease {}", req.lease_id)))
        }
    };
    Ok(Json(json!({ "status": status })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultRequest {
    lease_id: String,
    /// the receipt, base64 (bincode of a RISC Zero receipt)
    receipt: Option<String>,
    /// informational: user cycles of the proven run
    user_cycles: Option<u64>,
    /// the worker could not prove: why
    error: Option<String>,
}

fn outcome_name(o: AttemptOutcome) -> &'static str {
    match o {
        AttemptOutcome::Accepted => "accepted",
        AttemptOutcome::Retrying => "retrying",
        AttemptOutcome::TaskFailed => "task_failed",
        AttemptOutcome::NotProving(_) => "not_proving",
        AttemptOutcome::LeaseEnded => "lease_ended",
        AttemptOutcome::Unknown => "unknown",
    }
}

#[utoipa::path(post, path = "/v1/worker/tasks/{id}/result", tag = "workers",
    params(("id" = String, Path, description = "task id")),
    request_body(content = Object, description = "signed by a worker: `lease_id` and the receipt or the failure"),
    responses((status = 200, description = "accepted, retrying or refused", body = Object), crate::openapi::Errors, crate::openapi::AuthErrors))]
pub(crate) async fn result(
    State(c): State<AppState>,
    Extension(auth): Extension<Arc<WorkerAuth>>,
    Path(task_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let (worker, req): (String, ResultRequest) =
        authed(&c, &auth, &WORKERS, &method, &uri, &headers, &body).await?;
    own_lease(&c, &task_id, &req.lease_id, &worker).await?;
    let (outcome, rejected) = match (req.receipt, req.error) {
        (Some(receipt), None) => {
            let receipt = base64::engine::general_purpose::STANDARD
                .decode(receipt.trim())
                .map_err(|e| ApiError::bad_request("bad_base64", format!("`receipt` is not base64: {e}")))?;
            let verdict = c.submit_proof(&task_id, &req.lease_id, &worker, receipt, req.user_cycles).await?;
            (verdict.outcome, verdict.rejected)
        }
        (None, Some(error)) => (c.submit_failure(&task_id, &req.lease_id, &worker, &error).await?, None),
        _ => return Err(ApiError::bad_request("bad_request", "give either `receipt` or `error`")),
    };
    match outcome {
        AttemptOutcome::NotProving(status) => {
            Err(conflict("task_not_proving", format!("task {task_id} is {status}: the result is not needed")))
        }
        AttemptOutcome::Unknown => {
            Err(conflict("no_lease", format!("task {task_id} has no lease {}", req.lease_id)))
        }
        AttemptOutcome::LeaseEnded => Err(conflict(
            "lease_ended",
            format!("lease {} already had its verdict; lease the task again", req.lease_id),
        )),
        other => Ok(Json(json!({
            "accepted": other == AttemptOutcome::Accepted,
            "outcome": outcome_name(other),
            "reason": rejected,
        }))),
    }
}
